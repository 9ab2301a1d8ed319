#!/usr/bin/env bash
# Build the agent's OCI image offline: scripts/image.sh [BINARY]
#   BINARY: the agent to put in it (default target/dist/endo-agent, built with
#   `cargo build --profile dist --locked` if missing: release with fat link-time
#   optimisation, ~10 min from nothing on 2 cores; Cargo.toml); it is stripped on the way in.
# The base is made from Debian bookworm packages by mmdebstrap and imported into podman
# (cached by its package list, ~2 min once); then `podman build` with ./Containerfile.
# Prints the image name, localhost/endo-agent:VERSION (VERSION from Cargo.toml; set
# ENDO_IMAGE_TAG to choose another tag). Push it to the fleet's registry with
#   podman push localhost/endo-agent:VERSION REGISTRY/endo-agent:VERSION
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
export CONTAINERS_CONF="${CONTAINERS_CONF:-$root/scripts/containers.conf}"
binary="${1:-${CARGO_TARGET_DIR:-$root/target}/dist/endo-agent}"
if [ ! -x "$binary" ]; then
  [ $# -eq 0 ] || { echo "image: $binary is not an executable" >&2; exit 1; }
  (cd "$root" && cargo build --profile dist --locked --bin endo-agent >&2)
fi
for tool in podman mmdebstrap runc strip; do
  command -v "$tool" >/dev/null || { echo "image: $tool is missing: run scripts/setup-test.sh" >&2; exit 1; }
done
# The GStreamer plugins the pipelines in pipelines/ need: base (appsrc, videotestsrc,
# videoconvert, decodebin, appsink), good (v4l2src, rtspsrc, jpegdec, matroska/mp4
# demuxers), bad (decklinkvideosrc, h265parse), libav (H.264/H.265 decoders for rtsp and
# file sources); and CA certificates for MQTT and S3 over TLS.
packages="libgstreamer1.0-0,gstreamer1.0-plugins-base,gstreamer1.0-plugins-good,gstreamer1.0-plugins-bad,gstreamer1.0-libav,ca-certificates"
suite=bookworm
# The customize hook also drops Mesa's DRI drivers and the LLVM they link (≈ 140 MB):
# GStreamer's GL library pulls Mesa in, but only a GL context loads a DRI driver, and no
# pipeline here makes one (the display branch's GL sinks are for a tower's own screen).
# Bump the last word of the tag when the hook changes, so the cached base is rebuilt.
base_tag="$(printf '%s %s v2' "$suite" "$packages" | sha256sum | cut -c1-12)"
base="localhost/endo-agent-base:$base_tag"
if ! podman image exists "$base"; then
  cache="${ENDO_IMAGE_CACHE:-$HOME/.cache/endo-agent/images}"
  mkdir -p "$cache"
  tar="$cache/base-$base_tag.tar"
  if [ ! -s "$tar" ]; then
    echo "image: building the base $tar with mmdebstrap (a few minutes)" >&2
    part="$cache/base-$base_tag.part.tar"   # mmdebstrap picks the format from .tar
    mmdebstrap --quiet --variant=essential --include="$packages" \
      --customize-hook='rm -rf "$1"/usr/share/doc "$1"/usr/share/man "$1"/usr/share/locale "$1"/var/cache/apt "$1"/var/lib/apt/lists' \
      --customize-hook='rm -rf "$1"/usr/lib/*-linux-gnu/dri "$1"/usr/lib/*-linux-gnu/libLLVM-*.so*' \
      "$suite" "$part" >&2
    mv "$part" "$tar"
  fi
  podman import --quiet "$tar" "$base" >/dev/null
fi
version="$(sed -n 's/^version = "\(.*\)"/\1/p' "$root/Cargo.toml" | head -1)"
image="localhost/endo-agent:${ENDO_IMAGE_TAG:-$version}"
context="$(mktemp -d)"
trap 'rm -rf "$context"' EXIT
strip -o "$context/endo-agent" "$binary"
mkdir "$context/models"
cp "$root"/models/*.onnx "$root"/models/*.manifest.json "$context/models/"
cp "$root/config/agent.example.toml" "$context/agent.toml"
old="$(podman image inspect -f '{{.Id}}' "$image" 2>/dev/null || true)"
podman build --quiet --pull=never --build-arg "BASE=$base" -f "$root/Containerfile" -t "$image" "$context" >/dev/null
# The image this tag named before is left untagged by the build: remove it (a test builds
# one at every run), unless a container still uses it.
new="$(podman image inspect -f '{{.Id}}' "$image")"
if [ -n "$old" ] && [ "$old" != "$new" ]; then
  podman rmi "$old" >/dev/null 2>&1 || true
fi
echo "$image"

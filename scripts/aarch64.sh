#!/usr/bin/env bash
# Cross-build the agent for aarch64-unknown-linux-gnu and run it under qemu-user beside the
# native build:   scripts/aarch64.sh
#
# 1. Installs what it needs if missing: gcc-aarch64-linux-gnu and qemu-user (apt), the
#    rustup target.
# 2. Makes an arm64 sysroot from Debian bookworm packages with mmdebstrap's `extract`
#    variant (packages unpacked, no maintainer scripts, so no emulation; cached by its
#    package list under ~/.cache/endo-agent/aarch64/, ~20 s once). The sysroot is both the
#    link sysroot (pkg-config, the linker's --sysroot) and qemu's -L prefix at run time.
#    arm64 -dev packages cannot be co-installed with the amd64 ones (docs/deploy.md).
# 3. `cargo build --release --locked --target aarch64-unknown-linux-gnu` (~6 min cold on
#    2 cores) and the native release build.
# 4. Under qemu-aarch64: `version`, `check-config`; scores phantom stills at 1080p and 720p
#    (every kind of degradation) with the shipped int8 model and compares every figure with
#    the native build's (classical measures within 1e-6, model outputs within 1e-5); runs a
#    short phantom stream (`run`, 640x360 at 10 fps, until 50 frames are scored; emulated,
#    the scorer keeps up with ~1.5 fps and drops the rest as scorer_busy) and checks that
#    /metrics answers and frames land in the local datalake.
# Exits non-zero, saying what differed, on any failure. Prints the figures docs/deploy.md
# quotes. Not part of the README's test command: a cold cross-build alone is ~6 min more.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
target=aarch64-unknown-linux-gnu
cache="$HOME/.cache/endo-agent/aarch64"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/endo-agent/release-target}"
mkdir -p "$cache"

need=()
command -v aarch64-linux-gnu-gcc >/dev/null || need+=(gcc-aarch64-linux-gnu)
command -v qemu-aarch64 >/dev/null || need+=(qemu-user)
command -v mmdebstrap >/dev/null || need+=(mmdebstrap)
if [ ${#need[@]} -gt 0 ]; then
  echo "aarch64: installing ${need[*]}" >&2
  apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}" >&2
fi
rustup target list --installed | grep -qx "$target" || rustup target add "$target" >&2

packages="libc6-dev,libgstreamer1.0-dev,libgstreamer-plugins-base1.0-dev,gstreamer1.0-plugins-base,gstreamer1.0-plugins-good"
tag="$(printf 'bookworm %s v1' "$packages" | sha256sum | cut -c1-12)"
sysroot="$cache/sysroot-$tag"
if [ ! -e "$sysroot/.complete" ]; then
  echo "aarch64: making the arm64 sysroot $sysroot" >&2
  rm -rf "$sysroot"
  mmdebstrap --quiet --architectures=arm64 --variant=extract --include="$packages" \
    bookworm "$sysroot" >&2
  touch "$sysroot/.complete"
fi

export PKG_CONFIG_ALLOW_CROSS=1 PKG_CONFIG_SYSROOT_DIR="$sysroot"
export PKG_CONFIG_LIBDIR="$sysroot/usr/lib/aarch64-linux-gnu/pkgconfig:$sysroot/usr/share/pkgconfig"
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUSTFLAGS="-C link-arg=--sysroot=$sysroot"
cd "$root"
start=$(date +%s)
cargo build --release --locked --target "$target" --bin endo-agent >&2
echo "aarch64: cross-build took $(( $(date +%s) - start )) s" >&2
# The native build for the comparison: no cross variables (pkg-config would find arm64).
env -u PKG_CONFIG_SYSROOT_DIR -u PKG_CONFIG_LIBDIR -u PKG_CONFIG_ALLOW_CROSS \
  cargo build --release --locked --bin endo-agent >&2
native="$CARGO_TARGET_DIR/release/endo-agent"
arm="$CARGO_TARGET_DIR/$target/release/endo-agent"
file "$arm" | grep -q 'ARM aarch64' || { echo "aarch64: $arm is not an aarch64 binary" >&2; exit 1; }

# Under qemu-user, GStreamer cannot exec its arm64 plugin scanner: scan in process.
export GST_REGISTRY_FORK=no GST_PLUGIN_SYSTEM_PATH="$sysroot/usr/lib/aarch64-linux-gnu/gstreamer-1.0"
export GST_REGISTRY="$cache/registry-$tag.bin"
qemu() { qemu-aarch64 -L "$sysroot" "$arm" "$@"; }

work="$(mktemp -d)"
pid=""
cleanup() { [ -z "$pid" ] || kill "$pid" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
model="$root/models/quality-int8.onnx"

echo "aarch64: $(file -b "$arm" | cut -d, -f1-2)"

schedule="good 0.6s; defocus 0.3s sigma=1.5; defocus 0.3s sigma=4; motion 0.3s len=21 angle=30; dark 0.3s gain=0.3; overexposed 0.3s gain=2.5; glare 0.3s area=0.05; outside 0.3s"
for size in 1920x1080 1280x720; do
  dir="$work/stills-$size"
  "$native" phantom --width "${size%x*}" --height "${size#*x}" --fps 10 --seed 7 \
    --schedule "$schedule" --stills "$dir" >/dev/null
  "$native" score --json --model "$model" "$dir"/*.png >"$dir/x86.jsonl" 2>/dev/null
  t0=$(date +%s.%N)
  qemu score --json --model "$model" "$dir"/*.png >"$dir/arm.jsonl" 2>/dev/null
  t1=$(date +%s.%N)
  n=$(wc -l <"$dir/x86.jsonl")
  echo "aarch64: $size: $n stills scored under qemu in $(awk "BEGIN {printf \"%.1f\", $t1 - $t0}") s"
  python3 "$root/scripts/compare-scores.py" "$dir/x86.jsonl" "$dir/arm.jsonl"
done

# A short phantom stream through the whole pipeline, under qemu.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat >"$work/agent.toml" <<EOF
[agent]
site = "qemu"
device = "aarch64-01"
[source]
kind = "phantom"
width = 640
height = 360
fps = 10
[model]
path = "$model"
[select]
threshold_high = 0.5
[datalake]
dir = "$work/datalake"
[spool]
dir = "$work/spool"
[http]
listen = "127.0.0.1:$port"
EOF
qemu check-config "$work/agent.toml" >/dev/null
echo "aarch64: check-config passed under qemu"
qemu version --config "$work/agent.toml"
# Not through the function: a background subshell would ignore the stop signal.
qemu-aarch64 -L "$sysroot" "$arm" run --config "$work/agent.toml" >"$work/run.log" 2>&1 &
pid=$!
scored=0
for _ in $(seq 1 90); do
  sleep 1
  scored=$(curl -sf --max-time 5 "http://127.0.0.1:$port/metrics" | awk '/^endo_agent_frames_scored_total/ {print $2}' || true)
  [ "${scored:-0}" -ge 50 ] 2>/dev/null && break
done
kill -TERM "$pid"; wait "$pid" || true; pid=""
jpegs=$(find "$work/datalake" -name '*.jpg' | wc -l)
echo "aarch64: phantom stream under qemu: $scored frames scored, $jpegs JPEGs in the datalake"
if [ "${scored:-0}" -lt 50 ] || [ "$jpegs" -lt 1 ]; then
  echo "aarch64: the stream under qemu did not get through (log follows)" >&2
  tail -20 "$work/run.log" >&2
  exit 1
fi
echo "aarch64: passed"

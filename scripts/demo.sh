#!/usr/bin/env bash
# README command 1: set up, build, and run the agent on the phantom source with
# config/demo.toml. Good frames land in demo/datalake/, metrics on http://127.0.0.1:9464/metrics.
# Stop with Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release --locked
echo
echo "endo-agent demo: phantom NBI video -> score -> select -> demo/datalake/"
echo "  metrics:  http://127.0.0.1:9464/metrics"
echo "  status:   http://127.0.0.1:9464/api/status"
echo "  frames:   $(pwd)/demo/datalake/"
echo "  stop:     Ctrl-C"
echo
exec "${CARGO_TARGET_DIR:-target}/release/endo-agent" run --config config/demo.toml

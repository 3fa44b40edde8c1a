#!/usr/bin/env bash
# Run the whole test suite: install the real peers the tests start (sshd,
# moto, chromium) if missing, then every test in the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-test-peers.sh
exec cargo test --release --workspace --locked "$@"

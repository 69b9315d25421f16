#!/usr/bin/env bash
# Run every test of the workspace, end-to-end tests included.
# Extra arguments are passed to `cargo test`, e.g. `scripts/test.sh -- --nocapture`.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "==> installing MinIO (scripts/install-minio.sh)"
scripts/install-minio.sh

echo "==> cargo build --workspace --bins"
cargo build --workspace --bins --locked

echo "==> cargo test --workspace $*"
cargo test --workspace --locked "$@"

#!/usr/bin/env bash
# Measure Cattle against its performance goals (docs/performance.md) and print one table.
# Needs root (the poem example chowns to root). Takes a few minutes.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-minio.sh >&2
cargo build --release --locked --bins -p cattle-publish -p cattle-agent -p cattle-bench >&2
# Not `exec`: a process keeps the peak RSS of the children its predecessor waited for
# (the compiler, above), and the bench reads the peak RSS of `cattle apply` that way.
target/release/cattle-bench "$@"

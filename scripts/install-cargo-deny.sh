#!/usr/bin/env bash
# Install the pinned cargo-deny that scripts/test.sh runs to check deny.toml.
#
# Idempotent: does nothing (and is fast) when that version is already on PATH.
# Otherwise builds it with `cargo install --locked` (about ten minutes on two
# cores), into ~/.cargo/bin.
set -euo pipefail

CARGO_DENY_VERSION="0.20.2"

current="$(cargo deny --version 2>/dev/null | awk '{ print $2 }' || true)"
if [[ "$current" == "$CARGO_DENY_VERSION" ]]; then
    echo "cargo-deny $CARGO_DENY_VERSION already installed: $(command -v cargo-deny)"
    exit 0
fi
if [[ -n "$current" ]]; then
    echo "cargo-deny is $current, want $CARGO_DENY_VERSION; reinstalling" >&2
fi
echo "building cargo-deny $CARGO_DENY_VERSION with cargo install (takes several minutes)..." >&2
cargo install cargo-deny --version "$CARGO_DENY_VERSION" --locked
echo "cargo-deny $CARGO_DENY_VERSION installed: $(command -v cargo-deny)"

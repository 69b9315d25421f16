#!/usr/bin/env bash
# Install a pinned cargo subcommand the scripts use:
#
#   scripts/install-cargo-tool.sh cargo-deny   checks deny.toml (scripts/test.sh);
#                                              about ten minutes to build on two cores
#   scripts/install-cargo-tool.sh cargo-deb    builds the Debian packages
#                                              (scripts/build-deb.sh); about a minute
#
# Idempotent: does nothing (and is fast) when the pinned version is already on
# PATH. Otherwise builds it with `cargo install --locked`, into ~/.cargo/bin.
set -euo pipefail

case "${1:-}" in
    cargo-deny) version="0.20.2" ;;
    cargo-deb) version="3.6.2" ;;
    *)
        echo "usage: $0 cargo-deny|cargo-deb" >&2
        exit 2
        ;;
esac
tool=$1
subcommand=${tool#cargo-}

current="$(cargo "$subcommand" --version 2>/dev/null | awk '{ print $2 }' || true)"
if [[ "$current" == "$version" ]]; then
    echo "$tool $version already installed: $(command -v "$tool")"
    exit 0
fi
if [[ -n "$current" ]]; then
    echo "$tool is $current, want $version; reinstalling" >&2
fi
echo "building $tool $version with cargo install..." >&2
cargo install "$tool" --version "$version" --locked
echo "$tool $version installed: $(command -v "$tool")"

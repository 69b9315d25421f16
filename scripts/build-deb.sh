#!/usr/bin/env bash
# Build the Debian packages: `cattle` (the operator's CLI) and `cattle-agent`
# (the host agent, its systemd unit and config skeleton), from a release build.
#
#   scripts/build-deb.sh [--offline] [--output DIR]
#
# --offline   build without the network: with `cargo vendor`ed crates (see
#             docs/air-gapped.md) and a cargo-deb already installed
# --output    where the .deb files go (default: target/debian)
#
# The last lines of standard output are the paths of the two packages.
# What goes into each package is in [package.metadata.deb] of
# crates/cattle-agent/Cargo.toml and crates/cattle-publish/Cargo.toml; the
# agent's maintainer scripts are in deploy/debian/cattle-agent/.
set -euo pipefail
cd "$(dirname "$0")/.."

offline=()
output=""
while [[ $# -gt 0 ]]; do
    case "$1" in
        --offline) offline=(--offline) ;;
        --output)
            output="${2:?--output needs a directory}"
            shift
            ;;
        *)
            echo "usage: $0 [--offline] [--output DIR]" >&2
            exit 2
            ;;
    esac
    shift
done

if [[ ${#offline[@]} -eq 0 ]]; then
    scripts/install-cargo-tool.sh cargo-deb >&2
elif ! command -v cargo-deb >/dev/null 2>&1; then
    echo "build-deb.sh: error: cargo-deb is not installed; install it where the network is" \
        "(scripts/install-cargo-tool.sh cargo-deb) and carry ~/.cargo/bin/cargo-deb over" >&2
    exit 1
fi

# One build for both packages; cargo-deb then packs without building again.
cargo build --release --locked "${offline[@]}" -p cattle-agent -p cattle-publish >&2

outdir="${output:-target/debian}"
mkdir -p "$outdir"
for package in cattle-agent cattle-publish; do
    cargo deb --no-build --locked "${offline[@]}" -p "$package" --output "$outdir" >&2
done
# cargo-deb names them <name>_<version>-<revision>_<arch>.deb.
version=$(cargo metadata --no-deps --format-version 1 "${offline[@]}" |
    sed -n 's/.*"name":"cattle-agent","version":"\([^"]*\)".*/\1/p')
arch=$(dpkg --print-architecture)
for name in cattle cattle-agent; do
    deb="$outdir/${name}_${version}-1_${arch}.deb"
    [[ -f "$deb" ]] || {
        echo "build-deb.sh: error: $deb was not made" >&2
        exit 1
    }
    echo "$deb"
done

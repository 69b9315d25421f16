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
# agent's maintainer scripts are in deploy/debian/cattle-agent/. The man pages
# and shell completions are written by cattle-docgen from the binaries' own
# command-line definitions, the pages dated by SOURCE_DATE_EPOCH (default: the
# time of the last commit, so that one commit makes the same pages).
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

# One build for both packages and for cattle-docgen, which writes their man
# pages and completions; cargo-deb then packs without building again.
cargo build --release --locked "${offline[@]}" -p cattle-agent -p cattle-publish -p cattle-docgen >&2

metadata=$(cargo metadata --no-deps --format-version 1 "${offline[@]}")
# Where cargo builds (CARGO_TARGET_DIR, or target/). cargo-deb reads the assets
# the packages list under target/release/ from there, the generated ones too.
target_dir=$(sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p' <<<"$metadata")
[[ -d "$target_dir/release" ]] || {
    echo "build-deb.sh: error: no release build in \`$target_dir\` (cargo metadata's target_directory)" >&2
    exit 1
}
docgen="$target_dir/release/docgen"
# Afresh, so that a page of a subcommand that is gone is not packed.
rm -rf "$docgen"
# The pages' date (for their programs only: cargo-deb reads the variable too).
epoch=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || true)}
env ${epoch:+SOURCE_DATE_EPOCH="$epoch"} "$target_dir/release/cattle-docgen" "$docgen" >/dev/null
# Debian policy: man pages compressed with gzip -9, -n for no name or time stamp.
gzip -9n "$docgen"/man/*/*.1

outdir="${output:-target/debian}"
mkdir -p "$outdir"
for package in cattle-agent cattle-publish; do
    cargo deb --no-build --locked "${offline[@]}" -p "$package" --output "$outdir" >&2
done
# cargo-deb names them <name>_<version>-<revision>_<arch>.deb.
version=$(sed -n 's/.*"name":"cattle-agent","version":"\([^"]*\)".*/\1/p' <<<"$metadata")
arch=$(dpkg --print-architecture)
for name in cattle cattle-agent; do
    deb="$outdir/${name}_${version}-1_${arch}.deb"
    [[ -f "$deb" ]] || {
        echo "build-deb.sh: error: $deb was not made" >&2
        exit 1
    }
    # Every page and completion written for the program is in its package.
    contents=$(dpkg-deb -c "$deb" | awk '{print $NF}')
    wanted=(
        "./usr/share/man/man1/$name.1.gz"
        "./usr/share/bash-completion/completions/$name"
        "./usr/share/zsh/vendor-completions/_$name"
        "./usr/share/fish/vendor_completions.d/$name.fish"
    )
    for page in "$docgen/man/$name"/*.1.gz; do
        wanted+=("./usr/share/man/man1/${page##*/}")
    done
    for file in "${wanted[@]}"; do
        grep -qxF "$file" <<<"$contents" || {
            echo "build-deb.sh: error: $deb lacks $file (see its assets in [package.metadata.deb])" >&2
            exit 1
        }
    done
    echo "$deb"
done

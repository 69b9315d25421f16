#!/usr/bin/env bash
# Install the pinned S3-compatible servers other than MinIO that the
# compatibility tests (tests/compat.rs) run Cattle against, built from source:
#
#   versitygw  v1.8.0 (posix backend)   go install
#   weed       SeaweedFS, commit 7506e5f91cd6 (2026-11-09)
#                                       go install, from a wrapper module
#   garage     2.5.0                    cargo install --locked --debug, sqlite only
#
# Measured the first time, the three building at once on two cores shared with
# other work: versitygw 3 min (2 min of CPU), SeaweedFS 16 min (9 min of CPU).
# Garage is installed to show that Cattle refuses it: it ignores conditional
# writes (README, "Compatibility"). Neither its speed nor its other metadata
# engines matter for that, so it is built unoptimized with the one engine the
# tests use: 6.6 min of CPU, against 21 min for a release build with its
# default features.
#
# Idempotent: does nothing (and is fast) when the pinned versions are already
# installed: versitygw and weed in ${GOBIN:-$(go env GOPATH)/bin}, as
# scripts/install-minio.sh installs MinIO, garage in ~/.cargo/bin, as
# scripts/install-cargo-tool.sh installs cargo-deny. Prints where they are.
set -euo pipefail

VERSITYGW_MODULE="github.com/versity/versitygw"
VERSITYGW_VERSION="v1.8.0"
# SeaweedFS publishes no Go module versions: this pseudo-version is the master
# commit 7506e5f91cd6 of 2026-11-09, as the module proxy serves it. Its go.mod
# replaces github.com/tyler-smith/go-bip39 (deleted from GitHub) with
# github.com/cosmos/go-bip39 v1.0.0, and `go install module@version` refuses a
# module whose go.mod has a replace; so weed is built as a dependency of a
# throwaway module that repeats that replace.
SEAWEEDFS_MODULE="github.com/seaweedfs/seaweedfs"
SEAWEEDFS_VERSION="v0.0.0-20261109003541-7506e5f91cd6"
SEAWEEDFS_REPLACE="github.com/tyler-smith/go-bip39 => github.com/cosmos/go-bip39 v1.0.0"
GARAGE_VERSION="2.5.0"

if ! command -v go >/dev/null 2>&1; then
    echo "install-s3-servers.sh: error: 'go' not found in PATH." >&2
    echo "  versitygw and SeaweedFS are built from source with 'go install'; install Go and retry." >&2
    exit 1
fi

bindir="${GOBIN:-$(go env GOBIN)}"
if [[ -z "$bindir" ]]; then
    bindir="$(go env GOPATH | cut -d: -f1)/bin"
fi

# Version of module $2 that the Go toolchain recorded in binary $1 (as the main
# module or as a dependency), or empty.
installed_version() {
    [[ -x "$1" ]] || return 0
    go version -m "$1" 2>/dev/null |
        awk -v mod="$2" '($1 == "mod" || $1 == "dep") && $2 == mod { print $3; exit }'
}

# check NAME BIN MODULE VERSION: 0 when BIN is that version; else says why it is rebuilt.
up_to_date() {
    local name=$1 bin=$2 module=$3 version=$4 current
    current="$(installed_version "$bin" "$module")"
    if [[ "$current" == "$version" ]]; then
        echo "$name $version already installed: $bin"
        return 0
    fi
    if [[ -n "$current" ]]; then
        echo "$name at $bin is $current, want $version; reinstalling" >&2
    elif [[ -e "$bin" ]]; then
        echo "$name at $bin has unknown version, want $version; reinstalling" >&2
    fi
    return 1
}

# verify NAME BIN MODULE VERSION: after a build.
verify() {
    local name=$1 bin=$2 module=$3 version=$4 current
    current="$(installed_version "$bin" "$module")"
    if [[ "$current" != "$version" ]]; then
        echo "install-s3-servers.sh: error: after the build, $bin reports $module '${current:-?}', want $version" >&2
        exit 1
    fi
    echo "$name $version installed: $bin"
}

install_versitygw() {
    local bin="$bindir/versitygw"
    up_to_date versitygw "$bin" "$VERSITYGW_MODULE" "$VERSITYGW_VERSION" && return
    echo "building versitygw $VERSITYGW_VERSION with go install (about 3 minutes the first time)..." >&2
    GOBIN="$bindir" go install "$VERSITYGW_MODULE/cmd/versitygw@$VERSITYGW_VERSION"
    verify versitygw "$bin" "$VERSITYGW_MODULE" "$VERSITYGW_VERSION"
}

install_weed() {
    local bin="$bindir/weed" work
    up_to_date "SeaweedFS (weed)" "$bin" "$SEAWEEDFS_MODULE" "$SEAWEEDFS_VERSION" && return
    echo "building SeaweedFS $SEAWEEDFS_VERSION with go install (about 5 minutes the first time)..." >&2
    work="$(mktemp -d)"
    # shellcheck disable=SC2064 # expand now: $work is local
    trap "rm -rf '$work'" RETURN
    cat >"$work/go.mod" <<EOF
module cattle.invalid/seaweedfs-build

go 1.26

replace $SEAWEEDFS_REPLACE
EOF
    (
        cd "$work"
        go get "$SEAWEEDFS_MODULE/weed@$SEAWEEDFS_VERSION"
        GOBIN="$bindir" go install "$SEAWEEDFS_MODULE/weed"
    )
    verify "SeaweedFS (weed)" "$bin" "$SEAWEEDFS_MODULE" "$SEAWEEDFS_VERSION"
}

install_garage() {
    local current
    # `garage --version` prints e.g. `garage cargo:2.5.0 [features: …]`.
    current="$(garage --version 2>/dev/null | awk '{ sub(/^cargo:/, "", $2); print $2; exit }' || true)"
    if [[ "$current" == "$GARAGE_VERSION" ]]; then
        echo "garage $GARAGE_VERSION already installed: $(command -v garage)"
        return
    fi
    if [[ -n "$current" ]]; then
        echo "garage is $current, want $GARAGE_VERSION; reinstalling" >&2
    fi
    echo "building garage $GARAGE_VERSION with cargo install (about 7 minutes of CPU the first time)..." >&2
    # Not in the workspace's target directory: cargo install builds in a
    # directory of its own and removes it.
    env -u CARGO_TARGET_DIR cargo install garage --version "$GARAGE_VERSION" --locked \
        --debug --no-default-features --features bundled-libs,sqlite
    current="$(garage --version 2>/dev/null | awk '{ sub(/^cargo:/, "", $2); print $2; exit }' || true)"
    if [[ "$current" != "$GARAGE_VERSION" ]]; then
        echo "install-s3-servers.sh: error: after cargo install, garage reports '${current:-?}', want $GARAGE_VERSION" >&2
        exit 1
    fi
    echo "garage $GARAGE_VERSION installed: $(command -v garage)"
}

install_versitygw
install_weed
install_garage

#!/usr/bin/env bash
# Install the pinned MinIO server (`minio`) and client (`mc`) that the tests and
# the benchmark use, built from source with `go install`.
#
# Idempotent: does nothing (and is fast) when the pinned versions are already
# installed in ${GOBIN:-$(go env GOPATH)/bin}. Prints where the binaries are.
set -euo pipefail

# MinIO server pin. This Go pseudo-version is commit 7aac2a2c5b7c (2026-02-12),
# the latest commit on MinIO's master branch: the RELEASE.2025-10-15T17-29-55Z
# community release plus doc-only and small bug-fix commits. MinIO's RELEASE.*
# tags are not valid Go module versions, and the release commit's own
# pseudo-version (v0.0.0-20251015172955-9e49d5e7a648) is refused by the module
# proxy, so we pin the master commit instead.
MINIO_MODULE="github.com/minio/minio"
MINIO_VERSION="v0.0.0-20260212201848-7aac2a2c5b7c"
# MinIO client pin: the newest mc the module proxy serves (commit cf909e1063a9, 2025-03-13).
MC_MODULE="github.com/minio/mc"
MC_VERSION="v0.0.0-20250313080218-cf909e1063a9"

if ! command -v go >/dev/null 2>&1; then
    echo "install-minio.sh: error: 'go' not found in PATH." >&2
    echo "  MinIO is built from source with 'go install'; install Go and retry." >&2
    exit 1
fi

bindir="${GOBIN:-$(go env GOBIN)}"
if [[ -z "$bindir" ]]; then
    bindir="$(go env GOPATH | cut -d: -f1)/bin"
fi

# Module version embedded in binary $1 for module $2 by the Go toolchain, or empty.
installed_version() {
    [[ -x "$1" ]] || return 0
    go version -m "$1" 2>/dev/null | awk -v mod="$2" '$1 == "mod" && $2 == mod { print $3; exit }'
}

# install NAME MODULE VERSION
install() {
    local name=$1 module=$2 version=$3
    local bin="$bindir/$name" current
    current="$(installed_version "$bin" "$module")"
    if [[ "$current" == "$version" ]]; then
        echo "$name $version already installed: $bin"
        return
    fi
    if [[ -n "$current" ]]; then
        echo "$name at $bin is $current, want $version; reinstalling" >&2
    elif [[ -e "$bin" ]]; then
        echo "$name at $bin has unknown version, want $version; reinstalling" >&2
    fi
    echo "building $name $version with go install (takes a few minutes the first time)..." >&2
    GOBIN="$bindir" go install "$module@$version"
    current="$(installed_version "$bin" "$module")"
    if [[ "$current" != "$version" ]]; then
        echo "install-minio.sh: error: after go install, $bin reports version '${current:-?}', want $version" >&2
        exit 1
    fi
    echo "$name $version installed: $bin"
}

install minio "$MINIO_MODULE" "$MINIO_VERSION"
install mc "$MC_MODULE" "$MC_VERSION"

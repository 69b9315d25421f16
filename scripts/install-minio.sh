#!/usr/bin/env bash
# Install the pinned MinIO server binary used by the end-to-end tests.
#
# Idempotent: does nothing (and is fast) when the pinned version is already
# installed at ${GOBIN:-$(go env GOPATH)/bin}/minio. Prints the binary's path.
set -euo pipefail

# MinIO pin. This Go pseudo-version is commit 7aac2a2c5b7c (2026-02-12), the
# latest commit on MinIO's master branch: the RELEASE.2025-10-15T17-29-55Z
# community release plus doc-only and small bug-fix commits. MinIO's
# RELEASE.* tags are not valid Go module versions, and the release commit's
# own pseudo-version (v0.0.0-20251015172955-9e49d5e7a648) is refused by the
# module proxy, so we pin the master commit instead.
MINIO_VERSION="v0.0.0-20260212201848-7aac2a2c5b7c"
MINIO_MODULE="github.com/minio/minio"

if ! command -v go >/dev/null 2>&1; then
    echo "install-minio.sh: error: 'go' not found in PATH." >&2
    echo "  MinIO is built from source with 'go install'; install Go (https://go.dev/dl/) and retry." >&2
    exit 1
fi

bindir="${GOBIN:-$(go env GOBIN)}"
if [[ -z "$bindir" ]]; then
    bindir="$(go env GOPATH | cut -d: -f1)/bin"
fi
bin="$bindir/minio"

# Module version embedded in the binary by the Go toolchain, or empty.
installed_version() {
    [[ -x "$bin" ]] || return 0
    go version -m "$bin" 2>/dev/null \
        | awk -v mod="$MINIO_MODULE" '$1 == "mod" && $2 == mod { print $3; exit }'
}

current="$(installed_version)"
if [[ "$current" == "$MINIO_VERSION" ]]; then
    echo "minio $MINIO_VERSION already installed: $bin"
    exit 0
fi

if [[ -n "$current" ]]; then
    echo "minio at $bin is $current, want $MINIO_VERSION; reinstalling" >&2
elif [[ -e "$bin" ]]; then
    echo "minio at $bin has unknown version, want $MINIO_VERSION; reinstalling" >&2
fi

echo "building minio $MINIO_VERSION with go install (takes several minutes)..." >&2
GOBIN="$bindir" go install "$MINIO_MODULE@$MINIO_VERSION"

current="$(installed_version)"
if [[ "$current" != "$MINIO_VERSION" ]]; then
    echo "install-minio.sh: error: after go install, $bin reports version '${current:-?}', want $MINIO_VERSION" >&2
    exit 1
fi
echo "minio $MINIO_VERSION installed: $bin"

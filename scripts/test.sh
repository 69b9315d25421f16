#!/usr/bin/env bash
# Run every test of the workspace, end-to-end tests included.
# Extra arguments are passed to `cargo test`, e.g. `scripts/test.sh -- --nocapture`.
set -euo pipefail
cd "$(dirname "$0")/.."

# MinIO, and versitygw, SeaweedFS and Garage (tests/compat.rs runs Cattle against each),
# are built from source the first time. They build in the background, in a process group
# of their own, while the steps below download, debootstrap and link, which leave a core
# idle; the tests wait for them.
servers_log=$(mktemp -t cattle-servers.XXXXXX)
echo "==> installing the S3 servers in the background (scripts/install-minio.sh," \
    "scripts/install-s3-servers.sh; output shown once they are done)"
setsid --wait bash -c 'scripts/install-minio.sh && scripts/install-s3-servers.sh' \
    >"$servers_log" 2>&1 </dev/null &
servers=$!
# If this script stops before they are done, the builds stop with it.
trap 'kill -- -"$servers" "$servers" 2>/dev/null || true; rm -f "$servers_log"' EXIT

# libfaketime: tests/hostile.rs runs the binaries with a clock 20 minutes off.
# strace: tests/e2e.rs records every connection `cattle` and the agent make.
missing=()
command -v faketime >/dev/null 2>&1 || missing+=(faketime)
command -v strace >/dev/null 2>&1 || missing+=(strace)
if [[ ${#missing[@]} -gt 0 ]]; then
    echo "==> installing ${missing[*]} (apt-get)"
    sudo_=""
    if [[ $(id -u) -ne 0 ]]; then sudo_="sudo"; fi
    $sudo_ apt-get update -q
    $sudo_ apt-get install -y --no-install-recommends "${missing[@]}"
fi

# systemd-nspawn and debootstrap: tests/container.rs boots throwaway Debian systems with
# systemd as PID 1. Also builds the root tree they start from (once, about 35 s).
echo "==> installing container tools (scripts/install-container-tools.sh)"
scripts/install-container-tools.sh

echo "==> installing cargo-deny (scripts/install-cargo-tool.sh)"
scripts/install-cargo-tool.sh cargo-deny

# Dependency policy (deny.toml): e.g. no tar older than 0.4.45. Offline.
echo "==> cargo deny check bans"
cargo deny --locked check bans
cargo deny --locked --manifest-path fuzz/Cargo.toml check bans

echo "==> cargo build --workspace --bins"
cargo build --workspace --bins --locked

# The Debian packages (a release build): tests/packaged_agent.rs installs the
# agent's in a container. Installs the pinned cargo-deb first if missing.
echo "==> building the Debian packages (scripts/build-deb.sh)"
scripts/build-deb.sh

echo "==> waiting for the S3 servers"
waiting_since=$SECONDS
if ! wait "$servers"; then
    cat "$servers_log"
    echo "scripts/test.sh: error: installing the S3 servers failed (output above)" >&2
    exit 1
fi
trap 'rm -f "$servers_log"' EXIT
cat "$servers_log"
echo "==> the S3 servers are installed (waited $((SECONDS - waiting_since)) s for them)"

echo "==> cargo test --workspace $*"
cargo test --workspace --locked "$@"

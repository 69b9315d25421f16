#!/usr/bin/env bash
# A real publish → agent → status cycle on the embedded file store: no MinIO, no root.
# Builds the binaries, makes a signing key, publishes examples/flaky to one host, runs that
# host's agent once (trusting the key), then shows the execution's status and log.
# Everything lives in a temporary directory.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --bins --quiet
bin=target/debug
demo=$(mktemp -d)
export CATTLE_STORE="file://$demo/store"
echo demo-host > "$demo/hosts"

run() { echo "+ $*" >&2; "$@"; }
run "$bin/cattle" keygen "$demo/publisher" >/dev/null
id=$(run "$bin/cattle" publish examples/flaky --hosts "$demo/hosts" --key "$demo/publisher.key")
run "$bin/cattle-agent" --host-id demo-host --state-dir "$demo/agent" --once \
    --trusted-keys "$demo/publisher.pub"
run "$bin/cattle" status "$id"
run "$bin/cattle" log "$id"
echo "store, agent state, keys and hosts file are in $demo" >&2

#!/usr/bin/env bash
# Install what the container tests need (tests/harness/container.rs boots
# throwaway Debian systems with systemd as PID 1) and build the root tree that
# every container starts from.
#
#   scripts/install-container-tools.sh         install systemd-nspawn and debootstrap
#                                              with apt-get if missing, then build the tree
#   scripts/install-container-tools.sh --tree  only build the tree (the test harness runs
#                                              this on first use); fails if the tools are missing
#
# Idempotent, and fast when everything is in place. The last line of standard
# output is the tree's path.
#
# The tree (a minimal Debian bookworm with systemd, about 200 MB, built with
# debootstrap from deb.debian.org in about 35 s) is cached under
# /var/cache/cattle-tests, in a directory named after a hash of `build_tree`
# below: changing the recipe builds a new tree beside the old ones instead of
# changing a tree that running containers use as their read-only lower layer.
# Old trees are never used again; `rm -rf /var/cache/cattle-tests` when no
# container test runs reclaims the space.
set -euo pipefail

# debootstrap, mount, chroot and the cache directory need root.
if [[ $(id -u) -ne 0 ]]; then
    exec sudo "$0" "$@"
fi

CACHE=/var/cache/cattle-tests

tree_only=false
case "${1:-}" in
    "") ;;
    --tree) tree_only=true ;;
    *)
        echo "usage: $0 [--tree]" >&2
        exit 2
        ;;
esac

# Build the container root tree in the empty directory $1.
build_tree() {
    local dir=$1
    # systemd-sysv makes systemd /sbin/init; dbus is what systemctl, hostnamectl
    # and logind talk through. minbase already has apt (tests install packages
    # from the Debian archive) and passwd (useradd, groupadd). Fail rather than
    # bootstrap unverified packages: the archive keyring must check the Release file.
    debootstrap --variant=minbase --include=systemd,systemd-sysv,dbus \
        --keyring=/usr/share/keyrings/debian-archive-keyring.gpg \
        bookworm "$dir" http://deb.debian.org/debian
    # The downloaded .deb files are not needed once installed.
    chroot "$dir" apt-get clean
    # debootstrap copies the building machine's hostname; without the file each
    # container keeps the hostname systemd-nspawn gives it (its machine name).
    rm -f "$dir/etc/hostname"
}

tools=(systemd-nspawn debootstrap nsenter flock)
missing() {
    local tool
    for tool in "${tools[@]}"; do
        command -v "$tool" >/dev/null 2>&1 || return 0
    done
    [[ ! -f /usr/share/keyrings/debian-archive-keyring.gpg ]]
}

if missing; then
    if $tree_only; then
        echo "install-container-tools.sh: error: one of ${tools[*]} or the Debian archive keyring" \
            "is missing: run scripts/install-container-tools.sh" >&2
        exit 1
    fi
    echo "==> installing systemd-container, debootstrap (apt-get)" >&2
    apt-get update -q >&2
    apt-get install -y --no-install-recommends \
        systemd-container debootstrap debian-archive-keyring util-linux >&2
fi

recipe_hash=$(declare -f build_tree | sha256sum | cut -c1-12)
tree="$CACHE/bookworm-$recipe_hash"

# Unmounts whatever a killed debootstrap left mounted under $1 (its /proc, /sys),
# then removes $1 without leaving its file system.
remove_build() {
    local dir=$1
    findmnt -rn -o TARGET | grep -F "$dir/" | sort -r | xargs -r umount -l
    rm -rf --one-file-system "$dir"
}

if [[ ! -d "$tree" ]]; then
    mkdir -p "$CACHE"
    # Test processes running in parallel wait here for the first one's build.
    exec 9>"$CACHE/.lock"
    flock 9
    if [[ ! -d "$tree" ]]; then
        # Holding the lock, any build directory left is one a killed build left.
        for stale in "$CACHE"/.build-*; do
            if [[ -d "$stale" ]]; then remove_build "$stale"; else rm -f "$stale"; fi
        done
        echo "==> building the container tree $tree (debootstrap, about a minute)" >&2
        start=$SECONDS
        build=$(mktemp -d "$CACHE/.build-XXXXXX")
        trap 'remove_build "$build"' EXIT
        chmod 755 "$build"
        # debootstrap's hundreds of lines are shown only if the build fails.
        if ! build_tree "$build" >"$build.log" 2>&1; then
            tail -n 40 "$build.log" >&2
            rm -f "$build.log"
            echo "install-container-tools.sh: error: building the container tree failed" >&2
            exit 1
        fi
        rm -f "$build.log"
        # Whole or absent: a build killed before this line leaves only a .build-* directory.
        mv -T "$build" "$tree"
        trap - EXIT
        echo "==> container tree built in $((SECONDS - start)) s" >&2
    fi
    exec 9>&-
fi
echo "$tree"

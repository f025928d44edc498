#!/usr/bin/env bash
# Make podman/buildah usable on a fresh Debian machine and provide the base image
# the simulated nodes and the test images build from; also installs Chromium,
# which the HTML report's browser test drives headless, and the registry the
# push/pull tests start on loopback (docker-registry, with apache2-utils for its
# htpasswd file). Idempotent; needs root.
# What it changes on the machine is listed in README.md ("What `make setup` changes").
# Facts behind each setting: ../shared/DESIGN.md section 5 (crun refuses this
# kernel's hybrid cgroups; podman's default nofile ulimit is refused; no registry).
set -euo pipefail

BASE_IMAGE="${BASE_IMAGE:-localhost/debian:bookworm}"
SUITE="${SUITE:-bookworm}"
# A controller on another Python than the one that makes the bundles (Debian 13's python3 is 3.13):
# the bundle's USAGE.txt is run there too (tests/integration/test_install.py reads the name here).
OTHER_PYTHON_IMAGE="${OTHER_PYTHON_IMAGE:-localhost/debian:trixie-python}"
OTHER_PYTHON_SUITE="${OTHER_PYTHON_SUITE:-trixie}"
OTHER_PYTHON_PACKAGES="python3,python3-venv,openssh-client"
PACKAGES=(podman buildah runc catatonit debootstrap uidmap fuse-overlayfs slirp4netns iproute2 openssh-client chromium
          docker-registry apache2-utils prometheus)

log() { printf '[engine] %s\n' "$*"; }

if [ "$(id -u)" -ne 0 ]; then
    echo "setup-engine: needs root (it installs packages and writes /etc/containers)" >&2
    exit 2
fi

missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    log "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    # Debian starts the registry as a service on port 5000 when it installs it; the tests
    # start their own on loopback, so the one this script installed is stopped and disabled.
    if [[ " ${missing[*]} " == *" docker-registry "* ]] && [ -d /run/systemd/system ]; then
        systemctl disable --now docker-registry.service >/dev/null 2>&1 || true
        log "docker-registry: its service is stopped and disabled (the tests start their own)"
    fi
    # prometheus is installed for its promtool (the tests lint metrics.prom with it); its server is not needed.
    if [[ " ${missing[*]} " == *" prometheus "* ]] && [ -d /run/systemd/system ]; then
        systemctl disable --now prometheus.service >/dev/null 2>&1 || true
        log "prometheus: its service is stopped and disabled (only promtool is used)"
    fi
fi

# The few keys podman and buildah need here are merged into containers.conf;
# the rest of an existing file is kept and the original is backed up first
# (engine_conf.py says what it changed).
python3 "$(dirname "$0")/engine_conf.py" /etc/containers/containers.conf

ROOTFS_DIRS=()
trap 'rm -rf "${ROOTFS_DIRS[@]}"' EXIT
# debootstrap_image IMAGE SUITE [PACKAGES]: a minimal Debian SUITE from the mirror apt uses, as IMAGE.
debootstrap_image() {
    local image="$1" suite="$2" include="${3:+--include=$3}" mirror rootfs
    podman image exists "$image" && return 0
    log "building $image with debootstrap (about 30 s)"
    mirror="$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n1)"
    mirror="${mirror:-http://deb.debian.org/debian}"
    rootfs="$(mktemp -d)"
    ROOTFS_DIRS+=("$rootfs")
    debootstrap --variant=minbase $include "$suite" "$rootfs" "$mirror" >/dev/null
    tar -C "$rootfs" -c . | podman import --quiet - "$image" >/dev/null
    rm -rf "$rootfs"
}
debootstrap_image "$BASE_IMAGE" "$SUITE"
debootstrap_image "$OTHER_PYTHON_IMAGE" "$OTHER_PYTHON_SUITE" "$OTHER_PYTHON_PACKAGES"
log "ready: $(podman --version), base image $BASE_IMAGE, another Python in $OTHER_PYTHON_IMAGE"

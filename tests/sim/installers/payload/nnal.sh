#!/bin/bash
# Simulated CANN NNAL package (its ATB part): ROOT/nnal/atb/<v>/atb/cxx_abi_{0,1},
# nnal/atb/latest -> <v> (the last installed version), nnal/atb/set_env.sh.
# Install, uninstall, --upgrade with its <v>_recover backup, the version's
# scripts/uninstall.sh and scripts/create_version_softlink.sh, and the check
# that the toolkit's environment is sourced follow ATB's installer
# (hicann/ascend-transformer-boost scripts/install.sh, uninstall.sh,
# create_version_softlink.sh; tests/sim/vendor.yaml lifecycle.nnal), whose
# messages these are.
LOG_TAG=cann-atb LOG_STYLE=cann LOG_FILE=ascend_nnal_install.log
. ./common.sh

NNAL_DIR="$ROOT/nnal/atb"
VDIR="$NNAL_DIR/$VERSION"
UPGRADING=n RECOVER=n version_dir="" backup=""

# A failed upgrade puts the old version back (install.sh exit_solver). A power
# cut kills the installer outright: no trap runs, the backup stays.
on_exit() {
    local rc=$?
    if [ "$rc" -ne 0 ]; then
        log ERROR "Command execution failed, [ERROR] ret code:$rc"
        if [ "$UPGRADING" = y ] && [ "$RECOVER" = y ]; then
            rm -rf "$version_dir" "$NNAL_DIR/set_env.sh"
            mv "$backup" "$version_dir"
            mv "$NNAL_DIR/set_env_recover.sh" "$NNAL_DIR/set_env.sh"
            (cd "$NNAL_DIR" && ln -snf "$(basename "$version_dir")" latest)
            log INFO "recover old Ascend-cann-atb version success!"
        fi
    fi
    exit "$rc"
}
trap on_exit EXIT

check_owner() {
    if [ -z "${ASCEND_TOOLKIT_HOME:-}" ] && [ -z "${ASCEND_NNAE_HOME:-}" ]; then
        die "Check owner failed, please check env ASCEND_TOOLKIT_HOME or ASCEND_NNAE_HOME is set."
    fi
    [ -n "${ASCEND_HOME_PATH:-}" ] || die "Check owner failed, please check env ASCEND_HOME_PATH is set."
    [ -d "$ASCEND_HOME_PATH" ] || die "Check owner failed, can not find cann in ${ASCEND_HOME_PATH}."
    [ "$(stat -L -c %U "$ASCEND_HOME_PATH")" = "$(whoami)" ] || die "Check owner failed, current owner is not same with CANN."
    log INFO "Check owner success!"
}

# The installer's delete_latest: latest and set_env.sh go, whatever version latest names.
delete_latest() { rm -f "$NNAL_DIR/latest" "$NNAL_DIR/set_env.sh"; }

uninstall_process() {   # uninstall_process DIR [y: remove nnal/atb when empty]
    [ -d "$1" ] || return 0
    log INFO "Ascend-cann-atb $(basename "$1") uninstall start!"
    delete_latest
    rm -rf "$1"
    if [ "${2:-n}" = y ] && [ -z "$(ls -A "$NNAL_DIR")" ]; then
        rm -rf "$NNAL_DIR"
        rmdir "$ROOT/nnal" 2>/dev/null || true
    fi
    log INFO "Ascend-cann-atb $(basename "$1") uninstall success!"
}

# The version's own scripts (vendor: <v>/scripts/uninstall.sh, create_version_softlink.sh).
version_scripts() {
    local scripts="$VDIR/scripts" say
    say='say() { echo "[cann-atb] [$(date +%Y%m%d-%H:%M:%S)] [$1] $2"; }'
    mkdir -p "$scripts"
    cat > "$scripts/uninstall.sh" <<EOF
#!/bin/bash
# NNAL $VERSION uninstall (simulated, after ATB's scripts/uninstall.sh): latest goes
# only when it names this version, set_env.sh always.
$say
atb="\$(cd "\$(dirname "\$(readlink -f "\$0")")/../.." && pwd)"
dir="\$atb/$VERSION"
[ -d "\$dir" ] || { say ERROR "Ascend-cann-atb dir of $VERSION is not exist, uninstall failed!"; exit 0; }
say INFO "Ascend-cann-atb uninstall $VERSION start!"
[ -d "\$atb/latest" ] && [ "\$(readlink -f "\$atb/latest")" = "\$dir" ] && rm -f "\$atb/latest"
rm -f "\$atb/set_env.sh"
rm -rf "\$dir"
[ -n "\$(ls "\$atb")" ] || rm -rf "\$atb"
say INFO "Ascend-cann-atb uninstall $VERSION success!"
EOF
    cat > "$scripts/create_version_softlink.sh" <<EOF
#!/bin/bash
# Makes NNAL $VERSION the one latest names (simulated, after ATB's
# scripts/create_version_softlink.sh: an absolute link, and the version's set_env.sh).
$say
set -e
atb="\$(cd "\$(dirname "\$(readlink -f "\$0")")/../.." && pwd)"
cd "\$atb"
rm -f latest set_env.sh
ln -s "\$atb/$VERSION" latest
cp "\$atb/$VERSION/atb/set_env.sh" "\$atb"
say INFO "Successfully switched latest symlink and set_env."
EOF
    chmod 550 "$scripts/uninstall.sh" "$scripts/create_version_softlink.sh"
}

install_to_path() {
    [ ! -d "$VDIR" ] || log INFO "The installation directory exists, uninstall first.."
    uninstall_process "$VDIR"
    for abi in 0 1; do
        d="$VDIR/atb/cxx_abi_$abi"
        mkdir -p "$d"/{lib,bin,examples,tests/atbopstest}
        cp -a files/lib/. "$d/lib/" 2>/dev/null || true
    done
    cat > "$VDIR/ascend_nnal_install.info" <<INFO
package_name=Ascend-cann-nnal
version=$VERSION
arch=$ARCH
os=linux
path=$VDIR
INFO
    copy_filled version.info "$VDIR/version.info"
    copy_filled atb_set_env.sh "$VDIR/atb/set_env.sh"
    version_scripts
    copy_filled set_env.sh "$NNAL_DIR/set_env.sh"
    (cd "$NNAL_DIR" && ln -snf "$VERSION" latest)
}

case "$MODE" in
    version) echo "$VERSION"; exit 0 ;;
    check) log INFO "check success, the package version is $VERSION."; exit 0 ;;
    uninstall)
        [ -d "$NNAL_DIR" ] || die "Uninstall failed, can not find the path of Ascend-cann-atb."
        log INFO "Ascend-cann-atb uninstall start!"
        uninstall_process "$VDIR" y
        exit 0 ;;
    upgrade)
        UPGRADING=y
        log INFO "Ascend-cann-atb uninstall start!"
        check_owner
        [ -d "$NNAL_DIR" ] || die "Upgrade failed, can not find the path of Ascend-cann-atb."
        [ -d "$NNAL_DIR/latest" ] && [ -f "$NNAL_DIR/set_env.sh" ] || die "Can not find file set_env.sh or latest!"
        version_dir="$(readlink -f "$NNAL_DIR/latest")"
        log INFO "Check upgrade path success!"
        backup="${version_dir}_recover"
        [ ! -d "$backup" ] || die "Upgrade failed, *_recover file is exist, can not back up the old version of Ascend-cann-atb."
        cp -rp "$version_dir" "$backup"
        cp -p "$NNAL_DIR/set_env.sh" "$NNAL_DIR/set_env_recover.sh"
        log INFO "back up the old Ascend-cann-atb version success!"
        power_cut backed_up
        uninstall_process "$version_dir"
        power_cut old_removed
        RECOVER=y
        install_to_path
        log INFO "finish install process!"
        rm -rf "$backup" "$NNAL_DIR/set_env_recover.sh"
        log INFO "finish remove back up version!"
        log INFO "Ascend-cann-atb upgrade success!"
        exit 0 ;;
    install)
        [ "$(id -u)" -eq 0 ] || [ "$INSTALL_PATH_GIVEN" = y ] || die "Non-root installation needs --install-path=<path>."
        log INFO "Install log save in $LOG_DIR/$LOG_FILE"
        check_owner
        install_to_path
        log INFO "Ascend-cann-atb install success!"
        exit 0 ;;
    *) die "Unsupported parameters, please use --install, --upgrade, --uninstall, --check or --version." ;;
esac

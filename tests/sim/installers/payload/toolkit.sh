#!/bin/bash
# Simulated CANN toolkit package, for both packaging generations:
#   up to 8.3  ROOT/ascend-toolkit/<v>, side by side; ascend-toolkit/latest a
#              directory of links into the running version (latest_manager.sh),
#              ascend-toolkit/set_env.sh
#   from 8.5   ROOT/cann-<v> with its own set_env.sh, ROOT/cann -> cann-<v>, and the
#              ascend-toolkit/{set_env.sh,latest} compatibility entry points.
# Reinstall, upgrade, rollback and uninstall as tests/sim/vendor.yaml
# lifecycle.toolkit_* describes, with the sources. Messages follow public
# install transcripts (6.3.RC1, 8.0.0) and the vendor's sub-package installer
# (hicann/runtime scripts/package/runtime/scripts/install.sh).
LOG_TAG=Toolkit LOG_STYLE=cann LOG_FILE=ascend_toolkit_install.log
. ./common.sh

recorded_root="$(info_get "$CANN_INFO" Install_Path)"
# --uninstall and --upgrade work where the record says (Install_Path).
if [ "$INSTALL_PATH_GIVEN" = n ] && [ -n "$recorded_root" ] && { [ "$MODE" = uninstall ] || [ "$MODE" = upgrade ]; }; then
    ROOT="$recorded_root"
fi
TOOLKIT_PACKAGES="runtime compiler hccl opp toolkit"
TK_DIR="$ROOT/ascend-toolkit"
HOME_DIR="${TOOLKIT_HOME_T//@ROOT@/$ROOT}"
LATEST="${TOOLKIT_LATEST_T//@ROOT@/$ROOT}"
ENV_SCRIPT="${ENV_SCRIPT_T//@ROOT@/$ROOT}"
COMPAT_LATEST="${COMPAT_LATEST_T//@ROOT@/$ROOT}"
COMPAT_ENV_SCRIPT="${COMPAT_ENV_SCRIPT_T//@ROOT@/$ROOT}"
INFO_FILE="$HOME_DIR/$ARCH-linux/ascend_toolkit_install.info"

manager() { bash ./latest_manager.sh --latest "$TK_DIR/latest" "$@"; }

# The installed versions of each layout.
toolkit_versions() {   # ascend-toolkit/<v>
    local d
    for d in "$TK_DIR"/*/; do
        d="$(basename "$d")"
        [ "$d" = latest ] || [ ! -d "$TK_DIR/$d" ] || [ -L "$TK_DIR/$d" ] || echo "$d"
    done
}
cann_versions() {      # cann-<v>
    local d
    for d in "$ROOT"/cann-*/; do [ -d "$d" ] && basename "$d" | sed 's/^cann-//'; done
}
running_toolkit() {    # the ascend-toolkit version latest runs
    [ -f "$TK_DIR/latest/version.cfg" ] || return 0
    sed -n 's/^toolkit_running_version=\[[^:]*:\(.*\)\]$/\1/p' "$TK_DIR/latest/version.cfg"
}
running_cann() {       # the cann-<v> the cann link names
    [ -L "$ROOT/cann" ] && readlink "$ROOT/cann" | sed 's/^cann-//' || true
}
listed() { echo "$*" | tr '\n' ' ' | sed 's/ *$//'; }

# --- uninstall ---------------------------------------------------------------
uninstall_toolkit_version() {   # ascend-toolkit/<v>: uninstall_toolkit_version V [--recreate]
    local v="$1"; shift
    # its kernels go with it (instg_0032: "Kernels are removed together with the toolkit")
    if [ -f "$TK_DIR/latest/version.cfg" ]; then
        manager --package "$TOOLKIT_PACKAGES opp_kernel" --version-dir "$v" "$@" package_uninstalled
    fi
    rm -rf "${TK_DIR:?}/$v"
}

uninstall_cann_version() {      # cann-<v>, with the ops package in it
    local v="$1"
    rm -rf "$ROOT/cann-$v"
    [ -e "$ROOT/cann" ] || rm -f "$ROOT/cann"
    [ -z "$COMPAT_LATEST" ] || { [ -e "$COMPAT_LATEST" ] || rm -f "$COMPAT_LATEST"; }
    [ -z "$COMPAT_ENV_SCRIPT" ] || { [ -e "$ROOT/cann" ] || rm -f "$COMPAT_ENV_SCRIPT"; }
}

# Nothing of a layout left: its entry points and the record go too.
cleanup_if_empty() {
    if [ -z "$(toolkit_versions)" ] && [ ! -L "$TK_DIR/latest" ]; then
        rm -rf "${TK_DIR:?}/latest"
        [ -L "$ROOT/cann" ] || rm -f "$TK_DIR/set_env.sh"
        rmdir "$TK_DIR" 2>/dev/null || true
    fi
    if [ -z "$(toolkit_versions)" ] && [ -z "$(cann_versions)" ]; then
        info_del "$CANN_INFO" Install_Path
        info_del "$CANN_INFO" Toolkit_InstallPath
        [ -s "$CANN_INFO" ] || rm -f "$CANN_INFO"
    fi
}

# --- install -----------------------------------------------------------------
# The version directory, shaped as a published one (`du -sh *` of
# ascend-toolkit/8.0.RC3, code index id 25232361519): <arch>-linux holds the
# libraries, bin, include and conf, linked from the top; acllib and ops link
# to runtime and opp.
copy_files() {
    local arch_dir="$HOME_DIR/$ARCH-linux" name
    mkdir -p "$arch_dir"/{lib64/plugin/opskernel,lib64/plugin/nnengine,include,bin,conf,script} \
             "$HOME_DIR"/{runtime,compiler,toolkit,hccl,python/site-packages,tools/aml/lib64} \
             "$HOME_DIR"/opp/built-in/op_impl/ai_core/tbe/{impl,kernel,config,op_tiling} "$HOME_DIR/opp/vendors"
    for name in lib64 include bin conf; do ln -sfn "$ARCH-linux/$name" "$HOME_DIR/$name"; done
    ln -sfn runtime "$HOME_DIR/acllib"
    ln -sfn opp "$HOME_DIR/ops"
    for component in $TOOLKIT_PACKAGES; do
        log INFO "install package CANN-$component-$INNER_VERSION-linux.$ARCH.run start"
    done
    cp -a files/lib64/. "$arch_dir/lib64/" 2>/dev/null || true
    [ -d files/tools ] && cp -a files/tools/. "$HOME_DIR/tools/"
    echo "load_priority=customize" > "$HOME_DIR/opp/vendors/config.ini"
    keep_installer "$arch_dir/script" "$arch_dir/script/uninstall.sh" "--install-path=$ROOT"
    if [ "$LAYOUT" = ascend-toolkit ]; then
        # the version switch the vendor ships in each version directory
        printf '#!/bin/bash\n# Makes CANN %s the running version in ascend-toolkit/latest (simulated; vendor: latest/var/manager.sh).\ninstall_path="$(cd "$(dirname "$(readlink -f "$0")")/.." && pwd)"\nexec bash "$install_path/latest/var/manager.sh" --version-dir %s create_version_softlink\n' \
            "$VERSION" "$VERSION" > "$HOME_DIR/create_version_softlink.sh"
        chmod 550 "$HOME_DIR/create_version_softlink.sh"
    fi
    copy_filled version.info "$INFO_FILE"
}

make_running() {
    if [ "$LAYOUT" = ascend-toolkit ]; then
        mkdir -p "$LATEST/var"
        cp latest_manager.sh "$LATEST/var/manager.sh"
        chmod 550 "$LATEST/var/manager.sh"
        manager --package "$TOOLKIT_PACKAGES" --version-dir "$VERSION" --version "$INNER_DOTTED" package_installed
        copy_filled set_env.sh "$ENV_SCRIPT"
    else
        copy_filled set_env.sh "$HOME_DIR/set_env.sh"
        ln -sfn "$LATEST_TARGET" "$LATEST"
        # cann/set_env.sh is cann-<v>/set_env.sh through the link
        mkdir -p "$(dirname "$COMPAT_LATEST")"
        rm -rf "$COMPAT_LATEST"
        ln -sfn "$HOME_DIR" "$COMPAT_LATEST"
        printf '# compatibility entry point: the CANN %s environment\n. "%s"\n' "$VERSION" "$ENV_SCRIPT" > "$COMPAT_ENV_SCRIPT"
    fi
}

# The driver version check of the sub-package installers (runtime install.sh
# ver_check): the driver's compatible_version must name this release's train.
driver_check() {
    local drv accepts train
    drv="$(info_get "$INSTALL_INFO" Driver_Install_Path_Param)"
    if [ -z "$drv" ]; then
        log WARNING "Cannot find the install path of driver."
        return 0
    fi
    [ -f "$drv/driver/version.info" ] || { log INFO "Check version matched!"; return 0; }   # ver_check.sh: no file, no check
    accepts="$(info_get "$drv/driver/version.info" compatible_version)"
    train="${INNER_VERSION%%SPC*}"
    if [[ "$accepts" == *"[$train]"* ]]; then
        log INFO "Check version matched!"
    elif [ "$QUIET" = y ]; then
        log WARNING "Check version does not matched!"
    else
        ask "Check version does not matched, do you want to continue? [y/n]" WARNING
    fi
}

install_version() {
    log INFO "LogFile:$LOG_DIR/$LOG_FILE"
    log INFO "install start"
    log INFO "The installation path is $ROOT."
    copy_files
    power_cut files_copied
    make_running
    for component in $TOOLKIT_PACKAGES; do
        log INFO "CANN-$component-$INNER_VERSION-linux.$ARCH.run --full --quiet --nox11 install success"
    done
    info_set "$CANN_INFO" Install_Path "$ROOT"
    info_set "$CANN_INFO" Toolkit_InstallPath "$HOME_DIR"
    log INFO "Write Toolkit_InstallPath to $CANN_INFO."
    local driver
    driver="$(info_get "$INSTALL_INFO" Driver_Install_Path_Param)"
    cat <<SUMMARY

===========
= Summary =
===========

Driver:   $([ -n "$driver" ] && echo "Installed in $driver/driver." || echo "Not installed.")
Toolkit:  Ascend-cann-toolkit_${VERSION}_linux-$ARCH $1 success, installed in $ROOT.

Please make sure that the environment variables have been configured.
-  To take effect for all users, you can add "source $ENV_SCRIPT" to /etc/profile.
-  To take effect for current user, you can exec command below: source $ENV_SCRIPT or add "source $ENV_SCRIPT" to ~/.bashrc.
SUMMARY
}

# CANN 8.5 and later refuse to go back with --upgrade (8.5.0 release note); the
# message is designed.
refuse_rollback() {
    die "CANN ${1:-$old_canns} does not support going back to an earlier version with --upgrade: uninstall CANN $1 with --uninstall, then install CANN $VERSION with --install."
}

case "$MODE" in
    version) echo "$VERSION"; exit 0 ;;
    check) log INFO "check success, the package version is $VERSION."; exit 0 ;;
    uninstall)
        [ -d "$HOME_DIR" ] || die "ERR_NO:0x0080;ERR_DES:Runfile is not installed in $ROOT, uninstall failed"
        if [ "$LAYOUT" = ascend-toolkit ]; then
            uninstall_toolkit_version "$VERSION" --recreate
        else
            uninstall_cann_version "$VERSION"
        fi
        cleanup_if_empty
        log INFO "Ascend-cann-toolkit_${VERSION}_linux-$ARCH uninstall success."
        exit 0 ;;
    install|upgrade) ;;
    *) die "Unsupported parameters, please use --install, --upgrade, --uninstall, --check or --version." ;;
esac

[ "$(id -u)" -eq 0 ] || [ "$INSTALL_PATH_GIVEN" = y ] || die "Non-root installation needs --install-path=<path>."
command -v python3 >/dev/null 2>&1 || die "There is no $PYTHON_LIST in the current environment !"
if [ "$INSTALL_PATH_GIVEN" = y ] && [ -n "$recorded_root" ] && [ "$recorded_root" != "$ROOT" ]; then
    # up to 8.0.x the path must be the recorded one; later releases take the new
    # one and keep the old record in a time-stamped folder (vendor.yaml lifecycle)
    if [ "$(version_key "$VERSION")" \< "$(version_key 8.1.RC1)" ]; then
        die "$CANN_INFO exists ! 'install-path' parameter are not supported."
    fi
    backup="$(dirname "$CANN_INFO")/$(date '+%Y%m%d%H%M%S')"
    mkdir -p "$backup" && cp -p "$CANN_INFO" "$backup/"
fi

driver_check   # before anything is removed: a "n" to its question leaves the node as it was
old_toolkits="$(listed "$(toolkit_versions)")"
old_canns="$(listed "$(cann_versions)")"
if [ "$MODE" = install ]; then
    if [ "$LAYOUT" = ascend-toolkit ] && [ -n "$old_canns" ]; then
        # the way back from 8.5 is --uninstall of the new version, then --install (8.5.0 release note)
        die "CANN $old_canns is installed in $ROOT: uninstall it with --uninstall before installing CANN $VERSION."
    fi
    if [ "$LAYOUT" = cann ] && [ -n "$old_toolkits" ]; then
        # "必须使用参数进行升级,或者先卸载所有历史版本 ... 否则可能会导致安装失败" (850 instg_0008): the simulator
        # refuses every time rather than failing sometimes, so that the way in is always taken
        die "Ascend-cann-toolkit $old_toolkits is installed in $TK_DIR: upgrade it to CANN $VERSION with --upgrade, or uninstall all of these versions before installing CANN $VERSION."
    fi
    if [ -d "$HOME_DIR" ]; then
        ask "Toolkit package has been installed on the path $ROOT, the version is $VERSION, and the version of this package is $VERSION, do you want to continue? [y/n]"
        if [ "$LAYOUT" = ascend-toolkit ]; then uninstall_toolkit_version "$VERSION"; else uninstall_cann_version "$VERSION"; fi
    fi
    install_version install
    exit 0
fi

# --upgrade: the running version goes, the new one comes in its place.
if [ "$LAYOUT" = ascend-toolkit ]; then
    [ -z "$old_canns" ] || refuse_rollback "$(running_cann)"
    running="$(running_toolkit)"
    [ -n "$running" ] || die "ERR_NO:0x0080;ERR_DES:Runfile is not installed in $ROOT, upgrade failed"
    uninstall_toolkit_version "$running"
    [ "$running" = "$VERSION" ] || [ ! -d "$HOME_DIR" ] || uninstall_toolkit_version "$VERSION"
else
    running="$(running_cann)"
    if [ -n "$running" ]; then
        [ ! "$(version_key "$VERSION")" \< "$(version_key "$running")" ] || refuse_rollback "$running"
        uninstall_cann_version "$running"
        [ "$running" = "$VERSION" ] || [ ! -d "$HOME_DIR" ] || uninstall_cann_version "$VERSION"
    elif [ -n "$old_toolkits" ]; then
        # from the ascend-toolkit layout: every old version goes (vendor.yaml lifecycle.toolkit_cann)
        for v in $old_toolkits; do uninstall_toolkit_version "$v"; done
        rm -rf "${TK_DIR:?}/latest" "$TK_DIR/set_env.sh"
    else
        die "ERR_NO:0x0080;ERR_DES:Runfile is not installed in $ROOT, upgrade failed"
    fi
fi
power_cut old_removed
install_version upgrade

#!/bin/bash
# Simulated CANN toolkit package, for both packaging generations:
#   up to 8.3  ROOT/ascend-toolkit/<v>, ascend-toolkit/latest -> <v>, ascend-toolkit/set_env.sh
#   from 8.5   ROOT/cann-<v> with its own set_env.sh, ROOT/cann -> cann-<v>, and the
#              ascend-toolkit/{set_env.sh,latest} compatibility entry points.
# Messages follow public install transcripts (6.3.RC1, 8.0.0).
LOG_TAG=Toolkit LOG_STYLE=cann LOG_FILE=ascend_toolkit_install.log
. ./common.sh

HOME_DIR="${TOOLKIT_HOME_T//@ROOT@/$ROOT}"
LATEST="${TOOLKIT_LATEST_T//@ROOT@/$ROOT}"
ENV_SCRIPT="${ENV_SCRIPT_T//@ROOT@/$ROOT}"
COMPAT_LATEST="${COMPAT_LATEST_T//@ROOT@/$ROOT}"
COMPAT_ENV_SCRIPT="${COMPAT_ENV_SCRIPT_T//@ROOT@/$ROOT}"
INFO_FILE="$HOME_DIR/$ARCH-linux/ascend_toolkit_install.info"

uninstall() {
    [ -f "$INFO_FILE" ] || die "Toolkit $VERSION is not installed in $ROOT."
    rm -rf "$HOME_DIR"
    for link in "$LATEST" "$COMPAT_LATEST"; do
        [ -n "$link" ] && [ -L "$link" ] && [ ! -e "$link" ] && rm -f "$link"
    done
    [ -z "$COMPAT_ENV_SCRIPT" ] || rm -f "$COMPAT_ENV_SCRIPT"
    [ -e "$LATEST" ] || rm -f "$ENV_SCRIPT" "$CANN_INFO"
    log INFO "Ascend-cann-toolkit_${VERSION}_linux-$ARCH uninstall success."
}

case "$MODE" in
    version) echo "$VERSION"; exit 0 ;;
    check) log INFO "check success, the package version is $VERSION."; exit 0 ;;
    uninstall) uninstall; exit 0 ;;
    install|upgrade) ;;
    *) die "Unsupported parameters, please use --install, --upgrade, --uninstall, --check or --version." ;;
esac

[ "$(id -u)" -eq 0 ] || [ "$INSTALL_PATH_GIVEN" = y ] || die "Non-root installation needs --install-path=<path>."
command -v python3 >/dev/null 2>&1 || die "There is no $PYTHON_LIST in the current environment !"
recorded="$(info_get "$CANN_INFO" Install_Path)"
if [ "$INSTALL_PATH_GIVEN" = y ] && [ -n "$recorded" ] && [ "$recorded" != "$ROOT" ]; then
    die "$CANN_INFO exists ! 'install-path' parameter are not supported."
fi
if [ "$MODE" = upgrade ] && [ ! -e "$LATEST" ]; then
    die "No installed toolkit was found in $ROOT, please use --install."
fi
log INFO "LogFile:$LOG_DIR/$LOG_FILE"
log INFO "install start"
log INFO "The installation path is $ROOT."
mkdir -p "$HOME_DIR/$ARCH-linux" "$HOME_DIR"/{lib64/plugin/opskernel,lib64/plugin/nnengine,runtime,compiler,toolkit,bin,python/site-packages,tools/aml/lib64} \
         "$HOME_DIR"/opp/built-in/op_impl/ai_core/tbe/{impl,kernel,config,op_tiling} "$HOME_DIR/opp/vendors"
for component in runtime compiler hccl opp toolkit; do
    log INFO "install package CANN-$component-$INNER_VERSION-linux.$ARCH.run start"
done
cp -a files/lib64/. "$HOME_DIR/lib64/" 2>/dev/null || true
[ -d files/tools ] && cp -a files/tools/. "$HOME_DIR/tools/"
echo "load_priority=customize" > "$HOME_DIR/opp/vendors/config.ini"
copy_filled version.info "$INFO_FILE"
: > "$HOME_DIR/version.cfg"
for component in runtime compiler hccl opp toolkit; do
    echo "${component}_running_version=[$INNER_VERSION:$VERSION]" >> "$HOME_DIR/version.cfg"
    echo "${component}_installed_version=[$INNER_VERSION:$VERSION]" >> "$HOME_DIR/version.cfg"
done
copy_filled set_env.sh "$HOME_DIR/set_env.sh"
mkdir -p "$(dirname "$LATEST")"
ln -sfn "$LATEST_TARGET" "$LATEST"
# the env script through the entry point (cann/set_env.sh is cann-<v>/set_env.sh through the link)
[ "$(readlink -f "$ENV_SCRIPT")" = "$(readlink -f "$HOME_DIR/set_env.sh")" ] || cp "$HOME_DIR/set_env.sh" "$ENV_SCRIPT"
if [ -n "$COMPAT_LATEST" ]; then
    mkdir -p "$(dirname "$COMPAT_LATEST")"
    ln -sfn "$HOME_DIR" "$COMPAT_LATEST"
    printf '# compatibility entry point: the CANN %s environment\n. "%s"\n' "$VERSION" "$ENV_SCRIPT" > "$COMPAT_ENV_SCRIPT"
fi
for component in runtime compiler hccl opp toolkit; do
    log INFO "CANN-$component-$INNER_VERSION-linux.$ARCH.run --full --quiet --nox11 install success"
done
info_set "$CANN_INFO" Install_Path "$ROOT"
log INFO "Write Toolkit_InstallPath to $CANN_INFO."
driver="$(info_get "$INSTALL_INFO" Driver_Install_Path_Param)"
cat <<SUMMARY

===========
= Summary =
===========

Driver:   $([ -n "$driver" ] && echo "Installed in $driver/driver." || echo "Not installed.")
Toolkit:  Ascend-cann-toolkit_${VERSION}_linux-$ARCH install success, installed in $ROOT.

Please make sure that the environment variables have been configured.
-  To take effect for all users, you can add "source $ENV_SCRIPT" to /etc/profile.
-  To take effect for current user, you can exec command below: source $ENV_SCRIPT or add "source $ENV_SCRIPT" to ~/.bashrc.
SUMMARY

#!/bin/bash
# Simulated CANN NNAE package (the run-time engine a production host installs
# instead of the toolkit, up to CANN 8.x): ROOT/nnae/<v>, nnae/latest -> <v>,
# nnae/set_env.sh, nnae/latest/ascend_nnae_install.info (CANN 8.0.0 install
# guide, File Paths). Messages as the toolkit's.
LOG_TAG=NNAE LOG_STYLE=cann LOG_FILE=ascend_nnae_install.log
. ./common.sh

NNAE_DIR="$ROOT/nnae"
HOME_DIR="$NNAE_DIR/$VERSION"

case "$MODE" in
    version) echo "$VERSION"; exit 0 ;;
    check) log INFO "check success, the package version is $VERSION."; exit 0 ;;
    uninstall)
        [ -f "$HOME_DIR/ascend_nnae_install.info" ] || die "NNAE $VERSION is not installed in $ROOT."
        rm -rf "$HOME_DIR"
        [ -e "$NNAE_DIR/latest" ] || rm -f "$NNAE_DIR/latest" "$NNAE_DIR/set_env.sh"
        log INFO "Ascend-cann-nnae_${VERSION}_linux-$ARCH uninstall success."
        exit 0 ;;
    install|upgrade) ;;
    *) die "Unsupported parameters, please use --install, --upgrade, --uninstall, --check or --version." ;;
esac

[ "$(id -u)" -eq 0 ] || [ "$INSTALL_PATH_GIVEN" = y ] || die "Non-root installation needs --install-path=<path>."
command -v python3 >/dev/null 2>&1 || die "There is no $PYTHON_LIST in the current environment !"
log INFO "LogFile:$LOG_DIR/$LOG_FILE"
log INFO "install start"
mkdir -p "$HOME_DIR"/{lib64/plugin/opskernel,lib64/plugin/nnengine,runtime,compiler,bin,python/site-packages} \
         "$HOME_DIR"/opp/built-in/op_impl/ai_core/tbe/{impl,kernel,config,op_tiling}
cp -a files/lib64/. "$HOME_DIR/lib64/" 2>/dev/null || true
copy_filled version.info "$HOME_DIR/ascend_nnae_install.info"
copy_filled set_env.sh "$NNAE_DIR/set_env.sh"
ln -sfn "$VERSION" "$NNAE_DIR/latest"
info_set "$CANN_INFO" Install_Path "$ROOT"
log INFO "Ascend-cann-nnae_${VERSION}_linux-$ARCH install success, installed in $ROOT."

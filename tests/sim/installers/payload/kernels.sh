#!/bin/bash
# Simulated CANN operator package: the kernels package up to 8.3
# (Ascend-cann-kernels-<chip>, into ascend-toolkit/<v>, its own opp_kernel in
# latest) and the ops package from 8.5 (Ascend-cann-<chip>-ops, into
# cann-<v>). Both need the toolkit of the same version in the same path; the
# 8.5.0 ops package installs with --install only (tests/sim/vendor.yaml
# lifecycle). The version-mismatch and ops refusals are designed messages.
. ./common.sh
LOG_TAG="$OPS_TAG" LOG_STYLE=cann LOG_FILE="ascend_${OPS_TAG}_install.log"

recorded_root="$(info_get "$CANN_INFO" Install_Path)"
if [ "$INSTALL_PATH_GIVEN" = n ] && [ -n "$recorded_root" ] && { [ "$MODE" = uninstall ] || [ "$MODE" = upgrade ]; }; then
    ROOT="$recorded_root"
fi
HOME_DIR="${TOOLKIT_HOME_T//@ROOT@/$ROOT}"
KERNEL_DIR="$HOME_DIR/opp/built-in/op_impl/ai_core/tbe/kernel/$OPP_KERNEL_DIR"
CONFIG_DIR="$HOME_DIR/opp/built-in/op_impl/ai_core/tbe/kernel/config/$OPP_KERNEL_DIR"
INFO_FILE="$HOME_DIR/$ARCH-linux/$OPS_INFO_NAME"
LATEST="$ROOT/ascend-toolkit/latest"
if [ "$LAYOUT" = ascend-toolkit ]; then
    OWN_DIR="$HOME_DIR/opp_kernel"                       # <v>/opp_kernel/script/uninstall.sh (instg_0032)
    SCRIPTS="$OWN_DIR/script" UNINSTALL="$OWN_DIR/script/uninstall.sh"
else
    OWN_DIR="$HOME_DIR/share/info/ops"                   # 8.5's per-package share/info/<package>
    SCRIPTS="$OWN_DIR/script" UNINSTALL="$HOME_DIR/$ARCH-linux/script/ops_uninstall.sh"   # 850 instg_0032
fi

uninstall_files() {
    # the manager first: the kept installer runs from inside OWN_DIR
    if [ "$LAYOUT" = ascend-toolkit ] && [ -f "$LATEST/version.cfg" ]; then
        bash ./latest_manager.sh --latest "$LATEST" --package opp_kernel --version-dir "$VERSION" package_uninstalled
    fi
    rm -rf "$KERNEL_DIR" "$CONFIG_DIR" "$INFO_FILE" "$OWN_DIR"
    [ "$LAYOUT" = ascend-toolkit ] || rm -f "$UNINSTALL"
}

install_files() {
    log INFO "LogFile:$LOG_DIR/$LOG_FILE"
    mkdir -p "$KERNEL_DIR" "$CONFIG_DIR" "$OWN_DIR"
    cp -a files/kernel/. "$KERNEL_DIR/"
    cat > "$INFO_FILE" <<INFO
package_name=$PACKAGE_NAME
version=$VERSION
innerversion=$INNER_VERSION
arch=$ARCH
os=linux
path=$HOME_DIR
INFO
    keep_installer "$SCRIPTS" "$UNINSTALL" "--install-path=$ROOT"
    if [ "$LAYOUT" = ascend-toolkit ]; then
        bash ./latest_manager.sh --latest "$LATEST" --package opp_kernel --version-dir "$VERSION" \
            --version "$INNER_DOTTED" package_installed
    fi
    log INFO "$OPP_PACKAGE-$INNER_VERSION-linux.$ARCH.run --devel --quiet --nox11 install success"
    log INFO "${PACKAGE_NAME}_${VERSION}_linux-$ARCH $1 success. The installation path is $(dirname "$HOME_DIR")."
}

case "$MODE" in
    version) echo "$VERSION"; exit 0 ;;
    check) log INFO "check success, the package version is $VERSION."; exit 0 ;;
    uninstall)
        [ -f "$INFO_FILE" ] || die "ERR_NO:0x0080;ERR_DES:Runfile is not installed in $ROOT, uninstall failed"
        uninstall_files
        log INFO "$PACKAGE_NAME uninstall success."
        exit 0 ;;
    install|upgrade) ;;
    *) die "Unsupported parameters, please use --install, --upgrade, --uninstall, --check or --version." ;;
esac

[ "$(id -u)" -eq 0 ] || [ "$INSTALL_PATH_GIVEN" = y ] || die "Non-root installation needs --install-path=<path>."
if [ "$MODE" = upgrade ] && [ "$LAYOUT" = cann ] && [ "$(echo "$VERSION" | cut -d. -f1,2)" = 8.5 ]; then
    # "该版本仅支持通过使用--install参数安装ops,不支持使用--upgrade参数进行升级" (850 instg_0030)
    die "$PACKAGE_NAME $VERSION can only be installed with --install, --upgrade is not supported."
fi
toolkit="$(info_get "$HOME_DIR/$ARCH-linux/ascend_toolkit_install.info" version)"
if [ -z "$toolkit" ] && [ "$LAYOUT" = ascend-toolkit ] && \
   ! ls "$ROOT"/ascend-toolkit/*/*-linux/ascend_toolkit_install.info "$ROOT"/nnae/*/ascend_nnae_install.info >/dev/null 2>&1; then
    # https://www.hiascend.com/document/caselibrary/detail/canncase_0024
    die "Kernel package depends on toolkit nnae or nnrt, none of these packages are installed in $ROOT."
fi
[ "$toolkit" = "$VERSION" ] || \
    die "The toolkit package of version $VERSION is not installed in $ROOT, please install toolkit first."
if [ "$MODE" = upgrade ]; then
    [ -f "$INFO_FILE" ] || die "ERR_NO:0x0080;ERR_DES:Runfile is not installed in $ROOT, upgrade failed"
    uninstall_files
    install_files upgrade
    exit 0
fi
if [ -f "$INFO_FILE" ]; then
    ask "$PACKAGE_NAME package has been installed on the path $ROOT, the version is $VERSION, and the version of this package is $VERSION, do you want to continue? [y/n]"
    uninstall_files
fi
install_files install

#!/bin/bash
# Simulated CANN operator package: the kernels package up to 8.3
# (Ascend-cann-kernels-<chip>) and the ops package from 8.5
# (Ascend-cann-<chip>-ops). Both install into the toolkit's tree and need the
# toolkit of the same version first (the refusal text is designed).
. ./common.sh
LOG_TAG="$OPS_TAG" LOG_STYLE=cann LOG_FILE="ascend_${OPS_TAG}_install.log"

HOME_DIR="${TOOLKIT_HOME_T//@ROOT@/$ROOT}"
KERNEL_DIR="$HOME_DIR/opp/built-in/op_impl/ai_core/tbe/kernel/$OPP_KERNEL_DIR"
INFO_FILE="$HOME_DIR/$ARCH-linux/$OPS_INFO_NAME"

case "$MODE" in
    version) echo "$VERSION"; exit 0 ;;
    check) log INFO "check success, the package version is $VERSION."; exit 0 ;;
    uninstall)
        [ -f "$INFO_FILE" ] || die "$PACKAGE_NAME is not installed in $ROOT."
        rm -rf "$KERNEL_DIR" "$HOME_DIR/opp/built-in/op_impl/ai_core/tbe/kernel/config/$OPP_KERNEL_DIR" "$INFO_FILE"
        sed -i '/^opp_kernel_/d' "$HOME_DIR/version.cfg"
        log INFO "$PACKAGE_NAME uninstall success."
        exit 0 ;;
    install|upgrade) ;;
    *) die "Unsupported parameters, please use --install, --upgrade, --uninstall, --check or --version." ;;
esac

[ "$(id -u)" -eq 0 ] || [ "$INSTALL_PATH_GIVEN" = y ] || die "Non-root installation needs --install-path=<path>."
toolkit="$(info_get "$HOME_DIR/$ARCH-linux/ascend_toolkit_install.info" version)"
[ "$toolkit" = "$VERSION" ] || \
    die "The toolkit package of version $VERSION is not installed in $ROOT, please install toolkit first."
log INFO "LogFile:$LOG_DIR/$LOG_FILE"
mkdir -p "$KERNEL_DIR" "$HOME_DIR/opp/built-in/op_impl/ai_core/tbe/kernel/config/$OPP_KERNEL_DIR"
cp -a files/kernel/. "$KERNEL_DIR/"
cat > "$INFO_FILE" <<INFO
package_name=$PACKAGE_NAME
version=$VERSION
innerversion=$INNER_VERSION
arch=$ARCH
os=linux
path=$HOME_DIR
INFO
sed -i '/^opp_kernel_/d' "$HOME_DIR/version.cfg"
echo "opp_kernel_running_version=[$INNER_VERSION:$VERSION]" >> "$HOME_DIR/version.cfg"
echo "opp_kernel_installed_version=[$INNER_VERSION:$VERSION]" >> "$HOME_DIR/version.cfg"
log INFO "$OPP_PACKAGE-$INNER_VERSION-linux.$ARCH.run --devel --quiet --nox11 install success"
log INFO "${PACKAGE_NAME}_${VERSION}_linux-$ARCH install success. The installation path is $(dirname "$HOME_DIR")."

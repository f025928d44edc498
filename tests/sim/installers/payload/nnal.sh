#!/bin/bash
# Simulated CANN NNAL package (ATB): ROOT/nnal/atb/<v>/atb/cxx_abi_{0,1},
# nnal/atb/latest -> <v>, nnal/atb/set_env.sh. Like the vendor's images, it
# expects the toolkit's set_env.sh to be sourced first (refusal text designed).
LOG_TAG=NNAL LOG_STYLE=cann LOG_FILE=ascend_nnal_install.log
. ./common.sh

NNAL_DIR="$ROOT/nnal/atb"
INFO_FILE="$NNAL_DIR/$VERSION/ascend_nnal_install.info"

case "$MODE" in
    version) echo "$VERSION"; exit 0 ;;
    check) log INFO "check success, the package version is $VERSION."; exit 0 ;;
    uninstall)
        [ -f "$INFO_FILE" ] || die "NNAL $VERSION is not installed in $ROOT."
        rm -rf "${NNAL_DIR:?}/$VERSION"
        [ -e "$NNAL_DIR/latest" ] || rm -f "$NNAL_DIR/latest" "$NNAL_DIR/set_env.sh"
        log INFO "Ascend-cann-nnal_${VERSION}_linux-$ARCH uninstall success."
        exit 0 ;;
    install|upgrade) ;;
    *) die "Unsupported parameters, please use --install, --upgrade, --uninstall, --check or --version." ;;
esac

[ "$(id -u)" -eq 0 ] || [ "$INSTALL_PATH_GIVEN" = y ] || die "Non-root installation needs --install-path=<path>."
[ -n "${ASCEND_TOOLKIT_HOME:-}" ] && [ -d "$ASCEND_TOOLKIT_HOME" ] || \
    die "The CANN toolkit environment is not set, please run 'source set_env.sh' of the toolkit first."
log INFO "LogFile:$LOG_DIR/$LOG_FILE"
for abi in 0 1; do
    d="$NNAL_DIR/$VERSION/atb/cxx_abi_$abi"
    mkdir -p "$d"/{lib,bin,examples,tests/atbopstest}
    cp -a files/lib/. "$d/lib/" 2>/dev/null || true
done
cat > "$INFO_FILE" <<INFO
package_name=Ascend-cann-nnal
version=$VERSION
arch=$ARCH
os=linux
path=$NNAL_DIR/$VERSION
INFO
copy_filled version.info "$NNAL_DIR/$VERSION/version.info"
copy_filled atb_set_env.sh "$NNAL_DIR/$VERSION/atb/set_env.sh"
ln -sfn "$VERSION" "$NNAL_DIR/latest"
copy_filled set_env.sh "$NNAL_DIR/set_env.sh"
log INFO "Ascend-cann-nnal_${VERSION}_linux-$ARCH install success, installed in $NNAL_DIR."

#!/bin/bash
# Simulated Ascend HDK NPU firmware package: /usr/local/Ascend/firmware.
# Writing new firmware exits 2 with the vendor's "Reboot now ..." message (the
# upgrade takes effect after a reboot); a reinstall of the same version changes
# nothing and exits 0. A first install needs the driver already in place.
LOG_TAG=Firmware LOG_STYLE=hdk LOG_FILE=ascend_install.log
. ./common.sh

FW_DIR="$ROOT/firmware"
installed="$(info_get "$FW_DIR/version.info" Version)"
driver="$(info_get "$ROOT/driver/version.info" Version)"

start() {
    log INFO "Start time: $(date '+%Y-%m-%d %H:%M:%S')"
    log INFO "LogFile: $LOG_DIR/ascend_install.log"
    log INFO "OperationLogFile: $LOG_DIR/operation.log"
}

case "$MODE" in
    version) echo "$FIRMWARE_VERSION"; exit 0 ;;
    check)
        start
        log INFO "base version is ${installed:-none}."
        exit 0 ;;
    uninstall)
        require_root
        [ -n "$installed" ] || die "Firmware package is not installed."
        rm -rf "$FW_DIR"
        info_del "$INSTALL_INFO" Firmware_Install_Type
        info_del "$INSTALL_INFO" Firmware_Install_Path_Param
        log INFO "Firmware package uninstalled successfully!"
        exit 0 ;;
    install|upgrade) ;;
    *) die "Unsupported parameters, please use --full, --upgrade, --uninstall, --check or --version." ;;
esac

require_root
start
if [ -z "$installed" ] && [ -z "$driver" ]; then
    die "The driver is not installed. On a first installation install the driver first, then the firmware."
fi
log WARNING "Do not power off or restart the system during the installation/upgrade"
if [ "$installed" = "$FIRMWARE_VERSION" ]; then
    log INFO "The firmware version $installed is already installed, no need to upgrade."
    log INFO "End time: $(date '+%Y-%m-%d %H:%M:%S')"
    exit 0
fi
log INFO "upgradePercentage: 0%"
mkdir -p "$FW_DIR/script"
copy_filled version.info "$FW_DIR/version.info"
# Flashed, not yet running: the node's next boot makes it active (tests/sim/node/boot.sh).
echo "$FIRMWARE_VERSION" > "$(dirname "$STATE_PATH")/firmware.pending"
info_set "$INSTALL_INFO" Firmware_Install_Type full
info_set "$INSTALL_INFO" Firmware_Install_Path_Param "$ROOT"
chips=$(grep -c '"phy_id"' "$STATE_PATH" 2>/dev/null || echo 0)
log INFO "upgradePercentage: 90%"
log INFO "upgradePercentage: 100%"
log INFO "The firmware of [$chips] chips are successfully upgraded."
log INFO "Firmware package installed successfully! Reboot now or after driver installation for the installation/upgrade to take effect."
log INFO "End time: $(date '+%Y-%m-%d %H:%M:%S')"
exit 2

#!/bin/bash
# Simulated Ascend HDK NPU firmware package: /usr/local/Ascend/firmware.
# Writing new firmware, newer or older (a rollback is the same --upgrade with
# the older package), exits 2 with the vendor's "Reboot now ..." message: it
# takes effect after a reboot. A reinstall of the same version changes nothing
# and exits 0. A first install needs the driver already in place. The
# firmware's installer is not public: its parameter rules are assumed to be
# the driver's (tests/sim/vendor.yaml lifecycle.hdk).
LOG_TAG=Firmware LOG_STYLE=hdk LOG_FILE=ascend_install.log
. ./common.sh

recorded="$(info_get "$INSTALL_INFO" Firmware_Install_Path_Param)"
[ "$INSTALL_PATH_GIVEN" = y ] || [ -z "$recorded" ] || ROOT="$recorded"
FW_DIR="$ROOT/firmware"
installed="$(info_get "$FW_DIR/version.info" Version)"
driver_root="$(info_get "$INSTALL_INFO" Driver_Install_Path_Param)"
driver="$( [ -n "$driver_root" ] && info_get "$driver_root/driver/version.info" Version || true)"

end() { log INFO "End time: $(date '+%Y-%m-%d %H:%M:%S')"; exit "$1"; }
usage_error() { log ERROR "ERR_NO:0x0004;ERR_DES:$1"; end 1; }

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
        [ "$NARGS" -eq 1 ] || usage_error "uninstall can't use with other parameters except force."
        [ -n "$installed" ] || die "Firmware package is not installed."
        rm -rf "$FW_DIR"
        info_del "$INSTALL_INFO" Firmware_Install_Type
        info_del "$INSTALL_INFO" Firmware_Install_Path_Param
        log INFO "Firmware package uninstalled successfully!"
        exit 0 ;;
esac

require_root
start
log WARNING "Do not power off or restart the system during the installation/upgrade"
[ "$MODES" -eq 1 ] || usage_error "The parameter needs to be used with full/debug/run/docker/upgrade/devel."
if [ "$MODE" = upgrade ] && [ "$FOR_ALL" = y ]; then usage_error "install-for-all param need used with full/debug/run/devel."; fi
if [ "$MODE" = upgrade ] && [ "$INSTALL_PATH_GIVEN" = y ]; then usage_error "install-path param need used with full/debug/run/docker/devel."; fi
if [ -z "$installed" ] && [ -z "$driver" ]; then
    die "The driver is not installed. On a first installation install the driver first, then the firmware."
fi
if [ "$installed" = "$FIRMWARE_VERSION" ]; then
    log INFO "The firmware version $installed is already installed, no need to upgrade."
    end 0
fi
[ -z "$installed" ] || log INFO "base version is $installed."
log INFO "upgradePercentage: 0%"
mkdir -p "$FW_DIR/script"
copy_filled version.info "$FW_DIR/version.info"
# Flashed, not yet running: the node's next boot makes it active (tests/sim/node/boot.sh).
echo "$FIRMWARE_VERSION" > "$(dirname "$STATE_PATH")/firmware.pending"
info_set "$INSTALL_INFO" Firmware_Install_Type full
info_set "$INSTALL_INFO" Firmware_Install_Path_Param "$ROOT"
chips=$(grep -o '"phy_id"' "$STATE_PATH" 2>/dev/null | wc -l)
log INFO "upgradePercentage: 90%"
log INFO "upgradePercentage: 100%"
log INFO "The firmware of [$chips] chips are successfully upgraded."
# "installed" for --full, "upgraded" for --upgrade (published logs, tests/sim/vendor.yaml lifecycle.hdk)
log INFO "Firmware package $([ "$MODE" = upgrade ] && echo upgraded || echo installed) successfully! Reboot now or after driver installation for the installation/upgrade to take effect."
end 2

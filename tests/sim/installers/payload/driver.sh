#!/bin/bash
# Simulated Ascend HDK NPU driver package: /usr/local/Ascend/driver, npu-smi,
# dcmi, hccn_tool, /etc/ascend_install.info and the device nodes.
# Message texts follow public install transcripts; the HwHiAiUser and
# "already installed" errors are designed (no public sample was found).
LOG_TAG=Driver LOG_STYLE=hdk LOG_FILE=ascend_install.log
. ./common.sh

DRIVER_DIR="$ROOT/driver"
VERSION_FILE="$DRIVER_DIR/version.info"
installed="$(info_get "$VERSION_FILE" Version)"

write_version_info() { copy_filled version.info "$VERSION_FILE"; }

# One /dev/davinciN per die in the node's device-state file, plus the
# management nodes. Major numbers are the simulator's own.
make_device_nodes() {
    local ids
    ids=$(grep -o '"phy_id": *[0-9]*' "$STATE_PATH" 2>/dev/null | grep -o '[0-9]*$')
    [ -n "$ids" ] || return 1
    for id in $ids; do
        [ -e "/dev/davinci$id" ] || mknod -m 660 "/dev/davinci$id" c 236 "$id"
    done
    [ -e /dev/davinci_manager ] || mknod -m 660 /dev/davinci_manager c 237 0
    [ -e /dev/devmm_svm ] || mknod -m 660 /dev/devmm_svm c 238 0
    [ -e /dev/hisi_hdc ] || mknod -m 660 /dev/hisi_hdc c 239 0
    chgrp "$RUN_GROUP" /dev/davinci* /dev/devmm_svm /dev/hisi_hdc 2>/dev/null || true
}

# The driver's kernel module creates the device nodes at every boot: the
# node's boot runs the hooks in BOOT_HOOKS (tests/sim/node/boot.sh).
BOOT_HOOKS=/usr/local/lib/npu-sim/boot.d
install_boot_hook() {
    mkdir -p "$BOOT_HOOKS"
    { echo "RUN_GROUP='$RUN_GROUP' STATE_PATH='$STATE_PATH'"; declare -f make_device_nodes; echo make_device_nodes; } \
        > "$BOOT_HOOKS/ascend-driver.sh"
}

remove_device_nodes() { rm -f /dev/davinci[0-9]* /dev/davinci_manager /dev/devmm_svm /dev/hisi_hdc; }

install_files() {
    mkdir -p "$DRIVER_DIR"/{lib64/common,lib64/driver,include,tools,script} /usr/local/dcmi /usr/local/sbin /usr/local/bin
    cp files/lib64/driver/* "$DRIVER_DIR/lib64/driver/"
    cp files/lib64/common/* "$DRIVER_DIR/lib64/common/"
    cp files/dcmi/* /usr/local/dcmi/
    install -m 755 files/hccn_tool "$DRIVER_DIR/tools/hccn_tool"
    install -m 755 files/npu-smi /usr/local/sbin/npu-smi
    ln -sf /usr/local/sbin/npu-smi /usr/local/bin/npu-smi
    install -m 755 uninstall.sh "$DRIVER_DIR/script/uninstall.sh"
    sed -i "s|@ROOT@|$ROOT|" "$DRIVER_DIR/script/uninstall.sh"
    write_version_info
    install_boot_hook
    info_set "$INSTALL_INFO" UserName "$RUN_USER"
    info_set "$INSTALL_INFO" UserGroup "$RUN_GROUP"
    info_set "$INSTALL_INFO" Driver_Install_Type full
    info_set "$INSTALL_INFO" Driver_Install_Path_Param "$ROOT"
    info_set "$INSTALL_INFO" Driver_Install_For_All "$([ "$FOR_ALL" = y ] && echo yes || echo no)"
}

start() {
    log INFO "Start time: $(date '+%Y-%m-%d %H:%M:%S')"
    log INFO "LogFile: $LOG_DIR/ascend_install.log"
    log INFO "OperationLogFile: $LOG_DIR/operation.log"
}

case "$MODE" in
    version) echo "$VERSION_FILE_TEXT"; exit 0 ;;
    check)
        start
        fw="$(info_get "$ROOT/firmware/version.info" package_version)"
        log INFO "base version is ${installed:-none}."
        if [ -n "$fw" ] && [ "$fw" != "$VERSION_FILE_TEXT" ]; then
            log ERROR "driver and firmware version relationship check failed, firmware package version is $fw"
            exit 1
        fi
        log INFO "driver and firmware version relationship check success"
        log INFO "End time: $(date '+%Y-%m-%d %H:%M:%S')"
        exit 0 ;;
    uninstall)
        require_root
        [ -n "$installed" ] || die "Driver package is not installed."
        "$DRIVER_DIR/script/uninstall.sh"
        exit $? ;;
    install|upgrade) ;;
    *) die "Unsupported parameters, please use --full, --upgrade, --uninstall, --check or --version." ;;
esac

require_root
start
log WARNING "Do not power off or restart the system during the installation/upgrade"
missing=""
for tool in lspci ifconfig; do command -v "$tool" >/dev/null 2>&1 || missing="$missing$tool,"; done
[ -z "$missing" ] || die "The list of missing tools: $missing"
getent group "$RUN_GROUP" >/dev/null && getent passwd "$RUN_USER" >/dev/null || \
    die "The user $RUN_USER or group $RUN_GROUP does not exist, please create them first (groupadd $RUN_GROUP; useradd -g $RUN_GROUP -d /home/$RUN_USER -m $RUN_USER -s /bin/bash)."
if [ "$MODE" = install ] && [ -n "$installed" ] && [ "$installed" != "$VERSION_FILE_TEXT" ]; then
    die "Driver package $installed has been installed, please use --upgrade to upgrade it to $VERSION_FILE_TEXT."
fi
if [ "$MODE" = upgrade ] && [ -z "$installed" ]; then
    die "Driver package is not installed, please use --full to install it."
fi
log INFO "set username and usergroup, $RUN_USER:$RUN_GROUP"
log INFO "driver install type: DKMS"
log INFO "upgradePercentage:10%"
install_files
log INFO "upgradePercentage:40%"
log INFO "upgradePercentage:90%"
log INFO "Waiting for device startup..."
if ! make_device_nodes; then
    log ERROR "Device startup failed, no davinci device was found"
    exit 1
fi
log INFO "Device startup success"
log INFO "upgradePercentage:100%"
log INFO "Driver package installed successfully! The new version takes effect immediately. "
log INFO "End time: $(date '+%Y-%m-%d %H:%M:%S')"

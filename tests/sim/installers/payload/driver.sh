#!/bin/bash
# Simulated Ascend HDK NPU driver package: /usr/local/Ascend/driver, npu-smi,
# dcmi, hccn_tool, /etc/ascend_install.info and the device nodes.
# Flow, parameter rules, messages and exit codes after the vendor's driver
# scripts (hicann/driver scripts/package/custom/driver/common/scripts:
# args_parse.sh, driver_install.sh, install.sh, run_driver_uninstall.sh;
# tests/sim/vendor.yaml lifecycle.hdk). The HwHiAiUser and missing-tool
# refusals are designed (no public sample was found).
LOG_TAG=Driver LOG_STYLE=hdk LOG_FILE=ascend_install.log
. ./common.sh

recorded="$(info_get "$INSTALL_INFO" Driver_Install_Path_Param)"
installed="$( [ -n "$recorded" ] && info_get "$recorded/driver/version.info" Version || true)"

end() { log INFO "End time: $(date '+%Y-%m-%d %H:%M:%S')"; exit "$1"; }   # exitLog
usage_error() { log ERROR "ERR_NO:0x0004;ERR_DES:$1"; end 1; }           # errorUsage

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

# A process holds /dev/davinci*: the device-state file's processes and busy
# fields, which npu-smi shows too (the vendor looks with fuser and /proc/*/fd).
devices_busy() {
    python3 - "$STATE_PATH" <<'PY'
import json, sys
try:
    state = json.load(open(sys.argv[1]))
except (OSError, ValueError):
    sys.exit(1)
dies = [d for card in state.get("npus", []) for d in card.get("chips", [])]
sys.exit(0 if any(d.get("processes") or d.get("busy") is not None for d in dies) else 1)
PY
}

refuse_if_busy() {   # driver_install.sh check_boot_status / exitInstallInfo
    [ "$FORCE" = n ] && devices_busy || return 0
    log ERROR "The davinci nodes are occupied by some processes, please stop processes and install or uninstall again, details in : $LOG_DIR/$LOG_FILE "
    log INFO "If you want to install or uninstall the driver forcibly, add the force parameter. For details, see [--help]."
    end 1
}

# The old driver's files and devices; the uninstall starts by dropping the
# completed-install mark (run_driver_uninstall.sh --uninstall).
remove_driver() {
    info_del "$INSTALL_INFO" Driver_Install_Status
    rm -rf "$recorded/driver" /usr/local/dcmi /usr/local/sbin/npu-smi /usr/local/bin/npu-smi
    rm -f "$BOOT_HOOKS/ascend-driver.sh"
    rm -f /dev/davinci[0-9]* /dev/davinci_manager /dev/devmm_svm /dev/hisi_hdc
}

# updateInstallInfo: UserName/UserGroup are kept from an earlier install.
write_install_info() {
    [ -n "$(info_get "$INSTALL_INFO" UserName)" ] || info_set "$INSTALL_INFO" UserName "$RUN_USER"
    [ -n "$(info_get "$INSTALL_INFO" UserGroup)" ] || info_set "$INSTALL_INFO" UserGroup "$RUN_GROUP"
    info_set "$INSTALL_INFO" Driver_Install_Type full
    info_set "$INSTALL_INFO" Driver_Install_Path_Param "$ROOT"
    info_set "$INSTALL_INFO" Driver_Install_For_All "$([ "$FOR_ALL" = y ] && echo yes || echo no)"
}

copy_files() {
    local dir="$ROOT/driver"
    mkdir -p "$dir"/{lib64/common,lib64/driver,include,tools,script} /usr/local/dcmi /usr/local/sbin /usr/local/bin
    cp files/lib64/driver/* "$dir/lib64/driver/"
    cp files/lib64/common/* "$dir/lib64/common/"
    cp files/dcmi/* /usr/local/dcmi/
    install -m 755 files/hccn_tool "$dir/tools/hccn_tool"
    install -m 755 files/npu-smi /usr/local/sbin/npu-smi
    ln -sf /usr/local/sbin/npu-smi /usr/local/bin/npu-smi
    keep_installer "$dir/script/installer" "$dir/script/uninstall.sh"
    copy_filled version.info "$dir/version.info"
    install_boot_hook
}

install_run() {   # installRun "Install" | "Upgrade"
    local done_word="${1,,}"
    done_word="${done_word/e/}ed"   # Install -> installed, Upgrade -> upgraded, as the vendor spells them
    write_install_info
    power_cut info_written
    log INFO "set username and usergroup, $RUN_USER:$RUN_GROUP"
    log INFO "driver install type: DKMS"
    log INFO "upgradePercentage:10%"
    copy_files
    log INFO "upgradePercentage:40%"
    log INFO "upgradePercentage:90%"
    log INFO "Waiting for device startup..."
    if ! make_device_nodes; then
        log ERROR "Device startup failed, no davinci device was found"
        log INFO "Failed to ${1,,} driver package, please retry after uninstall and reboot!"
        end 1
    fi
    log INFO "upgradePercentage:100%"
    # --force: no hot reset was set up, the new driver runs after a reboot (exit 2).
    local rc=0
    if [ "$FORCE" = y ]; then
        log INFO "Driver package $done_word successfully! Reboot needed for installation/upgrade to take effect! "
        rc=2
    else
        log INFO "Driver package $done_word successfully! The new version takes effect immediately. "
    fi
    echo "Driver_Install_Status=complete" >> "$INSTALL_INFO"   # install.sh statusUpdate
    end "$rc"
}

case "$MODE" in
    version) echo "$VERSION_FILE_TEXT"; exit 0 ;;
    check)
        log INFO "Start time: $(date '+%Y-%m-%d %H:%M:%S')"
        fw="$(info_get "${recorded:-$ROOT}/firmware/version.info" package_version)"
        log INFO "base version is ${installed:-none}."
        if [ -n "$fw" ] && [ "$fw" != "$VERSION_FILE_TEXT" ]; then
            log ERROR "driver and firmware version relationship check failed, firmware package version is $fw"
            exit 1
        fi
        log INFO "driver and firmware version relationship check success"
        end 0 ;;
esac

[ "$(id -u)" -eq 0 ] || { log ERROR "ERR_NO:0x0093;ERR_DES:do not have root permission, operation failed, please use root permission!"; exit 1; }
log INFO "Start time: $(date '+%Y-%m-%d %H:%M:%S')"
log INFO "LogFile: $LOG_DIR/ascend_install.log"
log INFO "OperationLogFile: $LOG_DIR/operation.log"
if [ -n "$installed" ]; then log INFO "base version is $installed."; fi
[ "$MODE" = uninstall ] || log WARNING "Do not power off or restart the system during the installation/upgrade"

# args_parse.sh unsupportParam
if [ "$MODE" = uninstall ]; then
    [ "$NARGS" -eq 1 ] || { [ "$FORCE" = y ] && [ "$NARGS" -eq 2 ]; } || \
        usage_error "uninstall can't use with other parameters except force."
else
    [ "$MODES" -le 1 ] || usage_error "only support one type: full/debug/run/docker/devel, operation failed!"
    if [ "$MODES" -ne 1 ]; then
        if [ "$FORCE" = y ]; then usage_error "The parameter needs to be used with full/debug/run/upgrade/uninstall."; fi
        usage_error "The parameter needs to be used with full/debug/run/docker/upgrade/devel."
    fi
    if [ "$MODE" = upgrade ] && [ "$FOR_ALL" = y ]; then
        usage_error "install-for-all param need used with full/debug/run/devel."
    fi
    if [ "$MODE" = upgrade ] && [ "$INSTALL_PATH_GIVEN" = y ]; then
        usage_error "install-path param need used with full/debug/run/docker/devel."
    fi
    if [ "$USER_GIVEN" != "$GROUP_GIVEN" ]; then
        log ERROR "ERR_NO:0x0004;ERR_DES:Username and usergroup are not specified at the same time."
        log ERROR "Please input the right params and try again."
        end 1
    fi
    if [ "$MODE" = upgrade ] && [ "$USER_GIVEN" = y ]; then
        usage_error "install-username and install-usergroup params need used with full/debug/run/docker/devel."
    fi
fi

if [ "$MODE" = uninstall ]; then
    [ -n "$recorded" ] || { log ERROR "ERR_NO:0x0080;ERR_DES:Driver package is not installed on this device, uninstall failed"; end 1; }
    refuse_if_busy
    remove_driver
    info_del "$INSTALL_INFO" Driver_Install_Path_Param
    info_del "$INSTALL_INFO" Driver_Install_Type
    info_del "$INSTALL_INFO" Driver_Install_Mode
    info_del "$INSTALL_INFO" Driver_Install_For_All
    grep -qi "Install_Path_Param" "$INSTALL_INFO" 2>/dev/null || rm -f "$INSTALL_INFO"
    rmdir "$recorded" 2>/dev/null || true   # the install path, when nothing else is left in it
    if [ "$FORCE" = y ]; then
        log INFO "Driver package uninstalled successfully! Reboot needed for uninstallation to take effect! "
    else
        log INFO "Driver package uninstalled successfully! Uninstallation takes effect immediately. "
    fi
    end 0
fi

missing=""
for tool in lspci ifconfig; do command -v "$tool" >/dev/null 2>&1 || missing="$missing$tool,"; done
[ -z "$missing" ] || die "The list of missing tools: $missing"

if [ -z "$recorded" ]; then
    # First installation: --full and --upgrade both install (driver_install.sh script entry).
    getent group "$RUN_GROUP" >/dev/null && getent passwd "$RUN_USER" >/dev/null || \
        die "The user $RUN_USER or group $RUN_GROUP does not exist, please create them first (groupadd $RUN_GROUP; useradd -g $RUN_GROUP -d /home/$RUN_USER -m $RUN_USER -s /bin/bash)."
    install_run Install
fi

# A driver is recorded: overwrite (--full) or upgrade, each the old driver's
# uninstall and then the install, at the recorded path unless --full names another.
if [ "$MODE" = upgrade ]; then
    ROOT="$recorded"
    RUN_USER="$(info_get "$INSTALL_INFO" UserName)" RUN_GROUP="$(info_get "$INSTALL_INFO" UserGroup)"
    [ "$(info_get "$INSTALL_INFO" Driver_Install_For_All)" = yes ] && FOR_ALL=y
else
    if [ "$USER_GIVEN" = y ] && { [ "$RUN_USER" != "$(info_get "$INSTALL_INFO" UserName)" ] || \
                                  [ "$RUN_GROUP" != "$(info_get "$INSTALL_INFO" UserGroup)" ]; }; then
        usage_error_095="ERR_NO:0x0095;ERR_DES:The user and group are not same with last installation,do not support overwriting installation"
        log ERROR "$usage_error_095"; end 1
    fi
    [ "$INSTALL_PATH_GIVEN" = y ] || ROOT="$recorded"
    ask "Driver package has been installed on the path $recorded, the version is ${installed:-none}, and the version of this package is $VERSION_FILE_TEXT,do you want to continue?  [y/n] "
fi
refuse_if_busy
remove_driver
power_cut old_removed
if [ "$MODE" = upgrade ]; then install_run Upgrade; else install_run Install; fi

#!/bin/bash
# Simulated /usr/local/Ascend/driver/script/uninstall.sh.
ROOT="@ROOT@"
rm -rf "$ROOT/driver" /usr/local/dcmi /usr/local/sbin/npu-smi /usr/local/bin/npu-smi
rm -f /usr/local/lib/npu-sim/boot.d/ascend-driver.sh
rm -f /dev/davinci[0-9]* /dev/davinci_manager /dev/devmm_svm /dev/hisi_hdc
[ -f /etc/ascend_install.info ] && sed -i '/^Driver_/d' /etc/ascend_install.info
echo "[Driver] [$(date '+%Y-%m-%d %H:%M:%S')] [INFO]Driver package uninstalled successfully!"

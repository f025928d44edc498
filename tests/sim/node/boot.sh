#!/bin/bash
# What booting a simulated node does (podman starts it again after `shutdown -r`):
# firmware flashed before the reboot becomes the running firmware, installed
# drivers bring their devices up (their hooks in boot.d), then sshd starts.
# The device state under /etc/npu-sim is re-read by every npu-smi call.
set -e
# A machine-id of its own at first boot, as systemd-machine-id-setup gives a
# real server (a random v4 UUID, written without its dashes).
if [ ! -s /etc/machine-id ]; then
    tr -d '-' < /proc/sys/kernel/random/uuid > /etc/machine-id
fi
hw=/etc/npu-sim
if [ -f "$hw/firmware.pending" ]; then
    mv "$hw/firmware.pending" "$hw/firmware.running"
fi
for hook in /usr/local/lib/npu-sim/boot.d/*.sh; do
    [ -f "$hook" ] && bash "$hook" || true
done
mkdir -p /run/sshd
ssh-keygen -A >/dev/null
exec /usr/sbin/sshd -D -e

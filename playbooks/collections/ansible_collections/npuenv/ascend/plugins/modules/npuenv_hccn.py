"""The documentation of the npuenv_hccn action (plugins/action/npuenv_hccn.py), which runs on the controller
and is what Ansible calls by this name: ansible-doc reads a module's file for it."""

DOCUMENTATION = r"""
module: npuenv_hccn
short_description: Set the NPU devices' IPs and netdetect addresses, write /etc/hccn.conf and check the links
description:
  - Reads every device's IP, netdetect address, link and net health with one C(hccn_tool) survey on the node
    and reads it on the controller; sets the IPs (with O(netmask)) and netdetect addresses that differ and reads
    again, in one more command; writes O(conf) (with npuenv.ascend.npuenv_files) when it differs.
  - Fails when C(hccn_tool) is missing (except in check mode), when setting fails, or, with O(check_health), when a
    device's link is not UP or its net health not Success.
  - Supports check mode (reads, says what it would set, sets nothing) and diff mode (of O(conf)).
options:
  tool:
    description: The driver's C(hccn_tool).
    type: path
    required: true
  device_ips:
    description: One IPv4 address per device, in device order.
    type: list
    elements: str
    required: true
  netmask:
    description: The devices' netmask.
    type: str
    required: true
  netdetect_address:
    description: The address each device probes for net health; empty sets none.
    type: str
    required: true
  conf:
    description: The persistent configuration the driver reads at boot.
    type: path
    required: true
  check_health:
    description: Fail unless every link is UP and net health is Success.
    type: bool
    default: true
"""

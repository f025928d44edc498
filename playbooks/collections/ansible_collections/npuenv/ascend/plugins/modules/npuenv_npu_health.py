"""The documentation of the npuenv_npu_health action (plugins/action/npuenv_npu_health.py), which runs on the
controller and is what Ansible calls by this name: ansible-doc reads a module's file for it."""

DOCUMENTATION = r"""
module: npuenv_npu_health
short_description: Fail when npu-smi cannot reach the NPUs or names one in a failing health state
description:
  - Runs C(npu-smi info) on the node and reads its device table on the controller; fails when npu-smi exits
    non-zero, lists no NPU chip, or gives a chip one of the O(failing) health states.
  - Changes nothing; runs in check mode too.
options:
  failing:
    description: The npu-smi health states that fail the node.
    type: list
    elements: str
    required: true
"""

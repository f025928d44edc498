"""The documentation of the npuenv_stage action (plugins/action/npuenv_stage.py), which runs on the
controller and is what Ansible calls by this name: ansible-doc reads a module's file for it."""

DOCUMENTATION = r"""
module: npuenv_stage
short_description: Stage verified files in a folder on the node, sending only those whose sha256 differs
description:
  - Hashes the files already in C(dest) on the node (one command), sends the ones whose sha256 is not the
    expected one, and moves each into place only once its sha256 on the node is the expected one.
  - Check mode reports what would be sent and sends nothing.
options:
  dest:
    description: The folder on the node (made when missing, mode 0755).
    type: str
    required: true
  files:
    description: "Each: C(path) (on the controller), C(name) (in dest), C(sha256) (hex)."
    type: list
    elements: dict
    required: true
  mode:
    description: The staged files' mode (octal text).
    type: str
    default: "0700"
"""

"""The documentation of the npuenv_artefact action (plugins/action/npuenv_artefact.py), which runs on the
controller and is what Ansible calls by this name: ansible-doc reads a module's file for it."""

DOCUMENTATION = r"""
module: npuenv_artefact
short_description: Run npuenv's validation artefact on the node, copying it only when the node lacks it
description:
  - Runs C(PYTHON FOLDER/npuenv-validate-DIGEST.pyz ARGV...) on the node and returns its rc, stdout and stderr.
  - The node's copy is run only when it and its folder belong to the user the command runs as and its sha256 is
    DIGEST; otherwise the artefact is copied there first (checked against DIGEST before it replaces anything) and
    older copies are removed.
options:
  artefact:
    description: The artefact on the controller.
    type: path
    required: true
  digest:
    description: The artefact's sha256 (hex); the node keeps the file under its first 16 characters.
    type: str
    required: true
  argv:
    description: The artefact's arguments, each passed as one word.
    type: list
    elements: str
    default: []
  python:
    description: The node's interpreter that runs the artefact (3.10 or newer).
    type: str
    default: /usr/bin/python3
  folder:
    description: Where the node keeps the artefact (made mode 0700; it and the folder holding it must belong to the
      user the command runs as). By default /var/cache/npuenv/validate for root, else ~/.cache/npuenv/validate.
    type: str
"""

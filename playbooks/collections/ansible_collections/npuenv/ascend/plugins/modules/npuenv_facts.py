"""The documentation of the npuenv_facts action (plugins/action/npuenv_facts.py), which runs on the
controller and is what Ansible calls by this name: ansible-doc reads a module's file for it."""

DOCUMENTATION = r"""
module: npuenv_facts
short_description: Run npuenv's validation artefact in its facts mode, copying it once
description:
  - Runs C(PYTHON FOLDER/npuenv-validate-DIGEST.pyz --facts) on the node and returns its rc and stdout, as
    npuenv_artefact does (the node's copy checked against DIGEST before it is run, copied when it is not whole).
options:
  artefact:
    description: The artefact on the controller.
    type: path
    required: true
  digest:
    description: The artefact's sha256 (hex); the node keeps the file under its first 16 characters.
    type: str
    required: true
  python:
    description: The node's interpreter that runs the artefact (3.10 or newer).
    type: str
    default: /usr/bin/python3
  folder:
    description: Where the node keeps the artefact (made mode 0700; it and the folder holding it must belong to the
      user the command runs as).
    type: str
    default: /var/cache/npuenv/status
"""

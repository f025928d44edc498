"""Run the validation artefact's facts mode on a node (`npuenv status`): npuenv_artefact with
the arguments fixed to --facts and the artefact kept in the status folder (validate keeps its
own, so that the two never replace each other's copy)."""
from __future__ import annotations


DOCUMENTATION = r"""
name: npuenv_facts
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


def _base():
    """npuenv_artefact's ActionModule, loaded from the file beside this one (Ansible loads each plugin file
    under a name of its own, and the project's tests import it as a package module: the path serves both)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).with_name("npuenv_artefact.py")
    spec = importlib.util.spec_from_file_location("npuenv_action_artefact", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.ActionModule


class ActionModule(_base()):
    _VALID_ARGS = frozenset(("artefact", "digest", "python", "folder"))
    FIXED_ARGV = ["--facts"]
    FOLDER = "/var/cache/npuenv/status"

"""Run the validation artefact's facts mode on a node (`npuenv status`): npuenv_artefact with
the arguments fixed to --facts and the artefact kept in the status folder (validate keeps its
own, so that the two never replace each other's copy)."""
from __future__ import annotations


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

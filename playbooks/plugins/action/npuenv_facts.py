"""Run the validation artefact's facts mode on a node (`npuenv status`), with
the artefact kept on the node under its digest: a node that has it runs it at
once (one command, no module), one that has not gets it copied first (one
transfer) and keeps it for the next run; older copies are removed then."""
from __future__ import annotations

import re
import shlex

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase

DOCUMENTATION = r"""
name: npuenv_facts
short_description: Run npuenv's validation artefact in its facts mode, copying it once
description:
  - Runs C(PYTHON FOLDER/npuenv-validate-DIGEST.pyz --facts) on the node and returns its rc and stdout.
  - When the node does not have that file (owned by the user the command runs as), copies the artefact
    there first, checks its sha256 and removes older copies.
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

# The node's answer when it lacks the artefact (sh's own codes stop at 128+signals; python's at 2).
MISSING = 97
_DIGEST = re.compile(r"[0-9a-f]{64}")
_PATH = re.compile(r"/[A-Za-z0-9_./+-]*")


class ActionModule(ActionBase):
    # False: ActionBase would make a remote temporary folder on every run (one more SSH round trip, and
    # left behind); it is made here only when the artefact is copied, and removed then.
    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset(("artefact", "digest", "python", "folder"))

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        args = self._task.args
        digest, python = str(args.get("digest", "")), str(args.get("python") or "/usr/bin/python3")
        folder = str(args.get("folder") or "/var/cache/npuenv/status").rstrip("/")
        if not _DIGEST.fullmatch(digest):
            raise AnsibleActionFail(f"digest {digest!r} is not a sha256 in hex")
        for name, value in (("python", python), ("folder", folder)):
            if not _PATH.fullmatch(value) or "/../" in value + "/":
                raise AnsibleActionFail(f"{name} {value!r} is not a plain absolute path")
        remote = f"{folder}/npuenv-validate-{digest[:16]}.pyz"
        q = shlex.quote
        # Only a file and folders of the user it runs as (root): nobody else's file is ever run.
        ours = (f"[ -O {q(folder.rsplit('/', 1)[0] or '/')} ] && [ -O {q(folder)} ] && [ ! -L {q(folder)} ] && "
                f"[ -O {q(remote)} ] && [ -f {q(remote)} ]")
        run = f"exec {q(python)} {q(remote)} --facts"
        answer = self._low_level_execute_command(f"if {ours}; then {run}; else exit {MISSING}; fi", sudoable=True)
        copied = False
        if answer["rc"] == MISSING:
            copied = True
            tmp_dir = self._make_tmp_path()
            try:
                staged = self._connection._shell.join_path(tmp_dir, "npuenv-validate.pyz")
                self._transfer_file(str(args["artefact"]), staged)
                self._fixup_perms2((tmp_dir, staged), execute=False)
                # Copied under a private name, checked, then moved into place: a half-copied file is never run.
                install = (
                    f"set -e; umask 077; mkdir -p {q(folder)}; "
                    f"[ -O {q(folder.rsplit('/', 1)[0] or '/')} ] && [ -O {q(folder)} ] && [ ! -L {q(folder)} ] || "
                    f"{{ echo 'npuenv: {folder} belongs to another user; remove it' >&2; exit 3; }}; "
                    f"chmod 0700 {q(folder)}; part=$(mktemp {q(folder)}/.npuenv-validate.XXXXXX); "
                    f"cat {q(staged)} > \"$part\"; "
                    f"echo \"{digest}  $part\" | sha256sum -c --status || "
                    f"{{ rm -f \"$part\"; echo 'npuenv: the copied artefact does not match its sha256' >&2; "
                    f"exit 3; }}; "
                    f"for old in {q(folder)}/npuenv-validate-*.pyz; do [ \"$old\" = {q(remote)} ] || rm -f \"$old\"; "
                    f"done; mv -f \"$part\" {q(remote)}; {run}")
                answer = self._low_level_execute_command(install, sudoable=True)
            finally:
                self._remove_tmp_path(tmp_dir)
        result.update(rc=answer["rc"], stdout=answer.get("stdout", ""), stderr=answer.get("stderr", ""),
                      copied=copied, changed=False)
        return result

"""Run npuenv's validation artefact on a node, the artefact kept there under its
digest: a node whose copy is whole runs it at once (one command, no module, no
temporary folder), one that has none, or a copy that does not match the digest,
gets it copied first (one transfer) and keeps it for the next run; older copies
are removed then. The copy is checked against the digest before every run, so a
corrupt or altered file is replaced, never run."""
from __future__ import annotations

import re
import shlex

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase

# The node's answer when it lacks a whole copy (sh's own codes stop at 128+signals; the artefact's at 2).
MISSING = 97
_DIGEST = re.compile(r"[0-9a-f]{64}")
_PATH = re.compile(r"/[A-Za-z0-9_./+-]*")
# Where the node keeps the artefact when the task names no folder: root's cache, or the login user's
# own when the command does not run as root (no become), so that validation needs no sudo.
DEFAULT_FOLDER = 'd=/var/cache/npuenv/validate; [ "$(id -u)" = 0 ] || d="$HOME/.cache/npuenv/validate"'


class ActionModule(ActionBase):
    # False: ActionBase would make a remote temporary folder on every run (one more SSH round trip, and
    # left behind); it is made here only when the artefact is copied, and removed then.
    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset(("artefact", "digest", "argv", "python", "folder"))
    # What a subclass fixes (npuenv_facts: the facts mode, in the status folder).
    FIXED_ARGV: list[str] | None = None
    FOLDER: str | None = None

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        args = self._task.args
        digest, python = str(args.get("digest", "")), str(args.get("python") or "/usr/bin/python3")
        folder = args.get("folder") or self.FOLDER
        argv = self.FIXED_ARGV if self.FIXED_ARGV is not None else args.get("argv") or []
        if not _DIGEST.fullmatch(digest):
            raise AnsibleActionFail(f"digest {digest!r} is not a sha256 in hex")
        checked = [("python", python)] + ([("folder", str(folder).rstrip("/"))] if folder else [])
        for name, value in checked:
            if not _PATH.fullmatch(value) or "/../" in value + "/":
                raise AnsibleActionFail(f"{name} {value!r} is not a plain absolute path")
        if not isinstance(argv, list) or not all(isinstance(a, str) and "\0" not in a for a in argv):
            raise AnsibleActionFail(f"argv {argv!r} is not a list of strings")
        q = shlex.quote
        # Every path below is "$d" or "$f", set once here; every value from the task is quoted.
        where = (f"d={q(str(folder).rstrip('/'))}" if folder else DEFAULT_FOLDER) + \
            f'; f="$d/npuenv-validate-{digest[:16]}.pyz"'
        # Only a file and folders of the user it runs as (root): nobody else's file is ever run.
        ours = '[ -O "${d%/*}/." ] && [ -O "$d" ] && [ ! -L "$d" ]'

        def whole(path: str) -> str:
            """A test that the file at ``path`` (a quoted shell word) is the artefact: its sha256 is the digest."""
            return f'h=$(sha256sum < {path}) && [ "${{h%% *}}" = {digest} ]'

        cached_is_whole, part_is_whole = whole('"$f"'), whole('"$part"')

        run = f'exec {q(python)} "$f"' + "".join(f" {q(a)}" for a in argv)
        answer = self._low_level_execute_command(
            f'{where}; if {ours} && [ -O "$f" ] && [ -f "$f" ] && [ ! -L "$f" ] && {cached_is_whole}; then {run}; '
            f"else exit {MISSING}; fi", sudoable=True)
        copied = False
        if answer["rc"] == MISSING:
            copied = True
            tmp_dir = self._make_tmp_path()
            try:
                staged = self._connection._shell.join_path(tmp_dir, "npuenv-validate.pyz")
                self._transfer_file(str(args["artefact"]), staged)
                self._fixup_perms2((tmp_dir, staged), execute=False)
                # Copied under a private name, checked, then moved into place: a half-copied or altered
                # file is never run. A part left by an interrupted copy goes once it is a day old.
                install = (
                    f"set -e; umask 077; {where}; mkdir -p \"$d\"; "
                    f"{ours} || {{ echo \"npuenv: $d belongs to another user; remove it\" >&2; exit 3; }}; "
                    f'chmod 0700 "$d"; part=$(mktemp "$d/.npuenv-validate.XXXXXX"); '
                    f'cat {q(staged)} > "$part"; '
                    f"{part_is_whole} || {{ rm -f \"$part\"; echo 'npuenv: the copied artefact does not "
                    f"match its sha256' >&2; exit 3; }}; "
                    f'for old in "$d"/npuenv-validate-*.pyz; do [ "$old" = "$f" ] || rm -f "$old"; done; '
                    f'find "$d" -maxdepth 1 -name ".npuenv-validate.*" -mtime +0 -delete; '
                    f'mv -f "$part" "$f"; {run}')
                answer = self._low_level_execute_command(install, sudoable=True)
            finally:
                self._remove_tmp_path(tmp_dir)
        result.update(rc=answer["rc"], stdout=answer.get("stdout", ""), stderr=answer.get("stderr", ""),
                      copied=copied, changed=False)
        return result

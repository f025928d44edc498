"""Put files the controller has verified into a folder on the node, sending only
those whose sha256 there differs. The expected sha256 comes with each file (the
lock pins the installers'; the wheelhouse archive's is taken once when it is
packed), so the controller reads none of them again for each host: the copy
module would hash every file on the controller for every host (a CANN toolkit
is gigabytes) and run two modules per file. The node hashes what it has, in one
command; the files that differ are sent, moved into place and checked again."""
from __future__ import annotations

import re
import shlex

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase

_SHA256 = re.compile(r"[0-9a-f]{64}")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")
_PATH = re.compile(r"/[A-Za-z0-9_./+-]*")
_MODE = re.compile(r"0?[0-7]{3}")
# What the node answers for a file it does not have.
MISSING = "missing"


class ActionModule(ActionBase):
    # Its own temporary folder, made only when something is sent (ActionBase would make one every run).
    TRANSFERS_FILES = False
    _VALID_ARGS = frozenset(("dest", "files", "mode"))

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        dest, mode = str(self._task.args.get("dest", "")).rstrip("/"), str(self._task.args.get("mode", "0700"))
        files = self._task.args.get("files") or []
        if not _PATH.fullmatch(dest) or "/../" in dest + "/":
            raise AnsibleActionFail(f"npuenv_stage: dest {dest!r} is not a plain absolute path")
        if not _MODE.fullmatch(mode):
            raise AnsibleActionFail(f"npuenv_stage: mode {mode!r} is not an octal mode such as 0700")
        for f in files:
            if not isinstance(f, dict) or not _NAME.fullmatch(str(f.get("name", ""))) \
                    or not _SHA256.fullmatch(str(f.get("sha256", ""))) or not f.get("path"):
                raise AnsibleActionFail(f"npuenv_stage: {f!r} is not a file with a path, a plain name and a sha256")
        q = shlex.quote
        # What the node has: one "NAME SHA256" line per file (MISSING when it has none).
        have = {}
        if files:
            ask = "; ".join(f"printf '%s %s\\n' {q(f['name'])} \"$(sha256sum 2>/dev/null < {q(dest + '/' + f['name'])} "
                            f"| cut -d' ' -f1)\"" for f in files)
            answer = self._low_level_execute_command(ask, sudoable=True)
            if answer["rc"] != 0:
                raise AnsibleActionFail(f"npuenv_stage: cannot read {dest} on the node: {answer.get('stderr', '')}")
            for line in answer["stdout"].splitlines():
                name, _, digest = line.partition(" ")
                have[name] = digest.strip() or MISSING
        send = [f for f in files if have.get(f["name"]) != f["sha256"]]
        result.update(changed=bool(send), staged=[f["name"] for f in send])
        if not send or self._task.check_mode:
            return result
        tmp_dir = self._make_tmp_path()
        try:
            moves = []
            for f in send:
                sent = self._connection._shell.join_path(tmp_dir, f["name"])
                self._transfer_file(str(f["path"]), sent)
                part, final = q(f"{dest}/.{f['name']}.part"), q(f"{dest}/{f['name']}")
                # Checked where it lies, before it takes the name: a half-sent file is never staged.
                moves.append(f"install -m {mode} -- {q(sent)} {part} && "
                             f"echo {q(f['sha256'] + '  ' + dest + '/.' + f['name'] + '.part')} | sha256sum -c --status "
                             f"&& mv -f -- {part} {final} || {{ rm -f -- {part}; "
                             f"echo {q('npuenv_stage: ' + f['name'] + ' did not arrive whole on the node')} >&2; exit 3; }}")
            self._fixup_perms2([tmp_dir] + [self._connection._shell.join_path(tmp_dir, f["name"]) for f in send],
                               execute=False)
            answer = self._low_level_execute_command(
                f"set -e; mkdir -p -- {q(dest)}; " + "; ".join(moves), sudoable=True)
            if answer["rc"] != 0:
                # With a terminal (sudo), what the command says comes back on stdout.
                said = [line.strip() for line in (answer.get("stdout", "") + "\n" + answer.get("stderr", "")).splitlines()
                        if line.startswith(("npuenv_stage:", "install:", "mkdir:", "mv:"))]
                raise AnsibleActionFail("; ".join(said) or f"npuenv_stage: staging into {dest} failed (exit {answer['rc']})")
        finally:
            self._remove_tmp_path(tmp_dir)
        return result

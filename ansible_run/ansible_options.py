"""The ansible-playbook options that `npuenv deploy` takes and hands on, defined once: the
command line's options and their help (``add_to``), their checks on the controller (``Given.checked``),
the argv each Ansible call of a run gets (``Given.argv``) and what the rerun command repeats
(``Given.rerun_args``). Everything reaches Ansible as argv elements, never through a shell.

Which calls get which: a deploy runs Ansible many times (ansible-inventory, the preflight's facts, one
site.yml per batch, each batch's gate, the read-back), so

    every       ansible-inventory and every ansible-playbook (vault passwords: group_vars may be encrypted)
    playbooks   every ansible-playbook (forks: how many hosts at once, a limit on the controller's load)
    site.yml    only the deploy's own runs of site.yml, whose output is the deploy's log (verbosity,
                start-at-task: the other playbooks have none of site.yml's tasks)
    npuenv      npuenv itself acts on it: -K asks for the password once (ansible_run/run.py session),
                never once per run
"""
from __future__ import annotations

import argparse
import os
import stat
from dataclasses import dataclass, field, fields
from pathlib import Path

from compat_matrix.errors import UserError

EVERY, PLAYBOOKS, SITE, NPUENV = "every", "playbooks", "site.yml", "npuenv"
# A vault password source Ansible asks for on the terminal: once per ansible-playbook run, so once per batch.
VAULT_PROMPT = "prompt"
# A vault password file or client script is a few bytes; anything larger is the wrong file.
VAULT_FILE_MAX_BYTES = 1 << 20


def forks(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of parallel hosts, 1 or more")
    return int(text)


def task_name(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("give the name of a task of site.yml, e.g. 'CANN | Install the toolkit'")
    bad = sorted({c for c in text if ord(c) < 32 or ord(c) == 127})
    if bad:
        raise argparse.ArgumentTypeError(f"{text!r} holds control characters ({', '.join(map(repr, bad))}); give "
                                         f"the task's name as ansible-playbook --list-tasks prints it")
    return text


@dataclass(frozen=True)
class Option:
    dest: str
    flags: tuple[str, ...]
    to: str           # which Ansible calls get it (the module's docstring)
    help: str
    kwargs: dict
    rerun: bool = True   # the rerun command repeats it


OPTIONS = (
    Option("ask_become_pass", ("-K", "--ask-become-pass"), NPUENV,
           "ask for the sudo password of the hosts' login user once, for every Ansible run of the command (without "
           "it, sudo must need none); Ansible reads it from ANSIBLE_BECOME_PASSWORD_FILE, a file only you can read "
           "in a private folder, removed afterwards", {"action": "store_true"}),
    Option("vault_password_files", ("--vault-password-file",), EVERY,
           "ansible-vault's password file or client script, for encrypted variables (repeatable); passed to every "
           "Ansible run", {"action": "append", "metavar": "FILE"}),
    Option("vault_ids", ("--vault-id",), EVERY,
           "a vault identity, ID@FILE (repeatable); passed to every Ansible run (a password file, not @prompt: a "
           "deploy runs Ansible once per batch)", {"action": "append", "metavar": "[ID@]FILE"}),
    Option("verbosity", ("-v", "--verbose"), SITE,
           "ansible-playbook's verbosity, -v to -vvvv, for each batch's site.yml run (into the deploy's log)",
           {"action": "count", "default": 0}),
    Option("forks", ("-f", "--forks"), PLAYBOOKS,
           "at most N hosts at once in each Ansible run (default: one per host of the run, up to your own forks "
           "(ANSIBLE_FORKS, your ansible.cfg) or else 100)",
           {"type": forks, "metavar": "N"}),
    Option("start_at_task", ("--start-at-task",), SITE,
           "each batch's site.yml starts at the task of this name or pattern (ansible-playbook --start-at-task; "
           "npuenv's own preflight still runs first); a partial run, like --tags: no gate unless --gate, and the "
           "nodes record no lock", {"type": task_name, "metavar": "NAME"}, rerun=False),
)
BY_DEST = {o.dest: o for o in OPTIONS}


# What `npuenv validate` takes of them (ansible:// targets): validate.yml runs with sudo on the nodes.
FOR_VALIDATE = ("ask_become_pass", "vault_password_files", "vault_ids", "forks")


def add_to(parser: argparse.ArgumentParser, dests: tuple[str, ...] | None = None,
           title: str = "passed to ansible-playbook") -> None:
    """The options (those named by ``dests``, else all), in a group of the command's help of their own."""
    group = parser.add_argument_group(title, "as ansible-playbook takes them, handed on as arguments (never "
                                              "through a shell)")
    for o in OPTIONS:
        if dests is None or o.dest in dests:
            group.add_argument(*o.flags, dest=o.dest, help=o.help, **o.kwargs)


@dataclass(frozen=True)
class Given:
    """The values given (from the command line: ``from_args``)."""
    ask_become_pass: bool = False
    vault_password_files: tuple[str, ...] = ()
    vault_ids: tuple[str, ...] = ()
    verbosity: int = 0
    forks: int | None = None
    start_at_task: str | None = None
    _checked: bool = field(default=False, repr=False, compare=False)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "Given":
        values = {o.dest: getattr(args, o.dest, None) for o in OPTIONS}
        return cls(ask_become_pass=bool(values["ask_become_pass"]),
                   vault_password_files=tuple(values["vault_password_files"] or ()),
                   vault_ids=tuple(values["vault_ids"] or ()), verbosity=values["verbosity"] or 0,
                   forks=values["forks"], start_at_task=values["start_at_task"])

    def checked(self) -> "Given":
        """The same options with every file checked on the controller and named by its absolute path
        (Ansible runs in the playbooks folder); UserError (exit 2) for one that cannot serve."""
        if self._checked:
            return self
        if self.forks is not None and (isinstance(self.forks, bool) or not isinstance(self.forks, int)
                                       or self.forks < 1):
            raise UserError(f"--forks {self.forks!r}: give a whole number of parallel hosts, 1 or more")
        if self.start_at_task is not None:
            try:
                task_name(self.start_at_task)
            except argparse.ArgumentTypeError as e:
                raise UserError(f"--start-at-task: {e}") from None
        ids = []
        for given in self.vault_ids:
            label, source = (given.split("@", 1) if "@" in given else ("", given))   # as Ansible splits it
            if source == VAULT_PROMPT:
                raise UserError(f"--vault-id {given}: npuenv runs Ansible several times (once per batch, and to read "
                                f"the hosts), and each run would ask again: put the password in a file only you "
                                f"can read (chmod 600 FILE) and give --vault-id {label or 'ID'}@FILE")
            ids.append(f"{label}@{_vault_file(source, f'--vault-id {given}')}" if label else
                       _vault_file(source, f"--vault-id {given}"))
        files = [_vault_file(f, f"--vault-password-file {f}") for f in self.vault_password_files]
        return Given(self.ask_become_pass, tuple(files), tuple(ids), self.verbosity, self.forks, self.start_at_task,
                     _checked=True)

    def argv(self, call: str) -> list[str]:
        """The arguments Ansible call ``call`` (ansible-inventory, or the playbook an ansible-playbook
        runs) gets; --forks is the run's own (run.playbook_command sizes it to the run's hosts)."""
        out: list[str] = []
        for f in self.vault_password_files:
            out += ["--vault-password-file", f]
        for v in self.vault_ids:
            out += ["--vault-id", v]
        if call == SITE:
            if self.verbosity:
                out.append("-" + "v" * self.verbosity)
            if self.start_at_task is not None:
                out += ["--start-at-task", self.start_at_task]
        return out

    def rerun_args(self) -> list[str]:
        """npuenv's options that give the same options again (the rerun command)."""
        out: list[str] = []
        for f in fields(self):
            option = BY_DEST.get(f.name)
            value = getattr(self, f.name)
            if option is None or not option.rerun or value in (None, False, 0, ()):
                continue
            flag = option.flags[-1]
            if option.kwargs.get("action") == "store_true":
                out.append(option.flags[0])
            elif option.kwargs.get("action") == "count":
                out.append("-" + "v" * value)
            elif option.kwargs.get("action") == "append":
                for item in value:
                    out += [flag, item]
            else:
                out += [flag, str(value)]
        return out


def _vault_file(given: str, option: str) -> str:
    """A vault password file (or client script) as Ansible reads it on each run: a regular file this user
    can read, by its absolute path."""
    path = Path(given).expanduser().absolute()
    how = "give the file that holds the vault password (one line; chmod 600 FILE, owned by you)"
    try:
        st = path.stat()
    except FileNotFoundError:
        raise UserError(f"{option}: {path}: no such file; {how}") from None
    except OSError as e:
        raise UserError(f"{option}: {path}: cannot be read ({e.strerror}); {how}") from None
    if stat.S_ISDIR(st.st_mode):
        raise UserError(f"{option}: {path}: is a folder; {how}")
    if not stat.S_ISREG(st.st_mode):
        raise UserError(f"{option}: {path}: is not a regular file (a pipe, socket or device): npuenv runs Ansible "
                        f"several times and a pipe gives the password once; write it to a file instead ({how})")
    if st.st_size > VAULT_FILE_MAX_BYTES:
        raise UserError(f"{option}: {path}: {st.st_size} bytes, not a password file; {how}")
    if not os.access(path, os.R_OK):
        raise UserError(f"{option}: {path}: this user cannot read it (permission denied); make it yours and "
                        f"readable: chmod 600 {path}")
    return str(path)

"""Run the project's playbooks with the project's ansible.cfg."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from compat_matrix.errors import UserError

PLAYBOOK_DIR = Path(__file__).resolve().parent

# ansible-playbook's exit codes (ansible/executor, ansible/cli): what they mean for npuenv.
HOST_FAILED, HOST_UNREACHABLE = 2, 4


def ansible_playbook_command() -> str:
    beside = Path(sys.executable).parent / "ansible-playbook"
    found = str(beside) if beside.exists() else shutil.which("ansible-playbook")
    if not found:
        raise UserError("ansible-playbook is not installed; run `make setup` (it installs Ansible into .venv)")
    return found


def run_playbook(playbook: str, inventory: str | Path, *, check: bool = False, tags: list[str] | None = None,
                 limit: str | None = None, extra_vars: list[str] | None = None,
                 capture: bool = False) -> subprocess.CompletedProcess:
    """ansible-playbook PLAYBOOK -i INVENTORY, from the playbooks directory (its ansible.cfg)."""
    inventory = Path(inventory).resolve()
    if not inventory.exists():
        raise UserError(f"inventory {inventory} does not exist; copy playbooks/inventory/example and list your hosts")
    cmd = [ansible_playbook_command(), playbook, "-i", str(inventory)]
    if check:
        cmd += ["--check", "--diff"]
    if tags:
        cmd += ["--tags", ",".join(tags)]
    if limit:
        cmd += ["--limit", limit]
    for var in extra_vars or []:
        cmd += ["-e", var]
    env = dict(os.environ, ANSIBLE_CONFIG=str(PLAYBOOK_DIR / "ansible.cfg"))
    return subprocess.run(cmd, cwd=PLAYBOOK_DIR, env=env, text=True,
                          capture_output=capture)


def exit_code(returncode: int) -> int:
    """npuenv's exit code: 1 when a host failed or was unreachable, 2 when the run itself could not start."""
    if returncode == 0:
        return 0
    return 1 if returncode in (HOST_FAILED, HOST_UNREACHABLE) else 2

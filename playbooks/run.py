"""Run the project's playbooks with the project's ansible.cfg, after checking
that the inventory can be read and names the hosts the run is meant for."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from compat_matrix import interrupts
from compat_matrix.errors import UserError

PLAYBOOK_DIR = Path(__file__).resolve().parent
# The group every play of site.yml and validate.yml runs on.
FLEET_GROUP = "npu_nodes"
# Parallel connections: one per host, up to this many (Ansible's forks).
MAX_FORKS = 100

# ansible-playbook's exit codes (ansible/executor, ansible/cli): what they mean for npuenv.
HOST_FAILED, HOST_UNREACHABLE = 2, 4

HOW_TO_WRITE_AN_INVENTORY = (
    "write an inventory with your hosts in the group 'npu_nodes' and the matrix row in npuenv_row "
    f"(copy {PLAYBOOK_DIR / 'inventory' / 'example'}), then pass it: npuenv deploy -i hosts.yml "
    "(make deploy INVENTORY=hosts.yml)")


def ansible_command(name: str) -> str:
    """An Ansible CLI: the one beside this Python (the venv's), else on PATH."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if not found:
        raise UserError(f"{name} is not installed; run `make setup` (it installs Ansible into .venv)")
    return found


def ansible_env(**extra: str) -> dict[str, str]:
    """The environment of every Ansible call: the project's ansible.cfg, and an
    inventory that cannot be parsed is an error, not an empty fleet."""
    return dict(os.environ, ANSIBLE_CONFIG=str(PLAYBOOK_DIR / "ansible.cfg"),
                ANSIBLE_INVENTORY_UNPARSED_FAILED="True", ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED="True",
                PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]), **extra)


def read_inventory(inventory: str | Path | None, limit: str | None = None) -> dict:
    """`ansible-inventory --list` of an inventory (UserError when it is missing or broken)."""
    if not inventory:
        raise UserError(f"no inventory given; {HOW_TO_WRITE_AN_INVENTORY}")
    path = Path(inventory)
    if not path.exists():
        raise UserError(f"inventory {path} does not exist; {HOW_TO_WRITE_AN_INVENTORY}")
    cmd = [ansible_command("ansible-inventory"), "-i", str(path.resolve()), "--list"]
    if limit:
        cmd += ["--limit", limit]
    p = subprocess.run(cmd, capture_output=True, text=True, env=ansible_env(), cwd=PLAYBOOK_DIR)
    if p.returncode != 0:
        # Ansible tries every inventory plugin and reports each; the first
        # plugin's cause (with its file:line) and the final error say enough.
        text = " ".join(p.stderr.split())
        cause = text.split("<<< caused by >>>", 1)[1].split("[WARNING]")[0].strip() if "<<< caused by >>>" in text \
            else text
        final = text.rsplit("[ERROR]:", 1)[1].strip() if "[ERROR]:" in text else ""
        raise UserError(f"cannot read inventory {path}: {cause[:800]}" + (f" ({final[:300]})" if final else ""))
    return json.loads(p.stdout)


def group_members(inventory: dict, group: str) -> list[str]:
    """Hosts of a group and of its child groups, in inventory order."""
    out: list[str] = []

    def walk(name: str) -> None:
        entry = inventory.get(name) or {}
        for host in entry.get("hosts", []):
            if host not in out:
                out.append(host)
        for child in entry.get("children", []):
            walk(child)

    walk(group)
    return out


def fleet_hosts(inventory: str | Path | None, limit: str | None = None, group: str = FLEET_GROUP) -> list[str]:
    """The hosts a run would reach: the group's members after --limit."""
    everything = read_inventory(inventory)
    if not group_members(everything, group):
        groups = sorted(k for k in everything if k not in ("_meta", "all", "ungrouped"))
        raise UserError(f"inventory {inventory} has no hosts in the group '{group}' (groups: "
                        f"{', '.join(groups) or 'none'}); put the NPU servers under all.children.{group}.hosts")
    if not limit:
        return group_members(everything, group)
    hosts = group_members(read_inventory(inventory, limit), group)
    if not hosts:
        raise UserError(f"--limit {limit} matches no host of '{group}' in {inventory}; "
                        f"its hosts are: {', '.join(group_members(everything, group))}")
    return hosts


def playbook_tags(playbook: str) -> set[str]:
    """The tags a playbook's roles carry (site.yml tags each role with its component)."""
    plays = yaml.safe_load((PLAYBOOK_DIR / playbook).read_text()) or []
    tags: set[str] = set()
    for play in plays:
        for role in play.get("roles", []):
            if isinstance(role, dict):
                tags.update(role.get("tags", []))
    return tags - {"always"}


def run_playbook(playbook: str, inventory: str | Path | None, *, check: bool = False, tags: list[str] | None = None,
                 limit: str | None = None, extra_vars: list[str] | None = None, capture: bool = False,
                 env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """ansible-playbook PLAYBOOK -i INVENTORY from the playbooks directory (its
    ansible.cfg), with one fork per host of the run up to MAX_FORKS."""
    hosts = fleet_hosts(inventory, limit)
    if tags:
        unknown = sorted(set(tags) - playbook_tags(playbook))
        if unknown:
            raise UserError(f"--tags {','.join(unknown)} matches nothing in {playbook}; "
                            f"its tags are: {', '.join(sorted(playbook_tags(playbook)))}")
    cmd = [ansible_command("ansible-playbook"), playbook, "-i", str(Path(inventory).resolve()),
           "--forks", str(min(len(hosts), MAX_FORKS))]
    if check:
        cmd += ["--check", "--diff"]
    if tags:
        cmd += ["--tags", ",".join(tags)]
    if limit:
        cmd += ["--limit", limit]
    for var in extra_vars or []:
        cmd += ["-e", var]
    if capture:  # from any thread, and ended by an interrupt of the command (npuenv validate)
        return interrupts.run(cmd, cwd=PLAYBOOK_DIR, env=ansible_env(**(env or {})))
    return subprocess.run(cmd, cwd=PLAYBOOK_DIR, env=ansible_env(**(env or {})), text=True)


def exit_code(returncode: int) -> int:
    """npuenv's exit code: 1 when a host failed or was unreachable, 2 when the run itself could not start."""
    if returncode == 0:
        return 0
    return 1 if returncode in (HOST_FAILED, HOST_UNREACHABLE) else 2

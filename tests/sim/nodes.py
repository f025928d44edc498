"""Simulated nodes as podman containers: build the node image, start N nodes
each with its own device-state file, inject faults, remove them.

Nodes are reachable by Ansible's ``containers.podman.podman`` connection and
testinfra's ``podman://NAME`` backend.
"""
from __future__ import annotations

import subprocess
from pathlib import Path

from . import state as sim_state

HERE = Path(__file__).resolve().parent
NODE_IMAGE = "localhost/npu-sim-node:latest"
PREFIX = "npu-sim"
# Each node carries the checkout that made it, so that `make sim-clean` in one
# checkout removes its own nodes and never another checkout's.
CHECKOUT = HERE.parent.parent
LABEL = f"npuenv.sim-node={CHECKOUT}"


def podman(*args: str, check: bool = True, capture: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["podman", *args], check=check, text=True,
                          stdout=subprocess.PIPE if capture else None, stderr=subprocess.PIPE if capture else None)


def build_node_image(tag: str = NODE_IMAGE, rebuild: bool = False) -> str:
    if rebuild or podman("image", "exists", tag, check=False).returncode != 0:
        podman("build", "--quiet", "-t", tag, "-f", str(HERE / "node" / "Containerfile"), str(HERE / "node"))
    return tag


def node_names(count: int, prefix: str = PREFIX) -> list[str]:
    return [f"{prefix}-{i}" for i in range(count)]


def start_nodes(count: int, state_root: Path, chip: str = "910b", prefix: str = PREFIX,
                image: str = NODE_IMAGE, npus: int | None = None) -> list[str]:
    """Start ``count`` fresh nodes; node i's state lives in ``state_root/<name>/state.json``."""
    build_node_image(image)
    names = node_names(count, prefix)
    remove_nodes(names + node_names(16, prefix))  # also what a larger earlier run left
    for i, name in enumerate(names):
        state_dir = Path(state_root) / name
        sim_state.save(sim_state.default_state(chip, npus=npus, node_index=i), state_dir / "state.json")
        podman("run", "-d", "--name", name, "--hostname", name, "--label", LABEL,
               # MKNOD: the driver installer creates the device nodes; an unmasked
               # /proc/sys lets cluster tuning set the node's own (namespaced) sysctls.
               # Nodes share podman's default bridge network (their "host" network,
               # for collectives across nodes) and see each other's hardware state
               # read-only under fleet/ (hccn_tool -ping answers from it).
               "--cap-add", "MKNOD", "--security-opt", "unmask=/proc/sys",
               "-v", f"{state_dir}:{Path(sim_state.STATE_PATH).parent}",
               "-v", f"{Path(state_root)}:{Path(sim_state.STATE_PATH).parent / 'fleet'}:ro", image)
    return names


def node_ip(name: str) -> str:
    return podman("inspect", name, "--format", "{{.NetworkSettings.IPAddress}}").stdout.strip()


def remove_nodes(names: list[str] | None = None) -> None:
    """Remove the named nodes; without names, every node this checkout made (by its label)."""
    if names is None:
        out = podman("ps", "-a", "--filter", f"label={LABEL}", "--format", "{{.Names}}").stdout
        names = out.split()
    if names:
        podman("rm", "--force", "--ignore", "--time", "0", *names, check=False)


def run_in(name: str, *cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    return podman("exec", name, *cmd, check=check)


def state_file(state_root: Path, name: str) -> Path:
    return Path(state_root) / name / "state.json"


def update_state(state_root: Path, name: str, logic_id: int, **fields) -> dict:
    """Fault injection on the hardware: change one device of one node."""
    path = state_file(state_root, name)
    new = sim_state.with_changes(sim_state.load(path), logic_id, **fields)
    sim_state.save(new, path)
    return new


def inventory(names: list[str]) -> dict:
    """An Ansible inventory (as JSON-able dict) reaching the nodes through podman."""
    return {"npu_nodes": {"hosts": {n: {"ansible_connection": "containers.podman.podman",
                                        "ansible_python_interpreter": "/usr/bin/python3"} for n in names}}}


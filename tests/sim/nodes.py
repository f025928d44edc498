"""Simulated nodes as podman containers: build the node image, start N nodes
each with its own device-state file, inject faults, reboot, remove them.

Nodes are reached the way real servers are: over SSH on a port published on
127.0.0.1, as a non-root login user with passwordless sudo, with a key pair
made for the session and each node's host key recorded in a known_hosts file
(strict checking). ``inventory()`` writes what Ansible and ``npuenv`` need.
The test harness itself may also look inside a node with ``podman exec``.
"""
from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from . import state as sim_state

HERE = Path(__file__).resolve().parent
NODE_IMAGE = "localhost/npu-sim-node:latest"
PREFIX = "npu-sim"
# Each node carries the checkout that made it, so that `make sim-clean` in one
# checkout removes its own nodes and never another checkout's.
CHECKOUT = HERE.parent.parent
LABEL = f"npuenv.sim-node={CHECKOUT}"
# The operator's login on every node (sudo without a password); the node image
# creates it (tests/sim/node/Containerfile, LOGIN_USER).
LOGIN_USER = "npuadmin"
HARDWARE_DIR = Path(sim_state.STATE_PATH).parent


def podman(*args: str, check: bool = True, capture: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["podman", *args], check=check, text=True,
                          stdout=subprocess.PIPE if capture else None, stderr=subprocess.PIPE if capture else None)


def build_node_image(tag: str = NODE_IMAGE, rebuild: bool = False) -> str:
    if rebuild or podman("image", "exists", tag, check=False).returncode != 0:
        podman("build", "--quiet", "-t", tag, "--build-arg", f"LOGIN_USER={LOGIN_USER}",
               "-f", str(HERE / "node" / "Containerfile"), str(HERE / "node"))
    return tag


@dataclass(frozen=True)
class SshAccess:
    """A key pair and a known_hosts file, as an operator's controller has them."""

    dir: Path

    @property
    def key(self) -> Path:
        return self.dir / "id_ed25519"

    @property
    def known_hosts(self) -> Path:
        return self.dir / "known_hosts"

    @classmethod
    def create(cls, directory: Path) -> "SshAccess":
        access = cls(Path(directory).resolve())
        access.dir.mkdir(parents=True, exist_ok=True)
        if not access.key.exists():
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "npuenv-sim", "-f", str(access.key)],
                           check=True)
        access.known_hosts.touch()
        return access

    def ssh_options(self) -> list[str]:
        return ["-i", str(self.key), "-o", f"UserKnownHostsFile={self.known_hosts}",
                "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10"]

    def record_host_key(self, port: int, host_key: str) -> None:
        """Replace the known_hosts entry for [127.0.0.1]:port."""
        pattern = f"[127.0.0.1]:{port} "
        lines = [line for line in self.known_hosts.read_text().splitlines() if not line.startswith(pattern)]
        lines.append(pattern + host_key)
        self.known_hosts.write_text("\n".join(lines) + "\n")


def node_names(count: int, prefix: str = PREFIX) -> list[str]:
    return [f"{prefix}-{i}" for i in range(count)]


def start_nodes(count: int, state_root: Path, chip: str = "910b", prefix: str = PREFIX,
                image: str = NODE_IMAGE, npus: int | None = None, access: SshAccess | None = None) -> list[str]:
    """Start ``count`` fresh nodes; node i's state lives in ``state_root/<name>/state.json``.

    With ``access`` each node lets its key log in as LOGIN_USER, publishes sshd
    on 127.0.0.1 and has its host key recorded in ``access.known_hosts``.
    """
    build_node_image(image)
    names = node_names(count, prefix)
    remove_nodes(names + node_names(16, prefix))  # also what a larger earlier run left
    for i, name in enumerate(names):
        state_dir = Path(state_root) / name
        sim_state.save(sim_state.default_state(chip, npus=npus, node_index=i), state_dir / "state.json")
        login = []
        if access:
            login = ["-p", "127.0.0.1::22",
                     "-v", f"{access.key}.pub:/home/{LOGIN_USER}/.ssh/authorized_keys:ro"]
        podman("run", "-d", "--name", name, "--hostname", name, "--label", LABEL,
               # --init reaps orphans; --restart brings the node back after `shutdown -r`.
               "--init", "--restart", "always",
               # MKNOD: the driver installer creates the device nodes; an unmasked
               # /proc/sys lets cluster tuning set the node's own (namespaced) sysctls.
               # Nodes share podman's default bridge network (their "host" network,
               # for collectives across nodes) and see each other's hardware state
               # read-only under fleet/ (hccn_tool -ping answers from it).
               "--cap-add", "MKNOD", "--security-opt", "unmask=/proc/sys", *login,
               "-v", f"{state_dir}:{HARDWARE_DIR}",
               "-v", f"{Path(state_root)}:{HARDWARE_DIR / 'fleet'}:ro", image)
    if access:
        for name in names:
            access.record_host_key(ssh_port(name), wait_for_sshd(name))
    return names


def wait_for_sshd(name: str, timeout: float = 60) -> str:
    """The node's ed25519 host key ('ssh-ed25519 AAAA...') once sshd listens."""
    deadline = time.time() + timeout
    while True:
        p = podman("exec", name, "bash", "-c", "ss -Hltn 'sport = :22' | grep -q . && "
                   "cut -d' ' -f1,2 /etc/ssh/ssh_host_ed25519_key.pub", check=False)
        if p.returncode == 0 and p.stdout.startswith("ssh-ed25519 "):
            return p.stdout.strip()
        if time.time() > deadline:
            raise RuntimeError(f"{name}: sshd did not come up within {timeout} s: {p.stderr.strip()}")
        time.sleep(0.3)


def ssh_port(name: str) -> int:
    """The node's SSH port on 127.0.0.1 (kept while the node is stopped, for its inventory)."""
    out = podman("inspect", name, "--format", '{{(index (index .HostConfig.PortBindings "22/tcp") 0).HostPort}}')
    return int(out.stdout.strip())


def node_ip(name: str) -> str:
    return podman("inspect", name, "--format", "{{.NetworkSettings.IPAddress}}").stdout.strip()


def remove_nodes(names: list[str] | None = None) -> None:
    """Remove the named nodes; without names, every node this checkout made (by its label)."""
    if names is None:
        out = podman("ps", "-a", "--filter", f"label={LABEL}", "--format", "{{.Names}}").stdout
        names = out.split()
    if names:
        podman("rm", "--force", "--ignore", "--time", "0", *names, check=False)


def stop_node(name: str) -> None:
    """Power a node off (podman does not restart a container stopped by hand)."""
    podman("stop", "--time", "0", name)


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


def inventory(names: list[str], access: SshAccess | None = None, group_vars: dict | None = None,
              host_vars: dict[str, dict] | None = None) -> dict:
    """An Ansible inventory (as a JSON-able dict) for the nodes' npu_nodes group.

    With ``access``: over SSH to 127.0.0.1:PORT as LOGIN_USER with sudo and
    strict host key checking against ``access.known_hosts``; without it, through
    podman's exec connection as root.
    """
    if access:
        connection = {"ansible_user": LOGIN_USER, "ansible_become": True,
                      "ansible_ssh_private_key_file": str(access.key),
                      "ansible_ssh_common_args": f"-o UserKnownHostsFile={access.known_hosts} "
                                                 "-o StrictHostKeyChecking=yes"}
        hosts = {n: {"ansible_host": "127.0.0.1", "ansible_port": ssh_port(n)} for n in names}
    else:
        connection = {"ansible_connection": "containers.podman.podman", "ansible_become": False}
        hosts = {n: {} for n in names}
    for name, extra in (host_vars or {}).items():
        hosts[name].update(extra)
    return {"all": {"children": {"npu_nodes": {"hosts": hosts, "vars": {
        **connection, "ansible_python_interpreter": "/usr/bin/python3", **(group_vars or {})}}}}}

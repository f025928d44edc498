"""Simulated nodes as podman containers: build the node image, start N nodes
each with its own device-state file, inject faults, reboot, remove them.

Nodes are reached the way real servers are: over SSH on a port published on
127.0.0.1, as a non-root login user with passwordless sudo, with a key pair
made for the session and each node's host key recorded in a known_hosts file
(strict checking). ``inventory()`` writes what Ansible and ``npuenv`` need.
The test harness itself may also look inside a node with ``podman exec``.
"""
from __future__ import annotations

import hashlib
import json
import re
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from . import state as sim_state

HERE = Path(__file__).resolve().parent
NODE_IMAGE = "localhost/npu-sim-node:latest"
PREFIX = "npu-sim"
# Each node carries the checkout that made it: the simulator removes only its
# own checkout's nodes (start_nodes, remove_nodes, `make sim-clean`), never
# another checkout's, whatever their names.
CHECKOUT = HERE.parent.parent
LABEL_KEY = "npuenv.sim-node"
LABEL = f"{LABEL_KEY}={CHECKOUT}"
# The operator's login on every node (sudo without a password); the node image
# creates it (tests/sim/node/Containerfile, LOGIN_USER).
LOGIN_USER = "npuadmin"
HARDWARE_DIR = Path(sim_state.STATE_PATH).parent


def podman(*args: str, check: bool = True, capture: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["podman", *args], check=check, text=True,
                          stdout=subprocess.PIPE if capture else None, stderr=subprocess.PIPE if capture else None)


# The image records the digest of the files it was built from, so that a change to them rebuilds it.
SOURCE_LABEL = "npuenv.sim-node-source"


def node_source_digest() -> str:
    digest = hashlib.sha256(LOGIN_USER.encode())
    for path in sorted((HERE / "node").iterdir()):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def build_node_image(tag: str = NODE_IMAGE, rebuild: bool = False) -> str:
    source = node_source_digest()
    built = podman("image", "inspect", "--format", f'{{{{index .Labels "{SOURCE_LABEL}"}}}}', tag, check=False)
    if rebuild or built.returncode != 0 or built.stdout.strip() != source:
        podman("build", "--quiet", "-t", tag, "--build-arg", f"LOGIN_USER={LOGIN_USER}",
               "--label", f"{SOURCE_LABEL}={source}",
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


# Tests and benches name their nodes with checkout_prefix(): two checkouts on one
# engine (a worktree beside main, CI's copy of this machine with a worktree's
# nodes still running) then never ask for the same names.
CHECKOUT_TAG = hashlib.sha256(str(CHECKOUT).encode()).hexdigest()[:6]


def checkout_prefix(base: str) -> str:
    return f"{base}-{CHECKOUT_TAG}"


def node_names(count: int, prefix: str = PREFIX) -> list[str]:
    return [f"{prefix}-{i}" for i in range(count)]


class NodeNameTaken(RuntimeError):
    """A node's name is held by a container that this checkout did not make."""

    def __init__(self, taken: dict[str, str | None]):
        self.taken = taken  # name -> the checkout that made it (None: no npuenv label)
        lines = []
        for name, owner in taken.items():
            whose = f"made by the checkout {owner}" if owner else f"that names no checkout in the label {LABEL_KEY}"
            lines.append(f"node name {name} is taken by a container {whose}, not by this checkout ({CHECKOUT})")
        super().__init__("\n".join(lines) + "\n  the simulator never removes another checkout's containers: run "
                         "`make sim-clean` in the checkout that made them, or `podman rm -f "
                         + " ".join(taken) + "` if nothing uses them, or start these nodes under another prefix "
                         "(python -m tests.sim nodes --prefix NAME, make sim-nodes NODE_PREFIX=NAME)")


@dataclass(frozen=True)
class _Container:
    id: str
    owner: str | None  # the value of its LABEL_KEY label

    @property
    def ours(self) -> bool:
        return self.owner == str(CHECKOUT)


def _containers() -> dict[str, _Container]:
    """Every container on the engine, by name (one `podman ps`)."""
    listed = json.loads(podman("ps", "-a", "--format", "json").stdout or "[]")
    return {name: _Container(c["Id"], (c.get("Labels") or {}).get(LABEL_KEY))
            for c in listed for name in c.get("Names") or []}


def _remove(containers: list[_Container]) -> None:
    # by id: exactly the containers whose label was read, even if a name changed hands since
    if containers:
        podman("rm", "--force", "--ignore", "--time", "0", *[c.id for c in containers], check=False)


def start_nodes(count: int, state_root: Path, chip: str = "910b", prefix: str = PREFIX,
                image: str = NODE_IMAGE, npus: int | None = None, access: SshAccess | None = None) -> list[str]:
    """Start ``count`` fresh nodes; node i's state lives in ``state_root/<name>/state.json``.

    With ``access`` each node lets its key log in as LOGIN_USER, publishes sshd
    on 127.0.0.1 and has its host key recorded in ``access.known_hosts``.

    This checkout's earlier nodes PREFIX-N (any N) are replaced; a container of
    one of the names that this checkout did not make raises NodeNameTaken
    before anything is removed or started.
    """
    build_node_image(image)
    names = node_names(count, prefix)
    existing = _containers()
    taken = {n: existing[n].owner for n in names if n in existing and not existing[n].ours}
    if taken:
        raise NodeNameTaken(taken)
    earlier = re.compile(re.escape(prefix) + r"-\d+")  # also what a larger earlier run left
    _remove([c for n, c in existing.items() if c.ours and earlier.fullmatch(n)])
    for i, name in enumerate(names):
        state_dir = Path(state_root) / name
        sim_state.save(sim_state.default_state(chip, npus=npus, node_index=i), state_dir / "state.json")
        login = []
        if access:
            login = ["-p", "127.0.0.1::22",
                     "-v", f"{access.key}.pub:/home/{LOGIN_USER}/.ssh/authorized_keys:ro"]
        run = podman("run", "-d", "--name", name, "--hostname", name, "--label", LABEL,
               # --init reaps orphans; --restart brings the node back after `shutdown -r`.
               "--init", "--restart", "always",
               # MKNOD: the driver installer creates the device nodes; an unmasked
               # /proc/sys lets cluster tuning set the node's own (namespaced) sysctls.
               # Nodes share podman's default bridge network (their "host" network,
               # for collectives across nodes) and see each other's hardware state
               # read-only under fleet/ (hccn_tool -ping answers from it).
               "--cap-add", "MKNOD", "--security-opt", "unmask=/proc/sys", *login,
               "-v", f"{state_dir}:{HARDWARE_DIR}",
               "-v", f"{Path(state_root)}:{HARDWARE_DIR / 'fleet'}:ro", image, check=False)
        if run.returncode != 0:
            holder = _containers().get(name)
            if holder is not None and not holder.ours:  # taken since the check above
                raise NodeNameTaken({name: holder.owner})
            raise RuntimeError(f"podman run of node {name} failed (exit {run.returncode}): {run.stderr.strip()}")
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


def remove_nodes(names: list[str] | None = None) -> list[str]:
    """Remove the named nodes, or without names every node, that this checkout
    made (by its label); a container of one of the names that another checkout
    made, or that has no label, is left alone. Returns the names removed."""
    ours = {n: c for n, c in _containers().items() if c.ours}
    chosen = sorted(ours) if names is None else [n for n in names if n in ours]
    _remove([ours[n] for n in chosen])
    return chosen


def stop_node(name: str) -> None:
    """Power a node off (podman does not restart a container stopped by hand)."""
    podman("stop", "--time", "0", name)


def run_in(name: str, *cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    return podman("exec", name, *cmd, check=check)


@dataclass(frozen=True)
class CpuLimit:
    """A running node's share of the CPUs, in its cgroup's own files: the
    bandwidth limit (cgroup v1 cpu.cfs_quota_us, "-1": none; v2 cpu.max,
    "max 100000": none) and the weight among contending cgroups (v1 cpu.shares,
    default 1024; v2 cpu.weight, default 100).

    The files, not `podman update`: podman 4.3 on cgroup v1 sets a quota it can
    neither show (`podman inspect`) nor lift (`--cpus 0`), DESIGN.md section 5.
    """

    dir: Path
    v2: bool

    @classmethod
    def of(cls, name: str) -> "CpuLimit":
        pid = podman("inspect", name, "--format", "{{.State.Pid}}").stdout.strip()
        if pid in ("", "0"):
            raise RuntimeError(f"{name} is not running: only a running node has a CPU limit to change")
        limit = cls.find(Path(f"/proc/{pid}/cgroup").read_text(), Path("/proc/self/mountinfo").read_text())
        missing = [f for f in limit.files if not (limit.dir / f).exists()]
        if missing:
            raise RuntimeError(f"{name}: no {', '.join(missing)} in its cgroup {limit.dir} "
                               "(the cpu controller is not enabled there)")
        return limit

    @classmethod
    def find(cls, proc_cgroup: str, mountinfo: str) -> "CpuLimit":
        """The cgroup that holds a process's CPU limit, from its /proc/PID/cgroup
        and the host's /proc/self/mountinfo: the v1 hierarchy with the cpu
        controller where there is one (also on a hybrid host), else the v2 one."""
        mounts: dict[str, str] = {}
        for line in mountinfo.splitlines():
            before, _, after = line.partition(" - ")
            mount_point, fstype, options = before.split()[4], after.split()[0], after.split()[2]
            if fstype == "cgroup" and "cpu" in options.split(","):
                mounts["v1"] = mount_point
            elif fstype == "cgroup2":
                mounts.setdefault("v2", mount_point)
        paths: dict[str, str] = {}
        for line in proc_cgroup.splitlines():
            hierarchy, controllers, path = line.split(":", 2)
            if hierarchy == "0" and not controllers:
                paths["v2"] = path
            elif "cpu" in controllers.split(","):
                paths["v1"] = path
        for version in ("v1", "v2"):
            if version in mounts and version in paths:
                return cls(Path(mounts[version]) / paths[version].lstrip("/"), v2=version == "v2")
        raise RuntimeError(f"no cgroup with the cpu controller in:\n{proc_cgroup}")

    @property
    def files(self) -> tuple[str, str]:
        """(the bandwidth limit, the weight)"""
        return ("cpu.max", "cpu.weight") if self.v2 else ("cpu.cfs_quota_us", "cpu.shares")

    def read(self) -> dict[str, str]:
        return {f: (self.dir / f).read_text().strip() for f in self.files}

    def values_for(self, cpus: float, weighted: bool = True) -> dict[str, str]:
        """What the files take for a node of ``cpus`` CPUs: never more than that, and
        (``weighted``) that fraction of a node's default weight, so that also when the
        CPUs are contended (the limit does not bind) it gets that fraction of a node's
        share. Unweighted, the node keeps its weight: a limit well below its share of a
        busy machine binds whatever else runs, so the node runs at that speed throughout."""
        limit, weight = self.files
        period = int(self.read()[limit].split()[1] if self.v2 else (self.dir / "cpu.cfs_period_us").read_text())
        quota = max(1000, round(cpus * period))  # the kernel's least quota is 1 ms
        default_weight, least_weight = (100, 1) if self.v2 else (1024, 2)
        values = {limit: f"{quota} {period}" if self.v2 else str(quota)}
        if weighted:
            values[weight] = str(max(least_weight, round(cpus * default_weight)))
        return values

    def write(self, values: dict[str, str]) -> None:
        for file, value in values.items():
            (self.dir / file).write_text(value + "\n")

    def throttled_periods(self) -> int:
        """How many periods the kernel has held the node back in so far (cpu.stat's nr_throttled)."""
        for line in (self.dir / "cpu.stat").read_text().splitlines():
            key, _, value = line.partition(" ")
            if key == "nr_throttled":
                return int(value)
        raise RuntimeError(f"no nr_throttled in {self.dir / 'cpu.stat'}")

    @contextmanager
    def throttle(self, cpus: float, weighted: bool = True) -> Iterator["CpuLimit"]:
        """The node has ``cpus`` CPUs (values_for) in the with-block; then the
        files get back what they had, also when the block fails, read back to be sure."""
        if not 0 < cpus:
            raise ValueError(f"cpus must be more than 0, not {cpus}")
        saved = self.read()
        self.write(self.values_for(cpus, weighted))
        try:
            yield self
        finally:
            # A node stopped meanwhile has no cgroup; podman starts it again with its own limits.
            if self.dir.exists():
                self.write(saved)
                if self.read() != saved:
                    raise RuntimeError(f"the CPU limits in {self.dir} read {self.read()} after restoring {saved}")


def throttle(name: str, cpus: float, weighted: bool = True):
    """``with throttle(name, 0.1):`` the running node has a tenth of a CPU inside
    the block, and its own share back after it (see CpuLimit)."""
    return CpuLimit.of(name).throttle(cpus, weighted)


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

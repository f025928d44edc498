"""What SSH connections cost the controller (issue 22, part 3), in one run on simulated nodes:

- ``connection_cpu_s_<kex>``: user + system CPU of one `ssh HOST true` without a master (a whole
  connection: key exchange, authentication, one command), for the client's default key exchange and
  for curve25519-sha256, the median of CONNECTIONS. The default (OpenSSH 9.0 to 9.8:
  sntrup761x25519-sha512, post-quantum) is what npuenv keeps: ssh_config or the inventory's
  ansible_ssh_extra_args can change it, and the figure says what that would save per host and run;
- ``reads_<how>_cpu_s_per_node``: controller CPU (the SSH masters included) of READS
  `status.yml` runs on BENCH_SSH_NODES nodes, as a deploy makes them (its preflight, read-back and
  gate are such runs besides the batch's site.yml): each run with masters of its own, as before,
  against all of them in one npuenv session, which shares them (ansible_run/run.py connection_key);
- ratios: shared / separate, curve25519 / default.
"""
from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from ansible_run import run as playbooks_run  # noqa: E402
from bench_fleet import adopting, children_cpu, reap_adopted  # noqa: E402
from playbooks import status  # noqa: E402
from tests.sim import nodes as sim_nodes  # noqa: E402

NODES = int(os.environ.get("BENCH_SSH_NODES", "8"))
CONNECTIONS = 10
READS = 4
PREFIX = sim_nodes.checkout_prefix("npu-sim-bs")


def connection_cpu(access: sim_nodes.SshAccess, host: dict, kex: str | None) -> float:
    """Median CPU-seconds of one whole ssh connection (no master) that runs `true`."""
    argv = ["ssh", "-o", "ControlMaster=no", "-o", "ControlPath=none", "-o", "BatchMode=yes", "-i", str(access.key),
            "-o", f"UserKnownHostsFile={access.known_hosts}", "-o", "StrictHostKeyChecking=yes",
            *(["-o", f"KexAlgorithms={kex}"] if kex else []), "-p", str(host["ansible_port"]),
            f"{sim_nodes.LOGIN_USER}@{host['ansible_host']}", "true"]
    samples = []
    for _ in range(CONNECTIONS):
        before = children_cpu()
        subprocess.run(argv, check=True, capture_output=True)
        samples.append(children_cpu() - before)
    return statistics.median(samples)


def reads_cpu(inventory: Path, names: list[str], shared: bool) -> float:
    """Controller CPU-seconds of READS status.yml runs, the SSH masters included."""
    before = children_cpu()
    with adopting():
        if shared:
            with playbooks_run.session():
                for _ in range(READS):
                    status.read_facts(inventory, names)
        else:
            for _ in range(READS):
                status.read_facts(inventory, names)
    reap_adopted()
    return children_cpu() - before


def run() -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="bench-ssh-"))
    access = sim_nodes.SshAccess.create(tmp / "ssh")
    names: list[str] = []
    out: dict = {"name": "ssh_setup", "nodes": NODES, "reads": READS,
                 "openssh": subprocess.run(["ssh", "-V"], capture_output=True, text=True).stderr.strip()}
    try:
        names = sim_nodes.start_nodes(NODES, tmp / "state", prefix=PREFIX, access=access)
        inventory = tmp / "inventory.yml"
        data = sim_nodes.inventory(names, access)
        inventory.write_text(yaml.safe_dump(data))
        host = data["all"]["children"]["npu_nodes"]["hosts"][names[0]]
        for label, kex in (("default", None), ("curve25519", "curve25519-sha256")):
            out[f"connection_cpu_s_{label}"] = round(connection_cpu(access, host, kex), 4)
        status.read_facts(inventory, names)   # the nodes get the facts artefact before either is measured
        # Alternated, twice each, so that both see the same machine.
        samples: dict[str, list[float]] = {"separate": [], "shared": []}
        for _ in range(2):
            for how in samples:
                samples[how].append(reads_cpu(inventory, names, how == "shared"))
        for how, values in samples.items():
            out[f"reads_{how}_cpu_s_per_node"] = round(statistics.median(values) / NODES, 3)
    finally:
        sim_nodes.remove_nodes(names)
        shutil.rmtree(tmp, ignore_errors=True)
    out["reads_shared_to_separate"] = round(out["reads_shared_cpu_s_per_node"] / out["reads_separate_cpu_s_per_node"], 2)
    out["connection_curve25519_to_default"] = round(out["connection_cpu_s_curve25519"] / out["connection_cpu_s_default"],
                                                   2)
    return out


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))

"""Mitogen's strategy for Ansible (mitogen_linear) against Ansible's own SSH with pipelining, on the
same simulated nodes in one run (issue 22). Run by hand: Mitogen is no dependency of npuenv.

    pip download --no-deps -d /tmp/mitogen mitogen && unzip -q -d /tmp/mitogen/pkg /tmp/mitogen/mitogen-*.whl
    MITOGEN_PATH=/tmp/mitogen/pkg .venv/bin/python bench/compare_mitogen.py

For each fleet size (BENCH_COUNTS, default 1,4), BENCH_ROUNDS (default 3) alternated runs of each way,
medians of:
- ``<way>_validate_quick_cpu_s_per_node_<N>``: `npuenv validate --level quick` (nodes that already keep
  the artefact);
- ``<way>_noop_cpu_s_per_host_task_<N>``: a play of NOOP_TASKS `command: true` tasks, what a rollout's
  many small tasks cost;
- ``<way>_..._wall_s_<N>``: their wall time.

Controller CPU is every process the run started, SSH masters included: npuenv's children's rusage,
plus the CPU of the detached ssh masters of the run (ControlPersist leaves them outside npuenv's
process tree; they are found by the run's own TMPDIR in their command line and read until they end).
"""
from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ansible_run.run import PLAYBOOK_DIR, ansible_command, ansible_env, close_masters  # noqa: E402
from tests.sim import nodes as sim_nodes  # noqa: E402

ROW = "2.13.0"
COUNTS = tuple(int(c) for c in os.environ.get("BENCH_COUNTS", "1,4").split(","))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
PREFIX = sim_nodes.checkout_prefix("npu-sim-bm")
NOOP_TASKS = 20
TICK = os.sysconf("SC_CLK_TCK")


def children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


class DetachedCpu:
    """CPU-seconds of processes outside this process tree whose command line holds ``marker`` (the
    run's ssh masters), sampled until they end."""

    def __init__(self, marker: str):
        self.marker, self.seen, self.stop = marker.encode(), {}, threading.Event()
        self.thread = threading.Thread(target=self.sample, daemon=True)

    def sample(self) -> None:
        mine = os.getpid()
        while not self.stop.is_set():
            for pid in filter(str.isdigit, os.listdir("/proc")):
                try:
                    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
                    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                # a child of ours is counted by rusage once it is reaped; a master's parent is init (or a reaper)
                if self.marker in cmdline and b"[mux]" in cmdline and int(fields[1]) != mine:
                    self.seen[pid] = (int(fields[11]) + int(fields[12])) / TICK
            self.stop.wait(0.05)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        time.sleep(0.3)   # the masters are told to exit as the run ends; their last samples come in
        self.stop.set()
        self.thread.join()

    @property
    def cpu(self) -> float:
        return sum(self.seen.values())


def measured(cmd: list[str], env: dict, cwd: Path, tmp: Path, ok=(0,)) -> tuple[float, float]:
    """(controller CPU-seconds with the run's ssh masters, wall seconds) of one command."""
    run_tmp = Path(tempfile.mkdtemp(dir=tmp, prefix="r"))
    cpu0, t0 = children_cpu(), time.perf_counter()
    with DetachedCpu(str(run_tmp)) as masters:
        # npuenv makes its run's folder of control sockets under TMPDIR; a plain ansible-playbook uses the other
        private = {"TMPDIR": str(run_tmp), "ANSIBLE_SSH_CONTROL_PATH_DIR": str(run_tmp)}
        p = subprocess.run(cmd, cwd=cwd, env={**env, **private}, capture_output=True, text=True)
        close_masters(run_tmp)   # what npuenv does at the end of its runs
    wall = time.perf_counter() - t0
    if p.returncode not in ok:
        raise RuntimeError(f"{cmd[:4]} ended {p.returncode}:\n{(p.stdout + p.stderr)[-3000:]}")
    return children_cpu() - cpu0 + masters.cpu, wall


def ways() -> dict[str, dict]:
    path = os.environ.get("MITOGEN_PATH")
    if not path or not (Path(path) / "ansible_mitogen").is_dir():
        raise SystemExit("set MITOGEN_PATH to a folder holding ansible_mitogen (an unpacked mitogen wheel)")
    mitogen = {"PYTHONPATH": path, "ANSIBLE_STRATEGY_PLUGINS": str(Path(path) / "ansible_mitogen/plugins/strategy"),
               "ANSIBLE_STRATEGY": "mitogen_linear"}
    return {"ssh": dict(os.environ), "mitogen": {**os.environ, **mitogen}}


def versions(env: dict) -> dict:
    core = subprocess.run([ansible_command("ansible"), "--version"], capture_output=True, text=True).stdout
    probe = "import ansible_mitogen, mitogen; print(*mitogen.__version__, sep='.')"
    mitogen = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True).stdout.strip()
    return {"ansible_core": core.splitlines()[0], "mitogen": mitogen}


def run() -> dict:
    env = ways()
    tmp = Path(tempfile.mkdtemp(prefix="bm-", dir="/tmp"))   # short: ssh's control socket paths must fit
    access = sim_nodes.SshAccess.create(tmp / "ssh")
    out: dict = {"name": "mitogen", **versions(env["mitogen"]), "rounds": ROUNDS, "cores": os.cpu_count()}
    noop = tmp / "noop.yml"
    noop.write_text(yaml.safe_dump([{"name": "No-op", "hosts": "npu_nodes", "gather_facts": False, "become": True,
                                     "tasks": [{"name": f"No-op | Run true ({i})",
                                                "ansible.builtin.command": {"argv": ["true"]}, "changed_when": False}
                                               for i in range(NOOP_TASKS)]}]))
    names: list[str] = []
    try:
        for count in COUNTS:
            names = sim_nodes.start_nodes(count, tmp / f"state-{count}", prefix=PREFIX, access=access)
            inventory = tmp / f"inventory-{count}.yml"
            inventory.write_text(yaml.safe_dump(sim_nodes.inventory(names, access, group_vars={
                "npuenv_row": {"torch_npu": ROW, "python": "3.11", "chip": "910b"}})))
            validate = [sys.executable, "-m", "npuenv", "validate", "--target",
                        f"ansible://npu_nodes?inventory={inventory}", "--row", ROW, "--backend", "cpu",
                        "--level", "quick", "--out", str(tmp / "out")]
            play = [ansible_command("ansible-playbook"), str(noop), "-i", str(inventory), "--forks", str(count)]
            measured(validate, env["ssh"], ROOT, tmp, ok=(1,))   # the nodes get the artefact
            samples: dict[str, list[tuple[float, float]]] = {}
            for _ in range(ROUNDS):
                for way, way_env in env.items():
                    samples.setdefault(f"{way}_validate_quick", []).append(
                        measured(validate, way_env, ROOT, tmp, ok=(1,)))
                    samples.setdefault(f"{way}_noop", []).append(
                        measured(play, {**ansible_env(), **{k: v for k, v in way_env.items() if k.startswith(
                            ("ANSIBLE_STRATEGY", "PYTHONPATH"))}}, PLAYBOOK_DIR, tmp))
            for what, values in samples.items():
                cpu, wall = statistics.median(v[0] for v in values), statistics.median(v[1] for v in values)
                per = count * NOOP_TASKS if what.endswith("_noop") else count
                unit = "cpu_s_per_host_task" if what.endswith("_noop") else "cpu_s_per_node"
                out[f"{what}_{unit}_{count}"] = round(cpu / per, 3)
                out[f"{what}_wall_s_{count}"] = round(wall, 1)
            for what in ("validate_quick", "noop"):
                unit = "cpu_s_per_host_task" if what == "noop" else "cpu_s_per_node"
                out[f"{what}_cpu_ratio_mitogen_to_ssh_{count}"] = round(
                    out[f"mitogen_{what}_{unit}_{count}"] / out[f"ssh_{what}_{unit}_{count}"], 2)
            sim_nodes.remove_nodes(names)
            print(json.dumps({k: v for k, v in out.items() if k.endswith(f"_{count}")}), file=sys.stderr, flush=True)
    finally:
        sim_nodes.remove_nodes(names)
    return out


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))

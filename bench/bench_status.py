"""`npuenv status` on simulated SSH nodes: controller CPU-seconds per node, measured in one run (issue 19).

What limits `status` on a large fleet is the controller's CPU (each node answers from its own CPUs).
Counted: user + system of `npuenv status` and of every process it started, the SSH masters
included: a master that ControlPersist puts in the background leaves its parent, so this process
makes itself the child subreaper (prctl PR_SET_CHILD_SUBREAPER) and reaps every orphan, whose CPU
then counts in its RUSAGE_CHILDREN as a direct child's does.

Figures per fleet size N (BENCH_STATUS_COUNTS, default 1,8,16):
- cold: the first run, which copies the artefact to each node (a node keeps it under its digest);
- warm: the next run (one command per node), what an operator's repeated `status` costs;
- the marginal CPU-seconds of one more node: (warm N - warm 1) / (N - 1), where the fixed cost
  (ansible-inventory, ansible-playbook's start) is left out (goal <= 0.2 per node);
- the controller's fixed cost: warm 1 node minus one node's marginal share.

The nodes are deployed first with `npuenv deploy --gate none` (BENCH_STATUS_DEPLOY=0: left bare),
so that the documents carry the deploy records.
"""
from __future__ import annotations

import ctypes
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import compat_matrix as cm  # noqa: E402
from tests.sim import installers as sim_installers, nodes as sim_nodes  # noqa: E402
from tests.sim.cann_runtime.build import build_runtime_for_wheel  # noqa: E402

ROW, PYTHON = "2.13.0", "3.11"
COUNTS = tuple(int(c) for c in os.environ.get("BENCH_STATUS_COUNTS", "1,8,16").split(","))
DEPLOY = os.environ.get("BENCH_STATUS_DEPLOY", "1") != "0"
PREFIX = sim_nodes.checkout_prefix("npu-sim-roll-b")
PR_SET_CHILD_SUBREAPER = 36


def become_subreaper() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER) failed: the SSH masters would not count")


def reap() -> int:
    """Wait for every orphan that has ended (their CPU joins RUSAGE_CHILDREN); how many."""
    reaped = 0
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return reaped
        if pid == 0:
            return reaped
        reaped += 1


def children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def measure(*args: str, ok=(0, 1)) -> dict:
    """`npuenv ARGS`: wall seconds and controller CPU-seconds (every process, the SSH masters too)."""
    reap()
    cpu0, t0 = children_cpu(), time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "npuenv", *args], cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    time.sleep(0.5)   # the masters' `-O exit` has been answered; let them end, then reap them
    orphans = reap()
    if p.returncode not in ok:
        raise RuntimeError(f"npuenv {args[0]} failed (exit {p.returncode}):\n{(p.stdout + p.stderr)[-3000:]}")
    return {"wall_s": round(wall, 2), "controller_cpu_s": round(children_cpu() - cpu0, 3), "orphans_reaped": orphans,
            "exit": p.returncode, "stdout_tail": p.stdout[-400:]}


def inventory(path: Path, names: list[str], access, installers: Path, wheelhouse: Path) -> Path:
    path.write_text(yaml.safe_dump(sim_nodes.inventory(names, access, group_vars={
        "npuenv_row": {"torch_npu": ROW, "python": PYTHON, "chip": "910b"},
        "npuenv_installer_cache": str(installers), "npuenv_wheelhouse": str(wheelhouse)},
        host_vars={n: {"hccn_device_ips": [f"10.60.{d}.{i + 1}" for d in range(8)]} for i, n in enumerate(names)})))
    return path


def run() -> dict:
    become_subreaper()
    tmp = Path(tempfile.mkdtemp(prefix="bench-status-"))
    stack = cm.resolve(cm.load_matrix(), cm.Constraints(torch_npu=ROW, python=PYTHON, arch="x86_64")).stack
    wheelhouse, installers = tmp / "wheelhouse", tmp / "installers"
    access = sim_nodes.SshAccess.create(tmp / "ssh")
    names: list[str] = []
    runs: dict[int, dict] = {}
    deployed = None
    try:
        names = sim_nodes.start_nodes(max(COUNTS), tmp / "state", prefix=PREFIX, access=access)
        if DEPLOY:
            subprocess.run([sys.executable, "-m", "npuenv", "wheelhouse", "build", "--row", ROW, "--python", PYTHON,
                            "--arch", "x86_64", "--torch-source", os.environ.get("TORCH_SOURCE", "/opt/wheels"),
                            "--torchvision", "none", "--out", str(wheelhouse)], cwd=ROOT, check=True,
                           capture_output=True)
            build_runtime_for_wheel(tmp / "runtime", next(wheelhouse.glob("torch_npu-*.whl")))
            sim_installers.make_installers(stack, installers, runtime_libs=tmp / "runtime")
            inv = inventory(tmp / "inventory-all.yml", names, access, installers, wheelhouse)
            d = subprocess.run([sys.executable, "-m", "npuenv", "deploy", "-i", str(inv), "--gate", "none",
                                "--batch-size", str(max(COUNTS)), "--log-dir", str(tmp / "deploy")], cwd=ROOT,
                               capture_output=True, text=True)
            deployed = d.returncode
            print(f"deploy of {len(names)} node(s): exit {d.returncode}", file=sys.stderr, flush=True)
        for count in COUNTS:
            inv = inventory(tmp / f"inventory-{count}.yml", names[:count], access, installers, wheelhouse)
            # Each size's first run copies the artefact to its nodes that lack it: remove it on those first.
            for n in names[:count]:
                sim_nodes.run_in(n, "rm", "-rf", "/var/cache/npuenv", check=False)
            r = runs[count] = {"cold": measure("status", "-i", str(inv), "--format", "json"),
                               "warm": measure("status", "-i", str(inv), "--format", "json")}
            shown = {k: {x: v[x] for x in ("wall_s", "controller_cpu_s")} for k, v in r.items()}
            print(f"{count} node(s): {json.dumps(shown)}", file=sys.stderr, flush=True)
    finally:
        sim_nodes.remove_nodes(names)
        shutil.rmtree(tmp, ignore_errors=True)   # the wheelhouse, the nodes' state: hundreds of MB
    return summarize(runs, deployed)


def summarize(runs: dict[int, dict], deployed) -> dict:
    one, big = min(runs), max(runs)
    out: dict = {"name": "status", "cores": os.cpu_count(), "nodes_deployed_exit": deployed,
                 "runs": {n: {k: {x: v[x] for x in ("wall_s", "controller_cpu_s", "orphans_reaped", "exit")}
                              for k, v in r.items()} for n, r in runs.items()}}
    for count, r in runs.items():
        for phase in ("cold", "warm"):
            out[f"{phase}_controller_cpu_s_per_node_{count}"] = round(r[phase]["controller_cpu_s"] / count, 3)
        if count != one:
            out[f"warm_wall_ratio_{count}_to_{one}"] = round(r["warm"]["wall_s"] / runs[one]["warm"]["wall_s"], 2)
    if big != one:
        marginal = (runs[big]["warm"]["controller_cpu_s"] - runs[one]["warm"]["controller_cpu_s"]) / (big - one)
        out[f"warm_marginal_controller_cpu_s_per_node_{one}_to_{big}"] = round(marginal, 3)
        out["fixed_controller_cpu_s"] = round(runs[one]["warm"]["controller_cpu_s"] - one * marginal, 2)
        cold = (runs[big]["cold"]["controller_cpu_s"] - runs[one]["cold"]["controller_cpu_s"]) / (big - one)
        out[f"cold_marginal_controller_cpu_s_per_node_{one}_to_{big}"] = round(cold, 3)
    return out


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))

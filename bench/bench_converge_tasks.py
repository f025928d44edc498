"""What a converge costs the controller, task by task (issue 22, part 3).

`npuenv deploy` of a fresh fleet (the first converge) and again (the idempotent
re-run), on simulated SSH nodes, for two versions of the playbooks measured in
the same run: this checkout ("after") and the commit BENCH_CONVERGE_BASE
("before", unpacked with `git archive` into a folder of its own and run from
there). Every size starts fresh nodes for each version, the versions
alternating, so that both see the same machine.

Counted per deploy:
- the controller's CPU-seconds: user + system of `npuenv deploy` and of every
  process it started, the SSH masters included (this process is their child
  subreaper and reaps them, as bench_status.py does, but only while npuenv
  runs: adopted conmons would count the nodes' own CPU), and the masters' share;
- of site.yml alone (bench/callbacks/npuenv_cpu_profile.py, loaded into every
  ansible-playbook of the deploy): its controller CPU per role and per task,
  without the SSH masters, and the tasks each host ran (a worker each) and
  skipped (still a worker each: the condition is evaluated in it).

BENCH_CONVERGE_COUNTS (default 1,4) chooses the fleet sizes; BENCH_CONVERGE_GATE
(default quick, as `npuenv deploy`) the gate.
"""
from __future__ import annotations

import ctypes
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.sim import nodes as sim_nodes  # noqa: E402

from bench_fleet import PYTHON, ROW, prepare  # noqa: E402  (bench/ is sys.path[0]; the same row and files)
from bench_status import children_cpu  # noqa: E402

COUNTS = tuple(int(c) for c in os.environ.get("BENCH_CONVERGE_COUNTS", "1,4").split(","))
GATE = os.environ.get("BENCH_CONVERGE_GATE", "quick")
# The playbooks before issue 22 part 3's converge work ("": measure this checkout alone).
BASE = os.environ.get("BENCH_CONVERGE_BASE", "f5ba713")
PREFIX = sim_nodes.checkout_prefix("npu-sim-p22b")
CALLBACKS = Path(__file__).resolve().parent / "callbacks"


def checkout_of(ref: str, tmp: Path) -> Path:
    """The tree of commit ``ref`` in a folder of its own (no git metadata: nothing is added to the repository)."""
    tree = tmp / f"tree-{ref}"
    tree.mkdir()
    archive = subprocess.run(["git", "archive", ref], cwd=ROOT, check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    return tree


PR_SET_CHILD_SUBREAPER = 36


def subreaper(on: bool) -> None:
    """Whether this process adopts the orphans of the processes it starts (the SSH masters that
    ControlPersist puts in the background), so that their CPU counts. Off while nodes start or stop:
    podman's conmon would be adopted too, and with it the CPU of the node's own processes (conmon
    reaps them), which a node's reboot would then count as the controller's."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, int(on), 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER) failed")


def reap_orphans() -> float:
    """Wait for every orphan that has ended (the SSH masters npuenv closed); their CPU-seconds."""
    cpu = 0.0
    while True:
        try:
            pid, _, usage = os.wait4(-1, os.WNOHANG)
        except ChildProcessError:
            return cpu
        if pid == 0:
            return cpu
        cpu += usage.ru_utime + usage.ru_stime


def deploy(tree: Path, inventory: Path, log_dir: Path, profile: Path) -> dict:
    """`npuenv deploy` from ``tree``: wall, controller CPU (SSH masters included) and site.yml's profile."""
    subreaper(True)
    reap_orphans()
    env = dict(os.environ, NPUENV_CPU_PROFILE=str(profile),
               ANSIBLE_CALLBACK_PLUGINS=str(CALLBACKS))
    profile.unlink(missing_ok=True)
    cpu0, t0 = children_cpu(), time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "npuenv", "deploy", "-i", str(inventory), "--gate", GATE,
                        "--log-dir", str(log_dir)], cwd=tree, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    time.sleep(0.5)  # the masters have been told to exit: let them end, then reap them
    masters = reap_orphans()
    subreaper(False)
    cpu = children_cpu() - cpu0
    if p.returncode != 0:
        raise RuntimeError(f"npuenv deploy from {tree} failed (exit {p.returncode}):\n{(p.stdout + p.stderr)[-3000:]}")
    runs = [json.loads(line) for line in profile.read_text().splitlines()]
    site = [r for r in runs if r["playbook"] == "site.yml"]
    roles: dict[str, float] = {}
    tasks: dict[str, float] = {}
    hosts: dict[str, dict] = {}
    for r in site:
        for role, c in r["roles_cpu_s"].items():
            roles[role] = round(roles.get(role, 0) + c, 2)
        for role, task, c in r["tasks_cpu_s"]:
            tasks[f"{role}: {task}"] = round(tasks.get(f"{role}: {task}", 0) + c, 3)
        hosts.update(r["hosts"])
    per_host = {h: {"run": sum(k.get("run", 0) for k in v.values()),
                    "skipped": sum(k.get("skipped", 0) for k in v.values()),
                    "items": sum(k.get("items", 0) for k in v.values()),
                    "roles": {role: k.get("run", 0) + k.get("skipped", 0) for role, k in v.items()}}
                for h, v in hosts.items()}
    return {"wall_s": round(wall, 1), "controller_cpu_s": round(cpu, 2), "ssh_masters_cpu_s": round(masters, 2),
            "playbooks_cpu_s": {r["playbook"]: round(sum(x["cpu_s"] for x in runs if x["playbook"] == r["playbook"]), 2)
                                for r in runs},
            "site_cpu_s": round(sum(r["cpu_s"] for r in site), 2), "site_roles_cpu_s": roles,
            "site_top_tasks_cpu_s": sorted(tasks.items(), key=lambda kv: -kv[1])[:15], "site_hosts": per_host}


def run() -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="bench-converge-"))
    trees = {"before": checkout_of(BASE, tmp), "after": ROOT} if BASE else {"after": ROOT}
    wheelhouse, installers = prepare(tmp)
    access = sim_nodes.SshAccess.create(tmp / "ssh")
    runs: dict[str, dict[int, dict]] = {v: {} for v in trees}
    names: list[str] = []
    try:
        for count in COUNTS:
            for variant, tree in trees.items():
                names = sim_nodes.start_nodes(count, tmp / f"state-{variant}-{count}", prefix=PREFIX, access=access)
                inv = tmp / f"inventory-{variant}-{count}.yml"
                inv.write_text(yaml.safe_dump(sim_nodes.inventory(names, access, group_vars={
                    "npuenv_row": {"torch_npu": ROW, "python": PYTHON, "chip": "910b"},
                    "npuenv_installer_cache": str(installers), "npuenv_wheelhouse": str(wheelhouse)},
                    host_vars={n: {"hccn_device_ips": [f"10.70.{d}.{i + 1}" for d in range(8)]}
                               for i, n in enumerate(names)})))
                logs = tmp / f"logs-{variant}-{count}"
                r = runs[variant][count] = {
                    phase: deploy(tree, inv, logs, tmp / f"profile-{variant}-{count}-{phase}.jsonl")
                    for phase in ("converge", "rerun")}
                sim_nodes.remove_nodes(names)
                shown = {k: {x: v[x] for x in ("wall_s", "controller_cpu_s", "site_cpu_s", "ssh_masters_cpu_s")} for k, v in r.items()}
                print(f"{variant}, {count} node(s): {json.dumps(shown)}", file=sys.stderr, flush=True)
    finally:
        sim_nodes.remove_nodes(names)
        shutil.rmtree(tmp, ignore_errors=True)   # the wheelhouse, the nodes' state: hundreds of MB
    return summarize(runs)


def summarize(runs: dict[str, dict[int, dict]]) -> dict:
    out: dict = {"name": "converge_tasks", "cores": os.cpu_count(), "base": BASE, "gate": GATE, "runs": runs}
    for variant, by_count in runs.items():
        for count, r in by_count.items():
            for phase in ("converge", "rerun"):
                p = r[phase]
                out[f"{variant}_{phase}_controller_cpu_s_per_node_{count}"] = round(p["controller_cpu_s"] / count, 2)
                out[f"{variant}_{phase}_site_cpu_s_per_node_{count}"] = round(p["site_cpu_s"] / count, 2)
                out[f"{variant}_{phase}_ssh_masters_cpu_s_per_node_{count}"] = round(p["ssh_masters_cpu_s"] / count, 2)
                host = next(iter(p["site_hosts"].values()))
                out[f"{variant}_{phase}_tasks_run_per_host_{count}"] = host["run"]
                out[f"{variant}_{phase}_tasks_skipped_per_host_{count}"] = host["skipped"]
    for count in runs["after"] if "before" in runs else ():
        for phase in ("converge", "rerun"):
            before = runs["before"][count][phase]["controller_cpu_s"]
            out[f"{phase}_controller_cpu_after_to_before_{count}"] = round(
                runs["after"][count][phase]["controller_cpu_s"] / before, 2)
    return out


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))

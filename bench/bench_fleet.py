"""Fleet figures on simulated SSH nodes, measured in one run (issue 12).

All simulated nodes share this machine's cores, so wall-time ratios mostly
measure this machine. What limits a real fleet, where every node has its own
CPUs, is measured instead:

- controller CPU-seconds per node (user + system of `npuenv` and every process
  it started: ansible-playbook, its workers, ssh, and the SSH masters that
  ControlPersist puts in the background, which no one waits for; the bench
  adopts them as a child subreaper and counts them when they exit) for the
  converge, the idempotent re-run and validation at the quick and standard
  levels (against the locks the deploy recorded: quick twice, its first run
  building the artefact and sending it to the nodes, the second finding it
  cached on both sides, as every later run does; quick also against a lock
  resolved from the row, whose artefact is sent again), and the masters' share
  of it (goals: <= 5 s per node to converge, <= 0.3 s per node to validate
  quick);
- node-side CPU-seconds per node per level (the containers' cgroup CPU time;
  goal quick <= 3 s);
- efficiency: wall time / (all CPU-seconds of the run / cores); 1.0 means the
  cores never waited (goal <= 1.3 at 16 nodes);
- the idempotent re-run against the first converge (goal <= 0.25);
- the wall-time ratios N/1, and an extrapolation to 1,000 nodes;
- Ansible's own floor: controller CPU-seconds per host and task of a playbook
  of no-op commands over the same connections (what any rollout of that many
  tasks costs the controller, whatever the tasks do).

BENCH_FLEET_COUNTS (default 1,8,16) chooses the fleet sizes.
"""
from __future__ import annotations

import ctypes
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import compat_matrix as cm  # noqa: E402
from ansible_run.run import MAX_FORKS, PLAYBOOK_DIR, ansible_command, ansible_env, run_folder  # noqa: E402
from tests.sim import installers as sim_installers, nodes as sim_nodes  # noqa: E402
from tests.sim.cann_runtime.build import build_runtime_for_wheel  # noqa: E402

ROW, PYTHON = "2.13.0", "3.11"
COUNTS = tuple(int(c) for c in os.environ.get("BENCH_FLEET_COUNTS", "1,8,16").split(","))
CORES = os.cpu_count() or 1
PREFIX = sim_nodes.checkout_prefix("npu-sim-b")


def children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


PR_SET_CHILD_SUBREAPER = 36   # prctl(2)


def _subreaper(on: bool) -> None:
    if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, int(on), 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")


@contextmanager
def adopting():
    """Within the block this process is a child subreaper: a process that a descendant started and
    left behind (an SSH master that ControlPersist daemonised) becomes this process's child instead
    of init's, and its CPU joins RUSAGE_CHILDREN when reap_adopted() waits for it. Off again after
    the block, so that what starts later (podman's conmon) is not adopted."""
    _subreaper(True)
    try:
        yield
    finally:
        _subreaper(False)


def _children() -> list[str]:
    """This process's live children, as "PID (name)"."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            name, fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)
        except OSError:
            continue
        if fields.split()[1] == str(os.getpid()):
            found.append(f"{pid} {name.split('(', 1)[1]}")
    return found


def reap_adopted(timeout: float = 60) -> float:
    """Wait for every child left (the adopted ones: npuenv closes its SSH masters at the end of each
    run, ``ssh -O exit``); the CPU-seconds they add to RUSAGE_CHILDREN. One still running after
    ``timeout`` is an error: it would escape the count."""
    before, deadline = children_cpu(), time.monotonic() + timeout
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return children_cpu() - before
        if pid == 0:
            if time.monotonic() > deadline:
                raise RuntimeError(f"processes left running after the command: {', '.join(_children())}")
            time.sleep(0.05)


def nodes_cpu(names: list[str]) -> float:
    """CPU-seconds the nodes' containers have used (their cgroups)."""
    p = sim_nodes.podman("stats", "--no-stream", "--format", "{{.Name}} {{.CPUNano}}", *names)
    return sum(int(line.split()[1]) for line in p.stdout.splitlines()) / 1e9


def measure(names: list[str], *args: str, ok=(0,)) -> dict:
    """Run `npuenv ARGS`: wall seconds, controller (with the SSH masters' share) and node CPU-seconds."""
    cpu0, nodes0, t0 = children_cpu(), nodes_cpu(names), time.perf_counter()
    with adopting():
        p = subprocess.run([sys.executable, "-m", "npuenv", *args], cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    masters = reap_adopted()
    if p.returncode not in ok:
        raise RuntimeError(f"npuenv {args[0]} failed (exit {p.returncode}):\n{(p.stdout + p.stderr)[-3000:]}")
    controller, node = children_cpu() - cpu0, nodes_cpu(names) - nodes0
    return {"wall_s": round(wall, 1), "controller_cpu_s": round(controller, 2), "ssh_masters_cpu_s": round(masters, 2),
            "nodes_cpu_s": round(node, 2), "efficiency": round(wall / ((controller + max(node, 0.0)) / CORES), 2)}


NOOP_TASKS = 20


def ansible_floor(names: list[str], inventory: Path, tmp: Path) -> float:
    """Controller CPU-seconds per host and task: NOOP_TASKS `true` commands on every node."""
    play = tmp / "noop.yml"
    play.write_text(yaml.safe_dump([{"name": "No-op", "hosts": "npu_nodes", "gather_facts": False, "tasks": [
        {"name": f"No-op | Run true ({i})", "ansible.builtin.command": {"argv": ["true"]}, "changed_when": False}
        for i in range(NOOP_TASKS)]}]))
    cpu0 = children_cpu()
    # The SSH masters too, as npuenv runs them: in a folder of the run's own, closed at its end.
    with adopting(), run_folder() as folder:
        subprocess.run([ansible_command("ansible-playbook"), str(play), "-i", str(inventory), "--forks",
                        str(len(names))], cwd=PLAYBOOK_DIR, env=ansible_env(ANSIBLE_SSH_CONTROL_PATH_DIR=str(folder)),
                       check=True, capture_output=True)
    reap_adopted()
    return round((children_cpu() - cpu0) / (len(names) * NOOP_TASKS), 3)


def prepare(tmp: Path) -> tuple[Path, Path]:
    """The row's wheelhouse and simulated installers (with the CANN runtime libraries torch_npu loads)."""
    stack = cm.resolve(cm.load_matrix(), cm.Constraints(torch_npu=ROW, python=PYTHON, arch="x86_64")).stack
    wheelhouse, installers = tmp / "wheelhouse", tmp / "installers"
    subprocess.run([sys.executable, "-m", "npuenv", "wheelhouse", "build", "--row", ROW, "--python", PYTHON,
                    "--arch", "x86_64", "--torch-source", os.environ.get("TORCH_SOURCE", "/opt/wheels"),
                    "--torchvision", "none", "--out", str(wheelhouse)], cwd=ROOT, check=True, capture_output=True)
    build_runtime_for_wheel(tmp / "runtime", next(wheelhouse.glob("torch_npu-*.whl")))
    sim_installers.make_installers(stack, installers, runtime_libs=tmp / "runtime")
    return wheelhouse, installers


def write_inventory(path: Path, names: list[str], access, wheelhouse: Path, installers: Path) -> Path:
    """The nodes' inventory for the row, over SSH, each with device IPs on its NPU ports."""
    path.write_text(yaml.safe_dump(sim_nodes.inventory(names, access, group_vars={
        "npuenv_row": {"torch_npu": ROW, "python": PYTHON, "chip": "910b"},
        "npuenv_installer_cache": str(installers), "npuenv_wheelhouse": str(wheelhouse)},
        host_vars={n: {"hccn_device_ips": [f"10.50.{d}.{i + 1}" for d in range(8)]}
                   for i, n in enumerate(names)})))
    return path


def run() -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="bench-fleet-"))
    wheelhouse, installers = prepare(tmp)
    access = sim_nodes.SshAccess.create(tmp / "ssh")
    runs: dict[int, dict] = {}
    names: list[str] = []
    try:
        for count in COUNTS:
            names = sim_nodes.start_nodes(count, tmp / f"state-{count}", prefix=PREFIX, access=access)
            inv = write_inventory(tmp / f"inventory-{count}.yml", names, access, wheelhouse, installers)
            target = ["--target", f"ansible://npu_nodes?inventory={inv}", "--backend", "cpu",
                      "--out", str(tmp / f"validation-{count}")]
            r = runs[count] = {"converge": measure(names, "deploy", "--inventory", str(inv))}
            r["rerun"] = measure(names, "deploy", "--inventory", str(inv))
            # Each host against the lock the deploy recorded on it, as a fleet is checked after a deploy.
            # The first run builds its artefact and sends it to every node (the gate's artefact carried
            # the deploy's lock: another one); the runs after it find it cached on both sides.
            r["validate_quick_first_run"] = measure(names, "validate", *target, "--level", "quick")
            r["validate_quick"] = measure(names, "validate", *target, "--level", "quick")
            r["validate_standard"] = measure(names, "validate", *target, "--level", "standard")
            # ... and, last (a node keeps one artefact), against a lock resolved from the row now: its
            # artefact carries that lock, so it is sent again.
            r["validate_quick_new_lock"] = measure(names, "validate", *target, "--row", ROW, "--level", "quick")
            r["ansible_cpu_s_per_host_task"] = ansible_floor(names, inv, tmp)
            sim_nodes.remove_nodes(names)
            print(f"{count} node(s): {json.dumps(r)}", file=sys.stderr, flush=True)
    finally:
        sim_nodes.remove_nodes(names)
        shutil.rmtree(tmp, ignore_errors=True)   # the wheelhouse, the nodes' state: hundreds of MB
    return summarize(runs)


def summarize(runs: dict[int, dict]) -> dict:
    out: dict = {"name": "fleet", "cores": CORES, "forks_max": MAX_FORKS, "runs": runs}
    one = min(runs)
    for count, r in runs.items():
        for phase in ("converge", "rerun", "validate_quick_first_run", "validate_quick", "validate_quick_new_lock",
                      "validate_standard"):
            out[f"{phase}_controller_cpu_s_per_node_{count}"] = round(r[phase]["controller_cpu_s"] / count, 2)
            out[f"{phase}_ssh_masters_cpu_s_per_node_{count}"] = round(r[phase]["ssh_masters_cpu_s"] / count, 2)
            out[f"{phase}_efficiency_{count}"] = r[phase]["efficiency"]
            if count != one:
                out[f"{phase}_wall_ratio_{count}_to_{one}"] = round(r[phase]["wall_s"] / runs[one][phase]["wall_s"], 2)
        for level in ("quick", "standard"):
            out[f"validate_{level}_node_cpu_s_per_node_{count}"] = round(r[f"validate_{level}"]["nodes_cpu_s"] / count, 2)
        out[f"rerun_to_converge_ratio_{count}"] = round(r["rerun"]["wall_s"] / r["converge"]["wall_s"], 2)
        out[f"ansible_floor_cpu_s_per_host_task_{count}"] = r["ansible_cpu_s_per_host_task"]
    # 1,000 nodes, each with its own CPUs: a node's own work runs in parallel
    # with the others', in batches of `forks`; the controller's CPU is spent
    # once per node on its own cores.
    big = max(runs)
    for phase in ("converge", "validate_quick"):
        r = runs[big][phase]
        per_node_ctrl = r["controller_cpu_s"] / big
        node_wall = runs[one][phase]["wall_s"]
        out[f"{phase}_extrapolated_1000_nodes_s"] = round(
            math.ceil(1000 / MAX_FORKS) * node_wall + 1000 * per_node_ctrl / CORES, 0)
    return out


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))

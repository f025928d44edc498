"""The controller's CPU-seconds per node of `npuenv validate --level quick` over Ansible/SSH (issue 22),
this checkout against an earlier one (BENCH_BASELINE, a git revision) on the same simulated nodes, in
one run, the two alternated so that both see the same machine.

Per fleet size (BENCH_COUNTS, default 1,4) it prints, as the median of BENCH_ROUNDS runs (default 3):

- ``<which>_cpu_s_per_node_<N>``: user + system CPU of `npuenv` and everything it waited for
  (ansible-inventory, ansible-playbook, its workers, ssh clients) and of the SSH masters it started
  (ControlPersist detaches them; bench_fleet.adopting counts them), divided by N;
- ``<which>_marginal_cpu_s_per_node``: what one node more costs, (CPU at the largest N - at the
  smallest) / (difference in N), and ``<which>_fixed_cpu_s``: what a run costs whatever its size;
- ``<which>_cpu_s_per_node_16_estimated``: fixed / 16 + marginal, the issue's 16-node figure, when 16
  is not among the sizes run;
- ``current_first_run_cpu_s_per_node_<N>``: this checkout's first run on nodes that do not have its
  artefact yet (it is sent then), against the cached runs that follow;
- ``ansible_floor_cpu_s_per_node``: the marginal CPU per node of a play of one `raw: "true"` task over
  the same connections, what any one-task play costs per node (its masters, left running for the
  next play, not counted);
- ratios current / baseline.

The nodes are started fresh and never deployed (the suite fails there quickly: the controller's work
is the same, the nodes' is less than on a converged node). They are removed at the end.
"""
from __future__ import annotations

import json
import os
import statistics
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ansible_run.run import PLAYBOOK_DIR, ansible_command, ansible_env  # noqa: E402
from tests.sim import nodes as sim_nodes  # noqa: E402

sys.path.insert(0, str(ROOT / "bench"))
from bench_fleet import adopting, children_cpu, reap_adopted  # noqa: E402

ROW = "2.13.0"
COUNTS = tuple(int(c) for c in os.environ.get("BENCH_COUNTS", "1,4").split(","))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
BASELINE = os.environ.get("BENCH_BASELINE")
PREFIX = sim_nodes.checkout_prefix("npu-sim-bv")
# The size the issue states its goal at (<= 0.3 CPU-s per node at 16 nodes).
GOAL_NODES = 16


def validate_cpu(checkout: Path, inventory: Path, out: Path) -> float:
    """Controller CPU-seconds of one quick validation run from ``checkout`` (its code, its playbooks), the
    SSH masters it left in the background included."""
    cpu0 = children_cpu()
    with adopting():
        p = subprocess.run([sys.executable, "-m", "npuenv", "validate",
                            "--target", f"ansible://npu_nodes?inventory={inventory}", "--row", ROW,
                            "--backend", "cpu", "--level", "quick", "--out", str(out)],
                           cwd=checkout, capture_output=True, text=True)
    reap_adopted()
    cpu = children_cpu() - cpu0
    results = out / "results.json"
    # Undeployed nodes fail their checks (exit 1); anything else (unreachable, no result) spoils the figure.
    if p.returncode != 1 or not results.exists() or json.loads(results.read_text())["summary"]["unreachable"]:
        raise RuntimeError(f"validate from {checkout} ended {p.returncode}:\n{(p.stdout + p.stderr)[-3000:]}")
    return cpu


def floor_cpu(inventory: Path, tmp: Path, forks: int) -> float:
    """Controller CPU-seconds of a play of one raw `true` task on the inventory's nodes."""
    play = tmp / "floor.yml"
    play.write_text(yaml.safe_dump([{"name": "Floor", "hosts": "npu_nodes", "gather_facts": False, "tasks": [
        {"name": "Floor | Run true", "ansible.builtin.raw": "true", "changed_when": False}]}]))
    cpu0 = children_cpu()
    subprocess.run([ansible_command("ansible-playbook"), str(play), "-i", str(inventory), "--forks", str(forks)],
                   cwd=PLAYBOOK_DIR, env=ansible_env(), check=True, capture_output=True)
    return children_cpu() - cpu0


def baseline_checkout(tmp: Path) -> Path | None:
    if not BASELINE:
        return None
    path = tmp / "baseline"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(path), BASELINE], check=True,
                   capture_output=True)
    return path


def run() -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="bench-validate-"))
    access = sim_nodes.SshAccess.create(tmp / "ssh")
    checkouts = {"current": ROOT}
    baseline = baseline_checkout(tmp)
    if baseline:
        checkouts["baseline"] = baseline
    cpu: dict[str, dict[int, float]] = {}
    out: dict = {"name": "validate_controller", "baseline": BASELINE, "rounds": ROUNDS, "cores": os.cpu_count()}
    floor: dict[int, float] = {}
    names: list[str] = []
    try:
        for count in COUNTS:
            names = sim_nodes.start_nodes(count, tmp / f"state-{count}", prefix=PREFIX, access=access)
            inventory = tmp / f"inventory-{count}.yml"
            inventory.write_text(yaml.safe_dump(sim_nodes.inventory(names, access, group_vars={
                "npuenv_row": {"torch_npu": ROW, "python": "3.11", "chip": "910b"}})))
            first = validate_cpu(ROOT, inventory, tmp / "out-first")   # the nodes get this checkout's artefact
            out[f"current_first_run_cpu_s_per_node_{count}"] = round(first / count, 3)
            samples: dict[str, list[float]] = {which: [] for which in checkouts}
            for i in range(ROUNDS):
                for which, checkout in checkouts.items():
                    samples[which].append(validate_cpu(checkout, inventory, tmp / f"out-{which}-{i}"))
            for which, values in samples.items():
                cpu.setdefault(which, {})[count] = statistics.median(values)
                out[f"{which}_cpu_s_per_node_{count}"] = round(cpu[which][count] / count, 3)
            floor[count] = statistics.median(floor_cpu(inventory, tmp, count) for _ in range(ROUNDS))
            sim_nodes.remove_nodes(names)
            print(f"{count} node(s): {json.dumps({k: v for k, v in out.items() if k.endswith(f'_{count}')})}",
                  file=sys.stderr, flush=True)
    finally:
        sim_nodes.remove_nodes(names)
        shutil.rmtree(tmp, ignore_errors=True)   # the wheelhouse, the nodes' state: hundreds of MB
        if baseline:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(baseline)],
                           capture_output=True)
    small, big = min(COUNTS), max(COUNTS)
    if big > small:
        for which, by_count in cpu.items():
            marginal = (by_count[big] - by_count[small]) / (big - small)
            fixed = by_count[small] - small * marginal
            out[f"{which}_marginal_cpu_s_per_node"] = round(marginal, 3)
            out[f"{which}_fixed_cpu_s"] = round(fixed, 2)
            if GOAL_NODES not in COUNTS:
                out[f"{which}_cpu_s_per_node_{GOAL_NODES}_estimated"] = round(fixed / GOAL_NODES + marginal, 3)
        out["ansible_floor_cpu_s_per_node"] = round((floor[big] - floor[small]) / (big - small), 3)
        if "baseline" in cpu:
            for key in ("marginal_cpu_s_per_node", "fixed_cpu_s", f"cpu_s_per_node_{GOAL_NODES}_estimated"):
                if f"current_{key}" in out:
                    out[f"{key}_ratio_current_to_baseline"] = round(out[f"current_{key}"] / out[f"baseline_{key}"], 2)
    for count in COUNTS:
        if "baseline" in cpu:
            out[f"cpu_s_per_node_{count}_ratio_current_to_baseline"] = round(
                cpu["current"][count] / cpu["baseline"][count], 2)
    return out


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))

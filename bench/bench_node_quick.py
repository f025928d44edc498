"""A node's CPU-seconds for the quick validation level, per phase and per check, and how much of
it is the simulator's, measured in one run (issue 22; goal <= 3 CPU-s per node).

One simulated 8 x 910B3 node is deployed with the row (`npuenv deploy`, as bench_fleet does).
The validation artefact is then run on it as PodmanTransport runs it (`bash -lc 'exec python3
ARTEFACT --level quick ...'`, against the lock the node records), REPEATS times each for two
artefacts built in this run: one from this tree and one from BASELINE's (the tree before issue
22's node-side work). Figures are medians over the repeats:

- node_cpu_s: the node container's cgroup CPU over the whole run (bench_fleet's node figure);
- simulator_cpu_s: what the simulated vendor tools spent (each call appends its own CPU-seconds
  to $NPU_SIM_CPU_LOG; a real npu-smi is a C program costing milliseconds), scaled by what a
  tool's own figure leaves out (its exec and its interpreter's exit: simulator_scale, measured on
  the node in this run), and product_cpu_s the rest: the product's own cost;
- per phase: the artefact's start before pytest (unpacking, two Python starts, node/runner.py), pytest's
  start (imports, plugins, conftest), collection, the facts, each check, the end; each as
  CPU-seconds with the simulator's share (bench/node_quick_plugin.py, loaded into a copy of each
  artefact with `-p`);
- per simulated tool call: how many of each and their CPU-seconds;
- the floor: what the commands the quick level exists to run cost alone, each in a python3 of
  its own in the node's login environment as the checks run them (`import torch, torch_npu`,
  CANN's Python dependencies, `python3 -m pip check`), and product_cpu_s over that floor.

BENCH_NODE_QUICK_BASELINE names the baseline commit (default below); REPEATS the runs per artefact.
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench_fleet  # noqa: E402  (its node set-up and its measure of a node's CPU)
from bench_fleet import ROOT  # noqa: E402
from compat_matrix.loader import load_platforms  # noqa: E402
from tests.sim import nodes as sim_nodes  # noqa: E402

# The tree before issue 22's node-side work (its artefact is built here from `git archive`).
BASELINE = os.environ.get("BENCH_NODE_QUICK_BASELINE", "b3fdadb")
REPEATS = int(os.environ.get("REPEATS", "3"))
GOAL_CPU_S = 3.0   # issue 22's aim for a node's quick level
PREFIX = sim_nodes.checkout_prefix("npu-sim-bq")
PLUGIN = HERE / "node_quick_plugin.py"
# In the node: the artefact, the simulated tools' log and the plugin's output.
REMOTE = {"artefact": "/tmp/bench-node-quick.pyz", "log": "/tmp/bench-node-quick-sim.log",
          "out": "/tmp/bench-node-quick.json"}
START = "artefact start"   # the phase before pytest: node CPU less what the pytest process spent
CALIBRATION_CALLS = 20
# A simulated tool call's whole process, as its parent waits for it, over what the tool logs itself.
SCALE = """import json, os, resource, subprocess, sys
def waited():
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime
log, calls = sys.argv[1], int(sys.argv[2])
open(log, "w").close()
start = waited()
for _ in range(calls):
    subprocess.run(["npu-smi", "info", "-t", "temp", "-i", "0", "-c", "0"], stdout=subprocess.DEVNULL, check=True,
                   env=dict(os.environ, NPU_SIM_CPU_LOG=log))
print((waited() - start) / sum(json.loads(line)["cpu_s"] for line in open(log)))
"""
# A command's CPU-seconds as its parent waits for it (argv after the script's name).
WAITED = """import resource, subprocess, sys
subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, check=True)
used = resource.getrusage(resource.RUSAGE_CHILDREN)
print(used.ru_utime + used.ru_stime)
"""


def build_artefact(tree: Path, out: Path) -> Path:
    """The artefact as ``tree``'s validation/artefact.py builds it, with the plugin added."""
    subprocess.run([sys.executable, "-c", "import sys; from pathlib import Path; from validation import artefact; "
                    "artefact.build(Path(sys.argv[1]), None)", str(out)], cwd=tree, check=True,
                   env=dict(os.environ, PYTHONPATH=str(tree)))
    with zipfile.ZipFile(out, "a") as zf:
        zf.write(PLUGIN, PLUGIN.name)
    return out


def baseline_tree(tmp: Path) -> Path:
    tree = tmp / "baseline"
    tree.mkdir()
    archive = subprocess.run(["git", "archive", BASELINE, "validation", "compat_matrix"], cwd=ROOT,
                             capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    return tree


def simulator_scale(node: str) -> float:
    """Whole tool processes over their own figures (SCALE), on ``node``."""
    p = sim_nodes.podman("exec", node, "bash", "-lc", 'exec python3 -c "$1" "$2" "$3"', "scale", SCALE,
                         REMOTE["log"], str(CALIBRATION_CALLS))
    return float(p.stdout.strip())


def floor_commands() -> dict[str, list[str]]:
    """What the quick level cannot leave out, as its checks run it: the row's imports (a job's
    first line; CANN's dependencies as listed in the matrix) and pip's own check."""
    modules = sorted(set(load_platforms().cann_python_deps.values()))
    return {"import torch, torch_npu": ["python3", "-c", "import torch, torch_npu"],
            "import CANN's Python dependencies": ["python3", "-c", "import torch, torch_npu, " + ", ".join(modules)],
            "pip check": ["python3", "-m", "pip", "check"]}


def floor(node: str) -> dict:
    """Median CPU-seconds of each floor command on ``node`` (the dependencies less torch's import)."""
    spent = {}
    for name, argv in floor_commands().items():
        runs = [float(sim_nodes.podman("exec", node, "bash", "-lc", 'exec python3 -c "$@"', "floor", WAITED,
                                       *argv).stdout.strip()) for _ in range(REPEATS)]
        spent[name] = statistics.median(runs)
    spent["import CANN's Python dependencies"] -= spent["import torch, torch_npu"]
    return {name: round(cpu, 3) for name, cpu in spent.items()}


def run_once(node: str, scale: float) -> dict:
    """One quick-level run of the artefact in REMOTE on ``node``: node, simulator and per-phase CPU-seconds."""
    sim_nodes.run_in(node, "rm", "-f", REMOTE["log"], REMOTE["out"])
    before = bench_fleet.nodes_cpu([node])
    p = sim_nodes.podman("exec", "-e", f"NPU_SIM_CPU_LOG={REMOTE['log']}", "-e", f"NODE_QUICK_OUT={REMOTE['out']}",
                         node, "bash", "-lc", 'exec python3 "$@"', "npuenv-validate", REMOTE["artefact"],
                         "--level", "quick", "--recorded-lock", "-p", PLUGIN.stem, check=False)
    node_cpu = bench_fleet.nodes_cpu([node]) - before
    document = json.loads(p.stdout.strip().splitlines()[-1]) if p.stdout.strip() else {}
    failed = [r["check"] for r in document.get("results", []) if r["status"] not in ("passed", "warning")]
    if p.returncode != 0 or failed or not document.get("results"):
        raise RuntimeError(f"the quick level did not pass on {node} (exit {p.returncode}, not passed: {failed}): "
                           f"{(p.stdout + p.stderr)[-2000:]}")
    calls = [{**c, "cpu_s": c["cpu_s"] * scale}
             for c in map(json.loads, sim_nodes.run_in(node, "cat", REMOTE["log"]).stdout.splitlines())]
    plugin = json.loads(sim_nodes.run_in(node, "cat", REMOTE["out"]).stdout)
    phases = {START: [node_cpu - plugin["pytest_cpu_s"], 0.0],
              **{name: [cpu, sim * scale] for name, (cpu, sim) in plugin["phases"].items()}}
    return {"node_cpu_s": node_cpu, "simulator_cpu_s": sum(c["cpu_s"] for c in calls), "phases": phases,
            "calls": calls}


def call_kind(call: dict) -> str:
    """A tool call without its device numbers: `npu-smi info -t temp`."""
    return " ".join([call["tool"], *[a for a in call["args"] if not a.isdigit() and a not in ("-i", "-c")]])


def measure(node: str, artefact: Path, scale: float) -> dict:
    """REPEATS runs of ``artefact``; the median of each figure."""
    sim_nodes.podman("cp", str(artefact), f"{node}:{REMOTE['artefact']}")
    runs = [run_once(node, scale) for _ in range(REPEATS)]
    med = lambda values: round(statistics.median(values), 3)  # noqa: E731
    phases = {name: [med([r["phases"].get(name, [0, 0])[i] for r in runs]) for i in (0, 1)]
              for name in runs[0]["phases"]}
    kinds: dict[str, list[float]] = {}
    for call in runs[0]["calls"]:
        kinds.setdefault(call_kind(call), []).append(call["cpu_s"])
    return {"node_cpu_s": med([r["node_cpu_s"] for r in runs]),
            "simulator_cpu_s": med([r["simulator_cpu_s"] for r in runs]),
            "product_cpu_s": med([r["node_cpu_s"] - r["simulator_cpu_s"] for r in runs]),
            "simulated_tool_calls": len(runs[0]["calls"]), "phases": phases,
            "tool_calls": {k: [len(v), round(sum(v), 3)] for k, v in kinds.items()}}


def measure_node(node: str, tmp: Path) -> dict:
    """The baseline's and this tree's artefacts on a node deployed with the row."""
    artefacts = {"baseline": build_artefact(baseline_tree(tmp), tmp / "baseline.pyz"),
                 "now": build_artefact(ROOT, tmp / "now.pyz")}
    scale = simulator_scale(node)
    runs = {which: measure(node, path, scale) for which, path in artefacts.items()}
    return {"simulator_scale": round(scale, 3), "floor": floor(node), **runs}


def table(runs: dict) -> str:
    """Per phase and check: CPU-seconds before and now, and the simulator's share of each."""
    base, now = runs["baseline"]["phases"], runs["now"]["phases"]
    lines = [f"{'phase or check':28} {'baseline':>9} {'(sim)':>7} {'now':>9} {'(sim)':>7}"]
    for name in [*base, *[n for n in now if n not in base]]:
        b, n = base.get(name, [0, 0]), now.get(name, [0, 0])
        lines.append(f"{name:28} {b[0]:9.3f} {b[1]:7.3f} {n[0]:9.3f} {n[1]:7.3f}")
    for key in ("node_cpu_s", "simulator_cpu_s", "product_cpu_s"):
        lines.append(f"{key:28} {runs['baseline'][key]:9.3f} {'':7} {runs['now'][key]:9.3f}")
    lines += [f"floor: {name:34} {cpu:9.3f}" for name, cpu in runs["floor"].items()]
    lines.append("simulated tool calls (now): " + "; ".join(
        f"{k} x{c} {s:.3f} s" for k, (c, s) in runs["now"]["tool_calls"].items()))
    return "\n".join(lines)


def summarize(runs: dict) -> dict:
    out: dict = {"name": "node_quick", "baseline": BASELINE, "repeats": REPEATS, "runs": runs,
                 "simulator_scale": runs["simulator_scale"]}
    for key in ("node_cpu_s", "simulator_cpu_s", "product_cpu_s", "simulated_tool_calls"):
        for which in ("baseline", "now"):
            out[f"{key}_{which}"] = runs[which][key]
    for key in ("node_cpu_s", "product_cpu_s"):
        out[f"{key}_now_to_baseline_ratio"] = round(runs["now"][key] / runs["baseline"][key], 2)
    out["simulator_share_now"] = round(runs["now"]["simulator_cpu_s"] / runs["now"]["node_cpu_s"], 2)
    out["floor_cpu_s"] = round(sum(runs["floor"].values()), 3)
    out["product_cpu_s_now_to_floor_ratio"] = round(runs["now"]["product_cpu_s"] / out["floor_cpu_s"], 2)
    out["floor_cpu_s_to_goal_ratio"] = round(out["floor_cpu_s"] / GOAL_CPU_S, 2)
    for name, cpu in runs["floor"].items():
        out["floor_cpu_s_" + "_".join(name.replace(",", "").replace("'s", "").lower().split())] = cpu
    for which in ("baseline", "now"):
        for name, (cpu, sim) in runs[which]["phases"].items():
            out[f"cpu_s_{name.replace(' ', '_')}_{which}"] = cpu
            if sim:
                out[f"simulator_cpu_s_{name.replace(' ', '_')}_{which}"] = sim
    return out


def run() -> dict:
    names: list[str] = []
    with tempfile.TemporaryDirectory(prefix="bench-node-quick-") as folder:   # the wheelhouse: 300 MB
        tmp = Path(folder)
        wheelhouse, installers = bench_fleet.prepare(tmp)
        access = sim_nodes.SshAccess.create(tmp / "ssh")
        try:
            names = sim_nodes.start_nodes(1, tmp / "state", prefix=PREFIX, access=access)
            inventory = bench_fleet.write_inventory(tmp / "inventory.yml", names, access, wheelhouse, installers)
            subprocess.run([sys.executable, "-m", "npuenv", "deploy", "--inventory", str(inventory)], cwd=ROOT,
                           check=True, capture_output=True)
            runs = measure_node(names[0], tmp)
        finally:
            sim_nodes.remove_nodes(names)
    print(table(runs), file=sys.stderr)
    return summarize(runs)


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))

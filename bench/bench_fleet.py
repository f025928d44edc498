"""Fleet figures on simulated nodes, measured in one run:

- issue 6: wall time to converge 1, 4 and 8 nodes with `npuenv deploy` and of
  the idempotent re-run, as ratios to the single-node converge;
- issue 7: quick and standard validation time per node, and 8 nodes validated
  in parallel versus one.
"""
from __future__ import annotations

import os
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
COUNTS = tuple(int(c) for c in os.environ.get("BENCH_FLEET_COUNTS", "1,4,8").split(","))


def npuenv(*args) -> float:
    t = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "npuenv", *args], cwd=ROOT, capture_output=True, text=True)
    if p.returncode not in (0,):
        raise RuntimeError(f"npuenv {args[0]} failed:\n{(p.stdout + p.stderr)[-3000:]}")
    return time.perf_counter() - t


def inventory(path: Path, names, installers, wheelhouse) -> Path:
    path.write_text(yaml.safe_dump({"all": {"children": {"npu_nodes": {
        "hosts": {n: {"hccn_device_ips": [f"10.50.{d}.{i + 1}" for d in range(8)]} for i, n in enumerate(names)},
        "vars": {"ansible_connection": "containers.podman.podman", "ansible_python_interpreter": "/usr/bin/python3",
                 "ansible_become": False, "npu_driver_reboot": False,
                 "npuenv_row": {"torch_npu": ROW, "python": PYTHON, "chip": "910b"},
                 "npuenv_installer_cache": str(installers), "npuenv_wheelhouse": str(wheelhouse)}}}}}))
    return path


def run() -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="bench-fleet-"))
    stack = cm.resolve(cm.load_matrix(), cm.Constraints(torch_npu=ROW, python=PYTHON, arch="x86_64")).stack
    wheelhouse, installers = tmp / "wheelhouse", tmp / "installers"
    npuenv("wheelhouse", "build", "--row", ROW, "--python", PYTHON, "--arch", "x86_64",
           "--torch-source", os.environ.get("TORCH_SOURCE", "/opt/wheels"), "--torchvision", "none",
           "--out", str(wheelhouse))
    build_runtime_for_wheel(tmp / "runtime", next(wheelhouse.glob("torch_npu-*.whl")))
    sim_installers.make_installers(stack, installers, runtime_libs=tmp / "runtime")
    out: dict = {"name": "fleet"}
    converge, rerun = {}, {}
    names = []
    try:
        for count in COUNTS:
            names = sim_nodes.start_nodes(count, tmp / f"state-{count}", prefix="npu-sim-b")
            inv = inventory(tmp / f"inv-{count}.yml", names, installers, wheelhouse)
            converge[count] = npuenv("deploy", "--inventory", str(inv))
            rerun[count] = npuenv("deploy", "--inventory", str(inv))
        base = converge[COUNTS[0]]
        out["converge_1_node_s"] = round(base, 1)
        for count in COUNTS:
            out[f"converge_{count}_nodes_ratio"] = round(converge[count] / base, 2)
            out[f"idempotent_rerun_{count}_nodes_ratio"] = round(rerun[count] / base, 2)
        # validation on the last (largest) fleet
        targets = [a for n in names for a in ("--target", f"podman://{n}")]
        common = ["--row", ROW, "--backend", "cpu", "--out", str(tmp / "validation")]
        quick_one = npuenv("validate", *targets[:2], "--level", "quick", *common)
        standard_one = npuenv("validate", *targets[:2], "--level", "standard", *common)
        quick_all = npuenv("validate", *targets, "--level", "quick", "--parallel", str(len(names)), *common)
        out["validate_quick_per_node_s"] = round(quick_one, 1)
        out["validate_standard_per_node_s"] = round(standard_one, 1)
        out[f"validate_quick_{len(names)}_nodes_parallel_vs_one_ratio"] = round(quick_all / quick_one, 2)
    finally:
        sim_nodes.remove_nodes(names)
    return out


if __name__ == "__main__":
    import json
    print(json.dumps(run(), indent=2))

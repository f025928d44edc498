"""Moving 8 simulated SSH nodes between two rows with `npuenv deploy`, measured in one run (issue 19).

Figures (wall-clock seconds of each `npuenv deploy`, printed as ratios):
- gated / ungated: the upgrade A -> B in batches of 2, each batch validated at the quick level
  (--gate quick, workloads on the CPU) against the same upgrade with --gate none (aim <= 1.3);
- rollback / upgrade: B -> A against the ungated A -> B (aim <= 0.5 where the vendor's layout keeps
  the previous CANN side by side, so that going back switches to it instead of installing).

Order of the runs, so that each pair does the same work but for what is measured:
  setup     A without the python tag (no torch wheel for A's row here), then B's Python stack alone
            (--tags python), so that no measured run installs the Python stack;
  upgrade   A -> B, --gate none                        (ungated)
  rollback  B -> A, without the python tag, --gate none
  upgrade   A -> B, --gate quick                       (gated)
Row A is BENCH_UPGRADE_FROM (default 2.8.0.post5: CANN 9.0.0, the same packaging generation as
B's 9.1.0); set it to 2.8.0 for a move across generations (CANN 8.3.RC1), where the toolkit
cannot stay side by side and the rollback installs it again.

  python bench/bench_upgrade.py        -> bench/results/upgrade.{json,md}
"""
from __future__ import annotations

import json
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
from compat_matrix import lock as lock_mod  # noqa: E402
from tests.sim.inputs import row_lock  # noqa: E402
from tests.sim import installers as sim_installers, nodes as sim_nodes  # noqa: E402
from tests.sim.cann_runtime.build import build_runtime_for_wheel  # noqa: E402

ROW_A = os.environ.get("BENCH_UPGRADE_FROM", "2.8.0.post5")
ROW_B, PYTHON, NODES, BATCH = "2.13.0", "3.11", 8, 2
PARTIAL = "preflight,driver,cann,env,hccn,tuning"      # everything but the python tag
PREFIX = sim_nodes.checkout_prefix("npu-sim-up-b")
RESULTS = ROOT / "bench" / "results"


def npuenv(*args) -> float:
    start = time.monotonic()
    p = subprocess.run([sys.executable, "-m", "npuenv", *map(str, args)], capture_output=True, text=True, cwd=ROOT)
    took = time.monotonic() - start
    if p.returncode != 0:
        sys.exit(f"npuenv {' '.join(map(str, args[:1]))} failed ({p.returncode}):\n{p.stdout[-4000:]}{p.stderr[-2000:]}")
    return took


def main() -> int:
    torch_source = os.environ.get("TORCH_SOURCE", "/opt/wheels")
    m = cm.load_matrix()
    a = cm.resolve(m, cm.Constraints(torch_npu="==" + ROW_A, python=PYTHON, arch="x86_64")).stack
    b = cm.resolve(m, cm.Constraints(torch_npu="==" + ROW_B, python=PYTHON, arch="x86_64")).stack
    with tempfile.TemporaryDirectory(prefix="npuenv-bench-upgrade-") as tmp_name:
        tmp = Path(tmp_name)
        house, installers, logs = tmp / "wheelhouse", tmp / "installers", tmp / "deploy"
        npuenv("wheelhouse", "build", "--row", ROW_B, "--python", PYTHON, "--arch", "x86_64",
               "--torch-source", torch_source, "--torchvision", "none", "--out", house)
        build_runtime_for_wheel(tmp / "runtime", next(house.glob("torch_npu-*.whl")))
        for stack in (a, b):
            sim_installers.make_installers(stack, installers, runtime_libs=tmp / "runtime")
        lock_a = lock_mod.write(row_lock(ROW_A, installers), tmp / "lock-a.json")
        lock_b = lock_mod.write(row_lock(ROW_B, installers, [house]), tmp / "lock-b.json")
        access = sim_nodes.SshAccess.create(tmp / "ssh")
        names = sim_nodes.start_nodes(NODES, tmp / "state", prefix=PREFIX, access=access)
        try:
            inventory = tmp / "inventory.yml"
            inventory.write_text(yaml.safe_dump(sim_nodes.inventory(names, access, host_vars={
                n: {"hccn_device_ips": [f"10.80.{d}.{i + 1}" for d in range(8)]} for i, n in enumerate(names)},
                group_vars={"npuenv_installer_cache": str(installers), "npuenv_wheelhouse": str(house),
                            "hccn_netdetect_address": "10.80.0.254"})))
            common = ["-i", inventory, "--batch-size", BATCH, "--log-dir", logs]
            npuenv("deploy", "--lock", lock_a, "--tags", PARTIAL, *common)
            npuenv("deploy", "--lock", lock_b, "--tags", "python", *common)
            times = {
                "upgrade, ungated": npuenv("deploy", "--lock", lock_b, "--gate", "none", *common),
                "rollback": npuenv("deploy", "--lock", lock_a, "--tags", PARTIAL, "--gate", "none", *common),
                "upgrade, gated quick": npuenv("deploy", "--lock", lock_b, "--gate", "quick", "--gate-backend",
                                               "cpu", *common),
            }
        finally:
            sim_nodes.remove_nodes(names)
    gated = times["upgrade, gated quick"] / times["upgrade, ungated"]
    rollback = times["rollback"] / times["upgrade, ungated"]
    data = {"nodes": NODES, "batch_size": BATCH, "from": {"row": ROW_A, "cann": a.row.cann, "hdk": a.row.hdk["version"]},
            "to": {"row": ROW_B, "cann": b.row.cann, "hdk": b.row.hdk["version"]},
            "seconds": {k: round(v, 1) for k, v in times.items()},
            "gated_over_ungated": round(gated, 2), "rollback_over_upgrade": round(rollback, 2),
            "aims": {"gated_over_ungated": 1.3, "rollback_over_upgrade": 0.5}}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "upgrade.json").write_text(json.dumps(data, indent=1) + "\n")
    lines = [f"# {NODES} nodes, torch_npu {ROW_A} (CANN {a.row.cann}, HDK {a.row.hdk['version']}) <-> "
             f"{ROW_B} (CANN {b.row.cann}, HDK {b.row.hdk['version']}), batches of {BATCH}", "",
             "| run | seconds |", "|---|---|", *[f"| {k} | {v:.1f} |" for k, v in times.items()], "",
             f"gated / ungated upgrade: {gated:.2f} (aim <= 1.3)",
             f"rollback / upgrade: {rollback:.2f} (aim <= 0.5)"]
    (RESULTS / "upgrade.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())

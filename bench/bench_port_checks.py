"""What the port checks of issue #21 cost a node, measured in one run.

The standard level reads every NPU port with hccn_tool in one shell call
(validation/facts.py read_ports). The checks added for #21 (TLS, LLDP cabling,
/etc/hccn.conf against netdetect) add three queries per port to that call;
this measures the CPU-seconds of the call with and without them on one
simulated 8-port node (the simulated hccn_tool, run as the node would run the
real one) and prints the ratio. The quick level reads no port: its cost is
unchanged.
"""
from __future__ import annotations

import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.sim import state as sim_state  # noqa: E402
from validation import facts as facts_mod  # noqa: E402

NEW = ("tls", "lldp", "netdetect")
REPEATS = 5


class SimNode(facts_mod.Probe):
    """The simulated hccn_tool, on its PATH, reading one node's device state."""

    def __init__(self, folder: Path):
        self.env = dict(os.environ, NPU_SIM_STATE=str(folder / "state.json"), PATH=f"{folder}:{os.environ['PATH']}")
        sim_state.save(sim_state.default_state("910b"), folder / "state.json")
        tool = folder / "hccn_tool"
        tool.write_text(f"#!/bin/sh\nexec {sys.executable} {ROOT / 'tests/sim/tools/hccn_tool.py'} \"$@\"\n")
        tool.chmod(0o755)

    def run(self, command):
        p = subprocess.run(["bash", "-c", command], capture_output=True, text=True, env=self.env)
        return p.returncode, p.stdout, p.stderr


def cpu_of(probe: SimNode, queries: tuple[str, ...]) -> float:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    for _ in range(REPEATS):
        facts_mod.read_ports(probe, "hccn_tool", list(range(8)), queries)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime) / REPEATS


def run() -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        probe = SimNode(Path(tmp))
        every = tuple(facts_mod.HCCN_QUERIES)
        before = tuple(q for q in every if q not in NEW)
        old, new = cpu_of(probe, before), cpu_of(probe, every)
    result = {"name": "port_checks", "queries_per_port_before": len(before), "queries_per_port_now": len(every),
              "node_cpu_s_before": round(old, 3), "node_cpu_s_now": round(new, 3),
              "standard_port_reading_cost_ratio": round(new / old, 2)}
    print(result)
    return result


if __name__ == "__main__":
    run()

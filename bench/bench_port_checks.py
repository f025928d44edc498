"""What the standard-level checks of issue #21 cost a node, measured in one run.

The standard level reads every NPU port with hccn_tool in one shell call
(validation/node/facts.py read_ports). The checks added for #21 add five queries
per port to that call (TLS, LLDP cabling, netdetect for /etc/hccn.conf, speed
and FEC), and read per card the board and MCU, per chip its HCCS links, and
the kernel log once (Facts' lazy readers: one shell call each). This measures
the node CPU-seconds of those reads on one simulated 8-NPU node (the simulated
tools, run as the node would run the real ones) and prints them as ratios of
what the standard level read of the ports before #21. The quick level reads
none of them: the bench counts their commands while the quick facts are
collected.
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
from validation.node import facts as facts_mod  # noqa: E402

NEW_PORT_QUERIES = ("tls", "lldp", "netdetect", "speed", "fec")
NEW_READS = ("boards", "hccs", "kernel_log")      # the facts read only when a check asks (facts.Facts)
REPEATS = 5
TOOLS = {"hccn_tool": "tests/sim/tools/hccn_tool.py", "npu-smi": "tests/sim/tools/npu_smi.py",
         "dmesg": "tests/sim/node/dmesg"}


class SimNode(facts_mod.Probe):
    """The simulated vendor tools and kernel log on their PATH, reading one 8 x 910B3 node's state."""

    def __init__(self, folder: Path):
        state = sim_state.default_state("910b")
        root = folder / "root"
        for kind in ("driver", "firmware"):
            info = root / f"usr/local/Ascend/{kind}/version.info"
            info.parent.mkdir(parents=True)
            info.write_text("Version=7.7.0.1.231\n" if kind == "firmware" else "Version=25.2.0\n")
        (root / "dev").mkdir()
        for name in ["davinci_manager"] + [f"davinci{d['phy_id']}" for d in sim_state.chips(state)]:
            (root / "dev" / name).touch()
        sim_state.save(state, folder / "state.json")
        self.env = dict(os.environ, NPU_SIM_STATE=str(folder / "state.json"), NPU_SIM_ROOT=str(root),
                        PATH=f"{folder}:{os.environ['PATH']}")
        self.commands: list[str] = []
        for name, tool in TOOLS.items():
            (folder / name).write_text(f"#!/bin/sh\nexec {sys.executable} {ROOT / tool} \"$@\"\n")
            (folder / name).chmod(0o755)

    def run(self, command):
        self.commands.append(command)
        p = subprocess.run(["bash", "-c", command], capture_output=True, text=True, env=self.env)
        return p.returncode, p.stdout, p.stderr

    def read(self, path):
        return None

    def glob(self, pattern):
        return []


def children_cpu_s() -> float:
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def cpu_of(work, setup=lambda: None) -> float:
    """The child processes' CPU-seconds of ``work(setup())``, the mean of REPEATS runs (setup not counted)."""
    total = 0.0
    for _ in range(REPEATS):
        ready = setup()
        start = children_cpu_s()
        work(ready)
        total += children_cpu_s() - start
    return total / REPEATS


def run() -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        probe = SimNode(Path(tmp))
        every = tuple(facts_mod.HCCN_QUERIES)
        before = tuple(q for q in every if q not in NEW_PORT_QUERIES)
        ports = list(range(8))
        old = cpu_of(lambda _: facts_mod.read_ports(probe, "hccn_tool", ports, before))
        now = cpu_of(lambda _: facts_mod.read_ports(probe, "hccn_tool", ports, every))
        quick = facts_mod.collect(probe, network=False)   # what the quick level reads
        assert quick["devices"], "the simulated node lists no NPU"
        quick_new = sum(("upgrade" in c or "-t hccs" in c or "dmesg" in c) for c in probe.commands)
        reads = {name: cpu_of(lambda facts, name=name: facts[name], lambda: facts_mod.collect(probe, network=False))
                 for name in NEW_READS}
    total = now + sum(reads.values())
    result = {"name": "standard_checks_of_21", "queries_per_port_before": len(before),
              "queries_per_port_now": len(every), "node_cpu_s_ports_before": round(old, 3),
              "node_cpu_s_ports_now": round(now, 3), **{f"node_cpu_s_{k}": round(v, 3) for k, v in reads.items()},
              "standard_port_reading_cost_ratio": round(now / old, 2),
              "standard_reads_now_over_ports_before_ratio": round(total / old, 2),
              "quick_level_new_commands": quick_new}
    print(result)
    return result


if __name__ == "__main__":
    run()

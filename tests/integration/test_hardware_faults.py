"""The hardware checks on a simulated node, through `npuenv validate` as a user
runs it: a healthy node with device IPs and gateways on its NPU ports passes
every one of them, hccl_test (the toolkit's, launched with MPICH's mpirun)
included. Each hardware fault of tests/sim/faults.py is caught by its own check
and by no other in test_fleet.py, over SSH."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.sim import nodes as sim_nodes

ROOT = Path(__file__).resolve().parents[2]
ROW = "2.13.0"
PREFIX = sim_nodes.checkout_prefix("npu-sim-h15")
HARDWARE = ("npu_temperature", "hbm_ecc", "npu_topology", "optical_modules", "link_flaps", "packet_errors",
            "npu_tls", "npu_cabling", "link_speed_fec", "hccs_links", "firmware_running", "kernel_log",
            "npu_routes", "hccl_test")
NEIGHBOURS = ("npu_health", "npu_network")


@pytest.fixture(scope="module")
def node(node_image, installer_sets, tmp_path_factory):
    """One simulated 8 x 910B3 node with the row's driver and toolkit (its
    hccl_test programs), and device IPs and gateways on its NPU ports."""
    state_root = tmp_path_factory.mktemp("h15-state")
    [name] = sim_nodes.start_nodes(1, state_root, prefix=PREFIX)
    try:
        inst = installer_sets["current"]
        subprocess.run(["podman", "cp", f"{inst.dir}/.", f"{name}:/opt/installers"], check=True)
        f = {k: f"/opt/installers/{p.name}" for k, p in inst.files.items()}
        ports = "".join(f"$H -i {i} -ip -s address 10.20.{i}.5 netmask 255.255.255.0\n"
                        f"$H -i {i} -gateway -s gateway 10.20.{i}.1\n" for i in range(8))
        sim_nodes.run_in(name, "bash", "-c", f"""set -e
groupadd HwHiAiUser; useradd -g HwHiAiUser -d /home/HwHiAiUser -m HwHiAiUser -s /bin/bash
{f["driver"]} --full --install-for-all --quiet
{f["firmware"]} --full --quiet || [ $? -eq 2 ]
{f["toolkit"]} --install --install-for-all --quiet
H={inst.stack.paths["hccn_tool"]}
{ports}""")
        yield name, state_root
    finally:
        sim_nodes.remove_nodes([name])


def validate(name, out: Path, level: str, checks) -> tuple[int, dict | None, str]:
    run = subprocess.run([sys.executable, "-m", "npuenv", "validate", "--target", f"podman://{name}", "--row", ROW,
                          "--backend", "cpu", "--level", level, "--out", str(out),
                          *[a for c in checks for a in ("--only", c)]],
                         capture_output=True, text=True, cwd=ROOT, timeout=900)
    results = json.loads((out / "results.json").read_text()) if (out / "results.json").exists() else None
    return run.returncode, results, run.stdout + run.stderr


def test_a_healthy_node_passes_every_hardware_check(node, tmp_path):
    name, _ = node
    rc, results, text = validate(name, tmp_path / "healthy", "full", HARDWARE + NEIGHBOURS)
    assert results is not None, text[-3000:]
    status = {r["check"]: r for r in results["results"]}
    assert {c: status[c]["status"] for c in HARDWARE + NEIGHBOURS} == {c: "passed" for c in HARDWARE + NEIGHBOURS}, \
        text[-3000:]
    assert rc == 0
    hccl = status["hccl_test"]["data"]
    assert hccl["ranks"] == 8 and hccl["hccl_test"][-1]["bytes"] == 64 << 20
    assert status["npu_routes"]["data"]["routes"][3]["gateway"] == {"address": "10.20.3.1", "iface": "eth3"}

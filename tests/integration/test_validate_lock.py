"""`npuenv validate` reads the lock back from the nodes themselves: a simulated node (podman, with its own
os-release and python3) is checked against the lock it records, or against the entry for its platform of
the lock given; a node that records none was never deployed by npuenv, and the report says so per host."""
from __future__ import annotations

import json
import platform
import subprocess
import sys
from pathlib import Path

import pytest

import compat_matrix as cm
from compat_matrix import lock
from tests.sim import nodes as sim_nodes

ROOT = Path(__file__).resolve().parents[2]
PREFIX = sim_nodes.checkout_prefix("npu-sim-lk")
CHECK = "nnal"   # a quick check that reads files only
# The simulated nodes are Debian 12 containers of this machine's arch.
NODE_PLATFORM = f"{cm.load_platforms().canonical_arch(platform.machine())}/debian12"


@pytest.fixture(scope="module")
def pair(node_image, tmp_path_factory):
    names = sim_nodes.start_nodes(2, tmp_path_factory.mktemp("lock-nodes"), prefix=PREFIX)
    yield names
    sim_nodes.remove_nodes(names)


def validate(tmp_path: Path, *args: str) -> tuple[int, dict | None, str]:
    out = tmp_path / "out"
    p = subprocess.run([sys.executable, "-m", "npuenv", "validate", *args, "--level", "quick", "--only", CHECK,
                        "--out", str(out)], capture_output=True, text=True, cwd=ROOT, timeout=600)
    results = json.loads((out / "results.json").read_text()) if (out / "results.json").exists() else None
    return p.returncode, results, p.stdout + p.stderr


def test_each_node_is_validated_against_the_lock_it_records(pair, tmp_path):
    recorded = lock.make(cm.load_matrix(), lock.constraints_from_mapping({"row": "2.13.0", "python": "3.11"}))
    path = lock.write(recorded, tmp_path / "recorded.json")
    where = cm.load_platforms().data["install_records"]["lock"]
    deployed, never = pair
    subprocess.run(["podman", "exec", deployed, "mkdir", "-p", str(Path(where).parent)], check=True)
    subprocess.run(["podman", "cp", str(path), f"{deployed}:{where}"], check=True)
    rc, results, output = validate(tmp_path, "--target", f"podman://{deployed}", "--target", f"podman://{never}")
    assert results is not None, output[-3000:]
    locks = results["meta"]["locks"]
    assert locks[f"podman://{deployed}"] == {
        lock.FORMAT_KEY: lock.FORMAT, "digest": recorded.digest, "entry": NODE_PLATFORM, "source": "recorded",
        "torch_npu": "2.13.0", "torch": "2.13.0", "cann": "9.1.0", "python": "3.11", "chip": "910b"}
    assert locks[f"podman://{never}"] is None
    status = {r["host"]: (r["check"], r["status"], r["message"]) for r in results["results"]}
    assert status[f"podman://{deployed}"][:1] == (CHECK,)
    assert status[f"podman://{never}"][:2] == ("suite", "error")
    assert "never deployed by npuenv: this machine has no /etc/npuenv/lock.json" in status[f"podman://{never}"][2]
    assert rc == 1, output[-3000:]


def test_a_lock_without_the_nodes_platform_is_an_error_naming_it(pair, tmp_path):
    ubuntu_only = lock.make(cm.load_matrix(), lock.constraints_from_mapping({"row": "2.13.0", "os": "ubuntu22.04"}))
    path = lock.write(ubuntu_only, tmp_path / "ubuntu.json")
    rc, results, output = validate(tmp_path, "--target", f"podman://{pair[1]}", "--lock", str(path))
    assert rc == 2, output[-3000:]   # nothing could be checked
    assert f"the lock {ubuntu_only.digest[:19]} has no entry for this machine's platform {NODE_PLATFORM}" in output

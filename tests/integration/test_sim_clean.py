"""`make sim-clean` (python -m tests.sim clean) removes the simulated nodes this
checkout made, and leaves those of another checkout alone."""
from __future__ import annotations

import shutil
import subprocess
import sys
import uuid

import pytest

from tests.sim import nodes as sim_nodes

BASE_IMAGE = "localhost/debian:bookworm"


def podman(*args, check=True):
    return subprocess.run(["podman", *args], capture_output=True, text=True, check=check)


@pytest.fixture
def containers():
    if shutil.which("podman") is None or podman("image", "exists", BASE_IMAGE, check=False).returncode != 0:
        pytest.fail(f"podman and {BASE_IMAGE} are needed: run `make engine`")
    made = []

    def start(name: str, label: str) -> str:
        podman("run", "-d", "--name", name, "--label", label, BASE_IMAGE, "sleep", "infinity")
        made.append(name)
        return name

    yield start
    podman("rm", "--force", "--ignore", "--time", "0", *made, check=False)


def names() -> set[str]:
    return set(podman("ps", "-a", "--format", "{{.Names}}").stdout.split())


def test_sim_clean_removes_only_this_checkouts_nodes(containers, tmp_path):
    # The clean runs in a copy of the simulator, a checkout of its own: in this
    # checkout it would also remove the nodes other tests are using right now.
    checkout = tmp_path / "checkout"
    shutil.copytree(sim_nodes.HERE, checkout / "tests" / "sim", ignore=shutil.ignore_patterns("__pycache__"))
    tag = uuid.uuid4().hex[:6]
    ours = containers(f"npu-sim-h14b-ours-{tag}", f"npuenv.sim-node={checkout}")
    this_checkouts = containers(f"npu-sim-h14b-theirs-{tag}", sim_nodes.LABEL)
    unlabelled_old = containers(f"npu-sim-h14b-old-{tag}", "npuenv.sim-node")
    assert sim_nodes.LABEL == f"npuenv.sim-node={sim_nodes.CHECKOUT}"
    run = subprocess.run([sys.executable, "-m", "tests.sim", "clean"], cwd=checkout, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    left = names()
    assert ours not in left
    assert this_checkouts in left and unlabelled_old in left

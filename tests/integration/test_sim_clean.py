"""`make sim-clean` (python -m tests.sim clean) removes the simulated nodes this
checkout made, and leaves those of another checkout alone; starting nodes
(start_nodes, python -m tests.sim nodes) replaces only this checkout's nodes and
refuses a name that another checkout's container (or an unlabelled one) holds."""
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


# What another checkout's node carries.
FOREIGN = "npuenv.sim-node=/elsewhere/another-checkout"


class Containers:
    """Idle containers standing in for nodes, under names no other test uses."""

    def __init__(self):
        self.tag = uuid.uuid4().hex[:6]

    def prefix(self, what: str) -> str:
        return f"npu-sim-h20-{what}-{self.tag}"

    def __call__(self, name: str, label: str | None) -> str:
        podman("run", "-d", "--name", name, *(["--label", label] if label else []), BASE_IMAGE, "sleep", "infinity")
        return name

    def remove_all(self) -> None:
        """Also what a test's start_nodes made under its prefix, and the names of the first test."""
        mine = [n for n in names() if self.tag in n]
        podman("rm", "--force", "--ignore", "--time", "0", *mine, check=False)


@pytest.fixture
def containers():
    if shutil.which("podman") is None or podman("image", "exists", BASE_IMAGE, check=False).returncode != 0:
        pytest.fail(f"podman and {BASE_IMAGE} are needed: run `make engine`")
    made = Containers()
    yield made
    made.remove_all()


def names() -> set[str]:
    return set(podman("ps", "-a", "--format", "{{.Names}}").stdout.split())


def container_id(name: str) -> str:
    return podman("inspect", name, "--format", "{{.Id}}").stdout.strip()


def test_sim_clean_removes_only_this_checkouts_nodes(containers, tmp_path):
    # The clean runs in a copy of the simulator, a checkout of its own: in this
    # checkout it would also remove the nodes other tests are using right now.
    checkout = tmp_path / "checkout"
    shutil.copytree(sim_nodes.HERE, checkout / "tests" / "sim", ignore=shutil.ignore_patterns("__pycache__"))
    tag = containers.tag
    ours = containers(f"npu-sim-h14b-ours-{tag}", f"npuenv.sim-node={checkout}")
    this_checkouts = containers(f"npu-sim-h14b-theirs-{tag}", sim_nodes.LABEL)
    unlabelled_old = containers(f"npu-sim-h14b-old-{tag}", "npuenv.sim-node")
    assert sim_nodes.LABEL == f"npuenv.sim-node={sim_nodes.CHECKOUT}"
    run = subprocess.run([sys.executable, "-m", "tests.sim", "clean"], cwd=checkout, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert run.stdout == f"removed {ours}\n"
    left = names()
    assert ours not in left
    assert this_checkouts in left and unlabelled_old in left


@pytest.mark.parametrize("label", [FOREIGN, None], ids=["another-checkout", "unlabelled"])
def test_start_refuses_a_node_name_this_checkout_did_not_make(containers, node_image, tmp_path, label):
    prefix = containers.prefix("clash")
    theirs = containers(f"{prefix}-1", label)
    theirs_id = container_id(theirs)
    with pytest.raises(sim_nodes.NodeNameTaken) as raised:
        sim_nodes.start_nodes(2, tmp_path, prefix=prefix)
    owner = "made by the checkout /elsewhere/another-checkout" if label else \
        "that names no checkout in the label npuenv.sim-node"
    message = str(raised.value)
    assert f"node name {theirs} is taken by a container {owner}, not by this checkout ({sim_nodes.CHECKOUT})" \
        in message
    # how to resolve it, each way
    assert "`make sim-clean` in the checkout that made them" in message
    assert f"`podman rm -f {theirs}` if nothing uses them" in message and "--prefix" in message
    assert container_id(theirs) == theirs_id
    assert f"{prefix}-0" not in names()  # refused before anything started


def test_start_replaces_only_this_checkouts_nodes_of_its_prefix(containers, node_image, tmp_path):
    prefix = containers.prefix("replace")
    earlier = containers(f"{prefix}-0", sim_nodes.LABEL)   # this checkout's node of the same name
    larger_run = containers(f"{prefix}-4", sim_nodes.LABEL)  # what a larger earlier run left
    kept = {
        containers(f"{prefix}-5", FOREIGN): "another checkout's, of a name not asked for",
        containers(f"{prefix}-x-0", sim_nodes.LABEL): "this checkout's, of another prefix",
    }
    ids = {name: container_id(name) for name in [earlier, *kept]}
    assert sim_nodes.start_nodes(1, tmp_path, prefix=prefix) == [earlier]
    new_id, image, owner = podman("inspect", earlier, "--format",
                                  '{{.Id}} {{.ImageName}} {{index .Config.Labels "npuenv.sim-node"}}').stdout.split()
    assert new_id != ids[earlier] and (image, owner) == (sim_nodes.NODE_IMAGE, str(sim_nodes.CHECKOUT))
    assert larger_run not in names()
    for name, what in kept.items():
        assert container_id(name) == ids[name], what


def test_sim_nodes_command_names_the_clash_and_starts_nothing(containers, node_image, tmp_path):
    prefix = containers.prefix("cli")
    theirs = containers(f"{prefix}-0", FOREIGN)
    theirs_id = container_id(theirs)
    run = subprocess.run([sys.executable, "-m", "tests.sim", "nodes", "--count", "2", "--prefix", prefix, "--podman",
                          "--state-dir", str(tmp_path)], cwd=sim_nodes.CHECKOUT, capture_output=True, text=True)
    assert run.returncode == 2, run.stdout + run.stderr
    assert run.stderr.startswith(f"node name {theirs} is taken by a container made by the checkout "
                                 "/elsewhere/another-checkout"), run.stderr
    assert "Traceback" not in run.stderr and run.stdout == ""
    assert container_id(theirs) == theirs_id and f"{prefix}-1" not in names()


def test_remove_nodes_leaves_names_this_checkout_did_not_make(containers):
    prefix = containers.prefix("remove")
    ours = containers(f"{prefix}-0", sim_nodes.LABEL)
    theirs = containers(f"{prefix}-1", FOREIGN)
    unlabelled = containers(f"{prefix}-2", None)
    assert sim_nodes.remove_nodes([ours, theirs, unlabelled, f"{prefix}-9"]) == [ours]
    left = names()
    assert ours not in left and theirs in left and unlabelled in left

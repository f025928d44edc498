"""Shared fixtures for tests that run the real tools (podman, ansible, torch)
against the simulated Ascend host. Images are built once per session."""
from __future__ import annotations

import shutil
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

import compat_matrix as cm
from tests.sim import installers as sim_installers
from tests.sim import nodes as sim_nodes
from tests.sim import state as sim_state

# One row of each CANN packaging generation (x86_64, 910B).
LEGACY_ROW = "2.4.0.post2"   # CANN 8.0.0: ascend-toolkit/<v> + kernels package
CURRENT_ROW = "2.13.0"       # CANN 9.1.0: cann-<v> + ops package


def pytest_collection_modifyitems(items):
    for item in items:
        if "/integration/" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def matrix():
    return cm.load_matrix()


def stack_for(matrix, torch_npu: str, **kw) -> cm.Stack:
    return cm.resolve(matrix, cm.Constraints(torch_npu=torch_npu, arch=kw.pop("arch", "x86_64"), **kw)).stack


@pytest.fixture(scope="session")
def node_image():
    if shutil.which("podman") is None:
        pytest.fail("podman is not installed: run `make setup` (tests/sim/setup-engine.sh)")
    return sim_nodes.build_node_image()


@dataclass
class InstallerSet:
    stack: cm.Stack
    dir: Path
    files: dict


@pytest.fixture(scope="session")
def installer_sets(matrix, tmp_path_factory) -> dict[str, InstallerSet]:
    sets = {}
    for name, row in (("legacy", LEGACY_ROW), ("current", CURRENT_ROW)):
        stack = stack_for(matrix, row)
        out = tmp_path_factory.mktemp(f"installers-{name}")
        sets[name] = InstallerSet(stack, out, sim_installers.make_installers(stack, out))
    return sets


@dataclass
class FreshNode:
    """Runs a bash script in a throw-away node with its own device state."""
    image: str
    state_dir: Path

    def run(self, script: str, mounts: dict[str, Path] | None = None, npus: int | None = None,
            chip: str = "910b", writable: dict[str, Path] | None = None) -> subprocess.CompletedProcess:
        """``mounts`` are read-only, ``writable`` folders take what the script leaves for the test."""
        state_dir = self.state_dir / uuid.uuid4().hex[:8]
        sim_state.save(sim_state.default_state(chip, npus=npus), state_dir / "state.json")
        volumes = ["-v", f"{state_dir}:/etc/npu-sim"]
        for target, source in (mounts or {}).items():
            volumes += ["-v", f"{source}:{target}:ro"]
        for target, source in (writable or {}).items():
            volumes += ["-v", f"{source}:{target}"]
        return subprocess.run(["podman", "run", "--rm", "--network", "none", "--cap-add", "MKNOD", *volumes,
                               self.image, "bash", "-c", script], capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="session")
def fresh_node(node_image, tmp_path_factory) -> FreshNode:
    return FreshNode(node_image, tmp_path_factory.mktemp("node-state"))


def pytest_terminal_summary(terminalreporter):
    """Print how many simulated faults the validation suite was shown to catch."""
    caught = sorted({v for r in terminalreporter.stats.get("passed", []) for k, v in r.user_properties
                     if k == "fault_caught"})
    if caught:
        terminalreporter.write_line(f"validation fault coverage: {len(caught)} simulated faults caught by the right "
                                    f"check ({', '.join(caught)})")

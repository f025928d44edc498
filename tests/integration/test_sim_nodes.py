"""Three simulated nodes under podman; one gets the vendor stack installed with
the installers' own flags; testinfra reads it back through podman://."""
from __future__ import annotations

import subprocess

import pytest
import testinfra

from tests.sim import nodes as sim_nodes
from validation import vendor_tools


@pytest.fixture(scope="module")
def three_nodes(node_image, tmp_path_factory):
    state_root = tmp_path_factory.mktemp("three-nodes")
    names = sim_nodes.start_nodes(3, state_root, prefix="npu-sim-t")
    yield names, state_root
    sim_nodes.remove_nodes(names)


def test_three_nodes_install_and_read_back(three_nodes, installer_sets):
    names, state_root = three_nodes
    inst = installer_sets["legacy"]
    node = names[0]
    subprocess.run(["podman", "cp", f"{inst.dir}/.", f"{node}:/opt/installers"], check=True)
    f = {k: f"/opt/installers/{p.name}" for k, p in inst.files.items()}
    script = f"""set -e
groupadd HwHiAiUser; useradd -g HwHiAiUser -d /home/HwHiAiUser -m HwHiAiUser -s /bin/bash
{f["driver"]} --full --install-for-all --quiet
{f["firmware"]} --full --quiet || [ $? -eq 2 ]
{f["toolkit"]} --install --install-for-all --quiet
{f["kernels"]} --install --install-for-all --quiet
"""
    sim_nodes.run_in(node, "bash", "-c", script)

    host = testinfra.get_host(f"podman://{node}")
    info = vendor_tools.parse_npu_smi_info(host.check_output("npu-smi info"))
    assert info.version == "24.1.0"
    assert len(info.chips) == 8 and {c.health for c in info.chips} == {"OK"}
    assert host.file("/usr/local/Ascend/driver/version.info").contains("^Version=24.1.0$")
    assert host.file("/usr/local/Ascend/firmware/version.info").contains("^package_version=24.1.0$")
    assert host.file("/usr/local/Ascend/ascend-toolkit/latest").linked_to == "/usr/local/Ascend/ascend-toolkit/8.0.0"
    assert host.check_output("stat -c %F /dev/davinci7") == "character special file"

    # the other two nodes are untouched, and each has its own hardware
    for other in names[1:]:
        peer = testinfra.get_host(f"podman://{other}")
        assert not peer.file("/usr/local/Ascend").exists
        assert peer.file("/etc/npu-sim/state.json").exists

    # a fault injected into node 0's hardware shows in its npu-smi
    sim_nodes.update_state(state_root, node, 3, health="Critical")
    info = vendor_tools.parse_npu_smi_info(host.check_output("npu-smi info"))
    assert [c.health for c in info.chips if c.npu == 3] == ["Critical"]

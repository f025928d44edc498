"""Three simulated nodes under podman; one gets the vendor stack installed with
the installers' own flags; testinfra reads it back through podman://. A node
throttled to a fraction of a CPU is measurably slower, and itself again after."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import testinfra

from tests.sim import nodes as sim_nodes
from validation.node.vendor_tools import npu_smi


@pytest.fixture(scope="module")
def three_nodes(node_image, tmp_path_factory):
    state_root = tmp_path_factory.mktemp("three-nodes")
    names = sim_nodes.start_nodes(3, state_root, prefix=sim_nodes.checkout_prefix("npu-sim-t"))
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
    info = npu_smi.parse_npu_smi_info(host.check_output("npu-smi info"))
    assert info.version == "24.1.0"
    assert len(info.chips) == 8 and {c.health for c in info.chips} == {"OK"}
    assert host.file("/usr/local/Ascend/driver/version.info").contains("^Version=24.1.0$")
    assert host.file("/usr/local/Ascend/firmware/version.info").contains("^package_version=24.1.0$")
    # up to CANN 8.3 `latest` is a folder of per-component links into the running version
    assert host.file("/usr/local/Ascend/ascend-toolkit/latest").is_directory
    assert host.file("/usr/local/Ascend/ascend-toolkit/latest/runtime").linked_to == \
        "/usr/local/Ascend/ascend-toolkit/8.0.0/runtime"
    assert host.check_output("stat -c %F /dev/davinci7") == "character special file"

    # the other two nodes are untouched, and each has its own hardware
    for other in names[1:]:
        peer = testinfra.get_host(f"podman://{other}")
        assert not peer.file("/usr/local/Ascend").exists
        assert peer.file("/etc/npu-sim/state.json").exists

    # a fault injected into node 0's hardware shows in its npu-smi
    sim_nodes.update_state(state_root, node, 3, health="Critical")
    info = npu_smi.parse_npu_smi_info(host.check_output("npu-smi info"))
    assert [c.health for c in info.chips if c.npu == 3] == ["Critical"]


# 0.3 s of CPU in one process; prints the wall seconds it took. The work is counted
# in CPU time, which is what a CPU limit withholds.
CPU_LOOP = ("import time\n"
            "start, used = time.perf_counter(), time.process_time()\n"
            "while time.process_time() - used < 0.3:\n"
            "    pass\n"
            "print(time.perf_counter() - start)")


def cpu_loop_seconds(name: str) -> float:
    return float(sim_nodes.run_in(name, "python3", "-c", CPU_LOOP).stdout)


def test_a_throttled_node_is_slower_and_restored_after(three_nodes):
    name = three_nodes[0][2]
    limit = sim_nodes.CpuLimit.of(name)
    own = limit.read()
    before = cpu_loop_seconds(name)
    with sim_nodes.throttle(name, 0.1):
        assert limit.read() == limit.values_for(0.1) != own
        slowed = cpu_loop_seconds(name)
    assert limit.read() == own
    held_after = limit.throttled_periods()
    after = cpu_loop_seconds(name)
    held_after = limit.throttled_periods() - held_after
    times = {"before": before, "throttled": slowed, "after": after}
    # A tenth of a CPU stretches the loop to 3 s or more on an idle machine (the
    # limit), and to about ten times a normal node's time on a busy one (the
    # weight); free, it takes 0.3 s on an idle core. The margins are 2.5 x.
    assert slowed > 2.5 * before, times
    assert after < slowed / 2.5, times
    # The kernel's own count: no period held the node back after the restore.
    assert held_after == 0, (held_after, times)


def test_throttle_restores_the_limit_when_the_block_fails(three_nodes):
    name = three_nodes[0][2]
    limit = sim_nodes.CpuLimit.of(name)
    own = limit.read()
    with pytest.raises(KeyError):
        with sim_nodes.throttle(name, 0.2):
            assert limit.read() == limit.values_for(0.2) != own
            raise KeyError("the test failed here")
    assert limit.read() == own


# The cgroup files as the kernel writes them: this machine's hybrid host (cpu
# alone in its v1 hierarchy), cpu and cpuacct together (most v1 hosts), and v2.
V1_MOUNTS = """31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""
V1_CGROUP = """2:cpuacct:/libpod_parent/libpod-abc
1:cpu:/libpod_parent/libpod-abc
0::/libpod_parent/libpod-abc
"""
V1_JOINT_MOUNTS = "30 25 0:26 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid shared:10 - cgroup cgroup rw,cpu,cpuacct\n"
V1_JOINT_CGROUP = "4:cpu,cpuacct:/machine.slice/libpod-abc.scope\n1:name=systemd:/machine.slice/libpod-abc.scope\n"
V2_MOUNTS = "35 24 0:30 / /sys/fs/cgroup rw,nosuid,nodev,noexec shared:9 - cgroup2 cgroup2 rw,nsdelegate\n"
V2_CGROUP = "0::/machine.slice/libpod-abc.scope\n"


@pytest.mark.parametrize("mounts, cgroup, expected", [
    (V1_MOUNTS, V1_CGROUP, sim_nodes.CpuLimit(Path("/sys/fs/cgroup/cpu/libpod_parent/libpod-abc"), v2=False)),
    (V1_JOINT_MOUNTS, V1_JOINT_CGROUP,
     sim_nodes.CpuLimit(Path("/sys/fs/cgroup/cpu,cpuacct/machine.slice/libpod-abc.scope"), v2=False)),
    (V2_MOUNTS, V2_CGROUP, sim_nodes.CpuLimit(Path("/sys/fs/cgroup/machine.slice/libpod-abc.scope"), v2=True)),
], ids=["v1-hybrid", "v1-cpu,cpuacct", "v2"])
def test_the_cpu_limit_is_found_on_cgroup_v1_and_v2(mounts, cgroup, expected):
    assert sim_nodes.CpuLimit.find(cgroup, mounts) == expected


def test_no_cpu_controller_is_an_error():
    with pytest.raises(RuntimeError, match="no cgroup with the cpu controller"):
        sim_nodes.CpuLimit.find("3:memory:/x\n", V1_MOUNTS)


@pytest.mark.parametrize("v2, files, throttled", [
    (False, {"cpu.cfs_quota_us": "-1\n", "cpu.cfs_period_us": "100000\n", "cpu.shares": "1024\n"},
     {"cpu.cfs_quota_us": "15000", "cpu.shares": "154"}),
    (True, {"cpu.max": "max 50000\n", "cpu.weight": "100\n"}, {"cpu.max": "7500 50000", "cpu.weight": "15"}),
], ids=["v1", "v2"])
def test_throttle_writes_the_kernels_format_and_restores_it(tmp_path, v2, files, throttled):
    for file, text in files.items():
        (tmp_path / file).write_text(text)
    limit = sim_nodes.CpuLimit(tmp_path, v2=v2)
    own = limit.read()
    assert own == {f: files[f].strip() for f in throttled}
    with pytest.raises(KeyError):
        with limit.throttle(0.15):
            assert limit.read() == throttled
            raise KeyError
    assert limit.read() == own
    # the least a file takes: 1 ms of quota, weight 2 (v1) or 1 (v2)
    assert list(limit.values_for(0.001).values()) == (["1000 50000", "1"] if v2 else ["1000", "2"])
    with limit.throttle(0.15, weighted=False):   # the limit alone: the weight stays the node's own
        assert limit.read() == {**own, **{f: v for f, v in throttled.items() if f in ("cpu.max", "cpu.cfs_quota_us")}}
    assert limit.read() == own
    with pytest.raises(ValueError, match="cpus must be more than 0, not 0"):
        with limit.throttle(0):
            pass
    assert limit.read() == own

"""The fleet end to end on three simulated nodes reached as real servers are:
over SSH, as a non-root user with sudo, with host keys checked.

`npuenv deploy` converges them with the whole of site.yml, the firmware's
reboot included (one node first fails on a corrupt installer while the others
converge), a re-run changes nothing, check mode and an interrupted run behave;
`npuenv validate` runs on the nodes through the inventory, passes every level on
the healthy nodes, reports unreachable nodes as failed (never OK), flags a
slowed node as the straggler, and catches every fault the simulator can inject
with the right check and explanation."""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import testinfra
import yaml

from tests.integration.conftest import stack_for
from tests.sim import faults as sim_faults
from tests.sim import installers as sim_installers
from tests.sim import nodes as sim_nodes
from tests.sim import state as sim_state
from tests.sim.cann_runtime.build import build_runtime_for_wheel
from validation.run import expected_stack
from validation.node.vendor_tools import npu_smi

# The tests of this module share one fleet (`make test` keeps each file on one
# worker, --dist loadfile), deployed once by module fixtures: fresh_fleet (nodes
# started, nothing deployed), first_deploy (the first rollout, one node with a
# corrupt installer) and fleet (converged). Each test takes the stage it needs,
# so that it passes alone (-k) as in the whole module; a test that stops a node
# or injects a fault undoes it before it ends.

ROW = "2.13.0"
OLD_HDK = "24.1.0"                # a driver too old for CANN 9.1.0 (its HDK range starts at 25.2)
PREFIX = sim_nodes.checkout_prefix("npu-sim-f")
ROOT = Path(__file__).resolve().parents[2]
NPUENV = [sys.executable, "-m", "npuenv"]


def npuenv(*args, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([*NPUENV, *args], capture_output=True, text=True, cwd=ROOT, **kw)


def recap(output: str) -> dict[str, dict]:
    """PLAY RECAP lines -> {host: {ok, changed, failed, unreachable, ...}}."""
    out = {}
    for m in re.finditer(r"^(\S+)\s+: (.*)$", output.split("PLAY RECAP")[-1], re.M):
        out[m.group(1)] = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", m.group(2))}
    return out


class Fleet:
    def __init__(self, tmp: Path, matrix):
        self.tmp = tmp
        self.stack = stack_for(matrix, ROW, python="3.11")
        self.state_root = tmp / "state"
        self.wheelhouse = tmp / "wheelhouse"
        self.installers = tmp / "installers"
        self.corrupt = tmp / "installers-corrupt"
        self.old = tmp / "installers-old"
        self.access = sim_nodes.SshAccess.create(tmp / "ssh")
        self.names = sim_nodes.node_names(3, PREFIX)

    def inventory(self, corrupt_host: str | None = None, hosts: list[str] | None = None, **group_vars) -> Path:
        hosts = hosts or self.names
        host_vars = {}
        for i, name in enumerate(hosts):
            host_vars[name] = {"hccn_device_ips": [f"10.30.{d}.{i + 1}" for d in range(8)]}
            if name == corrupt_host:
                host_vars[name]["npuenv_installer_cache"] = str(self.corrupt)
        inv = sim_nodes.inventory(hosts, self.access, host_vars=host_vars, group_vars={
            "npuenv_row": {"torch_npu": ROW, "python": "3.11", "chip": "910b"},
            "npuenv_installer_cache": str(self.installers), "npuenv_wheelhouse": str(self.wheelhouse),
            "hccn_netdetect_address": "10.30.0.254", **group_vars})
        path = self.tmp / f"inventory-{corrupt_host or 'good'}-{len(hosts)}-{len(group_vars)}.yml"
        path.write_text(yaml.safe_dump(inv))
        return path


@pytest.fixture(scope="module")
def fresh_fleet(node_image, matrix, tmp_path_factory):
    """Three nodes started, nothing deployed yet, and the wheelhouse and installers a deploy needs."""
    torch_source = os.environ.get("TORCH_SOURCE", "/opt/wheels")
    if not Path(torch_source).is_dir():
        pytest.fail(f"TORCH_SOURCE={torch_source} is not a directory with the CPU torch wheel (make setup sets it)")
    f = Fleet(tmp_path_factory.mktemp("fleet"), matrix)
    built = npuenv("wheelhouse", "build", "--row", ROW, "--python", "3.11", "--arch", "x86_64",
                   "--torch-source", torch_source, "--torchvision", "none", "--out", str(f.wheelhouse))
    assert built.returncode == 0, built.stderr[-2000:]
    runtime = f.tmp / "runtime"
    build_runtime_for_wheel(runtime, next(f.wheelhouse.glob("torch_npu-*.whl")))
    f.files = sim_installers.make_installers(f.stack, f.installers, runtime_libs=runtime)
    f.old_files = sim_installers.make_installers(f.stack, f.old, hdk=OLD_HDK, kinds=("driver", "firmware"))
    f.corrupt.mkdir()
    for src in f.installers.iterdir():
        data = bytearray(src.read_bytes())
        if src.name == f.stack.packages["toolkit"]:
            data[-64] ^= 0xFF  # damaged in the cache; SHA256SUMS still lists the good file
        (f.corrupt / src.name).write_bytes(bytes(data))
        (f.corrupt / src.name).chmod(src.stat().st_mode)
    sim_nodes.start_nodes(3, f.state_root, prefix=PREFIX, access=f.access)
    yield f
    sim_nodes.remove_nodes(f.names + [f"{PREFIX}-x-0", f"{PREFIX}-bare-0"])


def deploy(inventory: Path, *extra) -> subprocess.CompletedProcess:
    return npuenv("deploy", "--inventory", str(inventory), *extra)


def podman_host(name: str):
    """The test's own view into a node (the product only ever reaches it over SSH)."""
    return testinfra.get_host(f"podman://{name}")


@dataclass
class FirstDeploy:
    run: subprocess.CompletedProcess
    bad: str                             # the node whose cache holds the corrupt installer
    bad_has_ascend: bool                 # seen before the next deploy converges it
    firmware: dict[str, tuple[str, str, bool]]  # good node -> (running version, version.info, reboot pending)


@pytest.fixture(scope="module")
def first_deploy(fresh_fleet) -> FirstDeploy:
    """The fleet's first rollout, one node's cache holding a corrupt toolkit, and what it left on the nodes."""
    f = fresh_fleet
    bad = f.names[1]
    run = deploy(f.inventory(corrupt_host=bad))
    firmware = {}
    for good in (f.names[0], f.names[2]):
        board = podman_host(good).check_output("npu-smi info -t board -i 0")
        running = re.search(r"Firmware Version\s*:\s*(\S+)", board)
        firmware[good] = (running.group(1) if running else board,
                          podman_host(good).file(f"{f.stack.paths['firmware_home']}/version.info").content_string,
                          podman_host(good).file("/etc/npu-sim/firmware.pending").exists)
    return FirstDeploy(run, bad, podman_host(bad).file("/usr/local/Ascend").exists, firmware)


@pytest.fixture(scope="module")
def fleet(fresh_fleet, first_deploy) -> Fleet:
    """The fleet converged: the deploy after the first, with the good installers everywhere."""
    fresh_fleet.converging_run = deploy(fresh_fleet.inventory())
    if fresh_fleet.converging_run.returncode != 0:
        pytest.fail(f"the fleet did not converge:\n{fresh_fleet.converging_run.stdout[-3000:]}")
    return fresh_fleet


def test_one_corrupt_installer_fails_only_its_node(fresh_fleet, first_deploy):
    run, bad = first_deploy.run, first_deploy.bad
    assert run.returncode == 1, run.stdout[-3000:]
    r = recap(run.stdout)
    assert r[bad]["failed"] == 1
    assert "is corrupt or not the vendor's file" in run.stdout and fresh_fleet.stack.packages["toolkit"] in run.stdout
    for good in (fresh_fleet.names[0], fresh_fleet.names[2]):
        assert r[good]["failed"] == 0 and r[good]["unreachable"] == 0
    # nothing was installed on the failed node: the installers are checked before anything runs
    assert not first_deploy.bad_has_ascend
    # the good nodes were rebooted for their new firmware, and came back with it running
    assert "NPU driver | Reboot for the new firmware" in run.stdout
    assert set(first_deploy.firmware) == {fresh_fleet.names[0], fresh_fleet.names[2]}
    for good, (running, installed, pending) in first_deploy.firmware.items():
        assert f"Version={running}\n" in installed, good
        assert not pending, good


def test_rerun_after_the_fix_converges_it_and_changes_nothing_elsewhere(fleet):
    run = fleet.converging_run
    r = recap(run.stdout)
    assert r[fleet.names[1]]["changed"] > 0 and r[fleet.names[1]]["failed"] == 0
    assert r[fleet.names[0]]["changed"] == 0 and r[fleet.names[2]]["changed"] == 0, run.stdout[-5000:]


def test_second_run_changes_nothing(fleet):
    run = deploy(fleet.inventory())
    assert run.returncode == 0, run.stdout[-3000:]
    assert all(v["changed"] == 0 and v["failed"] == 0 for v in recap(run.stdout).values()), run.stdout[-2000:]


def test_converged_nodes_match_the_row(fleet):
    s = fleet.stack
    for name in fleet.names:
        host = podman_host(name)
        assert host.file(f"{s.paths['driver_home']}/version.info").contains(f"^Version={s.row.hdk['version'].lower()}$")
        assert host.file(f"{s.paths['toolkit_home']}/{s.arch}-linux/ascend_toolkit_install.info").contains(
            f"^version={s.row.cann}$")
        assert host.file(s.paths["kernels_dir"]).is_directory
        assert host.file(s.paths["env_script"]).exists
        # what the operator's login sees over SSH: the CANN environment and torch_npu on the NPUs
        env = subprocess.run(["ssh", *fleet.access.ssh_options(), "-p", str(sim_nodes.ssh_port(name)),
                              f"{sim_nodes.LOGIN_USER}@127.0.0.1",
                              "bash -lc 'echo $ASCEND_HOME_PATH; python3 -c \"import torch_npu, torch; "
                              "print(torch_npu.__version__, torch.npu.device_count())\"'"],
                             capture_output=True, text=True, timeout=120)
        assert env.returncode == 0, env.stderr
        assert env.stdout.splitlines()[0] == s.environment()[0]["ASCEND_HOME_PATH"]
        assert env.stdout.splitlines()[-1] == f"{s.row.torch_npu} 8"
        info = npu_smi.parse_npu_smi_info(host.check_output("npu-smi info"))
        assert len(info.chips) == 8 and {c.health for c in info.chips} == {"OK"}
        assert host.file("/etc/hccn.conf").contains("^address_0=10.30.0.")


def test_check_mode_then_an_interrupted_run_converges(fresh_fleet):
    fleet = fresh_fleet  # its own node; only the fleet's installers and SSH access
    name = f"{PREFIX}-x-0"
    sim_nodes.start_nodes(1, fleet.tmp / "state-x", prefix=f"{PREFIX}-x", access=fleet.access)
    inventory = fleet.inventory(hosts=[name])
    check = deploy(inventory, "--check", "--tags", "driver,cann,env,hccn,tuning")
    assert check.returncode == 0, check.stdout[-3000:]
    assert recap(check.stdout)[name]["changed"] > 0
    host = podman_host(name)
    assert not host.file("/usr/local/Ascend/driver").exists, "check mode changed the node"

    # Kill the play in the middle of the CANN install, then run it again. SIGKILL leaves npuenv's
    # private folders behind (nothing can remove them): they go to a TMPDIR of the test's, removed after.
    killed_tmp = tempfile.mkdtemp(prefix="kill-", dir="/tmp")  # short: the SSH control sockets are in it
    proc = subprocess.Popen([*NPUENV, "deploy", "--inventory", str(inventory), "--tags", "driver,cann,env"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True, env=dict(os.environ, TMPDIR=killed_tmp))
    seen = ""
    deadline = time.time() + 300
    for line in proc.stdout:
        seen += line
        if "CANN | Install the toolkit" in line or time.time() > deadline:
            break
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    shutil.rmtree(killed_tmp)
    assert "CANN | Install the toolkit" in seen, seen[-2000:]
    again = deploy(inventory, "--tags", "driver,cann,env")
    assert again.returncode == 0, again.stdout[-3000:]
    assert host.file(f"{fleet.stack.paths['kernels_dir']}").is_directory
    final = deploy(inventory, "--tags", "driver,cann,env")
    assert recap(final.stdout)[name]["changed"] == 0


def test_deploy_refuses_a_limit_or_tags_that_match_nothing(fresh_fleet):
    inventory = fresh_fleet.inventory()
    limit = deploy(inventory, "--limit", "no-such-node")
    assert limit.returncode == 2 and "--limit no-such-node matches no host of 'npu_nodes'" in limit.stderr
    tags = deploy(inventory, "--tags", "drivers")
    assert tags.returncode == 2 and "--tags drivers matches nothing in site.yml" in tags.stderr
    assert "PLAY" not in limit.stdout + tags.stdout  # nothing was started


def validate(fleet, targets, *args, inventory: Path | None = None) -> tuple[int, dict | None, str]:
    """npuenv validate over the fleet's inventory; a target is an Ansible pattern or a full target."""
    inventory = inventory or fleet.inventory()
    out = fleet.tmp / f"validation-{time.time_ns()}"
    spec = [t if "://" in t else f"ansible://{t}?inventory={inventory}" for t in targets]
    run = npuenv("validate", *[a for t in spec for a in ("--target", t)], "--row", ROW,
                 "--backend", "cpu", "--out", str(out), *args)
    results = json.loads((out / "results.json").read_text()) if (out / "results.json").exists() else None
    return run.returncode, results, run.stdout + run.stderr


def test_every_level_passes_on_the_healthy_fleet(fleet):
    rc, results, text = validate(fleet, ["npu_nodes"], "--level", "full", "--max-bytes", str(4 << 20),
                                 "--timeout", "60", "--straggler-margin", "0.9")
    assert rc == 0, text[-4000:]
    assert results["summary"] == {"hosts": 3, "passed": 3, "failed": 0, "unreachable": 0, "error": 0,
                                  "not_checked": 0}
    by_status = {}
    for r in results["results"]:
        by_status.setdefault(r["status"], []).append((r["host"], r["check"]))
    assert not by_status.get("failed") and not by_status.get("error")
    # not applicable on the CPU backend, and 910B servers form no super pod; torchvision has no CPU build
    # here (the wheelhouse says so); the fleet's NPU ports have no gateway (only their own subnet is reachable)
    assert {c for _, c in by_status.get("skipped", [])} <= {"migrate", "super_pod"}
    assert {c for _, c in by_status.get("warning", [])} <= {"python_versions", "npu_routes"}
    per_host = {"driver_version", "npu_health", "torch_npu_import", "train", "allreduce_local", "ddp",
                "bandwidth_sweep", "hccl_test", "allreduce_across_nodes", "netdetect_peers", "npu_tls", "hccn_conf",
                "link_speed_fec", "hccs_links", "firmware_running", "kernel_log"}
    for name in fleet.names:
        assert per_host <= {c for h, c in by_status["passed"] if h == name}, name
    fleet_rows = {r["check"]: r for r in results["results"] if r["host"] == "fleet"}
    assert set(fleet_rows) == {"allreduce_across_nodes", "netdetect_peers"}
    assert all(r["status"] == "passed" and r["message"] == "all 3 nodes took part" for r in fleet_rows.values())
    across = next(r for r in results["results"] if r["check"] == "allreduce_across_nodes" and r["data"])
    assert across["data"]["world_size"] == 3 and all(row["correct"] for row in across["data"]["sizes"])
    assert results["meta"]["backend"] == "cpu"
    report = (Path(text.split("reports: ")[-1].split(",")[0]).parent / "report.html").read_text()
    assert "allreduce_across_nodes" in report and "bandwidth-plot" in report


def test_a_stopped_node_is_unreachable_and_fails_the_run(fleet):
    down = fleet.names[2]
    sim_nodes.stop_node(down)
    try:
        rc, results, text = validate(fleet, ["npu_nodes"], "--level", "quick")
        assert rc == 1, text[-3000:]
        assert results["summary"] == {"hosts": 3, "passed": 2, "failed": 0, "unreachable": 1, "error": 0,
                                      "not_checked": 0}
        assert results["host_status"][down]["status"] == "unreachable"
        record = next(r for r in results["results"] if r["host"] == down)
        assert record["check"] == "reachable" and record["status"] == "failed"
        assert record["message"].startswith("unreachable: Failed to connect to the host via ssh")
        assert "Connection refused" in record["message"]
        assert record["failure"]["cause"].startswith("nothing listens on the SSH port")
        assert f"reachable on 1 of 3 host(s): {down}" in text

        # Every node down: nothing was checked, which is never an OK.
        for name in fleet.names[:2]:
            sim_nodes.stop_node(name)
        rc, results, text = validate(fleet, ["npu_nodes"], "--level", "quick")
        assert rc == 2 and results is None
        assert "no check ran on any target" in text and all(f"{n}: unreachable" in text for n in fleet.names)
    finally:
        for name in fleet.names:
            sim_nodes.podman("start", name)
            sim_nodes.wait_for_sshd(name)


def test_a_node_without_the_driver_fails_over_ssh(fresh_fleet):
    fleet = fresh_fleet  # its own node, never deployed
    name = f"{PREFIX}-bare-0"
    sim_nodes.start_nodes(1, fleet.tmp / "state-bare", prefix=f"{PREFIX}-bare", access=fleet.access)
    inventory = fleet.inventory(hosts=[name])
    rc, results, text = validate(fleet, [name], "--level", "quick", inventory=inventory)
    assert rc == 1, text[-3000:]
    status = {r["check"]: r["status"] for r in results["results"]}
    assert status["driver_version"] == "failed" and status["npu_health"] == "failed"
    assert results["host_status"][name]["status"] == "failed"
    sim_nodes.remove_nodes([name])


def test_an_ssh_target_and_pytest_testinfra_directly(fleet, tmp_path):
    """ssh://USER@HOST:PORT as npuenv's target, and the quick suite run the way
    testinfra users run suites (pytest --hosts=ssh://...) from the controller."""
    name = fleet.names[0]
    port = sim_nodes.ssh_port(name)
    config = tmp_path / "ssh_config"
    config.write_text(f"Host 127.0.0.1\n  IdentityFile {fleet.access.key}\n"
                      f"  UserKnownHostsFile {fleet.access.known_hosts}\n  StrictHostKeyChecking yes\n")
    target = f"ssh://{sim_nodes.LOGIN_USER}@127.0.0.1:{port}?ssh_config={config}"
    rc, results, text = validate(fleet, [target], "--level", "quick")
    assert rc == 0, text[-3000:]
    assert results["hosts"] == [f"{sim_nodes.LOGIN_USER}@127.0.0.1:{port}"]

    stack = tmp_path / "stack.json"
    stack.write_text(json.dumps(expected_stack(fleet.stack)))
    suite = ROOT / "validation" / "node" / "suite"
    direct = subprocess.run(
        [sys.executable, "-m", "pytest", str(suite / "test_quick.py"), "-p", "no:cacheprovider",
         "-q", f"--hosts=ssh://{sim_nodes.LOGIN_USER}@127.0.0.1:{port}", f"--ssh-config={config}", "--sudo",
         f"--npuenv-stack={stack}", "--rootdir", str(suite), "-c", os.devnull],
        capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert direct.returncode == 0, direct.stdout[-3000:]
    assert re.search(r"^\d+ passed", direct.stdout.strip().splitlines()[-1]), direct.stdout[-500:]


def test_the_slowed_node_and_only_it_is_the_straggler(fleet):
    slow = fleet.names[1]
    # A fiftieth of a CPU, its weight kept: a node's share of this busy machine (two
    # cores for the nodes, the controller and the other test worker) stays well above
    # that, so the limit binds throughout and every timed window of the slowed node runs
    # at the same speed. With its weight cut too, it crawled while anything else ran and
    # reached its limit only when the rest were idle: its windows then differed by more
    # than twice, and that noise of its own (the straggler method's e) hid a node at a
    # twelfth of the median (make test, 2026-12-06: 21 samples/s against 259 and 329).
    # The margin holds as well: a contended healthy node gets a third of a CPU or more,
    # over 15 times the slowed one. Its slow start (imports at a fiftieth of a CPU:
    # about 2 min) needs the longer timeout.
    with sim_nodes.throttle(slow, 0.02, weighted=False):
        rc, results, text = validate(fleet, ["npu_nodes"], "--level", "standard", "--only", "train",
                                     "--straggler-margin", "0.5", "--straggler-min-peers", "3", "--timeout", "600")
    assert rc == 0, text[-3000:]
    flagged = [(s["host"], s["figure"]) for s in results["stragglers"]]
    assert flagged == [(slow, "train_samples_per_s")], (flagged, results["figures"])
    assert results["stragglers"][0]["peers"] == {"group": "node/910b", "hosts": 3}
    assert len(results["stragglers"][0]["repeats"]) == 5   # the train check's timed windows
    assert f"{slow}: train_samples_per_s" in text
    prom = (Path(text.split("reports: ")[-1].split(",")[0]).parent / "metrics.prom").read_text()
    assert f'npuenv_validation_straggler{{figure="train_samples_per_s",host="{slow}"}} 1.0' in prom


def test_a_node_whose_tls_differs_from_the_others_fails_on_the_controller(fleet):
    """Each node's ports agree, so each node's own check passes; HCCL still cannot link the odd node
    with the others (EI0006): the controller compares what the nodes reported."""
    odd = fleet.names[1]
    dies = sim_state.chips(sim_state.load(sim_nodes.state_file(fleet.state_root, odd)))
    for die in dies:
        sim_nodes.update_state(fleet.state_root, odd, die["logic_id"], tls=1)
    try:
        rc, results, text = validate(fleet, ["npu_nodes"], "--level", "standard", "--only", "npu_tls")
    finally:
        for die in dies:
            sim_nodes.update_state(fleet.state_root, odd, die["logic_id"], tls=0)
    assert rc == 1, text[-3000:]
    status = {(r["host"], r["check"]): r for r in results["results"]}
    assert {h: status[(h, "npu_tls")]["data"] for h in fleet.names} == {
        h: {"tls": "on" if h == odd else "off"} for h in fleet.names}
    assert [h for (h, c), r in status.items() if c == "tls_across_nodes"] == [odd]
    assert status[(odd, "tls_across_nodes")]["failure"]["found"] == "TLS on on 1 node(s), TLS off on 2 node(s)"
    assert results["host_status"][odd]["status"] == "failed"
    assert {results["host_status"][h]["status"] for h in fleet.names if h != odd} == {"passed"}


def test_two_nodes_on_one_switch_port_fail_on_the_controller(fleet):
    """One node's NPU port 0 sees the switch port another node's port 0 sees (a cable in the wrong
    switch port): neither node sees it alone, so each node's own cabling check passes; the controller
    finds the switch port seen from both and fails the two."""
    first, second = fleet.names[0], fleet.names[1]
    state_of = lambda name: sim_state.load(sim_nodes.state_file(fleet.state_root, name))  # noqa: E731
    kept = sim_state.by_logic_id(state_of(second), 0)["lldp"]
    shared = sim_state.by_logic_id(state_of(first), 0)["lldp"]
    sim_nodes.update_state(fleet.state_root, second, 0, lldp=shared)
    try:
        rc, results, text = validate(fleet, ["npu_nodes"], "--level", "standard", "--only", "npu_cabling")
    finally:
        sim_nodes.update_state(fleet.state_root, second, 0, lldp=kept)
    assert rc == 1, text[-3000:]
    status = {(r["host"], r["check"]): r for r in results["results"]}
    assert {status[(h, "npu_cabling")]["status"] for h in fleet.names} == {"passed"}
    assert sorted(h for (h, c) in status if c == "cabling_across_nodes") == sorted([first, second])
    switch_port = f"{shared['system_name']} {shared['port_id']}"
    assert status[(second, "cabling_across_nodes")]["failure"]["found"] == \
        f"switch port {switch_port} seen from {first} port 0, {second} port 0"
    assert {results["host_status"][h]["status"] for h in fleet.names if h not in (first, second)} == {"passed"}


@pytest.mark.parametrize("fault", sim_faults.FAULTS, ids=lambda f: f.name)
def test_each_fault_is_caught_by_the_right_check(fleet, fault, record_property):
    s = fleet.stack
    node = sim_faults.Node(
        fleet.names[2], fleet.state_root, s.paths["toolkit_home"], "/etc/profile.d/npuenv-ascend.sh",
        old_installers={k: f"/opt/old/{p.name}" for k, p in fleet.old_files.items()},
        installers={k: f"/opt/new/{fleet.files[k].name}" for k in ("driver", "firmware")})
    for source, target in ((fleet.old, "/opt/old"), (fleet.installers, "/opt/new")):
        subprocess.run(["podman", "cp", f"{source}/.", f"{node.name}:{target}"], check=True)
    fault.inject(node)
    try:
        only = sorted(fault.fails | fault.keeps_passing)
        rc, results, text = validate(fleet, [node.name], "--level", fault.level,
                                     *[a for c in only for a in ("--only", c)])
    finally:
        fault.revert(node)
    assert results is not None, text[-3000:]
    status = {r["check"]: r for r in results["results"]}
    for name in fault.fails:
        assert status[name]["status"] in ("failed", "warning") if fault.status == "warning" else \
            status[name]["status"] == "failed", (name, status[name], text[-2000:])
    primary = status[sorted(fault.fails)[0]] if len(fault.fails) == 1 else \
        next(status[c] for c in sorted(fault.fails) if status[c]["status"] != "passed")
    explanation = json.dumps(primary.get("failure") or primary["message"])
    assert fault.says in explanation, (fault.says, explanation)
    for name in fault.keeps_passing:
        assert status[name]["status"] == "passed", (name, status[name]["message"])
    assert rc == (0 if fault.status == "warning" else 1)
    record_property("fault_caught", fault.name)


def test_fault_catalogue_is_complete():
    kinds = {f.name for f in sim_faults.FAULTS}
    # every fault kind the simulator offers (issue list) has an entry
    assert {"npu_warning", "npu_alarm", "npu_critical", "device_node_removed", "link_down", "net_health_fault",
            "device_busy", "driver_too_old", "firmware_mismatch", "library_dropped", "env_unsourced",
            # issue #21: one per new check
            "tls_on_one_port", "stale_hccn_conf", "two_ports_on_one_switch_port", "port_at_lower_speed",
            "hccs_port_down", "heartbeat_lost_since_boot", "firmware_not_activated"} <= kinds

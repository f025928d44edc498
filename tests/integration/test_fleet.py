"""The fleet end to end on three simulated nodes: `npuenv deploy` converges them
(one node first fails on a corrupt installer while the others converge), a
re-run changes nothing, check mode and an interrupted run behave, and
`npuenv validate` passes every level on the healthy nodes and catches every
fault the simulator can inject with the right check and explanation."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import testinfra
import yaml

from tests.integration.conftest import stack_for
from tests.sim import faults as sim_faults
from tests.sim import installers as sim_installers
from tests.sim import nodes as sim_nodes
from tests.sim.cann_runtime.build import build_runtime_for_wheel

# The tests of this module share one fleet and run in order: `make test` keeps
# each file on one worker (--dist loadfile).

ROW = "2.13.0"
OLD_HDK = "24.1.0"                # a driver too old for CANN 9.1.0 (its HDK range starts at 25.2)
PREFIX = "npu-sim-f"
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
        self.names = sim_nodes.node_names(3, PREFIX)

    def inventory(self, corrupt_host: str | None = None, hosts: list[str] | None = None) -> Path:
        hosts = hosts or self.names
        entries = {}
        for i, name in enumerate(hosts):
            entries[name] = {"hccn_device_ips": [f"10.30.{d}.{i + 1}" for d in range(8)]}
            if name == corrupt_host:
                entries[name]["npuenv_installer_cache"] = str(self.corrupt)
        inv = {"all": {"children": {"npu_nodes": {"hosts": entries, "vars": {
            "ansible_connection": "containers.podman.podman", "ansible_python_interpreter": "/usr/bin/python3",
            "ansible_become": False, "npu_driver_reboot": False,
            "npuenv_row": {"torch_npu": ROW, "python": "3.11", "chip": "910b"},
            "npuenv_installer_cache": str(self.installers), "npuenv_wheelhouse": str(self.wheelhouse),
            "hccn_netdetect_address": "10.30.0.254"}}}}}
        path = self.tmp / f"inventory-{corrupt_host or 'good'}-{len(hosts)}.yml"
        path.write_text(yaml.safe_dump(inv))
        return path


@pytest.fixture(scope="module")
def fleet(node_image, matrix, tmp_path_factory):
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
    sim_nodes.start_nodes(3, f.state_root, prefix=PREFIX)
    yield f
    sim_nodes.remove_nodes(f.names + [f"{PREFIX}-x-0"])


def deploy(inventory: Path, *extra) -> subprocess.CompletedProcess:
    return npuenv("deploy", "--inventory", str(inventory), *extra)


def test_one_corrupt_installer_fails_only_its_node(fleet):
    bad = fleet.names[1]
    run = deploy(fleet.inventory(corrupt_host=bad))
    assert run.returncode == 1, run.stdout[-3000:]
    r = recap(run.stdout)
    assert r[bad]["failed"] == 1
    assert "is corrupt or not the vendor's file" in run.stdout and fleet.stack.packages["toolkit"] in run.stdout
    for good in (fleet.names[0], fleet.names[2]):
        assert r[good]["failed"] == 0 and r[good]["unreachable"] == 0
    # nothing was installed on the failed node: the installers are checked before anything runs
    assert not testinfra.get_host(f"podman://{bad}").file("/usr/local/Ascend").exists


def test_rerun_after_the_fix_converges_it_and_changes_nothing_elsewhere(fleet):
    run = deploy(fleet.inventory())
    assert run.returncode == 0, run.stdout[-3000:]
    r = recap(run.stdout)
    assert r[fleet.names[1]]["changed"] > 0 and r[fleet.names[1]]["failed"] == 0
    assert r[fleet.names[0]]["changed"] == 0 and r[fleet.names[2]]["changed"] == 0


def test_second_run_changes_nothing(fleet):
    run = deploy(fleet.inventory())
    assert run.returncode == 0, run.stdout[-3000:]
    assert all(v["changed"] == 0 and v["failed"] == 0 for v in recap(run.stdout).values()), run.stdout[-2000:]


def test_converged_nodes_match_the_row(fleet):
    s = fleet.stack
    for name in fleet.names:
        host = testinfra.get_host(f"podman://{name}")
        assert host.file(f"{s.paths['driver_home']}/version.info").contains(f"^Version={s.row.hdk['version'].lower()}$")
        assert host.file(f"{s.paths['toolkit_home']}/{s.arch}-linux/ascend_toolkit_install.info").contains(
            f"^version={s.row.cann}$")
        assert host.file(s.paths["kernels_dir"]).is_directory
        assert host.file(s.paths["env_script"]).exists
        env = host.check_output("bash -lc 'echo $ASCEND_HOME_PATH; python3 -c \"import torch_npu, torch; "
                                "print(torch_npu.__version__, torch.npu.device_count())\"'")
        assert env.splitlines()[0] == s.environment()[0]["ASCEND_HOME_PATH"]
        assert env.splitlines()[-1] == f"{s.row.torch_npu} 8"
        assert "OK" in host.check_output("npu-smi info") and "Critical" not in host.check_output("npu-smi info")
        assert host.file("/etc/hccn.conf").contains("^address_0=10.30.0.")


def test_check_mode_then_an_interrupted_run_converges(fleet):
    name = f"{PREFIX}-x-0"
    sim_nodes.start_nodes(1, fleet.tmp / "state-x", prefix=f"{PREFIX}-x")
    inventory = fleet.inventory(hosts=[name])
    check = deploy(inventory, "--check", "--tags", "preflight,driver,cann,env,hccn,tuning")
    assert check.returncode == 0, check.stdout[-3000:]
    assert recap(check.stdout)[name]["changed"] > 0
    host = testinfra.get_host(f"podman://{name}")
    assert not host.file("/usr/local/Ascend/driver").exists, "check mode changed the node"

    # Kill the play in the middle of the CANN install, then run it again.
    proc = subprocess.Popen([*NPUENV, "deploy", "--inventory", str(inventory), "--tags", "preflight,driver,cann,env"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    seen = ""
    deadline = time.time() + 300
    for line in proc.stdout:
        seen += line
        if "CANN | Install the toolkit" in line or time.time() > deadline:
            break
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert "CANN | Install the toolkit" in seen, seen[-2000:]
    again = deploy(inventory, "--tags", "preflight,driver,cann,env")
    assert again.returncode == 0, again.stdout[-3000:]
    assert host.file(f"{fleet.stack.paths['kernels_dir']}").is_directory
    final = deploy(inventory, "--tags", "preflight,driver,cann,env")
    assert recap(final.stdout)[name]["changed"] == 0


def validate(fleet, targets, *args) -> tuple[int, dict, str]:
    out = fleet.tmp / f"validation-{time.time_ns()}"
    run = npuenv("validate", *[a for t in targets for a in ("--target", f"podman://{t}")], "--row", ROW,
                 "--backend", "cpu", "--out", str(out), *args)
    results = json.loads((out / "results.json").read_text()) if (out / "results.json").exists() else None
    return run.returncode, results, run.stdout + run.stderr


def test_every_level_passes_on_the_healthy_fleet(fleet):
    rc, results, text = validate(fleet, fleet.names, "--level", "full", "--max-bytes", str(4 << 20), "--timeout", "60")
    assert rc == 0, text[-4000:]
    by_status = {}
    for r in results["results"]:
        by_status.setdefault(r["status"], []).append((r["host"], r["check"]))
    assert not by_status.get("failed") and not by_status.get("error")
    # not applicable on the CPU backend, and torchvision has no CPU build here (the wheelhouse says so)
    assert {c for _, c in by_status.get("skipped", [])} <= {"migrate"}
    assert {c for _, c in by_status.get("warning", [])} <= {"python_versions"}
    checks = {r["check"] for r in results["results"]}
    assert {"driver_version", "npu_health", "torch_npu_import", "train", "allreduce_local", "ddp",
            "bandwidth_sweep", "allreduce_across_nodes", "netdetect_peers"} <= checks
    assert results["meta"]["backend"] == "cpu"
    report = (Path(text.split("reports: ")[-1].split(",")[0])).read_text()
    assert "allreduce_across_nodes" in report and "bandwidth-plot" in report


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
            "device_busy", "driver_too_old", "firmware_mismatch", "library_dropped", "env_unsourced"} <= kinds

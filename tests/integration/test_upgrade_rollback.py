"""A fleet moves along the matrix and back, on two simulated nodes reached over
SSH: row A (torch_npu 2.8.0: CANN 8.3.RC1 in the ascend-toolkit layout, HDK
25.3.RC1) is deployed, row B (2.13.0: CANN 9.1.0 in the cann layout, HDK
26.1.0) is previewed with --check, deployed and validated, then the fleet goes
back to A (one node losing power in the middle of its toolkit install) and
forward to B again with a cache that lacks what the node keeps side by side.

The installers of both rows lie in ONE folder: each run takes the files its
lock names (by sha256). site.yml runs through ansible_run.run.run_playbook with
the lock as the extra var npuenv_lock (compat_matrix.lock.make). Row A's
Python stack cannot be built here (only a CPU torch 2.13.0 wheel exists), so A
is deployed without the python tag and validated on the checks that do not
import torch; B is deployed whole and validated at the quick level."""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import testinfra
import yaml

import compat_matrix as cm
from compat_matrix import lock as lock_mod
from ansible_run import run as playbook_run
from tests.sim.inputs import row_lock
from tests.sim import faults as sim_faults
from tests.sim import installers as sim_installers
from tests.sim import nodes as sim_nodes
from tests.sim.cann_runtime.build import build_runtime_for_wheel

PREFIX = sim_nodes.checkout_prefix("npu-sim-up")
ROW_A, ROW_B = "2.8.0", "2.13.0"
ROOT = Path(__file__).resolve().parents[2]
A_TAGS = ["preflight", "driver", "cann", "env", "hccn", "tuning"]   # all but python (no torch 2.8.0 here)
# The quick checks that do not import torch: what row A can be validated on here.
A_CHECKS = ["driver_version", "firmware_pairs_with_driver", "install_info", "device_nodes", "npu_health",
            "cann_toolkit", "nnal", "login_environment"]
TIMES: dict[str, float] = {}


def recap(output: str) -> dict[str, dict]:
    out = {}
    for m in re.finditer(r"^(\S+)\s+: (.*)$", output.split("PLAY RECAP")[-1], re.M):
        out[m.group(1)] = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", m.group(2))}
    return out


class Fleet:
    def __init__(self, tmp: Path):
        self.tmp = tmp
        m = cm.load_matrix()
        self.a = cm.resolve(m, cm.Constraints(torch_npu="==" + ROW_A, python="3.11", arch="x86_64")).stack
        self.b = cm.resolve(m, cm.Constraints(torch_npu="==" + ROW_B, python="3.11", arch="x86_64")).stack
        self.installers = tmp / "installers"          # both rows' installers, one folder
        self.wheelhouse = tmp / "wheelhouse"
        self.access = sim_nodes.SshAccess.create(tmp / "ssh")
        self.names = sim_nodes.node_names(2, PREFIX)
        self.locks: dict[str, Path] = {}
        self.digests: dict[str, str] = {}

    def lock(self, name: str, stack, houses) -> None:
        made = row_lock(stack.row.torch_npu, self.installers, houses)
        path = self.tmp / f"lock-{name}.yml"
        path.write_text(json.dumps({"npuenv_lock": made.data}))
        self.locks[name], self.digests[name] = path, made.digest
        lock_mod.write(made, self.tmp / f"lock-{name}.json")

    def inventory(self, cache: Path | None = None) -> Path:
        host_vars = {n: {"hccn_device_ips": [f"10.50.{d}.{i + 1}" for d in range(8)]} for i, n in enumerate(self.names)}
        inv = sim_nodes.inventory(self.names, self.access, host_vars=host_vars, group_vars={
            "npuenv_installer_cache": str(cache or self.installers), "npuenv_wheelhouse": str(self.wheelhouse),
            "hccn_netdetect_address": "10.50.0.254"})
        path = self.tmp / f"inventory-{(cache or self.installers).name}.yml"
        path.write_text(yaml.safe_dump(inv))
        return path

    def deploy(self, name: str, stage: str, *, check: bool = False, tags: list[str] | None = None,
               cache: Path | None = None) -> subprocess.CompletedProcess:
        start = time.monotonic()
        run = playbook_run.run_playbook("site.yml", self.inventory(cache), check=check, tags=tags,
                                        extra_vars=[f"@{self.locks[name]}"], capture=True)
        TIMES[stage] = time.monotonic() - start
        (self.tmp / f"{stage}.log").write_text(run.stdout + run.stderr)
        return run

    def validate(self, row: str, stage: str, only: list[str] = ()) -> tuple[int, dict | None, str]:
        start = time.monotonic()
        out = self.tmp / f"validation-{stage}"
        target = f"ansible://npu_nodes?inventory={self.inventory()}"
        run = subprocess.run([sys.executable, "-m", "npuenv", "validate", "--target", target, "--row", row,
                              "--python", "3.11", "--level", "quick", "--backend", "cpu", "--out", str(out),
                              *[a for c in only for a in ("--only", c)]],
                             capture_output=True, text=True, cwd=ROOT)
        TIMES[stage] = time.monotonic() - start
        results = json.loads((out / "results.json").read_text()) if (out / "results.json").exists() else None
        return run.returncode, results, run.stdout + run.stderr


def host(name: str):
    """The test's own view into a node (the product reaches it only over SSH)."""
    return testinfra.get_host(f"podman://{name}")


def login(fleet: Fleet, name: str, command: str) -> str:
    """What a login shell on the node runs (over SSH, the profile sourced)."""
    p = subprocess.run(["ssh", *fleet.access.ssh_options(), "-p", str(sim_nodes.ssh_port(name)),
                        f"{sim_nodes.LOGIN_USER}@127.0.0.1", f"bash -lc {shlex.quote(command)}"],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    return p.stdout


def active(name: str) -> dict:
    """What runs on a node: the toolkit through each generation's entry point, NNAL's latest, the driver."""
    h = host(name)
    out = h.run("sed -n 's/^version=//p' /usr/local/Ascend/ascend-toolkit/latest/x86_64-linux/ascend_toolkit_install.info"
                " 2>/dev/null; echo '|'; readlink /usr/local/Ascend/cann; echo '|'; "
                "readlink /usr/local/Ascend/nnal/atb/latest; echo '|'; ls /usr/local/Ascend/nnal/atb; echo '|'; "
                "sed -n 's/^Version=//p' /usr/local/Ascend/driver/version.info").stdout
    legacy, cann, nnal, nnal_dirs, driver = [part.split() for part in out.split("|")]
    return {"legacy": legacy, "cann": cann, "nnal": [os.path.basename(n) for n in nnal], "nnal_dirs": nnal_dirs,
            "driver": driver}


def records(name: str) -> dict:
    h = host(name)
    return {k: json.loads(h.file(f"/etc/npuenv/{f}").content_string) if h.file(f"/etc/npuenv/{f}").exists else None
            for k, f in (("lock", "lock.json"), ("node", "node.json"), ("deploying", "deploying.json"))}


@pytest.fixture(scope="module")
def fleet(node_image, tmp_path_factory):
    torch_source = os.environ.get("TORCH_SOURCE", "/opt/wheels")
    if not Path(torch_source).is_dir():
        pytest.fail(f"TORCH_SOURCE={torch_source} is not a directory with the CPU torch wheel (make setup sets it)")
    start = time.monotonic()
    f = Fleet(tmp_path_factory.mktemp("upgrade"))
    built = subprocess.run([sys.executable, "-m", "npuenv", "wheelhouse", "build", "--row", ROW_B, "--python", "3.11",
                            "--arch", "x86_64", "--torch-source", torch_source, "--torchvision", "none",
                            "--out", str(f.wheelhouse)], capture_output=True, text=True, cwd=ROOT)
    assert built.returncode == 0, built.stderr[-2000:]
    runtime = f.tmp / "runtime"
    build_runtime_for_wheel(runtime, next(f.wheelhouse.glob("torch_npu-*.whl")))
    sim_installers.make_installers(f.a, f.installers, runtime_libs=runtime)
    sim_installers.make_installers(f.b, f.installers, runtime_libs=runtime)
    f.lock("A", f.a, [])
    f.lock("B", f.b, [f.wheelhouse])
    sim_nodes.start_nodes(2, f.tmp / "state", prefix=PREFIX, access=f.access)
    TIMES["setup"] = time.monotonic() - start
    yield f
    sim_nodes.remove_nodes(f.names)


@pytest.fixture(scope="module")
def at_a(fleet):
    run = fleet.deploy("A", "deploy A", tags=A_TAGS)
    assert run.returncode == 0, run.stdout[-4000:]
    return run


@pytest.fixture(scope="module")
def preview_b(at_a, fleet):
    before = {n: active(n) for n in fleet.names}
    run = fleet.deploy("B", "check B", check=True)
    return run, before


@pytest.fixture(scope="module")
def at_b(preview_b, fleet):
    run = fleet.deploy("B", "upgrade to B")
    assert run.returncode == 0, run.stdout[-4000:]
    return run


@pytest.fixture(scope="module")
def back_at_a(at_b, fleet):
    """Back to A, node 0 losing power in the middle of its toolkit install; then the same run again."""
    control = sim_faults.power_cut(fleet.tmp / "state" / fleet.names[0], "toolkit", "files_copied")
    cut = fleet.deploy("A", "rollback to A (power cut on node 0)", tags=A_TAGS)
    assert not control.exists(), "the toolkit installer never reached its stop point"
    left = {"toolkit": host(fleet.names[0]).run("ls /usr/local/Ascend/ascend-toolkit").stdout.split(),
            "records": records(fleet.names[0])}
    rerun = fleet.deploy("A", "rollback to A again", tags=A_TAGS)
    return cut, left, rerun


@pytest.fixture(scope="module")
def again_b(back_at_a, fleet):
    """Forward to B again from a cache without NNAL 9.1.0's installer: the nodes keep NNAL 9.1.0 beside
    8.3.RC1 and switch to it with its own script."""
    partial = fleet.tmp / "installers-without-nnal-b"
    partial.mkdir()
    for f in fleet.installers.glob("*.run"):
        if f.name != fleet.b.packages["nnal"]:
            os.link(f, partial / f.name)
    shutil.copy(fleet.installers / "SHA256SUMS", partial / "SHA256SUMS")
    return fleet.deploy("B", "upgrade to B again", cache=partial)


@pytest.fixture(scope="module")
def drifted_b(again_b, fleet):
    """B once more after node 1's live somaxconn was changed by hand (as a restart without the
    persisted settings, or another tool, would)."""
    sim_nodes.run_in(fleet.names[1], "sysctl", "-w", "net.core.somaxconn=128")
    return fleet.deploy("B", "B again, node 1's setting drifted")


def test_row_a_is_deployed_from_a_folder_with_both_rows(fleet, at_a):
    for name in fleet.names:
        now = active(name)
        assert now["legacy"] == ["8.3.RC1"] and now["cann"] == [] and now["nnal"] == ["8.3.RC1"]
        assert now["driver"] == ["25.3.rc1"]
    # the lock named A's firmware; B's lies beside it in the same folder
    assert f"Ascend-hdk-910b-npu-firmware_{sim_installers.firmware_version('25.3.RC1')}.run --full --quiet" in at_a.stdout


def test_check_mode_previews_every_installer_and_the_reboot_and_changes_nothing(fleet, preview_b):
    run, before = preview_b
    assert run.returncode == 0, run.stdout[-4000:]
    fw = sim_installers.package_names(sim_installers.release_of(fleet.b))["firmware"]
    for line in (f"Preview the step, would run {fw} --upgrade --quiet and reboot",
                 f"Preview the step, would run {fleet.b.packages['driver']} --upgrade --quiet",
                 f"Preview the step, would run {fleet.b.packages['toolkit']} --upgrade --quiet",
                 f"Preview the step, would run {fleet.b.packages['kernels']} --install --install-for-all --quiet",
                 f"Preview the step, would run {fleet.b.packages['nnal']} --install --install-for-all --quiet"):
        assert re.search(re.escape(line) + r".*\(changed 2\)", run.stdout), line
    assert re.search(r"handler: npuenv\.ascend\.npu_driver : NPU driver \| Reboot for the new firmware or driver  \(changed 2\)",
                     run.stdout)
    # the firmware comes before the driver (an overwrite), the toolkit after both
    assert run.stdout.index(f"would run {fw}") < run.stdout.index(f"would run {fleet.b.packages['driver']}") \
        < run.stdout.index(f"would run {fleet.b.packages['toolkit']}")
    assert {n: active(n) for n in fleet.names} == before
    assert not host(fleet.names[0]).file("/usr/local/Ascend/cann-9.1.0").exists


def test_the_upgrade_to_b_follows_the_vendors_order_and_records_the_lock(fleet, at_b):
    out = at_b.stdout
    order = [f"Run {sim_installers.package_names(sim_installers.release_of(fleet.b))['firmware']} --upgrade",
             f"Run {fleet.b.packages['driver']} --upgrade --quiet", "Reboot for the new firmware or driver",
             f"{fleet.b.packages['toolkit']} --upgrade --quiet", fleet.b.packages["kernels"],
             "Install NNAL with the toolkit environment sourced", "Python stack | Install the pinned wheels"]
    places = [out.index(step) for step in order]
    assert places == sorted(places), order
    for name in fleet.names:
        now = active(name)
        assert now["cann"] == ["cann-9.1.0"] and now["nnal"] == ["9.1.0"] and now["driver"] == ["26.1.0"]
        assert now["nnal_dirs"] == ["8.3.RC1", "9.1.0", "latest", "set_env.sh"]   # A's NNAL kept beside
        r = records(name)
        assert r["lock"]["digest"] == fleet.digests["B"] and r["deploying"] is None
        assert r["node"]["lock_digest"] == fleet.digests["B"] and r["node"]["entry"] == "x86_64/debian12"
        assert r["node"]["python"] == "/opt/npuenv/venv/bin/python"
        assert r["node"]["settings"]["sysctl"]["net.core.somaxconn"] == "65535"


def test_row_b_validates(fleet, at_b):
    rc, results, text = fleet.validate(ROW_B, "validate B")
    assert rc == 0, text[-4000:]
    assert results["summary"]["passed"] == 2 and results["summary"]["failed"] == 0


def test_a_power_cut_in_the_toolkit_install_converges_on_the_rerun(fleet, back_at_a):
    cut, left, rerun = back_at_a
    r = recap(cut.stdout)
    assert r[fleet.names[0]]["unreachable"] == 1 and r[fleet.names[1]]["failed"] == 0
    # what the cut left: 8.3.RC1's files without its bookkeeping, the node marked half-deployed
    assert left["toolkit"] == ["8.3.RC1"]
    assert left["records"]["deploying"]["lock_digest"] == fleet.digests["A"]
    assert left["records"]["deploying"]["from_lock_digest"] == fleet.digests["B"]
    assert rerun.returncode == 0, rerun.stdout[-4000:]
    again = recap(rerun.stdout)
    assert again[fleet.names[0]]["changed"] > 0
    assert again[fleet.names[1]]["changed"] == 0, rerun.stdout[-3000:]   # converged the first time
    assert f"{fleet.a.packages['toolkit']} --install --install-for-all --quiet  (changed 1)" in rerun.stdout


def test_the_rollback_makes_a_active_keeps_nothing_of_b_running_and_needs_no_nnal_installer(fleet, back_at_a):
    cut, _, rerun = back_at_a
    fw_b = sim_installers.package_names(sim_installers.release_of(fleet.b))["firmware"]
    assert f"remove CANN 9.1.0 (/usr/local/Ascend/cann-9.1.0/x86_64-linux/script/uninstall.sh)" in cut.stdout
    assert "switch NNAL 9.1.0 -> 8.3.RC1" in cut.stdout and fleet.a.packages["nnal"] not in cut.stdout
    assert fw_b not in cut.stdout
    for name in fleet.names:
        now = active(name)
        assert now["legacy"] == ["8.3.RC1"] and now["cann"] == [] and now["nnal"] == ["8.3.RC1"]
        assert now["driver"] == ["25.3.rc1"]
        assert not host(name).file("/usr/local/Ascend/cann-9.1.0").exists
        # the login environment runs A's CANN under a profile that says so
        assert "CANN 8.3.RC1 / torch_npu 2.8.0" in host(name).file("/etc/profile.d/npuenv-ascend.sh").content_string
        shown = login(fleet, name, "echo $ASCEND_TOOLKIT_HOME; cat $ASCEND_TOOLKIT_HOME/x86_64-linux/"
                                   "ascend_toolkit_install.info; readlink -f $ATB_HOME_PATH").splitlines()
        assert shown[0] == "/usr/local/Ascend/ascend-toolkit/latest" and "version=8.3.RC1" in shown
        assert shown[-1] == "/usr/local/Ascend/nnal/atb/8.3.RC1/atb/cxx_abi_1"
        # a run without the python tag does not bring a node to its lock: it stays marked as deploying A
        assert records(name)["deploying"]["lock_digest"] == fleet.digests["A"]


def test_row_a_validates_after_the_rollback(fleet, back_at_a):
    rc, results, text = fleet.validate(ROW_A, "validate A", only=A_CHECKS)
    assert rc == 0, text[-4000:]
    checked = {(r["host"], r["check"]) for r in results["results"] if r["status"] == "passed"}
    assert {(n, c) for n in fleet.names for c in ("cann_toolkit", "nnal", "driver_version", "login_environment")} \
        <= checked


def test_forward_again_switches_the_kept_nnal_without_its_installer(fleet, again_b):
    assert again_b.returncode == 0, again_b.stdout[-4000:]
    assert re.search(r"switch NNAL 8\.3\.RC1 -> 9\.1\.0 \(.*; no installer needed\)  \(changed 2\)", again_b.stdout)
    assert fleet.b.packages["nnal"] not in again_b.stdout   # not run, not staged, not needed in the cache
    for name in fleet.names:
        now = active(name)
        assert now["cann"] == ["cann-9.1.0"] and now["nnal"] == ["9.1.0"]
        r = records(name)
        assert r["deploying"] is None and r["node"]["lock_digest"] == fleet.digests["B"]
    rc, _, text = fleet.validate(ROW_B, "validate B again", only=A_CHECKS)
    assert rc == 0, text[-4000:]


def test_a_converged_node_reports_no_change_and_a_drifted_setting_is_set_again(fleet, drifted_b):
    assert drifted_b.returncode == 0, drifted_b.stdout[-4000:]
    r = recap(drifted_b.stdout)
    assert r[fleet.names[0]]["changed"] == 0, drifted_b.stdout[-3000:]
    assert r[fleet.names[1]]["changed"] == 1, drifted_b.stdout[-3000:]
    assert re.search(r"Cluster tuning \| Persist the kernel network settings and set the live ones that differ  "
                     r"\(changed 1", drifted_b.stdout)
    assert host(fleet.names[1]).run("sysctl -n net.core.somaxconn").stdout.strip() == "65535"


def test_report_the_time_of_each_stage(fleet, drifted_b):
    total = sum(TIMES.values())
    print("\n" + "\n".join(f"  {stage:<40} {seconds:6.1f} s" for stage, seconds in TIMES.items())
          + f"\n  {'total':<40} {total:6.1f} s")
    assert set(TIMES) >= {"deploy A", "check B", "upgrade to B", "rollback to A again", "upgrade to B again",
                          "B again, node 1's setting drifted"}

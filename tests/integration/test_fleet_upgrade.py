"""Eight simulated nodes reached over SSH move from a CANN 8.3-generation row
(torch_npu 2.8.0: CANN 8.3.RC1, HDK 25.3.RC1) to the default row's stack
(2.13.0: CANN 9.1.0, HDK 26.1.0) with `npuenv deploy` in batches of two, each
batch validated at the quick level before the next, and back (issue #19 item 7).

Three faults, one per roll, each stopping it at the batch it hits:
  roll 1  node 5's installer cache holds a damaged toolkit (its SHA256SUMS still
          lists the good file): batch 3 stops, nodes 6 and 7 are not attempted;
  roll 2  (the printed rerun command, the cache fixed) node 6's NPU 0 raises an
          alarm once its new firmware runs, after the reboot: its batch stops;
  roll 3  (rerun, the board replaced) node 7 loses power in the middle of its
          toolkit upgrade: it is reported, not left as if at the lock;
  roll 4  the rerun converges node 7, and `npuenv status` finds the whole fleet at B.
Then the fleet goes back to A and validates there.

Row A's Python stack cannot be built here (only a CPU torch 2.13.0 wheel
exists): A is deployed without the python tag (a partial run: no gate) and
validated on the checks that do not import torch, as in test_upgrade_rollback."""
from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import compat_matrix as cm
from compat_matrix import lock as lock_mod
from tests.sim.inputs import row_lock
from tests.integration.test_upgrade_rollback import A_CHECKS, A_TAGS, active, records
from tests.sim import faults as sim_faults
from tests.sim import installers as sim_installers
from tests.sim import nodes as sim_nodes
from tests.sim.cann_runtime.build import build_runtime_for_wheel

PREFIX = sim_nodes.checkout_prefix("npu-sim-fu")
ROW_A, ROW_B = "2.8.0", "2.13.0"
ROOT = Path(__file__).resolve().parents[2]
NPUENV = [sys.executable, "-m", "npuenv"]
N = 8
# About 18 minutes on two cores: it runs apart from `make test` (make test-scenario), and in CI after it.
pytestmark = pytest.mark.scenario


class Fleet:
    def __init__(self, tmp: Path):
        self.tmp = tmp
        m = cm.load_matrix()
        self.a = cm.resolve(m, cm.Constraints(torch_npu="==" + ROW_A, python="3.11", arch="x86_64")).stack
        self.b = cm.resolve(m, cm.Constraints(torch_npu="==" + ROW_B, python="3.11", arch="x86_64")).stack
        self.installers, self.damaged = tmp / "installers", tmp / "installers-damaged"
        self.wheelhouse = tmp / "wheelhouse"
        self.access = sim_nodes.SshAccess.create(tmp / "ssh")
        self.names = sim_nodes.node_names(N, PREFIX)
        self.state = tmp / "state"
        self.logs = tmp / "deploy"
        self.locks: dict[str, Path] = {}
        self.digests: dict[str, str] = {}
        self.inventory = tmp / "inventory.yml"

    def lock(self, name: str, stack, houses) -> None:
        made = row_lock(stack.row.torch_npu, self.installers, houses)
        self.locks[name] = lock_mod.write(made, self.tmp / f"lock-{name}.json")
        self.digests[name] = made.digest

    def write_inventory(self, damaged_host: str | None = None) -> None:
        host_vars = {n: {"hccn_device_ips": [f"10.60.{d}.{i + 1}" for d in range(8)]} for i, n in enumerate(self.names)}
        if damaged_host:
            host_vars[damaged_host]["npuenv_installer_cache"] = str(self.damaged)
        self.inventory.write_text(yaml.safe_dump(sim_nodes.inventory(self.names, self.access, host_vars=host_vars,
                                                                     group_vars={
            "npuenv_installer_cache": str(self.installers), "npuenv_wheelhouse": str(self.wheelhouse),
            "hccn_netdetect_address": "10.60.0.254"})))


def npuenv(*args) -> subprocess.CompletedProcess:
    return subprocess.run([*NPUENV, *map(str, args)], capture_output=True, text=True, cwd=ROOT, timeout=1800)


def summary_of(run: subprocess.CompletedProcess) -> dict:
    folder = Path(run.stdout.rsplit("log: ", 1)[1].split()[0]).parent
    return json.loads((folder / "summary.json").read_text())


def by_host(summary: dict) -> dict[str, dict]:
    return {h["host"]: h for h in summary["hosts"]}


def rerun(run: subprocess.CompletedProcess) -> tuple[list[str], subprocess.CompletedProcess]:
    """The rerun command exactly as the deploy printed it."""
    argv = shlex.split(run.stdout.split("that need it:\n  ", 1)[1].splitlines()[0])
    assert argv[0] == "npuenv"
    return argv, npuenv(*argv[1:])


@pytest.fixture(scope="module")
def fleet(node_image, tmp_path_factory):
    torch_source = os.environ.get("TORCH_SOURCE", "/opt/wheels")
    if not Path(torch_source).is_dir():
        pytest.fail(f"TORCH_SOURCE={torch_source} is not a directory with the CPU torch wheel (make setup sets it)")
    f = Fleet(tmp_path_factory.mktemp("fleet-upgrade"))
    built = npuenv("wheelhouse", "build", "--row", ROW_B, "--python", "3.11", "--arch", "x86_64",
                   "--torch-source", torch_source, "--torchvision", "none", "--out", f.wheelhouse)
    assert built.returncode == 0, built.stderr[-2000:]
    runtime = f.tmp / "runtime"
    build_runtime_for_wheel(runtime, next(f.wheelhouse.glob("torch_npu-*.whl")))
    sim_installers.make_installers(f.a, f.installers, runtime_libs=runtime)
    sim_installers.make_installers(f.b, f.installers, runtime_libs=runtime)
    f.damaged.mkdir()
    for src in f.installers.iterdir():
        data = bytearray(src.read_bytes())
        if src.name == f.b.packages["toolkit"]:
            data[-64] ^= 0xFF
        (f.damaged / src.name).write_bytes(bytes(data))
        (f.damaged / src.name).chmod(src.stat().st_mode)
    f.lock("A", f.a, [])
    f.lock("B", f.b, [f.wheelhouse])
    sim_nodes.start_nodes(N, f.state, prefix=PREFIX, access=f.access)
    yield f
    sim_nodes.remove_nodes(f.names)


@pytest.fixture(scope="module")
def at_a(fleet):
    fleet.write_inventory()
    run = npuenv("deploy", "-i", fleet.inventory, "--lock", fleet.locks["A"], "--tags", ",".join(A_TAGS),
                 "--batch-size", N, "--log-dir", fleet.logs)
    assert run.returncode == 0, run.stdout[-4000:]
    return run


@pytest.fixture(scope="module")
def rolls(fleet, at_a):
    """The four rolls to B; what each printed and the state the test saw between them."""
    names = fleet.names
    seen = {}
    fleet.write_inventory(damaged_host=names[5])
    seen["roll1"] = npuenv("deploy", "-i", fleet.inventory, "--lock", fleet.locks["B"], "--batch-size", 2,
                           "--gate", "quick", "--gate-backend", "cpu", "--log-dir", fleet.logs)
    seen["after1"] = {n: active(n) for n in names}
    # The cache fixed; node 6's NPU 0 will raise an alarm under B's firmware.
    fleet.write_inventory()
    b_firmware = sim_installers.firmware_version(fleet.b.row.hdk["version"])
    sim_faults.firmware_fails_after_boot(fleet.state, names[6], b_firmware)
    seen["argv2"], seen["roll2"] = rerun(seen["roll1"])
    # The board replaced; node 7 loses power when its new toolkit's files are copied.
    sim_nodes.update_state(fleet.state, names[6], 0, with_firmware={})
    control = sim_faults.power_cut(fleet.state / names[7], "toolkit", "files_copied")
    seen["argv3"], seen["roll3"] = rerun(seen["roll2"])
    seen["cut_reached"] = not control.exists()
    seen["records7"] = records(names[7])
    seen["argv4"], seen["roll4"] = rerun(seen["roll3"])
    return seen


def test_roll_1_stops_at_batch_3_on_the_damaged_installer_and_leaves_the_rest_at_a(fleet, rolls):
    run, names = rolls["roll1"], fleet.names
    assert run.returncode == 1, run.stdout[-4000:]
    s = summary_of(run)
    got = by_host(s)
    assert s["stopped_after_batch"] == 3
    for n in names[:5]:     # batches 1-3 but node 5: at B, through their gate
        assert (got[n]["outcome"], got[n]["gate"], got[n]["at_lock"]) == ("changed", "passed", True), got[n]
        assert rolls["after1"][n]["cann"] == ["cann-9.1.0"]
    assert got[names[5]]["outcome"] == "failed" and got[names[5]]["batch"] == 3
    assert f"{fleet.b.packages['toolkit']} is corrupt or not the vendor's file" in got[names[5]]["cause"]
    for n in names[6:]:
        assert (got[n]["outcome"], got[n]["batch"]) == ("not attempted", None)
        assert got[n]["cause"] == f"the roll stopped after batch 3 failed ({names[5]})"
    for n in names[5:]:     # the installers are checked before anything changes: still at A
        assert rolls["after1"][n]["legacy"] == ["8.3.RC1"] and rolls["after1"][n]["cann"] == [], n


def test_roll_2_stops_on_the_node_whose_new_firmware_fails_its_health_check(fleet, rolls):
    argv, run, names = rolls["argv2"], rolls["roll2"], fleet.names
    assert argv[argv.index("--limit") + 1] == ",".join(names[5:])
    assert run.returncode == 1, run.stdout[-4000:]
    s = summary_of(run)
    got = by_host(s)
    assert s["stopped_after_batch"] == 1
    assert (got[names[5]]["outcome"], got[names[5]]["gate"], got[names[5]]["at_lock"]) == ("changed", "passed", True)
    assert got[names[6]]["outcome"] == "failed" and not got[names[6]]["at_lock"]
    assert "unhealthy NPUs after the install: NPU 0 chip 0 is Alarm" in got[names[6]]["cause"], got[names[6]]
    assert got[names[7]]["outcome"] == "not attempted"


def test_roll_3_reports_the_node_that_lost_power_in_its_toolkit_upgrade_as_half_upgraded(fleet, rolls):
    argv, run, names = rolls["argv3"], rolls["roll3"], fleet.names
    assert argv[argv.index("--limit") + 1] == ",".join(names[6:])
    assert rolls["cut_reached"], "the toolkit installer never reached its stop point"
    assert run.returncode == 1, run.stdout[-4000:]
    got = by_host(summary_of(run))
    assert (got[names[6]]["outcome"], got[names[6]]["gate"], got[names[6]]["at_lock"]) == ("changed", "passed", True)
    seventh = got[names[7]]
    assert seventh["outcome"] in ("failed", "unreachable") and not seventh["at_lock"], seventh
    assert seventh["at"].startswith("half-upgraded ") and seventh["at"].endswith(fleet.digests["B"][:19]), seventh
    # the node's own records say a deploy of B started and did not finish
    assert rolls["records7"]["deploying"]["lock_digest"] == fleet.digests["B"]


def test_roll_4_converges_and_status_finds_every_node_at_b(fleet, rolls):
    argv, run = rolls["argv4"], rolls["roll4"]
    assert argv[argv.index("--limit") + 1] == fleet.names[7]
    assert run.returncode == 0, run.stdout[-4000:]
    got = by_host(summary_of(run))
    assert (got[fleet.names[7]]["gate"], got[fleet.names[7]]["at_lock"]) == ("passed", True)
    st = npuenv("status", "-i", fleet.inventory, "--lock", fleet.locks["B"], "--format", "json")
    assert st.returncode == 0, st.stdout[-3000:] + st.stderr[-2000:]
    data = json.loads(st.stdout)
    assert data["summary"]["ok"] == N and all(n["drift"] == [] for n in data["nodes"]), data["summary"]
    for n in fleet.names:
        assert active(n)["cann"] == ["cann-9.1.0"] and records(n)["node"]["lock_digest"] == fleet.digests["B"]


@pytest.fixture(scope="module")
def back_at_a(fleet, rolls):
    run = npuenv("deploy", "-i", fleet.inventory, "--lock", fleet.locks["A"], "--tags", ",".join(A_TAGS),
                 "--batch-size", 4, "--log-dir", fleet.logs)
    out = fleet.tmp / "validation-a"
    validate = npuenv("validate", "--target", f"ansible://npu_nodes?inventory={fleet.inventory}", "--row", ROW_A,
                      "--python", "3.11", "--level", "quick", "--backend", "cpu", "--out", out,
                      *[a for c in A_CHECKS for a in ("--only", c)])
    return run, validate, out


def test_the_fleet_rolls_back_to_a_and_validates_there(fleet, back_at_a):
    run, validate, out = back_at_a
    assert run.returncode == 0, run.stdout[-4000:]
    assert validate.returncode == 0, validate.stdout[-4000:] + validate.stderr[-2000:]
    results = json.loads((out / "results.json").read_text())
    passed = {(r["host"], r["check"]) for r in results["results"] if r["status"] == "passed"}
    assert {(n, c) for n in fleet.names for c in ("cann_toolkit", "nnal", "driver_version")} <= passed
    for n in fleet.names:
        now = active(n)
        assert now["legacy"] == ["8.3.RC1"] and now["cann"] == [] and now["nnal"] == ["8.3.RC1"], (n, now)

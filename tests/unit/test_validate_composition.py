"""`npuenv validate` put together, fast: which phases run for the smallest fleets, how failures with
different causes are grouped in the fleet report, and what the validation artefact needs on a node that
has none of the controller's packages. The integration tests (tests/integration/test_fleet.py,
test_validate_targets.py) do the same on simulated nodes; these pin it without podman or SSH.

The targets are fakes of validation.targets' transports: each records the arguments every phase gave its
hosts and answers with node documents as validation/node/runner.py prints them."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

import compat_matrix as cm
from validation import artefact, report, run
from validation.merge import FLEET_CHECKS, Outcome

ROW = cm.Constraints(torch_npu="2.13.0")


def rec(check, status="passed", message="", data=None, failure=None, level="quick"):
    r = {"host": "local://", "check": check, "level": level, "status": status, "duration_s": 0.5,
         "message": message, "data": data}
    if failure:
        r["failure"] = failure
    return r


def doc(*records, address="192.168.1.10"):
    return {"format": 1, "hostname": "x", "addresses": [address], "python": "3.11.2", "level": "full",
            "fleet": False, "results": list(records), "pytest_exit": 0, "duration_s": 1.5}


class Target:
    """A transport: hosts, whether they form the fleet (an image target's container does not), and what
    each phase's run gave them."""

    def __init__(self, hosts, fleet_member=True, down=(), results=None):
        self.hosts, self.fleet_member, self.down = list(hosts), fleet_member, set(down)
        self.results = results or {}
        self.phases: list[dict[str, list[str]]] = []

    def run(self, artefact_path, args, done=None):
        self.phases.append(args)
        out = {}
        for i, (host, argv) in enumerate(args.items()):
            if host in self.down:
                out[host] = Outcome("unreachable", "ssh: connect to host port 22: Connection refused")
            elif "--fleet" in argv:
                out[host] = Outcome("ran", document=doc(*[rec(c, level="full") for c in FLEET_CHECKS]))
            else:
                records = self.results.get(host) or [rec("driver_version"), rec("npu_health")]
                out[host] = Outcome("ran", document=doc(*records, address=f"192.168.1.{10 + i}"))
        return out


@pytest.fixture
def targets(monkeypatch, tmp_path):
    """validate() with these fake targets and a stand-in artefact (building the real one zips the suite;
    a fake built into the cache would be found there by the next test that wants the real one)."""
    chosen: list[Target] = []
    monkeypatch.setattr(run, "plan", lambda *a, **k: (chosen, {}))
    monkeypatch.setattr(run.artefact_mod, "cached", lambda *a, **k: tmp_path / "v.pyz")
    return chosen


def validate(tmp_path, level, *names, only=()):
    return run.validate(list(names) or ["local"], level, ROW, tmp_path / "out", only=list(only), quiet=True)


def phases(target: Target) -> list[list[str]]:
    """For each phase the target took part in, which of its hosts were in the fleet phase ('--fleet')."""
    return [sorted(h for h, argv in args.items() if "--fleet" in argv) for args in target.phases]


def fleet_rows(tmp_path) -> dict[str, dict]:
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    return {r["check"]: r for r in results["results"] if r["host"] == report.FLEET}


# --- which phases run -----------------------------------------------------------------------------

def test_one_node_at_the_full_level_runs_its_own_checks_only(targets, tmp_path):
    node = Target(["n0"])
    targets.append(node)
    assert validate(tmp_path, "full") == 0
    assert phases(node) == [[]]          # one phase, no fleet: a collective across nodes needs two
    assert fleet_rows(tmp_path) == {}
    assert "--level" in node.phases[0]["n0"] and node.phases[0]["n0"][node.phases[0]["n0"].index("--level") + 1] \
        == "full"


def test_two_nodes_at_the_full_level_run_the_fleet_phase_together(targets, tmp_path):
    pair = Target(["n0", "n1"])
    targets.append(pair)
    assert validate(tmp_path, "full") == 0
    assert phases(pair) == [[], ["n0", "n1"]]
    fleet = pair.phases[1]
    assert [a for a in fleet["n0"] if a.startswith("--npuenv-fleet")] == [
        "--npuenv-fleet-size=2", "--npuenv-fleet-rank=0", "--npuenv-fleet-master=192.168.1.10",
        f"--npuenv-fleet-port={run.FLEET_PORT}"]
    assert "--npuenv-fleet-rank=1" in fleet["n1"] and "--npuenv-fleet-master=192.168.1.10" in fleet["n1"]
    rows = fleet_rows(tmp_path)
    assert set(rows) == set(FLEET_CHECKS)
    assert all(r["status"] == "passed" and r["message"] == "all 2 nodes took part" for r in rows.values())


@pytest.mark.parametrize("level", ["quick", "standard"])
def test_two_nodes_below_the_full_level_have_no_fleet_phase(targets, tmp_path, level):
    pair = Target(["n0", "n1"])
    targets.append(pair)
    assert validate(tmp_path, level) == 0
    assert phases(pair) == [[]] and fleet_rows(tmp_path) == {}


def test_only_checks_of_the_nodes_themselves_have_no_fleet_phase(targets, tmp_path):
    pair = Target(["n0", "n1"])
    targets.append(pair)
    assert validate(tmp_path, "full", only=["npu_health"]) == 0
    assert phases(pair) == [[]]
    pair2 = Target(["n0", "n1"])
    targets[:] = [pair2]
    assert validate(tmp_path, "full", only=["allreduce_across_nodes"]) == 0
    assert phases(pair2) == [[], ["n0", "n1"]]


def test_an_image_target_is_never_a_fleet_member(targets, tmp_path):
    image = Target(["image:registry.example.com/npuenv:tag"], fleet_member=False)
    targets.append(image)
    assert validate(tmp_path, "full", "image:registry.example.com/npuenv:tag") == 0
    assert phases(image) == [[]]
    # with one node beside it, the fleet has one member: still no fleet phase
    image2, node = Target(["image:registry.example.com/npuenv:tag"], fleet_member=False), Target(["n0"])
    targets[:] = [image2, node]
    assert validate(tmp_path, "full", "image:registry.example.com/npuenv:tag", "local") == 0
    assert phases(image2) == [[]] and phases(node) == [[]] and fleet_rows(tmp_path) == {}


def test_an_unreachable_node_leaves_the_fleet_phase_to_the_others(targets, tmp_path):
    fleet = Target(["n0", "n1", "n2"], down={"n1"})
    targets.append(fleet)
    assert validate(tmp_path, "full") == 1
    assert phases(fleet) == [[], ["n0", "n2"]]
    assert "--npuenv-fleet-size=2" in fleet.phases[1]["n2"]
    one_left = Target(["n0", "n1"], down={"n1"})
    targets[:] = [one_left]
    assert validate(tmp_path, "full") == 1
    assert phases(one_left) == [[]]


# --- how failures are grouped -----------------------------------------------------------------------

DRIVER_MISSING = {"summary": "no NPU driver is installed", "expected": "driver 25.2.0", "found": "no driver",
                  "cause": "the NPU driver is not installed", "fix": "npuenv deploy --tags driver"}
NOT_LOADED = {"summary": "dcmi module initialize failed. ret is -8005", "expected": "npu-smi info answers",
              "found": "dcmi module initialize failed. ret is -8005",
              "cause": "the NPU driver is not loaded: it was installed or upgraded without the reboot it needs",
              "fix": "reboot after installing or upgrading the driver and firmware"}


def failing(failure):
    return [rec("driver_version", "failed", failure["summary"], failure=failure), rec("npu_health")]


def test_failures_are_grouped_by_check_and_cause_naming_their_hosts(targets, tmp_path):
    hosts = [f"n{i}" for i in range(5)]
    fleet = Target(hosts, results={"n0": failing(DRIVER_MISSING), "n1": failing(NOT_LOADED),
                                   "n2": failing(DRIVER_MISSING), "n3": failing(DRIVER_MISSING)})
    targets.append(fleet)
    assert validate(tmp_path, "quick") == 1
    results = report.load(tmp_path / "out" / "results.json")
    groups = [(g["check"], g["cause"], g["hosts"], g["fix"]) for g in results["failures"]]
    assert groups == [
        ("driver_version", "the NPU driver is not installed", ["n0", "n2", "n3"], "npuenv deploy --tags driver"),
        ("driver_version", NOT_LOADED["cause"], ["n1"], NOT_LOADED["fix"]),
    ]
    assert results["failures"][0]["examples"] == ["n0: no NPU driver is installed", "n2: no NPU driver is installed",
                                                  "n3: no NPU driver is installed"]
    assert {h: s["status"] for h, s in results["host_status"].items()} == {
        "n0": "failed", "n1": "failed", "n2": "failed", "n3": "failed", "n4": "passed"}
    text = report.terminal(results)
    assert ("failures by check and cause:\n"
            "  driver_version on 3 of 5 host(s): n0, n2, n3\n"
            "       cause: the NPU driver is not installed\n"
            "       fix:   npuenv deploy --tags driver\n"
            "  driver_version on 1 of 5 host(s): n1\n"
            f"       cause: {NOT_LOADED['cause']}\n") in text


def test_an_unreachable_host_and_a_failed_check_are_separate_groups(targets, tmp_path):
    fleet = Target(["n0", "n1", "n2"], down={"n1", "n2"}, results={"n0": failing(DRIVER_MISSING)})
    targets.append(fleet)
    assert validate(tmp_path, "quick") == 1
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert [(g["check"], g["hosts"]) for g in results["failures"]] == [("reachable", ["n1", "n2"]),
                                                                         ("driver_version", ["n0"])]
    assert results["failures"][0]["cause"] == ("nothing listens on the SSH port: sshd is down, the host is "
                                               "rebooting, or the port is wrong")


# --- the artefact on a node without the controller's packages ----------------------------------------

@pytest.fixture(scope="module")
def pyz(tmp_path_factory):
    stack = cm.resolve(cm.load_matrix(), cm.Constraints(torch_npu="2.13.0", python="3.11", arch="x86_64")).stack
    return artefact.build(tmp_path_factory.mktemp("artefact") / "v.pyz", run.expected_stack(stack))


@pytest.fixture(scope="module")
def bare_python(tmp_path_factory):
    """A Python with nothing installed beyond its standard library (as on a fresh node)."""
    folder = tmp_path_factory.mktemp("bare") / "venv"
    venv.EnvBuilder(with_pip=False, system_site_packages=False).create(folder)
    python = folder / "bin" / "python"
    for module in ("pytest", "yaml", "packaging", "testinfra", "pluggy", "compat_matrix", "validation"):
        probe = subprocess.run([str(python), "-I", "-c", f"import {module}"], capture_output=True, text=True,
                               cwd=folder)
        assert probe.returncode != 0, f"{module} is importable in the bare venv: the test would prove nothing"
    return python


def _run_bare(python, pyz, tmp_path, *args):
    env = {"PATH": "/usr/bin:/bin", "TMPDIR": str(tmp_path), "HOME": str(tmp_path)}
    return subprocess.run([str(python), "-I", str(pyz), *args], capture_output=True, text=True, env=env,
                          timeout=300, cwd=tmp_path)


def test_the_artefact_runs_from_its_own_contents_on_a_bare_python(bare_python, pyz, tmp_path):
    p = _run_bare(bare_python, pyz, tmp_path, "--level", "quick", "--only", "driver_version")
    assert p.returncode == 1, p.stderr[-3000:]
    out = json.loads(p.stdout.splitlines()[-1])
    assert [(r["check"], r["status"]) for r in out["results"]] == [("driver_version", "failed")]
    assert out["results"][0]["failure"]["summary"] == "no NPU driver is installed"
    assert list(tmp_path.iterdir()) == []       # unpacked into a private folder, removed


def test_the_artefact_on_a_python_without_site_packages_at_all(pyz, tmp_path):
    # -S: not even the interpreter's own site-packages (this venv's pytest, yaml, packaging) is on the path
    env = {"PATH": "/usr/bin:/bin", "TMPDIR": str(tmp_path), "HOME": str(tmp_path)}
    p = subprocess.run([sys.executable, "-I", "-S", str(pyz), "--level", "quick", "--only", "nnal"],
                       capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)
    assert p.returncode == 1, p.stderr[-3000:]
    out = json.loads(p.stdout.splitlines()[-1])
    assert [(r["check"], r["status"]) for r in out["results"]] == [("nnal", "failed")]
    assert list(tmp_path.iterdir()) == []


def test_the_artefact_refuses_a_python_older_than_pytest_needs_with_a_document(pyz, tmp_path):
    # the entry point is checked on this Python by faking an old version_info: what a 3.8 node prints
    main = __import__("zipfile").ZipFile(pyz).read("__main__.py").decode()
    code = ("import sys\n"
            "class V(tuple):\n    pass\n"
            "sys.version_info = V((3, 8, 10))\n" + main)
    p = subprocess.run([sys.executable, "-I", "-S", "-c", code], capture_output=True, text=True, timeout=60)
    assert p.returncode == 2
    assert json.loads(p.stdout) == {"error": "python3 3.8 on this node is too old for the validation suite (pytest "
                                             "needs 3.10 or newer); point ansible_python_interpreter at a newer "
                                             "Python"}

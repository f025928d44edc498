"""The results plugin (validation/node/results.py) inside a real pytest run
(pytester): one record per host and check with its status, failure, warning,
data and level, and the JSON document's shape; the same under pytest-xdist."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parents[2]

SUITE = '''
import json
import pytest
from validation.node.results import PROP_DATA, PROP_FAILURE, PROP_WARNING

HOSTS = pytest.mark.parametrize("node", ["podman://node-a", "podman://node-b"])
FAILURE = {"summary": "NPU 3 is Critical", "expected": "Health OK", "found": "3/0=Critical",
           "cause": "the device reports a fault", "fix": "reset the card"}


@pytest.fixture
def broken():
    raise RuntimeError("cannot reach the host")


@pytest.fixture
def messy_teardown():
    yield
    raise RuntimeError("cleanup failed")


@pytest.mark.quick
@HOSTS
def test_driver_version(node):
    pass


@pytest.mark.quick
@HOSTS
def test_npu_health(request, node):
    if node.endswith("b"):
        request.node.user_properties.append((PROP_FAILURE, json.dumps(FAILURE)))
        raise AssertionError("NPU 3 is Critical")
    request.node.user_properties.append((PROP_WARNING, "NPU health Warning: NPU 5 chip 0"))


@pytest.mark.standard
@HOSTS
def test_allreduce_local(request, node):
    request.node.user_properties.append((PROP_DATA, json.dumps({"world_size": 8, "sizes": [{"bytes": 1024}]})))


@pytest.mark.standard
@HOSTS
def test_migrate(node):
    pytest.skip("not applicable: backend is cpu")


@pytest.mark.full
def test_netdetect_peers(broken):
    pass


@pytest.mark.full
def test_bandwidth_sweep():
    assert 2 + 2 == 5, "the sweep stopped short"


def test_unmarked(messy_teardown):
    pass
'''


def run_suite(pytester, *args, subprocess=False):
    pytester.makepyfile(test_suite=SUITE)
    pytester.makeini("[pytest]\nmarkers =\n    quick\n    standard\n    full\n")
    out = pytester.path / "out" / "results.json"
    argv = ["-p", "validation.node.results", f"--npuenv-results={out}", "-p", "no:cacheprovider", *args]
    result = pytester.runpytest_subprocess(*argv) if subprocess else pytester.runpytest(*argv)
    return result, json.loads(out.read_text())


def records(doc) -> dict[tuple[str, str], dict]:
    return {(r["host"], r["check"]): r for r in doc["results"]}


def test_records_every_outcome(pytester):
    result, doc = run_suite(pytester)
    result.assert_outcomes(passed=6, failed=2, skipped=2, errors=2)
    got = records(doc)
    assert sorted(got) == [
        ("fleet", "bandwidth_sweep"), ("fleet", "netdetect_peers"), ("fleet", "unmarked"),
        ("podman://node-a", "allreduce_local"), ("podman://node-a", "driver_version"),
        ("podman://node-a", "migrate"), ("podman://node-a", "npu_health"),
        ("podman://node-b", "allreduce_local"), ("podman://node-b", "driver_version"),
        ("podman://node-b", "migrate"), ("podman://node-b", "npu_health")]
    status = {k: r["status"] for k, r in got.items()}
    assert status == {
        ("fleet", "bandwidth_sweep"): "failed", ("fleet", "netdetect_peers"): "error", ("fleet", "unmarked"): "error",
        ("podman://node-a", "allreduce_local"): "passed", ("podman://node-a", "driver_version"): "passed",
        ("podman://node-a", "migrate"): "skipped", ("podman://node-a", "npu_health"): "warning",
        ("podman://node-b", "allreduce_local"): "passed", ("podman://node-b", "driver_version"): "passed",
        ("podman://node-b", "migrate"): "skipped", ("podman://node-b", "npu_health"): "failed"}
    levels = {k[1]: r["level"] for k, r in got.items()}
    assert levels == {"driver_version": "quick", "npu_health": "quick", "allreduce_local": "standard",
                      "migrate": "standard", "netdetect_peers": "full", "bandwidth_sweep": "full", "unmarked": "quick"}


def test_a_failure_carries_its_explanation(pytester):
    _, doc = run_suite(pytester)
    rec = records(doc)[("podman://node-b", "npu_health")]
    assert rec["failure"] == {"summary": "NPU 3 is Critical", "expected": "Health OK", "found": "3/0=Critical",
                              "cause": "the device reports a fault", "fix": "reset the card"}
    assert rec["message"] == "NPU 3 is Critical"
    # a failure no check explained keeps pytest's own crash line
    rec = records(doc)[("fleet", "bandwidth_sweep")]
    assert rec["failure"] is None
    assert rec["message"].startswith("AssertionError: the sweep stopped short")


def test_errors_skips_warnings_and_data(pytester):
    _, doc = run_suite(pytester)
    got = records(doc)
    assert got[("fleet", "netdetect_peers")]["message"] == "RuntimeError: cannot reach the host"
    assert got[("fleet", "unmarked")]["message"] == "RuntimeError: cleanup failed"
    assert got[("podman://node-a", "migrate")]["message"] == "Skipped: not applicable: backend is cpu"
    assert got[("podman://node-a", "npu_health")]["message"] == "NPU health Warning: NPU 5 chip 0"
    assert got[("podman://node-a", "allreduce_local")]["data"] == {"world_size": 8, "sizes": [{"bytes": 1024}]}
    assert got[("podman://node-a", "driver_version")]["data"] is None
    assert got[("podman://node-a", "driver_version")]["message"] == ""


def test_document_shape(pytester):
    _, doc = run_suite(pytester)
    assert set(doc) == {"npuenv_suite_results", "started", "duration_s", "hosts", "results"}
    assert doc["npuenv_suite_results"] == 1   # its format, which node/runner.py checks
    assert doc["hosts"] == ["fleet", "podman://node-a", "podman://node-b"]
    assert [(r["host"], r["check"]) for r in doc["results"]] == sorted((r["host"], r["check"]) for r in doc["results"])
    for r in doc["results"]:
        assert {"host", "check", "level", "status", "duration_s", "message", "data"} <= set(r)
        assert isinstance(r["duration_s"], float) and r["duration_s"] >= 0
    assert isinstance(doc["started"], float) and doc["duration_s"] >= 0


def test_runner_metadata_is_merged(pytester):
    pytester.makeconftest("def pytest_configure(config):\n"
                          "    config._npuenv_meta = {'meta': {'level': 'standard', 'backend': 'cpu'}}\n")
    _, doc = run_suite(pytester)
    assert doc["meta"] == {"level": "standard", "backend": "cpu"}


def test_without_the_option_nothing_is_written(pytester):
    pytester.makepyfile(test_one="def test_one():\n    pass\n")
    pytester.runpytest("-p", "validation.node.results", "-p", "no:cacheprovider").assert_outcomes(passed=1)
    assert not list(pytester.path.rglob("*.json"))


def test_under_xdist_the_controller_writes_every_record(pytester, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    result, doc = run_suite(pytester, "-n", "2", subprocess=True)
    result.assert_outcomes(passed=6, failed=2, skipped=2, errors=2)
    got = records(doc)
    assert len(got) == 11
    assert got[("podman://node-b", "npu_health")]["failure"]["cause"] == "the device reports a fault"
    assert got[("podman://node-a", "allreduce_local")]["data"]["world_size"] == 8
    assert got[("podman://node-a", "npu_health")]["status"] == "warning"


TIMED = '''
import time
import pytest


@pytest.fixture
def slow():
    time.sleep(0.4)
    yield
    time.sleep(0.3)


def test_timed(slow):
    time.sleep(0.5)


class TestGroup:
    def test_in_class(self):
        pass
'''


def test_duration_is_the_checks_own_and_the_document_is_indented(pytester):
    pytester.makepyfile(test_timed=TIMED)
    out = pytester.path / "deep" / "er" / "results.json"
    for _ in range(2):   # the folder is made once and then reused
        pytester.runpytest("-p", "validation.node.results", f"--npuenv-results={out}").assert_outcomes(passed=2)
    text = out.read_text()
    assert text.startswith('{\n "npuenv_suite_results": 1,\n "started": ')
    doc = json.loads(text)
    timed = records(doc)[("fleet", "timed")]
    assert 0.45 <= timed["duration_s"] < 0.75, timed   # the call only (0.5 s): setup and teardown passed
    assert timed["duration_s"] == round(timed["duration_s"], 3)
    assert ("fleet", "in_class") in records(doc)
    assert isinstance(doc["duration_s"], float) and 0 < doc["duration_s"] < 30
    assert doc["duration_s"] == round(doc["duration_s"], 1)


def test_a_failure_without_a_crash_line_keeps_its_last_line(pytester):
    pytester.makeconftest('''
import pytest

@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        report.longrepr = "the plugin's own report\\nmore of it\\n" + "z" * 600
''')
    pytester.makepyfile(test_x="def test_x():\n    assert False\n")
    out = pytester.path / "results.json"
    pytester.runpytest("-p", "validation.node.results", f"--npuenv-results={out}")
    assert records(json.loads(out.read_text()))[("fleet", "x")]["message"] == "z" * 500   # its last line, cut

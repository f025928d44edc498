"""The HTML fleet report, rendered by a real browser (headless Chromium), of a
results.json the current code writes: the suite's real checks run under pytest
with the results plugin (validation/node/results.py) for two hosts, one of them
with a Critical NPU; facts and workload results are recorded ones
(tests/unit/check_fakes.py), so no node is needed."""
import html
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.sim.fleet_documents import Fleet
from tests.unit.check_fakes import stack
from validation import report
from validation.node import runner

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"]
HOSTS = ["podman://npu-sim-0", "podman://npu-sim-1"]

CONFTEST = f'''
import pytest
from tests.unit.check_fakes import FakeProbe, healthy_facts
from tests.unit.test_checks_standard import ALLREDUCE_OK, FakeWorkload


def pytest_generate_tests(metafunc):
    if "node" in metafunc.fixturenames:
        metafunc.parametrize("node", {HOSTS!r})


@pytest.fixture
def facts(node):
    facts = healthy_facts()
    if node.endswith("-1"):
        facts["devices"][3]["health"] = "Critical"
    return facts


@pytest.fixture
def workload(node):
    return FakeWorkload(ALLREDUCE_OK)
'''
CHECKS = '''
import pytest
from validation.node.suite.test_quick import test_driver_version, test_firmware_pairs_with_driver, test_npu_health
from validation.node.suite.test_standard import test_allreduce_local

pytest.mark.quick(test_driver_version)
pytest.mark.quick(test_firmware_pairs_with_driver)
pytest.mark.quick(test_npu_health)
pytest.mark.standard(test_allreduce_local)
'''


def fresh_results(tmp_path: Path) -> dict:
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "conftest.py").write_text(CONFTEST)
    (suite / "test_checks.py").write_text(CHECKS)
    (tmp_path / "stack.json").write_text(json.dumps(stack()))
    results = tmp_path / "results.json"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    p = subprocess.run([sys.executable, "-m", "pytest", str(suite), "-p", "validation.node.results",
                        "-p", "validation.node.suite.conftest", "-p", "no:cacheprovider", "-p", "no:xdist",
                        "--rootdir", str(suite), "-c", os.devnull, f"--npuenv-stack={tmp_path / 'stack.json'}",
                        f"--npuenv-results={results}", "-q"], env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 1, p.stdout + p.stderr   # one check fails: the Critical NPU
    hosts = json.loads(results.read_text())["hosts"]
    return report.fleet_result(runner.suite_results(results), hosts, {})   # merged as `npuenv validate` merges it


def render(tmp_path, result, fragment=""):
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail("chromium is not installed: run `make setup` (tests/sim/setup-engine.sh installs it)")
    page = tmp_path / "report.html"
    page.write_text(report.html_page(result))
    dom = subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom",
                          page.as_uri() + fragment], capture_output=True, text=True, timeout=120).stdout
    shot = tmp_path / "report.png"
    subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}",
                    "--window-size=1280,1600", page.as_uri() + fragment], capture_output=True, timeout=120)
    return dom, shot


def test_report_shows_hosts_checks_failures_and_the_bandwidth_spread(tmp_path):
    result = fresh_results(tmp_path)
    assert result["hosts"] == HOSTS
    failed = [r for r in result["results"] if r["status"] == "failed"]
    assert [(r["host"], r["check"]) for r in failed] == [("podman://npu-sim-1", "npu_health")]
    assert failed[0]["failure"]["cause"] == ("the device reports a fault (Alarm or Critical): "
                                           "NPU 3 chip 0: Critical with no error code")
    dom, shot = render(tmp_path, result)
    # the failed host first in the host list, then the other; each check of each host under it
    assert [line.split('data-host="')[1].split('"')[0] for line in dom.splitlines() if 'data-host="' in line] == \
        HOSTS[::-1]
    for check in ("driver_version", "firmware_pairs_with_driver", "npu_health", "allreduce_local"):
        assert dom.count(f"{check}: PASS") + dom.count(f"{check}: FAIL") == 2
    assert "Findings by check and cause (1)" in dom
    cause = html.escape(failed[0]["failure"]["cause"], quote=False)
    assert f"<td>1 of 2: podman://npu-sim-1</td>\n<td>{cause}</td>" in dom
    assert "<summary>FAIL npu_health: unhealthy NPU(s): NPU 3 chip 0 Critical</summary>" in dom
    for key in ("expected", "found", "cause", "fix"):
        assert f"<li>{key}: {html.escape(failed[0]['failure'][key], quote=False)}</li>" in dom
    # the spread of both hosts' all_reduce: a band, the median and the lowest host; every size in the table
    assert dom.count('<polygon class="band"') == 1 and dom.count("<polyline") == 2
    assert dom.count("<td>4194304</td><td>2</td>") == 1
    assert shot.exists() and shot.stat().st_size > 10_000  # the browser painted it


def test_a_report_of_1000_hosts_lists_and_filters_its_hosts(tmp_path):
    """Issue 22: a generated fleet of 1,000 hosts; the page opened as report.html#HOST shows that host alone."""
    fleet = Fleet(1000)
    result = report.fleet_result(fleet.records, fleet.hosts, {}, meta=fleet.meta)
    [sick, *_] = fleet.unhealthy
    dom, shot = render(tmp_path, result, f"#{sick}")
    rows = [line for line in dom.splitlines() if line.startswith('<tr class="host ')]
    assert len(rows) == 1001
    assert [r.split('data-host="')[1].split('"')[0] for r in rows if " hidden=" not in r] == [sick]
    # the two warnings on every host said once each, not under each host
    assert dom.count('<span class="every">every host: 998 of 998</span>') == 2
    assert "<summary>WARN npu_routes" not in dom
    assert shot.exists() and shot.stat().st_size > 10_000

"""The HTML fleet report, rendered by a real browser (headless Chromium)."""
import html
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from validation import report

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "validation"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"]


def render(tmp_path, results_name):
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail("chromium is not installed: run `make setup` (tests/sim/setup-engine.sh installs it)")
    result = json.loads((FIXTURES / results_name).read_text())
    page = tmp_path / "report.html"
    page.write_text(report.html_page(result))
    dom = subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom",
                          page.as_uri()], capture_output=True, text=True, timeout=120).stdout
    shot = tmp_path / "report.png"
    subprocess.run([chromium, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}",
                    "--window-size=1280,1600", page.as_uri()], capture_output=True, timeout=120)
    return result, dom, shot


def test_report_shows_hosts_checks_failures_and_the_bandwidth_plot(tmp_path):
    result, dom, shot = render(tmp_path, "results_demo_with_fault.json")
    assert "<table id=\"matrix\">" in dom
    for host in result["hosts"]:
        assert f">{host}</th>" in dom
    for check in {r["check"] for r in result["results"]}:
        assert f"<td>{check}</td>" in dom
    failed = [r for r in result["results"] if r["status"] == "failed"]
    assert failed, "the fixture holds a run with an injected fault"
    assert f"Failures ({len(failed)})" in dom
    for r in failed:
        assert html.escape(r["failure"]["cause"], quote=False) in dom
        assert html.escape(r["failure"]["fix"], quote=False) in dom
    assert dom.count("<polyline") == len(report.bandwidth_series(result)) > 0
    assert shot.exists() and shot.stat().st_size > 10_000  # the browser painted it

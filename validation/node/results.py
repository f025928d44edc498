"""A pytest plugin that turns the suite's test reports into one JSON result:
per host and check, the outcome, the failure's expected/found/cause/fix, and
the measurements a check recorded (bandwidth rows, training figures)."""
from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from .document import FLEET, fit
from .model import ERROR, FAILED, LEVELS, SKIPPED, SUITE_RESULTS_KEY, SUITE_RESULTS_VERSION, WARNING, CheckResult

PROP_FAILURE = "npuenv_failure"
PROP_WARNING = "npuenv_warning"
PROP_DATA = "npuenv_data"


def pytest_addoption(parser):
    parser.addoption("--npuenv-results", help="write the JSON result here")
    parser.addoption("--npuenv-only", action="append", metavar="CHECK",
                     help="run only the check of this exact name (repeatable; validation/node/runner.py "
                          "checks the names)")


def _host_of(nodeid: str) -> str:
    m = re.search(r"\[(.+?)\]$", nodeid)
    return m.group(1) if m else FLEET


class Collector:
    def __init__(self, path: Path):
        self.path = path
        self.started = time.time()
        self.records: dict[str, dict] = {}

    def pytest_runtest_logreport(self, report):
        if report.when == "setup" and report.outcome == "passed":
            return
        if report.when == "teardown" and report.outcome == "passed":
            return
        props = dict(report.user_properties)
        check = report.nodeid.split("::")[-1].split("[")[0].removeprefix("test_")
        rec = self.records.setdefault(report.nodeid, CheckResult(
            _host_of(report.nodeid), check, next((k for k in LEVELS if k in report.keywords), LEVELS[0])).to_dict())
        rec["duration_s"] = round(rec["duration_s"] + report.duration, 3)
        if PROP_DATA in props:
            rec["data"] = json.loads(props[PROP_DATA])
        if report.skipped:
            rec["status"] = SKIPPED
            rec["message"] = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        elif report.failed:
            rec["status"] = FAILED if report.when == "call" else ERROR
            failure = json.loads(props[PROP_FAILURE]) if PROP_FAILURE in props else None
            rec["failure"] = failure
            rec["message"] = failure["summary"] if failure else _crash_line(report)
        elif PROP_WARNING in props:
            rec["status"] = WARNING
            rec["message"] = props[PROP_WARNING]

    def pytest_sessionfinish(self, session):
        # Fitted into the node document's limits: a long message or a NaN must not
        # make the controller refuse the whole node.
        results = sorted((fit(r) for r in self.records.values()), key=lambda r: (r["host"], r["check"]))
        hosts = sorted({r["host"] for r in results})
        payload = {SUITE_RESULTS_KEY: SUITE_RESULTS_VERSION, "started": self.started,
                   "duration_s": round(time.time() - self.started, 1), "hosts": hosts, "results": results}
        extra = getattr(session.config, "_npuenv_meta", None)
        if extra:
            payload.update(extra)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(payload, indent=1, allow_nan=False) + "\n")


def _crash_line(report) -> str:
    crash = getattr(report.longrepr, "reprcrash", None)
    return crash.message if crash else str(report.longrepr).strip().splitlines()[-1][:500]


@pytest.hookimpl(trylast=True)
def pytest_configure(config):
    path = config.getoption("--npuenv-results")
    # With pytest-xdist the controller (no workerinput) sees every report.
    if path and not hasattr(config, "workerinput"):
        config.pluginmanager.register(Collector(Path(path)), "npuenv-results")


def pytest_collection_modifyitems(config, items):
    """--npuenv-only: keep the checks of exactly these names (a check is its test function, without "test_")."""
    only = set(config.getoption("--npuenv-only") or ())
    if not only:
        return
    keep, dropped = [], []
    for item in items:
        (keep if getattr(item, "originalname", item.name).removeprefix("test_") in only else dropped).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep

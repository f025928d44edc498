"""The results plugin (validation/node/results.py) in this process, where mutation testing reaches it: its
options in pytest's --help, the exact --npuenv-only selection, a record's duration and skip text, and strict JSON."""
from __future__ import annotations

import json
import os

import pytest

from validation.node import results


def test_the_plugins_options_are_explained_in_pytests_help(capsys):
    assert pytest.main(["-p", "validation.node.results", "-p", "no:cacheprovider", "--help"]) == 0
    shown = " ".join(capsys.readouterr().out.split())
    assert "--npuenv-results=NPUENV_RESULTS write the JSON result here" in shown
    assert ("--npuenv-only=CHECK run only the check of this exact name (repeatable; validation/node/runner.py checks "
            "the names)") in shown


SUITE = '''
import pytest

def test_alpha():
    pass

def test_alpha_beta():
    pass

@pytest.mark.parametrize("host", ["h1", "h2"])
def test_gamma(host):
    pass

def test_delta():
    pass
'''


def test_only_keeps_the_checks_of_exactly_those_names_and_deselects_the_rest(tmp_path, capsys):
    """In this process (mutmut reaches it): --npuenv-only twice, a name that is the start of another
    check's, and a check run once per host (its items are named test_gamma[h1], ...)."""
    (tmp_path / "test_checks.py").write_text(SUITE)
    out = tmp_path / "results.json"
    code = pytest.main([str(tmp_path), "-p", "validation.node.results", "-p", "no:cacheprovider", "-p", "no:xdist",
                        "--rootdir", str(tmp_path), "-c", os.devnull, "-q", f"--npuenv-results={out}",
                        "--npuenv-only", "alpha", "--npuenv-only", "gamma"])
    assert code == 0
    assert "3 passed, 2 deselected" in capsys.readouterr().out
    ran = [(r["host"], r["check"]) for r in json.loads(out.read_text())["results"]]
    assert ran == [("fleet", "alpha"), ("h1", "gamma"), ("h2", "gamma")]


class Report:
    """A test report as pytest hands it to the plugin's hook."""
    def __init__(self, **fields):
        self.nodeid, self.when, self.outcome = "test_checks.py::test_alpha[h1]", "call", "passed"
        self.duration, self.user_properties, self.keywords, self.longrepr = 0.0, [], {"quick": 1}, None
        self.__dict__.update(fields)
        self.skipped, self.failed = self.outcome == "skipped", self.outcome == "failed"


def test_a_record_adds_its_phases_durations_to_the_millisecond_and_keeps_a_skips_own_words(tmp_path):
    collector = results.Collector(tmp_path / "r.json")
    collector.pytest_runtest_logreport(Report(when="setup", outcome="skipped", duration=0.12345,
                                              longrepr="skipped: no NPU on this host"))
    [record] = collector.records.values()
    assert (record["duration_s"], record["status"]) == (0.123, "skipped")
    assert record["message"] == "skipped: no NPU on this host"   # not a tuple: the text itself


def test_a_result_that_is_not_strict_json_is_refused_not_written(tmp_path):
    """The controller reads strict JSON only: a NaN the suite's meta would carry stops the write."""
    collector = results.Collector(tmp_path / "r.json")
    session = type("Session", (), {"config": type("Config", (), {"_npuenv_meta": {"loss": float("nan")}})()})()
    with pytest.raises(ValueError, match="Out of range float values are not JSON compliant"):
        collector.pytest_sessionfinish(session)
    assert not (tmp_path / "r.json").exists()

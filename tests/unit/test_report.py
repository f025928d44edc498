"""The fleet report's renderings, each checked whole on one small fleet: what a
reader sees in the terminal, what a CI system reads from junit.xml, what
Prometheus scrapes, and the HTML page's summary, groups and cells. (The merge
and the straggler rule are tested in test_validation_run.py.)"""
from __future__ import annotations

import errno
import json
import os
import signal
import xml.etree.ElementTree as ET

import pytest

from compat_matrix import interrupts, outputs
from compat_matrix.errors import UserError
from tests.sim.fleet_documents import Fleet
from validation import report

CAUSE = {"summary": "s", "expected": "8 healthy NPUs", "found": "NPU 3 Critical", "cause": "the device reports a fault",
         "fix": "reset the chip"}
SIZES = [{"bytes": 1024, "algbw_gbps": 0.5, "busbw_gbps": 0.25, "correct": True},
         {"bytes": 4096, "algbw_gbps": 2.0, "busbw_gbps": 1.5, "correct": False}]


def rec(host, check, status="passed", message="", data=None, failure=None, duration=0.25):
    r = {"host": host, "check": check, "level": "quick", "status": status, "duration_s": duration,
         "message": message, "data": data}
    if failure:
        r["failure"] = failure
    return r


@pytest.fixture
def result():
    records = [
        rec("a", "train", data={"samples_per_s": 100.0}), rec("a", "allreduce_local", data={"sizes": SIZES}),
        rec("a", "python_versions", "warning", "torchvision not installed"),
        rec("b", "train", data={"samples_per_s": 40.0}), rec("b", "migrate", "skipped", "not on cpu"),
        rec("b", "npu_health", "failed", "NPU 3 Critical", failure=CAUSE, duration=1.5),
        rec("c", "train", data={"samples_per_s": 104.0}),
        rec("d", "reachable", "failed", "unreachable: Connection refused",
            failure={**CAUSE, "cause": "nothing listens", "fix": "start sshd"}),
        rec("e", "suite", "error", "python3 is 3.8", failure={**CAUSE, "cause": "old python", "fix": "newer"}),
        rec(report.FLEET, "allreduce_across_nodes", message="all 3 nodes took part", data={"sizes": SIZES[:1]}),
    ]
    # three hosts trained: compared as few as that on purpose (stragglers.MIN_PEERS is 4)
    r = report.fleet_result(records, ["a", "b", "c", "d", "e"], {}, straggler_margin=0.25, straggler_min_peers=3)
    r["meta"] = {"level": "standard", "torch_npu": "2.13.0", "torch": "2.13.0", "cann": "9.1.0", "backend": "cpu"}
    r["finished"] = 1700000000.0
    return r


def test_host_status_orders_unreachable_then_error_then_failed():
    assert report.host_status([rec("h", "reachable", "failed"), rec("h", "suite", "error")]) == "unreachable"
    assert report.host_status([rec("h", "suite", "error"), rec("h", "x", "failed")]) == "error"
    assert report.host_status([rec("h", "x", "error")]) == "failed"   # a check's error fails the host
    assert report.host_status([rec("h", "x", "warning"), rec("h", "y", "skipped")]) == "passed"
    # skipped is not passed: a host whose checks all skipped (or that sent none) was not checked
    assert report.host_status([rec("h", "x", "skipped"), rec("h", "y", "skipped")]) == "not_checked"
    assert report.host_status([]) == "not_checked"
    assert report.host_status([rec("h", "reachable", "passed"), rec("h", "suite", "passed")]) == "not_checked"
    assert report.host_status([rec("h", "x", "skipped"), rec("h", "y", "error")]) == "failed"


def test_a_host_whose_every_check_skipped_is_not_checked_in_every_report():
    """Skipped is not passed (DESIGN.md 6): the terminal, the HTML page, junit.xml (an error case: CI
    reads a suite of skips as green) and metrics.prom all say the host did not pass."""
    from prometheus_client.parser import text_string_to_metric_families

    records = [rec("a", "train", data={"samples_per_s": 100.0}),
               rec("b", "migrate", "skipped", "not on cpu"), rec("b", "train", "skipped", "no device")]
    result = report.fleet_result(records, ["a", "b", "c"], {})   # c sent no record at all
    assert {h: s["status"] for h, s in result["host_status"].items()} == \
        {"a": "passed", "b": "not_checked", "c": "not_checked"}
    assert result["summary"] == {"hosts": 3, "passed": 1, "failed": 0, "unreachable": 0, "error": 0,
                                 "not_checked": 2}
    text = report.terminal(result)
    assert text.startswith("hosts: 3: 1 passed, 0 failed, 0 unreachable, 2 not checked (every check skipped)\n")
    assert ("  b: NOT CHECKED  2 skipped\n    no check ran on this host: each check it was given was skipped "
            "(each skip says why); choose checks that apply to it, or validate at a higher --level\n"
            "  c: NOT CHECKED  \n    no check ran on this host") in text
    assert "fleet" not in text   # no fleet phase: no fleet line
    page = report.html_page(result)
    assert '<span class="not_checked">2 not checked (every check skipped)</span>.</p>' in page
    assert ('<tr class="host not_checked" data-host="b"><td>b</td><td class="not_checked">NOT CHECKED</td>'
            in page) and ".not_checked{background:#ffebe9}" in page
    assert page.count(report.NOT_CHECKED_TEXT) == 2   # b and c, each in its row
    assert '<tr class="host not_checked" data-host="c"><td>c</td><td class="not_checked">NOT CHECKED</td>\n' \
           '<td><details><summary>none</summary></details></td>' in page   # c sent no record at all
    suites = {s.get("name"): s for s in ET.fromstring(report.junit_xml(result)).iter("testsuite")}
    assert list(suites) == ["a", "b", "c"]
    assert {k: suites["b"].get(k) for k in ("tests", "errors", "skipped", "failures")} == \
        {"tests": "3", "errors": "1", "skipped": "2", "failures": "0"}
    assert suites["b"].find("testcase[@name='suite']/error").get("message") == report.NOT_CHECKED_TEXT
    assert {k: suites["b"].find("testcase[@name='suite']").get(k) for k in ("classname", "time")} == \
        {"classname": "b", "time": "0.000"}
    assert report.junit_xml(result).startswith("<?xml version='1.0' encoding='utf-8'?>\n"
                                               '<testsuites name="npuenv-validation"><testsuite name="a" ')
    assert {k: suites["c"].get(k) for k in ("tests", "errors")} == {"tests": "1", "errors": "1"}
    assert suites["a"].get("errors") == "0" and suites["a"].find("testcase[@name='suite']") is None
    families = {f.name: f for f in text_string_to_metric_families(report.prometheus_text(result))}
    assert {s.labels["host"]: s.value for s in families["npuenv_validation_host_passed"].samples} == \
        {"a": 1.0, "b": 0.0, "c": 0.0}
    # it was reached and ran the suite: not an unreachable host
    assert {s.labels["host"]: s.value for s in families["npuenv_validation_host_reachable"].samples} == \
        {"a": 1.0, "b": 1.0, "c": 1.0}


def test_figures_read_only_positive_numbers_of_hosts():
    records = [rec("a", "train", data={"samples_per_s": 5}), rec("b", "train", data={"samples_per_s": 0}),
               rec("c", "train", data={"samples_per_s": "fast"}), rec("d", "train", data=None),
               rec(report.FLEET, "train", data={"samples_per_s": 9}), rec("e", "ddp", data={"samples_per_s": 7}),
               rec("f", "allreduce_local", data={"sizes": SIZES})]
    assert report.figures(records) == {"train_samples_per_s": {"a": 5.0}, "allreduce_busbw_gbps": {"f": 1.5}}


def test_terminal_reads_summary_groups_stragglers_then_hosts(result):
    assert report.terminal(result) == (
        "npuenv validate: level standard, row torch_npu 2.13.0 (CANN 9.1.0), backend cpu\n"
        "hosts: 5: 2 passed, 1 failed, 1 unreachable, 1 could not run the suite\n"
        "failures by check and cause:\n"
        "  npu_health on 1 of 1 host(s): b\n"          # out of the hosts that ran the check
        "       cause: the device reports a fault\n"
        "       fix:   reset the chip\n"
        "  reachable on 1 of 5 host(s): d\n"           # the controller's checks: out of every host
        "       cause: nothing listens\n"
        "       fix:   start sshd\n"
        "  suite on 1 of 5 host(s): e\n"
        "       cause: old python\n"
        "       fix:   newer\n"
        "stragglers (more than 25% below the median of their peers, and beyond the peers' spread):\n"
        "  b: train_samples_per_s 40 samples/s, median 100 of 3 unknown kind hosts (0.40x), likely\n"
        # ln(100/40) = 0.916 over the spread 1.4826 x MAD (0.039, c's distance from a) = 0.058
        "       1 of 1 repeat below 75 (the median of 3 unknown kind hosts less 25%); its median is 15.8 robust "
        "spreads below theirs (a straggler from 3.5); fewer than 3 repeats cannot tell a lasting slowness from a "
        "passing one\n"
        "not compared for stragglers: allreduce_busbw_gbps of 1 unknown kind host, fewer than 3 to compare\n"
        "per host:\n"
        "  a: OK  2 passed  1 warning\n"
        "    WARN python_versions: torchvision not installed\n"
        "  b: FAILED  1 passed  1 warning  1 failed  1 skipped\n"
        "    FAIL npu_health: NPU 3 Critical\n"
        "         expected: 8 healthy NPUs\n"
        "         found:    NPU 3 Critical\n"
        "         cause:    the device reports a fault\n"
        "         fix:      reset the chip\n"
        "    WARN straggler: train_samples_per_s 40 samples/s is 0.40x the median 100 of its 3 unknown kind peers "
        "(more than 25% below); likely: 1 of 1 repeat below 75 (the median of 3 unknown kind hosts less 25%); its "
        "median is 15.8 robust spreads below theirs (a straggler from 3.5); fewer than 3 repeats cannot tell a "
        "lasting slowness from a passing one\n"
        "  d: UNREACHABLE  1 failed\n"
        "    FAIL reachable: unreachable: Connection refused\n"
        "         expected: 8 healthy NPUs\n"
        "         found:    NPU 3 Critical\n"
        "         cause:    nothing listens\n"
        "         fix:      start sshd\n"
        "  e: ERROR  1 error\n"
        "    ERROR suite: python3 is 3.8\n"
        "         expected: 8 healthy NPUs\n"
        "         found:    NPU 3 Critical\n"
        "         cause:    old python\n"
        "         fix:      newer\n"
        "  fleet: OK  1 passed\n"
        # the hosts with nothing of their own to say, on one line
        "  OK, nothing more than the above: 1 host(s): c\n"
        # five hosts: only the fleet's own table and the spread of the hosts' (one host has one here)
        "all_reduce fleet allreduce_across_nodes:\n"
        "         bytes  algbw GB/s  busbw GB/s ok\n"
        "          1024       0.500       0.250 yes\n")


def test_terminal_says_a_finding_on_every_host_once_and_lists_only_the_hosts_that_differ():
    hosts = [f"n{i}" for i in range(12)]
    routes = {"cause": "no default gateway", "fix": "add one", "summary": "s", "expected": "e", "found": "f"}
    records = [rec(h, "npu_routes", "warning", "ports 0-7: no default gateway", failure=routes) for h in hosts]
    records += [rec(h, "npu_health") for h in hosts if h != "n5"]
    records += [rec("n5", "npu_health", "failed", "NPU 3 Critical", failure=CAUSE),
                rec("n7", "link_flaps", "warning", "port 3 went down 4 times")]
    text = report.terminal(report.fleet_result(records, hosts, {}))
    assert text == (
        "hosts: 12: 11 passed, 1 failed, 0 unreachable\n"
        "on every host that ran the check (said once, not under each host):\n"
        "  WARN npu_routes on all 12 hosts\n"
        "       cause: no default gateway\n"
        "       fix:   add one\n"
        "failures by check and cause:\n"
        "  npu_health on 1 of 12 host(s): n5\n"
        "       cause: the device reports a fault\n"
        "       fix:   reset the chip\n"
        "per host:\n"
        "  n5: FAILED  1 warning  1 failed\n"
        "    FAIL npu_health: NPU 3 Critical\n"
        "         expected: 8 healthy NPUs\n"
        "         found:    NPU 3 Critical\n"
        "         cause:    the device reports a fault\n"
        "         fix:      reset the chip\n"
        "  n7: OK  1 passed  2 warning\n"
        "    WARN link_flaps: port 3 went down 4 times\n"
        "  OK, nothing more than the above: 10 host(s): n0, n1, n2, n3, n4, n6, n8, n9 and 2 more\n")
    # a host whose routes pass: the warning is no longer on every host, and each host says it
    records = [rec("n0", "npu_routes") if (r["host"], r["check"]) == ("n0", "npu_routes") else r for r in records]
    text = report.terminal(report.fleet_result(records, hosts, {}))
    assert "on every host" not in text and text.count("WARN npu_routes: ports 0-7: no default gateway") == 11


def test_terminal_shortens_a_long_host_list_and_shows_the_spread_on_big_fleets():
    hosts = [f"n{i}" for i in range(10)]
    records = [rec(h, "npu_health", "failed", "bad", failure=CAUSE) for h in hosts]
    # five hosts' bandwidth, 1.00 to 1.20 times SIZES' (none a straggler)
    records += [rec(h, "allreduce_local", data={"sizes": [{**row, "busbw_gbps": row["busbw_gbps"] * (1 + i / 20)}
                                                          for row in SIZES]}) for i, h in enumerate(hosts[:5])]
    text = report.terminal(report.fleet_result(records, hosts, {}))
    # a failure on every host is said once, with its hosts counted, not named
    assert "  FAIL npu_health on all 10 hosts\n       cause: the device reports a fault\n" in text
    assert text.startswith("hosts: 10: 0 passed, 10 failed, 0 unreachable\n")
    assert "  FAILED, nothing more than the above: 10 host(s): n0, n1, n2, n3, n4, n5, n6, n7 and 2 more\n" in text
    assert "all_reduce n0" not in text   # more than four hosts: the spread, not each host's table
    assert ("all_reduce allreduce_local, busbw GB/s over 5 hosts:\n"
            "         bytes      min      p10   median      p90      max not correct\n"
            "          1024     0.25    0.255    0.275    0.295      0.3           0\n"
            "          4096      1.5     1.53     1.65     1.77      1.8           5\n"
            "  lowest at 4096 bytes: n0 1.5 (0.91x the median), n1 1.58 (0.95x the median)\n") in text
    few = report.terminal(report.fleet_result([r for r in records if r["host"] in hosts[:4]], hosts[:4], {}))
    assert "all_reduce n0 allreduce_local:\n" in few and "  FAIL npu_health on all 4 hosts\n" in few


def test_junit_suites_count_and_carry_each_verdict(result):
    root = ET.fromstring(report.junit_xml(result))
    suites = {s.get("name"): s for s in root.iter("testsuite")}
    assert list(suites) == ["a", "b", "c", "d", "e", "fleet"]
    b = suites["b"]
    assert {k: b.get(k) for k in ("tests", "failures", "errors", "skipped", "time")} == \
        {"tests": "4", "failures": "1", "errors": "0", "skipped": "1", "time": "2.000"}
    failure = b.find("testcase[@name='npu_health']/failure")
    assert failure.get("message") == "NPU 3 Critical"
    assert failure.text == ("expected: 8 healthy NPUs\nfound: NPU 3 Critical\ncause: the device reports a fault\n"
                            "fix: reset the chip")
    assert b.find("testcase[@name='npu_health']").get("classname") == "b"
    assert b.find("testcase[@name='npu_health']").get("time") == "1.500"
    assert b.find("testcase[@name='migrate']/skipped").get("message") == "not on cpu"
    assert b.find("testcase[@name='straggler']/system-out").text.startswith("warning: train_samples_per_s 40")
    assert suites["e"].get("errors") == "1" and suites["e"].find("testcase/error").get("message") == "python3 is 3.8"
    assert b.find("testcase[@name='train']/*") is None   # a pass carries nothing


def test_prometheus_help_texts_and_a_result_without_its_row():
    text = report.prometheus_text(report.fleet_result([rec("c", "train", data={"samples_per_s": 5.0})], ["c"], {}))
    assert [line for line in text.splitlines() if line.startswith("# HELP")] == [
        "# HELP npuenv_validation_check_passed 1 when the check passed (or only warned), 0 when it failed",
        "# HELP npuenv_validation_host_reachable 1 when the host was reached and ran the suite",
        "# HELP npuenv_validation_host_passed 1 when the host's checks ran and passed",
        "# HELP npuenv_validation_train_samples_per_second train_samples_per_s measured by the train check, in "
        "base units (1 per samples/s)",
        "# HELP npuenv_validation_allreduce_busbw_bytes_per_second allreduce_busbw_gbps measured by the "
        "allreduce_local check, in base units (1e+09 per GB/s)",
        "# HELP npuenv_validation_straggler 1 when the host's figure is below its peers' median by more than the "
        "margin and their spread",
        "# HELP npuenv_validation_last_run_timestamp_seconds when the validation run ended"]
    # no meta (no row): its labels are empty, not "None"
    assert 'npuenv_validation_check_passed{cann="",check="train",host="c",level="",torch_npu=""} 1.0' in text


def test_prometheus_text_has_every_host_and_check(result):
    from prometheus_client.parser import text_string_to_metric_families

    families = {f.name: f for f in text_string_to_metric_families(report.prometheus_text(result))}
    passed = {(s.labels["host"], s.labels["check"]): s.value for s in families["npuenv_validation_check_passed"].samples}
    assert passed == {("a", "train"): 1.0, ("a", "allreduce_local"): 1.0, ("a", "python_versions"): 1.0,
                      ("b", "train"): 1.0, ("b", "npu_health"): 0.0, ("c", "train"): 1.0,
                      (report.FLEET, "allreduce_across_nodes"): 1.0}
    sample = families["npuenv_validation_check_passed"].samples[0]
    assert {k: sample.labels[k] for k in ("level", "torch_npu", "cann")} == \
        {"level": "standard", "torch_npu": "2.13.0", "cann": "9.1.0"}
    reachable = {s.labels["host"]: s.value for s in families["npuenv_validation_host_reachable"].samples}
    assert reachable == {"a": 1.0, "b": 1.0, "c": 1.0, "d": 0.0, "e": 0.0}
    ok = {s.labels["host"]: s.value for s in families["npuenv_validation_host_passed"].samples}
    assert ok == {"a": 1.0, "b": 0.0, "c": 1.0, "d": 0.0, "e": 0.0}
    # base units, as Prometheus names them: samples per second, bytes per second (1.5 GB/s)
    train = {s.labels["host"]: s.value for s in families["npuenv_validation_train_samples_per_second"].samples}
    assert train == {"a": 100.0, "b": 40.0, "c": 104.0}
    busbw = {s.labels["host"]: s.value for s in families["npuenv_validation_allreduce_busbw_bytes_per_second"].samples}
    assert busbw == {"a": 1.5e9}
    assert [s.value for s in families["npuenv_validation_last_run_timestamp_seconds"].samples] == [1700000000.0]


def test_html_page_summary_groups_hosts_and_the_bandwidth_spread(result):
    page = report.html_page(result)
    assert ('<p id="summary">Level <b>standard</b>, row torch_npu <b>2.13.0</b> (torch 2.13.0, CANN 9.1.0), '
            'backend <b>cpu</b>: <b>5</b> host(s), <span class="passed">2 passed</span>, '
            '<span class="failed">1 failed</span>, <span class="unreachable">1 unreachable</span>, '
            '<span class="error">1 could not run the suite</span>.</p>') in page
    assert "<h2>Findings by check and cause (5)</h2>" in page   # three failures, two warnings
    assert ('<tr class="failed"><td>FAIL</td><td>npu_health</td>\n<td>1 of 1: b</td>\n'
            '<td>the device reports a fault</td><td>reset the chip</td><td>b: NPU 3 Critical</td></tr>') in page
    assert ('<tr class="warning"><td>WARN</td><td>python_versions</td>\n<td>1 of 1: a</td>\n'
            '<td>torchvision not installed</td><td></td><td>a: torchvision not installed</td></tr>') in page
    assert ('<tr class="warning"><td>b</td><td>train_samples_per_s</td><td>40 samples/s</td><td>100</td>'
            '<td>0.40</td><td>3 unknown kind</td><td>likely: 1 of 1 repeat below 75') in page
    assert ('<p class="not-compared">Not compared for stragglers: allreduce_busbw_gbps of 1 unknown kind host, '
            'fewer than 3 to compare (a).</p>') in page
    # the hosts as a list, those that did not pass first, each with its own findings
    assert [line.split('data-host="')[1].split('"')[0] for line in page.splitlines() if 'data-host="' in line] == \
        ["b", "d", "e", "a", "c", report.FLEET]
    assert ('<div class="finding failed"><details><summary>FAIL npu_health: NPU 3 Critical</summary><ul>'
            '<li>expected: 8 healthy NPUs</li><li>found: NPU 3 Critical</li><li>cause: the device reports a fault</li>'
            '<li>fix: reset the chip</li></ul></details></div>') in page
    assert "<summary>1 passed, 1 warning, 1 failed, 1 skipped</summary>migrate: SKIP<br>npu_health: FAIL<br>" in page
    assert '<input id="host-filter" type="search"' in page and 'filter.addEventListener("input", applyFilter)' in page
    # each collective's spread: one band, the median and the lowest host; every size in the table
    assert page.count('<polygon class="band"') == page.count('<polyline class="median"') == 2
    assert ('<tr><td>4096</td><td>1</td><td>1.5</td><td>1.5</td><td>1.5</td><td>1.5</td><td>1.5</td>'
            '<td class="failed">1</td></tr>') in page
    assert "busbw GB/s (max 1.500)" in page


def test_html_page_marks_a_finding_on_every_host_and_leaves_it_out_of_the_hosts():
    hosts = [f"n{i}" for i in range(3)]
    records = [rec(h, "npu_routes", "warning", "no default gateway") for h in hosts] + [rec("n1", "x", "failed", "y")]
    page = report.html_page(report.fleet_result(records, hosts, {}))
    assert '<td><span class="every">every host: 3 of 3</span></td>' in page
    assert "<summary>WARN npu_routes" not in page and "<summary>FAIL x: y</summary>" in page


def test_html_page_escapes_what_a_node_sent():
    records = [rec("a", "npu_health", "failed", "<script>alert(1)</script>", failure={**CAUSE, "fix": "a & b"})]
    page = report.html_page(report.fleet_result(records, ["a"], {}, meta={"level": "<b>"}))
    assert "<script>alert" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<li>fix: a &amp; b</li>" in page and "Level <b>&lt;b&gt;</b>" in page


def test_html_page_without_collectives_or_failures_says_so():
    page = report.html_page(report.fleet_result([rec("a", "driver_version")], ["a"], {}))
    assert "<p>No collective ran at this level.</p>" in page and "<svg" not in page
    assert "<h2>Findings by check and cause (0)</h2>" in page and "<p>Nothing failed or warned.</p>" in page
    assert "could not run the suite" not in page


def test_the_plot_places_sizes_on_a_log_axis():
    sizes = [{"bytes": 1, "min": 0.0, "p10": 0.0, "median": 0.0, "p90": 0.5, "max": 0.5},
             {"bytes": 4, "min": 1.0, "p10": 1.5, "median": 2.0, "p90": 2.0, "max": 2.0},
             {"bytes": 16, "min": 0.5, "p10": 1.0, "median": 1.0, "p90": 1.0, "max": 1.0}]
    lines = report.plot_lines(sizes)
    # x from 45 to 595 over log2 0..4, y from 255 (0 GB/s) up to 45 (the largest maximum, 2 GB/s)
    assert lines["median"] == "45.0,255.0 320.0,45.0 595.0,150.0"
    assert lines["min"] == "45.0,255.0 320.0,150.0 595.0,202.5"
    # the band: the 10th percentile left to right, then the 90th back
    assert lines["band"] == "45.0,255.0 320.0,97.5 595.0,150.0 595.0,150.0 320.0,45.0 45.0,202.5"
    assert lines["top"] == 2.0


def test_bandwidth_spread_quantiles_and_the_lowest_hosts():
    rows = lambda bw, ok=True: {"sizes": [{"bytes": 8, "algbw_gbps": bw, "busbw_gbps": bw, "correct": ok}]}  # noqa: E731
    records = [rec(f"h{i}", "allreduce_local", data=rows(bw, ok=i != 3))
               for i, bw in enumerate([10.0, 9.0, 1.0, 8.0, 7.0, 6.0, 5.0, 4.0, 3.0, 2.0, 0.5])]
    spread = report.bandwidth_spread(records)["allreduce_local"]
    # eleven values 0.5, 1..10: ranks 0..10, the 10th percentile at rank 1, the 90th at rank 9
    assert spread["sizes"] == [{"bytes": 8, "hosts": 11, "min": 0.5, "p10": 1.0, "median": 5.0, "p90": 9.0,
                                "max": 10.0, "incorrect": 1}]
    assert [(w["host"], w["busbw_gbps"], w["ratio"]) for w in spread["lowest"]] == \
        [("h10", 0.5, 0.1), ("h2", 1.0, 0.2), ("h9", 2.0, 0.4), ("h8", 3.0, 0.6), ("h7", 4.0, 0.8)]
    assert report.percentile([1.0, 2.0], 0.25) == 1.25 and report.percentile([3.0], 0.9) == 3.0


def test_write_all_then_remove_all(tmp_path, result):
    out = tmp_path / "out"
    written = report.write_all(result, out)
    assert [p.name for p in written] == ["results.json", "report.html", "junit.xml", "metrics.prom"]
    assert sorted(p.name for p in out.iterdir()) == ["junit.xml", "metrics.prom", "report.html", "results.json"]
    assert report.load(out / "results.json")["summary"] == result["summary"]
    (out / "mine.txt").write_text("kept")
    report.remove_all(out)
    assert [p.name for p in out.iterdir()] == ["mine.txt"]


def test_fleet_result_keeps_each_hosts_outcome_and_groups_failures_without_an_explanation():
    class Outcome:
        reason = "ssh: connection timed out"
        document = {"python": "3.11.2", "duration_s": 4.5}

    hosts = ["h0", "h1", "h2", "h3"]
    records = [rec(h, "driver_version", "failed", "driver missing") for h in hosts]
    records += [rec("h0", "train", data={"samples_per_s": 0.5}), rec("h1", "train", data={"samples_per_s": 0.5})]
    r = report.fleet_result(records, hosts, {"h0": Outcome()})
    assert r["host_status"]["h0"] == {"status": "failed", "reason": "ssh: connection timed out", "python": "3.11.2",
                                      "duration_s": 4.5}
    assert r["host_status"]["h1"] == {"status": "failed", "reason": "", "python": None, "duration_s": None}
    # no explanation: the message is the cause, there is no fix, and three examples stand for the four hosts
    assert r["failures"] == [{"check": "driver_version", "cause": "driver missing", "fix": "", "hosts": hosts, "of": 4,
                              "examples": ["h0: driver missing", "h1: driver missing", "h2: driver missing"]}]
    assert r["figures"]["train_samples_per_s"] == {"h0": 0.5, "h1": 0.5}   # below 1 is still a figure


# --- what a node sent, in every report -----------------------------------------------

def test_fleet_result_is_made_safe_once_for_every_report():
    records = [rec("a", "npu_health", "failed", "\x1b[31mNPU 3\x1b[0m Critical\x00",
                   failure={**CAUSE, "found": "x\ud800"}, data={"loss": float("nan")})]
    r = report.fleet_result(records, ["a"], {}, meta={"targets": ["ssh://ops@a\x1b]0;t\x07"], "level": "quick"})
    [mine] = r["results"]
    assert mine["message"] == "\ufffd[31mNPU 3\ufffd[0m Critical\ufffd"
    assert (mine["failure"]["found"], mine["data"]) == ("x\ufffd", {"loss": None})
    assert r["meta"]["targets"] == ["ssh://ops@a\ufffd]0;t\ufffd"]
    assert r["failures"][0]["examples"] == ["a: \ufffd[31mNPU 3\ufffd[0m Critical\ufffd"]


@pytest.mark.parametrize("sizes", ["1 GiB", [1, 2], [{"bytes": "1024", "algbw_gbps": 1.0, "busbw_gbps": 1.0}],
                                   [{"bytes": 1024, "algbw_gbps": 1.0, "busbw_gbps": True}], {"bytes": 1024}])
def test_bandwidth_rows_of_another_shape_are_left_out(sizes):
    records = [rec("a", "allreduce_local", data={"sizes": sizes}), rec("b", "allreduce_local", data={"sizes": SIZES})]
    r = report.fleet_result(records, ["a", "b"], {})
    assert report.bandwidth_series(r) == {"b allreduce_local": SIZES}
    assert r["figures"]["allreduce_busbw_gbps"] == {"b": 1.5}
    assert "all_reduce a allreduce_local" not in report.terminal(r)
    assert "allreduce_local: bus bandwidth over 1 host(s)" in report.html_page(r)


def test_a_bandwidth_row_whose_result_was_wrong_says_so():
    rows = [{"bytes": 1024, "algbw_gbps": 1.0, "busbw_gbps": 1.0, "correct": False},
            {"bytes": 4096, "algbw_gbps": 2.0, "busbw_gbps": 2.0, "correct": True},
            {"bytes": 16384, "algbw_gbps": 3.0, "busbw_gbps": 3.0},                   # it says nothing
            {"bytes": 65536, "algbw_gbps": 4.0, "busbw_gbps": 4.0, "correct": "false"}]   # nor here
    text = report.terminal(report.fleet_result([rec("a", "allreduce_local", data={"sizes": rows})], ["a"], {}))
    assert text[text.index("all_reduce a allreduce_local:"):].splitlines()[1:6] == [
        "         bytes  algbw GB/s  busbw GB/s ok", "          1024       1.000       1.000 NO",
        "          4096       2.000       2.000 yes", "         16384       3.000       3.000 -",
        "         65536       4.000       4.000 -"]


# --- all reports or none ------------------------------------------------------------

def earlier_run(out):
    out.mkdir()
    for name in ("results.json", "junit.xml", "report.html", "metrics.prom"):
        (out / name).write_text("an earlier run: passed")
    (out / "notes.txt").write_text("mine")


def left(tmp_path):
    """What is in tmp_path and out/, besides the user's own file."""
    return sorted(p.name for p in [*tmp_path.iterdir(), *(tmp_path / "out").iterdir()] if p.name != "notes.txt")


def test_a_report_that_cannot_be_made_leaves_no_report_at_all(tmp_path, result, monkeypatch):
    out = tmp_path / "out"
    earlier_run(out)

    def broken(_result):
        raise KeyError("busbw_gbps")

    monkeypatch.setitem(report.REPORTS, "junit.xml", broken)
    with pytest.raises(UserError) as e:
        report.write_all(result, out)
    assert str(e.value) == ("the reports were not written: junit.xml could not be made (KeyError: 'busbw_gbps'); "
                            "this is a bug of npuenv: please report it with the command and its output; the reports "
                            f"of an earlier run in {out} were removed, so that none of them is taken for this run's")
    assert left(tmp_path) == ["out"]   # no report, old or new, and no temporary folder


def test_a_write_that_fails_halfway_leaves_no_report_at_all(tmp_path, result, monkeypatch):
    out = tmp_path / "out"
    earlier_run(out)
    real, moved = os.replace, []

    def full_disk(src, dst):
        if moved:
            raise OSError(errno.ENOSPC, "No space left on device")
        moved.append(dst)
        real(src, dst)

    monkeypatch.setattr(outputs.os, "replace", full_disk)
    with pytest.raises(UserError) as e:
        report.write_all(result, out)
    assert str(e.value).startswith(f"the reports were not written: --out {out}: cannot write it: No space left on "
                                   "device; the reports of an earlier run")
    assert [p.name for p in moved] == ["results.json"]   # one new report was in place: it is gone too
    assert left(tmp_path) == ["out"]


@pytest.mark.parametrize("when", ["rendering", "making the temporary folder", "moving"])
def test_an_interrupt_while_writing_leaves_no_report_and_no_temporary_folder(tmp_path, result, monkeypatch, when):
    out = tmp_path / "out"
    earlier_run(out)
    real_render, real_replace, real_mkdtemp = report.REPORTS["report.html"], os.replace, outputs.tempfile.mkdtemp

    def render(r):
        os.kill(os.getpid(), signal.SIGTERM)
        return real_render(r)

    def replace(src, dst):
        os.kill(os.getpid(), signal.SIGTERM)   # held back until every report is in place
        real_replace(src, dst)

    def mkdtemp(**kwargs):
        made = real_mkdtemp(**kwargs)
        os.kill(os.getpid(), signal.SIGTERM)   # before its name is known to anyone who would remove it
        return made

    if when == "rendering":
        monkeypatch.setitem(report.REPORTS, "report.html", render)
    elif when == "moving":
        monkeypatch.setattr(outputs.os, "replace", replace)
    else:
        monkeypatch.setattr(outputs.tempfile, "mkdtemp", mkdtemp)
    with pytest.raises(interrupts.Interrupted), interrupts.interruptible("validate"):
        report.write_all(result, out)
    assert left(tmp_path) == ["out"]


def test_remove_all_where_there_is_no_report_does_nothing(tmp_path):
    report.remove_all(tmp_path)
    assert list(tmp_path.iterdir()) == []


def stuck(out, *names):
    """Reports that unlink cannot remove: folders (with a file) in their place."""
    for name in names:
        (out / name).unlink()
        (out / name).mkdir()
        (out / name / "x").write_text("")


def test_reports_that_cannot_be_removed_are_named_and_the_others_removed(tmp_path):
    out = tmp_path / "out"
    earlier_run(out)
    stuck(out, "junit.xml", "metrics.prom")
    with pytest.raises(UserError) as e:
        report.remove_all(out)
    assert str(e.value) == (f"the reports of an earlier run could not be removed: {out / 'junit.xml'} (Is a "
                            f"directory), {out / 'metrics.prom'} (Is a directory); remove them by hand so that "
                            "nobody takes them for this run's")
    assert sorted(p.name for p in out.iterdir()) == ["junit.xml", "metrics.prom", "notes.txt"]


def test_an_unexpected_error_and_a_report_that_stays_are_both_said(tmp_path, result, monkeypatch):
    out = tmp_path / "out"
    earlier_run(out)
    stuck(out, "metrics.prom")

    def denied(*args):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(report.outputs, "write_files", denied)
    with pytest.raises(UserError) as e:
        report.write_all(result, out)
    assert str(e.value) == (f"the reports were not written: {out}: PermissionError: [Errno 13] Permission denied; "
                            f"the reports of an earlier run could not be removed: {out / 'metrics.prom'} (Is a "
                            "directory); remove them by hand so that nobody takes them for this run's")
    assert sorted(p.name for p in out.iterdir()) == ["metrics.prom", "notes.txt"]


def test_write_all_with_some_reports_removes_the_others(tmp_path, result):
    out = tmp_path / "out"
    earlier_run(out)
    assert report.write_all(result, out, names=(report.METRICS,)) == [out / "metrics.prom"]
    assert sorted(p.name for p in out.iterdir()) == ["metrics.prom", "notes.txt"]
    assert "npuenv_validation_host_reachable{host=\"d\"} 0.0" in (out / "metrics.prom").read_text()


def test_the_metrics_file_passes_promtool(result, tmp_path):
    """Prometheus' own linter (Debian's prometheus package, installed by make setup) accepts the
    file with every metric present: names in base units, help and type for each."""
    import shutil
    import subprocess

    promtool = shutil.which("promtool")
    assert promtool, "promtool is not installed; `make setup` installs Debian's prometheus package"
    text = report.prometheus_text(result)
    assert "npuenv_validation_allreduce_busbw_bytes_per_second{" in text and "npuenv_validation_straggler{" in text
    checked = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True)
    assert (checked.returncode, checked.stdout + checked.stderr) == (0, "")


# --- results.json: compact, bounded, read back whole --------------------------------------

def test_results_json_reads_back_as_the_result(tmp_path, result):
    (tmp_path / "results.json").write_text(report.results_json(result))
    assert report.load(tmp_path / "results.json") == result
    # fields at their defaults are left out of the file (most checks pass silently)
    assert '{"host":"c","check":"train","level":"quick","status":"passed","duration_s":0.25,"data":' \
           '{"samples_per_s":104.0}}' in (tmp_path / "results.json").read_text()


def test_results_json_over_its_budget_leaves_out_passed_data_largest_check_first(tmp_path, monkeypatch):
    big, small = {"lanes": list(range(200))}, {"tls": "off"}
    records = [rec(h, "optical", data=big) for h in ("a", "b")] + [rec(h, "tls", data=small) for h in ("a", "b")]
    records += [rec("a", "hbm", "failed", "ECC", data=big, failure=CAUSE), rec("b", "hbm", data=big)]
    result = report.fleet_result(records, ["a", "b"], {})
    whole = len(report.results_json(result))
    monkeypatch.setattr(report, "RESULTS_JSON_BUDGET", whole - 100)   # one check's data is enough
    (tmp_path / "results.json").write_text(report.results_json(result))
    back = report.load(tmp_path / "results.json")
    data = {(r["host"], r["check"]): r["data"] for r in back["results"]}
    # hbm's passed and failed data is as large as optical's: the failed record keeps its data, so optical goes
    assert back["data_omitted"]["checks"] == ["optical"]
    assert data == {("a", "optical"): None, ("b", "optical"): None, ("a", "tls"): small, ("b", "tls"): small,
                    ("a", "hbm"): big, ("b", "hbm"): big}
    assert len((tmp_path / "results.json").read_text()) <= whole - 100
    monkeypatch.setattr(report, "RESULTS_JSON_BUDGET", 10)   # nothing fits: every passed check's data goes
    back = json.loads(report.results_json(result))
    assert back["data_omitted"]["checks"] == ["optical", "hbm", "tls"]
    assert [r.get("data") for r in back["results"] if r["status"] == "failed"] == [big]
    # a budget met exactly by leaving out the first check's data leaves out no more; the room for the note
    # is kept as if it named every check that may go, so the file stays within its budget
    monkeypatch.setattr(report, "RESULTS_JSON_BUDGET", 10 ** 9)
    slim = len(report.results_json({**result, "results": [
        {**r, "data": None} if r["check"] == "optical" else r for r in result["results"]]})) - 1
    monkeypatch.setattr(report, "RESULTS_JSON_BUDGET", slim + 300)   # the note names the budget: as many digits
    budget = slim + len(',"data_omitted":' + json.dumps(report.omitted_note(["optical", "hbm", "tls"]),
                                                        separators=(",", ":")))
    monkeypatch.setattr(report, "RESULTS_JSON_BUDGET", budget)
    text = report.results_json(result)
    assert json.loads(text)["data_omitted"]["checks"] == ["optical"] and len(text) - 1 <= budget


def test_a_report_of_1000_hosts_reads_and_fits(tmp_path):
    """Issue 22: a generated fleet of 1,000 hosts (tests/sim/fleet_documents.py) in every report."""
    from prometheus_client.parser import text_string_to_metric_families

    fleet = Fleet(1000)
    result = report.fleet_result(fleet.records, fleet.hosts, {}, meta=fleet.meta)
    text = report.terminal(result)
    assert len(text.splitlines()) < 100
    # the two warnings every host has, once each; the hosts with trouble of their own, each named
    assert text.count("npu_routes") == 1 and text.count("python_versions") == 1
    assert "  WARN npu_routes on all 998 hosts\n" in text
    for host in [*fleet.unhealthy, *fleet.unreachable, *fleet.flapping]:
        assert f"\n  {host}: " in text
    assert f"  OK, nothing more than the above: {1000 - 1 - 5 - 3 - 2} host(s): " in text   # the slow one warns
    written = report.write_all(result, tmp_path)
    assert (tmp_path / "results.json").stat().st_size <= report.RESULTS_JSON_BUDGET
    back = report.load(tmp_path / "results.json")
    assert len(back["results"]) == len(result["results"])
    # every failure whole; the warnings' messages all there (the copies of one on every host lose their data)
    bad = [r for r in result["results"] if r["status"] in ("failed", "error")]
    assert len(bad) == 5 and [r for r in back["results"] if r["status"] in ("failed", "error")] == bad
    assert [r["message"] for r in back["results"] if r["status"] == "warning"] == \
        [r["message"] for r in result["results"] if r["status"] == "warning"]
    assert back["data_omitted"]["checks"][0] == "optical_modules"   # the most data of a passed check
    page = (tmp_path / "report.html").read_text()
    assert page.count('data-host="') == 1001 and page.count('<span class="every">every host: 998 of 998') == 2
    suites = list(ET.parse(tmp_path / "junit.xml").getroot().iter("testsuite"))
    assert len(suites) == 1001
    families = {f.name: f for f in text_string_to_metric_families((tmp_path / "metrics.prom").read_text())}
    assert sum(s.value == 0.0 for s in families[report.HOST_PASSED].samples) == 5   # 3 unhealthy, 2 unreachable
    assert [p.name for p in written] == list(report.REPORTS)


# --- what mutation found untested ---------------------------------------------------------

def test_a_finding_is_on_every_host_from_two_hosts_on():
    assert report.on_every_host({"hosts": ["a", "b"], "of": 2})
    assert not report.on_every_host({"hosts": ["a"], "of": 1})       # one host is no fleet
    assert not report.on_every_host({"hosts": ["a", "b"], "of": 3})


def test_results_json_at_exactly_its_budget_keeps_everything(monkeypatch):
    records = [rec(h, "optical", data={"lanes": list(range(50))}) for h in ("a", "b")]
    result = report.fleet_result(records, ["a", "b"], {})
    whole = report.results_json(result)
    monkeypatch.setattr(report, "RESULTS_JSON_BUDGET", len(whole) - 1)   # the budget counts no newline
    assert report.results_json(result) == whole
    monkeypatch.setattr(report, "RESULTS_JSON_BUDGET", len(whole) - 2)
    slim = json.loads(report.results_json(result))
    assert slim["data_omitted"]["checks"] == ["optical"]
    assert slim["data_omitted"]["why"].startswith(f"results.json is kept within {len(whole) - 2} bytes")
    assert report.results_json({"results": []}) == '{"results":[]}\n'
    # one record: no separator to count
    one = report.fleet_result(records[:1], ["a"], {})
    monkeypatch.setattr(report, "RESULTS_JSON_BUDGET", len(report.results_json(one)) - 1)
    assert "data_omitted" not in json.loads(report.results_json(one))


def test_results_json_leaves_out_the_check_with_the_most_data_in_all_and_keeps_a_findings_data(monkeypatch):
    # "many": ten records of 30 numbers (more in all than "one"'s single record of 100)
    records = [rec(f"h{i}", "many", data={"v": list(range(30))}) for i in range(10)]
    records += [rec("h0", "one", data={"v": list(range(100))})]
    # a warning on two of the ten hosts (not on every host): both keep their data
    records += [rec(h, "flaps", "warning", "port 3 down", data={"port": 3}) for h in ("h1", "h2")]
    records += [rec(f"h{i}", "flaps") for i in range(3, 10)]
    result = report.fleet_result(records, [f"h{i}" for i in range(10)], {})
    monkeypatch.setattr(report, "RESULTS_JSON_BUDGET", len(report.results_json(result)) - 50)
    back = json.loads(report.results_json(result))
    assert back["data_omitted"]["checks"] == ["many"]
    assert [r["data"] for r in back["results"] if r["check"] == "flaps" and r["status"] == "warning"] == \
        [{"port": 3}, {"port": 3}]
    monkeypatch.setattr(report, "RESULTS_JSON_BUDGET", 10)   # nothing fits: still the warnings keep their data
    back = json.loads(report.results_json(result))
    assert [r["data"] for r in back["results"] if r["check"] == "flaps" and r["status"] == "warning"] == \
        [{"port": 3}, {"port": 3}]


def test_results_are_in_the_hosts_order_and_the_fleet_last():
    records = [rec(report.FLEET, "allreduce_across_nodes"), rec("a", "y"), rec("a", "x"), rec("b", "x")]
    result = report.fleet_result(records, ["b", "a"], {})
    assert [(r["host"], r["check"]) for r in result["results"]] == \
        [("b", "x"), ("a", "x"), ("a", "y"), (report.FLEET, "allreduce_across_nodes")]


def test_bandwidth_spread_names_only_hosts_below_the_median_and_rounds_to_four_places():
    rows = lambda bw: {"sizes": [{"bytes": 8, "algbw_gbps": bw, "busbw_gbps": bw}]}  # noqa: E731
    spread = report.bandwidth_spread([rec(h, "allreduce_local", data=rows(bw))
                                      for h, bw in (("a", 1.23456), ("b", 2.0), ("c", 3.0))])["allreduce_local"]
    assert [w["host"] for w in spread["lowest"]] == ["a"]      # b is the median itself
    assert spread["sizes"][0]["min"] == 1.2346 and spread["lowest"][0]["ratio"] == 0.617
    # a median of 0 (a node may send any number): no ratio rather than a division by zero
    spread = report.bandwidth_spread([rec(h, "allreduce_local", data=rows(bw))
                                      for h, bw in (("a", -1.0), ("b", 0.0), ("c", 0.0))])["allreduce_local"]
    assert spread["lowest"] == [{"host": "a", "busbw_gbps": -1.0, "bytes": 8, "ratio": None}]


def test_the_plot_scales_sizes_that_do_not_start_at_one_byte():
    sizes = [{"bytes": b, "min": 1.0, "p10": 1.0, "median": 1.0, "p90": 1.0, "max": 1.0} for b in (4, 16, 64)]
    # log2 2..6 over x 45..595
    assert report.plot_lines(sizes)["median"] == "45.0,45.0 320.0,45.0 595.0,45.0"


def test_load_reads_a_results_json_without_records(tmp_path):
    (tmp_path / "results.json").write_text('{"npuenv_results": 1, "summary": {}}')
    assert report.load(tmp_path / "results.json") == {"npuenv_results": 1, "summary": {}, "results": []}


def test_results_json_carries_its_format_first(tmp_path, result):
    assert report.results_json(result).startswith('{"npuenv_results":1,"hosts":')


@pytest.mark.parametrize("head, shown", [('"summary": {}', "None"), ('"npuenv_results": 2', "2"),
                                         ('"npuenv_results": "1"', "'1'"), ('"npuenv_results": true', "True")])
def test_load_refuses_a_results_json_of_another_format(tmp_path, head, shown):
    path = tmp_path / "results.json"
    path.write_text("{" + head + ', "results": []}')
    with pytest.raises(UserError) as e:
        report.load(path)
    assert str(e.value) == (f"{path}: not a results.json of format 1 (npuenv_results is {shown}): another version "
                            f"of npuenv wrote it; validate again to write one this version reads")

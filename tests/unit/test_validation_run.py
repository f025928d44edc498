"""The validation runner's merge, exit codes and reports, on hand-written node
results (what validation/node/runner.py prints), and the artefact run on this machine."""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import pytest

import compat_matrix as cm
from compat_matrix.errors import UserError
from validation import artefact, merge, report, run, stragglers, targets
from validation.merge import Outcome

ROOT = Path(__file__).resolve().parents[2]


def rec(host, check, status="passed", message="", data=None, failure=None):
    r = {"host": host, "check": check, "level": "quick", "status": status, "duration_s": 0.5,
         "message": message, "data": data}
    if failure:
        r["failure"] = failure
    return r


def doc(*records, **extra):
    """A node document as node/runner.py prints it (format 1)."""
    return {"format": 1, "hostname": "x", "addresses": ["192.168.1.10"], "python": "3.11.2", "level": "quick",
            "fleet": False, "results": [dict(r, host="local://") for r in records], "pytest_exit": 0,
            "duration_s": 1.5, **extra}


# --- one node's outcome ----------------------------------------------------------

def test_judge_reads_the_last_json_line_and_refuses_silence():
    ok = merge.judge(1, "log line\n" + json.dumps(doc(rec("h", "npu_health", "failed"))) + "\n", "")
    assert ok.status == "ran" and ok.document["results"][0]["check"] == "npu_health"
    silent = merge.judge(137, "", "Killed")
    assert silent.status == "error" and silent.reason == "the validation artefact gave no result (exit 137): Killed"
    broken = merge.judge(2, json.dumps({"error": "python3 3.8 on this node is too old"}), "")
    assert broken.status == "error" and broken.reason == "python3 3.8 on this node is too old"


def test_records_of_an_unreachable_host_is_a_failed_reachable_check_with_sshs_reason():
    reason = "Failed to connect to the host via ssh: ssh: connect to host 10.0.0.9 port 22: Connection refused"
    [r] = merge.records_of("atlas-09", Outcome("unreachable", reason))
    assert (r["host"], r["check"], r["status"]) == ("atlas-09", "reachable", "failed")
    assert r["message"] == "unreachable: " + reason
    assert r["failure"]["cause"] == "nothing listens on the SSH port: sshd is down, the host is rebooting, or the port is wrong"
    denied = merge.records_of("a", Outcome("unreachable", "Failed to connect: Permission denied (publickey)."))[0]
    assert denied["failure"]["cause"] == "the login user does not accept this SSH key"
    keys = merge.records_of("a", Outcome("unreachable", "Host key verification failed."))[0]
    assert "known_hosts" in keys["failure"]["cause"] and "never turn host key checking off" in keys["failure"]["fix"]


def test_records_of_a_host_that_ran_are_renamed_from_local():
    out = merge.records_of("atlas-01", Outcome("ran", document=doc(rec("x", "driver_version"), rec("x", "nnal"))))
    assert [(r["host"], r["check"]) for r in out] == [("atlas-01", "driver_version"), ("atlas-01", "nnal")]


def test_records_of_a_host_in_error():
    [r] = merge.records_of("atlas-01", Outcome("error", "pytest exit 4: usage"))
    assert (r["check"], r["status"]) == ("suite", "error")


def test_a_reason_no_known_failure_explains_is_the_cause_and_the_fix_a_next_step():
    [down] = merge.records_of("atlas-09", Outcome("unreachable", "ssh: mux_client_request_session:\n  read failed"))
    assert (down["failure"]["cause"], down["failure"]["fix"]) == (
        "the controller could not reach the host: ssh: mux_client_request_session: read failed",
        "reach atlas-09 by hand over the same connection (ssh with the inventory's user, port and key; podman ps -a "
        "for a container) and fix what it reports, then validate again")
    [error] = merge.records_of("atlas-01", Outcome("error", "pytest exit 4: usage"))
    assert (error["failure"]["cause"], error["failure"]["fix"]) == (
        "the validation artefact did not run to its end on the host: pytest exit 4: usage",
        "validate atlas-01 alone (npuenv validate --target ...) and read the suite's output it prints; the host's "
        "python3 must be 3.10 or newer")
    # a refused document quotes the problem, which is no symptom of a known failure
    [refused] = merge.records_of("atlas-02", merge.judge(0, '{"error": "e", "Connection refused": 1}', ""))
    assert refused["message"] == "the node's result document was refused: unknown field 'Connection refused'"
    assert refused["failure"]["cause"] == ("the node sent a result the controller does not accept (unknown field "
                                           "'Connection refused'): its validation artefact or its Python was "
                                           "altered, or the host is compromised")


# --- exit codes --------------------------------------------------------------------

@pytest.mark.parametrize("records, ran, code", [
    ([rec("a", "npu_health"), rec("b", "npu_health", "warning")], True, 0),
    ([rec("a", "npu_health"), rec("b", "npu_health", "failed")], True, 1),
    ([rec("a", "npu_health"), rec("b", "suite", "error")], True, 1),
    ([rec("a", "npu_health"), rec("b", "reachable", "failed")], True, 1),
    ([rec("a", "reachable", "failed"), rec("b", "reachable", "failed")], False, 1),
    # skipped is not passed: a host none of whose checks ran fails the run, also beside one that passed
    ([rec("a", "migrate", "skipped"), rec("b", "migrate", "skipped")], False, 1),
    ([rec("a", "npu_health"), rec("b", "migrate", "skipped")], True, 1),
    ([rec("a", "npu_health"), rec("fleet", "allreduce_across_nodes", "failed")], True, 1),
    ([rec("a", "npu_health"), rec("fleet", "allreduce_across_nodes", "skipped")], True, 0),
    ([], False, 0),
])
def test_checks_ran_and_exit_status(records, ran, code):
    assert merge.checks_ran(records) is ran
    hosts = sorted({r["host"] for r in records} - {"fleet"})
    assert merge.exit_status(report.fleet_result(records, hosts, {})) == code


def metrics(path):
    """metric -> {host: value} of the host-level metrics in a metrics.prom."""
    from prometheus_client.parser import text_string_to_metric_families

    return {f.name: {s.labels["host"]: s.value for s in f.samples} for f in
            text_string_to_metric_families(path.read_text()) if f.name.startswith("npuenv_validation_host_")}


def test_validate_says_nothing_ran_with_exit_2_when_every_target_is_unreachable(monkeypatch, tmp_path):
    class Down:
        fleet_member = True
        hosts = ["a", "b"]

        def run(self, artefact_path, args, done=None):
            return {h: Outcome("unreachable", "Connection refused") for h in self.hosts}

    out = tmp_path / "out"
    out.mkdir()
    # an earlier run's reports, which said passed
    for name in ("results.json", "junit.xml", "report.html", "metrics.prom"):
        (out / name).write_text("passed")
    monkeypatch.setattr(run, "plan", lambda *a, **k: ([Down()], {}))
    with pytest.raises(UserError) as e:
        run.validate(["ansible://x?inventory=y"], "quick", cm.Constraints(torch_npu="2.13.0"), out)
    assert str(e.value) == ("no check ran on any target (a: unreachable Connection refused; "
                            f"b: unreachable Connection refused); {out}/metrics.prom records it "
                            "(npuenv_validation_host_passed 0 for each host)")
    # only the metrics, which say every host is down: an alert on them fires, and no old verdict stays
    assert [p.name for p in out.iterdir()] == ["metrics.prom"]
    assert metrics(out / "metrics.prom") == {"npuenv_validation_host_reachable": {"a": 0.0, "b": 0.0},
                                             "npuenv_validation_host_passed": {"a": 0.0, "b": 0.0}}
    assert [p.name for p in tmp_path.iterdir()] == ["out"]   # no temporary folder stays


def test_a_run_in_which_every_check_skipped_says_no_host_passed(monkeypatch, tmp_path):
    class Skipping:
        fleet_member = True
        hosts = ["a"]

        def run(self, artefact_path, args, done=None):
            return {"a": Outcome("ran", document=doc(rec("x", "migrate", "skipped", "not applicable: cpu")))}

    monkeypatch.setattr(run, "plan", lambda *a, **k: ([Skipping()], {}))
    with pytest.raises(UserError) as e:
        run.validate(["local"], "quick", cm.Constraints(torch_npu="2.13.0"), tmp_path / "out")
    assert str(e.value).startswith("no check ran on any target (a: every check was skipped); ")
    # not passed, and not unreachable either: it answered and ran the suite
    assert metrics(tmp_path / "out" / "metrics.prom") == {"npuenv_validation_host_reachable": {"a": 1.0},
                                                          "npuenv_validation_host_passed": {"a": 0.0}}


def test_a_host_whose_every_check_skipped_beside_one_that_passed_is_not_passed(monkeypatch, tmp_path, capsys):
    """In an otherwise normal run, a host none of whose checks ran is reported not checked, exit 1."""
    class Two:
        fleet_member = True
        hosts = ["a", "b"]

        def run(self, artefact_path, args, done=None):
            return {"a": Outcome("ran", document=doc(rec("x", "npu_health"))),
                    "b": Outcome("ran", document=doc(rec("x", "npu_health", "skipped", "no NPU driver: cpu")))}

    monkeypatch.setattr(run, "plan", lambda *a, **k: ([Two()], {}))
    out = tmp_path / "out"
    assert run.validate(["local"], "quick", cm.Constraints(torch_npu="2.13.0"), out) == 1
    results = json.loads((out / "results.json").read_text())
    assert {h: s["status"] for h, s in results["host_status"].items()} == {"a": "passed", "b": "not_checked"}
    assert metrics(out / "metrics.prom")["npuenv_validation_host_passed"] == {"a": 1.0, "b": 0.0}
    suites = {s.get("name"): s for s in ET.parse(out / "junit.xml").getroot().iter("testsuite")}
    assert suites["b"].get("errors") == "1" and suites["a"].get("errors") == "0"
    assert "  b: NOT CHECKED  1 skipped\n" in capsys.readouterr().out


# --- the fleet phase ----------------------------------------------------------------

def test_fleet_args_rank_the_members_and_give_each_the_next_nodes_device_ips():
    phase1 = {
        "n0": Outcome("ran", document=doc(rec("x", "npu_network", data={"device_ips": {"0": "10.0.0.1", "1": "10.0.1.1"}}),
                                          addresses=["192.168.1.10", "172.17.0.1"])),
        "n1": Outcome("ran", document=doc(rec("x", "npu_network", data={"device_ips": {"0": "10.0.0.2", "1": None}}),
                                          addresses=["192.168.1.11"])),
    }
    args = merge.fleet_args(phase1, ["n0", "n1"], ["--level", "full"], 29600)
    assert args["n0"] == ["--level", "full", "--fleet", "--npuenv-fleet-size=2", "--npuenv-fleet-rank=0",
                          "--npuenv-fleet-master=192.168.1.10", "--npuenv-fleet-port=29600",
                          "--npuenv-peer-ips=0=10.0.0.2"]
    assert args["n1"][4] == "--npuenv-fleet-rank=1" and args["n1"][-1] == "--npuenv-peer-ips=0=10.0.0.1,1=10.0.1.1"


def test_fleet_records_name_the_nodes_that_failed_hung_or_vanished():
    phase = {
        "n0": Outcome("ran", document=doc(rec("x", "allreduce_across_nodes", "failed", "the all_reduce hung"),
                                          rec("x", "netdetect_peers"))),
        "n1": Outcome("unreachable", "Connection refused"),
        "n2": Outcome("ran", document=doc(rec("x", "allreduce_across_nodes"), rec("x", "netdetect_peers"))),
    }
    out = {r["check"]: r for r in merge.fleet_records(phase, ["n0", "n1", "n2"])}
    allreduce = out["allreduce_across_nodes"]
    assert allreduce["host"] == "fleet" and allreduce["status"] == "failed"
    assert allreduce["message"] == ("2 of 3 node(s) failed: n0 (the all_reduce hung); "
                                    "n1 (unreachable: Connection refused)")
    assert out["netdetect_peers"]["message"] == "1 of 3 node(s) failed: n1 (unreachable: Connection refused)"
    # the nodes that waited name the one that never reached the collective (node rank 1)
    waited = rec("x", "allreduce_across_nodes", "failed", "all_reduce of 1 KiB did not complete",
                 data={"stuck_nodes": [1]})
    hung = {"n0": Outcome("ran", document=doc(waited)), "n1": Outcome("ran", document=doc(
            rec("x", "allreduce_across_nodes", "failed", "did not finish"))), "n2": Outcome("ran", document=doc(waited))}
    [named] = [r for r in merge.fleet_records(hung, ["n0", "n1", "n2"]) if r["check"] == "allreduce_across_nodes"]
    assert named["message"] == ("3 of 3 node(s) failed: n1 (the other nodes waited for it: it never reached the "
                                "collective; did not finish); n0 (all_reduce of 1 KiB did not complete); "
                                "n2 (all_reduce of 1 KiB did not complete)")
    healthy = merge.fleet_records({"n0": phase["n2"], "n2": phase["n2"]}, ["n0", "n2"])
    assert [(r["check"], r["status"], r["message"]) for r in healthy] == [
        ("allreduce_across_nodes", "passed", "all 2 nodes took part"), ("netdetect_peers", "passed", "all 2 nodes took part")]


def test_a_fleet_check_every_member_skipped_is_skipped_not_passed():
    skip = Outcome("ran", document=doc(rec("x", "allreduce_across_nodes", "skipped", "one node: nothing to reduce"),
                                       rec("x", "netdetect_peers", "skipped", "no device IPs")))
    out = {r["check"]: r for r in merge.fleet_records({"n0": skip, "n1": skip}, ["n0", "n1"])}
    assert (out["allreduce_across_nodes"]["status"], out["allreduce_across_nodes"]["message"]) == (
        "skipped", "none of the 2 nodes took part; skipped on n0 (one node: nothing to reduce); "
                   "n1 (one node: nothing to reduce)")
    assert out["netdetect_peers"]["status"] == "skipped" and "failure" not in out["netdetect_peers"]
    # one member that skipped took no part: the message says so (the others' pass stands)
    ran = Outcome("ran", document=doc(rec("x", "allreduce_across_nodes"), rec("x", "netdetect_peers")))
    mixed = {r["check"]: r for r in merge.fleet_records({"n0": ran, "n1": skip, "n2": ran}, ["n0", "n1", "n2"])}
    assert (mixed["netdetect_peers"]["status"], mixed["netdetect_peers"]["message"]) == (
        "passed", "2 of 3 nodes took part; skipped on n1 (no device IPs)")


# --- targets -------------------------------------------------------------------------

def test_ssh_targets_become_an_inventory_with_sudo_for_non_root_users(tmp_path):
    (tmp_path / "id").write_text("key")  # the key and the config must exist (targets.SshTarget)
    (tmp_path / "cfg").write_text("Host *\n")
    path = targets.ssh_inventory([f"ssh://ops@10.0.0.11:2222?ssh_identity_file={tmp_path}/id&"
                                  f"ssh_config={tmp_path}/cfg", "ssh://root@atlas-02"], tmp_path)
    hosts = json.loads(path.read_text())["all"]["children"]["npu_nodes"]["hosts"]
    assert hosts["ops@10.0.0.11:2222"] == {"ansible_host": "10.0.0.11", "ansible_port": 2222, "ansible_user": "ops",
                                            "ansible_become": True, "ansible_ssh_private_key_file": f"{tmp_path}/id",
                                            "ansible_ssh_common_args": f"-F {tmp_path}/cfg"}
    assert hosts["root@atlas-02:22"]["ansible_become"] is False


@pytest.mark.parametrize("target, message", [
    ("ssh://ops@host?password=x", "unknown option(s) password"),
    ("ssh://ops@host:http", "the port must be a number"),
    ("ssh://ops@ho;st", "use ssh://USER@HOST[:PORT]"),
    ("ssh://o$(id)@host", "is not a user name"),
])
def test_bad_ssh_targets_are_refused(tmp_path, target, message):
    with pytest.raises(UserError) as e:
        targets.ssh_inventory([target], tmp_path)
    assert message in str(e.value)


def test_unknown_and_repeated_targets_are_refused(tmp_path):
    from contextlib import ExitStack
    with ExitStack() as stack, pytest.raises(UserError) as e:
        targets.plan(["nfs://x"], "/", [], stack, tmp_path)
    assert "unknown target 'nfs://x'" in str(e.value)
    with ExitStack() as stack, pytest.raises(UserError) as e:
        targets.plan(["local", "local"], "/", [], stack, tmp_path)
    assert str(e.value) == "target(s) given twice: local"
    with ExitStack() as stack, pytest.raises(UserError) as e:
        targets.plan(["podman://--help"], "/", [], stack, tmp_path)
    assert "use podman://CONTAINER" in str(e.value)


# --- the fleet report -------------------------------------------------------------------

def fleet(n_slow=1):
    records = []
    for i, rate in enumerate([100.0, 104.0, 97.0, 50.0][: 3 + n_slow]):
        h = f"n{i}"
        records += [rec(h, "train", data={"samples_per_s": rate}),
                    rec(h, "allreduce_local", data={"sizes": [
                        {"bytes": 1024, "algbw_gbps": 0.1, "busbw_gbps": 0.1, "correct": True},
                        {"bytes": 4096, "algbw_gbps": 10.0 + i * 0.1, "busbw_gbps": 10.0 + i * 0.1, "correct": True}]})]
    return records


def test_the_straggler_is_the_host_below_the_median_by_more_than_the_margin():
    result = report.fleet_result(fleet(), ["n0", "n1", "n2", "n3"], {})
    assert [(s["host"], s["figure"]) for s in result["stragglers"]] == [("n3", "train_samples_per_s")]
    s = result["stragglers"][0]
    assert (s["value"], s["median"], s["ratio"]) == (50.0, 98.5, 0.508)
    warning = next(r for r in result["results"] if r["check"] == "straggler")
    assert (warning["host"], warning["status"]) == ("n3", "warning")
    assert result["host_status"]["n3"]["status"] == "passed"  # a finding, not a failure
    # a wider margin lets it through; a host at exactly 80 % of the median is not flagged
    assert report.fleet_result(fleet(), ["n0", "n1", "n2", "n3"], {}, straggler_margin=0.5)["stragglers"] == []
    peers = {"b": [100.0], "c": [100.0], "d": [100.0]}
    assert stragglers.find({"train_samples_per_s": {"a": [80.0], **peers}}, {}, 0.2).stragglers == []
    assert [s["host"] for s in stragglers.find({"train_samples_per_s": {"a": [79.9], **peers}}, {}, 0.2).stragglers] \
        == ["a"]


def test_stragglers_are_judged_among_peers_of_one_kind_and_chip():
    records = fleet() + [rec("img", "train", data={"samples_per_s": 10.0})]
    hosts = ["n0", "n1", "n2", "n3", "img"]
    peers = {**{h: "node/910b" for h in hosts[:4]}, "img": "image/910b"}
    result = report.fleet_result(records, hosts, {}, peers=peers)
    # the image, at a tenth of the nodes' rate, is alone of its kind: not compared, and it says so
    assert [(s["host"], s["peers"]) for s in result["stragglers"]] == [("n3", {"group": "node/910b", "hosts": 4})]
    assert [(g["figure"], g["group"], g["hosts"]) for g in result["not_compared"]] == \
        [("train_samples_per_s", "image/910b", ["img"])]
    text = report.terminal(result)
    assert "not compared for stragglers: train_samples_per_s of 1 image/910b host, fewer than 4 to compare\n" in text
    assert "  n3: train_samples_per_s 50 samples/s, median 98.5 of 4 node/910b hosts (0.51x), likely\n" in text
    # three nodes are too few, unless the operator asks for it
    three = report.fleet_result(records, hosts, {}, peers={**peers, "n0": "node/910"})
    assert three["stragglers"] == []
    assert [s["host"] for s in report.fleet_result(records, hosts, {}, peers={**peers, "n0": "node/910"},
                                                   straggler_min_peers=3)["stragglers"]] == ["n3"]


def test_peer_groups_are_the_target_kind_and_the_chip_of_each_hosts_lock():
    class Node:
        fleet_member, hosts = True, ["a", "b"]

    class Image:
        fleet_member, hosts = False, ["img"]

    outcomes = {"a": Outcome("ran", document={"lock": {"chip": "910b"}}), "b": Outcome("ran", document={}),
                "img": Outcome("ran", document={"lock": {"chip": "910b"}})}
    assert run.peer_groups([Node(), Image()], outcomes) == {"a": "node/910b", "b": "node/unknown chip",
                                                            "img": "image/910b"}


def test_summary_groups_failures_by_check_and_cause_with_their_hosts():
    cause = {"summary": "s", "expected": "e", "found": "f", "cause": "the device reports a fault", "fix": "reset"}
    records = [rec("n0", "npu_health"), rec("n1", "npu_health", "failed", "NPU 3 Critical", failure=cause),
               rec("n2", "npu_health", "failed", "NPU 1 Alarm", failure=cause),
               rec("n3", "reachable", "failed", "unreachable: Connection refused",
                   failure={**cause, "cause": "nothing listens"})]
    result = report.fleet_result(records, ["n0", "n1", "n2", "n3"], {})
    assert result["summary"] == {"hosts": 4, "passed": 1, "failed": 2, "unreachable": 1, "error": 0,
                                 "not_checked": 0}
    assert [(g["check"], g["cause"], g["hosts"]) for g in result["failures"]] == [
        ("npu_health", "the device reports a fault", ["n1", "n2"]), ("reachable", "nothing listens", ["n3"])]
    text = report.terminal(result)
    assert text.index("hosts: 4: 1 passed, 2 failed, 1 unreachable") < text.index("failures by check and cause") \
        < text.index("per host:")
    # out of the hosts that ran the check (n3 was not reached)
    assert "  npu_health on 2 of 3 host(s): n1, n2\n       cause: the device reports a fault\n       fix:   reset" in text
    assert "  n3: UNREACHABLE  1 failed" in text


def test_junit_has_a_suite_per_host_and_prometheus_text_parses():
    from prometheus_client.parser import text_string_to_metric_families

    cause = {"summary": "s", "expected": "e", "found": "f", "cause": "c", "fix": "x"}
    records = fleet() + [rec("n2", "npu_health", "failed", "NPU 3 Critical", failure=cause)]
    result = report.fleet_result(records, ["n0", "n1", "n2", "n3"], {})
    result["meta"] = {"level": "standard", "torch_npu": "2.13.0", "cann": "9.1.0"}
    root = ET.fromstring(report.junit_xml(result))
    suites = {s.get("name"): s for s in root.iter("testsuite")}
    assert set(suites) == {"n0", "n1", "n2", "n3"}
    assert suites["n2"].get("failures") == "1" and suites["n2"].find("testcase[@name='npu_health']/failure") is not None
    families = {f.name: f for f in text_string_to_metric_families(report.prometheus_text(result))}
    passed = {(s.labels["host"], s.labels["check"]): s.value for s in families["npuenv_validation_check_passed"].samples}
    assert passed[("n2", "npu_health")] == 0.0 and passed[("n0", "train")] == 1.0
    assert {s.labels["host"]: s.value for s in families["npuenv_validation_host_passed"].samples} == \
        {"n0": 1.0, "n1": 1.0, "n2": 0.0, "n3": 1.0}
    slow = families["npuenv_validation_straggler"].samples
    assert [(s.labels["host"], s.labels["figure"], s.value) for s in slow] == [("n3", "train_samples_per_s", 1.0)]


def test_write_all_writes_every_report_whole(tmp_path):
    result = report.fleet_result(fleet(), ["n0", "n1", "n2", "n3"], {})
    written = report.write_all(result, tmp_path / "out")
    assert sorted(p.name for p in written) == ["junit.xml", "metrics.prom", "report.html", "results.json"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(p.name for p in written)


# --- the artefact ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def pyz(tmp_path_factory):
    stack = cm.resolve(cm.load_matrix(), cm.Constraints(torch_npu="2.13.0", python="3.11", arch="x86_64")).stack
    return artefact.build(tmp_path_factory.mktemp("artefact") / "v.pyz", run.expected_stack(stack))


def test_the_artefact_carries_what_the_node_needs_and_only_its_own_bytecode(pyz):
    names = zipfile.ZipFile(pyz).namelist()
    for needed in ("__main__.py", "npuenv-stack.json", "pytest/__init__.py", "testinfra/plugin.py",
                   "validation/node/suite/test_quick.py", "validation/node/workloads/allreduce.py", "yaml/__init__.py",
                   "compat_matrix/data/platforms.yaml", "validation/node/runner.pyc", "_pytest/python.pyc"):
        assert needed in names
    # of validation, its node side alone: the controller's modules stay on the controller
    assert sorted(n for n in names if n.startswith("validation/") and not n.startswith("validation/node/")) == [
        "validation/__init__.py", "validation/__init__.pyc"]
    assert not [n for n in names if n.endswith(".so") or "__pycache__" in n]
    # bytecode only beside its source, compiled by this Python (artefact.bytecode)
    pycs = [n for n in names if n.endswith(".pyc")]
    assert pycs and all(n[:-1] in names for n in pycs)
    assert {zipfile.ZipFile(pyz).read(n)[:8] for n in pycs} == {importlib.util.MAGIC_NUMBER + b"\1\0\0\0"}
    stack = json.loads(zipfile.ZipFile(pyz).read("npuenv-stack.json"))
    assert stack["torch_npu"] == "2.13.0"


def test_the_artefact_runs_here_and_leaves_nothing_behind(pyz, tmp_path):
    """This machine has no NPU driver: the quick checks run and fail, as a JSON
    document on stdout, exit 1, and the unpacked copy is removed."""
    env = {"PATH": "/usr/bin:/bin", "TMPDIR": str(tmp_path), "HOME": str(tmp_path)}
    p = subprocess.run([sys.executable, str(pyz), "--level", "quick", "--only", "driver_version",
                        "--only", "nnal"], capture_output=True, text=True, env=env, timeout=300)
    out = json.loads(p.stdout)
    assert p.returncode == 1, p.stderr[-2000:]
    # the controller accepts the real document (validation/node/document.py's schema)
    judged = merge.judge(p.returncode, p.stdout, p.stderr)
    assert (judged.status, judged.reason, judged.document["format"]) == ("ran", "", 1)
    assert {r["check"]: r["status"] for r in out["results"]} == {"driver_version": "failed", "nnal": "failed"}
    driver = next(r for r in out["results"] if r["check"] == "driver_version")
    assert driver["failure"]["summary"] == "no NPU driver is installed"
    assert list(tmp_path.iterdir()) == []


def test_an_unknown_level_is_a_usage_error_of_the_artefact(pyz):
    p = subprocess.run([sys.executable, str(pyz), "--level", "fast"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and "invalid choice: 'fast'" in p.stderr


@pytest.mark.parametrize("hostvars,python", [
    ({}, "/usr/bin/python3"),
    ({"ansible_python_interpreter": "/opt/py/bin/python3.11"}, "/opt/py/bin/python3.11"),
    # a discovery mode is no path: the interpreter Ansible discovered, else the default
    ({"ansible_python_interpreter": "auto"}, "/usr/bin/python3"),
    ({"ansible_python_interpreter": "auto_silent", "ansible_facts": {"discovered_interpreter_python":
                                                                    "/usr/bin/python3.12"}}, "/usr/bin/python3.12"),
    ({"ansible_python_interpreter": "auto_legacy"}, "/usr/bin/python3"),
    ({"ansible_python_interpreter": "auto_legacy_silent"}, "/usr/bin/python3"),
])
def test_the_validation_role_runs_the_artefact_with_a_python_not_a_discovery_mode(hostvars, python):
    """The role's `python:` as Ansible templates it (npuenv_artefact runs `PYTHON artefact ...`)."""
    import yaml
    from ansible.parsing.dataloader import DataLoader
    from ansible.template import Templar, trust_as_template

    [task] = yaml.safe_load((ROOT / "playbooks" / "collections" / "ansible_collections" / "npuenv" / "ascend" / "roles" / "validation" / "tasks" / "main.yml").read_text())
    expression = task["npuenv.ascend.npuenv_artefact"]["python"]
    variables = {"ansible_facts": {}, **hostvars}
    assert Templar(loader=DataLoader(), variables=variables).template(trust_as_template(expression)) == python


def test_nodes_whose_npu_tls_differs_from_the_others_fail_on_the_controller():
    """The nodes' own check records their ports' TLS; the controller compares the nodes (EI0006 when
    two ranks disagree). The fewer are named; an even split names every node."""
    def tls(*states):
        return [rec(f"n{i}", "npu_tls", data={"tls": s}) for i, s in enumerate(states)]

    result = report.fleet_result(tls("off", "off", "on", "off", "mixed"), [f"n{i}" for i in range(5)], {})
    [odd] = [r for r in result["results"] if r["check"] == "tls_across_nodes"]
    assert (odd["host"], odd["status"], odd["message"]) == (
        "n2", "failed", "this node's NPU ports have TLS on; TLS on on 1 node(s), TLS off on 3 node(s)")
    assert odd["failure"]["cause"].startswith("ranks whose TLS settings differ cannot set up HCCL links")
    assert result["host_status"]["n2"]["status"] == "failed" and result["host_status"]["n0"]["status"] == "passed"
    split = report.fleet_result(tls("on", "off"), ["n0", "n1"], {})
    assert [r["host"] for r in split["results"] if r["check"] == "tls_across_nodes"] == ["n0", "n1"]
    # one setting everywhere (or a node that could not say) is no finding
    assert report.tls_across_nodes(tls("on", "on", "mixed")) == []
    assert report.tls_across_nodes(tls("off") + [rec("n1", "npu_tls", data=None)]) == []


def test_nodes_whose_npu_ports_see_one_switch_port_fail_on_the_controller():
    records = [rec("n0", "npu_cabling", data={"cabling": {"0": "leaf-1 200GE1/0/1", "1": "leaf-1 200GE1/0/2"}}),
               rec("n1", "npu_cabling", data={"cabling": {"0": "leaf-1 200GE1/0/9", "1": "leaf-1 200GE1/0/2"}}),
               rec("n2", "npu_cabling", data={"cabling": {"0": "leaf-2 200GE1/0/1", "1": None}}),
               rec("n3", "npu_cabling", data=None)]
    result = report.fleet_result(records, ["n0", "n1", "n2", "n3"], {})
    shared = {r["host"]: r for r in result["results"] if r["check"] == "cabling_across_nodes"}
    assert sorted(shared) == ["n0", "n1"]
    assert shared["n0"]["message"] == "switch port leaf-1 200GE1/0/2 seen from n0 port 1, n1 port 1"
    assert shared["n1"]["failure"]["cause"].startswith("two nodes' NPU ports see one switch port over LLDP")
    assert {h: result["host_status"][h]["status"] for h in ("n0", "n1", "n2", "n3")} == {
        "n0": "failed", "n1": "failed", "n2": "passed", "n3": "passed"}
    # two ports of one node on one switch port are that node's own finding, not the controller's
    assert report.cabling_across_nodes([rec("n0", "npu_cabling", data={"cabling": {"0": "s 1", "1": "s 1"}})]) == []


def test_the_checks_across_nodes_leave_out_an_image_run_on_one_of_the_nodes():
    # The image target mounts n0's host root: it sees n0's ports, TLS and super pod place. It is not a
    # machine of the fleet, so it shares nothing with n0; two real nodes on one switch port still fail.
    def node(host, switch_port, tls, index):
        return [rec(host, "npu_cabling", data={"cabling": {"0": switch_port}}),
                rec(host, "npu_tls", data={"tls": tls}),
                rec(host, "super_pod", data={"super_pod": {"pod": 0, "size": 384, "server_index": index}})]

    records = node("n0", "leaf-1 1", "on", 0) + node("img", "leaf-1 1", "on", 0) + node("n1", "leaf-1 2", "on", 1)
    hosts = ["n0", "img", "n1"]
    assert not any(r["check"].endswith("_across_nodes")
                   for r in report.fleet_result(records, hosts, {}, machines=["n0", "n1"])["results"])
    # the same records with the image counted as a machine: each check flags it beside n0
    flagged = {(r["check"], r["host"]) for r in report.fleet_result(records, hosts, {})["results"]
               if r["check"].endswith("_across_nodes")}
    assert flagged == {(c, h) for c in ("cabling_across_nodes", "super_pod_across_nodes") for h in ("n0", "img")}
    shared = node("n0", "leaf-1 1", "on", 0) + node("img", "leaf-1 1", "on", 0) + node("n1", "leaf-1 1", "on", 1)
    result = report.fleet_result(shared, hosts, {}, machines=["n0", "n1"])
    assert {r["host"] for r in result["results"] if r["check"] == "cabling_across_nodes"} == {"n0", "n1"}
    assert result["host_status"]["img"]["status"] == "passed"


def test_the_machines_are_the_targets_that_are_fleet_members_in_their_order():
    class Node:
        def __init__(self, *hosts):
            self.fleet_member, self.hosts = True, list(hosts)

    class Image:
        fleet_member, hosts = False, ["img"]

    assert run.machines([Node("b", "a"), Image(), Node("c")]) == ["b", "a", "c"]


def test_nodes_of_a_super_pod_that_share_a_server_index_or_disagree_on_its_size_fail_on_the_controller():
    def pod(host, pod_id, size, index):
        return rec(host, "super_pod", data={"super_pod": {"pod": pod_id, "size": size, "server_index": index}})

    records = [pod("n0", 0, 384, 0), pod("n1", 0, 384, 1), pod("n2", 0, 384, 1), pod("n3", 0, 48, 3),
               pod("n4", 1, 384, 1), rec("n5", "super_pod", data={"super_pod": None})]
    result = report.fleet_result(records, [f"n{i}" for i in range(6)], {})
    odd = {r["host"]: r for r in result["results"] if r["check"] == "super_pod_across_nodes"}
    assert sorted(odd) == ["n1", "n2", "n3"]
    assert odd["n1"]["message"] == "super pod 0: Server Index 1 also on n2"
    assert odd["n3"]["message"] == "super pod 0: pod size 48, 384 on most of its nodes"
    assert odd["n2"]["failure"]["cause"].startswith("a server's Server ID was not set after a hardware replacement")
    assert {h: result["host_status"][h]["status"] for h in ("n0", "n4", "n5")} == {h: "passed" for h in ("n0", "n4", "n5")}
    assert report.super_pod_across_nodes([pod("n0", 0, 384, 0), pod("n1", 0, 384, 1)]) == []


def test_the_controllers_records_across_nodes_whole():
    """Every field of the records the controller writes from what the nodes reported: TLS, cabling and
    the super pod (what the report, JUnit and metrics show of them)."""
    def pod(host, index, size=384):
        return rec(host, "super_pod", data={"super_pod": {"pod": 7, "size": size, "server_index": index}})

    [n1, n2, n3] = report.super_pod_across_nodes([pod("n1", 1, 48), pod("n2", 1), pod("n3", 1), pod("n4", 2)])
    assert n1 == {
        "host": "n1", "check": "super_pod_across_nodes", "level": "standard", "status": "failed", "duration_s": 0.0,
        "data": None, "message": "super pod 7: Server Index 1 also on n2, n3; pod size 48, 384 on most of its nodes",
        "failure": {"summary": "this node's place in super pod 7 is not its own",
                    "expected": "a Server Index of its own for every server of a super pod, one pod size",
                    "found": "Server Index 1 also on n2, n3; pod size 48, 384 on most of its nodes",
                    "cause": "a server's Server ID was not set after a hardware replacement: its devices take ids "
                             "the pod has given another server, and jobs across the pod fail",
                    "fix": "set the Server ID of the servers named (the server's Redfish interface, as the super "
                           "pod's guide describes), then validate again"}}
    assert (n2["message"], n3["message"]) == ("super pod 7: Server Index 1 also on n1, n3",
                                              "super pod 7: Server Index 1 also on n1, n2")
    [tls] = report.tls_across_nodes([rec("a", "npu_tls", data={"tls": "on"}), rec("b", "npu_tls", data={"tls": "off"}),
                                     rec("c", "npu_tls", data={"tls": "off"})])
    assert tls == {
        "host": "a", "check": "tls_across_nodes", "level": "standard", "status": "failed", "duration_s": 0.0,
        "data": None, "message": "this node's NPU ports have TLS on; TLS on on 1 node(s), TLS off on 2 node(s)",
        "failure": {"summary": "TLS is on here and not on every other node",
                    "expected": "one TLS setting on the NPU ports of every node",
                    "found": "TLS on on 1 node(s), TLS off on 2 node(s)",
                    "cause": "ranks whose TLS settings differ cannot set up HCCL links between them (EI0006, socket "
                             "timeout; HCCL user guide, link setup failures)",
                    "fix": "switch TLS on or off alike on every NPU port of every node, then validate again"}}
    [a, b] = report.cabling_across_nodes([
        rec("a", "npu_cabling", data={"cabling": {"0": "leaf 1", "1": "leaf 2"}}),
        rec("b", "npu_cabling", data={"cabling": {"0": "leaf 1", "1": "leaf 2", "2": "leaf 3"}})])
    found = "switch port leaf 1 seen from a port 0, b port 0; switch port leaf 2 seen from a port 1, b port 1"
    assert a == {
        "host": "a", "check": "cabling_across_nodes", "level": "standard", "status": "failed", "duration_s": 0.0,
        "data": None, "message": found,
        "failure": {"summary": "2 switch port(s) this node shares with others",
                    "expected": "every NPU port of the fleet on a switch port of its own", "found": found,
                    "cause": "two nodes' NPU ports see one switch port over LLDP: a cable is in the wrong switch "
                             "port, or the switch's neighbour table is stale",
                    "fix": "trace the cables of the ports named to the switch and move the one in the wrong port; "
                           "then validate again"}}
    assert b["host"] == "b" and b["message"] == found


def test_a_straggler_is_judged_by_the_median_of_its_repeats():
    def train(host, rate, repeats):
        return rec(host, "train", data={"samples_per_s": rate, "samples_per_s_repeats": repeats})

    records = [train(h, 100.0, [99.0, 100.0, 101.0, 100.0, 100.0]) for h in ("n0", "n1", "n2")]
    records += [train("n3", 84.0, [100.0, 100.0, 20.0, 100.0, 100.0]),   # one disturbed window: its median is 100
                train("n4", 40.0, [41.0, 40.0, 39.0, 40.0, 40.0])]
    result = report.fleet_result(records, ["n0", "n1", "n2", "n3", "n4"], {})
    assert [(s["host"], s["value"], s["confidence"], s["below"]) for s in result["stragglers"]] == \
        [("n4", 40.0, "sure", 5)]
    assert result["figures"]["train_samples_per_s"]["n3"] == 84.0   # the figure the node reported stays its own
    [warning] = [r for r in result["results"] if r["check"] == "straggler"]
    assert (warning["host"], warning["level"], warning["status"]) == ("n4", "standard", "warning")

"""What validation/merge.py makes of the targets' outcomes, pinned record by
record: the whole record a host that could not be checked gets, the fleet
phase's verdicts for members that sent nothing, sent too little or named a
peer, and each node's fleet arguments in a fleet of three."""
from __future__ import annotations

import json

import pytest

import compat_matrix as cm
from compat_matrix.errors import UserError
from validation import merge, run
from validation.merge import Outcome

MID = "0123456789abcdef0123456789abcdef"


def rec(check, status="passed", message="", data=None):
    return {"host": "local://", "check": check, "level": "full", "status": status, "duration_s": 0.5,
            "message": message, "data": data}


def doc(*records, **extra):
    return {"format": 1, "hostname": "x", "addresses": ["192.168.1.10"], "python": "3.11.2", "level": "full",
            "fleet": True, "results": list(records), "pytest_exit": 0, "duration_s": 1.5, **extra}


def ran(*records, **extra):
    return Outcome("ran", document=doc(*records, **extra))


# --- the records of a host that could not be checked ---------------------------------

def test_an_unreachable_host_gets_one_whole_failed_record():
    reason = "ssh: mux_client_request_session: read failed"
    assert merge.records_of("atlas-09", Outcome("unreachable", reason)) == [{
        "host": "atlas-09", "check": "reachable", "level": "quick", "status": "failed", "duration_s": 0.0,
        "message": "unreachable: " + reason, "data": None,
        "failure": {"summary": "unreachable: " + reason, "expected": "the host answers over its connection",
                    "found": reason, "cause": "the controller could not reach the host: " + reason,
                    "fix": "reach atlas-09 by hand over the same connection (ssh with the inventory's user, port "
                           "and key; podman ps -a for a container) and fix what it reports, then validate again"}}]


def test_a_host_whose_suite_could_not_run_gets_one_whole_error_record():
    assert merge.records_of("atlas-01", Outcome("error", "pytest exit 4: usage")) == [{
        "host": "atlas-01", "check": "suite", "level": "quick", "status": "error", "duration_s": 0.0,
        "message": "the suite could not run: pytest exit 4: usage", "data": None,
        "failure": {"summary": "the suite could not run: pytest exit 4: usage",
                    "expected": "the validation artefact runs on the host", "found": "pytest exit 4: usage",
                    "cause": "the validation artefact did not run to its end on the host: pytest exit 4: usage",
                    "fix": "validate atlas-01 alone (npuenv validate --target ...) and read the suite's output it "
                           "prints; the host's python3 must be 3.10 or newer"}}]


def test_a_host_whose_document_was_refused_gets_one_whole_error_record():
    outcome = merge.judge(0, '{"error": "e", "Connection refused": 1}', "")
    problem = "unknown field 'Connection refused'"
    assert merge.records_of("atlas-02", outcome) == [{
        "host": "atlas-02", "check": "suite", "level": "quick", "status": "error", "duration_s": 0.0,
        "message": "the node's result document was refused: " + problem, "data": None,
        "failure": {"summary": "the node's result document was refused: " + problem,
                    "expected": "one result document in the node document's format 1, within its limits",
                    "found": problem,
                    "cause": f"the node sent a result the controller does not accept ({problem}): its validation "
                             "artefact or its Python was altered, or the host is compromised",
                    "fix": "validate atlas-02 alone and read what it prints; until its result is well-formed, take "
                           "it out of the fleet and reinstall it rather than trust its results"}}]


def test_silence_quotes_the_last_1500_characters_of_the_output():
    out = merge.judge(3, "a" + "b" * 1500, "")
    assert (out.status, out.reason) == ("error", "the validation artefact gave no result (exit 3): " + "b" * 1500)


# --- what `validate` says of hosts that sent an error or a refused document ---------------

def fake_plan(monkeypatch, outcomes):
    class Fake:
        fleet_member = True
        hosts = list(outcomes)

        def run(self, artefact_path, args, done=None):
            return dict(outcomes)

    monkeypatch.setattr(run, "plan", lambda *a, **k: ([Fake()], {}))


def test_a_refused_document_is_named_when_nothing_could_be_checked(monkeypatch, tmp_path):
    fake_plan(monkeypatch, {"a": merge.judge(0, '{"error": "e", "Connection refused": 1}', "")})
    with pytest.raises(UserError) as e:
        run.validate(["local"], "quick", cm.Constraints(torch_npu="2.13.0"), tmp_path / "out", quiet=True)
    assert str(e.value).startswith("no check ran on any target (a: error its result document was refused: "
                                   "unknown field 'Connection refused'); ")


def test_a_node_in_error_still_tells_which_machine_it_is(monkeypatch, tmp_path):
    """The node's error document carries its identity: a second name for a machine that passed is refused."""
    passed = merge.judge(0, json.dumps(doc(rec("npu_health"), machine_id=MID)), "")
    failed = merge.judge(2, json.dumps({"error": "no lock recorded", "machine_id": MID}), "")
    assert failed.status == "error"
    fake_plan(monkeypatch, {"node-a": passed, "node-b": failed})
    with pytest.raises(UserError) as e:
        run.validate(["local"], "quick", cm.Constraints(torch_npu="2.13.0"), tmp_path / "out", quiet=True)
    assert str(e.value).startswith("targets that reach one machine: ")
    assert "node-a" in str(e.value) and "node-b" in str(e.value)
    assert not (tmp_path / "out" / "results.json").exists()


# --- the fleet phase: who failed ----------------------------------------------------

FAILURE_CAUSE = "the nodes named here failed, hung or could not be reached while the others waited for them"
FAILURE_FIX = "fix or drain the named nodes, then validate the fleet again"


def test_a_member_that_sent_no_result_for_a_check_the_others_ran_failed_it():
    phase = {"n0": ran(rec("allreduce_across_nodes")), "n1": ran(rec("allreduce_across_nodes")),
             "n2": Outcome("unreachable", "Connection refused"), "n3": ran()}
    message = "2 of 4 node(s) failed: n2 (unreachable: Connection refused); n3 (it sent no result for this check)"
    # netdetect_peers ran nowhere, but the unreachable member failed it too (n3 sent nothing it owed)
    records = merge.fleet_records(phase, ["n0", "n1", "n2", "n3"])
    assert records[0] == {
        "host": "fleet", "check": "allreduce_across_nodes", "level": "full", "status": "failed", "duration_s": 0.0,
        "message": message, "data": None,
        "failure": {"summary": message, "expected": "every one of the 4 nodes passes",
                    "found": "n2 (unreachable: Connection refused); n3 (it sent no result for this check)",
                    "cause": FAILURE_CAUSE, "fix": FAILURE_FIX}}
    assert [(r["check"], r["status"], r["message"]) for r in records[1:]] == [
        ("netdetect_peers", "failed", "1 of 4 node(s) failed: n2 (unreachable: Connection refused)")]


def test_a_fleet_check_no_member_ran_gets_no_record():
    only_allreduce = {h: ran(rec("allreduce_across_nodes")) for h in ("n0", "n1")}
    assert merge.fleet_records(only_allreduce, ["n0", "n1"]) == [{
        "host": "fleet", "check": "allreduce_across_nodes", "level": "full", "status": "passed", "duration_s": 0.0,
        "message": "all 2 nodes took part", "data": None}]
    # the first check is not the last: one that ran nowhere does not hide the next
    only_netdetect = {h: ran(rec("netdetect_peers")) for h in ("n0", "n1")}
    assert [(r["check"], r["status"]) for r in merge.fleet_records(only_netdetect, ["n0", "n1"])] == [
        ("netdetect_peers", "passed")]


def test_long_reasons_are_quoted_to_200_characters():
    reason = "r" * 200 + "TAIL"
    message = "m" * 200 + "TAIL"
    phase = {"n0": ran(rec("allreduce_across_nodes", "failed", message)), "n1": Outcome("unreachable", reason)}
    [allreduce, _] = merge.fleet_records(phase, ["n0", "n1"])
    assert allreduce["message"] == f"2 of 2 node(s) failed: n0 ({'m' * 200}); n1 (unreachable: {'r' * 200})"


def test_the_node_the_others_waited_for_may_be_rank_0():
    waited = rec("allreduce_across_nodes", "failed", "all_reduce did not complete", data={"stuck_nodes": [0]})
    phase = {"n0": ran(rec("allreduce_across_nodes", "failed", "did not finish")), "n1": ran(waited)}
    [allreduce] = merge.fleet_records(phase, ["n0", "n1"])
    assert allreduce["message"] == ("2 of 2 node(s) failed: n0 (the other nodes waited for it: it never reached the "
                                    "collective; did not finish); n1 (all_reduce did not complete)")


@pytest.mark.parametrize("data", [{"seconds": 3.5}, {"stuck_nodes": [2]}, {"stuck_nodes": [-1, 7]}])
def test_a_claim_about_no_member_blames_nobody(data):
    """A record's data without stuck_nodes, or naming ranks the fleet does not have, names no node."""
    phase = {"n0": ran(rec("allreduce_across_nodes", "failed", "timed out", data=data)),
             "n1": ran(rec("allreduce_across_nodes"))}
    [allreduce] = merge.fleet_records(phase, ["n0", "n1"])
    assert allreduce["message"] == "1 of 2 node(s) failed: n0 (timed out)"


# --- the fleet phase: each node's arguments --------------------------------------------

def test_in_a_fleet_of_three_each_node_gets_the_next_ones_device_ips():
    def node(ips):
        return ran(rec("npu_network", data={"device_ips": ips}))

    phase1 = {"n0": node({"0": "10.0.0.1"}), "n1": node({"0": "10.0.0.2"}), "n2": node({"0": "10.0.0.3"})}
    args = merge.fleet_args(phase1, ["n0", "n1", "n2"], [], 29600)
    assert {h: a[-1] for h, a in args.items()} == {"n0": "--npuenv-peer-ips=0=10.0.0.2",
                                                   "n1": "--npuenv-peer-ips=0=10.0.0.3",
                                                   "n2": "--npuenv-peer-ips=0=10.0.0.1"}


@pytest.mark.parametrize("peer", [
    ran(rec("npu_health")),                                       # no npu_network record at all
    ran(rec("npu_network", "skipped", "no NPU", data=None)),      # a skipped npu_network has no data
    ran(rec("npu_network", data={"device_ips": None})),
], ids=["no-record", "no-data", "no-ips"])
def test_a_peer_without_device_ips_gives_an_empty_list(peer):
    phase1 = {"n0": ran(rec("npu_network", data={"device_ips": {"0": "10.0.0.1"}}), addresses=[]), "n1": peer}
    args = merge.fleet_args(phase1, ["n0", "n1"], ["--level", "full"], 29601)
    assert args["n0"] == ["--level", "full", "--fleet", "--npuenv-fleet-size=2", "--npuenv-fleet-rank=0",
                          "--npuenv-fleet-master=127.0.0.1", "--npuenv-fleet-port=29601", "--npuenv-peer-ips="]
    assert args["n1"][-1] == "--npuenv-peer-ips=0=10.0.0.1"

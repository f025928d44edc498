"""`npuenv validate` says how far it is while it runs: a line per host as soon as that host's
outcome is known (validation/run.py Progress, targets.run_phase, targets.TreeWatch for the
hosts of one ansible-playbook run), never a line twice, and nothing when asked to be quiet."""
from __future__ import annotations

import json
import subprocess
import threading

import pytest

import compat_matrix as cm
from ansible_run import run as playbooks_run
from validation import run, targets
from validation.merge import Outcome

from tests.unit.test_validation_run_mutants import doc, planned, rec

# A safety net only: a test that waits this long has failed (the thing it waits for never came).
NEVER_S = 60


def test_each_host_is_told_once_in_the_order_outcomes_arrive_with_its_checks_counted(monkeypatch, tmp_path,
                                                                                     capsys):
    first_told = threading.Event()

    class Slow:
        """b ends only after a has been told: the line for a must come before the phase ends."""
        fleet_member, hosts = True, ["b"]

        def run(self, artefact_path, args, done=None):
            assert first_told.wait(NEVER_S)
            return {"b": Outcome("unreachable", "ssh: connect to host b port 22: Connection refused")}

    class Fast:
        fleet_member, hosts = True, ["a"]

        def run(self, artefact_path, args, done=None):
            return {"a": Outcome("ran", document=doc(rec("npu_health"), rec("npu_count"),
                                                     rec("hccl", "failed"), rec("cann_version", "skipped")))}

    monkeypatch.setattr(run, "plan", lambda *a, **k: ([Slow(), Fast()], {}))
    real = run.Progress.__call__

    def progress(self, host, outcome):
        real(self, host, outcome)
        first_told.set()
    monkeypatch.setattr(run.Progress, "__call__", progress)
    run.validate(["local"], "quick", cm.Constraints(torch_npu="2.13.0"), tmp_path / "out")
    lines = [line.rsplit(" (", 1)[0] for line in capsys.readouterr().err.splitlines()]
    assert lines == ["npuenv: checking 2 hosts at the quick level: a line each as it finishes",
                     "npuenv: [1/2] a: 2 passed, 1 failed, 1 skipped",
                     "npuenv: [2/2] b: unreachable: ssh: connect to host b port 22: Connection refused"]


def test_a_quiet_run_says_nothing_while_it_runs(monkeypatch, tmp_path, capsys):
    planned(monkeypatch, type("One", (), {"fleet_member": True, "hosts": ["a"], "run": lambda self, p, args, done=None:
                                          {"a": Outcome("ran", document=doc())}})())
    run.validate(["local"], "quick", cm.Constraints(torch_npu="2.13.0"), tmp_path / "out", quiet=True)
    assert capsys.readouterr() == ("", "")


def test_a_nodes_reason_reaches_the_progress_line_as_one_safe_line():
    told = []
    progress = run.Progress(told.append, 1)
    progress("n1", Outcome("error", "boom\x1b]0;owned\x07\nrm -rf / " + "x" * 500))
    [line] = told
    assert line.startswith("[1/1] n1: error: boom") and "\x1b" not in line and "\n" not in line
    assert len(line) < run.Progress.SHOWN + len(" (0 s)") + len("[1/1] ") + 1


def test_a_host_with_no_check_run_says_so():
    assert run.outcome_line("n1", Outcome("ran", document=doc(rec("npu_health", "skipped")))) == "n1: 1 skipped"
    assert run.outcome_line("n1", Outcome("ran", document=doc(results=[]))) == "n1: no check ran"


def test_a_phase_tells_each_host_once_though_its_transport_told_it_early(tmp_path):
    class Early:
        fleet_member, hosts = True, ["a", "b"]

        def run(self, artefact_path, args, done=None):
            done("a", Outcome("ran"))
            return {"a": Outcome("ran"), "b": Outcome("unreachable", "x")}

    told = []
    out = targets.run_phase([Early()], tmp_path / "x.pyz", {"a": [], "b": []}, lambda h, o: told.append((h, o.status)))
    assert told == [("a", "ran"), ("b", "unreachable")] and sorted(out) == ["a", "b"]
    assert targets.run_phase([Early()], tmp_path / "x.pyz", {"a": [], "b": []})["b"].status == "unreachable"


def test_the_tree_of_one_playbook_run_tells_each_host_as_ansible_writes_it(monkeypatch, tmp_path):
    """h1's result is told while the playbook still runs (h2's is not written yet), and a file half
    written is not read as a result."""
    monkeypatch.setattr(targets.TreeWatch, "POLL_S", 0.01)
    told, h1_told = [], threading.Event()

    def done(host, outcome):
        told.append((host, outcome.status, outcome.reason))
        h1_told.set()

    def run_playbook(playbook, inventory, *, limit, extra_vars, npuenv_vars, capture, env, hosts, hostvars):
        tree = targets.Path(env["ANSIBLE_CALLBACK_TREE_DIR"])
        tree.mkdir()
        whole = json.dumps({"unreachable": True, "msg": "Failed to connect to h1"})
        (tree / "h1").write_text(whole[:-1])                       # being written
        assert not h1_told.wait(0.2)
        (tree / "h1").write_text(whole)
        assert h1_told.wait(NEVER_S)
        assert told == [("h1", "unreachable", "Failed to connect to h1")]
        (tree / "h2").write_text(json.dumps({"rc": 0, "stdout": json.dumps(doc())}))
        return subprocess.CompletedProcess([], 4, "", "")

    monkeypatch.setattr(playbooks_run, "run_playbook", run_playbook)
    whole_reads = []
    real = targets.tree_outcome

    def tree_outcome(path):
        outcome = real(path)
        if outcome is not None:
            whole_reads.append(path.name)
        return outcome
    monkeypatch.setattr(targets, "tree_outcome", tree_outcome)
    (tmp_path / "a.pyz").write_bytes(b"PK")
    out = targets.AnsibleTransport(tmp_path / "inv.yml", "all", ["h1", "h2"]).run(
        tmp_path / "a.pyz", {"h1": [], "h2": []}, done)
    assert out["h1"].status == "unreachable" and out["h2"].status == "ran"
    assert whole_reads.count("h1") == 1 and whole_reads.count("h2") == 1   # each result read once
    assert [h for h, *_ in told] in (["h1"], ["h1", "h2"])   # h2's is told here or by run_phase, once


def test_the_tree_watch_stops_with_the_playbook_also_when_it_is_interrupted(monkeypatch, tmp_path):
    def run_playbook(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(playbooks_run, "run_playbook", run_playbook)
    (tmp_path / "a.pyz").write_bytes(b"PK")
    before = set(threading.enumerate())
    with pytest.raises(KeyboardInterrupt):
        targets.AnsibleTransport(tmp_path / "inv.yml", "all", ["h1"]).run(tmp_path / "a.pyz", {"h1": []},
                                                                          lambda h, o: None)
    assert [t.name for t in set(threading.enumerate()) - before] == []


def test_the_phase_across_nodes_says_so_and_counts_its_own_hosts(monkeypatch, tmp_path, capsys):
    from validation.merge import FLEET_CHECKS

    class Fleet:
        fleet_member, hosts = True, ["n0", "n1", "n2"]

        def run(self, artefact_path, args, done=None):
            fleet = any("--fleet" in a for a in args.values())
            records = [dict(rec(c), level="full") for c in FLEET_CHECKS] if fleet else [rec("npu_health")]
            out = {h: Outcome("ran", document=doc(*records)) for h in args if h != "n2"}
            return {**out, "n2": Outcome("unreachable", "gone")} if "n2" in args else out

    planned(monkeypatch, Fleet())
    run.validate(["local"], "full", cm.Constraints(torch_npu="2.13.0"), tmp_path / "out")
    lines = [line.rsplit(" (", 1)[0] for line in capsys.readouterr().err.splitlines()]
    assert lines[-3:] == ["npuenv: the checks across nodes, on the 2 that ran: a line each as it finishes",
                          "npuenv: [1/2] n0: 2 passed", "npuenv: [2/2] n1: 2 passed"]


def test_one_host_is_one_host(monkeypatch, tmp_path, capsys):
    planned(monkeypatch, type("One", (), {"fleet_member": True, "hosts": ["a"], "run": lambda self, p, args, done=None:
                                          {"a": Outcome("ran", document=doc())}})())
    run.validate(["local"], "quick", cm.Constraints(torch_npu="2.13.0"), tmp_path / "out")
    assert capsys.readouterr().err.splitlines()[0] == ("npuenv: checking 1 host at the quick level: a line each as "
                                                       "it finishes")


def test_each_line_says_how_long_since_the_phase_started(monkeypatch):
    now = [100.0]
    monkeypatch.setattr(run.time, "monotonic", lambda: now[0])
    told = []
    progress = run.Progress(told.append, 2)
    now[0] = 103.4
    progress("a", Outcome("unreachable", "x"))
    assert told == ["[1/2] a: unreachable: x (3 s)"]



def test_a_run_the_interrupt_ended_is_not_told_as_a_hosts_result(tmp_path, monkeypatch):
    """The signal ends the node's command (interrupts ends the children), which comes back with no
    result: that is no line for the host (the interrupt's own line says what happened)."""
    from compat_matrix import interrupts

    class Stopped:
        fleet_member, hosts = True, ["a"]

        def run(self, artefact_path, args, done=None):
            monkeypatch.setattr(interrupts._State, "fired", 15)   # as the handler does before ending the children
            return {"a": Outcome("error", "the validation artefact gave no result (exit 0): exit 0, no output")}

    told = []
    out = targets.run_phase([Stopped()], tmp_path / "x.pyz", {"a": []}, lambda h, o: told.append(h))
    assert told == [] and out["a"].status == "error"
    assert interrupts.stopping()
    monkeypatch.undo()
    assert not interrupts.stopping()

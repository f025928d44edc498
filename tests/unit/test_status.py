"""`npuenv status` (playbooks/status.py): each node's facts document checked as untrusted input,
compared with a lock or with the node's own recorded lock, every kind of drift named, the fleet's
table and JSON at 150 nodes, and the exit codes; the node side (validation/node/facts.py status_facts,
node/runner.py --facts) on fake probes. Ansible's results are recorded tree-callback files."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

import compat_matrix as cm
from compat_matrix.errors import UserError
from npuenv import cli
from ansible_run import run
from playbooks import status
from tests.unit import status_fakes as fakes
from validation.node import document, facts as facts_mod, runner

PLATFORMS = cm.load_platforms()


@pytest.fixture(scope="module")
def lock_a(tmp_path_factory):
    return fakes.make_lock(tmp=tmp_path_factory.mktemp("a"))


@pytest.fixture(scope="module")
def lock_b(tmp_path_factory):
    return fakes.make_lock("2.8.0", tmp=tmp_path_factory.mktemp("b"))


def assess(doc, named=None, host="node-0"):
    return status.assess(status.Probed(host, "ran", facts=doc), named, PLATFORMS)


def kinds(node_status):
    return [(d["kind"], d["what"]) for d in node_status.drift]


# --- one node ------------------------------------------------------------------------------------

def test_a_node_at_its_recorded_lock_does_not_drift(lock_a):
    got = assess(fakes.facts(lock=lock_a))
    assert got.state == status.OK and got.drift == [] and got.busy == []
    assert got.lock == {"digest": lock_a.digest, "row": {"torch_npu": "2.13.0", "torch": "2.13.0", "cann": "9.1.0",
                                                         "hdk": "26.1.0", "python": "3.11", "chip": "910b"}}
    assert got.at == f"{lock_a.digest[:19]} torch_npu 2.13.0 (CANN 9.1.0)"
    # and against the same lock named
    assert assess(fakes.facts(lock=lock_a), lock_a).state == status.OK


def test_a_node_never_deployed_says_so(lock_a):
    got = assess(fakes.facts(deployed=False))
    assert got.state == status.DRIFT and got.at == "never deployed" and got.lock is None
    assert kinds(got) == [("never deployed", "no deploy records (/etc/npuenv): npuenv never deployed this node")]
    # against a named lock it also says what it lacks
    named = assess(fakes.facts(deployed=False), lock_a)
    assert named.drift[0]["kind"] == "never deployed"
    assert ("package", "driver not installed, the lock has 26.1.0") in kinds(named)
    assert ("package", "firmware not installed, the lock has 7.8.0.2.212") in kinds(named)


def test_a_node_at_another_lock_drifts_from_the_named_one(lock_a, lock_b):
    got = assess(fakes.facts(lock=lock_b), lock_a)
    assert got.state == status.DRIFT and got.lock["digest"] == lock_b.digest
    assert kinds(got)[0] == ("other lock", f"runs lock {lock_b.digest[:19]}, not {lock_a.digest[:19]}")
    what = [w for k, w in kinds(got) if k == "package"]
    assert "driver 25.3.rc1, the lock has 26.1.0" in what
    assert "CANN toolkit 8.3.RC1 (ascend-toolkit), the lock has 9.1.0 (cann)" in what
    assert "torch_npu 2.8.0 in /opt/npuenv/venv/bin/python3, the lock has 2.13.0" in what
    # compared with its own lock instead, it is fine
    assert assess(fakes.facts(lock=lock_b)).state == status.OK


def test_a_half_finished_deploy_is_named(lock_a, lock_b):
    recs = fakes.records(lock_b)
    recs["deploying"] = {"npuenv_deploying": 1, "lock_digest": lock_a.digest, "from_lock_digest": lock_b.digest,
                         "started": "2026-12-02T08:00:00Z"}
    got = assess(fakes.facts(lock=lock_b, records=recs), lock_a)
    assert got.at == f"half-upgraded {lock_b.digest[:19]} -> {lock_a.digest[:19]}"
    assert kinds(got)[0] == ("half-upgraded", f"a deploy to lock {lock_a.digest[:19]} (from {lock_b.digest[:19]}) "
                                              f"started 2026-12-02T08:00:00Z and did not finish")
    # without a named lock too: the marker alone is drift
    assert assess(fakes.facts(lock=lock_b, records=recs)).drift[0]["kind"] == "half-upgraded"


@pytest.mark.parametrize("change,expected", [
    ({"driver": "25.3.rc1"}, "driver 25.3.rc1, the lock has 26.1.0"),
    ({"driver": None}, "driver not installed, the lock has 26.1.0"),
    ({"firmware": "7.7.0.1.231"}, "firmware 7.7.0.1.231, the lock has 7.8.0.2.212"),
    ({"cann": [{"generation": "cann", "version": "9.0.0", "kernels": ["ascend910b"]}]},
     "CANN toolkit 9.0.0 (cann), the lock has 9.1.0 (cann)"),
    ({"cann": [{"generation": "cann", "version": "9.1.0", "kernels": []}]},
     "CANN kernels for ascend910b not installed in 9.1.0 (found: none)"),
    ({"nnal": ["9.0.0"]}, "NNAL 9.0.0 active, the lock has 9.1.0"),
    ({"nnal": []}, "NNAL none active, the lock has 9.1.0"),
    ({"python": {"interpreter": "/opt/npuenv/venv/bin/python3", "torch": "2.12.0+cpu", "torch_npu": "2.13.0",
                 "torchvision": "0.28.0"}}, "torch 2.12.0 in /opt/npuenv/venv/bin/python3, the lock has 2.13.0"),
    ({"python": {"interpreter": "/opt/npuenv/venv/bin/python3", "torch": "2.13.0", "torch_npu": "2.13.0",
                 "torchvision": None}},
     "torchvision not installed in /opt/npuenv/venv/bin/python3, the lock has 0.28.0"),
    ({"python": {"interpreter": "/usr/bin/python3", "error": "No such file"}},
     "/usr/bin/python3 cannot report its packages: No such file"),
])
def test_each_package_changed_by_hand_is_named(lock_a, change, expected):
    doc = fakes.facts(lock=lock_a)
    doc["installed"].update(change)
    got = assess(doc)
    assert got.state == status.DRIFT
    assert kinds(got) == [("package", expected)]


def test_a_package_the_wheelhouse_left_out_is_no_drift(lock_a):
    doc = fakes.facts(lock=lock_a)
    doc["installed"]["python"]["torchvision"] = None
    doc["installed"]["left_out"] = ["torchvision"]
    assert assess(doc).state == status.OK


def test_settings_that_drifted_since_the_deploy_are_named(lock_a):
    got = assess(fakes.facts(lock=lock_a, sysctl={"net.core.somaxconn": "4096",
                                                  "net.ipv4.ip_local_reserved_ports": "60000-60015"}))
    assert kinds(got) == [("setting", "net.core.somaxconn is 4096, the deploy set 65535")]
    # whitespace as sysctl prints it is no drift; a parameter that is gone is
    recs = fakes.records(lock_a, sysctl={"net.ipv4.ip_local_reserved_ports": "60000-60015", "kernel.gone": "1"})
    got = assess(fakes.facts(lock=lock_a, records=recs, sysctl={"net.ipv4.ip_local_reserved_ports": "60000-60015 "}))
    assert kinds(got) == [("setting", "kernel.gone cannot be read, the deploy set 1")]


def test_records_that_cannot_be_trusted_are_drift(lock_a, lock_b):
    recs = fakes.records(lock_a)
    recs["lock"]["row"]["cann"] = "8.5.0"   # edited on the node: its digest no longer matches
    got = assess(fakes.facts(lock=lock_a, records=recs))
    assert got.state == status.DRIFT and kinds(got)[0][0] == "records"
    assert "the lock's digest does not match its content" in kinds(got)[0][1]
    recs = fakes.records(lock_a)
    recs["node_record"]["lock_digest"] = lock_b.digest
    got = assess(fakes.facts(lock=lock_a, records=recs))
    assert ("records", f"node record says lock {lock_b.digest[:19]}, the lock record is {lock_a.digest[:19]}") \
        in kinds(got)
    unreadable = assess(fakes.facts(lock=lock_a, record_errors={"node_record": "/etc/npuenv/node.json: not JSON"}))
    assert ("records", "node_record record unreadable: /etc/npuenv/node.json: not JSON") in kinds(unreadable)


def test_a_platform_the_lock_has_no_entry_for(lock_a):
    got = assess(fakes.facts(lock=lock_a, os_release=("ubuntu", "22.04")), lock_a)
    assert got.platform == "x86_64/ubuntu22.04"
    [(kind, what)] = [d for d in kinds(got) if d[0] == "no entry"]
    assert what.startswith(f"the lock {lock_a.digest[:19]} has no entry for the node's platform x86_64/ubuntu22.04")
    odd = assess(fakes.facts(lock=lock_a, os_release=("plan9", "4")), lock_a)
    assert "runs an OS the matrix does not support" in dict(kinds(odd))["no entry"]


def test_npus_in_use_are_shown_and_are_no_drift(lock_a):
    got = assess(fakes.facts(lock=lock_a, processes=[0, 3]))
    assert got.state == status.OK
    assert got.busy == ["NPU 0 chip 0: pid 4000 python3", "NPU 3 chip 0: pid 4003 python3"]


def test_a_nodes_text_is_made_safe_for_the_terminal(lock_a):
    recs = fakes.records(lock_a)
    recs["deploying"] = {"lock_digest": "sha256:\x1b[2J" + "x" * 5000, "started": "now\nfake line"}
    got = assess(fakes.facts(lock=lock_a, records=recs))
    text = status.table([got], None)
    assert "\x1b" not in text and "\nfake line" not in text
    assert max(len(line) for line in text.splitlines()) < 1000


# --- what the node sends: untrusted -----------------------------------------------------------------

@pytest.mark.parametrize("field,value,problem", [
    ("npuenv_facts", 2, "npuenv_facts: 2 is not 1, the facts format this controller reads"),
    ("sysctl", {"../../etc/shadow": "x"}, "sysctl['../../etc/shadow']: not a kernel parameter's name"),
    ("sysctl", {f"net.core.p{i}": "1" for i in range(300)}, "sysctl: 300 parameters, more than 256"),
    ("records", {"lock": [], "node_record": None, "deploying": None}, "records.lock: an array, not an object"),
    ("npu_smi", {"error": None, "processes": [{"npu": -1, "chip": 0, "pid": 1, "name": "x"}]},
     "npu_smi.processes[0].npu: -1 is outside 0.."),
    ("arch", "", "arch: an empty string"),
    ("machine_id", "not-hex", "machine_id: 'not-hex' is not a machine id"),
])
def test_a_bad_facts_document_is_refused_naming_the_field(lock_a, field, value, problem):
    doc = json.loads(json.dumps(fakes.facts(lock=lock_a)))
    doc[field] = value
    with pytest.raises(document.DocumentError) as e:
        document.check_facts(doc)
    assert str(e.value).startswith(problem), str(e.value)


def test_a_validation_document_is_not_a_facts_document():
    with pytest.raises(document.DocumentError, match="the field 'npuenv_facts' is missing"):
        document.read_facts(json.dumps({"format": 1, "hostname": "x", "results": []}))


def tree_result(tmp_path: Path, host: str, result: dict) -> Path:
    path = tmp_path / host
    path.write_text(json.dumps(result))
    return path


def test_each_kind_of_task_result_is_judged(tmp_path, lock_a):
    proc = subprocess.CompletedProcess([], 2, "", "boom")
    ok = status.judge("a", tree_result(tmp_path, "a", {"rc": 0, "stdout": fakes.stdout_of(fakes.facts(lock=lock_a))}),
                      proc)
    assert ok.status == "ran" and ok.facts["hostname"] == "node-0"
    down = status.judge("b", tree_result(tmp_path, "b", {"unreachable": True, "msg": "Task failed: Failed to "
                                                         "connect to the host via ssh: Connection refused"}), proc)
    assert (down.status, down.reason) == ("unreachable", "Failed to connect to the host via ssh: Connection refused")
    silent = status.judge("c", tree_result(tmp_path, "c", {"rc": 1, "stdout": "", "stderr": "Traceback\nOSError"}),
                          proc)
    assert (silent.status, silent.reason) == ("error", "the facts mode printed no document (exit 1): Traceback "
                                                        "OSError")
    old = status.judge("d", tree_result(tmp_path, "d", {"rc": 2, "stdout": '{"error": "python3 3.8 on this node is '
                                                        'too old"}'}), proc)
    assert (old.status, old.reason) == ("error", "python3 3.8 on this node is too old")
    forged = status.judge("e", tree_result(tmp_path, "e", {"rc": 0, "stdout": '{"npuenv_facts": 1, "x": NaN}'}), proc)
    assert forged.status == "error" and forged.reason.startswith("its facts document is refused: NaN is not a JSON")
    missing = status.judge("f", tmp_path / "f", proc)
    assert missing.status == "error" and missing.reason == "ansible-playbook gave no result for it (exit 2): boom"


# --- the fleet -----------------------------------------------------------------------------------

def fleet_of_150(lock_a, lock_b) -> tuple[list[str], dict[str, status.Probed], dict[str, str]]:
    """150 generated nodes: most at lock A, and every other kind of node among them."""
    hosts, probed, expected = [], {}, {}
    for i in range(150):
        h = f"npu-{i:03d}"
        hosts.append(h)
        kind = ("unreachable" if i % 37 == 5 else "never" if i % 29 == 3 else "other" if i % 23 == 7 else
                "setting" if i % 19 == 11 else "busy" if i % 13 == 2 else "ok")
        expected[h] = kind
        if kind == "unreachable":
            probed[h] = status.Probed(h, status.UNREACHABLE, "Failed to connect to the host via ssh: timed out")
            continue
        doc = {"never": lambda: fakes.facts(i, deployed=False),
               "other": lambda: fakes.facts(i, lock=lock_b),
               "setting": lambda: fakes.facts(i, lock=lock_a, sysctl={**fakes.SYSCTL, "net.core.somaxconn": "128"}),
               "busy": lambda: fakes.facts(i, lock=lock_a, processes=[1]),
               "ok": lambda: fakes.facts(i, lock=lock_a)}[kind]()
        probed[h] = status.Probed(h, "ran", facts=doc)
    return hosts, probed, expected


def test_150_nodes_merge_into_one_table_and_document(lock_a, lock_b):
    hosts, probed, expected = fleet_of_150(lock_a, lock_b)
    assert status.identity_clashes(probed) == []
    nodes = [status.assess(probed[h], lock_a, PLATFORMS) for h in hosts]
    count = {k: sum(1 for v in expected.values() if v == k) for k in set(expected.values())}
    data = status.to_json(nodes, lock_a)
    assert list(data)[0] == "npuenv_status" and data["npuenv_status"] == 1   # its format, first
    assert data["summary"] == {"nodes": 150, "ok": count["ok"] + count["busy"],
                               "drift": count["never"] + count["other"] + count["setting"],
                               "unreachable": count["unreachable"], "error": 0, "busy": count["busy"]}
    groups = {g["kind"]: g["hosts"] for g in data["drift"]}
    assert groups["never deployed"] == [h for h in hosts if expected[h] == "never"]
    assert groups["other lock"] == [h for h in hosts if expected[h] == "other"]
    assert groups["setting"] == [h for h in hosts if expected[h] == "setting"]
    assert [n["host"] for n in data["nodes"]] == hosts                     # every host, once, in order
    assert json.loads(json.dumps(data)) == data
    text = status.table(nodes, lock_a)
    lines = text.splitlines()
    for h in hosts:   # each host has exactly one line of its own
        assert sum(1 for line in lines if line.startswith(h + " ")) == 1, h
    assert f"150 node(s): {count['ok'] + count['busy']} at the lock" in text
    assert f"never deployed: {count['never']} node(s): npu-003, " in text and "more" in text
    unreachable = [h for h in hosts if expected[h] == "unreachable"]
    assert f"  not read: {', '.join(unreachable)}" in text
    assert status.exit_status(nodes) == 1


def test_the_exit_code_is_0_only_when_every_node_was_read_and_none_drifts(lock_a):
    good = [assess(fakes.facts(i, lock=lock_a), host=f"h{i}") for i in range(3)]
    assert status.exit_status(good) == 0
    assert status.exit_status(good + [status.assess(status.Probed("x", status.UNREACHABLE, "down"), None,
                                                    PLATFORMS)]) == 1
    assert status.exit_status(good + [status.assess(status.Probed("x", status.ERROR, "bad"), None, PLATFORMS)]) == 1
    assert status.exit_status(good + [assess(fakes.facts(9, deployed=False), host="new")]) == 1
    assert status.exit_status([]) == 1   # nothing read is never an OK


# --- the command, with Ansible's results recorded ------------------------------------------------

@pytest.fixture
def fake_fleet(monkeypatch, tmp_path):
    """run_playbook's stand-in: writes each host's tree-callback result from ``docs`` (host -> doc or
    ("unreachable", msg)), and records the calls."""
    docs, calls = {}, []

    def run_playbook(playbook, inventory, *, limit=None, hosts=None, extra_vars=None, capture=False, env=None,
                     npuenv_vars=None, **kw):
        calls.append({"playbook": playbook, "hosts": hosts, "extra_vars": extra_vars, "npuenv_vars": npuenv_vars})
        tree = Path(env["ANSIBLE_CALLBACK_TREE_DIR"])
        tree.mkdir(parents=True, exist_ok=True)
        for h in hosts:
            d = docs[h]
            result = {"unreachable": True, "msg": d[1]} if isinstance(d, tuple) else \
                {"rc": 0, "stdout": fakes.stdout_of(d), "stderr": ""}
            (tree / h).write_text(json.dumps(result))
        return subprocess.CompletedProcess([], 0, "", "")

    monkeypatch.setattr(run, "run_playbook", run_playbook)
    monkeypatch.setattr(run, "fleet", lambda inventory, limit=None: (list(docs) if not limit else
                                                                     limit.split(","), {}))
    return docs, calls


def test_status_reads_each_node_once_and_exits_by_what_it_found(fake_fleet, lock_a, tmp_path, capsys):
    docs, calls = fake_fleet
    path = tmp_path / "a.lock.json"
    from compat_matrix import lock as lock_mod
    lock_mod.write(lock_a, path)
    docs.update({"n0": fakes.facts(0, lock=lock_a), "n1": fakes.facts(1, lock=lock_a)})
    assert cli.main(["status", "-i", "inv.yml", "--lock", str(path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("compared with: torch_npu 2.13.0") and "2 node(s): 2 at the lock, 0 drifting" in out
    assert [c["playbook"] for c in calls] == ["status.yml"] and calls[0]["hosts"] == ["n0", "n1"]
    # the artefact is named with its digest, and every value reaches Ansible !unsafe
    vars_file = Path(calls[0]["npuenv_vars"][-1][1:])
    assert not vars_file.exists()   # the run's temporary folder is gone

    docs["n2"] = ("unreachable", "Failed to connect to the host via ssh: Connection refused")
    assert cli.main(["status", "-i", "inv.yml", "--format", "json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["summary"]["unreachable"] == 1 and data["nodes"][2]["reason"].endswith("Connection refused")
    assert data["lock"] is None


def test_two_names_for_one_machine_are_refused(fake_fleet, lock_a, capsys):
    docs, _ = fake_fleet
    docs.update({"n0": fakes.facts(0, lock=lock_a), "n1": fakes.facts(0, lock=lock_a)})
    assert cli.main(["status", "-i", "inv.yml"]) == 2
    assert "npuenv: inventory names that reach one machine: n0 and n1 share /etc/machine-id" in capsys.readouterr().err


def test_bad_input_is_exit_2(tmp_path, capsys):
    bad = tmp_path / "edited.json"
    bad.write_text('{"npuenv_lock": 1}')
    assert cli.main(["status", "-i", "/no/such/hosts.yml", "--lock", str(bad)]) == 2
    assert capsys.readouterr().err.startswith(f"npuenv: {bad}: the lock's row is missing")
    with pytest.raises(UserError, match="--format xml: use text or json"):
        status.status("inv.yml", fmt="xml")


# --- the node side ---------------------------------------------------------------------------------

class FakeProbe(facts_mod.Probe):
    """Files and command outputs of a node, in memory."""

    def __init__(self, files: dict[str, str], commands: dict[str, tuple[int, str, str]] | None = None):
        self.files, self.commands, self.ran = files, commands or {}, []

    def run(self, command):
        self.ran.append(command)
        for start, answer in self.commands.items():
            if command.startswith(start):
                return answer
        return 127, "", "not found"

    def read(self, path):
        return self.files.get(path)

    def glob(self, pattern):
        import fnmatch
        return sorted(p for p in self.files if fnmatch.fnmatch(p, pattern))


def test_the_node_reads_its_records_settings_and_the_recorded_python(lock_a):
    recs = fakes.records(lock_a)
    manifest = {"notes": ["torchvision left out (--torchvision none)"]}
    files = {"/etc/npuenv/lock.json": json.dumps(recs["lock"]),
             "/etc/npuenv/node.json": json.dumps(recs["node_record"]), "/etc/npuenv/deploying.json": "{not json",
             "/proc/sys/net/core/somaxconn": "4096\n", "/proc/sys/net/ipv4/ip_local_reserved_ports": "60000-60015\n",
             "/etc/npuenv/wheelhouse-manifest.json": json.dumps(manifest),
             "/etc/os-release": 'ID=debian\nVERSION_ID="12"\n',
             # two NNAL versions on disk, 9.1.0 the one the login runs
             "/usr/local/Ascend/nnal/atb/9.0.0/atb": "", "/usr/local/Ascend/nnal/atb/9.1.0/atb": "",
             "/usr/local/Ascend/nnal/atb/latest/version.info": "Ascend-cann-atb : 9.1.0\n"}
    probe = FakeProbe(files, {"/opt/npuenv/venv/bin/python3 -c": (0, '{"torch": "2.13.0+cpu", "torch_npu": '
                                                                    '"2.13.0", "torchvision": null}\n', "")})
    got = facts_mod.status_facts(probe, PLATFORMS)
    assert got["records"]["node_record"]["lock_digest"] == lock_a.digest and got["records"]["deploying"] is None
    assert got["record_errors"]["deploying"].startswith("/etc/npuenv/deploying.json: Expecting property name")
    assert got["sysctl"] == {"net.core.somaxconn": "4096", "net.ipv4.ip_local_reserved_ports": "60000-60015"}
    assert got["installed"]["python"] == {"interpreter": "/opt/npuenv/venv/bin/python3", "torch": "2.13.0+cpu",
                                          "torch_npu": "2.13.0", "torchvision": None}
    assert got["installed"]["left_out"] == ["torchvision"]
    assert got["installed"]["nnal"] == ["9.1.0"]
    assert facts_mod.os_release(probe) == {"id": "debian", "version_id": "12"}
    # only npu-smi's table: no per-chip sensor queries (five per chip)
    assert not any(" info -t " in c for c in probe.ran)
    # a recorded interpreter that is not an absolute path is not run
    recs["node_record"]["python"] = "python3; rm -rf /"
    files["/etc/npuenv/node.json"] = json.dumps(recs["node_record"])
    probe = FakeProbe(files)
    facts_mod.status_facts(probe, PLATFORMS)
    assert any(c.startswith("python3 -c") for c in probe.ran) and not any("rm -rf" in c for c in probe.ran)


def test_a_setting_name_that_is_not_one_is_not_read():
    probe = FakeProbe({"/proc/sys/net/core/somaxconn": "1"})
    assert facts_mod.read_sysctl(probe, ["net.core.somaxconn", "../../etc/shadow", "net/core", 7]) == \
        {"net.core.somaxconn": "1"}


def test_the_live_kernel_parameters_of_this_machine_are_read():
    # /proc/sys refuses a large read buffer (ENOMEM): the node reads them with a small one
    assert facts_mod.read_sysctl(facts_mod.LocalProbe("/"), ["kernel.ostype", "kernel.no_such_one"]) == \
        {"kernel.ostype": "Linux", "kernel.no_such_one": None}


def test_the_facts_mode_prints_a_document_the_controller_accepts(capsys):
    assert runner.main(["--facts"]) == 0
    doc = document.read_facts(capsys.readouterr().out)
    assert doc[document.FACTS_KEY] == 1 and set(doc) >= set(document.FACTS_REQUIRED)


def test_the_status_playbook_runs_one_task_per_node_with_the_cached_artefact():
    import yaml
    [play] = yaml.safe_load((run.PLAYBOOK_DIR / "status.yml").read_text())
    assert play["gather_facts"] is False and len(play["tasks"]) == 1
    assert "npuenv.ascend.npuenv_facts" in play["tasks"][0]



# --- the action plugin that runs the facts mode on a node (here: this machine, in a folder of its own) ----

def facts_action(tmp_path, args):
    """npuenv_facts with a stand-in connection that runs each command in a local shell."""
    import shutil
    import tempfile
    from types import SimpleNamespace

    from playbooks.collections.ansible_collections.npuenv.ascend.plugins.action import npuenv_facts

    ran = []

    class Local(npuenv_facts.ActionModule):
        def _low_level_execute_command(self, cmd, sudoable=True, **kw):
            ran.append(cmd)
            p = subprocess.run(["/bin/sh", "-c", cmd], capture_output=True, text=True)
            return {"rc": p.returncode, "stdout": p.stdout, "stderr": p.stderr}

        def _make_tmp_path(self, remote_user=None):
            return tempfile.mkdtemp(dir=tmp_path)

        def _transfer_file(self, local, remote):
            ran.append(f"transfer {local}")
            shutil.copy(local, remote)

        def _fixup_perms2(self, paths, remote_user=None, execute=True):
            pass

        def _remove_tmp_path(self, path, force=False):
            shutil.rmtree(path)

    task = SimpleNamespace(args=args, async_val=0, check_mode=False, action="npuenv_facts")
    connection = SimpleNamespace(_shell=SimpleNamespace(tmpdir=None, join_path=os.path.join))
    return Local(task, connection, None, None, None), ran


def test_the_node_gets_the_artefact_once_and_runs_it_from_its_digest(tmp_path):
    import sys
    from validation import artefact

    art = artefact.cached({})
    digest = artefact.digest(art)
    folder = tmp_path / "cache" / "status"
    folder.mkdir(parents=True)
    (folder / "npuenv-validate-0000000000000000.pyz").write_bytes(b"an older artefact")   # replaced, not kept
    args = {"artefact": str(art), "digest": digest, "python": sys.executable, "folder": str(folder)}
    action, ran = facts_action(tmp_path, args)
    first = action.run(task_vars={})
    assert first["rc"] == 0 and first["copied"] and document.read_facts(first["stdout"])["hostname"]
    assert sum(c.startswith("transfer ") for c in ran) == 1
    kept = sorted(p.name for p in folder.iterdir())
    assert kept == [f"npuenv-validate-{digest[:16]}.pyz"] and oct(folder.stat().st_mode & 0o777) == "0o700"
    # the next run: one command, nothing copied
    action, ran = facts_action(tmp_path, args)
    again = action.run(task_vars={})
    assert again["rc"] == 0 and not again["copied"] and len(ran) == 1
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("tmp")] == []   # no temporary folder left


def test_a_copy_that_does_not_match_its_digest_is_never_run(tmp_path):
    import sys
    from validation import artefact

    art = artefact.cached({})
    folder = tmp_path / "status"
    action, _ = facts_action(tmp_path, {"artefact": str(art), "digest": "0" * 64, "python": sys.executable,
                                        "folder": str(folder)})
    got = action.run(task_vars={})
    assert got["rc"] == 3 and "the copied artefact does not match its sha256" in got["stderr"]
    assert list(folder.iterdir()) == []


@pytest.mark.parametrize("args,problem", [
    ({"digest": "abc"}, "digest 'abc' is not a sha256 in hex"),
    ({"python": "python3; rm -rf /"}, "python 'python3; rm -rf /' is not a plain absolute path"),
    ({"folder": "/var/cache/../../etc"}, "folder '/var/cache/../../etc' is not a plain absolute path"),
])
def test_the_action_refuses_arguments_a_shell_would_read_as_syntax(tmp_path, args, problem):
    from ansible.errors import AnsibleActionFail

    action, ran = facts_action(tmp_path, {"artefact": "/x.pyz", "digest": "a" * 64, **args})
    with pytest.raises(AnsibleActionFail, match=problem.replace("(", r"\(").replace(")", r"\)")):
        action.run(task_vars={})
    assert ran == []

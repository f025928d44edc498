"""The controller trusts nothing a node sends (validation/node/document.py): the
node document's schema and strict parsing, the sanitisers, and `npuenv
validate` on a fleet of two healthy nodes and a third that sends crafted
documents. Whatever it sends, the healthy nodes' verdicts and the reports stay
intact, the hostile host gets a failed `suite` record naming the problem, and
its claims and addresses never reach another node's verdict or arguments."""
from __future__ import annotations

import base64
import copy
import json
import xml.etree.ElementTree as ET

import pytest

import compat_matrix as cm
from validation import merge, report, run
from validation.node import document
from validation.merge import Outcome

# A key line as node/runner.py sends it (validation/node/identity.py: type and key, comment dropped).
HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl"
# Each node is a machine of its own (validation/node/identity.py refuses two targets on one machine).
MACHINE_IDS = {"n0": "3d1219c7c4c5404aaa1f6d2a48adfda4", "n1": "5c0f7e6b2a1d4f3e8b9a0c1d2e3f4a5b",
               "evil": "e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0"}


def rec(check, status="passed", message="", data=None, failure=None):
    r = {"host": "local", "check": check, "level": "quick", "status": status, "duration_s": 0.25,
         "message": message, "data": data}
    if failure is not None:
        r["failure"] = failure
    return r


def host_key(name: str) -> str:
    return "ssh-ed25519 " + base64.b64encode(name.encode().ljust(51, b"k")).decode()


def node_doc(address="192.0.2.10", device_ip="10.20.0.10", name="evil", **changes):
    """A document as node/runner.py prints it after phase 1, for a healthy node."""
    doc = {"format": 1, "hostname": "atlas", "addresses": [address, "fd00::10"],
           "machine_id": MACHINE_IDS[name], "host_keys": [host_key(name)], "python": "3.11.2",
           "level": "full", "fleet": False,
           "results": [rec("driver_version"), rec("npu_network", data={"device_ips": {"0": device_ip, "1": None}}),
                       rec("train", data={"samples_per_s": 100.0, "first_loss": 2.3, "last_loss": 0.4}),
                       rec("allreduce_local", data={"backend": "cpu", "world_size": 2, "sizes": [
                           {"bytes": 1024, "count": 256, "time_s": 0.001, "algbw_gbps": 0.5, "busbw_gbps": 0.5,
                            "correct": True}]})],
           "pytest_exit": 0, "duration_s": 12.5}
    doc.update(changes)
    return doc


def fleet_doc(*records):
    return {**node_doc(), "fleet": True, "results": list(records) or [rec("allreduce_across_nodes"),
                                                                       rec("netdetect_peers")]}


def line(doc) -> str:
    return json.dumps(doc) + "\n"


# --- the schema ---------------------------------------------------------------------

def test_the_schema_accepts_what_node_py_sends_and_normalises_addresses():
    doc = node_doc(address="fd00:0:0::7")
    checked = document.check(copy.deepcopy(doc))
    assert checked["addresses"] == ["fd00::7", "fd00::10"]
    assert checked["results"][1]["data"]["device_ips"] == {"0": "10.20.0.10", "1": None}
    assert {k: v for k, v in checked.items() if k != "addresses"} == {k: v for k, v in doc.items() if k != "addresses"}
    # no identity to send (no /etc/machine-id, no sshd) is no fault
    assert document.check(node_doc(machine_id=None, host_keys=[]))["machine_id"] is None
    # a node whose suite could not run sends only why (the artefact's entry point, on an old Python)
    assert document.check({"error": "python3 3.8 on this node is too old"}) == \
        {"error": "python3 3.8 on this node is too old"}


def with_record(**changes):
    doc = node_doc()
    doc["results"][0].update(changes)
    return doc


def nested(depth):
    data = "bottom"
    for _ in range(depth):
        data = [data]
    return data


@pytest.mark.parametrize("doc, problem", [
    ({**node_doc(), "results": None}, "results: null, not an array"),
    ({k: v for k, v in node_doc().items() if k != "results"}, "the field 'results' is missing"),
    ({k: v for k, v in node_doc().items() if k != "format"}, "the field 'format' is missing"),
    (node_doc(format=2), "format: 2 is not 1, the format this controller reads: the node ran another version's "
                         "validation artefact"),
    (node_doc(format=True), "format: True is not 1, the format this controller reads: the node ran another "
                            "version's validation artefact"),
    (node_doc(shell="rm -rf /"), "unknown field 'shell'"),
    ([node_doc()], "an array, not an object"),
    (node_doc(level="extreme"), "level: 'extreme' is not one of quick, standard, full"),
    (node_doc(fleet="yes"), "fleet: a string ('yes'), not true or false"),
    (node_doc(duration_s="fast"), "duration_s: a string ('fast'), not a number"),
    (node_doc(pytest_exit=1.5), "pytest_exit: a number (1.5), not an integer"),
    (node_doc(hostname="h" * 256), "hostname: a string of 256 characters, more than 255"),
    (node_doc(results=[rec("x")] * 1001), "results: 1001 items, more than 1000"),
    (with_record(status="great"), "results[0].status: 'great' is not one of passed, warning, failed, error, skipped"),
    (with_record(status=None), "results[0].status: null is not one of passed, warning, failed, error, skipped"),
    (with_record(check="npu_health; reboot"), "results[0].check: 'npu_health; reboot' is not a check name (letters, "
                                              "digits and _, at most 100 characters, not starting with a digit)"),
    (with_record(check="\x1b[2Jok"), r"results[0].check: '\x1b[2Jok' is not a check name"),
    (with_record(check="suite"), "results[0].check: 'suite' is a check of the controller's own, not of a node"),
    (with_record(check="reachable"), "results[0].check: 'reachable' is a check of the controller's own"),
    (with_record(duration_s=-1), "results[0].duration_s: -1 is below 0"),
    (with_record(duration_s=float("nan")), "results[0].duration_s: nan is not a finite number"),
    (with_record(message=["a"]), "results[0].message: an array, not a string"),
    (with_record(message="m" * 16385), "results[0].message: a string of 16385 characters, more than 16384"),
    (with_record(verdict="passed"), "results[0]: unknown field 'verdict'"),
    ({**node_doc(), "results": [{"check": "x"}]}, "results[0]: the field 'host' is missing"),
    (with_record(failure={"summary": "s"}), "results[0].failure: the field 'expected' is missing"),
    (with_record(failure=dict.fromkeys(("summary", "expected", "cause", "fix"), "t") | {"found": 3}),
     "results[0].failure.found: a number, not a string"),
    (with_record(data={"deep": nested(17)}), "nested more than 16 levels deep"),
    (with_record(data={"k": "v" * 16385}), "results[0].data.k: a string of 16385 characters, more than 16384"),
    (node_doc(addresses=["10.0.0.1 --npuenv-fleet-port=1"]),
     "addresses[0]: '10.0.0.1 --npuenv-fleet-port=1' is not an IP address"),
    (node_doc(addresses=["$(reboot)"]), "addresses[0]: '$(reboot)' is not an IP address"),
    (node_doc(addresses=["fe80::1%eth0;reboot"]), "addresses[0]: 'fe80::1%eth0;reboot' is not an address a peer "
                                                  "can connect to"),
    (node_doc(addresses=["0.0.0.0"]), "addresses[0]: '0.0.0.0' is not an address a peer can connect to"),
    (node_doc(addresses=["224.0.0.1"]), "addresses[0]: '224.0.0.1' is not an address a peer can connect to"),
    (node_doc(addresses="192.0.2.1"), "addresses: a string, not an array"),
    (node_doc(device_ip="10.20.0.300"), "results[1].data.device_ips['0']: '10.20.0.300' is not an IP address"),
    (node_doc(device_ip="10.0.0.1,1=6.6.6.6"), "results[1].data.device_ips['0']: '10.0.0.1,1=6.6.6.6' is not an IP "
                                               "address"),
    (with_record(data={"device_ips": {"1000": "10.0.0.1"}}),
     "results[0].data.device_ips['1000']: '1000' is not a device id (0..63)"),
    (with_record(data={"device_ips": {"0;x": "10.0.0.1"}}), "results[0].data.device_ips['0;x']: '0;x' is not a "
                                                            "device id (0..63)"),
    (with_record(data={"device_ips": ["10.0.0.1"]}), "results[0].data.device_ips: an array, not an object"),
    (with_record(data={"stuck_nodes": ["1"]}), "results[0].data.stuck_nodes[0]: a string ('1'), not an integer"),
    (with_record(data={"stuck_nodes": [-1]}), "results[0].data.stuck_nodes[0]: -1 is outside 0..1048576"),
    (node_doc(machine_id="../../etc/passwd"), "machine_id: '../../etc/passwd' is not a machine id (32 hexadecimal "
                                              "characters)"),
    (node_doc(host_keys=[HOST_KEY] * 9), "host_keys: 9 items, more than 8"),
    (node_doc(host_keys=[HOST_KEY + "\n" + HOST_KEY]), "host_keys[0]: 'ssh-ed25519 "),
    (node_doc(host_keys=["ssh-ed25519 " + "A" * 1000]), "host_keys[0]: a string of 1012 characters, more than 1000"),
    (node_doc(host_keys=["not a key"]), "host_keys[0]: 'not a key' is not an SSH public key line"),
    ({"error": 7}, "error: a number, not a string"),
    ({"error": ""}, "error: an empty string"),
])
def test_the_schema_refuses_each_bad_field_by_name(doc, problem):
    with pytest.raises(document.DocumentError) as e:
        document.check(doc)
    assert problem in str(e.value)


def raw(**values) -> str:
    """A document line with some values as raw JSON text (what json.dumps cannot write)."""
    text = json.dumps(node_doc(**{k: f"@{k}@" for k in values}))
    for k, v in values.items():
        text = text.replace(f'"@{k}@"', v)
    return text


@pytest.mark.parametrize("stdout, problem", [
    (raw(duration_s="NaN"), "NaN is not a JSON number (only finite numbers are accepted)"),
    (raw(duration_s="-Infinity"), "-Infinity is not a JSON number (only finite numbers are accepted)"),
    (raw(duration_s="1e999"), "1e999 is out of range (only finite numbers are accepted)"),
    (raw(pytest_exit="1" + "0" * 30), "the integer 10000000000000000000... is larger than 9223372036854775808"),
    (raw(pytest_exit="9" * 5000), "the integer 99999999999999999999... is larger than 9223372036854775808"),
    ('{"format": 1, "format": 2}', "the key 'format' appears twice in one object"),
    (raw(python='"3.11", "python": "2.7"'), "the key 'python' appears twice in one object"),
    (raw(results="[" * 10_000 + "]" * 10_000), "it is nested too deeply to parse"),
    ('{"format": 1, "results": [', "it is not valid JSON (Expecting value: line 1 column 27 (char 26))"),
    (line(node_doc(hostname="x" * (4 << 20))), "it is larger than 4194304 bytes"),
])
def test_a_document_is_parsed_strictly(stdout, problem):
    outcome = merge.judge(0, "pytest log\n" + stdout + "\n", "")
    assert (outcome.status, outcome.refused) == ("error", problem)
    assert outcome.reason == "its result document was refused: " + problem


def test_no_document_is_the_artefacts_failure_and_an_error_document_its_reason():
    assert merge.judge(137, "Killed\n", "").reason == "the validation artefact gave no result (exit 137): Killed"
    broken = merge.judge(2, line({"error": "the suite could not run (pytest exit 4): usage"}), "")
    assert (broken.status, broken.reason, broken.refused) == ("error", "the suite could not run (pytest exit 4): "
                                                                       "usage", "")


# --- the sanitisers ----------------------------------------------------------------

def test_clean_text_leaves_no_control_character_and_keeps_newlines():
    text = "\x1b[31mred\x1b[0m\x00\x07 a\r\nb\rc\td\x9b2J\u202egnp.exe\ud800\ufffe\x7f \u4e2d\u6587 \u00e9"
    assert document.clean_text(text) == ("\ufffd[31mred\ufffd[0m\ufffd\ufffd a\nb\nc d\ufffd2J\ufffdgnp.exe\ufffd"
                                         "\ufffd\ufffd \u4e2d\u6587 \u00e9")


def test_texts_are_bounded_saying_how_much_was_left_out():
    assert document.shorten("x" * 5000, 4000) == "x" * 3960 + "... (1040 more characters)"
    assert document.shorten("x" * 4000, 4000) == "x" * 4000
    assert len(document.clean_text("y" * 50_000_000)) <= 4000


def test_clean_makes_a_whole_result_safe_for_strict_json():
    dirty = {"a\x1bb": [1, 2.5, float("nan"), float("inf"), ("t\x00",)], "n": {"x": -float("inf"), "ok": True}}
    assert document.clean(dirty) == {"a\ufffdb": [1, 2.5, None, None, ["t\ufffd"]], "n": {"x": None, "ok": True}}


def test_fit_keeps_a_nodes_own_records_within_the_schema():
    fitted = document.fit({"message": "m" * 20_000, "data": {"loss": float("nan"), "rate": [float("inf"), 1.0]}})
    assert fitted["data"] == {"loss": "nan", "rate": ["inf", 1.0]}
    assert fitted["message"] == "m" * 16344 + "... (3656 more characters)"   # within the 16384 allowed
    json.dumps(fitted, allow_nan=False)   # strict JSON


def test_a_terminal_line_keeps_only_the_reports_own_newlines():
    assert report.one_line("line one\n\x1b[1Aline two") == "line one \u23ce \ufffd[1Aline two"


# --- a fleet with a hostile node ---------------------------------------------------

HEALTHY = {"n0": ("192.0.2.10", "10.20.0.10"), "n1": ("192.0.2.11", "10.20.0.11")}


class Fleet:
    """Two healthy nodes and 'evil', which sends what a test gives it in each phase;
    remembers the arguments every node got."""
    fleet_member = True

    def __init__(self, evil_phase1: str, evil_phase2: str | None = None):
        self.hosts = ["n0", "n1", "evil"]
        self.evil = (evil_phase1, evil_phase2 if evil_phase2 is not None else line(fleet_doc()))
        self.args: list[tuple[str, list[str]]] = []

    def run(self, artefact_path, args, done=None):
        out = {}
        for host, argv in args.items():
            self.args.append((host, argv))
            fleet = "--fleet" in argv
            if host == "evil":
                stdout = self.evil[fleet]
            else:
                stdout = line(fleet_doc() if fleet else node_doc(*HEALTHY[host], name=host))
            out[host] = merge.judge(0, stdout, "")
        return out


def validate(monkeypatch, tmp_path, fleet: Fleet):
    monkeypatch.setattr(run, "plan", lambda *a, **k: ([fleet], {}))
    # the fake nodes need no artefact; a stand-in path keeps the controller's cache free of fakes
    monkeypatch.setattr(run.artefact_mod, "cached", lambda *a, **k: tmp_path / "v.pyz")
    return run.validate(["ansible://npu_nodes?inventory=hosts.yml"], "full", cm.Constraints(torch_npu="2.13.0"),
                        tmp_path / "out")


def strict_json(text: str):
    def refuse(name):
        raise ValueError(f"{name} in results.json")
    return json.loads(text, parse_constant=refuse)


def assert_reports_intact(out, terminal: str) -> dict:
    """Every report is well-formed and bounded; the healthy nodes passed. Returns results.json."""
    results = strict_json((out / "results.json").read_text())
    ET.fromstring((out / "junit.xml").read_text())           # XML 1.0: a control character breaks it
    assert (out / "report.html").stat().st_size < 200_000
    assert (out / "results.json").stat().st_size < 200_000
    assert "npuenv_validation_host_reachable{host=\"n0\"} 1.0" in (out / "metrics.prom").read_text()
    for text in (terminal, *(p.read_text() for p in out.iterdir())):
        assert not [c for c in text if (ord(c) < 32 and c != "\n") or 0x7f <= ord(c) <= 0x9f]
    for host in HEALTHY:
        assert results["host_status"][host]["status"] == "passed"
        assert {r["check"]: r["status"] for r in results["results"] if r["host"] == host} == {
            "driver_version": "passed", "npu_network": "passed", "train": "passed", "allreduce_local": "passed",
            "allreduce_across_nodes": "passed", "netdetect_peers": "passed"}
    return results


def evil_record(results) -> dict:
    [r] = [r for r in results["results"] if r["host"] == "evil"]
    assert (r["check"], r["status"]) == ("suite", "error")
    assert results["host_status"]["evil"]["status"] == "error"
    return r


ANSI = "\x1b[2J\x1b[1;1H\x1b]0;pwned\x07\x9b31m\x00\r"


def everywhere(value):
    """Every string of a document with terminal escapes and control characters in it."""
    if isinstance(value, str):
        return ANSI + value + ANSI
    if isinstance(value, dict):
        return {everywhere(k): everywhere(v) for k, v in value.items()}
    if isinstance(value, list):
        return [everywhere(v) for v in value]
    return value


HOSTILE = [
    ("missing key", line({k: v for k, v in node_doc().items() if k != "results"}), "the field 'results' is missing"),
    ("results not a list", line(node_doc(results={"driver_version": "passed"})), "results: an object, not an array"),
    ("record not an object", line(node_doc(results=["passed"])), "results[0]: a string, not an object"),
    ("duration a string", line(node_doc(duration_s="12s")), "duration_s: a string ('12s'), not a number"),
    ("unknown status", line(with_record(status="PASSED!")), "results[0].status: 'PASSED!' is not one of"),
    ("bad check name", line(with_record(check="x y")), "results[0].check: 'x y' is not a check name"),
    ("NaN", raw(duration_s="NaN"), "NaN is not a JSON number"),
    ("Infinity in data", line(node_doc()).replace('"samples_per_s": 100.0', '"samples_per_s": Infinity'),
     "Infinity is not a JSON number"),
    ("50 MB message", line(with_record(message="A" * 50_000_000)), "it is larger than 4194304 bytes"),
    ("10,000-deep data", raw(results='[{"host": "x", "check": "c", "data": ' + "[" * 10_000 + "]" * 10_000 + "}]"),
     "it is nested too deeply to parse"),
    ("escapes in every string", line(everywhere(node_doc())), "the field 'format' is missing"),   # keys too
    ("escapes in every value", line({k: everywhere(v) for k, v in node_doc().items()}),
     "addresses[0]: '\\x1b[2J\\x1b[1;1H\\x1b]0;pwned\\x07\\x9b31m\\x00\\r192.0.2.10\\x1b[2J\\x1b[1;1H\\x1b]0;pwned"),
    ("master address with an option", line(node_doc(address="192.0.2.12 --npuenv-fleet-port=22")),
     "addresses[0]: '192.0.2.12 --npuenv-fleet-port=22' is not an IP address"),
    ("device IP with a shell command", line(node_doc(device_ip="10.20.0.12;reboot")),
     "results[1].data.device_ips['0']: '10.20.0.12;reboot' is not an IP address"),
    ("device id not small", line(with_record(check="npu_network", data={"device_ips": {"4096": "10.20.0.12"}})),
     "results[0].data.device_ips['4096']: '4096' is not a device id (0..63)"),
    ("not JSON", '{"format": 1, "hostname": \n', "it is not valid JSON"),
    ("the controller's own check", line(with_record(check="reachable", status="failed")),
     "results[0].check: 'reachable' is a check of the controller's own, not of a node"),
]


@pytest.mark.parametrize("evil, problem", [h[1:] for h in HOSTILE], ids=[h[0] for h in HOSTILE])
def test_a_hostile_document_fails_its_own_host_and_nothing_else(monkeypatch, tmp_path, capsys, evil, problem):
    fleet = Fleet(evil)
    assert validate(monkeypatch, tmp_path, fleet) == 1
    results = assert_reports_intact(tmp_path / "out", capsys.readouterr().out)
    r = evil_record(results)
    assert problem in r["message"] and r["message"].startswith("the node's result document was refused: ")
    assert r["failure"]["cause"].startswith("the node sent a result the controller does not accept (")
    assert r["failure"]["fix"].startswith("validate evil alone and read what it prints")
    # the fleet phase ran on the healthy nodes alone, with their own addresses
    phase2 = {h: a for h, a in fleet.args if "--fleet" in a}
    assert sorted(phase2) == ["n0", "n1"]
    assert [a for a in phase2["n0"] if a.startswith(("--npuenv-fleet-master", "--npuenv-peer-ips"))] == [
        "--npuenv-fleet-master=192.0.2.10", "--npuenv-peer-ips=0=10.20.0.11"]
    assert phase2["n1"][-1] == "--npuenv-peer-ips=0=10.20.0.10"
    fleet_checks = [r for r in results["results"] if r["host"] == "fleet"]
    assert [(r["check"], r["message"]) for r in fleet_checks] == [
        ("allreduce_across_nodes", "all 2 nodes took part"), ("netdetect_peers", "all 2 nodes took part")]
    assert not list(tmp_path.glob(".out.*"))   # no staging folder stays


def test_escapes_in_a_nodes_texts_reach_no_report(monkeypatch, tmp_path, capsys):
    """A well-formed document whose free texts carry escapes: accepted, and made safe."""
    failure = {k: everywhere(f"the {k}\nsecond line") for k in ("summary", "expected", "found", "cause", "fix")}
    evil = node_doc(hostname=everywhere("atlas"), python=everywhere("3.11"))
    evil["results"][0].update(status="failed", message=everywhere("NPU 0 Critical"), failure=failure)
    evil["results"][2]["data"]["note"] = everywhere("note")
    assert validate(monkeypatch, tmp_path, Fleet(line(evil))) == 1
    terminal = capsys.readouterr().out
    results = assert_reports_intact(tmp_path / "out", terminal)
    [mine] = [r for r in results["results"] if r["host"] == "evil" and r["check"] == "driver_version"]
    assert mine["message"] == "\ufffd[2J\ufffd[1;1H\ufffd]0;pwned\ufffd\ufffd31m\ufffd\nNPU 0 Critical" \
                              "\ufffd[2J\ufffd[1;1H\ufffd]0;pwned\ufffd\ufffd31m\ufffd\n"
    # in the terminal a node's newline never starts a line of its own
    assert "    FAIL driver_version: \ufffd[2J\ufffd[1;1H\ufffd]0;pwned\ufffd\ufffd31m\ufffd \u23ce NPU 0 Critical" \
        in terminal
    assert results["host_status"]["evil"]["status"] == "failed"


def test_a_huge_accepted_message_is_bounded_in_every_report(monkeypatch, tmp_path, capsys):
    evil = with_record(status="failed", message="B" * 16_000)
    assert validate(monkeypatch, tmp_path, Fleet(line(evil))) == 1
    results = assert_reports_intact(tmp_path / "out", capsys.readouterr().out)
    [mine] = [r for r in results["results"] if r["host"] == "evil" and r["check"] == "driver_version"]
    assert mine["message"] == "B" * 3960 + "... (12040 more characters)"
    assert "B" * 3961 not in (tmp_path / "out" / "report.html").read_text()


def test_a_nodes_claim_that_healthy_peers_were_stuck_blames_no_one_but_itself(monkeypatch, tmp_path, capsys):
    liar = fleet_doc(rec("allreduce_across_nodes", "failed", "rank 0 and 1 never reached the all_reduce",
                         data={"stuck_nodes": [0, 1]}), rec("netdetect_peers"))
    fleet = Fleet(line(node_doc("192.0.2.12", "10.20.0.12")), line(liar))
    assert validate(monkeypatch, tmp_path, fleet) == 1
    results = strict_json((tmp_path / "out" / "results.json").read_text())
    allreduce = next(r for r in results["results"] if r["host"] == "fleet" and r["check"] == "allreduce_across_nodes")
    assert allreduce["message"] == "1 of 3 node(s) failed: evil (rank 0 and 1 never reached the all_reduce)"
    assert {h: results["host_status"][h]["status"] for h in ("n0", "n1", "evil")} == \
        {"n0": "passed", "n1": "passed", "evil": "failed"}


def test_a_claim_about_a_peer_is_believed_only_of_a_peer_that_failed_itself():
    said = rec("allreduce_across_nodes", "failed", "all_reduce of 1 KiB did not complete", data={"stuck_nodes": [1, 2]})
    phase = {"n0": Outcome("ran", document=fleet_doc(said)),
             "n1": Outcome("ran", document=fleet_doc(rec("allreduce_across_nodes"))),
             "n2": Outcome("error", "the validation artefact gave no result (exit 137): Killed")}
    [record] = [r for r in merge.fleet_records(phase, ["n0", "n1", "n2"]) if r["check"] == "allreduce_across_nodes"]
    assert record["message"] == (
        "2 of 3 node(s) failed: n2 (the other nodes waited for it: it never reached the collective; error: the "
        "validation artefact gave no result (exit 137): Killed); n0 (all_reduce of 1 KiB did not complete)")
    # a member that sent no record of a check the others ran failed it
    silent = {**phase, "n2": Outcome("ran", document=fleet_doc(rec("netdetect_peers")))}
    [record] = [r for r in merge.fleet_records(silent, ["n0", "n1", "n2"]) if r["check"] == "allreduce_across_nodes"]
    assert record["message"] == ("2 of 3 node(s) failed: n2 (the other nodes waited for it: it never reached the "
                                 "collective; it sent no result for this check); n0 (all_reduce of 1 KiB did not "
                                 "complete)")


def test_a_hostile_fleet_phase_document_fails_that_node_alone(monkeypatch, tmp_path, capsys):
    fleet = Fleet(line(node_doc("192.0.2.12", "10.20.0.12")), line(fleet_doc(rec("allreduce_across_nodes", "BAD"))))
    assert validate(monkeypatch, tmp_path, fleet) == 1
    results = assert_reports_intact(tmp_path / "out", capsys.readouterr().out)
    suite = [r for r in results["results"] if r["host"] == "evil" and r["check"] == "suite"]
    assert [r["message"] for r in suite] == ["the node's result document was refused: results[0].status: 'BAD' is "
                                             "not one of passed, warning, failed, error, skipped"]
    fleet_checks = {r["check"]: r["message"] for r in results["results"] if r["host"] == "fleet"}
    assert fleet_checks["allreduce_across_nodes"].startswith("1 of 3 node(s) failed: evil (error: its result "
                                                             "document was refused: results[0].status: 'BAD'")


def test_a_nodes_own_records_are_fitted_into_the_schema_before_they_are_sent(tmp_path):
    """The results plugin (on the node): a NaN figure or a long message must not make
    the controller refuse an honest node."""
    from types import SimpleNamespace

    from validation.node.results import Collector

    collector = Collector(tmp_path / "results.json")
    collector.records["test_train[local]"] = rec("train", "failed", "loss " + "x" * 20_000,
                                                 data={"samples_per_s": float("nan"), "last_loss": float("inf")})
    collector.pytest_sessionfinish(SimpleNamespace(config=SimpleNamespace()))
    [sent] = json.loads((tmp_path / "results.json").read_text(), parse_constant=lambda c: pytest.fail(c))["results"]
    assert sent["data"] == {"samples_per_s": "nan", "last_loss": "inf"}
    assert document.check(node_doc(results=[sent]))["results"][0]["message"].endswith("... (3661 more characters)")

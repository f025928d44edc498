"""`npuenv validate` as a library call (validation/run.py), with fake targets:
what each host is checked against and the arguments it gets, what the report's
meta says of the locks, what is printed, and the messages of refused input."""
from __future__ import annotations

import json
import zipfile

import pytest

import compat_matrix as cm
from compat_matrix import lock
from compat_matrix.errors import UserError
from validation import artefact, run, targets
from validation.merge import Outcome

M = cm.load_matrix()
ROW = "2.13.0"


def made(**constraints) -> lock.Lock:
    return lock.make(M, lock.constraints_from_mapping({"row": ROW, "python": "3.11", **constraints}))


def rec(check, status="passed", message=""):
    return {"host": "local://", "check": check, "level": "quick", "status": status, "duration_s": 0.5,
            "message": message, "data": None}


def doc(*records, **extra):
    return {"format": 1, "hostname": "x", "addresses": ["192.168.1.10"], "python": "3.11.2", "level": "quick",
            "fleet": False, "results": list(records) or [rec("npu_health")], "pytest_exit": 0, "duration_s": 1.5,
            **extra}


def info(lk: lock.Lock, source: str = "given", **row) -> dict:
    return {lock.FORMAT_KEY: lock.FORMAT, "digest": lk.digest, "entry": "x86_64/debian12", "source": source,
            **{k: lk.row[k] for k in ("torch_npu", "torch", "cann", "python", "chip")}, **row}


class Recorder:
    """A transport whose hosts all pass, recording the arguments they were given."""
    fleet_member = True

    def __init__(self, hosts, documents=None):
        self.hosts, self.documents, self.args = list(hosts), documents or {}, {}

    def run(self, artefact_path, args, done=None):
        self.args.update(args)
        return {h: Outcome("ran", document=self.documents.get(h) or doc()) for h in args}


def planned(monkeypatch, transport, hints=None):
    monkeypatch.setattr(run, "plan", lambda *a, **k: ([transport], hints or {}))


# --- refused input ------------------------------------------------------------------------

def test_an_unknown_level_is_refused_naming_the_levels(tmp_path):
    with pytest.raises(UserError) as e:
        run.validate(["local"], "thorough", cm.Constraints(torch_npu=ROW), tmp_path / "out")
    assert str(e.value) == "unknown level 'thorough'; use quick, standard or full"


def test_an_image_target_needs_the_host_root_to_be_a_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(run, "plan", lambda *a, **k: pytest.fail("planned a run for a bad --host-root"))
    with pytest.raises(UserError) as e:
        run.validate(["local", "image:localhost/x:1"], "quick", cm.Constraints(torch_npu=ROW), tmp_path / "out",
                     host_root=str(tmp_path / "none"))
    assert str(e.value) == (f"--host-root {tmp_path}/none: no such folder; give the folder the host's /dev and NPU "
                            f"driver are under (default /)")


def test_the_host_root_is_not_looked_at_without_an_image_target(tmp_path, monkeypatch):
    planned(monkeypatch, Recorder(["a"]))
    assert run.validate(["local"], "quick", cm.Constraints(torch_npu=ROW), tmp_path / "out",
                        host_root=str(tmp_path / "none"), quiet=True) == 0


def test_a_lock_beside_constraints_is_refused_in_the_library_too():
    lk = made()
    with pytest.raises(UserError) as e:
        run.expectations(["a"], {}, cm.Constraints(python="3.11"), lk, M)
    assert str(e.value) == "a lock and row constraints (python=3.11): give one or the other"


def test_constraints_no_row_fits_say_so_and_how_to_see_the_rows(tmp_path, monkeypatch):
    planned(monkeypatch, Recorder(["a"]))
    with pytest.raises(UserError) as e:
        run.validate(["local"], "quick", cm.Constraints(torch_npu="2.13.0", python="3.8"), tmp_path / "out",
                     quiet=True)
    assert str(e.value).startswith("no matrix row fits torch_npu=2.13.0, python=3.8.\n")
    assert str(e.value).endswith("\nthe hosts are checked against one row (the constraints given): change the "
                                 "constraints to fit one (`npuenv matrix list` shows the rows and their Pythons)")


# --- what each host is checked against -----------------------------------------------------

def test_each_host_gets_the_lock_the_level_backend_options_and_only_checks(tmp_path, monkeypatch):
    fleet = Recorder(["a", "b"])
    planned(monkeypatch, fleet)
    lk = made()
    assert run.validate(["local"], "standard", cm.Constraints(), tmp_path / "out", lock=lk, backend="podman",
                        suite_options=["--npuenv-margin=0.2"], only=["npu_health", "driver_version"], quiet=True) == 0
    expected = ["--lock", lk.digest, "--level", "standard", "--npuenv-backend=podman", "--npuenv-margin=0.2",
                "--only", "npu_health", "--only", "driver_version"]
    assert fleet.args == {"a": expected, "b": expected}
    meta = json.loads((tmp_path / "out" / "results.json").read_text())["meta"]
    assert (meta["level"], meta["backend"], meta["targets"]) == ("standard", "podman", ["local"])


def test_constraints_take_the_targets_row_but_never_its_platform():
    hint = cm.Constraints(torch_npu="==2.12.0", chip="a3", arch="aarch64", os="ubuntu22.04")
    args, locks = run.expectations(["a", "b"], {"row": hint}, cm.Constraints(python="3.10"), None, M)
    [(digest, sent)] = locks.items()
    assert args == {"a": ["--lock", digest], "b": ["--lock", digest]}
    assert (sent.row["torch_npu"], sent.row["python"], sent.row["chip"]) == ("2.12.0", "3.10", "a3")
    assert {e["arch"] for e in sent.entries.values()} == {"x86_64", "aarch64"} and len(sent.entries) == 8
    # the command line wins over the targets' row
    args, locks = run.expectations(["a"], {"row": hint}, cm.Constraints(torch_npu="2.13.0"), None, M)
    assert [lk.row["torch_npu"] for lk in locks.values()] == ["2.13.0"]


def test_without_a_lock_or_constraints_each_host_reads_its_own(capsys):
    a3 = made(chip="a3")
    images = {"img-digest": targets.ImageLock(a3.digest, None),
              "img-row": targets.ImageLock(None, cm.Constraints(torch_npu="==2.13.0", python="3.11", chip="a3"))}
    logged = []
    args, locks = run.expectations(["node", "img-digest", "img-row"], {"row": None, "images": images},
                                   cm.Constraints(), None, M, log=logged.append)
    [(digest, from_row)] = locks.items()
    assert args == {"node": ["--recorded-lock"], "img-digest": ["--recorded-lock", "--lock-digest", a3.digest],
                    "img-row": ["--lock", digest]}
    assert from_row.row["chip"] == "a3"
    assert logged == ["img-row holds no lock (built before npuenv images carried one): checked against the row its "
                      "labels name, torch_npu 2.13.0, Python 3.11, chip a3; rebuild it to carry its lock"]
    # without a log nothing is said
    assert run.expectations(["img-row"], {"images": images}, cm.Constraints(), None, M)[0] == {
        "img-row": ["--lock", digest]}
    assert run.expectations(["n"], None, cm.Constraints(), None, M) == ({"n": ["--recorded-lock"]}, {})


def test_an_image_of_no_lock_and_no_row_labels_is_refused():
    with pytest.raises(UserError) as e:
        run.expectations(["image:x"], {"images": {"image:x": targets.ImageLock(None, None)}}, cm.Constraints(),
                         None, M)
    assert str(e.value) == ("image:x carries neither a lock nor npuenv's row labels (not built by `npuenv image "
                            "build`): pass --lock FILE or --row")


def test_an_image_whose_labels_name_no_row_of_the_matrix_is_refused():
    images = {"image:x": targets.ImageLock(None, cm.Constraints(torch_npu="==2.13.0", python="3.8"))}
    with pytest.raises(UserError) as e:
        run.expectations(["image:x"], {"images": images}, cm.Constraints(), None, M)
    assert "\nthe hosts are checked against one row (the row image:x's labels name): change the constraints" \
        in str(e.value)


# --- what the report's meta says of the locks -------------------------------------------------

ROW_KEYS = ("torch_npu", "torch", "cann", "python", "chip")


def test_hosts_that_share_a_lock_name_it_and_its_row():
    lk = made()
    outcomes = {"a": Outcome("ran", document=doc(lock=info(lk))), "b": Outcome("ran", document=doc(lock=info(lk))),
                "c": Outcome("unreachable", "down")}
    meta = run.lock_meta(["a", "b", "c"], outcomes, {})
    assert meta == {lock.FORMAT_KEY: lock.FORMAT, "locks": {"a": info(lk), "b": info(lk), "c": None},
                    "lock": lk.digest, **{k: lk.row[k] for k in ROW_KEYS}}


def test_the_row_of_a_lock_the_controller_sent_is_its_own():
    lk = made()
    # what a node says of the row is not what the report names when the controller knows the lock
    outcomes = {"a": Outcome("ran", document=doc(lock=info(lk, torch="0.0.1")))}
    assert run.lock_meta(["a"], outcomes, {lk.digest: lk})["torch"] == lk.row["torch"]
    # nobody said anything: the lock the controller sent
    meta = run.lock_meta(["a"], {"a": Outcome("unreachable", "down")}, {lk.digest: lk})
    assert meta == {lock.FORMAT_KEY: lock.FORMAT, "locks": {"a": None}, "lock": lk.digest,
                    **{k: lk.row[k] for k in ROW_KEYS}}


def test_a_row_field_a_node_leaves_out_is_left_out():
    lk = made()
    said = {k: v for k, v in info(lk).items() if k != "chip"}
    meta = run.lock_meta(["a"], {"a": Outcome("ran", document=doc(lock=said))}, {})
    assert "chip" not in meta and meta["cann"] == lk.row["cann"]


def test_hosts_on_different_locks_are_per_host_and_no_lock_at_all_is_unknown():
    one, two = made(), made(chip="a3")
    outcomes = {"a": Outcome("ran", document=doc(lock=info(one))), "b": Outcome("ran", document=doc(lock=info(two)))}
    meta = run.lock_meta(["a", "b"], outcomes, {one.digest: one})
    assert meta == {lock.FORMAT_KEY: lock.FORMAT, "locks": {"a": info(one), "b": info(two)}, "lock": None,
                    **{k: "per host" for k in ROW_KEYS}}
    meta = run.lock_meta(["a"], {"a": Outcome("ran", document=doc())}, {})
    assert meta == {lock.FORMAT_KEY: lock.FORMAT, "locks": {"a": None}, "lock": None,
                    **{k: "unknown" for k in ROW_KEYS}}


# --- what is printed ---------------------------------------------------------------------------

def test_a_run_prints_the_report_and_where_the_reports_are(tmp_path, monkeypatch, capsys):
    planned(monkeypatch, Recorder(["a"]))
    out = tmp_path / "out"
    assert run.validate(["local"], "quick", cm.Constraints(torch_npu=ROW), out) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("npuenv validate: level quick, row torch_npu 2.13.0")
    assert printed.splitlines()[-1].startswith("reports: ")
    reports = printed.splitlines()[-1].removeprefix("reports: ").split(", ")
    assert sorted(reports) == sorted(str(p) for p in out.iterdir())


def test_a_quiet_run_prints_nothing(tmp_path, monkeypatch, capsys):
    images = {"a": targets.ImageLock(None, cm.Constraints(torch_npu="==2.13.0", python="3.11"))}
    planned(monkeypatch, Recorder(["a"]), {"row": None, "images": images})
    assert run.validate(["local"], "quick", cm.Constraints(), tmp_path / "out", quiet=True) == 0
    assert capsys.readouterr() == ("", "")


def test_a_host_of_an_old_image_is_named_on_stderr(tmp_path, monkeypatch, capsys):
    images = {"a": targets.ImageLock(None, cm.Constraints(torch_npu="==2.13.0", python="3.11"))}
    planned(monkeypatch, Recorder(["a"]), {"row": None, "images": images})
    assert run.validate(["local"], "quick", cm.Constraints(), tmp_path / "out") == 0
    err = capsys.readouterr().err
    assert err.startswith("npuenv: a holds no lock (built before npuenv images carried one): checked against the row")


def test_nothing_checked_quotes_each_hosts_reason_to_300_characters(tmp_path, monkeypatch):
    class Down:
        fleet_member, hosts = True, ["a"]

        def run(self, artefact_path, args, done=None):
            return {"a": Outcome("unreachable", "r" * 300 + "TAIL")}

    planned(monkeypatch, Down())
    with pytest.raises(UserError) as e:
        run.validate(["local"], "quick", cm.Constraints(torch_npu=ROW), tmp_path / "out")
    assert str(e.value).startswith(f"no check ran on any target (a: unreachable {'r' * 300}); ")


def test_expected_stack_is_the_rows_environment_and_the_modules_cann_needs():
    stack = cm.resolve(M, cm.Constraints(torch_npu="==" + ROW, python="3.11", arch="x86_64")).stack
    got = run.expected_stack(stack)
    assert got["cann_python_modules"] == sorted(set(M.platforms.cann_python_deps.values()))
    assert {k: got[k] for k in ("torch_npu", "python")} == {"torch_npu": ROW, "python": "3.11"}


# --- each option is named when it is wrong -----------------------------------------------------

@pytest.mark.parametrize("kwargs, message", [
    ({"only": ["no_such_check"]}, "--only: no check is named 'no_such_check'; the checks are: "),
    ({"only": ["allreduce_across_nodes"]},
     "--only allreduce_across_nodes (a full check): --level quick does not run it; pass --level full"),
    ({"straggler_margin": -1.0}, "--straggler-margin: -1 is out of range; give at least 0.0 and less than 1.0"),
    ({"fleet_port": 0}, "--fleet-port: 0 is out of range; give 1 to 65535"),
    ({"straggler_min_peers": 1}, "--straggler-min-peers: 1 is out of range; give 2 or more"),
])
def test_a_wrong_option_is_named_before_anything_runs(tmp_path, monkeypatch, kwargs, message):
    monkeypatch.setattr(run, "plan", lambda *a, **k: pytest.fail("planned a run for a wrong option"))
    with pytest.raises(UserError) as e:
        run.validate(["local"], "quick", cm.Constraints(torch_npu=ROW), tmp_path / "out", **kwargs)
    assert str(e.value).startswith(message)
    assert not (tmp_path / "out").exists()


def test_an_out_that_is_a_file_is_named_as_out(tmp_path, monkeypatch):
    monkeypatch.setattr(run, "plan", lambda *a, **k: pytest.fail("planned a run for a wrong --out"))
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError) as e:
        run.validate(["local"], "quick", cm.Constraints(torch_npu=ROW), tmp_path / "file")
    assert str(e.value).startswith("--out ")


def test_the_matrix_named_is_the_one_read(tmp_path, monkeypatch):
    monkeypatch.setattr(run, "plan", lambda *a, **k: pytest.fail("planned a run without a matrix"))
    with pytest.raises(cm.MatrixError) as e:
        run.validate(["local"], "quick", cm.Constraints(torch_npu=ROW), tmp_path / "out",
                     matrix=str(tmp_path / "none.yaml"))
    assert str(e.value).startswith(f"{tmp_path}/none.yaml:1: cannot read the file: it is missing")


def test_the_backend_is_auto_unless_given(tmp_path, monkeypatch):
    fleet = Recorder(["a"])
    planned(monkeypatch, fleet)
    assert run.validate(["local"], "quick", cm.Constraints(torch_npu=ROW), tmp_path / "out", quiet=True) == 0
    assert "--npuenv-backend=auto" in fleet.args["a"]
    assert json.loads((tmp_path / "out" / "results.json").read_text())["meta"]["backend"] == "auto"


def test_an_interrupted_run_says_validate_was_interrupted_and_leaves_no_work_folder(tmp_path, monkeypatch):
    import os
    import signal
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    seen = []

    class Stopped(Recorder):
        def run(self, artefact_path, args, done=None):
            seen.append(artefact_path)
            os.kill(os.getpid(), signal.SIGTERM)
            return super().run(artefact_path, args)

    planned(monkeypatch, Stopped(["a"]))
    with pytest.raises(UserError) as e:
        run.validate(["local"], "quick", cm.Constraints(torch_npu=ROW), tmp_path / "out", quiet=True)
    assert str(e.value) == ("validate: interrupted by SIGTERM; its temporary files are removed and nothing was "
                            "written")
    [artefact_path] = seen
    # the artefact is the controller's cached one (kept, whole, for the next run); the work folder is gone
    assert artefact_path.parent == artefact.cache_dir() and zipfile.is_zipfile(artefact_path)
    assert list((tmp_path / "tmp").iterdir()) == []
    assert not (tmp_path / "out" / "results.json").exists()


def test_a_host_that_said_nothing_before_those_that_did_is_no_matter():
    lk = made()
    outcomes = {"down": Outcome("unreachable", "down"), "a": Outcome("ran", document=doc(lock=info(lk)))}
    meta = run.lock_meta(["gone", "down", "a"], outcomes, {})
    assert meta == {lock.FORMAT_KEY: lock.FORMAT, "locks": {"gone": None, "down": None, "a": info(lk)},
                    "lock": lk.digest, **{k: lk.row[k] for k in ROW_KEYS}}


# --- validate with its real targets (podman and ansible-playbook faked) ----------------------------

def test_validate_starts_images_with_the_host_root_and_run_args_and_reaches_ssh_hosts(tmp_path, monkeypatch):
    import subprocess
    from pathlib import Path

    from ansible_run import run as playbooks_run

    root = tmp_path / "host"
    (root / "dev").mkdir(parents=True)
    (root / "dev" / "davinci0").write_text("")
    calls = []
    node_doc = json.dumps(doc())

    def podman(cmd, **kwargs):
        args = cmd[1:]
        calls.append(args)
        if args[:2] == ["image", "inspect"]:
            return subprocess.CompletedProcess(cmd, 0, json.dumps([{"Labels": {}}]), "")
        if args[:2] == ["container", "inspect"]:
            return subprocess.CompletedProcess(cmd, 0, "true", "")
        if args[0] == "exec" and args[2] == "bash":
            return subprocess.CompletedProcess(cmd, 0, node_doc + "\n", "")
        return subprocess.CompletedProcess(cmd, 0, "", "")

    inventories = []

    def read_inventory(inventory, limit=None):
        inventories.append(Path(inventory))
        groups = json.loads(Path(inventory).read_text())["all"]["children"]
        return {**groups, "_meta": {"hostvars": groups["npu_nodes"]["hosts"]}}

    def run_playbook(playbook, inventory, *, limit, extra_vars, npuenv_vars, capture, env, hosts, hostvars):
        assert hosts == ["ops@n1:22"] and hostvars["ops@n1:22"]["ansible_user"] == "ops"   # the inventory read once
        tree = Path(env["ANSIBLE_CALLBACK_TREE_DIR"])
        tree.mkdir()
        (tree / "ops@n1:22").write_text(json.dumps({"rc": 0, "stdout": node_doc, "stderr": ""}))
        return subprocess.CompletedProcess([], 0, "", "")

    monkeypatch.setattr(targets.shutil, "which", lambda name: "/usr/bin/podman" if name == "podman" else None)
    monkeypatch.setattr(targets.interrupts, "run", podman)
    monkeypatch.setattr(playbooks_run, "read_inventory", read_inventory)
    monkeypatch.setattr(playbooks_run, "run_playbook", run_playbook)
    out = tmp_path / "out"
    assert run.validate(["image:localhost/t:1", "ssh://ops@n1"], "quick", cm.Constraints(torch_npu=ROW), out,
                        host_root=str(root), run_args=["--cpus", "2"], quiet=True) == 0
    [started] = [c for c in calls if c[0] == "run"]
    name = started[started.index("--name") + 1]
    assert started[4:6] == ["--device", f"{root}/dev/davinci0:/dev/davinci0"]
    assert started[-7:] == ["--cpus", "2", "--entrypoint", "sleep", "--", "localhost/t:1", "infinity"]
    [copied] = [c for c in calls if c[0] == "cp"]
    assert Path(copied[1]).parent == artefact.cache_dir()             # the controller's cached artefact
    assert calls[-1] == ["rm", "-f", "-t", "0", name]           # the container is removed at the end
    [inventory] = inventories
    assert inventory.name == "ssh-inventory.yml" and inventory.parent.name.startswith("npuenv-validate-")
    assert not inventory.parent.exists()                           # and the run's work folder
    results = json.loads((out / "results.json").read_text())
    assert {h: s["status"] for h, s in results["host_status"].items()} == {"image:localhost/t:1": "passed",
                                                                           "ops@n1:22": "passed"}


def test_two_pairs_of_names_for_one_machine_are_each_named(tmp_path, monkeypatch):
    from validation.node import identity

    mids = {"a": "1" * 32, "b": "1" * 32, "c": "2" * 32, "d": "2" * 32}
    docs = {h: doc(machine_id=m) for h, m in mids.items()}
    planned(monkeypatch, Recorder(list(mids), docs))
    with pytest.raises(UserError) as e:
        run.validate(["local"], "quick", cm.Constraints(torch_npu=ROW), tmp_path / "out", quiet=True)
    groups = identity.clashes(docs)
    assert len(groups) == 2
    assert str(e.value) == (f"targets that reach one machine: {groups[0]}; {groups[1]}; {identity.FIX}; "
                            f"nothing was reported")


def test_the_fleet_phase_runs_the_same_artefact_and_its_records_name_their_hosts(tmp_path, monkeypatch):
    from validation.merge import FLEET_CHECKS

    class Fleet(Recorder):
        artefacts = []

        def run(self, artefact_path, args, done=None):
            self.artefacts.append(artefact_path)
            fleet = any("--fleet" in a for a in args.values())
            records = [dict(rec(c), level="full") for c in FLEET_CHECKS] if fleet else [rec("npu_health")]
            return {h: Outcome("ran", document=doc(*records)) for h in args}

    fleet = Fleet(["n0", "n1"])
    planned(monkeypatch, fleet)
    assert run.validate(["local"], "full", cm.Constraints(torch_npu=ROW), tmp_path / "out", quiet=True) == 0
    assert len(fleet.artefacts) == 2 and fleet.artefacts[0] == fleet.artefacts[1]
    results = json.loads((tmp_path / "out" / "results.json").read_text())["results"]
    assert sorted((r["host"], r["check"]) for r in results) == sorted(
        [("n0", "npu_health"), ("n1", "npu_health")] + [(h, c) for h in ("n0", "n1", "fleet") for c in FLEET_CHECKS])


def test_the_straggler_margin_given_is_the_reports(tmp_path, monkeypatch):
    planned(monkeypatch, Recorder(["a"]))
    assert run.validate(["local"], "quick", cm.Constraints(torch_npu=ROW), tmp_path / "out", straggler_margin=0.25,
                        quiet=True) == 0
    assert json.loads((tmp_path / "out" / "results.json").read_text())["straggler_margin"] == 0.25


class Down:
    fleet_member, hosts = True, ["a"]

    def run(self, artefact_path, args, done=None):
        return {"a": Outcome("unreachable", "Connection refused")}


def test_when_nothing_was_checked_and_the_metrics_cannot_be_written_the_message_says_why(tmp_path, monkeypatch):
    planned(monkeypatch, Down())

    def full(*args, **kwargs):
        raise UserError(f"cannot write {tmp_path}/out/metrics.prom: No space left on device")

    monkeypatch.setattr(run.report, "write_all", full)
    with pytest.raises(UserError) as e:
        run.validate(["local"], "quick", cm.Constraints(torch_npu=ROW), tmp_path / "out")
    assert str(e.value) == (f"no check ran on any target (a: unreachable Connection refused); cannot write "
                            f"{tmp_path}/out/metrics.prom: No space left on device")


def trained(samples_per_s: float) -> dict:
    """A node's document whose train check measured ``samples_per_s`` five times."""
    return doc(dict(rec("train"), level="standard", data={"samples_per_s": samples_per_s,
                                                          "samples_per_s_repeats": [samples_per_s] * 5}))


def flagged(tmp_path, transports, **kwargs) -> list[str]:
    out = tmp_path / "out"
    run.validate(["local"], "standard", cm.Constraints(torch_npu=ROW), out, quiet=True, **kwargs)
    return [s["host"] for s in json.loads((out / "results.json").read_text())["stragglers"]]


def test_a_slow_node_is_a_straggler_only_among_enough_peers_of_its_kind(tmp_path, monkeypatch):
    nodes = Recorder(["n0", "n1", "n2", "n3"], {"n0": trained(20.0), **{h: trained(100.0) for h in ("n1", "n2", "n3")}})
    monkeypatch.setattr(run, "plan", lambda *a, **k: ([nodes], {}))
    assert flagged(tmp_path / "a", [nodes], straggler_min_peers=4) == ["n0"]
    assert flagged(tmp_path / "b", [nodes], straggler_min_peers=5) == []     # four hosts are too few peers

    # An image runs in a container on the controller: slow as it may be, it is no node's peer.
    image = Recorder(["image:x"], {"image:x": trained(20.0)})
    image.fleet_member = False
    healthy = Recorder(["n1", "n2", "n3", "n4"], {h: trained(100.0) for h in ("n1", "n2", "n3", "n4")})
    monkeypatch.setattr(run, "plan", lambda *a, **k: ([healthy, image], {}))
    assert flagged(tmp_path / "c", [healthy, image], straggler_min_peers=4) == []

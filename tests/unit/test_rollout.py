"""The rolling, gated deploy (playbooks/rollout.py) on a fake fleet: batching in inventory order,
the stop rule, the preflight of the whole run, every outcome in the summary, the rerun command
(parsed with shlex and run as printed), the log folder, the exit codes, an interrupt. Ansible
and validation are stand-ins that answer as the real ones do (the npuenv_outcomes callback's
file, the tree callback's files, validate's results.json); no node is reached."""
from __future__ import annotations

import hashlib
import json
import shlex
import signal
import subprocess
from pathlib import Path

import pytest

from compat_matrix import interrupts
from compat_matrix import lock as lock_mod
from compat_matrix.errors import UserError
from npuenv import cli
from ansible_run import run
from playbooks import rollout, status
from validation.node import model
from playbooks.collections.ansible_collections.npuenv.ascend.plugins.callback import npuenv_outcomes
from tests.unit import status_fakes as fakes

BUSY_MESSAGE = ("NPUs 0, 3 run processes (pid 4000 python3, pid 4003 python3); training may be running: set "
                "npuenv_allow_busy: true to deploy anyway")


class FakeFleet:
    """Nodes (a facts document each, or unreachable), what site.yml does to each, what the gate finds."""

    def __init__(self, tmp: Path, hosts: list[str], lock_old: lock_mod.Lock | None = None):
        self.tmp, self.hosts = tmp, hosts
        self.nodes: dict[str, object] = {h: fakes.facts(i, lock=lock_old, deployed=lock_old is not None)
                                         for i, h in enumerate(hosts)}
        self.index = {h: i for i, h in enumerate(hosts)}
        self.deploy_does: dict[str, str] = {}     # host -> ok (default), nochange, fail, busy, unreachable
        self.gate_finds: dict[str, str] = {}      # host -> passed (default), failed
        self.hostvars: dict[str, dict] = {h: {} for h in hosts}
        self.site_runs: list[dict] = []
        self.gates: list[list[str]] = []
        self.gate_extra_vars: list[tuple[str, ...]] = []
        self.reads: list[list[str]] = []
        self.interrupt_at_batch: int | None = None
        self.target: lock_mod.Lock | None = None

    # ansible_run.run.run_playbook
    def run_playbook(self, playbook, inventory, *, check=False, tags=None, skip_tags=None, limit=None,
                     extra_vars=None, capture=False, env=None, hosts=None, log=None, npuenv_vars=None, **kw):
        hosts = hosts or limit.split(",")
        if playbook == status.PLAYBOOK:
            self.reads.append(list(hosts))
            tree = Path(env["ANSIBLE_CALLBACK_TREE_DIR"])
            tree.mkdir(parents=True, exist_ok=True)
            for h in hosts:
                node = self.nodes[h]
                result = {"unreachable": True, "msg": "Failed to connect to the host via ssh: Connection timed out"} \
                    if node == "unreachable" else {"rc": 0, "stdout": fakes.stdout_of(node)}
                (tree / h).write_text(json.dumps(result))
            return subprocess.CompletedProcess([], 0, "", "")
        assert playbook == rollout.PLAYBOOK
        password = run.ansible_env().get("ANSIBLE_BECOME_PASSWORD_FILE")
        self.site_runs.append({"hosts": list(hosts), "check": check, "tags": tags, "skip_tags": skip_tags,
                               "extra_vars": extra_vars, "npuenv_vars": npuenv_vars,
                               "ask": kw.get("ask_become_pass", False),
                               "password": (password, Path(password).read_text()) if password else None})
        if self.interrupt_at_batch == len(self.site_runs):
            raise interrupts.Interrupted(signal.SIGTERM, "ansible-playbook site.yml")
        # npuenv's own, apart from the user's -e: they do not part the hosts' SSH connections (run.connection_key)
        lock_file = next(e for e in npuenv_vars if e.startswith("@"))[1:]
        assert "npuenv_lock:" in Path(lock_file).read_text() and "!unsafe" in Path(lock_file).read_text()
        outcomes = {}
        for h in hosts:
            does = self.deploy_does.get(h, "ok")
            log(f"TASK [Driver | Install] {h}\n")
            counts = {"ok": 20, "changed": 0, "failures": 0, "unreachable": 0, "skipped": 3, "rescued": 0,
                      "ignored": 0}
            if does in ("ok", "marker"):
                counts["changed"] = 7
                if not check:
                    self.nodes[h] = fakes.facts(self.index[h], lock=self.target)
                if does == "marker":   # site.yml ended well, yet the in-progress marker is still on the node
                    recs = fakes.records(self.target)
                    recs["deploying"] = {"npuenv_deploying": 1, "lock_digest": self.target.digest,
                                         "from_lock_digest": None, "started": "2026-12-05T01:00:00Z"}
                    self.nodes[h] = fakes.facts(self.index[h], lock=self.target, records=recs)
            elif does == "fail":
                counts.update(failures=1, failed_task="CANN | Verify the toolkit installer",
                              message="Ascend-cann-toolkit_9.1.0_linux-x86_64.run is corrupt or not the vendor's "
                                      "file: sha256 1234 != abcd")
            elif does == "busy":
                counts.update(failures=1, failed_task="Preflight | Refuse a node whose NPUs are in use",
                              message=BUSY_MESSAGE)
            elif does == "unreachable":
                counts.update(unreachable=1, failed_task="Gathering Facts",
                              message="Failed to connect to the host via ssh: No route to host")
            outcomes[h] = counts
        Path(env["NPUENV_OUTCOMES"]).write_text(json.dumps(outcomes))
        log("PLAY RECAP\n")
        return subprocess.CompletedProcess([], 2 if any(o.get("failures") for o in outcomes.values()) else 0)

    # validation.run.validate
    def validate(self, targets, level, constraints, out_dir, **kw):
        [target] = targets
        hosts = target.pattern.split(",")
        assert target.known == (tuple(hosts), self.hostvars)   # as the deploy read the inventory: not read again
        self.gates.append(hosts)
        self.gate_extra_vars.append(target.extra_vars)
        print(f"validation at {level}: {len(hosts)} host(s)")
        status_of = {h: {"status": self.gate_finds.get(h, "passed"), "reason": ""} for h in hosts}
        failures = [{"check": "npu_health", "cause": "NPU 3 reports Critical", "hosts": [h]}
                    for h in hosts if self.gate_finds.get(h) == "failed"]
        Path(out_dir).mkdir(parents=True)
        (Path(out_dir) / "results.json").write_text(json.dumps({model.RESULTS_KEY: model.RESULTS_VERSION,
                                                                "host_status": status_of, "failures": failures}))
        return 1 if failures else 0


@pytest.fixture
def lock_a(tmp_path_factory):
    return fakes.make_lock(tmp=tmp_path_factory.mktemp("a"))


@pytest.fixture
def fleet(monkeypatch, tmp_path, lock_a):
    from validation import run as validation_run

    f = FakeFleet(tmp_path, [f"npu-{i}" for i in range(7)])
    f.target = lock_a
    f.lock_file = lock_mod.write(lock_a, tmp_path / "a.lock.json")
    monkeypatch.setattr(run, "run_playbook", f.run_playbook)
    monkeypatch.setattr(run, "fleet", lambda inventory, limit=None: (
        [h for h in f.hosts if not limit or h in limit.split(",")], f.hostvars))
    monkeypatch.setattr(validation_run, "validate", f.validate)
    monkeypatch.chdir(tmp_path)
    return f


def deploy(fleet, *args) -> tuple[int, dict, Path]:
    code = cli.main(["deploy", "-i", "hosts.yml", "--lock", str(fleet.lock_file), *args])
    folders = sorted((fleet.tmp / "out" / "deploy").iterdir())
    summary = json.loads((folders[-1] / "summary.json").read_text())
    assert list(summary.items())[0] == ("npuenv_deploy_summary", 1)   # its format, first
    return code, summary, folders[-1]


def outcome(summary: dict) -> dict[str, tuple]:
    return {h["host"]: (h["batch"], h["outcome"], h["gate"]) for h in summary["hosts"]}


# --- batches and the stop rule ---------------------------------------------------------------------

def test_batches_keep_the_inventory_order_and_size():
    assert rollout.batches(list("abcdefg"), 3) == [["a", "b", "c"], ["d", "e", "f"], ["g"]]
    assert rollout.batches(list("ab"), 10) == [["a", "b"]]
    for bad in (0, -1, True, 1.5):
        with pytest.raises(UserError, match="--batch-size"):
            rollout.batches(["a"], bad)


def test_every_host_converges_batch_by_batch_and_the_run_is_ok(fleet, lock_a, capsys):
    code, summary, folder = deploy(fleet, "--batch-size", "3")
    assert code == 0, capsys.readouterr()
    assert [r["hosts"] for r in fleet.site_runs] == [["npu-0", "npu-1", "npu-2"], ["npu-3", "npu-4", "npu-5"],
                                                     ["npu-6"]]
    assert fleet.gates == [["npu-0", "npu-1", "npu-2"], ["npu-3", "npu-4", "npu-5"], ["npu-6"]]
    # the whole run is read before batch 1 (its identities compared there, so no batch compares them again)
    # and after the last
    assert fleet.reads == [fleet.hosts, fleet.hosts]
    assert [r["skip_tags"] for r in fleet.site_runs] == [[run.IDENTITY_TAG]] * 3
    assert all(h["outcome"] == "changed" and h["gate"] == "passed" and h["at_lock"] for h in summary["hosts"])
    assert summary["rerun"] is None and summary["exit"] == 0
    assert summary["hosts"][0]["at"] == f"{lock_a.digest[:19]} torch_npu 2.13.0 (CANN 9.1.0)"


def test_a_failed_batch_stops_the_roll_and_names_the_hosts_not_attempted(fleet, capsys):
    fleet.deploy_does["npu-3"] = "fail"
    code, summary, folder = deploy(fleet, "--batch-size", "2")
    assert code == 1
    got = outcome(summary)
    assert got["npu-0"] == got["npu-1"] == (1, "changed", "passed")
    assert got["npu-2"] == (2, "changed", "passed") and got["npu-3"] == (2, "failed", "not run")
    for h in ("npu-4", "npu-5", "npu-6"):
        assert got[h] == (None, "not attempted", "not run")
    assert [r["hosts"] for r in fleet.site_runs] == [["npu-0", "npu-1"], ["npu-2", "npu-3"]]   # no batch 3
    assert fleet.gates == [["npu-0", "npu-1"], ["npu-2"]]           # the failed host is not validated
    by_host = {h["host"]: h for h in summary["hosts"]}
    assert by_host["npu-3"]["cause"] == ("CANN | Verify the toolkit installer: Ascend-cann-toolkit_9.1.0_linux-x86_64"
                                         ".run is corrupt or not the vendor's file: sha256 1234 != abcd")
    assert by_host["npu-5"]["cause"] == "the roll stopped after batch 2 failed (npu-3)"
    assert by_host["npu-5"]["at"] == "never deployed"             # read back: left as it was
    assert summary["stopped_after_batch"] == 2
    text = capsys.readouterr().out
    for h in ("npu-4", "npu-5", "npu-6"):
        assert any(line.startswith(h) and "not attempted" in line for line in text.splitlines()), h
    assert "the roll stopped after batch 2 failed" in text


def test_a_batch_that_fails_its_gate_stops_the_roll(fleet):
    fleet.gate_finds["npu-1"] = "failed"
    code, summary, _ = deploy(fleet, "--batch-size", "2", "--gate", "standard")
    assert code == 1
    got = outcome(summary)
    assert got["npu-0"] == (1, "changed", "passed") and got["npu-1"] == (1, "failed", "failed")
    assert all(got[h][1] == "not attempted" for h in fleet.hosts[2:])
    cause = {h["host"]: h["cause"] for h in summary["hosts"]}["npu-1"]
    assert cause == "gate standard failed: npu_health: NPU 3 reports Critical"
    assert len(fleet.site_runs) == 1


def test_an_unreachable_host_in_a_batch_stops_the_roll(fleet):
    fleet.deploy_does["npu-0"] = "unreachable"
    code, summary, _ = deploy(fleet, "--batch-size", "1")
    assert code == 1 and outcome(summary)["npu-0"] == (1, "unreachable", "not run")
    assert [h["outcome"] for h in summary["hosts"][1:]] == ["not attempted"] * 6


# --- preflight: before batch 1 changes anything --------------------------------------------------------

def test_preflight_sets_aside_unreachable_busy_and_unfit_hosts_and_the_rest_go_on(fleet, lock_a):
    fleet.nodes["npu-1"] = "unreachable"
    fleet.nodes["npu-2"] = fakes.facts(2, deployed=False, processes=[0, 3])
    fleet.nodes["npu-3"] = fakes.facts(3, deployed=False, os_release=("ubuntu", "22.04"))
    code, summary, _ = deploy(fleet, "--batch-size", "2")
    assert code == 1
    got = {h["host"]: (h["outcome"], h["cause"]) for h in summary["hosts"]}
    assert got["npu-1"] == ("unreachable", "preflight: Failed to connect to the host via ssh: Connection timed out")
    assert got["npu-2"] == ("skipped", "NPUs in use (2 process(es): NPU 0 pid 4000 python3, NPU 3 pid 4003 python3); "
                                       "left untouched (--allow-busy deploys anyway)")
    assert got["npu-3"][0] == "failed" and got["npu-3"][1].startswith(
        f"preflight: the lock {lock_a.digest[:19]} has no entry for the host's platform x86_64/ubuntu22.04")
    # none of them is in a batch; the batches are made of the others, in order
    assert [r["hosts"] for r in fleet.site_runs] == [["npu-0", "npu-4"], ["npu-5", "npu-6"]]
    assert all(got[h][0] == "changed" for h in ("npu-0", "npu-4", "npu-5", "npu-6"))
    rerun = summary["rerun"]
    assert "--limit npu-1,npu-2,npu-3 " in rerun


def test_a_busy_host_already_at_the_lock_is_left_to_the_roles(fleet, lock_a):
    fleet.nodes["npu-2"] = fakes.facts(2, lock=lock_a, processes=[1])
    fleet.deploy_does["npu-2"] = "nochange"
    code, summary, _ = deploy(fleet, "--batch-size", "7")
    assert code == 0 and outcome(summary)["npu-2"] == (1, "unchanged", "passed")


def test_allow_busy_deploys_a_busy_host_and_tells_the_roles(fleet):
    fleet.nodes["npu-2"] = fakes.facts(2, deployed=False, processes=[1])
    code, summary, _ = deploy(fleet, "--batch-size", "7", "--allow-busy")
    assert code == 0 and outcome(summary)["npu-2"] == (1, "changed", "passed")
    forced = json.loads(fleet.site_runs[0]["npuenv_vars"][-1])
    assert forced == {"npuenv_serial": "100%", "npuenv_max_fail_percentage": 100, "npuenv_allow_busy": True}


def test_a_host_the_roles_refuse_as_busy_is_skipped_not_failed_and_the_roll_goes_on(fleet):
    fleet.deploy_does["npu-1"] = "busy"   # it started a job after the preflight read it
    code, summary, _ = deploy(fleet, "--batch-size", "2")
    assert code == 1
    got = outcome(summary)
    assert got["npu-1"] == (1, "skipped", "not run")
    assert all(got[h][1] == "changed" for h in fleet.hosts if h != "npu-1")
    assert {h["host"]: h["cause"] for h in summary["hosts"]}["npu-1"].startswith(
        "Preflight | Refuse a node whose NPUs are in use: NPUs 0, 3 run processes")


def test_two_names_for_one_machine_refuse_the_run_before_anything_changes(fleet, capsys):
    fleet.nodes["npu-4"] = fakes.facts(1, deployed=False)   # the same machine-id and host key as npu-1
    code, summary, folder = deploy(fleet)
    assert code == 2 and fleet.site_runs == []
    err = capsys.readouterr().err
    assert "inventory names that reach one machine: npu-1 and npu-4 share /etc/machine-id" in err
    assert all(h["outcome"] == "not attempted" and h["cause"].startswith("refused: inventory names")
               for h in summary["hosts"])


# --- the summary, the rerun command, the log folder ----------------------------------------------------

def test_every_outcome_in_one_summary(fleet, lock_a):
    old = fakes.make_lock("2.8.0")
    fleet.nodes["npu-0"] = fakes.facts(0, lock=lock_a)            # already there: unchanged
    fleet.deploy_does["npu-0"] = "nochange"
    fleet.nodes["npu-1"] = "unreachable"
    fleet.nodes["npu-2"] = fakes.facts(2, lock=old, processes=[5])
    half = fakes.records(old)
    half["deploying"] = {"npuenv_deploying": 1, "lock_digest": lock_a.digest, "from_lock_digest": old.digest,
                         "started": "2026-12-02T08:00:00Z"}
    fleet.nodes["npu-4"] = fakes.facts(4, lock=old, records=half)
    fleet.deploy_does["npu-4"] = "fail"
    code, summary, folder = deploy(fleet, "--batch-size", "2")
    got = {h["host"]: h for h in summary["hosts"]}
    # batches: [npu-0, npu-3], [npu-4, npu-5] (npu-4 fails: the roll stops), [npu-6] not attempted
    assert [got[h]["outcome"] for h in fleet.hosts] == ["unchanged", "unreachable", "skipped", "changed", "failed",
                                                        "changed", "not attempted"]
    assert got["npu-4"]["at"] == f"half-upgraded {old.digest[:19]} -> {lock_a.digest[:19]}"
    assert got["npu-2"]["at"] == f"{old.digest[:19]} torch_npu 2.8.0 (CANN 8.3.RC1)"
    assert got["npu-1"]["at"].startswith("unknown (unreachable: Failed to connect")
    assert summary["counts"] == {"changed": 2, "unchanged": 1, "failed": 1, "unreachable": 1, "skipped": 1,
                                 "not attempted": 1}
    assert summary["at_lock"] == 3
    assert [h for h in fleet.hosts if got[h]["needs_rerun"]] == ["npu-1", "npu-2", "npu-4", "npu-6"]
    assert code == 1
    table = (folder / "deploy.log").read_text().split("\nsummary: ")[1]
    assert f"lock {lock_a.digest[:19]} (torch_npu 2.13.0, CANN 9.1.0, HDK 26.1.0), batches of 2, gate quick" in table
    assert "7 host(s): 2 changed, 1 unchanged, 1 failed, 1 unreachable, 1 skipped, 1 not attempted; 3 at the lock" \
        in table


def test_a_host_whose_records_do_not_say_the_lock_is_not_ok(fleet, monkeypatch):
    # site.yml ran without error, but the node's records are not the run's lock (the roles wrote none)
    fleet.target = None
    code, summary, _ = deploy(fleet, "--batch-size", "7")
    assert code == 1
    assert all(h["outcome"] == "changed" and not h["at_lock"] and h["at"] == "never deployed" and h["needs_rerun"]
               for h in summary["hosts"])


def test_a_partial_run_has_no_gate_by_default_and_is_ok_without_reaching_the_lock(fleet):
    """--tags python changes one part of the stack: a whole validation could never pass, and no host
    reaches the lock; the run is ok when its tasks are, and says the hosts are not at the lock."""
    fleet.target = None
    code, summary, folder = deploy(fleet, "--batch-size", "7", "--tags", "python")
    table = (folder / "deploy.log").read_text()
    assert fleet.gates == [] and summary["gate"] == "none" and summary["partial"] == ["python"]
    assert all(h["outcome"] == "changed" and not h["at_lock"] and not h["needs_rerun"] for h in summary["hosts"])
    assert code == 0 and summary["rerun"] is None
    assert "a partial run (--tags python) brings no host to the lock: deploy without --tags" in table
    fleet.deploy_does["npu-3"] = "fail"
    code, summary, _ = deploy(fleet, "--batch-size", "7", "--tags", "python", "--gate", "quick")
    assert len(fleet.gates) == 1 and code == 1
    assert summary["rerun"].endswith("--limit npu-3 --batch-size 7 --gate quick --tags python")


def test_a_host_left_with_the_in_progress_marker_is_half_upgraded_not_ok(fleet, lock_a):
    fleet.deploy_does["npu-2"] = "marker"
    code, summary, _ = deploy(fleet, "--batch-size", "7")
    got = {h["host"]: h for h in summary["hosts"]}["npu-2"]
    assert (got["outcome"], got["gate"], got["at_lock"], got["needs_rerun"]) == ("changed", "passed", False, True)
    assert got["at"] == f"half-upgraded none -> {lock_a.digest[:19]}"
    assert code == 1 and "--limit npu-2 " in summary["rerun"]


def test_the_rerun_command_works_as_printed(fleet, capsys):
    fleet.deploy_does["npu-2"] = "fail"
    code, summary, folder = deploy(fleet, "--batch-size", "2", "--gate", "standard", "-e", "preflight_min_free_mb=10")
    assert code == 1
    printed = capsys.readouterr().out
    line = printed.split("rerun the 4 host(s) that need it:\n  ")[1].splitlines()[0]
    assert line == summary["rerun"]
    argv = shlex.split(line)
    assert argv[:2] == ["npuenv", "deploy"]
    assert argv[argv.index("--lock") + 1] == str((folder / "lock.json").absolute())
    assert lock_mod.load(argv[argv.index("--lock") + 1]).digest == fleet.target.digest
    assert argv[argv.index("--limit") + 1] == "npu-2,npu-4,npu-5,npu-6"    # npu-3 passed in npu-2's batch
    assert argv[argv.index("--gate") + 1] == "standard" and argv[argv.index("-e") + 1] == "preflight_min_free_mb=10"
    # the gates reached their hosts with the deploy's -e, as its batches did
    assert fleet.gate_extra_vars == [("preflight_min_free_mb=10",)] * 2
    # the installer is fixed; the command, as printed, converges exactly those hosts
    del fleet.deploy_does["npu-2"]
    fleet.site_runs.clear()
    assert cli.main(argv[1:]) == 0
    assert [r["hosts"] for r in fleet.site_runs] == [["npu-2", "npu-4"], ["npu-5", "npu-6"]]
    assert fleet.site_runs[0]["extra_vars"] == ["preflight_min_free_mb=10"]


def test_each_run_has_a_log_folder_of_its_own_with_everything_in_it(fleet, lock_a, monkeypatch):
    monkeypatch.setattr(rollout.time, "strftime", lambda fmt, t: "20261205T010203Z")   # two runs in one second
    for _ in range(2):
        deploy(fleet, "--batch-size", "4")
    folders = sorted((fleet.tmp / "out" / "deploy").iterdir())
    assert [f.name for f in folders] == ["20261205T010203Z", "20261205T010203Z-1"]   # never one overwritten
    for folder in folders:
        assert sorted(p.name for p in folder.iterdir()) == ["batch-1", "batch-2", "deploy.log", "lock.json",
                                                           "summary.json"]
        log = (folder / "deploy.log").read_text()
        assert "TASK [Driver | Install] npu-0" in log and "PLAY RECAP" in log          # what Ansible printed
        assert "validation at quick: 4 host(s)" in log                                # the gate's report
        assert "\nsummary: " in log and "7 host(s): 7 changed" in log                 # and the summary
        assert lock_mod.load(folder / "lock.json").digest == lock_a.digest
        assert (folder / "batch-1" / "results.json").exists()


def test_without_a_lock_one_is_made_from_the_inventory_and_kept(fleet, monkeypatch):
    for h in fleet.hosts:
        fleet.hostvars[h] = {"npuenv_row": {"torch_npu": "2.13.0", "python": "3.11", "chip": "910b"}}
    code = cli.main(["deploy", "-i", "hosts.yml", "--check"])
    folder = sorted((fleet.tmp / "out" / "deploy").iterdir())[-1]
    made = lock_mod.load(folder / "lock.json")
    assert made.row["torch_npu"] == "2.13.0" and made.data["constraints"]["torch_npu"] == "2.13.0"
    assert code == 0


def test_hosts_with_different_rows_are_refused_naming_them(fleet, capsys):
    for h in fleet.hosts:
        fleet.hostvars[h] = {"npuenv_row": {"torch_npu": "2.13.0"}}
    fleet.hostvars["npu-5"] = {"npuenv_row": {"torch_npu": "2.12.0"}}
    assert cli.main(["deploy", "-i", "hosts.yml"]) == 2
    err = capsys.readouterr().err
    assert err.startswith('npuenv: npuenv_row differs between the hosts of the run ({"torch_npu": "2.13.0"} on npu-0, '
                          'npu-1, npu-2, npu-3, npu-4 and 1 more; {"torch_npu": "2.12.0"} on npu-5)')
    assert fleet.site_runs == [] and not (fleet.tmp / "out").exists()   # nothing started, no log folder


def test_hosts_with_their_own_installer_folders_share_one_lock_when_the_folders_list_the_same_files(
        fleet, tmp_path, capsys):
    """A host's own cache (or a site's mirror) is fine when its SHA256SUMS gives the same lock: a
    damaged file it still lists is its node's checksum failure. A folder listing another file is not."""
    from tests.unit.test_lock_cli import FIRMWARE_NEW, ROW_2_13, folder
    names = [*ROW_2_13.values(), FIRMWARE_NEW]
    site_a, site_b = folder(tmp_path / "site-a", names), folder(tmp_path / "site-b", names)
    damaged = bytearray((site_b / ROW_2_13["toolkit"]).read_bytes())
    damaged[0] ^= 0xFF                       # same size, same listing: the node's check finds it
    (site_b / ROW_2_13["toolkit"]).write_bytes(bytes(damaged))
    row = {"torch_npu": "2.13.0", "python": "3.11", "chip": "910b"}
    for h in fleet.hosts:
        fleet.hostvars[h] = {"npuenv_row": row, "npuenv_installer_cache": str(site_a)}
    fleet.hostvars["npu-2"]["npuenv_installer_cache"] = str(site_b)
    assert cli.main(["deploy", "-i", "hosts.yml", "--check"]) == 0
    made = lock_mod.load(sorted((fleet.tmp / "out" / "deploy").iterdir())[-1] / "lock.json")
    assert made.entry("x86_64", "debian12")["installers"]["toolkit"]["sha256"] == \
        hashlib.sha256(ROW_2_13["toolkit"].encode()).hexdigest()
    runs = len(fleet.site_runs)
    other = folder(tmp_path / "site-c", [n.replace("7.8.0.2.212", "7.8.0.9.999") for n in names])
    fleet.hostvars["npu-4"]["npuenv_installer_cache"] = str(other)
    assert cli.main(["deploy", "-i", "hosts.yml"]) == 2
    err = capsys.readouterr().err
    assert "npuenv: the hosts' npuenv_row, npuenv_installer_cache, npuenv_wheelhouse give different locks (" in err
    assert " on npu-4)" in err
    assert len(fleet.site_runs) == runs


@pytest.mark.parametrize("hostvars,message", [
    ({}, "the inventory sets no npuenv_row"),
    ({"npuenv_row": {"torch_npu": "2.13.0"}, "npuenv_installer_cache": "{{ lookup('env', 'X') }}"},
     "npuenv_installer_cache is a template"),
    ({"npuenv_row": {"torch_npu": "2.13.0"}, "npuenv_installer_cache": "/no/such/folder"},
     "npuenv_installer_cache /no/such/folder: no such folder"),
    ({"npuenv_row": {"torch_npu": "9.9.9"}}, "npuenv_row {'torch_npu': '9.9.9'}: "),
])
def test_a_lock_that_cannot_be_made_from_the_inventory_is_exit_2(fleet, capsys, hostvars, message):
    for h in fleet.hosts:
        fleet.hostvars[h] = hostvars
    assert cli.main(["deploy", "-i", "hosts.yml"]) == 2
    assert message in capsys.readouterr().err and fleet.site_runs == []


@pytest.mark.parametrize("args,message", [
    (["--batch-size", "0"], "argument --batch-size: '0' is not a whole number of hosts, 1 or more"),
    (["--gate", "smoke"], "argument --gate: invalid choice: 'smoke'"),
])
def test_bad_options_are_refused_by_the_parser(fleet, capsys, args, message):
    with pytest.raises(SystemExit) as e:
        cli.main(["deploy", "-i", "hosts.yml", "--lock", str(fleet.lock_file), *args])
    assert e.value.code == 2 and message in capsys.readouterr().err
    assert fleet.site_runs == [] and fleet.reads == []


@pytest.mark.parametrize("args,message", [
    (["--tags", "drivers"], "--tags drivers matches nothing in site.yml"),
    (["-e", "not a pair"], "extra variables are KEY=VALUE"),
    (["--log-dir", "/proc/version/x"], "--log-dir"),
])
def test_bad_input_is_exit_2_before_anything_runs(fleet, capsys, args, message):
    assert cli.main(["deploy", "-i", "hosts.yml", "--lock", str(fleet.lock_file), *args]) == 2
    assert message in capsys.readouterr().err
    assert fleet.site_runs == [] and fleet.reads == []


def test_check_previews_every_host_at_once_without_gates(fleet):
    fleet.deploy_does["npu-3"] = "fail"
    code, summary, _ = deploy(fleet, "--check", "--batch-size", "2", "--tags", "driver,cann")
    assert [r["hosts"] for r in fleet.site_runs] == [fleet.hosts] and fleet.site_runs[0]["check"]
    assert fleet.site_runs[0]["tags"] == ["driver", "cann"]
    assert fleet.gates == []
    got = outcome(summary)
    assert got["npu-0"] == (1, "would change", "not run") and got["npu-3"] == (1, "failed", "not run")
    assert code == 1 and summary["check"] and "--limit npu-3 " in summary["rerun"]


def test_an_interrupted_roll_still_accounts_for_every_host(fleet, capsys):
    fleet.interrupt_at_batch = 2
    code = cli.main(["deploy", "-i", "hosts.yml", "--lock", str(fleet.lock_file), "--batch-size", "3"])
    assert code == 128 + signal.SIGTERM
    folder = sorted((fleet.tmp / "out" / "deploy").iterdir())[-1]
    summary = json.loads((folder / "summary.json").read_text())
    got = outcome(summary)
    assert [got[h][1] for h in fleet.hosts] == ["changed"] * 3 + ["failed"] * 3 + ["not attempted"]
    assert {h["host"]: h["cause"] for h in summary["hosts"]}["npu-3"].startswith("interrupted by SIGTERM during its "
                                                                                 "batch")
    assert "--limit npu-0,npu-1,npu-2,npu-3,npu-4,npu-5,npu-6" in summary["rerun"]   # not read back: not known at lock
    assert "deploy: interrupted by SIGTERM; the summary above says where each host is" in capsys.readouterr().err


# --- what Ansible reports, read ----------------------------------------------------------------------

@pytest.mark.parametrize("result,message", [
    ({"msg": "non-zero return code", "stderr": "line 1\ninstall failed: no space left", "rc": 1},
     "non-zero return code: line 1 install failed: no space left"),
    ({"msg": "One or more items failed", "results": [{"failed": False}, {"failed": True, "msg": "bad item"}]},
     "bad item"),
    ({"rc": 3}, "exit code 3"),
    ({"msg": "assertion\nfailed"}, "assertion failed"),
    ({"msg": "Task failed: Finalization of task args for 'ansible.builtin.set_fact' failed: Error while resolving "
             "value for 'preflight_installers': The lookup plugin 'npuenv_installers' failed: /c/x.run is corrupt"},
     "/c/x.run is corrupt"),
])
def test_the_outcomes_callback_says_why_a_task_failed(result, message):
    assert npuenv_outcomes.message(result) == message


def test_ask_become_pass_asks_once_for_every_run_of_the_deploy(fleet, monkeypatch):
    asked = []
    monkeypatch.setattr("getpass.getpass", lambda prompt: asked.append(prompt) or "s3cret")
    monkeypatch.delenv("ANSIBLE_BECOME_PASSWORD_FILE", raising=False)
    code, summary, _ = deploy(fleet, "--batch-size", "3", "-K")
    assert code == 0 and len(asked) == 1 and len(fleet.site_runs) == 3
    files = {r["password"] for r in fleet.site_runs}
    [(path, text)] = files                          # one file, for every batch (and the gates, the read-back)
    assert text == "s3cret\n" and not any(r["ask"] for r in fleet.site_runs)
    assert not Path(path).exists() and "ANSIBLE_BECOME_PASSWORD_FILE" not in run.ansible_env()   # gone afterwards
    assert summary["rerun"] is None

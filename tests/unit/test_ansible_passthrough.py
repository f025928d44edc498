"""`npuenv deploy`'s pass-through ansible-playbook options (ansible_run/ansible_options.py): parsed, checked
on the controller (a vault password file that cannot serve is exit 2 naming it), and handed to each
Ansible call of the run as argv elements: vault options to every call, forks to every ansible-playbook,
verbosity and --start-at-task to the batches' site.yml only; -K asked once for the whole deploy. The
command lines are recorded by a stand-in ansible-playbook (test_deploy_args) or the fake fleet
(test_rollout)."""
from __future__ import annotations

import ast
import json
import os
import re
import shlex
from pathlib import Path

import pytest

from compat_matrix.errors import UserError
from npuenv import cli
from ansible_run import ansible_options, run
from playbooks import rollout
from tests.unit.test_deploy_args import fakes, site  # noqa: F401 (the fixture)
from tests.unit.test_rollout import deploy, fleet, lock_a  # noqa: F401 (the fixtures)


@pytest.fixture
def vault(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "vault.txt").write_text("s3cret\n")
    (tmp_path / "dev.txt").write_text("d3v\n")
    return tmp_path


def given(*argv: str) -> ansible_options.Given:
    return ansible_options.Given.from_args(cli.build_parser().parse_args(["deploy", "-i", "hosts.yml", *argv]))


def test_each_ansible_call_gets_the_options_meant_for_it_with_files_by_their_absolute_path(vault):
    g = given("-K", "--vault-password-file", "vault.txt", "--vault-id", "dev@dev.txt", "-vvv", "-f", "5",
              "--start-at-task", "CANN | Install the toolkit").checked()
    assert g.ask_become_pass and g.forks == 5
    secrets = ["--vault-password-file", str(vault / "vault.txt"), "--vault-id", f"dev@{vault / 'dev.txt'}"]
    assert g.argv("ansible-inventory") == secrets          # encrypted group_vars: the inventory needs them too
    assert g.argv("status.yml") == secrets                  # the facts reads: no verbosity, no start-at-task
    assert g.argv("site.yml") == secrets + ["-vvv", "--start-at-task", "CANN | Install the toolkit"]
    # the rerun command gives the same options again, except where to start
    assert g.rerun_args() == ["-K", "--vault-password-file", str(vault / "vault.txt"), "--vault-id",
                              f"dev@{vault / 'dev.txt'}", "-vvv", "--forks", "5"]
    assert given().checked().argv("site.yml") == []


def test_a_run_hands_them_to_ansible_playbook_as_argv(fakes, vault):  # noqa: F811
    record = fakes[0]
    with run.session(given("--vault-id", "dev@dev.txt", "-vv", "--forks", "1", "--start-at-task", "x; rm -rf /")):
        assert site(vault / "hosts.yml") == 0
    argv = json.loads(record.read_text())["argv"]
    # two hosts, at most one at once; a task name with shell syntax is one argv element, nothing more (the
    # inventory, read with the vault options, sets no role input npuenv could not check: the roles' are skipped)
    assert argv[:14] == ["site.yml", "-i", str(vault / "hosts.yml"), "--forks", "1", "--skip-tags", run.INPUTS_TAG,
                         "--vault-id", f"dev@{vault / 'dev.txt'}", "-vv", "--start-at-task", "x; rm -rf /", "-e",
                         argv[13]]
    assert site(vault / "hosts.yml") == 0   # outside the session: none of them
    assert json.loads(record.read_text())["argv"][3:8] == ["--forks", "2", "--skip-tags", run.INPUTS_TAG, "-e"]


def test_the_inventory_is_read_with_the_vault_options(monkeypatch, vault):
    seen = []
    monkeypatch.setattr(run.interrupts, "run", lambda cmd, **kw: seen.append(cmd) or
                        run.subprocess.CompletedProcess(cmd, 0, '{"_meta": {}}', ""))
    with run.session(given("--vault-password-file", "vault.txt")):
        run.read_inventory(vault / "vault.txt")
    assert seen[0][-2:] == ["--vault-password-file", str(vault / "vault.txt")]


@pytest.mark.parametrize("argv,message", [
    (["--vault-password-file", "missing.txt"], "--vault-password-file missing.txt: {d}/missing.txt: no such file; "
                                               "give the file that holds the vault password (one line; chmod 600 "
                                               "FILE, owned by you)"),
    (["--vault-id", "dev@missing.txt"], "--vault-id dev@missing.txt: {d}/missing.txt: no such file"),
    (["--vault-id", "missing.txt"], "--vault-id missing.txt: {d}/missing.txt: no such file"),
    (["--vault-password-file", "."], "--vault-password-file .: {d}: is a folder"),
    (["--vault-password-file", "fifo"], "--vault-password-file fifo: {d}/fifo: is not a regular file (a pipe, socket "
                                        "or device): npuenv runs Ansible several times and a pipe gives the "
                                        "password once; write it to a file instead"),
    (["--vault-id", "dev@prompt"], "--vault-id dev@prompt: npuenv runs Ansible several times (once per batch, and to "
                                   "read the hosts), and each run would ask again: put the password in a file only "
                                   "you can read (chmod 600 FILE) and give --vault-id dev@FILE"),
])
def test_a_vault_password_file_that_cannot_serve_is_exit_2_naming_it(vault, capsys, argv, message):
    os.mkfifo(vault / "fifo")
    started = vault / "started"
    assert cli.main(["deploy", "-i", str(started), *argv]) == 2   # refused before the inventory is read
    err = capsys.readouterr().err
    assert err.startswith(f"npuenv: {message.format(d=vault)}") and "Traceback" not in err


def test_an_unreadable_vault_password_file_says_how_to_make_it_readable(vault, monkeypatch):
    # (the tests may run as root, who reads any file: the permission check itself is what is asked)
    monkeypatch.setattr(ansible_options.os, "access", lambda path, mode: False)
    with pytest.raises(UserError) as e:
        given("--vault-password-file", "vault.txt").checked()
    assert str(e.value) == (f"--vault-password-file vault.txt: {vault}/vault.txt: this user cannot read it "
                            f"(permission denied); make it yours and readable: chmod 600 {vault}/vault.txt")


@pytest.mark.parametrize("argv,message", [
    (["-f", "0"], "argument -f/--forks: '0' is not a whole number of parallel hosts, 1 or more"),
    (["--forks", "many"], "argument -f/--forks: 'many' is not a whole number of parallel hosts, 1 or more"),
    (["--start-at-task", " "], "argument --start-at-task: give the name of a task of site.yml"),
    (["--start-at-task", "CANN\n| x"], "argument --start-at-task: 'CANN\\n| x' holds control characters ('\\n')"),
])
def test_forks_and_start_at_task_are_checked_by_the_parser(capsys, argv, message):
    with pytest.raises(SystemExit) as e:
        cli.build_parser().parse_args(["deploy", "-i", "hosts.yml", *argv])
    assert e.value.code == 2 and message in capsys.readouterr().err


@pytest.mark.parametrize("values,message", [
    ({"forks": 0}, "--forks 0: give a whole number"), ({"forks": True}, "--forks True: give a whole number"),
    ({"start_at_task": "a\x1b[2Jb"}, "--start-at-task: 'a\\x1b[2Jb' holds control characters"),
])
def test_the_library_checks_them_too(values, message):
    with pytest.raises(UserError, match=re.escape(message)):
        ansible_options.Given(**values).checked()


def test_deploy_help_says_which_options_are_passed_through(capsys):
    with pytest.raises(SystemExit):
        cli.main(["deploy", "--help"])
    text = capsys.readouterr().out
    group = text.split("passed to ansible-playbook:\n", 1)[1]
    for option in ansible_options.OPTIONS:
        assert all(flag in group for flag in option.flags), option.flags


def test_every_batch_of_a_deploy_gets_them_and_the_password_is_asked_once(fleet, vault, monkeypatch):  # noqa: F811
    asked, calls = [], []
    monkeypatch.setattr("getpass.getpass", lambda prompt: asked.append(prompt) or "s3cret")
    fake = fleet.run_playbook

    def recording(playbook, inventory, **kw):
        env = run.ansible_env()
        password = Path(env["ANSIBLE_BECOME_PASSWORD_FILE"])
        calls.append((playbook, run.playbook_command(playbook, inventory, 1, vault, connection=""), password,
                      (password.read_text(), password.stat().st_mode & 0o777, password.parent.stat().st_mode & 0o077)))
        return fake(playbook, inventory, **kw)

    monkeypatch.setattr(run, "run_playbook", recording)
    code, summary, folder = deploy(fleet, "--batch-size", "3", "-K", "--vault-password-file", "vault.txt", "-v",
                                   "-f", "2", "--start-at-task", "Python stack | Install the pinned wheels, offline")
    assert code == 0 and len(asked) == 1
    sites = [c for c in calls if c[0] == "site.yml"]
    assert len(sites) == 3 and len(calls) == 5   # three batches, the preflight and the read-back
    for playbook, cmd, password, seen in calls:
        assert cmd[cmd.index("--vault-password-file") + 1] == str(vault / "vault.txt")
        assert ("-v" in cmd, "--start-at-task" in cmd) == ((True, True) if playbook == "site.yml" else (False, False))
        assert "--ask-become-pass" not in cmd   # asked once by npuenv, not by each ansible-playbook
        assert seen == ("s3cret\n", 0o600, 0)   # only this user reads it, in a private folder
    assert len({c[2] for c in calls}) == 1 and not password.exists()
    plan = rollout.prepare("hosts.yml", lock_path=fleet.lock_file, ansible=given(
        "-K", "--vault-password-file", "vault.txt", "-v", "-f", "2", "--start-at-task", "Record | *"))
    rerun = shlex.split(rollout.rerun_command(plan, folder, ["npu-0"]))
    # the rerun repeats them, except where to start (a host to converge runs every task)
    assert rerun[rerun.index("-K"):] == ["-K", "--vault-password-file", str(vault / "vault.txt"), "-v", "--forks", "2"]


def test_validate_takes_the_options_its_ansible_runs_use(vault, monkeypatch):
    from validation import run as validation_run

    asked, seen = [], []
    monkeypatch.setattr("getpass.getpass", lambda prompt: asked.append(prompt) or "s3cret")

    def validate(targets, level, constraints, out_dir, **kw):
        env = run.ansible_env()
        seen.append((run.session_options().forks, run.playbook_command("validate.yml", "hosts.yml", 1, vault, connection="")[6:8],
                     env["ANSIBLE_RETRY_FILES_SAVE_PATH"],
                     Path(env["ANSIBLE_BECOME_PASSWORD_FILE"]).read_text()))
        return 0

    monkeypatch.setattr(validation_run, "validate", validate)
    assert cli.main(["validate", "--target", "ansible://npu_nodes?inventory=hosts.yml", "--out", "reports", "-K",
                     "-f", "3", "--vault-password-file", "vault.txt"]) == 0
    [(forks, cmd, retry, password)] = seen
    assert forks == 3 and cmd == ["--vault-password-file", str(vault / "vault.txt")]
    assert (retry, password, len(asked)) == (str(vault / "reports"), "s3cret\n", 1)
    assert cli.main(["validate", "--target", "local", "--vault-password-file", "missing.txt"]) == 2
    with pytest.raises(SystemExit):   # what only site.yml has is deploy's alone
        cli.build_parser().parse_args(["validate", "--target", "local", "--start-at-task", "x"])


def test_a_deploy_that_starts_at_a_task_is_partial_and_records_no_lock(fleet, capsys):  # noqa: F811
    """The tasks before the named one are skipped: no gate by default, the node is told not to record
    the lock (deploy_record: npuenv_deploy_partial), and the summary says what such a run cannot do."""
    fleet.deploy_does["npu-0"] = "marker"   # as the node is left: the in-progress marker stays, no lock recorded
    code, summary, folder = deploy(fleet, "--start-at-task", "Python stack | Install the pinned wheels, offline")
    # not at the lock, yet what was asked was done: no rerun needed, exit 0
    assert code == 0 and summary["gate"] == "none" and fleet.gates == [] and summary["rerun"] is None
    assert summary["at_lock"] == 6
    assert all(json.loads(r["npuenv_vars"][-1]).get("npuenv_deploy_partial") is True for r in fleet.site_runs)
    assert ("a partial run (--start-at-task 'Python stack | Install the pinned wheels, offline') brings no host to the lock: deploy "
            "without --start-at-task for that") in (folder / "deploy.log").read_text()
    code, summary, _ = deploy(fleet)
    assert "npuenv_deploy_partial" not in fleet.site_runs[-1]["npuenv_vars"][-1] and summary["gate"] == "quick"
    assert code == 1 and summary["rerun"]   # a whole deploy that leaves npu-0 short of the lock


def test_a_start_at_task_that_names_no_task_is_refused_before_anything_runs(fleet, capsys):  # noqa: F811
    """ansible-playbook would run nothing and exit 0: npuenv refuses the name, exit 2, saying where names are."""
    assert cli.main(["deploy", "-i", "hosts.yml", "--lock", str(fleet.lock_file), "--start-at-task",
                     "Python | Install the wheels"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("npuenv: --start-at-task 'Python | Install the wheels': no task of site.yml or its roles "
                          "has this name (ansible-playbook would run nothing); give a name as `ansible-playbook "
                          "site.yml --list-tasks` prints it, e.g. "), err
    assert ast.literal_eval(err.strip().split("e.g. ", 1)[1]) in run.task_names("site.yml")   # a name it takes
    assert fleet.site_runs == [] and fleet.reads == []
    for name in ("Python stack | Install the pinned wheels, offline", "npuenv.ascend.python_stack : Python stack | "
                 "Install the pinned wheels, offline", "CANN | Install the toolkit*"):   # as Ansible matches: the name, or a pattern
        run.check_start_at_task("site.yml", name)
    with pytest.raises(UserError):   # Ansible names a collection's role by its full name
        run.check_start_at_task("site.yml", "python_stack : Python stack | Install the pinned wheels, offline")


def test_a_run_takes_the_users_own_forks_as_its_cap(fakes, vault, monkeypatch):  # noqa: F811
    monkeypatch.setenv("ANSIBLE_FORKS", "1")
    assert site(vault / "hosts.yml") == 0
    assert json.loads(fakes[0].read_text())["argv"][3:5] == ["--forks", "1"]   # two hosts, theirs says one at once


def test_status_takes_the_options_its_ansible_run_uses(vault, monkeypatch):
    from playbooks import status

    asked, seen = [], []
    monkeypatch.setattr("getpass.getpass", lambda prompt: asked.append(prompt) or "s3cret")

    def read_fleet(inventory, lock_path=None, **kw):
        env = run.ansible_env()
        seen.append((run.session_options().forks, run.playbook_command(status.PLAYBOOK, "hosts.yml", 1, vault, connection="")[6:8],
                     Path(env["ANSIBLE_BECOME_PASSWORD_FILE"]).read_text()))
        return 0

    monkeypatch.setattr(status, "status", read_fleet)
    assert cli.main(["status", "-i", "hosts.yml", "-K", "-f", "4", "--vault-password-file", "vault.txt"]) == 0
    assert seen == [(4, ["--vault-password-file", str(vault / "vault.txt")], "s3cret\n")] and len(asked) == 1
    assert cli.main(["status", "-i", "hosts.yml", "--vault-password-file", "missing.txt"]) == 2


def test_start_at_task_may_name_the_tasks_ansible_runs_not_the_imports_that_bring_them():
    names = run.task_names("site.yml")
    assert "HCCN | Set the device IPs and netdetect addresses that differ, write the configuration and check the links" \
        in names and "npuenv.ascend.hccn : HCCN | Check the role's inputs" in names
    assert "Run the hccn role" not in names and "Check the hccn role's inputs" not in names
    assert "Lock | Read the hosts' arch and OS" in names

"""`npuenv deploy`'s command line as ansible-playbook gets it (extra variables
typed as the inventory types them, -K), and each run's private folder for its
SSH control sockets: made per run, the masters in it closed and the folder
removed afterwards, also when the run is interrupted. ansible-playbook and
ssh are stand-ins here that record what they were given."""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from compat_matrix.errors import UserError
from npuenv import cli
from playbooks import run
from tests.conftest import ROOT
from validation.explain import explain

# What every run passes last (the last -e wins): one SSH master per inventory name, and where site.yml
# reports a refused run.
CONTROL_PATH = "%(directory)s/{{ (inventory_hostname | hash('sha1'))[:12] }}"


@pytest.mark.parametrize("given,passed", [
    (["preflight_min_free_mb=1000"], ["-e", '{"preflight_min_free_mb": 1000}']),
    (["npuenv_serial=1 npuenv_max_fail_percentage=0"],
     ["-e", '{"npuenv_serial": 1, "npuenv_max_fail_percentage": 0}']),
    (["hccn_check_health=false", "cann_install_nnal=yes"],
     ["-e", '{"hccn_check_health": false}', "-e", '{"cann_install_nnal": true}']),
    (['x="1000"'], ["-e", '{"x": "1000"}']),                     # quoted: text, as in YAML
    (["x='a b' y=1.5"], ["-e", '{"x": "a b", "y": 1.5}']),
    (["x=0755"], ["-e", '{"x": 493}']),                           # YAML 1.1's octal, as the inventory reads it
    (["x=2024-01-01"], ["-e", '{"x": "2024-01-01"}']),            # JSON has no date: the text as typed
    (["x="], ["-e", '{"x": ""}']),
    (["x=a=b"], ["-e", '{"x": "a=b"}']),
    (["ips=[10.0.0.1,10.0.0.2]"], ["-e", '{"ips": ["10.0.0.1", "10.0.0.2"]}']),
    (["x=null"], ["-e", '{"x": null}']),
    (["@vars.yml"], ["-e", "@vars.yml"]),
    (['{"preflight_min_free_mb": 1000}'], ["-e", '{"preflight_min_free_mb": 1000}']),
])
def test_extra_vars_are_typed_as_the_inventory_types_them_and_passed_as_json(given, passed):
    assert run.extra_vars_args(given) == passed


@pytest.mark.parametrize("given,message", [
    ("1000", "-e '1000': extra variables are KEY=VALUE (several separated by spaces), @FILE or a JSON object, "
             "with KEY a variable name (letters, digits and _); e.g. -e preflight_min_free_mb=1000"),
    ("a-b=1", "-e 'a-b=1': extra variables are KEY=VALUE"),
    ("=1", "-e '=1': extra variables are KEY=VALUE"),
    ("x=1 y", "-e 'x=1 y': extra variables are KEY=VALUE"),
    ("x={{ y }}", "-e 'x={{ y }}': the value of x is not a YAML value ("),  # Jinja must be quoted, as in YAML
    ("", "-e '': give KEY=VALUE, @FILE or a JSON object, e.g. -e preflight_min_free_mb=1000"),
    ("x=[1", "-e 'x=[1': the value of x is not a YAML value ("),
    ("x=.inf", "-e 'x=.inf': a value YAML reads as neither text, number, bool, list nor mapping; quote it: KEY='...'"),
])
def test_extra_vars_that_are_not_key_value_are_refused_saying_how(given, message):
    with pytest.raises(UserError) as e:
        run.extra_vars_args([given])
    assert str(e.value).startswith(message), str(e.value)


def test_the_playbook_command_line(monkeypatch, tmp_path):
    monkeypatch.setattr(run, "ansible_command", lambda name: f"/venv/bin/{name}")
    cmd = run.playbook_command("site.yml", tmp_path / "hosts.yml", 3, tmp_path / "run", check=True,
                               tags=["driver", "cann"], limit="node-1", extra_vars=["preflight_min_free_mb=1000"],
                               ask_become_pass=True)
    assert cmd == ["/venv/bin/ansible-playbook", "site.yml", "-i", str(tmp_path / "hosts.yml"), "--forks", "3",
                   "--check", "--diff", "--tags", "driver,cann", "--limit", "node-1", "--ask-become-pass",
                   "-e", '{"preflight_min_free_mb": 1000}',
                   "-e", json.dumps({"ansible_control_path": CONTROL_PATH,
                                     "npuenv_identity_report": str(tmp_path / "run" / "identity-refused.txt")})]
    plain = run.playbook_command("site.yml", tmp_path / "hosts.yml", 1, tmp_path / "run")
    assert "--ask-become-pass" not in plain and "--check" not in plain and len(plain) == 8


# --- a run with stand-ins for ansible-playbook and ssh --------------------------------

FAKE_PLAYBOOK = """\
#!{python}
# ansible-playbook's stand-in: records its argv and control folder, opens an SSH
# master's socket there, and then does what FAKE_DOES says.
import json, os, signal, socket, sys, time
folder = os.environ["ANSIBLE_SSH_CONTROL_PATH_DIR"]
socket.socket(socket.AF_UNIX).bind(os.path.join(folder, "0123456789ab"))
with open({record!r}, "w") as f:
    json.dump({{"argv": sys.argv[1:], "folder": folder, "pid": os.getpid()}}, f)
does = os.environ.get("FAKE_DOES", "")
if does == "refuse":
    report = json.loads(sys.argv[-1])["npuenv_identity_report"]
    open(report, "w").write("inventory names that reach one machine: a and b share /etc/machine-id 00; fix\\n")
    sys.exit(2)
if does == "hang":
    def stopped(signum, frame):
        open({record!r} + ".stopped", "w").write(str(signum))
        sys.exit(128 + signum)
    signal.signal(signal.SIGTERM, stopped)
    time.sleep(120)
sys.exit(int(does or 0))
"""
FAKE_SSH = """\
#!/bin/sh
# ssh's stand-in: records how it was called and, for -O exit, ends the master (removes its socket)
echo "$*" >> {log!r}
case "$*" in *"-O exit"*) rm -f "${{2#ControlPath=}}" ;; esac
"""


@pytest.fixture
def fakes(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    record, ssh_log = tmp_path / "playbook.json", tmp_path / "ssh.log"
    playbook = bin_dir / "ansible-playbook"
    playbook.write_text(FAKE_PLAYBOOK.format(python=sys.executable, record=str(record)))
    (bin_dir / "ssh").write_text(FAKE_SSH.format(log=str(ssh_log)))
    for script in bin_dir.iterdir():
        script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    # A TMPDIR short enough for control sockets (pytest's is not), for this test alone.
    tmp = Path(tempfile.mkdtemp(prefix="t-", dir=run.SHORT_TMP))
    monkeypatch.setenv("TMPDIR", str(tmp))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    monkeypatch.setattr(run, "ansible_command", lambda name: str(bin_dir / name))
    monkeypatch.setattr(run, "fleet_hosts", lambda inventory, limit=None: ["node-0", "node-1"])
    yield record, ssh_log, tmp
    shutil.rmtree(tmp)


def test_deploy_runs_with_a_folder_of_its_own_and_closes_its_ssh_masters(fakes, tmp_path):
    record, ssh_log, tmp = fakes
    assert cli.main(["deploy", "-i", str(tmp_path / "hosts.yml"), "-K", "-e", "preflight_min_free_mb=1000"]) == 0
    got = json.loads(record.read_text())
    assert got["argv"] == ["site.yml", "-i", str(tmp_path / "hosts.yml"), "--forks", "2", "--ask-become-pass",
                           "-e", '{"preflight_min_free_mb": 1000}',
                           "-e", json.dumps({"ansible_control_path": CONTROL_PATH,
                                             "npuenv_identity_report": f"{got['folder']}/identity-refused.txt"})]
    assert got["folder"].startswith(f"{tmp}/npuenv-run-")
    assert ssh_log.read_text() == f"-o ControlPath={got['folder']}/0123456789ab -O exit npuenv-run\n"
    assert list(tmp.iterdir()) == []  # the folder is gone


def test_each_run_has_its_own_folder(fakes, tmp_path):
    record, _, _ = fakes
    folders = []
    for _ in range(2):
        assert cli.main(["deploy", "-i", str(tmp_path / "hosts.yml")]) == 0
        folders.append(json.loads(record.read_text())["folder"])
    assert folders[0] != folders[1]


def test_a_folder_in_a_long_tmpdir_goes_to_tmp_instead(fakes, tmp_path, monkeypatch):
    record, _, _ = fakes
    long_tmp = tmp_path / ("x" * 60)
    long_tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(long_tmp))
    assert cli.main(["deploy", "-i", str(tmp_path / "hosts.yml")]) == 0
    assert json.loads(record.read_text())["folder"].startswith(f"{run.SHORT_TMP}/npuenv-run-")


def test_a_refused_identity_is_exit_2_with_sites_message(fakes, tmp_path, monkeypatch, capsys):
    _, ssh_log, tmp = fakes
    monkeypatch.setenv("FAKE_DOES", "refuse")
    assert cli.main(["deploy", "-i", str(tmp_path / "hosts.yml"), "--check"]) == 2
    assert capsys.readouterr().err == ("npuenv: inventory names that reach one machine: a and b share /etc/machine-id "
                                       "00; fix; nothing was changed on any host\n")
    assert "-O exit" in ssh_log.read_text() and list(tmp.iterdir()) == []


@pytest.mark.parametrize("returncode,code", [(2, 1), (4, 1), (5, 2)])
def test_a_failed_run_without_a_refusal_keeps_its_exit_code(fakes, tmp_path, monkeypatch, returncode, code):
    monkeypatch.setenv("FAKE_DOES", str(returncode))
    assert cli.main(["deploy", "-i", str(tmp_path / "hosts.yml")]) == code


DRIVER = """\
import sys
sys.path.insert(0, {root!r})
from npuenv import cli
from playbooks import run
run.ansible_command = lambda name: {playbook!r}
run.fleet_hosts = lambda inventory, limit=None: ["node-0"]
sys.exit(cli.main(["deploy", "-i", "hosts.yml"]))
"""


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_an_interrupted_deploy_ends_ansible_playbook_closes_its_masters_and_removes_its_folder(fakes, tmp_path, signum):
    record, ssh_log, tmp = fakes
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER.format(root=str(ROOT), playbook=str(tmp_path / "bin" / "ansible-playbook")))
    proc = subprocess.Popen([sys.executable, str(driver)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, FAKE_DOES="hang"), cwd=tmp_path,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 60
        while not record.exists():
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
            time.sleep(0.05)
        got = json.loads(record.read_text())
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=90)
    finally:
        proc.kill()
    assert proc.returncode == 128 + signum, err
    assert err == (f"npuenv: ansible-playbook site.yml: interrupted by {signal.Signals(signum).name}; hosts may be "
                   f"part way through a task: run the same command again to converge them\n")
    assert ssh_log.read_text() == f"-o ControlPath={got['folder']}/0123456789ab -O exit npuenv-run\n"
    assert list(tmp.iterdir()) == []
    # asked to stop (it ends its workers), not killed
    assert Path(f"{record}.stopped").read_text() == str(signal.SIGTERM.value)
    assert not os.path.exists(f"/proc/{got['pid']}") or \
        open(f"/proc/{got['pid']}/stat").read().rsplit(")", 1)[1].split()[0] == "Z"


def test_the_sudo_fix_names_options_that_npuenv_deploy_accepts(fakes, tmp_path):
    _, fix = explain("sudo: a password is required")
    options = re.findall(r"(?<![\w-])-{1,2}[A-Za-z][\w-]*", fix)
    assert options == ["-K", "--ask-become-pass"], fix
    record = fakes[0]
    for option in options:
        assert cli.main(["deploy", "-i", str(tmp_path / "hosts.yml"), option]) == 0
        assert "--ask-become-pass" in json.loads(record.read_text())["argv"]


def test_a_bad_extra_var_is_refused_before_the_inventory_is_read(capsys):
    assert cli.main(["deploy", "-i", "/no/such/hosts.yml", "-e", "preflight_min_free_mb"]) == 2
    assert capsys.readouterr().err.startswith("npuenv: -e 'preflight_min_free_mb': extra variables are KEY=VALUE")

"""`npuenv deploy`'s command line as ansible-playbook gets it (extra variables
typed as the inventory types them, -K), and each run's private folder for its
SSH control sockets: made per run, the masters in it closed and the folder
removed afterwards, also when the run is interrupted. ansible-playbook and
ssh are stand-ins here that record what they were given."""
from __future__ import annotations

import hashlib
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
from ansible_run import run
from tests.conftest import ROOT, alive
from validation.node.explain import explain

# What every run passes last (the last -e wins): one SSH master per inventory name and connection key, and
# where site.yml reports a refused run.
def control_path(key: str) -> str:
    return "%(directory)s/{{ (('" + key + "' ~ inventory_hostname) | hash('sha1'))[:12] }}"


def key_of(inventory: Path, extra_vars: list[str]) -> str:
    """The connection key as run_playbook's docstring defines it: the inventory's real path and the user's -e."""
    return hashlib.sha256(json.dumps([str(inventory.resolve()), extra_vars]).encode()).hexdigest()[:16]


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
                               ask_become_pass=True, connection="0123456789abcdef")
    assert cmd == ["/venv/bin/ansible-playbook", "site.yml", "-i", str(tmp_path / "hosts.yml"), "--forks", "3",
                   "--check", "--diff", "--tags", "driver,cann", "--limit", "node-1", "--ask-become-pass",
                   "-e", '{"preflight_min_free_mb": 1000}',
                   "-e", json.dumps({"ansible_control_path": control_path("0123456789abcdef"),
                                     "npuenv_identity_report": str(tmp_path / "run" / "identity-refused.txt")})]
    plain = run.playbook_command("site.yml", tmp_path / "hosts.yml", 1, tmp_path / "run", connection="ab")
    assert "--ask-become-pass" not in plain and "--check" not in plain and len(plain) == 8
    with pytest.raises(ValueError, match="not hex"):   # it lands inside a template
        run.playbook_command("site.yml", tmp_path / "hosts.yml", 1, tmp_path / "run", connection="' ~ x ~ '")


# --- a run with stand-ins for ansible-playbook and ssh --------------------------------

FAKE_PLAYBOOK = """\
#!{python}
# ansible-playbook's stand-in: records its argv and control folder, opens an SSH
# master's socket there, and then does what FAKE_DOES says.
import json, os, signal, socket, sys, time
folder = os.environ["ANSIBLE_SSH_CONTROL_PATH_DIR"]
if not os.path.exists(os.path.join(folder, "0123456789ab")):   # a master another run left is used
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
    monkeypatch.setattr(run, "fleet", lambda inventory, limit=None: (["node-0", "node-1"], {}))
    yield record, ssh_log, tmp
    shutil.rmtree(tmp)


def site(inventory, **options) -> int:
    """One site.yml run as `npuenv deploy` makes one for each batch (playbooks/rollout.py): run.run_playbook,
    with npuenv's exit code, and a refusal printed as the command prints it."""
    try:
        return run.exit_code(run.run_playbook("site.yml", inventory, **options).returncode)
    except UserError as e:
        print(f"npuenv: {e}", file=sys.stderr)
        return e.exit_code


def test_deploy_runs_with_a_folder_of_its_own_and_closes_its_ssh_masters(fakes, tmp_path):
    record, ssh_log, tmp = fakes
    assert site(tmp_path / "hosts.yml", ask_become_pass=True, extra_vars=["preflight_min_free_mb=1000"]) == 0
    got = json.loads(record.read_text())
    # npuenv checked every role input itself (none is a template), so the roles' own checks are skipped
    assert got["argv"] == ["site.yml", "-i", str(tmp_path / "hosts.yml"), "--forks", "2", "--skip-tags",
                           "npuenv_inputs", "--ask-become-pass", "-e", '{"preflight_min_free_mb": 1000}',
                           "-e", json.dumps({"ansible_control_path": control_path(
                                                 key_of(tmp_path / "hosts.yml", ["preflight_min_free_mb=1000"])),
                                             "npuenv_identity_report": f"{got['folder']}/identity-refused.txt"})]
    assert got["folder"].startswith(f"{tmp}/npuenv-run-")
    assert ssh_log.read_text() == f"-o ControlPath={got['folder']}/0123456789ab -O exit npuenv-run\n"
    assert list(tmp.iterdir()) == []  # the folder is gone


def test_each_run_has_its_own_folder(fakes, tmp_path):
    record, _, _ = fakes
    folders = []
    for _ in range(2):
        assert site(tmp_path / "hosts.yml") == 0
        folders.append(json.loads(record.read_text())["folder"])
    assert folders[0] != folders[1]


def test_the_runs_of_a_session_share_their_ssh_masters_per_inventory_and_user_vars(fakes, tmp_path):
    """A deploy's preflight, batch, read-back and gate connect to each host once: the session keeps the
    control sockets, and closes the masters when it ends. A run with another inventory or other -e (either
    may change a host's address, user or known_hosts) gets masters of its own."""
    record, ssh_log, tmp = fakes
    seen = []
    with run.session():
        for inventory, extra in [("hosts.yml", []), ("hosts.yml", []), ("hosts.yml", ["ansible_user=ops"]),
                                 ("other.yml", [])]:
            assert site(tmp_path / inventory, extra_vars=extra) == 0
            got = json.loads(record.read_text())
            seen.append((got["folder"], json.loads(got["argv"][-1])["ansible_control_path"]))
        folder = seen[0][0]
        assert folder.startswith(f"{tmp}/npuenv-ssh-") and {f for f, _ in seen} == {folder}
        assert not ssh_log.exists()  # nothing closed yet: the masters outlive the runs
    assert [path for _, path in seen] == [control_path(key_of(tmp_path / "hosts.yml", [])),
                                          control_path(key_of(tmp_path / "hosts.yml", [])),
                                          control_path(key_of(tmp_path / "hosts.yml", ["ansible_user=ops"])),
                                          control_path(key_of(tmp_path / "other.yml", []))]
    assert len(set(seen)) == 3
    assert ssh_log.read_text() == f"-o ControlPath={folder}/0123456789ab -O exit npuenv-run\n"
    assert list(tmp.iterdir()) == []  # the session's folder and every run's are gone


def test_npuenvs_own_vars_do_not_part_the_connections(fakes, tmp_path):
    record, _, _ = fakes
    paths = []
    for own in ([], ['{"npuenv_serial": "100%"}']):
        assert site(tmp_path / "hosts.yml", extra_vars=["preflight_min_free_mb=1000"], npuenv_vars=own) == 0
        argv = json.loads(record.read_text())["argv"]
        paths.append(json.loads(argv[-1])["ansible_control_path"])
        assert argv[-4 - 2 * len(own):-2] == ["-e", '{"preflight_min_free_mb": 1000}', *(["-e", *own] if own else [])]
    assert paths[0] == paths[1] == control_path(key_of(tmp_path / "hosts.yml", ["preflight_min_free_mb=1000"]))


def test_a_folder_in_a_long_tmpdir_goes_to_tmp_instead(fakes, tmp_path, monkeypatch):
    record, _, _ = fakes
    long_tmp = tmp_path / ("x" * 60)
    long_tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(long_tmp))
    assert site(tmp_path / "hosts.yml") == 0
    assert json.loads(record.read_text())["folder"].startswith(f"{run.SHORT_TMP}/npuenv-run-")


def test_a_refused_identity_is_exit_2_with_sites_message(fakes, tmp_path, monkeypatch, capsys):
    _, ssh_log, tmp = fakes
    monkeypatch.setenv("FAKE_DOES", "refuse")
    assert site(tmp_path / "hosts.yml", check=True) == 2
    assert capsys.readouterr().err == ("npuenv: inventory names that reach one machine: a and b share /etc/machine-id "
                                       "00; fix; nothing was changed on any host\n")
    assert "-O exit" in ssh_log.read_text() and list(tmp.iterdir()) == []


@pytest.mark.parametrize("returncode,code", [(2, 1), (4, 1), (5, 2)])
def test_a_failed_run_without_a_refusal_keeps_its_exit_code(fakes, tmp_path, monkeypatch, returncode, code):
    monkeypatch.setenv("FAKE_DOES", str(returncode))
    assert site(tmp_path / "hosts.yml") == code


DRIVER = """\
import sys
sys.path.insert(0, {root!r})
from compat_matrix.errors import UserError
from ansible_run import run
run.ansible_command = lambda name: {playbook!r}
run.fleet = lambda inventory, limit=None: (["node-0"], dict())
try:  # one batch's site.yml, as npuenv deploy runs it
    run.run_playbook("site.yml", "hosts.yml")
except UserError as e:
    print(f"npuenv: {{e}}", file=sys.stderr)
    sys.exit(e.exit_code)
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
    assert not alive(got["pid"])


def test_the_sudo_fix_names_options_that_npuenv_deploy_accepts(fakes, tmp_path):
    _, fix = explain("sudo: a password is required")
    options = re.findall(r"(?<![\w-])-{1,2}[A-Za-z][\w-]*", fix)
    assert options == ["-K", "--ask-become-pass"], fix
    for option in options:   # npuenv deploy takes them (it asks once, for every run of the deploy)
        assert cli.build_parser().parse_args(["deploy", "-i", "hosts.yml", option]).ask_become_pass
    record = fakes[0]
    assert site(tmp_path / "hosts.yml", ask_become_pass=True) == 0
    assert "--ask-become-pass" in json.loads(record.read_text())["argv"]


def test_a_bad_extra_var_is_refused_before_the_inventory_is_read(capsys):
    assert cli.main(["deploy", "-i", "/no/such/hosts.yml", "-e", "preflight_min_free_mb"]) == 2
    assert capsys.readouterr().err.startswith("npuenv: -e 'preflight_min_free_mb': extra variables are KEY=VALUE")


def test_an_interrupted_inventory_read_ends_the_inventory_script_it_ran(tmp_path):
    """ansible-inventory runs a dynamic inventory script as its child: SIGTERM to npuenv ends both."""
    pid_file = tmp_path / "script.pid"
    script = tmp_path / "inventory.sh"
    script.write_text(f"#!/bin/sh\necho $$ > {pid_file}\nexec sleep 300\n")
    script.chmod(0o755)
    proc = subprocess.Popen([sys.executable, "-m", "npuenv", "deploy", "-i", str(script)], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    pid = None
    try:
        deadline = time.monotonic() + 60
        while not pid_file.exists() or not pid_file.read_text().strip():
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.05)
        pid = int(pid_file.read_text())
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
        assert (proc.returncode, err) == (128 + signal.SIGTERM, f"npuenv: reading the inventory {script}: interrupted "
                                          "by SIGTERM; its temporary files are removed and nothing was written\n")
        deadline = time.monotonic() + 10
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not alive(pid), "the inventory script outlived npuenv"
    finally:
        proc.kill()
        if pid and alive(pid):
            os.kill(pid, signal.SIGKILL)


# --- -e @FILE: a file the user names -------------------------------------------------

def test_an_extra_vars_file_is_read_checked_and_passed_by_its_absolute_path(tmp_path, monkeypatch):
    (tmp_path / "vars.yml").write_text("preflight_min_free_mb: 1000\n")
    monkeypatch.chdir(tmp_path)   # ansible-playbook runs in the playbooks folder: a relative path would miss
    assert run.extra_vars_args(["@vars.yml"]) == ["-e", f"@{tmp_path}/vars.yml"]
    assert run.extra_vars_values(["@vars.yml", "preflight_min_free_mb=5"]) == {"preflight_min_free_mb": 5}
    (tmp_path / "vault.yml").write_text("$ANSIBLE_VAULT;1.1;AES256\n6162\n")
    assert run.extra_vars_values(["x=1", "@vault.yml"]) is None   # what it sets is Ansible's to read


@pytest.mark.parametrize("make,message", [
    (lambda p: os.mkfifo(p), "is not a regular file (a pipe, socket or device); an extra-variables file (-e @FILE) "
                             "must be a plain file"),
    (lambda p: p.mkdir(), "is a folder; an extra-variables file (-e @FILE) must be a file"),
    (lambda p: None, "no such file (an extra-variables file (-e @FILE))"),
    (lambda p: p.write_text("- a\n- b\n"), ": holds a list, not a mapping of variable names to values; write the "
                                            "variables as KEY: VALUE lines"),
    (lambda p: p.write_text(""), ": holds nothing, not a mapping of variable names to values"),
    (lambda p: p.write_text("a: [1\n"), ":2: not YAML or JSON ("),
    (lambda p: p.write_bytes(b"a: 1\n\0"), "is a binary file; an extra-variables file (-e @FILE) must be UTF-8"),
])
def test_an_extra_vars_file_that_is_no_plain_mapping_is_refused(tmp_path, make, message):
    path = tmp_path / "vars.yml"
    make(path)
    with pytest.raises(UserError) as e:
        run.extra_vars_args([f"@{path}"])
    assert str(path) in str(e.value) and message in str(e.value), str(e.value)


def test_extra_vars_from_dev_zero_are_refused_without_reading_it():
    with pytest.raises(UserError) as e:
        run.extra_vars_args(["@/dev/zero"])
    assert str(e.value) == ("/dev/zero: is not a regular file (a pipe, socket or device); an extra-variables file "
                            "(-e @FILE) must be a plain file")


@pytest.mark.parametrize("given,message", [
    ("{not json", "-e '{not json': not YAML or JSON (expected ',' or '}', but got '<stream end>'); write the "
                  "variables as a JSON object"),
    ('{"a": 1} x', "-e '{\"a\": 1} x': not YAML or JSON ("),
    ("@", "-e '@': give the file's path after @, e.g. -e @vars.yml"),
    ("@ ", "-e '@ ': give the file's path after @"),
])
def test_an_inline_object_that_is_not_one_is_refused(given, message):
    with pytest.raises(UserError) as e:
        run.extra_vars_args([given])
    assert str(e.value).startswith(message), str(e.value)


# --- the roles' input checks, on the controller before Ansible starts ---------------------

PROFILE_RULE = ("it must be a file directly in /etc/profile.d whose name holds npuenv and ends in .sh, e.g. "
                "/etc/profile.d/npuenv-ascend.sh")


def test_role_inputs_are_read_from_each_roles_inputs_yml():
    kinds = run.role_inputs("site.yml")
    assert {k: kinds[k] for k in ("ascend_env_profile", "hccn_conf", "cann_stage_dir", "hccn_device_ips")} == \
        {"ascend_env_profile": "profile_script", "hccn_conf": "hccn_conf", "cann_stage_dir": "cache_dir",
         "hccn_device_ips": "ipv4_list"}
    assert run.role_inputs("validate.yml") == {}   # the validation role's inputs come from npuenv itself


def test_an_inputs_yml_entry_in_another_shape_is_a_bug_not_a_silent_pass(tmp_path, monkeypatch):
    (tmp_path / "roles" / "r" / "tasks").mkdir(parents=True)
    (tmp_path / "roles" / "r" / "tasks" / "inputs.yml").write_text(
        "{{ {'a': ['path', a], 'b': ['path', other]} | npuenv_input_problems }}")
    monkeypatch.setattr(run, "COLLECTION_DIR", tmp_path)
    with pytest.raises(RuntimeError, match="an input not written as"):
        run.role_input_kinds("npuenv.ascend.r")


@pytest.mark.parametrize("hostvars,extra,message", [
    # in the inventory, on one host: that host named
    ({"node-1": {"ascend_env_profile": "/etc/passwd"}}, [],
     f"  node-1: ascend_env_profile: '/etc/passwd' is not a place this role writes to; {PROFILE_RULE} "
     "(set in the inventory)\n"),
    # by -e: every host of the run
    ({}, ["ascend_env_profile=/etc/passwd"],
     f"  node-0, node-1: ascend_env_profile: '/etc/passwd' is not a place this role writes to; {PROFILE_RULE} "
     "(set by -e)\n"),
    # the -e wins over the inventory's good value, as in Ansible
    ({"node-0": {"hccn_conf": "/etc/hccn.conf"}}, ['{"hccn_conf": "/etc/shadow"}'],
     "  node-0, node-1: hccn_conf: '/etc/shadow' is not a place this role writes to; it must be /etc/hccn.conf, "
     "the file the NPU driver reads at boot (set by -e)\n"),
    ({"node-0": {"hccn_device_ips": ["10.0.0.1", "10.0.0.1"]}}, [],
     "  node-0: hccn_device_ips[1]: 10.0.0.1 is listed twice; each device needs its own address (set in the "
     "inventory)\n"),
    ({"node-0": {"npu_driver_user": "x;id"}, "node-1": {"cluster_tuning_sysctl": {"somaxconn": 1}}}, [],
     "  node-0: npu_driver_user: 'x;id' is not a user or group name"),
])
def test_a_value_the_roles_refuse_is_refused_before_ansible_starts(fakes, tmp_path, monkeypatch, hostvars, extra,
                                                                    message):
    record, _, tmp = fakes
    monkeypatch.setattr(run, "fleet", lambda inventory, limit=None: (["node-0", "node-1"], hostvars))
    with pytest.raises(UserError) as e:
        run.run_playbook("site.yml", tmp_path / "hosts.yml", extra_vars=extra)
    err = str(e.value) + "\n"
    assert err.startswith("the roles would refuse these values, so nothing was run on any host:\n"), err
    assert message in err and err.endswith("\nfix them in the inventory or in the -e given, then run the same "
                                           "command again\n"), err
    assert not record.exists() and list(tmp.iterdir()) == []   # ansible-playbook never started, no folder made


@pytest.mark.parametrize("hostvars,extra,checked_here", [
    ({"node-0": {"ascend_env_profile": "/etc/passwd"}}, ["ascend_env_profile=/etc/profile.d/npuenv-x.sh"], True),
    # a template: the role renders and checks it, so the roles' checks run
    ({"node-1": {"hccn_device_ips": ["10.0.0.1"]}, "node-0": {"ascend_env_profile": "{{ my_profile }}"}}, [], False),
    ({"node-0": {"unrelated_path": "/etc/passwd", "hccn_conf": "/etc/hccn.conf"}}, [], True),
    ({"node-0": {"unrelated_path": "{{ x }}"}}, [], True),   # a template no role checks
])
def test_values_the_roles_accept_or_must_render_first_reach_ansible(fakes, tmp_path, monkeypatch, hostvars, extra,
                                                                    checked_here):
    record, _, _ = fakes
    monkeypatch.setattr(run, "fleet", lambda inventory, limit=None: (["node-0", "node-1"], hostvars))
    assert run.run_playbook("site.yml", tmp_path / "hosts.yml", extra_vars=extra).returncode == 0
    argv = json.loads(record.read_text())["argv"]
    assert ("--skip-tags" in argv and argv[argv.index("--skip-tags") + 1] == run.INPUTS_TAG) is checked_here, argv


def test_a_vault_file_leaves_the_checks_to_the_roles_and_a_callers_skip_is_kept(fakes, tmp_path, monkeypatch):
    record, _, _ = fakes
    vault = tmp_path / "secrets.yml"
    vault.write_text(run.VAULT_HEADER + "1.1;AES256\n6162\n")
    assert run.run_playbook("site.yml", tmp_path / "hosts.yml", extra_vars=[f"@{vault}"],
                            skip_tags=[run.IDENTITY_TAG]).returncode == 0
    argv = json.loads(record.read_text())["argv"]
    assert argv[argv.index("--skip-tags") + 1] == run.IDENTITY_TAG


def test_npuenv_deploy_reads_each_hosts_variables_merged_and_refuses_with_exit_2(tmp_path, monkeypatch, capsys):
    """`npuenv deploy` with the real ansible-inventory: group_vars, host_vars and the -e merged as Ansible
    merges them; ansible-playbook is never started."""
    (tmp_path / "group_vars").mkdir()
    (tmp_path / "host_vars").mkdir()
    (tmp_path / "hosts.yml").write_text("all:\n  children:\n    npu_nodes:\n      hosts:\n        n0:\n        n1:\n"
                                        "        n2:\n")
    (tmp_path / "group_vars" / "npu_nodes.yml").write_text("npuenv_row: {torch_npu: '2.13.0'}\n"
                                                           "cann_stage_dir: /var/tmp/stage\n")
    (tmp_path / "host_vars" / "n1.yml").write_text("cann_stage_dir: /var/cache/npuenv/stage\n")
    started = tmp_path / "started"
    real = run.ansible_command
    monkeypatch.setattr(run, "ansible_command", lambda name: str(started) if name == "ansible-playbook" else real(name))
    assert cli.main(["deploy", "-i", str(tmp_path / "hosts.yml"), "--limit", "n0,n1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("npuenv: the roles would refuse these values, so nothing was run on any host:\n"), err
    assert ("\n  n0: cann_stage_dir: '/var/tmp/stage' is not a place this role writes to; it must be a folder below "
            "/var/cache/npuenv, e.g. /var/cache/npuenv/installers (set in the inventory)\nfix them") in err, err
    assert "Traceback" not in err
    assert cli.main(["deploy", "-i", str(tmp_path / "hosts.yml"), "-e", "npu_driver_group=-x"]) == 2
    assert "\n  n0, n1, n2: npu_driver_group: '-x' is not a user or group name" in capsys.readouterr().err
    assert not started.exists()


def test_group_vars_beside_the_playbooks_are_checked_as_ansible_playbook_reads_them(tmp_path, monkeypatch):
    """ansible-playbook reads group_vars beside the playbook too: npuenv's check sees them, or a value
    there would pass unchecked once the roles' own checks are skipped."""
    (tmp_path / "hosts.yml").write_text("all:\n  children:\n    npu_nodes:\n      hosts:\n        n0:\n")
    playbooks = tmp_path / "playbooks"
    (playbooks / "group_vars").mkdir(parents=True)
    (playbooks / "group_vars" / "npu_nodes.yml").write_text("npu_driver_stage_dir: /tmp/x\n")
    monkeypatch.setattr(run, "PLAYBOOK_DIR", playbooks)
    assert run.fleet(tmp_path / "hosts.yml")[1]["n0"]["npu_driver_stage_dir"] == "/tmp/x"


def test_a_caller_that_names_the_hosts_gets_their_values_checked_too(fakes, tmp_path, monkeypatch):
    """run_playbook(hosts=...) (the caller read the inventory already) still reads each host's variables."""
    record, _, _ = fakes
    monkeypatch.setattr(run, "fleet", lambda inventory, limit=None: (["node-0", "node-1"],
                                                                     {"node-1": {"hccn_netmask": "255.0.255.0"}}))
    with pytest.raises(UserError) as e:
        run.run_playbook("site.yml", tmp_path / "hosts.yml", limit="node-1", hosts=["node-1"])
    assert "\n  node-1: hccn_netmask: '255.0.255.0' is not a netmask (e.g. 255.255.255.0) (set in the inventory)\n" \
        in str(e.value)
    assert not record.exists()
    # a playbook whose roles check no inputs needs no variables: the inventory is not read again
    monkeypatch.setattr(run, "fleet", lambda *a, **k: pytest.fail("the inventory was read"))
    assert run.run_playbook("validate.yml", tmp_path / "hosts.yml", hosts=["node-1"]).returncode == 0


PLAYBOOK_DRIVER = """\
import sys
sys.path.insert(0, {root!r})
from compat_matrix.errors import UserError
from ansible_run import run
run.ansible_command = lambda name: {playbook!r}
run.fleet = lambda inventory, limit=None: (["node-0"], dict())
try:
    run.run_playbook("site.yml", "hosts.yml", log={log})
except UserError as e:
    print(e, file=sys.stderr)
    sys.exit(getattr(e, "exit_code", 2))
"""


@pytest.mark.parametrize("log", ["None", "print"])   # output to the terminal, or line by line to a log
def test_sigterm_during_run_playbook_ends_ansible_playbook_and_removes_the_runs_folder(fakes, tmp_path, log):
    record, ssh_log, tmp = fakes
    driver = tmp_path / "driver.py"
    driver.write_text(PLAYBOOK_DRIVER.format(root=str(ROOT), playbook=str(tmp_path / "bin" / "ansible-playbook"),
                                             log=log))
    proc = subprocess.Popen([sys.executable, str(driver)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, FAKE_DOES="hang"), cwd=tmp_path)
    try:
        deadline = time.monotonic() + 60
        while not record.exists():
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
            time.sleep(0.05)
        got = json.loads(record.read_text())
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=90)
    finally:
        proc.kill()
        if record.exists() and alive(json.loads(record.read_text())["pid"]):   # a failed test leaves no process
            os.kill(json.loads(record.read_text())["pid"], signal.SIGKILL)
    assert (proc.returncode, err) == (128 + signal.SIGTERM, "ansible-playbook site.yml: interrupted by SIGTERM; hosts "
                                      "may be part way through a task: run the same command again to converge them\n")
    assert Path(f"{record}.stopped").read_text() == str(signal.SIGTERM.value)   # asked to stop, and it did
    assert not alive(got["pid"])
    assert ssh_log.read_text() == f"-o ControlPath={got['folder']}/0123456789ab -O exit npuenv-run\n"
    assert list(tmp.iterdir()) == []   # the run's folder is gone


# --- the roles' argument specs, checked before Ansible starts --------------------------------------

SPEC_OFF = json.dumps({run.ROLESPEC_VAR: False})
CACHE = {"npuenv_installer_cache": "/srv/installers"}   # what the roles require of every inventory


@pytest.mark.parametrize("hostvars,extra,off", [
    ({"node-0": CACHE, "node-1": CACHE}, [], True),
    # what site.yml hands the roles itself (its play's variables win over the inventory's): not checked
    ({"node-0": CACHE, "node-1": {**CACHE, "npuenv_plan": "the play sets its own"}}, [], True),
    # a required value missing: the role's own spec check says so in its words
    ({"node-0": CACHE, "node-1": {}}, [], False),
    # a template, or one in the variable a default names ({{ npuenv_wheelhouse }}): the role renders it first
    ({"node-0": CACHE, "node-1": {**CACHE, "cann_keep_versions": "{{ keep }}"}}, [], False),
    ({"node-0": CACHE, "node-1": {**CACHE, "npuenv_wheelhouse": "{{ house }}"}}, [], False),
    ({"node-0": CACHE, "node-1": {**CACHE, "npuenv_wheelhouse": "/srv/wheelhouse"}}, ["cann_keep_versions=3"], True),
])
def test_the_roles_spec_checks_are_turned_off_only_when_every_value_was_checked_here(fakes, tmp_path, monkeypatch,
                                                                                     hostvars, extra, off):
    record, _, _ = fakes
    monkeypatch.setattr(run, "fleet", lambda inventory, limit=None: (["node-0", "node-1"], hostvars))
    assert run.run_playbook("site.yml", tmp_path / "hosts.yml", extra_vars=extra).returncode == 0
    argv = json.loads(record.read_text())["argv"]
    assert (SPEC_OFF in argv) is off, argv


@pytest.mark.parametrize("hostvars,extra,message", [
    ({"node-1": {**CACHE, "python_stack_mode": "conda"}}, [],
     "node-1: npuenv.ascend.python_stack: value of python_stack_mode must be one of: venv, system, got: conda"),
    ({"node-0": CACHE, "node-1": CACHE}, ["cann_keep_versions=many"],
     "node-0, node-1: npuenv.ascend.cann: argument 'cann_keep_versions' is of type str and we were unable to "
     "convert to int"),
    ({"node-0": {**CACHE, "hccn_check_health": "perhaps"}}, [],
     "node-0: npuenv.ascend.hccn: argument 'hccn_check_health' is of type str and we were unable to convert to bool"),
])
def test_a_value_a_roles_spec_refuses_is_exit_2_before_ansible_starts(fakes, tmp_path, monkeypatch, capsys, hostvars,
                                                                      extra, message):
    record, _, tmp = fakes
    monkeypatch.setattr(run, "fleet", lambda inventory, limit=None: (list(hostvars), hostvars))
    assert site(tmp_path / "hosts.yml", extra_vars=extra) == 2
    err = capsys.readouterr().err
    assert f"\n  {message}" in err and err.startswith("npuenv: the roles would refuse these values"), err
    assert not record.exists() and list(tmp.iterdir()) == []


def test_site_imports_each_role_with_its_spec_check_switched_by_npuenv(tmp_path):
    """What ansible-playbook itself makes of site.yml: each role's spec check is a task, unless the
    variable npuenv passes turns it off (and only then)."""
    def listed(*extra):
        done = subprocess.run([run.ansible_command("ansible-playbook"), "site.yml", "--list-tasks", "-i", "localhost,",
                               *extra], cwd=run.PLAYBOOK_DIR, env=run.ansible_env(), capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout.count("Validating arguments against arg spec 'main'")
    assert listed() == len(run.playbook_roles("site.yml")) == 8
    assert listed("-e", SPEC_OFF) == 0

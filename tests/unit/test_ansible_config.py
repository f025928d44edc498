"""The user's Ansible configuration wins over the project's (ansible_run/run.py config_env): their
ANSIBLE_* variables always, their ansible.cfg (ANSIBLE_CONFIG, ./ansible.cfg, ~/.ansible.cfg) for what it
sets, the project's settings for the rest; npuenv's roles and plugins folders always first; host key
checking on unless the user turns it off (and deploy says so); retry files in a folder of the user's.
One test asks the real ansible-config what Ansible makes of the environment."""
from __future__ import annotations

import configparser
import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml

from compat_matrix.errors import UserError
from ansible_run import run
from tests.unit.test_rollout import deploy, fleet, lock_a  # noqa: F401 (the fixtures)

PROJECT = str(run.PLAYBOOK_DIR / "ansible.cfg")
COLLECTIONS = str(run.PLAYBOOK_DIR / "collections")


@pytest.fixture
def user(tmp_path, monkeypatch):
    """A user with no Ansible configuration of their own: a home and a working folder of their own."""
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(work)
    for name in list(os.environ):
        if name.startswith("ANSIBLE_"):
            monkeypatch.delenv(name)
    return home, work


def test_without_a_file_of_the_users_the_projects_applies_under_the_users_variables(user, monkeypatch):
    home, _ = user
    monkeypatch.setenv("ANSIBLE_TIMEOUT", "99")
    monkeypatch.setenv("ANSIBLE_STDOUT_CALLBACK", "json")
    env = run.ansible_env()
    assert env["ANSIBLE_CONFIG"] == PROJECT
    assert (env["ANSIBLE_TIMEOUT"], env["ANSIBLE_STDOUT_CALLBACK"]) == ("99", "json")   # theirs, not overridden
    # npuenv's collection first, then Ansible's default folders (a collection the user installed there)
    assert env["ANSIBLE_COLLECTIONS_PATH"] == f"{COLLECTIONS}:{home}/.ansible/collections:/usr/share/ansible/collections"
    assert env["ANSIBLE_RETRY_FILES_SAVE_PATH"] == str(home / ".ansible" / "retry")   # never beside the playbooks
    assert run.host_key_checking_off() is None


@pytest.mark.parametrize("where", ["cwd", "home", "ANSIBLE_CONFIG", "ANSIBLE_CONFIG folder"])
def test_the_users_file_applies_and_the_project_fills_in_what_it_leaves_unset(user, monkeypatch, tmp_path, where):
    home, work = user
    folder = {"cwd": work, "home": home, "ANSIBLE_CONFIG": tmp_path, "ANSIBLE_CONFIG folder": tmp_path}[where]
    cfg = folder / (".ansible.cfg" if where == "home" else "ansible.cfg")
    cfg.write_text("[defaults]\nstdout_callback = json ; theirs\ncollections_path = my-colls:~/more\n"
                   "callbacks_enabled = profile_tasks\n[ssh_connection]\nssh_pipelining = x\npipelining = False\n")
    if where.startswith("ANSIBLE_CONFIG"):
        monkeypatch.setenv("ANSIBLE_CONFIG", str(cfg if where == "ANSIBLE_CONFIG" else folder))
    env = run.ansible_env(ANSIBLE_CALLBACKS_ENABLED="npuenv_outcomes")
    assert env["ANSIBLE_CONFIG"] == str(cfg)
    assert "ANSIBLE_STDOUT_CALLBACK" not in env and "ANSIBLE_PIPELINING" not in env   # their file says
    assert (env["ANSIBLE_TIMEOUT"], env["ANSIBLE_GATHERING"], env["ANSIBLE_HOST_KEY_CHECKING"]) == \
        ("30", "smart", "True")                                                           # the project's
    # npuenv's collection first, then theirs (relative to their file's folder)
    assert env["ANSIBLE_COLLECTIONS_PATH"] == f"{COLLECTIONS}:{folder / 'my-colls'}:{home / 'more'}"
    assert env["ANSIBLE_CALLBACKS_ENABLED"] == "npuenv_outcomes,profile_tasks"   # npuenv's beside theirs


def test_a_users_variable_wins_over_the_projects_setting_with_a_file_of_theirs(user, monkeypatch):
    _, work = user
    (work / "ansible.cfg").write_text("[defaults]\n")
    monkeypatch.setenv("ANSIBLE_SSH_PIPELINING", "False")
    monkeypatch.setenv("ANSIBLE_COLLECTIONS_PATH", "rel-colls")
    env = run.ansible_env()
    assert "ANSIBLE_PIPELINING" not in env and env["ANSIBLE_TIMEOUT"] == "30"
    assert env["ANSIBLE_COLLECTIONS_PATH"] == f"{COLLECTIONS}:{work / 'rel-colls'}"   # Ansible runs elsewhere: made absolute


def test_a_world_writable_folders_file_is_not_taken_as_ansible_does_not(user):
    _, work = user
    (work / "ansible.cfg").write_text("[defaults]\n")
    work.chmod(0o777)
    assert run.user_config() is None and run.ansible_env()["ANSIBLE_CONFIG"] == PROJECT


def test_the_projects_own_file_is_not_a_users(user, monkeypatch):
    monkeypatch.chdir(run.PLAYBOOK_DIR)
    assert run.user_config() is None
    monkeypatch.setenv("ANSIBLE_CONFIG", PROJECT)
    assert run.user_config() is None and "ANSIBLE_TIMEOUT" not in run.ansible_env()


@pytest.mark.parametrize("setup,message", [
    (lambda env, work: env.setenv("ANSIBLE_CONFIG", str(work / "nope.cfg")),
     "ANSIBLE_CONFIG={work}/nope.cfg: no such file; point it at your ansible.cfg, or unset it"),
    (lambda env, work: (work / "ansible.cfg").write_text("timeout = 3\n"),
     "{work}/ansible.cfg: not an ansible.cfg Ansible can read (File contains no section headers."),
])
def test_a_users_file_that_cannot_be_read_is_a_clear_error(user, monkeypatch, setup, message):
    _, work = user
    setup(monkeypatch, work)
    with pytest.raises(UserError) as e:
        run.ansible_env()
    assert str(e.value).startswith(message.format(work=work)), str(e.value)


@pytest.mark.parametrize("setup,off", [
    ({"ANSIBLE_HOST_KEY_CHECKING": "False"}, "ANSIBLE_HOST_KEY_CHECKING=False in your environment"),
    ({"ANSIBLE_SSH_HOST_KEY_CHECKING": "no"}, "ANSIBLE_SSH_HOST_KEY_CHECKING=no in your environment"),
    ("[defaults]\nhost_key_checking = False\n", "host_key_checking = False in {cfg}"),
    ("[ssh_connection]\nhost_key_checking = 0\n", "host_key_checking = 0 in {cfg}"),
    ({"ANSIBLE_HOST_KEY_CHECKING": "yes"}, None),
    ("[defaults]\nhost_key_checking = True\n", None),
    ("[defaults]\ntimeout = 5\n", None),
])
def test_host_key_checking_stays_on_unless_the_user_turns_it_off(user, monkeypatch, setup, off):
    _, work = user
    if isinstance(setup, dict):
        for k, v in setup.items():
            monkeypatch.setenv(k, v)
    else:
        (work / "ansible.cfg").write_text(setup)
    assert run.host_key_checking_off() == (off.format(cfg=work / "ansible.cfg") if off else None)
    if off is None and not isinstance(setup, dict) and "host_key" not in setup:
        assert run.ansible_env()["ANSIBLE_HOST_KEY_CHECKING"] == "True"   # their file leaves it: the project's


def test_deploy_says_in_one_line_that_host_key_checking_is_off(fleet, monkeypatch, capsys):  # noqa: F811
    code, _, folder = deploy(fleet)
    assert code == 0 and "host key checking" not in (folder / "deploy.log").read_text()
    monkeypatch.setenv("ANSIBLE_HOST_KEY_CHECKING", "False")
    code, _, folder = deploy(fleet)
    lines = [line for line in (folder / "deploy.log").read_text().splitlines() if "host key checking" in line]
    assert code == 0 and lines == ["host key checking is off (ANSIBLE_HOST_KEY_CHECKING=False in your environment): "
                                   "a host is not proven to be the machine its name says; remove that setting to "
                                   "turn it back on"]


def test_a_deploys_retry_files_go_to_its_log_folder_unless_the_user_names_one(fleet, monkeypatch, tmp_path):  # noqa: F811
    seen, fake = [], fleet.run_playbook

    def recording(playbook, inventory, **kw):
        seen.append(run.ansible_env()["ANSIBLE_RETRY_FILES_SAVE_PATH"])
        return fake(playbook, inventory, **kw)

    monkeypatch.setattr(run, "run_playbook", recording)
    monkeypatch.delenv("ANSIBLE_RETRY_FILES_SAVE_PATH", raising=False)
    _, _, folder = deploy(fleet)
    assert set(seen) == {str(folder.absolute())}   # absolute: Ansible runs in the playbooks folder
    seen.clear()
    monkeypatch.setenv("ANSIBLE_RETRY_FILES_SAVE_PATH", str(tmp_path / "mine"))
    deploy(fleet)
    assert set(seen) == {str(tmp_path / "mine")}


def test_the_settings_table_covers_the_projects_file_as_ansible_names_them():
    """Every setting of playbooks/ansible.cfg is in CONFIG_SETTINGS, with the variables and keys Ansible
    reads it from (its config/base.yml, the ssh connection's and the result-format documentation)."""
    import ansible
    from ansible.plugins.connection import ssh
    from ansible.plugins.doc_fragments import result_format_callback

    project = configparser.ConfigParser(inline_comment_prefixes=(";",), interpolation=None)
    project.read(PROJECT)
    assert set(run.CONFIG_SETTINGS) == {(s, k) for s in project.sections() for k in project[s]}
    known: dict[tuple[str, str], tuple[set, set]] = {}

    def learn(definition):
        inis = {(i["section"], i["key"]) for i in definition.get("ini") or []}
        envs = {e["name"] for e in definition.get("env") or []}
        for ini in inis:
            old = known.setdefault(ini, (set(), set()))
            old[0].update(envs)
            old[1].update(inis)

    for definition in yaml.safe_load((Path(ansible.__file__).parent / "config" / "base.yml").read_text()).values():
        learn(definition)
    for doc in (ssh.DOCUMENTATION, result_format_callback.ModuleDocFragment.DOCUMENTATION):
        for definition in yaml.safe_load(doc)["options"].values():
            learn(definition)
    for key, setting in [*run.CONFIG_SETTINGS.items(), (("defaults", "retry_files_save_path"), run.RETRY_PATH),
                         (("defaults", "callbacks_enabled"), run.CALLBACKS)]:
        envs, inis = known[key]
        assert (set(setting.envs), set(setting.inis)) == (envs, inis), key


def test_ansible_itself_reads_the_users_file_and_the_projects_settings(user, tmp_path):
    """ansible-config (the real one) in the environment npuenv gives ansible-playbook, from the
    playbooks folder as npuenv runs it."""
    _, work = user
    (work / "ansible.cfg").write_text("[defaults]\ntimeout = 77\nretry_files_enabled = True\n")
    p = subprocess.run([run.ansible_command("ansible-config"), "dump", "--only-changed", "--format", "json"],
                       env=run.ansible_env(), cwd=run.PLAYBOOK_DIR, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    got = {d["name"]: d for d in json.loads(p.stdout) if "name" in d}
    assert (got["DEFAULT_TIMEOUT"]["value"], got["DEFAULT_TIMEOUT"]["origin"]) == (77, str(work / "ansible.cfg"))
    assert got["DEFAULT_GATHERING"]["value"] == "smart" and got["DEFAULT_GATHERING"]["origin"] == "env: ANSIBLE_GATHERING"
    assert got["COLLECTIONS_PATHS"]["value"][0] == COLLECTIONS
    assert got["RETRY_FILES_ENABLED"]["value"] is True
    assert got["RETRY_FILES_SAVE_PATH"]["value"] == str(Path(os.environ["HOME"]) / ".ansible" / "retry")
    assert got["HOST_KEY_CHECKING"]["value"] is True


def test_the_users_forks_caps_each_run_unless_f_is_given(user, monkeypatch):
    _, work = user
    assert run.forks_cap() == run.MAX_FORKS
    (work / "ansible.cfg").write_text("[defaults]\nforks = 7\n")
    assert run.forks_cap() == 7
    monkeypatch.setenv("ANSIBLE_FORKS", "3")
    assert run.forks_cap() == 3                       # their environment over their file
    with run.session(run.Given(forks=12)):
        assert run.forks_cap() == 12                  # -f over both
    monkeypatch.setenv("ANSIBLE_FORKS", "0")
    with pytest.raises(UserError, match=r"^ANSIBLE_FORKS=0 in your environment: forks must be a whole number"):
        run.forks_cap()

"""The roles' input patterns (plugins/filter/npuenv_inputs.py), the places on the
node where they may write, and the rule that the roles hand values to the node
as argv, never through a shell."""
from __future__ import annotations

import pytest
import yaml

from ansible_run.run import INPUTS_TAG, role_input_kinds
from tests.conftest import ROOT
from tests.unit.test_playbook_plugins import plugin

inputs = plugin("filter", "npuenv_inputs")
ROLES = ROOT / "playbooks" / "collections" / "ansible_collections" / "npuenv" / "ascend" / "roles"
# The roles whose inputs reach the node (validation's are the artefact and its arguments, from npuenv).
CHECKED_ROLES = ("preflight", "npu_driver", "cann", "hccn", "python_stack", "ascend_env", "cluster_tuning")


def problems(kind, value, name="v"):
    return inputs.input_problems({name: [kind, value]})


@pytest.mark.parametrize("kind,value", [
    ("account", "HwHiAiUser"), ("account", "_npu-run2"),
    ("path", "/usr/local"), ("path", "/var/cache/npuenv/installers"), ("path", "/opt/npu-env_1.2+x@y"),
    ("ipv4", "192.168.100.101"), ("ipv4", "0.0.0.0"), ("ipv4_or_empty", ""), ("ipv4_or_empty", "10.0.0.1"),
    ("netmask", "255.255.255.0"), ("netmask", "255.255.240.0"),
    ("ipv4_list", []), ("ipv4_list", ["192.168.100.101", "192.168.101.101"]),
    ("commands", ["lspci", "ifconfig", "python3.11"]),
    ("environment", {"HCCL_CONNECT_TIMEOUT": "120", "ASCEND_GLOBAL_LOG_LEVEL": 3, "X_Y": "a b/c=d"}),
    ("sysctl", {"net.core.somaxconn": 65535, "net.ipv4.ip_local_reserved_ports": "60000-60015",
                "net.ipv4.tcp_rmem": "4096 87380 6291456", "net/ipv4/conf/eth0.1/rp_filter": 1}),
])
def test_sound_values_pass(kind, value):
    assert problems(kind, value) == []


@pytest.mark.parametrize("kind,value,message", [
    ("path", "relative/dir", "v: 'relative/dir' is not an absolute path"),
    ("path", "/usr/local; touch /x", "is not an absolute path of letters, digits"),
    ("path", "/usr/$(id)", "is not an absolute path"),
    ("path", "/usr/local\n", "is not an absolute path"),
    ("path", "/a b", "is not an absolute path"),
    ("path", "/opt/../etc", "no '..'"),
    ("path", 42, "42 is not an absolute path"),
    ("ipv4", "192.168.1.1; reboot", "v: '192.168.1.1; reboot' is not an IPv4 address"),
    ("ipv4", "256.1.1.1", "is not an IPv4 address"),
    ("ipv4", "192.168.01.1", "is not an IPv4 address"),  # a leading zero reads as octal to some tools
    ("ipv4", "::1", "is not an IPv4 address"),
    ("ipv4", "1.2.3", "is not an IPv4 address"),
    ("ipv4", " 1.2.3.4", "is not an IPv4 address"),
    ("ipv4_or_empty", "gateway", "is not an IPv4 address"),
    ("netmask", "255.0.255.0", "v: '255.0.255.0' is not a netmask"),
    ("netmask", "24", "is not a netmask"),
    ("ipv4_list", "192.168.1.1", "v: must be a list of IPv4 addresses"),
    ("ipv4_list", ["10.0.0.1", "10.0.0.2;id"], "v[1]: '10.0.0.2;id' is not an IPv4 address"),
    ("ipv4_list", ["10.0.0.1", "10.0.0.1"], "v[1]: 10.0.0.1 is listed twice"),
    ("commands", ["lspci", "-rf"], "v[1]: '-rf' is not a command name"),
    ("account", "HwHi;id", "v: 'HwHi;id' is not a user or group name"),
    ("account", "-x", "is not a user or group name"),
    ("account", "a" * 33, "is not a user or group name"),
    ("commands", ["ls;id"], "v[0]: 'ls;id' is not a command name"),
    ("environment", {"A;B": "1"}, "v: 'A;B' is not an environment variable name"),
    ("environment", {"A": "1\nreboot"}, "v.A: '1\\nreboot' must be one line"),
    ("environment", {"A": ["x"]}, "must be one line of text or a number"),
    ("sysctl", {"net.core.somaxconn": "1; reboot"}, "v.net.core.somaxconn: '1; reboot' is not a sysctl value"),
    ("sysctl", {"net.core.somaxconn\nkernel.x": 1}, "is not a sysctl key"),
    ("sysctl", {"somaxconn": 1}, "'somaxconn' is not a sysctl key"),
])
def test_bad_values_are_refused_with_the_variable_and_the_fix(kind, value, message):
    found = problems(kind, value)
    assert len(found) == 1 and message in found[0], found


def test_the_number_of_cann_versions_kept_is_a_small_whole_number():
    assert problems("keep_count", 1) == [] and problems("keep_count", 9) == []
    for bad in (0, 10, "2", True, 2.0, None):
        found = problems("keep_count", bad, "cann_keep_versions")
        assert found == [f"cann_keep_versions: {bad!r} is not a number of versions to keep (a whole number from 1 to 9; "
                         f"1 keeps only the one deployed, 2 also the one it replaced)"], bad


def test_every_problem_is_listed():
    found = inputs.input_problems({"a": ["path", "x"], "b": ["ipv4", "y"], "c": ["path", "/ok"]})
    assert [p.split(":")[0] for p in found] == ["a", "b"]


def tasks_of(role):
    for path in sorted((ROLES / role).glob("*/*.yml")):
        if path.parent.name in ("tasks", "handlers"):
            for task in yaml.safe_load(path.read_text()) or []:
                yield path, task
                for inner in task.get("block", []) + task.get("always", []) + task.get("rescue", []):
                    yield path, inner


@pytest.mark.parametrize("role", CHECKED_ROLES)
def test_roles_pass_values_as_argv_never_through_a_shell(role):
    commands = 0
    for path, task in tasks_of(role):
        assert "ansible.builtin.shell" not in task, f"{path}: {task['name']} runs a shell"
        if "ansible.builtin.command" in task:
            commands += 1
            assert "argv" in task["ansible.builtin.command"], f"{path}: {task['name']} gives a command line"


@pytest.mark.parametrize("role", CHECKED_ROLES)
def test_roles_check_their_inputs_first_and_site_checks_them_all(role):
    first = yaml.safe_load((ROLES / role / "tasks" / "main.yml").read_text())[0]
    assert first.get("ansible.builtin.import_tasks") == "inputs.yml"
    # site.yml's first play checks every role's inputs on every host, before the lock is taken and
    # before the play that changes anything starts
    play, rollout = yaml.safe_load((ROOT / "playbooks" / "site.yml").read_text())
    checked = next(task for task in play["tasks"]
                   if task.get("ansible.builtin.import_role") == {"name": f"npuenv.ascend.{role}", "tasks_from": "inputs"})
    names = [task["name"] for task in play["tasks"]]
    assert names.index(checked["name"]) < names.index("Lock | Take the lock and check every host has an entry")
    imported = [task["ansible.builtin.import_role"]["name"] for task in rollout["tasks"]]
    assert f"npuenv.ascend.{role}" in imported and "roles" not in play
    # both carry the tag npuenv skips when it has checked every value itself (ansible_run/run.py)
    assert INPUTS_TAG in first["tags"] and INPUTS_TAG in checked["tags"]


@pytest.mark.parametrize("role", CHECKED_ROLES)
def test_every_checked_default_passes_its_rule_as_it_is(role):
    """npuenv checks on the controller the values the inventory and -e set, and skips the roles' own
    checks when it checked every one: a default it does not see must pass, and hold no template."""
    defaults = yaml.safe_load((ROLES / role / "defaults" / "main.yml").read_text())
    for name, kind in checked_kinds(role).items():
        assert "{{" not in str(defaults[name]) and "{%" not in str(defaults[name]), name
        assert problems(kind, defaults[name], name) == [], (name, defaults[name])


# --- paths on the node: only where the roles own things --------------------------

# Path variables that name no place the roles write on the node: they are on the controller.
NOT_WRITTEN_ON_THE_NODE = {"npuenv_installer_cache", "python_stack_wheelhouse", "python_stack_controller_tmp"}


def checked_kinds(role):
    """{variable: kind} as the role's tasks/inputs.yml hands them to npuenv_input_problems."""
    return role_input_kinds(f"npuenv.ascend.{role}")


@pytest.mark.parametrize("role", CHECKED_ROLES)
def test_every_node_path_a_role_takes_is_held_to_its_place_and_its_default_is_there(role):
    spec = yaml.safe_load((ROLES / role / "meta" / "argument_specs.yml").read_text())["argument_specs"]["main"]
    defaults = yaml.safe_load((ROLES / role / "defaults" / "main.yml").read_text())
    kinds = checked_kinds(role)
    for name, option in spec["options"].items():
        if option.get("type") != "path" or name in NOT_WRITTEN_ON_THE_NODE:
            continue
        assert kinds.get(name) in inputs.PLACES, f"{role}: {name} is written on the node but not held to a place"
        assert problems(kinds[name], defaults[name], name) == [], (name, defaults[name])


@pytest.mark.parametrize("kind,value", [
    ("cache_dir", "/var/cache/npuenv/installers"), ("cache_dir", "/var/cache/npuenv/a/b"),
    ("venv_dir", "/opt/npuenv/venv"), ("venv_dir", "/opt/npuenv/cann-9.1/venv"),
    ("profile_script", "/etc/profile.d/npuenv-ascend.sh"), ("profile_script", "/etc/profile.d/zz-npuenv.sh"),
    ("sysctl_file", "/etc/sysctl.d/90-npuenv-cluster.conf"), ("sysctl_file", "/etc/sysctl.d/npuenv.conf"),
    ("hccn_conf", "/etc/hccn.conf"),
])
def test_paths_in_the_roles_own_places_pass(kind, value):
    assert problems(kind, value) == []


PROFILE_RULE = ("a file directly in /etc/profile.d whose name holds npuenv and ends in .sh, "
                "e.g. /etc/profile.d/npuenv-ascend.sh")
CACHE_RULE = "a folder below /var/cache/npuenv, e.g. /var/cache/npuenv/installers"
SYSCTL_RULE = ("a file directly in /etc/sysctl.d whose name holds npuenv and ends in .conf, "
               "e.g. /etc/sysctl.d/90-npuenv-cluster.conf")


@pytest.mark.parametrize("kind,value,rule", [
    ("profile_script", "/etc/passwd", PROFILE_RULE),
    ("profile_script", "/etc/profile.d/bash_completion.sh", PROFILE_RULE),   # another package's script
    ("profile_script", "/etc/profile.d/npuenv-ascend", PROFILE_RULE),        # not sourced without .sh
    ("profile_script", "/etc/profile.d/sub/npuenv.sh", PROFILE_RULE),
    ("profile_script", "/etc/profile.d/npuenv.sh/", PROFILE_RULE),          # a folder for the template
    ("profile_script", "/etc/npuenv.sh", PROFILE_RULE),
    ("cache_dir", "/var/cache/npuenv", CACHE_RULE),                          # the owned folder itself
    ("cache_dir", "/var/cache", CACHE_RULE),
    ("cache_dir", "/etc", CACHE_RULE),
    ("cache_dir", "/var/cache/npuenvx/installers", CACHE_RULE),
    ("cache_dir", "/", CACHE_RULE),
    ("venv_dir", "/usr", "a folder below /opt/npuenv, e.g. /opt/npuenv/venv"),
    ("venv_dir", "/opt", "a folder below /opt/npuenv, e.g. /opt/npuenv/venv"),
    ("sysctl_file", "/etc/sysctl.conf", SYSCTL_RULE),
    ("sysctl_file", "/etc/sysctl.d/99-sysctl.conf", SYSCTL_RULE),
    ("sysctl_file", "/etc/sysctl.d/npuenv.sh", SYSCTL_RULE),
    ("hccn_conf", "/etc/passwd", "/etc/hccn.conf, the file the NPU driver reads at boot"),
    ("hccn_conf", "/tmp/hccn.conf", "/etc/hccn.conf, the file the NPU driver reads at boot"),
])
def test_paths_outside_the_roles_places_are_refused_naming_the_allowed_place(kind, value, rule):
    assert problems(kind, value, "x") == [f"x: {value!r} is not a place this role writes to; it must be {rule}"]


@pytest.mark.parametrize("kind,value", [
    ("cache_dir", "/var/cache/npuenv/../../etc"), ("venv_dir", "/opt/npuenv/../../usr"),
    ("profile_script", "/etc/profile.d/../passwd"), ("cache_dir", "/var/cache/npuenv/x;id"),
    ("hccn_conf", "etc/hccn.conf"),
])
def test_a_place_is_also_a_plain_absolute_path(kind, value):
    found = problems(kind, value)
    assert len(found) == 1 and "is not an absolute path of letters, digits" in found[0], found

"""The roles' input patterns (plugins/filter/npuenv_inputs.py), and the rule that
the roles hand values to the node as argv, never through a shell."""
from __future__ import annotations

import pytest
import yaml

from tests.conftest import ROOT
from tests.unit.test_playbook_plugins import plugin

inputs = plugin("filter", "npuenv_inputs")
ROLES = ROOT / "playbooks" / "roles"
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
    site = yaml.safe_load((ROOT / "playbooks" / "site.yml").read_text())[0]
    checked = site["pre_tasks"][0]
    assert checked["ansible.builtin.include_role"]["tasks_from"] == "inputs" and role in checked["loop"]

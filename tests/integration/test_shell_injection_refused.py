"""Security: an inventory value with a shell character is refused before
anything runs on the node, by site.yml (every role's inputs first) and by each
role on its own. Ansible runs for real, against this machine with the local
connection in check mode; the payload would create a marker file if any shell
ran it."""
from __future__ import annotations

import json
import re
import sys
from unittest import mock

import pytest
import yaml

from ansible_run import run as playbook_run
from ansible_run.role_docs import ROLES_DIR as ROLES

# What a role does first when it has been handed a bad value: its own checks.
ROLE_FIRST_TASK = {
    "preflight": "Lock | Take the lock of this deploy",
    "npu_driver": "NPU driver | Create the driver's run group",
    "cann": "CANN | Stage the installers of the plan",
    "hccn": "HCCN | Set the device IPs and netdetect addresses that differ, write the configuration and check the links",
    "python_stack": "Python stack | Decide whether the wheelhouse must be pushed",
    "ascend_env": "Ascend env | Write the login profile script",
    "cluster_tuning": "Cluster tuning | Persist the kernel network settings",
}


def inventory(tmp_path, host_vars: dict) -> str:
    host = {"ansible_connection": "local", "ansible_become": False, "ansible_python_interpreter": sys.executable,
            **host_vars}
    data = {"all": {"children": {"npu_nodes": {"hosts": {"localhost": host}}},
                    "vars": {"npuenv_row": {"torch_npu": "2.13.0"}, "npuenv_installer_cache": str(tmp_path / "none"),
                             "npuenv_wheelhouse": str(tmp_path / "none")}}}
    path = tmp_path / "hosts.yml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def run(playbook: str, inv: str):
    """The playbook as ansible-playbook run by hand meets the values: npuenv's own check of them on the
    controller (tests/unit/test_deploy_args.py) is set aside, so that the roles' checks are what is tested."""
    with mock.patch.object(playbook_run, "role_input_problems", lambda *args: ([], False)):
        result = playbook_run.run_playbook(playbook, inv, check=True, capture=True)
    return result.returncode, result.stdout + result.stderr


def marker_payload(tmp_path) -> tuple[str, object]:
    marker = tmp_path / "PWNED"
    return f"; touch {marker}", marker


@pytest.mark.parametrize("variable,value,message", [
    ("hccn_device_ips", ["192.168.100.101", "192.168.101.101{payload}"],
     "hccn_device_ips[1]: '192.168.101.101; touch {marker}' is not an IPv4 address"),
    ("npu_driver_stage_dir", "/var/cache/npuenv{payload}",
     "npu_driver_stage_dir: '/var/cache/npuenv; touch {marker}' is not an absolute path"),
    ("cann_stage_dir", "/var/cache/npuenv{payload}",
     "cann_stage_dir: '/var/cache/npuenv; touch {marker}' is not an absolute path"),
])
def test_site_refuses_a_shell_character_before_any_role_runs(tmp_path, variable, value, message):
    payload, marker = marker_payload(tmp_path)
    value = json.loads(json.dumps(value).replace("{payload}", payload))
    rc, out = run("site.yml", inventory(tmp_path, {variable: value}))
    assert rc == playbook_run.HOST_FAILED, out[-3000:]
    assert message.format(marker=marker) in out
    assert "Lock | Take the lock of this deploy" not in out  # nothing after the checks ran
    assert not marker.exists()


def test_a_value_npuenv_cannot_check_before_ansible_renders_it_is_refused_by_the_roles(tmp_path):
    """Through npuenv (its own check not set aside): a template is left to the roles, whose checks then
    run, refuse the rendered value, and nothing after them runs."""
    payload, marker = marker_payload(tmp_path)
    inv = inventory(tmp_path, {"hccn_device_ips": "{{ my_ips }}", "my_ips": [f"192.168.100.101{payload}"]})
    result = playbook_run.run_playbook("site.yml", inv, check=True, capture=True)
    out = result.stdout + result.stderr
    assert result.returncode == playbook_run.HOST_FAILED, out[-3000:]
    assert f"hccn_device_ips[0]: '192.168.100.101; touch {marker}' is not an IPv4 address" in out, out[-3000:]
    assert "Lock | Take the lock of this deploy" not in out
    assert not marker.exists()


def test_site_with_good_inputs_gets_past_the_checks(tmp_path):
    """The control: the same run with sound values gets past every role's input checks to the lock
    (which it cannot make here: the inventory's installer folder does not exist)."""
    rc, out = run("site.yml", inventory(tmp_path, {"hccn_device_ips": ["192.168.100.101", "192.168.101.101"]}))
    assert "Check the role's inputs" in out and "is not an" not in out, out[-3000:]
    assert f"npuenv_lock: {tmp_path / 'none'} has no SHA256SUMS" in out, out[-3000:]
    # the rollout's progress (plugins/callback/npuenv_progress.py): a line per finished task, with its time
    assert re.search(r"^ +\d+\.\d s  npuenv\.ascend\.preflight : Lock \| Take the lock of this deploy \(npuenv_lock, else npuenv_row resolved once\)"
                     r"  \(failed 1\)$", out, re.M), out[-3000:]
    assert re.search(r"^rollout: \d+\.\d s$", out, re.M) and "PLAY RECAP" in out


def role_playbook(tmp_path, role: str) -> str:
    path = tmp_path / f"only-{role}.yml"
    path.write_text(yaml.safe_dump([{"hosts": "npu_nodes", "gather_facts": False,
                                     # what the preflight role hands on (the roles' argument specs require it)
                                     "vars": {"npuenv_stack": {}, "npuenv_installers": {}, "npuenv_plan": {},
                                              "npuenv_python": "/usr/bin/python3", "npuenv_state": {}},
                                     "roles": [f"npuenv.ascend.{role}"]}]))
    return str(path)


@pytest.mark.parametrize("role,variable,value,message", [
    ("preflight", "preflight_required_tools", ["lspci", "ifconfig{payload}"],
     "preflight_required_tools[1]: 'ifconfig; touch {marker}' is not a command name"),
    ("npu_driver", "npu_driver_user", "HwHiAiUser{payload}", "npu_driver_user: 'HwHiAiUser; touch {marker}' is not a "
                                                            "user or group name"),
    ("npu_driver", "npu_driver_stage_dir", "/var/cache{payload}", "npu_driver_stage_dir: '/var/cache; touch {marker}'"),
    ("cann", "cann_stage_dir", "/var/cache/npuenv{payload}", "cann_stage_dir: '/var/cache/npuenv; touch {marker}'"),
    ("hccn", "hccn_netmask", "255.255.0.255", "hccn_netmask: '255.255.0.255' is not a netmask"),
    ("hccn", "hccn_netdetect_address", "$(touch {marker})", "hccn_netdetect_address: '$(touch {marker})' is not an "
                                                             "IPv4 address"),
    ("python_stack", "python_stack_venv", "opt/venv", "python_stack_venv: 'opt/venv' is not an absolute path"),
    ("ascend_env", "ascend_env_variables", {"HCCL_CONNECT_TIMEOUT": "120\nreboot"},
     "ascend_env_variables.HCCL_CONNECT_TIMEOUT: '120\\nreboot' must be one line"),
    ("cluster_tuning", "cluster_tuning_sysctl", {"net.core.somaxconn": "1{payload}"},
     "cluster_tuning_sysctl.net.core.somaxconn: '1; touch {marker}' is not a sysctl value"),
])
def test_each_role_refuses_a_bad_value_before_its_first_task(tmp_path, role, variable, value, message):
    payload, marker = marker_payload(tmp_path)
    value = json.loads(json.dumps(value).replace("{payload}", payload).replace("{marker}", str(marker)))
    rc, out = run(role_playbook(tmp_path, role), inventory(tmp_path, {variable: value}))
    assert rc == playbook_run.HOST_FAILED, out[-3000:]
    assert message.format(marker=marker) in out, out[-3000:]
    assert ROLE_FIRST_TASK[role] not in out
    # the name is the role's own (a task renamed would make the line above pass whatever ran)
    assert ROLE_FIRST_TASK[role] in "".join(f.read_text() for f in (ROLES / role / "tasks").glob("*.yml"))
    assert not marker.exists()

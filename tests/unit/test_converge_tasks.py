"""The pieces that let a converge run few, coarse tasks (issue 22): each behaves
as the separate tasks it replaced did. The lock's entries found once for all
hosts; a staged installer checked against its sha256 in the task that runs it;
npuenv's small files written (folders made) or removed in one module call; the
node read in one module call (tools, kernel headers, npu-smi); the kernel
settings persisted and set in one module call; the hccn role in one action."""
from __future__ import annotations

import hashlib
import importlib.util
import json
import shlex
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import compat_matrix as cm
from compat_matrix import lock as lock_mod
from playbooks.collections.ansible_collections.npuenv.ascend.plugins.action import npuenv_hccn as hccn
from playbooks.collections.ansible_collections.npuenv.ascend.plugins.module_utils import npuenv_atomic
from tests.conftest import ROOT
from tests.unit.test_deploy_plan import stack_of
from tests.unit.test_playbook_plugins import plugin

plan_mod = plugin("filter", "npuenv_plan")
npuenv_filters = plugin("filter", "npuenv")


COLLECTIONS = ROOT / "playbooks" / "collections"
PLUGINS = COLLECTIONS / "ansible_collections" / "npuenv" / "ascend" / "plugins"
# The modules import their module_utils by the collection's name, as Ansible ships them.
sys.modules.setdefault("ansible_collections.npuenv.ascend.plugins.module_utils.npuenv_atomic",
                       npuenv_atomic)


def module(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


MODULES = PLUGINS / "modules"
files_mod = module(MODULES / "npuenv_files.py")
state_mod = module(MODULES / "npuenv_node_state.py")
sysctl_mod = module(MODULES / "npuenv_sysctl.py")


# --- the lock's entries, once for all hosts ----------------------------------------

def test_every_host_gets_the_entry_of_its_arch_and_os_and_each_machine_kind_is_looked_up_once(monkeypatch):
    data = lock_mod.make(cm.load_matrix(), cm.Constraints(torch_npu="2.13.0", python="3.11")).data
    calls = []
    real = plan_mod.lock_entry
    monkeypatch.setattr(plan_mod, "lock_entry", lambda *a: calls.append(a[1:]) or real(*a))
    debian = {"architecture": "x86_64", "distribution": "Debian", "distribution_version": "12.12"}
    centos = {"architecture": "x86_64", "distribution": "CentOS", "distribution_version": "7.9"}
    found = plan_mod.lock_entries(data, {"a": debian, "b": centos, "c": dict(debian)})
    assert found["a"] == found["c"] and found["a"]["key"] == "x86_64/debian12"
    assert found["b"]["key"] is None and "CentOS 7.9" in found["b"]["problem"]
    assert sorted(calls) == [("x86_64", "CentOS", "7.9"), ("x86_64", "Debian", "12.12")]


# --- a staged installer, checked where it runs --------------------------------------

@pytest.fixture
def installer(tmp_path):
    """A fake installer that prints its arguments and what the env script set."""
    path = tmp_path / "Ascend-cann-nnal_9.1.0_linux-x86_64.run"
    path.write_text('#!/bin/bash\necho "args:$*" "env:${FROM_SET_ENV:-unset}"\n')
    path.chmod(0o755)
    return path, hashlib.sha256(path.read_bytes()).hexdigest()


def run(argv):
    return subprocess.run(argv, capture_output=True, text=True)


def test_an_installer_whose_sha256_matches_runs_with_its_flags(installer):
    path, sha = installer
    p = run(npuenv_filters.verified_run(str(path), sha, ["--install", "--quiet"]))
    assert p.returncode == 0 and p.stdout.strip() == "args:--install --quiet env:unset", p.stderr


def test_an_installer_that_differs_is_not_run_and_both_checksums_are_named(installer, tmp_path):
    path, sha = installer
    marker = tmp_path / "ran"
    path.write_text(f"#!/bin/bash\ntouch {marker}\n")
    p = run(npuenv_filters.verified_run(str(path), sha, ["--install"]))
    have = hashlib.sha256(path.read_bytes()).hexdigest()
    assert p.returncode == 97 and not marker.exists()
    assert p.stderr.strip() == (f"{path.name} on the node does not match the controller's copy "
                                f"(SHA256 {have}, expected {sha})")
    missing = run(npuenv_filters.verified_run(str(tmp_path / "gone.run"), sha, []))
    assert missing.returncode == 97 and "(SHA256 missing, expected" in missing.stderr


def test_the_env_script_is_sourced_without_the_installers_arguments(installer, tmp_path):
    path, sha = installer
    env_script = tmp_path / "set_env.sh"
    env_script.write_text('export FROM_SET_ENV="sourced with $# args"\n')
    p = run(npuenv_filters.verified_run(str(path), sha, ["--install", "a b"], str(env_script)))
    assert p.returncode == 0 and p.stdout.strip() == "args:--install a b env:sourced with 0 args", p.stderr


def test_a_flag_with_shell_characters_stays_one_argument(installer, tmp_path):
    path, sha = installer
    p = run(npuenv_filters.verified_run(str(path), sha, [f"--x=$(touch {tmp_path}/pwned); y"]))
    assert p.returncode == 0 and not (tmp_path / "pwned").exists() and "$(touch" in p.stdout


# --- npuenv's small files ----------------------------------------------------------

def test_files_are_written_with_their_folders_and_a_second_run_changes_nothing(tmp_path):
    files = [{"path": str(tmp_path / "etc/npuenv/lock.json"), "content": '{"a": 1}\n'},
             {"path": str(tmp_path / "etc/npuenv/node.json"), "content": "{}", "mode": "0600"}]
    changed, diffs = files_mod.apply(files, check_mode=False)
    assert changed == [f["path"] for f in files] and [d["after"] for d in diffs] == ['{"a": 1}\n', "{}"]
    assert (tmp_path / "etc/npuenv/lock.json").read_text() == '{"a": 1}\n'
    assert (tmp_path / "etc/npuenv").stat().st_mode & 0o777 == 0o755
    assert (tmp_path / "etc/npuenv/node.json").stat().st_mode & 0o777 == 0o600
    assert files_mod.apply(files, check_mode=False) == ([], [])
    assert sorted(p.name for p in (tmp_path / "etc/npuenv").iterdir()) == ["lock.json", "node.json"]  # no temp left


def test_a_changed_content_or_mode_is_rewritten_and_absent_removes(tmp_path):
    path = tmp_path / "deploying.json"
    path.write_text("old")
    path.chmod(0o600)
    assert files_mod.apply([{"path": str(path), "content": "old"}], check_mode=False)[0] == [str(path)]
    assert path.stat().st_mode & 0o777 == 0o644
    changed, diffs = files_mod.apply([{"path": str(path), "state": "absent"}], check_mode=False)
    assert changed == [str(path)] and diffs[0]["before"] == "old" and not path.exists()
    assert files_mod.apply([{"path": str(path), "state": "absent"}], check_mode=False) == ([], [])


def test_check_mode_reports_the_change_and_makes_none(tmp_path):
    path = tmp_path / "etc/npuenv/lock.json"
    changed, diffs = files_mod.apply([{"path": str(path), "content": "x"}], check_mode=True)
    assert changed == [str(path)] and diffs[0] == {"before_header": str(path), "after_header": str(path),
                                                   "before": "", "after": "x"}
    assert not (tmp_path / "etc").exists()


@pytest.mark.parametrize("entry,message", [
    ({"path": "etc/npuenv/lock.json", "content": ""}, "is not an absolute path"),
    ({"path": "/etc/npuenv/../passwd", "content": ""}, "is not an absolute path without '..'"),
    ({"path": "/etc/npuenv/lock.json"}, "give its content (text) or state: absent"),
])
def test_a_bad_entry_is_refused(entry, message):
    with pytest.raises(files_mod.Refused, match=message.replace("(", r"\(").replace(")", r"\)")):
        files_mod.apply([entry], check_mode=True)


# --- the node, read in one call ------------------------------------------------------

def test_the_node_read_names_missing_tools_the_kernel_headers_and_npu_smis_answer(tmp_path):
    smi = tmp_path / "npu-smi"
    smi.write_text('#!/bin/sh\necho "npu-smi says $1"\n')
    smi.chmod(0o755)
    stack = stack_of("2.13.0", tmp_path)
    params = {"install_root": stack["paths"]["install_root"], "arch": "x86_64", "layouts": plan_mod.layouts(stack),
              "hdk": {"install_info": str(tmp_path / "none"), "driver_home": stack["paths"]["driver_home"],
                      "firmware_home": stack["paths"]["firmware_home"]},
              "tools": ["sh", "no-such-tool-npuenv"], "npu_smi": str(smi)}
    state = state_mod.collect(params)
    assert state["tools_missing"] == ["no-such-tool-npuenv"]
    assert state["kernel"] == os.uname().release
    assert state["kernel_headers"] == os.path.isdir(f"/lib/modules/{os.uname().release}/build")
    assert state["npu_smi"] == {"rc": 0, "stdout": "npu-smi says info\n"}
    no_driver = state_mod.collect({**params, "npu_smi": str(tmp_path / "absent")})["npu_smi"]
    assert no_driver["rc"] is None and no_driver["stdout"] == ""


# --- the hccn role in one task ----------------------------------------------------------

IPS = ["10.0.0.5", "10.0.1.5"]


def fake_hccn_tool(tmp_path: Path) -> Path:
    """An hccn_tool that keeps each device's settings in files and answers -g as the 910B tool does
    (a device's link from its file "link", UP without it; its net health from its file "health", else
    Success once it has a netdetect address to probe and Init before); -s on a device with a file
    "refuse" fails as the tool does."""
    tool, here = tmp_path / "hccn_tool", shlex.quote(str(tmp_path))
    tool.write_text(f"""#!/bin/bash
d={here}/dev$2; mkdir -p "$d"
case "$3 $4" in
  "-ip -s"|"-netdetect -s") if [ -f "$d/refuse" ]; then echo "Set ip failed"; exit 1; fi ;;&
  "-ip -s") echo "$6 $8" > "$d/ip"; echo "ip set: $@" >> {here}/log ;;
  "-netdetect -s") echo "$6" > "$d/nd"; echo "netdetect set: $@" >> {here}/log ;;
  "-ip -g") if [ -f "$d/ip" ]; then read a m < "$d/ip"; echo "ipaddr:$a"; echo "netmask:$m";
            else echo "Get ipconf failed, because no ip was preset there!"; fi ;;
  "-netdetect -g") echo "netdetect address: $(cat "$d/nd" 2>/dev/null || echo 0.0.0.0)" ;;
  "-link -g") echo "link status: $(cat "$d/link" 2>/dev/null || echo UP)" ;;
  "-net_health -g") if [ -f "$d/health" ]; then h=$(cat "$d/health"); elif [ -f "$d/nd" ]; then h=Success;
                    else h=Init; fi; echo "net health status: $h" ;;
esac
""")
    tool.chmod(0o755)
    return tool


def converge_hccn(tmp_path: Path, check: bool = False, **args) -> dict:
    """The action's work with its commands run here and /etc/hccn.conf written by npuenv_files' own code."""
    def execute(argv):
        p = run(argv)
        return p.returncode, p.stdout, p.stderr

    def write_files(files):   # as the module answers
        try:
            changed, diffs = files_mod.apply(files, check)
        except OSError as e:
            return {"failed": True, "msg": f"npuenv_files: {e}"}
        return {"changed": bool(changed), "diff": diffs}

    given = {"tool": str(tmp_path / "hccn_tool"), "device_ips": IPS, "netmask": "255.255.255.0",
             "netdetect_address": "10.0.0.254", "conf": str(tmp_path / "etc" / "hccn.conf"), "check_health": True,
             **args}
    return hccn.converge(given, check, execute, write_files)


def set_calls(tmp_path: Path) -> list[str]:
    log = tmp_path / "log"
    return log.read_text().splitlines() if log.exists() else []


def test_hccn_sets_what_differs_writes_the_conf_and_a_second_run_changes_nothing(tmp_path):
    fake_hccn_tool(tmp_path)
    (tmp_path / "dev0").mkdir()
    (tmp_path / "dev0" / "ip").write_text("10.0.0.5 255.255.255.0\n")   # device 0's IP is already right
    out = converge_hccn(tmp_path)
    assert out["changed"] and not out["failed"], out
    assert out["set"] == {"ip": [1], "netdetect": [0, 1]}
    assert set_calls(tmp_path) == ["ip set: -i 1 -ip -s address 10.0.1.5 netmask 255.255.255.0",
                                   "netdetect set: -i 0 -netdetect -s address 10.0.0.254",
                                   "netdetect set: -i 1 -netdetect -s address 10.0.0.254"]
    conf = tmp_path / "etc" / "hccn.conf"
    assert conf.read_text().splitlines()[1:] == [
        "address_0=10.0.0.5", "netmask_0=255.255.255.0", "netdetect_0=10.0.0.254",
        "address_1=10.0.1.5", "netmask_1=255.255.255.0", "netdetect_1=10.0.0.254"]
    assert conf.read_text().startswith("# ") and conf.stat().st_mode & 0o777 == 0o644
    # validation reads the file the role writes (the driver's keys, as a 910B1 node's published file has them)
    from validation.node.vendor_tools import hccn_tool
    assert hccn_tool.parse_hccn_conf(conf.read_text())[1] == {"address": "10.0.1.5", "netmask": "255.255.255.0",
                                                              "netdetect": "10.0.0.254"}
    assert out["msg"] == "2 NPU network device(s) up and healthy"
    again = converge_hccn(tmp_path)
    assert not again["changed"] and again["set"] == {} and not again["failed"], again
    assert len(set_calls(tmp_path)) == 3
    conf_only = converge_hccn(tmp_path, netdetect_address="")   # no netdetect wanted: none set, the file changes
    assert conf_only["set"] == {} and conf_only["changed"] and "netdetect_0" not in conf.read_text()
    assert not converge_hccn(tmp_path, netdetect_address="")["changed"]
    (tmp_path / "dev1" / "ip").write_text("10.0.1.9 255.255.255.0\n")   # changed by hand; the file still right
    by_hand = converge_hccn(tmp_path, netdetect_address="")
    assert by_hand["changed"] and by_hand["set"] == {"ip": [1], "netdetect": []} and "diff" not in by_hand, by_hand
    moved = converge_hccn(tmp_path, netdetect_address="10.0.0.253")   # only the netdetect address differs
    assert moved["changed"] and moved["set"] == {"ip": [], "netdetect": [0, 1]}


def test_hccn_judges_the_health_the_devices_have_after_they_are_set(tmp_path):
    """Net health needs a netdetect address to probe: Init before the set, Success after it."""
    fake_hccn_tool(tmp_path)
    out = converge_hccn(tmp_path)
    assert not out["failed"] and out["set"] == {"ip": [0, 1], "netdetect": [0, 1]}, out


def test_hccn_counts_a_link_it_could_not_read_as_down_and_fails_when_the_conf_cannot_be_written(tmp_path):
    assert hccn.health_problem({0: {"link": None, "health": "Success"}, 1: {"link": "UP", "health": "Success"}},
                               2).startswith("NPU network not ready: link down on device(s) 0; net health not "
                                             "Success on device(s) none")
    assert hccn.health_problem({0: {"link": "UP", "health": "Success"}}, 2).startswith(
        "NPU network not ready: link down on device(s) 1; net health not Success on device(s) 1 ")
    assert hccn.health_problem({0: {"link": "UP", "health": "Init"}, 1: {"link": "UP", "health": None}}, 2).startswith(
        "NPU network not ready: link down on device(s) none; net health not Success on device(s) 0, 1 ")
    assert hccn.health_problem({}, 2).startswith("NPU network not ready: link down on device(s) 0, 1; ")
    fake_hccn_tool(tmp_path)
    (tmp_path / "etc").write_text("a file where the folder should be")
    out = converge_hccn(tmp_path)
    assert out["failed"] and out["msg"].startswith("npuenv_files: ") and out["set"], out


def test_hccn_fails_naming_the_devices_whose_link_is_down_or_health_is_bad(tmp_path):
    fake_hccn_tool(tmp_path)
    (tmp_path / "dev1").mkdir()
    (tmp_path / "dev1" / "link").write_text("DOWN\n")
    (tmp_path / "dev0").mkdir()
    (tmp_path / "dev0" / "health").write_text("Init\n")
    out = converge_hccn(tmp_path)
    assert out["failed"] and out["msg"] == (
        "NPU network not ready: link down on device(s) 1; net health not Success on device(s) 0 (check the "
        "cabling and the switch port, then `hccn_tool -i N -net_health -g`)")
    assert (tmp_path / "etc" / "hccn.conf").exists()   # set and written first: the links are the cabling's
    assert not converge_hccn(tmp_path, check_health=False)["failed"]


def test_hccn_fails_without_the_tool_or_when_setting_fails(tmp_path):
    out = converge_hccn(tmp_path)
    missing = tmp_path / "hccn_tool"
    assert out["failed"] and out["msg"] == (
        f"hccn_tool survey failed (rc 1): {missing} is missing: the NPU driver is not installed (run the driver "
        f"tag first)")
    assert not (tmp_path / "etc").exists()
    fake_hccn_tool(tmp_path)
    (tmp_path / "dev1").mkdir()
    (tmp_path / "dev1" / "refuse").write_text("")
    out = converge_hccn(tmp_path)
    assert out["failed"] and out["msg"].startswith("hccn_tool could not set {'ip': [0, 1], 'netdetect': [0, 1]} "
                                                   "(rc 1): ") and out["msg"].endswith("Set ip failed")
    assert not (tmp_path / "etc").exists()


def test_hccn_in_check_mode_reads_says_what_it_would_set_and_changes_nothing(tmp_path):
    before_driver = converge_hccn(tmp_path, check=True)   # no hccn_tool yet: the run would install the driver
    assert before_driver["changed"] and not before_driver.get("failed"), before_driver
    assert before_driver["set"] == {"ip": [0, 1], "netdetect": [0, 1]}
    fake_hccn_tool(tmp_path)
    (tmp_path / "dev1").mkdir()
    (tmp_path / "dev1" / "link").write_text("DOWN\n")
    out = converge_hccn(tmp_path, check=True)
    assert out["changed"] and not out.get("failed") and out["set"] == {"ip": [0, 1], "netdetect": [0, 1]}
    assert set_calls(tmp_path) == [] and not (tmp_path / "etc").exists()
    assert out["diff"][0]["after"].splitlines()[1] == "address_0=10.0.0.5"
    assert out["msg"] == "2 NPU network device(s) read; health not checked"


def test_hccn_survey_reads_each_devices_sections_and_todo_names_what_differs():
    text = ("@@ip 0\nipaddr:10.0.0.1\nnetmask:255.255.255.0\n"
            "@@netdetect 0\nnetdetect address: 10.0.0.254\n@@link 0\nlink status: UP\n"
            "@@health 0\nnet health status: Success\n"
            "@@ip 1\nGet ipconf failed, because no ip was preset there!\n"
            "@@netdetect 1\nnetdetect address: 0.0.0.0\n@@link 1\nlink status: DOWN\n"
            "@@health 1\nnet health status: Init\n"
            "@@link 2\nsomething this parser does not know\n")
    state = hccn.survey(text)
    assert state[2] == {"link": None}
    assert state[0] == {"ip": {"address": "10.0.0.1", "netmask": "255.255.255.0"}, "netdetect": "10.0.0.254",
                        "link": "UP", "health": "Success"}
    assert state[1]["ip"] is None and state[1]["link"] == "DOWN" and state[1]["health"] == "Init"
    assert hccn.todo(state, ["10.0.0.1", "10.0.1.1"], "255.255.255.0", "10.0.0.254") == {"ip": [1], "netdetect": [1]}
    assert hccn.todo(state, ["10.0.0.1", "10.0.1.1"], "255.255.0.0", "") == {"ip": [0, 1], "netdetect": []}


def test_hccn_values_stay_single_arguments(tmp_path):
    """What reaches the node's shell is argv, quoted whole: an address holding shell text is one argument."""
    argv = hccn.set_argv("/usr/local/Ascend/driver/tools/hccn_tool", 2, "255.255.255.0", "10.0.0.254; touch x",
                         ["10.0.0.5", "10.0.1.5$(id)"], {"ip": [1], "netdetect": [0]})
    assert shlex.split(shlex.join(argv)) == argv
    assert argv[4:] == ["/usr/local/Ascend/driver/tools/hccn_tool", "2", "255.255.255.0", "10.0.0.254; touch x",
                        "1", "10.0.1.5$(id)", "--", "0"]


def test_hccn_as_ansible_runs_it_quotes_each_value_for_the_nodes_shell_and_writes_with_npuenv_files(tmp_path):
    """ActionModule.run with its two ways to the node stood in for: each command line is run by a
    shell here (as the node's is), the module by npuenv_files' own code."""
    from types import SimpleNamespace

    folder = tmp_path / "a b$(touch pwned)"
    folder.mkdir()
    fake_hccn_tool(folder)
    sent, modules = [], []

    def low_level(cmd, sudoable=False):
        sent.append(sudoable)
        p = subprocess.run(["/bin/sh", "-c", cmd], capture_output=True, text=True, cwd=tmp_path)
        return {"rc": p.returncode, "stdout": p.stdout, "stderr": p.stderr}

    def execute_module(module_name, module_args, task_vars):
        assert task_vars == {"inventory_hostname": "npu-0"}   # the host's, for the module's interpreter
        modules.append(module_name)
        changed, diffs = files_mod.apply(module_args["files"], task.check_mode)
        return {"changed": bool(changed), "diff": diffs}

    def action(check=False, **args):
        nonlocal task
        task = SimpleNamespace(args=args, async_val=0, check_mode=check, action="npuenv.ascend.npuenv_hccn")
        made = hccn.ActionModule(task, SimpleNamespace(_shell=SimpleNamespace(tmpdir="/unused")), None, None, None)
        made._low_level_execute_command, made._execute_module = low_level, execute_module
        return made.run(task_vars={"inventory_hostname": "npu-0"})

    task = None

    args = {"tool": str(folder / "hccn_tool"), "device_ips": IPS, "netmask": "255.255.255.0",
            "netdetect_address": "10.0.0.254", "conf": str(tmp_path / "etc" / "hccn.conf")}
    missing = action(**{**args, "tool": str(tmp_path / "none" / "hccn_tool")})
    assert missing["failed"] and missing["msg"].endswith("none/hccn_tool is missing: the NPU driver is not installed "
                                                         "(run the driver tag first)")
    preview = action(check=True, **args)
    assert preview["changed"] and set_calls(folder) == [] and not (tmp_path / "etc").exists()
    sent.clear()
    out = action(**args)
    assert not out["failed"] and out["changed"] and out["set"] == {"ip": [0, 1], "netdetect": [0, 1]}, out
    assert sent == [True, True] and modules == ["npuenv.ascend.npuenv_files"] * 2   # the preview's and this
    assert len(set_calls(folder)) == 4 and not (tmp_path / "pwned").exists()
    assert (tmp_path / "etc" / "hccn.conf").read_text().count("address_") == 2
    assert not action(**args)["changed"] and sent == [True, True, True]   # the survey alone
    from ansible.errors import AnsibleActionFail
    with pytest.raises(AnsibleActionFail, match="Invalid options for npuenv.ascend.npuenv_hccn: netmaks"):
        action(**args, netmaks="255.255.0.0")


GOOD_HCCN = {"tool": "/usr/local/Ascend/driver/tools/hccn_tool", "device_ips": IPS, "netmask": "255.255.255.0",
             "netdetect_address": "", "conf": "/etc/hccn.conf"}


@pytest.mark.parametrize("bad, named", [
    ({"device_ips": ["10.0.0.5; touch x"]}, "device_ips"), ({"device_ips": []}, "device_ips"),
    ({"netmask": "255.0.255.0"}, "netmask"), ({"netdetect_address": "$(id)"}, "netdetect_address"),
    ({"tool": "hccn_tool"}, "tool 'hccn_tool' is not an absolute path"), ({"conf": None}, "conf None"),
    ({"check_health": "maybe"}, "check_health 'maybe' is not a boolean")])
def test_hccn_refuses_values_that_are_not_what_they_name(bad, named):
    from ansible.errors import AnsibleActionFail
    assert hccn._checked({**GOOD_HCCN, "netdetect_address": "10.0.0.254"}) == {**GOOD_HCCN, "netdetect_address": "10.0.0.254",
                                                                               "check_health": True}
    assert hccn._checked(GOOD_HCCN)["netdetect_address"] == ""
    assert hccn._checked({**GOOD_HCCN, "check_health": "false"})["check_health"] is False
    with pytest.raises(AnsibleActionFail) as info:
        hccn._checked({**GOOD_HCCN, **bad})
    assert str(info.value).startswith("npuenv_hccn: ") and named in str(info.value)


# --- the kernel settings, persisted and set in one call ---------------------------------

def fake_sysctl(tmp_path: Path) -> Path:
    """A sysctl that keeps the live values in files (a key without one is one the kernel lacks) and
    answers -n and -w as procps' sysctl does, logging each write."""
    live = tmp_path / "proc"
    live.mkdir()
    tool = tmp_path / "bin" / "sysctl"
    tool.parent.mkdir()
    tool.write_text(f"""#!/bin/bash
mode=$1; shift 2   # -n or -w, then --
for arg in "$@"; do
  key=${{arg%%=*}}; f={live}/$key
  if [ ! -f "$f" ]; then echo "sysctl: cannot stat /proc/sys/${{key//.//}}: No such file or directory" >&2; exit 255; fi
  if [ "$mode" = -w ]; then printf '%s\\n' "${{arg#*=}}" > "$f"; echo "$arg" >> {tmp_path}/writes;
  else cat "$f"; fi
done
""")
    tool.chmod(0o755)
    return live


def run_sysctl_module(tmp_path: Path, settings: dict, check: bool = False) -> tuple[int, dict]:
    """The module run as Ansible runs it on a node: its arguments in a file, the fake sysctl on PATH."""
    args = tmp_path / "args.json"
    args.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": {"settings": settings, "path": str(tmp_path / "etc/90-npuenv.conf"),
                                                        "_ansible_check_mode": check, "_ansible_diff": True}}))
    env = {**os.environ, "PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}", "PYTHONPATH": str(COLLECTIONS)}
    p = subprocess.run([sys.executable, str(MODULES / "npuenv_sysctl.py"), str(args)], capture_output=True, text=True,
                       env=env)
    return p.returncode, json.loads(p.stdout)


SETTINGS = {"net.core.somaxconn": 65535, "net.ipv4.ip_local_reserved_ports": "60000-60015",
            "net.ipv4.tcp_rmem": "4096 87380 6291456"}


def test_the_file_is_written_the_differing_live_values_set_and_a_second_run_changes_nothing(tmp_path):
    live = fake_sysctl(tmp_path)
    (live / "net.core.somaxconn").write_text("4096\n")
    (live / "net.ipv4.ip_local_reserved_ports").write_text("60000-60015\n")
    (live / "net.ipv4.tcp_rmem").write_text("4096\t87380\t6291456\n")   # as the kernel prints it: tabs
    rc, out = run_sysctl_module(tmp_path, SETTINGS)
    assert rc == 0 and out["changed"] and out["file_changed"], out
    assert out["set"] == {"net.core.somaxconn": "65535"}
    assert (tmp_path / "writes").read_text() == "net.core.somaxconn=65535\n"
    conf = tmp_path / "etc/90-npuenv.conf"
    assert conf.read_text().splitlines()[1:] == ["net.core.somaxconn = 65535",
                                                 "net.ipv4.ip_local_reserved_ports = 60000-60015",
                                                 "net.ipv4.tcp_rmem = 4096 87380 6291456"]
    assert conf.read_text().startswith("# ") and conf.stat().st_mode & 0o777 == 0o644
    assert out["diff"]["before"] == "" and out["diff"]["after"] == conf.read_text()
    rc, again = run_sysctl_module(tmp_path, SETTINGS)
    assert rc == 0 and not again["changed"] and again["set"] == {} and not again["file_changed"], again
    assert sorted(p.name for p in conf.parent.iterdir()) == ["90-npuenv.conf"]   # no temp file left


def test_a_live_value_changed_since_is_set_again_and_a_changed_mode_rewrites_the_file(tmp_path):
    live = fake_sysctl(tmp_path)
    for key, value in SETTINGS.items():
        (live / key).write_text(f"{value}\n")
    assert run_sysctl_module(tmp_path, SETTINGS)[1]["set"] == {}
    (live / "net.ipv4.ip_local_reserved_ports").write_text("\n")   # a restart without the file, another tool
    (tmp_path / "etc/90-npuenv.conf").chmod(0o600)
    rc, out = run_sysctl_module(tmp_path, SETTINGS)
    assert rc == 0 and out["set"] == {"net.ipv4.ip_local_reserved_ports": "60000-60015"} and out["file_changed"]
    assert (tmp_path / "etc/90-npuenv.conf").stat().st_mode & 0o777 == 0o644


def test_check_mode_says_what_would_change_and_changes_nothing(tmp_path):
    live = fake_sysctl(tmp_path)
    for key in SETTINGS:
        (live / key).write_text("1\n")
    rc, out = run_sysctl_module(tmp_path, SETTINGS, check=True)
    assert rc == 0 and out["changed"] and out["file_changed"] and out["set"] == {k: str(v) for k, v in SETTINGS.items()}
    assert not (tmp_path / "etc").exists() and not (tmp_path / "writes").exists()
    assert (live / "net.core.somaxconn").read_text() == "1\n"


def test_a_key_the_kernel_lacks_fails_with_sysctls_message(tmp_path):
    live = fake_sysctl(tmp_path)
    (live / "net.core.somaxconn").write_text("65535\n")
    rc, out = run_sysctl_module(tmp_path, {"net.core.somaxconn": 65535, "net.core.no_such_key": 1})
    assert rc == 1 and out["failed"]
    assert out["msg"] == ("npuenv_sysctl: sysctl -w failed (exit 255): sysctl: cannot stat "
                          "/proc/sys/net/core/no_such_key: No such file or directory")


@pytest.mark.parametrize("key", ["net.core.somaxconn=1", "net core", "", "-w"])
def test_a_key_that_is_no_sysctl_key_is_refused_before_anything_is_written(tmp_path, key):
    fake_sysctl(tmp_path)
    rc, out = run_sysctl_module(tmp_path, {key: 1})
    assert rc == 1 and out["msg"] == f"npuenv_sysctl: {key!r} is not a sysctl key"
    assert not (tmp_path / "etc").exists()


def test_whitespace_counts_as_one_blank_when_live_values_are_compared():
    assert sysctl_mod.drift(SETTINGS, {"net.core.somaxconn": "65535\n", "net.ipv4.ip_local_reserved_ports": "60000-60015",
                                       "net.ipv4.tcp_rmem": " 4096\t87380  6291456\n"}) == {}
    assert sysctl_mod.drift(SETTINGS, {"net.core.somaxconn": None}) == {k: str(v) for k, v in SETTINGS.items()}


# --- the NPUs' health, read and judged in one task -----------------------------------------

health = plugin("action", "npuenv_npu_health")
VENDOR_SAMPLES = ROOT / "tests" / "fixtures" / "vendor_samples"


def test_npu_health_names_each_chip_in_a_failing_state_and_counts_the_healthy():
    critical = (VENDOR_SAMPLES / "npu-smi_info_310P3_300IDuo_25.0.rc1.b033_4card_Critical.txt").read_text()
    assert health.verdict(0, critical, ["Alarm", "Critical"]) == (
        True, "unhealthy NPUs after the install: NPU 4 chip 0 is Critical; "
              "see `npu-smi info -t health -i <npu>` for the error codes")
    assert health.verdict(0, critical, ["Alarm"]) == (False, "8 NPU chips healthy")
    ok = (VENDOR_SAMPLES / "npu-smi_info_910B2_23.0.7_8npu_no_process.txt").read_text()
    assert health.verdict(0, ok, ["Alarm", "Critical"]) == (False, "8 NPU chips healthy")


def test_npu_health_fails_when_npu_smi_fails_or_prints_no_device_table():
    not_loaded = (VENDOR_SAMPLES / "npu-smi_error_-8005_dcmi_init.txt").read_text()
    failed, msg = health.verdict(1, not_loaded, ["Alarm"])
    assert failed and msg == f"npu-smi info failed (rc 1): {not_loaded.strip()}"
    failed, msg = health.verdict(0, "", ["Alarm"])
    assert failed and msg == "npu-smi info: no npu-smi info table with chips found: ''"
    failed, msg = health.verdict(0, not_loaded, ["Alarm"])
    assert failed and msg.startswith("npu-smi info: ") and "-8005" in msg


# --- the login environment, read and compared in one command -------------------------------------

ENV_VARS = yaml.safe_load((PLUGINS.parent / "roles" / "ascend_env" / "vars" / "main.yml").read_text())


@pytest.fixture
def login(tmp_path):
    """A profile that leads to a toolkit at CANN 8.5.0 and an NNAL under nnal/8.5.0; the check's argv."""
    toolkit = tmp_path / "ascend-toolkit" / "latest"
    (toolkit / "share/info/toolkit").mkdir(parents=True)
    (toolkit / "share/info/toolkit/ascend_install.info").write_text("version=8.3.RC1\nversion=8.5.0\n")
    atb = tmp_path / "nnal" / "8.5.0" / "atb" / "latest" / "atb" / "cxx_abi_1"
    atb.mkdir(parents=True)
    (tmp_path / "atb-link").symlink_to(atb)
    profile = tmp_path / "profile.sh"
    profile.write_text(f"export ASCEND_TOOLKIT_HOME={toolkit}\nexport ATB_HOME_PATH={tmp_path / 'atb-link'}\n"
                       f"echo noise from the profile\n")

    def check(cann="8.5.0", nnal=str(tmp_path / "nnal" / "8.5.0")):
        return run(["/bin/bash", "-c", ENV_VARS["ascend_env_login_check"], "ascend-env-check", str(profile),
                    "/share/info/toolkit/ascend_install.info", cann, nnal])
    return check, profile, toolkit, atb


def test_a_login_shell_at_the_locks_cann_and_nnal_passes(login):
    check, _, _, atb = login
    p = check()
    assert p.returncode == 0 and p.stdout == f"login shell: CANN 8.5.0, NNAL {atb}\n" and p.stderr == ""


def test_a_login_shell_at_another_cann_or_nnal_fails_saying_what_it_found(login, tmp_path):
    check, profile, toolkit, atb = login
    p = check(cann="8.3.RC1")
    assert p.returncode == 1 and p.stderr == (
        f"{profile} leads a login shell to CANN 8.5.0 (ASCEND_TOOLKIT_HOME={toolkit}) and NNAL {atb}, not the "
        f"lock's CANN 8.3.RC1 and {tmp_path}/nnal/8.5.0; deploy the cann tag too (it makes the lock's version "
        f"the running one)\n")
    other_nnal = check(nnal=str(tmp_path / "nnal" / "8.5"))   # a folder whose name starts the same is not it
    assert other_nnal.returncode == 1 and f"and NNAL {atb}, not the lock's CANN 8.5.0 and {tmp_path}/nnal/8.5;" \
        in other_nnal.stderr


def test_without_nnal_only_the_cann_is_compared_and_a_login_that_sets_nothing_fails(login):
    check, profile, _, _ = login
    assert check(nnal="").returncode == 0
    profile.write_text("true\n")
    p = check(nnal="")
    assert p.returncode == 1 and p.stderr.startswith(
        f"{profile} leads a login shell to CANN none (ASCEND_TOOLKIT_HOME=unset) and NNAL none, not the lock's "
        f"CANN 8.5.0; deploy")

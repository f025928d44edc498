"""The pieces that let a converge run few, coarse tasks (issue 22): each behaves
as the separate tasks it replaced did. The lock's entries found once for all
hosts; a staged installer checked against its sha256 in the task that runs it;
npuenv's small files written (folders made) or removed in one module call; the
node read in one module call (tools, kernel headers, npu-smi); the hccn role's
set-and-survey script."""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml

import compat_matrix as cm
from compat_matrix import lock as lock_mod
from tests.conftest import ROOT
from tests.unit.test_deploy_plan import stack_of
from tests.unit.test_playbook_plugins import plugin

plan_mod = plugin("filter", "npuenv_plan")
npuenv_filters = plugin("filter", "npuenv")


def module(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


MODULES = ROOT / "playbooks" / "collections" / "ansible_collections" / "npuenv" / "ascend" / "plugins" / "modules"
files_mod = module(MODULES / "npuenv_files.py")
state_mod = module(MODULES / "npuenv_node_state.py")


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


# --- the hccn role's scripts ----------------------------------------------------------

HCCN_VARS = yaml.safe_load((ROOT / "playbooks" / "collections" / "ansible_collections" / "npuenv" / "ascend" / "roles" / "hccn" / "vars" / "main.yml").read_text())


def fake_hccn_tool(tmp_path: Path) -> Path:
    """An hccn_tool that keeps each device's settings in files and answers -g as the 910B tool does."""
    tool = tmp_path / "hccn_tool"
    tool.write_text(f"""#!/bin/bash
d={tmp_path}/dev$2; mkdir -p "$d"
case "$3 $4" in
  "-ip -s") echo "$6 $8" > "$d/ip"; echo "ip set: $@" >> {tmp_path}/log ;;
  "-netdetect -s") echo "$6" > "$d/nd"; echo "netdetect set: $@" >> {tmp_path}/log ;;
  "-ip -g") if [ -f "$d/ip" ]; then read a m < "$d/ip"; echo "ipaddr:$a"; echo "netmask:$m";
            else echo "Get ipconf failed, because no ip was preset there!"; fi ;;
  "-netdetect -g") echo "netdetect address: $(cat "$d/nd" 2>/dev/null || echo 0.0.0.0)" ;;
  "-link -g") echo "link status: UP" ;;
  "-net_health -g") echo "net health status: Success" ;;
esac
""")
    tool.chmod(0o755)
    return tool


def test_the_set_script_sets_what_differs_then_reads_every_device_again(tmp_path):
    tool = fake_hccn_tool(tmp_path)
    argv = ["/bin/bash", "-c", HCCN_VARS["hccn_set_script"] + HCCN_VARS["hccn_survey_script"], "hccn-set", str(tool),
            "2", "255.255.255.0", "10.0.0.254", "1", "10.0.1.5", "--", "0", "1"]
    p = run(argv)
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "log").read_text().splitlines() == [
        "ip set: -i 1 -ip -s address 10.0.1.5 netmask 255.255.255.0",
        "netdetect set: -i 0 -netdetect -s address 10.0.0.254",
        "netdetect set: -i 1 -netdetect -s address 10.0.0.254"]
    state = npuenv_filters.hccn_survey(p.stdout)
    assert state[0]["ip"] is None and state[1]["ip"] == {"address": "10.0.1.5", "netmask": "255.255.255.0"}
    assert state[0]["netdetect"] == state[1]["netdetect"] == "10.0.0.254"
    assert {state[i]["link"] for i in (0, 1)} == {"UP"}


def test_the_survey_fails_without_the_tool_except_in_check_mode(tmp_path):
    script = HCCN_VARS["hccn_tool_script"] + HCCN_VARS["hccn_survey_script"]
    missing = str(tmp_path / "no" / "hccn_tool")
    real = run(["/bin/bash", "-c", script, "hccn-survey", missing, "8", "run"])
    assert real.returncode == 1 and real.stderr.strip() == (
        f"{missing} is missing: the NPU driver is not installed (run the driver tag first)")
    check = run(["/bin/bash", "-c", script, "hccn-survey", missing, "8", "check"])
    assert check.returncode == 0 and check.stdout == "" and npuenv_filters.hccn_survey(check.stdout) == {}
    tool = fake_hccn_tool(tmp_path)
    found = run(["/bin/bash", "-c", script, "hccn-survey", str(tool), "1", "run"])
    assert json.dumps(npuenv_filters.hccn_survey(found.stdout)[0]) == json.dumps(
        {"ip": None, "netdetect": None, "link": "UP", "health": "Success"})

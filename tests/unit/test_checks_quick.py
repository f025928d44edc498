"""Every quick-level check, called directly: a healthy host passes, and each
failure it exists for fails with its own summary, expected/found, cause and fix.

Facts are recorded (check_fakes); commands are answered by a fake probe that
refuses any command it was not told about. The expected strings are written
out by hand from the row (2.13.0: CANN 9.1.0, HDK 26.1.0 >= 25.2.X, 8 x 910B3).
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import textwrap

import pytest

from tests.unit.check_fakes import (LEGACY_ROW, FakeProbe, failed, healthy_facts, options, passed, run_check,
                                    sample, stack)
from validation.node import facts as facts_mod
from validation.node.suite import test_quick as q

HDK_FIX = "install the row's HDK driver and firmware (make deploy TAGS=driver)"
WANTED_DRIVER = "driver 25.2.X .. newer (paired with CANN 9.1.0: 26.1.0)"
# explain.py's entries the checks lean on, written out
CANN_ENV_CAUSE = ("the CANN environment is not sourced (or the toolkit is missing): "
                  "the loader cannot find CANN's libraries")
CANN_ENV_FIX = ("source the toolkit's set_env.sh (the ascend_env profile script does this for login shells), "
                "or install the CANN toolkit of the row")
ENV_VARS_CAUSE = "the CANN environment variables are missing or point to a path that does not exist"
ENV_VARS_FIX = "source the toolkit's set_env.sh of the installed CANN version"
# validation/node/codes.py's DCMI entries the checks lean on, written out: -8005 is a driver
# that is not loaded (installed or upgraded without the reboot), -8020 a device held
# elsewhere, -8020 with -9005 a container without the driver's DCMI mounts (issue #15).
DRIVER_NOT_LOADED_CAUSE = ("the NPU driver is not loaded: it was installed or upgraded without the reboot it needs, "
                           "the kernel was upgraded so its modules no longer load, or this user or container cannot "
                           "open /dev/davinci*")
DRIVER_NOT_LOADED_FIX = ("reboot after installing or upgrading the driver and firmware, check `lsmod | grep "
                         "drv_davinci` and `dmesg`, and pass the device nodes (--device /dev/davinciN "
                         "/dev/davinci_manager /dev/devmm_svm /dev/hisi_hdc) to containers")
HELD_CAUSE = ("another process or container holds the device (the driver lets one container namespace open a "
              "device)")
HELD_FIX = ("stop the process or container holding it (npu-smi info lists processes; on the host "
            "/proc/uda/namespace_node names the holder) or give this job other devices")
NO_DCMI_MOUNTS_CAUSE = ("the container lacks the driver mounts DCMI needs at start-up (/usr/local/dcmi, the "
                        "driver's lib64, /etc/ascend_install.info), so its DCMI start-up collides with the host's "
                        "(dmesg: 'uda_occupy_dev_by_ns ... Conflict open udevid'); no other process needs to hold "
                        "the device")
NO_DCMI_MOUNTS_FIX = ("start the container with -v /usr/local/dcmi:/usr/local/dcmi -v /usr/local/Ascend/driver/"
                      "lib64:/usr/local/Ascend/driver/lib64 -v /etc/ascend_install.info:/etc/ascend_install.info "
                      "(npuenv image run-cmd prints them); stopping other containers does not cure it")
SKEW_CAUSE = "torch, torch_npu and CANN versions do not match (a library was built against another version)"
SKEW_FIX = "install the exact torch / torch_npu / CANN versions of one matrix row (npuenv matrix resolve ...)"
PYDEP_CAUSE = "a Python package CANN needs at run time is missing"
PYDEP_FIX = "install the row's wheelhouse (it carries CANN's Python dependencies): make deploy TAGS=python"


def explained(failure: dict) -> tuple[str, str]:
    return failure["cause"], failure["fix"]


# ------------------------------------------------------------------ driver / firmware

def test_driver_in_the_rows_hdk_range_passes():
    passed(q.test_driver_version, facts=healthy_facts(), stack=stack())
    # 25.2.X admits every 25.2 release, release candidates and build tags included
    for version in ("25.2.0", "25.2.rc1", "25.2.rc1.b030", "30.0.0"):
        passed(q.test_driver_version, facts=healthy_facts(driver={"version": version}), stack=stack())


def test_no_driver_fails_saying_it_is_not_installed():
    f = failed(q.test_driver_version, facts=healthy_facts(driver=None), stack=stack())
    assert f == {"summary": "no NPU driver is installed", "expected": WANTED_DRIVER,
                 "found": "no driver/version.info",
                 "cause": "the HDK driver is not installed (or not mounted into the container)", "fix": HDK_FIX}


def test_driver_older_than_the_range_fails_with_507033():
    for version in ("25.1.0", "25.0.rc1.1", "24.1.rc3"):
        f = failed(q.test_driver_version, facts=healthy_facts(driver={"version": version}), stack=stack())
        assert f == {"summary": f"driver {version} does not pair with CANN 9.1.0", "expected": WANTED_DRIVER,
                     "found": f"driver {version}",
                     "cause": "the driver is outside the HDK range this CANN supports (error 507033 at run time)",
                     "fix": HDK_FIX}


def test_driver_above_an_upper_bound_fails():
    s = stack()
    s["hdk"]["max"] = "26.0.X"
    assert run_check(q.test_driver_version, facts=healthy_facts(driver={"version": "26.0.5"}), stack=s).passed
    f = failed(q.test_driver_version, facts=healthy_facts(driver={"version": "26.1.0"}), stack=s)
    assert f["summary"] == "driver 26.1.0 does not pair with CANN 9.1.0"
    assert f["expected"] == "driver 25.2.X .. 26.0.X (paired with CANN 9.1.0: 26.1.0)"
    s["hdk"]["max"] = "26.0.RC1"   # an exact bound: the bound itself is in, the next release out
    assert run_check(q.test_driver_version, facts=healthy_facts(driver={"version": "26.0.rc1"}), stack=s).passed
    assert not run_check(q.test_driver_version, facts=healthy_facts(driver={"version": "26.0.0"}), stack=s).passed


def test_driver_version_that_is_no_version_fails():
    f = failed(q.test_driver_version, facts=healthy_facts(driver={"version": "garbage"}), stack=stack())
    assert f["found"] == "driver garbage" and f["summary"] == "driver garbage does not pair with CANN 9.1.0"


def test_legacy_row_range_is_its_own():
    s = stack(LEGACY_ROW)
    passed(q.test_driver_version, facts=healthy_facts(driver={"version": "24.1.0"}), stack=s)
    f = failed(q.test_driver_version, facts=healthy_facts(driver={"version": "24.1.rc3"}), stack=s)
    assert f["expected"] == "driver 24.1.0 .. newer (paired with CANN 8.0.0: 24.1.0)"


def test_firmware_from_the_drivers_hdk_passes():
    passed(q.test_firmware_pairs_with_driver, facts=healthy_facts())
    # the driver check reports a missing driver; this one does not fail twice
    passed(q.test_firmware_pairs_with_driver, facts=healthy_facts(driver=None))


def test_missing_firmware_fails():
    f = failed(q.test_firmware_pairs_with_driver, facts=healthy_facts(firmware=None))
    assert f == {"summary": "no NPU firmware version found", "expected": "firmware/version.info", "found": "missing",
                 "cause": "the firmware package is not installed", "fix": HDK_FIX}


def test_firmware_of_another_hdk_fails():
    f = failed(q.test_firmware_pairs_with_driver,
               facts=healthy_facts(firmware={"version": "7.7.0.1.231", "package_version": "25.0.rc1.1"}))
    assert f == {"summary": "firmware 7.7.0.1.231 belongs to HDK 25.0.rc1.1, the driver is 26.1.0",
                 "expected": "firmware from HDK 26.1.0", "found": "firmware from HDK 25.0.rc1.1",
                 "cause": "driver and firmware come from different HDK releases", "fix": HDK_FIX}


def test_install_info_naming_the_driver_passes():
    passed(q.test_install_info, facts=healthy_facts())


def test_missing_install_info_fails():
    f = failed(q.test_install_info, facts=healthy_facts(install_info={}))
    assert f == {"summary": "/etc/ascend_install.info does not record the driver",
                 "expected": "Driver_Install_Path_Param=<install root>", "found": "no such file",
                 "cause": "the driver was not installed with the vendor's installer, or the file was not mounted",
                 "fix": "install the driver with its .run package; in containers mount /etc/ascend_install.info"}


def test_install_info_without_the_driver_fails_and_shows_the_file():
    info = {"Firmware_Install_Type": "full", "Driver_Install_Path_Param": ""}
    f = failed(q.test_install_info, facts=healthy_facts(install_info=info))
    assert f["found"] == json.dumps(info)


# ------------------------------------------------------------------ device nodes

def dev_listing(davinci=range(8), shared=("davinci_manager", "devmm_svm", "hisi_hdc"), kind="character special file"):
    lines = [f"character special file /dev/davinci{i}" for i in davinci]
    lines += [f"{kind} /dev/{name}" for name in shared]
    return "\n".join(lines) + "\n"


DEV_CMD = (r"^for d in /dev/davinci\[0-9\]\* /dev/davinci_manager /dev/devmm_svm /dev/hisi_hdc; "
           r'do \[ -e "\$d" \] && echo "\$\(stat -c %F "\$d"\) \$d"; done; true$')


def dev_probe(listing: str) -> FakeProbe:
    return FakeProbe().answer(DEV_CMD, 0, listing)


def test_every_device_node_present_passes():
    passed(q.test_device_nodes, probe=dev_probe(dev_listing()), facts=healthy_facts(), stack=stack(),
           options=options())


def test_missing_management_node_fails_with_the_dcmi_explanation():
    probe = dev_probe(dev_listing(shared=("devmm_svm", "hisi_hdc")))
    f = failed(q.test_device_nodes, probe=probe, facts=healthy_facts(), stack=stack(), options=options())
    assert f == {"summary": "management device node(s) missing: /dev/davinci_manager",
                 "expected": "/dev/davinci_manager, /dev/devmm_svm, /dev/hisi_hdc as character devices",
                 "found": "missing /dev/davinci_manager", "cause": DRIVER_NOT_LOADED_CAUSE,
                 "fix": "load the driver; in containers pass --device for each of them"}


def test_only_character_devices_count():
    for kind in ("regular empty file", "block special file", "directory"):
        listing = dev_listing(shared=("davinci_manager", "devmm_svm")) + f"{kind} /dev/hisi_hdc\n"
        f = failed(q.test_device_nodes, probe=dev_probe(listing), facts=healthy_facts(), stack=stack(),
                   options=options())
        assert f["found"] == "missing /dev/hisi_hdc", kind
    listing = dev_listing(davinci=range(7)) + "block special file /dev/davinci7\n"
    f = failed(q.test_device_nodes, probe=dev_probe(listing), facts=healthy_facts(), stack=stack(), options=options())
    assert f["summary"] == "7 /dev/davinciN device node(s), 8 expected"


def test_missing_davinci_node_fails():
    probe = dev_probe(dev_listing(davinci=[0, 1, 2, 4, 5, 6, 7]))
    f = failed(q.test_device_nodes, probe=probe, facts=healthy_facts(), stack=stack(), options=options())
    assert f == {"summary": "7 /dev/davinciN device node(s), 8 expected",
                 "expected": "8 character devices /dev/davinci0..",
                 "found": "/dev/davinci0, /dev/davinci1, /dev/davinci2, /dev/davinci4, /dev/davinci5, "
                          "/dev/davinci6, /dev/davinci7",
                 "cause": "an NPU is not visible: not passed into the container, dropped off the bus, "
                          "or the driver did not load",
                 "fix": "pass every /dev/davinciN (--device) or check the card with `npu-smi info` / `lspci`"}
    f = failed(q.test_device_nodes, probe=dev_probe(dev_listing(davinci=[])), facts=healthy_facts(), stack=stack(),
               options=options())
    assert f["found"] == "none" and f["summary"] == "0 /dev/davinciN device node(s), 8 expected"


def test_extra_davinci_node_fails_too():
    f = failed(q.test_device_nodes, probe=dev_probe(dev_listing(davinci=range(9))), facts=healthy_facts(),
               stack=stack(), options=options())
    assert f["summary"] == "9 /dev/davinciN device node(s), 8 expected"


def test_device_count_follows_the_option_and_the_chip():
    passed(q.test_device_nodes, probe=dev_probe(dev_listing(davinci=range(4))), facts=healthy_facts(),
           stack=stack(), options=options(devices=4))
    # Atlas A3: 8 NPUs of two dies each, one /dev/davinciN per die
    a3 = stack(chip="a3")
    passed(q.test_device_nodes, probe=dev_probe(dev_listing(davinci=range(16))), facts=healthy_facts(),
           stack=a3, options=options())
    f = failed(q.test_device_nodes, probe=dev_probe(dev_listing()), facts=healthy_facts(), stack=a3,
               options=options())
    assert f["summary"] == "8 /dev/davinciN device node(s), 16 expected"


# ------------------------------------------------------------------ npu-smi

def test_all_npus_healthy_passes_without_warnings():
    out = passed(q.test_npu_health, facts=healthy_facts(), stack=stack(), options=options())
    assert out.warnings == []


def test_npu_smi_failure_is_explained_by_its_error_code():
    error = sample("npu-smi_error_-8005_dcmi_init.txt").strip()
    f = failed(q.test_npu_health, facts=healthy_facts(npu_smi={"error": error}, devices=[]), stack=stack(),
               options=options())
    assert f == {"summary": "npu-smi info failed", "expected": "the device table", "found": error,
                 "cause": DRIVER_NOT_LOADED_CAUSE, "fix": DRIVER_NOT_LOADED_FIX}


def test_npu_smi_failure_as_facts_record_it_is_explained_by_its_codes():
    # the error as facts.collect() keeps it: the tool's lines, then the table's meaning
    held = ("the tool reported an error: dcmi model initialized failed, because the device is used. ret is -8020 "
            "(device resources are occupied: " + HELD_CAUSE + ")")
    f = failed(q.test_npu_health, facts=healthy_facts(npu_smi={"error": held}, devices=[]), stack=stack(),
               options=options())
    assert (f["found"], f["cause"], f["fix"]) == (held, HELD_CAUSE, HELD_FIX)
    # -8020 then -9005 in a container: the driver mounts are missing, nobody else holds the device
    no_mounts = ("the tool reported an error: dcmi model initialized failed, because the device is used. ret is "
                 "-8020; npu get board type failed. ret is -9005")
    f = failed(q.test_npu_health, facts=healthy_facts(npu_smi={"error": no_mounts}, devices=[]), stack=stack(),
               options=options())
    assert (f["cause"], f["fix"]) == (NO_DCMI_MOUNTS_CAUSE, NO_DCMI_MOUNTS_FIX)


def test_npu_missing_from_npu_smi_fails():
    facts = healthy_facts()
    del facts["devices"][5]
    f = failed(q.test_npu_health, facts=facts, stack=stack(), options=options())
    assert f == {"summary": "npu-smi shows 7 device(s), 8 expected", "expected": "8", "found": "7",
                 "cause": "an NPU is missing from the driver's view",
                 "fix": "check the card (`lspci | grep d80`, `npu-smi info -l`)"}


def test_a_chip_row_npu_smi_printed_but_no_one_could_read_fails_naming_it():
    """A row cut or garbled in transit is a chip that was not checked: the check names the line
    instead of saying the NPU is missing from the driver's view, and the chips read are still judged."""
    facts = healthy_facts()
    del facts["devices"][1]
    cut = "| 0                         | 0000:C2:00.0  | 0           0    / 0  "
    facts["npu_smi"]["unread_rows"] = [
        {"lineno": 10, "line": "| 1     910B3               | OK            | 94.8        36                0    / 0             |",
         "reason": "a chip's first row without its second"},
        {"lineno": 11, "line": cut, "reason": "a row cut short"}]
    f = failed(q.test_npu_health, facts=facts, stack=stack(), options=options())
    assert f == {
        "summary": "npu-smi info: 2 row(s) of the device table could not be read",
        "expected": "every chip row in npu-smi info's layout",
        "found": "line 10: '| 1     910B3               | OK            | 94.8        36                0    / 0"
                 "             |' (a chip's first row without its second); "
                 f"line 11: {cut!r} (a row cut short)",
        "cause": "npu-smi printed rows npuenv cannot read (a garbled or cut line, or a layout of a driver npuenv "
                 "does not know): the chips on them were not checked",
        "fix": "run `npu-smi info` on the host and read the rows named; if the layout is the driver's own, "
               "add the output to npuenv's vendor samples"}
    # an unhealthy chip that was read is still reported first
    facts["devices"][2]["health"] = "Critical"
    assert failed(q.test_npu_health, facts=facts, stack=stack(), options=options())["summary"] == \
        "unhealthy NPU(s): NPU 3 chip 0 Critical"


def test_npu_smi_not_run_is_no_pass():
    # a directory tree (image) cannot run npu-smi: no devices seen is a failure
    f = failed(q.test_npu_health, facts=healthy_facts(npu_smi=None, devices=[]), stack=stack(), options=options())
    assert f["summary"] == "npu-smi shows 0 device(s), 8 expected"


HEALTH_CODES_FIX = "read `npu-smi info -t health -i <npu> -c <chip>` for the error codes; reset or replace the card"
# Where the codes were read and none names the fault: the device logs, with the driver's own tool
# (msnpureport sits beside hccn_tool in {root}/driver/tools).
DEVICE_LOGS_FIX = ("no error code names the fault: export the device logs with "
                   "`/usr/local/Ascend/driver/tools/msnpureport -f` (in a folder you can write) for the "
                   "vendor's support; reset or replace the card")
FAULT_LEVELS_SOURCE = "Ascend/mind-cluster docs: default faultCode.json of Container Manager (NPU fault levels)"


def test_critical_and_alarm_npus_fail():
    for health in ("Critical", "Alarm"):
        facts = healthy_facts()
        facts["devices"][3]["health"] = health
        facts["devices"][3]["health_detail"] = {"status": health, "error_codes": [], "error_info": []}
        f = failed(q.test_npu_health, facts=facts, stack=stack(), options=options())
        assert f == {"summary": f"unhealthy NPU(s): NPU 3 chip 0 {health}", "expected": "Health OK on every chip",
                     "found": f"NPU 3 chip 0: {health} with no error code",
                     "cause": f"the device reports a fault (Alarm or Critical): NPU 3 chip 0: {health} with no "
                              "error code",
                     "fix": DEVICE_LOGS_FIX}


def test_unhealthy_npu_is_explained_by_its_error_codes():
    # `npu-smi info -t health` of a real Alarm (npu-smi_info_-t_health_-i_0_-c_0_Alarm.txt), as facts read it
    facts = healthy_facts()
    facts["devices"][3]["health"] = "Alarm"
    facts["devices"][3]["health_detail"] = {
        "status": "Alarm", "error_codes": ["A4025021", "8C03A000", "8C084E00"],
        "error_info": ["ascend_monitor adda heart beat lost error",
                       "node type=adda, sensor type=Heartbeat Sensor, event state=Heartbeat Lost."]}
    f = failed(q.test_npu_health, facts=facts, stack=stack(), options=options())
    found = ("NPU 3 chip 0: Alarm: A4025021 (NotHandleFault: a fault with no effect on the work), "
             "8C03A000 (RestartNPU: the chip must be reset), "
             "8C084E00 (FreeRestartNPU: the chip must be reset once it is free) "
             "[ascend_monitor adda heart beat lost error]")
    # the worst level among the codes (RestartNPU) says what to do
    assert f == {"summary": "unhealthy NPU(s): NPU 3 chip 0 Alarm", "expected": "Health OK on every chip",
                 "found": found, "cause": "the device reports a fault (Alarm or Critical): " + found,
                 "fix": "stop the jobs on the card, then reset it: npu-smi set -t reset -i <npu> -c <chip> "
                        f"(fault level RestartNPU, {FAULT_LEVELS_SOURCE})"}
    # a code no level lists is named as such, and the fix is the device logs
    facts["devices"][3]["health_detail"]["error_codes"] = ["12345678"]
    f = failed(q.test_npu_health, facts=facts, stack=stack(), options=options())
    assert f["found"] == ("NPU 3 chip 0: Alarm: 12345678 (not in the fault-code table) "
                          "[ascend_monitor adda heart beat lost error]")
    assert f["fix"] == DEVICE_LOGS_FIX


def test_unhealthy_npu_whose_codes_could_not_be_read_says_so():
    facts = healthy_facts()
    facts["devices"][2]["health"] = "Critical"
    facts["devices"][2]["health_detail"] = {"error": "the tool reported an error: Invalid card id."}
    f = failed(q.test_npu_health, facts=facts, stack=stack(), options=options())
    assert f["found"] == ("NPU 2 chip 0: Critical (the error codes could not be read: the tool reported an error: "
                          "Invalid card id.)")
    assert f["fix"] == HEALTH_CODES_FIX


def test_a_health_state_the_manual_does_not_list_fails():
    facts = healthy_facts()
    facts["devices"][0]["health"] = "Degraded"
    f = failed(q.test_npu_health, facts=facts, stack=stack(), options=options())
    assert f["summary"] == "unhealthy NPU(s): NPU 0 chip 0 Degraded"
    assert f["found"] == "NPU 0 chip 0: Degraded with no error code (a state the npu-smi manual does not list)"


def test_every_unhealthy_npu_is_named():
    facts = healthy_facts()
    facts["devices"][1]["health"] = "Alarm"
    facts["devices"][6]["health"] = "Critical"
    f = failed(q.test_npu_health, facts=facts, stack=stack(), options=options())
    assert f["summary"] == "unhealthy NPU(s): NPU 1 chip 0 Alarm, NPU 6 chip 0 Critical"
    assert f["found"] == "NPU 1 chip 0: Alarm with no error code; NPU 6 chip 0: Critical with no error code"


def test_warning_health_warns_and_passes():
    facts = healthy_facts()
    facts["devices"][5]["health"] = "Warning"
    out = passed(q.test_npu_health, facts=facts, stack=stack(), options=options())
    assert out.warnings == ["NPU health Warning: NPU 5 chip 0"]


def test_no_process_on_the_npus_passes():
    passed(q.test_npu_processes, facts=healthy_facts())


def test_process_holding_an_npu_fails_as_device_busy():
    smi = {"version": "25.2.0", "processes": [{"npu": 4, "chip": 0, "pid": 1601114, "name": "python"}]}
    f = failed(q.test_npu_processes, facts=healthy_facts(npu_smi=smi))
    assert f == {"summary": "1 process(es) already hold NPUs", "expected": "no process on any NPU before validation",
                 "found": "pid 1601114 (python) on NPU 4", "cause": HELD_CAUSE, "fix": HELD_FIX}


# ------------------------------------------------------------------ CANN

# What collect() adds to each toolkit it finds through an entry point: no version.cfg (8.5+),
# the env script there, no inner version read.
ACTIVE = {"innerversion": None, "running": None, "env_script": True}

def test_the_rows_toolkit_and_kernels_pass():
    passed(q.test_cann_toolkit, facts=healthy_facts(), stack=stack())
    legacy = [{"generation": "ascend-toolkit", "version": "8.0.0", "home": "/usr/local/Ascend/ascend-toolkit/latest",
               "arch": "x86_64", "kernels": ["ascend910b"], **ACTIVE}]
    passed(q.test_cann_toolkit, facts=healthy_facts(cann=legacy), stack=stack(LEGACY_ROW))


TOOLKIT_FAILURE = {"summary": "CANN toolkit 9.1.0 is not installed",
                   "expected": "CANN 9.1.0 (cann layout, /usr/local/Ascend/cann)",
                   "cause": "the toolkit is missing or another version is active",
                   "fix": "install the row's toolkit (make deploy TAGS=cann)"}


def test_no_toolkit_fails():
    f = failed(q.test_cann_toolkit, facts=healthy_facts(cann=[]), stack=stack())
    assert f == {**TOOLKIT_FAILURE, "found": "none"}


def test_another_toolkit_version_fails():
    other = [{"generation": "cann", "version": "9.0.0", "home": "/usr/local/Ascend/cann", "arch": "x86_64",
              "kernels": ["ascend910b"], **ACTIVE}]
    f = failed(q.test_cann_toolkit, facts=healthy_facts(cann=other), stack=stack())
    assert f == {**TOOLKIT_FAILURE, "found": "9.0.0 (cann)"}


def test_the_right_version_in_the_other_layout_fails():
    # CANN 8.0.0 must be the ascend-toolkit layout; found under the cann/ entry point it is not the row's
    wrong = [{"generation": "cann", "version": "8.0.0", "home": "/usr/local/Ascend/cann", "arch": "x86_64",
              "kernels": ["ascend910b"], **ACTIVE}]
    f = failed(q.test_cann_toolkit, facts=healthy_facts(cann=wrong), stack=stack(LEGACY_ROW))
    assert f["expected"] == "CANN 8.0.0 (ascend-toolkit layout, /usr/local/Ascend/ascend-toolkit/latest)"
    assert f["found"] == "8.0.0 (cann)"


def test_missing_kernels_fail():
    cann = healthy_facts()["cann"]
    cann[0]["kernels"] = []
    f = failed(q.test_cann_toolkit, facts=healthy_facts(cann=cann), stack=stack())
    assert f == {"summary": "the 910b kernels/ops package is not installed",
                 "expected": "Ascend-cann-910b-ops_9.1.0_linux-x86_64.run installed (ascend910b kernels)",
                 "found": "no kernels", "cause": "the operator package for this chip was not installed",
                 "fix": "install the row's kernels (up to CANN 8.3) or ops (from 8.5) package"}
    cann[0]["kernels"] = ["ascend310p"]
    f = failed(q.test_cann_toolkit, facts=healthy_facts(cann=cann), stack=stack())
    assert f["found"] == "ascend310p"
    legacy = [{"generation": "ascend-toolkit", "version": "8.0.0", "home": "/usr/local/Ascend/ascend-toolkit/latest",
               "arch": "x86_64", "kernels": [], **ACTIVE}]
    f = failed(q.test_cann_toolkit, facts=healthy_facts(cann=legacy), stack=stack(LEGACY_ROW))
    assert f["expected"] == "Ascend-cann-kernels-910b_8.0.0_linux-x86_64.run installed (ascend910b kernels)"


def test_nnal_of_the_rows_cann_passes():
    passed(q.test_nnal, facts=healthy_facts(), stack=stack())


def test_missing_or_other_nnal_fails():
    f = failed(q.test_nnal, facts=healthy_facts(nnal=[]), stack=stack())
    assert f == {"summary": "NNAL 9.1.0 is not installed", "expected": "/usr/local/Ascend/nnal/atb/9.1.0",
                 "found": "none", "cause": "the NNAL package was not installed",
                 "fix": "install the row's NNAL package"}
    f = failed(q.test_nnal, facts=healthy_facts(nnal=["8.5.0", "9.0.0"]), stack=stack())
    assert f["found"] == "8.5.0, 9.0.0"


# ------------------------------------------------------------------ login environment

CURRENT_ENV = {
    "ASCEND_TOOLKIT_HOME": "/usr/local/Ascend/cann-9.1.0",
    "ASCEND_HOME_PATH": "/usr/local/Ascend/cann-9.1.0",
    "ASCEND_OPP_PATH": "/usr/local/Ascend/cann-9.1.0/opp",
    "LD_LIBRARY_PATH": "/usr/local/Ascend/nnal/atb/latest/atb/cxx_abi_1/lib:/usr/local/Ascend/cann-9.1.0/lib64:"
                       "/usr/local/Ascend/driver/lib64",
    "PATH": "/usr/local/Ascend/cann-9.1.0/bin:/usr/bin:/bin",
    "HOME": "/root",
    "NPUENV_OPTS": "a=b=c",   # a value holding '=' is one variable
}
LEGACY_ENV = {
    "ASCEND_TOOLKIT_HOME": "/usr/local/Ascend/ascend-toolkit/latest",
    "ASCEND_HOME_PATH": "/usr/local/Ascend/ascend-toolkit/latest",
    "ASCEND_OPP_PATH": "/usr/local/Ascend/ascend-toolkit/latest/opp",
    "LD_LIBRARY_PATH": "/usr/local/Ascend/ascend-toolkit/latest/lib64",
}
CURRENT_DIRS = (r"^for d in /usr/local/Ascend/cann-9\.1\.0/runtime /usr/local/Ascend/cann-9\.1\.0/compiler "
                r"/usr/local/Ascend/cann-9\.1\.0/opp; do")


def env_probe(env: dict, dirs_pattern: str = CURRENT_DIRS, missing_dirs: str = "") -> FakeProbe:
    text = "".join(f"{k}={v}\n" for k, v in env.items())
    return FakeProbe().answer(r"^env$", 0, text).answer(dirs_pattern, 0, missing_dirs)


def test_login_environment_of_the_row_passes():
    passed(q.test_login_environment, probe=env_probe(CURRENT_ENV), stack=stack())
    legacy_dirs = (r"^for d in /usr/local/Ascend/ascend-toolkit/latest/runtime "
                   r"/usr/local/Ascend/ascend-toolkit/latest/compiler /usr/local/Ascend/ascend-toolkit/latest/opp; do")
    passed(q.test_login_environment, probe=env_probe(LEGACY_ENV, legacy_dirs), stack=stack(LEGACY_ROW))


def test_unset_or_wrong_cann_variable_fails():
    for key in ("ASCEND_HOME_PATH", "ASCEND_OPP_PATH", "ASCEND_TOOLKIT_HOME"):
        env = {k: v for k, v in CURRENT_ENV.items() if k != key}
        f = failed(q.test_login_environment, probe=env_probe(env), stack=stack())
        assert f == {"summary": f"{key} is not set as CANN's set_env.sh sets it", "expected": CURRENT_ENV[key],
                     "found": "unset", "cause": ENV_VARS_CAUSE, "fix": ENV_VARS_FIX}
    # the legacy layout's values on a host of the current row
    env = {**CURRENT_ENV, "ASCEND_TOOLKIT_HOME": "/usr/local/Ascend/ascend-toolkit/latest"}
    f = failed(q.test_login_environment, probe=env_probe(env), stack=stack())
    assert f["summary"] == "ASCEND_TOOLKIT_HOME is not set as CANN's set_env.sh sets it"
    assert (f["expected"], f["found"]) == ("/usr/local/Ascend/cann-9.1.0", "/usr/local/Ascend/ascend-toolkit/latest")


def test_toolkit_lib64_missing_from_the_library_path_fails():
    env = {**CURRENT_ENV, "LD_LIBRARY_PATH": "/usr/local/Ascend/driver/lib64"}
    f = failed(q.test_login_environment, probe=env_probe(env), stack=stack())
    assert f == {"summary": "the toolkit's lib64 is not on LD_LIBRARY_PATH",
                 "expected": "/usr/local/Ascend/cann-9.1.0/lib64", "found": "/usr/local/Ascend/driver/lib64",
                 "cause": CANN_ENV_CAUSE, "fix": CANN_ENV_FIX}
    env = {k: v for k, v in CURRENT_ENV.items() if k != "LD_LIBRARY_PATH"}
    assert failed(q.test_login_environment, probe=env_probe(env), stack=stack())["found"] == "unset"
    # a longer path that merely starts with lib64 is not lib64
    env = {**CURRENT_ENV, "LD_LIBRARY_PATH": "/usr/local/Ascend/cann-9.1.0/lib64/plugin/opskernel"}
    assert not run_check(q.test_login_environment, probe=env_probe(env), stack=stack()).passed


def test_missing_runtime_or_compiler_directory_fails():
    probe = env_probe(CURRENT_ENV, missing_dirs="/usr/local/Ascend/cann-9.1.0/compiler\n")
    f = failed(q.test_login_environment, probe=probe, stack=stack())
    assert f == {"summary": "directories torch_npu checks at import are missing",
                 "expected": "runtime/, compiler/, opp/", "found": "missing /usr/local/Ascend/cann-9.1.0/compiler",
                 "cause": ENV_VARS_CAUSE, "fix": ENV_VARS_FIX}


# ------------------------------------------------------------------ Python stack

MANIFEST = "/etc/npuenv/wheelhouse-manifest.json"


def test_the_rows_python_stack_passes():
    # torch's local label (+cpu) is the same release
    passed(q.test_python_versions, facts=healthy_facts(), probe=FakeProbe(), stack=stack())


def test_python_that_cannot_answer_fails():
    py = {"interpreter": "python3", "error": "bash: line 1: python3: command not found"}
    f = failed(q.test_python_versions, facts=healthy_facts(python=py), probe=FakeProbe(), stack=stack())
    assert (f["summary"], f["expected"], f["found"]) == (
        "python3 cannot report the installed packages", "python3 on PATH", "bash: line 1: python3: command not found")


def test_python_stack_drift_fails():
    for dist, have in (("torch_npu", "2.12.0"), ("torch", "2.12.0+cpu"), ("torchvision", "0.27.0"),
                       ("torch_npu", "2.13.0.post1")):
        py = {**healthy_facts()["python"], dist: have}
        f = failed(q.test_python_versions, facts=healthy_facts(python=py), probe=FakeProbe(), stack=stack())
        want = {"torch": "2.13.0", "torch_npu": "2.13.0", "torchvision": "0.28.0"}[dist]
        assert f == {"summary": f"{dist} {have} installed, the row says {want}", "expected": f"{dist}=={want}",
                     "found": have, "cause": "drift: the host's Python stack is not the row's",
                     "fix": "reinstall the row's wheelhouse (make deploy TAGS=python)"}


def test_missing_distribution_fails_unless_the_wheelhouse_left_it_out():
    py = {**healthy_facts()["python"], "torchvision": None}
    f = failed(q.test_python_versions, facts=healthy_facts(python=py), probe=FakeProbe(), stack=stack())
    assert (f["summary"], f["found"]) == ("torchvision missing installed, the row says 0.28.0", "not installed")
    note = "torchvision left out: no wheel for cp314 x86_64 on the index"
    probe = FakeProbe(files={MANIFEST: json.dumps({"notes": ["torch_npu from pypi", note]})})
    out = passed(q.test_python_versions, facts=healthy_facts(python=py), probe=probe, stack=stack())
    assert out.warnings == [f"torchvision 0.28.0 not installed: the wheelhouse says {note}"]
    # the note excuses a missing wheel, not a wrong one
    py = {**healthy_facts()["python"], "torchvision": "0.27.0"}
    assert not run_check(q.test_python_versions, facts=healthy_facts(python=py), probe=probe, stack=stack()).passed


def test_pip_check_clean_passes():
    passed(q.test_pip_check, probe=FakeProbe().answer(r"^python3 -m pip check$", 0, "No broken requirements found.\n"))


def test_pip_check_with_broken_requirements_fails():
    text = "torch-npu 2.13.0 has requirement torch==2.13.0, but you have torch 2.12.0."
    f = failed(q.test_pip_check, probe=FakeProbe().answer(r"^python3 -m pip check$", 1, text + "\n"))
    assert f == {"summary": "pip check reports broken requirements", "expected": "No broken requirements found.",
                 "found": text, "cause": "packages were installed outside the wheelhouse",
                 "fix": "reinstall from the row's wheelhouse"}


DEPS = ("Cython, absl, attr, cffi, decorator, google.protobuf, numpy, pathlib2, psutil, requests, scipy, sympy, yaml")
# One python3 imports torch_npu, then CANN's Python dependencies (python_imports); the dependencies
# alone when it died before them.
IMPORTS = r"^python3 -c 'import importlib, json, traceback"
ALONE = r"^TORCH_DEVICE_BACKEND_AUTOLOAD=0 python3 -c "
SEES_8 = {"available": True, "count": 8}


def imported(torch_npu: dict | None = None, modules: dict | None = None) -> str:
    """python_imports' stdout: an answer line each (None: python3 died before it)."""
    return "".join(f"{q.IMPORTED} {json.dumps({key: value})}\n"
                   for key, value in (("torch_npu", torch_npu), ("cann_python_modules", modules)) if value is not None)


def test_cann_python_deps_importing_pass():
    probe = FakeProbe().answer(IMPORTS, 0, imported(SEES_8, {}))
    passed(q.test_cann_python_deps, probe=probe, stack=stack())


def test_cann_python_dep_missing_fails():
    bad = {"decorator": "ModuleNotFoundError: No module named 'decorator'"}
    probe = FakeProbe().answer(IMPORTS, 0, imported(SEES_8, bad))
    f = failed(q.test_cann_python_deps, probe=probe, stack=stack())
    assert f == {"summary": "CANN's Python dependencies do not import", "expected": DEPS,
                 "found": "decorator: ModuleNotFoundError: No module named 'decorator'",
                 "cause": PYDEP_CAUSE, "fix": PYDEP_FIX}
    probe = FakeProbe().answer(r"python3 -c ", 127, "", "bash: line 1: python3: command not found\n")
    f = failed(q.test_cann_python_deps, probe=probe, stack=stack())
    assert f["found"] == "python3: bash: line 1: python3: command not found"


def test_both_import_checks_share_one_python3_run_per_host():
    probe = FakeProbe().answer(IMPORTS, 0, imported(SEES_8, {}))
    passed(q.test_cann_python_deps, probe=probe, stack=stack())
    passed(q.test_torch_npu_import, probe=probe, facts=healthy_facts(), stack=stack())
    assert len(probe.runs) == 1


def test_cann_python_deps_are_imported_alone_when_import_torch_npu_kills_python3():
    """The crash is torch_npu's (that check fails with it); the dependencies get a verdict of their own."""
    for torch_npu in (None, SEES_8):   # died in import torch_npu, or after it, among the dependencies
        probe = FakeProbe().answer(IMPORTS, 139, imported(torch_npu), "Segmentation fault\n")
        probe.answer(ALONE, 0, "{}\n")
        passed(q.test_cann_python_deps, probe=probe, stack=stack())
        assert [re.search(ALONE, c) is not None for c in probe.runs] == [False, True]
        bad = {"scipy": "ImportError: libopenblas.so.0: cannot open shared object file"}
        probe = FakeProbe().answer(IMPORTS, 139, imported(torch_npu), "Segmentation fault\n")
        probe.answer(ALONE, 0, json.dumps(bad) + "\n")
        assert failed(q.test_cann_python_deps, probe=probe, stack=stack())["found"] == \
            "scipy: ImportError: libopenblas.so.0: cannot open shared object file"


def test_cann_python_deps_code_runs_for_real():
    """The import probe is real Python: run it on this machine with a module
    that exists and one that does not."""
    s = {**stack(), "cann_python_modules": ["json", "npuenv_no_such_module"]}
    f = failed(q.test_cann_python_deps, probe=facts_mod.LocalProbe("/"), stack=s)
    assert f["found"] == "npuenv_no_such_module: ModuleNotFoundError: No module named 'npuenv_no_such_module'"
    passed(q.test_cann_python_deps, probe=facts_mod.LocalProbe("/"), stack={**s, "cann_python_modules": ["json"]})


# ------------------------------------------------------------------ torch_npu

LDD_OK = ("libtorch_npu.so: \tlinux-vdso.so.1 (0x00007ffd)\n"
          "libtorch_npu.so: \tlibhccl.so => /usr/local/Ascend/cann-9.1.0/lib64/libhccl.so (0x00007f)\n"
          "libtorch_npu.so: \tlibascendcl.so => /usr/local/Ascend/cann-9.1.0/lib64/libascendcl.so (0x00007f)\n")


def test_torch_npu_libraries_resolving_pass():
    passed(q.test_torch_npu_libraries, probe=FakeProbe().answer(r"^dirs=\$\(", 0, LDD_OK))


def test_torch_npu_libraries_that_cannot_be_listed_fail():
    err = "AttributeError: 'NoneType' object has no attribute 'submodule_search_locations'"
    f = failed(q.test_torch_npu_libraries, probe=FakeProbe().answer(r"^dirs=\$\(", 1, "", err + "\n"))
    assert (f["summary"], f["expected"], f["found"]) == (
        "torch_npu's shared libraries could not be listed", "torch_npu installed", err)


def test_unresolved_cann_library_is_explained_as_cann_env_not_sourced():
    out = LDD_OK + "libtorch_npu.so: \tlibhccl.so => not found\nlibop_plugin_atb.so: \tlibascendcl.so => not found\n"
    f = failed(q.test_torch_npu_libraries, probe=FakeProbe().answer(r"^dirs=\$\(", 0, out))
    assert f == {"summary": "2 shared library dependency(ies) of torch_npu do not resolve",
                 "expected": "every NEEDED library found with the CANN environment sourced",
                 "found": "libop_plugin_atb.so: libascendcl.so; libtorch_npu.so: libhccl.so",
                 "cause": CANN_ENV_CAUSE, "fix": CANN_ENV_FIX}


def test_unresolved_other_library_fails():
    out = LDD_OK + "libtorch_npu.so: \tlibgomp.so.1 => not found\n"
    f = failed(q.test_torch_npu_libraries, probe=FakeProbe().answer(r"^dirs=\$\(", 0, out))
    assert f["summary"] == "1 shared library dependency(ies) of torch_npu do not resolve"
    assert f["found"] == "libtorch_npu.so: libgomp.so.1"
    assert explained(f) == ("not a failure npuenv can explain; the check saw: libtorch_npu.so: libgomp.so.1",
                            "run the check alone to see its whole output (npuenv validate --target HOST --only "
                            "CHECK) and compare what it found with what was expected")


def test_torch_npu_import_seeing_every_device_passes():
    probe = FakeProbe().answer(IMPORTS, 0, imported(SEES_8, {}))
    passed(q.test_torch_npu_import, probe=probe, facts=healthy_facts(), stack=stack())


def test_torch_npu_import_fails_when_python3_dies_in_it_or_at_its_exit_but_not_after_it():
    for out, rc in ((imported(), 139), (imported(SEES_8, {}), 134)):
        f = failed(q.test_torch_npu_import, probe=FakeProbe().answer(IMPORTS, rc, out, "Aborted (core dumped)\n"),
                   facts=healthy_facts(), stack=stack())
        assert (f["summary"], f["found"]) == ("import torch_npu fails", "Aborted (core dumped)")
    # python3 died after torch_npu answered, among CANN's dependencies (that check imports them again)
    probe = FakeProbe().answer(IMPORTS, 139, imported(SEES_8), "Segmentation fault\n")
    passed(q.test_torch_npu_import, probe=probe, facts=healthy_facts(), stack=stack())


def test_torch_npu_import_error_is_explained():
    cases = {
        "ImportError: /venv/lib/python3.11/site-packages/torch_npu/lib/libtorch_npu.so: undefined symbol: "
        "_ZN3c1010TensorImpl": (SKEW_CAUSE, SKEW_FIX),
        "ImportError: libhccl.so: cannot open shared object file: No such file or directory":
            (CANN_ENV_CAUSE, CANN_ENV_FIX),
        "ModuleNotFoundError: No module named 'decorator'": (PYDEP_CAUSE, PYDEP_FIX),
    }
    for last_line, cause_fix in cases.items():
        trace = f"Traceback (most recent call last):\n  File \"<string>\", line 4, in <module>\n{last_line}\n"
        probe = FakeProbe().answer(IMPORTS, 0, imported({"error": trace}, {}))
        f = failed(q.test_torch_npu_import, probe=probe, facts=healthy_facts(), stack=stack())
        assert (f["summary"], f["expected"], f["found"]) == ("import torch_npu fails", "import torch_npu succeeds",
                                                            last_line)
        assert explained(f) == cause_fix, last_line
    f = failed(q.test_torch_npu_import, probe=FakeProbe().answer(IMPORTS, 139, "", ""), facts=healthy_facts(),
               stack=stack())
    assert f["found"] == "exit 139"


def test_torch_npu_seeing_fewer_devices_than_npu_smi_fails():
    for out, found in (('{"available": true, "count": 7}', "is_available()=True, device_count()=7"),
                       ('{"available": false, "count": 0}', "is_available()=False, device_count()=0")):
        probe = FakeProbe().answer(IMPORTS, 0, imported(json.loads(out), {}))
        f = failed(q.test_torch_npu_import, probe=probe, facts=healthy_facts(), stack=stack())
        count = found.rsplit("=", 1)[1]
        assert f == {"summary": f"torch_npu sees {count} device(s), npu-smi shows 8",
                     "expected": "torch.npu.is_available() and device_count() == 8", "found": found,
                     "cause": "the devices are not visible to the process (device nodes, ASCEND_RT_VISIBLE_DEVICES) "
                              "or busy",
                     "fix": "pass every device into the container and check ASCEND_RT_VISIBLE_DEVICES"}


# ------------------------------------------------------------------ every item of a list is named

def test_every_missing_item_is_named():
    probe = dev_probe(dev_listing(shared=("devmm_svm",)))
    f = failed(q.test_device_nodes, probe=probe, facts=healthy_facts(), stack=stack(), options=options())
    assert f["summary"] == "management device node(s) missing: /dev/davinci_manager, /dev/hisi_hdc"
    assert f["found"] == "missing /dev/davinci_manager, /dev/hisi_hdc"
    smi = {"processes": [{"npu": 0, "chip": 0, "pid": 11, "name": "python"},
                         {"npu": 3, "chip": 0, "pid": 12, "name": "vllm"}]}
    assert failed(q.test_npu_processes, facts=healthy_facts(npu_smi=smi))["found"] == \
        "pid 11 (python) on NPU 0, pid 12 (vllm) on NPU 3"
    cann = [{"generation": "cann", "version": "9.0.0", "home": "", "arch": "x86_64", "kernels": []},
            {"generation": "ascend-toolkit", "version": "8.0.0", "home": "", "arch": "x86_64", "kernels": [], **ACTIVE}]
    assert failed(q.test_cann_toolkit, facts=healthy_facts(cann=cann), stack=stack())["found"] == \
        "9.0.0 (cann), 8.0.0 (ascend-toolkit)"
    cann = healthy_facts()["cann"]
    cann[0]["kernels"] = ["ascend310p", "ascend910"]
    assert failed(q.test_cann_toolkit, facts=healthy_facts(cann=cann), stack=stack())["found"] == \
        "ascend310p, ascend910"
    probe = env_probe(CURRENT_ENV, missing_dirs="/usr/local/Ascend/cann-9.1.0/runtime\n"
                                                "/usr/local/Ascend/cann-9.1.0/compiler\n")
    assert failed(q.test_login_environment, probe=probe, stack=stack())["found"] == \
        "missing /usr/local/Ascend/cann-9.1.0/runtime /usr/local/Ascend/cann-9.1.0/compiler"
    bad = {"decorator": "ModuleNotFoundError: No module named 'decorator'",
           "yaml": "ModuleNotFoundError: No module named 'yaml'"}
    probe = FakeProbe().answer(IMPORTS, 0, imported(SEES_8, bad))
    assert failed(q.test_cann_python_deps, probe=probe, stack=stack())["found"] == \
        "decorator: ModuleNotFoundError: No module named 'decorator'; yaml: ModuleNotFoundError: No module named 'yaml'"
    facts = healthy_facts()
    facts["devices"][1]["health"] = facts["devices"][5]["health"] = "Warning"
    assert passed(q.test_npu_health, facts=facts, stack=stack(), options=options()).warnings == [
        "NPU health Warning: NPU 1 chip 0, NPU 5 chip 0"]


def test_a_stack_without_dies_counts_one_per_npu():
    s = stack()
    del s["dies_per_npu"]
    passed(q.test_npu_health, facts=healthy_facts(), stack=s, options=options())


def test_a_left_out_wheel_does_not_end_the_comparison():
    py = {**healthy_facts()["python"], "torch": None, "torch_npu": "2.12.0"}
    probe = FakeProbe(files={MANIFEST: json.dumps({"notes": ["torch left out: built elsewhere"]})})
    f = failed(q.test_python_versions, facts=healthy_facts(python=py), probe=probe, stack=stack())
    assert f["summary"] == "torch_npu 2.12.0 installed, the row says 2.13.0"


def test_long_outputs_keep_their_end():
    text = "x" * 900 + "torch-npu 2.13.0 has requirement torch==2.13.0"
    f = failed(q.test_pip_check, probe=FakeProbe().answer(r"^python3 -m pip check$", 1, text))
    assert f["found"] == text[-800:]
    err = "y" * 600 + "ImportError: no torch_npu"
    f = failed(q.test_torch_npu_libraries, probe=FakeProbe().answer(r"^dirs=\$\(", 1, "", err))
    assert f["found"] == err[-500:]
    out = "".join(f"libtorch_npu.so: \tlibdep{i:02d}.so => not found\n" for i in range(13))
    f = failed(q.test_torch_npu_libraries, probe=FakeProbe().answer(r"^dirs=\$\(", 0, out))
    assert f["summary"] == "13 shared library dependency(ies) of torch_npu do not resolve"
    assert f["found"] == "; ".join(f"libtorch_npu.so: libdep{i:02d}.so" for i in range(12))


def test_python_that_dies_reports_its_error_not_its_output():
    probe = FakeProbe().answer(r"python3 -c ", 137, "partial output", "Killed\n")   # together, then alone
    assert failed(q.test_cann_python_deps, probe=probe, stack=stack())["found"] == "python3: Killed"


def test_a_cann_dependency_failing_otherwise_is_still_named_as_one():
    bad = {"numpy": "ImportError: numpy.core.multiarray failed to import"}
    probe = FakeProbe().answer(IMPORTS, 0, imported(SEES_8, bad))
    assert explained(failed(q.test_cann_python_deps, probe=probe, stack=stack())) == (PYDEP_CAUSE, PYDEP_FIX)


def test_any_cann_library_missing_is_explained_as_cann_env():
    out = LDD_OK + "libtorch_npu.so: \tlibge_runner.so => not found\n"
    f = failed(q.test_torch_npu_libraries, probe=FakeProbe().answer(r"^dirs=\$\(", 0, out))
    assert explained(f) == (CANN_ENV_CAUSE, CANN_ENV_FIX)


def test_explanations_read_the_whole_error_output():
    # the listing failed: its stderr explains it, whatever stdout printed
    probe = FakeProbe().answer(r"^dirs=\$\(", 1, "libhccl.so: cannot open shared object file\n",
                               "ImportError: libtorch_npu.so: undefined symbol: aclnnFoo\n")
    assert explained(failed(q.test_torch_npu_libraries, probe=probe)) == (SKEW_CAUSE, SKEW_FIX)
    # import torch_npu: the cause is earlier in the traceback than its last line, or only on stderr
    trace = ("ImportError: libhccl.so: cannot open shared object file: No such file or directory\n"
             "RuntimeError: Failed to load the backend extension: torch_npu\n")
    for out, err in ((imported({"error": trace}, {}), ""),
                     (imported({"error": trace.splitlines()[1]}, {}), trace.splitlines()[0]),
                     ("", trace)):
        probe = FakeProbe().answer(IMPORTS, 1 if not out else 0, out, err)
        f = failed(q.test_torch_npu_import, probe=probe, facts=healthy_facts(), stack=stack())
        assert f["found"] == "RuntimeError: Failed to load the backend extension: torch_npu"
        assert explained(f) == (CANN_ENV_CAUSE, CANN_ENV_FIX)


# ------------------------------------------------------------------ the probes run for real

@pytest.fixture
def fake_install(tmp_path, monkeypatch):
    """torch and torch_npu as the probes see them: packages on PYTHONPATH, torch_npu's library
    linked against a libhccl.so that lives in a CANN-like folder."""
    if shutil.which("gcc") is None:
        pytest.fail("gcc is not installed (build-essential): the library probe test links a small .so")
    site, cann = tmp_path / "site", tmp_path / "cann" / "lib64"
    (site / "torch" / "lib").mkdir(parents=True)
    (site / "torch_npu" / "lib").mkdir(parents=True)
    cann.mkdir(parents=True)
    (site / "torch" / "__init__.py").write_text(textwrap.dedent("""
        class npu:
            is_available = staticmethod(lambda: True)
            device_count = staticmethod(lambda: 8)
        """))
    (site / "torch_npu" / "__init__.py").write_text("")
    # libtorch_npu.so needs torch's libc10.so (found through torch's lib folder, which the probe adds)
    # and CANN's libhccl.so (found only when the environment names CANN's folder)
    (tmp_path / "c10.c").write_text("int c10_init(void) { return 0; }\n")
    (tmp_path / "hccl.c").write_text("int HcclInit(void) { return 0; }\n")
    (tmp_path / "npu.c").write_text("int HcclInit(void);\nint c10_init(void);\n"
                                    "int npu_init(void) { return HcclInit() + c10_init(); }\n")
    torch_lib = site / "torch" / "lib"
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(torch_lib / "libc10.so"), str(tmp_path / "c10.c")], check=True)
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(cann / "libhccl.so"), str(tmp_path / "hccl.c")], check=True)
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(site / "torch_npu" / "lib" / "libtorch_npu.so"),
                    str(tmp_path / "npu.c"), f"-L{cann}", "-lhccl", f"-L{torch_lib}", "-lc10"], check=True)
    monkeypatch.setenv("PYTHONPATH", str(site))
    monkeypatch.setenv("LD_LIBRARY_PATH", str(cann))
    return cann


def test_library_probe_runs_for_real(fake_install, monkeypatch):
    passed(q.test_torch_npu_libraries, probe=facts_mod.LocalProbe("/"))
    monkeypatch.setenv("LD_LIBRARY_PATH", "/nonexistent")
    f = failed(q.test_torch_npu_libraries, probe=facts_mod.LocalProbe("/"))
    assert f["found"] == "libtorch_npu.so: libhccl.so"
    assert explained(f) == (CANN_ENV_CAUSE, CANN_ENV_FIX)


def test_import_probe_runs_for_real(fake_install):
    passed(q.test_torch_npu_import, probe=facts_mod.LocalProbe("/"), facts=healthy_facts(), stack=stack())
    f = failed(q.test_torch_npu_import, probe=facts_mod.LocalProbe("/"), facts=healthy_facts(devices=[]),
               stack=stack())
    assert f["found"] == "is_available()=True, device_count()=8"


# ------------------------------------------------------------------ what is active, not what is on disk
# Published file contents: driver 25.3.rc1's version.info lists the CANN trains it supports
# (compatible_version=[V100R001C19]..[V100R001C23], research notes ids 70943118811 and 48687078190);
# CANN 8.3.RC2's ascend_toolkit_install.info says innerversion=V100R001C23SPC002B210 (vllm-project/
# vllm-ascend issue #5606's env dump); driver 24.1.rc3's lists [V100R001C13]..[V100R001C19] (a
# vllm-ascend user's host, code index id 48598078561).
DRIVER_25_3 = {"version": "25.3.rc1", "package_version": "25.3.rc1", "innerversion": "V100R001C23SPC002B212",
               "compatible_version": "[V100R001C19],[V100R001C20],[V100R001C21],[V100R001C22],[V100R001C23]"}
DRIVER_24_1 = {"version": "24.1.rc3", "package_version": "24.1.rc3", "innerversion": "V100R001C19SPC001B124",
               "compatible_version": "[V100R001C13],[V100R001C15],[V100R001C17],[V100R001C18],[V100R001C19]"}
CANN_8_3 = {"generation": "ascend-toolkit", "version": "8.3.RC1", "home": "/usr/local/Ascend/ascend-toolkit/latest",
            "arch": "x86_64", "kernels": ["ascend910b"], "innerversion": "V100R001C23SPC002B210",
            "running": "8.3.RC1", "env_script": True}
ROW_8_3 = "2.8.0"   # CANN 8.3.RC1, HDK 25.3.RC1 (and no maximum)


def test_a_driver_whose_own_list_names_the_active_toolkit_passes():
    passed(q.test_driver_version, facts=healthy_facts(driver=DRIVER_25_3, cann=[CANN_8_3]), stack=stack(ROW_8_3))


def test_a_driver_newer_than_the_row_is_judged_by_its_compatible_version():
    # newer than the row's HDK and no maximum in the row: the range passes it, the vendor's list does not
    newer = {**DRIVER_25_3, "version": "26.1.0",
             "compatible_version": "[V100R001C25],[V100R001C26],[V100R001C27]"}
    f = failed(q.test_driver_version, facts=healthy_facts(driver=newer, cann=[CANN_8_3]), stack=stack(ROW_8_3))
    assert f == {"summary": "driver 26.1.0 does not support the active CANN 8.3.RC1: its version.info "
                            "compatible_version does not list V100R001C23",
                 "expected": "a driver whose compatible_version lists V100R001C23 (CANN 8.3.RC1's innerversion)",
                 "found": "driver 26.1.0: compatible_version=[V100R001C25],[V100R001C26],[V100R001C27]",
                 "cause": "the driver is too old or too new for this CANN by the driver's own compatibility list "
                          "(the CANN installer's version check; error 507033 at run time)",
                 "fix": HDK_FIX}


def test_an_old_driver_that_the_range_admits_is_still_judged_by_its_list():
    s = stack(ROW_8_3)
    s["hdk"]["min"] = "24.1.X"
    f = failed(q.test_driver_version, facts=healthy_facts(driver=DRIVER_24_1, cann=[CANN_8_3]), stack=s)
    assert f["summary"].startswith("driver 24.1.rc3 does not support the active CANN 8.3.RC1")


def test_without_the_drivers_list_a_newer_driver_passes_with_a_warning_that_says_so():
    outcome = passed(q.test_driver_version, facts=healthy_facts(driver={"version": "30.0.0", "package_version": "30.0.0",
                                                                        "innerversion": None, "compatible_version": None}),
                     stack=stack())
    assert outcome.warnings == ["driver 30.0.0 is newer than the row's HDK 26.1.0: the row sets no maximum and the "
                                "driver lists no compatible_version, so its support for CANN 9.1.0 was not verified"]


def test_a_newer_driver_is_verified_or_said_unverified_only_where_the_row_leaves_it_open():
    # the row's own HDK, no compatible_version: nothing to say
    assert passed(q.test_driver_version, facts=healthy_facts(), stack=stack()).warnings == []
    # newer, but under the row's maximum: the range verified it
    s = stack()
    s["hdk"]["max"] = "27.0.X"
    assert passed(q.test_driver_version, facts=healthy_facts(driver={"version": "26.2.0"}), stack=s).warnings == []
    # newer, no maximum, a list of trains, but a toolkit without its innerversion: nothing to look up
    listing = {**DRIVER_25_3, "version": "26.2.0"}
    outcome = passed(q.test_driver_version, facts=healthy_facts(driver=listing), stack=stack())
    assert outcome.warnings == ["driver 26.2.0 is newer than the row's HDK 26.1.0: the row sets no maximum and the "
                                "active toolkit names no innerversion, so its support for CANN 9.1.0 was not verified"]


def test_a_toolkit_version_cfg_does_not_run_fails():
    # latest's links lead to 8.3.RC1's install-info, but version.cfg says 8.2.RC1 runs (a switch cut short)
    half = {**CANN_8_3, "running": "8.2.RC1"}
    f = failed(q.test_cann_toolkit, facts=healthy_facts(cann=[half]), stack=stack(ROW_8_3))
    assert f == {"summary": "CANN 8.3.RC1's install-info is behind /usr/local/Ascend/ascend-toolkit/latest, but "
                            "latest/version.cfg runs 8.2.RC1",
                 "expected": "toolkit_running_version=[...:8.3.RC1] in /usr/local/Ascend/ascend-toolkit/latest/"
                             "version.cfg",
                 "found": "toolkit_running_version names 8.2.RC1",
                 "cause": "latest's links and its version.cfg disagree (a version switch or install that stopped "
                          "midway)",
                 "fix": "deploy the row again (it makes the version the running one with the vendor's "
                        "create_version_softlink.sh)"}


def test_an_active_toolkit_without_its_env_script_fails():
    f = failed(q.test_cann_toolkit, facts=healthy_facts(cann=[{**CANN_8_3, "env_script": False}]),
               stack=stack(ROW_8_3))
    assert f == {"summary": "CANN 8.3.RC1 is active but /usr/local/Ascend/ascend-toolkit/set_env.sh is missing",
                 "expected": "/usr/local/Ascend/ascend-toolkit/set_env.sh", "found": "missing",
                 "cause": "the toolkit's install stopped before it wrote its env script",
                 "fix": "deploy the row again (the toolkit is installed again)"}


def test_an_nnal_on_disk_that_is_not_the_active_one_fails():
    active = {"version": "8.3.RC1", "entry_point": "/usr/local/Ascend/nnal/atb/latest", "env_script": True}
    f = failed(q.test_nnal, facts=healthy_facts(nnal=["8.3.RC1", "9.1.0"], nnal_active=active), stack=stack())
    assert f == {"summary": "NNAL 9.1.0 is installed but not the active one: /usr/local/Ascend/nnal/atb/latest "
                            "leads to 8.3.RC1",
                 "expected": "/usr/local/Ascend/nnal/atb/latest -> /usr/local/Ascend/nnal/atb/9.1.0",
                 "found": "/usr/local/Ascend/nnal/atb/latest leads to NNAL 8.3.RC1 (on disk: 8.3.RC1, 9.1.0)",
                 "cause": "another NNAL version is the active one (the one installed or switched to last)",
                 "fix": "deploy the row again (it switches NNAL with the version's create_version_softlink.sh)"}


def test_an_active_nnal_without_its_env_script_fails():
    active = {"version": "9.1.0", "entry_point": "/usr/local/Ascend/nnal/atb/latest", "env_script": False}
    f = failed(q.test_nnal, facts=healthy_facts(nnal_active=active), stack=stack())
    assert f == {"summary": "NNAL 9.1.0 is active but /usr/local/Ascend/nnal/atb/set_env.sh is missing",
                 "expected": "/usr/local/Ascend/nnal/atb/set_env.sh", "found": "missing",
                 "cause": "an NNAL version was uninstalled (its uninstall.sh removes set_env.sh) or an upgrade "
                          "stopped midway",
                 "fix": "deploy the row again (the switch to the version writes set_env.sh)"}


def test_an_nnal_whose_entry_point_leads_nowhere_fails_saying_so():
    # nnal/atb/latest missing or dangling: no active version at all
    active = {"version": None, "entry_point": "/usr/local/Ascend/nnal/atb/latest", "env_script": False}
    f = failed(q.test_nnal, facts=healthy_facts(nnal_active=active), stack=stack())
    assert (f["summary"], f["found"]) == (
        "NNAL 9.1.0 is installed but not the active one: /usr/local/Ascend/nnal/atb/latest leads to no version",
        "/usr/local/Ascend/nnal/atb/latest leads to NNAL none (on disk: 9.1.0)")

"""facts.collect() over a directory tree laid out as the vendor lays out an
installed host (LocalProbe on a tmp tree, files only) and over a fake running
host (npu-smi's table and python3 answered from real captures; each chip's and
NPU port's queries, batched into one shell call each, answered in the vendor's
layout by check_fakes.answer_node).

The file contents are the vendor's, copied from published outputs:
driver/firmware version.info (24.1.rc3: a vllm-ascend user's host, code index
id 48598078561), ascend_toolkit_install.info (CANN 8.5.0: MindCluster fault
diagnosis guide, Ascend/mind-cluster docs, id 53777317832)."""
from __future__ import annotations

import os
import shlex
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.unit.check_fakes import HCCN, NPU_SMI, FakeProbe, answer_node, chip_mapping, key_value_lines, sample
from validation.node import facts as facts_mod

DRIVER_INFO = """Version=24.1.rc3
ascendhal_version=7.35.23
aicpu_version=1.0
tdt_version=1.0
log_version=1.0
prof_version=2.0
dvppkernels_version=1.1
tsfw_version=1.0
Innerversion=V100R001C19SPC001B124
compatible_version=[V100R001C13],[V100R001C15],[V100R001C17],[V100R001C18],[V100R001C19]
compatible_version_fw=[7.0.0,7.5.99]
package_version=24.1.rc3
"""
FIRMWARE_INFO = """Version=7.5.0.1.129
firmware_version=1.0
package_version=24.1.rc3
compatible_version_drv=[23.0.0,23.0.0.],[24.0,24.0.],[24.1,24.1.]
"""
INSTALL_INFO = """UserName=HwHiAiUser
UserGroup=HwHiAiUser
Driver_Install_Type=full
Driver_Install_Path_Param=/usr/local/Ascend
Driver_Install_For_All=no
Firmware_Install_Type=full
Firmware_Install_Path_Param=/usr/local/Ascend
"""


def toolkit_info(version: str, arch: str, home: str) -> str:
    return (f"package_name=Ascend-cann-toolkit\nversion={version}\ninnerversion=V100R001C25SPC001B212\n"
            f"compatible_version=[V100R001C15],[V100R001C18],[V100R001C19],[V100R001C20],[V100R001C21],[V100R001C23]\n"
            f"arch={arch}\nos=linux\npath={home}/{arch}-linux\n")


def write(root: Path, path: str, text: str = "") -> None:
    target = root / path.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)


# latest/version.cfg as the vendor's latest manager writes it (a published `cat
# ascend-toolkit/latest/version.cfg` of CANN 8.2.RC2, code index id 4926109241, with
# its version folder and inner version standing for this tree's 8.0.0).
VERSION_CFG = """# version: 1.0
runtime_running_version=[8.0.0.0.220:8.0.0]
runtime_installed_version=[8.0.0.0.220:8.0.0]
toolkit_running_version=[8.0.0.0.220:8.0.0]
toolkit_installed_version=[8.0.0.0.220:8.0.0]
opp_kernel_running_version=[8.0.0.0.220:8.0.0]
opp_kernel_installed_version=[8.0.0.0.220:8.0.0]
"""
ATB_INFO = ("    Ascend-cann-atb : {v}\n    Ascend-cann-atb Version : {v}.B030\n    Platform : x86_64\n")


def installed_tree(root: Path, layout: str = "cann", driver_root: str = "/usr/local/Ascend") -> Path:
    """A host's files after the vendor's installers: HDK, toolkit, ops/kernels, NNAL, a Python stack.
    Up to 8.3 ascend-toolkit/latest is a folder of links into the running version with version.cfg
    (published `ll ascend-toolkit/latest/`); from 8.5 the cann entry point leads to cann-<v>."""
    write(root, "/etc/ascend_install.info", INSTALL_INFO.replace("/usr/local/Ascend", driver_root))
    write(root, f"{driver_root}/driver/version.info", DRIVER_INFO)
    write(root, f"{driver_root}/firmware/version.info", FIRMWARE_INFO)
    ascend = root / "usr/local/Ascend"
    if layout == "cann":
        home = ascend / "cann-8.5.0"
        write(root, "/usr/local/Ascend/cann-8.5.0/x86_64-linux/ascend_toolkit_install.info",
              toolkit_info("8.5.0", "x86_64", "/usr/local/Ascend/cann-8.5.0"))
        write(root, "/usr/local/Ascend/cann-8.5.0/set_env.sh", "export ASCEND_TOOLKIT_HOME=/usr/local/Ascend/cann-8.5.0\n")
        os.symlink("cann-8.5.0", ascend / "cann")
        nnal = "8.5.0"
    else:
        home = ascend / "ascend-toolkit/8.0.0"
        write(root, "/usr/local/Ascend/ascend-toolkit/8.0.0/x86_64-linux/ascend_toolkit_install.info",
              toolkit_info("8.0.0", "x86_64", "/usr/local/Ascend/ascend-toolkit/8.0.0"))
        write(root, "/usr/local/Ascend/ascend-toolkit/set_env.sh", "export ASCEND_TOOLKIT_HOME=/usr/local/Ascend/ascend-toolkit/latest\n")
        latest = ascend / "ascend-toolkit/latest"
        (latest / "x86_64-linux").mkdir(parents=True)
        os.symlink("../../8.0.0/x86_64-linux/ascend_toolkit_install.info",
                   latest / "x86_64-linux/ascend_toolkit_install.info")
        os.symlink("../8.0.0/opp", latest / "opp")
        write(root, "/usr/local/Ascend/ascend-toolkit/latest/version.cfg", VERSION_CFG)
        nnal = "8.0.0"
    kernels = home / "opp/built-in/op_impl/ai_core/tbe/kernel"
    for d in ("ascend910b", "config"):
        (kernels / d).mkdir(parents=True)
    (ascend / f"nnal/atb/{nnal}/atb/cxx_abi_0").mkdir(parents=True)
    os.symlink(nnal, ascend / "nnal/atb/latest")
    write(root, "/usr/local/Ascend/nnal/atb/set_env.sh", "export ATB_HOME_PATH=...\n")
    for dist in ("torch-2.4.0+cpu", "torch_npu-2.4.0.post2", "torchvision-0.19.0"):
        (root / f"opt/npuenv/venv/lib/python3.11/site-packages/{dist}.dist-info").mkdir(parents=True)
    return root


DRIVER_FACTS = {"version": "24.1.rc3", "package_version": "24.1.rc3", "innerversion": "V100R001C19SPC001B124",
                "compatible_version": "[V100R001C13],[V100R001C15],[V100R001C17],[V100R001C18],[V100R001C19]"}


# ------------------------------------------------------------------ key=value files

def test_key_values_reads_the_vendor_files():
    info = facts_mod.key_values(DRIVER_INFO)
    assert info["Version"] == "24.1.rc3" and info["package_version"] == "24.1.rc3"
    assert info["compatible_version_fw"] == "[7.0.0,7.5.99]"
    assert facts_mod.key_values(" Version = 25.0.rc1.1 \nno separator here\n\n") == {"Version": "25.0.rc1.1"}
    assert facts_mod.key_values("a=b=c") == {"a": "b=c"}
    assert facts_mod.key_values(None) == {} and facts_mod.key_values("") == {}


# ------------------------------------------------------------------ an installed tree

def test_collect_reads_the_current_layout_from_files(tmp_path):
    probe = facts_mod.LocalProbe(str(installed_tree(tmp_path)))
    facts = facts_mod.collect(probe)
    assert facts["install_info"]["Driver_Install_Path_Param"] == "/usr/local/Ascend"
    assert facts["driver"] == DRIVER_FACTS
    assert facts["firmware"] == {"version": "7.5.0.1.129", "package_version": "24.1.rc3"}
    assert facts["cann"] == [{"generation": "cann", "version": "8.5.0", "home": "/usr/local/Ascend/cann",
                              "arch": "x86_64", "kernels": ["ascend910b"], "innerversion": "V100R001C25SPC001B212",
                              "running": None, "env_script": True}]
    assert facts["nnal"] == ["8.5.0"]
    # the tree's NNAL has no version.info: latest leads to no version, which is not the row's
    assert facts["nnal_active"] == {"version": None, "entry_point": "/usr/local/Ascend/nnal/atb/latest",
                                    "env_script": True}
    # the tree's NNAL has no version.info of its own: its folder's name stands in, and says so
    assert facts["nnal_detail"] == [{"dir": "/usr/local/Ascend/nnal/atb/8.5.0", "version": "8.5.0",
                                     "from": "directory name"}]
    assert facts["python"] == {"interpreter": None, "torch": "2.4.0+cpu", "torch_npu": "2.4.0.post2",
                               "torchvision": "0.19.0"}
    # a tree cannot run npu-smi: no devices, and no claim that there are none
    assert facts["npu_smi"] is None and facts["devices"] == []
    assert facts["topology"] is None and facts["network"] == []


def test_collect_reads_the_legacy_layout(tmp_path):
    facts = facts_mod.collect(facts_mod.LocalProbe(str(installed_tree(tmp_path, layout="ascend-toolkit"))))
    assert facts["cann"] == [{"generation": "ascend-toolkit", "version": "8.0.0",
                              "home": "/usr/local/Ascend/ascend-toolkit/latest", "arch": "x86_64",
                              "kernels": ["ascend910b"], "innerversion": "V100R001C25SPC001B212",
                              "running": "8.0.0", "env_script": True}]
    assert facts["nnal"] == ["8.0.0"]


def test_driver_installed_elsewhere_is_found_through_install_info(tmp_path):
    facts = facts_mod.collect(facts_mod.LocalProbe(str(installed_tree(tmp_path, driver_root="/opt/ascend"))))
    assert facts["driver"] == DRIVER_FACTS
    assert facts["firmware"]["version"] == "7.5.0.1.129"


def test_empty_host_has_nothing(tmp_path):
    facts = facts_mod.collect(facts_mod.LocalProbe(str(tmp_path)))
    assert facts["install_info"] == {} and facts["driver"] is None and facts["firmware"] is None
    assert facts["cann"] == [] and facts["nnal"] == []
    assert facts["python"] == {"interpreter": None, "torch": None, "torch_npu": None, "torchvision": None}


def test_local_probe_maps_paths_into_its_root(tmp_path):
    write(tmp_path, "/etc/x.info", "a=1\n")
    probe = facts_mod.LocalProbe(str(tmp_path))
    assert probe.read("/etc/x.info") == "a=1\n" and probe.read("/etc/missing") is None
    assert probe.glob("/etc/*.info") == ["/etc/x.info"]
    assert not probe.can_run
    rc, out, err = probe.run("true")
    assert rc == 127 and err == f"not run: {tmp_path} is a directory tree, not a running host"
    real = facts_mod.LocalProbe("/")
    assert real.can_run and real.run("echo $((6 * 7))")[:2] == (0, "42\n")
    assert real.read(str(tmp_path / "etc/x.info")) == "a=1\n"


# ------------------------------------------------------------------ a running host

PY_VERSIONS = r"^python3 -c 'import importlib\.metadata as m, json"
TABLE_910B3 = sample("npu-smi_info_910B3_25.2.0_8npu_with_process.txt")


def tree_files(tmp_path) -> dict[str, str | None]:
    """The files of installed_tree that collect() reads, by their path on the host."""
    tree = facts_mod.LocalProbe(str(installed_tree(tmp_path)))
    patterns = ("/etc/*", "/usr/local/Ascend/*/version.info", "/usr/local/Ascend/cann/*-linux/*",
                "/usr/local/Ascend/cann/opp/built-in/op_impl/ai_core/tbe/kernel/*", "/usr/local/Ascend/nnal/atb/*/atb")
    return {p: tree.read(p) for pattern in patterns for p in tree.glob(pattern)}


def running_host(tmp_path, npu_smi_answer=(0, TABLE_910B3, ""), **node):
    """Files from the installed tree; commands from a table: npu-smi info answers
    ``npu_smi_answer``, the per-chip and per-port queries a healthy node's answers
    (check_fakes.answer_node, ``node`` passed on)."""
    probe = answer_node(FakeProbe(files=tree_files(tmp_path)), **node)
    probe.answer(PY_VERSIONS, 0, '{"torch": "2.4.0+cpu", "torch_npu": "2.4.0.post2", "torchvision": null}\n')
    probe.answer(r"^npu-smi info$", *npu_smi_answer)
    return probe


def per_chip_commands(smi: str, chips) -> list[str]:
    return [f"{smi} info -t {kind} -i {npu} -c {chip}" for npu, chip in chips
            for kind in ("health", "temp", "power", "memory", "ecc")]


def per_port_commands(ports) -> list[str]:
    return [f"{HCCN} -i {port} -{query} -g" for port in ports
            for query in ("link", "speed", "fec", "net_health", "ip", "optical", "link_stat", "stat", "gateway",
                          "route", "netdetect", "tls", "lldp")]


def test_collect_on_a_running_host_reads_npu_smi(tmp_path):
    facts = facts_mod.collect(running_host(tmp_path))
    assert facts["npu_smi"] == {"version": "25.2.0", "unread_rows": [],
                                "processes": [{"npu": 4, "chip": 0, "pid": 1601114, "name": "python"}]}
    assert [(d["npu"], d["chip"], d["name"], d["health"]) for d in facts["devices"]] == \
        [(i, 0, "910B3", "OK") for i in range(8)]
    assert facts["devices"][0]["bus_id"] == "0000:C1:00.0" and facts["devices"][7]["bus_id"] == "0000:42:00.0"
    # the table's own figures of NPU 4 (the busy one)
    assert {k: facts["devices"][4][k] for k in ("logic_id", "phy_id", "temp_c", "power_w", "aicore_pct")} \
        == {"logic_id": 4, "phy_id": None, "temp_c": 45, "power_w": 139.7, "aicore_pct": 25}
    assert list(facts["devices"][4]["hbm_mb"]) == [21784, 65536]
    assert facts["python"] == {"interpreter": "python3", "torch": "2.4.0+cpu", "torch_npu": "2.4.0.post2",
                               "torchvision": None}


def test_collect_reads_each_chips_health_sensors_and_ecc_and_the_topology(tmp_path):
    facts = facts_mod.collect(running_host(tmp_path))
    third = facts["devices"][3]
    assert third["health_detail"] == {"status": "OK", "error_codes": [], "error_info": []}
    # each chip's answers land on that chip (NPU 3: 30 + 3 C, 90 + 3 W, HBM 40 + 3 C)
    assert third["sensors"] == {"temp_c": 33.0, "power_w": 93.0, "hbm_temp_c": 43.0}
    assert facts["devices"][6]["sensors"] == {"temp_c": 36.0, "power_w": 96.0, "hbm_temp_c": 46.0}
    assert third["ecc"] == {"HBM": {"single_bit": 0, "double_bit": 0, "single_bit_total": 0, "double_bit_total": 0,
                                    "single_bit_isolated_pages": 0, "double_bit_isolated_pages": 0}}
    topo = facts["topology"]
    assert topo["devices"] == [f"NPU{i}" for i in range(8)]
    assert topo["links"]["NPU0"]["NPU0"] == "X" and topo["links"]["NPU2"]["NPU7"] == "HCCS"
    assert topo["cpu_affinity"]["NPU2"] == "96-119"
    assert topo["legend"]["PXB"] == "Path traversing multipul PCIe switches"
    assert topo["unreadable"] == []


def test_collect_reads_every_npu_port(tmp_path):
    facts = facts_mod.collect(running_host(tmp_path, ips={port: f"192.168.1.{10 + port}" if port != 5 else None
                                                          for port in range(8)}))
    # no Phy-ID column in this table: the ports are the chips' places in it
    assert [p["port"] for p in facts["network"]] == list(range(8))
    port = facts["network"][2]
    assert (port["link"], port["net_health"]) == ("UP", "Success")
    assert port["ip"] == {"address": "192.168.1.12", "netmask": "255.255.255.0"}
    assert port["gateway"] == {"address": "192.168.1.1", "iface": "eth2"}
    assert port["routes"] == [{"destination": "192.168.1.0", "gateway": None, "genmask": "255.255.255.0",
                               "flags": "U", "iface": "eth2"}]
    assert (port["optical"]["present"], port["optical"]["rx_power_mw"]) == (True, [0.95, 0.95, 0.95, 0.95])
    assert (port["link_stat"]["device"], port["link_stat"]["up_count"]) == (2, 1)
    assert port["stat"]["mac_rx_fcs_err_pkt_num"] == 0 and port["stat"]["mac_tx_total_pkt_num"] == 120034
    # a port without a preset IP has none; the others keep theirs
    assert facts["network"][5]["ip"] is None and facts["network"][6]["ip"]["address"] == "192.168.1.16"


def test_collect_asks_each_chip_and_port_in_one_shell_call_each(tmp_path):
    probe = running_host(tmp_path)
    facts_mod.collect(probe)
    chips, ports = [(npu, 0) for npu in range(8)], range(8)
    locate = "command -v npu-smi || for p in /usr/local/bin/npu-smi /usr/local/sbin/npu-smi; do [ -x $p ] && " \
             "echo $p && break; done; true"
    # python3, npu-smi info, where npu-smi is, then one call for the chips and one for the ports
    assert len(probe.runs) == 5 and probe.runs[1:3] == ["npu-smi info", locate]
    # npu-smi located once; every sub-command runs it from there
    assert sorted(probe.answered[3:]) == sorted([f"{NPU_SMI} info -t topo", f"{NPU_SMI} info -m"] +
                                                per_chip_commands(NPU_SMI, chips) + per_port_commands(ports))
    # 8 chips x 5 sub-commands + topo + -m; 8 ports x 13 queries
    assert probe.runs[3].count("@@npuenv-section") == 42 and probe.runs[4].count("@@npuenv-section") == 104


def test_logic_ids_come_from_npu_smi_info_m_not_from_the_tables_order(tmp_path):
    """The topology matrix is by logic id; npu-smi info lists cards by NPU id, and the two orders
    need not agree (an A3 lists both dies of a card, -m numbers them)."""
    probe = running_host(tmp_path)
    probe.answer(rf"^{NPU_SMI} info -m$", 0, chip_mapping([(npu, 0) for npu in (3, 2, 1, 0, 7, 6, 5, 4)]))
    facts = facts_mod.collect(probe, network=False)
    assert [(d["npu"], d["logic_id"]) for d in facts["devices"]] == [
        (0, 3), (1, 2), (2, 1), (3, 0), (4, 7), (5, 6), (6, 5), (7, 4)]
    assert "mapping_error" not in facts["npu_smi"]
    # -m that cannot be read: no logic id is guessed, and why is kept
    probe.answer(rf"^{NPU_SMI} info -m$", 0, "Invalid option -m\n")
    facts = facts_mod.collect(probe, network=False)
    assert {d["logic_id"] for d in facts["devices"]} == {None}
    assert facts["npu_smi"]["mapping_error"] == ("expected the 'NPU ID  Chip ID  Chip Logic ID  Chip Name' header "
                                                 "(line 1: 'Invalid option -m')")


def test_collect_reads_health_and_both_dies_of_a3_and_310p(tmp_path):
    a3 = sample("npu-smi_info_A3_Ascend910_24.1.rc3.7_8npu_16chip.txt")
    both_dies = [(npu, chip) for npu in range(8) for chip in (0, 1)]
    probe = running_host(tmp_path, (0, a3, ""), chips=both_dies, ips={p: f"192.168.1.{10 + p}" for p in range(16)})
    facts = facts_mod.collect(probe)
    assert len(facts["devices"]) == 16 and {d["chip"] for d in facts["devices"]} == {0, 1}
    assert [d["phy_id"] for d in facts["devices"][:4]] == [0, 1, 2, 3]
    # the second die is asked for its own sensors; the ports are the dies' physical ids
    assert f"{NPU_SMI} info -t temp -i 5 -c 1" in probe.answered
    assert facts["devices"][11]["sensors"]["temp_c"] == 35.0
    assert [p["port"] for p in facts["network"]] == list(range(16))
    cards = [(npu, chip) for npu in (1, 2, 4, 5) for chip in (0, 1)]
    critical = key_value_lines(("Health Status", "Critical"), ("Error Code", "80E18402"), ("Error Information", "NA"))
    probe = running_host(tmp_path / "b", (0, sample("npu-smi_info_310P3_300IDuo_25.0.rc1.b033_4card_Critical.txt"),
                                          ""), chips=cards)
    probe.answer(rf"^{NPU_SMI} info -t health -i 4 -c 0$", 0, critical)
    facts = facts_mod.collect(probe)
    assert [(d["npu"], d["chip"]) for d in facts["devices"] if d["health"] == "Critical"] == [(4, 0)]
    assert facts["devices"][4]["health_detail"] == {"status": "Critical", "error_codes": ["80E18402"],
                                                    "error_info": []}
    assert facts["devices"][5]["health_detail"]["status"] == "OK"
    # no Phy-ID column (310P prints the logic id as Device): ports by place in the table
    assert [d["logic_id"] for d in facts["devices"]] == list(range(8))
    assert [p["port"] for p in facts["network"]] == list(range(8))


def test_a_port_is_the_chips_physical_id_or_its_place_in_the_table():
    assert facts_mod.network_port({"npu": 1, "chip": 0, "phy_id": 9}, 0) == 9
    assert facts_mod.network_port({"npu": 1, "chip": 0, "phy_id": 0}, 5) == 0
    assert facts_mod.network_port({"npu": 6, "chip": 0, "phy_id": None}, 2) == 2
    assert facts_mod.network_port({"npu": 6, "chip": 0}, 3) == 3


def test_a_query_that_fails_is_a_fact_that_says_why(tmp_path):
    probe = running_host(tmp_path)
    probe.answer(rf"^{NPU_SMI} info -t ecc -i 2 -c 0$", 255, sample("npu-smi_error_invalid_card_id.txt"))
    probe.answer(rf"^{NPU_SMI} info -t health -i 6 -c 0$", 255, sample("npu-smi_error_-8020_device_used.txt"))
    probe.answer(rf"^{HCCN} -i 3 -link -g$", 1,
                 "call drvMngGetConsoleLogLevel failed , g_conLogLevel = 3\nDevice ID is out of the valid range.\n"
                 "Cmd execute failed!\n")
    probe.answer(rf"^{HCCN} -i 4 -optical -g$", 127, "", "bash: line 1: hccn_tool: command not found\n")
    facts = facts_mod.collect(probe)
    assert facts["devices"][2]["ecc"] == {"error": "the tool reported an error: Invalid card id."}
    assert facts["devices"][6]["health_detail"] == {
        "error": "the tool reported an error: dcmi model initialized failed, because the device is used. ret is "
                 "-8020 (device resources are occupied: another process or container holds the device (the driver "
                 "lets one container namespace open a device))"}
    assert facts["network"][3]["link"] == {"error": "the tool reported an error: Device ID is out of the valid range."}
    assert facts["network"][4]["optical"] == {
        "error": "no 'present' line in the optical info: 'bash: line 1: hccn_tool: command not found\\n'"}
    # the other chips and ports are read as usual
    assert facts["devices"][1]["ecc"]["HBM"]["double_bit"] == 0 and facts["network"][2]["link"] == "UP"


def test_npu_smi_error_is_kept_with_its_code(tmp_path):
    probe = running_host(tmp_path, (255, sample("npu-smi_error_-8005_dcmi_init.txt"), ""))
    facts = facts_mod.collect(probe)
    assert facts["npu_smi"] == {
        "error": "the tool reported an error: dcmi module initialize failed. ret is -8005 (internal error: the NPU "
                 "driver is not loaded: it was installed or upgraded without the reboot it needs, the kernel was "
                 "upgraded so its modules no longer load, or this user or container cannot open /dev/davinci*)"}
    assert facts["devices"] == [] and facts["network"] == [] and facts["topology"] is None
    # no devices: nothing is asked of them
    assert probe.runs[1:] == ["npu-smi info"]


def test_npu_smi_found_off_path_in_the_drivers_locations(tmp_path):
    sbin = "/usr/local/sbin/npu-smi"
    probe = running_host(tmp_path, (127, "", "bash: line 1: npu-smi: command not found\n"), smi=sbin)
    probe.answer(r"^/usr/local/bin/npu-smi info$", 127, "", "No such file or directory\n")
    probe.answer(r"^/usr/local/sbin/npu-smi info$", 0, TABLE_910B3)
    facts = facts_mod.collect(probe)
    assert len(facts["devices"]) == 8
    assert probe.runs[1:4] == ["npu-smi info", "/usr/local/bin/npu-smi info", "/usr/local/sbin/npu-smi info"]
    # the sub-commands run the npu-smi that was found
    assert f"{sbin} info -t health -i 7 -c 0" in probe.answered and f"{sbin} info -t topo" in probe.answered
    assert not [c for c in probe.answered if c.startswith("npu-smi info -t")]
    assert facts["devices"][7]["health_detail"]["status"] == "OK"


def test_npu_smi_found_in_a_folder_with_a_space_is_quoted(tmp_path):
    odd = "/opt/vendor tools/npu-smi"
    probe = running_host(tmp_path, smi=odd)
    facts = facts_mod.collect(probe)
    assert "'/opt/vendor tools/npu-smi' info -t topo" in probe.answered
    assert facts["topology"]["devices"][0] == "NPU0"


def test_no_npu_smi_anywhere_is_an_error_not_an_empty_host(tmp_path):
    probe = running_host(tmp_path, (127, "", "command not found\n"))
    probe.answer(r"^/usr/local/s?bin/npu-smi info$", 127, "", "No such file or directory\n")
    facts = facts_mod.collect(probe)
    assert facts["npu_smi"] == {"error": "npu-smi not found (no driver on this host)"}


# ------------------------------------------------------------------ batched commands (facts.run_sections)

def test_run_sections_keeps_each_commands_output_and_exit_code_on_a_real_shell():
    probe = facts_mod.LocalProbe("/")
    out = facts_mod.run_sections(probe, {"a b": "echo one", "err": "sh -c 'echo two >&2; exit 3'",
                                         "quiet": "true", "lines": "printf 'x\\ny\\n'"})
    assert out == {"a b": (0, "one\n"), "err": (3, "two\n"), "quiet": (0, ""), "lines": (0, "x\ny\n")}


def test_run_sections_that_could_not_run_gives_each_command_the_reason(tmp_path):
    out = facts_mod.run_sections(facts_mod.LocalProbe(str(tmp_path)), {"x": "true", "y": "false"})
    reason = f"not run: {tmp_path} is a directory tree, not a running host"
    assert out == {"x": (127, reason), "y": (127, reason)}


def test_this_machine_answers_bytes_that_are_no_utf8_replaced():
    assert facts_mod.LocalProbe("/").run("printf 'a\\377b'; printf '\\376' >&2") == (0, "a\ufffdb", "\ufffd")


def test_the_suite_reads_the_machine_it_runs_on_directly_and_other_hosts_through_testinfra():
    from validation.node.suite.conftest import probe_for

    def host(name, sudo=False):
        return SimpleNamespace(backend=SimpleNamespace(NAME=name, sudo=sudo))

    assert probe_for(host("local")) == facts_mod.LocalProbe("/")
    for other in (host("local", sudo=True), host("ssh"), host("podman")):   # sudo goes through testinfra's
        assert isinstance(probe_for(other), facts_mod.HostProbe) and probe_for(other).host is other


def test_run_sections_keeps_output_without_a_final_newline():
    out = facts_mod.run_sections(facts_mod.LocalProbe("/"), {"a": "printf x", "b": "echo y"})
    assert out["a"][0] == 0 and out["a"][1].strip() == "x"
    assert out["b"] == (0, "y\n")


def test_python_that_fails_is_reported(tmp_path):
    probe = running_host(tmp_path)
    probe.answer(PY_VERSIONS, 127, "", "bash: line 1: python3: command not found\n")
    assert facts_mod.collect(probe)["python"] == {"interpreter": "python3",
                                                  "error": "bash: line 1: python3: command not found"}


def test_the_python_version_probe_runs_for_real():
    rc, out, err = facts_mod.LocalProbe("/").run(f"python3 -c {shlex.quote(facts_mod._PY_VERSIONS)}")
    assert rc == 0, err
    assert set(__import__("json").loads(out)) == {"torch", "torch_npu", "torchvision"}


# ------------------------------------------------------------------ testinfra hosts

class FakeTestinfraHost:
    def __init__(self, files, answers):
        self.files, self.answers, self.commands = files, answers, []

    def run(self, command):
        self.commands.append(command)
        inner = shlex.split(command)[2]
        rc, out = self.answers.get(inner, (1, ""))
        return SimpleNamespace(rc=rc, stdout=out, stderr="")

    def file(self, path):
        return SimpleNamespace(exists=path in self.files, is_file=True, content_string=self.files.get(path))


def test_host_probe_runs_in_a_login_shell_and_reads_files():
    host = FakeTestinfraHost({"/etc/ascend_install.info": INSTALL_INFO}, {"echo 'a b'": (0, "a b\n")})
    probe = facts_mod.HostProbe(host)
    assert probe.run("echo 'a b'") == (0, "a b\n", "")
    assert host.commands == ["bash -lc 'echo '\"'\"'a b'\"'\"''"]
    assert probe.read("/etc/ascend_install.info") == INSTALL_INFO and probe.read("/nope") is None


def test_host_probe_glob_lists_what_exists():
    pattern = "/usr/local/Ascend/nnal/atb/*/atb"
    loop = f'for p in {pattern}; do [ -e "$p" ] && echo "$p"; done; true'
    host = FakeTestinfraHost({}, {loop: (0, "/usr/local/Ascend/nnal/atb/8.0.0/atb\n\n")})
    assert facts_mod.HostProbe(host).glob(pattern) == ["/usr/local/Ascend/nnal/atb/8.0.0/atb"]
    # the loop prints nothing for an unmatched pattern: bash keeps it literal and -e rejects it
    rc, out, _ = facts_mod.LocalProbe("/").run(f'for p in /nonexistent-{os.getpid()}/*; do [ -e "$p" ] && '
                                               'echo "$p"; done; true')
    assert (rc, out) == (0, "")


@pytest.mark.parametrize("layout", ["cann", "ascend-toolkit"])
def test_checks_pass_on_what_collect_reads(tmp_path, layout):
    """The quick checks that read files agree with collect(): no shape drift between the two."""
    from tests.unit.check_fakes import LEGACY_ROW, run_check, stack
    from validation.node.suite import test_quick as q
    facts = facts_mod.collect(facts_mod.LocalProbe(str(installed_tree(tmp_path, layout=layout))))
    # the tree's 8.5.0 / 8.0.0 installs stand for the rows' versions
    s = stack(LEGACY_ROW) if layout == "ascend-toolkit" else stack()
    if layout == "cann":
        facts["cann"][0]["version"] = s["cann"]
        facts["nnal"] = [s["cann"]]
    facts["nnal_active"]["version"] = s["cann"]
    facts["driver"]["version"] = facts["firmware"]["package_version"] = s["hdk"]["version"].lower()
    # the sample driver (24.1.rc3) lists trains up to C19; the tree's toolkits are C25: take the
    # driver's own list as the one that names the tree's toolkit
    facts["driver"]["compatible_version"] = "[V100R001C23],[V100R001C25]"
    for check in (q.test_driver_version, q.test_cann_toolkit, q.test_nnal):
        assert run_check(check, facts=facts, stack=s).passed, check.__name__
    assert run_check(q.test_firmware_pairs_with_driver, facts=facts).passed
    assert run_check(q.test_install_info, facts=facts).passed


def test_files_with_bytes_that_are_not_utf8_are_still_read(tmp_path):
    target = tmp_path / "usr/local/Ascend/driver/version.info"
    target.parent.mkdir(parents=True)
    target.write_bytes(b"Version=24.1.rc3\ncomment=\xff\xfe\n")
    text = facts_mod.LocalProbe(str(tmp_path)).read("/usr/local/Ascend/driver/version.info")
    assert text == "Version=24.1.rc3\ncomment=\ufffd\ufffd\n"


def test_a_tree_runs_nothing_and_prints_nothing(tmp_path):
    assert facts_mod.LocalProbe(str(tmp_path)).run("npu-smi info")[:2] == (127, "")


def test_install_info_without_the_driver_line_falls_back_to_the_default_root(tmp_path):
    root = installed_tree(tmp_path)
    (root / "etc/ascend_install.info").write_text("Firmware_Install_Type=full\n")
    assert facts_mod.collect(facts_mod.LocalProbe(str(root)))["driver"] == DRIVER_FACTS


def test_python_that_fails_with_output_reports_it(tmp_path):
    probe = running_host(tmp_path)
    probe.answer(PY_VERSIONS, 1, "partial output\n", "")
    assert facts_mod.collect(probe)["python"] == {"interpreter": "python3", "error": "partial output"}
    long = "E" * 600
    probe.answer(PY_VERSIONS, 1, "", long)
    assert facts_mod.collect(probe)["python"]["error"] == long[-500:]


def test_host_probe_reads_only_files():
    class File:
        """testinfra's File: reading a missing file or a folder fails."""
        def __init__(self, path, exists, is_file):
            self.path, self.exists, self.is_file = path, exists, is_file

        @property
        def content_string(self):
            assert self.is_file, f"testinfra cannot read {self.path}"
            return "a=1\n"

    class Host:
        def file(self, path):
            return File(path, *{"/etc/a": (True, True), "/etc": (True, False)}.get(path, (False, False)))

    probe = facts_mod.HostProbe(Host())
    assert probe.read("/etc/a") == "a=1\n"
    assert probe.read("/etc") is None and probe.read("/missing") is None


def test_the_npu_ports_are_read_when_a_check_first_asks_for_them(tmp_path):
    probe = running_host(tmp_path)
    facts = facts_mod.collect(probe, network=False)
    assert not [c for c in probe.answered if "hccn_tool" in c]   # the quick level reads no port
    ports = facts["network"]
    asked = [c for c in probe.answered if "hccn_tool" in c]
    assert [p["port"] for p in ports] == list(range(8)) and len(asked) == 8 * len(facts_mod.HCCN_QUERIES)
    assert facts.get("network") is ports and len([c for c in probe.answered if "hccn_tool" in c]) == len(asked)
    assert facts_mod.collect(running_host(tmp_path / "b"))["network"] == ports   # all at once for `npuenv facts`


def test_the_costly_facts_are_read_when_first_asked_each_in_one_shell_call(tmp_path):
    """Boards and MCUs, HCCS, the super-pod view and the kernel log: none is read by collect() itself
    (the quick level), each in one shell call when a check first asks, read by its own parser."""
    probe = running_host(tmp_path)
    at = shlex.quote(NPU_SMI)
    board = key_value_lines(("NPU ID", 0), ("Software Version", "25.2.0"), ("Firmware Version", "7.7.0.1.231"),
                            ("Compatibility", "OK"))
    probe.answer(rf"^{at} info -t board -i \d+$", 0, board)
    probe.answer(rf"^{at} upgrade -b mcu -i \d+$", 0, sample("npu-smi_upgrade_-b_mcu_-i_0_910B4_factory_blog.txt"))
    probe.answer(rf"^{at} info -t hccs -i \d+ -c 0$", 0, sample("npu-smi_info_-t_hccs_910B_7_ports_source.txt"))
    probe.answer(rf"^{at} info -t spod-info -i \d+ -c 0$", 0, "This device does not support querying spod-info.\n")
    probe.answer(r"^dmesg$", 0, sample("kernel_log_device_abnormal_atlas800i_blog.txt"))
    facts = facts_mod.collect(probe, network=False)
    assert not {"boards", "hccs", "super_pod", "kernel_log", "network"} & set(facts)
    before = len(probe.runs)
    boards = facts["boards"]
    assert len(probe.runs) == before + 1   # every card in one call (npu-smi was located once, by collect)
    assert [b["npu"] for b in boards] == list(range(8))
    assert boards[5] == {"npu": 5, "board": {"NPU ID": "0", "Software Version": "25.2.0",
                                             "Firmware Version": "7.7.0.1.231", "Compatibility": "OK"},
                         "mcu": "23.3.13"}
    hccs = facts["hccs"]
    assert [(c["npu"], c["chip"]) for c in hccs] == [(n, 0) for n in range(8)]
    assert hccs[2]["hccs"]["healthy"] is True and hccs[2]["hccs"]["ports"]["lane mode"] == ["4"] * 7
    assert facts["super_pod"] == [{"npu": n, "chip": 0, "spod": None} for n in range(8)]
    assert [line["message"][:18] for line in facts["kernel_log"]] == ["Device is abnormal", "devdrv_manager_sen"]
    assert len(probe.runs) == before + 4   # one call each for boards, HCCS, super pod and dmesg
    assert facts.get("boards") is boards and facts.get("no such fact", "default") == "default"
    # a host whose npu-smi lists no chip reads no board, HCCS or super pod
    bare = running_host(tmp_path / "bare", npu_smi_answer=(0, "", ""))
    facts = facts_mod.collect(bare, network=False)
    before = len(bare.runs)
    assert (facts["boards"], facts["hccs"], facts["super_pod"], facts["network"]) == ([], [], [], [])
    assert len(bare.runs) == before
    empty = facts_mod.Facts({"devices": []}, {})
    assert empty.get("boards") is None and empty.get("devices") == []
    with pytest.raises(KeyError, match="boards"):
        empty["boards"]


@pytest.mark.parametrize("rc, out, err, why", [
    # util-linux where the kernel restricts the log (kernel.dmesg_restrict, a container without CAP_SYSLOG)
    (1, "", "dmesg: read kernel buffer failed: Operation not permitted\n",
     "dmesg: read kernel buffer failed: Operation not permitted"),
    (1, "dmesg: on stdout\n", "", "dmesg: on stdout"),
    (3, "", "", "dmesg exited 3"),
    (1, "", "x" * 100 + "y" * 300, "y" * 300),
])
def test_a_kernel_log_that_cannot_be_read_says_why(tmp_path, rc, out, err, why):
    probe = running_host(tmp_path)
    probe.answer(r"^dmesg$", rc, out, err)
    assert facts_mod.collect(probe, network=False)["kernel_log"] == {"error": why}

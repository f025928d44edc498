"""The vendor-output parsers read real npu-smi / hccn_tool captures, and the simulated
tools print the same text for the same device state, faults included."""
import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.sim import state as sim_state
from validation.node import hardware
from validation.node.vendor_tools import common, hccn_tool, kernel_log, npu_smi

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "tests/fixtures/vendor_samples"
TOOLS = ROOT / "tests/sim/tools"


def sample(name: str) -> str:
    return (SAMPLES / name).read_text()


# ------------------------------------------------------------ the simulator

class SimHost:
    """A simulated host under one folder: state file, version.info files, device nodes."""

    def __init__(self, folder, state, driver="25.2.0", firmware="7.7.0.1.231", nodes=True):
        self.root = folder / "root"
        self.state_path = folder / "state.json"
        sim_state.save(state, self.state_path)
        for kind, version in (("driver", driver), ("firmware", firmware)):
            if version:
                info = self.root / f"usr/local/Ascend/{kind}/version.info"
                info.parent.mkdir(parents=True, exist_ok=True)
                info.write_text(f"Version={version}\npackage_version={version}\n")
        (self.root / "dev").mkdir(parents=True, exist_ok=True)
        if nodes:
            (self.root / "dev/davinci_manager").touch()
            for die in sim_state.chips(state):
                (self.root / f"dev/davinci{die['phy_id']}").touch()

    def run(self, tool, *args):
        env = dict(os.environ, NPU_SIM_ROOT=str(self.root), NPU_SIM_STATE=str(self.state_path))
        return subprocess.run([sys.executable, str(TOOLS / tool), *args], env=env,
                              capture_output=True, text=True, timeout=30)

    def npu_smi(self, *args):
        return self.run("npu_smi.py", *args)

    def hccn(self, dev, *args):
        return self.run("hccn_tool.py", "-i", str(dev), *args)

    def state(self):
        return sim_state.load(self.state_path)


@pytest.fixture
def host(tmp_path):
    """Factory of simulated hosts, each in its own folder."""
    made = []

    def make(state, **kw):
        made.append(SimHost(tmp_path / f"host{len(made)}", state, **kw))
        return made[-1]
    return make


def state_from_info(info: npu_smi.NpuSmiInfo, chip: str) -> dict:
    """The device state equivalent to a parsed ``npu-smi info`` capture."""
    cards = {}
    for logic, c in enumerate(info.chips):
        logic_id = c.device_id if c.device_id is not None else logic
        die = {"chip": c.chip, "phy_id": c.phy_id if c.phy_id is not None else logic_id,
               "logic_id": logic_id, "health": c.health, "error_codes": [],
               "power_w": c.power_w, "temp_c": c.temp_c, "hugepages": list(c.hugepages),
               "bus_id": c.bus_id, "aicore_pct": c.aicore_pct, "memory_mb": list(c.memory_mb),
               "hbm_mb": list(c.hbm_mb) if c.hbm_mb else None, "busy": None,
               "processes": [{"pid": p.pid, "name": p.name, "mem_mb": p.mem_mb}
                             for p in info.processes_on(c.npu) if p.chip == c.chip],
               "link": "UP", "net_health": "Success", "ip": None, "netmask": None,
               "netdetect": None, "lldp": None}
        cards.setdefault(c.npu, []).append(die)
    return {"chip": chip, "name": info.chips[0].name,
            "npus": [{"npu": n, "chips": dies} for n, dies in cards.items()]}


def state_910a(cards=8):
    """8 x 910A like the mind-cluster fixture (board captured on card 0)."""
    st = sim_state.default_state("910", npus=cards)
    st["name"] = "910A"
    card0 = st["npus"][0]
    card0["board"] = {"board_id": "0x02", "pcb_id": "A", "bom_id": "1", "slot_id": 0}
    card0["chips"][0].update(bus_id="0000:61:00.0",
                             vdie_id="42C711D4 20B03704 4A10C8D4 14CC040A D2102003",
                             ndie_id="27216594 20401010 4E10C8D4 14CC040A A4102003")
    return st


# ------------------------------------------------- real samples: npu-smi info

def test_910b2_23_0_7_table():
    info = npu_smi.parse_npu_smi_info(sample("npu-smi_info_910B2_23.0.7_8npu_no_process.txt"))
    assert (info.npu_smi_version, info.version) == ("23.0.7", "23.0.7")
    assert info.npu_ids() == list(range(8)) and len(info.chips) == 8
    c0 = info.chip(0)
    assert (c0.name, c0.health, c0.power_w, c0.temp_c) == ("910B2", "OK", 96.5, 36)
    assert (c0.bus_id, c0.aicore_pct, c0.memory_mb, c0.hbm_mb) == ("0000:C1:00.0", 0, (0, 0), (29954, 65536))
    assert c0.hugepages == (0, 0) and c0.phy_id is None and c0.device_id is None
    assert info.chip(4).hbm_mb == (3347, 65536) and info.chip(5).bus_id == "0000:41:00.0"
    assert info.has_process_section and info.processes == []


def test_910b3_24_1_rc1_table_without_process_section():
    info = npu_smi.parse_npu_smi_info(sample("npu-smi_info_910B3_24.1.rc1.b030_8npu_no_proc_section.txt"))
    assert info.version == "24.1.rc1.b030"
    assert not info.has_process_section
    assert info.chip(6).power_w == 103.8 and info.chip(6).temp_c == 45
    assert info.chip(7).hbm_mb == (3315, 65536)


def test_910b4_25_0_rc1_table():
    info = npu_smi.parse_npu_smi_info(sample("npu-smi_info_910B4_25.0.rc1.1_8npu_no_process.txt"))
    assert info.version == "25.0.rc1.1" and {c.name for c in info.chips} == {"910B4"}
    assert info.chip(0).hbm_mb == (2654, 32768) and info.chip(7).hbm_mb == (2653, 32768)
    assert info.chip(3).power_w == 89.1


def test_910b3_25_2_0_table_with_a_process():
    info = npu_smi.parse_npu_smi_info(sample("npu-smi_info_910B3_25.2.0_8npu_with_process.txt"))
    c4 = info.chip(4)
    assert (c4.power_w, c4.temp_c, c4.aicore_pct, c4.hbm_mb) == (139.7, 45, 25, (21784, 65536))
    assert info.processes == [npu_smi.NpuProcess(npu=4, chip=0, pid=1601114, name="python", mem_mb=18429)]
    assert info.processes_on(0) == []


def test_a3_table_two_dies_per_npu():
    info = npu_smi.parse_npu_smi_info(sample("npu-smi_info_A3_Ascend910_24.1.rc3.7_8npu_16chip.txt"))
    assert info.version == "24.1.rc3.7" and len(info.chips) == 16 and info.npu_ids() == list(range(8))
    assert [c.phy_id for c in info.chips] == list(range(16))
    assert info.chip(0, 0).power_w == 178.5 and info.chip(0, 1).power_w is None  # "-" on die 1
    last = info.chip(7, 1)
    assert (last.name, last.phy_id, last.bus_id, last.hbm_mb, last.temp_c) == (
        "Ascend910", 15, "0000:83:00.0", (3188, 65536), 37)


def test_310p_duo_table_with_a_critical_chip():
    info = npu_smi.parse_npu_smi_info(sample("npu-smi_info_310P3_300IDuo_25.0.rc1.b033_4card_Critical.txt"))
    assert info.version == "25.0.rc1.b033" and info.npu_ids() == [1, 2, 4, 5] and len(info.chips) == 8
    bad = info.chip(4, 0)
    assert (bad.health, bad.device_id, bad.memory_mb, bad.hbm_mb, bad.power_w, bad.temp_c) == (
        "Critical", 4, (1793, 44280), None, None, 56)
    assert [c.health for c in info.chips].count("Critical") == 1
    assert info.chip(1, 1).memory_mb == (1379, 46717) and info.chip(1, 1).bus_id == "0000:01:00.0"
    assert info.has_process_section and info.processes == []


# ------------------------------------------------- real samples: sub-commands

def test_list_mapping_board_health_topo_samples():
    listed = npu_smi.parse_npu_smi_list(sample("npu-smi_info_-l_910B4_8npu.txt"))
    assert listed.total_count == 8 and listed.chip_counts == {n: 1 for n in range(8)}

    mcu = npu_smi.parse_mapping(sample("npu-smi_info_-m_910B4_8npu_with_mcu.txt"))
    assert len(mcu) == 16
    assert mcu[0] == npu_smi.ChipMapping(0, 0, 0, "Ascend 910B4") and mcu[15] == npu_smi.ChipMapping(7, 1, None, "Mcu")
    a910 = npu_smi.parse_mapping(sample("npu-smi_info_-m_910A_8npu.txt"))
    assert [(m.npu, m.logic_id, m.name) for m in a910][7] == (7, 7, "Ascend 910A")

    board = npu_smi.parse_board(sample("npu-smi_info_-t_board_-i_0_910A_23.0.5.txt"))
    assert board["Software Version"] == "23.0.5" and board["Firmware Version"] == "7.1.0.7.220"
    assert board["PCI Device ID"] == "0xD801" and board["PCIe Bus Info"] == "0000:61:00.0"
    assert board["Chip Count"] == "1"
    chip = npu_smi.parse_board(sample("npu-smi_info_-t_board_-i_0_-c_0_910A.txt"))
    assert chip["Chip Name"] == "910A" and chip["NDie ID"].startswith("27216594 ")

    ok = npu_smi.parse_health(sample("npu-smi_info_-t_health_-i_0_-c_0_OK.txt"))
    assert ok == npu_smi.Health("OK", (), ()) and ok.ok
    alarm = npu_smi.parse_health(sample("npu-smi_info_-t_health_-i_0_-c_0_Alarm.txt"))
    assert alarm.status == "Alarm" and not alarm.ok
    assert alarm.error_codes == ("A4025021", "8C03A000", "8C084E00")
    assert alarm.error_info[0] == "ascend_monitor adda heart beat lost error" and len(alarm.error_info) == 3
    assert alarm.error_info[2].startswith("node type=adda, sensor type=Heartbeat Sensor")

    topo = npu_smi.parse_topo(sample("npu-smi_info_-t_topo_910B3_8npu.txt"))
    assert topo.devices == [f"NPU{i}" for i in range(8)]
    assert topo.link("NPU3", "NPU3") == "X" and topo.link("NPU0", "NPU7") == "HCCS"
    assert {topo.link(a, b) for a in topo.devices for b in topo.devices if a != b} == {"HCCS"}
    assert topo.cpu_affinity["NPU0"] == "144-167" and topo.cpu_affinity["NPU7"] == "48-71"


def test_error_samples():
    e = npu_smi.npu_smi_error(sample("npu-smi_error_-8005_dcmi_init.txt"))
    assert e.code == -8005 and "the NPU driver is not loaded" in e.describe() and "without the reboot" in e.describe()
    for name in ("npu-smi_error_-8020_device_used.txt", "npu-smi_error_-8020_device_used_ret4.txt"):
        assert npu_smi.npu_smi_error(sample(name)).code == -8020
    bad = npu_smi.npu_smi_error(sample("npu-smi_error_invalid_card_id.txt"))
    assert (bad.message, bad.parameter, bad.code) == ("Invalid card id.", "-i", None)
    assert npu_smi.npu_smi_error(sample("npu-smi_info_910B3_25.2.0_8npu_with_process.txt")) is None
    with pytest.raises(common.VendorToolFailure) as exc:
        npu_smi.parse_npu_smi_info(sample("npu-smi_error_-8020_device_used_ret4.txt"))
    assert exc.value.error.code == -8020 and "occupied" in str(exc.value)
    with pytest.raises(common.VendorToolFailure):
        npu_smi.parse_board(sample("npu-smi_error_invalid_card_id.txt"))


def test_hccn_samples():
    assert hccn_tool.parse_link(sample("hccn_tool_-link_-g_UP.txt")) == "UP"
    for state in ("Success", "Fault", "Init"):
        assert hccn_tool.parse_net_health(sample(f"hccn_tool_-net_health_-g_{state}.txt")) == state
    assert hccn_tool.parse_net_health(sample("hccn_tool_-net_health_-g_Socket_failed_fixture.txt")) == "Socket failed"
    assert hccn_tool.parse_ip(sample("hccn_tool_-ip_-g_mindcluster_fixture.txt")) == hccn_tool.IpConfig(
        "192.161.200.10", "255.255.255.0")
    assert hccn_tool.parse_ip(sample("hccn_tool_-ip_-g_mindxdl_doc.txt")).address == "10.xx.xx.10"
    assert hccn_tool.parse_ip("Get ipconf failed, because no ip was preset there!\n") is None
    assert hccn_tool.parse_netdetect("netdetect address: 11.12.165.1\n") == "11.12.165.1"
    assert hccn_tool.parse_netdetect("netdetect addr: 11.12.165.1\n") == "11.12.165.1"
    # Huawei's own lldp reader looks for the TLV title alone on a line, then the value.
    lldp = hccn_tool.parse_lldp("System Name TLV\n\tleaf-3\nPort ID TLV\n\tIfname: 400GE1/1/5:1\n"
                                "System Description TLV\n\tHuawei Versatile Routing Platform Software\n")
    assert (lldp.system_name, lldp.port_id) == ("leaf-3", "400GE1/1/5:1") and "Routing" in lldp.system_description
    assert hccn_tool.parse_lldp("") is None


def test_an_unreadable_row_is_named_and_the_other_chips_are_still_read():
    text = sample("npu-smi_info_910B3_25.2.0_8npu_with_process.txt").replace(
        "| 0           0    / 0          3407 / 65536         |",
        "| 0           0    / 0          3407 / sixty-four    |")
    info = npu_smi.parse_npu_smi_info(text)
    assert info.npu_ids() == [1, 2, 3, 4, 5, 6, 7] and len(info.chips) == 7
    [bad] = info.unreadable
    assert bad.lineno == 8 and "sixty-four" in bad.line and "HBM-Usage is not a number" in bad.reason
    assert info.processes[0].pid == 1601114
    with pytest.raises(common.VendorOutputError, match="no npu-smi info table") as exc:
        npu_smi.parse_npu_smi_info("bash: npu-smi: command not found\n")
    assert exc.value.lineno == 1
    with pytest.raises(common.VendorOutputError, match="no npu-smi info table"):
        npu_smi.parse_npu_smi_info("")
    with pytest.raises(common.VendorOutputError, match="link status"):
        hccn_tool.parse_link("link status: MAYBE\n")
    with pytest.raises(common.VendorOutputError, match="expected 'key : value'"):
        npu_smi.parse_health("\tHealth Status                  : OK\nsegmentation fault\n")
    with pytest.raises(common.VendorOutputError, match="summary"):
        hccn_tool.parse_ping("device 0 PING 10.0.0.2\n")


# ------------------------------------ simulator == real sample, line for line

TABLES = [("npu-smi_info_910B2_23.0.7_8npu_no_process.txt", "910b"),
          ("npu-smi_info_910B4_25.0.rc1.1_8npu_no_process.txt", "910b"),
          ("npu-smi_info_910B3_25.2.0_8npu_with_process.txt", "910b"),
          ("npu-smi_info_A3_Ascend910_24.1.rc3.7_8npu_16chip.txt", "a3"),
          ("npu-smi_info_310P3_300IDuo_25.0.rc1.b033_4card_Critical.txt", "310p")]


@pytest.mark.parametrize("name, chip", TABLES)
def test_simulated_info_table_equals_the_real_capture(host, name, chip):
    text = sample(name)
    info = npu_smi.parse_npu_smi_info(text)
    out = host(state_from_info(info, chip), driver=info.version).npu_smi("info")
    assert out.returncode == 0, out.stdout
    assert out.stdout.splitlines() == text.splitlines()
    assert npu_smi.parse_npu_smi_info(out.stdout) == info


def test_simulated_table_prefix_equals_a_capture_cut_before_the_process_section(host):
    text = sample("npu-smi_info_910B3_24.1.rc1.b030_8npu_no_proc_section.txt")
    info = npu_smi.parse_npu_smi_info(text)
    out = host(state_from_info(info, "910b"), driver="24.1.rc1.b030").npu_smi("info").stdout
    lines = text.splitlines()
    assert out.splitlines()[:len(lines)] == lines
    assert npu_smi.parse_npu_smi_info(out).chips == info.chips


def test_simulated_list_and_mapping_equal_the_captures(host):
    info = npu_smi.parse_npu_smi_info(sample("npu-smi_info_910B4_25.0.rc1.1_8npu_no_process.txt"))
    b4 = host(state_from_info(info, "910b"), driver="25.0.rc1.1")
    listed = b4.npu_smi("info", "-l").stdout
    assert listed.startswith("\tTotal Count")  # a TAB; the blog rendered it as 8 spaces
    assert listed.expandtabs(8) == sample("npu-smi_info_-l_910B4_8npu.txt")
    mapping = b4.npu_smi("info", "-m").stdout
    assert mapping.expandtabs(8) == sample("npu-smi_info_-m_910B4_8npu_with_mcu.txt")

    a910 = host(state_910a(), driver="23.0.5")
    assert a910.npu_smi("info", "-m").stdout == sample("npu-smi_info_-m_910A_8npu.txt")


def test_simulated_board_health_topo_equal_the_captures(host):
    a910 = host(state_910a(), driver="23.0.5", firmware="7.1.0.7.220")
    assert a910.npu_smi("info", "-t", "board", "-i", "0").stdout == sample(
        "npu-smi_info_-t_board_-i_0_910A_23.0.5.txt")
    assert a910.npu_smi("info", "-t", "board", "-i", "0", "-c", "0").stdout == sample(
        "npu-smi_info_-t_board_-i_0_-c_0_910A.txt")
    assert a910.npu_smi("info", "-t", "health", "-i", "0", "-c", "0").stdout.rstrip("\n") == sample(
        "npu-smi_info_-t_health_-i_0_-c_0_OK.txt")

    alarm = npu_smi.parse_health(sample("npu-smi_info_-t_health_-i_0_-c_0_Alarm.txt"))
    st = sim_state.with_changes(state_910a(), 0, health="Alarm", error_codes=list(alarm.error_codes),
                                error_info=list(alarm.error_info))
    sick = host(st, driver="23.0.7")
    assert sick.npu_smi("info", "-t", "health", "-i", "0", "-c", "0").stdout == sample(
        "npu-smi_info_-t_health_-i_0_-c_0_Alarm.txt")

    b3 = host(sim_state.default_state("910b"), driver="24.1.rc1.b030")
    assert b3.npu_smi("info", "-t", "topo").stdout == sample("npu-smi_info_-t_topo_910B3_8npu.txt")


def test_simulated_errors_equal_the_captures(host):
    st = sim_state.default_state("910b")
    gone = host(st, driver="25.5.2", nodes=False)  # no /dev/davinci_manager
    out = gone.npu_smi("info")
    assert (out.returncode, out.stdout) == (255, sample("npu-smi_error_-8005_dcmi_init.txt"))

    busy = sim_state.with_changes(st, 3, busy=-8020)
    old = host(busy, driver="23.0.3").npu_smi("info")
    assert (old.returncode, old.stdout) == (255, sample("npu-smi_error_-8020_device_used.txt"))
    new = host(busy, driver="24.1.rc3.7").npu_smi("info", "-l")
    assert new.stdout == sample("npu-smi_error_-8020_device_used_ret4.txt")

    without_card0 = dict(st, npus=st["npus"][1:])
    out = host(without_card0).npu_smi("info", "-i", "0", "-t", "board")
    assert (out.returncode, out.stdout) == (1, sample("npu-smi_error_invalid_card_id.txt"))


def test_simulated_hccn_outputs_equal_the_captures(host):
    st = sim_state.default_state("910b")
    st = sim_state.with_changes(st, 0, ip="192.161.200.10", netmask="255.255.255.0")
    for i, health in enumerate(["Success", "Fault", "Init"]):
        st = sim_state.with_changes(st, i + 1, net_health=health)
    st = sim_state.with_changes(st, 4, net_health="Socket failed")
    sim = host(st)
    assert sim.hccn(0, "-link", "-g").stdout == sample("hccn_tool_-link_-g_UP.txt")
    assert sim.hccn(0, "-ip", "-g").stdout == sample("hccn_tool_-ip_-g_mindcluster_fixture.txt")
    for i, name in enumerate(["Success", "Fault", "Init"]):
        assert sim.hccn(i + 1, "-net_health", "-g").stdout == sample(f"hccn_tool_-net_health_-g_{name}.txt")
    assert sim.hccn(4, "-net_health", "-g").stdout == sample("hccn_tool_-net_health_-g_Socket_failed_fixture.txt")


# ----------------------------------------- injected states parse to themselves

@pytest.mark.parametrize("chip", ["910b", "910", "a3", "310p"])
def test_every_field_of_a_faulty_state_reads_back(host, chip):
    st = sim_state.default_state(chip, npus=2 if chip == "310p" else None)
    last = len(sim_state.chips(st)) - 1
    st = sim_state.with_changes(st, 0, health="Warning", temp_c=71, aicore_pct=97, hugepages=[18047, 18047],
                                memory_mb=[1793, 44280], processes=[
                                    {"pid": 4242, "name": "a-very-long-training-process-name", "mem_mb": 30001}])
    st = sim_state.with_changes(st, 1, health="Alarm", error_codes=["A4025021"], error_info=["heart beat lost"])
    st = sim_state.with_changes(st, last, health="Critical", hbm_mb=[61234, 65536] if chip != "310p" else None)
    sim = host(st)
    out = sim.npu_smi("info")
    assert out.returncode == 0
    info = npu_smi.parse_npu_smi_info(out.stdout)
    assert info.npu_ids() == [card["npu"] for card in st["npus"]] and info.unreadable == []
    for die, row in zip(sim_state.chips(st), info.chips, strict=True):
        assert (row.health, row.temp_c, row.aicore_pct, row.bus_id, row.name) == (
            die["health"], die["temp_c"], die["aicore_pct"], die["bus_id"], st["name"])
        assert row.power_w == die["power_w"] and list(row.hugepages) == die["hugepages"]
        assert list(row.memory_mb) == die["memory_mb"]
        assert row.hbm_mb == (tuple(die["hbm_mb"]) if die["hbm_mb"] else None)
        assert row.device_id == (die["logic_id"] if chip == "310p" else None)
        assert row.phy_id == (die["phy_id"] if chip == "a3" else None)
    proc = info.processes[0]
    assert (proc.npu, proc.pid, proc.name, proc.mem_mb) == (0, 4242, "a-very-long-training-proc", 30001)

    # Per die, and per card (the worst die of the card, with every die's codes).
    die1 = sim_state.by_logic_id(st, 1)
    card_of_1 = next(c["npu"] for c in st["npus"] if die1 in c["chips"])
    health = npu_smi.parse_health(sim.npu_smi("info", "-t", "health", "-i", str(card_of_1),
                                              "-c", str(die1["chip"])).stdout)
    assert health == npu_smi.Health("Alarm", ("A4025021",), ("heart beat lost",))
    card0 = npu_smi.parse_health(sim.npu_smi("info", "-t", "health", "-i", str(st["npus"][0]["npu"])).stdout)
    assert card0.status == ("Alarm" if len(st["npus"][0]["chips"]) == 2 else "Warning")


def test_simulated_list_mapping_board_follow_the_state(host):
    st = sim_state.default_state("a3", npus=2)
    sim = host(st)
    assert npu_smi.parse_npu_smi_list(sim.npu_smi("info", "-l").stdout) == npu_smi.NpuList(2, {0: 2, 1: 2})
    mapping = npu_smi.parse_mapping(sim.npu_smi("info", "-m").stdout)
    assert [(m.npu, m.chip, m.logic_id) for m in mapping] == [(0, 0, 0), (0, 1, 1), (1, 0, 2), (1, 1, 3)]
    board = npu_smi.parse_board(sim.npu_smi("info", "-t", "board", "-i", "1").stdout)
    assert (board["PCI Device ID"], board["Chip Count"], board["Software Version"]) == ("0xD803", "2", "25.2.0")
    assert board["Firmware Version"] == "7.7.0.1.231" and board["PCIe Bus Info"] == st["npus"][1]["chips"][0]["bus_id"]
    chip = npu_smi.parse_board(sim.npu_smi("info", "-t", "board", "-i", "1", "-c", "1").stdout)
    assert chip["Chip ID"] == "1" and chip["PCIe Bus Info"] == st["npus"][1]["chips"][1]["bus_id"]
    topo = npu_smi.parse_topo(sim.npu_smi("info", "-t", "topo").stdout)
    assert topo.devices == ["NPU0", "NPU1", "NPU2", "NPU3"]
    assert (topo.link("NPU0", "NPU1"), topo.link("NPU0", "NPU3")) == ("SIO", "HCCS_SW")  # dies of a card, cards
    assert topo.legend["SIO"] == "Path traversing the SIO bus" and "NA" in topo.legend


def test_npu_smi_failures_parse_to_what_was_injected(host):
    st = sim_state.default_state("910b")
    sim = host(sim_state.with_changes(st, 5, busy=-8020))
    out = sim.npu_smi("info")
    assert out.returncode == 255 and npu_smi.npu_smi_error(out.stdout).code == -8020
    with pytest.raises(common.VendorToolFailure) as exc:
        npu_smi.parse_npu_smi_info(out.stdout)
    assert exc.value.error.code == -8020

    bare = host(st, driver=None)  # driver not installed
    assert npu_smi.npu_smi_error(bare.npu_smi("info").stdout).code == -8005

    healthy = host(st)
    bad_card = healthy.npu_smi("info", "-t", "health", "-i", "8", "-c", "0")
    assert bad_card.returncode == 1 and npu_smi.npu_smi_error(bad_card.stdout).parameter == "-i"
    bad_chip = healthy.npu_smi("info", "-t", "board", "-i", "0", "-c", "1")
    assert bad_chip.returncode == 1 and npu_smi.npu_smi_error(bad_chip.stdout).parameter == "-c"
    bad_type = healthy.npu_smi("info", "-t", "bogus", "-i", "0")
    assert bad_type.returncode == 1 and npu_smi.npu_smi_error(bad_type.stdout).parameter == "-t"
    assert healthy.npu_smi("watch").returncode == 1


def test_only_devices_passed_into_the_container_are_visible(host):
    st = sim_state.default_state("910b")
    sim = host(st)
    for n in range(2, 8):
        (sim.root / f"dev/davinci{n}").unlink()
    info = npu_smi.parse_npu_smi_info(sim.npu_smi("info").stdout)
    assert info.npu_ids() == [0, 1]
    assert npu_smi.npu_smi_error(sim.npu_smi("info", "-t", "board", "-i", "5").stdout).parameter == "-i"
    gone = sim.hccn(5, "-link", "-g")
    assert gone.returncode == 1 and hccn_tool.hccn_error(gone.stdout).message == "Get invalid device id."
    for n in range(2):
        (sim.root / f"dev/davinci{n}").unlink()
    assert npu_smi.npu_smi_error(sim.npu_smi("info").stdout).code == -8005


# ------------------------------------------------------------------ hccn_tool

def test_hccn_faults_parse_to_what_was_injected(host):
    st = sim_state.default_state("910b")
    st = sim_state.with_changes(st, 2, link="DOWN", net_health="Fault", ip="10.0.0.3", netmask="255.255.255.0")
    st = sim_state.with_changes(st, 3, net_health="Detect ip set")
    sim = host(st)
    assert hccn_tool.parse_link(sim.hccn(0, "-link", "-g").stdout) == "UP"
    assert hccn_tool.parse_link(sim.hccn(2, "-link", "-g").stdout) == "DOWN"
    assert hccn_tool.parse_net_health(sim.hccn(2, "-net_health", "-g").stdout) == "Fault"
    assert hccn_tool.parse_net_health(sim.hccn(3, "-net_health", "-g").stdout) == "Detect ip set"
    assert hccn_tool.parse_lldp(sim.hccn(2, "-lldp", "-g").stdout) is None  # no neighbour over a down link
    down = sim.hccn(2, "-ping", "-g", "address", "10.0.0.3")
    assert down.returncode == 255
    with pytest.raises(common.VendorToolFailure, match="Link status is down"):
        hccn_tool.parse_ping(down.stdout)
    unset = sim.hccn(0, "-ip", "-g")
    assert unset.returncode == 255 and hccn_tool.parse_ip(unset.stdout) is None

    no_driver = host(st, nodes=False)
    failed = no_driver.hccn(0, "-link", "-g")
    assert failed.returncode == 255
    with pytest.raises(common.VendorToolFailure, match="Command execute failed"):
        hccn_tool.parse_link(failed.stdout)


def test_hccn_set_commands_persist_into_the_state(host):
    sim = host(sim_state.default_state("910b", node_index=1))
    out = sim.hccn(0, "-ip", "-s", "address", "192.168.1.8", "netmask", "255.255.255.0")
    assert (out.returncode, out.stdout) == (0, "")
    assert sim_state.by_logic_id(sim.state(), 0)["ip"] == "192.168.1.8"
    assert hccn_tool.parse_ip(sim.hccn(0, "-ip", "-g").stdout) == hccn_tool.IpConfig("192.168.1.8", "255.255.255.0")

    clash = sim.hccn(1, "-ip", "-s", "address", "192.168.1.8", "netmask", "255.255.255.0")
    assert clash.returncode == 1 and "conflicted" in hccn_tool.hccn_error(clash.stdout).message
    bad = sim.hccn(1, "-ip", "-s", "address", "192.168.1.300", "netmask", "255.255.255.0")
    assert bad.returncode == 1 and hccn_tool.hccn_error(bad.stdout).message == "The ip address you configured is invalid!"
    assert sim.hccn(1, "-ip", "-s", "address", "192.168.1.9").returncode == 1  # netmask missing

    assert hccn_tool.parse_netdetect(sim.hccn(0, "-netdetect", "-g").stdout) is None
    assert sim.hccn(0, "-netdetect", "-s", "address", "192.168.1.1").stdout == ""
    assert hccn_tool.parse_netdetect(sim.hccn(0, "-netdetect", "-g").stdout) == "192.168.1.1"
    assert sim_state.by_logic_id(sim.state(), 0)["netdetect"] == "192.168.1.1"

    lldp = hccn_tool.parse_lldp(sim.hccn(3, "-lldp", "-g").stdout)
    assert (lldp.system_name, lldp.port_id, lldp.chassis_id) == ("sim-leaf-0", "200GE1/0/12", "sim-leaf-0")
    assert "Routing" in lldp.system_description


def test_hccn_ping_answers_from_the_state(host):
    st = sim_state.default_state("910b")
    for n in range(3):
        st = sim_state.with_changes(st, n, ip=f"10.0.0.{n + 1}", netmask="255.255.255.0")
    st = sim_state.with_changes(st, 2, link="DOWN")
    st["peers"] = ["10.0.1.1"]
    sim = host(st)
    ok = hccn_tool.parse_ping(sim.hccn(0, "-ping", "-g", "address", "10.0.0.2").stdout)
    assert ok == hccn_tool.PingResult("10.0.0.2", 3, 3, 0.0) and ok.ok
    assert hccn_tool.parse_ping(sim.hccn(1, "-ping", "-g", "address", "10.0.1.1", "pkt", "5").stdout).received == 5
    for target in ("10.0.0.3", "10.9.9.9"):  # a down peer, an unknown address
        lost = sim.hccn(0, "-ping", "-g", "address", target)
        assert lost.returncode == 0 and "100.00% packet loss" in lost.stdout
        assert not hccn_tool.parse_ping(lost.stdout).ok and hccn_tool.parse_ping(lost.stdout).received == 0
    assert "no ip was preset" in sim.hccn(4, "-ping", "-g", "address", "10.0.0.2").stdout


def test_hccn_rejects_bad_command_lines(host):
    sim = host(sim_state.default_state("910b"))
    assert sim.hccn(0, "-bogus", "-g").returncode == 1
    assert sim.hccn("x", "-link", "-g").stdout == "Get invalid device id.\n"
    assert sim.hccn(0, "-link", "-s", "down").returncode == 1
    assert "invalid major cmd type" in sim.run("hccn_tool.py", "-h").stdout


# ---------------------------------------------------------- the tools as files

@pytest.mark.parametrize("tool", ["npu_smi.py", "hccn_tool.py", "hccl_test.py", "mpirun.py"])
def test_tools_are_standalone_executables(tool, host):
    path = TOOLS / tool
    assert path.read_text().startswith("#!/usr/bin/env python3\n") and os.access(path, os.X_OK)
    imported = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module.split(".")[0])
    assert imported <= set(sys.stdlib_module_names)
    sim = host(sim_state.default_state("910b"))
    env = dict(os.environ, NPU_SIM_ROOT=str(sim.root), NPU_SIM_STATE=str(sim.state_path))
    args = {"npu_smi.py": ["info", "-l"], "hccn_tool.py": ["-i", "0", "-link", "-g"], "hccl_test.py": ["-b", "1K", "-e", "1K"],
            "mpirun.py": ["-n", "1", "true"]}[tool]
    out = subprocess.run([str(path), *args], env=env, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and (out.stdout or tool == "mpirun.py")


# ------------------------------------ sub-commands added for issue #15

HELDOUT = SAMPLES / "heldout"


def blog(text):
    """Published copies of key/value output show npu-smi's leading TAB as 8 spaces."""
    return text.expandtabs(8)


def test_simulated_sub_commands_equal_the_published_captures(host):
    b3 = sim_state.default_state("910b")
    b3 = sim_state.with_changes(b3, 0, temp_c=39, power_w=103.5, hbm_mb=[2800, 65536])
    new = host(b3, driver="25.5.1", firmware="7.8.0.6.201")
    assert new.npu_smi("info", "-t", "board", "-i", "0").stdout.rstrip("\n") == (
        HELDOUT / "npu-smi_info_-t_board_-i_0_910B_25.5.1_telegraf.txt").read_text().rstrip("\n")
    assert blog(new.npu_smi("info", "-t", "temp", "-i", "0").stdout) == (
        HELDOUT / "npu-smi_info_-t_temp_-i_0_910B_telegraf.txt").read_text()
    assert blog(new.npu_smi("info", "-t", "power", "-i", "0").stdout) == (
        HELDOUT / "npu-smi_info_-t_power_-i_0_910B_telegraf.txt").read_text()
    old = host(b3, driver="23.0.rc2")  # usages before 25.5 print no NPU Utilization / Aicube lines
    assert blog(old.npu_smi("info", "-t", "usages", "-i", "0").stdout) == (
        HELDOUT / "npu-smi_info_-t_usages_910B_23.0.rc2.txt").read_text()
    b4 = sim_state.with_changes(sim_state.default_state("910b"), 1, hbm_mb=[2600, 32768], temp_c=35)
    assert blog(host(b4).npu_smi("info", "-t", "memory", "-i", "1").stdout) == (
        HELDOUT / "npu-smi_info_-t_memory_-i_1_blog.txt").read_text()
    assert blog(host(b4).npu_smi("info", "-t", "ecc", "-i", "1").stdout) == (
        HELDOUT / "npu-smi_info_-t_ecc_-i_1_mindcluster_doc.txt").read_text()
    # 23.x Legend: no blank line after "Legend:", no NA line (the capture's header has lost its TAB)
    topo = old.npu_smi("info", "-t", "topo").stdout.splitlines()
    capture = (HELDOUT / "npu-smi_info_-t_topo_910B1_23.0.rc2_old_legend.txt").read_text().splitlines()
    assert topo[topo.index("Legend:"):] == capture[capture.index("Legend:"):]


def test_simulated_sub_commands_read_back_what_was_injected(host):
    st = sim_state.default_state("a3", npus=2)
    st = sim_state.with_changes(st, 3, temp_c=91, hbm_temp_c=88, ecc={"double_bit": 2, "single_bit_isolated_pages": 1})
    sim = host(st)
    temp = npu_smi.parse_chip_report(sim.npu_smi("info", "-t", "temp", "-i", "1", "-c", "1").stdout)
    assert temp.number(npu_smi.TEMPERATURE_KEYS, 1) == 91 and temp.mcu == {}        # A3: no MCU block
    both = npu_smi.parse_chip_report(sim.npu_smi("info", "-t", "power", "-i", "1").stdout)
    assert (both.chip_count, both.number(npu_smi.POWER_KEYS, 0), both.number(npu_smi.POWER_KEYS, 1)) == (2, 162.0, None)
    memory = npu_smi.parse_chip_report(sim.npu_smi("info", "-t", "memory", "-i", "1", "-c", "1").stdout)
    assert memory.number(npu_smi.HBM_TEMPERATURE_KEYS, 1) == 88
    ecc = npu_smi.parse_chip_report(sim.npu_smi("info", "-t", "ecc", "-i", "1", "-c", "1").stdout)
    assert npu_smi.ecc_counts(ecc, "HBM", 1) == npu_smi.EccCounts(0, 2, 0, 0, 1, 0)
    common = npu_smi.parse_chip_report(sim.npu_smi("info", "-t", "common", "-i", "0").stdout)
    assert common.number(npu_smi.TEMPERATURE_KEYS, 1) == st["npus"][0]["chips"][1]["temp_c"]
    usages = npu_smi.parse_chip_report(sim.npu_smi("info", "-t", "usages", "-i", "0", "-c", "0").stdout)
    assert usages.values(0)["HBM Capacity(MB)"] == "65536"


def test_simulated_dcmi_failure_of_a_container_without_its_mounts(host):
    sim = host(sim_state.default_state("910b"))
    (sim.root / "usr/local/Ascend/driver/lib64").mkdir(parents=True)   # driver libraries, no /usr/local/dcmi
    out = sim.npu_smi("info")
    assert out.returncode == 255 and npu_smi.npu_smi_error(out.stdout).codes == (-8020, -9005)
    assert out.stdout.splitlines()[1:] == (HELDOUT / "npu-smi_error_-8020_-9005_container_easyr1.txt").read_text().splitlines()
    (sim.root / "usr/local/dcmi").mkdir(parents=True)
    (sim.root / "etc").mkdir()
    (sim.root / "etc/ascend_install.info").write_text("Driver_Install_Path_Param=/usr/local/Ascend\n")
    assert sim.npu_smi("info").returncode == 0


def test_simulated_hccn_port_queries(host):
    st = sim_state.default_state("910b")
    st = sim_state.with_changes(st, 2, optical={"present": False}, link_events=[["t1", "LINK UP"], ["t0", "LINK DOWN"]],
                                stat={"mac_rx_fcs_err_pkt_num": 5}, stat_growth={"mac_rx_fcs_err_pkt_num": 3},
                                ip="10.0.2.5", netmask="255.255.255.0")
    sim = host(st)
    healthy = hccn_tool.parse_optical(sim.hccn(0, "-optical", "-g").stdout)
    assert healthy.present and len(healthy.rx_power_mw) == 4 and healthy.rx_power_low_mw == 0.1445
    assert not hccn_tool.parse_optical(sim.hccn(2, "-optical", "-g").stdout).present
    stat = hccn_tool.parse_link_stat(sim.hccn(2, "-link_stat", "-g").stdout)
    assert (stat.device, stat.up_count, stat.down_count) == (2, 1, 1)
    first = hccn_tool.parse_stat(sim.hccn(2, "-stat", "-g").stdout)["mac_rx_fcs_err_pkt_num"]
    assert hccn_tool.parse_stat(sim.hccn(2, "-stat", "-g").stdout)["mac_rx_fcs_err_pkt_num"] == first + 3 == 11
    assert hccn_tool.parse_gateway(sim.hccn(2, "-gateway", "-g").stdout) == hccn_tool.Gateway(None, "eth2")
    assert sim.hccn(2, "-gateway", "-s", "gateway", "10.0.2.1").stdout == ""
    routes = hccn_tool.parse_route(sim.hccn(2, "-route", "-g").stdout)
    assert [(r.destination, r.gateway, r.iface) for r in routes] == [
        ("default", "10.0.2.1", "eth2"), ("10.0.2.0", None, "eth2"), ("127.0.0.1", None, "lo")]
    lldp = hccn_tool.parse_lldp(sim.hccn(0, "-lldp", "-g").stdout)
    assert lldp.system_description.splitlines()[-1] == "Huawei switch" and "Maximum Frame Size TLV" in lldp.tlvs
    # the route table's layout is the captured one
    capture = (HELDOUT / "hccn_tool_-route_-g_blog.txt").read_text().splitlines()
    assert sim.hccn(2, "-route", "-g").stdout.splitlines()[:2] == capture[:2]


def test_a_fault_that_comes_with_new_firmware_shows_only_once_that_firmware_runs(host):
    """tests/sim/faults.firmware_fails_after_boot: flashed is not running; the reboot makes it run."""
    state = sim_state.with_changes(sim_state.default_state("910b"), 2, with_firmware={
        "7.8.0.2.212": {"health": "Alarm", "error_codes": ["80E01801"]}})
    sim = host(state, driver="26.1.0", firmware="7.7.0.1.231")
    assert [c.health for c in npu_smi.parse_npu_smi_info(sim.npu_smi("info").stdout).chips] == ["OK"] * 8
    (sim.state_path.parent / "firmware.pending").write_text("7.8.0.2.212\n")   # flashed, not yet booted
    assert "Alarm" not in sim.npu_smi("info").stdout
    (sim.state_path.parent / "firmware.pending").rename(sim.state_path.parent / "firmware.running")
    health = [c.health for c in npu_smi.parse_npu_smi_info(sim.npu_smi("info").stdout).chips]
    assert health == ["OK", "OK", "Alarm", "OK", "OK", "OK", "OK", "OK"]
    assert "80E01801" in sim.npu_smi("info", "-t", "health", "-i", "2").stdout


def test_optical_power_without_lane_numbers_is_read_and_judged():
    """MindCluster's fault-diag guide prints the powers without lane numbers; its Tx power is above the
    module's high threshold, which must not pass as 'no readings'."""
    optical = hccn_tool.parse_optical(sample("hccn_tool_-optical_-g_no_lane_numbers_mindcluster_doc.txt"))
    assert (optical.tx_power_mw, optical.rx_power_mw) == ((4.4035,), (1.0189,))
    assert (optical.tx_power_low_mw, optical.tx_power_high_mw) == (0.2818, 3.5481)
    port = {"port": 0, "optical": dict(vars(optical), present=True)}
    assert hardware.optical_findings([port]) == [
        hardware.Finding("fail", "port 0", "Tx power lane 0 4.4035 mW above the module's high threshold 3.5481 mW")]
    # NA is no reading (the tool prints it so for a module it cannot read)
    optical = hccn_tool.parse_optical("optical info:\npresent              : present\nTx Power             : NA\n")
    assert optical.tx_power_mw == ()


def test_ip_of_a_port_that_prints_nothing_is_no_address():
    """MindCluster's collection fixture: `hccn_tool -i 2 -ip -g` answered with nothing."""
    collected = sample("mindcluster_faultdiag_fixture_npu_info_before.txt")
    answer = collected.split("hccn_tool -i 2 -ip -g\n", 1)[1].split("/usr/local/bin/npu-smi", 1)[0]
    assert answer == "\n\n" and hccn_tool.parse_ip(answer) is None
    assert hccn_tool.parse_ip("") is None


def test_health_error_information_wrapped_in_a_copy_keeps_the_codes():
    """The published Alarm capture as a terminal 80 columns wide copies it: its long event lines
    break where the width ends, the pieces without the ': ' the tool prints. The codes above
    them are what the check explains; a line around them must not cost them."""
    published = sample("npu-smi_info_-t_health_-i_0_-c_0_Alarm.txt")
    wrapped = "".join(line[:80] + "\n" + (line[80:] + "\n" if line[80:] else "")
                      for line in published.expandtabs(8).splitlines())
    assert any(not line.strip().startswith((":", "Health", "Error")) for line in wrapped.splitlines() if line.strip())
    health = npu_smi.parse_health(wrapped)
    assert health.status == "Alarm" and health.error_codes == ("A4025021", "8C03A000", "8C084E00")
    # every piece of the message is kept, in order (where the terminal cut a word is not known)
    assert "".join(health.error_info) == "".join(npu_smi.parse_health(published).error_info)
    # a line wrapped inside a message that holds ': ' is still the message
    text = "\tHealth Status : Alarm\n\tError Code : 80E01801\n\tError Information : node type=x\nevent: lost\n"
    assert npu_smi.parse_health(text) == npu_smi.Health("Alarm", ("80E01801",), ("node type=x", "event: lost"))


def test_tls_switch_lines_and_certificates():
    """The switch line of MindCluster's guide and the whole answer of the Ascend 950 HCCN Tool guide
    (its switch line, then the certificate blocks)."""
    switch = sample("hccn_tool_-tls_-g_switch_lines_mindcluster_doc.txt")
    assert hccn_tool.parse_tls(switch) == hccn_tool.Tls(False, {})
    assert hccn_tool.parse_tls(switch.replace("switch[0]", "switch[1]")) == hccn_tool.Tls(True, {})
    whole = sample("hccn_tool_-tls_-g_certificates_950_doc.txt")
    assert hccn_tool.parse_tls(whole) == hccn_tool.Tls(False, {"pub cert": 0, "ca1 cert": 0, "ca2 cert": 0, "crl": 1})
    # the HCCL guide: "no certificate found" means TLS is off
    assert hccn_tool.parse_tls("no certificate found\n") == hccn_tool.Tls(False, {})
    with pytest.raises(common.VendorOutputError, match="no 'tls switch\\[N\\]' line"):
        hccn_tool.parse_tls(whole.split("\n", 1)[1])
    with pytest.raises(common.VendorOutputError, match="not a line of hccn_tool -tls -g"):
        hccn_tool.parse_tls(switch + "subject[/CN=x]\n")      # a certificate field outside a certificate


def test_the_simulated_tls_answers_in_the_vendors_layout(host):
    st = sim_state.with_changes(sim_state.default_state("910b", npus=2), 1, tls=1, tls_cert_expiry=2)
    sim = host(st)
    assert hccn_tool.parse_tls(sim.hccn(0, "-tls", "-g").stdout) == hccn_tool.Tls(False, {"pub cert": 0, "ca1 cert": 0})
    assert hccn_tool.parse_tls(sim.hccn(1, "-tls", "-g").stdout) == hccn_tool.Tls(True, {"pub cert": 2, "ca1 cert": 2})


def test_hccn_conf_as_published():
    """A 910B1 node's /etc/hccn.conf (arthurchiao.art; ports 1-6 elided by the publisher)."""
    conf = hccn_tool.parse_hccn_conf(sample("hccn.conf_910B1_arthurchiao_elided.txt"))
    assert sorted(conf) == [0, 7]
    assert conf[0] == {"address": "29.1.137.205", "netmask": "255.255.0.0", "netdetect": "29.1.0.1",
                       "gateway": "29.1.0.1", "send_arp_status": "1"}
    assert conf[7]["address"] == "29.1.170.143"
    # the role's own header comment is no setting; anything else is named
    assert hccn_tool.parse_hccn_conf("# Ansible managed\naddress_2=10.0.0.5\n") == {2: {"address": "10.0.0.5"}}
    with pytest.raises(common.VendorOutputError, match="expected '<key>_<port>=<value>' \\(line 2: 'address=1'\\)"):
        hccn_tool.parse_hccn_conf("address_0=1\naddress=1\n")


def test_published_tables_with_masked_names_short_rows_and_elided_rows_are_read_whole():
    """MindCluster's fault-diag guide masks the chip name as 'xxx' (its rows then one character short,
    the banner shorter still) and elides rows with '...'; a blog elides NPUs 2-6. Every chip shown is
    read, and no row of them is reported unreadable."""
    masked = npu_smi.parse_npu_smi_info(sample("npu-smi_info_23.0.rc2.3_masked_names_mindcluster_doc.txt"))
    assert (masked.npu_smi_version, masked.version) == ("23.0.rc3", "23.0.rc2.3")
    assert masked.npu_ids() == list(range(8)) and {c.name for c in masked.chips} == {"xxx"}
    assert masked.chip(0).hugepages == (1123, 1123) and masked.chip(0).hbm_mb == (30710, 32768)
    assert masked.chip(1).bus_id == "0000:81:00.0" and masked.unread_rows() == []
    elided = npu_smi.parse_npu_smi_info(sample("npu-smi_info_24.1.rc1_elided_rows_mindcluster_doc.txt"))
    assert elided.npu_ids() == [7] and elided.chip(7).memory_mb == (2505, 15567) and elided.unread_rows() == []
    assert elided.has_process_section and elided.processes == []
    blog = npu_smi.parse_npu_smi_info(sample("npu-smi_info_910B1_23.0.rc2_elided_rows_arthurchiao.txt"))
    assert blog.npu_ids() == [0, 1, 7] and blog.chip(7).hbm_mb == (4174, 65536) and blog.unread_rows() == []
    assert [u.reason for u in blog.unreadable] == ["elided in the published copy"]


def test_the_validation_readme_counts_the_published_outputs_the_tests_hold():
    held = list(SAMPLES.rglob("*.txt"))
    assert f"The tests read {len(held)} vendor outputs" in (ROOT / "validation/README.md").read_text()


def test_port_speed_and_fec_mode_as_the_tools_print_them():
    """-speed -g: MindCluster's example (100GE) and the source's 'Unknown!'; -fec -g: the 910A modes
    (MindCluster's doc and fixture) and the 910B/910C tool's line that no mode is reported."""
    assert hccn_tool.parse_speed(sample("hccn_tool_-speed_-g_mindcluster.txt")) == 100000
    assert hccn_tool.parse_speed(sample("hccn_tool_-speed_-g_unknown_source.txt")) is None
    assert hccn_tool.parse_speed("Speed: 200000 Mb/s\n") == 200000
    assert hccn_tool.parse_fec(sample("hccn_tool_-fec_-g.txt")) == "rs"
    assert hccn_tool.parse_fec(sample("hccn_tool_-fec_-g_no_FEC_910A_fixture.txt")) == "no"
    assert hccn_tool.parse_fec("fec mode: auto FEC mode\n") == "auto"
    assert hccn_tool.parse_fec(sample("hccn_tool_-fec_-g_910B_not_switchable_source.txt")) is None
    for parser, text in ((hccn_tool.parse_speed, "Speed: fast\n"),
                         (hccn_tool.parse_speed, "Speed: 200000 Mb/s\nDuplex: Full\n"),
                         (hccn_tool.parse_fec, "fec mode: base-r FEC mode\n"), (hccn_tool.parse_fec, "")):
        with pytest.raises(common.VendorOutputError):
            parser(text)
    with pytest.raises(common.VendorToolFailure, match="Device ID is out of the valid range"):
        hccn_tool.parse_speed("Device ID is out of the valid range.\nCmd execute failed!\n")


def test_mcu_version_as_npu_smi_upgrade_prints_it():
    """A 910B4 node's factory MCU (a blog), and what a device without the component answers (the manual)."""
    assert npu_smi.parse_mcu_version(sample("npu-smi_upgrade_-b_mcu_-i_0_910B4_factory_blog.txt")) == "23.3.13"
    assert npu_smi.parse_mcu_version(sample("npu-smi_upgrade_-b_bootloader_not_supported_doc.txt")) is None
    for text in ("", "\tVersion                        : \n", "\tVersion : 1\n\tVersion : 2\n", "garbled\n"):
        with pytest.raises(common.VendorOutputError):
            npu_smi.parse_mcu_version(text)
    with pytest.raises(common.VendorToolFailure):
        npu_smi.parse_mcu_version(sample("npu-smi_error_-8005_dcmi_init.txt"))


def test_hccs_links_as_npu_smi_prints_them():
    """A third-party collector's copy (three ports, counters only), the driver's print code rendered for a
    healthy 910B chip, and the manual's answer of a chip without HCCS."""
    short = npu_smi.parse_hccs(sample("npu-smi_info_-t_hccs_910B_3_ports_parser_test.txt"))
    assert short.healthy is True and short.first_error_lane is None
    assert short.ports["rx packets"] == ("2091328898", "760745014", "4126456722")
    assert short.ports["error count"] == ("0", "0", "0") and "lane mode" not in short.ports
    full = npu_smi.parse_hccs(sample("npu-smi_info_-t_hccs_910B_7_ports_source.txt"))
    assert full.ports["lane mode"] == ("4",) * 7 and full.ports["link lane list"] == ("1111",) * 7
    assert full.ports["link speed"] == ("224",) * 7 and full.first_error_lane is None
    assert npu_smi.parse_hccs(sample("npu-smi_info_-t_hccs_not_supported_doc.txt")) is None
    nok = "\thccs health status             : NOK\n\thccs lane mode                 : [4  0]\n" \
          "\thccs first error lane          : 2\n"
    assert npu_smi.parse_hccs(nok) == npu_smi.Hccs(False, {"lane mode": ("4", "0")}, "2")
    for text in ("\thccs health status : MAYBE\n\thccs lane mode : [4]\n", "\thccs lane mode : [4 4]\n"
                 "\thccs error count : [0]\n", "\thccs health status : OK\n", "\tlane mode : [4]\n"):
        with pytest.raises(common.VendorOutputError):
            npu_smi.parse_hccs(text)
    with pytest.raises(common.VendorToolFailure, match="Failed to query"):
        npu_smi.parse_hccs('Failed to query "hccs" result.\n')


def test_the_drivers_kernel_log_lines_and_the_rest_of_the_kernels():
    """The driver's lines of published logs: syslog form with the older [ERROR] first (MindCluster's
    heartbeat fixture), raw dmesg without a level (a blog's Atlas 800I, after a stack trace), a process
    teardown (Ascend/samples issue 16); the newer order puts the level after the module (driver dmc_log.h)."""
    [lost] = kernel_log.parse_kernel_log(sample("kernel_log_heartbeat_lost_mindcluster_fixture.txt"))
    assert lost.seconds == "1197.584409" and lost.error
    assert lost.tags == ("ERROR", "drv_soft_fault", "heart_beat_judge 318")
    assert lost.message.startswith("Heartbeat lost! (device=1; old_count=1104;")
    abnormal = kernel_log.parse_kernel_log(sample("kernel_log_device_abnormal_atlas800i_blog.txt"))
    assert [(k.seconds, k.tags[0], k.error) for k in abnormal] == [("456.343559", "drv_pcie", False),
                                                                  ("456.365571", "devdrv", False)]
    assert abnormal[0].message == "Device is abnormal. (dev_id=5; msg_type=3; common_type=5)"
    teardown = kernel_log.parse_kernel_log(sample("kernel_log_process_teardown_samples_issue16.txt"))
    assert len(teardown) == 8 and not any(k.error for k in teardown)
    assert teardown[2].text() == ("[ascend] [davinci_intf] [drv_davinci_intf_sub_call_release 348] "
                                  "Release module success. (module_name=\"SVM\"; pid=42394)")
    [newer] = kernel_log.parse_kernel_log("[   12.000001] [ascend] [devmm] [ERROR] [devmm_pin_user_pages_fast 124] "
                                          "<VLLM::Worker_TP:670605,670605> Get_user_pages_fast fail.\n")
    assert newer.error and newer.tags[0] == "devmm" and newer.message == "Get_user_pages_fast fail."
    assert kernel_log.parse_kernel_log("[    0.000000] Linux version 6.1.0\nplain text\n") == []
    # no timestamp (a journal line), no process tag: the message keeps what looks like one later on
    [bare] = kernel_log.parse_kernel_log("kernel: [ascend] [tsdrv] [ERROR] hdc connect down, devid(3) <not a tag>\n")
    assert (bare.seconds, bare.tags) == (None, ("tsdrv", "ERROR"))
    assert bare.message == "hdc connect down, devid(3) <not a tag>"


def test_super_pod_info_as_the_guide_prints_it():
    """hicann/shmem's super-pod guide (alignment collapsed by its author), the driver's aligned form
    without SDID (950), and what goes wrong."""
    assert npu_smi.parse_spod_info(sample("npu-smi_info_-t_spod-info_A3_shmem_doc.txt")) == \
        npu_smi.SuperPod(0, 384, 4, 16777216)
    aligned = "\tSuper Pod Size                 : 8\n\tSuper Pod ID                   : 3\n"
    assert npu_smi.parse_spod_info(aligned) == npu_smi.SuperPod(3, 8, None, None)
    assert npu_smi.parse_spod_info("This device does not support querying spod-info.\n") is None
    for text in ("Super Pod ID : 0\n", "Super Pod Size : many\nSuper Pod ID : 0\n", "Rack : 1\nSuper Pod ID : 0\n"):
        with pytest.raises(common.VendorOutputError):
            npu_smi.parse_spod_info(text)

"""The hardware checks, called directly: facts collected from the simulated
tools through a probe that runs them on this machine, then changed to each
failure; every failure must name its cause and fix."""
import copy
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

import warnings

from tests.sim import state as sim_state
from tests.unit.check_fakes import sample
from validation.node import facts as facts_mod, hardware
from validation.node.results import PROP_DATA, PROP_FAILURE, PROP_WARNING

with warnings.catch_warnings():  # the level marks are registered by the suite's own conftest
    warnings.simplefilter("ignore", pytest.PytestUnknownMarkWarning)
    from validation.node.suite import test_hardware as hw, test_quick, test_standard
    from validation.node.suite.conftest import CheckFailed, Checker

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ROOT / "tests/sim/tools"
HCCN = "/usr/local/Ascend/driver/tools/hccn_tool"
TOOLKIT = "/usr/local/Ascend/cann"


class SimProbe(facts_mod.Probe):
    """A simulated host under a folder: its files, and the vendor tools run from tests/sim/tools."""

    def __init__(self, folder: Path, state: dict, driver="25.2.0", hccl_test=False):
        folder.mkdir(parents=True, exist_ok=True)
        self.root, self.state_path, self.bin = folder / "root", folder / "state.json", folder / "bin"
        sim_state.save(state, self.state_path)
        for kind, version in (("driver", driver), ("firmware", "7.7.0.1.231")):
            info = self.root / f"usr/local/Ascend/{kind}/version.info"
            info.parent.mkdir(parents=True, exist_ok=True)
            info.write_text(f"Version={version}\npackage_version={driver}\n")
        (self.root / "dev").mkdir(parents=True, exist_ok=True)
        (self.root / "dev/davinci_manager").touch()
        for die in sim_state.chips(state):
            (self.root / f"dev/davinci{die['phy_id']}").touch()
        self.bin.mkdir(exist_ok=True)
        self._wrap("npu-smi", "npu_smi.py")
        self._wrap("hccn_tool", "hccn_tool.py")
        self._wrap("dmesg", "../node/dmesg")   # the node's kernel log (the node image's /usr/local/bin/dmesg)
        if hccl_test:
            self._wrap("mpirun", "mpirun.py")
            test = self.root / TOOLKIT.lstrip("/") / "tools/hccl_test/bin/all_reduce_test"
            test.parent.mkdir(parents=True)
            test.write_text(f"#!/bin/sh\nexec {sys.executable} {TOOLS / 'hccl_test.py'} \"$@\"\n")
            test.chmod(0o755)

    def _wrap(self, name, tool):
        path = self.bin / name
        path.write_text(f"#!/bin/sh\nexec {sys.executable} {TOOLS / tool} \"$@\"\n")
        path.chmod(0o755)

    def run(self, command):
        command = command.replace(HCCN, str(self.bin / "hccn_tool")).replace(TOOLKIT, str(self.root) + TOOLKIT)
        env = dict(os.environ, NPU_SIM_ROOT=str(self.root), NPU_SIM_STATE=str(self.state_path),
                   PATH=f"{self.bin}:{os.environ['PATH']}")
        p = subprocess.run(["bash", "-c", command], capture_output=True, text=True, env=env, timeout=120)
        return p.returncode, p.stdout, p.stderr

    def read(self, path):
        try:
            return (self.root / path.lstrip("/")).read_text()
        except OSError:
            return None

    def glob(self, pattern):
        return []

    def change(self, logic_id, **fields):
        sim_state.save(sim_state.with_changes(sim_state.load(self.state_path), logic_id, **fields), self.state_path)


def make_check():
    return Checker(SimpleNamespace(node=SimpleNamespace(user_properties=[])))


def outcome(test, *args):
    """("passed" | "failed" | "warning" | "skipped", failure or warning or reason, data)."""
    check = make_check()
    try:
        test(*args, check)
    except CheckFailed:
        pass
    except pytest.skip.Exception as e:
        return "skipped", str(e), None
    props = dict(check.request.node.user_properties)
    data = json.loads(props[PROP_DATA]) if PROP_DATA in props else None
    if PROP_FAILURE in props:
        return "failed", json.loads(props[PROP_FAILURE]), data
    if PROP_WARNING in props:
        return "warning", props[PROP_WARNING], data
    return "passed", None, data


STACK_910B = {"chip": "910b", "paths": {"hccn_tool": HCCN, "toolkit_latest": TOOLKIT, "hccn_conf": "/etc/hccn.conf"}}
OPTIONS = {"nproc": None, "timeout": 60, "busbw_floor": 0.0}


@pytest.fixture(scope="module")
def healthy(tmp_path_factory):
    probe = SimProbe(tmp_path_factory.mktemp("healthy"), sim_state.default_state("910b"))
    return probe, facts_mod.collect(probe)


def test_facts_report_everything_the_checks_read(healthy):
    _, facts = healthy
    d = facts["devices"][3]
    assert d["health_detail"] == {"status": "OK", "error_codes": [], "error_info": []}
    assert d["sensors"] == {"temp_c": 39.0, "power_w": 94.8, "hbm_temp_c": 39.0}
    assert d["ecc"]["HBM"] == {"single_bit": 0, "double_bit": 0, "single_bit_total": 0, "double_bit_total": 0,
                               "single_bit_isolated_pages": 0, "double_bit_isolated_pages": 0}
    assert facts["topology"]["links"]["NPU0"]["NPU7"] == "HCCS" and facts["topology"]["cpu_affinity"]["NPU7"] == "48-71"
    port = facts["network"][5]
    assert port["port"] == 5 and port["link"] == "UP" and port["optical"]["present"]
    assert port["link_stat"]["up_count"] == 1 and port["stat"]["mac_rx_fcs_err_pkt_num"] == 0
    assert port["gateway"] == {"address": None, "iface": "eth5"} and port["ip"] is None
    assert port["routes"] == [{"destination": "127.0.0.1", "gateway": None, "genmask": "255.255.255.255",
                               "flags": "UH", "iface": "lo"}]
    json.dumps(facts)  # what `npuenv facts` prints


def test_a_healthy_node_passes_every_hardware_check(healthy):
    probe, facts = healthy
    assert outcome(hw.test_npu_temperature, facts)[0] == "passed"
    assert outcome(hw.test_hbm_ecc, facts)[0] == "passed"
    assert outcome(hw.test_npu_topology, facts, STACK_910B)[0] == "passed"
    assert outcome(hw.test_optical_modules, facts, STACK_910B)[0] == "passed"
    assert outcome(hw.test_link_flaps, facts, STACK_910B)[0] == "passed"
    status, reason, _ = outcome(hw.test_npu_routes, facts, STACK_910B)
    assert status == "skipped" and "no NPU port has a device IP" in reason
    assert outcome(hw.test_optical_modules, facts, {**STACK_910B, "chip": "310p"})[0] == "skipped"


def test_overheating_fails_and_warm_warns(healthy):
    _, facts = healthy
    hot = copy.deepcopy(facts)
    hot["devices"][2]["sensors"]["temp_c"] = 97.0
    hot["devices"][5]["sensors"]["hbm_temp_c"] = 88.0
    status, failure, data = outcome(hw.test_npu_temperature, hot)
    assert status == "failed" and failure["found"] == "NPU 2 chip 0: NPU 97 C (>= 95 C)"
    assert failure["cause"].startswith("the chip overheats") and "fans" in failure["fix"]
    assert data["temperatures"][2]["temp_c"] == 97.0
    warm = copy.deepcopy(facts)
    warm["devices"][5]["sensors"]["hbm_temp_c"] = 88.0
    assert outcome(hw.test_npu_temperature, warm)[:2] == ("warning", "NPU 5 chip 0: HBM 88 C (>= 85 C)")
    unread = copy.deepcopy(facts)
    unread["devices"][1]["sensors"]["temp_c"] = {"error": "no 'NPU ID' in the output"}
    unread["devices"][1]["temp_c"] = None
    assert outcome(hw.test_npu_temperature, unread)[1]["found"] == "NPU 1 chip 0: NPU temperature not read"


def test_ecc_double_bit_fails_single_bit_warns(healthy):
    _, facts = healthy
    bad = copy.deepcopy(facts)
    bad["devices"][4]["ecc"]["HBM"].update(double_bit=2, single_bit=7)
    status, failure, _ = outcome(hw.test_hbm_ecc, bad)
    assert failure["found"] == "NPU 4 chip 0: 2 uncorrectable (double-bit) HBM ECC error(s)"
    assert "replaced" in failure["fix"]
    corrected = copy.deepcopy(facts)
    corrected["devices"][4]["ecc"]["HBM"].update(single_bit=7, single_bit_isolated_pages=1)
    assert outcome(hw.test_hbm_ecc, corrected)[:2] == (
        "warning", "NPU 4 chip 0: 7 corrected single-bit HBM ECC error(s); NPU 4 chip 0: 1 HBM page(s) isolated "
                   "after ECC errors")


def test_topology_against_each_server_model(healthy):
    _, facts = healthy
    broken = copy.deepcopy(facts)
    broken["topology"]["links"]["NPU2"]["NPU5"] = "PIX"
    broken["topology"]["links"]["NPU1"]["NPU6"] = "NA"
    status, failure, _ = outcome(hw.test_npu_topology, broken, STACK_910B)
    assert failure["found"] == "NPU1-NPU6: NA where HCCS belongs; NPU2-NPU5: PIX where HCCS belongs"
    assert "HCCS link is down" in failure["cause"] and "npu-smi info -t hccs" in failure["fix"]
    # A3: dies of one card over SIO, cards through the HCCS switch; 910A: two meshes of four.
    a3 = [{"npu": n // 2, "chip": n % 2, "logic_id": n} for n in range(4)]
    topo = {"devices": [f"NPU{i}" for i in range(4)], "links": {
        f"NPU{a}": {f"NPU{b}": "X" if a == b else "SIO" if a // 2 == b // 2 else "HCCS_SW" for b in range(4)}
        for a in range(4)}}
    assert hardware.topology_findings(topo, a3, "a3") == []
    topo["links"]["NPU0"]["NPU1"] = "HCCS_SW"
    assert [f.what for f in hardware.topology_findings(topo, a3, "a3")] == ["HCCS_SW where SIO belongs"]
    a910 = [{"npu": n, "chip": 0, "logic_id": n} for n in range(8)]
    mesh = {"devices": [f"NPU{i}" for i in range(8)], "links": {
        f"NPU{a}": {f"NPU{b}": "X" if a == b else "HCCS" if a // 4 == b // 4 else "SYS" for b in range(8)}
        for a in range(8)}}
    assert hardware.topology_findings(mesh, a910, "910") == []
    mesh["links"]["NPU0"]["NPU5"] = "HCCS"
    assert [f.where for f in hardware.topology_findings(mesh, a910, "910")] == ["NPU0-NPU5"]


def test_optical_module_absent_or_out_of_its_thresholds(healthy):
    _, facts = healthy
    bad = copy.deepcopy(facts)
    bad["network"][0]["optical"] = {"present": False, "temperature_c": None, "tx_power_mw": [], "rx_power_mw": [],
                                    "rx_power_low_mw": None, "rx_power_high_mw": None, "tx_power_low_mw": None,
                                    "tx_power_high_mw": None, "values": {"present": "not present"}}
    bad["network"][6]["optical"]["rx_power_mw"][1] = 0.0054
    status, failure, _ = outcome(hw.test_optical_modules, bad, STACK_910B)
    assert failure["found"] == ("port 0: no optical module present; port 6: Rx power lane 1 0.0054 mW below "
                                "the module's low threshold 0.1445 mW")
    assert "seat or replace the module" in failure["fix"]


def test_link_flaps(healthy):
    _, facts = healthy
    flapping = copy.deepcopy(facts)
    flapping["network"][2]["link_stat"]["records"] = [["t4", "LINK UP"], ["t3", "LINK DOWN"], ["t2", "LINK UP"],
                                                     ["t1", "LINK DOWN"], ["t0", "LINK DOWN"]]
    status, failure, _ = outcome(hw.test_link_flaps, flapping, STACK_910B)
    assert failure["found"] == "port 2: 3 link downs since the driver started (last t3)"
    assert "reseat or replace the cable" in failure["fix"]
    once = copy.deepcopy(facts)
    once["network"][2]["link_stat"]["records"] = [["t1", "LINK UP"], ["t0", "LINK DOWN"]]
    assert outcome(hw.test_link_flaps, once, STACK_910B)[:2] == (
        "warning", "port 2: 1 link down(s) since the driver started (last t0)")


def test_growing_crc_errors_fail_and_old_ones_warn(tmp_path, monkeypatch):
    monkeypatch.setitem(hardware.PACKET_ERRORS, "interval_s", 0.0)
    probe = SimProbe(tmp_path, sim_state.default_state("910b", npus=2))
    facts = {"devices": [{"npu": n, "chip": 0} for n in range(2)], "npu_smi": {},
             "network": [{"port": 0}, {"port": 1}]}
    assert outcome(hw.test_packet_errors, facts, probe, STACK_910B)[0] == "passed"
    probe.change(1, stat={"mac_rx_fcs_err_pkt_num": 120}, stat_growth={"mac_rx_fcs_err_pkt_num": 37})
    status, failure, data = outcome(hw.test_packet_errors, facts, probe, STACK_910B)
    assert failure["found"] == "port 1: mac_rx_fcs_err_pkt_num +37 in 0 s"
    assert failure["cause"].startswith("frames arrive corrupted") and data["stat"]["1"]["mac_rx_fcs_err_pkt_num"] == 194
    probe.change(1, stat_growth=None)
    assert outcome(hw.test_packet_errors, facts, probe, STACK_910B)[:2] == (
        "warning", "port 1: mac_rx_fcs_err_pkt_num=194 (not growing)")


def test_gateways_and_routes(tmp_path):
    probe = SimProbe(tmp_path, sim_state.default_state("910b", npus=2))
    for port, ip in ((0, "10.0.0.5"), (1, "10.0.1.5")):
        probe.run(f"{HCCN} -i {port} -ip -s address {ip} netmask 255.255.255.0")
    probe.run(f"{HCCN} -i 0 -gateway -s gateway 10.0.0.1")
    probe.run(f"{HCCN} -i 1 -gateway -s gateway 10.9.9.1")  # outside the port's subnet
    facts = facts_mod.collect(probe)
    status, failure, data = outcome(hw.test_npu_routes, facts, STACK_910B)
    assert failure["found"] == "port 1: gateway 10.9.9.1 is outside the port's subnet 10.0.1.0/24"
    assert "hccn_tool -i <port> -gateway -s gateway" in failure["fix"]
    assert data["routes"][0]["gateway"] == {"address": "10.0.0.1", "iface": "eth0"}
    fixed = copy.deepcopy(facts)
    fixed["network"][1]["gateway"]["address"] = "10.0.1.1"
    fixed["network"][1]["routes"][0]["gateway"] = "10.0.1.1"
    assert outcome(hw.test_npu_routes, fixed, STACK_910B)[0] == "passed"
    no_route = copy.deepcopy(fixed)
    no_route["network"][0]["routes"] = [r for r in no_route["network"][0]["routes"] if r["destination"] != "default"]
    assert outcome(hw.test_npu_routes, no_route, STACK_910B)[1]["found"] == (
        "port 0: default route none, gateway 10.0.0.1 dev eth0 configured")


def test_health_check_explains_each_error_code(healthy):
    _, facts = healthy
    sick = copy.deepcopy(facts)
    sick["devices"][6].update(health="Critical")
    sick["devices"][6]["health_detail"] = {"status": "Critical", "error_codes": ["80E18402", "A4025021"],
                                           "error_info": ["hbm multi-bit ecc"]}
    stack = {"npus_per_node": 8, **STACK_910B}
    status, failure, _ = outcome(test_quick.test_npu_health, sick, stack, {"devices": None})
    assert failure["cause"] == ("the device reports a fault (Alarm or Critical): NPU 6 chip 0: Critical: 80E18402 "
                                "(SeparateNPU: the fault cannot be cured by a reset), A4025021 (NotHandleFault: a fault "
                                "with no effect on the work) [hbm multi-bit ecc]")
    assert failure["fix"].startswith("isolate the chip and have the card replaced (fault level SeparateNPU")


def test_network_check_leaves_ports_without_a_module_to_the_optical_check(healthy, tmp_path):
    probe = SimProbe(tmp_path, sim_state.default_state("910b", npus=2))
    probe.change(1, optical={"present": False}, link="DOWN", net_health="Fault")
    facts = facts_mod.collect(probe)
    assert outcome(test_standard.test_npu_network, probe, facts, STACK_910B)[0] == "passed"
    assert outcome(hw.test_optical_modules, facts, STACK_910B)[1]["found"] == "port 1: no optical module present"
    probe.change(0, link="DOWN")
    assert outcome(test_standard.test_npu_network, probe, facts, STACK_910B)[1]["found"] == (
        "device 0: link DOWN, net health Success")


def test_hccl_test_runs_where_installed(tmp_path):
    probe = SimProbe(tmp_path, sim_state.default_state("910b", npus=4), hccl_test=True)
    facts = {"devices": [{"npu": n, "chip": 0} for n in range(4)], "npu_smi": {}}
    status, _, data = outcome(hw.test_hccl_test, facts, probe, STACK_910B, OPTIONS)
    assert status == "passed" and data["ranks"] == 4 and len(data["hccl_test"]) == 14
    last = data["hccl_test"][-1]
    assert last["bytes"] == 64 << 20 and last["busbw_gbps"] == pytest.approx(last["algbw_gbps"] * 2 * 3 / 4)
    assert last["busbw_gbps"] == pytest.approx(150, rel=0.05)
    status, failure, _ = outcome(hw.test_hccl_test, facts, probe, STACK_910B, {**OPTIONS, "busbw_floor": 400.0})
    assert failure["summary"].startswith("hccl_test busbw") and failure["expected"] == ">= 400.0 GB/s"
    probe.change(2, busy=-8020)
    status, failure, _ = outcome(hw.test_hccl_test, facts, probe, STACK_910B, OPTIONS)
    assert failure["found"] == ("./common/src/hccl_test_common.cc:538 retcode 7 (resource unavailable) in "
                                "init_hcclComm")
    assert failure["cause"].startswith("an hccl_test process from an earlier run") and "pkill" in failure["fix"]
    probe.change(2, busy=None, health="Critical")
    status, failure, _ = outcome(hw.test_hccl_test, facts, probe, STACK_910B, OPTIONS)
    assert failure["summary"] == "hccl_test's all_reduce returned wrong results"
    assert failure["found"].startswith("local rank_id 2, check result failed, 8192")
    bare = SimProbe(tmp_path / "bare", sim_state.default_state("910b", npus=2))
    status, reason, _ = outcome(hw.test_hccl_test, facts, bare, STACK_910B, OPTIONS)
    assert status == "skipped" and "hccl_test is not installed" in reason


def test_hccl_test_failures_are_explained_by_what_they_print(tmp_path):
    """hccl_test's own error line says only a return code; the CANN code or the MPI's message
    printed with it (published copies, tests/fixtures/vendor_samples/cann_errors) says why."""
    probe = SimProbe(tmp_path, sim_state.default_state("910b", npus=2), hccl_test=True)
    facts = {"devices": [{"npu": n, "chip": 0} for n in range(2)], "npu_smi": {}}

    def mpirun_prints(text, rc):
        (probe.bin / "answer.txt").write_text(text)
        (probe.bin / "mpirun").write_text(f"#!/bin/sh\ncat {probe.bin / 'answer.txt'}\nexit {rc}\n")
        return outcome(hw.test_hccl_test, facts, probe, STACK_910B, OPTIONS)[1]

    timeout = ("hccl interface return err ./common/src/hccl_test_common.cc:538, retcode: 9 \n"
               "This is an error in init_hcclComm.\n" + sample("cann_errors/EI0006_LlamaFactory_5071.txt"))
    failure = mpirun_prints(timeout, 1)
    assert failure["found"] == "./common/src/hccl_test_common.cc:538 retcode 9 (timeout) in init_hcclComm"
    assert failure["cause"].startswith("EI0006 (a socket timed out while HCCL set up the links between ranks")
    assert "`hccn_tool -i N -tls -g` must agree across all nodes" in failure["fix"]
    failure = mpirun_prints(sample("cann_errors/libmpi_missing_nccl_872.txt"), 127)
    assert failure["summary"] == "hccl_test printed no result (exit 127)"
    assert failure["cause"] == "the MPI library mpirun starts hccl_test with is not on the loader's path"


def test_listing_groups_places_with_the_same_finding_and_bounds_the_line():
    f = [hardware.Finding("warn", f"port {p}", "no default gateway") for p in range(3)] + \
        [hardware.Finding("fail", "port 5", "TX power -40 dBm below -10 dBm")]
    assert hardware.listing(f) == "port 0, port 1, port 2: no default gateway; port 5: TX power -40 dBm below -10 dBm"
    many = [hardware.Finding("warn", f"NPU {n}", f"{70 + n} C") for n in range(14)]
    assert hardware.listing(many).endswith("NPU 11: 81 C; and 2 more")


def test_tls_check_finds_ports_that_disagree_and_expired_certificates(tmp_path):
    """Each fault is caught by this check (with the simulated hccn_tool's answers) and records the
    node's TLS state for the comparison across nodes."""
    probe = SimProbe(tmp_path, sim_state.default_state("910b", npus=4))
    facts = facts_mod.collect(probe)
    status, _, data = outcome(hw.test_npu_tls, facts, STACK_910B)
    assert (status, data) == ("passed", {"tls": "off"})
    probe.change(2, tls=1)
    status, failure, data = outcome(hw.test_npu_tls, facts_mod.collect(probe), STACK_910B)
    assert failure["found"] == "NPU ports: TLS on at port(s) 2, off at port(s) 0, 1, 3" and data == {"tls": "mixed"}
    for n in (0, 1, 3):
        probe.change(n, tls=1)
    probe.change(1, tls_cert_expiry=2)
    status, failure, data = outcome(hw.test_npu_tls, facts_mod.collect(probe), STACK_910B)
    assert failure["found"] == ("port 1: TLS certificate 'ca1 cert' has expired; "
                                "port 1: TLS certificate 'pub cert' has expired") and data == {"tls": "on"}
    probe.change(1, tls_cert_expiry=1)
    status, warning, data = outcome(hw.test_npu_tls, facts_mod.collect(probe), STACK_910B)
    assert (status, warning, data) == ("warning", "port 1: TLS certificate 'ca1 cert' is near its expiration; "
                                                  "port 1: TLS certificate 'pub cert' is near its expiration",
                                       {"tls": "on"})
    # the other port checks do not catch it
    for other in (hw.test_optical_modules, hw.test_link_flaps):
        assert outcome(other, facts_mod.collect(probe), STACK_910B)[0] == "passed"


def test_hccn_conf_check_finds_a_port_that_differs_from_the_saved_file(tmp_path):
    probe = SimProbe(tmp_path, sim_state.default_state("910b", npus=2))
    for n in (0, 1):
        probe.change(n, ip=f"10.30.{n}.1", netmask="255.255.255.0", netdetect="10.30.0.254")
    conf = tmp_path / "root/etc/hccn.conf"
    status, warning, _ = outcome(hw.test_hccn_conf, facts_mod.collect(probe), STACK_910B)
    assert (status, warning) == ("warning", "/etc/hccn.conf: not found: the ports' addresses were not compared "
                                            "with the saved configuration")
    conf.parent.mkdir(parents=True)
    # as the hccn role writes it (the npuenv.ascend collection's roles/hccn/templates/hccn.conf.j2)
    conf.write_text("# Ansible managed\n" + "".join(f"address_{n}=10.30.{n}.1\nnetmask_{n}=255.255.255.0\n"
                                                    f"netdetect_{n}=10.30.0.254\n" for n in (0, 1)))
    assert outcome(hw.test_hccn_conf, facts_mod.collect(probe), STACK_910B)[0] == "passed"
    probe.change(1, ip="10.30.1.9")
    status, failure, _ = outcome(hw.test_hccn_conf, facts_mod.collect(probe), STACK_910B)
    assert failure["found"] == "port 1: address_1=10.30.1.1 in /etc/hccn.conf, 10.30.1.9 on the port"
    assert failure["fix"].startswith("deploy the hccn role again")


def test_cabling_check_reads_the_switch_ports_and_records_them(tmp_path):
    probe = SimProbe(tmp_path, sim_state.default_state("910b", npus=2, node_index=3))
    status, _, data = outcome(hw.test_npu_cabling, facts_mod.collect(probe), STACK_910B)
    # the simulated leaf of node 3: ports 25 and 26 (tests/sim/state.py)
    assert (status, data) == ("passed", {"cabling": {"0": "sim-leaf-0 200GE1/0/25", "1": "sim-leaf-0 200GE1/0/26"}})
    probe.change(1, lldp={"chassis_id": "sim-leaf-0", "port_id": "200GE1/0/25", "system_name": "sim-leaf-0"})
    status, failure, _ = outcome(hw.test_npu_cabling, facts_mod.collect(probe), STACK_910B)
    assert failure["found"] == "NPU ports: ports 0, 1 all see switch port sim-leaf-0 200GE1/0/25"


def test_a_host_without_chips_fails_each_hardware_check_saying_why():
    error = "the tool reported an error: dcmi module initialize failed. ret is -8005"
    status, failure, _ = outcome(hw.test_npu_temperature, {"devices": [], "npu_smi": {"error": error}})
    assert (status, failure) == ("failed", {
        "summary": "no NPU to check", "expected": "the chips of npu-smi info", "found": error,
        "cause": "npu-smi lists no chip (see the npu_health check)", "fix": "fix what npu_health reports first"})
    # npu-smi not run at all (a directory tree): nothing listed
    assert outcome(hw.test_hbm_ecc, {"devices": [], "npu_smi": None})[1]["found"] == "none listed"


def test_port_checks_skip_chips_without_roce_ports_and_count_what_failed(tmp_path):
    status, reason, _ = outcome(hw.test_npu_tls, {"devices": [{"npu": 0, "chip": 0}], "network": []},
                                {**STACK_910B, "chip": "310p"})
    assert (status, reason) == ("skipped", "not applicable: 310p NPUs have no RoCE ports")
    probe = SimProbe(tmp_path, sim_state.default_state("910b", npus=4))
    probe.change(1, tls_cert_expiry=2)
    probe.change(3, tls_cert_expiry=2)
    failure = outcome(hw.test_npu_tls, facts_mod.collect(probe), STACK_910B)[1]
    assert failure["summary"] == "4 NPU port TLS problem(s)"   # two certificates on each of two ports
    assert failure["expected"] == ("the same TLS switch on every NPU port (`hccn_tool -i N -tls -g`), certificates "
                                   "not expired")


def test_link_speed_fec_check_finds_a_slow_port_and_fec_off(tmp_path):
    """With the simulated hccn_tool: a 910B port at 100G among 200G ports fails, its FEC is not
    reported by the 910B tool (nothing to judge); on 910A a port with FEC off fails."""
    probe = SimProbe(tmp_path / "910b", sim_state.default_state("910b", npus=4))
    status, _, data = outcome(hw.test_link_speed_fec, facts_mod.collect(probe), STACK_910B)
    assert status == "passed" and data["speed_fec"][0] == {"port": 0, "speed": 200000, "fec": None}
    probe.change(2, speed=100000)
    status, failure, _ = outcome(hw.test_link_speed_fec, facts_mod.collect(probe), STACK_910B)
    assert (status, failure["found"]) == ("failed", "port 2: 100000 Mb/s where the other ports run 200000 Mb/s")
    for other in (hw.test_optical_modules, hw.test_link_flaps, hw.test_npu_tls):
        assert outcome(other, facts_mod.collect(probe), STACK_910B)[0] == "passed"
    probe = SimProbe(tmp_path / "910", sim_state.default_state("910", npus=4))
    stack_910 = {**STACK_910B, "chip": "910"}
    status, _, data = outcome(hw.test_link_speed_fec, facts_mod.collect(probe), stack_910)
    assert status == "passed" and data["speed_fec"][1] == {"port": 1, "speed": 100000, "fec": "rs"}
    probe.change(1, fec="no")
    status, failure, _ = outcome(hw.test_link_speed_fec, facts_mod.collect(probe), stack_910)
    assert failure["found"] == "port 1: FEC off (no FEC mode): bit errors on the link go uncorrected"


def test_firmware_running_check_finds_firmware_not_yet_active_and_a_card_with_another_mcu(tmp_path):
    """With the simulated npu-smi: the cards run the installed firmware (pass); after an upgrade
    without the reboot they run the old one (fail, naming both); a card whose MCU differs warns."""
    probe = SimProbe(tmp_path, sim_state.default_state("910b", npus=4))
    status, _, data = outcome(hw.test_firmware_running, facts_mod.collect(probe))
    assert status == "passed"
    assert data["boards"][3] == {"npu": 3, "firmware": "7.7.0.1.231", "compatibility": "OK", "mcu": "25.50.10"}
    (tmp_path / "firmware.running").write_text("7.5.0.1.129\n")
    status, failure, _ = outcome(hw.test_firmware_running, facts_mod.collect(probe))
    assert failure["found"] == ("NPU 0, NPU 1, NPU 2, NPU 3: runs firmware 7.5.0.1.129, 7.7.0.1.231 is installed "
                                "(a firmware upgrade takes effect at the next reboot)")
    (tmp_path / "firmware.running").unlink()
    state = sim_state.load(probe.state_path)
    state["npus"][2]["mcu_version"] = "23.3.13"
    sim_state.save(state, probe.state_path)
    status, warning, _ = outcome(hw.test_firmware_running, facts_mod.collect(probe))
    assert (status, warning) == ("warning", "MCUs: MCU versions differ: 23.3.13 at NPU 2; 25.50.10 at NPU 0, 1, 3")
    # the stack and port checks do not read the boards
    for other in (hw.test_npu_tls, test_quick.test_firmware_pairs_with_driver):
        args = (facts_mod.collect(probe), STACK_910B) if other is hw.test_npu_tls else (facts_mod.collect(probe),)
        assert outcome(other, *args)[0] == "passed"


def test_hccs_links_check_finds_a_port_down_and_skips_chips_without_hccs(tmp_path):
    """With the simulated npu-smi: a healthy 910B passes; one HCCS port of a chip down fails naming
    the chip and the port, and the topology check (npu-smi info -t topo) does not see it."""
    probe = SimProbe(tmp_path / "910b", sim_state.default_state("910b", npus=4))
    status, _, data = outcome(hw.test_hccs_links, facts_mod.collect(probe), STACK_910B)
    assert status == "passed" and data["hccs"][2] == {"npu": 2, "chip": 0, "healthy": True, "lanes": ["4"] * 7}
    probe.change(2, hccs_lanes=[4, 4, 4, 0, 4, 4, 4])
    status, failure, _ = outcome(hw.test_hccs_links, facts_mod.collect(probe), STACK_910B)
    assert failure["found"] == ("NPU 2 chip 0: hccs health status NOK (first error lane 4); "
                                "NPU 2 chip 0: HCCS port 4 down (lane mode 0)")
    assert outcome(hw.test_npu_topology, facts_mod.collect(probe), STACK_910B)[0] == "passed"
    probe = SimProbe(tmp_path / "910", sim_state.default_state("910", npus=2))
    status, reason, _ = outcome(hw.test_hccs_links, facts_mod.collect(probe), {**STACK_910B, "chip": "910"})
    assert status == "skipped" and "910" in reason


def test_kernel_log_check_finds_a_device_fault_since_boot_that_npu_smi_no_longer_shows(tmp_path):
    """With the simulated node's dmesg: the driver's boot lines pass; the published heartbeat-lost line
    of one chip fails naming it, while npu-smi's health check still passes (the device recovered)."""
    probe = SimProbe(tmp_path, sim_state.default_state("910b", npus=4))
    status, _, data = outcome(hw.test_kernel_log, facts_mod.collect(probe))
    assert (status, data) == ("passed", {"kernel_log": {"ascend_lines": 4, "errors": 0}})
    probe.change(1, kernel_log=[sample("kernel_log_heartbeat_lost_mindcluster_fixture.txt").split("] ", 1)[1].strip()])
    status, failure, data = outcome(hw.test_kernel_log, facts_mod.collect(probe))
    assert failure["found"].startswith("kernel log: " + hardware.KERNEL_FAULTS["Heartbeat lost"] + ": 1 line(s) "
                                       "since boot: [17.117000] Heartbeat lost! (device=1; old_count=1104;")
    assert data == {"kernel_log": {"ascend_lines": 5, "errors": 1}}
    assert outcome(test_quick.test_npu_health, facts_mod.collect(probe), {**STACK_910B, "npus_per_node": 4},
                   {"devices": None})[0] == "passed"


def test_super_pod_check_of_an_a3_node_and_a_chip_whose_server_index_differs(tmp_path):
    """With the simulated npu-smi of an A3 node: every chip in pod 0 of 384 under Server Index 4 (the
    values of the super-pod guide) passes and is recorded; one chip under another index fails."""
    probe = SimProbe(tmp_path / "a3", sim_state.default_state("a3", npus=2))
    stack_a3 = {**STACK_910B, "chip": "a3"}
    status, _, data = outcome(hw.test_super_pod, facts_mod.collect(probe), stack_a3)
    assert (status, data) == ("passed", {"super_pod": {"pod": 0, "size": 384, "server_index": 4}})
    probe.change(3, server_index=0)
    status, failure, data = outcome(hw.test_super_pod, facts_mod.collect(probe), stack_a3)
    assert failure["found"] == ("chips: they disagree: Super Pod ID 0, size 384, Server Index 4 at NPU 0 chip 0, "
                                "NPU 0 chip 1, NPU 1 chip 0; Super Pod ID 0, size 384, Server Index 0 at NPU 1 chip 1")
    assert data == {"super_pod": None}
    probe = SimProbe(tmp_path / "910b", sim_state.default_state("910b", npus=2))
    assert outcome(hw.test_super_pod, facts_mod.collect(probe), STACK_910B)[0] == "skipped"


def test_a_kernel_log_the_target_may_not_read_warns_that_it_was_not_checked(tmp_path):
    """util-linux's answer where the kernel restricts dmesg (a container without CAP_SYSLOG)."""
    probe = SimProbe(tmp_path, sim_state.default_state("910b", npus=2))
    (probe.bin / "dmesg").write_text("#!/bin/sh\necho 'dmesg: read kernel buffer failed: Operation not permitted' >&2\n"
                                     "exit 1\n")
    status, warning, data = outcome(hw.test_kernel_log, facts_mod.collect(probe))
    assert (status, warning) == ("warning", "kernel log: not read, not checked: dmesg: read kernel buffer failed: "
                                            "Operation not permitted")
    assert data == {"kernel_log": {"error": "dmesg: read kernel buffer failed: Operation not permitted"}}

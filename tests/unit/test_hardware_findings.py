"""validation.node.hardware's judgements called on hand-written facts (the shapes validation/node/facts.py gives),
each with the exact findings: the verdict, the place and what was found. Thresholds are the module's
(project policy, CANN DCMI ECC guidance); fault levels are MindCluster's default faultCode.json
(validation/node/codes.py). test_hardware_checks.py runs the same judgements on the simulator's facts."""
from __future__ import annotations

import pytest

from validation.node import codes, hardware
from validation.node.hardware import Finding

CHIP0, CHIP1 = "NPU 0 chip 0", "NPU 1 chip 0"
TOOLS = "/opt/Ascend/driver/tools"   # the driver's tools folder of a host installed under /opt/Ascend


def dev(npu=0, chip=0, **extra):
    return {"npu": npu, "chip": chip, **extra}


# ------------------------------------------------------------------- listing

def test_fails_and_warns_split_the_findings():
    f = [Finding("warn", "a", "x"), Finding("fail", "b", "y"), Finding("warn", "c", "z")]
    assert hardware.fails(f) == [Finding("fail", "b", "y")]
    assert hardware.warns(f) == [Finding("warn", "a", "x"), Finding("warn", "c", "z")]


def test_listing_is_bounded_by_its_limit():
    f = [Finding("warn", f"port {p}", f"finding {p}") for p in range(4)]
    assert hardware.listing(f, limit=2) == "port 0: finding 0; port 1: finding 1; and 2 more"
    assert hardware.listing(f, limit=4) == "port 0: finding 0; port 1: finding 1; port 2: finding 2; port 3: finding 3"
    assert hardware.listing([]) == ""


# --------------------------------------------------------------- health codes

def test_health_findings_describe_every_error_code_by_its_fault_level():
    devices = [dev(0, health="OK"),
               dev(1, health="Alarm", health_detail={"error_codes": ["A4025021", "8C03A000", "12345678"],
                                                      "error_info": ["ascend_monitor adda heart beat lost error",
                                                                     "node type=adda"]})]
    assert hardware.health_findings(devices) == [Finding("fail", CHIP1, (
        "Alarm: A4025021 (NotHandleFault: a fault with no effect on the work), 8C03A000 (RestartNPU: the chip must "
        "be reset), 12345678 (not in the fault-code table) [ascend_monitor adda heart beat lost error]"))]


def test_health_findings_without_codes_or_unread_ones():
    devices = [dev(0, health="Critical"),
               dev(1, health="Warning", health_detail={"error": "npu-smi info -t health timed out"}),
               dev(2, health="Warning", health_detail={"error_codes": []})]
    assert hardware.health_findings(devices) == [
        Finding("fail", CHIP0, "Critical with no error code"),
        Finding("warn", CHIP1, "Warning (the error codes could not be read: npu-smi info -t health timed out)"),
        Finding("warn", "NPU 2 chip 0", "Warning with no error code"),
    ]


def test_a_state_the_manual_does_not_list_fails_and_says_so():
    assert hardware.health_findings([dev(3, 1, health="Degraded", health_detail={"error_codes": ["80E01801"]})]) == [
        Finding("fail", "NPU 3 chip 1", "Degraded: 80E01801 (RestartBusiness: the running job must be restarted) "
                                        "(a state the npu-smi manual does not list)")]


def test_health_fix_is_the_worst_levels_fix_of_the_unhealthy_chips():
    source = codes.FAULT_CODE_SOURCE
    devices = [dev(0, health="OK", health_detail={"error_codes": ["80E3A201"]}),    # SeparateNPU on a healthy chip
               dev(1, health="Alarm", health_detail={"error_codes": ["A4025021", "8C03A000", "80E01801"]}),
               dev(2, health="Alarm")]
    assert hardware.health_fix(devices, TOOLS) == ("stop the jobs on the card, then reset it: npu-smi set -t reset -i <npu> "
                                            f"-c <chip> (fault level RestartNPU, {source})")
    assert hardware.health_fix([dev(1, health="Warning", health_detail={"error_codes": ["A4025021"]})], TOOLS) == (
        f"no action needed; keep an eye on it (fault level NotHandleFault, {source})")
    logs = (f"no error code names the fault: export the device logs with `{TOOLS}/msnpureport -f` (in a folder "
            "you can write) for the vendor's support; reset or replace the card")
    read = "read `npu-smi info -t health -i <npu> -c <chip>` for the error codes; reset or replace the card"
    # codes read, none of them in the table (or none at all): the device logs
    assert hardware.health_fix([dev(0, health="Alarm", health_detail={"error_codes": ["12345678"]})], TOOLS) == logs
    assert hardware.health_fix([dev(0, health="Critical", health_detail={"error_codes": []})], TOOLS) == logs
    # a healthy chip's code asks for nothing
    assert hardware.health_fix([dev(0, health="OK", health_detail={"error_codes": ["80E3A201"]}),
                                dev(1, health="Alarm", health_detail={"error_codes": []})], TOOLS) == logs
    # an unhealthy chip whose codes were not read: read them first
    unread = dev(2, health="Critical", health_detail={"error": "the tool reported an error: Invalid card id."})
    assert hardware.health_fix([dev(1, health="Alarm", health_detail={"error_codes": []}), unread], TOOLS) == read
    assert hardware.health_fix([dev(2, health="Critical")], TOOLS) == read


# ------------------------------------------------------------------- sensors

@pytest.mark.parametrize("temp, found", [
    (84, []),
    (85, [Finding("warn", CHIP0, "NPU 85 C (>= 85 C)")]),
    (94.5, [Finding("warn", CHIP0, "NPU 94.5 C (>= 85 C)")]),
    (95, [Finding("fail", CHIP0, "NPU 95 C (>= 95 C)")]),
])
def test_npu_temperature_against_the_limits(temp, found):
    assert hardware.temperature_findings([dev(sensors={"temp_c": temp})]) == found


def test_temperature_sources_and_the_hbm():
    devices = [dev(0, temp_c=90, sensors={"temp_c": {"error": "npu-smi -t temp: not supported"}}),
               dev(1, temp_c=95),
               dev(2, sensors={"hbm_temp_c": 85}),
               dev(3, temp_c=40, sensors={"temp_c": 41, "hbm_temp_c": {"error": "not supported"}}),
               dev(4, temp_c=40, sensors={"hbm_temp_c": 95})]
    assert hardware.temperature_findings(devices) == [
        Finding("warn", CHIP0, "NPU 90 C (>= 85 C)"),              # the table's Temp(C) when -t temp is unread
        Finding("fail", CHIP1, "NPU 95 C (>= 95 C)"),
        Finding("fail", "NPU 2 chip 0", "NPU temperature not read"),
        Finding("warn", "NPU 2 chip 0", "HBM 85 C (>= 85 C)"),
        Finding("fail", "NPU 4 chip 0", "HBM 95 C (>= 95 C)"),
    ]


def test_ecc_counters_not_read_or_not_printed():
    devices = [dev(0), dev(1, ecc={"error": "npu-smi -t ecc: permission denied"}), dev(2, ecc={}),
               dev(3, ecc={"DDR": {"double_bit": 1, "single_bit": 2}})]
    assert hardware.ecc_findings(devices) == [
        Finding("fail", CHIP0, "ECC counters not read: not queried"),
        Finding("fail", CHIP1, "ECC counters not read: npu-smi -t ecc: permission denied"),
        Finding("fail", "NPU 2 chip 0", "npu-smi -t ecc printed no HBM or DDR counters"),
        Finding("fail", "NPU 3 chip 0", "1 uncorrectable (double-bit) DDR ECC error(s)"),
        Finding("warn", "NPU 3 chip 0", "2 corrected single-bit DDR ECC error(s)"),
    ]


def test_ecc_counts_at_and_below_their_thresholds():
    clean = {"double_bit": 0, "single_bit": 0, "single_bit_isolated_pages": 0, "double_bit_isolated_pages": 0}
    devices = [dev(0, ecc={"HBM": clean, "DDR": {"double_bit": 5}}),
               dev(1, ecc={"HBM": {"double_bit": 1, "single_bit": 1}}),
               dev(2, ecc={"HBM": {"double_bit": None, "single_bit_isolated_pages": 1, "double_bit_isolated_pages": 2}}),
               dev(3, ecc={"HBM": {"double_bit_isolated_pages": 1}})]
    assert hardware.ecc_findings(devices) == [
        Finding("fail", CHIP1, "1 uncorrectable (double-bit) HBM ECC error(s)"),
        Finding("warn", CHIP1, "1 corrected single-bit HBM ECC error(s)"),
        Finding("warn", "NPU 2 chip 0", "3 HBM page(s) isolated after ECC errors"),
        Finding("warn", "NPU 3 chip 0", "1 HBM page(s) isolated after ECC errors"),
    ]


# ------------------------------------------------------------------ topology

def matrix(n, cell):
    names = [f"NPU{i}" for i in range(n)]
    return {"devices": names, "links": {a: {b: "X" if a == b else cell(i, j) for j, b in enumerate(names)}
                                        for i, a in enumerate(names)}}


def test_topology_not_read_or_of_an_unknown_chip():
    devices = [dev(0)]
    assert hardware.topology_findings(None, devices, "910b") == [
        Finding("fail", "npu-smi info -t topo", "not read: not queried")]
    assert hardware.topology_findings({"error": "npu-smi: not found"}, devices, "910b") == [
        Finding("fail", "npu-smi info -t topo", "not read: npu-smi: not found")]
    assert hardware.topology_findings(matrix(1, None), devices, "310b") == [
        Finding("fail", "topology", "no expected topology for chip '310b' in validation/node/hardware.py")]


def test_topology_of_910b_every_pair_over_hccs():
    devices = [dev(n, logic_id=n) for n in range(3)]
    topo = matrix(3, lambda i, j: "HCCS")
    assert hardware.topology_findings(topo, devices, "910b") == []
    topo["links"]["NPU0"]["NPU2"] = "PIX"
    del topo["links"]["NPU0"]["NPU1"]
    topo["links"]["NPU2"]["NPU2"] = "HCCS"
    assert hardware.topology_findings(topo, devices, "910b") == [
        Finding("fail", "NPU0-NPU1", "no link cell"),
        Finding("fail", "NPU0-NPU2", "PIX where HCCS belongs"),
        Finding("fail", "NPU2", "HCCS on the diagonal"),
    ]
    del topo["links"]["NPU1"]      # a whole row missing
    assert hardware.topology_findings(topo, devices, "910b") == [
        Finding("fail", "NPU0-NPU1", "no link cell"), Finding("fail", "NPU0-NPU2", "PIX where HCCS belongs"),
        Finding("fail", "NPU1-NPU2", "no link cell"), Finding("fail", "NPU2", "HCCS on the diagonal")]
    assert hardware.topology_findings(matrix(3, lambda i, j: "HCCS"), devices[:2], "910b") == [
        Finding("fail", "topology", "3 devices in the matrix, 2 in npu-smi info")]


def test_topology_columns_are_logic_ids_and_a_row_without_its_own_cell_is_fine():
    # A3: the dies of one card over SIO; the matrix column is NPU<logic id>
    devices = [{"npu": 0, "chip": 0, "logic_id": 0}, {"npu": 0, "chip": 1, "logic_id": 1},
               {"npu": 1, "chip": 0, "logic_id": 3}, {"npu": 1, "chip": 1, "logic_id": 2}]
    topo = matrix(4, lambda i, j: "SIO" if {i, j} in ({0, 1}, {2, 3}) else "HCCS_SW")
    del topo["links"]["NPU3"]["NPU3"]
    assert hardware.topology_findings(topo, devices, "a3") == []
    topo["links"]["NPU2"]["NPU3"] = "HCCS"
    assert hardware.topology_findings(topo, devices, "a3") == [Finding("fail", "NPU2-NPU3", "HCCS where SIO belongs")]
    # npu-smi info lists the dies card by card, the matrix by logic id: card 0 is NPU0 and NPU1 here
    listed = [{"npu": 0, "chip": 0, "logic_id": 0}, {"npu": 1, "chip": 0, "logic_id": 2},
              {"npu": 0, "chip": 1, "logic_id": 1}, {"npu": 1, "chip": 1, "logic_id": 3}]
    assert hardware.topology_findings(matrix(4, lambda i, j: "SIO" if i // 2 == j // 2 else "HCCS_SW"), listed,
                                      "a3") == []
    # a die npu-smi info -m did not give a logic id is not guessed from its place in the list
    listed[2]["logic_id"] = None
    assert hardware.topology_findings(matrix(4, lambda i, j: "SIO" if i // 2 == j // 2 else "HCCS_SW"), listed,
                                      "a3") == [
        Finding("fail", "NPU 0 chip 1", "no logic id (npu-smi info -m did not list the chip or could not be read): "
                                        "its links cannot be told apart from its card's"),
        Finding("fail", "NPU0-NPU1", "SIO where HCCS/HCCS_SW belongs")]


def test_topology_of_910_two_meshes_of_four():
    devices = [dev(n, logic_id=n) for n in range(8)]
    topo = matrix(8, lambda i, j: "HCCS" if i // 4 == j // 4 else "SYS")
    assert hardware.topology_findings(topo, devices, "910") == []
    topo["links"]["NPU3"]["NPU4"] = "HCCS"
    topo["links"]["NPU1"]["NPU2"] = "PIX"
    assert hardware.topology_findings(topo, devices, "910") == [
        Finding("fail", "NPU1-NPU2", "PIX where HCCS belongs"),
        Finding("fail", "NPU3-NPU4", "HCCS where PHB/PIX/PXB/SYS belongs"),
    ]
    # columns that are not NPU<n> cannot be placed in a group: they take the between-groups rule
    odd = {"devices": ["Phy-ID0", "Phy-ID1"], "links": {"Phy-ID0": {"Phy-ID1": "HCCS"}}}
    assert hardware.topology_findings(odd, [dev(0, logic_id=5), dev(1, logic_id=6)], "910") == [
        Finding("fail", "Phy-ID0-Phy-ID1", "HCCS where PHB/PIX/PXB/SYS belongs")]
    mixed = {"devices": ["NPU0", "Phy-ID1"], "links": {"NPU0": {"Phy-ID1": "HCCS"}}}
    assert hardware.topology_findings(mixed, [dev(0, logic_id=0), dev(1, logic_id=6)], "910") == [
        Finding("fail", "NPU0-Phy-ID1", "HCCS where PHB/PIX/PXB/SYS belongs")]


# ------------------------------------------------------------------ NPU ports

def optical(**over):
    o = {"present": True, "rx_power_mw": [1.0, 1.0], "tx_power_mw": [1.0], "rx_power_low_mw": 0.1445,
         "rx_power_high_mw": 3.5481, "tx_power_low_mw": 0.2818, "tx_power_high_mw": 3.5481}
    return {**o, **over}


def test_optical_findings():
    ports = [{"port": 0}, {"port": 1, "optical": {"error": "hccn_tool: Cmd execute failed!"}},
             {"port": 2, "optical": optical(present=False)},
             {"port": 3, "optical": optical(rx_power_mw=[0.1445, 0.0054, 3.6], tx_power_mw=[0.2, 3.5481, 4.4035])},
             {"port": 4, "optical": optical(rx_power_low_mw=None, rx_power_high_mw=None, rx_power_mw=[0.0, 9.0])},
             {"port": 5, "optical": optical()},
             {"port": 6, "optical": optical(tx_power_mw=[], rx_power_mw=[])},
             {"port": 7, "optical": optical(tx_power_high_mw=None, tx_power_mw=[9.0])}]
    assert hardware.optical_findings(ports) == [
        Finding("fail", "port 0", "optical module not read: not queried"),
        Finding("fail", "port 1", "optical module not read: hccn_tool: Cmd execute failed!"),
        Finding("fail", "port 2", "no optical module present"),
        Finding("fail", "port 3", "Rx power lane 1 0.0054 mW below the module's low threshold 0.1445 mW"),
        Finding("fail", "port 3", "Rx power lane 2 3.6 mW above the module's high threshold 3.5481 mW"),
        Finding("fail", "port 3", "Tx power lane 0 0.2 mW below the module's low threshold 0.2818 mW"),
        Finding("fail", "port 3", "Tx power lane 2 4.4035 mW above the module's high threshold 3.5481 mW"),
        # what was not judged says so: no thresholds, no readings
        Finding("warn", "port 4", "no RxPower Low Thres or RxPower High Thres printed: Rx power not judged against it"),
        Finding("fail", "port 6", "Rx power not read: no 'Rx Power<lane>' value in the optical info"),
        Finding("fail", "port 6", "Tx power not read: no 'Tx Power<lane>' value in the optical info"),
        Finding("warn", "port 7", "no TxPower High Thres printed: Tx power not judged against it"),
    ]


def test_link_flap_findings():
    ports = [{"port": 0}, {"port": 1, "link_stat": {"error": "hccn_tool: Device ID is out of the valid range."}},
             {"port": 2, "link_stat": {"records": [["t5", "LINK UP"], ["t4", "LINK DOWN"], ["t3", "LINK DOWN"],
                                                   ["t2", "LINK UP"], ["t1", "LINK DOWN"]]}},
             {"port": 3, "link_stat": {"records": [["t2", "LINK UP"], ["t1", "LINK DOWN"], ["t0", "LINK DOWN"]]}},
             {"port": 4, "link_stat": {"records": [["t1", "LINK UP"]]}}]
    assert hardware.link_flap_findings(ports) == [
        Finding("fail", "port 0", "link statistics not read: not queried"),
        Finding("fail", "port 1", "link statistics not read: hccn_tool: Device ID is out of the valid range."),
        Finding("fail", "port 2", "3 link downs since the driver started (last t4)"),
        Finding("warn", "port 3", "2 link down(s) since the driver started (last t1)"),
    ]


def test_packet_error_findings():
    counters = {"mac_rx_fcs_err_pkt_num": 3, "roce_rx_err_pkt_num": 0, "mac_tx_total_pkt_num": 100}
    before = {0: {}, 1: {"stat": {"error": "first read failed"}}, 2: {"stat": counters}, 3: {"stat": counters},
              4: {"stat": counters}, 5: {"stat": counters}, 6: {"stat": {"mac_tx_total_pkt_num": 1}},
              7: {"stat": {"roce_rx_err_pkt_num": 1}}, 8: {"stat": {"mac_rx_fcs_err_pkt_num": 2, "roce_rx_err_pkt_num": 5}}}
    after = {1: {"stat": counters}, 2: {"stat": {"error": "second read failed"}},
             3: {"stat": {**counters, "mac_rx_fcs_err_pkt_num": 4, "roce_rx_err_pkt_num": 2}},
             4: {"stat": {**counters, "mac_tx_total_pkt_num": 900}}, 5: {},
             6: {"stat": {"mac_tx_total_pkt_num": 2, "mac_rx_fcs_err_pkt_num": 1}},
             7: {"stat": {"roce_rx_err_pkt_num": 1, "mac_tx_total_pkt_num": 5}},
             8: {"stat": {"mac_rx_fcs_err_pkt_num": 2, "roce_rx_err_pkt_num": 5}}}
    assert hardware.packet_error_findings(before, after) == [
        Finding("fail", "port 0", "packet statistics not read: not queried"),
        Finding("fail", "port 1", "packet statistics not read: first read failed"),
        Finding("fail", "port 2", "packet statistics not read: second read failed"),
        Finding("fail", "port 3", "mac_rx_fcs_err_pkt_num +1 in 2 s, roce_rx_err_pkt_num +2 in 2 s"),
        Finding("warn", "port 4", "mac_rx_fcs_err_pkt_num=3 (not growing)"),
        Finding("fail", "port 5", "packet statistics not read: not queried"),
        Finding("fail", "port 6", "mac_rx_fcs_err_pkt_num +1 in 2 s"),     # a counter new in the second read
        Finding("warn", "port 7", "roce_rx_err_pkt_num=1 (not growing)"),   # one bad frame in its history
        Finding("warn", "port 8", "mac_rx_fcs_err_pkt_num=2, roce_rx_err_pkt_num=5 (not growing)"),
    ]


def route(dest, gw, iface="eth0"):
    return {"destination": dest, "gateway": gw, "genmask": "0.0.0.0", "flags": "UG", "iface": iface}


def test_gateway_findings():
    ip = {"address": "10.0.0.5", "netmask": "255.255.255.0"}
    ports = [{"port": 0},
             {"port": 1, "ip": {"error": "Get ipconf failed"}},
             {"port": 2, "ip": ip},
             {"port": 3, "ip": ip, "gateway": {"error": "Get gateway failed"}, "routes": []},
             {"port": 4, "ip": ip, "gateway": {"address": "10.0.0.1", "iface": "eth4"}, "routes": {"error": "x"}},
             {"port": 5, "ip": ip, "gateway": {"address": None, "iface": None}, "routes": []},
             {"port": 6, "ip": ip, "gateway": {"address": "10.0.9.1", "iface": "eth6"},
              "routes": [route("default", "10.0.9.1", "eth6")]},
             {"port": 7, "ip": ip, "gateway": {"address": "10.0.0.1", "iface": "eth7"},
              "routes": [route("default", "10.0.0.9", "eth7"), route("0.0.0.0", "10.0.0.1", "eth1"),
                         route("10.0.0.0", "10.0.0.1", "eth7")]},
             {"port": 8, "ip": ip, "gateway": {"address": "10.0.0.1", "iface": "eth8"},
              "routes": [route("0.0.0.0", "10.0.0.1", "eth8")]},
             {"port": 9, "ip": ip, "gateway": {"address": "10.0.0.1", "iface": None},
              "routes": [route("default", "10.0.0.1", "eth3")]}]
    assert hardware.gateway_findings(ports) == [
        Finding("fail", "port 2", "gateway or routes not read: not queried"),
        Finding("fail", "port 3", "gateway or routes not read: Get gateway failed"),
        Finding("fail", "port 4", "gateway or routes not read: x"),
        Finding("warn", "port 5", "no default gateway: only the port's own subnet is reachable"),
        Finding("fail", "port 6", "gateway 10.0.9.1 is outside the port's subnet 10.0.0.0/24"),
        Finding("fail", "port 7", "default route via 10.0.0.9 dev eth7, via 10.0.0.1 dev eth1, gateway 10.0.0.1 "
                                  "dev eth7 configured"),
    ]


def test_gateway_findings_name_an_address_that_is_not_ipv4_instead_of_crashing():
    """hccn_tool's text is the node's word: a masked copy (the MindX DL guide prints `ipaddr:10.xx.xx.10`)
    or a garbled line must become a finding on its port, and the other ports are still judged."""
    ip = {"address": "10.0.0.5", "netmask": "255.255.255.0"}
    good_gateway = {"address": "10.0.0.1", "iface": "eth0"}
    ports = [{"port": 0, "ip": {"address": "10.xx.xx.10", "netmask": "255.255.255.0"}, "gateway": good_gateway,
              "routes": []},
             {"port": 1, "ip": {"address": "10.0.0.5", "netmask": "255.255.0.255"}, "gateway": good_gateway,
              "routes": []},
             {"port": 2, "ip": ip, "gateway": {"address": "gw-1", "iface": "eth2"}, "routes": []},
             {"port": 3, "ip": ip, "gateway": {"address": "10.0.0.77", "iface": "eth3"}, "routes": []}]
    assert hardware.gateway_findings(ports) == [
        Finding("fail", "port 0", "address '10.xx.xx.10' netmask '255.255.255.0' is not an IPv4 address and netmask"),
        Finding("fail", "port 1", "address '10.0.0.5' netmask '255.255.0.255' is not an IPv4 address and netmask"),
        Finding("fail", "port 2", "gateway 'gw-1' is not an IPv4 address"),
        Finding("fail", "port 3", "default route none, gateway 10.0.0.77 dev eth3 configured"),
    ]


def test_hccn_conf_findings_compare_the_saved_settings_with_the_ports():
    def port(n, ip="10.0.0.5", netdetect="10.0.0.254", gateway=None):
        return {"port": n, "ip": {"address": ip, "netmask": "255.255.255.0"} if ip else None,
                "netdetect": netdetect, "gateway": {"address": gateway, "iface": f"eth{n}"}}

    saved = {"address": "10.0.0.5", "netmask": "255.255.255.0", "netdetect": "10.0.0.254"}
    conf = {"0": saved, "1": {**saved, "address": "10.0.0.6"}, "2": {**saved, "gateway": "10.0.0.1"},
            "4": saved}
    ports = [port(0), port(1), port(2), port(3), port(4, ip=None, netdetect=None),
             {"port": 5, "ip": {"error": "Get ipconf failed"}, "netdetect": None, "gateway": {"address": None}}]
    assert hardware.hccn_conf_findings(conf, ports, "/etc/hccn.conf") == [
        Finding("fail", "port 1", "address_1=10.0.0.6 in /etc/hccn.conf, 10.0.0.5 on the port"),
        Finding("fail", "port 2", "gateway_2=10.0.0.1 in /etc/hccn.conf, none on the port"),
        Finding("fail", "port 3", "address_3=(none) in /etc/hccn.conf, 10.0.0.5 on the port"),
        Finding("fail", "port 3", "netmask_3=(none) in /etc/hccn.conf, 255.255.255.0 on the port"),
        Finding("fail", "port 3", "netdetect_3=(none) in /etc/hccn.conf, 10.0.0.254 on the port"),
        Finding("fail", "port 4", "address_4=10.0.0.5 in /etc/hccn.conf, none on the port"),
        Finding("fail", "port 4", "netmask_4=255.255.255.0 in /etc/hccn.conf, none on the port"),
        Finding("fail", "port 4", "netdetect_4=10.0.0.254 in /etc/hccn.conf, none on the port"),
        Finding("fail", "port 5", "address not read: Get ipconf failed"),
        Finding("fail", "port 5", "netmask not read: Get ipconf failed"),
    ]
    # no file: nothing was compared, and it says so; an unreadable one fails
    assert hardware.hccn_conf_findings(None, ports, "/etc/hccn.conf") == [
        Finding("warn", "/etc/hccn.conf", "not found: the ports' addresses were not compared with the saved "
                                          "configuration")]
    assert hardware.hccn_conf_findings({"error": "expected '<key>_<port>=<value>'"}, ports, "/etc/hccn.conf") == [
        Finding("fail", "/etc/hccn.conf", "not read: expected '<key>_<port>=<value>'")]
    assert hardware.hccn_conf_findings({"0": saved}, [port(0)], "/etc/hccn.conf") == []
    # a port whose settings were not queried at all is not taken for one without settings
    assert hardware.hccn_conf_findings({"0": saved}, [{"port": 0}], "/etc/hccn.conf") == [
        Finding("fail", "port 0", f"{key} not read: not queried") for key in ("address", "netmask", "netdetect",
                                                                              "gateway")]


def test_cabling_findings_name_ports_on_one_switch_port_and_ports_without_a_neighbour():
    def seen(name, port):
        return {"chassis_id": "00:e0:fc:00:00:01", "port_id": port, "system_name": name,
                "system_description": "", "mgmt_ipv4": None, "tlvs": {}}

    ports = [{"port": 0, "link": "UP", "lldp": seen("leaf-1", "200GE1/0/1")},
             {"port": 1, "link": "UP", "lldp": seen("leaf-1", "200GE1/0/1")},
             {"port": 2, "link": "UP", "lldp": seen("leaf-1", "200GE1/0/3")},
             {"port": 3, "link": "UP", "lldp": None},
             {"port": 4, "link": "DOWN", "lldp": None},
             {"port": 5, "link": "UP", "lldp": {"error": "hccn_tool: Cmd execute failed!"}},
             {"port": 6, "link": "UP"},
             {"port": 7, "link": "UP", "lldp": {**seen("", "200GE1/0/1"), "chassis_id": "00:e0:fc:00:00:02"}}]
    assert hardware.cabling_findings(ports) == [
        Finding("warn", "port 3", "link UP but no LLDP neighbour: the switch port is not known"),
        Finding("fail", "port 5", "LLDP neighbour not read: hccn_tool: Cmd execute failed!"),
        Finding("fail", "port 6", "LLDP neighbour not read: not queried"),
        Finding("fail", "NPU ports", "ports 0, 1 all see switch port leaf-1 200GE1/0/1")]
    # a switch without a system name is told by its chassis id
    assert hardware.switch_port(ports[7]["lldp"]) == "00:e0:fc:00:00:02 200GE1/0/1"
    assert hardware.switch_port(None) is None and hardware.switch_port({"error": "x"}) is None


def test_tls_state_and_findings_of_ports_read_or_not():
    on, off = {"enabled": True, "certificates": {}}, {"enabled": False, "certificates": {"pub cert": 0}}
    assert hardware.tls_state([]) is None
    assert hardware.tls_state([{"port": 0, "tls": {"error": "x"}}, {"port": 1}]) is None
    assert hardware.tls_state([{"port": 0, "tls": on}, {"port": 1, "tls": {"error": "x"}}]) == "on"
    assert hardware.tls_state([{"port": 0, "tls": off}]) == "off"
    ports = [{"port": 0, "tls": on}, {"port": 1, "tls": off}, {"port": 2, "tls": {"error": "Cmd execute failed!"}},
             {"port": 3}, {"port": 4, "tls": {"enabled": False, "certificates": {"crl": 1, "ca1 cert": 2}}}]
    assert hardware.tls_state(ports) == "mixed"
    assert hardware.tls_findings(ports) == [
        Finding("fail", "port 2", "TLS state not read: Cmd execute failed!"),
        Finding("fail", "port 3", "TLS state not read: not queried"),
        Finding("fail", "port 4", "TLS certificate 'ca1 cert' has expired"),
        Finding("warn", "port 4", "TLS certificate 'crl' is near its expiration"),
        Finding("fail", "NPU ports", "TLS on at port(s) 0, off at port(s) 1, 4")]
    assert hardware.tls_findings([{"port": 0, "tls": on}, {"port": 1, "tls": on}]) == []
    assert hardware.tls_findings([{"port": 0, "tls": on}, {"port": 1, "tls": off}, {"port": 2, "tls": on}])[-1] == \
        Finding("fail", "NPU ports", "TLS on at port(s) 0, 2, off at port(s) 1")


def speed_port(port, speed=200000, fec=None, link="UP"):
    return {"port": port, "link": link, "speed": speed, "fec": fec}


def test_speed_findings_name_the_slow_port_and_a_speed_the_link_does_not_know():
    healthy = [speed_port(p) for p in range(8)]
    assert hardware.speed_fec_findings(healthy, "910b") == []
    slow = healthy[:3] + [speed_port(3, 100000)] + healthy[4:]
    assert hardware.speed_fec_findings(slow, "910b") == [
        Finding("fail", "port 3", "100000 Mb/s where the other ports run 200000 Mb/s")]
    unknown = [speed_port(0, None), speed_port(1, None, link="DOWN"), speed_port(2)]
    assert hardware.speed_fec_findings(unknown, "910b") == [
        Finding("fail", "port 0", "link UP but its speed is unknown (Speed: Unknown!)")]
    # every port at 100G on a 910B: set so on purpose (static_speed) or a fabric of 100G, said once
    assert hardware.speed_fec_findings([speed_port(p, 100000) for p in range(2)], "910b") == [
        Finding("warn", "NPU ports",
                "every port at 100000 Mb/s, below the 910b port's 200000 Mb/s: set so on purpose?")]
    # 910A ports are 100GE; a chip without a recorded speed is judged by its ports' agreement only
    assert hardware.speed_fec_findings([speed_port(p, 100000, "rs") for p in range(2)], "910") == []
    assert hardware.speed_fec_findings([speed_port(p, 100000) for p in range(2)], "a3") == []


def test_fec_findings_fail_fec_off_and_ports_that_disagree():
    assert hardware.speed_fec_findings([speed_port(0, 100000, "no"), speed_port(1, 100000, "no")], "910") == [
        Finding("fail", "port 0", "FEC off (no FEC mode): bit errors on the link go uncorrected"),
        Finding("fail", "port 1", "FEC off (no FEC mode): bit errors on the link go uncorrected")]
    mixed = [speed_port(0, 100000, "rs"), speed_port(1, 100000, "auto"), speed_port(2, 100000, "rs")]
    assert hardware.speed_fec_findings(mixed, "910") == [
        Finding("fail", "NPU ports", "FEC modes differ: auto at port(s) 1; rs at port(s) 0, 2")]


def test_speed_and_fec_not_read_or_not_queried_fail():
    ports = [{"port": 0, "link": "UP", "speed": {"error": "Cmd execute failed!"}, "fec": {"error": "garbled"}},
             {"port": 1, "link": "UP"}]
    assert hardware.speed_fec_findings(ports, "910b") == [
        Finding("fail", "port 0", "speed not read: Cmd execute failed!"),
        Finding("fail", "port 0", "FEC mode not read: garbled"),
        Finding("fail", "port 1", "speed not read: not queried"),
        Finding("fail", "port 1", "FEC mode not read: not queried")]


def board(npu, firmware="7.7.0.1.231", compatibility="OK", mcu="25.50.10"):
    return {"npu": npu, "board": {"NPU ID": str(npu), "Firmware Version": firmware, "Compatibility": compatibility},
            "mcu": mcu}


def test_firmware_findings_compare_what_each_card_runs_with_what_is_installed():
    assert hardware.firmware_findings([board(0), board(1)], "7.7.0.1.231") == []
    assert hardware.firmware_findings([board(0), board(1, "7.5.0.1.129")], "7.7.0.1.231") == [
        Finding("fail", "NPU 1", "runs firmware 7.5.0.1.129, 7.7.0.1.231 is installed "
                                 "(a firmware upgrade takes effect at the next reboot)")]
    assert hardware.firmware_findings([board(0, compatibility="NOK"), board(1, compatibility="UNKNOWN")],
                                      "7.7.0.1.231") == [
        Finding("fail", "NPU 0", "Compatibility NOK: the driver rejects firmware 7.7.0.1.231"),
        Finding("warn", "NPU 1", "Compatibility UNKNOWN: the driver could not judge firmware 7.7.0.1.231")]
    # a driver that prints no Compatibility line: the firmware is still compared
    old = {"npu": 0, "board": {"NPU ID": "0", "Firmware Version": "7.1.0.7.220"}, "mcu": None}
    assert hardware.firmware_findings([old], "7.1.0.7.220") == []
    assert hardware.firmware_findings([old], None) == [
        Finding("warn", "firmware/version.info", "no installed firmware version: the running firmware was not "
                                                 "compared with it")]


def test_firmware_findings_of_boards_and_mcus_not_read_and_mcus_that_differ():
    unread = [{"npu": 0, "board": {"error": "Invalid card id."}, "mcu": {"error": "garbled"}},
              {"npu": 1, "board": {"NPU ID": "1"}, "mcu": None}, {"npu": 2}]
    assert hardware.firmware_findings(unread, "7.7.0.1.231") == [
        Finding("fail", "NPU 0", "board not read: Invalid card id."),
        Finding("fail", "NPU 0", "MCU version not read: garbled"),
        Finding("fail", "NPU 1", "no 'Firmware Version' in npu-smi info -t board"),
        Finding("fail", "NPU 2", "board not read: not queried"),
        Finding("fail", "NPU 2", "MCU version not read: not queried")]
    assert hardware.firmware_findings([board(0), board(1, mcu="23.3.13"), board(2, mcu=None)], "7.7.0.1.231") == [
        Finding("warn", "MCUs", "MCU versions differ: 23.3.13 at NPU 1; 25.50.10 at NPU 0")]


def hccs_chip(npu, lanes=(4,) * 7, healthy=True, first=None, errors=None, retries=None):
    ports = {"lane mode": tuple(map(str, lanes)), "error count": tuple(map(str, errors or [0] * len(lanes))),
             "retry count": tuple(map(str, retries or [0] * len(lanes)))}
    return {"npu": npu, "chip": 0, "hccs": {"healthy": healthy, "ports": ports, "first_error_lane": first}}


def test_hccs_findings_name_ports_down_or_on_fewer_lanes():
    assert hardware.hccs_findings([hccs_chip(0), hccs_chip(1)]) == []
    assert hardware.hccs_findings([hccs_chip(3, (4, 4, 0, 4, 4, 4, 4), healthy=False, first="3")]) == [
        Finding("fail", "NPU 3 chip 0", "hccs health status NOK (first error lane 3)"),
        Finding("fail", "NPU 3 chip 0", "HCCS port 3 down (lane mode 0)")]
    assert hardware.hccs_findings([hccs_chip(1, (4, 2, 4, 4, 4, 4, 4))]) == [
        Finding("fail", "NPU 1 chip 0", "HCCS port 2 on 2 lanes, the others on 4")]
    assert hardware.hccs_findings([hccs_chip(2, errors=[0, 0, 0, 5, 0, 0, 0], retries=[1, 0, 0, 0, 0, 0, 0])]) == [
        Finding("warn", "NPU 2 chip 0", "HCCS CRC errors (port 4: 5)"),
        Finding("warn", "NPU 2 chip 0", "HCCS retries (port 1: 1)")]


def test_hccs_not_read_or_not_queryable_on_a_chip_that_has_it_fails():
    assert hardware.hccs_findings([{"npu": 0, "chip": 0, "hccs": {"error": "Failed to query \"hccs\" result."}},
                                   {"npu": 1, "chip": 0, "hccs": None}, {"npu": 2, "chip": 0}]) == [
        Finding("fail", "NPU 0 chip 0", "HCCS not read: Failed to query \"hccs\" result."),
        Finding("fail", "NPU 1 chip 0", "npu-smi cannot query its HCCS: the links were not checked"),
        Finding("fail", "NPU 2 chip 0", "HCCS not read: not queried")]


def kernel(message, *tags, seconds="12.000000"):
    return {"seconds": seconds, "tags": list(tags), "message": message}


def test_kernel_log_findings_fail_device_faults_and_warn_other_driver_errors():
    assert hardware.kernel_log_findings([kernel("Findout device. (index=0)", "drv_pcie", "INFO")]) == []
    lost = kernel("Heartbeat lost! (device=1; lost_count=4)", "ERROR", "drv_soft_fault", seconds="1197.584409")
    other = kernel("Get_user_pages_fast fail.", "devmm", "ERROR")
    found = hardware.kernel_log_findings([lost, other, kernel("Device is abnormal. (dev_id=5)", "drv_pcie")])
    assert found == [
        Finding("fail", "kernel log", hardware.KERNEL_FAULTS["Heartbeat lost"]
                + ": 1 line(s) since boot: [1197.584409] Heartbeat lost! (device=1; lost_count=4)"),
        Finding("fail", "kernel log", hardware.KERNEL_FAULTS["Device is abnormal"]
                + ": 1 line(s) since boot: [12.000000] Device is abnormal. (dev_id=5)"),
        Finding("warn", "kernel log", "1 other driver error line(s) since boot: [12.000000] Get_user_pages_fast fail.")]
    many = [kernel(f"hdc connect down, devid({n}) fid(0) tsid(0)", "tsdrv", "ERROR", seconds=None) for n in range(5)]
    [finding] = hardware.kernel_log_findings(many)
    assert finding.what.endswith(": 5 line(s) since boot: [?] hdc connect down, devid(0) fid(0) tsid(0); "
                                 "[?] hdc connect down, devid(1) fid(0) tsid(0); [?] hdc connect down, devid(2) "
                                 "fid(0) tsid(0); and 2 more")
    assert hardware.kernel_log_findings({"error": "dmesg: read kernel buffer failed: Operation not permitted"}) == [
        Finding("warn", "kernel log", "not read, not checked: dmesg: read kernel buffer failed: Operation not "
                                      "permitted")]


def test_hccs_summary_keeps_health_and_lanes_and_what_was_not_read():
    chips = [hccs_chip(0, (4, 0)), {"npu": 1, "chip": 0, "hccs": {"error": "garbled"}},
             {"npu": 2, "chip": 1, "hccs": None}]
    assert hardware.hccs_summary(chips) == [{"npu": 0, "chip": 0, "healthy": True, "lanes": ["4", "0"]},
                                            {"npu": 1, "chip": 0, "hccs": {"error": "garbled"}},
                                            {"npu": 2, "chip": 1, "hccs": None}]


def spod_chip(npu, chip=0, pod=0, size=384, index=4):
    return {"npu": npu, "chip": chip, "spod": {"pod": pod, "size": size, "server_index": index, "sdid": 0}}


def test_super_pod_findings_and_state_of_a_node():
    node = [spod_chip(n, c) for n in range(2) for c in range(2)]
    assert hardware.super_pod_findings(node) == []
    assert hardware.super_pod_state(node) == {"pod": 0, "size": 384, "server_index": 4}
    replaced = node[:3] + [spod_chip(1, 1, index=0)]
    assert hardware.super_pod_findings(replaced) == [Finding(
        "fail", "chips", "they disagree: Super Pod ID 0, size 384, Server Index 4 at NPU 0 chip 0, NPU 0 chip 1, "
                         "NPU 1 chip 0; Super Pod ID 0, size 384, Server Index 0 at NPU 1 chip 1")]
    assert hardware.super_pod_state(replaced) is None
    unread = [{"npu": 0, "chip": 0, "spod": {"error": "garbled"}}, {"npu": 0, "chip": 1, "spod": None},
              {"npu": 1, "chip": 0}, spod_chip(1, 1)]
    assert hardware.super_pod_findings(unread) == [
        Finding("fail", "NPU 0 chip 0", "super-pod info not read: garbled"),
        Finding("fail", "NPU 0 chip 1", "npu-smi reports no super pod for it"),
        Finding("fail", "NPU 1 chip 0", "super-pod info not read: not queried")]
    assert hardware.super_pod_state(unread) == {"pod": 0, "size": 384, "server_index": 4}


def test_hccs_values_that_are_not_numbers_are_not_read_and_health_without_a_first_lane():
    garbled = hccs_chip(0, (4, "x"))
    garbled["hccs"]["ports"]["error count"] = ("0", "?")
    # the chips after it are still judged
    assert hardware.hccs_findings([garbled, hccs_chip(3, (4, 0))]) == [
        Finding("fail", "NPU 0 chip 0",
                "HCCS not read: not a number: lane mode of port 2 'x', error count of port 2 '?'"),
        Finding("fail", "NPU 3 chip 0", "HCCS port 2 down (lane mode 0)")]
    assert hardware.hccs_findings([hccs_chip(1, healthy=False, errors=[0, 3, 0, 0, 0, 0, 2])]) == [
        Finding("fail", "NPU 1 chip 0", "hccs health status NOK (first error lane NA)"),
        Finding("warn", "NPU 1 chip 0", "HCCS CRC errors (port 2: 3, port 7: 2)")]
    # a copy without lane lines (a collector's three counters) has no lanes to judge or keep
    counters_only = {"npu": 2, "chip": 0, "hccs": {"healthy": True, "ports": {"error count": ("0",)},
                                                   "first_error_lane": None}}
    assert hardware.hccs_findings([counters_only]) == []
    assert hardware.hccs_summary([counters_only]) == [{"npu": 2, "chip": 0, "healthy": True, "lanes": []}]


def test_kernel_log_quotes_three_lines_each_cut_at_200_characters():
    long = kernel("Heartbeat lost! " + "x" * 300, "ERROR")
    [finding] = hardware.kernel_log_findings([long] * 3)
    assert finding.what.endswith("[12.000000] Heartbeat lost! " + "x" * 184) and "more" not in finding.what
    assert finding.what.count("[12.000000]") == 3

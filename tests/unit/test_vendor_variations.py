"""Every variation of the vendor tools' output that issue #15 lists, each as an
example built from the formats in FORMAT_NOTES.md (values invented here), and
the one table of DCMI codes."""
import pytest

from validation.node import codes, explain
from validation.node.vendor_tools import common, hccl_test, hccn_tool, npu_smi

RULE = "+" + "-" * 96 + "+"
INNER = "+---------------------------+---------------+----------------------------------------------------+"
EQ = "+===========================+===============+====================================================+"


def a2_rows(npu, name, power, temp, hbm_used, bus):
    return [f"| {npu:<5} {name:<20}| OK            | {power:<11} {temp:<17} 0    / 0             |",
            f"| 0                         | {bus}  | 0           0    / 0          {hbm_used:<5}/ 65536         |", EQ]


# ------------------------------------------------------------ npu-smi info

def test_blank_cells_of_older_drivers_read_as_absent():
    # 910A on a 21.0.x driver: Power and Temp, then nothing where Hugepages would be.
    text = "\n".join([
        "+---------------------------------------------------------------------+",
        "| npu-smi 21.0.1                   Version: 21.0.1                    |",
        "+----------------------+---------------+------------------------------+",
        "| NPU   Name           | Health        | Power(W)   Temp(C)           |",
        "| Chip                 | Bus-Id        | AICore(%)  Memory-Usage(MB)  HBM-Usage(MB)  |",
        "+======================+===============+==============================+",
        "| 3     910A           | Warning       | 70.0       61                |",
        "| 0                    | 0000:81:00.0  | 12         2000 / 15000      900  / 32768   |",
        "+======================+===============+==============================+"])
    info = npu_smi.parse_npu_smi_info(text)
    [chip] = info.chips
    assert (chip.npu, chip.health, chip.power_w, chip.temp_c, chip.hugepages) == (3, "Warning", 70.0, 61, None)
    assert (chip.aicore_pct, chip.memory_mb, chip.hbm_mb) == (12, (2000, 15000), (900, 32768))
    assert info.unreadable == []


def test_first_generation_310_rows_without_hugepages_or_hbm():
    text = "\n".join([
        "| npu-smi 20.1.0                       Version: 20.1.0                         |",
        "| NPU     Name      | Health          | Power(W)          Temp(C)              |",
        "| Chip    Device    | Bus-Id          | AICore(%)         Memory-Usage(MB)     |",
        "| 5       310       | Alarm           | 12.8              70                   |",
        "| 1       9         | NA              | 3                 100 / 8192           |"])
    [chip] = npu_smi.parse_npu_smi_info(text).chips
    assert (chip.name, chip.health, chip.device_id, chip.bus_id, chip.hbm_mb, chip.hugepages) == (
        "310", "Alarm", 9, "NA", None, None)


def test_a3_process_rows_with_a_fifth_cell():
    text = "\n".join([
        "+---------------------------+---------------+----------------------------------------------------------------------+",
        "| NPU     Chip              | Process id    | Process name       | Process memory(MB)    | Process id in container |",
        "+===========================+===============+======================================================================+",
        "| 2       1                 | 40001         | python3            | 6000                  | 17                      |",
        "| 3       0                 | 40002         | torchrun           | 12                    | NA                      |",
        "+===========================+===============+======================================================================+",
        "| No running processes found in NPU 4                                                                              |"])
    info = npu_smi.parse_npu_smi_info(text)
    assert info.chips == [] and info.has_process_section
    assert info.processes == [npu_smi.NpuProcess(2, 1, 40001, "python3", 6000, "17"),
                              npu_smi.NpuProcess(3, 0, 40002, "torchrun", 12, None)]


def test_log_lines_before_the_table_are_reported_not_fatal():
    table = [RULE, "| npu-smi 25.2.0                   Version: 25.2.0                                               |",
             INNER, "| NPU   Name                | Health        | Power(W)    Temp(C)           Hugepages-Usage(page)|",
             "| Chip                      | Bus-Id        | AICore(%)   Memory-Usage(MB)  HBM-Usage(MB)        |", EQ]
    table += a2_rows(0, "910B3", "90.1", 40, 3400, "0000:C1:00.0")
    log = 'time="2025-01-02T03:04:05Z" level=info msg="ascend-docker-runtime: mounting /usr/local/dcmi"'
    info = npu_smi.parse_npu_smi_info("\n".join([log, *table]))
    assert info.version == "25.2.0" and info.chip(0).hbm_mb == (3400, 65536)
    assert [(u.lineno, u.reason) for u in info.unreadable] == [(1, "not part of the npu-smi table")]


def test_a_partial_copy_from_the_column_header_with_elided_rows():
    lines = ["| NPU   Name                | Health        | Power(W)    Temp(C)           Hugepages-Usage(page)|",
             "| Chip                      | Bus-Id        | AICore(%)   Memory-Usage(MB)  HBM-Usage(MB)        |", EQ]
    lines += a2_rows(0, "910B4", "80.0", 41, 2600, "0000:C1:00.0") + ["..."]
    lines += a2_rows(6, "910B4", "81.5", 44, 2700, "0000:41:00.0")
    info = npu_smi.parse_npu_smi_info("\n".join(lines))
    assert (info.version, info.npu_smi_version) == (None, None)
    assert info.npu_ids() == [0, 6] and info.chip(6).temp_c == 44
    assert [u.reason for u in info.unreadable] == ["elided in the published copy"]


def test_one_bad_row_costs_only_its_chip():
    lines = ["| NPU   Name                | Health        | Power(W)    Temp(C)           Hugepages-Usage(page)|", EQ]
    lines += a2_rows(0, "910B3", "80.0", 41, 2600, "0000:C1:00.0")
    lines += ["| 1     910B3               | OK            | 80.0        hot               0    / 0             |",
              "| 0                         | 0000:C2:00.0  | 0           0    / 0          1    / 65536         |", EQ]
    lines += a2_rows(2, "910B3", "81.0", 42, 2601, "0000:81:00.0")
    lines += ["| 3     910B3               | OK            | 80.0        43                0    / 0             |", EQ]
    lines += ["| 4     910B3               | OK            | 80.0        43                0    / 0      "]
    info = npu_smi.parse_npu_smi_info("\n".join(lines))
    assert info.npu_ids() == [0, 2]
    assert [(u.lineno, u.reason) for u in info.unreadable] == [
        (6, "Temp(C) is not a number: 'hot' (line 6: '| 1     910B3               | OK            | 80.0"
            "        hot               0    / 0             |')"),
        (12, "a chip's first row without its second"), (14, "a row cut short")]
    # every one of them is a row that held a chip: the check reports them (validation/node/suite/test_quick.py)
    assert info.unread_rows() == info.unreadable
    # a prompt and a publisher's elision around the same table are not rows
    noisy = npu_smi.parse_npu_smi_info("\n".join(["[root@node ~]# npu-smi info", *lines[:2], "...", *lines[2:]]))
    assert [u.lineno for u in noisy.unreadable] == [1, 4, 8, 14, 16]
    assert [u.lineno for u in noisy.unread_rows()] == [8, 14, 16]


# ---------------------------------------------------- npu-smi sub-commands

def test_board_of_a_910b_with_a_25x_driver_has_its_own_ids():
    text = ("\tNPU ID                         : 2\n\tProduct Name                   : IT21HMDC_X\n"
            "\tModel                          : NA\n\tManufacturer                   : Huawei\n"
            "\tSerial Number                  : 102500000001\n\tSoftware Version               : 25.2.0\n"
            "\tBoard ID                       : 0x60\n\tSubsystem Vendor ID            : 0x19E5\n")
    board = npu_smi.parse_board(text)
    assert (board["Product Name"], board["Board ID"], board["Subsystem Vendor ID"]) == ("IT21HMDC_X", "0x60", "0x19E5")


def test_health_with_codes_and_continuations():
    text = ("\tHealth Status                  : Critical\n\tError Code                     : 80E01801 80E18402\n"
            "\tError Information              : hbm multi-bit ecc\n\n\t                               : node type=HBM\n")
    assert npu_smi.parse_health(text) == npu_smi.Health("Critical", ("80E01801", "80E18402"),
                                                        ("hbm multi-bit ecc", "node type=HBM"))


def test_chip_reports_of_temp_power_memory_usages_and_ecc():
    temp = npu_smi.parse_chip_report("\tNPU ID : 5\n\tChip Count : 2\n\n\tNPU Temperature (C) : 88\n\tChip ID : 0\n\n"
                                     "\tNPU Temperature (C) : 61\n\tChip ID : 1\n\n\tLM75A_TE (C) : 40\n\tChip Name : MCU\n")
    assert (temp.npu, temp.chip_count) == (5, 2)
    assert temp.number(npu_smi.TEMPERATURE_KEYS, 0) == 88 and temp.number(npu_smi.TEMPERATURE_KEYS, 1) == 61
    assert temp.mcu == {"LM75A_TE (C)": "40"}
    power = npu_smi.parse_chip_report("\tNPU ID : 0\n\tChip Count : 1\n\n\tNPU Real-time Power(W) : NA\n\tChip ID : 0\n")
    assert power.number(npu_smi.POWER_KEYS, 0) is None
    old_power = npu_smi.parse_chip_report("\tNPU ID : 0\n\tPower Dissipation(W) : 12.8\n")  # 310: no chip id
    assert old_power.number(npu_smi.POWER_KEYS) == 12.8
    memory = npu_smi.parse_chip_report("\tNPU ID : 1\n\tHBM Capacity(MB) : 65536\n\tHBM Temperature(C) : 97\n\tChip ID : 0\n")
    assert memory.number(npu_smi.HBM_TEMPERATURE_KEYS, 0) == 97
    # The common view puts Chip ID first and names the MCU block "mcu".
    common_view = npu_smi.parse_chip_report("\tNPU ID : 1\n\tChip Count : 1\n\n\tChip ID : 0\n\tTemperature(C) : 46\n\n"
                                            "\tChip Name : mcu\n\tTemperature(C) : 38\n")
    assert common_view.number(npu_smi.TEMPERATURE_KEYS, 0) == 46 and common_view.mcu["Temperature(C)"] == "38"
    ecc = npu_smi.parse_chip_report("\tNPU ID : 0\n\tChip Count : 1\n\n\tHBM Single Bit Error Count : 3\n"
                                    "\tHBM Double Bit Error Count : 1\n\tHBM Double Bit Isolated Pages Count : 2\n"
                                    "\tChip ID : 0\n")
    assert npu_smi.ecc_counts(ecc, "HBM", 0) == npu_smi.EccCounts(3, 1, None, None, None, 2)
    assert npu_smi.ecc_counts(ecc, "DDR", 0) is None
    with pytest.raises(common.VendorOutputError, match="no 'NPU ID'"):
        npu_smi.parse_chip_report("\tChip ID : 0\n")


def test_topology_legends_of_old_and_new_drivers():
    old = ("\t   NPU0       NPU1       CPU Affinity\nNPU0       X          PIX        0-23\nNPU1       PIX        X          0-23\n"
           "\nLegend:\n  X    = Self\n  PXB  = Path traversing multipul PCIe switches\n  HCCS = Connection traversing HCCS.\n")
    topo = npu_smi.parse_topo(old)
    assert topo.link("NPU0", "NPU1") == "PIX" and topo.cpu_affinity == {"NPU0": "0-23", "NPU1": "0-23"}
    assert topo.legend["PXB"] == "Path traversing multipul PCIe switches" and "NA" not in topo.legend
    new = ("\t   NPU0       NPU1\nNPU0       X          SIO\nNPU1       SIO        X\n\nLegend:\n\n  X    = Self\n"
           "  SIO  = Path traversing the SIO bus\n  HCCS_SW = Connection traversing HCCS through a switch\n"
           "  NA   = Unknown relationship.\n")
    a3 = npu_smi.parse_topo(new)
    assert a3.link("NPU1", "NPU0") == "SIO" and a3.cpu_affinity == {} and a3.legend["HCCS_SW"].endswith("switch")
    with pytest.raises(common.VendorOutputError, match="no topology header"):
        npu_smi.parse_topo("Legend:\n")


# ------------------------------------------------------------------ hccn_tool

def test_lldp_values_span_lines_and_unknown_tlvs_are_kept():
    text = ("Chassis ID TLV\n\tMAC: 00:11:22:33:44:55\nPort ID TLV\n\tIfname: 200GE1/0/7\n"
            "System Description TLV\n\tSome Switch OS\nRelease 9 (build 7)\n\nModel X-100\n\n"
            "System Capabilities TLV\n\tEnabled capabilities: Bridge\nMaximum Frame Size TLV\n\t9216\n"
            "Port TLV notes\n\tnot a title: it does not end in ' TLV'\nEnd of LLDPDU TLV\n")
    n = hccn_tool.parse_lldp(text)
    assert (n.chassis_id, n.port_id) == ("00:11:22:33:44:55", "200GE1/0/7")
    assert n.system_description == "Some Switch OS\nRelease 9 (build 7)\nModel X-100"
    assert n.tlvs["Maximum Frame Size TLV"] == ["9216", "Port TLV notes", "not a title: it does not end in ' TLV'"]
    assert n.tlvs["System Capabilities TLV"] == ["Enabled capabilities: Bridge"] and n.tlvs["End of LLDPDU TLV"] == []


def test_multi_line_hccn_errors_keep_their_cause():
    noisy = "call drvMngGetConsoleLogLevel failed , g_conLogLevel = 3\nThe device is busy now.\nCmd execute failed!\n"
    assert hccn_tool.hccn_error(noisy).message == "The device is busy now."
    with pytest.raises(common.VendorToolFailure, match="The device is busy now"):
        hccn_tool.parse_link(noisy)
    assert hccn_tool.hccn_error("Command execute failed!\n").message == "Command execute failed!"
    # One line of an unknown cause is an error, not data.
    with pytest.raises(common.VendorOutputError, match="expected only the 'link status"):
        hccn_tool.parse_link("Link information could not be read.\n")
    with pytest.raises(common.VendorOutputError, match="expected 'ipaddr"):
        hccn_tool.parse_ip("Link information could not be read.\n")
    assert hccn_tool.parse_link("call drvMngGetConsoleLogLevel failed , g_conLogLevel = 3\nlink status: UP\n") == "UP"


def test_optical_link_stat_stat_gateway_route():
    optical = hccn_tool.parse_optical("optical info:\npresent              : present\ntemperature          : 51 C\n"
                                      "Tx Power0            : 1.1000 mW\nRx Power0            : 0.0100 mW\n"
                                      "Tx Power1            : 1.2000 mW\nRx Power1            : 0.9000 mW\n"
                                      "RxPower Low Thres    : 0.1445 mW\nRxPower High Thres   : 3.5481 mW\n")
    assert optical.present and optical.temperature_c == 51
    assert optical.rx_power_mw == (0.01, 0.9) and optical.rx_power_low_mw == 0.1445
    assert not hccn_tool.parse_optical("optical info:\npresent              : not present\n").present
    stat = hccn_tool.parse_link_stat("[device 4]current time        : Mon Jan  6 10:00:00 2025\n"
                                     "[device 4]link up count       : 3\n[device 4]link change records :\n"
                                     "[device 4]    Mon Jan  6 09:59:00 2025    LINK UP\n"
                                     "[device 4]    Mon Jan  6 09:58:00 2025    LINK DOWN\n")
    assert (stat.device, stat.up_count, stat.down_count) == (4, 3, 1)
    assert stat.records[0] == ("Mon Jan  6 09:59:00 2025", "LINK UP")
    counters = hccn_tool.parse_stat("packet statistics:\nmac_tx_total_pkt_num:100\nmac_rx_fcs_err_pkt_num:7\n"
                                    "roce_rx_err_pkt_num:0\n")
    assert hccn_tool.error_counters(counters) == {"mac_rx_fcs_err_pkt_num": 7, "roce_rx_err_pkt_num": 0}
    assert hccn_tool.parse_gateway("default gateway:0.0.0.0, Iface:eth1\n") == hccn_tool.Gateway(None, "eth1")
    routes = hccn_tool.parse_route("Routing table:\n"
                                   "Destination     Gateway         Genmask         Flags Metric Ref    Use Iface\n"
                                   "10.0.0.0        *               255.255.255.0   U     0      0        0 eth1\n")
    assert routes == [hccn_tool.Route("10.0.0.0", None, "255.255.255.0", "U", "eth1")]
    with pytest.raises(common.VendorOutputError, match="Destination Gateway"):
        hccn_tool.parse_route("Routing table:\n10.0.0.0 * 255.0.0.0 U 0 0 0 eth1\n")


# ------------------------------------------------------------------ hccl_test

def test_hccl_test_tables_in_both_spellings_and_alignments():
    binary = ("the minbytes is 1024, maxbytes is 4096, iters is 20, warmup_iters is 5\n"
              "data_size(Bytes): | aveg_time(us): | alg_bandwidth(GB/s): | check_result:\n"
              "1024              | 100.00         | 0.01024              | success\n"
              "4096              | 50.00          | 0.08192              | NULL\n")
    docs = ("data_size(Bytes): |   avg_time(us): | alg_bandwidth(GB/s): | check_result:\n"
            "1024              |     100.00    |       0.01024        | success\n")
    r = hccl_test.parse_hccl_test(binary)
    assert (r.min_bytes, r.max_bytes, r.iters, r.warmup_iters) == (1024, 4096, 20, 5)
    assert r.rows == [hccl_test.HcclRow(1024, 100.0, 0.01024, "success"), hccl_test.HcclRow(4096, 50.0, 0.08192, "NULL")]
    assert hccl_test.parse_hccl_test(docs).rows == r.rows[:1]
    assert r.busbw_gbps(r.rows[1], "all_reduce", 8) == pytest.approx(0.08192 * 2 * 7 / 8)
    assert r.busbw_gbps(r.rows[1], "all_gather", 4) == pytest.approx(0.08192 * 3 / 4)
    assert r.busbw_gbps(r.rows[1], "broadcast", 4) == pytest.approx(0.08192)


def test_hccl_test_errors_and_failed_ranks():
    text = ("the minbytes is 8192, maxbytes is 8192, iters is 20, warmup_iters is 5\n"
            "[ERROR] hccl interface return err ./common/src/hccl_test_common.cc:611, retcode: 4 \n"
            "This is an error in init_hcclComm.\n"
            "local rank_id 3, check result failed, 8192              | 10.00          | 0.81920              | failed\n"
            "Warning: The calculation result overflows, No verification is performed.\n"
            "mpirun noticed that process rank 3 exited on signal 9\n")
    r = hccl_test.parse_hccl_test(text)
    assert r.errors == [hccl_test.HcclError(
        "./common/src/hccl_test_common.cc:611", 4, "init_hcclComm",
        "[ERROR] hccl interface return err ./common/src/hccl_test_common.cc:611, retcode: 4")]
    assert len(r.failed_ranks) == 1 and r.rows == []
    assert r.notes == ["Warning: The calculation result overflows, No verification is performed."]
    assert [u.lineno for u in r.unreadable] == [6]


# ------------------------------------------------------------- DCMI codes

def test_dcmi_codes_in_every_spelling_explained_from_one_table():
    exporter = npu_smi.npu_smi_error("dcmi init failed, error code: -8005\n")
    assert exporter.codes == (-8005,)
    cause, fix = explain.explain("dcmi init failed, error code: -8005")
    assert "installed or upgraded without the reboot" in cause and fix.startswith("reboot after installing")
    alone = explain.explain("dcmi model initialized failed, because the device is used. ret is -8020")
    assert alone[0].startswith("another process or container holds the device")
    container = explain.explain("DrvMngGetConsoleLogLevel failed. (ret=4)\n"
                                "dcmi model initialized failed, because the device is used. ret is -8020\n"
                                "npu get board type failed. ret is -9005\n")
    assert "lacks the driver mounts" in container[0] and "/etc/ascend_install.info" in container[1]
    assert "stopping other containers does not cure it" in container[1]
    assert codes.dcmi_codes_in("npu-smi 25.0.rc1.b033 Version: 25.0.rc1.b033") == []
    assert codes.dcmi_meaning(-8255) == "device id or function not supported"


def test_health_states_and_fault_levels_are_written_once():
    assert [codes.health_verdict(s) for s in ("OK", "Warning", "Alarm", "Critical", "Degraded")] == [
        "pass", "warn", "fail", "fail", "fail"]
    assert codes.fault_level("0x80E18402").name == "SeparateNPU"     # also listed nowhere lower
    assert codes.fault_level("A2301001").name == "SeparateNPU"       # listed twice: the higher level wins
    assert codes.fault_level("a4025021").verdict == "warn"            # NotHandleFault
    assert codes.fault_level("12345678") is None

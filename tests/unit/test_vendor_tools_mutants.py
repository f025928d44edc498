"""validation.node.vendor_tools' modules: what each parser says about output it cannot read (the message,
the line and its number), and the corners of the vendor's formats (FORMAT_NOTES.md) that the whole-sample
tests do not reach.

Found by mutation testing (bench/mutate.py run validation/node/vendor_tools/<module>.py). Layouts follow
tests/fixtures/vendor_samples/FORMAT_NOTES.md; a message is "<what> (line N: '<the line>')" when the parser
knows the line's number, "<what>: '<text>'" when it only has the text.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from validation.node.vendor_tools import common, hccl_test, hccn_tool, kernel_log, npu_smi

SAMPLES = Path(__file__).resolve().parents[1] / "fixtures" / "vendor_samples"


def sample(name: str) -> str:
    return (SAMPLES / name).read_text()


def at(message: str, lineno: int, line: str) -> str:
    """The parsers' message for a line they name."""
    return f"{message} (line {lineno}: {line!r})"


def error(parse, text):
    with pytest.raises(common.VendorOutputError) as e:
        parse(text)
    return str(e.value), e.value.lineno, e.value.line


# --------------------------------------------------------------- npu-smi info

# The 910B layout of driver 25.2.0 (tests/fixtures/vendor_samples/npu-smi_info_910B3_25.2.0_8npu_with_process.txt):
# the banner and the two header rows are lines 1-6, the first chip row is line 7.
HEAD = [
    "+------------------------------------------------------------------------------------------------+",
    "| npu-smi 25.2.0                   Version: 25.2.0                                               |",
    "+---------------------------+---------------+----------------------------------------------------+",
    "| NPU   Name                | Health        | Power(W)    Temp(C)           Hugepages-Usage(page)|",
    "| Chip                      | Bus-Id        | AICore(%)   Memory-Usage(MB)  HBM-Usage(MB)        |",
    "+===========================+===============+====================================================+",
]
PROC_HEAD = "| NPU     Chip              | Process id    | Process name             | Process memory(MB)      |"


def first(npu="0", name="910B3", health="OK", usage="94.8        36                0    / 0"):
    return f"| {npu:<5} {name:<20}| {health:<14}| {usage:<51}|"


def second(chip="0", bus="0000:C1:00.0", usage="0           0    / 0          3407 / 65536"):
    return f"| {chip:<26}| {bus:<14}| {usage:<51}|"


GOOD = [first(), second()]


def table(*rows, head=HEAD):
    return "\n".join([*head, *rows]) + "\n"


def test_a_good_chip_reads_whole():
    info = npu_smi.parse_npu_smi_info(table(*GOOD))
    assert info.chips == [npu_smi.NpuChip(0, 0, "910B3", "OK", 94.8, 36, (0, 0), "0000:C1:00.0", 0, (0, 0), (3407, 65536))]
    assert (info.npu_smi_version, info.version, info.unreadable) == ("25.2.0", "25.2.0", [])
    assert info.has_process_section is False


@pytest.mark.parametrize("row, reason", [
    # the top cell: Power Temp [Hugepages used / total]
    (first(usage="94.8        36                0    /"), "a '/' without a value on each side"),
    (first(usage="/ 5"), "a '/' without a value on each side"),
    (first(usage="94.8 36 0 / 0 / 5"), "a '/' without a value on each side"),
    (first(usage="94.8"), "expected 'Power Temp [Hugepages-used / total]'"),
    (first(usage="94.8 36 0 / 0 12"), "expected 'Power Temp [Hugepages-used / total]'"),
    (first(usage="high 36 0 / 0"), "Power(W) is not a number: 'high'"),
    (first(usage="94.8 hot 0 / 0"), "Temp(C) is not a number: 'hot'"),
    (first(usage="94.8 36 12"), "Hugepages is not 'used / total'"),
    (first(usage="94.8 36 x / 0"), "Hugepages is not a number: 'x'"),
    (first(usage="94.8 36 0 / y"), "Hugepages is not a number: 'y'"),
    # a first row whose NPU id is a digit to str.isdigit() and not to int()
    (first(npu="\u00b2"), "NPU is not a number: '\u00b2'"),
])
def test_a_bad_first_row_is_named_with_its_own_line(row, reason):
    info = npu_smi.parse_npu_smi_info(table(*GOOD, row, second(bus="0000:C2:00.0")))
    assert [c.bus_id for c in info.chips] == ["0000:C1:00.0"]
    assert info.unreadable == [common.Unread(9, row, at(reason, 9, row))]


@pytest.mark.parametrize("row, reason", [
    (second(usage="0 0 / / 3407"), "a '/' without a value on each side"),
    (second(usage="0"), "expected '<Chip> [<id>] | <Bus-Id> | AICore Memory [HBM]'"),
    (second(usage="0 0 / 0 3407 / 65536 9"), "expected '<Chip> [<id>] | <Bus-Id> | AICore Memory [HBM]'"),
    (second(usage="busy 0 / 0 3407 / 65536"), "AICore(%) is not a number: 'busy'"),
    (second(usage="0 7 3407 / 65536"), "Memory-Usage is not 'used / total'"),
    (second(usage="0 m / 0 3407 / 65536"), "Memory-Usage is not a number: 'm'"),
    (second(usage="0 0 / 0 3407"), "HBM-Usage is not 'used / total'"),
    (second(usage="0 0 / 0 h / 65536"), "HBM-Usage is not a number: 'h'"),
])
def test_a_bad_second_row_is_named_with_its_own_line(row, reason):
    info = npu_smi.parse_npu_smi_info(table(*GOOD, first(npu="1"), row))
    assert [c.npu for c in info.chips] == [0]
    assert info.unreadable == [common.Unread(10, row, at(reason, 10, row))]


def test_a_name_holding_a_space_is_kept_whole():
    # the name is everything after the NPU id in the first cell (310 cards print names like "310" that are digits)
    [chip] = npu_smi.parse_npu_smi_info(table(first(name="Ascend 910B"), second())).chips
    assert (chip.npu, chip.name) == (0, "Ascend 910B")


def test_bars_without_padding_still_give_the_cells():
    text = table("|0 910B3|OK|94.8 36 0 / 0|", "|0|0000:C1:00.0|0 0 / 0 3407 / 65536|")
    [chip] = npu_smi.parse_npu_smi_info(text).chips
    assert (chip.npu, chip.name, chip.health, chip.bus_id, chip.hbm_mb) == (0, "910B3", "OK", "0000:C1:00.0",
                                                                          (3407, 65536))


def test_without_the_column_header_the_usage_columns_tell_the_chip_id_kind():
    # a copy cut above the header: a row without HBM is a 310/310P (its id is the Device), one with HBM an A2/A3
    p310 = npu_smi.parse_npu_smi_info("| 0       310P3     | OK   | 16.7  57  0 / 0 |\n"
                                      "| 0       5         | 0000:5E:00.0 | 0  932 / 21534 |\n")
    assert [(c.device_id, c.phy_id) for c in p310.chips] == [(5, None)]
    a3 = npu_smi.parse_npu_smi_info("| 0     Ascend910 | OK | 164.3 32 0 / 0 |\n"
                                    "| 0     0         | 0000:9D:00.0 | 0 0 / 0 3381 / 65536 |\n")
    assert [(c.device_id, c.phy_id) for c in a3.chips] == [(None, 0)]


def test_the_column_header_names_the_chip_id():
    a3_head = [*HEAD[:4], "| Chip  Phy-ID              | Bus-Id        | AICore(%)   Memory-Usage(MB)  HBM-Usage(MB)        |"]
    [chip] = npu_smi.parse_npu_smi_info(table(first(name="Ascend910"), second(chip="1     3"), head=a3_head)).chips
    assert (chip.chip, chip.phy_id, chip.device_id) == (1, 3, None)


def test_lines_that_are_not_table_rows():
    cut = "| 1     910B3               | OK            | 90.5        34     "
    lines = [*GOOD, "...", "\u2026", "[root@node ~]#", "|", cut, "| a lone remark |", first(npu="1"), second()]
    info = npu_smi.parse_npu_smi_info(table(*lines))
    assert [c.npu for c in info.chips] == [0, 1]       # the rows after the damaged ones are still read
    assert info.unreadable == [
        common.Unread(9, "...", "elided in the published copy"),
        common.Unread(10, "\u2026", "elided in the published copy"),
        common.Unread(11, "[root@node ~]#", "not part of the npu-smi table"),
        common.Unread(12, "|", "a row cut short"),
        common.Unread(13, cut, "a row cut short"),
        common.Unread(14, "| a lone remark |", "a row of 1 cells where the table has none"),
    ]
    assert info.has_process_section is False


def test_rows_that_look_like_a_header_in_one_cell_only_are_reported_not_taken():
    # a header is known by two cells; a row matching one of them is damaged output and is listed as
    # unreadable, never read as a header that would change how the rows after it are read
    bus_only = "| 0     x                   | Bus-Id        | 0           0    / 0          3407 / 65536      |"
    process_only = "| 0 0 | Process id | python | 100 |"
    banner_in_a_row = "| npu-smi 9.9.9 Version: 9.9.9 | OK | 1 |"
    info = npu_smi.parse_npu_smi_info(table(*GOOD, bus_only, banner_in_a_row, PROC_HEAD, process_only))
    assert [(u.lineno, u.line) for u in info.unreadable] == [(9, bus_only), (10, banner_in_a_row),
                                                             (12, process_only)]
    assert (info.npu_smi_version, info.version) == ("25.2.0", "25.2.0") and [c.npu for c in info.chips] == [0]


def test_an_error_information_line_continued_after_a_colon_keeps_its_own_colons():
    health = npu_smi.parse_health("\tHealth Status : Alarm\n\tError Code : 80E01801\n"
                                  "\tError Information : heart beat lost\n\t                  : code: 80E18008\n")
    assert health.error_info == ("heart beat lost", "code: 80E18008")


def test_chip_rows_that_lost_their_partner():
    lone_second = second(bus="0000:C9:00.0")
    junk = "| x | y | z |"
    rows = [*GOOD, lone_second, first(npu="1"), first(npu="2"), second(), first(npu="3"), junk, second(),
            first(npu="4")]
    info = npu_smi.parse_npu_smi_info(table(*rows))
    assert [c.npu for c in info.chips] == [0, 2, 3]
    assert info.unreadable == [
        common.Unread(9, lone_second, "a chip's second row without its first"),
        common.Unread(10, first(npu="1"), "a chip's first row without its second"),
        common.Unread(14, junk, "not a chip row"),
        common.Unread(16, first(npu="4"), "a chip's first row without its second"),
    ]


def test_a_first_row_right_before_the_process_header_is_named():
    info = npu_smi.parse_npu_smi_info(table(*GOOD, first(npu="1"), PROC_HEAD))
    assert info.unreadable == [common.Unread(9, first(npu="1"), "a chip's first row without its second")]
    assert info.has_process_section is True and info.processes == []


def test_the_device_section_holds_no_process_rows_and_the_process_section_no_chip_rows():
    four = "| 0       0                 | 1601114       | python                   | 18429                   |"
    rows = [*GOOD, four, PROC_HEAD, first(npu="1"), "| No running processes found in NPU 2 |", second()]
    info = npu_smi.parse_npu_smi_info(table(*rows))
    assert info.processes == [] and [c.npu for c in info.chips] == [0]
    assert info.unreadable == [
        common.Unread(9, four, "a row of 4 cells where the table has none"),
        common.Unread(11, first(npu="1"), "a row of 3 cells where the table has none"),
        common.Unread(13, second(), "a row of 3 cells where the table has none"),
    ]
    assert info.has_process_section is True


def test_a_no_processes_line_opens_the_process_section():
    info = npu_smi.parse_npu_smi_info(table(*GOOD, "| No running processes found in NPU 0 |", first(npu="1"), second()))
    assert info.has_process_section is True and [c.npu for c in info.chips] == [0]
    assert [u.reason for u in info.unreadable] == ["a row of 3 cells where the table has none"] * 2


def test_process_rows_of_a_copy_cut_below_the_device_table():
    rows = ["| 4       0                 | 1601114       | python                   | 18429                   |",
            "| 5       1                 | 77            | torchrun                 | 12                      |"]
    info = npu_smi.parse_npu_smi_info("\n".join(rows) + "\n")
    assert info.chips == [] and info.has_process_section is True
    assert info.processes == [npu_smi.NpuProcess(4, 0, 1601114, "python", 18429), npu_smi.NpuProcess(5, 1, 77, "torchrun", 12)]


@pytest.mark.parametrize("row, reason", [
    ("| 4 | 1601114 | python | 18429 |", "expected '<NPU> <Chip> | pid | name | memory [| pid in container]'"),
    ("| 4 0 1 | 1601114 | python | 18429 |", "expected '<NPU> <Chip> | pid | name | memory [| pid in container]'"),
    ("| four 0 | 1601114 | python | 18429 |", "NPU is not a number: 'four'"),
    ("| 4 zero | 1601114 | python | 18429 |", "Chip is not a number: 'zero'"),
    ("| 4 0 | pid | python | 18429 |", "Process id is not a number: 'pid'"),
    ("| 4 0 | 1601114 | python | lots |", "Process memory is not a number: 'lots'"),
])
def test_a_bad_process_row_is_named(row, reason):
    good = "| 5 0 | 77 | torchrun | 12 |"
    info = npu_smi.parse_npu_smi_info(table(*GOOD, PROC_HEAD, row, good))
    assert info.unreadable == [common.Unread(10, row, at(reason, 10, row))]
    assert info.processes == [npu_smi.NpuProcess(5, 0, 77, "torchrun", 12)]


@pytest.mark.parametrize("cell", ["NA", "N/A", "-", ""])
def test_a_process_id_in_container_that_is_not_available_is_none(cell):
    row = f"| 2 1 | 40001 | python3 | 6000 | {cell} |"
    [proc] = npu_smi.parse_npu_smi_info(table(*GOOD, PROC_HEAD, row)).processes
    assert proc == npu_smi.NpuProcess(2, 1, 40001, "python3", 6000, None)


def test_no_table_at_all_names_the_first_line_or_quotes_the_text():
    assert error(npu_smi.parse_npu_smi_info, "\nbash: npu-smi: command not found\nexit 127\n") == (
        at("no npu-smi info table with chips found", 2, "bash: npu-smi: command not found"), 2,
        "bash: npu-smi: command not found")
    rules = "+" + "-" * 250 + "+\n"
    assert error(npu_smi.parse_npu_smi_info, rules) == (
        f"no npu-smi info table with chips found: {rules[:200]!r}", None, rules[:200])


def test_a_chip_that_is_not_there_is_named():
    info = npu_smi.parse_npu_smi_info(table(*GOOD))
    with pytest.raises(KeyError) as e:
        info.chip(0, 1)
    assert e.value.args == ("no NPU 0 chip 1 in npu-smi output",)


# ------------------------------------------------------------ npu-smi errors

def test_every_coded_line_is_kept_in_the_message():
    # tests/fixtures/vendor_samples/heldout/npu-smi_error_-8020_-9005_container_easyr1.txt, as FORMAT_NOTES.md section 4
    text = ("DrvMngGetConsoleLogLevel failed. (ret=4)\n"
            "dcmi model initialized failed, because the device is used. ret is -8020\n"
            "npu get board type failed. ret is -9005\n")
    error_ = npu_smi.npu_smi_error(text)
    assert error_ == common.ToolError("dcmi model initialized failed, because the device is used. ret is -8020; "
                                      "npu get board type failed. ret is -9005", codes=(-8020, -9005))


def test_a_rejected_parameter_takes_the_invalid_line_before_it_only():
    assert npu_smi.npu_smi_error("Error parameter of -c\n") == common.ToolError("Error parameter of -c", parameter="-c")
    assert npu_smi.npu_smi_error("npu-smi info -t board -i 9 -c 4\nError parameter of -c\n") == common.ToolError(
        "Error parameter of -c", parameter="-c")
    assert npu_smi.npu_smi_error("Invalid chip id.\nError parameter of -c\n") == common.ToolError(
        "Invalid chip id.", parameter="-c")


def test_the_usage_text_alone_is_an_error():
    usage = "Usage: npu-smi info <watch|proc|-h|-m|-l|-t type> [Options...]"
    assert npu_smi.npu_smi_error(usage + "\n") == common.ToolError(usage)
    watch = "\n       watch  Show all device's status in scrolling format.\n"
    assert npu_smi.npu_smi_error(usage + watch) == common.ToolError(usage)
    assert npu_smi.npu_smi_error("usage: something else\n") is None


def test_a_tool_error_without_codes_describes_itself_by_its_message():
    assert common.ToolError("Invalid card id.", parameter="-i").describe() == "Invalid card id."


# ----------------------------------------------------- npu-smi key/value outputs

NOISE = "DrvMngGetConsoleLogLevel failed. (ret=4)\n"


def test_driver_noise_before_key_value_output_is_skipped():
    health = NOISE + "\tHealth Status                  : OK\n\tError Code                     : NA\n"
    assert npu_smi.parse_health(health) == npu_smi.Health("OK", (), ())
    listed = NOISE + "\tTotal Count                    : 1\n\n\tNPU ID                         : 0\n" \
                     "\tChip Count                     : 1\n"
    assert npu_smi.parse_npu_smi_list(listed) == npu_smi.NpuList(1, {0: 1})
    report = NOISE + "\tNPU ID                         : 0\n\tChip Count                     : 1\n\n" \
                     "\tNPU Temperature (C)            : 41\n\tChip ID                        : 0\n"
    assert npu_smi.parse_chip_report(report).chips == {0: {"NPU Temperature (C)": "41"}}


@pytest.mark.parametrize("text, lineno, reason", [
    ("\tTotal Count : 8\n\tNPU ID : 0\n\tChip Count : one\n", 3, "Chip Count is not a number: 'one'"),
    ("\tTotal Count : eight\n", 1, "Total Count is not a number: 'eight'"),
    ("\tTotal Count : 8\n\tNPU ID : zero\n", 2, "NPU ID is not a number: 'zero'"),
    ("\tTotal Count : 8\n\tChip Count : 1\n", 2, "unexpected key in 'npu-smi info -l'"),
    ("\tTotal Count : 8\n\tNPU ID : 0\n\tChip Name : 910B3\n", 3, "unexpected key in 'npu-smi info -l'"),
    ("\tTotal Count : 8\n\tNPU ID 0\n", 2, "expected 'key : value'"),
])
def test_npu_smi_list_names_the_bad_line(text, lineno, reason):
    line = text.splitlines()[lineno - 1]
    assert error(npu_smi.parse_npu_smi_list, text) == (at(reason, lineno, line), lineno, line)


def test_npu_smi_list_without_a_total_quotes_the_text():
    text = "\tNPU ID : 0\n\tChip Count : 1\n"
    assert error(npu_smi.parse_npu_smi_list, text) == (
        f"no 'Total Count' in 'npu-smi info -l' output: {text!r}", None, text)


def test_board_errors():
    text = "\tNPU ID : 0\n\t: 0x19E5\n"
    assert error(npu_smi.parse_board, text) == (at("a line without a key", 2, "\t: 0x19E5"), 2, "\t: 0x19E5")
    text = "\tSoftware Version : 23.0.5\n"
    assert error(npu_smi.parse_board, text) == (f"no 'NPU ID' in board output: {text!r}", None, text)


@pytest.mark.parametrize("text, lineno, reason", [
    ("\tHealth Status : Warning Alarm\n", 1, "a health status is one word"),
    ("\tHealth Status :\n", 1, "a health status is one word"),
    ("\tHealth Status : OK\n\tTemperature : 41\n", 2, "unexpected key in health output"),
    ("\tHealth Status : OK\n\tError Code NA\n", 2, "expected 'key : value'"),
])
def test_health_names_the_bad_line(text, lineno, reason):
    line = text.splitlines()[lineno - 1]
    assert error(npu_smi.parse_health, text) == (at(reason, lineno, line), lineno, line)


def test_health_without_a_status_quotes_the_text():
    text = "\tError Code : NA\n"
    assert error(npu_smi.parse_health, text) == (f"no 'Health Status' in health output: {text!r}", None, text)


def test_health_values_that_are_not_available():
    assert npu_smi.parse_health("\tHealth Status : OK\n\tError Code :\n\tError Information :\n") == \
        npu_smi.Health("OK", (), ())
    assert npu_smi.parse_health("\tHealth Status : OK\n\tError Code : N/A\n\tError Information : NA\n") == npu_smi.Health(
        "OK", (), ())


# ---------------------------------------------------------- chip reports (-t ...)

def test_chip_report_errors_name_the_line():
    text = "\tNPU ID : 0\n\tChip Count : 1\n\n\tAicore Usage Rate(%) 3\n"
    assert error(npu_smi.parse_chip_report, text) == (at("expected 'key : value'", 4, "\tAicore Usage Rate(%) 3"), 4,
                                                      "\tAicore Usage Rate(%) 3")
    text = "\tNPU ID : 0\n\t: 3\n"
    assert error(npu_smi.parse_chip_report, text) == (at("expected 'key : value'", 2, "\t: 3"), 2, "\t: 3")
    for key, bad in (("NPU ID", "zero"), ("Chip Count", "one"), ("Chip ID", "first")):
        text = f"\tNPU ID : 0\n\n\t{key} : {bad}\n"
        line = f"\t{key} : {bad}"
        assert error(npu_smi.parse_chip_report, text) == (at(f"{key} is not a number: {bad!r}", 3, line), 3, line)
    text = "\tChip Count : 1\n"
    assert error(npu_smi.parse_chip_report, text) == (f"no 'NPU ID' in the output: {text!r}", None, text)


def test_chip_report_values_hold_colons_and_chip_names():
    text = ("\tNPU ID : 0\n\tChip Count : 1\n\n"
            "\tChip ID : 0\n\tChip Name : 910B3\n\tPCIe Bus Info : 0000:C1:00.0\n\n"
            "\tChip Name : mcu\n\tTemperature(C) : 38\n")
    report = npu_smi.parse_chip_report(text)
    assert report.chips == {0: {"Chip Name": "910B3", "PCIe Bus Info": "0000:C1:00.0"}}
    assert report.mcu == {"Temperature(C)": "38"}


def test_chip_report_values_of_one_chip_or_of_the_chip_asked_for():
    one = npu_smi.ChipReport(0, 1, {0: {"a": "1"}})
    assert one.values() == {"a": "1"} and one.values(0) == {"a": "1"} and one.values(1) == {}
    unnamed = npu_smi.ChipReport(0, None, {None: {"a": "2"}})
    assert unnamed.values() == {"a": "2"} and unnamed.values(3) == {"a": "2"}
    two = npu_smi.ChipReport(0, 2, {0: {"a": "1"}, 1: {"a": "3"}})
    assert two.values() == {} and two.values(1) == {"a": "3"} and two.values(2) == {}
    assert npu_smi.ChipReport(0, 0, {}).values() == {}
    both = npu_smi.ChipReport(0, 2, {None: {"a": "4"}, 1: {"a": "5"}})
    assert both.values(7) == {}


def test_a_number_that_is_not_one_reads_as_absent():
    report = npu_smi.ChipReport(0, 1, {0: {"Temperature (C)": "unknown", "NPU Real-time Power(W)": "93.5"}})
    assert report.number(npu_smi.TEMPERATURE_KEYS) is None
    assert report.number(npu_smi.POWER_KEYS) == 93.5


def test_ecc_counts_default_to_the_hbm_of_the_chip_asked_for():
    hbm = {"HBM Single Bit Error Count": "0", "HBM Double Bit Error Count": "2",
           "HBM Single Bit Aggregate Total Err Cnt": "5", "HBM Double Bit Aggregate Total Err Cnt": "2",
           "HBM Single Bit Isolated Pages Count": "0", "HBM Double Bit Isolated Pages Count": "1"}
    report = npu_smi.ChipReport(1, 2, {0: {"HBM Double Bit Error Count": "9"}, 1: hbm})
    assert npu_smi.ecc_counts(report, chip=1) == npu_smi.EccCounts(0, 2, 5, 2, 0, 1)
    assert npu_smi.ecc_counts(report, chip=0) == npu_smi.EccCounts(None, 9, None, None, None, None)
    assert npu_smi.ecc_counts(npu_smi.ChipReport(1, 1, {0: {"HBM Double Bit Error Count": "many"}})) is None


def test_mapping_errors():
    assert error(npu_smi.parse_mapping, "") == ("expected the 'NPU ID  Chip ID  Chip Logic ID  Chip Name' header: ''",
                                                None, "")
    text = "\nNPU  Chip  Logic  Name\n0 0 0 Ascend 910B4\n"
    assert error(npu_smi.parse_mapping, text) == (
        at("expected the 'NPU ID  Chip ID  Chip Logic ID  Chip Name' header", 2, "NPU  Chip  Logic  Name"), 2,
        "NPU  Chip  Logic  Name")
    head = "NPU ID                         Chip ID                        Chip Logic ID                  Chip Name\n"
    for row, reason in (("0 0 0", "expected 'NPU Chip LogicID Name'"),
                        ("x 0 0 Ascend 910B4", "NPU ID is not a number: 'x'"),
                        ("0 y 0 Ascend 910B4", "Chip ID is not a number: 'y'"),
                        ("0 0 z Ascend 910B4", "Chip Logic ID is not a number: 'z'")):
        assert error(npu_smi.parse_mapping, head + "0 0 0 Ascend 910B4\n" + row + "\n") == (at(reason, 3, row), 3, row)


def test_topology_lines_it_cannot_read():
    text = sample("npu-smi_info_-t_topo_910B3_8npu.txt")
    clean = npu_smi.parse_topo(text)
    assert clean.unreadable == []
    lines = text.splitlines()
    header = next(i for i, line in enumerate(lines) if "NPU0" in line)
    label = "=== node-3 topology ==="
    bad_row = "GPU0 X HCCS HCCS HCCS HCCS HCCS HCCS HCCS 144-167"
    extra = lines[header + 1] + " HCCS"
    damaged = lines[:header] + [label, lines[header].rstrip() + "   "] + [bad_row, extra] + lines[header + 2:]
    damaged += ["a legend line without its sign"]
    topo = npu_smi.parse_topo("\n".join(damaged) + "\n")
    n = header + 1
    assert topo.unreadable == [
        common.Unread(n, label, "before the topology header"),
        common.Unread(n + 2, bad_row, "expected a device and 8 link cells"),
        common.Unread(n + 3, extra, "expected a device and 8 link cells"),
        common.Unread(len(damaged), "a legend line without its sign", "not a Legend line"),
    ]
    assert topo.cpu_affinity["NPU7"] == "48-71" and "NPU0" not in topo.cpu_affinity
    assert ("GPU0", "NPU0") not in topo.links
    # a meaning is free text after the first '=', itself holding any
    legend = npu_smi.parse_topo("\t   NPU0\nNPU0   X\nLegend:\n  SIO  = on-chip link (HCCS=off)\n").legend
    assert legend == {"SIO": "on-chip link (HCCS=off)"}


def test_topology_rows_without_the_cpu_affinity_cell():
    # A3 on Arm hosts prints no CPU Affinity column; a row may lack it even under a header that has it
    text = ("\t   NPU0       NPU1       CPU Affinity\n"
            "NPU0       X          HCCS       0-23\n"
            "NPU1       HCCS       X\n")
    topo = npu_smi.parse_topo(text)
    assert topo.links == {("NPU0", "NPU0"): "X", ("NPU0", "NPU1"): "HCCS", ("NPU1", "NPU0"): "HCCS",
                          ("NPU1", "NPU1"): "X"}
    assert topo.cpu_affinity == {"NPU0": "0-23"} and topo.unreadable == []
    plain = npu_smi.parse_topo("\t   NPU0       NPU1\nNPU0       X          HCCS\nNPU1       HCCS       X       SYS\n")
    assert plain.unreadable == [common.Unread(3, "NPU1       HCCS       X       SYS", "expected a device and 2 link cells")]


def test_no_topology_header_names_the_first_line_or_quotes_the_text():
    assert error(npu_smi.parse_topo, "\nnpu-smi: not found\n") == (
        at("no topology header with NPU columns found", 2, "npu-smi: not found"), 2, "npu-smi: not found")
    text = "Legend:\n" + "X = Self\n" * 30
    assert error(npu_smi.parse_topo, text) == (f"no topology header with NPU columns found: {text[:200]!r}", None,
                                               text[:200])


# ---------------------------------------------------------------- hccn_tool

@pytest.mark.parametrize("parse, what", [
    (hccn_tool.parse_link, "'link status: UP|DOWN'"),
    (hccn_tool.parse_net_health, "'net health status: <state>'"),
    (hccn_tool.parse_netdetect, "'netdetect address: <ip>'"),
    (hccn_tool.parse_gateway, "'default gateway:<ip>, Iface:<eth>'"),
])
def test_one_line_getters_name_what_they_expected(parse, what):
    assert error(parse, "") == (f"no {what} output", None, None)
    assert error(parse, "\nsomething else\n") == (at(f"expected only the {what} line", 2, "something else"), 2,
                                                  "something else")


@pytest.mark.parametrize("parse, good, what", [
    (hccn_tool.parse_link, "link status: UP", "'link status: UP|DOWN'"),
    (hccn_tool.parse_net_health, "net health status: Success", "'net health status: <state>'"),
    (hccn_tool.parse_netdetect, "netdetect address: 11.12.165.1", "'netdetect address: <ip>'"),
    (hccn_tool.parse_gateway, "default gateway:29.1.0.1, Iface:eth3", "'default gateway:<ip>, Iface:<eth>'"),
])
def test_one_line_getters_name_a_second_line(parse, good, what):
    assert error(parse, f"{good}\n{good}\n") == (at(f"expected only the {what} line", 2, good), 2, good)


def test_unset_addresses_are_none():
    assert hccn_tool.parse_netdetect("netdetect addr:\n") is None
    assert hccn_tool.parse_netdetect("netdetect address: 0.0.0.0\n") is None
    assert hccn_tool.parse_gateway("default gateway:\n") == hccn_tool.Gateway(None, None)
    assert hccn_tool.parse_gateway("default gateway:0.0.0.0, Iface:eth0\n") == hccn_tool.Gateway(None, "eth0")


def test_ip_errors():
    assert error(hccn_tool.parse_ip, "ipaddr:10.0.0.2\naddress 10.0.0.3\n") == (
        at("expected 'ipaddr:<ip>' or 'netmask:<mask>'", 2, "address 10.0.0.3"), 2, "address 10.0.0.3")
    text = "ipaddr:10.0.0.2\n"
    assert error(hccn_tool.parse_ip, text) == (f"expected both 'ipaddr:' and 'netmask:' lines: {text!r}", None, text)


def test_route_rows_and_errors():
    routes = hccn_tool.parse_route(sample("heldout/hccn_tool_-route_-g_blog.txt"))
    assert routes[0] == hccn_tool.Route("default", "29.1.0.1", "0.0.0.0", "UG", "eth3")
    assert routes[1] == hccn_tool.Route("29.1.0.0", None, "255.255.0.0", "U", "eth3")
    zero = hccn_tool.parse_route("Destination     Gateway         Genmask         Flags Metric Ref    Use Iface\n"
                                 "29.1.0.0        0.0.0.0         255.255.0.0     U     0      0        0 eth3\n")
    assert zero == [hccn_tool.Route("29.1.0.0", None, "255.255.0.0", "U", "eth3")]
    row = "29.1.0.0        *               255.255.0.0     U     0      0        0 eth3"
    assert error(hccn_tool.parse_route, "Routing table:\n" + row + "\n") == (
        at("expected 'Destination Gateway Genmask Flags Metric Ref Use Iface' rows", 2, row), 2, row)
    assert error(hccn_tool.parse_route, "Routing table:\n") == ("no routing table header: 'Routing table:\\n'", None,
                                                                "Routing table:\n")


def test_lldp_titles_values_and_missing_tlvs():
    text = ("Chassis ID TLV   \n"                        # a title padded with spaces
            "        MAC: 00:e0:fc:12:34:56\n"
            "Port ID TLV\n"
            "        400GE1/1/5:1\n"                    # a port id without its subtype label
            "System Name TLV\n"
            "        leaf-3 TLV\n"                      # an indented value ending in " TLV" is still a value
            "x\n")                                      # a one-character continuation at column 0
    lldp = hccn_tool.parse_lldp(text)
    assert (lldp.chassis_id, lldp.port_id, lldp.system_name) == ("00:e0:fc:12:34:56", "400GE1/1/5:1", "leaf-3 TLV")
    assert lldp.system_description == "" and lldp.mgmt_ipv4 is None
    assert lldp.tlvs == {"Chassis ID TLV": ["MAC: 00:e0:fc:12:34:56"], "Port ID TLV": ["400GE1/1/5:1"],
                         "System Name TLV": ["leaf-3 TLV", "x"]}
    assert hccn_tool.parse_lldp("Port ID TLV\n").system_name == ""
    assert error(hccn_tool.parse_lldp, "\n        MAC: 00:e0:fc:12:34:56\nPort ID TLV\n") == (
        at("an LLDP value before any TLV title", 2, "        MAC: 00:e0:fc:12:34:56"), 2,
        "        MAC: 00:e0:fc:12:34:56")


def test_ping_reads_the_target_and_the_summary():
    # heldout/hccn_tool_-ping_-g_blog.txt, and the newer syntax FORMAT_NOTES.md section 5 names
    assert hccn_tool.parse_ping(sample("heldout/hccn_tool_-ping_-g_blog.txt")) == \
        hccn_tool.PingResult("29.1.137.205", 3, 3, 0.0)
    newer = ("device 0 dev eth0 PING 29.1.137.204 to 29.1.137.205\n"
             "recv seq=0,time=1.418000ms\n"
             "device 0 dev eth0 PING 29.1.137.204 to 29.1.137.206\n"
             "3 packets transmitted, 2 received, 33.33% packet loss\n")
    result = hccn_tool.parse_ping(newer)
    assert result == hccn_tool.PingResult("29.1.137.205", 3, 2, 33.33) and not result.ok
    assert hccn_tool.parse_ping("recv seq=0,time=1.4ms\n1 packets transmitted, 1 received, 0.00% packet loss\n") == \
        hccn_tool.PingResult("", 1, 1, 0.0)
    text = "device 0 PING 10.0.0.2\n"
    assert error(hccn_tool.parse_ping, text) == (
        f"no 'packets transmitted, received, packet loss' summary: {text!r}", None, text)


def test_ping_from_a_port_without_an_ip_names_the_cause():
    # FORMAT_NOTES.md section 5: noise, the specific cause, the generic trailer
    text = ("call drvMngGetConsoleLogLevel failed , g_conLogLevel = 3\n"
            "Get ipconf failed, because no ip was preset there!\n"
            "Cmd execute failed!\n")
    with pytest.raises(common.VendorToolFailure) as e:
        hccn_tool.parse_ping(text)
    assert e.value.error == common.ToolError("Get ipconf failed, because no ip was preset there!")


def test_optical_sample_fields():
    optical = hccn_tool.parse_optical(sample("hccn_tool_-optical_-g.txt"))
    assert optical.present is False and optical.temperature_c == 47.0
    assert optical.tx_power_mw == (4.4035, 1.3968, 1.4140, 1.4988)
    assert optical.rx_power_mw == (1.0189, 0.0054, 0.9907, 1.0213)
    assert (optical.rx_power_low_mw, optical.rx_power_high_mw) == (0.1445, 3.5481)
    assert (optical.tx_power_low_mw, optical.tx_power_high_mw) == (0.2818, 3.5481)
    assert "optical info" not in optical.values and optical.values["manufact date code"] == "2023.6.18"
    assert optical.values["vendor org unique id"] == "0xac 0x4a 0x0"


def test_optical_lanes_stop_at_eight():
    # QSFP-DD and OSFP modules carry 8 lanes at most: a ninth numbered line is not a lane of the module
    lines = "".join(f"Tx Power{n} : {n + 1}.0 mW\nRx Power{n} : {n + 1}.5 mW\n" for n in range(9))
    optical = hccn_tool.parse_optical("optical info:\npresent : present\n" + lines)
    assert optical.tx_power_mw == tuple(float(n) for n in range(1, 9))
    assert optical.rx_power_mw == tuple(n + 0.5 for n in range(1, 9))


def test_optical_errors_and_a_value_holding_a_colon():
    text = "optical info:\npresent              : present\nvendor time          : 12:30\n"
    assert hccn_tool.parse_optical(text).values == {"present": "present", "vendor time": "12:30"}
    assert error(hccn_tool.parse_optical, "optical info:\npresent\n") == (at("expected 'key : value'", 2, "present"), 2,
                                                                          "present")
    assert error(hccn_tool.parse_optical, "optical info:\n: 3\n") == (at("expected 'key : value'", 2, ": 3"), 2, ": 3")
    text = "optical info:\ntemperature          : 47 C\n"
    assert error(hccn_tool.parse_optical, text) == (f"no 'present' line in the optical info: {text!r}", None, text)


def test_link_stat_reads_the_sample_and_names_bad_lines():
    stat = hccn_tool.parse_link_stat(sample("hccn_tool_-link_stat_-g.txt"))
    assert (stat.device, stat.current_time, stat.up_count, stat.down_count) == (
        0, "Wed Aug  2 03:09:26 2022", 2, 1)
    assert stat.records[0] == ("Tue Aug  1 14:43:40 2022", "LINK UP")
    assert hccn_tool.parse_link_stat("[device 1]link up count       : 0\n") == hccn_tool.LinkStat(1, "", 0, ())
    for text, lineno, reason in (
            ("[devid 0]link up count : 2\nlink up count : 2\n", 2, "expected '[devid N]...'"),
            ("[devid 0]link up count : 2\n[devid 0]speed : 100G\n", 2, "not a link statistics line"),
            ("[devid 0]link up count : two\n", 1, "link up count is not a number: 'two'")):
        line = text.splitlines()[lineno - 1]
        assert error(hccn_tool.parse_link_stat, text) == (at(reason, lineno, line), lineno, line)
    for text in ("", "[devid 0]current time        : Wed Aug  2 03:09:26 2022\n"):
        assert error(hccn_tool.parse_link_stat, text) == (f"no '[devid N]link up count' line: {text!r}", None, text)


def test_stat_errors():
    for text, lineno in (("packet statistics:\nmac_rx_fcs_err_pkt_num:many\n", 2),
                         ("packet statistics:\nmac_tx_total_pkt_num 12\n", 2),
                         # a counter's name holds no colon: the value is all after the first one
                         ("packet statistics:\nmac:rx_pkt_num:12\n", 2)):
        line = text.splitlines()[lineno - 1]
        assert error(hccn_tool.parse_stat, text) == (at("expected 'counter:<number>'", lineno, line), lineno, line)
    text = "packet statistics:\n"
    assert error(hccn_tool.parse_stat, text) == (f"no packet statistics: {text!r}", None, text)


# ---------------------------------------------------------------- hccl_test

HCCL_HEAD = "data_size(Bytes): | aveg_time(us): | alg_bandwidth(GB/s): | check_result:"


def test_hccl_test_lines_it_cannot_read():
    failed = "local rank_id 3, check result failed, 8192 | 10.00 | 0.81920 | failed"
    text = "\n".join([
        "8192 | 10.00 | 0.81920 | success",                   # a row before any header
        "This is an error in init_hcclComm.",                  # a stage with no error before it
        HCCL_HEAD,
        "8192 | ten | 0.81920 | success",
        failed,
        "16384 | 11.00 | 1.48945 | success",
    ]) + "\n"
    result = hccl_test.parse_hccl_test(text)
    assert result.rows == [hccl_test.HcclRow(16384, 11.0, 1.48945, "success")]
    assert result.failed_ranks == [failed] and result.errors == []
    assert result.unreadable == [
        common.Unread(1, "8192 | 10.00 | 0.81920 | success", "not part of the hccl_test table"),
        common.Unread(2, "This is an error in init_hcclComm.", "not part of the hccl_test table"),
        common.Unread(4, "8192 | ten | 0.81920 | success", "a result row whose cells are not numbers"),
    ]


def test_hccl_test_header_without_a_time_column():
    result = hccl_test.parse_hccl_test("data_size(Bytes): | alg_bandwidth(GB/s): | check_result:\n8192 | 0.8 | success\n")
    assert result.rows == [] and result.unreadable == [
        common.Unread(2, "8192 | 0.8 | success", "a result row whose cells are not numbers")]


def test_hccl_test_errors_are_the_parsed_errors():
    text = sample("heldout/hccl_test_retcode_7_init_hcclComm.txt")
    assert hccl_test.hccl_test_errors(text) == hccl_test.parse_hccl_test(text).errors != []
    assert [(e.retcode, e.stage) for e in hccl_test.hccl_test_errors(text)] == [(7, "init_hcclComm")] * 4


@pytest.mark.parametrize("parse, text, message", [
    (npu_smi.parse_board, "\tSoftware Version : " + "2" * 250 + "\n", "no 'NPU ID' in board output"),
    (npu_smi.parse_chip_report, "\tChip Count : 1\n\tBoard Info : " + "b" * 250 + "\n", "no 'NPU ID' in the output"),
    (npu_smi.parse_health, "\tError Information : " + "e" * 250 + "\n", "no 'Health Status' in health output"),
    (npu_smi.parse_npu_smi_list, "\tNPU ID : " + "0" * 250 + "\n", "no 'Total Count' in 'npu-smi info -l' output"),
    (hccn_tool.parse_ip, "ipaddr:" + "1" * 250 + "\n", "expected both 'ipaddr:' and 'netmask:' lines"),
    (hccn_tool.parse_link_stat, "[devid 0]current time : " + "t" * 250 + "\n", "no '[devid N]link up count' line"),
    (hccn_tool.parse_optical, "optical info:\nvendor name : " + "v" * 250 + "\n", "no 'present' line in the optical info"),
    (hccn_tool.parse_ping, "device 0 PING " + "1" * 250 + "\n", "no 'packets transmitted, received, packet loss' summary"),
    (hccn_tool.parse_route, "Routing table:\n" * 20, "no routing table header"),
    (hccn_tool.parse_stat, "packet statistics:\n" * 15, "no packet statistics"),
    (hccn_tool.parse_tls, "dev_id:3, [pub cert] info:\n\t subject[/CN=" + "s" * 250 + "]\n", "no 'tls switch[N]' line"),
])
def test_a_long_output_without_what_was_asked_for_is_quoted_up_to_200_characters(parse, text, message):
    assert len(text) > 200
    assert error(parse, text) == (f"{message}: {text[:200]!r}", None, text[:200])


def test_lldp_ids_keep_everything_after_their_subtype_label():
    lldp = hccn_tool.parse_lldp("Chassis ID TLV\n        Local: rack-3: leaf\nPort ID TLV\n        Local: slot 1: port 5\n")
    assert (lldp.chassis_id, lldp.port_id) == ("rack-3: leaf", "slot 1: port 5")


def test_the_column_header_names_the_chip_id_over_what_the_columns_suggest():
    # the header is the authority; only a copy cut above it makes the parser guess from the usage columns
    device_head = [*HEAD[:4], "| Chip  Device              | Bus-Id        | AICore(%)   Memory-Usage(MB)  HBM-Usage(MB)        |"]
    [chip] = npu_smi.parse_npu_smi_info(table(first(), second(chip="0     4"), head=device_head)).chips
    assert (chip.device_id, chip.phy_id) == (4, None)


SWITCH_ON = ("dev_id:3, tls switch[1](0:disable, 1:enable), tls preconfigured[1](0:non-preset, 1:preset), "
             "tls alarm time threshold[60]days\n")


def test_tls_reads_only_what_belongs_to_a_certificate_block():
    # the switch line wins over a later 'no certificate found'
    assert hccn_tool.parse_tls(SWITCH_ON + "no certificate found\n") == hccn_tool.Tls(True, {})
    assert hccn_tool.parse_tls("No Certificate Found\n") == hccn_tool.Tls(False, {})
    block = "dev_id:3, [pub cert] info:\n\t subject[/CN=a]\n\t tls expiration status[2](0:normal)\n"
    assert hccn_tool.parse_tls(SWITCH_ON + block) == hccn_tool.Tls(True, {"pub cert": 2})
    # an expiration status or a field before any certificate block is not the tool's layout
    for stray in ("\t tls expiration status[2](0:normal)\n", "\t issuer[/CN=b]\n", "certificate: none\n"):
        line = stray.strip("\n")
        assert error(hccn_tool.parse_tls, SWITCH_ON + stray) == (at("not a line of hccn_tool -tls -g", 2, line), 2, line)
    text = "dev_id:3, [pub cert] info:\n"
    assert error(hccn_tool.parse_tls, text) == (f"no 'tls switch[N]' line: {text!r}", None, text)
    with pytest.raises(common.VendorToolFailure):
        hccn_tool.parse_tls("Device ID is out of the valid range.\n")


def test_hccn_conf_keys_values_and_spacing():
    assert hccn_tool.parse_hccn_conf("send_arp_status_12 = 1\naddress_12=10.0.0.1\n\n") == {
        12: {"send_arp_status": "1", "address": "10.0.0.1"}}
    assert hccn_tool.parse_hccn_conf("address_0=\n") == {0: {"address": ""}}
    assert hccn_tool.parse_hccn_conf("") == {}
    for bad in ("address_0 10.0.0.1", "Address_0=1", "address_x=1", "address_0=1 2"):
        assert error(hccn_tool.parse_hccn_conf, bad + "\n") == (at("expected '<key>_<port>=<value>'", 1, bad), 1, bad)


# ------------------------------------------------ issue #21: speed, FEC, MCU, HCCS, super pod, kernel log

def test_what_the_port_speed_and_fec_readers_say_of_output_they_cannot_read():
    assert error(hccn_tool.parse_speed, "Speed: fast\n") == (at("expected only the 'Speed: <n> Mb/s' line", 1, "Speed: fast"),
                                                             1, "Speed: fast")
    assert error(hccn_tool.parse_fec, "fec mode: base-r FEC mode\n") == (
        at("expected only the 'fec mode: <mode> FEC mode' line", 1, "fec mode: base-r FEC mode"), 1,
        "fec mode: base-r FEC mode")


def test_what_the_mcu_hccs_and_super_pod_readers_say_of_output_they_cannot_read():
    two = "\tVersion : 1\n\tVersion : 2\n"
    assert error(npu_smi.parse_mcu_version, two) == (f"expected one 'Version : <version>' line: {two!r}", None, two)
    long = "\tVersion : \n" + "\tChip Name : mcu\n" * 30
    assert error(npu_smi.parse_mcu_version, long)[0] == f"expected one 'Version : <version>' line: {long[:200]!r}"
    assert error(npu_smi.parse_hccs, "\thccs lane mode : [4]\n\tlane speed : 5\n") == (
        at("expected 'hccs <field> : <value>' or a '[...]' list", 2, "\tlane speed : 5"), 2, "\tlane speed : 5")
    uneven = "\thccs lane mode : [4 4]\n\thccs error count : [0]\n" + "\thccs retry count : [0]\n" * 20
    assert error(npu_smi.parse_hccs, uneven) == (
        f"expected lists of one value per HCCS port, all as long: {uneven[:200]!r}", None, uneven[:200])
    assert error(npu_smi.parse_spod_info, "Super Pod ID : 0\nRack : 1\n") == (
        at("expected '<super pod field> : <number>'", 2, "Rack : 1"), 2, "Rack : 1")
    size_only = "Super Pod Size : 384\n" + "SDID : 1\n" * 30
    assert error(npu_smi.parse_spod_info, size_only) == (
        f"expected 'Super Pod Size' and 'Super Pod ID' lines: {size_only[:200]!r}", None, size_only[:200])


def test_kernel_log_lines_without_a_timestamp_and_lines_quoting_another():
    [first, quoting] = kernel_log.parse_kernel_log(
        "[ascend] [devmm] [ERROR] [f 1] <k:1> Get_user_pages_fast fail.\n"
        "[    5.000000] [ascend] [devdrv] [g 2] <k:2> saw '[ascend] [x] copied' in a log\n")
    assert (first.seconds, first.tags, first.message) == (None, ("devmm", "ERROR", "f 1"), "Get_user_pages_fast fail.")
    assert (quoting.seconds, quoting.tags) == ("5.000000", ("devdrv", "g 2"))
    assert quoting.message == "saw '[ascend] [x] copied' in a log"

"""Parsers for the Ascend vendor tools' text output: ``npu-smi`` and ``hccn_tool``.

Layouts are documented in tests/fixtures/vendor_samples/FORMAT_NOTES.md and the
tests hold real captures. Tables are read by their ``|`` cells and usage values by
their ``/`` (HBM prints ``21784/ 65536``), never by whitespace columns alone.

Text that cannot be read raises :class:`VendorOutputError` naming the offending
line; text that is the tool's own error report (DCMI -8020, ``Invalid card id.``,
``Get invalid device id.``) raises :class:`VendorToolFailure`, and
:func:`npu_smi_error` / :func:`hccn_error` say which without raising.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

# DCMI return codes (Ascend mind-cluster devmanager/dcmi) and what they mean here.
DCMI_CODES = {
    -8005: "internal error: driver not loaded, no access to /dev/davinci*, or secure-boot mismatch",
    -8007: "invalid device id",
    -8008: "the device does not exist",
    -8012: "not ready yet, try again",
    -8013: "not supported in containers",
    -8020: "device resources are occupied (held by another process or container)",
    -8255: "device id or function not supported",
    -9005: "board type query failed",
    -99999: "libdcmi.so failed to load",
}
HEALTH_STATES = ("OK", "Warning", "Alarm", "Critical")


class VendorOutputError(ValueError):
    """Output that does not have the vendor's layout; names the line."""

    def __init__(self, message: str, line: str | None = None, lineno: int | None = None):
        self.line, self.lineno = line, lineno
        if line is not None:
            message = f"{message} (line {lineno}: {line!r})" if lineno else f"{message}: {line!r}"
        super().__init__(message)


class VendorToolFailure(VendorOutputError):
    """The tool printed an error report instead of the data asked for."""

    def __init__(self, error: "ToolError"):
        self.error = error
        super().__init__(f"the tool reported an error: {error.describe()}")


@dataclass(frozen=True)
class ToolError:
    message: str               # the vendor's line, e.g. "dcmi module initialize failed. ret is -8005"
    code: int | None = None    # DCMI return code (npu-smi)
    parameter: str | None = None  # "-i" / "-c" / "-t" for a rejected npu-smi parameter

    def describe(self) -> str:
        meaning = DCMI_CODES.get(self.code) if self.code is not None else None
        return f"{self.message} ({meaning})" if meaning else self.message


def _lines(text: str):
    """(line number, line) for every non-blank line."""
    return [(n, line) for n, line in enumerate(text.splitlines(), 1) if line.strip()]


def _int(value: str, line: str, lineno: int, what: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise VendorOutputError(f"{what} is not a number: {value!r}", line, lineno) from None


# ------------------------------------------------------------- npu-smi errors

def npu_smi_error(text: str) -> ToolError | None:
    """The error npu-smi reported instead of data, or None if the text is data."""
    lines = [line.strip() for _, line in _lines(text)]
    for i, line in enumerate(lines):
        m = re.match(r"dcmi .*\bret is (-\d+)$", line)
        if m:
            return ToolError(line, code=int(m.group(1)))
        m = re.match(r"Error parameter of (-\w+)$", line)
        if m:
            message = lines[i - 1] if i and lines[i - 1].startswith("Invalid") else line
            return ToolError(message, parameter=m.group(1))
    for line in lines:  # a later failure without the dcmi line (containers)
        m = re.search(r"\bret is (-\d+)$", line)
        if m:
            return ToolError(line, code=int(m.group(1)))
    if lines and lines[0].startswith("Usage: npu-smi"):
        return ToolError(lines[0])
    return None


def _raise_if_npu_smi_failed(text: str) -> None:
    error = npu_smi_error(text)
    if error:
        raise VendorToolFailure(error)


# ------------------------------------------------------- npu-smi info (table)

@dataclass(frozen=True)
class NpuChip:
    """One chip (die) row pair of ``npu-smi info``."""
    npu: int
    chip: int
    name: str
    health: str
    power_w: float | None         # None where npu-smi prints "-" (A3 die 1) or "NA" (310P)
    temp_c: int | None
    hugepages: tuple[int, int] | None   # (used, total) pages
    bus_id: str
    aicore_pct: int | None
    memory_mb: tuple[int, int] | None   # (used, total)
    hbm_mb: tuple[int, int] | None      # None on 310P (no HBM column)
    phy_id: int | None = None     # "Chip  Phy-ID" header (A3, some A2)
    device_id: int | None = None  # "Chip  Device" header (310P): the logical device id


@dataclass(frozen=True)
class NpuProcess:
    npu: int
    chip: int
    pid: int
    name: str
    mem_mb: int


@dataclass
class NpuSmiInfo:
    npu_smi_version: str
    version: str                      # the driver version after "Version:"
    chips: list[NpuChip]
    processes: list[NpuProcess] = field(default_factory=list)
    has_process_section: bool = False  # False when the output was cut after the device table

    def npu_ids(self) -> list[int]:
        return sorted({c.npu for c in self.chips})

    def chip(self, npu: int, chip: int = 0) -> NpuChip:
        for c in self.chips:
            if (c.npu, c.chip) == (npu, chip):
                return c
        raise KeyError(f"no NPU {npu} chip {chip} in npu-smi output")

    def processes_on(self, npu: int) -> list[NpuProcess]:
        return [p for p in self.processes if p.npu == npu]


def _usage_values(cell: str, line: str, lineno: int) -> list:
    """Split a usage cell into its values; ``used / total`` pairs become tuples.

    The slash is the separator that matters: ``21784/ 65536`` has no space before it.
    """
    values: list = []
    for i, part in enumerate(cell.split("/")):
        tokens = part.split()
        if i:
            if not tokens or not values or isinstance(values[-1], tuple):
                raise VendorOutputError("a '/' without a value on each side", line, lineno)
            values[-1] = (values[-1], tokens.pop(0))
        values.extend(tokens)
    return values


def _number(value, kind, line, lineno, what):
    if value in ("-", "NA"):
        return None
    try:
        return kind(value)
    except (TypeError, ValueError):
        raise VendorOutputError(f"{what} is not a number: {value!r}", line, lineno) from None


def _pair(value, line, lineno, what):
    if not isinstance(value, tuple):
        if value == "NA":
            return None
        raise VendorOutputError(f"{what} is not 'used / total'", line, lineno)
    return (_int(value[0], line, lineno, what), _int(value[1], line, lineno, what))


def _chip_rows(first, second, second_header: str | None) -> NpuChip:
    (n1, l1, c1), (n2, l2, c2) = first, second
    head = c1[0].split(None, 1)
    if len(head) != 2:
        raise VendorOutputError("expected '<NPU> <Name>'", l1, n1)
    top = _usage_values(c1[2], l1, n1)
    if len(top) != 3:
        raise VendorOutputError("expected 'Power Temp Hugepages-used / total'", l1, n1)
    chip_ids = c2[0].split()
    bottom = _usage_values(c2[2], l2, n2)
    if not chip_ids or len(chip_ids) > 2 or len(bottom) not in (2, 3):
        raise VendorOutputError("expected '<Chip> [<id>] | <Bus-Id> | AICore Memory [HBM]'", l2, n2)
    kind = second_header or ("Device" if len(bottom) == 2 else "Phy-ID")
    extra = _int(chip_ids[1], l2, n2, kind) if len(chip_ids) == 2 else None
    return NpuChip(
        npu=_int(head[0], l1, n1, "NPU"), chip=_int(chip_ids[0], l2, n2, "Chip"), name=head[1].strip(),
        health=c1[1], power_w=_number(top[0], float, l1, n1, "Power(W)"),
        temp_c=_number(top[1], int, l1, n1, "Temp(C)"), hugepages=_pair(top[2], l1, n1, "Hugepages"),
        bus_id=c2[1], aicore_pct=_number(bottom[0], int, l2, n2, "AICore(%)"),
        memory_mb=_pair(bottom[1], l2, n2, "Memory-Usage"),
        hbm_mb=_pair(bottom[2], l2, n2, "HBM-Usage") if len(bottom) == 3 else None,
        phy_id=extra if kind == "Phy-ID" else None, device_id=extra if kind == "Device" else None)


def parse_npu_smi_info(text: str) -> NpuSmiInfo:
    """``npu-smi info``: 910/910B (98 columns, any driver), A3 (two dies per NPU), 310P (106 columns)."""
    _raise_if_npu_smi_failed(text)
    versions = None
    chips: list[NpuChip] = []
    processes: list[NpuProcess] = []
    section = second_header = pending = None
    has_processes = False
    for n, raw in _lines(text):
        line = raw.strip()
        if line.startswith("+"):  # rules separate rows; only the rows carry data
            if set(line) - set("+-="):
                raise VendorOutputError("not an npu-smi table rule", raw, n)
            continue
        if not (line.startswith("|") and line.endswith("|") and len(line) > 1):
            raise VendorOutputError("not part of an npu-smi table", raw, n)
        cells = [c.strip() for c in line[1:-1].split("|")]
        head = cells[0].split()
        if versions is None:
            m = re.fullmatch(r"npu-smi\s+(\S+)\s+Version:\s*(\S+)", cells[0])
            if not m:
                raise VendorOutputError("expected the 'npu-smi <v>  Version: <v>' banner", raw, n)
            versions = m.groups()
        elif head[:2] == ["NPU", "Name"]:
            section = "devices"
        elif head[:1] == ["Chip"] and cells[1:2] == ["Bus-Id"]:
            second_header = head[1] if len(head) > 1 else None
        elif head[:2] == ["NPU", "Chip"] and cells[1:2] == ["Process id"]:
            section, has_processes = "processes", True
        elif section == "devices":
            if len(cells) != 3:
                raise VendorOutputError("a chip row has 3 cells", raw, n)
            if pending is None:
                pending = (n, raw, cells)
            else:
                chips.append(_chip_rows(pending, (n, raw, cells), second_header))
                pending = None
        elif section == "processes":
            if len(cells) == 1 and re.fullmatch(r"No running processes found in NPU \d+", cells[0]):
                continue
            ids = head
            if len(cells) != 4 or len(ids) != 2:
                raise VendorOutputError("expected '<NPU> <Chip> | pid | name | memory'", raw, n)
            processes.append(NpuProcess(_int(ids[0], raw, n, "NPU"), _int(ids[1], raw, n, "Chip"),
                                        _int(cells[1], raw, n, "Process id"), cells[2],
                                        _int(cells[3], raw, n, "Process memory")))
        else:
            raise VendorOutputError("a row before the table header", raw, n)
    if pending is not None:
        raise VendorOutputError("a chip's first row without its second", pending[1], pending[0])
    if versions is None or not chips:
        raise VendorOutputError("no npu-smi info table with chips found", text[:200])
    return NpuSmiInfo(versions[0], versions[1], chips, processes, has_processes)


# ------------------------------------------------- npu-smi key/value outputs

def _key_values(text: str):
    """(lineno, line, key, value) for `\\tKey<pad>: value` lines; key is '' on continuations."""
    rows = []
    for n, raw in _lines(text):
        key, colon, value = raw.strip().partition(":")
        if not colon:
            raise VendorOutputError("expected 'key : value'", raw, n)
        rows.append((n, raw, key.strip(), value.strip()))
    return rows


@dataclass(frozen=True)
class NpuList:
    total_count: int
    chip_counts: dict[int, int]   # NPU id -> Chip Count


def parse_npu_smi_list(text: str) -> NpuList:
    """``npu-smi info -l``."""
    _raise_if_npu_smi_failed(text)
    total, counts, npu = None, {}, None
    for n, raw, key, value in _key_values(text):
        if key == "Total Count":
            total = _int(value, raw, n, key)
        elif key == "NPU ID":
            npu = _int(value, raw, n, key)
        elif key == "Chip Count" and npu is not None:
            counts[npu] = _int(value, raw, n, key)
        else:
            raise VendorOutputError("unexpected key in 'npu-smi info -l'", raw, n)
    if total is None:
        raise VendorOutputError("no 'Total Count' in 'npu-smi info -l' output", text[:200])
    return NpuList(total, counts)


def parse_board(text: str) -> dict[str, str]:
    """``npu-smi info -t board -i N [-c C]``: the vendor's keys and values, in order."""
    _raise_if_npu_smi_failed(text)
    board = {}
    for n, raw, key, value in _key_values(text):
        if not key:
            raise VendorOutputError("a line without a key", raw, n)
        board[key] = value
    if "NPU ID" not in board:
        raise VendorOutputError("no 'NPU ID' in board output", text[:200])
    return board


@dataclass(frozen=True)
class Health:
    status: str                    # OK | Warning | Alarm | Critical
    error_codes: tuple[str, ...]   # hex codes, empty when "NA"
    error_info: tuple[str, ...]    # first line, then the continuation lines

    @property
    def ok(self) -> bool:
        return self.status == "OK" and not self.error_codes


def parse_health(text: str) -> Health:
    """``npu-smi info -t health -i N [-c C]``."""
    _raise_if_npu_smi_failed(text)
    status, codes, info = None, (), []
    for n, raw, key, value in _key_values(text):
        if key == "Health Status":
            if value not in HEALTH_STATES:
                raise VendorOutputError("unknown health status", raw, n)
            status = value
        elif key == "Error Code":
            codes = () if value == "NA" else tuple(value.split())
        elif key == "Error Information":
            info = [] if value == "NA" else [value]
        elif key == "" and value:
            info.append(value)
        else:
            raise VendorOutputError("unexpected key in health output", raw, n)
    if status is None:
        raise VendorOutputError("no 'Health Status' in health output", text[:200])
    return Health(status, codes, tuple(info))


@dataclass(frozen=True)
class ChipMapping:
    npu: int
    chip: int
    logic_id: int | None   # None for the MCU row ('-')
    name: str              # "Ascend 910B4", "Mcu"


def parse_mapping(text: str) -> list[ChipMapping]:
    """``npu-smi info -m``: NPU ID / Chip ID / Chip Logic ID / Chip Name columns."""
    _raise_if_npu_smi_failed(text)
    rows = []
    lines = _lines(text)
    if not lines or lines[0][1].split()[:2] != ["NPU", "ID"]:
        raise VendorOutputError("expected the 'NPU ID  Chip ID  Chip Logic ID  Chip Name' header",
                                lines[0][1] if lines else text, lines[0][0] if lines else None)
    for n, raw in lines[1:]:
        tokens = raw.split()  # names hold one space ("Ascend 910B4"); columns are 31 wide
        if len(tokens) < 4:
            raise VendorOutputError("expected 'NPU Chip LogicID Name'", raw, n)
        logic = None if tokens[2] == "-" else _int(tokens[2], raw, n, "Chip Logic ID")
        rows.append(ChipMapping(_int(tokens[0], raw, n, "NPU ID"), _int(tokens[1], raw, n, "Chip ID"),
                                logic, " ".join(tokens[3:])))
    return rows


@dataclass(frozen=True)
class Topology:
    devices: list[str]                       # ["NPU0", "NPU1", ...]
    links: dict[tuple[str, str], str]        # (a, b) -> "HCCS" | "PIX" | "SYS" | ... ; (a, a) -> "X"
    cpu_affinity: dict[str, str]

    def link(self, a: str, b: str) -> str:
        return self.links[(a, b)]


def parse_topo(text: str) -> Topology:
    """``npu-smi info -t topo``: the device matrix (the Legend is skipped)."""
    _raise_if_npu_smi_failed(text)
    lines = _lines(text)
    if not lines or "CPU Affinity" not in lines[0][1]:
        raise VendorOutputError("expected the topology header with 'CPU Affinity'",
                                lines[0][1] if lines else text, lines[0][0] if lines else None)
    devices = lines[0][1].replace("CPU Affinity", "").split()
    links, affinity = {}, {}
    for n, raw in lines[1:]:
        if raw.strip() == "Legend:":
            break
        tokens = raw.split()
        if not tokens or tokens[0] not in devices or len(tokens) not in (len(devices) + 1, len(devices) + 2):
            raise VendorOutputError(f"expected a device and {len(devices)} link cells", raw, n)
        for other, cell in zip(devices, tokens[1:1 + len(devices)]):
            links[(tokens[0], other)] = cell
        affinity[tokens[0]] = tokens[len(devices) + 1] if len(tokens) > len(devices) + 1 else ""
    if len(affinity) != len(devices):
        raise VendorOutputError(f"expected {len(devices)} device rows, found {len(affinity)}", text[:200])
    return Topology(devices, links, affinity)


# ---------------------------------------------------------------- hccn_tool

# Error reports of hccn_tool (its source's message table); text starting with
# one of these is a failure, not data.
HCCN_ERRORS = ("Get invalid", "Command execute failed", "Cmd execute failed", "Execute failed:",
               "The device is not exist", "Get device health status failed", "The ip address",
               "Inconsistent address and mask", "permission denied", "hccn_tool is busy")


def hccn_error(text: str) -> ToolError | None:
    """The error hccn_tool reported instead of data, or None."""
    for _, raw in _lines(text):
        if raw.strip().startswith(HCCN_ERRORS):
            return ToolError(raw.strip())
    return None


def _hccn_line(text: str, pattern: str, what: str) -> re.Match:
    error = hccn_error(text)
    if error:
        raise VendorToolFailure(error)
    lines = _lines(text)
    if not lines:
        raise VendorOutputError(f"no {what} output")
    m = re.fullmatch(pattern, lines[0][1].strip())
    if not m or len(lines) > 1:
        bad = lines[0] if not m else lines[1]
        raise VendorOutputError(f"expected only the {what} line", bad[1], bad[0])
    return m


def parse_link(text: str) -> str:
    """``hccn_tool -i N -link -g`` -> "UP" or "DOWN"."""
    return _hccn_line(text, r"link status:\s*(UP|DOWN)", "'link status: UP|DOWN'").group(1)


def parse_net_health(text: str) -> str:
    """``hccn_tool -i N -net_health -g`` -> "Success", "Fault", "Init", "Detect ip set", ..."""
    return _hccn_line(text, r"net health status:\s*(\S.*)", "'net health status: <state>'").group(1).strip()


@dataclass(frozen=True)
class IpConfig:
    address: str
    netmask: str


def parse_ip(text: str) -> IpConfig | None:
    """``hccn_tool -i N -ip -g``; None when no IP was preset."""
    if "because no ip was preset there" in text:
        return None
    error = hccn_error(text)
    if error:
        raise VendorToolFailure(error)
    found = {}
    for n, raw in _lines(text):
        m = re.fullmatch(r"(ipaddr|netmask):\s*(\S+)", raw.strip())
        if not m:
            raise VendorOutputError("expected 'ipaddr:<ip>' or 'netmask:<mask>'", raw, n)
        found[m.group(1)] = m.group(2)
    if set(found) != {"ipaddr", "netmask"}:
        raise VendorOutputError("expected both 'ipaddr:' and 'netmask:' lines", text[:200])
    return IpConfig(found["ipaddr"], found["netmask"])


def parse_netdetect(text: str) -> str | None:
    """``hccn_tool -i N -netdetect -g`` -> the detect address, None when unset (0.0.0.0 / empty)."""
    m = _hccn_line(text, r"netdetect (?:address|addr):\s*(\S*)", "'netdetect address: <ip>'")
    return m.group(1) if m.group(1) not in ("", "0.0.0.0") else None


@dataclass(frozen=True)
class LldpNeighbor:
    chassis_id: str
    port_id: str          # the switch port, e.g. "400GE1/1/5:1"
    system_name: str
    system_description: str
    mgmt_ipv4: str | None
    tlvs: dict[str, list[str]]   # every TLV title -> its value lines


def parse_lldp(text: str) -> LldpNeighbor | None:
    """``hccn_tool -i N -lldp -g``: TLV titles alone on a line, values indented below.

    None when there is no neighbour (empty output, e.g. link down or LLDP off on the switch).
    """
    error = hccn_error(text)
    if error:
        raise VendorToolFailure(error)
    tlvs: dict[str, list[str]] = {}
    title = None
    for n, raw in _lines(text):
        if not raw[0].isspace():
            if not raw.strip().endswith("TLV"):
                raise VendorOutputError("expected an LLDP TLV title", raw, n)
            title = raw.strip()
            tlvs[title] = []
        elif title is None:
            raise VendorOutputError("an LLDP value before any TLV title", raw, n)
        else:
            tlvs[title].append(raw.strip())
    if not tlvs:
        return None

    def value(tlv, prefix=""):
        for v in tlvs.get(tlv, []):
            if v.startswith(prefix):
                return v[len(prefix):].strip() if prefix else v
        return ""

    chassis = value("Chassis ID TLV")
    return LldpNeighbor(chassis.split(": ", 1)[-1], value("Port ID TLV").split(": ", 1)[-1],
                        value("System Name TLV"), value("System Description TLV"),
                        value("Management Address TLV", "IPv4:") or None, tlvs)


@dataclass(frozen=True)
class PingResult:
    target: str
    transmitted: int
    received: int
    loss_pct: float

    @property
    def ok(self) -> bool:
        return self.transmitted > 0 and self.received == self.transmitted


def parse_ping(text: str) -> PingResult:
    """``hccn_tool -i N -ping -g address A``: the target and the packet summary."""
    error = hccn_error(text)
    if error or "because no ip was preset there" in text:
        raise VendorToolFailure(error or ToolError(text.strip()))
    target = summary = None
    for n, raw in _lines(text):
        m = re.search(r"\bPING\s+(?:\S+\s+to\s+)?(\S+)", raw)
        if m and target is None:
            target = m.group(1)
        m = re.search(r"(\d+) packets transmitted, (\d+) received, ([\d.]+)% packet loss", raw)
        if m:
            summary = m
    if summary is None:
        raise VendorOutputError("no 'packets transmitted, received, packet loss' summary", text[:200])
    return PingResult(target or "", int(summary.group(1)), int(summary.group(2)), float(summary.group(3)))

"""Parsers for ``npu-smi``: the ``info`` table, its key/value sub-commands (board, MCU, HCCS,
super pod, health, the per-chip reports, ECC), the chip mapping and the topology matrix.

Layouts are documented in tests/fixtures/vendor_samples/FORMAT_NOTES.md and the
tests hold real captures. Tables are read by their ``|`` cells and usage values by
their ``/`` (HBM prints ``21784/ 65536``), never by whitespace columns alone.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from .. import codes
from .common import (ELISIONS, ToolError, Unread, VendorOutputError, VendorToolFailure, _float_or_none, _int,
                     _lines, _na)


# ------------------------------------------------------------- npu-smi errors

# Driver log lines npu-smi prints before its own message.
_NPU_SMI_NOISE = re.compile(r"^(call )?DrvMngGetConsoleLogLevel failed", re.I)


def npu_smi_error(text: str) -> ToolError | None:
    """The error npu-smi (or a DCMI client such as npu-exporter) reported instead of data, or None."""
    lines = [line.strip() for _, line in _lines(text)]
    coded = [line for line in lines if codes.dcmi_codes_in(line) and not _NPU_SMI_NOISE.match(line)]
    if coded:
        found: list[int] = []
        for line in coded:
            found += [c for c in codes.dcmi_codes_in(line) if c not in found]
        return ToolError("; ".join(coded), codes=tuple(found))
    for i, line in enumerate(lines):
        m = re.match(r"Error parameter of (-\w+)$", line)
        if m:
            message = lines[i - 1] if i and lines[i - 1].startswith("Invalid") else line
            return ToolError(message, parameter=m.group(1))
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
    hugepages: tuple[int, int] | None   # (used, total) pages; None where older drivers print nothing
    bus_id: str
    aicore_pct: int | None
    memory_mb: tuple[int, int] | None   # (used, total)
    hbm_mb: tuple[int, int] | None      # None on 310/310P (no HBM column)
    phy_id: int | None = None     # "Chip  Phy-ID" header (A3, some A2)
    device_id: int | None = None  # "Chip  Device" header (310/310P): the logical device id


@dataclass(frozen=True)
class NpuProcess:
    npu: int
    chip: int
    pid: int
    name: str
    mem_mb: int
    container_pid: str | None = None   # the fifth cell of newer drivers ("Process id in container", NA on the host)


@dataclass
class NpuSmiInfo:
    npu_smi_version: str | None        # None when the copy starts below the version banner
    version: str | None                # the driver version after "Version:"
    chips: list[NpuChip]
    processes: list[NpuProcess] = field(default_factory=list)
    has_process_section: bool = False  # False when the output was cut after the device table
    unreadable: list[Unread] = field(default_factory=list)

    def npu_ids(self) -> list[int]:
        return sorted({c.npu for c in self.chips})

    def unread_rows(self) -> list[Unread]:
        """The table rows that could not be read: chips that were printed but not checked.
        Lines around the table (a prompt, driver log lines, a publisher's ``...``) are not rows."""
        return [u for u in self.unreadable if u.reason not in (_ELIDED, _NOT_TABLE)]

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
    if _na(value):
        return None
    try:
        return kind(value)
    except (TypeError, ValueError):
        raise VendorOutputError(f"{what} is not a number: {value!r}", line, lineno) from None


def _pair(value, line, lineno, what):
    if not isinstance(value, tuple):
        if _na(value):
            return None
        raise VendorOutputError(f"{what} is not 'used / total'", line, lineno)
    return (_int(value[0], line, lineno, what), _int(value[1], line, lineno, what))


def _chip_rows(first, second, second_header: str | None) -> NpuChip:
    (n1, l1, c1), (n2, l2, c2) = first, second
    head = c1[0].split(None, 1)
    top = _usage_values(c1[2], l1, n1)
    # Older drivers and first-generation 310/910 print Power and Temp and leave
    # the Hugepages place blank.
    if len(top) not in (2, 3):
        raise VendorOutputError("expected 'Power Temp [Hugepages-used / total]'", l1, n1)
    chip_ids = c2[0].split()
    bottom = _usage_values(c2[2], l2, n2)
    if not chip_ids or len(chip_ids) > 2 or len(bottom) not in (2, 3):
        raise VendorOutputError("expected '<Chip> [<id>] | <Bus-Id> | AICore Memory [HBM]'", l2, n2)
    # Without the column header (a copy cut above it), a row with HBM is an
    # A2/A3 chip (its id is the Phy-ID) and one without is a 310/310P (Device).
    kind = second_header or ("Device" if len(bottom) == 2 else "Phy-ID")
    extra = _int(chip_ids[1], l2, n2, kind) if len(chip_ids) == 2 else None
    return NpuChip(
        npu=_int(head[0], l1, n1, "NPU"), chip=_int(chip_ids[0], l2, n2, "Chip"), name=head[1].strip(),
        health=c1[1], power_w=_number(top[0], float, l1, n1, "Power(W)"),
        temp_c=_number(top[1], int, l1, n1, "Temp(C)"),
        hugepages=_pair(top[2], l1, n1, "Hugepages") if len(top) == 3 else None,
        bus_id=c2[1], aicore_pct=_number(bottom[0], int, l2, n2, "AICore(%)"),
        memory_mb=_pair(bottom[1], l2, n2, "Memory-Usage"),
        hbm_mb=_pair(bottom[2], l2, n2, "HBM-Usage") if len(bottom) == 3 else None,
        phy_id=extra if kind == "Phy-ID" else None, device_id=extra if kind == "Device" else None)


def _process_row(n, raw, cells) -> NpuProcess:
    ids = cells[0].split()
    if len(ids) != 2:
        raise VendorOutputError("expected '<NPU> <Chip> | pid | name | memory [| pid in container]'", raw, n)
    container = cells[4] if len(cells) == 5 and not _na(cells[4]) else None
    return NpuProcess(_int(ids[0], raw, n, "NPU"), _int(ids[1], raw, n, "Chip"),
                      _int(cells[1], raw, n, "Process id"), cells[2], _int(cells[3], raw, n, "Process memory"),
                      container)


_RULE = re.compile(r"\+[-=+]*")
# A chip's first row is "<NPU> <Name> | <Health> | ..." and its second
# "<Chip> [<Phy-ID|Device>] | <Bus-Id or NA> | ...": names can be all digits
# ("310"), so the second cell tells them apart.
_BUS_ID = re.compile(r"[0-9A-Fa-f]{4}:[0-9A-Fa-f]{2}:[0-9A-Fa-f]{2}\.[0-9A-Fa-f]|NA")
_HEALTH_WORD = re.compile(r"[A-Za-z][A-Za-z ]*")
_CHIP_SECOND_ROW = re.compile(r"\d+(\s+\d+)?")
_NO_PROCESSES = re.compile(r"No running processes found in NPU \d+")
_ELIDED, _NOT_TABLE = "elided in the published copy", "not part of the npu-smi table"
_FIRST_ROW_ALONE = "a chip's first row without its second"


@dataclass
class _InfoReader:
    """What parse_npu_smi_info has read so far, fed one line at a time.

    ``pending`` holds a chip's first row until its second row comes; ``section``
    says whether the device or the process table is being read."""
    versions: tuple[str, str] | None = None
    chips: list[NpuChip] = field(default_factory=list)
    processes: list[NpuProcess] = field(default_factory=list)
    unreadable: list[Unread] = field(default_factory=list)
    section: str | None = None
    second_header: str | None = None
    pending: tuple | None = None
    has_processes: bool = False

    def drop_pending(self) -> None:
        if self.pending is not None:
            self.unreadable.append(Unread(self.pending[0], self.pending[1], _FIRST_ROW_ALONE))
            self.pending = None

    def read_line(self, n: int, raw: str) -> None:
        line = raw.strip()
        if _RULE.fullmatch(line):  # rules separate rows; only the rows carry data
            return
        if not line.startswith("|"):
            self.unreadable.append(Unread(n, raw, _ELIDED if line in ELISIONS else _NOT_TABLE))
        elif not line.endswith("|") or len(line) == 1:
            self.drop_pending()
            self.unreadable.append(Unread(n, raw, "a row cut short"))
        else:
            self.read_row(n, raw, [c.strip() for c in line[1:-1].split("|")])

    def read_row(self, n: int, raw: str, cells: list[str]) -> None:
        """One ``|``-delimited row: the banner, a header, a chip row or a process row."""
        head = cells[0].split()
        banner = re.fullmatch(r"npu-smi\s+(\S+)\s+Version:\s*(\S+)", cells[0]) if len(cells) == 1 else None
        if banner:
            self.versions = banner.groups()
        elif head[:2] == ["NPU", "Name"]:
            self.section = "devices"
        elif head[:1] == ["Chip"] and cells[1:2] == ["Bus-Id"]:
            self.second_header = head[1] if len(head) > 1 else None
        elif head[:2] == ["NPU", "Chip"] and cells[1:2] == ["Process id"]:
            self.drop_pending()
            self.section, self.has_processes = "processes", True
        elif len(cells) == 1 and _NO_PROCESSES.fullmatch(cells[0]):
            self.section, self.has_processes = "processes", True
        elif len(cells) == 3 and self.section != "processes":
            self.read_chip_row(n, raw, cells)
        elif len(cells) in (4, 5) and self.section != "devices":
            try:
                self.processes.append(_process_row(n, raw, cells))
                self.has_processes = True
            except VendorOutputError as e:
                self.unreadable.append(Unread(n, raw, str(e)))
        else:
            self.unreadable.append(Unread(n, raw, f"a row of {len(cells)} cells where the table has none"))

    def read_chip_row(self, n: int, raw: str, cells: list[str]) -> None:
        """A chip's first row waits in ``pending``; its second completes the chip."""
        first_row = (len(cells[0].split()) >= 2 and cells[0].split()[0].isdigit()
                     and _HEALTH_WORD.fullmatch(cells[1]) and not _BUS_ID.fullmatch(cells[1]))
        if first_row:
            self.drop_pending()
            self.pending = (n, raw, cells)
        elif _CHIP_SECOND_ROW.fullmatch(cells[0]) and _BUS_ID.fullmatch(cells[1]) and self.pending is not None:
            try:
                self.chips.append(_chip_rows(self.pending, (n, raw, cells), self.second_header))
            except VendorOutputError as e:
                self.unreadable.append(Unread(e.lineno or n, e.line or raw, str(e)))
            self.pending = None
        else:
            self.unreadable.append(Unread(n, raw, "a chip's second row without its first"
                                          if _CHIP_SECOND_ROW.fullmatch(cells[0]) else "not a chip row"))


def parse_npu_smi_info(text: str) -> NpuSmiInfo:
    """``npu-smi info``: 910/910B (98 columns, 116 from 26.x), A3 (two dies per NPU), 310 and 310P (106).

    Reads every chip it can; lines it cannot read are listed in ``unreadable``.
    Raises only when no chip or process could be read at all.
    """
    _raise_if_npu_smi_failed(text)
    reader = _InfoReader()
    for n, raw in _lines(text):
        reader.read_line(n, raw)
    reader.drop_pending()
    if not reader.chips and not reader.processes:
        first = reader.unreadable[0] if reader.unreadable else None
        raise VendorOutputError("no npu-smi info table with chips found",
                                first.line if first else text[:200], first.lineno if first else None)
    versions = reader.versions
    return NpuSmiInfo(versions[0] if versions else None, versions[1] if versions else None,
                      reader.chips, reader.processes, reader.has_processes, reader.unreadable)


# ------------------------------------------------- npu-smi key/value outputs

def _key_values(text: str, skip_noise: bool = True):
    """(lineno, line, key, value) for `\\tKey<pad>: value` lines; key is '' on continuations."""
    rows = []
    for n, raw in _lines(text):
        if skip_noise and _NPU_SMI_NOISE.match(raw.strip()):
            continue
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
    """``npu-smi info -t board -i N [-c C]``: the vendor's keys and values, in order.

    Drivers differ in what they print: 910B with 25.x drivers adds Product
    Name, Model, Manufacturer and Serial Number (FORMAT_NOTES.md section 3).
    """
    _raise_if_npu_smi_failed(text)
    board = {}
    for n, raw, key, value in _key_values(text):
        if not key:
            raise VendorOutputError("a line without a key", raw, n)
        board[key] = value
    if "NPU ID" not in board:
        raise VendorOutputError("no 'NPU ID' in board output", text[:200])
    return board


# npu-smi upgrade -b mcu -i N: "\tVersion<pad>: 23.3.13" (a 910B4 node's MCU in a blog; the vendor's npu-smi
# manual prints the same line); a device without the queried component says MCU_NOT_QUERYABLE (npu-smi manual,
# Atlas 200I A2: `-b bootloader`, `-b vrd`).
MCU_NOT_QUERYABLE = "This device does not support querying version."


def parse_mcu_version(text: str) -> str | None:
    """``npu-smi upgrade -b mcu -i N`` -> the card's MCU version; None where the device has none to query."""
    _raise_if_npu_smi_failed(text)
    if MCU_NOT_QUERYABLE in text:
        return None
    versions = [value for _, _, key, value in _key_values(text) if key == "Version"]
    if len(versions) != 1 or not versions[0]:
        raise VendorOutputError("expected one 'Version : <version>' line", text[:200])
    return versions[0]


# npu-smi info -t hccs -i N -c C, as the driver prints it (hicann driver npucli npu_info_print_ext.c):
# "\thccs <field><pad>: <value>", a "[v1 v2 ...]" list with one value per HCCS port (ports 1-7 of a 910B,
# of an Atlas 900 A3 SuperPoD; 2-7 of an Atlas 9000 A3 SuperPoD); chips without HCCS say HCCS_NOT_SUPPORTED.
HCCS_NOT_SUPPORTED = "This device does not support querying hccs."
HCCS_FAILED = 'Failed to query "hccs" result.'


@dataclass(frozen=True)
class Hccs:
    healthy: bool | None                 # "hccs health status" OK / NOK (310P prints none)
    ports: dict[str, tuple[str, ...]]    # "lane mode", "link lane list", "link speed", "error count", ... per port
    first_error_lane: str | None         # the first faulty port, None when "NA"


def parse_hccs(text: str) -> Hccs | None:
    """``npu-smi info -t hccs -i N -c C``; None on a chip that has no HCCS to query."""
    _raise_if_npu_smi_failed(text)
    if HCCS_NOT_SUPPORTED in text:
        return None
    if HCCS_FAILED in text:
        raise VendorToolFailure(ToolError(HCCS_FAILED))
    healthy, first, ports = None, None, {}
    for n, raw, key, value in _key_values(text):
        name = key[len("hccs "):] if key.startswith("hccs ") else None
        if value.startswith("[") and value.endswith("]") and name:
            ports[name] = tuple(value[1:-1].split())
        elif name == "health status" and value in ("OK", "NOK"):
            healthy = value == "OK"
        elif name == "first error lane":
            first = None if value == "NA" else value
        else:
            raise VendorOutputError("expected 'hccs <field> : <value>' or a '[...]' list", raw, n)
    if not ports or len({len(v) for v in ports.values()}) > 1:
        raise VendorOutputError("expected lists of one value per HCCS port, all as long", text[:200])
    return Hccs(healthy, ports, first)



# npu-smi info -t spod-info -i N -c C (A3 super pods; the driver's print_npu_spod_info): "\t<key><pad> : <n>"
# for SDID (not on 950), Super Pod Size, Super Pod ID, Server Index; other chips answer SPOD_NOT_SUPPORTED.
SPOD_NOT_SUPPORTED = "This device does not support querying spod-info."
SPOD_KEYS = {"SDID": "sdid", "Super Pod Size": "size", "Super Pod ID": "pod", "Server Index": "server_index"}


@dataclass(frozen=True)
class SuperPod:
    pod: int
    size: int
    server_index: int | None
    sdid: int | None


def parse_spod_info(text: str) -> SuperPod | None:
    """``npu-smi info -t spod-info -i N -c C``; None on a chip that is in no super pod."""
    _raise_if_npu_smi_failed(text)
    if SPOD_NOT_SUPPORTED in text:
        return None
    found = {}
    for n, raw, key, value in _key_values(text):
        if key not in SPOD_KEYS or not value.isdigit():
            raise VendorOutputError("expected '<super pod field> : <number>'", raw, n)
        found[SPOD_KEYS[key]] = int(value)
    if not {"pod", "size"} <= set(found):
        raise VendorOutputError("expected 'Super Pod Size' and 'Super Pod ID' lines", text[:200])
    return SuperPod(found["pod"], found["size"], found.get("server_index"), found.get("sdid"))


@dataclass(frozen=True)
class Health:
    status: str                    # OK | Warning | Alarm | Critical (validation.node.codes.HEALTH_STATES)
    error_codes: tuple[str, ...]   # hex codes, empty when "NA"
    error_info: tuple[str, ...]    # first line, then the continuation lines

    @property
    def ok(self) -> bool:
        return self.status == "OK" and not self.error_codes


def parse_health(text: str) -> Health:
    """``npu-smi info -t health -i N [-c C]``."""
    _raise_if_npu_smi_failed(text)
    status, error_codes, info = None, (), []
    lines = text.splitlines()
    # Error Information comes last and its text is free: a line a terminal or a copy wrapped (no
    # ": " of its own, or one inside the message) continues it, so the codes above are not lost.
    end = next((n for n, raw in enumerate(lines, 1) if raw.strip().startswith("Error Information")), len(lines))
    for raw in lines[end:]:
        key, colon, value = raw.strip().partition(":")
        line = value.strip() if colon and not key.strip() else raw.strip()
        if line:
            info.append(line)
    for n, raw, key, value in _key_values("\n".join(lines[:end])):
        if key == "Health Status":
            if not value or " " in value:
                raise VendorOutputError("a health status is one word", raw, n)
            status = value
        elif key == "Error Code":
            error_codes = () if _na(value) else tuple(value.split())
        elif key == "Error Information":
            info = ([] if _na(value) else [value]) + info
        else:
            raise VendorOutputError("unexpected key in health output", raw, n)
    if status is None:
        raise VendorOutputError("no 'Health Status' in health output", text[:200])
    return Health(status, error_codes, tuple(info))


@dataclass
class ChipReport:
    """``npu-smi info -t usages|common|temp|power|memory|ecc -i N``: blocks of
    ``key : value`` lines separated by blank lines. Each chip's block carries its
    ``Chip ID`` (first or last); the board's MCU block carries ``Chip Name``."""
    npu: int | None
    chip_count: int | None
    chips: dict[int | None, dict[str, str]]    # chip id -> values; None when the output names no chip
    mcu: dict[str, str] = field(default_factory=dict)

    def values(self, chip: int | None = None) -> dict[str, str]:
        """One chip's values; with chip None, the only chip printed."""
        if chip in self.chips:
            return self.chips[chip]
        if chip is None and len(self.chips) == 1:
            return next(iter(self.chips.values()))
        if None in self.chips and len(self.chips) == 1:
            return self.chips[None]
        return {}

    def number(self, keys: tuple[str, ...], chip: int | None = None) -> float | None:
        """The first of ``keys`` that is printed, as a number; None when absent or NA."""
        values = self.values(chip)
        for key in keys:
            if key in values:
                return _float_or_none(values[key])
        return None


def parse_chip_report(text: str) -> ChipReport:
    _raise_if_npu_smi_failed(text)
    blocks: list[list[tuple[int, str, str, str]]] = [[]]
    for n, raw in enumerate(text.splitlines(), 1):
        if not raw.strip():
            blocks.append([])
            continue
        if _NPU_SMI_NOISE.match(raw.strip()):
            continue
        key, colon, value = raw.strip().partition(":")
        if not colon or not key.strip():
            raise VendorOutputError("expected 'key : value'", raw, n)
        blocks[-1].append((n, raw, key.strip(), value.strip()))
    npu = chip_count = None
    chips: dict[int | None, dict[str, str]] = {}
    mcu: dict[str, str] = {}
    for block in filter(None, blocks):
        values: dict[str, str] = {}
        chip_id, is_mcu = None, False
        for n, raw, key, value in block:
            if key == "NPU ID":
                npu = _int(value, raw, n, key)
            elif key == "Chip Count":
                chip_count = _int(value, raw, n, key)
            elif key == "Chip ID":
                chip_id = _int(value, raw, n, key)
            elif key == "Chip Name" and value.lower() == "mcu":
                is_mcu = True
            else:
                values[key] = value
        if is_mcu:
            mcu.update(values)
        elif values:
            chips.setdefault(chip_id, {}).update(values)
    if npu is None:
        raise VendorOutputError("no 'NPU ID' in the output", text[:200])
    return ChipReport(npu, chip_count, chips, mcu)


# Keys of the sub-commands, as the npu-smi manual and captures print them.
TEMPERATURE_KEYS = ("NPU Temperature (C)", "Temperature (C)", "Temperature(C)")   # -t temp (server, card), -t common
POWER_KEYS = ("NPU Real-time Power(W)", "Power Dissipation(W)")                   # -t power (910/310P, 310)
HBM_TEMPERATURE_KEYS = ("HBM Temperature(C)",)                                     # -t memory
HBM_CAPACITY_KEYS = ("HBM Capacity(MB)",)


@dataclass(frozen=True)
class EccCounts:
    """``npu-smi info -t ecc``: error counters of the HBM (and DDR on 910A/310P)."""
    single_bit: int | None
    double_bit: int | None
    single_bit_total: int | None      # "Aggregate Total": over the chip's life
    double_bit_total: int | None
    single_bit_isolated_pages: int | None
    double_bit_isolated_pages: int | None


def ecc_counts(report: ChipReport, memory: str = "HBM", chip: int | None = None) -> EccCounts | None:
    """The ECC counters of ``memory`` ("HBM" or "DDR"); None when that memory is not reported."""
    values = report.values(chip)

    def count(name):
        value = values.get(f"{memory} {name}")
        return None if _na(value) else int(value) if value.isdigit() else None

    found = EccCounts(count("Single Bit Error Count"), count("Double Bit Error Count"),
                      count("Single Bit Aggregate Total Err Cnt"), count("Double Bit Aggregate Total Err Cnt"),
                      count("Single Bit Isolated Pages Count"), count("Double Bit Isolated Pages Count"))
    return found if any(v is not None for v in vars(found).values()) else None


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


@dataclass
class Topology:
    devices: list[str]                       # ["NPU0", ...] (A3 collect_env copies say "Phy-ID12")
    links: dict[tuple[str, str], str]        # (a, b) -> "HCCS" | "PIX" | "SIO" | "SYS" | ... ; (a, a) -> "X"
    cpu_affinity: dict[str, str]             # empty when the header has no "CPU Affinity" (A3 on Arm)
    legend: dict[str, str] = field(default_factory=dict)
    unreadable: list[Unread] = field(default_factory=list)

    def link(self, a: str, b: str) -> str:
        return self.links[(a, b)]


_TOPO_DEVICE = re.compile(r"(NPU|Phy-ID)\d+")


def parse_topo(text: str) -> Topology:
    """``npu-smi info -t topo``: the device matrix and its Legend.

    The Legend differs between drivers (a blank line after ``Legend:`` or not,
    an ``NA`` line or not, ``SIO`` and ``HCCS_SW`` on A3) and is read as it comes.
    Lines before the header (a wrapper's label) are listed as unreadable.
    """
    _raise_if_npu_smi_failed(text)
    devices: list[str] = []
    links, affinity, legend = {}, {}, {}
    unreadable: list[Unread] = []
    has_affinity = in_legend = False
    for n, raw in _lines(text):
        tokens = raw.split()
        if in_legend:
            symbol, eq, meaning = raw.strip().partition("=")
            if eq:
                legend[symbol.strip()] = meaning.strip()
            else:
                unreadable.append(Unread(n, raw, "not a Legend line"))
        elif raw.strip() == "Legend:":
            in_legend = True
        elif not devices:
            has_affinity = raw.rstrip().endswith("CPU Affinity")
            names = raw.replace("CPU Affinity", "").split()
            if names and all(_TOPO_DEVICE.fullmatch(t) for t in names):
                devices = names
            else:
                unreadable.append(Unread(n, raw, "before the topology header"))
        elif tokens[0] in devices and len(tokens) in (len(devices) + 1, len(devices) + 1 + has_affinity):
            for other, cell in zip(devices, tokens[1:1 + len(devices)]):
                links[(tokens[0], other)] = cell
            if has_affinity and len(tokens) == len(devices) + 2:
                affinity[tokens[0]] = tokens[-1]
        else:
            unreadable.append(Unread(n, raw, f"expected a device and {len(devices)} link cells"))
    if not devices:
        first = unreadable[0] if unreadable else None
        raise VendorOutputError("no topology header with NPU columns found",
                                first.line if first else text[:200], first.lineno if first else None)
    return Topology(devices, links, affinity, legend, unreadable)

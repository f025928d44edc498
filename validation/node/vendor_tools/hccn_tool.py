"""Parsers for ``hccn_tool`` (the RoCE ports: link, speed, FEC, IP, routes, LLDP, ping, optics,
TLS, statistics) and for ``/etc/hccn.conf``."""
from __future__ import annotations

import re
from dataclasses import dataclass

from .common import ELISIONS, ToolError, VendorOutputError, VendorToolFailure, _float_or_none, _int, _lines


# hccn_tool's error reports (its source's message table). A failure may print
# driver noise first, then the specific cause, then a generic trailer:
#   call drvMngGetConsoleLogLevel failed , g_conLogLevel = 3
#   Device ID is out of the valid range.
#   Cmd execute failed!
HCCN_TRAILERS = ("Cmd execute failed!", "Command execute failed!")
HCCN_ERRORS = ("Get invalid", "Execute failed:", "The device is not exist", "Device ID is out of the valid range",
               "Get device health status failed", "The ip address", "Inconsistent address and mask",
               "permission denied", "hccn_tool is busy", "Get ipconf failed", "Get gateway failed")
_HCCN_NOISE = re.compile(r"^(call )?drvMngGetConsoleLogLevel failed", re.I)


def _hccn_data_lines(text: str):
    return [(n, line) for n, line in _lines(text) if not _HCCN_NOISE.match(line.strip())]


def hccn_error(text: str) -> ToolError | None:
    """The error hccn_tool reported instead of data (its specific cause kept), or None."""
    lines = [line.strip() for _, line in _hccn_data_lines(text)]
    for i, line in enumerate(lines):
        if line in HCCN_TRAILERS:
            causes = [c for c in lines[:i] if c not in HCCN_TRAILERS]
            return ToolError(causes[-1] if causes else line)
        if line.startswith(HCCN_ERRORS):
            return ToolError(line)
    return None


def _hccn_check(text: str) -> list[tuple[int, str]]:
    error = hccn_error(text)
    if error:
        raise VendorToolFailure(error)
    return _hccn_data_lines(text)


def _hccn_line(text: str, pattern: str, what: str) -> re.Match:
    lines = _hccn_check(text)
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


# hccn_tool -speed -g and -fec -g, as the 910B/910C tool prints them (hicann/driver
# src/custom/network/hccn/ascend910B tool_ext.c: "Speed: %d Mb/s", "Speed: Unknown!";
# "fec mode: {auto|no|rs} FEC mode" on 910A; the 910B/C build prints FEC_NOT_SWITCHABLE instead).
FEC_NOT_SWITCHABLE = "This device does not support switching fec mode."


def parse_speed(text: str) -> int | None:
    """``hccn_tool -i N -speed -g`` -> the port's speed in Mb/s, None when the tool says "Unknown!"."""
    m = _hccn_line(text, r"Speed:\s*(?:(\d+)\s*Mb/s|(Unknown!))", "'Speed: <n> Mb/s'")
    return int(m.group(1)) if m.group(1) else None


def parse_fec(text: str) -> str | None:
    """``hccn_tool -i N -fec -g`` -> "rs", "no" or "auto"; None where the device's FEC is fixed
    (FEC_NOT_SWITCHABLE: the 910B/910C tool reports no mode)."""
    m = _hccn_line(text, rf"fec mode:\s*(auto|no|rs) FEC mode|{re.escape(FEC_NOT_SWITCHABLE)}",
                   "'fec mode: <mode> FEC mode'")
    return m.group(1)


def parse_net_health(text: str) -> str:
    """``hccn_tool -i N -net_health -g`` -> "Success", "Fault", "Init", "Detect ip set", ..."""
    return _hccn_line(text, r"net health status:\s*(\S.*)", "'net health status: <state>'").group(1).strip()


@dataclass(frozen=True)
class IpConfig:
    address: str
    netmask: str


def parse_ip(text: str) -> IpConfig | None:
    """``hccn_tool -i N -ip -g``; None when no IP was preset: the 910B tool says so ("Get ipconf failed,
    because no ip was preset there!"), the one in MindCluster's collection fixture prints nothing."""
    if "because no ip was preset there" in text:
        return None
    lines = _hccn_check(text)
    if not lines:
        return None
    found = {}
    for n, raw in lines:
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


def parse_hccn_conf(text: str) -> dict[int, dict[str, str]]:
    """``/etc/hccn.conf``: ``<key>_<port>=<value>`` lines (address_0=29.1.137.205, netmask_0, netdetect_0,
    gateway_0, send_arp_status_0, ...) -> port -> {key: value}. Comments, blank lines and a publisher's
    ``...`` are skipped; any other line is named."""
    ports: dict[int, dict[str, str]] = {}
    for n, raw in _lines(text):
        line = raw.strip()
        if line.startswith("#") or line in ELISIONS:
            continue
        m = re.fullmatch(r"([a-z_]+?)_(\d+)\s*=\s*(\S*)", line)
        if not m:
            raise VendorOutputError("expected '<key>_<port>=<value>'", raw, n)
        ports.setdefault(int(m.group(2)), {})[m.group(1)] = m.group(3)
    return ports


@dataclass(frozen=True)
class Gateway:
    address: str | None   # None when unset (0.0.0.0)
    iface: str | None


def parse_gateway(text: str) -> Gateway:
    """``hccn_tool -i N -gateway -g`` -> ``default gateway:<ip>, Iface:<eth>``."""
    m = _hccn_line(text, r"default gateway:\s*(\S*?),?\s*(?:Iface:\s*(\S+))?",
                   "'default gateway:<ip>, Iface:<eth>'")
    address = m.group(1) if m.group(1) not in ("", "0.0.0.0") else None
    return Gateway(address, m.group(2))


@dataclass(frozen=True)
class Route:
    destination: str
    gateway: str | None    # None for '*' / 0.0.0.0 (on-link)
    genmask: str
    flags: str
    iface: str


def parse_route(text: str) -> list[Route]:
    """``hccn_tool -i N -route -g``: ``Routing table:``, the route(8) header, one line per route."""
    lines = _hccn_check(text)
    routes = []
    header_seen = False
    for n, raw in lines:
        tokens = raw.split()
        if raw.strip() == "Routing table:":
            continue
        if tokens[:3] == ["Destination", "Gateway", "Genmask"]:
            header_seen = True
            continue
        if not header_seen or len(tokens) != 8:
            raise VendorOutputError("expected 'Destination Gateway Genmask Flags Metric Ref Use Iface' rows", raw, n)
        gateway = None if tokens[1] in ("*", "0.0.0.0") else tokens[1]
        routes.append(Route(tokens[0], gateway, tokens[2], tokens[3], tokens[7]))
    if not header_seen:
        raise VendorOutputError("no routing table header", text[:200])
    return routes


@dataclass(frozen=True)
class LldpNeighbor:
    chassis_id: str
    port_id: str          # the switch port, e.g. "400GE1/1/5:1"
    system_name: str
    system_description: str
    mgmt_ipv4: str | None
    tlvs: dict[str, list[str]]   # every TLV title -> its value lines (known or not)


def parse_lldp(text: str) -> LldpNeighbor | None:
    """``hccn_tool -i N -lldp -g``: TLV titles alone on a line, values below.

    Only a column-0 line ending in " TLV" starts a TLV; every other line, at any
    indent (a switch's System Description continues at column 0, with blank
    lines inside), belongs to the TLV above it. None when there is no neighbour
    (empty output, e.g. link down or LLDP off on the switch).
    """
    tlvs: dict[str, list[str]] = {}
    title = None
    for n, raw in _hccn_check(text):
        if not raw[0].isspace() and raw.rstrip().endswith(" TLV"):
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
                        value("System Name TLV"), "\n".join(tlvs.get("System Description TLV", [])),
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
    """``hccn_tool -i N -ping -g address A``: the target and the packet summary.

    A port without an IP answers ``Get ipconf failed, because no ip was preset there!``: one of hccn_tool's
    error reports, raised as VendorToolFailure by _hccn_check with that cause (not the noise around it)."""
    target = summary = None
    for n, raw in _hccn_check(text):
        m = re.search(r"\bPING\s+(?:\S+\s+to\s+)?(\S+)", raw)
        if m and target is None:
            target = m.group(1)
        m = re.search(r"(\d+) packets transmitted, (\d+) received, ([\d.]+)% packet loss", raw)
        if m:
            summary = m
    if summary is None:
        raise VendorOutputError("no 'packets transmitted, received, packet loss' summary", text[:200])
    return PingResult(target or "", int(summary.group(1)), int(summary.group(2)), float(summary.group(3)))


@dataclass(frozen=True)
class Optical:
    """``hccn_tool -i N -optical -g``: the optical module of the port."""
    present: bool
    temperature_c: float | None
    tx_power_mw: tuple[float, ...]          # per lane (Tx Power0..3)
    rx_power_mw: tuple[float, ...]
    rx_power_low_mw: float | None           # the module's own alarm thresholds
    rx_power_high_mw: float | None
    tx_power_low_mw: float | None
    tx_power_high_mw: float | None
    values: dict[str, str]                  # every line as printed


# How -optical -g names a lane's power and the module's thresholds (direction "Tx" / "Rx", level "Low" / "High").
OPTICAL_LANE_KEY = "{direction} Power{lane}"
OPTICAL_THRESHOLD_KEY = "{direction}Power {level} Thres"


def parse_optical(text: str) -> Optical:
    values: dict[str, str] = {}
    for n, raw in _hccn_check(text):
        if raw.strip() == "optical info:" or raw.strip() in ELISIONS:
            continue
        key, colon, value = raw.partition(":")
        if not colon or not key.strip():
            raise VendorOutputError("expected 'key : value'", raw, n)
        values[key.strip()] = value.strip()
    if "present" not in values:
        raise VendorOutputError("no 'present' line in the optical info", text[:200])

    def lanes(direction):
        found = []
        for lane in range(8):
            key = OPTICAL_LANE_KEY.format(direction=direction, lane=lane)
            if key not in values:
                break
            found.append(_float_or_none(values[key]))
        # Without lane numbers ("Tx Power : 4.4035 mW", MindCluster's fault-diag guide; the tool itself
        # prints it so with NA for a module it cannot read) the value is the module's one reading.
        if not found:
            found.append(_float_or_none(values.get(OPTICAL_LANE_KEY.format(direction=direction, lane=""))))
        return tuple(v for v in found if v is not None)

    def threshold(direction, level):
        return _float_or_none(values.get(OPTICAL_THRESHOLD_KEY.format(direction=direction, level=level)))

    return Optical(values["present"].lower() == "present", _float_or_none(values.get("temperature")),
                   lanes("Tx"), lanes("Rx"), threshold("Rx", "Low"), threshold("Rx", "High"),
                   threshold("Tx", "Low"), threshold("Tx", "High"), values)


@dataclass(frozen=True)
class Tls:
    """``hccn_tool -i N -tls -g``: the port's TLS switch and its certificates' expiration status."""
    enabled: bool
    certificates: dict[str, int]    # "pub cert" -> 0 normal, 1 near expiration, 2 has expired


_TLS_SWITCH = re.compile(r"dev_id:\s*\d+, tls switch\[(\d)\]")
_TLS_CERT = re.compile(r"dev_id:\s*\d+, \[([^\]]+)\] info:")
_TLS_EXPIRY = re.compile(r"tls expiration status\[(\d)\]")
_TLS_CERT_FIELD = re.compile(r"(subject|issuer|start_time|end_time)\[.*\]")


def parse_tls(text: str) -> Tls:
    """The switch line is the 910B tool's (hccn_tool/tool_tls.c, MindCluster's fault-diag guide); the
    certificate blocks follow the Ascend 950 HCCN Tool guide. "no certificate found" also means TLS is
    off (HCCL user guide, link setup failures)."""
    enabled, certificates, current = None, {}, None
    for n, raw in _hccn_check(text):
        line = raw.strip()
        if m := _TLS_SWITCH.match(line):
            enabled = m.group(1) == "1"
        elif m := _TLS_CERT.fullmatch(line):
            current = m.group(1)
        elif (m := _TLS_EXPIRY.match(line)) and current is not None:
            certificates[current] = int(m.group(1))
        elif "no certificate found" in line.lower():
            enabled = False if enabled is None else enabled
        elif not (_TLS_CERT_FIELD.fullmatch(line) and current is not None):
            raise VendorOutputError("not a line of hccn_tool -tls -g", raw, n)
    if enabled is None:
        raise VendorOutputError("no 'tls switch[N]' line", text[:200])
    return Tls(enabled, certificates)


@dataclass(frozen=True)
class LinkStat:
    """``hccn_tool -i N -link_stat -g``: link up count and the link change records (newest first)."""
    device: int
    current_time: str
    up_count: int
    records: tuple[tuple[str, str], ...]    # (time, "LINK UP" | "LINK DOWN")

    @property
    def down_count(self) -> int:
        return sum(1 for _, state in self.records if state == "LINK DOWN")


def parse_link_stat(text: str) -> LinkStat:
    device = current = up = None
    records = []
    for n, raw in _hccn_check(text):
        m = re.match(r"\[(?:devid|device) (\d+)\]\s*(.*)$", raw.strip())
        if not m:
            raise VendorOutputError("expected '[devid N]...'", raw, n)
        device, rest = int(m.group(1)), m.group(2)
        key, colon, value = rest.partition(":")
        if re.fullmatch(r"\s*(.+?)\s+(LINK UP|LINK DOWN)\s*", rest):
            when, state = re.fullmatch(r"\s*(.+?)\s+(LINK UP|LINK DOWN)\s*", rest).groups()
            records.append((when, state))
        elif key.strip() == "current time":
            current = value.strip()
        elif key.strip() == "link up count":
            up = _int(value.strip(), raw, n, "link up count")
        elif key.strip() == "link change records":
            continue
        else:
            raise VendorOutputError("not a link statistics line", raw, n)
    if device is None or up is None:
        raise VendorOutputError("no '[devid N]link up count' line", text[:200])
    return LinkStat(device, current or "", up, tuple(records))


def parse_stat(text: str) -> dict[str, int]:
    """``hccn_tool -i N -stat -g``: ``packet statistics:`` then ``counter:value`` lines."""
    counters: dict[str, int] = {}
    for n, raw in _hccn_check(text):
        if raw.strip() == "packet statistics:":
            continue
        key, colon, value = raw.partition(":")
        if not colon or not value.strip().isdigit():
            raise VendorOutputError("expected 'counter:<number>'", raw, n)
        counters[key.strip()] = int(value.strip())
    if not counters:
        raise VendorOutputError("no packet statistics", text[:200])
    return counters


# Counters of -stat -g that count bad frames; any growth is a failing link.
ERROR_COUNTER = re.compile(r"(fcs_err|crc|bad_pkt|bad_oct|err_pkt|err_ack|err_psn|verification_err)")


def error_counters(counters: dict[str, int]) -> dict[str, int]:
    return {k: v for k, v in counters.items() if ERROR_COUNTER.search(k)}

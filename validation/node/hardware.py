"""What the hardware checks compare the facts with: thresholds and expected
topologies as data, each with its source, and the judgements that turn a
host's facts into findings. The checks (validation/node/suite/test_hardware.py and
the npu_health check) stay thin: they read facts, call these, and report.

A finding is (verdict, where, what): verdict "fail" or "warn". A fact that could
not be read is a "fail" of its own ("not read: ..."), never a silent pass.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from . import codes
from .vendor_tools.hccn_tool import OPTICAL_LANE_KEY, OPTICAL_THRESHOLD_KEY

# ------------------------------------------------------------------ thresholds


@dataclass(frozen=True)
class Limits:
    warn_at: float
    fail_at: float
    source: str


# npu-smi prints no temperature thresholds of the chip; these are the suite's
# policy (below the thermal throttling the HDK applies), adjustable here.
NPU_TEMPERATURE_C = Limits(85, 95, "project policy: npu-smi does not print the chip's own thresholds")
HBM_TEMPERATURE_C = Limits(85, 95, "project policy: npu-smi -t memory prints HBM temperature without limits")
# dcmi_get_device_ecc_info (CANN DCMI API reference): single-bit errors are
# corrected; "if multi-bit errors are found, locate and handle the problem".
ECC = {"double_bit_fail_at": 1, "single_bit_warn_at": 1, "isolated_pages_warn_at": 1,
       "source": "CANN DCMI API reference, dcmi_get_device_ecc_info"}
# Link change records of hccn_tool -link_stat -g since the driver started.
LINK_DOWNS = Limits(1, 3, "project policy: one down is a reseated cable, three a flapping link")
# Two reads of hccn_tool -stat -g this far apart; any growth of an error counter fails.
PACKET_ERRORS = {"interval_s": 2.0, "growth_fail_at": 1, "history_warn_at": 1,
                 "source": "project policy: bad frames on a healthy RoCE link do not grow"}
# NPUs with RoCE ports that hccn_tool manages (310P cards have none).
ROCE_CHIPS = ("910", "910b", "a3")


@dataclass(frozen=True)
class TopologyRule:
    same_card: frozenset[str] | None     # dies of one card (A3, 310P Duo); None when one die per card
    group_size: int | None               # NPUs per HCCS group (910A: two groups of four)
    within: frozenset[str]               # allowed between NPUs of one group (or of the whole board)
    across: frozenset[str]               # allowed between groups
    source: str


PCIE_PATHS = frozenset({"PIX", "PXB", "PHB", "SYS"})
TOPOLOGY = {
    # Atlas 800T/I A2: every pair of the 8 NPUs over HCCS (captures of -t topo:
    # ms-swift NPU-support doc, 24.1.rc1; arthurchiao.art 910B notes, 23.0.rc2).
    "910b": TopologyRule(None, None, frozenset({"HCCS"}), frozenset({"HCCS"}),
                         "npu-smi info -t topo captures on 8 x 910B (FORMAT_NOTES.md section 3)"),
    # Atlas A3: the two dies of a card over SIO (collect_env capture of an A3
    # card: Phy-ID12/13 SIO); NPUs of different cards through the HCCS switch
    # (Legend: HCCS_SW).
    "a3": TopologyRule(frozenset({"SIO"}), None, frozenset({"HCCS", "HCCS_SW"}), frozenset({"HCCS", "HCCS_SW"}),
                       "A3 -t topo capture (SIO between the dies of a card) and the A3 Legend (HCCS_SW)"),
    # Atlas 800 9000 (910A): two HCCS meshes of four NPUs, PCIe between them
    # (Ascend HPCA 2021 paper, cited by the 910B notes above).
    "910": TopologyRule(None, 4, frozenset({"HCCS"}), PCIE_PATHS,
                        "Ascend: a Scalable and Unified Architecture (HPCA 2021): 4-chip HCCS meshes"),
    # 310P cards: PCIe only.
    "310p": TopologyRule(PCIE_PATHS, None, PCIE_PATHS, PCIE_PATHS, "310P cards have no HCCS (PCIe only)"),
}

HCCL_TEST = {
    "binary": "tools/hccl_test/bin/{op}_test",      # under the toolkit's latest (CANN HCCL Test docs)
    "op": "all_reduce",
    "args": "-b 8K -e 64M -f 2 -d fp32 -o sum -w 3 -n 5 -c 1",
    "source": "CANN HCCL Test user guide (mpirun -n 8 ./bin/all_reduce_test -b 8K -e 64M -f 2 -d fp32 -o sum -p 8)",
}


@dataclass(frozen=True)
class Finding:
    verdict: str      # "fail" | "warn"
    where: str        # "NPU 3 chip 0", "port 5"
    what: str


def fails(findings) -> list[Finding]:
    return [f for f in findings if f.verdict == "fail"]


def warns(findings) -> list[Finding]:
    return [f for f in findings if f.verdict == "warn"]


def listing(findings, limit: int = 12) -> str:
    """Findings as one line; places with the same finding share it ("port 0, port 1: ...")."""
    groups: dict[str, list[str]] = {}
    for f in findings:
        groups.setdefault(f.what, []).append(f.where)
    items = [f"{', '.join(where)}: {what}" for what, where in groups.items()]
    shown = "; ".join(items[:limit])
    return shown + (f"; and {len(items) - limit} more" if len(items) > limit else "")


def _chip(d: dict) -> str:
    return f"NPU {d['npu']} chip {d['chip']}"


def _unread(value) -> str | None:
    return value["error"] if isinstance(value, dict) and "error" in value else None


# ---------------------------------------------------------------- health codes

def health_findings(devices: list[dict]) -> list[Finding]:
    """Each chip whose health is not OK, with its error codes and what they ask for."""
    found = []
    for d in devices:
        verdict = codes.health_verdict(d["health"])
        if verdict == "pass":
            continue
        detail = d.get("health_detail") or {}
        if _unread(detail):
            what = f"{d['health']} (the error codes could not be read: {detail['error']})"
        else:
            described = []
            for code in detail.get("error_codes", []):
                level = codes.fault_level(code)
                described.append(f"{code} ({level.name}: {level.meaning})" if level else f"{code} (not in the fault-code table)")
            what = d["health"] + (": " + ", ".join(described) if described else " with no error code")
            if detail.get("error_info"):
                what += f" [{detail['error_info'][0]}]"
        known = codes.HEALTH_STATES.get(d["health"])
        found.append(Finding(verdict, _chip(d), what if known else f"{what} (a state the npu-smi manual does not list)"))
    return found


def health_fix(devices: list[dict], driver_tools: str) -> str:
    """The fix the worst error code asks for (MindCluster's fault levels); else, where a chip's codes
    were not read, reading them; else (no code, or none the table knows) the device logs for the
    vendor's support. ``driver_tools``: the driver's tools folder (where hccn_tool is)."""
    order = list(codes.FAULT_LEVELS)
    worst = None
    unhealthy = [d for d in devices if codes.health_verdict(d["health"]) != "pass"]
    for d in unhealthy:
        for code in (d.get("health_detail") or {}).get("error_codes", []):
            level = codes.fault_level(code)
            if level and (worst is None or order.index(level.name) < order.index(worst.name)):
                worst = level
    if worst:
        return f"{worst.fix} (fault level {worst.name}, {codes.FAULT_CODE_SOURCE})"
    if any(not d.get("health_detail") or _unread(d["health_detail"]) for d in unhealthy):
        return "read `npu-smi info -t health -i <npu> -c <chip>` for the error codes; reset or replace the card"
    # msnpureport -f exports the devices' logs (CANN 8.0 troubleshooting guide, "How Do I Determine the
    # Start and End Time of the Host Process Based on the Device Log?": {driver}/tools/msnpureport -f).
    return (f"no error code names the fault: export the device logs with `{driver_tools}/msnpureport -f` (in a folder "
            "you can write) for the vendor's support; reset or replace the card")


# ----------------------------------------------------------------- sensors

def temperature_findings(devices: list[dict]) -> list[Finding]:
    found = []
    for d in devices:
        sensors = d.get("sensors") or {}
        npu_temp = sensors.get("temp_c")
        if _unread(npu_temp) or npu_temp is None:
            npu_temp = d.get("temp_c")     # the table's Temp(C) when -t temp is not readable
        readings = [("NPU", npu_temp, NPU_TEMPERATURE_C)]
        hbm = sensors.get("hbm_temp_c")
        if hbm is not None and not _unread(hbm):
            readings.append(("HBM", hbm, HBM_TEMPERATURE_C))
        for what, value, limits in readings:
            if value is None:
                found.append(Finding("fail", _chip(d), f"{what} temperature not read"))
            elif value >= limits.fail_at:
                found.append(Finding("fail", _chip(d), f"{what} {value:g} C (>= {limits.fail_at:g} C)"))
            elif value >= limits.warn_at:
                found.append(Finding("warn", _chip(d), f"{what} {value:g} C (>= {limits.warn_at:g} C)"))
    return found


def ecc_findings(devices: list[dict]) -> list[Finding]:
    found = []
    for d in devices:
        ecc = d.get("ecc")
        if ecc is None or _unread(ecc):
            found.append(Finding("fail", _chip(d), f"ECC counters not read: {_unread(ecc) or 'not queried'}"))
            continue
        memory = "HBM" if "HBM" in ecc else "DDR" if "DDR" in ecc else None
        if memory is None:
            found.append(Finding("fail", _chip(d), "npu-smi -t ecc printed no HBM or DDR counters"))
            continue
        c = ecc[memory]
        if (c.get("double_bit") or 0) >= ECC["double_bit_fail_at"]:
            found.append(Finding("fail", _chip(d), f"{c['double_bit']} uncorrectable (double-bit) {memory} ECC error(s)"))
        if (c.get("single_bit") or 0) >= ECC["single_bit_warn_at"]:
            found.append(Finding("warn", _chip(d), f"{c['single_bit']} corrected single-bit {memory} ECC error(s)"))
        isolated = (c.get("single_bit_isolated_pages") or 0) + (c.get("double_bit_isolated_pages") or 0)
        if isolated >= ECC["isolated_pages_warn_at"]:
            found.append(Finding("warn", _chip(d), f"{isolated} {memory} page(s) isolated after ECC errors"))
    return found


# ----------------------------------------------------------------- topology

def topology_findings(topology: dict | None, devices: list[dict], chip: str) -> list[Finding]:
    """The link type of every pair against what the chip's server should have."""
    if topology is None or _unread(topology):
        return [Finding("fail", "npu-smi info -t topo", f"not read: {_unread(topology) or 'not queried'}")]
    rule = TOPOLOGY.get(chip)
    if rule is None:
        return [Finding("fail", "topology", f"no expected topology for chip {chip!r} in validation/node/hardware.py")]
    names = topology["devices"]
    found = []
    if len(names) != len(devices):
        found.append(Finding("fail", "topology", f"{len(names)} devices in the matrix, {len(devices)} in npu-smi info"))
    # A matrix column is NPU<logic id> (npu-smi info -m says which chip has which).
    card = {f"NPU{d['logic_id']}": d["npu"] for d in devices if d.get("logic_id") is not None}
    found += [Finding("fail", _chip(d), "no logic id (npu-smi info -m did not list the chip or could not be read): "
                                        "its links cannot be told apart from its card's")
              for d in devices if d.get("logic_id") is None]
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            link = topology["links"].get(a, {}).get(b)
            if link is None:
                found.append(Finding("fail", f"{a}-{b}", "no link cell"))
                continue
            if a in card and b in card and rule.same_card is not None and card[a] == card[b]:
                allowed = rule.same_card
            elif rule.group_size:
                same_group = int(a[3:]) // rule.group_size == int(b[3:]) // rule.group_size if \
                    a[3:].isdigit() and b[3:].isdigit() else False
                allowed = rule.within if same_group else rule.across
            else:
                allowed = rule.within
            if link not in allowed:
                found.append(Finding("fail", f"{a}-{b}", f"{link} where {'/'.join(sorted(allowed))} belongs"))
        if topology["links"].get(a, {}).get(a, "X") != "X":
            found.append(Finding("fail", a, f"{topology['links'][a][a]} on the diagonal"))
    return found


# HCCS links of each chip (npu-smi info -t hccs; the driver prints it for 910B and A3 chips). A port
# whose lane mode is 0 carries nothing; one with fewer lanes than the chip's other ports is degraded
# (fault 0x81A38605, "Some lanes of the HCCS port are faulty", MindCluster's fault-diag knowledge base).
HCCS_CHIPS = ("910b", "a3")
HCCS_COUNTERS = {"error count": "CRC errors", "retry count": "retries"}
HCCS_COUNTS_WARN_AT = 1   # project policy: a healthy HCCS link retransmits and corrupts nothing


def hccs_findings(chips: list[dict]) -> list[Finding]:
    """chips: {"npu", "chip", "hccs": parse_hccs's data, None (no HCCS) or {"error"}}."""
    found = []
    for c in chips:
        where, hccs = _chip(c), c.get("hccs", {"error": "not queried"})
        if _unread(hccs):
            found.append(Finding("fail", where, f"HCCS not read: {_unread(hccs)}"))
            continue
        if hccs is None:
            found.append(Finding("fail", where, "npu-smi cannot query its HCCS: the links were not checked"))
            continue
        ports = hccs["ports"]
        if hccs["healthy"] is False:
            found.append(Finding("fail", where, "hccs health status NOK (first error lane "
                                                f"{hccs['first_error_lane'] or 'NA'})"))
        garbled = [f"{field} of port {i + 1} {v!r}" for field in ("lane mode", *HCCS_COUNTERS)
                   for i, v in enumerate(ports.get(field, ())) if not v.isdigit()]
        if garbled:
            found.append(Finding("fail", where, f"HCCS not read: not a number: {', '.join(garbled)}"))
            continue
        lanes = [int(v) for v in ports.get("lane mode", ())]
        for i, mode in enumerate(lanes):
            if mode == 0:
                found.append(Finding("fail", where, f"HCCS port {i + 1} down (lane mode 0)"))
            elif mode < max(lanes):
                found.append(Finding("fail", where, f"HCCS port {i + 1} on {mode} lanes, the others on {max(lanes)}"))
        for field, what in HCCS_COUNTERS.items():
            bad = [f"port {i + 1}: {v}" for i, v in enumerate(ports.get(field, ())) if int(v) >= HCCS_COUNTS_WARN_AT]
            if bad:
                found.append(Finding("warn", where, f"HCCS {what} ({', '.join(bad)})"))
    return found


def hccs_summary(chips: list[dict]) -> list[dict]:
    """What the report keeps of each chip's HCCS: its health and the lanes of each port (the counters
    stay on the node: at fleet size they would be most of the results)."""
    return [{"npu": c["npu"], "chip": c["chip"],
             **({"healthy": c["hccs"]["healthy"], "lanes": list(c["hccs"]["ports"].get("lane mode", ()))}
                if isinstance(c.get("hccs"), dict) and "ports" in c["hccs"] else {"hccs": c.get("hccs")})}
            for c in chips]


# The Ascend driver's kernel-log lines since boot that mean a device fault, even one the device has
# recovered from (npu-smi then shows nothing): text in the line -> what it means, with its source.
# Other [ERROR] lines of the driver warn: a process killed mid-job leaves some (the HCCL guide calls
# those after Ctrl+C harmless).
KERNEL_FAULTS = {
    "Heartbeat lost": "the device stopped answering the host's heartbeat (fault 0x40F84E00, inter-board "
                      "heartbeat error: MindCluster fault-diag; driver heart_beat.c, hb_read.c)",
    "heartbeat is lost": "the device's urgent heartbeat was lost (driver hb_host.c)",
    "Device is abnormal": "the host could not reach the device (device heartbeat loss, MindCluster's "
                          "AISW_CANN_DRV_PCIE_018)",
    "Device os load failed": "the device's own OS did not load (driver devdrv_pci.c)",
    "device_status is dead": "the host found the device dead (driver devdrv_msg.c)",
    "Channel is blocked": "the device's PCIe channel was blocked after critical AER errors (driver devdrv_adapt.c)",
    "ts is down": "the device's task scheduler went down (TS driver)",
    "hdc connect down": "the host-device channel (HDC) went down (TS driver)",
}
KERNEL_LINES_SHOWN = 3   # lines quoted per finding; the rest counted


def kernel_log_findings(lines: list[dict] | dict) -> list[Finding]:
    """lines: parse_kernel_log's lines as data ({"seconds", "tags", "message"}), or {"error"}. A log
    that cannot be read warns that it was not checked: a container (an image target) may not read
    the host's kernel log, which says nothing of the image."""
    if _unread(lines):
        return [Finding("warn", "kernel log", f"not read, not checked: {_unread(lines)}")]

    def quoted(group):
        shown = "; ".join(f"[{g['seconds'] or '?'}] {g['message'][:200]}" for g in group[:KERNEL_LINES_SHOWN])
        return shown + (f"; and {len(group) - KERNEL_LINES_SHOWN} more" if len(group) > KERNEL_LINES_SHOWN else "")

    found, matched = [], set()
    for text, meaning in KERNEL_FAULTS.items():
        hits = [i for i, line in enumerate(lines) if text in line["message"]]
        matched.update(hits)
        if hits:
            found.append(Finding("fail", "kernel log", f"{meaning}: {len(hits)} line(s) since boot: "
                                                       f"{quoted([lines[i] for i in hits])}"))
    errors = [line for i, line in enumerate(lines) if "ERROR" in line["tags"] and i not in matched]
    if errors:
        found.append(Finding("warn", "kernel log", f"{len(errors)} other driver error line(s) since boot: "
                                                   f"{quoted(errors)}"))
    return found


# A3 super pods (npu-smi info -t spod-info): every chip of a node in one pod of one size, under one
# Server Index, the server's Server ID (hicann/shmem's guide: the same on every NPU of a node, often
# left wrong after a hardware replacement, and jobs across the pod then fail).
SUPER_POD_CHIPS = ("a3",)
SUPER_POD_FIELDS = ("pod", "size", "server_index")


def _super_pod_views(chips: list[dict]) -> dict[tuple, list[str]]:
    views: dict[tuple, list[str]] = {}
    for c in chips:
        if isinstance(c.get("spod"), dict) and "error" not in c["spod"]:
            views.setdefault(tuple(c["spod"].get(k) for k in SUPER_POD_FIELDS), []).append(_chip(c))
    return views


def super_pod_state(chips: list[dict]) -> dict | None:
    """{"pod", "size", "server_index"} when every chip read says the same, else None."""
    views = _super_pod_views(chips)
    return dict(zip(SUPER_POD_FIELDS, next(iter(views)))) if len(views) == 1 else None


def super_pod_findings(chips: list[dict]) -> list[Finding]:
    """chips: {"npu", "chip", "spod": parse_spod_info's data, None (in no pod) or {"error"}}."""
    found = []
    for c in chips:
        spod = c.get("spod", {"error": "not queried"})
        if _unread(spod):
            found.append(Finding("fail", _chip(c), f"super-pod info not read: {_unread(spod)}"))
        elif spod is None:
            found.append(Finding("fail", _chip(c), "npu-smi reports no super pod for it"))
    views = _super_pod_views(chips)
    if len(views) > 1:
        found.append(Finding("fail", "chips", "they disagree: " + "; ".join(
            f"Super Pod ID {pod}, size {size}, Server Index {index} at {', '.join(on)}"
            for (pod, size, index), on in views.items())))
    return found


# -------------------------------------------------------------- firmware running

# npu-smi info -t board: "Firmware Version" is the firmware the card runs (the vendor's driver
# guides: Software Version the driver, Firmware Version the firmware), which a firmware upgrade
# changes only at the next reboot; "Compatibility" is the driver's verdict on it
# (dcmi_get_device_compatibility: OK, NOK, UNKNOWN for firmware older than 23.0.RC2).
FIRMWARE_KEY, COMPATIBILITY_KEY = "Firmware Version", "Compatibility"


def firmware_findings(boards: list[dict], installed: str | None) -> list[Finding]:
    """Each card running other firmware than the one installed, or one the driver does not accept;
    MCU versions that differ between the cards (the vendor asks for the MCU that matches the HDK)."""
    found, mcus = [], {}
    if installed is None:
        found.append(Finding("warn", "firmware/version.info", "no installed firmware version: the running "
                                                              "firmware was not compared with it"))
    for b in boards:
        where, board, mcu = f"NPU {b['npu']}", b.get("board"), b.get("mcu", {"error": "not queried"})
        if board is None or _unread(board):
            found.append(Finding("fail", where, f"board not read: {_unread(board) or 'not queried'}"))
        elif FIRMWARE_KEY not in board:
            found.append(Finding("fail", where, f"no '{FIRMWARE_KEY}' in npu-smi info -t board"))
        else:
            running = board[FIRMWARE_KEY]
            if installed is not None and running != installed:
                found.append(Finding("fail", where, f"runs firmware {running}, {installed} is installed "
                                                    "(a firmware upgrade takes effect at the next reboot)"))
            verdict = board.get(COMPATIBILITY_KEY, "OK")
            if verdict != "OK":
                found.append(Finding("fail" if verdict == "NOK" else "warn", where,
                                     f"{COMPATIBILITY_KEY} {verdict}: the driver "
                                     f"{'rejects' if verdict == 'NOK' else 'could not judge'} firmware {running}"))
        if _unread(mcu):
            found.append(Finding("fail", where, f"MCU version not read: {_unread(mcu)}"))
        elif mcu is not None:
            mcus.setdefault(mcu, []).append(str(b["npu"]))
    if len(mcus) > 1:
        found.append(Finding("warn", "MCUs", "MCU versions differ: " + "; ".join(
            f"{v} at NPU {', '.join(on)}" for v, on in sorted(mcus.items()))))
    return found


# -------------------------------------------------------------- NPU ports

def optical_findings(ports: list[dict]) -> list[Finding]:
    found = []
    for p in ports:
        where = f"port {p['port']}"
        o = p.get("optical")
        if o is None or _unread(o):
            found.append(Finding("fail", where, f"optical module not read: {_unread(o) or 'not queried'}"))
            continue
        if not o["present"]:
            found.append(Finding("fail", where, "no optical module present"))
            continue
        for direction, powers, low, high in (("Rx", o["rx_power_mw"], o["rx_power_low_mw"], o["rx_power_high_mw"]),
                                             ("Tx", o["tx_power_mw"], o["tx_power_low_mw"], o["tx_power_high_mw"])):
            if not powers:
                lane_key = OPTICAL_LANE_KEY.format(direction=direction, lane="<lane>")
                found.append(Finding("fail", where, f"{direction} power not read: no '{lane_key}' value in the "
                                                    "optical info"))
                continue
            missing = [OPTICAL_THRESHOLD_KEY.format(direction=direction, level=level)
                       for level, limit in (("Low", low), ("High", high)) if limit is None]
            if missing:
                found.append(Finding("warn", where, f"no {' or '.join(missing)} printed: {direction} power not "
                                                    "judged against it"))
            for lane, mw in enumerate(powers):
                if low is not None and mw < low:
                    found.append(Finding("fail", where, f"{direction} power lane {lane} {mw:g} mW below the module's "
                                                        f"low threshold {low:g} mW"))
                elif high is not None and mw > high:
                    found.append(Finding("fail", where, f"{direction} power lane {lane} {mw:g} mW above the module's "
                                                        f"high threshold {high:g} mW"))
    return found


def link_flap_findings(ports: list[dict]) -> list[Finding]:
    found = []
    for p in ports:
        stat = p.get("link_stat")
        where = f"port {p['port']}"
        if stat is None or _unread(stat):
            found.append(Finding("fail", where, f"link statistics not read: {_unread(stat) or 'not queried'}"))
            continue
        downs = sum(1 for _, state in stat["records"] if state == "LINK DOWN")
        last = next((when for when, state in stat["records"] if state == "LINK DOWN"), None)
        if downs >= LINK_DOWNS.fail_at:
            found.append(Finding("fail", where, f"{downs} link downs since the driver started (last {last})"))
        elif downs >= LINK_DOWNS.warn_at:
            found.append(Finding("warn", where, f"{downs} link down(s) since the driver started (last {last})"))
    return found


def packet_error_findings(before: dict, after: dict) -> list[Finding]:
    """before/after: port -> {"stat": counters or {"error"}}; growth of any error counter fails."""
    from .vendor_tools.hccn_tool import error_counters

    found = []
    for port, first in before.items():
        where = f"port {port}"
        a, b = first.get("stat"), (after.get(port) or {}).get("stat")
        if a is None or b is None or _unread(a) or _unread(b):
            found.append(Finding("fail", where, f"packet statistics not read: {_unread(a) or _unread(b) or 'not queried'}"))
            continue
        errors_a, errors_b = error_counters(a), error_counters(b)
        grown = {k: errors_b[k] - errors_a.get(k, 0) for k in errors_b
                 if errors_b[k] - errors_a.get(k, 0) >= PACKET_ERRORS["growth_fail_at"]}
        if grown:
            found.append(Finding("fail", where, ", ".join(f"{k} +{v} in {PACKET_ERRORS['interval_s']:g} s"
                                                          for k, v in sorted(grown.items()))))
        elif sum(errors_b.values()) >= PACKET_ERRORS["history_warn_at"]:
            found.append(Finding("warn", where, ", ".join(f"{k}={v}" for k, v in sorted(errors_b.items()) if v)
                                 + " (not growing)"))
    return found


def gateway_findings(ports: list[dict]) -> list[Finding]:
    """Each port with an IP: its gateway in its own subnet and its default route through it."""
    found = []
    for p in ports:
        where = f"port {p['port']}"
        ip, gateway, routes = p.get("ip"), p.get("gateway"), p.get("routes")
        if ip is None or _unread(ip):
            continue   # no device IP: nothing routes through this port (the network check reports IPs)
        if gateway is None or _unread(gateway) or routes is None or _unread(routes):
            found.append(Finding("fail", where, f"gateway or routes not read: "
                                                f"{_unread(gateway) or _unread(routes) or 'not queried'}"))
            continue
        if gateway["address"] is None:
            found.append(Finding("warn", where, "no default gateway: only the port's own subnet is reachable"))
            continue
        # The addresses are the node's text: a masked or garbled one is a finding, not a crash.
        try:
            subnet = ipaddress.IPv4Network(f"{ip['address']}/{ip['netmask']}", strict=False)
        except ValueError:
            found.append(Finding("fail", where, f"address {ip['address']!r} netmask {ip['netmask']!r} "
                                                "is not an IPv4 address and netmask"))
            continue
        try:
            address = ipaddress.IPv4Address(gateway["address"])
        except ValueError:
            found.append(Finding("fail", where, f"gateway {gateway['address']!r} is not an IPv4 address"))
            continue
        if address not in subnet:
            found.append(Finding("fail", where, f"gateway {gateway['address']} is outside the port's subnet {subnet}"))
        defaults = [r for r in routes if r["destination"] in ("default", "0.0.0.0")]
        if not any(r["gateway"] == gateway["address"] and (gateway["iface"] in (None, r["iface"])) for r in defaults):
            shown = ", ".join(f"via {r['gateway']} dev {r['iface']}" for r in defaults) or "none"
            found.append(Finding("fail", where, f"default route {shown}, gateway {gateway['address']} "
                                                f"dev {gateway['iface']} configured"))
    return found


# Port speed and FEC. A 910B port is 200GE (ArthurChiao's 910B capture: "Speed: 200000Mb/s"; the 910B
# tool's static_speed takes only 200000 or 100000, hicann/driver tool.c), a 910A port 100GE (MindCluster's
# hccn_tool.go example). A collective runs at the pace of its slowest port; "no FEC" is abnormal
# (MindCluster fault-diag rule Comp_Network_Custom_02, fix `hccn_tool -i N -fec -s encoding rs`).
PORT_SPEED_MBPS = {"910b": 200000, "910": 100000}
FEC_OFF = "no"


def speed_fec_findings(ports: list[dict], chip: str) -> list[Finding]:
    found, speeds, fecs = [], {}, {}
    for p in ports:
        where = f"port {p['port']}"
        speed, fec = p.get("speed", {"error": "not queried"}), p.get("fec", {"error": "not queried"})
        if _unread(speed):
            found.append(Finding("fail", where, f"speed not read: {_unread(speed)}"))
        elif speed is None:
            if p.get("link") == "UP":
                found.append(Finding("fail", where, "link UP but its speed is unknown (Speed: Unknown!)"))
        else:
            speeds[p["port"]] = speed
        if _unread(fec):
            found.append(Finding("fail", where, f"FEC mode not read: {_unread(fec)}"))
        elif fec == FEC_OFF:
            found.append(Finding("fail", where, "FEC off (no FEC mode): bit errors on the link go uncorrected"))
        elif fec is not None:
            fecs.setdefault(fec, []).append(str(p["port"]))
    top, nominal = max(speeds.values(), default=None), PORT_SPEED_MBPS.get(chip)
    found += [Finding("fail", f"port {port}", f"{speed} Mb/s where the other ports run {top} Mb/s")
              for port, speed in speeds.items() if speed < top]
    if speeds and min(speeds.values()) == top and nominal and top < nominal:
        found.append(Finding("warn", "NPU ports", f"every port at {top} Mb/s, below the {chip} port's {nominal} "
                                                  "Mb/s: set so on purpose?"))
    if len(fecs) > 1:
        found.append(Finding("fail", "NPU ports", "FEC modes differ: " + "; ".join(
            f"{mode} at port(s) {', '.join(on)}" for mode, on in sorted(fecs.items()))))
    return found


# TLS of the NPU ports: every rank's must agree, or HCCL cannot set up its links (EI0006; HCCL
# user guide, link setup failures). Certificates report 0 normal, 1 near expiration, 2 expired.
TLS_CERT_EXPIRY = {1: ("warn", "is near its expiration"), 2: ("fail", "has expired")}


def tls_state(ports: list[dict]) -> str | None:
    """"on" / "off" when every port read agrees, "mixed" when they do not, None when none was read."""
    states = {p["tls"]["enabled"] for p in ports if isinstance(p.get("tls"), dict) and "enabled" in p["tls"]}
    return None if not states else "mixed" if len(states) > 1 else "on" if states.pop() else "off"


def tls_findings(ports: list[dict]) -> list[Finding]:
    found = []
    for p in ports:
        tls, where = p.get("tls"), f"port {p['port']}"
        if tls is None or _unread(tls):
            found.append(Finding("fail", where, f"TLS state not read: {_unread(tls) or 'not queried'}"))
            continue
        for name, status in sorted(tls["certificates"].items()):
            if status in TLS_CERT_EXPIRY:
                verdict, what = TLS_CERT_EXPIRY[status]
                found.append(Finding(verdict, where, f"TLS certificate '{name}' {what}"))
    if tls_state(ports) == "mixed":
        on = ", ".join(str(p["port"]) for p in ports if (p.get("tls") or {}).get("enabled") is True)
        off = ", ".join(str(p["port"]) for p in ports if (p.get("tls") or {}).get("enabled") is False)
        found.append(Finding("fail", "NPU ports", f"TLS on at port(s) {on}, off at port(s) {off}"))
    return found


# /etc/hccn.conf against the ports as they run: the driver applies the file at boot, so a port
# that differs from it changes at the next reboot (or its setting was never saved).
HCCN_CONF_FIELDS = (("address", "ip", "address"), ("netmask", "ip", "netmask"), ("netdetect", "netdetect", None),
                    ("gateway", "gateway", "address"))


def hccn_conf_findings(conf: dict | None, ports: list[dict], path: str) -> list[Finding]:
    if conf is None:
        return [Finding("warn", path, "not found: the ports' addresses were not compared with the saved configuration")]
    if _unread(conf):
        return [Finding("fail", path, f"not read: {conf['error']}")]
    found = []
    for p in ports:
        saved, where = conf.get(str(p["port"]), {}), f"port {p['port']}"
        for key, query, field in HCCN_CONF_FIELDS:
            value = p.get(query, {"error": "not queried"})
            if _unread(value):
                found.append(Finding("fail", where, f"{key} not read: {_unread(value)}"))
                continue
            live = value.get(field) if field and isinstance(value, dict) else value
            if saved.get(key) != live and (saved.get(key) or live):
                found.append(Finding("fail", where, f"{key}_{p['port']}={saved.get(key) or '(none)'} in {path}, "
                                                    f"{live or 'none'} on the port"))
    return found


# Cabling, from the switch ports the NPU ports see over LLDP (hccn_tool -lldp -g): two NPU ports
# that see one switch port are cabled wrong (or the map is stale); a port that is up and sees no
# neighbour has LLDP off on its switch or is not cabled where it should be.
def switch_port(neighbor: dict | None) -> str | None:
    """"<system name or chassis id> <port id>", the switch port an NPU port sees; None when it sees none."""
    if not isinstance(neighbor, dict) or "error" in neighbor:
        return None
    return f"{neighbor['system_name'] or neighbor['chassis_id']} {neighbor['port_id']}"


def cabling_findings(ports: list[dict]) -> list[Finding]:
    found, seen = [], {}
    for p in ports:
        lldp, where = p.get("lldp", {"error": "not queried"}), f"port {p['port']}"
        if _unread(lldp):
            found.append(Finding("fail", where, f"LLDP neighbour not read: {_unread(lldp)}"))
        elif lldp is None:
            if p.get("link") == "UP":
                found.append(Finding("warn", where, "link UP but no LLDP neighbour: the switch port is not known"))
        else:
            seen.setdefault(switch_port(lldp), []).append(p["port"])
    found += [Finding("fail", "NPU ports", f"ports {', '.join(map(str, on))} all see switch port {sp}")
              for sp, on in seen.items() if len(on) > 1]
    return found


"""The fleet report, from the merged check records of every target: a summary
first (hosts passed, failed, unreachable), then failures grouped by check and
cause with the hosts they hit, stragglers (a host's figures against the fleet's
median), then per-host detail. Written as terminal text, JSON, JUnit XML, an
HTML page and Prometheus text exposition (for node_exporter's textfile
collector).

Every text in the merged result may come from a node or a target's own error
output: fleet_result makes it safe once (document.clean: no control
characters, nothing XML forbids, no non-finite number, each text bounded),
and each rendering escapes what its own format needs."""
from __future__ import annotations

import json
import math
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Callable, Collection, NamedTuple

import jinja2

from compat_matrix import interrupts, outputs
from compat_matrix.errors import UserError

from . import stragglers as stragglers_mod
from .node import document
from .node.document import (CABLING_ACROSS_NODES, CABLING_NODE_CHECK, CONTROLLER_CHECKS, FLEET, STRAGGLER,
                            SUPER_POD_ACROSS_NODES, SUPER_POD_NODE_CHECK, TLS_ACROSS_NODES, TLS_NODE_CHECK)
from .node.model import (BAD, ERROR, FAILED, HOST_STATES, NOT_CHECKED, PASSED, REACHABLE, RECORD_DEFAULTS,
                         RESULTS_KEY, RESULTS_VERSION, SKIPPED, STANDARD, SUITE, UNREACHABLE, WARNING, CheckResult,
                         HostResult)


STATUS_MARK = {PASSED: "PASS", WARNING: "WARN", FAILED: "FAIL", ERROR: "ERROR", SKIPPED: "SKIP"}
# A host's figure this far below its peers' median (and beyond their spread: stragglers.py) flags it.
STRAGGLER_MARGIN = 0.20
# The figures compared across hosts: name -> (check, how to read it from the check's data, unit).
class Figure(NamedTuple):
    check: str                      # the check whose data holds it
    read: Callable[[dict], object]  # how to read it from that data
    unit: str                       # as reports print it
    metric: str                     # its Prometheus name, in base units as promtool's lint asks
    per_unit: float                 # base units per printed unit
    repeats: Callable[[dict], object]  # its repeated measurements in that data (stragglers.py compares them)


def _largest(data) -> dict:
    """The all_reduce row of the largest message size in a check's data ({} when there is none)."""
    return (rows_of(data) or [{}])[-1]


FIGURES = {
    "train_samples_per_s": Figure("train", lambda d: d.get("samples_per_s"), "samples/s",
                                  "train_samples_per_second", 1.0, lambda d: d.get("samples_per_s_repeats")),
    "allreduce_busbw_gbps": Figure("allreduce_local", lambda d: _largest(d).get("busbw_gbps"), "GB/s",
                                   "allreduce_busbw_bytes_per_second", 1e9,
                                   lambda d: _largest(d).get("busbw_gbps_repeats")),
}
NOT_CHECKED_TEXT = ("no check ran on this host: each check it was given was skipped (each skip says why); "
                    "choose checks that apply to it, or validate at a higher --level")
# The Prometheus report, and its metrics that alerts on unreachable and failing hosts read.
METRICS = "metrics.prom"
HOST_REACHABLE, HOST_PASSED = "npuenv_validation_host_reachable", "npuenv_validation_host_passed"


def load(path: Path) -> dict:
    """A results.json as fleet_result made it: each record's fields that were left out at their defaults
    put back. UserError when it is not of the format this version writes."""
    data = json.loads(Path(path).read_text())
    found = data.get(RESULTS_KEY) if isinstance(data, dict) else None
    if type(found) is not int or found != RESULTS_VERSION:
        raise UserError(f"{path}: not a results.json of format {RESULTS_VERSION} ({RESULTS_KEY} is {found!r}): "
                        f"another version of npuenv wrote it; validate again to write one this version reads")
    data["results"] = [{**RECORD_DEFAULTS, **r} for r in data.get("results", [])]
    return data


def executed(record: dict) -> bool:
    """Whether a record is of a check that executed (CheckResult.executed)."""
    return CheckResult.from_dict(record).executed


def host_status(records: list[dict]) -> str:
    if any(r["check"] == REACHABLE and r["status"] == FAILED for r in records):
        return UNREACHABLE
    if any(r["check"] == SUITE and r["status"] == ERROR for r in records):
        return ERROR
    if any(r["status"] in BAD for r in records):
        return FAILED
    return PASSED if any(map(executed, records)) else NOT_CHECKED


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def rows_of(data) -> list[dict]:
    """The all_reduce rows in a check's data (its "sizes") that can be shown: bytes,
    algbw and busbw numbers. What a node sent in another shape is left out, not a crash."""
    rows = data.get("sizes") if isinstance(data, dict) else None
    return [row for row in rows if isinstance(row, dict) and _number(row.get("bytes"))
            and _number(row.get("algbw_gbps")) and _number(row.get("busbw_gbps"))] if isinstance(rows, list) else []


def _measured(records: list[dict]):
    """(figure's name, host, its value, the check's data) of every figure a host recorded: positive numbers only."""
    for r in records:
        for name, figure in FIGURES.items():
            if r["check"] == figure.check and r["host"] != FLEET and isinstance(r.get("data"), dict):
                value = figure.read(r["data"])
                if _number(value) and value > 0:
                    yield name, r["host"], float(value), r["data"]


def figures(records: list[dict]) -> dict[str, dict[str, float]]:
    """figure -> host -> value, from the data the checks recorded."""
    out: dict[str, dict[str, float]] = {name: {} for name in FIGURES}
    for name, host, value, _ in _measured(records):
        out[name][host] = value
    return out


def samples(records: list[dict]) -> dict[str, dict[str, list[float]]]:
    """figure -> host -> its repeated measurements (the figure alone where a node sent no repeats)."""
    out: dict[str, dict[str, list[float]]] = {name: {} for name in FIGURES}
    for name, host, value, data in _measured(records):
        out[name][host] = stragglers_mod.measurements(FIGURES[name].repeats(data)) or [value]
    return out


def straggler_record(s: dict, margin: float) -> dict:
    """The warning on a straggler's host, saying how sure it is."""
    return CheckResult(s["host"], STRAGGLER, STANDARD, WARNING, data=s,
                       message=f"{s['figure']} {s['value']:.3g} {s['unit']} is {s['ratio']:.2f}x the median "
                               f"{s['median']:.3g} of its {s['peers']['hosts']} {s['peers']['group']} peers (more "
                               f"than {margin:.0%} below); {s['confidence']}: {s['why']}").to_dict()


def host_failure(host: str, check: str, level: str, message: str, summary: str, expected: str, found: str,
                 cause: str, fix: str, status: str = FAILED) -> dict:
    """A record the controller writes about a host (no node sent it): what failed and why."""
    return CheckResult(host, check, level, status, message=message, failure={
        "summary": summary, "expected": expected, "found": found, "cause": cause, "fix": fix}).to_dict()


def tls_across_nodes(records: list[dict]) -> list[dict]:
    """A failure on each node whose NPU ports' TLS differs from the other nodes' (HCCL's links between
    them cannot be set up: EI0006). Nodes whose ports disagree among themselves fail their own check."""
    state = {r["host"]: r["data"]["tls"] for r in records
             if r["check"] == TLS_NODE_CHECK and isinstance(r.get("data"), dict)
             and r["data"].get("tls") in ("on", "off")}
    counts = {s: sum(1 for v in state.values() if v == s) for s in ("on", "off")}
    if min(counts.values()) == 0:
        return []
    # The fewer are the odd ones out; when the fleet is split evenly, every node is.
    odd = {s for s, n in counts.items() if n <= counts["on" if s == "off" else "off"]}
    found = ", ".join(f"TLS {s} on {n} node(s)" for s, n in counts.items())
    return [host_failure(h, TLS_ACROSS_NODES, STANDARD, f"this node's NPU ports have TLS {s}; {found}",
                         f"TLS is {s} here and not on every other node",
                         "one TLS setting on the NPU ports of every node", found,
                         "ranks whose TLS settings differ cannot set up HCCL links between them (EI0006, socket "
                         "timeout; HCCL user guide, link setup failures)",
                         "switch TLS on or off alike on every NPU port of every node, then validate again")
            for h, s in sorted(state.items()) if s in odd]


def cabling_across_nodes(records: list[dict]) -> list[dict]:
    """A failure on each node with an NPU port that sees a switch port another node's port sees too
    (over LLDP): one of the cables is in the wrong switch port, or the cabling map is stale."""
    seen: dict[str, list[tuple[str, str]]] = {}
    for r in records:
        if r["check"] == CABLING_NODE_CHECK and isinstance(r.get("data"), dict) \
                and isinstance(r["data"].get("cabling"), dict):
            for port, switch_port in r["data"]["cabling"].items():
                if isinstance(switch_port, str):
                    seen.setdefault(switch_port, []).append((r["host"], str(port)))
    shared = {sp: on for sp, on in seen.items() if len({h for h, _ in on}) > 1}
    out = []
    for host in sorted({h for on in shared.values() for h, _ in on}):
        mine = [(sp, on) for sp, on in sorted(shared.items()) if any(h == host for h, _ in on)]
        found = "; ".join(f"switch port {sp} seen from " + ", ".join(f"{h} port {p}" for h, p in on)
                          for sp, on in mine)
        out.append(host_failure(host, CABLING_ACROSS_NODES, STANDARD, found,
                                f"{len(mine)} switch port(s) this node shares with others",
                                "every NPU port of the fleet on a switch port of its own", found,
                                "two nodes' NPU ports see one switch port over LLDP: a cable is in the wrong switch "
                                "port, or the switch's neighbour table is stale",
                                "trace the cables of the ports named to the switch and move the one in the wrong "
                                "port; then validate again"))
    return out


def super_pod_across_nodes(records: list[dict]) -> list[dict]:
    """A failure on each node that shares its Server Index with another node of its super pod (the
    index is the server's place in the pod's device ids, SDID bits 31-22, MindCluster's SpodInfo), or
    reports another size of the pod than most of its nodes do."""
    state = {r["host"]: r["data"]["super_pod"] for r in records
             if r["check"] == SUPER_POD_NODE_CHECK and isinstance(r.get("data"), dict)
             and isinstance(r["data"].get("super_pod"), dict)}
    pods: dict[str, list[str]] = {}
    for host, view in state.items():
        pods.setdefault(str(view.get("pod")), []).append(host)
    out = []
    for pod, hosts in sorted(pods.items()):
        sizes = [str(state[h].get("size")) for h in hosts]
        usual = max(sorted(set(sizes)), key=sizes.count)
        on_index: dict[str, list[str]] = {}
        for host in sorted(hosts):
            on_index.setdefault(str(state[host].get("server_index")), []).append(host)
        for host in sorted(hosts):
            index = state[host].get("server_index")
            same = [o for o in on_index[str(index)] if o != host]
            problems = ([f"Server Index {index} also on {', '.join(same)}"] if same else []) + \
                ([f"pod size {state[host].get('size')}, {usual} on most of its nodes"]
                 if str(state[host].get("size")) != usual else [])
            if problems:
                found = "; ".join(problems)
                out.append(host_failure(host, SUPER_POD_ACROSS_NODES, STANDARD, f"super pod {pod}: {found}",
                                        f"this node's place in super pod {pod} is not its own",
                                        "a Server Index of its own for every server of a super pod, one pod size",
                                        found,
                                        "a server's Server ID was not set after a hardware replacement: its devices "
                                        "take ids the pod has given another server, and jobs across the pod fail",
                                        "set the Server ID of the servers named (the server's Redfish interface, as "
                                        "the super pod's guide describes), then validate again"))
    return out


def _by_host(records: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for r in records:
        out.setdefault(r["host"], []).append(r)
    return out


def _hosts_that_ran(records: list[dict], hosts: list[str]) -> dict[str, int]:
    """check -> how many hosts ran it (a record that is not a skip). The controller's
    records of a host (unreachable, suite error) are written only for the hosts they
    hit: those are out of every host of the fleet."""
    ran: dict[str, set[str]] = {}
    for r in records:
        if r["status"] != SKIPPED:
            ran.setdefault(r["check"], set()).add(r["host"])
    return {check: len(hosts) if check in CONTROLLER_CHECKS else len(on) for check, on in ran.items()}


def _cause(r: dict) -> str:
    """A finding's cause: the one its record explains, else its message."""
    return (r.get("failure") or {}).get("cause") or r["message"]


def finding_groups(records: list[dict], statuses: tuple[str, ...], ran: dict[str, int]) -> list[dict]:
    """The records of ``statuses`` grouped by check and cause (the record's explained
    cause, else its message), the biggest group first: hosts, a fix, three examples,
    and ``of``: how many hosts ran the check."""
    groups: dict[tuple[str, str], dict] = {}
    for r in records:
        if r["status"] not in statuses:
            continue
        cause = _cause(r)
        g = groups.setdefault((r["check"], cause), {"check": r["check"], "cause": cause,
                                                    "fix": (r.get("failure") or {}).get("fix", ""),
                                                    "hosts": [], "of": ran.get(r["check"], 0), "examples": []})
        g["hosts"].append(r["host"])
        if len(g["examples"]) < 3:
            g["examples"].append(f"{r['host']}: {r['message']}")
    return sorted(groups.values(), key=lambda g: (-len(g["hosts"]), g["check"]))


def on_every_host(group: dict) -> bool:
    """Whether a finding is the fleet's rather than a host's: every host (two or more) that ran its check has it.
    Reports say it once instead of under each host."""
    return len(group["hosts"]) == group["of"] >= 2


def percentile(ordered: list[float], q: float) -> float:
    """The q-th quantile (0..1) of sorted values, interpolated between the closest ranks
    (Hyndman and Fan's definition 7, the default of R and numpy)."""
    at = (len(ordered) - 1) * q
    low = math.floor(at)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (at - low)


# The spread of a collective's bandwidth over the fleet: these quantiles at each message size, and the hosts
# furthest below the median at the largest size (at most LOWEST_SHOWN, each named).
SPREAD = {"min": 0.0, "p10": 0.1, "median": 0.5, "p90": 0.9, "max": 1.0}
LOWEST_SHOWN = 5


def bandwidth_spread(records: list[dict]) -> dict[str, dict]:
    """check -> the spread of its all_reduce busbw over the hosts that recorded it: per message size the hosts,
    SPREAD's quantiles and how many rows were not correct; and the lowest hosts at the largest size."""
    by_check: dict[str, dict[str, list[dict]]] = {}
    for r in records:
        rows = rows_of(r.get("data"))
        if rows:
            by_check.setdefault(r["check"], {}).setdefault(r["host"], rows)
    out = {}
    for check, by_host in sorted(by_check.items()):
        at_size: dict[int, list[dict]] = {}
        for rows in by_host.values():
            for row in rows:
                at_size.setdefault(row["bytes"], []).append(row)
        sizes = []
        for size, rows in sorted(at_size.items()):
            ordered = sorted(row["busbw_gbps"] for row in rows)
            sizes.append({"bytes": size, "hosts": len(rows),
                          **{name: round(percentile(ordered, q), 4) for name, q in SPREAD.items()},
                          "incorrect": sum(1 for row in rows if row.get("correct") is False)})
        largest = sizes[-1]
        at_largest = {h: row["busbw_gbps"] for h, rows in by_host.items() for row in rows
                      if row["bytes"] == largest["bytes"]}
        below = sorted((v, h) for h, v in at_largest.items() if v < largest["median"])[:LOWEST_SHOWN]
        out[check] = {"hosts": len(by_host), "sizes": sizes,
                      "lowest": [{"host": h, "busbw_gbps": v, "bytes": largest["bytes"],
                                  "ratio": round(v / largest["median"], 3) if largest["median"] else None}
                                 for v, h in below]}
    return out


def fleet_result(records: list[dict], hosts: list[str], outcomes: dict, *,
                 straggler_margin: float = STRAGGLER_MARGIN, peers: dict[str, str] | None = None,
                 straggler_min_peers: int = stragglers_mod.MIN_PEERS, meta: dict | None = None,
                 machines: Collection[str] | None = None) -> dict:
    """The merged result: records plus per-host status, failures and warnings grouped
    by check and cause, figures, the bandwidth's spread and stragglers among ``peers``
    (host -> its peer group: stragglers.py; each straggler also a warning record on its
    host, and the groups too small to compare named), and ``meta`` (the run's level, row,
    targets); made safe for every report. The checks across nodes compare the records of
    ``machines`` only (every host when None): an image target is a container on one of them,
    and sees that machine's ports. Linear in the number of records (fleets of thousands)."""
    found = stragglers_mod.find(samples(records), peers or {}, straggler_margin, min_peers=straggler_min_peers)
    slow = [{**s, "unit": FIGURES[s["figure"]].unit} for s in found.stragglers]
    members = set(hosts if machines is None else machines)
    of_machines = [r for r in records if r["host"] in members]
    records = list(records) + tls_across_nodes(of_machines) + cabling_across_nodes(of_machines) + \
        super_pod_across_nodes(of_machines) + [straggler_record(s, straggler_margin) for s in slow]
    place = {h: i for i, h in enumerate(hosts)}
    records.sort(key=lambda r: (r["host"] == FLEET, place.get(r["host"], 0), r["check"]))
    by_host = _by_host(records)
    status = {}
    for h in hosts:
        document_ = getattr(outcomes.get(h), "document", None) or {}
        status[h] = HostResult(host_status(by_host.get(h, [])), getattr(outcomes.get(h), "reason", ""),
                               document_.get("python"), document_.get("duration_s")).to_dict()
    ran = _hosts_that_ran(records, hosts)
    summary = {s: sum(1 for v in status.values() if v["status"] == s) for s in HOST_STATES}
    result = {RESULTS_KEY: RESULTS_VERSION, "hosts": hosts, "host_status": status,
              "summary": {"hosts": len(hosts), **summary},
              "failures": finding_groups(records, BAD, ran), "warnings": finding_groups(records, (WARNING,), ran),
              "figures": figures(records), "bandwidth": bandwidth_spread(records),
              "stragglers": slow, "straggler_margin": straggler_margin, "not_compared": found.not_compared,
              "results": records, "finished": time.time(), **({"meta": meta} if meta is not None else {})}
    return document.clean(result)


def bandwidth_series(result: dict) -> dict[str, list[dict]]:
    """host and check -> the all_reduce rows (bytes, algbw, busbw) its collective checks recorded."""
    out = {}
    for r in result["results"]:
        rows = rows_of(r.get("data"))
        if rows:
            out.setdefault(f"{r['host']} {r['check']}", rows)
    return out


def _line(text) -> str:
    """A text on one terminal line: the report's own newlines are the only ones (a
    node's could forge a line of the report); the text is clean already."""
    return str(text).replace("\n", " \u23ce ")


def one_line(text: str, limit: int = document.SHOWN_TEXT) -> str:
    """Any text (a target's reason, an error) made safe for one terminal line."""
    return _line(document.clean_text(text, limit))


def show(text: str, stream=None) -> None:
    """Write report text to a terminal that may not take every character (a C locale's ASCII)."""
    stream = stream or sys.stdout
    encoding = getattr(stream, "encoding", None) or "utf-8"
    stream.write(text.encode(encoding, "replace").decode(encoding))


def _rows_table(lines: list[str], name: str, rows: list[dict]) -> None:
    lines.append(f"all_reduce {_line(name)}:")
    lines.append(f"  {'bytes':>12} {'algbw GB/s':>11} {'busbw GB/s':>11} ok")
    for row in rows:
        # yes only where the node said the sum was right; a row that says nothing (or not a boolean) is "-"
        correct = row.get("correct")
        ok = "yes" if correct is True else "NO" if correct is False else "-"
        lines.append(f"  {row['bytes']:>12} {row['algbw_gbps']:>11.3f} {row['busbw_gbps']:>11.3f} {ok}")


# Hosts named on one line of the terminal report; the others are counted.
NAMED = 8
# Fleets up to this size get each host's bandwidth table in the terminal; larger ones the spread.
HOST_TABLES_UP_TO = 4


def _names(hosts: list[str]) -> str:
    return ", ".join(map(_line, hosts[:NAMED])) + (f" and {len(hosts) - NAMED} more" if len(hosts) > NAMED else "")


def _detail(lines: list[str], r: CheckResult) -> None:
    lines.append(f"    {STATUS_MARK[r.status]} {_line(r.check)}: {_line(r.message)}")
    f = r.failure
    if f:
        for key in ("expected", "found", "cause", "fix"):
            lines.append(f"         {key + ':':<9} {_line(f[key])}")


def _groups(result: dict) -> list[tuple[str, dict]]:
    """(status, group) of every group of findings: the failures', then the warnings'."""
    return [(status, g) for key, status in (("failures", FAILED), ("warnings", WARNING)) for g in result.get(key, [])]


def _fleet_wide(result: dict) -> tuple[list[tuple[str, dict]], set[tuple[str, str]]]:
    """(status, group) of the findings on every host, and their (check, cause) keys."""
    groups = [(status, g) for status, g in _groups(result) if on_every_host(g)]
    return groups, {(g["check"], g["cause"]) for _, g in groups}


def _spread_table(lines: list[str], check: str, spread: dict) -> None:
    lines.append(f"all_reduce {_line(check)}, busbw GB/s over {spread['hosts']} hosts:")
    lines.append(f"  {'bytes':>12} " + " ".join(f"{name:>8}" for name in SPREAD) + " not correct")
    for row in spread["sizes"]:
        lines.append(f"  {row['bytes']:>12} " + " ".join(f"{row[name]:>8.3g}" for name in SPREAD)
                     + f" {row['incorrect']:>11}")
    if spread["lowest"]:
        lines.append(f"  lowest at {spread['lowest'][0]['bytes']} bytes: " + ", ".join(
            f"{_line(w['host'])} {w['busbw_gbps']:.3g} ({w['ratio']:.2f}x the median)" for w in spread["lowest"]))


def terminal(result: dict) -> str:
    """The summary for the terminal, from fleet_result's (clean) result: what every host
    shares said once, then only the hosts that differ, so that it reads at 1,000 hosts."""
    t = _line
    lines = []
    meta = result.get("meta", {})
    if meta:
        lines.append(f"npuenv validate: level {t(meta.get('level'))}, row torch_npu {t(meta.get('torch_npu'))} "
                     f"(CANN {t(meta.get('cann'))}), backend {t(meta.get('backend'))}")
    s = result["summary"]
    lines.append(f"hosts: {s['hosts']}: {s[PASSED]} passed, {s[FAILED]} failed, {s[UNREACHABLE]} unreachable"
                 + (f", {s[ERROR]} could not run the suite" if s[ERROR] else "")
                 + (f", {s[NOT_CHECKED]} not checked (every check skipped)" if s[NOT_CHECKED] else ""))
    shared, shared_keys = _fleet_wide(result)
    if shared:
        lines.append("on every host that ran the check (said once, not under each host):")
        for status, g in shared:
            lines.append(f"  {STATUS_MARK[status]} {t(g['check'])} on all {g['of']} hosts")
            lines.append(f"       cause: {t(g['cause'])}")
            if g["fix"]:
                lines.append(f"       fix:   {t(g['fix'])}")
    own = [g for g in result["failures"] if (g["check"], g["cause"]) not in shared_keys]
    if own:
        lines.append("failures by check and cause:")
        for g in own:
            lines.append(f"  {t(g['check'])} on {len(g['hosts'])} of {g['of']} host(s): {_names(g['hosts'])}")
            lines.append(f"       cause: {t(g['cause'])}")
            if g["fix"]:
                lines.append(f"       fix:   {t(g['fix'])}")
    if result["stragglers"]:
        lines.append(f"stragglers (more than {result['straggler_margin']:.0%} below the median of their peers, and "
                     f"beyond the peers' spread):")
        for st in result["stragglers"]:
            lines.append(f"  {t(st['host'])}: {st['figure']} {st['value']:.3g} {st['unit']}, median "
                         f"{st['median']:.3g} of {st['peers']['hosts']} {t(st['peers']['group'])} hosts "
                         f"({st['ratio']:.2f}x), {st['confidence']}")
            lines.append(f"       {t(st['why'])}")
    for group in result.get("not_compared", []):
        lines.append(f"not compared for stragglers: {group['figure']} of {t(group['reason'])}")
    _per_host(lines, result, shared_keys)
    _bandwidth_text(lines, result)
    return "\n".join(lines) + "\n"


def _verdict(result: dict, host: str, records: list[dict]) -> str:
    """A host's verdict as fleet_result judged it; the fleet's (which it does not judge) from its records."""
    known = result["host_status"].get(host)
    return HostResult.from_dict(known).status if known else host_status(records)


def _per_host(lines: list[str], result: dict, shared_keys: set[tuple[str, str]]) -> None:
    """Each host with something of its own to say; the others on one line."""
    lines.append("per host:")
    by_host = _by_host(result["results"])
    quiet: dict[str, list[str]] = {}
    for host in [*result["hosts"], FLEET]:
        records = by_host.get(host, [])
        if not records and host == FLEET:   # no fleet phase (a host without records is shown: not checked)
            continue
        verdict = _verdict(result, host, records)
        own = [r for r in records if r["status"] in (*BAD, WARNING) and (r["check"], _cause(r)) not in shared_keys]
        if not own and verdict != NOT_CHECKED and host != FLEET:
            quiet.setdefault(verdict, []).append(host)
            continue
        counts = {k: sum(1 for r in records if r["status"] == k) for k in STATUS_MARK}
        lines.append(f"  {_line(host)}: {verdict.upper().replace('_', ' ') if verdict != PASSED else 'OK'}  "
                     + "  ".join(f"{v} {k}" for k, v in counts.items() if v))
        if verdict == NOT_CHECKED and host != FLEET:
            lines.append(f"    {NOT_CHECKED_TEXT}")
        for r in map(CheckResult.from_dict, own):
            _detail(lines, r)
    for verdict, hosts in quiet.items():
        word = "OK" if verdict == PASSED else verdict.upper().replace("_", " ")
        lines.append(f"  {word}, nothing more than the above: {len(hosts)} host(s): {_names(hosts)}")


def _bandwidth_text(lines: list[str], result: dict) -> None:
    """Each host's all_reduce table on small fleets; on larger ones the fleet's own tables and each
    check's spread over the hosts."""
    few = len(result["hosts"]) <= HOST_TABLES_UP_TO
    for name, rows in bandwidth_series(result).items():
        if few or name.startswith(FLEET):
            _rows_table(lines, name, rows)
    if not few:
        for check, spread in result.get("bandwidth", {}).items():
            if spread["hosts"] > 1:
                _spread_table(lines, check, spread)


class Plot(NamedTuple):
    width: int = 640
    height: int = 300
    pad: int = 45


PLOT = Plot()


def plot_lines(sizes: list[dict], plot: Plot = PLOT) -> dict[str, str]:
    """SVG points of a bandwidth spread (bandwidth_spread's sizes) over message size on a log2 axis:
    the median and the lowest host as lines, and the band from the 10th to the 90th percentile."""
    xs = [math.log2(max(row["bytes"], 1)) for row in sizes]
    x0, x1 = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
    top = max(row["max"] for row in sizes) or 1.0

    def at(row: dict, name: str) -> str:
        x = plot.pad + (math.log2(max(row["bytes"], 1)) - x0) / (x1 - x0) * (plot.width - 2 * plot.pad)
        y = plot.height - plot.pad - row[name] / top * (plot.height - 2 * plot.pad)
        return f"{x:.1f},{y:.1f}"

    return {"median": " ".join(at(row, "median") for row in sizes), "min": " ".join(at(row, "min") for row in sizes),
            "band": " ".join([*(at(row, "p10") for row in sizes), *(at(row, "p90") for row in reversed(sizes))]),
            "top": top}


_TEMPLATES = jinja2.Environment(loader=jinja2.PackageLoader("validation", "templates"), autoescape=True,
                                undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def _host_view(host: str, records: list[dict], verdict: str, shared_keys: set[tuple[str, str]]) -> dict:
    counts = {k: sum(1 for r in records if r["status"] == k) for k in STATUS_MARK}
    marked = [{**r, "mark": STATUS_MARK[r["status"]]} for r in records]
    return {"name": host, "status": verdict, "verdict": verdict.upper().replace("_", " "),
            "not_checked": verdict == NOT_CHECKED and host != FLEET,
            "counts": ", ".join(f"{v} {k}" for k, v in counts.items() if v) or "none",
            "records": marked, "own": [r for r in marked if r["status"] in (*BAD, WARNING)
                                       and (r["check"], _cause(r)) not in shared_keys]}


def html_page(result: dict) -> str:
    """The HTML page (templates/report.html.j2): the summary, findings grouped by check and cause (those
    on every host marked so), stragglers, the hosts as a list one can filter, and each collective's
    bandwidth as the fleet's spread (median, 10th to 90th percentile, the lowest hosts named)."""
    _, shared_keys = _fleet_wide(result)
    groups = [{**g, "status": status, "mark": STATUS_MARK[status], "every": on_every_host(g),
               "named": ", ".join(g["hosts"][:NAMED]) + (f" and {len(g['hosts']) - NAMED} more"
                                                         if len(g["hosts"]) > NAMED else "")}
              for status, g in _groups(result)]
    by_host = _by_host(result["results"])
    hosts = [_host_view(h, by_host.get(h, []), _verdict(result, h, by_host.get(h, [])), shared_keys)
             for h in [*result["hosts"], *([FLEET] if FLEET in by_host else [])]]
    # The hosts that differ first: those that did not pass, then those with findings of their own.
    hosts.sort(key=lambda h: (h["status"] == PASSED, not h["own"]))
    bandwidth = [{"check": check, "hosts": b["hosts"], "sizes": b["sizes"], "lowest": b["lowest"],
                  **plot_lines(b["sizes"])} for check, b in result.get("bandwidth", {}).items()]
    meta = {k: result.get("meta", {}).get(k, "?") for k in ("level", "torch_npu", "torch", "cann", "backend")}
    return _TEMPLATES.get_template("report.html.j2").render(
        meta=meta, summary=result["summary"], groups=groups, stragglers=result["stragglers"],
        not_compared=result.get("not_compared", []), hosts=hosts,
        bandwidth=bandwidth, plot=PLOT, spread_names=list(SPREAD), not_checked_text=NOT_CHECKED_TEXT)


def junit_xml(result: dict) -> str:
    """One testsuite per host, one testcase per check (JUnit XML as CI systems read it)."""
    root = ET.Element("testsuites", name="npuenv-validation")
    by_host = _by_host(result["results"])
    for host in [*result["hosts"], FLEET]:
        records = [CheckResult.from_dict(r) for r in by_host.get(host, [])]
        # A host none of whose checks ran gets an error case of its own: CI reads a suite of skips as green.
        known = result["host_status"].get(host)   # the fleet has none
        unchecked = bool(known) and HostResult.from_dict(known).status == NOT_CHECKED
        if not records and not unchecked:
            continue
        suite = ET.SubElement(root, "testsuite", name=host, tests=str(len(records) + unchecked),
                              failures=str(sum(r.status == FAILED for r in records)),
                              errors=str(sum(r.status == ERROR for r in records) + unchecked),
                              skipped=str(sum(r.status == SKIPPED for r in records)),
                              time=f"{sum(r.duration_s for r in records):.3f}")
        for r in records:
            case = ET.SubElement(suite, "testcase", classname=host, name=r.check, time=f"{r.duration_s:.3f}")
            f = r.failure or {}
            detail = "\n".join(f"{k}: {f[k]}" for k in ("expected", "found", "cause", "fix") if k in f)
            if r.bad:
                ET.SubElement(case, "failure" if r.status == FAILED else "error", message=r.message).text = detail
            elif r.status == SKIPPED:
                ET.SubElement(case, "skipped", message=r.message)
            elif r.status == WARNING:
                ET.SubElement(case, "system-out").text = "warning: " + r.message
        if unchecked:
            case = ET.SubElement(suite, "testcase", classname=host, name=SUITE, time="0.000")
            ET.SubElement(case, "error", message=NOT_CHECKED_TEXT)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


class _Families:
    """A Prometheus collector of metric families made once (a family per metric with a sample per host and
    check: much faster at 1,000 hosts than a Gauge child per label set)."""

    def __init__(self, families: list):
        self.families = families

    def collect(self):
        return self.families


def prometheus_text(result: dict) -> str:
    """The result in Prometheus text exposition format (node_exporter's textfile collector)."""
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.core import GaugeMetricFamily

    labels = {k: str(result.get("meta", {}).get(k, "")) for k in ("level", "torch_npu", "cann")}
    check = GaugeMetricFamily("npuenv_validation_check_passed",
                              "1 when the check passed (or only warned), 0 when it failed", labels=["host", "check",
                                                                                                     *labels])
    host_up = GaugeMetricFamily(HOST_REACHABLE, "1 when the host was reached and ran the suite", labels=["host"])
    host_ok = GaugeMetricFamily(HOST_PASSED, "1 when the host's checks ran and passed", labels=["host"])
    fig = {name: GaugeMetricFamily(f"npuenv_validation_{f.metric}", f"{name} measured by the {f.check} check, in "
                                   f"base units ({f.per_unit:g} per {f.unit})", labels=["host"])
           for name, f in FIGURES.items()}
    slow = GaugeMetricFamily("npuenv_validation_straggler", "1 when the host's figure is below its peers' median by "
                             "more than the margin and their spread", labels=["host", "figure"])
    finished = GaugeMetricFamily("npuenv_validation_last_run_timestamp_seconds", "when the validation run ended",
                                 value=result["finished"])
    for r in map(CheckResult.from_dict, result["results"]):
        if r.status != SKIPPED and r.check not in CONTROLLER_CHECKS:
            check.add_metric([r.host, r.check, *labels.values()], float(r.status in (PASSED, WARNING)))
    for host, entry in result["host_status"].items():
        verdict = HostResult.from_dict(entry).status
        host_up.add_metric([host], float(verdict not in (UNREACHABLE, ERROR)))
        host_ok.add_metric([host], float(verdict == PASSED))
    for name, by_host in result["figures"].items():
        for host, value in by_host.items():
            fig[name].add_metric([host], value * FIGURES[name].per_unit)
    for st in result["stragglers"]:
        slow.add_metric([st["host"], st["figure"]], 1.0)
    registry = CollectorRegistry()
    registry.register(_Families([check, host_up, host_ok, *fig.values(), slow, finished]))
    return generate_latest(registry).decode()


# results.json's size at most (5 MB: issue 22's aim at 1,000 hosts). Beyond it the data of passed checks is
# left out, the largest first, until it fits.
RESULTS_JSON_BUDGET = 5_000_000



def _compact(value) -> str:
    # Strict JSON: fleet_result's result holds no NaN or Infinity, and none may slip in.
    return json.dumps(value, separators=(",", ":"), allow_nan=False)


def _compact_record(r: dict) -> dict:
    return {k: v for k, v in r.items() if k not in RECORD_DEFAULTS or v != RECORD_DEFAULTS[k]}


def _spare_data(result: dict, sizes: list[int]) -> dict[str, list[int]]:
    """check -> the records whose data results.json may leave out, the check whose records are largest
    (``sizes``) first: passed checks', and the findings on every host but for the first host's copy
    (the finding is said once)."""
    _, shared = _fleet_wide(result)
    seen: set[tuple[str, str]] = set()
    spare: dict[str, list[int]] = {}
    size: dict[str, int] = {}
    for i, r in enumerate(result["results"]):
        if r.get("data") is None:
            continue
        key = (r["check"], _cause(r))
        if r["status"] == PASSED or (key in shared and key in seen):
            spare.setdefault(r["check"], []).append(i)
            size[r["check"]] = size.get(r["check"], 0) + sizes[i]
        seen.add(key)
    return {check: spare[check] for check in sorted(spare, key=lambda c: (-size[c], c))}


def omitted_note(checks: list[str]) -> dict:
    """What results.json says of the checks whose data it left out."""
    return {"checks": checks,
            "why": f"results.json is kept within {RESULTS_JSON_BUDGET} bytes: the data these checks recorded when "
                   f"they passed (and on all hosts but the first when a finding is on every host) was left out; "
                   f"validate a host alone (--target) to see all of its own"}


def results_json(result: dict) -> str:
    """The result as compact JSON (a record's fields at their RECORD_DEFAULTS left out: load() puts them
    back), within RESULTS_JSON_BUDGET: when it is larger, the data of passed checks and the copies of a
    finding every host shares are left out check by check, the check with the most data first, until it
    fits (the figures and the bandwidth's spread were read from them already); "data_omitted" names those
    checks. Bigger still, it is written as it then is. Each record is written once (fleets of thousands)."""
    def head(rest: dict) -> str:   # the object up to its records' list, which comes last
        return _compact(rest)[:-1] + ("," if rest else "") + '"results":['

    rest = {k: v for k, v in result.items() if k != "results"}
    records = [_compact_record(r) for r in result["results"]]
    texts = [_compact(r) for r in records]
    over = len(head(rest)) + sum(map(len, texts)) + max(len(texts) - 1, 0) + len("]}") - RESULTS_JSON_BUDGET
    if over > 0:
        spare = _spare_data(result, list(map(len, texts)))
        # Room for the note, as long as it can be (every check named): the file stays within the budget.
        over += len(',"data_omitted":' + _compact(omitted_note(list(spare))))
        left_out = []
        for check, indices in spare.items():
            if over <= 0:
                break
            for i in indices:
                slim = _compact({k: v for k, v in records[i].items() if k != "data"})
                over -= len(texts[i]) - len(slim)
                texts[i] = slim
            left_out.append(check)
        rest["data_omitted"] = omitted_note(left_out)
    return head(rest) + ",".join(texts) + "]}\n"


REPORTS = {"results.json": results_json, "report.html": html_page,
           "junit.xml": junit_xml, METRICS: prometheus_text}
REPORT_MODE = 0o644


def remove_all(out_dir: Path) -> None:
    """Remove the reports of an earlier run from ``out_dir``; a UserError names those that stay."""
    stuck = []
    for name in REPORTS:
        try:
            (Path(out_dir) / name).unlink(missing_ok=True)
        except OSError as e:
            stuck.append(f"{Path(out_dir) / name} ({e.strerror})")
    if stuck:
        raise UserError(f"the reports of an earlier run could not be removed: {', '.join(stuck)}; remove them by "
                        "hand so that nobody takes them for this run's")


def _render(result: dict, name: str) -> str:
    try:
        return REPORTS[name](result)
    except UserError:   # an interrupt among them
        raise
    except Exception as e:
        raise UserError(f"{name} could not be made ({type(e).__name__}: {document.clean_text(str(e), 300)}); "
                        "this is a bug of npuenv: please report it with the command and its output") from e


def write_all(result: dict, out_dir: Path, names: tuple[str, ...] = tuple(REPORTS)) -> list[Path]:
    """The reports ``names`` of ``result`` (fleet_result's) into ``out_dir``, all or none.

    Every one is rendered first, written into a temporary folder beside
    ``out_dir`` and then moved in (outputs.write_files); the other reports of an
    earlier run there are removed. When any step fails, or the command is
    interrupted, every report in ``out_dir`` is removed: a new results.json must
    never sit beside an old junit.xml that still says passed."""
    out_dir = Path(out_dir)
    try:
        texts = {name: (_render(result, name), REPORT_MODE) for name in names}
        # A signal waits until the set is whole (then removes it: "nothing was written").
        with interrupts.deferred():
            outputs.write_files(out_dir, texts, "--out")
            for name in set(REPORTS) - set(names):
                (out_dir / name).unlink(missing_ok=True)
    except BaseException as e:
        gone = ""
        try:
            remove_all(out_dir)
        except UserError as left:
            gone = f"; {left}"
        if isinstance(e, interrupts.Interrupted) or not isinstance(e, Exception):
            raise
        why = str(e) if isinstance(e, UserError) else f"{out_dir}: {type(e).__name__}: {e}"
        raise UserError(f"the reports were not written: {why}" + (gone or f"; the reports of an earlier run in "
                        f"{out_dir} were removed, so that none of them is taken for this run's")) from e
    return [out_dir / name for name in names]

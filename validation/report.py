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

import html
import json
import math
import statistics
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Callable, NamedTuple

from compat_matrix import interrupts, outputs
from compat_matrix.errors import UserError

from . import document
from .document import (BAD, CABLING_ACROSS_NODES, CABLING_NODE_CHECK, CONTROLLER_CHECKS, ERROR, FAILED, PASSED,
                       SUPER_POD_ACROSS_NODES, SUPER_POD_NODE_CHECK,
                       REACHABLE, SKIPPED, STRAGGLER, SUITE, TLS_ACROSS_NODES, TLS_NODE_CHECK, WARNING)

# The host name of records about the whole fleet (the checks that need every node).
FLEET = "fleet"

STATUS_MARK = {PASSED: "PASS", WARNING: "WARN", FAILED: "FAIL", ERROR: "ERROR", SKIPPED: "SKIP"}
# A host's figure this far below the fleet's median flags it as a straggler.
STRAGGLER_MARGIN = 0.20
# The figures compared across hosts: name -> (check, how to read it from the check's data, unit).
class Figure(NamedTuple):
    check: str                      # the check whose data holds it
    read: Callable[[dict], object]  # how to read it from that data
    unit: str                       # as reports print it
    metric: str                     # its Prometheus name, in base units as promtool's lint asks
    per_unit: float                 # base units per printed unit


FIGURES = {
    "train_samples_per_s": Figure("train", lambda d: d.get("samples_per_s"), "samples/s",
                                  "train_samples_per_second", 1.0),
    "allreduce_busbw_gbps": Figure("allreduce_local", lambda d: (rows_of(d) or [{}])[-1].get("busbw_gbps"), "GB/s",
                                   "allreduce_busbw_bytes_per_second", 1e9),
}
# A host's verdict: its checks passed or failed, it was not reached, the suite could not run there, or
# the suite ran and no check executed (every one skipped: skipped is not passed, DESIGN.md 6).
UNREACHABLE, NOT_CHECKED = "unreachable", "not_checked"
HOST_STATES = (PASSED, FAILED, UNREACHABLE, ERROR, NOT_CHECKED)
NOT_CHECKED_TEXT = ("no check ran on this host: each check it was given was skipped (each skip says why); "
                    "choose checks that apply to it, or validate at a higher --level")
# The Prometheus report, and its metrics that alerts on unreachable and failing hosts read.
METRICS = "metrics.prom"
HOST_REACHABLE, HOST_PASSED = "npuenv_validation_host_reachable", "npuenv_validation_host_passed"


def load(path: Path) -> dict:
    return json.loads(Path(path).read_text())


def executed(record: dict) -> bool:
    """Whether a record is of a check that executed: not a skip, not the controller's record of the host."""
    return record["status"] in (PASSED, FAILED, WARNING) and record["check"] not in (REACHABLE, SUITE)


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


def figures(records: list[dict]) -> dict[str, dict[str, float]]:
    """figure -> host -> value, from the data the checks recorded."""
    out: dict[str, dict[str, float]] = {name: {} for name in FIGURES}
    for r in records:
        for name, figure in FIGURES.items():
            if r["check"] == figure.check and r["host"] != FLEET and isinstance(r.get("data"), dict):
                value = figure.read(r["data"])
                if _number(value) and value > 0:
                    out[name][r["host"]] = float(value)
    return out


def stragglers(figs: dict[str, dict[str, float]], margin: float) -> list[dict]:
    """Hosts more than ``margin`` below the fleet's median of a figure."""
    out = []
    for name, by_host in figs.items():
        if len(by_host) < 2:
            continue
        median = statistics.median(by_host.values())
        for host, value in sorted(by_host.items()):
            if value < median * (1 - margin):
                out.append({"host": host, "figure": name, "value": value, "median": median,
                            "ratio": round(value / median, 3), "unit": FIGURES[name].unit})
    return out


def host_failure(host: str, check: str, level: str, message: str, summary: str, expected: str, found: str,
                 cause: str, fix: str, status: str = FAILED) -> dict:
    """A record the controller writes about a host (no node sent it): what failed and why."""
    return {"host": host, "check": check, "level": level, "status": status, "duration_s": 0.0,
            "message": message, "data": None,
            "failure": {"summary": summary, "expected": expected, "found": found, "cause": cause, "fix": fix}}


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
    return [host_failure(h, TLS_ACROSS_NODES, "standard", f"this node's NPU ports have TLS {s}; {found}",
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
        out.append(host_failure(host, CABLING_ACROSS_NODES, "standard", found,
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
                out.append(host_failure(host, SUPER_POD_ACROSS_NODES, "standard", f"super pod {pod}: {found}",
                                        f"this node's place in super pod {pod} is not its own",
                                        "a Server Index of its own for every server of a super pod, one pod size",
                                        found,
                                        "a server's Server ID was not set after a hardware replacement: its devices "
                                        "take ids the pod has given another server, and jobs across the pod fail",
                                        "set the Server ID of the servers named (the server's Redfish interface, as "
                                        "the super pod's guide describes), then validate again"))
    return out


def fleet_result(records: list[dict], hosts: list[str], outcomes: dict, *,
                 straggler_margin: float = STRAGGLER_MARGIN, meta: dict | None = None) -> dict:
    """The merged result: records plus per-host status, grouped failures,
    figures and stragglers (each straggler also a warning record on its host),
    and ``meta`` (the run's level, row, targets); made safe for every report."""
    figs = figures(records)
    slow = stragglers(figs, straggler_margin)
    records = list(records) + tls_across_nodes(records) + cabling_across_nodes(records) + \
        super_pod_across_nodes(records)
    for s in slow:
        records.append({"host": s["host"], "check": STRAGGLER, "level": "standard", "status": WARNING,
                        "duration_s": 0.0, "data": s,
                        "message": f"{s['figure']} {s['value']:.3g} {s['unit']} is {s['ratio']:.2f}x the fleet "
                                   f"median {s['median']:.3g} (more than {straggler_margin:.0%} below)"})
    records.sort(key=lambda r: (r["host"] == FLEET, hosts.index(r["host"]) if r["host"] in hosts else 0, r["check"]))
    status = {}
    for h in hosts:
        mine = [r for r in records if r["host"] == h]
        outcome = outcomes.get(h)
        status[h] = {"status": host_status(mine), "reason": getattr(outcome, "reason", ""),
                     "python": (getattr(outcome, "document", None) or {}).get("python"),
                     "duration_s": (getattr(outcome, "document", None) or {}).get("duration_s")}
    groups: dict[tuple[str, str], dict] = {}
    for r in records:
        if r["status"] not in BAD:
            continue
        cause = (r.get("failure") or {}).get("cause") or r["message"]
        g = groups.setdefault((r["check"], cause), {"check": r["check"], "cause": cause,
                                                    "fix": (r.get("failure") or {}).get("fix", ""), "hosts": [],
                                                    "examples": []})
        g["hosts"].append(r["host"])
        if len(g["examples"]) < 3:
            g["examples"].append(f"{r['host']}: {r['message']}")
    summary = {s: sum(1 for v in status.values() if v["status"] == s) for s in HOST_STATES}
    result = {"hosts": hosts, "host_status": status, "summary": {"hosts": len(hosts), **summary},
              "failures": sorted(groups.values(), key=lambda g: (-len(g["hosts"]), g["check"])),
              "figures": figs, "stragglers": slow, "straggler_margin": straggler_margin,
              "results": records, "finished": time.time(), **({"meta": meta} if meta is not None else {})}
    return document.clean(result)


def bandwidth_series(result: dict) -> dict[str, list[dict]]:
    """host -> the all_reduce rows (bytes, algbw, busbw) its collective checks recorded."""
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
        lines.append(f"  {row['bytes']:>12} {row['algbw_gbps']:>11.3f} {row['busbw_gbps']:>11.3f} "
                     f"{'yes' if row.get('correct', True) else 'NO'}")


def terminal(result: dict) -> str:
    """The summary for the terminal, from fleet_result's (clean) result."""
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
    if result["failures"]:
        lines.append("failures by check and cause:")
        for g in result["failures"]:
            hosts = ", ".join(map(t, g["hosts"][:8])) + (f" and {len(g['hosts']) - 8} more" if len(g["hosts"]) > 8
                                                          else "")
            lines.append(f"  {t(g['check'])} on {len(g['hosts'])} host(s): {hosts}")
            lines.append(f"       cause: {t(g['cause'])}")
            if g["fix"]:
                lines.append(f"       fix:   {t(g['fix'])}")
    if result["stragglers"]:
        lines.append(f"stragglers (more than {result['straggler_margin']:.0%} below the fleet median):")
        for st in result["stragglers"]:
            lines.append(f"  {t(st['host'])}: {st['figure']} {st['value']:.3g} {st['unit']}, median "
                         f"{st['median']:.3g} ({st['ratio']:.2f}x)")
    lines.append("per host:")
    by_host: dict[str, list[dict]] = {}
    for r in result["results"]:
        by_host.setdefault(r["host"], []).append(r)
    for host in [*result["hosts"], FLEET]:
        records = by_host.get(host, [])
        verdict = (result["host_status"].get(host) or {"status": host_status(records)})["status"]
        if not records and host == FLEET:   # no fleet phase (a host without records is shown: not checked)
            continue
        counts = {k: sum(1 for r in records if r["status"] == k) for k in STATUS_MARK}
        lines.append(f"  {t(host)}: {verdict.upper().replace('_', ' ') if verdict != PASSED else 'OK'}  "
                     + "  ".join(f"{v} {k}" for k, v in counts.items() if v))
        if verdict == NOT_CHECKED and host != FLEET:
            lines.append(f"    {NOT_CHECKED_TEXT}")
        for r in records:
            if r["status"] in (*BAD, WARNING):
                lines.append(f"    {STATUS_MARK[r['status']]} {t(r['check'])}: {t(r['message'])}")
                f = r.get("failure")
                if f:
                    for key in ("expected", "found", "cause", "fix"):
                        lines.append(f"         {key + ':':<9} {t(f[key])}")
    for name, rows in bandwidth_series(result).items():
        if name.startswith(FLEET) or len(result["hosts"]) <= 4:
            _rows_table(lines, name, rows)
    return "\n".join(lines) + "\n"


def _svg_plot(series: dict[str, list[dict]], width=640, height=300) -> str:
    """busbw over message size (log2 x axis), one polyline per host."""
    points = [(row["bytes"], row["busbw_gbps"]) for rows in series.values() for row in rows]
    if not points:
        return ""
    xs = [math.log2(max(b, 1)) for b, _ in points]
    x0, x1 = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
    y1 = max(bw for _, bw in points) or 1.0
    pad = 45
    sx = lambda b: pad + (math.log2(max(b, 1)) - x0) / (x1 - x0) * (width - 2 * pad)  # noqa: E731
    sy = lambda v: height - pad - v / y1 * (height - 2 * pad)  # noqa: E731
    palette = ["#0969da", "#cf222e", "#1a7f37", "#8250df", "#9a6700", "#bf3989"]
    parts = [f'<svg id="bandwidth-plot" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'role="img" aria-label="all_reduce bus bandwidth by message size">',
             f'<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}" stroke="#888"/>',
             f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{height - pad}" stroke="#888"/>',
             f'<text x="{width / 2}" y="{height - 8}" text-anchor="middle" font-size="12">message size (bytes, log scale)</text>',
             f'<text x="12" y="{pad - 10}" font-size="12">busbw GB/s (max {y1:.3f})</text>']
    for i, (name, rows) in enumerate(sorted(series.items())):
        colour = palette[i % len(palette)]
        pts = " ".join(f"{sx(r['bytes']):.1f},{sy(r['busbw_gbps']):.1f}" for r in rows)
        parts.append(f'<polyline class="series" fill="none" stroke="{colour}" stroke-width="2" points="{pts}">'
                     f'<title>{html.escape(name)}</title></polyline>')
        parts.append(f'<text x="{width - pad}" y="{pad + 14 * i}" text-anchor="end" font-size="11" '
                     f'fill="{colour}">{html.escape(name)}</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def html_page(result: dict) -> str:
    esc = html.escape
    checks = sorted({r["check"] for r in result["results"]})
    hosts = [*result["hosts"], *([FLEET] if any(r["host"] == FLEET for r in result["results"]) else [])]
    cell = {(r["host"], r["check"]): r for r in result["results"]}
    meta, s = result.get("meta", {}), result["summary"]
    out = ["<!DOCTYPE html>", "<html lang='en'><head><meta charset='utf-8'>",
           "<title>npuenv validation report</title>",
           "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
           "td,th{border:1px solid #ccc;padding:4px 8px;font-size:13px}th{background:#f3f3f3}"
           ".passed{background:#dafbe1}.warning{background:#fff8c5}"
           ".failed,.error,.unreachable,.not_checked{background:#ffebe9}"
           ".skipped{background:#f6f8fa}.failure{margin:0.6em 0;padding:0.6em;border-left:4px solid #cf222e}</style>",
           "</head><body>", "<h1>npuenv validation report</h1>"]
    out.append(f"<p id='summary'>Level <b>{esc(str(meta.get('level', '?')))}</b>, row torch_npu "
               f"<b>{esc(str(meta.get('torch_npu', '?')))}</b> (torch {esc(str(meta.get('torch', '?')))}, "
               f"CANN {esc(str(meta.get('cann', '?')))}), backend <b>{esc(str(meta.get('backend', '?')))}</b>: "
               f"<b>{s['hosts']}</b> host(s), <span class='passed'>{s[PASSED]} passed</span>, "
               f"<span class='failed'>{s[FAILED]} failed</span>, "
               f"<span class='unreachable'>{s[UNREACHABLE]} unreachable</span>"
               + (f", <span class='error'>{s[ERROR]} could not run the suite</span>" if s[ERROR] else "")
               + (f", <span class='not_checked'>{s[NOT_CHECKED]} not checked (every check skipped)</span>"
                  if s[NOT_CHECKED] else "") + ".</p>")
    out.append(f"<h2>Failures by check and cause ({len(result['failures'])})</h2><table id='failures'>"
               "<tr><th>check</th><th>hosts</th><th>cause</th><th>fix</th><th>examples</th></tr>")
    for g in result["failures"]:
        out.append(f"<tr class='failed'><td>{esc(g['check'])}</td><td>{len(g['hosts'])}: "
                   f"{esc(', '.join(g['hosts']))}</td><td>{esc(g['cause'])}</td><td>{esc(g['fix'])}</td>"
                   f"<td>{'<br>'.join(esc(e) for e in g['examples'])}</td></tr>")
    out.append("</table>")
    out.append(f"<h2>Stragglers ({len(result['stragglers'])})</h2><table id='stragglers'><tr><th>host</th>"
               "<th>figure</th><th>value</th><th>fleet median</th><th>ratio</th></tr>")
    for st in result["stragglers"]:
        out.append(f"<tr class='warning'><td>{esc(st['host'])}</td><td>{esc(st['figure'])}</td>"
                   f"<td>{st['value']:.4g} {esc(st['unit'])}</td><td>{st['median']:.4g}</td><td>{st['ratio']:.2f}</td></tr>")
    out.append("</table>")
    out.append("<h2>Hosts and checks</h2><table id='matrix'><tr><th>check</th>" +
               "".join(f"<th class='host {esc((result['host_status'].get(h) or {}).get('status', ''))}'>{esc(h)}</th>"
                       for h in hosts) + "</tr>")
    for c in checks:
        row = [f"<td>{esc(c)}</td>"]
        for h in hosts:
            r = cell.get((h, c))
            row.append("<td></td>" if r is None else
                       f"<td class='{r['status']}' title='{esc(r['message'])}'>{STATUS_MARK[r['status']]}</td>")
        out.append("<tr>" + "".join(row) + "</tr>")
    out.append("</table>")
    failures = [r for r in result["results"] if r["status"] in BAD]
    out.append(f"<h2>Failures ({len(failures)})</h2>")
    for r in failures:
        f = r.get("failure") or {}
        out.append(f"<div class='failure'><b>{esc(r['host'])}</b> &mdash; {esc(r['check'])}: {esc(r['message'])}")
        if f:
            out.append("<ul>" + "".join(f"<li>{k}: {esc(str(f[k]))}</li>" for k in ("expected", "found", "cause", "fix"))
                       + "</ul>")
        out.append("</div>")
    series = bandwidth_series(result)
    out.append("<h2>all_reduce bandwidth</h2>")
    if series:
        out.append(_svg_plot(series))
        out.append("<table id='bandwidth'><tr><th>host / check</th><th>bytes</th><th>algbw GB/s</th>"
                   "<th>busbw GB/s</th><th>correct</th></tr>")
        for name, rows in sorted(series.items()):
            for row in rows:
                out.append(f"<tr><td>{esc(name)}</td><td>{row['bytes']}</td><td>{row['algbw_gbps']:.3f}</td>"
                           f"<td>{row['busbw_gbps']:.3f}</td><td>{'yes' if row.get('correct', True) else 'NO'}</td></tr>")
        out.append("</table>")
    else:
        out.append("<p>No collective ran at this level.</p>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def junit_xml(result: dict) -> str:
    """One testsuite per host, one testcase per check (JUnit XML as CI systems read it)."""
    root = ET.Element("testsuites", name="npuenv-validation")
    for host in [*result["hosts"], FLEET]:
        records = [r for r in result["results"] if r["host"] == host]
        # A host none of whose checks ran gets an error case of its own: CI reads a suite of skips as green.
        unchecked = (result["host_status"].get(host) or {}).get("status") == NOT_CHECKED
        if not records and not unchecked:
            continue
        suite = ET.SubElement(root, "testsuite", name=host, tests=str(len(records) + unchecked),
                              failures=str(sum(r["status"] == FAILED for r in records)),
                              errors=str(sum(r["status"] == ERROR for r in records) + unchecked),
                              skipped=str(sum(r["status"] == SKIPPED for r in records)),
                              time=f"{sum(r['duration_s'] for r in records):.3f}")
        for r in records:
            case = ET.SubElement(suite, "testcase", classname=host, name=r["check"], time=f"{r['duration_s']:.3f}")
            f = r.get("failure") or {}
            detail = "\n".join(f"{k}: {f[k]}" for k in ("expected", "found", "cause", "fix") if k in f)
            if r["status"] in BAD:
                ET.SubElement(case, "failure" if r["status"] == FAILED else "error", message=r["message"]).text = detail
            elif r["status"] == SKIPPED:
                ET.SubElement(case, "skipped", message=r["message"])
            elif r["status"] == WARNING:
                ET.SubElement(case, "system-out").text = "warning: " + r["message"]
        if unchecked:
            case = ET.SubElement(suite, "testcase", classname=host, name=SUITE, time="0.000")
            ET.SubElement(case, "error", message=NOT_CHECKED_TEXT)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def prometheus_text(result: dict) -> str:
    """The result in Prometheus text exposition format (node_exporter's textfile collector)."""
    from prometheus_client import CollectorRegistry, Gauge, generate_latest

    registry = CollectorRegistry()
    labels = {k: str(result.get("meta", {}).get(k, "")) for k in ("level", "torch_npu", "cann")}
    check = Gauge("npuenv_validation_check_passed", "1 when the check passed (or only warned), 0 when it failed",
                  ["host", "check", *labels], registry=registry)
    host_up = Gauge(HOST_REACHABLE, "1 when the host was reached and ran the suite",
                    ["host"], registry=registry)
    host_ok = Gauge(HOST_PASSED, "1 when the host's checks ran and passed", ["host"], registry=registry)
    fig = {name: Gauge(f"npuenv_validation_{f.metric}", f"{name} measured by the {f.check} check, in base units "
                       f"({f.per_unit:g} per {f.unit})", ["host"], registry=registry) for name, f in FIGURES.items()}
    slow = Gauge("npuenv_validation_straggler", "1 when the host's figure is below the fleet median by more than the "
                 "margin", ["host", "figure"], registry=registry)
    finished = Gauge("npuenv_validation_last_run_timestamp_seconds", "when the validation run ended",
                     registry=registry)
    for r in result["results"]:
        if r["status"] != SKIPPED and r["check"] not in CONTROLLER_CHECKS:
            check.labels(host=r["host"], check=r["check"], **labels).set(r["status"] in (PASSED, WARNING))
    for host, st in result["host_status"].items():
        host_up.labels(host=host).set(st["status"] not in (UNREACHABLE, ERROR))
        host_ok.labels(host=host).set(st["status"] == PASSED)
    for name, by_host in result["figures"].items():
        for host, value in by_host.items():
            fig[name].labels(host=host).set(value * FIGURES[name].per_unit)
    for st in result["stragglers"]:
        slow.labels(host=st["host"], figure=st["figure"]).set(1)
    finished.set(result["finished"])
    return generate_latest(registry).decode()


# Strict JSON: fleet_result's result holds no NaN or Infinity, and none may slip in.
REPORTS = {"results.json": lambda r: json.dumps(r, indent=1, allow_nan=False) + "\n", "report.html": html_page,
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

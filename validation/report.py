"""Reports from the suite's JSON result: a terminal summary and an HTML fleet
page (hosts x checks, each failure's explanation, the bandwidth table and plot)."""
from __future__ import annotations

import html
import json
from pathlib import Path

STATUS_MARK = {"passed": "PASS", "warning": "WARN", "failed": "FAIL", "error": "ERROR", "skipped": "SKIP"}
COLOURS = {"passed": "#1a7f37", "warning": "#9a6700", "failed": "#cf222e", "error": "#cf222e", "skipped": "#6e7781"}


def load(path: Path) -> dict:
    return json.loads(Path(path).read_text())


def bandwidth_series(result: dict) -> dict[str, list[dict]]:
    """host -> the all_reduce rows (bytes, algbw, busbw) its collective checks recorded."""
    out = {}
    for r in result["results"]:
        rows = (r.get("data") or {}).get("sizes") if isinstance(r.get("data"), dict) else None
        if rows:
            out.setdefault(f"{r['host']} {r['check']}", rows)
    return out


def terminal(result: dict) -> str:
    lines = []
    meta = result.get("meta", {})
    if meta:
        lines.append(f"npuenv validate: level {meta.get('level')}, row torch_npu {meta.get('torch_npu')} "
                     f"(CANN {meta.get('cann')}), backend {meta.get('backend')}")
    by_host: dict[str, list[dict]] = {}
    for r in result["results"]:
        by_host.setdefault(r["host"], []).append(r)
    for host, records in sorted(by_host.items()):
        counts = {s: sum(1 for r in records if r["status"] == s) for s in STATUS_MARK}
        verdict = "FAILED" if counts["failed"] or counts["error"] else "OK"
        lines.append(f"{host}: {verdict}  " + "  ".join(f"{v} {k}" for k, v in counts.items() if v))
        for r in records:
            if r["status"] in ("failed", "error", "warning"):
                lines.append(f"  {STATUS_MARK[r['status']]} {r['check']}: {r['message']}")
                f = r.get("failure")
                if f:
                    lines.append(f"       expected: {f['expected']}")
                    lines.append(f"       found:    {f['found']}")
                    lines.append(f"       cause:    {f['cause']}")
                    lines.append(f"       fix:      {f['fix']}")
    for name, rows in bandwidth_series(result).items():
        lines.append(f"all_reduce {name}:")
        lines.append(f"  {'bytes':>12} {'algbw GB/s':>11} {'busbw GB/s':>11} ok")
        for row in rows:
            lines.append(f"  {row['bytes']:>12} {row['algbw_gbps']:>11.3f} {row['busbw_gbps']:>11.3f} "
                         f"{'yes' if row.get('correct', True) else 'NO'}")
    return "\n".join(lines) + "\n"


def _svg_plot(series: dict[str, list[dict]], width=640, height=300) -> str:
    """busbw over message size (log2 x axis), one polyline per host."""
    points = [(row["bytes"], row["busbw_gbps"]) for rows in series.values() for row in rows]
    if not points:
        return ""
    import math
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
    checks = sorted({r["check"] for r in result["results"]})
    hosts = sorted({r["host"] for r in result["results"]})
    cell = {(r["host"], r["check"]): r for r in result["results"]}
    meta = result.get("meta", {})
    esc = html.escape
    out = ["<!DOCTYPE html>", "<html lang='en'><head><meta charset='utf-8'>",
           "<title>npuenv validation report</title>",
           "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
           "td,th{border:1px solid #ccc;padding:4px 8px;font-size:13px}th{background:#f3f3f3}"
           ".passed{background:#dafbe1}.warning{background:#fff8c5}.failed,.error{background:#ffebe9}"
           ".skipped{background:#f6f8fa}.failure{margin:0.6em 0;padding:0.6em;border-left:4px solid #cf222e}</style>",
           "</head><body>", "<h1>npuenv validation report</h1>"]
    out.append(f"<p id='summary'>Level <b>{esc(str(meta.get('level', '?')))}</b>, row torch_npu "
               f"<b>{esc(str(meta.get('torch_npu', '?')))}</b> (torch {esc(str(meta.get('torch', '?')))}, "
               f"CANN {esc(str(meta.get('cann', '?')))}), backend <b>{esc(str(meta.get('backend', '?')))}</b>, "
               f"{len([h for h in hosts if h != 'fleet'])} host(s), {result.get('duration_s', '?')} s.</p>")
    out.append("<h2>Hosts and checks</h2><table id='matrix'><tr><th>check</th>" +
               "".join(f"<th class='host'>{esc(h)}</th>" for h in hosts) + "</tr>")
    for c in checks:
        row = [f"<td>{esc(c)}</td>"]
        for h in hosts:
            r = cell.get((h, c))
            if r is None:
                row.append("<td></td>")
            else:
                row.append(f"<td class='{r['status']}' title='{esc(r['message'])}'>{STATUS_MARK[r['status']]}</td>")
        out.append("<tr>" + "".join(row) + "</tr>")
    out.append("</table>")
    failures = [r for r in result["results"] if r["status"] in ("failed", "error")]
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

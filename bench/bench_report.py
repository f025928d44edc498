"""The fleet report at 1,000 hosts (issue 22), measured in one run.

A fleet of N hosts is generated from one simulated node's records at the full
level (tests/sim/fleet_documents.py: each host with figures of its own, a few
with trouble). For 100 and 1,000 hosts this measures the controller's CPU
seconds to merge the records (report.fleet_result) and to render every report
(terminal, results.json, report.html, junit.xml, metrics.prom), and the sizes.

Figures: the render and merge time at 1,000 hosts (goal: rendering <= 2 s), the
ratio of 1,000 hosts' time to 100 hosts' (10 when the work grows linearly, 100
when it grows with the square), results.json's size against its 5 MB budget,
and the terminal report's lines.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.sim.fleet_documents import Fleet  # noqa: E402
from validation import report  # noqa: E402

SIZES = (100, 1000)
REPEATS = 3   # the least of three runs: what the work costs, not what else the machine did meanwhile


def cpu(fn, *args, **kwargs):
    best, out = float("inf"), None
    for _ in range(REPEATS):
        start = time.process_time()
        out = fn(*args, **kwargs)
        best = min(best, time.process_time() - start)
    return best, out


def measure(size: int) -> dict:
    fleet = Fleet(size)
    merge_s, result = cpu(report.fleet_result, fleet.records, fleet.hosts, {}, meta={**fleet.meta})
    figures = {"merge_cpu_s": merge_s, "render_cpu_s": 0.0}
    for name, render in [("terminal", report.terminal), *report.REPORTS.items()]:
        seconds, text = cpu(render, result)
        figures["render_cpu_s"] += seconds
        figures[f"{name}_cpu_s"] = seconds
        figures[f"{name}_bytes"] = len(text.encode())
    figures["terminal_lines"] = len(report.terminal(result).splitlines())
    return figures


def run() -> dict:
    by_size = {size: measure(size) for size in SIZES}
    small, big = by_size[SIZES[0]], by_size[SIZES[-1]]
    out = {"name": "report"}
    for size, figures in by_size.items():
        out[f"merge_cpu_s_{size}"] = round(figures["merge_cpu_s"], 3)
        out[f"render_cpu_s_{size}"] = round(figures["render_cpu_s"], 3)
        out[f"terminal_lines_{size}"] = figures["terminal_lines"]
    for name in ["merge", "render", "results.json", "junit.xml", "report.html", "metrics.prom"]:
        key = f"{name}_cpu_s"
        out[f"{name}_time_ratio_{SIZES[-1]}_to_{SIZES[0]}"] = round(big[key] / max(small[key], 1e-9), 1)
    out[f"results_json_mb_{SIZES[-1]}"] = round(big["results.json_bytes"] / 1e6, 2)
    out["results_json_to_budget"] = round(big["results.json_bytes"] / report.RESULTS_JSON_BUDGET, 3)
    out[f"report_html_mb_{SIZES[-1]}"] = round(big["report.html_bytes"] / 1e6, 2)
    return out


if __name__ == "__main__":
    print(run())

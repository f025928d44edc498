"""How long loading and resolving the whole matrix takes, against a 1 s budget.

Prints the ratio of (load + lint + resolve every constraint set) to the budget,
and the ratio of the full load to a bare yaml.safe_load of the same file (the
cost of line tracking and checks). Measured in one run, best of N repeats.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import yaml  # noqa: E402

import compat_matrix as cm  # noqa: E402

BUDGET_S = 1.0
REPEATS = 5
QUERIES = [
    cm.Constraints(torch="2.4", python="3.10", arch="aarch64"),
    cm.Constraints(cann="8.5.0", chip="a3"),
    cm.Constraints(torch_npu="2.1.0.post8"),
    cm.Constraints(),
]


def best(fn) -> float:
    times = []
    for _ in range(REPEATS):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def run() -> dict:
    text = cm.DEFAULT_MATRIX.read_text()
    bare = best(lambda: yaml.safe_load(text))

    def full():
        m = cm.load_matrix()
        for q in QUERIES:
            cm.resolve(m, q)

    total = best(full)
    load = best(cm.load_matrix)
    return {
        "name": "matrix",
        "rows": len(cm.load_matrix().rows),
        "load_and_resolve_s": round(total, 4),
        "ratio_to_1s_budget": round(total / BUDGET_S, 3),
        "ratio_load_to_bare_yaml": round(load / bare, 2),
    }


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))

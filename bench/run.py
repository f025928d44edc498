"""Run every bench/bench_*.py and write one summary: JSON plus a Markdown table.

Each benchmark module exposes ``run() -> dict`` with a ``name`` and its figures
(ratios measured within that one run). Output goes to ``OUT`` (default
bench/results/) and the table is printed.
"""
from __future__ import annotations

import importlib.util
import json
import os
import sys
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent


def load(path: Path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(selected: list[str]) -> int:
    out_dir = Path(os.environ.get("OUT", HERE / "results"))
    out_dir.mkdir(parents=True, exist_ok=True)
    results, failed = [], 0
    for path in sorted(HERE.glob("bench_*.py")):
        if selected and path.stem.removeprefix("bench_") not in selected:
            continue
        print(f"== {path.stem}", flush=True)
        try:
            results.append(load(path).run())
        except Exception:  # a broken benchmark is reported, the others still run
            failed += 1
            traceback.print_exc()
            results.append({"name": path.stem.removeprefix("bench_"), "error": "failed; see the log"})
    table = write(out_dir, "summary", results)
    for r in results:  # each benchmark's own figures too, kept when another is rerun alone
        write(out_dir, r["name"], [r])
    print(table)
    print(f"written: {out_dir / 'summary.json'}, {out_dir / 'summary.md'} and one pair per benchmark")
    return 1 if failed else 0


def write(out_dir: Path, stem: str, results: list[dict]) -> str:
    """STEM.json (the results) and STEM.md (a figure per row); returns the table."""
    (out_dir / f"{stem}.json").write_text(json.dumps(results, indent=2) + "\n")
    lines = ["| benchmark | figure | value |", "|---|---|---|"]
    for r in results:
        for key, value in r.items():
            if key not in ("name", "runs"):
                lines.append(f"| {r['name']} | {key} | {value} |")
    table = "\n".join(lines) + "\n"
    (out_dir / f"{stem}.md").write_text(table)
    return table


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

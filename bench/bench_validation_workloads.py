"""What the validation suite's instrumentation costs, measured on the workloads themselves.

Two ratios, each from runs made here and now (CPU + gloo on this machine; the same
command measures an NPU host when run there with --backend auto):

- training throughput (samples/s) of train_cnn's instrumented loop (watchdog marks,
  per-step loss recording) to the very same loop run bare, in the same process
  (train_cnn --bare), best of N runs each;
- all_reduce busbw of the suite's sweep (watched, checked) to a bare
  torch.distributed all_reduce loop over the same buffer in the same process group
  (allreduce --bare: per size, suite and bare timings alternate), best of N runs per
  size; reported at the largest size and as the geometric mean over sizes.

A ratio near 1.0 means the suite measures what a bare loop would. The workloads are
fed to a fresh Python over stdin, as the suite does on a host.
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from validation.node import workloads  # noqa: E402

BACKEND = os.environ.get("BENCH_BACKEND", "cpu")
REPEATS = 3
TRAIN_ARGS = ["--steps", "40", "--batch-size", "32", "--warmup-steps", "5", "--dataset-size", "640"]
ALLREDUCE_ARGS = ["--nproc", "2", "--min-bytes", "256K", "--max-bytes", "16M", "--factor", "4",
                  "--iters", "20", "--warmup", "3"]


def run_workload(name: str, *args: str) -> dict:
    proc = subprocess.run([sys.executable, "-", "--backend", BACKEND, *args], input=workloads.script(name),
                          capture_output=True, text=True, timeout=900)
    result = workloads.parse_result(proc.stdout)
    if proc.returncode != 0 or not result.get("ok"):
        raise RuntimeError(f"{name} failed (exit {proc.returncode}): {result.get('error')}\n{proc.stderr[-2000:]}")
    return result


def run() -> dict:
    train = [run_workload("train_cnn", *TRAIN_ARGS, "--bare") for _ in range(REPEATS)]
    suite_sps = max(t["samples_per_s"] for t in train)
    bare_sps = max(t["bare_samples_per_s"] for t in train)

    sweeps = [run_workload("allreduce", *ALLREDUCE_ARGS, "--bare") for _ in range(REPEATS)]
    sizes = [row["bytes"] for row in sweeps[0]["rows"]]
    best_suite = [max(s["rows"][i]["busbw_gbps"] for s in sweeps) for i in range(len(sizes))]
    best_bare = [max(s["rows"][i]["bare_busbw_gbps"] for s in sweeps) for i in range(len(sizes))]
    ratios = [a / b for a, b in zip(best_suite, best_bare)]
    return {
        "name": "validation_workloads",
        "backend": train[0]["backend"],
        "train_samples_per_s_suite": round(suite_sps, 1),
        "train_samples_per_s_bare": round(bare_sps, 1),
        "ratio_train_throughput_suite_to_bare": round(suite_sps / bare_sps, 3),
        "allreduce_ranks": sweeps[0]["world_size"],
        "allreduce_largest_bytes": sizes[-1],
        "allreduce_busbw_gbps_suite": round(best_suite[-1], 4),
        "allreduce_busbw_gbps_bare": round(best_bare[-1], 4),
        "ratio_allreduce_busbw_suite_to_bare": round(ratios[-1], 3),
        "ratio_allreduce_busbw_geomean_over_sizes": round(math.exp(sum(map(math.log, ratios)) / len(ratios)), 3),
    }


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))

"""The torch workloads of the post-install validation suite.

Each workload is a standalone script (stdlib + torch; torch_npu only when the npu
backend is chosen) that the suite sends to a target host and runs with the host's
own Python, fed over stdin::

    text = validation.node.workloads.script("allreduce")
    subprocess.run(["python3", "-", "--backend", "auto", "--max-bytes", "64M"], input=text, ...)

How the text is made: the shared helpers live in ``_common.py``; ``script(name)``
joins ``_common.py``, the known failures of ``validation/node/explain.py`` (the one
table of them, which ``_common.diagnose`` reads) and ``<name>.py`` into one
source and wraps it in a four-line runner that carries the source as a string
literal and ``exec``s it. Carrying its own source lets a multi-process workload
(allreduce, ddp) start its per-device workers from stdin too, by feeding them the
same text. Running a workload file directly (``python3
validation/node/workloads/smoke.py``) also works: it loads ``_common.py`` from next to
itself (without the known failures: its errors then name no cause).

Contract, for every workload:

- the last stdout line is one JSON object (earlier lines, and stderr, are logs);
- exit code 0: it ran; ``"ok"`` in the JSON says whether every property held;
  1: crashed (unexpected exception, ``"error"`` set); 2: usage or environment error
  (bad arguments, torch or torch_npu not importable, no device for a forced
  backend); 124: a watched step did not finish within ``--timeout`` (the JSON says
  which, with ``"timed_out": true``);
- common options ``--backend auto|npu|cuda|cpu`` and ``--timeout SECONDS``; common
  JSON keys: workload, ok, error, timed_out, backend, device_type, device_count,
  dist_backend, torch_version, torch_npu_version, backend_notes, python_version,
  duration_s.

Workloads (CLI in each file's docstring) and their own JSON keys:

- smoke: device, elements, mismatches.
- train_cnn: device, steps, batch_size, warmup_steps, dataset_size, windows, amp_dtype
  ("float16" | "bfloat16" | null), grad_scaler, grad_scale_final, first_loss,
  last_loss, losses, losses_finite, loss_fell, samples_per_s (the whole timed run),
  samples_per_s_repeats (each window's, 4 significant digits), train_time_s,
  checkpoint_bytes, checkpoint_differs_before_load, checkpoint_identical,
  optimizer_state_identical; with --bare: bare_samples_per_s, throughput_ratio.
- migrate: applicable, reason; when applicable also on_npu, steps, first_loss,
  last_loss, loss_fell, cuda_is_available, cuda_device_count, tensor_device,
  model_device, max_memory_allocated_bytes.
- allreduce: launcher ("spawn" | "torchrun"), world_size, local_world_size, nnodes,
  iters, warmup, repeats, factor, dtype, timeout_s, hang_rank, corrupt_rank, bare, rows
  (each: bytes, count, time_s, algbw_gbps, busbw_gbps, correct, mismatches,
  bad_ranks; the last also busbw_gbps_repeats, each window's busbw, the row's own
  first, 4 significant digits; with --bare also bare_time_s, bare_algbw_gbps, bare_busbw_gbps),
  sizes, busbw_factor, all_correct, peak_busbw_gbps, exit_codes (spawn only),
  failures (spawn, on a crash), rank (torchrun); with --bare: bare_busbw_ratio,
  bare_busbw_ratio_geomean.
- ddp: launcher, world_size, steps, timeout_s, ranks (each: rank, first_loss,
  last_loss, loss_fell), loss_fell_all_ranks, initial_params_differed,
  broadcast_equal, params_equal, max_param_diff, params_changed,
  param_checksums, param_count, exit_codes / failures (spawn), rank (torchrun).

Multi-node: run allreduce/ddp under torchrun (RANK/WORLD_SIZE/MASTER_ADDR set);
each process is a plain worker and only LOCAL_RANK 0 of each node prints the JSON.
"""
from __future__ import annotations

import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
WORKLOADS = ("smoke", "train_cnn", "migrate", "allreduce", "ddp")
DISTRIBUTED = ("allreduce", "ddp")

EXIT_OK = 0
EXIT_CRASH = 1
EXIT_USAGE = 2
EXIT_TIMEOUT = 124


def source_path(name: str) -> Path:
    if name not in WORKLOADS:
        raise ValueError(f"unknown workload {name!r}; known: {', '.join(WORKLOADS)}")
    return HERE / f"{name}.py"


def _wrap(name: str, source: str) -> str:
    # Keep identical to npuenv_wrap() in _common.py (a test compares them).
    fname = f"<npuenv-workload {name}>"
    return (
        "# npuenv validation workload %r: run as  python3 - [ARGS] < this-file\n"
        "_NPUENV_NAME = %r\n"
        "_NPUENV_SOURCE = %r\n"
        "import linecache as _lc\n"
        "_lc.cache[%r] = (len(_NPUENV_SOURCE), None, _NPUENV_SOURCE.splitlines(True), %r)\n"
        "exec(compile(_NPUENV_SOURCE, %r, 'exec', dont_inherit=True))\n"
    ) % (name, name, source, fname, fname, fname)


def known_failures() -> str:
    """validation/node/explain.py's known failures as the source line that _common.diagnose() reads."""
    from validation.node.explain import KNOWN

    return "_NPUENV_KNOWN = %r\n" % ([(k.pattern, k.cause, k.fix) for k in KNOWN],)


def source(name: str) -> str:
    """The joined source (helpers, the known failures, workload) before wrapping."""
    common = (HERE / "_common.py").read_text()
    body = source_path(name).read_text()
    return common.rstrip("\n") + "\n\n" + known_failures() + "\n\n" + body


def script(name: str) -> str:
    """The runnable text of workload ``name``: feed it to ``python3 - ARGS`` on stdin."""
    return _wrap(name, source(name))


def last_json(stdout: str) -> dict | None:
    """The last stdout line that is a JSON object (logs may follow it), or None."""
    for line in reversed(stdout.strip().splitlines()):
        if line.startswith("{"):
            try:
                obj = json.loads(line)
            except ValueError:
                return None
            return obj if isinstance(obj, dict) else None
    return None


def parse_result(stdout: str) -> dict:
    """The JSON object on the last non-empty stdout line; ValueError if there is none."""
    lines = [line for line in stdout.splitlines() if line.strip()]
    if not lines:
        raise ValueError("the workload printed nothing on stdout")
    try:
        obj = json.loads(lines[-1])
    except ValueError as exc:
        raise ValueError(f"the workload's last stdout line is not JSON ({exc}): {lines[-1][:200]!r}") from None
    if not isinstance(obj, dict):
        raise ValueError(f"the workload's last stdout line is not a JSON object: {lines[-1][:200]!r}")
    return obj

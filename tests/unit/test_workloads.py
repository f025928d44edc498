"""The validation workloads, run for real on this machine's CPU (torch + gloo).

Each workload is fed to a fresh Python over stdin exactly as the suite sends it to
a host (`python - ARGS < script`), from an empty directory with no project package
importable, and judged by the JSON on its last stdout line and its exit code.
"""
from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from validation.node import workloads

ROOT = Path(__file__).resolve().parents[2]
VENV_PY = ROOT / ".venv" / "bin" / "python"
PY = str(VENV_PY if VENV_PY.exists() else sys.executable)


def _has_torch() -> bool:
    if VENV_PY.exists():  # the project's venv carries the CPU torch wheel
        return True
    import importlib.util

    return importlib.util.find_spec("torch") is not None


@pytest.fixture(autouse=True)
def _torch_is_a_dev_dependency():
    if not _has_torch():
        pytest.fail(f"torch is not installed for {PY}: run `make setup` (the CPU build of torch is a dev dependency)")

# The environment of a plain shell on a host: nothing from torchrun or from a launcher.
_STRIP = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT",
          "NPUENV_WORKER", "PYTHONPATH", "TORCHELASTIC_RUN_ID")


class Ran:
    def __init__(self, proc: subprocess.CompletedProcess, wall: float):
        self.rc = proc.returncode
        self.stdout = proc.stdout
        self.stderr = proc.stderr
        self.wall = wall
        self.json = workloads.parse_result(proc.stdout)

    def __repr__(self) -> str:  # shown by pytest on a failed assert
        return f"rc={self.rc} wall={self.wall:.1f}s json={json.dumps(self.json)[:1500]} stderr={self.stderr[-1500:]}"


def run_workload(tmp_path: Path, name: str, *args: str, timeout: float = 120) -> Ran:
    env = {k: v for k, v in os.environ.items() if k not in _STRIP}
    t0 = time.monotonic()
    proc = subprocess.run([PY, "-", *args], input=workloads.script(name), capture_output=True, text=True,
                          timeout=timeout, cwd=tmp_path, env=env)
    return Ran(proc, time.monotonic() - t0)


COMMON_KEYS = {"workload", "ok", "error", "timed_out", "backend", "device_type", "device_count", "dist_backend",
               "torch_version", "torch_npu_version", "backend_notes", "python_version", "duration_s"}


def assert_cpu_envelope(r: Ran, name: str) -> None:
    assert COMMON_KEYS <= set(r.json), r
    assert r.json["workload"] == name
    assert (r.json["backend"], r.json["device_type"], r.json["dist_backend"]) == ("cpu", "cpu", "gloo"), r
    assert r.json["torch_version"].startswith("2."), r
    assert r.json["torch_npu_version"] is None


# -- the script text itself -----------------------------------------------------------------


def test_scripts_are_self_contained_and_compile():
    for name in workloads.WORKLOADS:
        text = workloads.script(name)
        compile(text, name, "exec")
        compile(workloads.source(name), name, "exec")
        # nothing of this project is imported on the host; torch_npu only lazily
        assert not re.search(r"^\s*(from|import)\s+(validation|npuenv|compat_matrix)\b", workloads.source(name), re.M)
        assert not re.search(r"^import torch", workloads.source(name), re.M), "torch imported at module level"


def test_scripts_parse_as_python_3_8():
    """Hosts run them with their own Python: torch_npu rows go back to Python 3.8."""
    import ast

    for name in workloads.WORKLOADS:
        ast.parse(workloads.script(name), feature_version=(3, 8))
        ast.parse(workloads.source(name), feature_version=(3, 8))


def test_json_line_is_strict_even_with_nan_losses(capsys):
    ns: dict = {}
    exec(compile((workloads.HERE / "_common.py").read_text(), "_common.py", "exec"), ns)
    ns["print_json"]({"losses": [1.0, float("nan"), float("inf")], "ok": False})
    line = capsys.readouterr().out.strip()
    assert json.loads(line, parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}")) == {
        "losses": [1.0, None, None], "ok": False}


def test_wrapper_matches_the_one_workers_rebuild():
    """The launcher re-creates the runnable text for its workers; it must be script()'s."""
    ns: dict = {}
    exec(compile((workloads.HERE / "_common.py").read_text(), "_common.py", "exec"), ns)
    for name in workloads.WORKLOADS:
        assert ns["npuenv_wrap"](name, workloads.source(name)) == workloads.script(name)


def test_unknown_workload_is_named():
    with pytest.raises(ValueError, match="unknown workload 'nope'.*smoke"):
        workloads.script("nope")


def test_parse_result_takes_the_last_line_and_names_garbage():
    assert workloads.parse_result('log line\n{"ok": true}\n\n') == {"ok": True}
    with pytest.raises(ValueError, match="not JSON"):
        workloads.parse_result('{"ok": true}\nTraceback: boom\n')
    with pytest.raises(ValueError, match="printed nothing"):
        workloads.parse_result("  \n")


def test_parse_bytes_and_human_bytes():
    ns: dict = {}
    exec(compile((workloads.HERE / "_common.py").read_text(), "_common.py", "exec"), ns)
    pb, hb = ns["parse_bytes"], ns["human_bytes"]
    assert [pb(t, "--x") for t in ("4096", "64K", "4M", "1G", "4MiB", "4MB", "8b")] == [
        4096, 64 << 10, 4 << 20, 1 << 30, 4 << 20, 4 << 20, 8]
    with pytest.raises(ns["UsageError"], match="--max-bytes: 'lots' is not a size"):
        pb("lots", "--max-bytes")
    assert (hb(4 << 20), hb(1024), hb(1000), hb(3 << 30)) == ("4 MiB", "1 KiB", "1000 B", "3 GiB")


# -- smoke ------------------------------------------------------------------------------------


def test_smoke_auto_falls_back_to_cpu_and_passes(tmp_path):
    r = run_workload(tmp_path, "smoke")
    assert r.rc == 0, r
    assert_cpu_envelope(r, "smoke")
    assert r.json["ok"] is True and r.json["mismatches"] == 0 and r.json["elements"] == 1024
    # auto says why it did not pick npu/cuda (torch_npu is not installed here)
    assert any("torch_npu" in n for n in r.json["backend_notes"]), r


def test_forced_npu_without_torch_npu_is_an_environment_error(tmp_path):
    r = run_workload(tmp_path, "smoke", "--backend", "npu")
    assert r.rc == 2, r
    assert r.json["ok"] is False and r.json["backend"] is None
    assert "--backend npu: torch_npu could not be imported" in r.json["error"]
    assert r.json["torch_version"], "torch's version is still reported"


def test_bad_arguments_exit_2_with_a_json_naming_the_option(tmp_path):
    r = run_workload(tmp_path, "allreduce", "--factor", "3")
    assert r.rc == 2, r
    assert r.json["ok"] is False and "--factor" in r.json["error"]


# -- train_cnn ------------------------------------------------------------------------------


def test_train_cnn_loss_falls_and_checkpoint_reloads_identically(tmp_path):
    r = run_workload(tmp_path, "train_cnn", "--backend", "cpu", "--steps", "20", "--batch-size", "32",
                     "--dataset-size", "320", "--warmup-steps", "2", "--lr", "0.05", "--bare")
    assert r.rc == 0, r
    assert_cpu_envelope(r, "train_cnn")
    j = r.json
    assert j["ok"] is True, r
    assert j["amp_dtype"] == "bfloat16" and j["grad_scaler"] is False  # CPU autocast, no scaler
    assert len(j["losses"]) == 20 and j["first_loss"] == j["losses"][0] and j["last_loss"] == j["losses"][-1]
    assert j["loss_fell"] is True and j["losses_finite"] is True
    assert sum(j["losses"][-4:]) < sum(j["losses"][:4])
    assert j["checkpoint_identical"] is True and j["optimizer_state_identical"] is True
    assert j["checkpoint_differs_before_load"] is True and j["checkpoint_bytes"] > 100_000
    assert j["samples_per_s"] > 0 and j["bare_samples_per_s"] > 0
    assert j["throughput_ratio"] == pytest.approx(j["samples_per_s"] / j["bare_samples_per_s"], rel=1e-3)
    # The 18 steps after warm-up in 5 windows of 3, 4, 3, 4 and 4 steps, one rate each: their times add
    # up to the whole run's, whose rate samples_per_s stays (within the repeats' 4 significant digits).
    assert j["windows"] == 5 and len(j["samples_per_s_repeats"]) == 5
    window_times = [steps * 32 / rate for steps, rate in zip((3, 4, 3, 4, 4), j["samples_per_s_repeats"])]
    assert sum(window_times) == pytest.approx(j["train_time_s"], rel=1e-3)
    assert j["samples_per_s"] == pytest.approx(18 * 32 / sum(window_times), rel=1e-3)
    assert all(float(f"{rate:.4g}") == rate for rate in j["samples_per_s_repeats"])
    assert not list(tmp_path.iterdir()), "nothing is left in the working directory"


def test_train_cnn_times_at_most_one_window_per_step(tmp_path):
    r = run_workload(tmp_path, "train_cnn", "--backend", "cpu", "--steps", "5", "--warmup-steps", "2",
                     "--batch-size", "8", "--dataset-size", "64", "--windows", "10")
    assert r.rc == 0, r
    assert r.json["windows"] == 3 and len(r.json["samples_per_s_repeats"]) == 3, r
    assert r.json["samples_per_s"] == pytest.approx(3 * 8 / sum(8 / rate for rate in r.json["samples_per_s_repeats"]),
                                                    rel=1e-3)


@pytest.mark.parametrize("value", ["0", "11", "five"])
def test_repeats_beyond_the_record_s_bound_are_refused(tmp_path, value):
    for name, option in (("train_cnn", "--windows"), ("allreduce", "--repeats")):
        r = run_workload(tmp_path, name, "--backend", "cpu", option, value)
        assert r.rc == 2, r
        assert r.json["error"] == f"{name}: argument {option}: '{value}' is not a count from 1 to 10 (see --help)"


def test_window_ends_split_the_timed_steps_evenly():
    ns: dict = {}
    exec(compile((workloads.HERE / "_common.py").read_text(), "_common.py", "exec"), ns)
    exec(compile(workloads.source("train_cnn"), "train_cnn.py", "exec"), ns)
    ends = ns["window_ends"]
    assert ends(5, 40, 5) == [12, 19, 26, 33, 40]
    assert ends(2, 20, 5) == [5, 9, 12, 16, 20]
    assert ends(0, 3, 5) == [1, 2, 3]
    assert ends(4, 5, 1) == [5]


def test_a_workload_names_a_known_failure_as_the_suite_does():
    """One table of known failures: a workload's own diagnosis is validation/node/explain.py's cause and fix,
    written into its script (it runs with stdlib + torch only)."""
    from validation.node.explain import KNOWN, explain

    ns: dict = {}
    exec(compile(workloads.source("smoke"), "smoke.py", "exec"), ns)
    assert ns["_NPUENV_KNOWN"] == [(k.pattern, k.cause, k.fix) for k in KNOWN]
    for text in ("ModuleNotFoundError: No module named 'decorator'", "ImportError: libtorch_npu.so: undefined symbol: x",
                 "OSError: LIBHCCL.so: CANNOT OPEN SHARED OBJECT FILE: No such file or directory"):
        assert ns["diagnose"](text) == "%s: %s" % explain(text)
    # what the table does not know, the workload does not guess at either (its error names the module)
    assert explain("No module named 'torch_npu'") is None and ns["diagnose"]("No module named 'torch_npu'") == ""


# -- migrate ----------------------------------------------------------------------------------


def test_migrate_is_not_applicable_on_cpu(tmp_path):
    r = run_workload(tmp_path, "migrate", "--backend", "cpu")
    assert r.rc == 0, r
    assert_cpu_envelope(r, "migrate")
    assert r.json["applicable"] is False and r.json["ok"] is True
    assert "cpu" in r.json["reason"] and "torch_npu" in r.json["reason"]


# -- allreduce ------------------------------------------------------------------------------


def check_rows(j: dict, n: int, sizes: list[int]) -> None:
    factor = 2 * (n - 1) / n
    assert j["busbw_factor"] == factor
    assert [row["bytes"] for row in j["rows"]] == sizes
    for row in j["rows"]:
        assert row["correct"] is True and row["mismatches"] == 0 and row["bad_ranks"] == []
        assert row["count"] * 4 == row["bytes"]
        assert row["time_s"] > 0
        assert row["algbw_gbps"] == row["bytes"] / row["time_s"] / 1e9
        assert row["busbw_gbps"] == row["algbw_gbps"] * factor
    assert j["all_correct"] is True
    assert j["peak_busbw_gbps"] == max(row["busbw_gbps"] for row in j["rows"])


@pytest.mark.parametrize("nproc", [2, 3])
def test_allreduce_sweep_is_correct_with_nccl_tests_busbw(tmp_path, nproc):
    args = ["--backend", "cpu", "--nproc", str(nproc), "--min-bytes", "1K", "--max-bytes", "64K",
            "--factor", "4", "--iters", "3", "--warmup", "1"]
    if nproc == 2:
        args.append("--bare")
    r = run_workload(tmp_path, "allreduce", *args)
    assert r.rc == 0, r
    assert_cpu_envelope(r, "allreduce")
    j = r.json
    assert j["ok"] is True and j["timed_out"] is False, r
    assert (j["world_size"], j["launcher"], j["exit_codes"]) == (nproc, "spawn", [0] * nproc)
    check_rows(j, nproc, [1024, 4096, 16384, 65536])
    # The largest size, the figure hosts are compared by, in 5 windows (the default): the row's own first.
    last = j["rows"][-1]
    assert j["repeats"] == 5 and len(last["busbw_gbps_repeats"]) == 5
    assert last["busbw_gbps_repeats"][0] == float(f"{last['busbw_gbps']:.4g}")
    assert all(busbw > 0 for busbw in last["busbw_gbps_repeats"])
    assert all("busbw_gbps_repeats" not in row for row in j["rows"][:-1])
    if nproc == 2:
        for row in j["rows"]:
            assert row["bare_busbw_gbps"] == row["bare_algbw_gbps"] * 1.0
            assert row["bare_algbw_gbps"] == row["bytes"] / row["bare_time_s"] / 1e9
        last = j["rows"][-1]
        assert j["bare_busbw_ratio"] == last["busbw_gbps"] / last["bare_busbw_gbps"]
        assert j["bare_busbw_ratio_geomean"] > 0
    else:
        assert "bare_time_s" not in j["rows"][0]


def test_allreduce_with_one_repeat_has_the_row_s_own_window_only(tmp_path):
    r = run_workload(tmp_path, "allreduce", "--backend", "cpu", "--max-bytes", "4K", "--iters", "2",
                     "--warmup", "0", "--repeats", "1")
    assert r.rc == 0, r
    last = r.json["rows"][-1]
    assert last["busbw_gbps_repeats"] == [float(f"{last['busbw_gbps']:.4g}")], r


def test_allreduce_detects_a_wrong_sum(tmp_path):
    r = run_workload(tmp_path, "allreduce", "--backend", "cpu", "--max-bytes", "4K", "--iters", "1",
                     "--warmup", "0", "--corrupt-rank", "1")
    assert r.rc == 0, r  # it ran; the property failed
    j = r.json
    assert j["ok"] is False and j["all_correct"] is False
    assert all(not row["correct"] and row["bad_ranks"] == [0, 1] and row["mismatches"] == 2 for row in j["rows"])
    assert "all_reduce of 1 KiB gave wrong sums on 2 ranks" in j["error"]


def test_allreduce_hung_rank_fails_within_the_timeout(tmp_path):
    timeout = 5
    r = run_workload(tmp_path, "allreduce", "--backend", "cpu", "--max-bytes", "4K", "--iters", "2",
                     "--hang-rank", "1", "--timeout", str(timeout), timeout=120)
    assert r.rc == 124, r
    j = r.json
    assert j["ok"] is False and j["timed_out"] is True
    assert j["error"].startswith(
        "all_reduce of 1 KiB did not complete within 5 s on 2 ranks: a rank is stuck or a link is down"), r
    assert "rank 1 (last step: hang-rank fault" in j["error"]
    # the launcher killed the group: rank 0 ended by its watchdog, the stuck rank 1 by the kill
    assert j["exit_codes"][0] == 124 and j["exit_codes"][1] < 0
    # bound: the hang itself takes `timeout`; the rest is starting Python + torch in 3 processes
    assert r.wall < timeout + 25, r
    assert r.wall > timeout, "it cannot have waited less than the timeout"


# -- ddp ------------------------------------------------------------------------------------------


def test_ddp_trains_with_equal_parameters_on_every_rank(tmp_path):
    r = run_workload(tmp_path, "ddp", "--backend", "cpu", "--nproc", "2", "--steps", "10")
    assert r.rc == 0, r
    assert_cpu_envelope(r, "ddp")
    j = r.json
    assert j["ok"] is True and j["world_size"] == 2, r
    assert [x["rank"] for x in j["ranks"]] == [0, 1]
    assert all(x["loss_fell"] and x["last_loss"] < x["first_loss"] for x in j["ranks"])
    assert j["initial_params_differed"] is True  # seeded apart: DDP's broadcast did the equalising
    assert j["broadcast_equal"] is True and j["params_equal"] is True and j["max_param_diff"] == 0.0
    assert j["params_changed"] is True
    assert len(set(j["param_checksums"])) == 1 and math.isfinite(j["param_checksums"][0])


def torchrun_env(world: int, local_world: int) -> dict:
    """The environment torchrun gives its workers, with a free rendezvous port on loopback."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k not in _STRIP}
    env.update(WORLD_SIZE=str(world), LOCAL_WORLD_SIZE=str(local_world), MASTER_ADDR="127.0.0.1",
               MASTER_PORT=str(port), OMP_NUM_THREADS="1", GLOO_SOCKET_IFNAME="lo")
    return env


def test_torchrun_style_workers_need_no_launcher(tmp_path):
    """What torchrun (one node or many) starts: plain workers with RANK/WORLD_SIZE/MASTER_*.

    Each is a normal worker; only LOCAL_RANK 0 prints the JSON, with global results.
    """
    base = torchrun_env(world=2, local_world=2)
    text = workloads.script("allreduce")
    procs = [subprocess.Popen([PY, "-", "--backend", "cpu", "--max-bytes", "4K", "--iters", "2"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              cwd=tmp_path, env=dict(base, RANK=str(r), LOCAL_RANK=str(r))) for r in (0, 1)]
    for p in procs:  # both must be fed before either is waited for: they rendezvous
        p.stdin.write(text)
        p.stdin.close()
    outs = [(p.stdout.read(), p.stderr.read(), p.wait(timeout=120)) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    j = workloads.parse_result(outs[0][0])
    assert j["ok"] is True and j["launcher"] == "torchrun" and j["world_size"] == 2 and j["rank"] == 0
    assert [row["bytes"] for row in j["rows"]] == [1024, 2048, 4096] and j["all_correct"] is True
    assert outs[1][0].strip() == "", "only LOCAL_RANK 0 prints"


def test_torchrun_style_workers_name_the_rank_that_hangs(tmp_path):
    """Three ranks as three torchrun nodes; rank 2 never reaches the first
    all_reduce. The others end within their timeout; rank 0 names rank 2 (node 2).
    (Here rank 0 also serves the store, which ends with it; under torchrun the
    agent serves it, so every rank can read it.)"""
    base = torchrun_env(world=3, local_world=1)
    text = workloads.script("allreduce")
    procs = [subprocess.Popen([PY, "-", "--backend", "cpu", "--max-bytes", "4K", "--iters", "2", "--timeout", "20",
                               "--hang-rank", "2"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              cwd=tmp_path, env=dict(base, RANK=str(r), LOCAL_RANK="0")) for r in (0, 1, 2)]
    for p in procs:
        p.stdin.write(text)
        p.stdin.close()
    try:
        outs = [(procs[r].stdout.read(), procs[r].wait(timeout=120)) for r in (0, 1)]
    finally:
        procs[2].kill()
        procs[2].wait()
    for out, rc in outs:
        assert rc == 124 and workloads.parse_result(out)["timed_out"] is True, (rc, out[-1500:])
    j = workloads.parse_result(outs[0][0])
    assert (j.get("stuck_ranks"), j.get("stuck_nodes")) == ([2], [2]), j["error"]
    assert "rank(s) 2 (node rank(s) 2) never reached it" in j["error"], j["error"]


def test_workload_file_runs_directly_for_development(tmp_path):
    """`python validation/node/workloads/ddp.py` loads _common.py itself and launches its workers."""
    env = {k: v for k, v in os.environ.items() if k not in _STRIP}
    proc = subprocess.run([PY, str(workloads.source_path("ddp")), "--backend", "cpu", "--steps", "3"],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env)
    j = workloads.parse_result(proc.stdout)
    assert proc.returncode == 0 and j["ok"] is True and j["params_equal"] is True, proc.stderr[-2000:]

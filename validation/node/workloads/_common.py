from __future__ import annotations

# npuenv workload helpers. validation.node.workloads.script(name) prepends this text to
# the workload's own file and wraps the whole in a self-describing runner, so the
# result runs anywhere as `python3 - ARGS < script` with nothing but stdlib + torch.
# Nothing here imports torch at module level: TORCH_DEVICE_BACKEND_AUTOLOAD must
# be set before torch is first imported (see select_backend).

import argparse
import json
import os
import queue
import re
import socket
import subprocess
import sys
import threading
import time
import traceback

_NPUENV_COMMON = True

EXIT_OK = 0  # the workload ran; its JSON says whether every property held
EXIT_CRASH = 1  # an unexpected exception (traceback on stderr, JSON says "error")
EXIT_USAGE = 2  # bad arguments or an unusable environment (no torch, no NPU, ...)
EXIT_TIMEOUT = 124  # a watched step did not complete within --timeout

EVENT_PREFIX = "@@npuenv-event "


class UsageError(Exception):
    """Bad command-line input: exit 2 with a JSON that says what to fix."""


class EnvironmentProblem(Exception):
    """The host cannot run the workload as asked (exit 2): names the cause."""


# A workload records a figure the controller compares across hosts (train samples/s, all_reduce busbw)
# as at most this many repeats: enough for a median and its spread, and a node's record stays small.
MAX_REPEATS = 10


def sig(x: float) -> float:
    """x to 4 significant digits: a repeat's own noise is percents, and the record stays short."""
    return float("%.4g" % x)


def repeat_count(text: str) -> int:
    """argparse type of a number of repeats: 1 to MAX_REPEATS."""
    try:
        n = int(text)
    except ValueError:
        n = 0
    if not 1 <= n <= MAX_REPEATS:
        raise argparse.ArgumentTypeError("%r is not a count from 1 to %d" % (text, MAX_REPEATS))
    return n


def human_bytes(n: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size and n % size == 0:
            return "%d %s" % (n // size, unit)
    return "%d B" % n


def parse_bytes(text: str, option: str) -> int:
    """'4096', '64K', '4M', '1G', '4MiB', '4MB' (binary multiples) -> bytes."""
    t = str(text).strip().upper()
    if t.endswith("IB"):
        t = t[:-2]
    elif t.endswith("B"):
        t = t[:-1]
    mult = 1
    if t[-1:] in ("K", "M", "G"):
        mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}[t[-1]]
        t = t[:-1]
    if not t.isdigit():
        raise UsageError("%s: %r is not a size; use bytes or a K/M/G suffix, e.g. 4096, 64K, 4M, 1G" % (option, text))
    return int(t) * mult


# -- diagnosis of the common import failures ------------------------------------------
# One table of the field's known failures: validation/node/explain.py KNOWN, which
# validation.node.workloads.source() writes into the script as _NPUENV_KNOWN, (pattern,
# cause, fix) each (a workload runs with stdlib + torch only, so it cannot import
# it). A workload file run directly (development) has no table and names no cause.
# DCMI codes (-8005, -8020, ...) are not explained here: the suite explains the
# workload's output from the one table in validation/node/codes.py.


def diagnose(text: str) -> str:
    for pattern, cause, fix in globals().get("_NPUENV_KNOWN", ()):
        if re.search(pattern, text, re.I):
            return "%s: %s" % (cause, fix)
    return ""


def _exc_text(exc: BaseException) -> str:
    line = "%s: %s" % (type(exc).__name__, exc)
    return line.strip().splitlines()[0] if line.strip() else type(exc).__name__


# -- backend selection ------------------------------------------------------------------


class Backend:
    """The accelerator a workload runs on: npu (HCCL), cuda (NCCL) or cpu (gloo)."""

    def __init__(self, name, torch, torch_npu, device_count, notes):
        self.name = name
        self.torch = torch
        self.torch_npu = torch_npu
        self.device_type = name
        self.device_count = device_count
        self.dist_backend = {"npu": "hccl", "cuda": "nccl", "cpu": "gloo"}[name]
        self.notes = notes

    @property
    def is_accelerator(self) -> bool:
        return self.name != "cpu"

    def module(self):
        return getattr(self.torch, self.name) if self.is_accelerator else None

    def device(self, index: int = 0):
        if not self.is_accelerator:
            return self.torch.device("cpu")
        return self.torch.device("%s:%d" % (self.name, index))

    def set_device(self, index: int) -> None:
        if self.is_accelerator:
            self.module().set_device(index)

    def synchronize(self) -> None:
        if self.is_accelerator:
            self.module().synchronize()

    def stuck_hint(self) -> str:
        return {
            "npu": "the NPU stopped responding: check `npu-smi info` and the device log",
            "cuda": "the GPU stopped responding: check `nvidia-smi` and the kernel log",
            "cpu": "the host is overloaded or the process is stuck",
        }[self.name]

    def amp_dtype(self):
        """float16 + GradScaler on NPU/CUDA (the migration guide's AMP); bfloat16 on CPU."""
        return self.torch.float16 if self.is_accelerator else self.torch.bfloat16

    def grad_scaler(self, enabled: bool):
        torch = self.torch
        try:
            return torch.amp.GradScaler(self.device_type, enabled=enabled)
        except (AttributeError, TypeError, RuntimeError):  # torch < 2.3: per-device classes
            if self.name == "npu":
                return self.torch_npu.npu.amp.GradScaler(enabled=enabled)
            return torch.cuda.amp.GradScaler(enabled=enabled)  # disabled on cpu: needs no GPU

    def info(self) -> dict:
        return {
            "backend": self.name,
            "device_type": self.device_type,
            "device_count": self.device_count,
            "dist_backend": self.dist_backend,
            "torch_version": str(self.torch.__version__) if self.torch is not None else None,
            "torch_npu_version": str(getattr(self.torch_npu, "__version__", "unknown")) if self.torch_npu else None,
            "backend_notes": list(self.notes),
        }


def select_backend(requested: str) -> Backend:
    """auto: npu when torch_npu imports and sees an NPU, else cuda when available, else cpu.

    Torch's automatic loading of device extensions is always switched off and
    torch_npu imported explicitly (only when npu may be chosen), so a broken
    torch_npu can neither crash a cpu/cuda run nor hide its import error.
    """
    os.environ["TORCH_DEVICE_BACKEND_AUTOLOAD"] = "0"
    notes = []
    try:
        import torch
    except Exception as exc:  # noqa: BLE001 - reported, not raised
        text = _exc_text(exc)
        hint = diagnose(text)
        raise EnvironmentProblem("torch could not be imported: %s%s" % (text, "; " + hint if hint else ""))
    torch_npu = None
    if requested in ("auto", "npu"):
        try:
            import torch_npu  # noqa: F401
        except Exception as exc:  # noqa: BLE001
            text = _exc_text(exc)
            hint = diagnose(text)
            msg = "torch_npu could not be imported: %s%s" % (text, " (" + hint + ")" if hint else "")
            if requested == "npu":
                raise EnvironmentProblem("--backend npu: " + msg)
            notes.append(msg)
            torch_npu = None
    if torch_npu is not None:
        try:
            count = int(torch.npu.device_count())
        except Exception as exc:  # noqa: BLE001
            count = 0
            notes.append("torch.npu.device_count() failed: %s" % _exc_text(exc))
        if count > 0:
            return Backend("npu", torch, torch_npu, count, notes)
        msg = ("torch_npu %s imported but no NPU is visible (torch.npu.device_count() == 0): check `npu-smi info`, "
               "the /dev/davinci* device nodes and ASCEND_RT_VISIBLE_DEVICES" % getattr(torch_npu, "__version__", ""))
        if requested == "npu":
            raise EnvironmentProblem("--backend npu: " + msg)
        notes.append(msg)
    if requested in ("auto", "cuda"):
        if torch.cuda.is_available():
            return Backend("cuda", torch, torch_npu, int(torch.cuda.device_count()), notes)
        msg = "CUDA is not available (torch %s, built for CUDA %s)" % (torch.__version__, torch.version.cuda)
        if requested == "cuda":
            raise EnvironmentProblem("--backend cuda: " + msg)
        notes.append(msg)
    return Backend("cpu", torch, torch_npu, 1, notes)


# -- output -----------------------------------------------------------------------------

_EMIT_LOCK = threading.Lock()


def strict_json(obj):
    """NaN/inf become null, so the line is strict JSON for any reader."""
    if isinstance(obj, float) and (obj != obj or obj in (float("inf"), float("-inf"))):
        return None
    if isinstance(obj, dict):
        return {k: strict_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [strict_json(v) for v in obj]
    return obj


def print_json(obj: dict) -> None:
    with _EMIT_LOCK:
        sys.stdout.write(json.dumps(strict_json(obj), default=str, allow_nan=False) + "\n")
        sys.stdout.flush()


def is_spawned_worker() -> bool:
    return os.environ.get("NPUENV_WORKER") == "1"


def emit_event(kind: str, **data) -> None:
    """A line for the parent launcher (spawned workers only; no-op otherwise).

    A worker whose parent has gone (broken pipe) exits at once instead of lingering.
    """
    if not is_spawned_worker():
        return
    data["kind"] = kind
    try:
        with _EMIT_LOCK:
            sys.stdout.write(EVENT_PREFIX + json.dumps(strict_json(data), default=str, allow_nan=False) + "\n")
            sys.stdout.flush()
    except (BrokenPipeError, OSError):
        os._exit(EXIT_CRASH)


# -- watchdog ---------------------------------------------------------------------------


class Watchdog:
    """Bounds every watched step by `timeout` seconds, from a thread of its own.

    watch(label, hint) starts (or restarts) the clock for a step; done() stops it.
    When a step overruns, on_expire(label, hint, elapsed) is called and the process
    exits with EXIT_TIMEOUT: blocked collectives release the GIL, so this fires even
    while the main thread is stuck in one. In spawned workers the thread also sends
    a heartbeat each second so the parent can tell a wedged process from a slow one.
    """

    def __init__(self, timeout: float, on_expire, heartbeat: bool = False):
        self.timeout = float(timeout)
        self.on_expire = on_expire
        self.heartbeat = heartbeat
        self.progress = None  # a StoreProgress once the process group is up (torchrun)
        self._cur = None
        self._label = None
        self._thread = threading.Thread(target=self._run, name="npuenv-watchdog", daemon=True)
        self._thread.start()

    def watch(self, label: str, hint: str = "") -> None:
        if label != self._label:
            self._label = label
            emit_event("step", label=label)
            if self.progress is not None:
                self.progress.step()
        self._cur = (label, hint, time.monotonic())

    def done(self) -> None:
        self._cur = None

    def _run(self) -> None:
        tick = max(0.02, min(0.2, self.timeout / 20.0))
        last_hb = 0.0
        while True:
            time.sleep(tick)
            now = time.monotonic()
            cur = self._cur
            if cur is not None and now - cur[2] > self.timeout:
                try:
                    self.on_expire(cur[0], cur[1], now - cur[2])
                finally:
                    try:
                        sys.stdout.flush()
                        sys.stderr.flush()
                    finally:
                        os._exit(EXIT_TIMEOUT)
            if self.heartbeat and now - last_hb >= 1.0:
                last_hb = now
                emit_event("hb")


class StoreProgress:
    """Each rank's count of steps, kept in the process group's store (torchrun:
    ranks on several nodes). When a collective hangs, every rank that reached it
    waits; the ranks whose count is behind are the ones that never got there."""

    PREFIX = "npuenv/steps/"

    def __init__(self, store, rank: int, world_size: int):
        self.store, self.rank, self.world_size, self.steps = store, rank, world_size, 0

    def step(self) -> None:
        self.steps += 1
        try:
            self.store.set(self.PREFIX + str(self.rank), str(self.steps))
        except Exception:  # noqa: BLE001 - progress is a diagnosis, never a failure
            pass

    def behind(self) -> list:
        """Ranks whose last recorded step comes before this rank's."""
        out = []
        for r in range(self.world_size):
            key = self.PREFIX + str(r)
            try:
                steps = int(self.store.get(key)) if self.store.check([key]) else 0
            except Exception:  # noqa: BLE001
                continue
            if steps < self.steps:
                out.append(r)
        return out


# -- the run of one workload --------------------------------------------------------------


def _positive_seconds(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError("%r is not a number of seconds" % text)
    if not value > 0:
        raise argparse.ArgumentTypeError("must be more than 0 seconds, got %r" % text)
    return value


class Run:
    """Argument parsing, backend choice, watchdog and the one JSON line, for any role.

    role: "single" (one process), "launcher" (spawns one worker per device and
    prints the merged JSON), "worker" (spawned by the launcher: talks in events),
    "torchrun" (a worker started by torchrun: LOCAL_RANK 0 prints the JSON).
    """

    def __init__(self, name: str, distributed: bool = False):
        self.name = name
        self.distributed = distributed
        self.t0 = time.monotonic()
        self.backend = None
        self.partial = {}
        self.watchdog = None
        self.args = None
        if distributed and is_spawned_worker():
            self.role = "worker"
        elif distributed and "RANK" in os.environ and "WORLD_SIZE" in os.environ:
            self.role = "torchrun"
        elif distributed:
            self.role = "launcher"
        else:
            self.role = "single"

    @property
    def prints_json(self) -> bool:
        if self.role == "worker":
            return False
        if self.role == "torchrun":
            return int(os.environ.get("LOCAL_RANK", "0")) == 0
        return True

    def parser(self, description: str, timeout: float) -> argparse.ArgumentParser:
        p = argparse.ArgumentParser(prog=self.name, description=description)
        p.add_argument("--backend", choices=("auto", "npu", "cuda", "cpu"), default="auto",
                       help="accelerator: auto picks npu (torch_npu + an NPU), else cuda, else cpu")
        p.add_argument("--timeout", type=_positive_seconds, default=timeout,
                       help="seconds any one watched step may take before the run fails (default %(default)s)")

        def error(message):
            raise UsageError("%s: %s (see --help)" % (self.name, message))

        p.error = error
        return p

    def envelope(self) -> dict:
        out = {"workload": self.name, "ok": False, "error": None, "timed_out": False}
        if self.backend is not None:
            out.update(self.backend.info())
        else:
            torch = sys.modules.get("torch")
            torch_npu = sys.modules.get("torch_npu")
            out.update({"backend": None, "device_type": None, "device_count": 0, "dist_backend": None,
                        "torch_version": str(getattr(torch, "__version__", "")) or None,
                        "torch_npu_version": str(getattr(torch_npu, "__version__", "")) or None,
                        "backend_notes": []})
        out["python_version"] = "%d.%d.%d" % sys.version_info[:3]
        return out

    def start_watchdog(self, timeout: float) -> Watchdog:
        self.watchdog = Watchdog(timeout, self._expired, heartbeat=(self.role == "worker"))
        return self.watchdog

    def _expired(self, label, hint, elapsed) -> None:
        if self.role == "worker":
            emit_event("timeout", label=label, hint=hint, elapsed_s=round(elapsed, 3),
                       rank=int(os.environ.get("RANK", "0")))
            return
        msg = "%s did not complete within %g s" % (label, self.watchdog.timeout)
        stuck = {}
        if self.role == "torchrun":
            msg += " on %s ranks" % os.environ.get("WORLD_SIZE", "?")
            behind = self.watchdog.progress.behind() if self.watchdog.progress is not None else []
            if behind:
                per_node = int(os.environ.get("LOCAL_WORLD_SIZE", "1")) or 1
                stuck = {"stuck_ranks": behind, "stuck_nodes": sorted({r // per_node for r in behind})}
                msg += "; rank(s) %s (node rank(s) %s) never reached it" % (
                    ", ".join(map(str, behind)), ", ".join(map(str, stuck["stuck_nodes"])))
        if hint:
            msg += ": " + hint
        if self.prints_json:
            out = self.envelope()
            out.update(self.partial)
            out.update(stuck)
            out.update({"ok": False, "timed_out": True, "error": msg, "duration_s": self.elapsed()})
            print_json(out)
        sys.stderr.write("%s: %s\n" % (self.name, msg))

    def adopt_versions(self, worker_result: dict) -> None:
        """Versions a torch-less launcher learns from its rank 0 worker's hello."""
        for key in ("torch_version", "torch_npu_version", "backend_notes"):
            if worker_result.get(key) and not self.backend.info().get(key):
                self.partial[key] = worker_result[key]

    def elapsed(self) -> float:
        return round(time.monotonic() - self.t0, 3)

    def main(self, build_parser, body) -> None:
        """Parse, pick the backend, run body(run) -> dict, print the JSON, exit."""
        code = EXIT_OK
        out = None
        try:
            self.args = build_parser(self).parse_args(sys.argv[1:])
            if self.role == "launcher" and self.args.backend == "cpu":
                # a cpu launcher needs no torch itself: its workers import it (and
                # report the versions, see adopt_versions); this saves a second import
                os.environ["TORCH_DEVICE_BACKEND_AUTOLOAD"] = "0"
                self.backend = Backend("cpu", None, None, 1, [])
            else:
                self.backend = select_backend(self.args.backend)
            if self.role == "worker":
                emit_event("hello", info=self.backend.info())
            result = body(self)
            out = self.envelope()
            out.update(self.partial)
            out.update(result)
            code = int(out.pop("_exit_code", EXIT_OK))
        except (UsageError, EnvironmentProblem) as exc:
            out = self.envelope()
            out.update(self.partial)
            out["error"] = str(exc)
            code = EXIT_USAGE
        except SystemExit:  # --help
            raise
        except BaseException as exc:  # noqa: BLE001 - a crash still ends in one JSON line
            traceback.print_exc()
            out = self.envelope()
            out.update(self.partial)
            text = _exc_text(exc)
            hint = diagnose(text)
            out["error"] = "%s crashed: %s%s" % (self.name, text, " (" + hint + ")" if hint else "")
            out["ok"] = False
            code = EXIT_CRASH
        out["duration_s"] = self.elapsed()
        if self.role == "worker":
            emit_event("result", result=out, exit_code=code)
        elif self.prints_json:
            print_json(out)
        sys.stdout.flush()
        sys.stderr.flush()
        if self.role in ("worker", "torchrun"):
            # skip interpreter teardown: process-group destructors can hang at exit
            os._exit(code)
        sys.exit(code)


def loss_fell(losses) -> bool:
    """The mean of the last window of losses is below the mean of the first."""
    if len(losses) < 2 or not all(x == x and abs(x) != float("inf") for x in losses):
        return False
    w = max(1, min(10, len(losses) // 5))
    return sum(losses[-w:]) / w < sum(losses[:w]) / w


# -- distributed: worker side -------------------------------------------------------------


def dist_env() -> dict:
    env = os.environ
    world = int(env["WORLD_SIZE"])
    return {
        "rank": int(env["RANK"]),
        "world_size": world,
        "local_rank": int(env.get("LOCAL_RANK", env["RANK"])),
        "local_world_size": int(env.get("LOCAL_WORLD_SIZE", world)),
        "master": "%s:%s" % (env.get("MASTER_ADDR", "?"), env.get("MASTER_PORT", "?")),
    }


def init_distributed(run: Run, timeout: float) -> dict:
    """Join the process group named by the torchrun-style environment, under the watchdog."""
    import datetime

    torch = run.backend.torch
    import torch.distributed as dist

    de = dist_env()
    be = run.backend
    if be.is_accelerator:
        if de["local_rank"] >= be.device_count:
            raise EnvironmentProblem("LOCAL_RANK %d but only %d %s device(s) are visible"
                                     % (de["local_rank"], be.device_count, be.name))
        be.set_device(de["local_rank"])
    else:
        threads = os.environ.get("OMP_NUM_THREADS")
        if threads and threads.isdigit():
            torch.set_num_threads(int(threads))
    run.watchdog.watch(
        "init_process_group (%s, %d ranks at %s)" % (be.dist_backend, de["world_size"], de["master"]),
        "a rank did not start or cannot reach MASTER_ADDR:MASTER_PORT",
    )
    # The process group's own timeout is a backstop behind the watchdog, which
    # fires first and names the step.
    dist.init_process_group(backend=be.dist_backend, rank=de["rank"], world_size=de["world_size"],
                            timeout=datetime.timedelta(seconds=timeout + 30))
    run.watchdog.done()
    if run.role == "torchrun":
        try:  # the group's own store (no public accessor): every rank reaches it
            store = dist.distributed_c10d._get_default_store()
        except Exception:  # noqa: BLE001 - without it, a hang is reported without names
            store = None
        if store is not None:
            run.watchdog.progress = StoreProgress(store, de["rank"], de["world_size"])
            run.watchdog.progress.step()
    return de


def barrier(run: Run, label: str = "barrier") -> None:
    """A barrier made of a one-element all_reduce: works alike on gloo, NCCL and HCCL."""
    torch = run.backend.torch
    import torch.distributed as dist

    de = dist_env()
    t = torch.ones(1, device=run.backend.device(de["local_rank"]))
    run.watchdog.watch(label, "a rank is stuck or a link is down")
    dist.all_reduce(t)
    run.backend.synchronize()
    run.watchdog.done()


def finish_distributed(run: Run) -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        run.watchdog.watch("destroy_process_group", "a rank did not reach the end")
        dist.destroy_process_group()
        run.watchdog.done()


# -- distributed: the launcher (one process per device) ---------------------------------------


def own_script() -> str:
    """The runnable text of this very workload, to feed to worker processes' stdin."""
    g = globals()
    if "_NPUENV_SOURCE" in g:
        return npuenv_wrap(g["_NPUENV_NAME"], g["_NPUENV_SOURCE"])
    if not os.path.isfile(str(g.get("__file__", ""))):  # e.g. plain text piped to stdin
        raise EnvironmentProblem("cannot find this script's own source to start its workers: feed the text of "
                                 "validation.node.workloads.script(name) to python3, or run the workload file itself")
    # run as a file (development): rebuild from the files next to it
    main_file = os.path.abspath(g["__file__"])
    here = os.path.dirname(main_file)
    with open(os.path.join(here, "_common.py")) as f:
        common = f.read()
    with open(main_file) as f:
        body = f.read()
    name = os.path.splitext(os.path.basename(main_file))[0]
    return npuenv_wrap(name, common.rstrip("\n") + "\n\n" + body)


def npuenv_wrap(name: str, source: str) -> str:
    """Same text as validation.node.workloads.script(): the source carried as a literal."""
    fname = "<npuenv-workload %s>" % name
    return (
        "# npuenv validation workload %r: run as  python3 - [ARGS] < this-file\n"
        "_NPUENV_NAME = %r\n"
        "_NPUENV_SOURCE = %r\n"
        "import linecache as _lc\n"
        "_lc.cache[%r] = (len(_NPUENV_SOURCE), None, _NPUENV_SOURCE.splitlines(True), %r)\n"
        "exec(compile(_NPUENV_SOURCE, %r, 'exec', dont_inherit=True))\n"
    ) % (name, name, source, fname, fname, fname)


def resolve_nproc(backend: Backend, requested) -> int:
    """--nproc: default one process per NPU/GPU, 2 on cpu; never more than the devices."""
    nproc = requested if requested is not None else (backend.device_count if backend.is_accelerator else 2)
    if nproc < 1:
        raise UsageError("--nproc must be at least 1, got %d" % nproc)
    if backend.is_accelerator and nproc > backend.device_count:
        raise UsageError("--nproc %d but only %d %s device(s) are visible"
                         % (nproc, backend.device_count, backend.name))
    return nproc


def launch_exit_code(outcome: dict) -> int:
    """The launcher's exit code for a failed group: timeout, usage/environment, or crash."""
    if outcome["timed_out"]:
        return EXIT_TIMEOUT
    if outcome["failures"] and outcome["failures"][0]["exit_code"] == EXIT_USAGE:
        return EXIT_USAGE
    return EXIT_CRASH


def _free_port() -> int:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
    finally:
        s.close()


def launch_workers(run: Run, nproc: int, timeout: float, startup_timeout: float) -> dict:
    """Start nproc copies of this script as torchrun-style workers and supervise them.

    Every worker's step/heartbeat/row/result events are read here. The group is
    killed when a worker reports a timed-out step, when a worker fails, when a
    worker stops sending heartbeats for timeout + 10 s (wedged), or when one has
    not started within startup_timeout. Returns {"results", "events", "error",
    "timed_out", "exit_codes", "failures", "hello"} (hello: each rank's backend info).
    """
    text = own_script()
    group = _WorkerGroup(run.backend, nproc, timeout, startup_timeout)
    group.start(text)
    group.supervise()
    group.reap()
    return group.outcome()


class _WorkerGroup:
    """launch_workers' workers: their processes, what each has said so far, and why the group ended."""

    def __init__(self, backend: Backend, nproc: int, timeout: float, startup_timeout: float):
        self.backend = backend
        self.nproc = nproc
        self.timeout = timeout
        self.startup_timeout = startup_timeout
        self.lines = queue.Queue()  # (rank, line of its output); (rank, None) when its output ends
        self.procs = []
        self.started = None
        self.last_seen = [None] * nproc  # monotonic time of the last event (None: not started yet)
        self.last_step = ["starting Python and importing torch"] * nproc
        self.tails = [[] for _ in range(nproc)]
        self.results = {}
        self.hello = {}
        self.events = []
        self.eof = [False] * nproc
        self.error = None
        self.timed_out = False
        self.first_failure_at = None
        self.first_failed = None
        self.kill_deadline = None

    def start(self, text: str) -> None:
        """Start one worker per rank, each fed ``text`` on its stdin, its output read by a thread."""
        port = _free_port()
        argv = [a for a in sys.argv[1:]] + ["--backend", self.backend.name]
        base = self._environment(port)
        for rank in range(self.nproc):
            self._spawn(rank, argv, dict(base, RANK=str(rank), LOCAL_RANK=str(rank)), text)
        self.started = time.monotonic()

    def _environment(self, port: int) -> dict:
        """The torchrun-style environment every worker shares (each adds its RANK and LOCAL_RANK)."""
        base = dict(os.environ)
        base.update({
            "NPUENV_WORKER": "1", "WORLD_SIZE": str(self.nproc), "LOCAL_WORLD_SIZE": str(self.nproc),
            "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "TORCH_DEVICE_BACKEND_AUTOLOAD": "0",
            "PYTHONUNBUFFERED": "1",
        })
        if not self.backend.is_accelerator:
            base.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // self.nproc)))
            base.setdefault("GLOO_SOCKET_IFNAME", "lo")
        return base

    def _spawn(self, rank: int, argv: list, env: dict, text: str) -> None:
        p = subprocess.Popen([sys.executable, "-"] + argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, env=env)
        self.procs.append(p)

        def feed():
            try:
                p.stdin.write(text.encode())
                p.stdin.close()
            except OSError:
                pass

        def read():
            for raw in iter(p.stdout.readline, b""):
                self.lines.put((rank, raw.decode("utf-8", "replace").rstrip("\n")))
            self.lines.put((rank, None))

        threading.Thread(target=feed, daemon=True).start()
        threading.Thread(target=read, daemon=True).start()

    def kill_all(self, spare=None) -> None:
        for r, p in enumerate(self.procs):
            if r != spare and p.poll() is None:
                try:
                    p.kill()
                except OSError:
                    pass

    def supervise(self) -> None:
        """Read the workers' output until every one has closed it, ending the group at the first
        sign of trouble (self.error says which)."""
        while not all(self.eof):
            try:
                rank, line = self.lines.get(timeout=0.1)
            except queue.Empty:
                rank, line = None, None
            now = time.monotonic()
            if rank is not None:
                self._take(rank, line, now)
            if self.error is not None:
                if self.kill_deadline is not None and now > self.kill_deadline:
                    self.kill_all()
                continue
            self._check(now)

    def _take(self, rank: int, line, now: float) -> None:
        """One line of a worker's output: the end of it, an event, or text to pass on to stderr."""
        if line is None:
            self.eof[rank] = True
        elif line.startswith(EVENT_PREFIX):
            self._event(rank, line[len(EVENT_PREFIX):], now)
        else:
            self.tails[rank].append(line)
            del self.tails[rank][:-30]
            try:
                sys.stderr.write("[rank %d] %s\n" % (rank, line))
            except OSError:
                pass

    def _event(self, rank: int, payload: str, now: float) -> None:
        try:
            ev = json.loads(payload)
        except ValueError:
            ev = {"kind": "garbled"}
        self.last_seen[rank] = now
        kind = ev.get("kind")
        if kind == "step":
            self.last_step[rank] = ev.get("label", "?")
        elif kind == "result":
            self.results[rank] = ev
        elif kind == "hello":
            self.hello[rank] = ev.get("info") or {}
        elif kind == "timeout" and self.error is None:
            self.error = self._timeout_error(rank, ev)
            self.timed_out = True
            # the reporting rank exits by itself (exit code 124); stop the rest now
            self.kill_all(spare=rank)
            self.kill_deadline = now + 2.0
        elif kind not in ("hb",):
            self.events.append(dict(ev, rank=rank))

    def _timeout_error(self, rank: int, ev: dict) -> str:
        """A worker's timed-out step, with the ranks waiting in it and where the others are."""
        label = ev.get("label", "?")
        waiting = sorted(r for r in range(self.nproc) if self.last_step[r] == label or r == rank)
        others = ["rank %d (last step: %s)" % (r, self.last_step[r]) for r in range(self.nproc) if r not in waiting]
        error = "%s did not complete within %g s on %d ranks" % (label, self.timeout, self.nproc)
        if ev.get("hint"):
            error += ": " + ev["hint"]
        error += " [waiting in it: rank %s" % ", ".join(str(r) for r in waiting)
        error += "; elsewhere: %s]" % "; ".join(others) if others else "]"
        return error

    def _check(self, now: float) -> None:
        """End the group 2 s after a worker exits badly (the others may report theirs meanwhile),
        or at once when a live worker has not started in time or has stopped responding."""
        for r, p in enumerate(self.procs):
            rc = p.poll()
            if rc not in (None, 0) and self.first_failure_at is None:
                self.first_failure_at, self.first_failed = now, r
        if self.first_failure_at is not None and now - self.first_failure_at > 2.0:
            self.error = "worker failure"
            self.kill_all()
            return
        for r, p in enumerate(self.procs):
            if p.poll() is not None:
                continue
            stalled = self._stalled(r, now)
            if stalled is not None:
                self.error, self.timed_out = stalled, True
                self.kill_all()
                return

    def _stalled(self, r: int, now: float):
        """Why live worker r counts as hung (not started in time, or silent past timeout + 10 s), or None."""
        if self.last_seen[r] is None and now - self.started > self.startup_timeout:
            return ("rank %d did not start within %g s (importing torch%s): the host is overloaded or "
                    "the import hangs" % (r, self.startup_timeout, "/torch_npu" if self.backend.name == "npu" else ""))
        if self.last_seen[r] is not None and now - self.last_seen[r] > self.timeout + 10:
            return ("rank %d stopped responding for %.0f s during %s: the process is wedged"
                    % (r, now - self.last_seen[r], self.last_step[r]))
        return None

    def reap(self) -> None:
        """Wait for every worker to exit: 30 s each, then kill it."""
        for p in self.procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def outcome(self) -> dict:
        exit_codes = [p.returncode for p in self.procs]
        failures = []
        for r, rc in enumerate(exit_codes):
            res = self.results.get(r, {}).get("result") or {}
            if rc != 0 and not self.timed_out:
                failures.append({"rank": r, "exit_code": rc, "error": res.get("error"),
                                 "last_step": self.last_step[r], "output_tail": "\n".join(self.tails[r][-12:])})
        failures.sort(key=lambda f: f["rank"] != self.first_failed)  # the first to fail leads
        return {"results": self.results, "events": self.events, "error": self._final_error(failures),
                "timed_out": self.timed_out, "exit_codes": exit_codes, "failures": failures, "hello": self.hello}

    def _final_error(self, failures: list) -> str | None:
        """The group's error: the one that ended it, else the first failed rank's, else the ranks with no result."""
        if self.error == "worker failure" or (self.error is None and (failures or len(self.results) < self.nproc)):
            if failures:
                f = failures[0]
                why = f["error"] or (f["output_tail"].splitlines() or ["no output"])[-1]
                return "rank %d exited with code %s during %s: %s" % (f["rank"], f["exit_code"], f["last_step"], why)
            missing = [r for r in range(self.nproc) if r not in self.results]
            return "ranks %s ended without a result" % missing
        return self.error

"""SIGINT and SIGTERM as an exception, so that a long command cleans up after itself.

Python turns SIGINT into KeyboardInterrupt, but SIGTERM's default action ends the
process on the spot: temporary folders and half-written archives stay behind.
Inside ``interruptible()`` both raise ``Interrupted`` (a UserError: the CLI prints
its message, no traceback) from wherever the main thread is, so every ``finally``
and ``with`` on the way out runs; a subprocess that ``subprocess.run`` is waiting
for is killed by it. Further signals are ignored while that cleanup runs.
``deferred()`` holds signals back over steps that must not be cut in two (a pair
of renames, creating a temporary folder and recording its name). Processes that
worker threads wait for are started with ``run()``: an interrupt terminates them,
so that the threads, and the command, can end (with ``own_group``, together with
every process they started).
"""
from __future__ import annotations

import os
import signal
import subprocess
import threading
from contextlib import contextmanager

from .errors import UserError

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(UserError):
    """The command was stopped by a signal; its exit code is 128 + the signal's number, as a shell reports it."""

    def __init__(self, signum: int, what: str):
        self.signum = signum
        self.exit_code = 128 + signum
        super().__init__(f"{what}: interrupted by {signal.Signals(signum).name}; its temporary files are "
                         f"removed and nothing was written")


class _State:
    what: str | None = None       # the command running inside interruptible(), None outside
    fired: int | None = None      # the signal already turned into Interrupted
    defer_depth = 0
    pending: int | None = None    # a signal that came during deferred()


_CHILDREN: dict = {}   # process -> whether it leads a process group of its own
_CHILDREN_LOCK = threading.Lock()


def run(cmd: list[str], *, own_group: bool = False, **kwargs) -> subprocess.CompletedProcess:
    """``subprocess.run(cmd, capture_output=True, text=True, ...)`` for any thread:
    the process is terminated when the command is interrupted. With ``own_group`` it
    leads a process group, and all of the group is terminated: what it started (an
    inventory script that ansible-inventory runs) does not outlive it."""
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          start_new_session=own_group, **kwargs) as proc, ended_on_interrupt(proc, own_group):
        out, err = proc.communicate()
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


@contextmanager
def ended_on_interrupt(proc: subprocess.Popen, own_group: bool = False):
    """Within the block an interrupt terminates ``proc`` (its process group with ``own_group``):
    otherwise leaving a ``with Popen`` waits for the child to finish on its own."""
    with _CHILDREN_LOCK:
        _CHILDREN[proc] = own_group
    try:
        yield proc
    finally:
        with _CHILDREN_LOCK:
            _CHILDREN.pop(proc, None)


def stopping() -> bool:
    """Whether an interrupt is ending the command: a child that ends now was stopped, and what it
    says is no result."""
    return _State.fired is not None


def _end_children() -> None:
    with _CHILDREN_LOCK:
        children = list(_CHILDREN.items())
    for proc, group in children:
        if group:
            try:
                os.killpg(proc.pid, signal.SIGTERM)  # the group outlives its leader while a member runs
            except ProcessLookupError:
                pass
        else:
            proc.terminate()


def _handler(signum, _frame):
    if _State.fired is not None:
        return  # already on the way out: let the cleanup finish
    if _State.defer_depth:
        _State.pending = signum
        return
    _State.fired = signum
    _end_children()
    raise Interrupted(signum, _State.what or "the command")


@contextmanager
def interruptible(what: str):
    """Within the block, SIGINT and SIGTERM raise ``Interrupted(signum, what)`` (once). Inside another
    such block (a step of a longer command) the outer one's handling and name apply."""
    if threading.current_thread() is not threading.main_thread() or _State.what is not None:
        yield  # signal handlers belong to the main thread; elsewhere the caller's own handling applies
        return
    previous = {s: signal.signal(s, _handler) for s in SIGNALS}
    _State.what, _State.fired, _State.pending = what, None, None
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
        _State.what = _State.fired = _State.pending = None


@contextmanager
def deferred():
    """Hold SIGINT and SIGTERM back for the block (inside ``interruptible``): one that arrives
    meanwhile raises ``Interrupted`` when the block is done."""
    _State.defer_depth += 1
    try:
        yield
    finally:
        _State.defer_depth -= 1
        if not _State.defer_depth and _State.pending is not None and _State.fired is None:
            _State.fired, _State.pending = _State.pending, None
            raise Interrupted(_State.fired, _State.what or "the command")

"""compat_matrix.interrupts in this process: a real SIGINT or SIGTERM inside interruptible() becomes
Interrupted (exit 128 + the signal's number, as a shell reports it), once; deferred() holds it back; the
processes run() started for worker threads end with the command (their whole group with own_group).
test_interrupt.py does the same through the CLI, in a subprocess."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from compat_matrix import UserError, interrupts
from tests.conftest import alive

PY = sys.executable


def test_interrupted_says_which_signal_stopped_what_and_exits_as_a_shell_reports_it():
    e = interrupts.Interrupted(signal.SIGTERM, "npuenv deploy")
    assert isinstance(e, UserError)
    assert (e.signum, e.exit_code) == (15, 143)
    assert str(e) == ("npuenv deploy: interrupted by SIGTERM; its temporary files are removed and nothing "
                      "was written")
    assert interrupts.Interrupted(signal.SIGINT, "x").exit_code == 130


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_inside_interruptible_raises_interrupted_once(signum):
    before = {s: signal.getsignal(s) for s in interrupts.SIGNALS}
    with pytest.raises(interrupts.Interrupted) as e:
        with interrupts.interruptible("npuenv bundle make"):
            os.kill(os.getpid(), signum)
            time.sleep(5)
    assert (e.value.signum, e.value.exit_code) == (signum, 128 + signum)
    assert str(e.value).startswith(f"npuenv bundle make: interrupted by {signal.Signals(signum).name};")
    assert {s: signal.getsignal(s) for s in interrupts.SIGNALS} == before    # the previous handlers are back


def test_a_second_signal_during_the_cleanup_is_ignored():
    cleaned = []
    with pytest.raises(interrupts.Interrupted) as e:
        with interrupts.interruptible("validate"):
            try:
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(5)
            finally:
                os.kill(os.getpid(), signal.SIGINT)     # ignored: the cleanup goes on
                cleaned.append(True)
    assert cleaned == [True] and e.value.signum == signal.SIGTERM


def test_a_signal_during_deferred_is_raised_when_the_block_ends():
    steps = []
    with pytest.raises(interrupts.Interrupted) as e:
        with interrupts.interruptible("validate"):
            with interrupts.deferred():
                os.kill(os.getpid(), signal.SIGINT)
                steps.append("renamed both")
            steps.append("after the block")
    assert steps == ["renamed both"] and e.value.signum == signal.SIGINT
    assert str(e.value).startswith("validate: interrupted by SIGINT;")


def test_the_handler_names_the_command_when_no_block_named_it():
    with pytest.raises(interrupts.Interrupted) as e:
        interrupts._handler(signal.SIGTERM, None)
    interrupts._State.fired = None
    assert str(e.value).startswith("the command: interrupted by SIGTERM;")


def test_run_returns_what_the_process_printed_and_forgets_it():
    code = "import os, sys; print(os.environ['X']); print('err', file=sys.stderr); sys.exit(3)"
    done = interrupts.run([PY, "-c", code], env={**os.environ, "X": "given"})     # Popen's own options pass through
    assert isinstance(done, subprocess.CompletedProcess)
    assert (done.args[1:], done.returncode, done.stdout, done.stderr) == (["-c", code], 3, "given\n", "err\n")
    assert interrupts._CHILDREN == {}


@pytest.mark.parametrize("own_group, leads", [(True, "True"), (False, "False"), (None, "False")])
def test_run_with_own_group_makes_the_process_lead_its_group(own_group, leads):
    options = {} if own_group is None else {"own_group": own_group}      # by default it stays in ours
    done = interrupts.run([PY, "-c", "import os; print(os.getpgid(0) == os.getpid())"], **options)
    assert done.stdout.strip() == leads


def _start_in_thread(cmd, own_group):
    result = {}
    thread = threading.Thread(target=lambda: result.update(done=interrupts.run(cmd, own_group=own_group)))
    thread.start()
    deadline = time.monotonic() + 30
    while not interrupts._CHILDREN and time.monotonic() < deadline:
        time.sleep(0.01)
    return thread, result


def test_an_interrupt_terminates_what_worker_threads_wait_for():
    thread, result = _start_in_thread([PY, "-c", "import time; time.sleep(60)"], own_group=False)
    assert list(interrupts._CHILDREN.values()) == [False]
    with pytest.raises(interrupts.Interrupted):
        interrupts._handler(signal.SIGINT, None)
    interrupts._State.fired = None
    thread.join(30)
    assert result["done"].returncode == -signal.SIGTERM and interrupts._CHILDREN == {}


def test_an_interrupt_ends_the_whole_group_of_an_own_group_process(tmp_path):
    pidfile = tmp_path / "grandchild"
    # the child starts a grandchild and waits for it: only a signal to the group reaches the grandchild
    script = (f"import subprocess, sys; p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
              f"open({str(pidfile)!r}, 'w').write(str(p.pid)); p.wait()")
    thread, result = _start_in_thread([PY, "-c", script], own_group=True)
    assert list(interrupts._CHILDREN.values()) == [True]
    deadline = time.monotonic() + 30
    while not (pidfile.exists() and pidfile.read_text()) and time.monotonic() < deadline:
        time.sleep(0.01)
    grandchild = int(pidfile.read_text())
    with pytest.raises(interrupts.Interrupted):
        interrupts._handler(signal.SIGTERM, None)
    interrupts._State.fired = None
    thread.join(30)
    assert result["done"].returncode == -signal.SIGTERM
    deadline = time.monotonic() + 30
    while alive(grandchild) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not alive(grandchild)


def test_a_group_that_has_already_ended_is_no_error():
    proc = subprocess.Popen([PY, "-c", "pass"], start_new_session=True)
    proc.wait()
    interrupts._CHILDREN[proc] = True
    try:
        interrupts._end_children()
    finally:
        interrupts._CHILDREN.pop(proc, None)


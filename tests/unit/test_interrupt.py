"""Ctrl-C with a real signal, while a command is blocked reading a file: exit 130,
one line, no traceback. (test_bad_inputs.py interrupts every other command at a
chosen point in the same process.)"""
from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time

from tests.conftest import ROOT


def test_sigint_while_reading_prints_one_line_and_exits_130(tmp_path):
    info = tmp_path / "etc" / "ascend_install.info"  # the first file `npuenv facts` reads
    info.parent.mkdir()
    os.mkfifo(info)
    # As from a terminal: a shell without job control starts background jobs (`make test &`) with
    # SIGINT ignored, and Python then keeps it ignored (no KeyboardInterrupt).
    proc = subprocess.Popen([sys.executable, "-m", "npuenv", "facts", "--root", str(tmp_path)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    writer = None
    try:
        deadline = time.monotonic() + 60
        while writer is None:  # a write end opens only once the command has the FIFO open for reading
            try:
                writer = os.open(info, os.O_WRONLY | os.O_NONBLOCK)
            except OSError as e:
                assert e.errno == errno.ENXIO and proc.poll() is None and time.monotonic() < deadline, \
                    proc.stderr.read() if proc.poll() is not None else "the command never opened the file"
                time.sleep(0.05)
        time.sleep(0.2)  # now blocked in read(): nothing is written
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if writer is not None:
            os.close(writer)
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130
    assert err == "npuenv: interrupted (Ctrl-C)\n"
    assert out == ""

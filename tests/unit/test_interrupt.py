"""Ctrl-C and SIGTERM with a real signal, while a command waits for a program it runs (a dynamic
inventory that never answers, under ansible-inventory): exit 128 + the signal's number, one line, no
traceback, and the program ended with the command. (Reading a file no longer blocks: a FIFO or device
is refused unread. test_bad_inputs.py interrupts every other command at a chosen point in the same
process.)"""
from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import ROOT, alive


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_while_ansible_inventory_runs_ends_it_and_exits_128_plus_the_signal(signum, tmp_path):
    inventory, pids = tmp_path / "inventory.sh", tmp_path / "pids"
    # Ansible's script plugin runs it directly: its parent is ansible-inventory.
    inventory.write_text(f'#!/bin/sh\necho "$PPID $$" > {shlex.quote(str(pids))}.tmp\n'
                         f'mv {shlex.quote(str(pids))}.tmp {shlex.quote(str(pids))}\nexec sleep 120\n')
    inventory.chmod(0o755)
    # As from a terminal: a shell without job control starts background jobs (`make test &`) with
    # SIGINT ignored, and Python then keeps it ignored (no KeyboardInterrupt).
    proc = subprocess.Popen([sys.executable, "-m", "npuenv", "deploy", "-i", str(inventory), "--check"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    ansible_inventory = script = None
    try:
        deadline = time.monotonic() + 120
        while not pids.exists():
            assert proc.poll() is None and time.monotonic() < deadline, \
                proc.stderr.read() if proc.poll() is not None else "ansible-inventory never ran the inventory"
            time.sleep(0.05)
        ansible_inventory, script = map(int, pids.read_text().split())
        assert alive(ansible_inventory)
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=60)
        outlived = alive(ansible_inventory)
    finally:
        if proc.poll() is None:
            proc.kill()
        for pid in (script, ansible_inventory):
            if pid and alive(pid):
                os.kill(pid, signal.SIGKILL)
    assert proc.returncode == 128 + signum
    assert err == (f"npuenv: reading the inventory {inventory}: interrupted by {signum.name}; its temporary files "
                   f"are removed and nothing was written\n")
    assert out == ""
    assert not outlived, "ansible-inventory outlived npuenv"

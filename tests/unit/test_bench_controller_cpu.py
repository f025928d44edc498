"""bench_fleet counts every process the controller starts, also one that nobody waits for: an SSH
master that ControlPersist puts in the background is adopted (a child subreaper) and its CPU is
counted when it exits; one that does not exit is named, not silently left out."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"

# Run in a process of its own (being a subreaper is the whole process's state). A command leaves a
# process behind, as ssh leaves its master: it spends some CPU, writes how much, and exits.
SCRIPT = """
import json, subprocess, sys
sys.path.insert(0, sys.argv[1])
import bench_fleet
own_file = sys.argv[2]
left_behind = ("import resource, sys\\nx = 0\\nfor i in range(3_000_000):\\n    x += i\\n"
               "used = resource.getrusage(resource.RUSAGE_SELF)\\n"
               "open(sys.argv[1], 'w').write(str(used.ru_utime + used.ru_stime))\\n")
start = bench_fleet.children_cpu()
with bench_fleet.adopting():
    subprocess.run(["sh", "-c", '"$0" -c "$1" "$2" >/dev/null 2>&1 &', sys.executable, left_behind, own_file],
                   check=True)
waited = bench_fleet.children_cpu() - start
adopted = bench_fleet.reap_adopted()
with bench_fleet.adopting():
    subprocess.run(["sh", "-c", "sleep 300 >/dev/null 2>&1 &"], check=True)
try:
    bench_fleet.reap_adopted(timeout=0.5)
    stuck = None
except RuntimeError as e:
    stuck = str(e)
print(json.dumps({"waited": waited, "adopted": adopted, "stuck": stuck}))
"""


def test_a_process_left_behind_is_adopted_and_counted_and_one_still_running_is_named(tmp_path):
    own_file = tmp_path / "own"
    p = subprocess.run([sys.executable, "-c", SCRIPT, str(BENCH), str(own_file)], capture_output=True, text=True,
                       timeout=300, cwd=BENCH.parent)
    assert p.returncode == 0, p.stderr[-3000:]
    out = json.loads(p.stdout)
    deadline = time.monotonic() + 120   # (a process nobody adopted may still be running)
    while not own_file.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    own = float(own_file.read_text())
    # What it spent was not in what the command's own process was waited for with; it is counted at its exit.
    assert out["waited"] < own <= out["adopted"]
    stuck = out["stuck"] or ""
    assert stuck.startswith("processes left running after the command: ") and stuck.endswith(" sleep"), stuck
    os.kill(int(stuck.rsplit(" ", 2)[1]), signal.SIGKILL)   # the sleep the check left running

"""What ansible-playbook's main process spends while it waits on the nodes, per
internal_poll_interval (issue 22, part 3: the controller's CPU per node).

While a task runs on the nodes (an installer, pip, a reboot, a validation), the
linear strategy looks for finished tasks every internal_poll_interval seconds,
and each look asks every worker whether it died. One run: HOSTS hosts on this
machine (connection local, one worker each) run one `sleep` task; the main
process's CPU is read from /proc between two points inside the wait, for the
project's value (playbooks/ansible.cfg) and the one it replaced, alternating.
Figures: CPU-seconds per second of waiting for each, and their ratio.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ansible_run import run as ansible_run  # noqa: E402

HOSTS = int(os.environ.get("BENCH_POLL_HOSTS", "16"))
# The value before (10 ms) and the project's own, read from its ansible.cfg.
BEFORE = 0.01
SETTLE, WINDOW = 10.0, 20.0   # seconds into the task before and while the main process is read
ROUNDS = 2
TICK = os.sysconf("SC_CLK_TCK")


def project_interval() -> float:
    import configparser

    cfg = configparser.ConfigParser()
    cfg.read(ansible_run.PROJECT_CONFIG)
    return cfg.getfloat("defaults", "internal_poll_interval")


def main_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK   # utime, stime: the main process alone


def waiting_cpu_per_s(folder: Path, interval: float) -> float:
    (folder / "ansible.cfg").write_text(f"[defaults]\ninternal_poll_interval = {interval}\nforks = {HOSTS}\n")
    env = {**os.environ, "ANSIBLE_CONFIG": str(folder / "ansible.cfg"), "ANSIBLE_LOCAL_TEMP": str(folder / "tmp")}
    p = subprocess.Popen([ansible_run.ansible_command("ansible-playbook"), "-i", str(folder / "hosts.yml"),
                          str(folder / "wait.yml")], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(SETTLE)
        start = main_cpu(p.pid)
        time.sleep(WINDOW)
        used = main_cpu(p.pid) - start
    finally:
        if p.wait(timeout=SETTLE + WINDOW + 120) != 0:
            raise RuntimeError(f"ansible-playbook failed (exit {p.returncode})")
    return used / WINDOW


def run() -> dict:
    after = project_interval()
    folder = Path(tempfile.mkdtemp(prefix="npuenv-bench-poll-"))
    try:
        local = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
        (folder / "hosts.yml").write_text(yaml.safe_dump({"all": {"hosts": {f"h{i}": local for i in range(HOSTS)}}}))
        (folder / "wait.yml").write_text(yaml.safe_dump([{
            "hosts": "all", "gather_facts": False,
            "tasks": [{"name": "wait", "ansible.builtin.command": f"sleep {SETTLE + WINDOW + 5:.0f}"}]}]))
        seen: dict[float, list[float]] = {BEFORE: [], after: []}
        for _ in range(ROUNDS):
            for interval in (BEFORE, after):
                seen[interval].append(waiting_cpu_per_s(folder, interval))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    before_rate, after_rate = (sum(v) / len(v) for v in (seen[BEFORE], seen[after]))
    return {"name": "poll_interval", "hosts": HOSTS, "cores": os.cpu_count(),
            "before_interval_s": BEFORE, "after_interval_s": after,
            "before_main_cpu_s_per_s_waiting": round(before_rate, 4),
            "after_main_cpu_s_per_s_waiting": round(after_rate, 4),
            "waiting_cpu_after_to_before": round(after_rate / before_rate, 2) if before_rate else None}


if __name__ == "__main__":
    import json

    print(json.dumps(run(), indent=1))

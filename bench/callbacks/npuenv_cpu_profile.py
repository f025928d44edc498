"""Controller CPU per task and role, and tasks per host, of one playbook run
(bench/bench_converge_tasks.py). Loaded from ANSIBLE_CALLBACK_PLUGINS without
being enabled (npuenv sets ANSIBLE_CALLBACKS_ENABLED itself); it does nothing
unless NPUENV_CPU_PROFILE names the file it appends one JSON line to per run.

A task's CPU is what the ansible-playbook process and its workers (with the
ssh clients they ran) used from the task's start to the next task's start:
the linear strategy finishes a task on every host before the next starts.
Workers that ended but were not reaped yet are read from /proc, so that the
figure does not lag a task behind. The SSH masters (ControlPersist) are no
children of ansible-playbook: the bench counts them as a whole."""
from __future__ import annotations

import json
import os
from collections import defaultdict
from pathlib import Path

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = """
    name: npuenv_cpu_profile
    type: aggregate
    short_description: controller CPU per task and role, tasks per host (bench only)
    description:
      - Appends one JSON line per run to the file named by NPUENV_CPU_PROFILE.
"""

TICK = os.sysconf("SC_CLK_TCK")


def _children_cpu() -> float:
    """CPU-seconds of this process's children that have not been reaped yet (running or zombie)."""
    total = 0.0
    for task in Path("/proc/self/task").iterdir():
        try:
            pids = (task / "children").read_text().split()
        except OSError:
            continue
        for pid in pids:
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue  # reaped meanwhile: os.times() has it
            total += sum(int(f) for f in fields[11:15]) / TICK  # utime stime cutime cstime
    return total


def _cpu() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system + _children_cpu()


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "npuenv_cpu_profile"
    CALLBACK_NEEDS_ENABLED = False

    def __init__(self):
        super().__init__()
        self._out = os.environ.get("NPUENV_CPU_PROFILE")
        self._playbook = ""
        self._task: tuple[str, str] | None = None
        self._mark = _cpu()
        self._tasks: dict[tuple[str, str], float] = defaultdict(float)
        # host -> role -> {'run': n, 'skipped': n, 'items': n}
        self._hosts: dict = defaultdict(lambda: defaultdict(lambda: defaultdict(int)))

    def _close_task(self) -> None:
        now = _cpu()
        self._tasks[self._task or ("(start)", "")] += now - self._mark
        self._mark = now

    def v2_playbook_on_start(self, playbook):
        self._playbook = Path(playbook._file_name).name

    def _start(self, task) -> None:
        self._close_task()
        role = task._role.get_name() if task._role else "(play)"
        self._task = (role, task.get_name().strip())

    def v2_playbook_on_task_start(self, task, is_conditional):
        self._start(task)

    def v2_playbook_on_handler_task_start(self, task):
        self._start(task)

    def _count(self, result, kind: str) -> None:
        role = result._task._role.get_name() if result._task._role else "(play)"
        self._hosts[result._host.get_name()][role][kind] += 1

    def v2_runner_on_ok(self, result):
        self._count(result, "run")

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._count(result, "run")

    def v2_runner_on_unreachable(self, result):
        self._count(result, "run")

    def v2_runner_on_skipped(self, result):
        self._count(result, "skipped")

    def v2_runner_item_on_ok(self, result):
        self._count(result, "items")

    def v2_runner_item_on_failed(self, result):
        self._count(result, "items")

    def v2_playbook_on_stats(self, stats):
        self._close_task()
        if not self._out:
            return
        roles: dict[str, float] = defaultdict(float)
        for (role, _), cpu in self._tasks.items():
            roles[role] += cpu
        record = {
            "playbook": self._playbook,
            "cpu_s": round(sum(self._tasks.values()), 2),
            "roles_cpu_s": {r: round(c, 2) for r, c in roles.items()},
            "tasks_cpu_s": [[r, t, round(c, 3)] for (r, t), c in sorted(self._tasks.items(), key=lambda kv: -kv[1])],
            "hosts": {h: {r: dict(k) for r, k in roles.items()} for h, roles in self._hosts.items()},
        }
        with open(self._out, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")

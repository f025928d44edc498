"""A compact stdout callback for `npuenv deploy`: one line per task when every
host has finished it (its wall time and what it did on how many hosts), with
failures, unreachable hosts, warnings and the recap printed as Ansible's
default callback prints them. A rollout of many hosts reads as progress, not as
one line per host per task. A task that runs long (the Python stack's install
of torch takes minutes) says every HEARTBEAT_S that it is still running, on
which hosts, so that a quiet terminal never looks like a hung one."""
from __future__ import annotations

import threading
import time

from ansible.plugins.callback.default import CallbackModule as DefaultCallback

# The collection's filters, lookups and actions run in the worker Ansible forks for each task and
# host, and import npuenv's libraries there when they first need them: about 0.07 CPU-s per host
# and task that uses one (bench/bench_converge_tasks.py). Imported here, once, in ansible-playbook's
# main process, which loads this callback before any play, they are in every worker it forks.
try:
    import compat_matrix.checksums  # noqa: F401
    import compat_matrix.lock  # noqa: F401
    import compat_matrix.versions  # noqa: F401
    import validation.node.facts  # noqa: F401
    import validation.node.identity  # noqa: F401
    from validation.node.vendor_tools import common, hccn_tool, npu_smi  # noqa: F401
except ImportError:
    pass  # npuenv is not installed beside Ansible: the plugins that need it say so when they run

DOCUMENTATION = """
    name: npuenv_progress
    type: stdout
    short_description: one line per finished task, with its time; failures in full
    description:
      - Prints each task once all hosts have finished it, with its wall time and
        how many hosts it changed, left alone, skipped, failed or could not reach.
      - A task still running after HEARTBEAT_S seconds says so, with the hosts it still runs on, and
        again every HEARTBEAT_S seconds.
      - Failures, unreachable hosts and the recap are printed as the default callback prints them.
    extends_documentation_fragment:
      - default_callback
      - result_format_callback
"""


HEARTBEAT_S = 30.0
NAMED = 4   # hosts named in a still-running line; the rest counted


class CallbackModule(DefaultCallback):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "stdout"
    CALLBACK_NAME = "npuenv_progress"

    def __init__(self):
        super().__init__()
        self._current = None
        self._current_uuid = None   # the Ansible task (its _uuid) of the current line
        self._started = 0.0
        self._counts: dict[str, int] = {}
        self._running: list[str] = []
        self._run_started = time.monotonic()
        # Results arrive on Ansible's main thread, the heartbeat on its own: one lock for the task's state.
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._heart = threading.Thread(target=self._beat, name="npuenv-progress-heartbeat", daemon=True)

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            self.still_running()

    def still_running(self) -> None:
        """One line for a task that has run HEARTBEAT_S or more: how long, and on which hosts it has not
        finished."""
        with self._lock:
            elapsed = time.monotonic() - self._started
            if self._current is None or not self._running or elapsed < HEARTBEAT_S:
                return
            hosts = ", ".join(self._running[:NAMED]) + (f" and {len(self._running) - NAMED} more"
                                                       if len(self._running) > NAMED else "")
            line = f"{elapsed:7.1f} s  {self._current}  (still running on {hosts})"
        self._display.display(line)

    def _finish_task(self) -> None:
        with self._lock:
            if self._current is None:
                return
            seen = ", ".join(f"{k} {v}" for k, v in self._counts.items() if v)
            line = f"{time.monotonic() - self._started:7.1f} s  {self._current}" + (f"  ({seen})" if seen
                                                                                      else "  (no host)")
            self._current = None
        self._display.display(line)

    def _start_task(self, task, name: str) -> None:
        # ansible-core 2.19 announces a meta task (flush_handlers) once per host: one task is one line,
        # not a line per host.
        if self._current is not None and task._uuid == self._current_uuid:
            return
        self._finish_task()
        with self._lock:
            self._current, self._started, self._running = name, time.monotonic(), []
            self._current_uuid = task._uuid
            self._counts = {"changed": 0, "ok": 0, "skipped": 0, "failed": 0, "unreachable": 0}
        if not self._heart.is_alive() and not self._stop.is_set():
            self._heart.start()

    def _count(self, result, key: str) -> None:
        with self._lock:
            if self._current is not None:
                self._counts[key] += 1
            host = result._host.get_name()
            if host in self._running:
                self._running.remove(host)

    # Task boundaries: nothing printed when a task starts.
    def v2_playbook_on_task_start(self, task, is_conditional):
        self._start_task(task, task.get_name().strip())

    def v2_playbook_on_handler_task_start(self, task):
        self._start_task(task, "handler: " + task.get_name().strip())

    def v2_playbook_on_play_start(self, play):
        self._finish_task()
        super().v2_playbook_on_play_start(play)

    # Per host: counted, and printed in full only when something went wrong.
    def v2_runner_on_ok(self, result):
        self._count(result, "changed" if result._result.get("changed") else "ok")

    def v2_runner_on_skipped(self, result):
        self._count(result, "skipped")

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._count(result, "ok" if ignore_errors else "failed")
        super().v2_runner_on_failed(result, ignore_errors)

    def v2_runner_on_unreachable(self, result):
        self._count(result, "unreachable")
        super().v2_runner_on_unreachable(result)

    def v2_runner_item_on_ok(self, result):
        pass

    def v2_runner_item_on_skipped(self, result):
        pass

    def v2_runner_on_start(self, host, task):
        with self._lock:
            self._running.append(host.get_name())

    def v2_playbook_on_include(self, included_file):
        pass

    def v2_playbook_on_stats(self, stats):
        self._stop.set()
        self._finish_task()
        self._display.display(f"rollout: {time.monotonic() - self._run_started:.1f} s")
        super().v2_playbook_on_stats(stats)

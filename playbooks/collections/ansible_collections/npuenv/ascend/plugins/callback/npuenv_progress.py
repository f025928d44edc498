"""A compact stdout callback for `npuenv deploy`: one line per task when every
host has finished it (its wall time and what it did on how many hosts), with
failures, unreachable hosts, warnings and the recap printed as Ansible's
default callback prints them. A rollout of many hosts reads as progress, not as
one line per host per task."""
from __future__ import annotations

import time

from ansible.plugins.callback.default import CallbackModule as DefaultCallback

DOCUMENTATION = """
    name: npuenv_progress
    type: stdout
    short_description: one line per finished task, with its time; failures in full
    description:
      - Prints each task once all hosts have finished it, with its wall time and
        how many hosts it changed, left alone, skipped, failed or could not reach.
      - Failures, unreachable hosts and the recap are printed as the default callback prints them.
    extends_documentation_fragment:
      - default_callback
      - result_format_callback
"""


class CallbackModule(DefaultCallback):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "stdout"
    CALLBACK_NAME = "npuenv_progress"

    def __init__(self):
        super().__init__()
        self._current = None
        self._started = 0.0
        self._counts: dict[str, int] = {}
        self._run_started = time.monotonic()

    def _finish_task(self) -> None:
        if self._current is None:
            return
        seen = ", ".join(f"{k} {v}" for k, v in self._counts.items() if v)
        self._display.display(f"{time.monotonic() - self._started:7.1f} s  {self._current}"
                              + (f"  ({seen})" if seen else "  (no host)"))
        self._current = None

    def _start_task(self, name: str) -> None:
        self._finish_task()
        self._current, self._started = name, time.monotonic()
        self._counts = {"changed": 0, "ok": 0, "skipped": 0, "failed": 0, "unreachable": 0}

    def _count(self, key: str) -> None:
        if self._current is not None:
            self._counts[key] += 1

    # Task boundaries: nothing printed when a task starts.
    def v2_playbook_on_task_start(self, task, is_conditional):
        self._start_task(task.get_name().strip())

    def v2_playbook_on_handler_task_start(self, task):
        self._start_task("handler: " + task.get_name().strip())

    def v2_playbook_on_play_start(self, play):
        self._finish_task()
        super().v2_playbook_on_play_start(play)

    # Per host: counted, and printed in full only when something went wrong.
    def v2_runner_on_ok(self, result):
        self._count("changed" if result._result.get("changed") else "ok")

    def v2_runner_on_skipped(self, result):
        self._count("skipped")

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._count("ok" if ignore_errors else "failed")
        super().v2_runner_on_failed(result, ignore_errors)

    def v2_runner_on_unreachable(self, result):
        self._count("unreachable")
        super().v2_runner_on_unreachable(result)

    def v2_runner_item_on_ok(self, result):
        pass

    def v2_runner_item_on_skipped(self, result):
        pass

    def v2_runner_on_start(self, host, task):
        pass

    def v2_playbook_on_include(self, included_file):
        pass

    def v2_playbook_on_stats(self, stats):
        self._finish_task()
        self._display.display(f"rollout: {time.monotonic() - self._run_started:.1f} s")
        super().v2_playbook_on_stats(stats)

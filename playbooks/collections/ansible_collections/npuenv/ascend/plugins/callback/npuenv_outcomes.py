"""Each host's outcome of a playbook run, as JSON for `npuenv deploy`'s rollout
(playbooks/rollout.py): what the PLAY RECAP counts, and the task that failed the
host with its message (or SSH's reason for an unreachable one), so that the
summary names the cause without reading Ansible's terminal output.

Enabled by npuenv for its own runs (ANSIBLE_CALLBACKS_ENABLED); it writes the
file named by NPUENV_OUTCOMES when the run ends, all at once."""
from __future__ import annotations

import json
import os
import re

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = """
    name: npuenv_outcomes
    type: notification
    short_description: each host's recap and failing task as JSON, for npuenv deploy
    description:
      - "Writes, per host, the recap's counts (ok, changed, failures, unreachable, skipped, rescued, ignored) and
        the failing task with its message to the file named by the NPUENV_OUTCOMES environment variable when the
        playbook ends."
    requirements:
      - enabled in callbacks_enabled (npuenv deploy does)
"""

ENV = "NPUENV_OUTCOMES"
MESSAGE_CHARS = 1500


# The wrappers Ansible puts around the cause of a failed task: what the operator needs comes after them.
_WRAPPERS = re.compile(r"^(?:Task failed: |Finalization of task args for '[^']*' failed: |Error while resolving value "
                       r"for '[^']*': |The (?:lookup|filter|test) plugin '[^']*' failed(?: to load)?: )+")


def message(result: dict) -> str:
    """What a failed result says, on one line: its msg (Ansible's wrappers taken off), and for a
    command its stderr's end; for a loop, the first failed item's."""
    for item in result.get("results") or []:
        if isinstance(item, dict) and item.get("failed"):
            return message(item)
    text = _WRAPPERS.sub("", " ".join(str(result.get("msg") or "").split()))
    tail = str(result.get("stderr") or result.get("module_stderr") or "").strip()
    if tail and (not text or text.startswith(("non-zero return code", "MODULE FAILURE"))):
        text = f"{text}: {tail[-600:]}" if text else tail[-600:]
    if not text and "rc" in result:
        text = f"exit code {result['rc']}"
    return " ".join(text.split())[:MESSAGE_CHARS]


def _task_name(result) -> str:
    """The task's own name ("Component | action"), without the role's prefix Ansible adds."""
    return str(result._task.name or result._task.get_name()).strip()


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "notification"
    CALLBACK_NAME = "npuenv_outcomes"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self):
        super().__init__()
        self._seen: dict[str, dict] = {}

    def _host(self, result) -> dict:
        return self._seen.setdefault(result._host.get_name(), {})

    def v2_runner_on_failed(self, result, ignore_errors=False):
        if ignore_errors:
            return
        # The last one: a failure a block rescued comes before the one that stopped the host.
        self._host(result).update(failed_task=_task_name(result), message=message(result._result))

    def v2_runner_on_unreachable(self, result):
        self._host(result).update(failed_task=_task_name(result),
                                  message=" ".join(str(result._result.get("msg", "")).split())[:MESSAGE_CHARS])

    def v2_playbook_on_stats(self, stats):
        path = os.environ.get(ENV)
        if not path:
            return
        out = {}
        for host in sorted(set(stats.processed) | set(self._seen)):
            counts = stats.summarize(host)
            out[host] = {**counts, **self._seen.get(host, {})}
        tmp = f"{path}.part"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(out, f)
        os.replace(tmp, path)

"""The validation result model: the levels, the workload backends, a check's
statuses and one check's record, each defined here once; every writer and
reader of results (the pytest plugin, runner.py, the merge, the reports) takes
them from here.

A record travels as a JSON object (the node document, results.json);
``CheckResult`` is its typed form. ``from_dict`` trusts its input: a node's
records are checked by validation/node/document.py before they are read here.

This module runs on the nodes too (it is packed into the validation artefact):
it imports only the standard library.
"""
from __future__ import annotations

from dataclasses import dataclass

# The validation levels, each running its own checks and those of the levels before it.
QUICK, STANDARD, FULL = "quick", "standard", "full"
LEVELS = (QUICK, STANDARD, FULL)
LEVELS_TEXT = f"{', '.join(LEVELS[:-1])} or {LEVELS[-1]}"   # as messages name them
DEFAULT_LEVEL = QUICK

# The device the workloads run on (auto: npu with HCCL, else cuda with NCCL, else cpu with gloo).
AUTO = "auto"
BACKENDS = (AUTO, "npu", "cuda", "cpu")

# A check's outcome.
PASSED, WARNING, FAILED, ERROR, SKIPPED = "passed", "warning", "failed", "error", "skipped"
STATUSES = (PASSED, WARNING, FAILED, ERROR, SKIPPED)
BAD = (FAILED, ERROR)   # the outcomes that fail a host

# A host's verdict: its checks passed or failed, it was not reached, the suite could not run there, or
# the suite ran and no check executed (every one skipped: skipped is not passed, DESIGN.md 6).
UNREACHABLE, NOT_CHECKED = "unreachable", "not_checked"
HOST_STATES = (PASSED, FAILED, UNREACHABLE, ERROR, NOT_CHECKED)

# The controller's records of a host as a whole: it was not reached, the suite could not run there.
REACHABLE, SUITE = "reachable", "suite"

# What a failed check says: each a text.
FAILURE_FIELDS = ("summary", "expected", "found", "cause", "fix")

# results.json's kind and format (report.py writes and reads it): its own key, so that no other
# document of npuenv (a node's, a lock) is taken for one.
RESULTS_KEY = "npuenv_results"
RESULTS_VERSION = 1
# The file the suite's pytest plugin (results.py) writes on a node for runner.py to read.
SUITE_RESULTS_KEY = "npuenv_suite_results"
SUITE_RESULTS_VERSION = 1
# The stack a host is compared with (runner.expected_stack, `npuenv matrix resolve --format json`),
# which the suite reads from --npuenv-stack.
STACK_KEY = "npuenv_expected_stack"
STACK_VERSION = 1


@dataclass(frozen=True)
class CheckResult:
    """One check's record on one host (FLEET for a check across every node)."""
    host: str
    check: str
    level: str
    status: str = PASSED
    duration_s: float = 0.0
    message: str = ""
    data: object = None                 # what the check measured: any JSON
    failure: dict | None = None         # FAILURE_FIELDS, when the check says why it failed

    def to_dict(self) -> dict:
        """The record as JSON holds it (its fields in this order; no "failure" when there is none)."""
        out = {"host": self.host, "check": self.check, "level": self.level, "status": self.status,
               "duration_s": self.duration_s, "message": self.message, "data": self.data}
        if self.failure is not None:
            out["failure"] = self.failure
        return out

    @classmethod
    def from_dict(cls, record: dict) -> CheckResult:
        """A record read back; the fields results.json leaves out at their defaults take them."""
        return cls(record["host"], record["check"], record["level"], record["status"],
                   record.get("duration_s", 0.0), record.get("message", ""), record.get("data"),
                   record.get("failure"))

    @property
    def bad(self) -> bool:
        """Whether it fails its host."""
        return self.status in BAD

    @property
    def executed(self) -> bool:
        """Whether the check ran: not a skip, not the controller's record of the host."""
        return self.status in (PASSED, FAILED, WARNING) and self.check not in (REACHABLE, SUITE)


@dataclass(frozen=True)
class HostResult:
    """What one host's run came to (results.json's host_status): its verdict (HOST_STATES), why it was
    not reached or could not run the suite, and the Python and the time its node reported."""
    status: str
    reason: str = ""
    python: str | None = None
    duration_s: float | None = None

    def to_dict(self) -> dict:
        return {"status": self.status, "reason": self.reason, "python": self.python, "duration_s": self.duration_s}

    @classmethod
    def from_dict(cls, entry: dict) -> HostResult:
        return cls(entry["status"], entry.get("reason", ""), entry.get("python"), entry.get("duration_s"))


# A record's fields that results.json leaves out at these values (most checks say nothing when they pass).
RECORD_DEFAULTS = {"message": CheckResult.message, "duration_s": CheckResult.duration_s, "data": CheckResult.data}

"""Fakes for calling the validation suite's checks directly: a probe that
answers commands from a table, a pytest request that only collects
user_properties, the expected stack as the runner builds it, and recorded
facts of a healthy Atlas 800T A2 node (8 x 910B3, the row's driver, CANN and
Python stack), which each test then breaks in one place."""
from __future__ import annotations

import copy
import fnmatch
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import compat_matrix as cm
from validation import facts as facts_mod
from validation.results import PROP_DATA, PROP_FAILURE, PROP_WARNING
from validation.run import expected_stack
from validation.suite.conftest import Checker, CheckFailed

SAMPLES = Path(__file__).resolve().parents[1] / "fixtures" / "vendor_samples"

# The rows the checks are tested with: one of each CANN packaging generation.
CURRENT_ROW = "2.13.0"      # CANN 9.1.0, cann-<v> layout, HDK 26.1.0 (>= 25.2.X)
LEGACY_ROW = "2.4.0.post2"  # CANN 8.0.0, ascend-toolkit/<v> layout, HDK 24.1.0 (>= 24.1.0)


def sample(name: str) -> str:
    return (SAMPLES / name).read_text()


_MATRIX = None


def stack(row: str = CURRENT_ROW, **constraints) -> dict:
    """The expected stack the runner hands the suite (``--npuenv-stack``)."""
    global _MATRIX
    _MATRIX = _MATRIX or cm.load_matrix()
    constraints.setdefault("arch", "x86_64")
    resolved = cm.resolve(_MATRIX, cm.Constraints(torch_npu="==" + row, **constraints)).stack
    return json.loads(json.dumps(expected_stack(resolved)))


OPTIONS = {"backend": "cpu", "devices": None, "max_bytes": 1 << 20, "busbw_floor": 0.0, "timeout": 60, "nproc": None}


def options(**changes) -> dict:
    return {**OPTIONS, **changes}


class UnexpectedCommand(AssertionError):
    pass


@dataclass
class FakeProbe(facts_mod.Probe):
    """Answers ``run`` from ``commands`` (regex -> (rc, stdout, stderr), first
    match wins), ``read`` and ``glob`` from ``files``. A command nobody
    expected fails the test, so a check cannot pass on an answer it never got."""

    commands: list[tuple[str, tuple[int, str, str]]] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)
    runs: list[str] = field(default_factory=list)
    runnable: bool = True

    def answer(self, pattern: str, rc: int = 0, out: str = "", err: str = "") -> "FakeProbe":
        self.commands.insert(0, (pattern, (rc, out, err)))
        return self

    def run(self, command):
        self.runs.append(command)
        for pattern, result in self.commands:
            if re.search(pattern, command):
                return result
        raise UnexpectedCommand(f"the fake host has no answer for: {command}")

    def read(self, path):
        return self.files.get(path)

    def glob(self, pattern):
        return sorted(p for p in self.files if fnmatch.fnmatch(p, pattern))

    @property
    def can_run(self):
        return self.runnable


@dataclass
class _Node:
    user_properties: list = field(default_factory=list)


@dataclass
class FakeRequest:
    node: _Node = field(default_factory=_Node)


@dataclass
class Outcome:
    """What one check call left: the failure it recorded (None if it passed),
    its warnings and the data it recorded."""
    failure: dict | None
    warnings: list[str]
    data: list
    error: CheckFailed | None = None
    skipped: str | None = None     # the reason, when the check skipped itself

    @property
    def passed(self) -> bool:
        return self.failure is None and self.skipped is None


def run_check(check_fn, **kwargs) -> Outcome:
    """Call a check with a Checker bound to a fake request; collect what it recorded.
    A skip is caught and recorded: escaping, it would turn the calling test into a skip."""
    request = FakeRequest()
    error = skipped = None
    try:
        check_fn(check=Checker(request), **kwargs)
    except CheckFailed as e:
        error = e
    except pytest.skip.Exception as e:
        skipped = str(e)
    props = request.node.user_properties
    failures = [json.loads(v) for k, v in props if k == PROP_FAILURE]
    assert len(failures) == (1 if error else 0), "a failed check records exactly one failure"
    return Outcome(failure=failures[0] if failures else None,
                   warnings=[v for k, v in props if k == PROP_WARNING],
                   data=[json.loads(v) for k, v in props if k == PROP_DATA], error=error, skipped=skipped)


def failed(check_fn, **kwargs) -> dict:
    """The failure a check must record; fails the test when the check passes."""
    outcome = run_check(check_fn, **kwargs)
    if outcome.failure is None:
        pytest.fail(f"{check_fn.__name__} {'skipped' if outcome.skipped else 'passed'} where it must fail")
    return outcome.failure


def passed(check_fn, **kwargs) -> Outcome:
    outcome = run_check(check_fn, **kwargs)
    assert outcome.passed, f"{check_fn.__name__} failed on a healthy host: {outcome.failure}"
    return outcome


# --------------------------------------------------------------- recorded facts

def _devices(n: int = 8, name: str = "910B3") -> list[dict]:
    bus = ["0000:C1:00.0", "0000:C2:00.0", "0000:81:00.0", "0000:82:00.0",
           "0000:01:00.0", "0000:02:00.0", "0000:41:00.0", "0000:42:00.0"]
    return [{"npu": i, "chip": 0, "phy_id": i, "name": name, "health": "OK", "bus_id": bus[i % 8]}
            for i in range(n)]


_HEALTHY = {
    "install_info": {"UserName": "HwHiAiUser", "UserGroup": "HwHiAiUser", "Driver_Install_Type": "full",
                     "Driver_Install_Path_Param": "/usr/local/Ascend", "Driver_Install_For_All": "yes",
                     "Firmware_Install_Type": "full", "Firmware_Install_Path_Param": "/usr/local/Ascend"},
    "driver": {"version": "26.1.0"},
    "firmware": {"version": "7.8.0.1.212", "package_version": "26.1.0"},
    "devices": _devices(),
    "npu_smi": {"version": "26.1.0", "processes": []},
    "cann": [{"generation": "cann", "version": "9.1.0", "home": "/usr/local/Ascend/cann", "arch": "x86_64",
              "kernels": ["ascend910b"]}],
    "nnal": ["9.1.0"],
    "python": {"interpreter": "python3", "torch": "2.13.0+cpu", "torch_npu": "2.13.0", "torchvision": "0.28.0"},
}


def healthy_facts(**changes) -> dict:
    """Facts of a healthy node of CURRENT_ROW, with top-level keys replaced."""
    facts = copy.deepcopy(_HEALTHY)
    facts.update(copy.deepcopy(changes))
    return facts

"""A pytest plugin that bench/bench_node_quick.py loads into the validation run on a node
(`-p node_quick_plugin`, packed into a copy of the artefact): the pytest process's CPU-seconds,
its own and its children's, per phase and per check, and the simulated vendor tools' share of
each (the lines they append to $NPU_SIM_CPU_LOG), written as JSON to $NODE_QUICK_OUT at the end."""
import json
import os
import resource

import pytest


def _cpu() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _simulator() -> float:
    try:
        with open(os.environ["NPU_SIM_CPU_LOG"]) as f:
            return sum(json.loads(line)["cpu_s"] for line in f)
    except FileNotFoundError:
        return 0.0


class Phases:
    def __init__(self):
        self.spent: dict[str, list[float]] = {}   # phase -> [CPU-seconds, of which the simulator's]
        self.last = (0.0, 0.0)                   # from the process's start

    def mark(self, phase: str) -> None:
        """What was spent since the last mark goes to ``phase``."""
        now = (_cpu(), _simulator())
        spent = self.spent.setdefault(phase, [0.0, 0.0])
        spent[0] += now[0] - self.last[0]
        spent[1] += now[1] - self.last[1]
        self.last = now


PHASES = Phases()


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    PHASES.mark("pytest start")   # the interpreter, pytest's and the suite's imports, plugins, conftest


@pytest.hookimpl(trylast=True)
def pytest_collection_finish(session):
    PHASES.mark("collection")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item):
    yield
    PHASES.mark("facts")   # the fixtures: the facts are collected by the first check that asks for them


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item):
    yield
    PHASES.mark(getattr(item, "originalname", item.name).removeprefix("test_"))


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    PHASES.mark("finish")
    with open(os.environ["NODE_QUICK_OUT"], "w") as f:
        json.dump({"phases": PHASES.spent, "pytest_cpu_s": _cpu()}, f)

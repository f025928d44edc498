"""The result model (validation/node/model.py): a check's record as JSON holds it and back, and the levels and
backends that every parser, marker and schema takes from it."""
from __future__ import annotations

import pytest

from npuenv import cli
from validation.node import document, model, runner
from validation.node.model import CheckResult
from validation.node.workloads import _common

FAILURE = dict(zip(model.FAILURE_FIELDS, ("NPU 3 is Critical", "OK", "Critical", "a fault", "reseat it")))


def test_a_record_is_written_in_its_fields_order_with_a_failure_only_when_there_is_one():
    passed = CheckResult("a", "driver", model.QUICK)
    assert list(passed.to_dict().items()) == [("host", "a"), ("check", "driver"), ("level", "quick"),
                                              ("status", "passed"), ("duration_s", 0.0), ("message", ""),
                                              ("data", None)]
    failed = CheckResult("a", "npu_health", model.QUICK, model.FAILED, 1.5, "NPU 3 is Critical", {"npu": 3}, FAILURE)
    assert failed.to_dict()["failure"] == FAILURE and list(failed.to_dict())[-1] == "failure"
    assert (passed.bad, failed.bad, CheckResult("a", "b", model.QUICK, model.ERROR).bad) == (False, True, True)


def test_a_record_reads_back_as_written_and_takes_the_defaults_results_json_leaves_out():
    failed = CheckResult("a", "npu_health", model.FULL, model.FAILED, 1.5, "NPU 3 is Critical", [1, 2], FAILURE)
    assert CheckResult.from_dict(failed.to_dict()) == failed
    slim = {"host": "b", "check": "train", "level": "standard", "status": "skipped"}
    assert CheckResult.from_dict(slim) == CheckResult("b", "train", model.STANDARD, model.SKIPPED)
    assert model.RECORD_DEFAULTS == {"message": "", "duration_s": 0.0, "data": None}


def test_the_levels_are_the_models_in_the_node_the_cli_and_the_schema():
    assert tuple(runner.LEVELS) == model.LEVELS == ("quick", "standard", "full")
    # each level runs its own checks and those of the levels before it
    assert runner.LEVELS == {"quick": "quick", "standard": "quick or standard", "full": "quick or standard or full"}
    level = next(a for a in cli.build_parser()._subparsers._group_actions[0].choices["validate"]._actions
                 if a.dest == "level")
    assert (tuple(level.choices), level.default) == (model.LEVELS, model.DEFAULT_LEVEL)
    with pytest.raises(document.DocumentError) as e:
        document._level("thorough", "level")
    assert str(e.value) == "level: 'thorough' is not one of quick, standard, full"
    assert model.LEVELS_TEXT == "quick, standard or full"


def test_the_backends_are_the_models_in_the_cli():
    backend = next(a for a in cli.build_parser()._subparsers._group_actions[0].choices["validate"]._actions
                   if a.dest == "backend")
    assert (tuple(backend.choices), backend.default) == (model.BACKENDS, model.AUTO)


def test_the_workloads_offer_the_models_backends():
    """The workload scripts run with the standard library and torch alone, so they spell the backends
    out; this keeps them the model's."""
    backend = next(a for a in _common.Run("smoke").parser("a workload", 60)._actions if a.dest == "backend")
    assert (tuple(backend.choices), backend.default) == (model.BACKENDS, model.AUTO)


def test_a_hosts_result_is_written_and_read_back_whole():
    reached = model.HostResult(model.FAILED, "", "3.11.7", 12.5)
    assert reached.to_dict() == {"status": "failed", "reason": "", "python": "3.11.7", "duration_s": 12.5}
    assert model.HostResult.from_dict(reached.to_dict()) == reached
    assert model.HostResult.from_dict({"status": "unreachable"}) == model.HostResult(model.UNREACHABLE)
    told = model.HostResult(model.UNREACHABLE, "ssh: connect to host n7 port 22: No route to host")
    assert model.HostResult.from_dict(told.to_dict()).reason == told.reason


@pytest.mark.parametrize("check, status, executed", [
    ("driver", model.PASSED, True), ("driver", model.WARNING, True), ("driver", model.FAILED, True),
    ("driver", model.SKIPPED, False), ("driver", model.ERROR, False),   # a setup error: the check never ran
    (model.REACHABLE, model.FAILED, False), (model.SUITE, model.PASSED, False),   # the controller's, of a host
])
def test_a_check_executed_when_it_ran_to_a_verdict_and_is_no_record_of_the_controllers(check, status, executed):
    assert CheckResult("a", check, model.QUICK, status).executed is executed

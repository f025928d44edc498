"""`npuenv validate`'s options, checked once (validation/node/options.py) by the CLI,
by the library and by the suite on the node: a value out of range ends with
exit 2 and the option's name; --only takes the suite's check names (read from
its source) and the node selects exactly those."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import pytest

import compat_matrix as cm
from compat_matrix.errors import UserError
from npuenv import cli
from validation import merge, report, run
from validation.node import runner, results

ROOT = Path(__file__).resolve().parents[2]
CHECK_NAMES = ", ".join(sorted(runner.suite_checks()))


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("args, message", [
    (["--timeout", "0"], "argument --timeout: 0 is out of range; give 1 to 86400"),
    (["--timeout", "-5"], "argument --timeout: -5 is out of range; give 1 to 86400"),
    (["--timeout", "86401"], "argument --timeout: 86401 is out of range; give 1 to 86400"),
    (["--timeout", "nan"], "argument --timeout: 'nan' is not a whole number"),
    (["--timeout", "1.5"], "argument --timeout: '1.5' is not a whole number"),
    (["--max-bytes", "0"], "argument --max-bytes: 0 is out of range; give 1 or more"),
    (["--busbw-floor", "-0.5"], "argument --busbw-floor: -0.5 is out of range; give 0.0 or more"),
    (["--busbw-floor", "nan"], "argument --busbw-floor: 'nan' is not a finite number; give 0.0 or more"),
    (["--busbw-floor", "inf"], "argument --busbw-floor: 'inf' is not a finite number; give 0.0 or more"),
    (["--straggler-margin", "1"],
     "argument --straggler-margin: 1 is out of range; give at least 0.0 and less than 1.0"),
    (["--straggler-margin", "-0.1"],
     "argument --straggler-margin: -0.1 is out of range; give at least 0.0 and less than 1.0"),
    (["--straggler-margin", "NaN"],
     "argument --straggler-margin: 'NaN' is not a finite number; give at least 0.0 and less than 1.0"),
    (["--devices", "0"], "argument --devices: 0 is out of range; give 1 or more"),
    (["--nproc", "0"], "argument --nproc: 0 is out of range; give 1 or more"),
    (["--fleet-port", "0"], "argument --fleet-port: 0 is out of range; give 1 to 65535"),
    (["--fleet-port", "65536"], "argument --fleet-port: 65536 is out of range; give 1 to 65535"),
    (["--out", ""], "argument --out: an empty path; give a folder, e.g. out/validation"),
    (["--only", "not npu_health"],
     f"argument --only: no check is named 'not npu_health'; the checks are: {CHECK_NAMES}"),
    (["--only", "trai"], "argument --only: no check is named 'trai'; the checks are: allreduce_across_nodes, "),
])
def test_a_value_out_of_range_is_refused_with_the_options_name(in_tmp, capsys, args, message):
    with pytest.raises(SystemExit) as e:
        cli.main(["validate", "--target", "local", "--row", "2.13.0", *args])
    assert e.value.code == 2
    assert message in capsys.readouterr().err
    assert list(in_tmp.iterdir()) == []


def test_the_edges_of_each_range_are_accepted_and_reach_the_suite(monkeypatch):
    seen = {}
    monkeypatch.setattr(run, "validate", lambda *a, **k: seen.update(k, args=a) or 0)
    assert cli.main(["validate", "--target", "local", "--timeout", "86400", "--max-bytes", "1", "--busbw-floor", "0",
                     "--straggler-margin", "0", "--devices", "1", "--nproc", "1", "--fleet-port", "65535",
                     "--only", "train", "--only", "allreduce_local"]) == 0
    assert seen["suite_options"] == ["--npuenv-devices=1", "--npuenv-nproc=1", "--npuenv-timeout=86400",
                                     "--npuenv-max-bytes=1", "--npuenv-busbw-floor=0.0"]
    assert (seen["straggler_margin"], seen["fleet_port"], seen["only"]) == (0.0, 65535, ["train", "allreduce_local"])
    assert cli.main(["validate", "--target", "local", "--timeout", "1", "--straggler-margin", "0.999",
                     "--fleet-port", "1"]) == 0
    assert (seen["suite_options"][0], seen["straggler_margin"], seen["fleet_port"]) == ("--npuenv-timeout=1", 0.999, 1)


def test_the_defaults_are_written_once_and_shown_in_help(monkeypatch, capsys):
    seen = {}
    monkeypatch.setattr(run, "validate", lambda *a, **k: seen.update(k, args=a) or 0)
    cli.main(["validate", "--target", "local"])
    assert seen["suite_options"] == ["--npuenv-timeout=60", "--npuenv-max-bytes=1073741824",
                                     "--npuenv-busbw-floor=0.0"]
    assert (seen["straggler_margin"], seen["fleet_port"], seen["args"][3]) == \
        (report.STRAGGLER_MARGIN, runner.FLEET_PORT, Path("out/validation"))
    with pytest.raises(SystemExit):
        cli.main(["validate", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for shown in ("seconds after which a collective counts as hung (default: 60)", "(default: 1073741824)",
                  "at the largest size (default: 0.0)", f"default: {report.STRAGGLER_MARGIN})",
                  f"(default: {runner.FLEET_PORT})", "(default: out/validation; env: NPUENV_VALIDATE_OUT)",
                  "each level's checks) (default: quick; env: NPUENV_VALIDATE_LEVEL)", "with gloo; default: auto)"):
        assert shown in text, shown


@pytest.mark.parametrize("option, message", [
    ("--npuenv-timeout=0", "argument --npuenv-timeout: 0 is out of range; give 1 to 86400"),
    ("--npuenv-fleet-port=70000", "argument --npuenv-fleet-port: 70000 is out of range; give 1 to 65535"),
])
def test_the_suite_on_the_node_refuses_the_same_values(option, message):
    p = subprocess.run([sys.executable, "-m", "pytest", str(runner.SUITE), "--collect-only", "-q", "-p",
                        "no:cacheprovider", "--rootdir", str(runner.SUITE), "-c", os.devnull, option],
                       capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert p.returncode == 4 and message in p.stderr, p.stdout + p.stderr


@pytest.mark.parametrize("content, found", [
    ({"torch_npu": "2.13.0"}, "None"), ({"npuenv_expected_stack": 2, "torch_npu": "2.13.0"}, "2"), (["2.13.0"], "'list'")])
def test_the_suite_refuses_a_stack_file_of_another_format(tmp_path, content, found):
    """A stack written by hand or by another npuenv is refused before any check compares a host with it."""
    path = tmp_path / "stack.json"
    path.write_text(json.dumps(content))
    p = subprocess.run([sys.executable, "-m", "pytest", str(runner.SUITE / "test_quick.py"), "-q", "-p",
                        "no:cacheprovider", "--rootdir", str(runner.SUITE), "-c", os.devnull, "--hosts=local://",
                        f"--npuenv-stack={path}", "-k", "driver_version"],
                       capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert p.returncode == 4, p.stdout + p.stderr
    assert (f"--npuenv-stack {path}: not a stack of format 1 (npuenv_expected_stack is {found}); write it with "
            f"`npuenv matrix resolve --format json`") in " ".join((p.stdout + p.stderr).split())


@pytest.mark.parametrize("kwargs, message", [
    ({"straggler_margin": math.nan}, "--straggler-margin: 'nan' is not a finite number"),
    ({"straggler_margin": 1.0}, "--straggler-margin: 1 is out of range; give at least 0.0 and less than 1.0"),
    ({"fleet_port": 0}, "--fleet-port: 0 is out of range; give 1 to 65535"),
    ({"only": ["npu"]}, "--only: no check is named 'npu'; the checks are: "),
    ({"only": ["nnal", "train"]}, "--only train (a standard check): --level quick does not run it; "
                                  "pass --level standard"),
    ({"only": ["ddp", "train"]}, "--only ddp (a full check), train (a standard check): --level quick does not "
                                 "run them; pass --level full"),
    ({"targets": ["image:localhost/x:1"], "host_root": "/no/such/root"}, "--host-root /no/such/root: no such folder"),
])
def test_the_library_checks_what_it_is_given_before_anything_runs(tmp_path, monkeypatch, kwargs, message):
    monkeypatch.setattr(run, "plan", lambda *a, **k: pytest.fail("planned a run for bad options"))
    with pytest.raises(UserError) as e:
        run.validate(kwargs.pop("targets", ["local"]), "quick", cm.Constraints(torch_npu="2.13.0"), tmp_path / "out",
                     **kwargs)
    assert message in str(e.value)
    assert list(tmp_path.iterdir()) == []


def test_a_check_the_level_does_not_run_is_exit_2_on_the_cli(in_tmp, capsys):
    assert cli.main(["validate", "--target", "local", "--row", "2.13.0", "--only", "train"]) == 2
    assert capsys.readouterr().err == ("npuenv: --only train (a standard check): --level quick does not run it; "
                                       "pass --level standard\n")
    assert list(in_tmp.iterdir()) == []


# --- the check names ------------------------------------------------------------------

COLLECTED = """
def pytest_collection_finish(session):
    for item in session.items:
        marks = sorted(m.name for m in item.iter_markers())
        print("ITEM", item.originalname, ",".join(marks))
"""


def test_the_check_names_and_levels_are_those_pytest_collects(tmp_path):
    """The names come from the suite's source (ast): the same set pytest collects, each check's
    lowest level and fleet mark as pytest sees them; merge.py's fleet checks are those."""
    (tmp_path / "list_items.py").write_text(textwrap.dedent(COLLECTED))
    p = subprocess.run([sys.executable, "-m", "pytest", str(runner.SUITE), "--collect-only", "-q", "-p",
                        "no:cacheprovider", "-p", "list_items", "--rootdir", str(runner.SUITE), "-c", os.devnull],
                       capture_output=True, text=True, cwd=ROOT, timeout=300,
                       env={**os.environ, "PYTHONPATH": f"{tmp_path}:{ROOT}"})
    items = {line.split()[1]: line.split()[2].split(",") for line in p.stdout.splitlines() if line.startswith("ITEM")}
    assert len(items) == len(runner.suite_checks()) >= 30, p.stdout[-2000:] + p.stderr[-2000:]
    for function, marks in items.items():
        check = runner.suite_checks()[function.removeprefix("test_")]
        assert check.level == next(level for level in runner.LEVELS if level in marks), function
        assert check.fleet == ("fleet" in marks), function
    assert set(merge.FLEET_CHECKS) == {c.name for c in runner.suite_checks().values() if c.fleet}


def test_a_checks_own_mark_wins_and_a_check_without_a_level_or_defined_twice_is_a_mistake(tmp_path, monkeypatch):
    (tmp_path / "test_a.py").write_text("import pytest\npytestmark = [pytest.mark.quick]\ndef test_x(): pass\n"
                                        "@pytest.mark.fleet\n@pytest.mark.full\ndef test_w(): pass\n")
    (tmp_path / "helpers.py").write_text("import pytest\n@pytest.mark.full\ndef test_v(): pass\n")
    (tmp_path / "test_b.py").write_text("import pytest\n@pytest.mark.full\ndef test_y(): pass\ndef test_z(): pass\n")
    monkeypatch.setattr(runner, "SUITE", tmp_path)
    runner.suite_checks.cache_clear()
    try:
        (tmp_path / "test_b.py").rename(tmp_path / "b.py")
        assert runner.suite_checks() == {"x": runner.Check("x", "quick", False), "w": runner.Check("w", "full", True)}
        (tmp_path / "b.py").rename(tmp_path / "test_b.py")
        runner.suite_checks.cache_clear()
        with pytest.raises(ValueError) as e:
            runner.suite_checks()
        assert str(e.value) == "test_b.py: test_z has no level mark (pytest.mark.quick, standard or full)"
        (tmp_path / "test_b.py").write_text("import pytest\n@pytest.mark.full\ndef test_x(): pass\n")
        runner.suite_checks.cache_clear()
        with pytest.raises(ValueError) as e:
            runner.suite_checks()
        assert str(e.value) == "test_b.py: test_x is defined twice in the suite"
    finally:
        runner.suite_checks.cache_clear()


def test_the_node_selects_checks_by_their_exact_names():
    """Not pytest's -k: "train" keeps test_train only, never a check whose name holds it."""
    items = [SimpleNamespace(name=f"{n}[local]", originalname=n)
             for n in ("test_train", "test_train_more", "test_retrain", "test_nnal", "test_train")]
    deselected = []
    config = SimpleNamespace(getoption=lambda name: ["train", "nnal"] if name == "--npuenv-only" else None,
                             hook=SimpleNamespace(pytest_deselected=lambda items: deselected.extend(items)))
    kept = list(items)
    results.pytest_collection_modifyitems(config, kept)
    assert [i.originalname for i in kept] == ["test_train", "test_nnal", "test_train"]
    assert [i.originalname for i in deselected] == ["test_train_more", "test_retrain"]
    assert runner.suite_command("quick", "local://", Path("s"), Path("r"), only=["train", "nnal"])[-2:] == [
        "--npuenv-only=train", "--npuenv-only=nnal"]
    assert "-k" not in runner.suite_command("quick", "local://", Path("s"), Path("r"), only=["train"])


def test_the_suite_collects_exactly_the_named_checks(tmp_path):
    command = runner.suite_command("full", "local://", tmp_path / "stack.json", tmp_path / "r.json",
                                 only=["allreduce_local", "train"], options=["--collect-only"])
    p = subprocess.run([sys.executable, "-m", "pytest", *command], capture_output=True, text=True, cwd=ROOT,
                       timeout=300)
    collected = sorted(line for line in p.stdout.splitlines() if "::" in line)
    assert collected == ["test_standard.py::test_allreduce_local[local]", "test_standard.py::test_train[local]"], \
        p.stdout[-2000:]


@pytest.mark.parametrize("argv, message", [
    (["--only", "not nnal"], f"argument --only: no check is named 'not nnal'; the checks are: {CHECK_NAMES}"),
    (["--level", "quick", "--only", "train"],
     "--only train (a standard check): --level quick does not run it; pass --level standard"),
])
def test_the_artefact_refuses_the_same_names(capsys, argv, message):
    with pytest.raises(SystemExit) as e:
        runner.main(argv)
    assert e.value.code == 2 and message in capsys.readouterr().err

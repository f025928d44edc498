"""CLI conventions (#23): --version, defaults in every --help, NPUENV_* variables for the options set on
every call (one table, documented in the README)."""
from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import re
import subprocess
import sys

import pytest
import yaml

import compat_matrix as cm
from compat_matrix import lock
from compat_matrix.cli_options import ENV_OPTIONS
from npuenv.cli import build_parser, main
from tests.conftest import ROOT

ENV_VARS = [e.var for e in ENV_OPTIONS.values()]


def npuenv(*args, env=None):
    """`npuenv ARGS` with these variables (tests/conftest.py clears the NPUENV_* option variables)."""
    return subprocess.run([sys.executable, "-m", "npuenv", *args], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, **(env or {})})


def a_matrix(tmp_path, generated=None, rows=("2.9.0",)):
    data = {"rows": [cm.load_matrix().find(r).to_dict() for r in rows]}
    text = (f"generated: {generated}\n" if generated else "") + yaml.safe_dump(data, sort_keys=False)
    path = tmp_path / "matrix.yaml"
    path.write_text(text)
    return path


# --- --version ---------------------------------------------------------------------------------

def test_version_names_the_package_the_matrix_date_and_the_lock_format():
    run = npuenv("--version")
    assert run.returncode == 0 and run.stderr == "", run.stderr
    assert run.stdout.splitlines() == [
        f"npuenv {importlib.metadata.version('npuenv')}",
        f"compatibility matrix: {cm.load_matrix().generated} ({cm.DEFAULT_MATRIX})",
        f"lock format: {lock.FORMAT}"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\d", cm.load_matrix().generated)


def test_version_reads_the_date_of_the_matrix_in_use(tmp_path):
    dated = a_matrix(tmp_path, generated="2030-04-05")
    run = npuenv("--matrix", str(dated), "--version")
    assert run.returncode == 0 and f"compatibility matrix: 2030-04-05 ({dated})" in run.stdout, run
    run = npuenv("--version", env={"NPUENV_MATRIX": str(dated)})
    assert f"compatibility matrix: 2030-04-05 ({dated})" in run.stdout, run
    undated = a_matrix(tmp_path / "..", generated=None)
    run = npuenv("--matrix", str(undated), "--version")
    assert run.returncode == 0 and "compatibility matrix: undated (the file has no 'generated:')" in run.stdout


def test_version_of_a_broken_matrix_is_a_usage_error(tmp_path):
    bad = a_matrix(tmp_path, generated="soon")
    run = npuenv("--matrix", str(bad), "--version")
    assert run.returncode == 2 and f"{bad}:1: generated: must be a date" in run.stderr
    assert "Traceback" not in run.stderr


# --- defaults in --help -------------------------------------------------------------------------

def every_parser(parser=None, name="npuenv"):
    parser = parser or build_parser()
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub_name, sub in action.choices.items():
                yield from every_parser(sub, f"{name} {sub_name}")


def test_every_help_shows_each_default_and_never_a_missing_one():
    parsers = list(every_parser())
    assert len(parsers) > 25
    for name, parser in parsers:
        text = parser.format_help()
        assert "default: None" not in text and "default: False" not in text, name
        for action in parser._actions:
            if not action.option_strings or action.default in (None, False, "", [], argparse.SUPPRESS):
                continue
            shown = parser._get_formatter()._format_action(action)
            assert "default" in shown.lower(), (name, action.option_strings, shown)


def test_help_shows_the_defaults_of_options_without_a_help_text():
    text = npuenv("matrix", "list", "--help").stdout
    assert re.search(r"--format \{text,json\}\s+default: text", text), text
    text = npuenv("validate", "--help").stdout
    assert "(default: quick; env: NPUENV_VALIDATE_LEVEL)" in " ".join(text.split())


# --- NPUENV_* variables --------------------------------------------------------------------------

def parsed(argv, monkeypatch, **env):
    from compat_matrix.cli_options import apply_env_defaults
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return apply_env_defaults(build_parser().parse_args(argv))


def test_each_variable_is_its_options_default_and_the_command_line_wins(monkeypatch, tmp_path):
    env = {"NPUENV_VALIDATE_LEVEL": "standard", "NPUENV_VALIDATE_OUT": str(tmp_path / "reports"),
           "NPUENV_LOCK": "site.lock.json", "NPUENV_MATRIX": "m.yaml"}
    args = parsed(["validate", "--target", "local"], monkeypatch, **env)
    assert (args.level, str(args.out), args.lock, args.matrix) == ("standard", str(tmp_path / "reports"),
                                                                   "site.lock.json", "m.yaml")
    args = parsed(["--matrix", "x.yaml", "validate", "--target", "local", "--level", "full", "--out", "o",
                   "--lock", "b.json"], monkeypatch, **env)
    assert (args.level, str(args.out), args.lock, args.matrix) == ("full", "o", "b.json", "x.yaml")
    for command in ("deploy", "status"):
        assert parsed([command], monkeypatch, NPUENV_INVENTORY="hosts.yml").inventory == "hosts.yml"
        assert parsed([command, "-i", "other.yml"], monkeypatch, NPUENV_INVENTORY="hosts.yml").inventory == \
            "other.yml"
    assert parsed(["image", "render"], monkeypatch, NPUENV_LOCK="site.lock.json").lock == "site.lock.json"


def test_a_bad_value_is_refused_as_on_the_command_line(monkeypatch, capsys):
    from validation import run
    monkeypatch.setattr(run, "validate", lambda *a, **k: pytest.fail("validate ran with a bad level"))
    monkeypatch.setenv("NPUENV_VALIDATE_LEVEL", "thorough")
    with pytest.raises(SystemExit) as e:
        main(["validate", "--target", "local"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "npuenv validate: error: argument --level (from $NPUENV_VALIDATE_LEVEL=thorough): invalid choice: " \
           "'thorough' (choose from 'quick', 'standard', 'full'); fix or unset NPUENV_VALIDATE_LEVEL" in err
    assert "Traceback" not in err
    monkeypatch.delenv("NPUENV_VALIDATE_LEVEL")
    run = npuenv("validate", "--target", "local", env={"NPUENV_VALIDATE_OUT": "   "})
    assert run.returncode == 2 and "argument --out (from $NPUENV_VALIDATE_OUT=   ):" in run.stderr, run.stderr
    assert "Traceback" not in run.stderr
    # A command that does not take the option is not stopped by its variable.
    run = npuenv("matrix", "show", "2.9.0", env={"NPUENV_VALIDATE_LEVEL": "thorough"})
    assert run.returncode == 0 and json.loads(run.stdout)["torch_npu"] == "2.9.0"


def test_the_matrix_variable_chooses_the_matrix(tmp_path):
    small = a_matrix(tmp_path, rows=("2.9.0", "2.1.0.post8"))
    run = npuenv("matrix", "list", "--format", "json", env={"NPUENV_MATRIX": str(small)})
    assert [r["torch_npu"] for r in json.loads(run.stdout)["rows"]] == ["2.9.0", "2.1.0.post8"]
    run = npuenv("--matrix", str(cm.DEFAULT_MATRIX), "matrix", "list", "--format", "json",
                 env={"NPUENV_MATRIX": str(small)})
    assert len(json.loads(run.stdout)["rows"]) == len(cm.load_matrix().rows)


def test_row_constraints_on_the_command_line_replace_the_lock_of_the_environment(monkeypatch, tmp_path):
    from compat_matrix.cli_options import lock_from
    missing = str(tmp_path / "no.lock.json")
    args = parsed(["validate", "--target", "local", "--row", "2.9.0"], monkeypatch, NPUENV_LOCK=missing)
    assert lock_from(args, picks_entry=False) is None
    args = parsed(["validate", "--target", "local", "--row", "2.9.0", "--lock", missing], monkeypatch)
    with pytest.raises(cm.UserError, match="give one or the other"):
        lock_from(args, picks_entry=False)
    args = parsed(["validate", "--target", "local"], monkeypatch, NPUENV_LOCK=missing)
    with pytest.raises(cm.UserError, match=re.escape(missing)):
        lock_from(args, picks_entry=False)


def test_help_names_each_variable_beside_its_option():
    helps = {name: " ".join(p.format_help().split()) for name, p in every_parser()}
    for key, env in ENV_OPTIONS.items():
        mentioned = [name for name, text in helps.items() if f"env: {env.var})" in text]
        assert mentioned, env.var
        for name in mentioned:
            assert env.option in helps[name], (name, env.var)
    assert "env: NPUENV_INVENTORY" in helps["npuenv deploy"] and "env: NPUENV_INVENTORY" in helps["npuenv status"]
    assert "env: NPUENV_LOCK" in helps["npuenv bundle make"] and "env: NPUENV_MATRIX" in helps["npuenv"]


def test_the_readme_table_is_the_mapping():
    text = (ROOT / "README.md").read_text()
    block = re.search(r"<!-- env-table:begin[^\n]*-->\n(.*?)<!-- env-table:end -->", text, re.S).group(1)
    want = ["| variable | option | commands |", "|---|---|---|"]
    want += [f"| `{e.var}` | `{e.option}` | {e.commands} |" for e in ENV_OPTIONS.values()]
    assert block.splitlines() == want


def test_no_variable_is_one_that_the_shell_export_of_a_stack_sets():
    """`eval "$(npuenv matrix resolve --format shell)"` must not change what later commands do."""
    stack = cm.resolve(cm.load_matrix(), cm.Constraints(torch_npu="2.9.0")).stack
    exported = set(re.findall(r"^export (NPUENV_\w+)=", stack.export("shell"), re.M))
    assert "NPUENV_TORCH_NPU" in exported and not exported & set(ENV_VARS)
    assert len(set(ENV_VARS)) == len(ENV_VARS) and all(v.startswith("NPUENV_") for v in ENV_VARS)


@pytest.mark.parametrize("command, key", [
    (["matrix", "list", "--format", "json"], "npuenv_matrix_rows"),
    (["matrix", "show", "2.13.0"], "npuenv_matrix_row"),
    (["matrix", "resolve", "--row", "2.13.0", "--python", "3.11", "--arch", "x86_64", "--format", "json"],
     "npuenv_expected_stack"),
    (["facts", "--format", "json", "--root", "{tmp}"], "npuenv_host_facts"),
], ids=lambda part: part[1] if isinstance(part, list) else None)
def test_every_json_the_cli_prints_names_its_kind_and_format(tmp_path, command, key):
    """A reader (a script, the suite's --npuenv-stack) can tell each document from the others and refuse
    a format it does not know."""
    run = npuenv(*[part.replace("{tmp}", str(tmp_path)) for part in command])
    assert run.returncode == 0, run.stderr
    document = json.loads(run.stdout)
    assert document[key] == 1
    assert not {k for k in document if k.startswith("npuenv_") and k != key}

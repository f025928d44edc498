"""How the artefact runs the suite on a node (validation/node/runner.py): what the checks start sees the
node's Python, not the artefact's own packages; the libraries are imported from the archive and
the bytecode shipped for this Python is what runs."""
from __future__ import annotations

import json
import marshal
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from validation import artefact

from validation.node import layout, runner


def test_python_in_the_checks_imports_the_nodes_packages_not_the_artefacts(tmp_path):
    """The artefact carries packages (validation, pytest, yaml: one of CANN's Python dependencies);
    python3 in a check must not import them, neither through PYTHONPATH nor from its working
    directory: a node that lacks one fails cann_python_deps."""
    pyz = artefact.build(tmp_path / "v.pyz", {"npuenv_expected_stack": 1, "cann_python_modules": ["json", "validation"]})
    # A login shell's /etc/profile puts the system's python3 first: it has no `validation` of its own.
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    p = subprocess.run([sys.executable, str(pyz), "--level", "quick", "--only", "cann_python_deps"],
                       capture_output=True, text=True, env=env, timeout=300)
    [result] = json.loads(p.stdout.strip().splitlines()[-1])["results"]
    assert (result["status"], result["failure"]["found"]) == (
        "failed", "validation: ModuleNotFoundError: No module named 'validation'"), p.stderr[-3000:]
    assert p.returncode == 1


def test_unpacking_keeps_the_libraries_in_the_archive_and_puts_this_pythons_bytecode_in_pycache(tmp_path):
    """Ours is unpacked, with the bytecode compiled for this Python where the import system reads it
    (here compiled from other code than the source beside it, to show it is what runs); bytecode of
    another Python is left out; the libraries are imported from the archive's copy."""
    other_python = b"\0\0\r\n" + bytes(12) + marshal.dumps(compile("X = 3\n", "x.py", "exec"))
    members = {"__main__.py": b"", "npuenv-stack.json": b"{}", "ownpkg/__init__.py": b"",
               "ownpkg/x.py": b"X = 1\n", "ownpkg/x.pyc": artefact.bytecode(Path("x.py"), b"X = 2\n", "x.py"),
               "ownpkg/y.py": b"Y = 1\n", "ownpkg/y.pyc": other_python,
               "ownpkg/show.py": b"import ownpkg.x, ownpkg.y, yaml, py\n"
                                 b"print(ownpkg.x.X, ownpkg.y.Y, yaml.WHERE, py.WHERE)\n",
               "yaml/__init__.py": b"WHERE = 'archive'\n", "py.py": b"WHERE = 'archive'\n"}
    archive = tmp_path / "v.pyz"
    with zipfile.ZipFile(archive, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    root = tmp_path / "root"
    root.mkdir()
    runner.unpack(str(archive), root)
    tag = sys.implementation.cache_tag
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()) == [
        "__main__.py", "npuenv-stack.json", layout.LIBRARY_ARCHIVE, "ownpkg/__init__.py",
        f"ownpkg/__pycache__/x.{tag}.pyc", "ownpkg/show.py", "ownpkg/x.py", "ownpkg/y.py"]
    p = subprocess.run(runner.python_running("ownpkg.show", root), capture_output=True, text=True, cwd=tmp_path,
                       env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    assert p.stdout == "2 1 archive archive\n", p.stderr


RECORD = {"host": "local://", "check": "driver", "level": "quick", "status": "passed", "duration_s": 0.1,
          "message": "", "data": None}


@pytest.mark.parametrize("version, code, results, error", [
    (1, runner.EXIT_PASSED, [RECORD], None),
    (2, runner.EXIT_ERROR, [], "results.json is not of the suite results' format 1 (npuenv_suite_results is 2): "
                             "the artefact is broken; rebuild it"),
])
def test_the_node_reads_the_suites_results_of_its_own_format_only(tmp_path, monkeypatch, capsys, version, code,
                                                                    results, error):
    def run_suite(command, env, cwd=None):   # the suite's plugin writes its file; pytest says all passed
        [path] = [a.split("=", 1)[1] for a in command if a.startswith("--npuenv-results=")]
        Path(path).write_text(json.dumps({"npuenv_suite_results": version, "results": [RECORD]}))
        return subprocess.CompletedProcess(command, 0, "1 passed\n")
    monkeypatch.setattr(runner, "run_suite", run_suite)
    monkeypatch.setattr(runner, "addresses", lambda: [])
    assert runner.main(["--stack", str(tmp_path / "stack.json")]) == code
    doc = json.loads(capsys.readouterr().out)
    assert (doc["results"], doc.get("error"), doc["pytest_exit"]) == (results, error, 0)

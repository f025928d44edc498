"""No product function is longer than MAX_LINES (issue 24): a longer one is a list of steps that
want names of their own. Counted from the `def` line to the last line, decorators apart, in every
Python file of the wheel's packages (the Ansible plugins and modules included)."""
from __future__ import annotations

import ast
import tomllib
from pathlib import Path

from tests.conftest import ROOT

MAX_LINES = 60
PACKAGES = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["hatch"]["build"]["targets"]["wheel"][
    "packages"]


def long_functions(root: Path, packages: list[str], limit: int = MAX_LINES) -> list[str]:
    found = []
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    length = node.end_lineno - node.lineno + 1
                    if length > limit:
                        found.append(f"{path.relative_to(root)}:{node.lineno} {node.name} ({length} lines)")
    return found


def test_no_product_function_is_longer_than_the_limit():
    assert long_functions(ROOT, PACKAGES) == []


def test_a_long_function_is_named_with_its_file_line_and_length(tmp_path):
    (tmp_path / "pkg").mkdir()
    lines = [f"x{i} = {i}" for i in range(MAX_LINES - 1)]
    at_limit = "def short():\n" + "".join(f"    {line}\n" for line in lines)              # MAX_LINES lines
    over = "class C:\n    def long(self):\n" + "".join(f"        {line}\n" for line in lines + ["y = 0"])
    (tmp_path / "pkg" / "m.py").write_text(at_limit + over)
    assert long_functions(tmp_path, ["pkg"]) == [f"pkg/m.py:{MAX_LINES + 2} long ({MAX_LINES + 1} lines)"]

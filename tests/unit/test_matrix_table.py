"""The README's support table is generated from the matrix and must be current."""
import subprocess
import sys

import compat_matrix as cm
from compat_matrix import render
from tests.conftest import ROOT

M = cm.load_matrix()


def test_readme_support_table_is_current():
    run = subprocess.run([sys.executable, "-m", "npuenv", "matrix", "table", "--check", str(ROOT / "README.md")],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr


def test_table_has_one_line_per_row_in_rank_order():
    table = render.markdown_table(M)
    body = [line for line in table.splitlines() if line.startswith("| ") and not line.startswith("| torch_npu")]
    assert len(body) == len(M.rows)
    first = body[0].split(" | ")[0].lstrip("| ").rstrip(" *")
    assert first == cm.resolve(M, cm.Constraints()).stack.row.torch_npu


def test_check_detects_a_stale_table(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{render.BEGIN}\n| old |\n{render.END}\nrest\n")
    cli = [sys.executable, "-m", "npuenv", "matrix", "table"]
    stale = subprocess.run(cli + ["--check", str(readme)], capture_output=True, text=True)
    assert stale.returncode == 1 and "out of date" in stale.stderr
    subprocess.run(cli + ["--update", str(readme)], check=True, capture_output=True)
    text = readme.read_text()
    assert text.startswith("intro\n") and text.endswith("rest\n") and "| old |" not in text
    assert subprocess.run(cli + ["--check", str(readme)], capture_output=True).returncode == 0


def test_document_without_markers_is_a_usage_error(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("no markers\n")
    run = subprocess.run([sys.executable, "-m", "npuenv", "matrix", "table", "--update", str(readme)],
                         capture_output=True, text=True)
    assert run.returncode == 2 and "no generated support table block" in run.stderr

"""`verify` against PyPI: recorded answers for every row, one live check."""
import copy
import dataclasses
import json
import shutil
import subprocess
import sys

import pytest

import compat_matrix as cm
from compat_matrix import pypi
from compat_matrix.model import Matrix
from tests.conftest import ROOT, reachable

RECORDED = ROOT / "tests" / "fixtures" / "pypi"
M = cm.load_matrix()


def with_row(row_id, **changes):
    """A copy of the matrix where one row's wheel facts are changed."""
    rows = []
    for r in M.rows:
        if r.torch_npu == row_id:
            wheel = copy.deepcopy(r.wheel)
            wheel.update(changes)
            r = dataclasses.replace(r, wheel=wheel)
        rows.append(r)
    return Matrix(rows=rows, platforms=M.platforms, excluded=M.excluded)


def test_recorded_pypi_agrees_with_the_matrix():
    assert pypi.verify(M, pypi.RecordedPyPI(RECORDED)) == []


def test_python_tag_platform_and_torch_pin_disagreements_are_reported():
    changed = with_row("2.4.0.post2", python_tags=["cp39", "cp310", "cp311"],
                       platforms=["manylinux_2_17_aarch64"],
                       torch_requirement={"x86_64": "torch==2.4.0", "aarch64": "torch==2.4.0"})
    found = {(d.torch_npu, d.field): d for d in pypi.verify(changed, pypi.RecordedPyPI(RECORDED))}
    assert set(found) == {("2.4.0.post2", "wheel.python_tags"), ("2.4.0.post2", "wheel.platforms"),
                          ("2.4.0.post2", "wheel.torch_requirement.x86_64")}
    assert found[("2.4.0.post2", "wheel.python_tags")].pypi == "cp310, cp311, cp38, cp39"
    assert found[("2.4.0.post2", "wheel.torch_requirement.x86_64")].pypi == "torch==2.4.0+cpu"


def test_a_release_without_a_row_is_reported_and_excluded_ones_are_not(tmp_path):
    shutil.copytree(RECORDED, tmp_path / "rec")
    project = json.loads((tmp_path / "rec" / "_project.json").read_text())
    project["releases"].append("2.15.0")
    (tmp_path / "rec" / "_project.json").write_text(json.dumps(project))
    found = pypi.verify(M, pypi.RecordedPyPI(tmp_path / "rec"))
    assert [str(d) for d in found] == [
        "torch_npu 2.15.0: row: matrix says none, PyPI has a published final release; add a row for it"]
    assert "2.9.1" in project["releases"]  # published but listed under excluded: not reported


def test_row_missing_from_pypi_is_reported():
    row = M.find("2.4.0.post2")
    assert [d.field for d in pypi.check_row(row, None)] == ["wheel.index"]


def test_cli_verify_recorded_exit_codes():
    ok = subprocess.run([sys.executable, "-m", "npuenv", "matrix", "verify", "--recorded", str(RECORDED)],
                        capture_output=True, text=True)
    assert ok.returncode == 0 and "0 disagreement(s)" in ok.stdout



@pytest.mark.network
def test_live_pypi_release_matches_its_row():
    if not reachable("pypi.org"):
        pytest.skip("pypi.org:443 cannot be reached from this machine (no network)")
    live = pypi.LivePyPI()
    record = live.release("2.13.0")
    assert pypi.check_row(M.find("2.13.0"), record) == []
    assert any(f["requires_dist"] for f in record["files"]), "wheel METADATA was not read"

"""The loader rejects bad matrix data with FILE:LINE messages naming field, fault and fix."""
import copy
import subprocess
import sys

import pytest
import yaml

import compat_matrix as cm

BUNDLED = cm.load_matrix()


def good_row(torch_npu="2.4.0.post2"):
    return copy.deepcopy(BUNDLED.find(torch_npu).to_dict())


def lint_text(text, tmp_path):
    path = tmp_path / "matrix.yaml"
    path.write_text(text)
    with pytest.raises(cm.MatrixError) as info:
        cm.load_matrix(path)
    return [str(p) for p in info.value.problems], str(path)


def dump(rows):
    return yaml.safe_dump({"rows": rows}, sort_keys=False)


def line_of(text, needle, occurrence=1):
    """1-based line of the n-th line containing needle."""
    hits = [i + 1 for i, line in enumerate(text.splitlines()) if needle in line]
    return hits[occurrence - 1]


def only(problems):
    assert len(problems) == 1, problems
    return problems[0]


def test_bundled_matrix_is_valid_and_covers_the_table():
    assert len(BUNDLED.rows) >= 40
    cann = {r.cann for r in BUNDLED.rows}
    assert {"7.0.RC1", "7.0.0", "8.0.0", "8.5.0", "9.1.0"} <= cann
    # both packaging generations are present and agree with the CANN version
    assert {r.packaging for r in BUNDLED.rows} == {"ascend-toolkit", "cann"}


def test_missing_field(tmp_path):
    row = good_row()
    del row["cann"]
    text = dump([row])
    msg = only(lint_text(text, tmp_path)[0])
    assert f":{line_of(text, 'torch_npu:')}: row torch_npu 2.4.0.post2: cann: missing required field 'cann'" in msg
    assert "add it" in msg


def test_unknown_field_is_named_with_the_known_ones(tmp_path):
    row = good_row()
    row["torchvison"] = "0.19.0"
    text = dump([row])
    msg = only(lint_text(text, tmp_path)[0])
    assert f":{line_of(text, 'torchvison')}:" in msg
    assert "unknown field 'torchvison'" in msg and "torchvision" in msg.split("fields are:")[1]


@pytest.mark.parametrize("field,value,expected", [
    ("torch", "2.4.x", "torch: '2.4.x' is not a PEP 440 version"),
    ("torch_npu", "two.four", "torch_npu: 'two.four' is not a PEP 440 version"),
    ("cann", "8.0.rc", "cann: '8.0.rc' is not a CANN/HDK version"),
])
def test_malformed_versions(tmp_path, field, value, expected):
    row = good_row()
    row[field] = value
    text = dump([row])
    msg = only(lint_text(text, tmp_path)[0])
    assert expected in msg
    assert f":{line_of(text, f'{field}: ')}:" in msg


def test_unquoted_python_version_is_caught(tmp_path):
    text = dump([good_row()]).replace("- '3.10'", "- 3.10")
    problems, _ = lint_text(text, tmp_path)
    msg = only(problems)
    assert "python[2]: is the number 3.1, not a string; quote it" in msg
    assert f":{line_of(text, '- 3.10')}:" in msg


def test_duplicate_rows(tmp_path):
    text = dump([good_row(), good_row()])
    msg = only(lint_text(text, tmp_path)[0])
    first, second = line_of(text, "torch_npu:", 1), line_of(text, "torch_npu:", 2)
    assert f":{second}: row torch_npu 2.4.0.post2: torch_npu: duplicate row for torch_npu 2.4.0.post2 (first at line {first})" in msg


def test_duplicate_yaml_key(tmp_path):
    text = dump([good_row()]).replace("  status: active\n", "  status: active\n  status: eol\n")
    msg = only(lint_text(text, tmp_path)[0])
    assert f":{line_of(text, 'status: eol')}: duplicate key 'status' (first at line {line_of(text, 'status: active')})" in msg


def test_torchvision_must_pair_with_torch(tmp_path):
    row = good_row()
    row["torchvision"] = "0.18.1"
    text = dump([row])
    msg = only(lint_text(text, tmp_path)[0])
    assert "torchvision: 0.18.1 does not pair with torch 2.4.0 (torch 2.4 pairs with torchvision 0.19.x)" in msg
    assert f":{line_of(text, 'torchvision:')}:" in msg


def test_python_list_must_be_covered_by_wheels(tmp_path):
    row = good_row()
    row["python"].append("3.12")
    text = dump([row])
    msg = only(lint_text(text, tmp_path)[0])
    assert "Python 3.12 is listed but the row's wheels cover only cp310, cp311, cp38, cp39" in msg
    assert f":{line_of(text, chr(39) + '3.12' + chr(39))}:" in msg


def test_row_without_sources(tmp_path):
    row = good_row()
    del row["sources"]
    msg = only(lint_text(dump([row]), tmp_path)[0])
    assert "sources: missing required field 'sources'" in msg


def test_source_missing_for_one_fact(tmp_path):
    row = good_row()
    del row["sources"]["hdk"]
    msg = only(lint_text(dump([row]), tmp_path)[0])
    assert "sources.hdk: missing required field 'hdk'" in msg


def test_source_must_be_a_url(tmp_path):
    row = good_row()
    row["sources"]["wheel"] = "PyPI"
    msg = only(lint_text(dump([row]), tmp_path)[0])
    assert "sources.wheel: 'PyPI' is not an https:// URL" in msg


def test_bad_status(tmp_path):
    row = good_row()
    row["status"] = "supported"
    msg = only(lint_text(dump([row]), tmp_path)[0])
    assert "status: is 'supported'; use one of: active, eol" in msg


def test_packaging_generation_must_match_cann(tmp_path):
    row = good_row()
    row["packaging"] = "cann"
    msg = only(lint_text(dump([row]), tmp_path)[0])
    assert "packaging: CANN 8.0.0 uses the 'ascend-toolkit' packaging generation, not 'cann'" in msg


def test_torch_npu_must_be_built_for_its_torch(tmp_path):
    row = good_row()
    row["torch"] = "2.5.1"
    row["torchvision"] = "0.20.1"
    problems, _ = lint_text(dump([row]), tmp_path)
    assert any("torch: torch_npu 2.4.0.post2 is built for torch 2.4.0, not 2.5.1" in p for p in problems)


def test_hdk_version_outside_its_range(tmp_path):
    row = good_row()
    row["hdk"]["min"] = "25.0.RC1"
    msg = only(lint_text(dump([row]), tmp_path)[0])
    assert "hdk.version: 24.1.0 lies outside its own compatible range 25.0.RC1 .. newer" in msg


def test_wheel_torch_pin_must_equal_the_row(tmp_path):
    row = good_row()
    row["wheel"]["torch_requirement"]["aarch64"] = "torch==2.3.1"
    msg = only(lint_text(dump([row]), tmp_path)[0])
    assert "wheel.torch_requirement.aarch64: 'torch==2.3.1' does not pin the row's torch 2.4.0" in msg


def test_inferred_must_name_a_field(tmp_path):
    row = good_row()
    row["inferred"] = ["hdk.minimum"]
    msg = only(lint_text(dump([row]), tmp_path)[0])
    assert "inferred: 'hdk.minimum' names no field of this row" in msg


def test_invalid_yaml_names_the_line(tmp_path):
    text = dump([good_row()]).replace("status: active", "status: [active")
    msg = only(lint_text(text, tmp_path)[0])
    assert "not valid YAML" in msg


def test_empty_matrix(tmp_path):
    msg = only(lint_text("rows: []\n", tmp_path)[0])
    assert "non-empty 'rows:' list" in msg


def test_every_problem_is_reported_at_once(tmp_path):
    a, b = good_row(), good_row("2.5.1")
    a["status"] = "gone"
    b["cann"] = "8.x"
    problems, _ = lint_text(dump([a, b]), tmp_path)
    assert len(problems) == 2


def test_cli_lint_exit_codes_and_format(tmp_path):
    bad = good_row()
    bad["status"] = "gone"
    path = tmp_path / "bad.yaml"
    text = dump([bad])
    path.write_text(text)
    run = subprocess.run([sys.executable, "-m", "npuenv", "matrix", "lint", str(path)], capture_output=True, text=True)
    assert run.returncode == 2
    assert run.stderr.strip() == (f"{path}:{line_of(text, 'status:')}: row torch_npu 2.4.0.post2: status: is 'gone'; "
                                  f"use one of: active, eol")
    assert "Traceback" not in run.stderr
    ok = subprocess.run([sys.executable, "-m", "npuenv", "matrix", "lint"], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr

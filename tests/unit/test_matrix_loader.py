"""The loader, message by message: every cross-field rule of a row, the file's
top level, the excluded list, the platforms file; and what a good file loads
into (every field of a row, its file and line)."""
from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

import compat_matrix as cm

BUNDLED = cm.load_matrix()
EXCLUDED = {"torch_npu": "2.0.0", "reason": "only a release candidate on PyPI",
            "source": "https://pypi.org/project/torch-npu/#history"}


def good_row(torch_npu="2.4.0.post2") -> dict:
    return copy.deepcopy(BUNDLED.find(torch_npu).to_dict())


def write(tmp_path: Path, data, name="matrix.yaml") -> tuple[Path, str]:
    text = data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False)
    path = tmp_path / name
    path.write_text(text)
    return path, text


def problems(tmp_path: Path, data) -> list[str]:
    path, _ = write(tmp_path, data)
    with pytest.raises(cm.MatrixError) as info:
        cm.load_matrix(path)
    return [str(p) for p in info.value.problems]


def line_of(text: str, needle: str, occurrence: int = 1) -> int:
    return [i + 1 for i, line in enumerate(text.splitlines()) if needle in line][occurrence - 1]


def one_row_problem(tmp_path, row) -> tuple[str, str, Path]:
    path, text = write(tmp_path, {"rows": [row]})
    with pytest.raises(cm.MatrixError) as info:
        cm.load_matrix(path)
    found = [str(p) for p in info.value.problems]
    assert len(found) == 1, found
    return found[0], text, path


# ------------------------------------------------------------------ a good file

def test_a_good_file_loads_every_field(tmp_path):
    rows = [good_row(), good_row("2.5.1")]
    path, text = write(tmp_path, {"rows": rows, "excluded": [EXCLUDED]})
    m = cm.load_matrix(path)
    assert m.file == str(path) and m.platforms.data == BUNDLED.platforms.data
    assert m.excluded == [EXCLUDED]
    assert [r.to_dict() for r in m.rows] == rows
    assert [(r.file, r.line) for r in m.rows] == [(str(path), line_of(text, "- torch_npu:", 1)),
                                                  (str(path), line_of(text, "- torch_npu:", 2))]
    assert cm.load_matrix(write(tmp_path, {"rows": rows}, "plain.yaml")[0]).excluded == []


def test_text_is_read_instead_of_the_file_when_given(tmp_path):
    text = yaml.safe_dump({"rows": [good_row("2.5.1")]})
    m = cm.load_matrix(tmp_path / "not-there.yaml", text=text)
    assert [r.torch_npu for r in m.rows] == ["2.5.1"] and m.file == str(tmp_path / "not-there.yaml")


def test_given_platforms_are_used(tmp_path):
    platforms = cm.load_platforms()
    m = cm.load_matrix(write(tmp_path, {"rows": [good_row()]})[0], platforms=platforms)
    assert m.platforms is platforms


# ------------------------------------------------------------------ the top level

def test_the_file_must_hold_a_non_empty_rows_list(tmp_path):
    for data in ("- a\n", "rows: 3\n", "rows: []\n", "excluded: []\n"):
        path, _ = write(tmp_path, data)
        assert problems(tmp_path, data) == [
            f"{path}:1: the matrix must be a mapping with a non-empty 'rows:' list of stacks"], data


def test_unknown_top_level_key_is_named(tmp_path):
    path, text = write(tmp_path, {"rows": [good_row()], "extra": 1})
    assert problems(tmp_path, text) == [
        f"{path}:{line_of(text, 'extra:')}: unknown top-level key 'extra'; the matrix file holds 'generated:', 'rows:' and "
        f"'excluded:'"]


def test_the_matrix_date_is_a_field_the_loader_reads(tmp_path):
    assert BUNDLED.generated and BUNDLED.generated == str(__import__("datetime").date.fromisoformat(BUNDLED.generated))
    for written in ("2027-01-31", "'2027-01-31'"):
        path, _ = write(tmp_path, f"generated: {written}\n" + yaml.safe_dump({"rows": [good_row()]}))
        assert cm.load_matrix(path).generated == "2027-01-31"
    assert cm.load_matrix(write(tmp_path, {"rows": [good_row()]})[0]).generated is None   # optional


def test_a_matrix_date_that_is_not_one_is_named(tmp_path):
    for written in ("31.01.2027", "2027-02-30", "'2027-1-5'", "[]"):
        text = yaml.safe_dump({"rows": [good_row()]}) + f"generated: {written}\n"
        path, _ = write(tmp_path, text)
        found = problems(tmp_path, text)
        at = f"{path}:{line_of(text, 'generated:')}: "
        assert len(found) == 1 and found[0].startswith(at), (written, found)
        assert "generated: must be a date written YYYY-MM-DD" in found[0] or \
            "(day is out of range for month); quote it" in found[0], (written, found)


def test_excluded_entries_are_checked(tmp_path):
    entry = {k: v for k, v in EXCLUDED.items() if k != "source"}
    path, text = write(tmp_path, {"rows": [good_row()], "excluded": [entry]})
    assert problems(tmp_path, text) == [
        f"{path}:{line_of(text, '- torch_npu: 2.0.0')}: excluded[0].source: missing required field 'source'; add it "
        f"(an https:// URL)"]


def test_a_row_without_torch_npu_is_named_by_its_position(tmp_path):
    row = good_row()
    del row["torch_npu"]
    path, text = write(tmp_path, {"rows": [good_row("2.5.1"), row]})
    assert problems(tmp_path, text) == [
        f"{path}:{line_of(text, '- torch:')}: row 2: torch_npu: missing required field 'torch_npu'; add it "
        f"(a PEP 440 version string)"]


# ------------------------------------------------------------------ rules across a row's fields

def test_torch_npu_built_for_another_torch(tmp_path):
    row = good_row()
    row.update(torch="2.5.1", torchvision="0.20.1")
    for arch in row["wheel"]["torch_requirement"]:
        row["wheel"]["torch_requirement"][arch] = "torch==2.5.1"
    msg, text, path = one_row_problem(tmp_path, row)
    assert msg == (f"{path}:{line_of(text, 'torch: 2.5.1')}: row torch_npu 2.4.0.post2: torch: torch_npu 2.4.0.post2 "
                   f"is built for torch 2.4.0, not 2.5.1; fix the torch or torch_npu version")


def test_torch_without_a_known_torchvision_pairing(tmp_path):
    row = good_row("2.1.0.post8")
    row.update(torch_npu="1.99.0", torch="1.99.0", torchvision="0.99.0")
    row["wheel"]["torch_requirement"] = {}
    msg, text, path = one_row_problem(tmp_path, row)
    assert msg == (f"{path}:{line_of(text, 'torch: 1.99.0')}: row torch_npu 1.99.0: torch: no torchvision pairing "
                   f"is known for torch 1.99; add \"1.99\" to torchvision_pairing in platforms.yaml (from the "
                   f"pytorch/vision table)")


def test_torchvision_of_another_torch(tmp_path):
    row = good_row()
    row["torchvision"] = "0.18.1"
    msg, text, path = one_row_problem(tmp_path, row)
    assert msg == (f"{path}:{line_of(text, 'torchvision:')}: row torch_npu 2.4.0.post2: torchvision: 0.18.1 does not "
                   f"pair with torch 2.4.0 (torch 2.4 pairs with torchvision 0.19.x); use torchvision 0.19.x")


def test_python_without_a_wheel(tmp_path):
    row = good_row()
    row["python"].append("3.12")
    msg, text, path = one_row_problem(tmp_path, row)
    assert msg == (f"{path}:{line_of(text, chr(39) + '3.12' + chr(39))}: row torch_npu 2.4.0.post2: python: Python "
                   f"3.12 is listed but the row's wheels cover only cp310, cp311, cp38, cp39; remove 3.12 or add its "
                   f"cp312 wheel to wheel.python_tags")


@pytest.mark.parametrize("cann", ["6.3.RC1", "8.4.0"])
def test_cann_in_no_packaging_generation(tmp_path, cann):
    row = good_row()
    row["cann"] = cann
    msg, text, path = one_row_problem(tmp_path, row)
    assert msg == (f"{path}:{line_of(text, 'cann: ')}: row torch_npu 2.4.0.post2: cann: CANN {cann} falls in no "
                   f"packaging generation of platforms.yaml; widen a generation's cann_min/cann_max or fix the version")


def test_packaging_generation_of_another_cann(tmp_path):
    row = good_row()
    row["packaging"] = "cann"
    msg, text, path = one_row_problem(tmp_path, row)
    assert msg == (f"{path}:{line_of(text, 'packaging:')}: row torch_npu 2.4.0.post2: packaging: CANN 8.0.0 uses the "
                   f"'ascend-toolkit' packaging generation, not 'cann'; write packaging: ascend-toolkit")


def test_hdk_version_outside_its_own_range(tmp_path):
    row = good_row()
    row["hdk"]["max"] = "24.0.X"
    row["hdk"]["min"] = "23.0.0"
    msg, text, path = one_row_problem(tmp_path, row)
    assert msg == (f"{path}:{line_of(text, 'version: 24.1.0')}: row torch_npu 2.4.0.post2: hdk.version: 24.1.0 lies "
                   f"outside its own compatible range 23.0.0 .. 24.0.X; fix hdk.min/max or hdk.version")


def test_wheel_for_no_known_arch(tmp_path):
    row = good_row()
    row["wheel"]["platforms"] = ["win_amd64"]
    row["wheel"]["torch_requirement"] = {}
    msg, text, path = one_row_problem(tmp_path, row)
    assert msg == (f"{path}:{line_of(text, 'platforms:')}: row torch_npu 2.4.0.post2: wheel.platforms: none of "
                   f"['win_amd64'] is for a known arch (x86_64, aarch64); use wheel platform tags such as "
                   f"manylinux_2_17_aarch64")


def test_wheel_url_must_match_its_index(tmp_path):
    row = good_row()
    row["wheel"]["url"] = "https://github.com/Ascend/pytorch/releases/tag/v6.0.0"
    msg, text, path = one_row_problem(tmp_path, row)
    assert msg == (f"{path}:{line_of(text, 'url:')}: row torch_npu 2.4.0.post2: wheel.url: a wheel with index 'pypi' "
                   f"must have a URL that starts with https://pypi.org/; got https://github.com/Ascend/pytorch/releases/tag/v6.0.0")
    row = good_row()
    row["wheel"]["index"] = "release_page"
    msg, text, path = one_row_problem(tmp_path, row)
    assert msg == (f"{path}:{line_of(text, 'url:')}: row torch_npu 2.4.0.post2: wheel.url: a wheel with index "
                   f"'release_page' must have a URL that starts with https://github.com/; got "
                   f"https://pypi.org/project/torch-npu/2.4.0.post2/")


def test_wheel_torch_requirement_must_pin_the_rows_torch(tmp_path):
    for req in ("torch>=2.4.0", "torch==2.3.1", "not a requirement"):
        row = good_row()
        row["wheel"]["torch_requirement"]["aarch64"] = req
        msg, text, path = one_row_problem(tmp_path, row)
        assert msg == (f"{path}:{line_of(text, '    aarch64: ')}: row torch_npu 2.4.0.post2: "
                       f"wheel.torch_requirement.aarch64: '{req}' does not pin the row's torch 2.4.0; write the "
                       f"Requires-Dist the aarch64 wheel publishes (e.g. torch==2.4.0)"), req
    row = good_row()
    row["wheel"]["torch_requirement"]["aarch64"] = None   # no wheel for that arch: nothing to pin
    cm.load_matrix(write(tmp_path, {"rows": [row]})[0])


def test_inferred_must_name_a_field_of_the_row(tmp_path):
    row = good_row()
    row["inferred"] = ["hdk.min", "hdk.minimum"]
    msg, text, path = one_row_problem(tmp_path, row)
    assert msg == (f"{path}:{line_of(text, '- hdk.minimum')}: row torch_npu 2.4.0.post2: inferred: 'hdk.minimum' "
                   f"names no field of this row; use a dotted field name such as hdk.min")


def test_duplicate_rows_name_the_first(tmp_path):
    path, text = write(tmp_path, {"rows": [good_row(), good_row()]})
    assert problems(tmp_path, text) == [
        f"{path}:{line_of(text, '- torch_npu:', 2)}: row torch_npu 2.4.0.post2: torch_npu: duplicate row for "
        f"torch_npu 2.4.0.post2 (first at line {line_of(text, '- torch_npu:', 1)}); merge the two rows into one"]


def test_problems_are_sorted_by_line(tmp_path):
    a, b = good_row(), good_row("2.5.1")
    b["packaging"] = "cann"
    a["torchvision"] = "0.18.1"
    path, text = write(tmp_path, {"rows": [a, b], "extra": True})
    lines = [int(p.split(":")[1]) for p in problems(tmp_path, text)]
    assert lines == sorted(lines) and len(lines) == 3


# ------------------------------------------------------------------ the platforms file

def platforms_data() -> dict:
    return yaml.safe_load(Path(cm.DEFAULT_PLATFORMS).read_text())


def test_platforms_file_loads(tmp_path):
    path, _ = write(tmp_path, platforms_data(), "platforms.yaml")
    p = cm.load_platforms(path)
    assert p.file == str(path) and p.data == platforms_data()


def test_bad_platforms_file_lists_every_problem_with_its_line(tmp_path):
    data = platforms_data()
    del data["install_root"]
    data["chips"]["910b"]["dies_per_npu"] = 3
    path, text = write(tmp_path, data, "platforms.yaml")
    with pytest.raises(cm.MatrixError) as info:
        cm.load_platforms(path)
    assert [str(p) for p in info.value.problems] == [
        f"{path}:1: install_root: missing required field 'install_root'; add it (a quoted string)",
        f"{path}:{line_of(text, 'dies_per_npu: 3')}: chips.910b.dies_per_npu: is 3; use one of: 1, 2"]
    path, _ = write(tmp_path, "archs: [\n", "broken.yaml")
    with pytest.raises(cm.MatrixError) as info:
        cm.load_platforms(path)
    assert str(info.value).startswith(f"{path}:")


def test_rows_key_on_a_later_line_is_named_there(tmp_path):
    path, text = write(tmp_path, "# a comment\nexcluded: []\nrows: []\n")
    assert problems(tmp_path, text) == [
        f"{path}:3: the matrix must be a mapping with a non-empty 'rows:' list of stacks"]


def test_a_row_that_is_not_a_mapping(tmp_path):
    path, text = write(tmp_path, {"rows": ["2.4.0.post2"]})
    found = problems(tmp_path, text)
    assert len(found) == 1 and found[0].startswith(f"{path}:{line_of(text, '- 2.4.0.post2')}: row 1: ")


def test_notes_default_to_empty(tmp_path):
    row = good_row()
    del row["notes"]
    assert cm.load_matrix(write(tmp_path, {"rows": [row]})[0]).rows[0].notes == ""


def test_release_comparison_uses_three_components(tmp_path):
    # a four-part torch_npu release is built for the torch of its first three
    row = good_row()
    row["torch_npu"] = "2.4.0.1"
    row["wheel"]["url"] = "https://pypi.org/project/torch-npu/2.4.0.1/"
    cm.load_matrix(write(tmp_path, {"rows": [row]})[0])
    row.update(torch="2.5.1", torchvision="0.20.1")
    row["wheel"]["torch_requirement"] = {}
    msg, _, _ = one_row_problem(tmp_path, row)
    assert "torch: torch_npu 2.4.0.1 is built for torch 2.4.0, not 2.5.1" in msg
    row = good_row()
    row["torch"] = "2.4.0.1"
    row["wheel"]["torch_requirement"] = {}
    cm.load_matrix(write(tmp_path, {"rows": [row]})[0])


def test_every_arch_pin_is_checked_after_an_arch_without_wheel(tmp_path):
    row = good_row()
    row["wheel"]["torch_requirement"] = {"x86_64": None, "aarch64": "torch==2.3.1"}
    msg, _, _ = one_row_problem(tmp_path, row)
    assert "wheel.torch_requirement.aarch64: 'torch==2.3.1' does not pin the row's torch 2.4.0" in msg

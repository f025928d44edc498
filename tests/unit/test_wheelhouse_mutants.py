"""`wheelhouse verify` (torch_npu_pkg/wheelhouse.py) on a wheelhouse built once
from synthetic wheels and then broken one way per test: the exact problem each
breakage is reported with, and manifests that are refused before anything is
read, each with the message that names what is wrong."""
from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest
from packaging.requirements import Requirement

import compat_matrix as cm
from compat_matrix.checksums import sha256_file
from compat_matrix.errors import UserError
from npuenv.cli import main
from tests.fixtures.wheelhouse.synth import make_stack_wheels, make_wheel
from torch_npu_pkg import wheelhouse

ROW = "2.13.0"
X86_TAG = "cp311-cp311-manylinux_2_28_x86_64"
STACK = cm.resolve(cm.load_matrix(), cm.Constraints(torch_npu="==" + ROW, python="3.11", arch="x86_64")).stack


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    root = tmp_path_factory.mktemp("mutants")
    torch_dir, deps = root / "torch-source", root / "deps"
    make_stack_wheels(torch_dir, deps, STACK)
    house = root / "house"
    assert main(["wheelhouse", "build", "--row", ROW, "--python", "3.11", "--arch", "x86_64", "--out", str(house),
                 "--torch-source", str(torch_dir), "--source", f"dir:{deps}", "--offline"]) == 0
    return house


@pytest.fixture
def house(pristine, tmp_path):
    copy = tmp_path / "house"
    shutil.copytree(pristine, copy)
    return copy


def manifest_of(house: Path) -> dict:
    return json.loads((house / "manifest.json").read_text())


def write_manifest(house: Path, manifest) -> None:
    (house / "manifest.json").write_text(json.dumps(manifest))


def refused(house: Path) -> str:
    with pytest.raises(UserError) as e:
        wheelhouse.verify(house)
    return str(e.value)


def test_the_untouched_wheelhouse_has_no_problem(house):
    assert wheelhouse.verify(house) == []


# --- the manifest ---------------------------------------------------------------------

def test_a_folder_without_a_manifest_is_no_wheelhouse(house):
    (house / "manifest.json").unlink()
    assert refused(house) == f"{house} is not a wheelhouse: manifest.json is missing"


def test_a_manifest_that_is_a_pipe_is_refused_unread(house):
    (house / "manifest.json").unlink()
    os.mkfifo(house / "manifest.json")
    assert refused(house).endswith("the wheelhouse's manifest.json must be a plain file")


def test_a_manifest_that_is_not_json_says_so(house):
    (house / "manifest.json").write_text("{not json")
    message = refused(house)
    assert message.startswith(f"{house}/manifest.json: not valid JSON text (")
    assert message.endswith("); rebuild the wheelhouse (make wheelhouse)")


@pytest.mark.parametrize("manifest", [[], {"format": 2}, "wheels"])
def test_a_manifest_of_another_kind_or_format_is_refused(house, manifest):
    write_manifest(house, manifest)
    assert refused(house) == f"{house}/manifest.json: not a wheelhouse manifest of format 1; rebuild the wheelhouse"


def malformed(house, *problems):
    return (f"{house}/manifest.json is malformed:\n  " + "\n  ".join(problems)
            + "\nrebuild the wheelhouse (make wheelhouse)")


def test_every_shape_problem_of_the_manifest_is_named(house):
    m = manifest_of(house)
    m["stack"]["torch"] = 2
    m["target"]["arch"] = None
    m["requested"] = "torch"
    write_manifest(house, m)
    assert refused(house) == malformed(house, "'stack' must give torch_npu, torch, torchvision, python and arch as "
                                              "strings", "'target' must give python, arch and row_platforms",
                                       "'requested' must be a list of requirements")


def test_a_manifest_without_wheels_is_malformed(house):
    m = manifest_of(house)
    m["stack"], m["wheels"] = [], []
    write_manifest(house, m)
    assert refused(house) == malformed(house, "'stack' must give torch_npu, torch, torchvision, python and arch as "
                                              "strings", "'wheels' must be a non-empty list")


def test_each_bad_wheel_entry_is_named_not_only_the_first(house):
    m = manifest_of(house)
    fields = "file, project, name, version, sha256, role"
    m["wheels"][0] = "absl_py-1.0-py3-none-any.whl"
    m["wheels"][1]["file"] = "sub\\attrs-1.0-py3-none-any.whl"
    m["wheels"][2]["file"] = "cffi-1.0.tar.gz"
    m["wheels"][3]["sha256"] = "ABC"
    m["wheels"][4]["name"] = "Decorator"
    write_manifest(house, m)
    assert refused(house) == malformed(
        house, f"wheels[0] must give {fields} as strings",
        "wheels[1]: 'sub\\\\attrs-1.0-py3-none-any.whl' is not a wheel file name inside the wheelhouse",
        "wheels[2]: 'cffi-1.0.tar.gz' is not a wheel file name inside the wheelhouse",
        "wheels[3]: sha256 'ABC' is not 64 lower-case hex digits",
        "wheels[4]: name 'Decorator' is not a normalised project name")


def test_a_wheel_name_that_is_a_path_is_refused(house):
    m = manifest_of(house)
    m["wheels"][0]["name"] = "sub/absl-py"
    write_manifest(house, m)
    assert refused(house) == malformed(house, "wheels[0]: name 'sub/absl-py' is not a normalised project name")


# --- the files beside the wheels ----------------------------------------------------------

def test_a_removed_index_page_is_missing_and_its_empty_folder_is_the_wheelhouses_own(house):
    (house / "simple" / "torch" / "index.html").unlink()
    assert wheelhouse.verify(house) == ["simple/torch/index.html is missing"]


def test_a_file_in_a_folder_of_folders_is_named_once(house):
    (house / "extra" / "sub").mkdir(parents=True)
    (house / "extra" / "sub" / "notes.txt").write_text("x")
    assert wheelhouse.verify(house) == [
        "extra/sub/notes.txt: a file the wheelhouse does not have (not in manifest.json): remove it"]


def test_a_symbolic_link_is_named(house):
    (house / "notes").symlink_to(house / "manifest.json")
    assert wheelhouse.verify(house) == ["notes: a symbolic link; a wheelhouse holds plain files only"]


def test_a_provenance_the_manifest_records_must_be_there_as_recorded(house):
    m = manifest_of(house)
    m["wheels"][0]["source"] = {"kind": "release", "provenance": {"url": "https://example.org/a.whl", "sha256": "0"}}
    write_manifest(house, m)
    name = m["wheels"][0]["file"] + ".provenance.json"
    (house / name).write_text('{\n  "url": "https://example.org/a.whl",\n  "sha256": "0"\n}\n')
    assert wheelhouse.verify(house) == []
    (house / name).write_text('{"url": "https://example.org/b.whl"}\n')
    assert wheelhouse.verify(house) == [f"{name}: differs from the provenance manifest.json records"]


# --- requirements.txt ---------------------------------------------------------------------

REQ = "requirements.txt"


def test_requirements_with_other_line_endings_say_so_and_do_not_crash(house):
    req = house / REQ
    req.write_bytes(req.read_bytes().replace(b"\n", b"\r\n"))
    assert wheelhouse.verify(house) == [
        f"{REQ} is not what manifest.json pins: its lines are the expected ones, but their line endings or the "
        f"final newline differ"]
    req.write_bytes(req.read_bytes().replace(b"\r\n", b"\n").rstrip(b"\n"))
    assert wheelhouse.verify(house) == [
        f"{REQ} is not what manifest.json pins: its lines are the expected ones, but their line endings or the "
        f"final newline differ"]


def test_the_first_changed_line_of_requirements_is_quoted(house):
    req = house / REQ
    lines = req.read_text().splitlines(keepends=True)
    want = lines[1].rstrip("\n")
    lines[1] = "# changed\n"
    req.write_text("".join(lines))
    assert wheelhouse.verify(house) == [f"{REQ} is not what manifest.json pins: line 2 is '# changed', "
                                        f"expected {want!r}"]


def test_requirements_longer_or_shorter_than_the_manifest_pins(house):
    req = house / REQ
    text = req.read_text()
    n = len(text.splitlines())
    req.write_text(text + "# one more\n")
    assert wheelhouse.verify(house) == [f"{REQ} is not what manifest.json pins: line {n + 1} is '# one more', "
                                        f"expected the end"]
    lines = text.splitlines(keepends=True)
    req.write_text("".join(lines[:-1]))
    assert wheelhouse.verify(house) == [f"{REQ} is not what manifest.json pins: it ends at line {n - 1}, expected "
                                        f"{lines[-1].rstrip(chr(10))!r}"]


def test_a_second_pin_is_quoted_as_pip_reads_it(house):
    req = house / REQ
    first = [line for line in req.read_text().splitlines() if line.startswith("absl")][0].removesuffix(" \\")
    sha = manifest_of(house)["wheels"][0]["sha256"]
    req.write_text(req.read_text() + "\nabsl-py==1.0 \\\n    --hash=sha256:" + "0" * 64 + "  # theirs # again\n")
    assert wheelhouse.verify(house) == [
        f"{REQ} pins absl-py 2 times ({first} --hash=sha256:{sha}; "
        f"absl-py==1.0 --hash=sha256:{'0' * 64}); pip enforces the first: remove the extra pin"]


def test_a_pin_of_a_project_the_wheelhouse_does_not_hold_is_named_whatever_its_case(house):
    req = house / REQ
    req.write_text(req.read_text() + "Evil_Pkg==1.0\n")
    assert wheelhouse.verify(house) == [f"{REQ} pins evil-pkg, which the wheelhouse does not hold"]


def test_requirements_that_are_a_pipe_are_refused_unread(house):
    (house / REQ).unlink()
    os.mkfifo(house / REQ)
    assert refused(house).endswith("the wheelhouse's requirements.txt must be a plain file")


# --- the simple index ---------------------------------------------------------------------------

def test_every_broken_index_page_is_named(house):
    (house / "simple" / "index.html").unlink()
    page = house / "simple" / "torch" / "index.html"
    page.write_bytes(page.read_bytes().replace(b"</body>", b'<a href="../../x.whl">x</a><a href="y&amp;.whl">y</a>'
                                                          b"</body>"))
    changed = house / "simple" / "torch-npu" / "index.html"
    changed.write_bytes(changed.read_bytes().replace(b"<h1>", b"<h1>\xff"))
    assert wheelhouse.verify(house) == [
        "simple/index.html is missing",
        "simple/torch-npu/index.html is not the page manifest.json implies (a link is missing or changed)",
        "simple/torch/index.html links to ../../x.whl, y&.whl, which manifest.json does not list; pip --index-url "
        "would consider it"]


def test_an_index_page_that_is_a_pipe_is_refused_unread(house):
    page = house / "simple" / "torch" / "index.html"
    page.unlink()
    os.mkfifo(page)
    assert refused(house).endswith("a page of the wheelhouse's index must be a plain file")


# --- what pip is asked for again ------------------------------------------------------------------

@pytest.mark.parametrize("req, asked", [
    ('Foo[b,a]>=1.0; python_version >= "3.8"', "Foo[a,b]>=1.0"),
    ('bar==2; sys_platform == "linux"', "bar==2"),
    ("baz", "baz"),
])
def test_a_missing_requirement_is_asked_for_without_its_marker(req, asked):
    assert wheelhouse._without_marker(Requirement(req)) == asked


# --- building -------------------------------------------------------------------------------

@pytest.fixture   # per test, not per module: mutmut credits a module fixture's calls to the first test only
def logged_build(tmp_path):
    """One build through the library, with what it logs and the manifest it returns."""
    root = tmp_path
    torch_dir, deps = root / "torch-source", root / "deps"
    make_stack_wheels(torch_dir, deps, STACK)
    lines: list[str] = []
    opts = wheelhouse.Options(out=root / "out" / "house", torch_source=str(torch_dir), sources=[f"dir:{deps}"],
                              offline=True)
    manifest = wheelhouse.build(STACK, opts, log=lines.append)
    return root, torch_dir, deps, lines, manifest


def test_a_build_says_what_it_builds_where_each_wheel_came_from_and_where_it_is(logged_build):
    root, torch_dir, deps, lines, manifest = logged_build
    target = wheelhouse.Target.for_stack(STACK).describe()
    row = STACK.row
    assert lines[0] == (f"wheelhouse for torch_npu {row.torch_npu} (torch {row.torch}, torchvision "
                        f"{row.torchvision}), {target}")
    assert f"torch_npu: trying dir:{deps}" in lines
    assert any(line.startswith(f"torch_npu: torch_npu-{ROW}-") and line.endswith(f".whl from dir:{deps}")
               for line in lines)
    assert any(line.startswith("dependencies: resolving ") and line.endswith(f" requirements for {target}")
               for line in lines)
    assert lines[-1] == f"wheelhouse ready: {root}/out/house ({len(manifest['wheels'])} wheels)"


def test_the_manifest_says_how_it_was_made_and_how_to_install(logged_build):
    root, torch_dir, deps, lines, manifest = logged_build
    assert (manifest["format"], manifest["created_by"]) == (1, "npuenv wheelhouse build")
    assert manifest["sources"] == {"torch": str(torch_dir), "torch_npu": [f"dir:{deps}"],
                                   "dependencies": "local directories only (--offline)", "torchvision": "auto"}
    assert manifest["install"] == {"find_links": "pip install --no-index --find-links DIR -r DIR/requirements.txt",
                                   "index": "pip install --index-url file://DIR/simple -r DIR/requirements.txt"}
    assert manifest["stack"] == {"torch_npu": ROW, "torch": STACK.row.torch, "torchvision": STACK.row.torchvision,
                                 "cann": STACK.row.cann, "python": "3.11", "arch": "x86_64"}
    assert manifest["notes"] == []
    roles = {w["name"]: w["role"] for w in manifest["wheels"]}
    assert (roles["torch"], roles["torch-npu"], roles["torchvision"]) == ("torch", "torch_npu", "torchvision")
    cann = {n for n, r in roles.items() if r == "cann-python-dep"}
    assert cann and cann <= {Requirement(r).name.lower().replace("_", "-") for r in manifest["requested"]}
    for w in manifest["wheels"]:
        assert w["size"] == (root / "out" / "house" / w["file"]).stat().st_size
        assert w["requires_python"] is None          # the synthetic wheels declare none
        assert w["source"] == {"kind": "pip", "location": "local directories only (--offline)"} \
            or w["role"] in ("torch", "torch_npu", "torchvision")
    by_name = {w["name"]: w for w in manifest["wheels"]}
    assert by_name["torch-npu"]["required_by"] == ["requested"]
    assert by_name["filelock"]["required_by"] == [f"torch {STACK.row.torch}+cpu"]
    assert by_name["filelock"]["role"] == "dependency"
    assert manifest["created"].endswith("+00:00")
    assert manifest["cann_python_deps"] == dict(STACK.platforms.cann_python_deps)
    assert json.loads((root / "out" / "house" / "manifest.json").read_text()) == manifest
    assert [p.name for p in (root / "out").iterdir()] == ["house"]   # no work folder left beside it


@pytest.mark.parametrize("find_links, offline, index_url, said", [
    ([], True, None, "local directories only (--offline)"),
    (["/w1", "/w2"], True, None, "local directories only (--offline) and /w1, /w2"),
    ([], False, None, "pip's configured index (PyPI)"),
    (["/w1"], False, "https://mirror.example/simple", "https://mirror.example/simple and /w1"),
])
def test_where_the_dependencies_came_from_is_said_as_given(find_links, offline, index_url, said):
    opts = wheelhouse.Options(out=Path("/x"), torch_source="/t", find_links=[Path(d) for d in find_links],
                              offline=offline, index_url=index_url)
    assert wheelhouse._index_description(opts) == said


def test_an_out_that_is_a_file_or_someone_elses_folder_is_refused(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError) as e:
        wheelhouse.check_destination(tmp_path / "file")
    assert str(e.value) == f"{tmp_path}/file exists and is not a directory; choose another OUT"
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("x")
    with pytest.raises(UserError) as e:
        wheelhouse.check_destination(tmp_path / "mine")
    assert str(e.value) == (f"{tmp_path}/mine exists, is not empty and is not a wheelhouse (no manifest.json); "
                            f"choose an empty or new directory so nothing of yours is replaced")
    (tmp_path / "empty").mkdir()
    wheelhouse.check_destination(tmp_path / "empty")
    wheelhouse.check_destination(tmp_path / "new")


def test_a_work_folder_that_cannot_be_made_says_where(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError) as e:
        wheelhouse.make_work_dir(tmp_path / "file" / "house")
    assert str(e.value) == (f"cannot write beside {tmp_path}/file/house: File exists ({tmp_path}/file); choose an "
                            f"output in a folder you can write to")


def test_a_work_folder_names_the_folder_that_could_not_be_made():
    """/proc takes no new folder, even from root: the name the failed attempt had is given (the reason is
    the kernel's own words, which differ between kernels)."""
    with pytest.raises(UserError) as e:
        wheelhouse.make_work_dir(Path("/proc/house"))
    assert re.fullmatch(r"cannot write beside /proc/house: [A-Za-z ]+ \(/proc/\.house\.tmp-\w+\); "
                        r"choose an output in a folder you can write to", str(e.value))


def test_a_work_folder_is_a_hidden_one_beside_out(tmp_path):
    work = wheelhouse.make_work_dir(tmp_path / "a" / "house")
    assert work.parent == tmp_path / "a" and work.name.startswith(".house.tmp-") and work.is_dir()


def test_folders_made_for_a_failed_build_are_removed_deepest_first_unless_used(tmp_path):
    made = wheelhouse.folders_to_make(tmp_path / "a" / "b" / "c")
    assert made == [tmp_path / "a" / "b" / "c", tmp_path / "a" / "b", tmp_path / "a"]
    (tmp_path / "a" / "b" / "c").mkdir(parents=True)
    (tmp_path / "a" / "kept.txt").write_text("someone else's")
    wheelhouse.remove_empty(made)
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["kept.txt"]


class Pre:
    def __init__(self, filename, pre):
        from packaging.version import Version
        self.filename, self.version = filename, Version("1.0rc1" if pre else "1.0")


def test_pre_release_dependencies_are_refused_unless_asked_for():
    chosen = {"b": Pre("b-1.0rc1.whl", True), "a": Pre("a-1.0rc1.whl", True), "c": Pre("c-1.0.whl", False),
              "torch": Pre("torch-1.0rc1.whl", True)}
    direct = {"torch": chosen["torch"]}
    with pytest.raises(wheelhouse.WheelError) as e:
        wheelhouse._check_prereleases(chosen, direct, False)
    assert str(e.value) == ("pip chose pre-release wheels, because no final release of them fits the target: "
                            "a-1.0rc1.whl, b-1.0rc1.whl. Pin a final release the target can use (--find-links DIR "
                            "with that wheel), or pass --pre to accept pre-releases")
    assert wheelhouse._check_prereleases(chosen, direct, True) == [
        "pre-release dependencies accepted (--pre): a-1.0rc1.whl, b-1.0rc1.whl"]
    assert wheelhouse._check_prereleases({"c": chosen["c"], "torch": chosen["torch"]}, direct, False) == []


def test_a_wheelhouse_that_cannot_be_moved_where_there_was_none_says_why(tmp_path):
    with pytest.raises(FileNotFoundError) as e:
        wheelhouse._move_into_place(tmp_path / "never-built", tmp_path / "house")
    assert e.value.filename == str(tmp_path / "never-built")
    assert list(tmp_path.iterdir()) == []


def test_a_wheelhouse_that_cannot_be_moved_into_place_leaves_the_old_one(tmp_path):
    out = tmp_path / "house"
    out.mkdir()
    (out / "manifest.json").write_text("the old one")
    with pytest.raises(OSError):
        wheelhouse._move_into_place(tmp_path / "never-built", out)
    assert (out / "manifest.json").read_text() == "the old one"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["house"]


def test_the_new_wheelhouse_replaces_the_old_whole(tmp_path):
    out, new = tmp_path / "house", tmp_path / "new"
    out.mkdir()
    (out / "old.whl").write_text("old")
    new.mkdir()
    (new / "manifest.json").write_text("new")
    wheelhouse._move_into_place(new, out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["house"]
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json"]


def test_a_file_hard_linked_from_another_wheelhouse_is_replaced_not_written_through(tmp_path):
    other = tmp_path / "other-SHA256SUMS"
    other.write_text("the other wheelhouse's\n")
    os.link(other, tmp_path / "SHA256SUMS")
    wheelhouse._write(tmp_path / "SHA256SUMS", "this one's\n")
    assert other.read_text() == "the other wheelhouse's\n"
    assert (tmp_path / "SHA256SUMS").read_text() == "this one's\n"


def test_a_file_that_is_gone_is_on_no_file_system(tmp_path):
    assert wheelhouse._same_fs(tmp_path / "gone", tmp_path) is False
    (tmp_path / "here").write_text("x")
    assert wheelhouse._same_fs(tmp_path / "here", tmp_path) is True


def test_every_pip_option_in_requirements_is_named(house):
    req = house / REQ
    req.write_text(req.read_text() + "--index-url https://evil.example/simple\n-f https://evil.example/wheels\n")
    assert wheelhouse.verify(house) == [
        f"{REQ}: pip option '--index-url'; the wheelhouse's requirements carry no options (an option changes what pip "
        f"installs)",
        f"{REQ}: pip option '-f'; the wheelhouse's requirements carry no options (an option changes what pip "
        f"installs)"]


def test_a_second_pin_in_crlf_requirements_is_quoted_as_pip_reads_it(house):
    req = house / REQ
    sha = manifest_of(house)["wheels"][0]["sha256"]
    text = req.read_text() + "absl-py==1.0 \\\n    --hash=sha256:" + "0" * 64 + "\n"
    req.write_bytes(text.replace("\n", "\r\n").encode())
    assert wheelhouse.verify(house) == [
        f"{REQ} pins absl-py 2 times (absl-py==1.0 --hash=sha256:{sha}; absl-py==1.0 --hash=sha256:{'0' * 64}); "
        f"pip enforces the first: remove the extra pin"]


# --- the wheels and SHA256SUMS ------------------------------------------------------------------

def wheels_of(house):
    return [(w["file"], w["sha256"]) for w in manifest_of(house)["wheels"]]


def test_without_sha256sums_every_wheel_is_unconfirmed(house):
    (house / "SHA256SUMS").unlink()
    assert wheelhouse.verify(house) == [f"{house}/SHA256SUMS is missing"] + [
        f"{name}: SHA256SUMS says nothing, manifest.json says {sha}" for name, sha in wheels_of(house)]


def test_each_wheel_that_is_missing_or_no_plain_file_is_named(house):
    (first, _), (second, _), (third, _), (fourth, _) = wheels_of(house)[:4]
    (house / first).unlink()
    (house / second).unlink()
    (house / third).unlink()
    os.mkfifo(house / third)
    (house / fourth).unlink()
    os.mkfifo(house / fourth)
    problems = wheelhouse.verify(house)
    assert f"{first}: listed in manifest.json but missing" in problems
    assert f"{second}: listed in manifest.json but missing" in problems
    plain = "not a plain file (a pipe, socket or device); a wheelhouse holds plain files only"
    assert f"{third}: {plain}" in problems and f"{fourth}: {plain}" in problems


def test_sha256sums_that_disagree_with_the_manifest_are_named(house):
    sums = house / "SHA256SUMS"
    (name, sha), *_ = wheels_of(house)
    sums.write_text(sums.read_text().replace(sha, "f" * 64) + f"{'e' * 64}  extra-1.0-py3-none-any.whl\n")
    assert wheelhouse.verify(house) == [
        f"{name}: SHA256SUMS says {'f' * 64}, manifest.json says {sha}",
        "SHA256SUMS lists extra-1.0-py3-none-any.whl, which manifest.json does not"]


# --- the wheels against the row and each other -----------------------------------------------------

def rewrite(house: Path, manifest: dict) -> None:
    """The wheelhouse's own files written again for ``manifest``, over those there."""
    wheelhouse.write_files(house, manifest)


def swap_wheel(house: Path, manifest: dict, name: str, new: Path) -> str:
    """``new`` in place of the wheel ``name``, under the same file name, recorded in ``manifest``."""
    entry = next(w for w in manifest["wheels"] if w["name"] == name)
    os.replace(new, house / entry["file"])
    entry["sha256"] = sha256_file(house / entry["file"])
    return entry["file"]


def test_the_manifest_is_written_for_people_to_read(house):
    rewrite(house, manifest_of(house))
    text = (house / "manifest.json").read_text(encoding="utf-8")
    assert text.startswith('{\n  "format": 1,\n  "created": ') and text.endswith("\n}\n")


def test_torch_npu_and_torchvision_must_pin_the_rows_torch(house, tmp_path):
    m = manifest_of(house)
    npu = swap_wheel(house, m, "torch-npu", make_wheel(tmp_path / "w", "torch_npu", ROW, X86_TAG,
                                                       requires=["torch==2.12.0", "numpy", "pyyaml"]))
    tv = swap_wheel(house, m, "torchvision", make_wheel(tmp_path / "w", "torchvision", "0.28.0+cpu", X86_TAG,
                                                        requires=["numpy", "torch>=2.13.0"]))
    rewrite(house, m)
    assert wheelhouse.verify(house) == [
        f"{npu}: Requires-Dist torch==2.12.0 does not pin the row's torch 2.13.0",
        f"{tv}: Requires-Dist torch>=2.13.0 does not pin the row's torch 2.13.0"]


def test_a_requested_wheel_taken_out_leaves_the_wheelhouse_incomplete(house, tmp_path):
    m = manifest_of(house)
    npu = next(w for w in m["wheels"] if w["name"] == "torch-npu")
    m["wheels"].remove(npu)
    (house / npu["file"]).unlink()
    shutil.rmtree(house / "simple" / "torch-npu")
    tv = swap_wheel(house, m, "torchvision", make_wheel(tmp_path / "w", "torchvision", "0.28.0+cpu", X86_TAG,
                                                        requires=["numpy", "torch==2.12.0"]))
    rewrite(house, m)
    assert wheelhouse.verify(house) == [
        f"{tv}: Requires-Dist torch==2.12.0 does not pin the row's torch 2.13.0",   # checked without torch_npu
        "incomplete: torch-npu is needed on the target but has no wheel"]


def test_a_manifest_that_requested_nothing_needs_nothing(house):
    m = manifest_of(house)
    del m["requested"]
    write_manifest(house, m)
    assert wheelhouse.verify(house) == []


def test_a_requested_requirement_that_cannot_be_read_is_refused(house):
    m = manifest_of(house)
    m["requested"] = ["torch >>> 1"]
    write_manifest(house, m)
    # packaging's own words follow (packaging 26 reworded them): the requirement it could not read is among them
    message = refused(house)
    assert message.startswith(f"{house}/manifest.json: 'requested' holds an unreadable requirement (Expected ")
    assert "torch >>> 1" in message


def test_a_file_that_is_no_wheel_is_named(house):
    m = manifest_of(house)
    entry = m["wheels"][0]
    (house / entry["file"]).write_bytes(b"not a zip")
    entry["sha256"] = sha256_file(house / entry["file"])
    rewrite(house, m)
    assert wheelhouse.verify(house) == [
        f"{house / entry['file']}: cannot be read as a wheel (zip): File is not a zip file",
        f"incomplete: {entry['name']} is needed on the target but has no wheel"]


def test_a_wheelhouse_the_matrix_has_moved_away_from_is_named(house):
    text = cm.loader.DEFAULT_MATRIX.read_text(encoding="utf-8")
    row = '- torch_npu: "2.13.0"\n  torch: "2.13.0"\n  torchvision: "0.28.0"'
    assert text.count(row) == 1
    gone = cm.load_matrix(text=text.replace(row, row.replace('"2.13.0"\n', '"2.13.0.post9"\n', 1)))
    assert wheelhouse.verify(house, gone) == ["the matrix has no row torch_npu 2.13.0 any more"]
    moved = cm.load_matrix(text=text.replace(row, row.replace('"0.28.0"', '"0.28.1"')))
    assert wheelhouse.verify(house, moved) == [
        "the matrix row torch_npu 2.13.0 now says torch 2.13.0 / torchvision 0.28.1; the wheelhouse was built for "
        "torch 2.13.0 / torchvision 0.28.0: rebuild it"]


# --- the files derived from the manifest, against PEP 503 and pip's requirements format -----------

WHEELS = [{"name": "b-pkg", "project": "B_Pkg", "version": "2.0", "file": "b_pkg-2.0-py3-none-any.whl",
           "sha256": "b" * 64, "requires_python": ">=3.9"},
          {"name": "a", "project": "a", "version": "1.0", "file": "a-1.0-py3-none-any.whl", "sha256": "a" * 64,
           "requires_python": None}]


def test_index_pages_are_pep_503_with_hashes_and_requires_python():
    head = '<!DOCTYPE html>\n<html>\n  <head><meta name="pypi:repository-version" content="1.0"><title>'
    assert wheelhouse.index_pages(WHEELS) == {
        "index.html": head + "Simple index</title></head>\n  <body>\n    <h1>Simple index</h1>\n"
        '    <a href="a/">a</a><br/>\n    <a href="b-pkg/">b-pkg</a><br/>\n  </body>\n</html>\n',
        "a/index.html": head + "Links for a</title></head>\n  <body>\n    <h1>Links for a</h1>\n"
        f'    <a href="../../a-1.0-py3-none-any.whl#sha256={"a" * 64}">a-1.0-py3-none-any.whl</a><br/>\n'
        "  </body>\n</html>\n",
        "b-pkg/index.html": head + "Links for b-pkg</title></head>\n  <body>\n    <h1>Links for b-pkg</h1>\n"
        f'    <a href="../../b_pkg-2.0-py3-none-any.whl#sha256={"b" * 64}" data-requires-python="&gt;=3.9">'
        "b_pkg-2.0-py3-none-any.whl</a><br/>\n  </body>\n</html>\n"}


def test_an_index_page_lists_every_file_of_its_project():
    two = [dict(WHEELS[1]), dict(WHEELS[1], file="a-1.0-cp311-cp311-linux_x86_64.whl", sha256="c" * 64)]
    page = wheelhouse.index_pages(two)["a/index.html"]
    assert ('<a href="../../a-1.0-cp311-cp311-linux_x86_64.whl#sha256=' + "c" * 64 + '">a-1.0-cp311-cp311-linux_'
            'x86_64.whl</a><br/>\n    <a href="../../a-1.0-py3-none-any.whl#sha256=' + "a" * 64) in page


def test_requirements_say_what_made_them_and_how_to_install():
    manifest = {"stack": {"torch_npu": "2.13.0", "torch": "2.13.0", "python": "3.11", "arch": "x86_64"},
                "wheels": WHEELS}
    assert wheelhouse.render_requirements(manifest) == (
        "# Wheelhouse for torch_npu 2.13.0 (torch 2.13.0), Python 3.11, x86_64.\n"
        "# Generated by `npuenv wheelhouse build`; every wheel is pinned with its sha256.\n"
        "#   pip install --no-index --find-links DIR -r DIR/requirements.txt\n"
        "\n"
        f"a==1.0 \\\n    --hash=sha256:{'a' * 64}\n"
        f"B_Pkg==2.0 \\\n    --hash=sha256:{'b' * 64}\n")

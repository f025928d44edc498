"""What the installed npuenv runs must be in its wheel: every file the source
tree keeps in a package folder is a Python module of a listed package or is
matched by that package's package-data (pyproject.toml). A file left out works
from the checkout and fails only once installed (a playbook module missing from
`npuenv deploy` run from a pip install or the bundle)."""
from __future__ import annotations

import subprocess
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def shipped(package: str) -> set[Path]:
    folder = ROOT / package
    files = {p for pattern in PYPROJECT["tool"]["setuptools"]["package-data"].get(package, [])
             for p in folder.glob(pattern) if p.is_file()}
    # the package's own modules, and those of its sub-packages (a folder with __init__.py)
    files |= {p for p in folder.rglob("*.py") if (p.parent / "__init__.py").is_file()}
    return files


def tracked(package: str) -> set[Path]:
    listed = subprocess.run(["git", "ls-files", "-z", "--", package], cwd=ROOT, check=True,
                            capture_output=True, text=True).stdout.split("\0")
    return {ROOT / name for name in listed if name}


def test_every_file_of_the_packages_with_data_is_shipped():
    missing = sorted(str(p.relative_to(ROOT)) for package in PYPROJECT["tool"]["setuptools"]["package-data"]
                     for p in tracked(package) - shipped(package))
    assert missing == [], "add these to [tool.setuptools.package-data] in pyproject.toml"


def test_a_file_outside_the_patterns_is_found(tmp_path, monkeypatch):
    # the check itself: the collection's modules are shipped only by their pattern
    patterns = PYPROJECT["tool"]["setuptools"]["package-data"]["playbooks"]
    monkeypatch.setitem(PYPROJECT["tool"]["setuptools"]["package-data"], "playbooks",
                        [p for p in patterns if p != "collections/**/*.py"])
    assert ROOT / "playbooks/collections/ansible_collections/npuenv/ascend/plugins/modules/npuenv_files.py" in tracked("playbooks") - shipped("playbooks")

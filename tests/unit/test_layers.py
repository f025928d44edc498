"""The layers (pyproject.toml [tool.importlinter], ARCHITECTURE.md): `lint-imports` keeps every
contract on this checkout, and breaks the one that a wrong-way import breaks, naming the import.

lint-imports puts the folder it runs in first on the path, so it reads the checkout it runs in (and
the copies below), never the installed one."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.conftest import ROOT

LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
CONFIG = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]


def lint_imports(where: Path) -> subprocess.CompletedProcess:
    assert LINT_IMPORTS.is_file(), f"{LINT_IMPORTS} is missing: run `make setup` (import-linter, the dev extra)"
    # Without PYTHONPATH: a second checkout on it would be a second portion of the namespace
    # packages tests/ and bench/, and which one grimp reads would be chance.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=where, capture_output=True, text=True,
                          timeout=300, env=env)


def contract_names() -> list[str]:
    return [c["name"] for c in CONFIG["contracts"]]


def test_every_contract_is_kept():
    done = lint_imports(ROOT)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    for name in contract_names():
        assert f"{name} KEPT" in " ".join(done.stdout.split())
    assert f"Contracts: {len(contract_names())} kept, 0 broken." in done.stdout


@pytest.fixture(scope="module")
def checkout_copy(tmp_path_factory) -> Path:
    """The Python files of every package the contracts name, and pyproject.toml."""
    copy = tmp_path_factory.mktemp("layers")
    shutil.copy2(ROOT / "pyproject.toml", copy / "pyproject.toml")
    for package in CONFIG["root_packages"]:
        for path in (ROOT / package).rglob("*.py"):
            if "__pycache__" not in path.parts:
                dest = copy / path.relative_to(ROOT)
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, dest)
    return copy


# (file, the wrong-way import added to it, the contract it breaks, the import as lint-imports names it)
WRONG_WAY = [
    ("compat_matrix/pypi.py", "import npuenv.args", "layers", "compat_matrix.pypi -> npuenv.args"),
    ("validation/targets.py", "from playbooks import rollout", "layers", "validation.targets -> playbooks.rollout"),
    ("torch_npu_pkg/cli.py", "import images.engine", "layers", "torch_npu_pkg.cli -> images.engine"),
    ("ansible_run/run.py", "import torch_npu_pkg.wheels", "layers", "ansible_run.run -> torch_npu_pkg.wheels"),
    ("images/render.py", "import tests.sim.installers", "product", "images.render -> tests.sim.installers"),
    ("bench/bench_matrix.py", "from tests.integration import conftest", "bench",
     "bench.bench_matrix -> tests.integration.conftest"),
    ("validation/node/facts.py", "from validation import report", "node-side",
     "validation.node.facts -> validation.report"),
    ("validation/node/codes.py", "import images.render", "node-only-matrix", "validation.node.codes -> images.render"),
]
KEPT_BUT_ONE = f"Contracts: {len(CONFIG['contracts']) - 1} kept, 1 broken."


@pytest.mark.parametrize("module, line, contract, shown", WRONG_WAY, ids=[w[0] for w in WRONG_WAY])
def test_a_wrong_way_import_breaks_its_contract(checkout_copy, module, line, contract, shown):
    path = checkout_copy / module
    kept = path.read_text()
    try:
        path.write_text(f"{kept}\n{line}\n")
        done = lint_imports(checkout_copy)
    finally:
        path.write_text(kept)
    out = " ".join(done.stdout.split())
    assert done.returncode == 1, done.stdout[-4000:] + done.stderr[-2000:]
    name = next(c["name"] for c in CONFIG["contracts"] if c["id"] == contract)
    assert f"{name} BROKEN" in out and KEPT_BUT_ONE in out
    assert shown in out


def test_a_new_module_of_validation_must_be_placed_on_a_side(checkout_copy):
    """The node-side contract is exhaustive: a module added to validation/ and not named in it breaks it
    (the artefact would not carry it, or the controller's code would travel)."""
    path = checkout_copy / "validation" / "fleet_extra.py"
    try:
        path.write_text("X = 1\n")
        done = lint_imports(checkout_copy)
    finally:
        path.unlink()
    out = " ".join(done.stdout.split())
    name = next(c["name"] for c in CONFIG["contracts"] if c["id"] == "node-side")
    assert done.returncode == 1 and f"{name} BROKEN" in out and KEPT_BUT_ONE in out, out[-3000:]
    assert "validation.fleet_extra" in out


# --- the Ansible plugins: Ansible loads them from their files, so lint-imports does not see them ---------

def project_imports(path: Path) -> set[str]:
    """The packages of this project that a file imports (anywhere in it, functions too)."""
    import ast

    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.add(node.module)
    return {n.split(".")[0] for n in names} & set(CONFIG["root_packages"])


def test_the_ansible_plugins_import_only_what_the_bundle_carries_beside_the_playbooks():
    """A plugin runs in ansible-playbook on the controller, an air-gapped site's too, where the
    bundle's source trees are all of npuenv there is (torch_npu_pkg/bundle.py SOURCE_TREES); modules
    (plugins/modules/) run on the nodes and import none of it."""
    from ansible_run.run import COLLECTION_DIR
    from torch_npu_pkg.bundle import SOURCE_TREES

    modules = sorted((COLLECTION_DIR / "plugins" / "modules").glob("*.py"))
    plugins = sorted(set((COLLECTION_DIR / "plugins").rglob("*.py")) - set(modules))
    assert plugins and modules
    found = {p.relative_to(ROOT).as_posix(): project_imports(p) for p in plugins}
    assert set().union(*found.values()) <= set(SOURCE_TREES) - {"playbooks"}, found
    assert {p.relative_to(ROOT).as_posix(): project_imports(p) for p in modules if project_imports(p)} == {}


def test_architecture_md_draws_the_layers_of_the_contract():
    """ARCHITECTURE.md's picture of the layers, top to bottom, is the contract's list."""
    import re

    picture = (ROOT / "ARCHITECTURE.md").read_text().split("```")[1]
    layers = next(c["layers"] for c in CONFIG["contracts"] if c["id"] == "layers")
    names = "|".join(re.escape(n.strip()) for layer in layers for n in layer.split("|"))
    drawn = [m.group(0) for m in re.finditer(rf"^(?:{names})(?: \| (?:{names}))*(?=\s|$)", picture, re.M)]
    assert drawn == layers

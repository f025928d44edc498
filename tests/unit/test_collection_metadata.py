"""The npuenv.ascend collection: its metadata says what npuenv's package says (version, the
ansible-core it needs), and its roles and npuenv's playbooks call its plugins by their full names.
A collection role's Jinja finds no filter or lookup of its own collection by its short name (`No
filter named 'npuenv_input_problems'`, measured with ansible-core 2.19); its tasks would find the
collection's modules, but a playbook's would not, and ansible-lint's production profile asks full
names of both."""
from __future__ import annotations

import re
import tomllib

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from ansible_run import run
from tests.conftest import ROOT
from tests.unit.test_playbook_plugins import PLUGINS, plugin

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
COLLECTION = run.COLLECTION_DIR
PREFIX = run.COLLECTION + "."


def floors(specifiers: SpecifierSet) -> set[tuple[str, Version]]:
    return {(s.operator, Version(s.version)) for s in specifiers}


def test_the_collection_has_npuenvs_version_and_needs_its_ansible_core():
    galaxy = yaml.safe_load((COLLECTION / "galaxy.yml").read_text())
    assert f"{galaxy['namespace']}.{galaxy['name']}" == run.COLLECTION
    assert galaxy["version"] == PYPROJECT["project"]["version"]
    core = next(Requirement(r) for r in PYPROJECT["project"]["optional-dependencies"]["controller"]
                if Requirement(r).name == "ansible-core")
    runtime = yaml.safe_load((COLLECTION / "meta" / "runtime.yml").read_text())
    assert floors(SpecifierSet(runtime["requires_ansible"])) == floors(core.specifier)
    # each role's galaxy_info says the same floor (ansible-galaxy shows it)
    for meta in sorted((COLLECTION / "roles").glob("*/meta/main.yml")):
        stated = yaml.safe_load(meta.read_text())["galaxy_info"]["min_ansible_version"]
        assert floors(SpecifierSet(f">={stated}")) == floors(core.specifier), meta


def yaml_files():
    return [*sorted((COLLECTION / "roles").rglob("*.yml")), *sorted(run.PLAYBOOK_DIR.glob("*.yml"))]


def filter_names() -> set[str]:
    return {name for path in (PLUGINS / "filter").glob("*.py")
            for name in plugin("filter", path.stem).FilterModule().filters()}


def task_keys(node):
    """Every key of every task (blocks, handlers and plays walked into)."""
    if isinstance(node, list):
        for item in node:
            yield from task_keys(item)
    elif isinstance(node, dict):
        for key, value in node.items():
            yield key
            if key in ("block", "rescue", "always", "tasks", "pre_tasks", "post_tasks", "handlers"):
                yield from task_keys(value)


def bare_uses(text: str, names: set[str], forms: tuple[str, ...]) -> list[str]:
    return [m.group(0) for name in names for form in forms for m in re.finditer(form.format(re.escape(name)), text)]


@pytest.mark.parametrize("path", yaml_files(), ids=lambda p: str(p.relative_to(run.PLAYBOOK_DIR)))
def test_the_collections_plugins_are_called_by_their_full_names(path):
    text = path.read_text()
    filters = filter_names()
    lookups = {p.stem for p in (PLUGINS / "lookup").glob("*.py")}
    actions = {p.stem for kind in ("modules", "action") for p in (PLUGINS / kind).glob("*.py")}
    assert bare_uses(text, filters, (r"\|\s*{}\b", r"\(\s*'{}'")) == []
    assert bare_uses(text, lookups, (r"(?:lookup|query|q)\(\s*'{}'",)) == []
    assert sorted(actions & set(task_keys(yaml.safe_load(text)))) == []


def test_a_bare_name_is_found_by_the_check():
    """The check itself: the roles as they were before the collection."""
    assert bare_uses("x: \"{{ v | npuenv_input_problems }}\"", filter_names(), (r"\|\s*{}\b",)) == \
        ["| npuenv_input_problems"]
    assert "npuenv_files" in set(task_keys([{"name": "t", "block": [{"name": "u", "npuenv_files": {}}]}]))


@pytest.mark.parametrize("playbook", ["site.yml"])   # validate.yml imports its one role in a task
def test_the_playbooks_roles_are_the_collections(playbook):
    roles = run.playbook_roles(playbook)
    assert roles and all(r.startswith(PREFIX) and run.role_dir(r).is_dir() for r in roles)


def test_the_collections_readme_names_every_module_action_lookup_and_callback():
    """The README's list of plugins is written by hand: a plugin added without it fails here."""
    readme = (COLLECTION / "README.md").read_text()
    plugins = {p.stem for kind in ("modules", "action", "lookup", "callback") for p in (PLUGINS / kind).glob("*.py")}
    assert plugins and {p for p in plugins if f"`npuenv.ascend.{p}`" not in readme} == set()

"""The ascend_env role sources the vendor's env scripts with the images' own template: its copy
(images/role_templates.py) is current, and the role's profile script holds exactly what the images
render from it for the same stack."""
from __future__ import annotations

import shlex

import jinja2

import compat_matrix as cm
from images import render, role_templates

STACK = render.choose_python(cm.resolve(cm.load_matrix(), cm.Constraints(
    torch_npu="==2.13.0", arch="x86_64", os="debian12", chip="910b", python="3.11")).stack, python_given=True)
ROLE_TEMPLATES = next(iter(role_templates.COPIES.values())).parent


def test_the_roles_copies_are_current():
    for source, copy in role_templates.COPIES.items():
        assert copy.read_text(encoding="utf-8") == role_templates.copy_text(source), "run `make role-docs`"


def test_a_changed_source_is_copied_again(tmp_path, monkeypatch):
    source, copy = tmp_path / "source_env.sh.j2", tmp_path / "role" / "source_env.sh.j2"
    copy.parent.mkdir()
    source.write_text("one\n")
    monkeypatch.setattr(role_templates, "COPIES", {source: copy})
    assert role_templates.update() == [copy]
    assert copy.read_text().splitlines()[1:] == ["one"]
    assert copy.read_text().startswith("{# Generated from images/templates/source_env.sh.j2")
    assert role_templates.update() == []
    source.write_text("two\n")
    assert role_templates.update() == [copy] and copy.read_text().endswith("\ntwo\n")


def role_profile(stack: cm.Stack) -> str:
    """The role's profile script as Ansible's template module renders it (trim_blocks, an included
    file's last newline dropped, `quote` being shlex.quote)."""
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(ROLE_TEMPLATES)), trim_blocks=True,
                             undefined=jinja2.StrictUndefined)
    env.filters["quote"] = lambda value: shlex.quote(str(value))
    return env.get_template("npuenv-ascend.sh.j2").render(
        ansible_managed="Ansible managed", npuenv_stack=stack.with_environment(),
        ascend_env_variables={"HCCL_CONNECT_TIMEOUT": "120"}, ascend_env_activate_venv=True) + "\n"


def test_the_role_sources_the_env_scripts_as_the_image_does():
    image_block = render._jinja().get_template("source_env.sh.j2").render(**render.context(STACK, False, None))
    profile = role_profile(STACK)
    paths = STACK.paths
    assert image_block.splitlines()[1:3] == [
        f"npuenv_source {paths['env_script']}",
        f"npuenv_source {shlex.join([paths['nnal_env_script'], *STACK.nnal_env_args])}"]
    assert image_block + "export HCCL_CONNECT_TIMEOUT=120\n" in profile
    assert profile.splitlines()[2] == image_block.splitlines()[0]

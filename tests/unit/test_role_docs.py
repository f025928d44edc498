"""Each role's argument spec is the one description of its variables: the README tables are rendered
from it (ansible_run/role_docs.py) and defaults/main.yml, which Ansible reads, holds the same defaults."""
from __future__ import annotations

import pytest
import yaml

import compat_matrix as cm
from ansible_run import role_docs

ROLE_DIRS = role_docs.role_dirs()


def test_every_role_is_covered():
    assert {path.name for path in ROLE_DIRS} >= {"preflight", "npu_driver", "cann", "hccn", "python_stack",
                                                  "ascend_env", "cluster_tuning", "deploy_record", "validation"}


@pytest.mark.parametrize("role_dir", ROLE_DIRS, ids=lambda path: path.name)
def test_readme_table_is_what_the_argument_spec_renders(role_dir):
    assert (role_dir / "README.md").read_text(encoding="utf-8") == role_docs.rendered_readme(role_dir), \
        "run `make role-docs` after changing meta/argument_specs.yml"


def default_mismatches(role_dir) -> list[str]:
    """Where defaults/main.yml and the argument spec's defaults disagree."""
    spec = role_docs.argument_spec(role_dir)
    path = role_dir / "defaults" / "main.yml"
    defaults = (yaml.safe_load(path.read_text(encoding="utf-8")) if path.exists() else None) or {}
    found = []
    for name, value in defaults.items():
        option = spec.get(name)
        if option is None:
            found.append(f"{name}: in defaults/main.yml but not in the argument spec")
        elif "default" in option:
            if option["default"] != value:
                found.append(f"{name}: defaults/main.yml {value!r} != argument spec {option['default']!r}")
        # A default drawn from other variables at play time: a spec's default is a plain value.
        elif not (isinstance(value, str) and "{{" in value):
            found.append(f"{name}: defaults/main.yml has {value!r}, the argument spec no default")
    for name, option in spec.items():
        # npuenv_* are the playbooks' shared variables; the tasks that read them default them.
        if "default" in option and name not in defaults and not name.startswith("npuenv_"):
            found.append(f"{name}: the argument spec's default {option['default']!r} is not in defaults/main.yml")
    return found


@pytest.mark.parametrize("role_dir", ROLE_DIRS, ids=lambda path: path.name)
def test_defaults_file_holds_the_argument_specs_defaults(role_dir):
    assert default_mismatches(role_dir) == []


def fake_role(tmp_path, options, defaults=None):
    role = tmp_path / "r"
    (role / "meta").mkdir(parents=True)
    (role / "meta" / "argument_specs.yml").write_text(yaml.safe_dump({"argument_specs": {"main": {"options": options}}}, sort_keys=False))
    if defaults is not None:
        (role / "defaults").mkdir()
        (role / "defaults" / "main.yml").write_text(yaml.safe_dump(defaults, sort_keys=False))
    (role / "README.md").write_text(f"# r\n\n{role_docs.BEGIN}\n{role_docs.END}\n\nafter\n")
    return role


def test_a_default_changed_in_one_file_only_is_named(tmp_path):
    role = fake_role(tmp_path, {"r_port": {"type": "int", "default": 1}, "r_dir": {"type": "path", "default": "/x"},
                                "r_tmp": {"type": "path"}, "r_count": {"type": "int"},
                                "npuenv_shared": {"type": "bool", "default": False}},
                     {"r_port": 2, "r_extra": True, "r_tmp": "{{ other }}", "r_count": 5})
    assert default_mismatches(role) == [
        "r_port: defaults/main.yml 2 != argument spec 1",
        "r_extra: in defaults/main.yml but not in the argument spec",
        "r_count: defaults/main.yml has 5, the argument spec no default",
        "r_dir: the argument spec's default '/x' is not in defaults/main.yml",
    ]


def test_table_rows_say_type_default_choices_and_description():
    table = role_docs.variables_table({
        "r_stack": {"type": "dict", "required": True, "description": "The stack."},
        "r_mode": {"type": "str", "choices": ["venv", "system"], "default": "venv", "description": "Mode."},
        "r_ips": {"type": "list", "elements": "str", "default": [], "description": "IPs."},
        "r_env": {"type": "dict", "default": {"B": "1", "A": 2}, "description": "Env."},
        "r_cmd": {"default": "a | b", "description": "Runs\n  a pipe."},
        "r_empty": {"type": "str", "default": ""},
        "r_plan": {"type": "dict", "description": "Set by preflight."},
    })
    assert table.splitlines() == [
        "| variable | type | default | choices | description |",
        "|---|---|---|---|---|",
        "| `r_stack` | dict | required |  | The stack. |",
        "| `r_mode` | str | `venv` | `venv`, `system` | Mode. |",
        "| `r_ips` | list of str | `[]` |  | IPs. |",
        "| `r_env` | dict | `{B: '1', A: 2}` |  | Env. |",
        "| `r_cmd` | str | `a \\| b` |  | Runs a pipe. |",
        "| `r_empty` | str | `''` |  |  |",
        "| `r_plan` | dict |  |  | Set by preflight. |",
    ]


def test_a_spec_change_leaves_the_readme_stale_until_regenerated(tmp_path):
    role = fake_role(tmp_path, {"r_x": {"type": "int", "default": 1, "description": "X."}})
    assert role_docs.update(tmp_path) == [role / "README.md"]
    text = (role / "README.md").read_text()
    assert text.startswith("# r\n\n") and text.endswith("\n\nafter\n") and "| `r_x` | int | `1` |  | X. |" in text
    assert role_docs.update(tmp_path) == []
    spec = role / "meta" / "argument_specs.yml"
    spec.write_text(spec.read_text().replace("default: 1", "default: 3"))
    assert role_docs.rendered_readme(role) != (role / "README.md").read_text()


def test_a_readme_without_the_markers_is_refused(tmp_path):
    role = fake_role(tmp_path, {})
    (role / "README.md").write_text("# r\n")
    with pytest.raises(ValueError, match="no generated variables block"):
        role_docs.rendered_readme(role)


# The roles' defaults that copy platforms.yaml's facts (role, variable -> its place there): they stay
# literal because site.yml checks every role's inputs before the lock gives the stack.
PLATFORM_DEFAULTS = {("python_stack", "python_stack_venv"): ("npuenv_files", "venv"),
                     ("ascend_env", "ascend_env_profile"): ("npuenv_files", "profile_script"),
                     ("cann", "cann_stage_dir"): ("npuenv_files", "installers_stage"),
                     ("npu_driver", "npu_driver_stage_dir"): ("npuenv_files", "installers_stage"),
                     ("python_stack", "python_stack_wheelhouse_dest"): ("npuenv_files", "wheelhouse_stage"),
                     ("hccn", "hccn_conf"): ("hdk", "paths", "hccn_conf"),
                     ("npu_driver", "npu_driver_user"): ("hdk", "run_user"),
                     ("npu_driver", "npu_driver_group"): ("hdk", "run_user")}


@pytest.mark.parametrize("role,name", PLATFORM_DEFAULTS, ids=lambda part: part)
def test_role_default_is_the_platforms_fact(role, name):
    fact = cm.load_platforms().data
    for key in PLATFORM_DEFAULTS[role, name]:
        fact = fact[key]
    assert role_docs.argument_spec(role_docs.ROLES_DIR / role)[name]["default"] == fact


def test_the_profile_puts_the_platforms_venv_first_when_python_stack_is_not_in_the_play():
    template = (role_docs.ROLES_DIR / "ascend_env" / "templates" / "npuenv-ascend.sh.j2").read_text()
    assert f"python_stack_venv | default('{cm.load_platforms().npuenv_files['venv']}')" in template


def test_the_plugins_artefact_folders_are_the_platforms_facts():
    """npuenv_artefact keeps the artefact in root's artefact_cache, npuenv_facts in status_cache; their
    module documentation (text Ansible reads) says the same."""
    import importlib.util

    files = cm.load_platforms().npuenv_files
    plugins = role_docs.ROLES_DIR.parent / "plugins"

    def loaded(name: str):
        spec = importlib.util.spec_from_file_location(f"plugin_{name}", plugins / "action" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    def documented(name: str) -> dict:
        spec = importlib.util.spec_from_file_location(f"doc_{name}", plugins / "modules" / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return yaml.safe_load(module.DOCUMENTATION)["options"]["folder"]

    assert loaded("npuenv_facts").ActionModule.FOLDER == documented("npuenv_facts")["default"] == files["status_cache"]
    assert loaded("npuenv_artefact").DEFAULT_FOLDER.startswith(f"d={files['artefact_cache']};")
    assert f"By default {files['artefact_cache']} for root," in documented("npuenv_artefact")["description"]

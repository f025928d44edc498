"""The roles' variable tables, generated from their argument specs.

Each role's ``meta/argument_specs.yml`` is the one place its variables are described; the table in
the role's README.md is rendered from it between two marker lines (``make role-docs`` rewrites them,
a unit test checks that they are current).
"""
from __future__ import annotations

import sys
from pathlib import Path

import yaml

from compat_matrix.render import splice

from .run import COLLECTION_DIR

ROLES_DIR = COLLECTION_DIR / "roles"
BEGIN = "<!-- role-variables:begin (generated from meta/argument_specs.yml by `make role-docs`; do not edit) -->"
END = "<!-- role-variables:end -->"


def argument_spec(role_dir: Path) -> dict:
    """The options of the role's main entry point, as its argument spec lists them."""
    specs = yaml.safe_load((role_dir / "meta" / "argument_specs.yml").read_text(encoding="utf-8"))
    return specs["argument_specs"]["main"]["options"]


def _flow(value) -> str:
    """A value as YAML writes it on one line; strings as they are, so a command or path reads plainly."""
    if isinstance(value, str) and value:
        return value
    return yaml.safe_dump(value, default_flow_style=True, sort_keys=False, width=float("inf")).strip().removesuffix("\n...")


def _code(text: str) -> str:
    # A '|' would end the table cell, even inside a code span.
    return "`" + text.replace("|", "\\|") + "`"


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def variables_table(options: dict) -> str:
    lines = ["| variable | type | default | choices | description |", "|---|---|---|---|---|"]
    for name, option in options.items():
        kind = option.get("type", "str")
        if "elements" in option:
            kind += f" of {option['elements']}"
        if option.get("required"):
            default = "required"
        elif "default" in option:
            default = _code(_flow(option["default"]))
        else:
            default = ""
        choices = ", ".join(_code(_flow(choice)) for choice in option.get("choices", ()))
        lines.append(f"| `{name}` | {kind} | {default} | {choices} | {_cell(option.get('description', ''))} |")
    return "\n".join(lines) + "\n"


def rendered_readme(role_dir: Path) -> str:
    """The role's README.md with its variables table as the argument spec renders it."""
    readme = role_dir / "README.md"
    return splice(readme.read_text(encoding="utf-8"), variables_table(argument_spec(role_dir)), BEGIN, END,
                  "variables")


def role_dirs(roles_dir: Path = ROLES_DIR) -> list[Path]:
    return sorted(path.parent.parent for path in roles_dir.glob("*/meta/argument_specs.yml"))


def update(roles_dir: Path = ROLES_DIR) -> list[Path]:
    """Rewrite each role's table; returns the READMEs that changed."""
    changed = []
    for role_dir in role_dirs(roles_dir):
        readme = role_dir / "README.md"
        text = rendered_readme(role_dir)
        if text != readme.read_text(encoding="utf-8"):
            readme.write_text(text, encoding="utf-8")
            changed.append(readme)
    return changed


if __name__ == "__main__":
    for path in update():
        print(f"updated {path}", file=sys.stderr)

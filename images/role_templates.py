"""The roles' copies of the image templates they share.

The ascend_env role sources the vendor's env scripts with the same shell code as the images'
entrypoint and profile. images/templates/ holds that code once; the role carries a generated copy
because the npuenv.ascend collection must work alone (an air-gapped site installs it without this
package). ``make role-docs`` writes the copies; a unit test checks that they are current.
"""
from __future__ import annotations

import sys
from pathlib import Path

from ansible_run.run import COLLECTION_DIR

from .render import TEMPLATES

# image template -> the role's copy of it
COPIES = {TEMPLATES / "source_env.sh.j2": COLLECTION_DIR / "roles" / "ascend_env" / "templates" / "source_env.sh.j2"}


def copy_text(source: Path) -> str:
    """The role's copy of ``source``: a Jinja comment naming the original, then the original as it is."""
    header = (f"{{# Generated from images/templates/{source.name} by `make role-docs`; "
              "edit that file, not this copy. #}\n")
    return header + source.read_text(encoding="utf-8")


def update() -> list[Path]:
    """Rewrite the copies that differ from their sources; returns those rewritten."""
    changed = []
    for source, copy in COPIES.items():
        text = copy_text(source)
        if not copy.exists() or copy.read_text(encoding="utf-8") != text:
            copy.write_text(text, encoding="utf-8")
            changed.append(copy)
    return changed


if __name__ == "__main__":
    for path in update():
        print(f"updated {path}", file=sys.stderr)

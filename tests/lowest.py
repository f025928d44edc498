"""Constraints that pin each dependency pyproject.toml declares to the lowest version it allows.

    python tests/lowest.py pyproject.toml [EXTRA ...] > constraints.txt

`make test-lowest` installs npuenv with these into a venv of its own and runs the unit tests
there: a lower bound nobody runs is a guess. The bounds stay written once, in pyproject.toml.
A requirement with no lower bound (`torch`) is left out: pip picks it as usual."""
from __future__ import annotations

import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement


def lowest(requirement: str) -> str | None:
    """``name==V`` for a requirement with a lower bound V (``>=`` or ``==``), else None."""
    req = Requirement(requirement)
    bounds = [s.version for s in req.specifier if s.operator in (">=", "==")]
    if len(bounds) > 1:
        raise SystemExit(f"{requirement}: more than one lower bound; write one")
    return f"{req.name}=={bounds[0]}" if bounds else None


def constraints(pyproject: Path, extras: list[str]) -> list[str]:
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    unknown = set(extras) - set(project.get("optional-dependencies", {}))
    if unknown:
        raise SystemExit(f"{pyproject}: no optional dependencies named {', '.join(sorted(unknown))}")
    wanted = project["dependencies"] + [r for e in extras for r in project["optional-dependencies"][e]]
    return sorted({pin for pin in map(lowest, wanted) if pin}, key=str.lower)


if __name__ == "__main__":
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    print("\n".join(constraints(Path(sys.argv[1]), sys.argv[2:])))

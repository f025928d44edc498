"""The dependency closure of a set of wheels, judged for the target.

``pip download --platform/--python-version`` picks wheels for the target but
evaluates environment markers for the host it runs on. This walks the
``Requires-Dist`` graph again with the target's marker values, so that the
wheelhouse holds exactly what the target installs: what is missing is fetched,
what only the host would need is left out.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from .wheels import WheelError, WheelInfo


@dataclass
class Closure:
    chosen: dict[str, WheelInfo] = field(default_factory=dict)       # project -> wheel
    missing: list[Requirement] = field(default_factory=list)         # required, no wheel for it
    conflicts: list[str] = field(default_factory=list)               # a wheel whose version breaks a requirement
    required_by: dict[str, list[str]] = field(default_factory=dict)  # project -> who asked for it
    unused: list[WheelInfo] = field(default_factory=list)            # downloaded, not needed by the target


def index_wheels(wheels: list[WheelInfo], prefer: dict[str, WheelInfo] | None = None) -> dict[str, WheelInfo]:
    """One wheel per project; ``prefer`` wins, otherwise two versions of one project is an error."""
    out: dict[str, WheelInfo] = dict(prefer or {})
    for w in wheels:
        if w.name in (prefer or {}):
            continue
        have = out.get(w.name)
        if have is not None and have.path != w.path and have.version != w.version:
            raise WheelError(f"two versions of {w.name} were fetched ({have.filename}, {w.filename}); "
                             f"pin one in the requirements")
        out.setdefault(w.name, w)
    return out


def compute(roots: list[Requirement], available: dict[str, WheelInfo], env: dict) -> Closure:
    result = Closure()
    queue: list[tuple[Requirement, str]] = [(r, "requested") for r in roots]
    extras_seen: dict[str, set] = {}
    while queue:
        req, parent = queue.pop(0)
        name = canonicalize_name(req.name)
        result.required_by.setdefault(name, [])
        if parent not in result.required_by[name]:
            result.required_by[name].append(parent)
        wheel = available.get(name)
        if wheel is None:
            if all(canonicalize_name(m.name) != name for m in result.missing):
                result.missing.append(req)
            continue
        if req.specifier and not req.specifier.contains(wheel.version, prereleases=True):
            result.conflicts.append(f"{parent} requires {req}, but the wheelhouse has {wheel.filename}")
        extras = set(req.extras)
        seen = extras_seen.get(name)
        if seen is not None and extras <= seen:
            continue
        extras_seen[name] = (seen or set()) | extras
        result.chosen[name] = wheel
        for dep in wheel.requirements(env, frozenset(extras_seen[name])):
            queue.append((dep, f"{wheel.name} {wheel.version}"))
    result.unused = [w for n, w in sorted(available.items()) if n not in result.chosen]
    return result

"""Pick the one best row for a set of constraints, and say why.

Ranking, in order (the first difference decides):
  1. active rows before end-of-life ones;
  2. the newest CANN;
  3. the newest torch;
  4. the newest torch_npu (the latest post release of that line).
When nothing fits, the nearest rows are those that break the fewest constraints.
"""
from __future__ import annotations

import platform
import re
from dataclasses import dataclass, fields

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version

from .model import Matrix, Row
from .stack import Stack
from .versions import python_version, release_prefix_matches, vendor_prefix_matches
from .yamlsrc import MatrixError, Problem

RANKING_RULES = (
    "active rows before end-of-life ones",
    "then the newest CANN",
    "then the newest torch",
    "then the newest torch_npu",
)
DEFAULT_CHIP = "910b"
DEFAULT_OS = "ubuntu22.04"
# A CANN version or its prefix: 8, 8.0, 8.0.RC3, 8.5.0, 25.0.RC1.1
_CANN_PREFIX_RE = re.compile(r"\d+(\.(\d+|RC\d+|X))*", re.IGNORECASE)


@dataclass(frozen=True)
class Constraints:
    torch: str | None = None
    torch_npu: str | None = None
    cann: str | None = None
    python: str | None = None
    arch: str | None = None
    chip: str | None = None
    os: str | None = None

    def given(self) -> dict[str, str]:
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name)}

    def describe(self) -> str:
        g = self.given()
        return ", ".join(f"{k}={v}" for k, v in g.items()) or "no constraints"


@dataclass(frozen=True)
class Resolution:
    stack: Stack
    reason: str
    fitting: list[Row]


class NoMatch(Exception):
    def __init__(self, constraints: Constraints, nearest: list[tuple[Row, list[str]]]):
        self.constraints = constraints
        self.nearest = nearest
        lines = [f"no matrix row fits {constraints.describe()}."]
        if nearest:
            lines.append("nearest rows (and what they break):")
            for row, broken in nearest:
                lines.append(f"  torch_npu {row.torch_npu} (torch {row.torch}, CANN {row.cann}, "
                             f"Python {', '.join(row.python_sorted)}, {row.status}): {'; '.join(broken)}")
        super().__init__("\n".join(lines))


def rank_key(row: Row):
    return (row.active, row.cann_version, row.torch_version, row.torch_npu_version)


def version_constraint_problem(name: str, wanted: str) -> str | None:
    """Why ``wanted`` is not a version, a version prefix or a specifier (None when it is one)."""
    text = wanted.strip()
    try:
        if text != wanted or not text:
            raise InvalidVersion(wanted)
        if text[:1] in "<>=!~":
            SpecifierSet(text)
        else:
            Version(text)
    except (InvalidVersion, InvalidSpecifier):
        return (f"{name} {wanted!r} is not a version (2.4.0), a version prefix (2.4) or a specifier "
                f"('>=2.4', '==2.4.0.post2'); quote a specifier in the shell")
    return None


def unknown_row_message(torch_npu: str) -> str:
    """The one message every command gives for a row the matrix does not have."""
    shown = torch_npu[2:] if torch_npu.startswith("==") and not torch_npu.startswith("===") else torch_npu
    return f"unknown row: no torch_npu {shown} in the matrix; `npuenv matrix list` shows the rows"


def version_matches(wanted: str, actual: str) -> bool:
    wanted = wanted.strip()
    if wanted[:1] in "<>=!~":
        try:
            return Version(actual) in SpecifierSet(wanted, prereleases=True)
        except InvalidSpecifier:
            return False
    return release_prefix_matches(wanted, actual)


def violations(row: Row, c: Constraints) -> list[str]:
    out = []
    if c.torch and not version_matches(c.torch, row.torch):
        out.append(f"torch is {row.torch}, not {c.torch}")
    if c.torch_npu and not version_matches(c.torch_npu, row.torch_npu):
        out.append(f"torch_npu is {row.torch_npu}, not {c.torch_npu}")
    if c.cann and not vendor_prefix_matches(c.cann, row.cann_version):
        out.append(f"CANN is {row.cann}, not {c.cann}")
    if c.python and c.python not in row.python:
        out.append(f"no Python {c.python} (has {', '.join(row.python_sorted)})")
    if c.arch and not row.supports_arch(c.arch):
        out.append(f"no {c.arch} wheel")
    return out


def normalise(matrix: Matrix, c: Constraints) -> Constraints:
    """Check the free-form constraints and map aliases (arm64 -> aarch64); usage errors exit 2."""
    p = matrix.platforms
    problems = []
    arch = chip = os_name = None
    if c.arch:
        arch = p.canonical_arch(c.arch)
        if not arch:
            problems.append(f"unknown arch '{c.arch}'; use one of: {', '.join(p.archs)}")
    if c.chip:
        chip = p.canonical_chip(c.chip)
        if not chip:
            problems.append(f"unknown chip '{c.chip}'; use one of: {', '.join(p.chips)}")
    if c.os:
        os_name = c.os if c.os in p.operating_systems else None
        if not os_name:
            problems.append(f"unknown OS '{c.os}'; use one of: {', '.join(p.operating_systems)}")
    if c.python:
        try:
            python_version(c.python)
        except ValueError as e:
            problems.append(f"--python: {e}")
    for name, wanted in (("torch", c.torch), ("torch_npu", c.torch_npu)):
        if wanted:
            why = version_constraint_problem(name, wanted)
            if why:
                problems.append(why)
    if c.cann and not _CANN_PREFIX_RE.fullmatch(c.cann):
        problems.append(f"cann {c.cann!r} is not a CANN version or prefix (8.0, 8.0.RC3, 8.5.0)")
    if problems:
        raise MatrixError([Problem("<constraints>", 0, m) for m in problems])
    if c.torch_npu and all(violations(r, Constraints(torch_npu=c.torch_npu)) for r in matrix.rows):
        raise MatrixError([Problem("<constraints>", 0, unknown_row_message(c.torch_npu))])
    return Constraints(torch=c.torch, torch_npu=c.torch_npu, cann=c.cann, python=c.python,
                       arch=arch, chip=chip, os=os_name)


def host_arch(matrix: Matrix) -> str:
    return matrix.platforms.canonical_arch(platform.machine()) or next(iter(matrix.platforms.archs))


def filter_rows(matrix: Matrix, c: Constraints) -> list[Row]:
    return sorted((r for r in matrix.rows if not violations(r, c)), key=rank_key, reverse=True)


def resolve(matrix: Matrix, constraints: Constraints) -> Resolution:
    c = normalise(matrix, constraints)
    fitting = filter_rows(matrix, c)
    if not fitting:
        nearest = sorted(matrix.rows, key=rank_key, reverse=True)
        nearest.sort(key=lambda r: len(violations(r, c)))  # stable: fewest broken, then best ranked
        raise NoMatch(c, [(r, violations(r, c)) for r in nearest[:3]])
    best = fitting[0]
    defaults = []
    arch = c.arch
    if not arch:
        arch = host_arch(matrix) if best.supports_arch(host_arch(matrix)) else \
            next(a for a in matrix.platforms.archs if best.supports_arch(a))
        defaults.append(f"arch={arch} (this host's, or the first the row's wheels cover)")
    python = c.python or best.python_sorted[-1]
    if not c.python:
        defaults.append(f"python={python} (the newest the row supports)")
    chip = c.chip or DEFAULT_CHIP
    if not c.chip:
        defaults.append(f"chip={chip}")
    os_name = c.os or DEFAULT_OS
    if not c.os:
        defaults.append(f"os={os_name}")
    reason = (f"{len(fitting)} row(s) fit {c.describe()}; chose torch_npu {best.torch_npu} "
              f"(torch {best.torch}, CANN {best.cann}, {best.status}) by the ranking: {', '.join(RANKING_RULES)}.")
    if len(fitting) > 1:
        runner = fitting[1]
        reason += f" Runner-up: torch_npu {runner.torch_npu} (CANN {runner.cann}, {runner.status})."
    if defaults:
        reason += " Defaults: " + ", ".join(defaults) + "."
    stack = Stack(row=best, python=python, arch=arch, chip=chip, os=os_name, platforms=matrix.platforms)
    return Resolution(stack=stack, reason=reason, fitting=fitting)

"""The loaded matrix: rows (one supported stack each) and the platform facts."""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from packaging.requirements import InvalidRequirement, Requirement
from packaging.version import Version

from .versions import VendorVersion, in_range, python_version

# What `npuenv matrix list` and `matrix show` print as JSON: rows as Row.to_dict() gives them, under
# keys of their own with the format's version (a reader refuses another).
ROWS_KEY, ROW_KEY = "npuenv_matrix_rows", "npuenv_matrix_row"
ROWS_VERSION = 1


@dataclass(frozen=True)
class Row:
    torch_npu: str
    torch: str
    torchvision: str
    cann: str
    python: tuple[str, ...]
    packaging: str
    adapter: dict
    hdk: dict
    wheel: dict
    status: str
    sources: dict
    inferred: tuple[str, ...] = ()
    notes: str = ""
    file: str = ""
    line: int = 0

    @cached_property
    def torch_npu_version(self) -> Version:
        return Version(self.torch_npu)

    @cached_property
    def torch_version(self) -> Version:
        return Version(self.torch)

    @cached_property
    def cann_version(self) -> VendorVersion:
        return VendorVersion(self.cann)

    @property
    def active(self) -> bool:
        return self.status == "active"

    @property
    def python_sorted(self) -> list[str]:
        return sorted(self.python, key=python_version)

    def supports_arch(self, arch: str) -> bool:
        return any(p.endswith("_" + arch) for p in self.wheel["platforms"])

    def torch_requirement(self, arch: str) -> str | None:
        return (self.wheel.get("torch_requirement") or {}).get(arch)

    def to_dict(self) -> dict:
        """The row as written in the matrix (no file/line bookkeeping)."""
        return {
            "torch_npu": self.torch_npu,
            "torch": self.torch,
            "torchvision": self.torchvision,
            "cann": self.cann,
            "python": list(self.python),
            "packaging": self.packaging,
            "adapter": dict(self.adapter),
            "hdk": dict(self.hdk),
            "wheel": dict(self.wheel),
            "status": self.status,
            "sources": dict(self.sources),
            "inferred": list(self.inferred),
            "notes": self.notes,
        }


@dataclass(frozen=True)
class Platforms:
    """Archs, chips, OSes, packaging generations and HDK naming (platforms.yaml)."""

    data: dict
    file: str = ""

    @property
    def install_root(self) -> str:
        return self.data["install_root"]

    @property
    def npuenv_files(self) -> dict:
        """Where npuenv puts the Python stack's venv, the login profile script and the staged installers."""
        return self.data["npuenv_files"]

    @property
    def archs(self) -> dict:
        return self.data["archs"]

    @property
    def chips(self) -> dict:
        return self.data["chips"]

    @property
    def operating_systems(self) -> dict:
        return self.data["operating_systems"]

    @property
    def packaging(self) -> dict:
        return self.data["packaging"]

    @property
    def hdk(self) -> dict:
        return self.data["hdk"]

    @property
    def cann_python_deps(self) -> dict[str, str]:
        """Requirement -> import name of the Python packages CANN needs."""
        return self.data["cann_python_deps"]["requirements"]

    @property
    def torchvision_pairs(self) -> dict:
        return self.data["torchvision_pairing"]["pairs"]

    def canonical_arch(self, name: str) -> str | None:
        name = name.strip().lower()
        for arch, spec in self.archs.items():
            if name == arch or name in (spec.get("aliases") or []):
                return arch
        return None

    def canonical_chip(self, name: str) -> str | None:
        name = str(name).strip().lower()
        for chip, spec in self.chips.items():
            if name == chip.lower() or name == str(spec["package_token"]).lower():
                return chip
        return None

    def os_for(self, distribution: str, version: str) -> str | None:
        """The OS key for Ansible's ansible_distribution / ansible_distribution_version."""
        for key, spec in self.operating_systems.items():
            if spec["distribution"].lower() == distribution.lower() and \
                    (version == spec["version"] or version.startswith(spec["version"] + ".")):
                return key
        return None

    def packaging_for(self, cann: VendorVersion) -> str | None:
        for name, spec in self.packaging.items():
            if in_range(cann, spec["cann_min"], spec.get("cann_max")):
                return name
        return None


@dataclass
class Matrix:
    rows: list[Row]
    platforms: Platforms
    file: str = ""
    # PyPI releases deliberately not rows: [{torch_npu, reason, source}]
    excluded: list[dict] = field(default_factory=list)
    # When its facts were gathered (YYYY-MM-DD; the file's `generated:`), None where a matrix does not say
    generated: str | None = None

    def find(self, torch_npu: str) -> Row | None:
        for row in self.rows:
            if row.torch_npu == torch_npu:
                return row
        return None


def torch_pin(requirement: str) -> Version | None:
    """The exact torch version a ``torch==X`` requirement pins (local label dropped)."""
    try:
        req = Requirement(requirement)
    except InvalidRequirement:
        return None
    for spec in req.specifier:
        if spec.operator in ("==", "==="):
            try:
                v = Version(spec.version.removesuffix(".*"))
            except ValueError:
                return None
            return Version(v.public)
    return None

"""Load and check the matrix: the one loader every other part uses."""
from __future__ import annotations

import datetime
from pathlib import Path

from packaging.version import Version

from . import schema
from .model import Matrix, Platforms, Row, torch_pin
from .versions import VendorVersion, in_range, python_tag
from .yamlsrc import Located, MatrixError, Problem, load_located

DATA_DIR = Path(__file__).resolve().parent / "data"
DEFAULT_MATRIX = DATA_DIR / "matrix.yaml"
DEFAULT_PLATFORMS = DATA_DIR / "platforms.yaml"
# Where a row's wheel.url must point for each wheel.index: the address starts the URL.
WHEEL_URL_PREFIXES = {"pypi": "https://pypi.org/", "release_page": "https://github.com/"}

class _WholeNumber(schema.Field):
    """A whole number of at least 1 (MiB, a factor)."""

    hint = "a whole number of at least 1"

    def check(self, value):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            return f"must be {self.hint}, got {value!r}"
        return None


_MIB = _WholeNumber()

_PLATFORMS_SHAPE = schema.Shape(
    what="platforms file",
    fields={
        "install_root": (schema.STR, True),
        "install_records": (schema.MapOf(schema.STR, schema.STR), True),
        "npuenv_files": (schema.Shape({k: (schema.STR, True) for k in (
            "venv", "profile_script", "installers_stage", "wheelhouse_stage", "artefact_cache", "status_cache")},
            "npuenv_files"), True),
        "archs": (schema.MapOf(schema.STR, schema.Shape({"aliases": (schema.ListOf(schema.STR, nonempty=False), False)}, "arch")), True),
        "chips": (schema.MapOf(schema.STR, schema.Shape({
            "description": (schema.STR, True),
            "package_token": (schema.STR, True),
            "npu_smi_name": (schema.STR, True),
            "opp_kernel_dir": (schema.STR, True),
            "npus_per_node": (schema.Choice(tuple(range(1, 65))), True),
            "dies_per_npu": (schema.Choice((1, 2)), True),
            "package_overrides": (schema.MapOf(schema.STR, schema.STR), False),
            "source": (schema.URL, True),
        }, "chip")), True),
        "operating_systems": (schema.MapOf(schema.STR, schema.Shape({
            "family": (schema.Choice(("debian", "redhat")), True),
            "distribution": (schema.STR, True),
            "version": (schema.STR, True),
            "base_image": (schema.STR, True),
            "build_local": (schema.Choice((True, False)), False),
        }, "operating system")), True),
        "packaging": (schema.MapOf(schema.STR, schema.Shape({
            "description": (schema.STR, True),
            "cann_min": (schema.VENDOR, True),
            "cann_max": (schema.Optional(inner=schema.VENDOR), True),
            "packages": (schema.MapOf(schema.Choice(("toolkit", "kernels", "nnal")), schema.STR), True),
            "paths": (schema.MapOf(schema.STR, schema.STR), True),
            "env": (schema.MapOf(schema.STR, schema.STR), True),
            "env_paths": (schema.MapOf(schema.STR, schema.ListOf(schema.STR)), True),
            "source": (schema.URL, True),
        }, "packaging generation")), True),
        "hdk": (schema.Shape({
            "packages": (schema.MapOf(schema.Choice(("driver", "firmware")), schema.STR), True),
            "env_paths": (schema.MapOf(schema.STR, schema.ListOf(schema.STR)), True),
            "device_nodes": (schema.ListOf(schema.STR), True),
            "run_user": (schema.STR, True),
            "paths": (schema.MapOf(schema.STR, schema.STR), True),
            "source": (schema.URL, True),
        }, "hdk"), True),
        "install_flags": (schema.Shape({
            **{k: (schema.ListOf(schema.STR), True)
               for k in ("driver", "driver_upgrade", "driver_force", "firmware", "firmware_upgrade", "toolkit",
                         "toolkit_upgrade", "kernels", "nnal", "needs_toolkit_env")},
            "source": (schema.URL, True),
        }, "install_flags"), True),
        "disk_space": (schema.Shape({
            **{k: (_MIB, True) for k in ("toolkit_install_mb", "toolkit_upgrade_extra_mb", "driver_mb", "firmware_mb")},
            "extract_factor": (_MIB, True),
            "source": (schema.URL, True),
        }, "disk_space"), True),
        "nnal_env": (schema.Shape({
            "args": (schema.ListOf(schema.STR), True),
            "env": (schema.MapOf(schema.STR, schema.STR), True),
            "env_paths": (schema.MapOf(schema.STR, schema.ListOf(schema.STR)), True),
            "source": (schema.URL, True),
        }, "nnal_env"), True),
        "cann_python_deps": (schema.Shape({
            "requirements": (schema.MapOf(schema.STR, schema.STR), True),
            "source": (schema.URL, True),
        }, "cann_python_deps"), True),
        "torch_cxx11_abi": (schema.Shape({
            "since": (schema.MapOf(schema.STR, schema.VERSION), True),
            "source": (schema.URL, True),
        }, "torch_cxx11_abi"), True),
        "torchvision_pairing": (schema.Shape({
            "source": (schema.URL, True),
            "pairs": (schema.MapOf(schema.STR, schema.STR), True),
        }, "torchvision pairing"), True),
    },
)


class _Date(schema.Field):
    """A calendar date written as YYYY-MM-DD (YAML reads it unquoted as a date; quoted, it is checked here)."""

    hint = "a date written YYYY-MM-DD"

    def check(self, value):
        if isinstance(value, datetime.date) and not isinstance(value, datetime.datetime):
            return None
        try:
            datetime.date.fromisoformat(value if isinstance(value, str) and len(value) == 10 else "")
        except ValueError:
            return f"must be {self.hint}, e.g. 2026-11-23; got {value!r}"
        return None


# The date the matrix's facts were gathered (`npuenv --version` shows it); optional in a matrix of one's own.
MATRIX_DATE_KEY = "generated"
# The matrix file's top-level keys.
TOP_LEVEL_KEYS = (MATRIX_DATE_KEY, "rows", "excluded")

_EXCLUDED_SHAPE = schema.Shape({"torch_npu": (schema.VERSION, True), "reason": (schema.PROSE, True),
                                "source": (schema.URL, True)}, "excluded release")


def load_platforms(path: Path | str = DEFAULT_PLATFORMS) -> Platforms:
    loc = load_located(path)
    problems = list(loc.problems)
    schema.validate_value(_PLATFORMS_SHAPE, loc.data, (), loc, problems, "")
    if problems:
        raise MatrixError(problems)
    return Platforms(data=loc.data, file=str(path))


def load_matrix(path: Path | str = DEFAULT_MATRIX, platforms: Platforms | None = None,
                text: str | None = None) -> Matrix:
    """Load, check and return the matrix; raise MatrixError listing every problem."""
    platforms = platforms or load_platforms()
    loc = load_located(path, text)
    problems = list(loc.problems)
    rows = _rows(loc, platforms, problems)
    if problems:
        raise MatrixError(sorted(problems, key=lambda p: (p.file, p.line)))
    generated = loc.data.get(MATRIX_DATE_KEY)
    return Matrix(rows=rows, platforms=platforms, file=str(path), excluded=loc.data.get("excluded") or [],
                  generated=None if generated is None else str(generated))


def _rows(loc: Located, platforms: Platforms, problems: list[Problem]) -> list[Row]:
    data = loc.data
    if not isinstance(data, dict) or not isinstance(data.get("rows"), list) or not data["rows"]:
        problems.append(Problem(loc.file, loc.line(("rows",)),
                                "the matrix must be a mapping with a non-empty 'rows:' list of stacks"))
        return []
    for key in data:
        if key not in TOP_LEVEL_KEYS:
            problems.append(Problem(loc.file, loc.line((key,)),
                                    f"unknown top-level key '{key}'; the matrix file holds "
                                    f"{', '.join(repr(k + ':') for k in TOP_LEVEL_KEYS[:-1])} and "
                                    f"'{TOP_LEVEL_KEYS[-1]}:'"))
    date_line = loc.line((MATRIX_DATE_KEY,))
    if MATRIX_DATE_KEY in data and not any(p.line == date_line for p in problems):   # one problem a line
        schema.validate_value(_Date(), data[MATRIX_DATE_KEY], (MATRIX_DATE_KEY,), loc, problems, MATRIX_DATE_KEY)
    if "excluded" in data:
        schema.validate_value(schema.ListOf(_EXCLUDED_SHAPE), data["excluded"], ("excluded",), loc, problems, "excluded")
    shape = schema.row_shape(platforms.packaging.keys(), platforms.archs.keys())
    rows, first_line = [], {}
    for i, raw in enumerate(data["rows"]):
        path = ("rows", i)
        found: list[Problem] = []
        shape.validate(raw, path, loc, found)
        label = raw.get("torch_npu") if isinstance(raw, dict) else None
        label = f"row torch_npu {label}" if isinstance(label, str) else f"row {i + 1}"
        problems.extend(Problem(p.file, p.line, f"{label}: {p.message}") for p in found)
        if found:
            continue  # cross-field checks need well-typed fields
        row = Row(
            torch_npu=raw["torch_npu"], torch=raw["torch"], torchvision=raw["torchvision"],
            cann=raw["cann"], python=tuple(raw["python"]), packaging=raw["packaging"],
            adapter=raw["adapter"], hdk=raw["hdk"], wheel=raw["wheel"], status=raw["status"],
            sources=raw["sources"], inferred=tuple(raw.get("inferred") or ()), notes=raw.get("notes", ""),
            file=loc.file, line=loc.line(path),
        )
        for p, message in _row_problems(row, raw, platforms):
            problems.append(Problem(loc.file, loc.line(path + p), f"{label}: {message}"))
        if row.torch_npu in first_line:
            problems.append(Problem(loc.file, row.line,
                                    f"{label}: torch_npu: duplicate row for torch_npu {row.torch_npu} (first at line "
                                    f"{first_line[row.torch_npu]}); merge the two rows into one"))
        else:
            first_line[row.torch_npu] = row.line
        rows.append(row)
    return rows


def _row_problems(row: Row, raw: dict, platforms: Platforms):
    """Checks that span fields of one row; yields (path inside the row, message)."""
    tn, torch = row.torch_npu_version, row.torch_version
    if tn.release[:3] != torch.release[:3]:
        yield ("torch",), (f"torch: torch_npu {row.torch_npu} is built for torch {'.'.join(map(str, tn.release[:3]))}, "
                           f"not {row.torch}; fix the torch or torch_npu version")

    mm = f"{torch.major}.{torch.minor}"
    want_tv = platforms.torchvision_pairs.get(mm)
    tv = Version(row.torchvision)
    if want_tv is None:
        yield ("torch",), (f"torch: no torchvision pairing is known for torch {mm}; add \"{mm}\" to "
                           f"torchvision_pairing in platforms.yaml (from the pytorch/vision table)")
    elif f"{tv.major}.{tv.minor}" != want_tv:
        yield ("torchvision",), (f"torchvision: {row.torchvision} does not pair with torch {row.torch} "
                                 f"(torch {mm} pairs with torchvision {want_tv}.x); use torchvision {want_tv}.x")

    tags = set(row.wheel["python_tags"])
    for i, py in enumerate(row.python):
        if python_tag(py) not in tags:
            yield ("python", i), (f"python: Python {py} is listed but the row's wheels cover only "
                                  f"{', '.join(sorted(tags))}; remove {py} or add its {python_tag(py)} wheel to wheel.python_tags")

    expected = platforms.packaging_for(row.cann_version)
    if expected is None:
        yield ("cann",), (f"cann: CANN {row.cann} falls in no packaging generation of platforms.yaml; "
                          f"widen a generation's cann_min/cann_max or fix the version")
    elif expected != row.packaging:
        yield ("packaging",), (f"packaging: CANN {row.cann} uses the '{expected}' packaging generation, not "
                               f"'{row.packaging}'; write packaging: {expected}")

    if not in_range(VendorVersion(row.hdk["version"]), row.hdk["min"], row.hdk.get("max")):
        yield ("hdk", "version"), (f"hdk.version: {row.hdk['version']} lies outside its own compatible range "
                                   f"{row.hdk['min']} .. {row.hdk.get('max') or 'newer'}; fix hdk.min/max or hdk.version")

    if not any(row.supports_arch(a) for a in platforms.archs):
        yield ("wheel", "platforms"), (f"wheel.platforms: none of {row.wheel['platforms']} is for a known arch "
                                       f"({', '.join(platforms.archs)}); use wheel platform tags such as manylinux_2_17_aarch64")
    prefix = WHEEL_URL_PREFIXES[row.wheel["index"]]
    if not row.wheel["url"].startswith(prefix):
        yield ("wheel", "url"), (f"wheel.url: a wheel with index '{row.wheel['index']}' must have a URL that starts "
                                 f"with {prefix}; got {row.wheel['url']}")

    for arch, req in (row.wheel.get("torch_requirement") or {}).items():
        if req is None:
            continue
        pinned = torch_pin(req)
        if pinned is None or pinned != torch:
            yield ("wheel", "torch_requirement", arch), (
                f"wheel.torch_requirement.{arch}: '{req}' does not pin the row's torch {row.torch}; "
                f"write the Requires-Dist the {arch} wheel publishes (e.g. torch=={row.torch})")

    for i, name in enumerate(row.inferred):
        if not _has_path(raw, name):
            yield ("inferred", i), (f"inferred: '{name}' names no field of this row; use a dotted field name such as hdk.min")


def _has_path(raw: dict, dotted: str) -> bool:
    node = raw
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True

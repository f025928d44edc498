"""The lock: a matrix row resolved once, for every command that acts on it.

``npuenv lock`` resolves row constraints through the matrix into one JSON
document: the row, the Python and chip, and one entry per arch/OS with the
whole resolved stack (versions, installer file names, paths, environment),
the sha256 of each vendor installer (read from the installer folder's
SHA256SUMS, so one folder may hold many rows' installers) and the digest of
the wheelhouse. deploy, image build, bundle make and validate take the lock
and never re-resolve on their own: they rebuild the Stack from the lock's exact
pins and refuse a matrix that no longer gives the same facts. Nodes and images
carry the lock's digest; validation reads the lock back from them.

Row constraints mean the same everywhere (``constraints_from_mapping``): ``row``
is one row exactly (its torch_npu version); ``torch_npu``, ``torch`` and
``cann`` match a version by prefix or specifier; ``python``, ``arch``, ``chip``
and ``os`` are exact.
"""
from __future__ import annotations

import fnmatch
import json
import math
from dataclasses import dataclass
from pathlib import Path

from . import checksums, outputs
from .errors import UserError
from .model import Matrix
from .resolver import Constraints, resolve, version_constraint_problem, version_matches
from .stack import Stack

# The lock's format: a reader refuses any other (the key names the document's kind too).
FORMAT_KEY = "npuenv_lock"
FORMAT = 1
# The installers a deployable lock pins, in the vendor's install order.
INSTALLER_KINDS = ("driver", "firmware", "toolkit", "kernels", "nnal")
# The constraint names every command and the inventory's npuenv_row accept.
CONSTRAINT_KEYS = ("row", "torch_npu", "torch", "cann", "python", "arch", "chip", "os")
# A lock is a few kilobytes per entry; anything far larger is not a lock.
MAX_LOCK_BYTES = 4 << 20


def cli_name(key: str) -> str:
    """A constraint as the command line spells it (--torch-npu)."""
    return "--" + key.replace("_", "-")


def inventory_name(key: str) -> str:
    """A constraint as an inventory spells it (npuenv_row.torch_npu)."""
    return "npuenv_row." + key


def constraints_from_mapping(values: dict, name=cli_name) -> Constraints:
    """Row constraints from a mapping (the command line's options, an inventory's npuenv_row).

    ``row`` means that row exactly; ``torch_npu`` is a prefix like the other
    versions (2.12.0 also matches its post releases). ``name(key)`` spells a
    constraint in messages as its source does."""
    unknown = sorted(set(values) - set(CONSTRAINT_KEYS))
    if unknown:
        raise UserError(f"{', '.join(map(name, unknown))}: unknown row constraint(s); use "
                        f"{', '.join(map(name, CONSTRAINT_KEYS))}")
    given = {}
    for key in CONSTRAINT_KEYS:
        value = values.get(key)
        if value is None or value == "":
            continue
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise UserError(f"{name(key)}: {value!r} is not a version; write it as a string, e.g. \"2.12.0\"")
        given[key] = str(value)
    row = given.pop("row", None)
    if row:
        if version_constraint_problem(name("row"), row) or row[:1] in "<>=!~":
            raise UserError(f"{name('row')} {row!r} is not a torch_npu version such as 2.12.0 or 2.4.0.post2; "
                            f"`npuenv matrix list` shows the rows")
        wanted = given.get("torch_npu")
        if wanted and version_constraint_problem(name("torch_npu"), wanted):
            raise UserError(version_constraint_problem(name("torch_npu"), wanted))
        if wanted and not version_matches(wanted, row):
            raise UserError(f"{name('row')} {row} and {name('torch_npu')} {wanted} contradict each other (row {row} "
                            f"is not torch_npu {wanted}); give only {name('row')}")
        given["torch_npu"] = "==" + row
    return Constraints(**given)


def canonical_json(data) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode()


def digest_of(data: dict) -> str:
    """The lock's digest: sha256 of its canonical JSON without the digest itself."""
    return "sha256:" + checksums.sha256_bytes(canonical_json({k: v for k, v in data.items() if k != "digest"}))


def entry_key(arch: str, os_name: str) -> str:
    return f"{arch}/{os_name}"


@dataclass(frozen=True)
class Lock:
    """A loaded, checked lock document."""

    data: dict

    @property
    def digest(self) -> str:
        return self.data["digest"]

    @property
    def row(self) -> dict:
        return self.data["row"]

    @property
    def entries(self) -> dict[str, dict]:
        return self.data["entries"]

    def entry(self, arch: str, os_name: str) -> dict:
        """The entry for one platform; UserError naming the platforms the lock has."""
        found = self.entries.get(entry_key(arch, os_name))
        if found is None:
            raise UserError(f"the lock {self.digest[:19]} has no entry for {entry_key(arch, os_name)} (it has "
                            f"{', '.join(self.entries)}); lock again with --arch {arch} --os {os_name}")
        return found

    def stack(self, matrix: Matrix, arch: str | None = None, os_name: str | None = None) -> Stack:
        """The Stack of one entry (the only one when the lock has one), rebuilt from the lock's exact
        pins; a matrix that now gives other facts for them is refused."""
        if arch is None and os_name is None:
            if len(self.entries) != 1:
                raise UserError(f"the lock has {len(self.entries)} platforms ({', '.join(self.entries)}); "
                                f"name one with --arch and --os")
            entry = next(iter(self.entries.values()))
        else:
            entry = self.entry(arch, os_name)
        pins = Constraints(torch_npu="==" + self.row["torch_npu"], python=self.row["python"],
                           chip=self.row["chip"], arch=entry["arch"], os=entry["os"])
        stack = resolve(matrix, pins).stack
        now = stack.with_environment()
        if canonical_json(now) != canonical_json(entry["stack"]):
            changed = sorted(k for k in set(now) | set(entry["stack"]) if now.get(k) != entry["stack"].get(k))
            raise UserError(f"the matrix ({matrix.file}) no longer gives the locked stack of torch_npu "
                            f"{self.row['torch_npu']} ({', '.join(changed)} differ); make a new lock with "
                            f"`npuenv lock` and roll it out, or use the matrix the lock was made from")
        return stack

    def installer(self, arch: str, os_name: str, kind: str) -> dict:
        """{name, sha256} of one installer of an entry; UserError when the lock does not pin it."""
        pinned = self.entry(arch, os_name).get("installers", {}).get(kind)
        if not pinned or not pinned.get("sha256"):
            raise UserError(f"the lock {self.digest[:19]} does not pin the {kind} installer for "
                            f"{entry_key(arch, os_name)}; lock again with --installers DIR (the folder with the "
                            f"vendor's .run files and their SHA256SUMS)")
        return pinned

    def summary(self) -> str:
        r = self.row
        return (f"torch_npu {r['torch_npu']} (torch {r['torch']}, CANN {r['cann']}, HDK {r['hdk']}), "
                f"Python {r['python']}, chip {r['chip']}; {', '.join(self.entries)}; lock {self.digest[:19]}")


def _platforms(matrix: Matrix, c: Constraints, stack: Stack) -> list[tuple[str, str]]:
    """The (arch, os) entries of a lock: the ones asked for, else every arch the row's wheels cover
    and every OS the matrix supports."""
    archs = [c.arch] if c.arch else [a for a in matrix.platforms.archs if stack.row.supports_arch(a)]
    oses = [c.os] if c.os else list(matrix.platforms.operating_systems)
    return [(a, o) for a in archs for o in oses]


def _installers(stack: Stack, sums: dict[str, str], directory: Path, pinned: dict[str, str]) -> dict[str, dict]:
    """{kind: {name, sha256}} for a stack from an installer folder's SHA256SUMS. The firmware file
    carries the firmware's own version, which the matrix does not track: it is the one file of the
    chip's firmware pattern in the folder, or the one named with --installer firmware=NAME."""
    out = {}
    for kind in INSTALLER_KINDS:
        pattern = stack.packages[kind]
        name = pinned.get(kind)
        if name is not None:
            if not fnmatch.fnmatchcase(name, pattern):
                raise UserError(f"--installer {kind}={name}: not a {kind} package of this stack (its name is "
                                f"{pattern})")
            matches = [name] if name in sums else []
        else:
            matches = sorted(n for n in sums if fnmatch.fnmatchcase(n, pattern))
        if not matches:
            raise UserError(f"{directory}/{checksums.SUMS_FILE} lists no {pattern}; put the vendor's {kind} package "
                            f"for {stack.arch} in {directory} and add its sha256 line")
        if len(matches) > 1:
            raise UserError(f"{directory} holds {len(matches)} {kind} packages for this stack ({', '.join(matches)}); "
                            f"name the one of HDK {stack.row.hdk['version']} with --installer {kind}=NAME")
        path = directory / matches[0]
        # The size lets a node check its free space before anything is copied (null: only listed).
        size = path.stat().st_size if path.is_file() else None
        out[kind] = {"name": matches[0], "sha256": sums[matches[0]], "size": size}
    return out


def wheelhouse_digest(directory: Path) -> str:
    """A wheelhouse's digest: the sha256 of its SHA256SUMS, which lists every wheel's sha256."""
    sums = Path(directory) / checksums.SUMS_FILE
    data = outputs.read_text(sums, "the wheelhouse's SHA256SUMS").encode("utf-8")
    return "sha256:" + checksums.sha256_bytes(data)


def make(matrix: Matrix, constraints: Constraints, *, installers: Path | None = None,
         wheelhouses: list[Path] = (), pinned_installers: dict[str, str] | None = None) -> Lock:
    """Resolve ``constraints`` once into a lock. With ``installers`` every entry pins its vendor
    installers by name and sha256 (arches with none of theirs in the folder are left out unless
    asked for by --arch); each wheelhouse is recorded for the arch it was built for."""
    resolution = resolve(matrix, constraints)
    best = resolution.stack
    sums = checksums.read_sums(installers) if installers else None
    entries, skipped = {}, []
    for arch, os_name in _platforms(matrix, constraints, best):
        stack = resolve(matrix, Constraints(torch_npu="==" + best.row.torch_npu, python=best.python,
                                            chip=best.chip, arch=arch, os=os_name)).stack
        entry = {"arch": arch, "os": os_name, "stack": stack.with_environment()}
        if sums is not None:
            try:
                entry["installers"] = _installers(stack, sums, installers, pinned_installers or {})
            except UserError:
                if constraints.arch:
                    raise
                skipped.append(arch)
                continue
        entries[entry_key(arch, os_name)] = entry
    if not entries:
        raise UserError(f"{installers} holds the installers of no arch this row supports; put the row's vendor "
                        f"packages there (`npuenv matrix resolve ... --format json` lists them under packages)")
    houses = {}
    for house in wheelhouses:
        arch = _wheelhouse_arch(house, best)
        houses[arch] = wheelhouse_digest(house)
    row = best.row
    data = {
        FORMAT_KEY: FORMAT,
        "constraints": constraints.given(),
        "reason": resolution.reason,
        "matrix_sha256": "sha256:" + checksums.sha256_file(Path(matrix.file)) if Path(matrix.file).is_file() else None,
        "row": {"torch_npu": row.torch_npu, "torch": row.torch, "torchvision": row.torchvision, "cann": row.cann,
                "hdk": row.hdk["version"], "python": best.python, "chip": best.chip},
        "entries": entries,
        "wheelhouses": houses,
        "skipped_archs": sorted(set(skipped)),
    }
    data["digest"] = digest_of(data)
    return Lock(data)


def _wheelhouse_arch(house: Path, stack: Stack) -> str:
    """The arch a wheelhouse was built for, after checking it is this row's and Python's."""
    from_manifest = json.loads(outputs.read_text(Path(house) / "manifest.json", "the wheelhouse's manifest.json"))
    s, target = from_manifest.get("stack") or {}, from_manifest.get("target") or {}
    if s.get("torch_npu") != stack.row.torch_npu or s.get("python") != stack.python:
        raise UserError(f"--wheelhouse {house}: built for torch_npu {s.get('torch_npu')} / Python {s.get('python')}, "
                        f"not the locked torch_npu {stack.row.torch_npu} / Python {stack.python}; build it with "
                        f"`npuenv wheelhouse build` for this row")
    arch = target.get("arch") or s.get("arch")
    if not isinstance(arch, str):
        raise UserError(f"--wheelhouse {house}: its manifest names no arch; rebuild it")
    return arch


def _finite(value) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(_finite(v) for v in value.values())
    if isinstance(value, list):
        return all(_finite(v) for v in value)
    return True


def parse(text: str, where: str) -> Lock:
    """A lock from its JSON text, its format and digest checked (UserError naming ``where``)."""
    def refuse(constant):
        raise ValueError(f"{constant} is not a number JSON allows")

    try:
        data = json.loads(text, parse_constant=refuse)
    except ValueError as e:
        raise UserError(f"{where}: not a lock (invalid JSON: {e}); make one with `npuenv lock`") from None
    if not isinstance(data, dict) or data.get(FORMAT_KEY) != FORMAT:
        found = data.get(FORMAT_KEY) if isinstance(data, dict) else None
        raise UserError(f"{where}: not a lock of format {FORMAT} ({FORMAT_KEY} is {found!r}); make one with "
                        f"`npuenv lock` of this npuenv")
    for key, kind in (("row", dict), ("entries", dict), ("digest", str)):
        if not isinstance(data.get(key), kind):
            raise UserError(f"{where}: the lock's {key} is missing or not a {kind.__name__}; make a new lock")
    for name in ("torch_npu", "torch", "cann", "hdk", "python", "chip"):
        if not isinstance(data["row"].get(name), str):
            raise UserError(f"{where}: the lock's row has no {name}; make a new lock")
    for key, entry in data["entries"].items():
        if not (isinstance(entry, dict) and isinstance(entry.get("stack"), dict)
                and key == entry_key(str(entry.get("arch")), str(entry.get("os")))):
            raise UserError(f"{where}: the lock's entry {key!r} is malformed; make a new lock")
    if not _finite(data):
        raise UserError(f"{where}: the lock holds a non-finite number; make a new lock")
    if digest_of(data) != data["digest"]:
        raise UserError(f"{where}: the lock's digest does not match its content (it was edited or damaged); "
                        f"make a new lock with `npuenv lock` instead of editing one")
    return Lock(data)


def load(path: Path | str) -> Lock:
    path = Path(path)
    return parse(outputs.read_text(path, "the lock file", MAX_LOCK_BYTES), str(path))


def render(lock: Lock) -> str:
    return json.dumps(lock.data, indent=1, sort_keys=True, allow_nan=False) + "\n"


def write(lock: Lock, path: Path | str, option: str | None = "--out") -> Path:
    return outputs.write_text(path, render(lock), option)

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

A host takes the entry of its own platform (``machine`` from its arch and
os-release, or from Ansible's facts; ``entry_for`` refuses one no entry fits).
``summary_text`` and ``diff`` are what `npuenv lock show` and `npuenv lock diff`
print. The matrix is the one --matrix names, for the Ansible runs too
(``use_matrix``, ``matrix_env``: $NPUENV_MATRIX, which the playbooks' lookups read
with ``matrix_from_env``).
"""
from __future__ import annotations

import fnmatch
import json
import math
import os
import platform as host_platform
from dataclasses import dataclass
from pathlib import Path

from packaging.version import InvalidVersion, Version

from . import checksums, outputs
from .errors import UserError
from .model import Matrix, Platforms
from .resolver import Constraints, NoMatch, resolve, version_constraint_problem, version_matches
from .stack import Stack
from .versions import VendorVersion

# The lock's format: a reader refuses any other (the key names the document's kind too).
FORMAT_KEY = "npuenv_lock"
FORMAT = 1
# The installers a deployable lock pins, in the vendor's install order.
INSTALLER_KINDS = ("driver", "firmware", "toolkit", "kernels", "nnal")
# The constraint names every command and the inventory's npuenv_row accept.
CONSTRAINT_KEYS = ("row", "torch_npu", "torch", "cann", "python", "arch", "chip", "os")
# A lock is a few kilobytes per entry; anything far larger is not a lock.
MAX_LOCK_BYTES = 4 << 20
# Where `npuenv lock` writes the lock when --out is not given.
DEFAULT_FILE = "npuenv.lock.json"
# The matrix every Ansible run npuenv starts resolves in (the playbooks' npuenv_stack lookup reads it):
# the one --matrix names, so that a command and the playbooks it runs never use two matrices.
MATRIX_ENV = "NPUENV_MATRIX"


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

    def select(self, arch: str | None = None, os_name: str | None = None, prefer_arch: str | None = None) -> dict:
        """The one entry of this arch and/or OS (either may be left out when the lock has only one
        entry that fits; when several fit, those of ``prefer_arch``, this host's, are taken);
        UserError naming the entries when none or several fit."""
        fits = [e for e in self.entries.values()
                if (arch is None or e["arch"] == arch) and (os_name is None or e["os"] == os_name)]
        if len(fits) > 1 and arch is None and prefer_arch:
            fits = [e for e in fits if e["arch"] == prefer_arch] or fits
        if len(fits) == 1:
            return fits[0]
        asked = " and ".join(f"{k} {v}" for k, v in (("arch", arch), ("OS", os_name)) if v)
        if not fits:
            raise UserError(f"the lock {self.digest[:19]} has no entry for {asked} (it has "
                            f"{', '.join(self.entries)}); name one of those with --arch and --os, or lock again "
                            f"for the platform you need")
        raise UserError(f"the lock {self.digest[:19]} has {len(fits)} entries{' for ' + asked if asked else ''} "
                        f"({', '.join(e['arch'] + '/' + e['os'] for e in fits)}); name one with --arch and --os")

    def stack(self, matrix: Matrix, arch: str | None = None, os_name: str | None = None) -> Stack:
        """The Stack of one entry (``select``: the only one when the lock has one), rebuilt from the
        lock's exact pins; a matrix that now gives other facts for them is refused."""
        entry = self.select(arch, os_name)
        return self._rebuild(matrix, entry)

    def stacks(self, matrix: Matrix) -> dict[str, Stack]:
        """Every entry's Stack (each checked as ``stack`` checks one)."""
        return {key: self._rebuild(matrix, entry) for key, entry in self.entries.items()}

    def _rebuild(self, matrix: Matrix, entry: dict) -> Stack:
        pins = Constraints(torch_npu="==" + self.row["torch_npu"], python=self.row["python"],
                           chip=self.row["chip"], arch=entry["arch"], os=entry["os"])
        try:
            stack = resolve(matrix, pins).stack
        except NoMatch:
            raise UserError(f"the matrix ({matrix.file}) has no row torch_npu {self.row['torch_npu']} for Python "
                            f"{self.row['python']} on {entry['arch']} any more, which the lock {self.digest[:19]} "
                            f"pins; use the matrix the lock was made from, or make a new lock") from None
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


def _installers(stack: Stack, sums: dict[str, str], directory: Path, pinned: dict[str, str],
                kinds: tuple[str, ...] = INSTALLER_KINDS) -> dict[str, dict]:
    """{kind: {name, sha256}} for a stack from an installer folder's SHA256SUMS. The firmware file
    carries the firmware's own version, which the matrix does not track: it is the one file of the
    chip's firmware pattern in the folder, or the one named with --installer firmware=NAME."""
    out = {}
    for kind in kinds:
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


def wheelhouse_problem(lock_data: dict, arch: str, house: Path) -> str:
    """Why ``house`` is not the wheelhouse the lock recorded for ``arch`` ('' when it is, or when the
    lock records none for that arch): every command that installs from a wheelhouse checks it."""
    recorded = (lock_data.get("wheelhouses") or {}).get(arch)
    if not recorded:
        return ""
    digest = wheelhouse_digest(house)
    return "" if digest == recorded else f"{house} has digest {digest}, the lock recorded {recorded} for {arch}"


def parse_installer_choices(items, option: str = "--installer") -> dict[str, str]:
    """``["firmware=NAME", ...]`` (the --installer KIND=NAME options) as {kind: name}."""
    chosen = {}
    for item in items or ():
        kind, sep, name = str(item).partition("=")
        if not sep or not name or "/" in name:
            raise UserError(f"{option} {item!r}: use KIND=FILE (a file name, no folder), e.g. "
                            f"firmware=Ascend-hdk-910b-npu-firmware_7.8.0.2.212.run")
        if kind not in INSTALLER_KINDS:
            raise UserError(f"{option} {item}: {kind!r} is not an installer kind; use one of "
                            f"{', '.join(INSTALLER_KINDS)}")
        if kind in chosen and chosen[kind] != name:
            raise UserError(f"{option}: {kind} is named twice ({chosen[kind]}, {name}); name one file per kind")
        chosen[kind] = name
    return chosen


def make(matrix: Matrix, constraints: Constraints, *, installers: Path | None = None,
         wheelhouses: list[Path] = (), pinned_installers: dict[str, str] | None = None,
         kinds: tuple[str, ...] = INSTALLER_KINDS) -> Lock:
    """Resolve ``constraints`` once into a lock. With ``installers`` every entry pins its vendor
    installers (``kinds`` of them: an image needs no driver) by name and sha256 (arches with none of
    theirs in the folder are left out unless asked for by --arch, and the lock says why); each
    wheelhouse is recorded for the arch it was built for."""
    unknown = sorted(set(pinned_installers or {}) - set(kinds))
    if unknown:
        raise UserError(f"--installer {', '.join(unknown)}: not an installer this lock pins "
                        f"({', '.join(kinds) or 'none'})")
    resolution = resolve(matrix, constraints)
    best = resolution.stack
    sums = checksums.read_sums(installers) if installers else None
    entries, skipped, why = {}, [], {}
    for arch, os_name in _platforms(matrix, constraints, best):
        stack = resolve(matrix, Constraints(torch_npu="==" + best.row.torch_npu, python=best.python,
                                            chip=best.chip, arch=arch, os=os_name)).stack
        entry = {"arch": arch, "os": os_name, "stack": stack.with_environment()}
        if sums is not None:
            try:
                entry["installers"] = _installers(stack, sums, installers, pinned_installers or {}, kinds)
            except UserError as e:
                if constraints.arch:
                    raise
                skipped.append(arch)
                # Said without the folder's path: the same installers give the same lock wherever they lie.
                why.setdefault(arch, str(e).replace(f"{installers}/", "").replace(str(installers), "the folder"))
                continue
        entries[entry_key(arch, os_name)] = entry
    if not entries:
        raise UserError(f"{installers} holds the installers of no arch this row supports ("
                        + "; ".join(f"{arch}: {reason}" for arch, reason in why.items())
                        + "); put the row's vendor packages there (`npuenv matrix resolve ... --format json` lists "
                          "them under packages)")
    houses = {}
    for house in wheelhouses:
        arch = _wheelhouse_arch(house, best)
        if arch in houses:
            raise UserError(f"--wheelhouse {house}: a second wheelhouse for {arch}; give one per arch")
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
        "skipped_why": why,
    }
    data["digest"] = digest_of(data)
    return Lock(data)


def _wheelhouse_arch(house: Path, stack: Stack) -> str:
    """The arch a wheelhouse was built for, after checking it is this row's and Python's."""
    path = Path(house) / "manifest.json"
    try:
        from_manifest = json.loads(outputs.read_text(path, "the wheelhouse's manifest.json"))
    except ValueError as e:
        raise UserError(f"{path}: not valid JSON text ({e}); rebuild the wheelhouse (`npuenv wheelhouse build`)") \
            from None
    if not isinstance(from_manifest, dict):
        raise UserError(f"{path}: not a wheelhouse manifest; rebuild the wheelhouse (`npuenv wheelhouse build`)")
    s, target = from_manifest.get("stack"), from_manifest.get("target")
    s, target = s if isinstance(s, dict) else {}, target if isinstance(target, dict) else {}
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


# --- which entry a machine takes ----------------------------------------------------

OS_RELEASE = ("etc/os-release", "usr/lib/os-release")


def read_os_release(root: Path | str = "/") -> dict[str, str]:
    """The KEY=VALUE pairs of the machine's os-release (under ``root``), unquoted; {} when it has none."""
    for rel in OS_RELEASE:
        path = Path(root) / rel
        try:
            text = outputs.read_text(path, "os-release", 1 << 16)
        except UserError:
            continue
        out = {}
        for line in text.splitlines():
            key, sep, value = line.strip().partition("=")
            if sep and key and not key.startswith("#"):
                value = value.strip()
                if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
                    value = value[1:-1]
                out[key] = value
        return out
    return {}


@dataclass(frozen=True)
class Machine:
    """A machine's platform as a lock names it (None: the matrix does not support it), and how it
    describes itself."""
    arch: str | None
    os: str | None
    described: str

    @property
    def key(self) -> str | None:
        return entry_key(self.arch, self.os) if self.arch and self.os else None


def machine(platforms: Platforms, *, arch: str | None = None, distribution: str | None = None,
            version: str | None = None, root: Path | str = "/") -> Machine:
    """This machine's arch and OS key (platform.machine() and os-release under ``root``), or those of
    the facts given (Ansible's ansible_architecture, ansible_distribution and _version)."""
    arch = arch if arch is not None else host_platform.machine()
    if distribution is None:
        release = read_os_release(root)
        distribution, version = release.get("ID", ""), release.get("VERSION_ID", "")
    os_key = platforms.os_for(distribution, version or "") if distribution else None
    return Machine(platforms.canonical_arch(arch) if arch else None, os_key,
                   f"{arch or 'an unknown arch'}, {distribution or 'an unknown OS'} {version or ''}".rstrip())


def entry_for(lock: Lock, platforms: Platforms, host: Machine) -> tuple[str, dict]:
    """(key, entry) of the lock for a machine; UserError saying what the machine is and which
    entries the lock has when none fits (such a host is refused before anything changes)."""
    supported = ", ".join(f"{s['distribution']} {s['version']}" for s in platforms.operating_systems.values())
    if host.os is None or host.arch is None:
        what = "OS" if host.os is None else "arch"
        raise UserError(f"this machine ({host.described}) runs an {what} the matrix does not support "
                        f"(OSes: {supported}; archs: {', '.join(platforms.archs)}), so no entry of the lock "
                        f"{lock.digest[:19]} fits it")
    found = lock.entries.get(host.key)
    if found is None:
        raise UserError(f"the lock {lock.digest[:19]} has no entry for this machine's platform {host.key} "
                        f"({host.described}); it has {', '.join(lock.entries)}: lock again with --arch {host.arch} "
                        f"--os {host.os} (or without --arch/--os for every platform)")
    return host.key, found


# The matrix this process's commands use (npuenv's --matrix; None: the bundled one).
_matrix_in_use: str | None = None


def use_matrix(path: Path | str | None) -> None:
    """Say which matrix this process's commands use (npuenv calls it with --matrix on every command), so
    that every Ansible run it starts is told the same (``matrix_env``)."""
    global _matrix_in_use
    _matrix_in_use = str(Path(path).resolve()) if path else None


def matrix_env() -> dict[str, str]:
    """{MATRIX_ENV: the matrix in use}, for the environment of every Ansible run (ansible_run/run.py's
    ansible_env): the playbooks' lookups resolve in the matrix the command uses, never another."""
    from .loader import DEFAULT_MATRIX
    return {MATRIX_ENV: _matrix_in_use or str(DEFAULT_MATRIX)}


def matrix_from_env() -> Matrix:
    """The matrix named by $NPUENV_MATRIX (what npuenv sets for the Ansible runs it starts), else the
    bundled one."""
    from .loader import load_matrix
    path = os.environ.get(MATRIX_ENV)
    return load_matrix(path) if path else load_matrix()


# --- what a lock says, and what changes between two -----------------------------------

def _short(digest: str | None) -> str:
    return (digest or "none")[:19]


def _grouped_installers(lock: Lock) -> list[tuple[list[str], dict]]:
    """[(entry keys, their installers)]: entries that pin the same files, together."""
    groups: list[tuple[list[str], dict]] = []
    for key, entry in sorted(lock.entries.items()):
        pinned = entry.get("installers") or {}
        for keys, same in groups:
            if same == pinned:
                keys.append(key)
                break
        else:
            groups.append(([key], pinned))
    return groups


def summary_text(lock: Lock, path: Path | str | None = None) -> str:
    """What `npuenv lock` and `npuenv lock show` print: the row, the entries, the pinned
    installers, the wheelhouses, what was left out and why, the digest."""
    r = lock.row
    lines = [f"lock {path}: {lock.digest}" if path else f"lock {lock.digest}",
             f"  row         torch_npu {r['torch_npu']} (torch {r['torch']}, torchvision {r.get('torchvision')}), "
             f"CANN {r['cann']}, HDK {r['hdk']}, Python {r['python']}, chip {r['chip']}"]
    if lock.data.get("constraints") is not None:
        asked = lock.data["constraints"]
        given = ", ".join(f"row {asked[k][2:]}" if k == "torch_npu" and asked[k].startswith("==") else f"{k} {asked[k]}"
                          for k in ("torch_npu", *CONSTRAINT_KEYS[2:]) if k in asked) or "nothing (the best row)"
        lines.append(f"  asked for   {given}")
    lines.append(f"  entries     {len(lock.entries)}: {', '.join(sorted(lock.entries))}")
    for keys, pinned in _grouped_installers(lock):
        where = keys[0] if len(keys) == 1 else f"{len(keys)} entries ({', '.join(keys)})"
        if not pinned:
            lines.append(f"  installers  {where}: none pinned (lock with --installers DIR to pin them)")
            continue
        lines.append(f"  installers  {where}:")
        for kind in INSTALLER_KINDS:
            if kind in pinned:
                p = pinned[kind]
                size = f", {p['size']} bytes" if isinstance(p.get("size"), int) else ""
                lines.append(f"    {kind:<9} {p['name']} (sha256 {p['sha256'][:16]}...{size})")
    houses = lock.data.get("wheelhouses") or {}
    lines.append("  wheelhouse  " + (", ".join(f"{a} {d[:23]}..." for a, d in sorted(houses.items()))
                                     or "none recorded (lock with --wheelhouse DIR to record one per arch)"))
    why = lock.data.get("skipped_why") or {}
    for arch in lock.data.get("skipped_archs") or []:
        lines.append(f"  left out    {arch}: {why.get(arch, 'its installers are not in the folder')}")
    return "\n".join(lines) + "\n"


# Components an operator moves between two locks, in the vendor's install order.
COMPONENTS = ("driver", "firmware", "CANN", "kernels", "NNAL", "torch", "torch_npu", "torchvision", "Python", "chip")


def _order(kind: str, before: str, after: str) -> str:
    """upgrade, downgrade or change (versions that cannot be ordered)."""
    try:
        if kind == "vendor":
            a, b = VendorVersion(before), VendorVersion(after)
        else:
            a, b = Version(before), Version(after)
    except (ValueError, InvalidVersion):
        return "change"
    return "upgrade" if b > a else "downgrade" if b < a else "change"


def _component_values(lock: Lock, key: str | None) -> dict[str, tuple[str, str]]:
    """{component: (shown value, how to order it)} of a lock, the per-platform ones from entry ``key``."""
    r = lock.row
    entry = lock.entries.get(key) if key else None
    stack = (entry or {}).get("stack") or {}
    pinned = (entry or {}).get("installers") or {}
    packages = stack.get("packages") or {}
    firmware = pinned.get("firmware", {}).get("name") or f"HDK {r['hdk']} (file not pinned)"
    return {
        "driver": (r["hdk"], "vendor"),
        "firmware": (firmware, "text"),
        "CANN": (r["cann"] + (f" ({stack['packaging']} layout)" if stack.get("packaging") else ""), "text"),
        "kernels": (pinned.get("kernels", {}).get("name") or packages.get("kernels") or r["cann"], "text"),
        "NNAL": (pinned.get("nnal", {}).get("name") or packages.get("nnal") or r["cann"], "text"),
        "torch": (r["torch"], "pep440"),
        "torch_npu": (r["torch_npu"], "pep440"),
        "torchvision": (str(r.get("torchvision")), "pep440"),
        "Python": (r["python"], "pep440"),
        "chip": (r["chip"], "text"),
    }


def diff(a: Lock, b: Lock) -> dict:
    """What moving from lock ``a`` to lock ``b`` changes: each component (its direction: upgrade,
    downgrade or change), the installers that differ per platform, and the platforms only one has."""
    common = sorted(k for k in a.entries if k in b.entries)
    key = common[0] if common else None
    va, vb = _component_values(a, key), _component_values(b, key)
    # The firmware comes with the HDK, the kernels/ops and NNAL with CANN: they move as those move.
    hdk, cann = (a.row["hdk"], b.row["hdk"], "vendor"), (a.row["cann"], b.row["cann"], "vendor")
    order_of = {"firmware": hdk, "CANN": cann, "kernels": cann, "NNAL": cann}
    components = []
    for name in COMPONENTS:
        (before, kind), (after, _) = va[name], vb[name]
        if before == after:
            continue
        lo, hi, how = order_of.get(name, (before, after, kind))
        direction = _order(how, lo, hi) if how in ("vendor", "pep440") else "change"
        components.append({"component": name, "from": before, "to": after, "direction": direction})
    installers: list[dict] = []   # each change once, with every entry it is made on
    for k in common:
        pa, pb = a.entries[k].get("installers") or {}, b.entries[k].get("installers") or {}
        for kind in INSTALLER_KINDS:
            x, y = pa.get(kind), pb.get(kind)
            if (x or {}).get("name") == (y or {}).get("name") and (x or {}).get("sha256") == (y or {}).get("sha256"):
                continue
            same = next((i for i in installers if (i["kind"], i["from"], i["to"]) == (kind, x, y)), None)
            if same:
                same["entries"].append(k)
            else:
                installers.append({"kind": kind, "entries": [k], "from": x, "to": y})
    directions = {c["direction"] for c in components}
    move = ("none" if not components and not installers else "installers" if not components
            else "upgrade" if directions <= {"upgrade"} else "rollback" if directions <= {"downgrade"} else "change")
    return {FORMAT_KEY: FORMAT, "from": a.digest, "to": b.digest, "move": move, "compared_entry": key,
            "components": components, "installers": installers,
            "only_in_from": sorted(k for k in a.entries if k not in b.entries),
            "only_in_to": sorted(k for k in b.entries if k not in a.entries)}


def diff_text(d: dict, a: Lock, b: Lock) -> str:
    """``diff``'s answer for the terminal."""
    def row(lock):
        return f"torch_npu {lock.row['torch_npu']}, CANN {lock.row['cann']}, HDK {lock.row['hdk']}"

    lines = [f"from {_short(d['from'])} ({row(a)})", f"  to {_short(d['to'])} ({row(b)})"]
    if d["from"] == d["to"]:
        return "\n".join(lines + ["the same lock: nothing changes"]) + "\n"
    names = {"upgrade": "an upgrade", "rollback": "a rollback (every changed component goes back)",
             "change": "a change (some components go up, some down or sideways)",
             "installers": "the same versions from other installer files", "none": "no component changes"}
    lines.append(f"{names[d['move']]}" + (f"; per platform as on {d['compared_entry']}" if d["compared_entry"] else ""))
    width = max([len(c["component"]) for c in d["components"]] + [9])
    for c in d["components"]:
        lines.append(f"  {c['component']:<{width}}  {c['from']} -> {c['to']}  ({c['direction']})")
    for i in d["installers"]:
        before = (i["from"] or {}).get("name") or "not pinned"
        after = (i["to"] or {}).get("name") or "not pinned"
        same_name = before == after
        lines.append(f"  installer {i['kind']} on {', '.join(i['entries'])}: "
                     + (f"{before}: sha256 {(i['from'] or {}).get('sha256', '')[:16]}... -> "
                        f"{(i['to'] or {}).get('sha256', '')[:16]}... (the same name, another file)" if same_name
                        else f"{before} -> {after}"))
    for k in d["only_in_from"]:
        lines.append(f"  platform {k}: only in the first lock (the second has no entry for it)")
    for k in d["only_in_to"]:
        lines.append(f"  platform {k}: only in the second lock")
    return "\n".join(lines) + "\n"

"""One archive for an air-gapped site.

A bundle holds, under one top folder::

    MANIFEST.json     the stack, and every file with its role, size and sha256
    SHA256SUMS        every other file: `sha256sum -c SHA256SUMS` needs nothing else
    USAGE.txt         how to use it offline
    installers/       the vendor's .run packages of the stack (from the user's cache)
    wheelhouse/       the offline wheelhouse (see wheelhouse.py)
    playbooks/        the Ansible playbooks
    compat_matrix/    the matrix and its loader

The archive is written to a temporary file beside the destination and renamed
into place when complete.
"""
from __future__ import annotations

import datetime as dt
import fnmatch
import hashlib
import io
import json
import os
import tarfile
import tempfile
from pathlib import Path
from typing import Callable

import compat_matrix as cm
from compat_matrix import Stack, UserError

from . import wheelhouse
from .sources import read_sha256sums
from .wheels import sha256_file

BUNDLE_MANIFEST = "MANIFEST.json"
SUMS = "SHA256SUMS"
USAGE = "USAGE.txt"
FORMAT = 1
PROJECT_ROOT = Path(cm.__file__).resolve().parent.parent
COMPRESSION = {".tar": "w", ".tar.gz": "w:gz", ".tgz": "w:gz", ".tar.xz": "w:xz"}
SKIP_NAMES = {"__pycache__", ".pytest_cache", ".git"}
SKIP_SUFFIXES = (".pyc", ".pyo", ".retry")

Log = Callable[[str], None]


def _quiet(_msg: str) -> None:
    pass


def _mode(out: Path) -> str:
    for suffix, mode in COMPRESSION.items():
        if out.name.endswith(suffix):
            return mode
    raise UserError(f"{out}: a bundle is a tar archive; name it *.tar, *.tar.gz, *.tgz or *.tar.xz")


def _tree(root: Path) -> list[Path]:
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_NAMES)
        for name in sorted(filenames):
            if not name.endswith(SKIP_SUFFIXES):
                out.append(Path(dirpath) / name)
    return out


def installer_files(stack: Stack, installers: Path, skip: tuple[str, ...] = (),
                    chosen: dict[str, str] | None = None) -> tuple[dict[str, Path], list[str]]:
    """The stack's installer packages found in ``installers`` (kind -> file) and what is missing.

    ``chosen`` names the file of a kind outright (``firmware`` is matched by pattern: the
    matrix does not track the firmware's own version, so a cache may hold several)."""
    installers = Path(installers)
    chosen = dict(chosen or {})
    if not installers.is_dir():
        raise UserError(f"installers directory {installers} does not exist; point INSTALLERS at the folder "
                        f"where the vendor's .run packages were downloaded")
    unknown = (set(skip) | set(chosen)) - set(stack.packages)
    if unknown:
        raise UserError(f"installer kind {', '.join(sorted(unknown))} is not one of the stack's: "
                        f"{', '.join(stack.packages)}")
    present = sorted(p.name for p in installers.iterdir() if p.is_file())
    found, missing, ambiguous = {}, [], []
    for kind, pattern in stack.packages.items():
        if kind in skip:
            continue
        if kind in chosen:
            name = Path(chosen[kind]).name
            if name not in present:
                missing.append(f"{kind}: {name} (given with --installer)")
            elif not fnmatch.fnmatchcase(name, pattern):
                raise UserError(f"--installer {kind}={name}: the stack's {kind} package is {pattern}")
            else:
                found[kind] = installers / name
            continue
        matches = [n for n in present if fnmatch.fnmatchcase(n, pattern)]
        if len(matches) == 1:
            found[kind] = installers / matches[0]
        elif matches:
            ambiguous.append(f"{kind}: {', '.join(matches)}")
        else:
            missing.append(f"{kind}: {pattern}")
    if ambiguous:
        raise UserError(f"{installers} holds several packages of one kind for this stack:\n  "
                        + "\n  ".join(ambiguous) + "\nname the one to bundle with --installer KIND=FILE")
    return found, missing


def make(out: Path, wheelhouse_dir: Path, installers: Path, stack: Stack, *, skip_installers: tuple[str, ...] = (),
         chosen_installers: dict[str, str] | None = None, playbooks: Path | None = None,
         matrix_dir: Path | None = None, log: Log = _quiet) -> dict:
    out = Path(out).resolve()
    mode = _mode(out)
    wheelhouse_dir = Path(wheelhouse_dir)
    house = wheelhouse.load_manifest(wheelhouse_dir)
    for key in ("torch_npu", "python", "arch"):
        want = {"torch_npu": stack.row.torch_npu, "python": stack.python, "arch": stack.arch}[key]
        if house["stack"][key] != want:
            raise UserError(f"{wheelhouse_dir} was built for {key} {house['stack'][key]}, the bundle's stack has {want}")
    problems = wheelhouse.verify(wheelhouse_dir)
    if problems:
        raise UserError(f"{wheelhouse_dir} fails verification; rebuild it (make wheelhouse):\n  "
                        + "\n  ".join(problems))
    found, missing = installer_files(stack, installers, skip_installers, chosen_installers)
    if missing:
        raise UserError(f"{installers} lacks installers of the stack (torch_npu {stack.row.torch_npu}, CANN "
                        f"{stack.row.cann}, {stack.chip}, {stack.arch}):\n  " + "\n  ".join(missing)
                        + "\ndownload them into that folder, or leave a kind out with --skip-installer KIND")
    sums = read_sha256sums(installers)
    inst_records = []
    for kind, path in found.items():
        digest = sha256_file(path)
        if path.name in sums and sums[path.name] != digest:
            raise UserError(f"{path}: checksum mismatch: {installers / 'SHA256SUMS'} says sha256 "
                            f"{sums[path.name]}, the file has {digest}; download it again")
        inst_records.append({"kind": kind, "file": f"installers/{path.name}", "sha256": digest,
                             "size": path.stat().st_size, "checked_against": "SHA256SUMS" if path.name in sums
                             else None, "_src": path})
    playbooks = Path(playbooks) if playbooks else PROJECT_ROOT / "playbooks"
    matrix_dir = Path(matrix_dir) if matrix_dir else Path(cm.__file__).resolve().parent
    top = f"npuenv-bundle-{stack.row.torch_npu}-py{stack.python}-{stack.arch}-{stack.chip}"

    entries: list[tuple[str, Path]] = [(r["file"], r["_src"]) for r in inst_records]
    entries += [(f"wheelhouse/{p.relative_to(wheelhouse_dir).as_posix()}", p) for p in _tree(wheelhouse_dir)]
    if playbooks.is_dir():
        entries += [(f"playbooks/{p.relative_to(playbooks).as_posix()}", p) for p in _tree(playbooks)]
    entries += [(f"compat_matrix/{p.relative_to(matrix_dir).as_posix()}", p) for p in _tree(matrix_dir)]
    log(f"bundle: hashing {len(entries)} files")
    hashes = {arc: sha256_file(src) for arc, src in entries}
    usage = render_usage(stack, top).encode("utf-8")
    hashes[USAGE] = _sha(usage)
    manifest = {
        "format": FORMAT,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "created_by": "npuenv bundle make",
        "top": top,
        "stack": {"torch_npu": stack.row.torch_npu, "torch": stack.row.torch, "torchvision": stack.row.torchvision,
                  "cann": stack.row.cann, "python": stack.python, "arch": stack.arch, "chip": stack.chip,
                  "os": stack.os, "hdk": stack.row.hdk["version"]},
        "installers": [{k: v for k, v in r.items() if k != "_src"} for r in inst_records],
        "skipped_installers": list(skip_installers),
        "wheelhouse": {"path": "wheelhouse", "wheels": len(house["wheels"]), "notes": house.get("notes", [])},
        "playbooks": "playbooks" if playbooks.is_dir() else None,
        "compat_matrix": "compat_matrix",
        "files": {arc: {"sha256": h} for arc, h in sorted(hashes.items())},
    }
    manifest_bytes = (json.dumps(manifest, indent=2) + "\n").encode("utf-8")
    hashes[BUNDLE_MANIFEST] = _sha(manifest_bytes)
    sums_bytes = "".join(f"{h}  {arc}\n" for arc, h in sorted(hashes.items())).encode("utf-8")

    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.tmp-", dir=out.parent)
    os.close(fd)
    try:
        with tarfile.open(tmp_name, mode) as tar:
            _add_bytes(tar, f"{top}/{BUNDLE_MANIFEST}", manifest_bytes)
            _add_bytes(tar, f"{top}/{SUMS}", sums_bytes)
            _add_bytes(tar, f"{top}/{USAGE}", usage)
            for arc, src in entries:
                tar.add(src, arcname=f"{top}/{arc}", recursive=False, filter=_normalise)
        os.replace(tmp_name, out)
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
    log(f"bundle ready: {out} ({len(entries) + 3} files, {out.stat().st_size // (1 << 20)} MiB)")
    return manifest


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _normalise(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    info.mtime = int(dt.datetime.now().timestamp())
    tar.addfile(info, io.BytesIO(data))


def render_usage(stack: Stack, top: str) -> str:
    return f"""\
npuenv offline bundle: torch_npu {stack.row.torch_npu}, torch {stack.row.torch}, CANN {stack.row.cann},
Python {stack.python}, {stack.arch}, chip {stack.chip}. Nothing here needs a network.

1. Check it:            cd {top} && sha256sum -c SHA256SUMS
                        (or, with npuenv installed: npuenv bundle verify {top})
2. Python packages:     pip install --no-index --find-links wheelhouse -r wheelhouse/requirements.txt
                        (or --index-url file://$PWD/wheelhouse/simple)
3. Vendor installers:   installers/ holds the stack's .run packages; point the playbooks
                        (or `make image`) at this folder's installers/ and wheelhouse/.
4. The matrix:          compat_matrix/ is the matrix this bundle was made from.
"""


# --- verifying ------------------------------------------------------------------

def verify(path: Path) -> list[str]:
    """Every problem of a bundle archive or an unpacked bundle folder (empty: it is whole).

    An archive is checked as it is read (no unpacking): one top folder, nothing but
    plain files and folders, every file's sha256 as SHA256SUMS says. An unpacked
    folder is checked completely, its wheelhouse included."""
    path = Path(path)
    if path.is_dir():
        return verify_dir(path)
    if not path.is_file():
        raise UserError(f"{path} does not exist")
    try:
        tar = tarfile.open(path, "r:*")
    except tarfile.TarError as e:
        raise UserError(f"{path} is not a tar archive: {e}") from None
    problems, hashes, tops = [], {}, set()
    sums_text = manifest_text = None
    with tar:
        for member in tar:
            name = member.name
            parts = Path(name).parts
            if name.startswith("/") or ".." in parts or not parts:
                problems.append(f"{name}: an unsafe path in the archive")
                continue
            tops.add(parts[0])
            if member.isdir():
                continue
            if not member.isfile():
                problems.append(f"{name}: not a plain file (links and devices do not belong in a bundle)")
                continue
            rel = "/".join(parts[1:])
            data = tar.extractfile(member)
            h = hashlib.sha256()
            chunks = []
            for chunk in iter(lambda: data.read(1 << 20), b""):
                h.update(chunk)
                if rel in (SUMS, BUNDLE_MANIFEST):
                    chunks.append(chunk)
            hashes[rel] = h.hexdigest()
            if rel == SUMS:
                sums_text = b"".join(chunks).decode("utf-8", "replace")
            elif rel == BUNDLE_MANIFEST:
                manifest_text = b"".join(chunks).decode("utf-8", "replace")
    if len(tops) != 1:
        problems.append(f"expected one top folder, found {', '.join(sorted(tops)) or 'nothing'}")
    if manifest_text is None:
        problems.append(f"{BUNDLE_MANIFEST} is missing; this is not an npuenv bundle")
    if sums_text is None:
        return problems + [f"{SUMS} is missing"]
    sums = {}
    for line in sums_text.splitlines():
        if line.strip():
            digest, _, rel = line.partition("  ")
            sums[rel] = digest
    for rel, expected in sorted(sums.items()):
        if rel not in hashes:
            problems.append(f"{rel}: listed in {SUMS} but missing")
        elif hashes[rel] != expected:
            problems.append(f"{rel}: checksum mismatch: {SUMS} says sha256 {expected}, the file has {hashes[rel]}")
    for extra in sorted(set(hashes) - set(sums) - {SUMS}):
        problems.append(f"{extra}: not listed in {SUMS}")
    return problems


def verify_dir(root: Path) -> list[str]:
    root = Path(root)
    problems = []
    if not (root / BUNDLE_MANIFEST).is_file():
        return [f"{root}: {BUNDLE_MANIFEST} is missing; this is not an npuenv bundle"]
    try:
        manifest = json.loads((root / BUNDLE_MANIFEST).read_text(encoding="utf-8"))
    except ValueError as e:
        return [f"{root / BUNDLE_MANIFEST}: not valid JSON ({e})"]
    try:
        sums = read_sha256sums(root)
    except UserError as e:
        return [str(e)]
    if not sums:
        return [f"{root / SUMS} is missing or empty"]
    for arc, expected in sorted(sums.items()):
        file = root / arc
        if not file.is_file():
            problems.append(f"{arc}: listed in {SUMS} but missing")
        elif sha256_file(file) != expected:
            problems.append(f"{arc}: checksum mismatch: {SUMS} says sha256 {expected}, the file has {sha256_file(file)}")
    on_disk = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}
    for extra in sorted(on_disk - set(sums) - {SUMS}):
        problems.append(f"{extra}: not listed in {SUMS}")
    for arc, meta in manifest.get("files", {}).items():
        if sums.get(arc) != meta.get("sha256"):
            problems.append(f"{arc}: {BUNDLE_MANIFEST} and {SUMS} disagree")
    for inst in manifest.get("installers", []):
        if inst["file"] not in sums:
            problems.append(f"{inst['file']}: an installer of the manifest is not in {SUMS}")
    house = root / manifest.get("wheelhouse", {}).get("path", "wheelhouse")
    if house.is_dir():
        try:
            problems += [f"wheelhouse: {p}" for p in wheelhouse.verify(house)]
        except UserError as e:
            problems.append(f"wheelhouse: {e}")
    else:
        problems.append("wheelhouse/ is missing")
    return problems

"""The offline wheelhouse for one matrix row, Python and arch.

Layout of a wheelhouse directory::

    *.whl               the CPU build of torch, torch_npu, torchvision, the CANN
                        Python dependencies and everything they need
    SHA256SUMS          sha256sum's format: `cd DIR && sha256sum -c SHA256SUMS`
    requirements.txt    every wheel pinned with --hash (pip's hash-checking mode)
    simple/             a PEP 503 index: simple/<project>/index.html, #sha256= links
    manifest.json       the row, the target, each wheel's role, source and provenance

and it installs with no network::

    pip install --no-index --find-links DIR -r DIR/requirements.txt
    pip install --index-url file://DIR/simple -r DIR/requirements.txt

Everything is written to a temporary directory beside the destination and moved
into place only when complete: a failed build leaves the old wheelhouse as it was.
"""
from __future__ import annotations

import datetime as dt
import html
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Callable

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

import compat_matrix as cm
from compat_matrix import Stack, UserError, checksums, outputs
from compat_matrix.checksums import sha256_file
from compat_matrix.interrupts import deferred

from . import builder, closure
from .sources import PROVENANCE_SUFFIX, NotHere, TorchSource, parse_sources, pip_env, pip_tail, run_pip
from .wheels import (Target, WheelError, WheelInfo, check_cpu_torch, check_tags, check_torch_pin, check_version,
                     cuda_linked_libraries)
from compat_matrix.model import torch_pin

MANIFEST = "manifest.json"
SUMS = checksums.SUMS_FILE
REQUIREMENTS = "requirements.txt"
INDEX = "simple"
FORMAT = 1
TORCHVISION_POLICIES = ("auto", "torch-source", "index", "none")
DEFAULT_SOURCES = ("pypi", "release")
MAX_ROUNDS = 3

Log = Callable[[str], None]


def _quiet(_msg: str) -> None:
    pass


@dataclass
class Options:
    out: Path
    torch_source: str
    sources: list[str] = field(default_factory=lambda: list(DEFAULT_SOURCES))
    index_url: str | None = None
    offline: bool = False
    torchvision: str = "auto"
    find_links: list[Path] = field(default_factory=list)   # more local wheel folders for the dependencies
    pre: bool = False                                      # accept pre-release dependencies
    build: builder.BuildOptions = field(default_factory=builder.BuildOptions)


# --- building -------------------------------------------------------------------

def check_destination(out: Path) -> None:
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"{out} exists and is not a directory; choose another OUT")
    if out.is_dir() and any(out.iterdir()) and not (out / MANIFEST).is_file():
        raise UserError(f"{out} exists, is not empty and is not a wheelhouse (no {MANIFEST}); "
                        f"choose an empty or new directory so nothing of yours is replaced")


def build(stack: Stack, opts: Options, log: Log = _quiet) -> dict:
    """Build the wheelhouse for ``stack`` at ``opts.out``; returns its manifest."""
    if opts.torchvision not in TORCHVISION_POLICIES:
        raise UserError(f"--torchvision {opts.torchvision!r}: use one of {', '.join(TORCHVISION_POLICIES)}")
    out = Path(opts.out).resolve()
    check_destination(out)
    target = Target.for_stack(stack)
    for d in opts.find_links:
        if not Path(d).is_dir():
            raise UserError(f"--find-links {d} is not a directory")
    torch_source = TorchSource(opts.torch_source)
    sources = parse_sources(opts.sources, index_url=opts.index_url, offline=opts.offline,
                            build_options=opts.build)
    made = folders_to_make(out.parent)  # for this build: removed again unless the wheelhouse is in them
    tmp = None
    try:
        with deferred():  # a signal cannot fall between making the folder and knowing its name
            tmp = make_work_dir(out)
        manifest = _build_in(tmp, stack, target, torch_source, sources, opts, log)
        with deferred():  # the old wheelhouse is never left renamed away
            _move_into_place(tmp / "house", out)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        remove_empty(made)
    log(f"wheelhouse ready: {out} ({len(manifest['wheels'])} wheels)")
    return manifest


def folders_to_make(folder: Path) -> list[Path]:
    """``folder`` and those above it that do not exist yet, deepest first."""
    return [p for p in (folder, *folder.parents) if not p.exists()]


def remove_empty(folders: list[Path]) -> None:
    """Remove, deepest first, the folders a failed command made that are still empty (nothing half-done stays)."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            pass  # gone already, or something else now lives in it


def make_work_dir(out: Path) -> Path:
    """A temporary folder beside ``out`` (the same file system: the result is renamed into place)."""
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    except OSError as e:
        raise UserError(f"cannot write beside {out}: {e.strerror} ({e.filename or out.parent}); choose an output "
                        f"in a folder you can write to") from None


def _move_into_place(house: Path, out: Path) -> None:
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        os.replace(out, old)
    try:
        os.replace(house, out)
    except OSError:
        if old is not None:
            os.replace(old, out)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _fetch_torch_npu(sources, stack: Stack, target: Target, stage: Path, log: Log) -> tuple[WheelInfo, dict]:
    reasons = []
    for source in sources:
        log(f"torch_npu: trying {source.label}")
        try:
            fetched = source.fetch(stack, target, stage, log)
        except NotHere as e:
            reasons.append(f"  {source.label}: {e}")
            log(f"torch_npu: {source.label}: {str(e).splitlines()[0]}")
            continue
        wheel = WheelInfo.read(fetched.path)
        check_tags(wheel, target)
        check_version(wheel, stack.row.torch_npu, "torch_npu")
        pin = check_torch_pin(wheel, stack, target, required=stack.row.torch_requirement(stack.arch) is not None)
        fetched.source["requires_torch"] = pin
        log(f"torch_npu: {wheel.filename} from {source.label}")
        return wheel, fetched.source
    raise UserError(f"no source gave torch_npu {stack.row.torch_npu} for {target.describe()}; tried, in order:\n"
                    + "\n".join(reasons)
                    + "\nadd a source (--source dir:PATH | pypi | release | build) or fix the one that should have it")


def _torchvision_from_source(policy, torch_source, stack, target, stage, log) -> tuple[WheelInfo | None, dict | None]:
    if policy in ("auto", "torch-source"):
        fetched = torch_source.fetch("torchvision", stack.row.torchvision, target, stage, log,
                                     required=policy == "torch-source")
        if fetched is not None:
            return WheelInfo.read(fetched.path), fetched.source
    return None, None


def _check_torchvision(wheel: WheelInfo, policy: str, stack: Stack, target: Target) -> tuple[dict, list[str]]:
    """The manifest's facts about torchvision's wheel, and the note a CUDA build kept by --torchvision
    index gets."""
    check_tags(wheel, target)
    check_version(wheel, stack.row.torchvision, "torchvision")
    pin = check_torch_pin(wheel, stack, target, required=True)
    cuda = cuda_linked_libraries(wheel)
    info = {"requires_torch": pin, "cuda_linked": dict(cuda)}
    if not cuda:
        return info, []
    member, libs = next(iter(cuda.items()))
    why = (f"{wheel.filename} is a CUDA build ({member} links {', '.join(libs)}): with the CPU torch its "
           f"operators do not load and `import torchvision` fails")
    if policy != "index":   # with index the torch source is not asked: the build came from the index
        raise WheelError(why + f". Put torchvision {stack.row.torchvision}'s CPU build in the torch source "
                         f"(PyTorch's CPU index has it), or pass --torchvision index to keep this build anyway, "
                         f"or --torchvision none to leave torchvision out")
    return info, [why + "; kept because --torchvision index was given. Put the CPU build "
                  f"(torchvision=={stack.row.torchvision}+cpu) in the torch source to fix it."]


def _download(roots: list[str], target: Target, dest: Path, opts: Options, find_links: list[Path],
              constraints: Path | None, log: Log) -> None:
    args = ["download", "--retries", "2", *target.pip_args(), "-d", str(dest)]
    for d in find_links:
        args += ["--find-links", str(d)]
    if opts.offline:
        args.append("--no-index")
    elif opts.index_url:
        args += ["--index-url", opts.index_url]
    if constraints is not None:
        args += ["-c", str(constraints)]
    if opts.pre:
        args.append("--pre")
    proc = run_pip(args + roots, pip_env(), log)
    if proc.returncode != 0:
        where = "the local directories" if opts.offline else "the package index"
        raise UserError(f"pip could not gather the wheelhouse's dependencies for {target.describe()} from {where} "
                        f"(pip download exited {proc.returncode}):\n{pip_tail(proc)}")


def _build_in(tmp: Path, stack: Stack, target: Target, torch_source: TorchSource, sources, opts: Options,
              log: Log) -> dict:
    row = stack.row
    stage, dl, house = tmp / "stage", tmp / "download", tmp / "house"
    for d in (stage, dl, house):
        d.mkdir()
    log(f"wheelhouse for torch_npu {row.torch_npu} (torch {row.torch}, torchvision {row.torchvision}), "
        f"{target.describe()}")
    sources, direct, origins, notes = _fetch_direct(stack, target, torch_source, sources, opts, stage, log)
    roots = _root_requirements(direct, opts.torchvision, stack)
    root_reqs = [Requirement(r.split(" @ ")[0]) for r in roots]   # "torch @ file:..." is asked for as torch
    find_links = [s.dir for s in sources if s.kind == "dir" and s.dir.is_dir()]
    find_links += [Path(d).resolve() for d in opts.find_links]
    result = _resolve(roots, root_reqs, direct, target, tmp, dl, opts, find_links, log)
    if result.conflicts:
        raise WheelError("the wheelhouse's wheels do not agree: " + "; ".join(result.conflicts))
    notes += _check_prereleases(result.chosen, direct, opts.pre)

    # torchvision fetched by pip from the index is checked like the rest.
    if "torchvision" in result.chosen:
        tv_info, tv_notes = _check_torchvision(result.chosen["torchvision"], opts.torchvision, stack, target)
        notes += tv_notes
        origins["torchvision"] = {**(origins.get("torchvision") or _pip_source(opts)), **tv_info}
    for wheel in result.chosen.values():
        check_tags(wheel, target)
    for wheel in result.unused:
        log(f"dependencies: leaving out {wheel.filename} (not needed on the target)")

    cann_names = {canonicalize_name(Requirement(r).name) for r in stack.platforms.cann_python_deps}
    records = _stage_wheels(result, house, origins, cann_names, opts)
    manifest = _manifest(stack, target, root_reqs, torch_source, sources, opts, records, notes)
    for note in notes:
        log(f"note: {note}")
    write_files(house, manifest)
    return manifest


def _fetch_direct(stack: Stack, target: Target, torch_source: TorchSource, sources, opts: Options, stage: Path,
                  log: Log) -> tuple:
    """Fetch and check the wheels asked for by file: torch, torch_npu and torchvision when the torch source
    has it. Returns the torch_npu sources as used, the wheels and their sources by project name, and the
    notes so far."""
    row = stack.row
    torch_f = torch_source.fetch("torch", row.torch, target, stage, log)
    torch_w = WheelInfo.read(torch_f.path)
    check_tags(torch_w, target)
    check_cpu_torch(torch_w, stack, target)
    # a torch_npu built from source is built against this torch (unless its build options name another)
    sources = [s.using_torch(torch_w.path) if s.kind == "build" else s for s in sources]

    npu_w, npu_src = _fetch_torch_npu(sources, stack, target, stage, log)

    notes: list[str] = []
    tv_w, tv_src = (None, None)
    if opts.torchvision != "none":
        tv_w, tv_src = _torchvision_from_source(opts.torchvision, torch_source, stack, target, stage, log)
    else:
        notes.append("torchvision left out (--torchvision none)")
    direct = {"torch": torch_w, "torch-npu": npu_w}
    origins = {"torch": torch_f.source, "torch-npu": npu_src, "torchvision": tv_src}
    if tv_w is not None:
        direct["torchvision"] = tv_w
    return sources, direct, origins, notes


def _root_requirements(direct: dict[str, WheelInfo], torchvision: str, stack: Stack) -> list[str]:
    """What pip is asked for: the direct wheels by file, torchvision from the index when the policy lets
    it, and CANN's Python dependencies."""
    roots = [f"{name} @ {wheel.path.as_uri()}" for name, wheel in direct.items()]
    if "torchvision" not in direct and torchvision in ("auto", "index"):
        roots.append(f"torchvision=={stack.row.torchvision}")
    return roots + list(stack.platforms.cann_python_deps)


def _resolve(roots: list[str], root_reqs: list[Requirement], direct: dict[str, WheelInfo], target: Target,
             tmp: Path, dl: Path, opts: Options, find_links: list[Path], log: Log) -> closure.Closure:
    """Download the roots and their dependencies into ``dl`` until every one the target's markers
    ask for is there; returns the closure over what was downloaded."""
    log(f"dependencies: resolving {len(roots)} requirements for {target.describe()}")
    _download(roots, target, dl, opts, find_links, None, log)
    env = target.marker_env
    for round_ in range(MAX_ROUNDS):
        wheels = [WheelInfo.read(p) for p in sorted(dl.glob("*.whl"))]
        # pip copied the direct-URL wheels into the download folder; those copies win over any other
        # version of torch, torch_npu or torchvision that pip fetched for a dependency.
        prefer = {n: WheelInfo.read(dl / w.filename) for n, w in direct.items()}
        available = closure.index_wheels(wheels, prefer=prefer)
        result = closure.compute(root_reqs, available, env)
        if not result.missing:
            return result
        log(f"dependencies: {len(result.missing)} more for the target's markers: "
            f"{', '.join(str(r) for r in result.missing)}")
        pins = tmp / f"constraints-{round_}.txt"
        pins.write_text("".join(f"{w.metadata_name}=={w.version}\n" for w in result.chosen.values()
                                if w.name not in direct), encoding="utf-8")
        # The markers were judged for the target already; pip would judge them for this host.
        _download([_without_marker(r) for r in result.missing], target, dl, opts, find_links, pins, log)
    raise UserError("dependencies still missing for the target after "
                    f"{MAX_ROUNDS} rounds: {', '.join(str(r) for r in result.missing)}")


def _pip_source(opts: Options) -> dict:
    return {"kind": "pip", "location": _index_description(opts)}


_ROLES = {"torch": "torch", "torch-npu": "torch_npu", "torchvision": "torchvision"}


def _stage_wheels(result: closure.Closure, house: Path, origins: dict[str, dict], cann_names: set[str],
                  opts: Options) -> list[dict]:
    """Put the chosen wheels into ``house``; returns the manifest's record of each."""
    records = []
    for name, wheel in sorted(result.chosen.items()):
        if _same_fs(wheel.path, house):
            os.link(wheel.path, house / wheel.filename)
        else:
            shutil.copy2(wheel.path, house / wheel.filename)
        if name in _ROLES:
            role, source = _ROLES[name], origins[name]
        else:
            role = "cann-python-dep" if name in cann_names else "dependency"
            source = _pip_source(opts)
        records.append({"file": wheel.filename, "project": wheel.metadata_name, "name": name,
                        "version": str(wheel.version), "sha256": wheel.sha256, "size": wheel.size, "role": role,
                        "requires_python": wheel.requires_python, "required_by": result.required_by.get(name, []),
                        "source": source})
    return records


def _manifest(stack: Stack, target: Target, root_reqs: list[Requirement], torch_source: TorchSource, sources,
              opts: Options, records: list[dict], notes: list[str]) -> dict:
    row = stack.row
    return {
        "format": FORMAT,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "created_by": "npuenv wheelhouse build",
        "stack": {"torch_npu": row.torch_npu, "torch": row.torch, "torchvision": row.torchvision,
                  "cann": row.cann, "python": stack.python, "arch": stack.arch},
        "target": target.to_dict(),
        "row": row.to_dict(),
        "requested": [str(r) for r in root_reqs],
        "cann_python_deps": dict(stack.platforms.cann_python_deps),
        "sources": {"torch": str(torch_source), "torch_npu": [s.label for s in sources],
                    "dependencies": _index_description(opts), "torchvision": opts.torchvision},
        "wheels": records,
        "notes": notes,
        "install": {"find_links": "pip install --no-index --find-links DIR -r DIR/requirements.txt",
                    "index": "pip install --index-url file://DIR/simple -r DIR/requirements.txt"},
    }


def _check_prereleases(chosen: dict[str, WheelInfo], direct: dict[str, WheelInfo], allowed: bool) -> list[str]:
    """pip takes a pre-release when no final release fits (PEP 440); the wheelhouse does not,
    unless asked. The row's own torch, torch_npu and torchvision are what the matrix names.
    Returns the note that records pre-releases accepted, if any."""
    pre = sorted(w.filename for name, w in chosen.items() if w.version.is_prerelease and name not in direct)
    if pre and not allowed:
        raise WheelError(f"pip chose pre-release wheels, because no final release of them fits the target: "
                         f"{', '.join(pre)}. Pin a final release the target can use (--find-links DIR with that "
                         f"wheel), or pass --pre to accept pre-releases")
    return [f"pre-release dependencies accepted (--pre): {', '.join(pre)}"] if pre else []


def _without_marker(req: Requirement) -> str:
    extras = f"[{','.join(sorted(req.extras))}]" if req.extras else ""
    return f"{req.name}{extras}{req.specifier}"


def _index_description(opts: Options) -> str:
    local = f" and {', '.join(str(d) for d in opts.find_links)}" if opts.find_links else ""
    if opts.offline:
        return f"local directories only (--offline){local}"
    return (opts.index_url or "pip's configured index (PyPI)") + local


def _same_fs(a: Path, b: Path) -> bool:
    try:
        return a.stat().st_dev == b.stat().st_dev
    except OSError:
        return False


# --- writing --------------------------------------------------------------------
# Every file but the wheels is derived from the manifest by the functions below;
# verify() derives them again and compares, so nothing pip reads can differ.

def write_files(house: Path, manifest: dict) -> None:
    for w in manifest["wheels"]:
        prov = _provenance_text(w)
        if prov is not None:
            # beside the wheel, so that this wheelhouse used as a dir: source keeps the wheel's history
            _write(house / f"{w['file']}{PROVENANCE_SUFFIX}", prov)
    _write(house / SUMS, render_sums(manifest))
    _write(house / REQUIREMENTS, render_requirements(manifest))
    write_index(house, manifest["wheels"])
    _write(house / MANIFEST, json.dumps(manifest, indent=2) + "\n")


def _write(path: Path, text: str) -> None:
    """A new file (a hard link to another wheelhouse's file is replaced, not written through)."""
    path.unlink(missing_ok=True)
    path.write_text(text, encoding="utf-8")


def render_sums(manifest: dict) -> str:
    return checksums.format_sums({w["file"]: w["sha256"] for w in manifest["wheels"]})


def render_requirements(manifest: dict) -> str:
    s = manifest["stack"]
    lines = [f"# Wheelhouse for torch_npu {s['torch_npu']} (torch {s['torch']}), Python {s['python']}, {s['arch']}.",
             "# Generated by `npuenv wheelhouse build`; every wheel is pinned with its sha256.",
             "#   pip install --no-index --find-links DIR -r DIR/requirements.txt", ""]
    for w in sorted(manifest["wheels"], key=lambda w: w["name"]):
        lines.append(f"{w['project']}=={w['version']} \\")
        lines.append(f"    --hash=sha256:{w['sha256']}")
    return "\n".join(lines) + "\n"


def index_pages(wheels: list[dict]) -> dict[str, str]:
    """The PEP 503 index of ``wheels``: {path under simple/: page}, linking to the wheels beside simple/."""
    projects: dict[str, list[dict]] = {}
    for w in sorted(wheels, key=lambda w: (w["name"], w["file"])):
        projects.setdefault(w["name"], []).append(w)
    links = "\n".join(f'    <a href="{html.escape(name)}/">{html.escape(name)}</a><br/>' for name in sorted(projects))
    pages = {"index.html": _page("Simple index", links)}
    for name, files in projects.items():
        rows = []
        for w in files:
            rp = f' data-requires-python="{html.escape(w["requires_python"])}"' if w.get("requires_python") else ""
            rows.append(f'    <a href="../../{html.escape(w["file"])}#sha256={w["sha256"]}"{rp}>'
                        f'{html.escape(w["file"])}</a><br/>')
        pages[f"{name}/index.html"] = _page(f"Links for {name}", "\n".join(rows))
    return pages


def write_index(house: Path, wheels: list[dict]) -> None:
    """A PEP 503 simple index under ``house/simple`` linking to the wheels beside it."""
    root = house / INDEX
    for rel, page in index_pages(wheels).items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        _write(root / rel, page)


def _page(title: str, body: str) -> str:
    return (f'<!DOCTYPE html>\n<html>\n  <head><meta name="pypi:repository-version" content="1.0">'
            f"<title>{html.escape(title)}</title></head>\n  <body>\n    <h1>{html.escape(title)}</h1>\n"
            f"{body}\n  </body>\n</html>\n")


def _provenance_text(record: dict) -> str | None:
    source = record.get("source")
    if isinstance(source, dict) and source.get("provenance"):
        return json.dumps(source["provenance"], indent=2) + "\n"
    return None


# --- verifying ------------------------------------------------------------------

_WHEEL_FIELDS = {"file": str, "project": str, "name": str, "version": str, "sha256": str, "role": str}
_SDIST_SUFFIXES = (".tar.gz", ".tgz", ".tar.bz2", ".tar.xz", ".zip", ".egg")


def load_manifest(house: Path) -> dict:
    """The wheelhouse's manifest.json, its shape checked: every field verify() reads is there,
    and every wheel is a plain file name in the wheelhouse (no path is followed out of it)."""
    path = Path(house) / MANIFEST
    if not os.path.lexists(path):
        raise UserError(f"{house} is not a wheelhouse: {MANIFEST} is missing")
    data = outputs.read_bytes(path, f"the wheelhouse's {MANIFEST}")   # a FIFO or /dev/zero: refused unread
    try:
        manifest = json.loads(data.decode("utf-8"))
    except ValueError as e:
        raise UserError(f"{path}: not valid JSON text ({e}); rebuild the wheelhouse (make wheelhouse)") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise UserError(f"{path}: not a wheelhouse manifest of format {FORMAT}; rebuild the wheelhouse")
    problems = []
    stack, target, wheels = manifest.get("stack"), manifest.get("target"), manifest.get("wheels")
    if not isinstance(stack, dict) or not all(isinstance(stack.get(k), str) for k in
                                              ("torch_npu", "torch", "torchvision", "python", "arch")):
        problems.append("'stack' must give torch_npu, torch, torchvision, python and arch as strings")
    if not isinstance(target, dict) or not isinstance(target.get("python"), str) or \
            not isinstance(target.get("arch"), str) or not isinstance(target.get("row_platforms"), list):
        problems.append("'target' must give python, arch and row_platforms")
    if not isinstance(manifest.get("requested", []), list):
        problems.append("'requested' must be a list of requirements")
    if not isinstance(wheels, list) or not wheels:
        problems.append("'wheels' must be a non-empty list")
        wheels = []
    for i, w in enumerate(wheels):
        if not isinstance(w, dict) or any(not isinstance(w.get(k), t) for k, t in _WHEEL_FIELDS.items()):
            problems.append(f"wheels[{i}] must give {', '.join(_WHEEL_FIELDS)} as strings")
            continue
        if "/" in w["file"] or "\\" in w["file"] or w["file"] in (".", "..") or not w["file"].endswith(".whl"):
            problems.append(f"wheels[{i}]: {w['file']!r} is not a wheel file name inside the wheelhouse")
        if not re.fullmatch(r"[0-9a-f]{64}", w["sha256"]):
            problems.append(f"wheels[{i}]: sha256 {w['sha256']!r} is not 64 lower-case hex digits")
        if w["name"] != canonicalize_name(w["name"]) or "/" in w["name"]:
            problems.append(f"wheels[{i}]: name {w['name']!r} is not a normalised project name")
    if problems:
        raise UserError(f"{path} is malformed:\n  " + "\n  ".join(problems)
                        + "\nrebuild the wheelhouse (make wheelhouse)")
    return manifest


def expected_files(manifest: dict) -> dict[str, bytes | None]:
    """Every file a wheelhouse holds, by path: the bytes the manifest implies (None: a wheel,
    checked by its sha256)."""
    out: dict[str, bytes | None] = {w["file"]: None for w in manifest["wheels"]}
    for w in manifest["wheels"]:
        prov = _provenance_text(w)
        if prov is not None:
            out[f"{w['file']}{PROVENANCE_SUFFIX}"] = prov.encode("utf-8")
    out[SUMS] = render_sums(manifest).encode("utf-8")
    out[REQUIREMENTS] = render_requirements(manifest).encode("utf-8")
    out.update({f"{INDEX}/{rel}": page.encode("utf-8") for rel, page in index_pages(manifest["wheels"]).items()})
    out[MANIFEST] = None
    return out


def verify(house: Path, matrix: cm.Matrix | None = None) -> list[str]:
    """Every problem found in a wheelhouse (empty: it is whole and consistent).

    The wheelhouse must hold exactly the files its manifest implies: each wheel
    with its sha256, and SHA256SUMS, requirements.txt, the simple/ index and the
    provenance files as the build writes them. Anything else (a second pin, an
    extra link, a wheel in a subfolder, an sdist) is a problem: pip would read it."""
    house = Path(house)
    manifest = load_manifest(house)
    listed = {w["file"]: w for w in manifest["wheels"]}
    expected = expected_files(manifest)
    problems = _unexpected(house, expected, listed)
    sums = checksums.read_sums(house, required=False)
    if not (house / SUMS).is_file():
        problems.append(f"{house / SUMS} is missing")
    target = Target(python=manifest["target"]["python"], arch=manifest["target"]["arch"],
                    row_platforms=tuple(manifest["target"]["row_platforms"]))
    wheel_problems, wheels = _verify_wheels(house, listed, sums, target)
    problems += wheel_problems
    for extra in sorted(set(sums) - set(listed)):
        problems.append(f"{SUMS} lists {extra}, which {MANIFEST} does not")
    problems += _verify_requirements(house, expected[REQUIREMENTS], listed)
    problems += _verify_index(house, expected)
    for rel, want in sorted(expected.items()):
        if rel.endswith(PROVENANCE_SUFFIX) and (house / rel).is_file() and \
                outputs.read_bytes(house / rel, "a wheel's provenance") != want:
            problems.append(f"{rel}: differs from the provenance {MANIFEST} records")
    problems += _verify_dependencies(house, manifest, wheels, target)
    if matrix is not None:
        problems += _verify_against_matrix(manifest, matrix)
    return problems


def _verify_wheels(house: Path, listed: dict[str, dict], sums: dict[str, str],
                   target: Target) -> tuple[list[str], dict[str, WheelInfo]]:
    """Each listed wheel against its manifest entry, SHA256SUMS and the target; returns the problems
    and the wheels that could be read, by project name."""
    problems, wheels = [], {}
    for name, entry in listed.items():
        path = house / name
        if os.path.lexists(path) and not path.is_symlink() and not path.is_file():
            problems.append(f"{name}: not a plain file (a pipe, socket or device); a wheelhouse holds plain files only")
            continue
        if not path.is_file() or path.is_symlink():
            problems.append(f"{name}: listed in {MANIFEST} but missing")
            continue
        actual = sha256_file(path)
        if actual != entry["sha256"]:
            problems.append(f"{name}: checksum mismatch: {MANIFEST} says sha256 {entry['sha256']}, the file has {actual}")
        if sums.get(name) != entry["sha256"]:
            problems.append(f"{name}: {SUMS} says {sums.get(name, 'nothing')}, {MANIFEST} says {entry['sha256']}")
        try:
            wheel = WheelInfo.read(path)
            check_tags(wheel, target)
            wheels[wheel.name] = wheel
        except WheelError as e:
            problems.append(str(e))
    return problems, wheels


def _verify_dependencies(house: Path, manifest: dict, wheels: dict[str, WheelInfo], target: Target) -> list[str]:
    """torch_npu and torchvision pin the row's torch, and every requirement the target needs has a wheel."""
    problems = []
    torch = manifest["stack"]["torch"]
    for name in ("torch-npu", "torchvision"):
        wheel = wheels.get(name)
        if wheel is None:
            continue
        for req in wheel.torch_requirements(target.marker_env):
            pin = torch_pin(str(req))
            if pin != Version(torch):
                problems.append(f"{wheel.filename}: Requires-Dist {req} does not pin the row's torch {torch}")
    if wheels:
        try:
            roots = [Requirement(r) for r in manifest.get("requested", [])]
        except ValueError as e:
            raise UserError(f"{house / MANIFEST}: 'requested' holds an unreadable requirement ({e})") from None
        result = closure.compute(roots, wheels, target.marker_env)
        for req in result.missing:
            problems.append(f"incomplete: {req} is needed on the target but has no wheel")
    return problems


def _verify_against_matrix(manifest: dict, matrix: cm.Matrix) -> list[str]:
    """The matrix still has the wheelhouse's row, with the same torch and torchvision."""
    stack = manifest["stack"]
    row = matrix.find(stack["torch_npu"])
    if row is None:
        return [f"the matrix has no row torch_npu {stack['torch_npu']} any more"]
    if row.torch != stack["torch"] or row.torchvision != stack["torchvision"]:
        return [f"the matrix row torch_npu {row.torch_npu} now says torch {row.torch} / torchvision "
                f"{row.torchvision}; the wheelhouse was built for torch {stack['torch']} / torchvision "
                f"{stack['torchvision']}: rebuild it"]
    return []


def _unexpected(house: Path, expected: dict, listed: dict) -> list[str]:
    """Files, empty folders and links in the wheelhouse that its manifest does not imply."""
    problems = []
    folders = {str(PurePosixPath(rel).parent) for rel in expected} - {"."}
    for dirpath, dirnames, filenames in os.walk(house):
        base = Path(dirpath)
        rel_dir = base.relative_to(house).as_posix()
        if rel_dir != "." and rel_dir not in folders and not dirnames and not filenames:
            problems.append(f"{rel_dir}/: a folder the wheelhouse does not have: remove it")
        for name in sorted(dirnames):
            if (base / name).is_symlink():
                problems.append(f"{(base / name).relative_to(house).as_posix()}: a symbolic link; a wheelhouse "
                                f"holds plain files only")
        dirnames[:] = sorted(d for d in dirnames if not (base / d).is_symlink())
        for name in sorted(filenames):
            path = base / name
            rel = path.relative_to(house).as_posix()
            if path.is_symlink():
                problems.append(f"{rel}: a symbolic link; a wheelhouse holds plain files only")
            elif rel in expected:
                continue
            elif name.endswith(".whl") and "/" in rel:
                problems.append(f"{rel}: a wheel in a subfolder; the wheelhouse's wheels lie at its top, "
                                f"listed in {MANIFEST}: remove it")
            elif name.endswith(".whl"):
                problems.append(f"{rel}: a wheel not listed in {MANIFEST}; pip --find-links would consider it")
            elif name.endswith(_SDIST_SUFFIXES):
                problems.append(f"{rel}: a source archive (sdist) beside the wheels; pip --find-links would "
                                f"build and install it: remove it")
            else:
                problems.append(f"{rel}: a file the wheelhouse does not have (not in {MANIFEST}): remove it")
    return problems


def _first_difference(got: list[str], want: list[str]) -> str:
    for n, (a, b) in enumerate(zip(got, want), 1):
        if a != b:
            return f"line {n} is {a!r}, expected {b!r}"
    if len(got) == len(want):   # the same lines: only their endings differ (CRLF, no final newline)
        return "its lines are the expected ones, but their line endings or the final newline differ"
    n = min(len(got), len(want)) + 1
    return f"line {n} is {got[n - 1]!r}, expected the end" if len(got) > len(want) else \
        f"it ends at line {n - 1}, expected {want[n - 1]!r}"


def _verify_requirements(house: Path, want: bytes, listed: dict) -> list[str]:
    path = house / REQUIREMENTS
    if not os.path.lexists(path):
        return [f"{path} is missing"]
    got = outputs.read_bytes(path, f"the wheelhouse's {REQUIREMENTS}")
    if got == want:
        return []
    try:
        if b"\0" in got:
            raise UnicodeError("a NUL byte")
        text = got.decode("utf-8")
    except UnicodeError as e:
        raise UserError(f"{path} is not text ({e}); pip cannot read it. Rebuild the wheelhouse "
                        f"(make wheelhouse)") from None
    problems, seen = [], {}
    for n, line in enumerate(text.replace("\\\r\n", " ").replace("\\\n", " ").splitlines(), 1):
        stripped = line.split("#", 1)[0].strip()
        if not stripped:
            continue
        if stripped.startswith("-"):
            problems.append(f"{REQUIREMENTS}: pip option {stripped.split()[0]!r}; the wheelhouse's "
                            f"requirements carry no options (an option changes what pip installs)")
            continue
        m = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", stripped)
        if m:
            seen.setdefault(canonicalize_name(m.group(0)), []).append(" ".join(stripped.split()))
    for name, lines in sorted(seen.items()):
        if len(lines) > 1:
            problems.append(f"{REQUIREMENTS} pins {name} {len(lines)} times ({'; '.join(lines)}); pip enforces "
                            f"the first: remove the extra pin")
    by_name = {canonicalize_name(w["project"]) for w in listed.values()}
    for name in sorted(set(seen) - by_name):
        problems.append(f"{REQUIREMENTS} pins {name}, which the wheelhouse does not hold")
    if not problems:
        problems.append(f"{REQUIREMENTS} is not what {MANIFEST} pins: "
                        f"{_first_difference(text.splitlines(), want.decode('utf-8').splitlines())}")
    return problems


def _verify_index(house: Path, expected: dict) -> list[str]:
    problems = []
    for rel, want in sorted(expected.items()):
        if not rel.startswith(INDEX + "/"):
            continue
        page = house / rel
        if not os.path.lexists(page):
            problems.append(f"{rel} is missing")
            continue
        got = outputs.read_bytes(page, "a page of the wheelhouse's index")
        if got == want:
            continue
        have = set(re.findall(r'href="([^"]*)"', got.decode("utf-8", "replace")))
        extra = sorted(have - set(re.findall(r'href="([^"]*)"', want.decode("utf-8"))))
        if extra:
            problems.append(f"{rel} links to {', '.join(html.unescape(x) for x in extra)}, which {MANIFEST} "
                            f"does not list; pip --index-url would consider it")
        else:
            problems.append(f"{rel} is not the page {MANIFEST} implies (a link is missing or changed)")
    return problems

"""One archive for an air-gapped site.

A bundle holds, under one top folder::

    MANIFEST.json     the stack, and every file with its sha256 and size (the archive's first file)
    SHA256SUMS        every other file: `sha256sum -c SHA256SUMS` needs nothing else
    USAGE.txt         how to use it offline
    installers/       the vendor's .run packages of the stack (from the user's cache) and
                      their SHA256SUMS: the site's installer cache
    wheelhouse/       the nodes' offline wheelhouse (see wheelhouse.py)
    controller/       npuenv's wheel and what it needs on the controller (Ansible,
                      pytest-testinfra) for every CPython and arch of controller_targets,
                      with one hash-pinned requirements.txt
    collection/       the roles and plugins as the npuenv.ascend Ansible collection's
                      tarball, for playbooks of the site's own (ansible-galaxy collection install)
    source/           playbooks/, compat_matrix/ and validation/: the playbooks and the
                      packages their plugins import, to read or to run with
                      ansible-playbook (PYTHONPATH=source). In a folder of their own, so
                      that a command run in the top folder imports the installed
                      packages, not these

The archive is written in a temporary folder beside the destination and renamed
into place when complete; an interrupted or failed run leaves nothing behind.
Verifying never follows a path out of the bundle: names in SHA256SUMS and
MANIFEST.json are relative and stay inside it, and links are refused. Nor does it
read more than the manifest lists: a file it does not list, or lists with another
size, is refused unread (a 20 GB sparse file in a tiny archive costs nothing).
"""
from __future__ import annotations

import datetime as dt
import fnmatch
import importlib.util
import io
import json
import os
import shutil
import stat
import sys
import tarfile
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from packaging.specifiers import SpecifierSet
from packaging.version import Version

import compat_matrix as cm
from compat_matrix import Stack, UserError, checksums, outputs
from compat_matrix import lock as lock_mod
from compat_matrix.lock import Lock
from compat_matrix.checksums import sha256_file
from compat_matrix.interrupts import deferred

from . import wheelhouse
from .sources import pip_env, pip_tail, run_pip
from .wheels import WheelInfo

BUNDLE_MANIFEST = "MANIFEST.json"
SUMS = checksums.SUMS_FILE
USAGE = "USAGE.txt"
COLLECTION = "collection"   # the npuenv.ascend collection's tarball (ansible_run/collection.py builds it)
LOCK_FILE = lock_mod.DEFAULT_FILE   # the lock the bundle is of (npuenv lock show; --lock of every command)
INSTALLERS, WHEELHOUSE, CONTROLLER, SOURCE = "installers", "wheelhouse", "controller", "source"
CONTROLLER_EXTRA = "controller"   # pyproject.toml's optional dependencies the controller needs
CREATED_BY = "npuenv bundle make"
FORMAT = 2   # 2: every file with its size, checked before the file is read
PROJECT_ROOT = Path(cm.__file__).resolve().parent.parent
# The source trees a bundle carries: the playbooks and the packages their plugins import.
SOURCE_TREES = {"playbooks": PROJECT_ROOT / "playbooks", "compat_matrix": PROJECT_ROOT / "compat_matrix",
                "validation": PROJECT_ROOT / "validation"}
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


@dataclass
class ControllerOptions:
    """Where the controller's packages come from (npuenv's own wheel is built from this project).

    ``include=False`` leaves them out: the site then needs npuenv installed some other way."""
    include: bool = True
    find_links: list[Path] = field(default_factory=list)   # local folders of wheels
    offline: bool = False                                  # ask no index, only find_links
    index_url: str | None = None


def check_installers(stack: Stack, installers: Path, skip: tuple[str, ...], chosen: dict[str, str] | None) -> dict:
    """The stack's installers in the folder, each listed in its SHA256SUMS with its checksum
    (compat_matrix.checksums' policy, as the image build and the playbooks apply it): kind -> record."""
    found, missing = installer_files(stack, installers, skip, chosen)
    if missing:
        raise UserError(f"{installers} lacks installers of the stack (torch_npu {stack.row.torch_npu}, CANN "
                        f"{stack.row.cann}, {stack.chip}, {stack.arch}):\n  " + "\n  ".join(missing)
                        + "\ndownload them into that folder, or leave a kind out with --skip-installer KIND")
    sums = checksums.read_sums(installers)
    records, problems = {}, []
    for kind, path in found.items():
        why = checksums.problem(path, path.name, sums, Path(installers) / SUMS)
        if why:
            problems.append(f"{kind}: {why}")
            continue
        records[kind] = {"kind": kind, "file": f"{INSTALLERS}/{path.name}", "sha256": sums[path.name],
                         "size": path.stat().st_size, "checked_against": SUMS, "_src": path}
    if problems:
        raise UserError(f"the installers in {installers} are not vouched for by its {SUMS}; nothing was bundled:\n  "
                        + "\n  ".join(problems) + "\ncheck each file against the vendor's published checksum, "
                        "then list it in SHA256SUMS")
    return records


def check_lock(lock: Lock, stack: Stack, records: dict, skip: tuple[str, ...], wheelhouse_dir: Path) -> None:
    """The bundle's installers and wheelhouse are the lock's: every installer it bundles is the one the
    lock pins for the stack's entry (name and sha256), every kind it does not skip is pinned, and a
    wheelhouse the lock recorded for the arch has the lock's digest."""
    pinned = lock.entry(stack.arch, stack.os).get("installers") or {}
    problems = []
    for kind in lock_mod.INSTALLER_KINDS:
        if kind in skip:
            continue
        pin, rec = pinned.get(kind), records.get(kind)
        if pin is None:
            problems.append(f"{kind}: the lock pins none (make it with `npuenv lock --installers DIR`, or leave the "
                            f"kind out with --skip-installer {kind})")
        elif rec is None or Path(rec["file"]).name != pin["name"] or rec["sha256"] != pin["sha256"]:
            found = f"{Path(rec['file']).name} (sha256 {rec['sha256']})" if rec else "nothing"
            problems.append(f"{kind}: the lock pins {pin['name']} (sha256 {pin['sha256']}), the folder gives {found}")
    wrong_house = lock_mod.wheelhouse_problem(lock.data, stack.arch, wheelhouse_dir)
    if wrong_house:
        problems.append(f"wheelhouse: {wrong_house}")
    if problems:
        raise UserError(f"the bundle's inputs are not those of the lock {lock.digest[:19]}; nothing was bundled:\n  "
                        + "\n  ".join(problems) + "\nuse the installers and wheelhouse the lock was made from, or make "
                        "a new lock from these (`npuenv lock --installers DIR --wheelhouse DIR`)")


def make(out: Path, wheelhouse_dir: Path, installers: Path, stack: Stack, *, skip_installers: tuple[str, ...] = (),
         chosen_installers: dict[str, str] | None = None, controller: ControllerOptions | None = None,
         lock: Lock | None = None, matrix: cm.Matrix | None = None, log: Log = _quiet) -> dict:
    """Write the bundle of ``stack``. It carries a lock (LOCK_FILE): ``lock``, whose pinned installers
    must be the ones bundled; without one, the stack's lock made from the installers bundled and the
    wheelhouse (`npuenv lock`'s resolution, in ``matrix``)."""
    out = Path(out).resolve()
    mode = _mode(out)
    controller = controller or ControllerOptions()
    wheelhouse_dir = Path(wheelhouse_dir)
    house = _checked_wheelhouse(wheelhouse_dir, stack)
    checked = check_installers(stack, installers, skip_installers, chosen_installers)
    if lock is not None:
        check_lock(lock, stack, checked, tuple(skip_installers), wheelhouse_dir)
    else:
        pins = cm.Constraints(torch_npu="==" + stack.row.torch_npu, python=stack.python, arch=stack.arch,
                              chip=stack.chip, os=stack.os)
        lock = lock_mod.make(matrix or cm.load_matrix(), pins, installers=Path(installers) if checked else None,
                             pinned_installers={k: Path(r["file"]).name for k, r in checked.items()},
                             kinds=tuple(checked), wheelhouses=[wheelhouse_dir])
    inst_records = list(checked.values())
    top = f"npuenv-bundle-{stack.row.torch_npu}-py{stack.python}-{stack.arch}-{stack.chip}"
    if out.is_dir():
        raise UserError(f"{out} is a directory; --out names the archive to write")
    work = None
    try:
        with deferred():  # a signal cannot fall between making the folder and knowing its name
            work = wheelhouse.make_work_dir(out)
        entries, controller_info = _gather(work, wheelhouse_dir, inst_records, controller, matrix, log)
        log(f"bundle: hashing {len(entries)} files")
        hashes = {arc: sha256_file(src) for arc, src in entries}
        sizes = {arc: src.stat().st_size for arc, src in entries}
        usage = render_usage(stack, top, controller_info).encode("utf-8")
        hashes[USAGE], sizes[USAGE] = checksums.sha256_bytes(usage), len(usage)
        lock_bytes = lock_mod.render(lock).encode("utf-8")
        hashes[LOCK_FILE], sizes[LOCK_FILE] = checksums.sha256_bytes(lock_bytes), len(lock_bytes)
        manifest = _bundle_manifest(stack, top, inst_records, skip_installers, lock, house, controller_info,
                                    {arc: {"sha256": h, "size": sizes[arc]} for arc, h in sorted(hashes.items())})
        manifest_bytes = (json.dumps(manifest, indent=2) + "\n").encode("utf-8")
        hashes[BUNDLE_MANIFEST] = checksums.sha256_bytes(manifest_bytes)
        archive = work / "bundle.partial"
        log(f"bundle: writing {len(entries) + 4} files")
        # the manifest first: verify() judges every later member by it before reading a byte of it
        written = {BUNDLE_MANIFEST: manifest_bytes, SUMS: checksums.format_sums(hashes).encode("utf-8"),
                   USAGE: usage, LOCK_FILE: lock_bytes}
        _write_archive(archive, mode, top, written, entries)
        with deferred():
            os.replace(archive, out)
    finally:
        if work is not None:
            shutil.rmtree(work, ignore_errors=True)
    log(f"bundle ready: {out} ({len(entries) + 4} files, {out.stat().st_size // (1 << 20)} MiB)")
    return manifest


def _checked_wheelhouse(wheelhouse_dir: Path, stack: Stack) -> dict:
    """The wheelhouse's manifest, once the wheelhouse is known to be the stack's and whole."""
    house = wheelhouse.load_manifest(wheelhouse_dir)
    for key in ("torch_npu", "python", "arch"):
        want = {"torch_npu": stack.row.torch_npu, "python": stack.python, "arch": stack.arch}[key]
        if house["stack"][key] != want:
            raise UserError(f"{wheelhouse_dir} was built for {key} {house['stack'][key]}, the bundle's stack has {want}")
    problems = wheelhouse.verify(wheelhouse_dir)
    if problems:
        raise UserError(f"{wheelhouse_dir} fails verification; rebuild it (make wheelhouse):\n  "
                        + "\n  ".join(problems))
    return house


def _gather(work: Path, wheelhouse_dir: Path, inst_records: list[dict], controller: ControllerOptions,
            matrix: cm.Matrix | None, log: Log) -> tuple[list[tuple[str, Path]], dict | None]:
    """Every file the bundle carries as (path in the bundle, file here), those made for it written under
    ``work``; and what the controller's packages are (None when left out)."""
    entries: list[tuple[str, Path]] = [(r["file"], r["_src"]) for r in inst_records]
    if inst_records:
        # installers/ is the site's installer cache (playbooks, image builds): its own SHA256SUMS
        inst_sums = work / f"{INSTALLERS}-{SUMS}"
        inst_sums.write_text(checksums.format_sums({Path(r["file"]).name: r["sha256"] for r in inst_records}),
                             encoding="utf-8")
        entries.append((f"{INSTALLERS}/{SUMS}", inst_sums))
    entries += [(f"{WHEELHOUSE}/{p.relative_to(wheelhouse_dir).as_posix()}", p) for p in _tree(wheelhouse_dir)]
    for name, folder in SOURCE_TREES.items():
        entries += [(f"{SOURCE}/{name}/{p.relative_to(folder).as_posix()}", p) for p in _tree(folder)]
    # the roles and plugins as the npuenv.ascend collection, for playbooks of the site's own
    from ansible_run import collection
    built = collection.build(work / COLLECTION, log)
    entries.append((f"{COLLECTION}/{built.name}", built))
    controller_info = None
    if controller.include:
        controller_info = gather_controller(work / CONTROLLER, controller, matrix or cm.load_matrix(), log)
        entries += [(f"{CONTROLLER}/{p.name}", p) for p in sorted((work / CONTROLLER).iterdir())]
    return entries, controller_info


def _bundle_manifest(stack: Stack, top: str, inst_records: list[dict], skip_installers: tuple[str, ...], lock: Lock,
              house: dict, controller_info: dict | None, files: dict[str, dict]) -> dict:
    return {
        "format": FORMAT,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "created_by": CREATED_BY,
        "top": top,
        "stack": {"torch_npu": stack.row.torch_npu, "torch": stack.row.torch,
                  "torchvision": stack.row.torchvision, "cann": stack.row.cann, "python": stack.python,
                  "arch": stack.arch, "chip": stack.chip, "os": stack.os, "hdk": stack.row.hdk["version"]},
        "installers": [{k: v for k, v in r.items() if k != "_src"} for r in inst_records],
        "skipped_installers": list(skip_installers),
        "lock": {lock_mod.FORMAT_KEY: lock_mod.FORMAT, "digest": lock.digest, "file": LOCK_FILE},
        "wheelhouse": {"path": WHEELHOUSE, "wheels": len(house["wheels"]), "notes": house.get("notes", [])},
        "source": {name: f"{SOURCE}/{name}" for name in SOURCE_TREES},
        "controller": controller_info,
        "files": files,
    }


def _write_archive(archive: Path, mode: str, top: str, written: dict[str, bytes],
                   entries: list[tuple[str, Path]]) -> None:
    """The tar archive under ``top``/: the ``written`` files in their order, then the gathered ones."""
    with tarfile.open(archive, mode, dereference=True) as tar:
        for arc, data in written.items():
            _add_bytes(tar, f"{top}/{arc}", data)
        for arc, src in entries:
            tar.add(src, arcname=f"{top}/{arc}", recursive=False, filter=_normalise)


# --- the controller's packages -------------------------------------------------------

def project_wheel(dest: Path, log: Log = _quiet) -> Path:
    """npuenv's own wheel, built into ``dest`` from this project's source tree (the build backend,
    hatchling, writes nothing into the tree: the checkout is left as it was, and may be read-only)."""
    pyproject = PROJECT_ROOT / "pyproject.toml"
    if not pyproject.is_file():
        raise UserError(f"npuenv runs from an installed copy ({PROJECT_ROOT}), not from its source tree, so its "
                        f"wheel cannot be built here; make the bundle from the npuenv checkout, or pass "
                        f"--no-controller (the site then installs npuenv itself)")
    backend = tomllib.loads(pyproject.read_text(encoding="utf-8"))["build-system"]["build-backend"]
    dest.mkdir(parents=True, exist_ok=True)
    args = ["wheel", "--no-deps", "-w", str(dest)]
    if importlib.util.find_spec(backend.partition(".")[0]) is not None:
        args.append("--no-build-isolation")  # the build backend is here: no index needed for it
    proc = run_pip(args + [str(PROJECT_ROOT)], pip_env(), log)
    built = sorted(dest.glob("npuenv-*.whl"))
    if proc.returncode != 0 or len(built) != 1:
        raise UserError(f"building npuenv's wheel from {PROJECT_ROOT} failed (pip wheel exited "
                        f"{proc.returncode}):\n{pip_tail(proc)}")
    return built[0]


# The controller's wheels are manylinux2014 ones (glibc 2.17 or later: every Linux the matrix's
# OSes ship), for each Python and arch of controller_targets.
CONTROLLER_PLATFORM = "manylinux2014"


def controller_targets(requires_python: str | None, matrix: cm.Matrix) -> list[tuple[str, str]]:
    """(Python, arch) pairs the bundle's controller wheels are for: every Python a matrix row supports
    that npuenv's Requires-Python allows, on every arch of the matrix."""
    allowed = SpecifierSet(requires_python or "")
    pythons = sorted({v for row in matrix.rows for v in row.python if Version(v) in allowed}, key=Version)
    return [(py, arch) for py in pythons for arch in matrix.platforms.archs]


def target_args(python: str, arch: str) -> list[str]:
    """pip download's options for CPython ``python`` on Linux ``arch`` (wheels only)."""
    return ["--only-binary=:all:", "--implementation", "cp", "--python-version", python,
            "--platform", f"{CONTROLLER_PLATFORM}_{arch}"]


def gather_controller(dest: Path, opts: ControllerOptions, matrix: cm.Matrix, log: Log = _quiet) -> dict:
    """npuenv's wheel and every wheel it needs on the controller (its ``controller`` extra:
    Ansible, pytest-testinfra), for each of controller_targets, with a hash-pinned requirements.txt
    that serves them all (one version of each package; a wheel only some targets need is marked so)."""
    own = project_wheel(dest.parent / "npuenv-wheel", log)
    targets = controller_targets(WheelInfo.read(own).requires_python, matrix)
    args = ["download"]
    for d in opts.find_links:
        if not Path(d).is_dir():
            raise UserError(f"--controller-wheels {d} is not a directory")
        args += ["--find-links", str(Path(d).resolve())]
    if opts.offline:
        args.append("--no-index")
    elif opts.index_url:
        args += ["--index-url", opts.index_url]
    lock = PROJECT_ROOT / "requirements.lock"
    if lock.is_file():
        args += ["-c", str(lock)]  # the versions this project is tested with
    log(f"bundle: gathering the controller's packages (npuenv, Ansible, pytest-testinfra) for "
        f"{len(targets)} Python/arch pairs")
    wanted = f"npuenv[{CONTROLLER_EXTRA}] @ {own.as_uri()}"
    pins = dest.parent / "controller-pins.txt"
    used: dict[str, set[tuple[str, str]]] = {}   # wheel file -> the targets it serves
    for python, arch in targets:
        got = dest.parent / f"controller-{python}-{arch}"
        proc = run_pip(args + target_args(python, arch) + ["-d", str(got), wanted], pip_env(), log)
        if proc.returncode != 0:
            where = "the --controller-wheels folders" if opts.offline else "the package index"
            raise UserError(f"pip could not gather the controller's packages for Python {python} on {arch} from "
                            f"{where} (pip download exited {proc.returncode}):\n{pip_tail(proc)}\npass "
                            f"--controller-wheels DIR (a folder with those wheels) with --offline, or "
                            f"--no-controller to leave them out")
        for wheel in got.glob("*.whl"):
            used.setdefault(wheel.name, set()).add((python, arch))
            dest.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(wheel, dest / wheel.name)
        if not pins.exists():   # every later target gets the versions the first one got
            pins.write_text("".join(f"{w.metadata_name}=={w.version}\n" for w in map(WheelInfo.read,
                                                                                    got.glob("*.whl"))))
            args += ["-c", str(pins)]
    (dest / "requirements.txt").write_text(requirements(dest, used, targets), encoding="utf-8")
    return {"path": CONTROLLER, "pythons": sorted({p for p, _ in targets}, key=Version),
            "archs": sorted({a for _, a in targets}), "platform": CONTROLLER_PLATFORM,
            "wheels": sorted(used)}


def requirements(folder: Path, used: dict[str, set[tuple[str, str]]], targets: list[tuple[str, str]]) -> str:
    """requirements.txt for the wheels in ``folder``: each project pinned with the hashes of its
    wheels, and an environment marker when it serves only some ``targets``."""
    projects: dict[str, list[WheelInfo]] = {}
    for name in sorted(used):
        info = WheelInfo.read(folder / name)
        projects.setdefault(info.name, []).append(info)
    lines = ["# The controller's packages: npuenv and what it needs, for CPython "
             f"{', '.join(sorted({p for p, _ in targets}, key=Version))} on {', '.join(sorted({a for _, a in targets}))}.",
             f"#   python3 -m venv {VENV} && {VENV}/bin/pip install --no-index --find-links {CONTROLLER} "
             f"-r {CONTROLLER}/requirements.txt   (see {USAGE})", ""]
    for project, wheels in sorted(projects.items()):
        versions = {w.version for w in wheels}
        if len(versions) != 1:
            raise UserError(f"the controller's targets got {project} at several versions "
                            f"({', '.join(map(str, sorted(versions)))}); pin one in requirements.lock")
        served = set().union(*(used[w.filename] for w in wheels))
        marker = "" if served == set(targets) else " ; " + " or ".join(
            f'(python_version == "{p}" and platform_machine == "{a}")' for p, a in sorted(served))
        lines.append(f"{wheels[0].metadata_name}=={wheels[0].version}{marker} \\")
        lines += [f"    --hash=sha256:{h} \\" for h in sorted({w.sha256 for w in wheels})]
        lines[-1] = lines[-1].removesuffix(" \\")
    return "\n".join(lines) + "\n"


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


# USAGE.txt's commands are its lines that start with PROMPT (after their indentation), continued
# by a trailing backslash: the tests run them as written. They run in the folder the archive was
# unpacked in, then in the bundle's top folder.
PROMPT = "$ "
# The controller's virtual environment, beside the bundle's folder: inside it, every file of the venv
# would be a file the bundle does not list (`bundle verify` refuses those).
VENV = "../npuenv-venv"
OUTPUTS = "../npuenv-out"   # where deploy's logs and validate's reports go: beside the folder too
# What the site names in the commands itself.
PLACEHOLDERS = ("INVENTORY",)


def render_usage(stack: Stack, top: str, controller: dict | None = None) -> str:
    if controller:
        venv = f"""\
3. The controller: a virtual environment beside this folder, made from the packages in {CONTROLLER}/
   (for CPython {', '.join(controller['pythons'])} on {' or '.join(controller['archs'])} Linux with glibc 2.17 or later:
   python3 must be one of those), then the bundle checked again by npuenv:
     {PROMPT}python3 -m venv {VENV}
     {PROMPT}{VENV}/bin/pip install --no-index --find-links {CONTROLLER} -r {CONTROLLER}/requirements.txt
     {PROMPT}{VENV}/bin/npuenv bundle verify .
4. Roll out (INVENTORY: your inventory; copy {SOURCE}/playbooks/inventory/example, whose npuenv_row names
   row {stack.row.torch_npu}, Python {stack.python}, chip {stack.chip}):
     {PROMPT}{VENV}/bin/npuenv deploy -i INVENTORY -e npuenv_installer_cache=$PWD/{INSTALLERS} \\
           -e npuenv_wheelhouse=$PWD/{WHEELHOUSE} --log-dir {OUTPUTS}/deploy
5. Validate:
     {PROMPT}{VENV}/bin/npuenv validate --target 'ansible://npu_nodes?inventory=INVENTORY' --lock {LOCK_FILE} \\
           --out {OUTPUTS}/validation
"""
    else:
        venv = f"""\
3. The controller: this bundle carries no controller packages (made with --no-controller): install
   npuenv on the controller, then point its playbooks at {INSTALLERS}/ and {WHEELHOUSE}/.
"""
    return f"""\
npuenv offline bundle: torch_npu {stack.row.torch_npu}, torch {stack.row.torch}, CANN {stack.row.cann},
Python {stack.python}, {stack.arch}, {stack.os}, chip {stack.chip}. Nothing here needs a network.
The commands are the lines that start with "{PROMPT.strip()}"; run them in order, from the folder this
bundle was unpacked in.

1. Check it:
     {PROMPT}cd {top} && sha256sum -c --quiet SHA256SUMS
2. Python packages: the nodes' wheelhouse is {WHEELHOUSE}/ (the playbooks push it); by hand, on a node:
     pip install --no-index --find-links {WHEELHOUSE} -r {WHEELHOUSE}/requirements.txt
{venv}
{INSTALLERS}/ holds the stack's .run packages and their SHA256SUMS; {SOURCE}/ holds the playbooks and the
matrix this bundle was made from (also inside npuenv's wheel in {CONTROLLER}/). {LOCK_FILE} is the stack's
lock (`npuenv lock show {LOCK_FILE}`): the installers here are the ones it pins. {COLLECTION}/ holds the
roles and plugins as the npuenv.ascend collection, for playbooks of your own: `ansible-galaxy collection
install --offline {COLLECTION}/npuenv-ascend-*.tar.gz -p ./collections` in your playbook's folder.
"""


def usage_commands(usage: str) -> list[str]:
    """USAGE.txt's commands, in order: each PROMPT line with its continuation lines."""
    commands, current = [], None
    for line in usage.splitlines():
        text = line.strip()
        if current is not None:
            current += "\n" + text
        elif text.startswith(PROMPT):
            current = text[len(PROMPT):]
        else:
            continue
        if not current.endswith("\\"):
            commands.append(current)
            current = None
    return commands


# --- verifying ------------------------------------------------------------------
# Required members of every bundle, besides what its manifest lists.
REQUIRED = (USAGE, f"{WHEELHOUSE}/{wheelhouse.MANIFEST}", f"{WHEELHOUSE}/{wheelhouse.SUMS}",
            f"{WHEELHOUSE}/{wheelhouse.REQUIREMENTS}", f"{SOURCE}/playbooks/site.yml",
            f"{SOURCE}/compat_matrix/data/matrix.yaml", f"{SOURCE}/validation/node/vendor_tools/npu_smi.py")
# Problems listed before verifying stops: a bundle with more is not the bundle its manifest
# describes, and reading on would only cost time.
MAX_PROBLEMS = 100


def _load_manifest(data: bytes) -> tuple[dict | None, str | None]:
    """MANIFEST.json's content, or why it is not a bundle's manifest."""
    try:
        manifest = json.loads(data.decode("utf-8"))
    except ValueError as e:
        return None, f"{BUNDLE_MANIFEST}: not valid JSON text ({e})"
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT or \
            manifest.get("created_by") != CREATED_BY:
        return None, f"{BUNDLE_MANIFEST} is not a bundle manifest of format {FORMAT} made by `{CREATED_BY}`"
    files = manifest.get("files")
    if not isinstance(files, dict) or not files:
        return None, f"{BUNDLE_MANIFEST} lists no files; an empty bundle is not a bundle"
    return manifest, None


def _listed_size(manifest: dict, rel: str) -> int | None:
    meta = manifest["files"].get(rel)
    size = meta.get("size") if isinstance(meta, dict) else None
    return size if type(size) is int and size >= 0 else None


def _refusal(manifest: dict, rel: str, size: int) -> str | None:
    """Why the file ``rel`` of ``size`` bytes is not read (None: it is hashed). Judged on the
    manifest's word alone, so that the work is bounded by the sizes it lists."""
    if rel not in manifest["files"]:
        return f"{rel}: not in {BUNDLE_MANIFEST}; not read"
    listed = _listed_size(manifest, rel)
    if listed is None:
        return f"{rel}: {BUNDLE_MANIFEST} gives no size for it; not read"
    if size != listed:
        return f"{rel}: {size} bytes, but {BUNDLE_MANIFEST} says {listed}; not read"
    return None


@dataclass
class _Tally:
    """What reading a bundle found: each file's sha256 by its path under the top folder, the files
    refused unread, SHA256SUMS' bytes and the problems; ``stopped`` once reading gave up."""
    problems: list[str] = field(default_factory=list)
    hashes: dict[str, str] = field(default_factory=dict)
    refused: set[str] = field(default_factory=set)
    sums_data: bytes | None = None
    stopped: bool = False

    def refuse(self, rel: str, why: str) -> None:
        self.problems.append(why)
        self.refused.add(rel)

    def stop(self, why: str) -> None:
        self.problems.append(why)
        self.stopped = True

    def full(self) -> bool:
        """Whether enough problems are known to stop reading (and then stopped, saying so)."""
        if len(self.problems) < MAX_PROBLEMS:
            return False
        self.stop(f"stopped after {MAX_PROBLEMS} problems: this is not the bundle its {BUNDLE_MANIFEST} describes")
        return True


def verify(path: Path) -> list[str]:
    """Every problem of a bundle archive or an unpacked bundle folder (empty: it is whole).

    An archive is checked as it is read (no unpacking): its first file is MANIFEST.json
    (`bundle make` writes it first), and every later member is judged against it before a byte
    of it is read: one top folder, nothing but plain files and folders, each file listed with
    its size, then its sha256 as SHA256SUMS says. An unpacked folder is checked the same way,
    its wheelhouse included."""
    path = Path(path)
    if path.is_dir():
        return verify_dir(path)
    if not os.path.lexists(path):
        raise UserError(f"{path} does not exist")
    outputs.check_input_file(path, "a bundle (its archive or its unpacked folder)", max_bytes=None)
    try:
        tar = tarfile.open(path, "r:*")
    except (tarfile.TarError, OSError) as e:
        raise UserError(f"{path} is not a tar archive: {e}") from None
    try:
        with tar:
            tally, manifest, top = _read_archive(tar)
    except (tarfile.TarError, OSError, EOFError) as e:
        raise UserError(f"{path}: the archive is damaged ({e})") from None
    if tally.stopped:
        return tally.problems
    if manifest is None:
        return tally.problems + [f"{BUNDLE_MANIFEST} is missing; this is not an npuenv bundle"]
    wrong_top = [] if manifest.get("top") == top else [
        f"{BUNDLE_MANIFEST} says the top folder is {manifest.get('top')!r}, the archive's is {top!r}"]
    return tally.problems + wrong_top + _check(tally.hashes, tally.refused, tally.sums_data, manifest, str(path))


def _read_archive(tar: tarfile.TarFile) -> tuple[_Tally, dict | None, str | None]:
    """Read the archive's members in turn, each judged by the manifest before its data is read;
    returns the tally, the manifest and the top folder (None, None when no manifest came first)."""
    tally = _Tally()
    manifest, top, budget = None, None, 0
    for count, member in enumerate(tar):   # each step skips a member's data: stop before a costly one
        if tally.full():
            break
        if manifest is None and count >= MAX_PROBLEMS:
            tally.stop(f"no {BUNDLE_MANIFEST} among the archive's first {MAX_PROBLEMS} members; this "
                       f"is not an npuenv bundle (`{CREATED_BY}` writes {BUNDLE_MANIFEST} first)")
            break
        name = member.name
        rel = checksums.safe_relative(name)
        if manifest is None and member.isfile() and rel and rel.partition("/")[2] == BUNDLE_MANIFEST:
            manifest, data, why = _archive_manifest(tar, member)
            if why:
                tally.stop(why)
                break
            top = rel.partition("/")[0]
            tally.hashes[BUNDLE_MANIFEST] = checksums.sha256_bytes(data)
            # What reading the archive may cost: the files listed, their headers, a SHA256SUMS.
            budget = outputs.MAX_INPUT_BYTES + sum(
                (_listed_size(manifest, f) or 0) + 2 * tarfile.BLOCKSIZE for f in manifest["files"])
            continue
        if manifest is None and (member.size or (member.isfile() and rel is not None)):
            tally.stop(f"{name}: comes before {BUNDLE_MANIFEST}, so it cannot be checked before it "
                       f"is read (`{CREATED_BY}` writes {BUNDLE_MANIFEST} first); not read further")
            break
        if rel is None:
            tally.problems.append(f"{name}: an unsafe path in the archive (absolute or with '..'); not followed")
        elif not member.isdir() and not member.isfile():
            tally.problems.append(f"{name}: not a plain file (links and devices do not belong in a bundle)")
        elif member.isfile():
            first, _, inner = rel.partition("/")
            why = _archive_refusal(member, first, inner, top, manifest, tally)
            if why is None and inner == SUMS:
                tally.sums_data = tar.extractfile(member).read()
                tally.hashes[SUMS] = checksums.sha256_bytes(tally.sums_data)
            elif why is None:
                tally.hashes[inner] = checksums.sha256_fileobj(tar.extractfile(member))
            elif first == top:
                tally.refuse(inner, why)
            else:
                tally.problems.append(why)
        if manifest is not None:
            budget -= member.size + tarfile.BLOCKSIZE
            if budget < 0:
                tally.stop(f"the archive holds more than its {BUNDLE_MANIFEST} lists; stopped reading at {name}")
                break
    return tally, manifest, top


def _archive_manifest(tar: tarfile.TarFile, member: tarfile.TarInfo) -> tuple[dict | None, bytes | None, str | None]:
    """The manifest member read: (manifest, its bytes, None), or why it cannot be."""
    if member.size > outputs.MAX_INPUT_BYTES:
        return None, None, (f"{member.name}: {member.size} bytes, more than the {outputs.MAX_INPUT_BYTES} "
                            f"a manifest may have; not read")
    data = tar.extractfile(member).read()
    manifest, why = _load_manifest(data)
    return manifest, data, why


def _archive_refusal(member: tarfile.TarInfo, first: str, inner: str, top: str | None, manifest: dict,
                     tally: _Tally) -> str | None:
    """Why a file member (``first``/``inner``) is not read, or None to read it."""
    name = member.name
    if first != top or not inner:
        return f"{name}: outside the bundle's top folder {top}/; not read"
    if inner in tally.hashes or inner in tally.refused:
        return f"{name}: in the archive twice; not read again"
    if inner == SUMS:
        if member.size > outputs.MAX_INPUT_BYTES:
            return f"{name}: {member.size} bytes, more than the {outputs.MAX_INPUT_BYTES} a {SUMS} may have; not read"
        return None
    return _refusal(manifest, inner, member.size)


def _hash_at_most(path: Path, size: int) -> str | None:
    """The sha256 of a regular file read without blocking and never past ``size`` + 1 bytes (a file
    that grew has another checksum anyway); None when ``path`` is no longer a regular file."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        os.set_blocking(fd, True)
        return checksums.sha256_fileobj(f, size + 1)


def verify_dir(root: Path) -> list[str]:
    root = Path(root)
    manifest_path = root / BUNDLE_MANIFEST
    if manifest_path.is_symlink() or not manifest_path.exists():
        return [f"{BUNDLE_MANIFEST} is missing; this is not an npuenv bundle"]
    try:
        data = outputs.read_bytes(manifest_path, f"the bundle's {BUNDLE_MANIFEST}")
    except UserError as e:
        return [str(e)]
    manifest, why = _load_manifest(data)
    if why:
        return [why]
    tally = _read_dir(root, manifest, checksums.sha256_bytes(data))
    if tally.stopped:
        return tally.problems
    problems = tally.problems + _check(tally.hashes, tally.refused, tally.sums_data, manifest, str(root))
    house = root / WHEELHOUSE   # always this folder: the manifest's word is not followed
    # Only a wheelhouse whose every file the bundle vouched for (sizes included) is read further.
    if not problems and house.is_dir() and not house.is_symlink() and (house / wheelhouse.MANIFEST).is_file():
        try:
            problems += [f"{WHEELHOUSE}: {p}" for p in wheelhouse.verify(house)]
        except UserError as e:
            problems.append(f"{WHEELHOUSE}: {e}")
    return problems


def _read_dir(root: Path, manifest: dict, manifest_hash: str) -> _Tally:
    """Walk an unpacked bundle, each file judged by the manifest before it is read; links are not
    followed and a stray virtual environment is one problem, not read."""
    tally = _Tally(hashes={BUNDLE_MANIFEST: manifest_hash})
    venvs = set()
    for dirpath, dirnames, filenames in os.walk(root):
        base = Path(dirpath)
        for name in sorted(dirnames + filenames):
            if tally.full():
                return tally
            p = base / name
            rel = p.relative_to(root).as_posix()
            if p.is_symlink():
                tally.problems.append(f"{rel}: a symbolic link; a bundle holds plain files only (not followed)")
                continue
            if name in dirnames and _stray_venv(p, rel, manifest):
                tally.problems.append(f"{rel}/: a Python virtual environment inside the bundle's folder, which is "
                                      f"not part of the bundle; not read (make it outside the folder, as {USAGE} "
                                      f"does: python3 -m venv {VENV})")
                venvs.add(name)
                continue
            if name in dirnames or rel == BUNDLE_MANIFEST:
                continue
            st = p.stat()
            if not stat.S_ISREG(st.st_mode):
                tally.problems.append(f"{rel}: not a plain file (a pipe, socket or device); a bundle holds plain "
                                      f"files only")
            elif rel == SUMS:
                try:
                    tally.sums_data = outputs.read_bytes(p, f"the bundle's {SUMS}")
                except UserError as e:
                    tally.refuse(rel, str(e))
                    continue
                tally.hashes[SUMS] = checksums.sha256_bytes(tally.sums_data)
            else:
                why = _refusal(manifest, rel, st.st_size)
                digest = None if why else _hash_at_most(p, st.st_size)
                if why is None and digest is None:
                    why = f"{rel}: not a plain file (a pipe, socket or device); a bundle holds plain files only"
                if why:
                    tally.refuse(rel, why)
                else:
                    tally.hashes[rel] = digest
        dirnames[:] = sorted(d for d in dirnames if not (base / d).is_symlink() and d not in venvs)
        venvs.clear()
    return tally


def _stray_venv(folder: Path, rel: str, manifest: dict) -> bool:
    """Whether ``folder`` is a virtual environment (its pyvenv.cfg) holding nothing the manifest lists:
    one problem for it, not one for each of its thousands of files."""
    marker = folder / "pyvenv.cfg"
    return marker.is_file() and not marker.is_symlink() and \
        not any(f.startswith(rel + "/") for f in manifest["files"])


def _check(hashes: dict[str, str], refused: set[str], sums_data: bytes | None, manifest: dict,
           where: str) -> list[str]:
    """The files read (relative name -> sha256) against SHA256SUMS and MANIFEST.json; those
    ``refused`` unread were reported already."""
    if sums_data is None:
        return [f"{SUMS} is missing"]
    sums = checksums.parse_sums(sums_data, f"{where}: {SUMS}")
    problems = []
    for rel, expected in sorted(sums.items()):
        if rel in refused:
            continue
        if rel not in hashes:
            problems.append(f"{rel}: listed in {SUMS} but missing")
        elif hashes[rel] != expected:
            problems.append(f"{rel}: checksum mismatch: {SUMS} says sha256 {expected}, the file has {hashes[rel]}")
    for extra in sorted(set(hashes) - set(sums) - {SUMS}):
        problems.append(f"{extra}: not listed in {SUMS}")
    return problems + _manifest_problems(manifest, sums)


def _manifest_problems(manifest: dict, sums: dict[str, str]) -> list[str]:
    files = manifest["files"]
    problems = []
    for rel, meta in sorted(files.items()):
        if checksums.safe_relative(rel) != rel:
            problems.append(f"{BUNDLE_MANIFEST} names {rel!r}, a path that leaves the bundle; not followed")
        elif not isinstance(meta, dict) or not isinstance(meta.get("sha256"), str) or \
                sums.get(rel) != meta["sha256"]:
            problems.append(f"{rel}: {BUNDLE_MANIFEST} and {SUMS} disagree")
    for rel in sorted(set(sums) - set(files) - {BUNDLE_MANIFEST}):
        problems.append(f"{rel}: in {SUMS} but not in {BUNDLE_MANIFEST}")
    if BUNDLE_MANIFEST not in sums:
        problems.append(f"{SUMS} does not list {BUNDLE_MANIFEST}")
    for rel in REQUIRED:
        if rel not in files:
            problems.append(f"{rel}: missing from the bundle (every bundle has it)")
    if not any(rel.startswith(f"{WHEELHOUSE}/") and rel.endswith(".whl") for rel in files):
        problems.append(f"{WHEELHOUSE}/ holds no wheel")
    installers = manifest.get("installers")
    if not isinstance(installers, list):
        problems.append(f"{BUNDLE_MANIFEST}: 'installers' is not a list")
        installers = []
    if installers and f"{INSTALLERS}/{SUMS}" not in files:
        problems.append(f"{INSTALLERS}/{SUMS}: missing; the site's installer cache needs it")
    for inst in installers:
        rel = inst.get("file") if isinstance(inst, dict) else None
        if not isinstance(rel, str) or checksums.safe_relative(rel) != rel or not rel.startswith(f"{INSTALLERS}/"):
            problems.append(f"{BUNDLE_MANIFEST}: installer {rel!r} is not a file under {INSTALLERS}/; not followed")
        elif rel not in sums or sums[rel] != inst.get("sha256"):
            problems.append(f"{rel}: an installer of the manifest that {SUMS} does not vouch for")
    if isinstance(manifest.get("wheelhouse"), dict) and manifest["wheelhouse"].get("path") != WHEELHOUSE:
        problems.append(f"{BUNDLE_MANIFEST}: the wheelhouse is always {WHEELHOUSE}/, not "
                        f"{manifest['wheelhouse'].get('path')!r}; not followed")
    controller = manifest.get("controller")
    if controller is not None:
        if not isinstance(controller, dict) or controller.get("path") != CONTROLLER:
            problems.append(f"{BUNDLE_MANIFEST}: the controller's packages are always under {CONTROLLER}/")
        else:
            for rel in [f"{CONTROLLER}/requirements.txt"] + [f"{CONTROLLER}/{w}" for w in controller.get("wheels", [])]:
                if checksums.safe_relative(rel) != rel or rel not in files:
                    problems.append(f"{rel}: a controller file of the manifest that the bundle does not hold")
    return problems

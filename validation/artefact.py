"""The node-side validation artefact: one self-contained zipapp that carries
the suite, the workloads, pytest and pytest-testinfra (pure Python, taken from
the controller's own installation, with their bytecode for the controller's
Python) and the stack the node must match.

The node runs it with its own python3 (`python3 npuenv-validate.pyz --level
quick`); it unpacks its own packages into a private temporary directory (the
libraries are imported from the archive), runs the testinfra suite against
``local://`` and prints one JSON document on stdout (validation/node/runner.py).
Nothing is installed on the node and nothing is left behind.
"""
from __future__ import annotations

import importlib.util
import json
import marshal
import os
import re
import tempfile
import time
import zipfile
from pathlib import Path

from compat_matrix.checksums import sha256_bytes, sha256_file
from compat_matrix.errors import UserError

from .node.layout import LIBRARIES, LOCKS_NAME, MODULES, OURS, STACK_NAME

PACKAGES = (*LIBRARIES, *OURS)
# pytest's oldest supported Python; the node entry refuses older ones with a message.
MIN_PYTHON = (3, 10)

MAIN = """\
# npuenv validation artefact: python3 THIS.pyz --help
import sys
if sys.version_info < {min_python!r}:
    sys.stdout.write('{{"error": "python3 %d.%d on this node is too old for the validation suite (pytest needs '
                     '{min_text} or newer); point ansible_python_interpreter at a newer Python"}}\\n'
                     % sys.version_info[:2])
    sys.exit(2)
from validation.node.runner import run_from_archive
sys.exit(run_from_archive(sys.argv[0]))
"""


def _source_root(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.origin:
        raise RuntimeError(f"{name} is not installed; the validation artefact needs it (make setup)")
    origin = Path(spec.origin)
    return origin.parent if spec.submodule_search_locations else origin


def _files(name: str):
    """(path on disk, path in the archive) for every file of a package or module; a subpackage
    (``validation.node``) comes with its parents' ``__init__.py`` and none of their other modules."""
    root = _source_root(name)
    if root.is_file():
        yield root, root.name
        return
    parents = name.split(".")[:-1]
    for i in range(1, len(parents) + 1):
        parent = ".".join(parents[:i])
        yield _source_root(parent) / "__init__.py", f"{parent.replace('.', '/')}/__init__.py"
    for path in sorted(root.rglob("*")):
        if path.is_dir() or "__pycache__" in path.parts or path.suffix in (".so", ".pyd", ".pyc", ".c", ".h"):
            continue
        yield path, f"{name.replace('.', '/')}/{path.relative_to(root).as_posix()}"


# Modules no node imports get no bytecode: pygments' lexers of other languages (pytest, which needs
# pygments, loads only its Python and diff lexers; the hundreds of others would double the artefact).
NO_BYTECODE = re.compile(r"pygments/lexers/(?!(__init__|_mapping|python|diff)\.py$)")
# PEP 552's flags for a pyc that names its source's hash and is never checked against it: the
# artefact's tree is private and never changes, and its files' times are not their sources'.
UNCHECKED_HASH = 0b01


def bytecode(path: Path, source: bytes, arcname: str) -> bytes | None:
    """``source`` compiled for this Python, as an unchecked-hash pyc: the controller's own cached
    bytecode of ``path`` when it is current, else compiled now (None if it does not compile here).

    The artefact carries it beside the source (``X.pyc``, where zipimport looks: the entry point
    and the libraries); unpacking moves ours to ``__pycache__`` (node.unpack). A node whose Python
    has another magic number ignores it and compiles the source, as it did before."""
    magic = importlib.util.MAGIC_NUMBER
    code = None
    try:
        cached = Path(importlib.util.cache_from_source(str(path))).read_bytes()
    except (OSError, NotImplementedError, ValueError):
        cached = b""
    if cached[:4] == magic and len(cached) > 16:
        flags, st = int.from_bytes(cached[4:8], "little"), path.stat()
        if flags & 1:   # hash-based
            current = cached[8:16] == importlib.util.source_hash(source)
        else:           # the source's mtime and size, as the import system checks them
            current = cached[8:16] == ((int(st.st_mtime) & 0xFFFFFFFF).to_bytes(4, "little") +
                                       (st.st_size & 0xFFFFFFFF).to_bytes(4, "little"))
        code = cached[16:] if current else None
    if code is None:
        try:
            code = marshal.dumps(compile(source, arcname, "exec", dont_inherit=True))
        except (SyntaxError, ValueError):
            return None
    return magic + UNCHECKED_HASH.to_bytes(4, "little") + importlib.util.source_hash(source) + code


def build(out: Path, stack: dict | None, locks: dict[str, dict] | None = None) -> Path:
    """Write the artefact for ``stack`` (validation.run.expected_stack) and ``locks`` ({digest:
    lock document}: the whole locks, whose entries the nodes pick) to ``out``."""
    out = Path(out)
    tmp = out.with_name(out.name + ".part")
    # Fixed timestamps: the same code and stack give the same bytes.
    stamp = (2020, 1, 1, 0, 0, 0)

    def add(zf: zipfile.ZipFile, arcname: str, data: bytes) -> None:
        info = zipfile.ZipInfo(arcname, stamp)
        info.compress_type = zipfile.ZIP_DEFLATED
        info.external_attr = 0o644 << 16
        zf.writestr(info, data)

    try:
        with zipfile.ZipFile(tmp, "w") as zf:
            add(zf, "__main__.py", MAIN.format(min_python=MIN_PYTHON,
                                               min_text=".".join(map(str, MIN_PYTHON))).encode())
            if stack is not None:
                add(zf, STACK_NAME, json.dumps(stack, indent=1, sort_keys=True).encode())
            if locks:
                from compat_matrix.lock import FORMAT, FORMAT_KEY
                add(zf, LOCKS_NAME, json.dumps({FORMAT_KEY: FORMAT, "locks": locks}, sort_keys=True).encode())
            for name in (*PACKAGES, *MODULES):
                for path, arcname in _files(name):
                    data = path.read_bytes()
                    add(zf, arcname, data)
                    # Compiled once here instead of on every node at every run (three Pythons a run).
                    wanted = arcname.endswith(".py") and not NO_BYTECODE.match(arcname)
                    pyc = bytecode(path, data, arcname) if wanted else None
                    if pyc is not None:
                        add(zf, arcname + "c", pyc)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


# Built artefacts kept on the controller: building one zips a few thousand files (a CPU-second),
# which `npuenv status` and `npuenv validate` would otherwise spend on every run.
CACHE_ENV = "NPUENV_CACHE_DIR"
CACHE_KEEP = 4
# Beyond the newest CACHE_KEEP, one used this recently stays: another run may be sending it now.
CACHE_IN_USE_S = 24 * 3600


def cache_dir() -> Path:
    base = os.environ.get(CACHE_ENV) or os.path.join(os.environ.get("XDG_CACHE_HOME") or
                                                     os.path.expanduser("~/.cache"), "npuenv")
    return Path(base) / "artefacts"


def _source_key(stack: dict | None, locks: dict[str, dict] | None) -> str:
    """What the artefact's bytes depend on: the entry point, the stack, the locks and every packed file
    (its name, size and modification time; a changed file gives a new key)."""
    parts = [MAIN, json.dumps([stack, locks], sort_keys=True),
             importlib.util.MAGIC_NUMBER.hex()]   # the bytecode's Python
    for name in (*PACKAGES, *MODULES):
        for path, arcname in _files(name):
            st = path.stat()
            parts.append(f"{arcname}\0{st.st_size}\0{st.st_mtime_ns}\n")
    return sha256_bytes("".join(parts).encode())[:24]


def cached(stack: dict | None, directory: Path | None = None, locks: dict[str, dict] | None = None) -> Path:
    """The artefact for ``stack`` and ``locks`` (as build() takes them), built once and kept in the cache
    folder (the newest CACHE_KEEP, and those used in the last CACHE_IN_USE_S); UserError when that
    folder cannot be written."""
    directory = Path(directory) if directory else cache_dir()
    path = directory / f"npuenv-validate-{_source_key(stack, locks)}.pyz"
    if path.is_file():
        try:
            os.utime(path)   # its time is when it was last used
        except OSError:
            pass             # a cache of someone else's: it is only read
        return path
    try:
        directory.mkdir(parents=True, exist_ok=True)
        # Built beside its place under a private name, then moved: two runs at once each get a whole file.
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".build-", suffix=".pyz")
    except OSError as e:
        raise UserError(f"cannot write the validation artefact's cache folder {directory}: {e.strerror}; set "
                        f"{CACHE_ENV} to a folder you can write") from None
    os.close(fd)
    try:
        build(Path(tmp), stack, locks)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    now, ages = time.time(), []
    for kept in directory.glob("npuenv-validate-*.pyz"):
        try:
            ages.append((now - kept.stat().st_mtime, kept))
        except FileNotFoundError:
            continue   # another run removed it meanwhile
    for age, old in sorted(ages)[CACHE_KEEP:]:
        if age > CACHE_IN_USE_S:
            old.unlink(missing_ok=True)
    return path


def digest(path: Path) -> str:
    """The artefact's sha256 (hex): the name a node keeps it under."""
    return sha256_file(Path(path))

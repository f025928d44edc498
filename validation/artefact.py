"""The node-side validation artefact: one self-contained zipapp that carries
the suite, the workloads, pytest and pytest-testinfra (pure Python, taken from
the controller's own installation) and the stack the node must match.

The node runs it with its own python3 (`python3 npuenv-validate.pyz --level
quick`); it unpacks itself into a private temporary directory, runs the
testinfra suite against ``local://`` and prints one JSON document on stdout
(validation/node.py). Nothing is installed on the node and nothing is left
behind.
"""
from __future__ import annotations

import importlib.util
import json
import os
import zipfile
from pathlib import Path

# Top-level packages and modules the node needs, all pure Python. pytest's own
# dependencies (pluggy, iniconfig, packaging, pygments), testinfra, PyYAML's pure-Python
# loader (compat_matrix reads the vendor layout from platforms.yaml), and ours.
PACKAGES = ("pytest", "_pytest", "pluggy", "iniconfig", "packaging", "pygments", "testinfra", "yaml",
            "compat_matrix", "validation")
MODULES = ("py",)  # pytest's `py` compatibility shim
# pytest's oldest supported Python; the node entry refuses older ones with a message.
MIN_PYTHON = (3, 10)
STACK_NAME = "npuenv-stack.json"

MAIN = """\
# npuenv validation artefact: python3 THIS.pyz --help
import sys
if sys.version_info < {min_python!r}:
    sys.stdout.write('{{"error": "python3 %d.%d on this node is too old for the validation suite (pytest needs '
                     '{min_text} or newer); point ansible_python_interpreter at a newer Python"}}\\n'
                     % sys.version_info[:2])
    sys.exit(2)
from validation.node import run_from_archive
sys.exit(run_from_archive(sys.argv[0]))
"""


def _source_root(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.origin:
        raise RuntimeError(f"{name} is not installed; the validation artefact needs it (make setup)")
    origin = Path(spec.origin)
    return origin.parent if spec.submodule_search_locations else origin


def _files(name: str):
    """(path on disk, path in the archive) for every file of a package or module."""
    root = _source_root(name)
    if root.is_file():
        yield root, root.name
        return
    for path in sorted(root.rglob("*")):
        if path.is_dir() or "__pycache__" in path.parts or path.suffix in (".so", ".pyd", ".pyc", ".c", ".h"):
            continue
        yield path, f"{name}/{path.relative_to(root).as_posix()}"


def build(out: Path, stack: dict) -> Path:
    """Write the artefact for ``stack`` (validation.run.expected_stack) to ``out``."""
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
            add(zf, STACK_NAME, json.dumps(stack, indent=1, sort_keys=True).encode())
            for name in (*PACKAGES, *MODULES):
                for path, arcname in _files(name):
                    add(zf, arcname, path.read_bytes())
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out

"""What the tests and the benchmarks hand the product, made once: the real wheels the simulated
nodes and the images install (the torch_npu wheel from PyPI, the row's wheelhouse built by the
product's own code, cached in .cache/wheels so that a run without PyPI uses what an earlier one
cached; a copy of a wheelhouse whose torch_npu wheel was "rebuilt"), and a lock of a row that names
the simulated installers. Like demo.py these drive the product; the simulated vendor itself
(installers/, nodes.py, tools/) never reads compat_matrix. Where PyPI cannot be reached and nothing
is cached, the test (or benchmark) is skipped, saying so (pytest.skip)."""
from __future__ import annotations

import json
import os
import shutil
import socket
import uuid
import zipfile
from pathlib import Path

import pytest

import compat_matrix as cm
from compat_matrix import lock as lock_mod
from compat_matrix.checksums import sha256_file
from torch_npu_pkg import wheelhouse as wh
from torch_npu_pkg.sources import PyPISource
from torch_npu_pkg.wheels import Target

from . import installers as sim_installers

CACHE = Path(__file__).resolve().parent.parent.parent / ".cache" / "wheels"
CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def reachable(host: str, port: int = 443) -> bool:
    """Whether a registry answers, for tests that need it (they skip, saying so, when not)."""
    try:
        socket.create_connection((host, port), timeout=5).close()
        return True
    except OSError:
        return False


def torch_npu_wheel(stack: cm.Stack) -> Path:
    """The real torch_npu wheel, cached in .cache/wheels (shared with the other tests)."""
    have = sorted(CACHE.glob(f"torch_npu-{stack.row.torch_npu}-cp311-cp311-manylinux_2_28_{stack.arch}.whl"))
    if have:
        return have[0]
    if not reachable("pypi.org"):
        pytest.skip("the real torch_npu wheel comes from PyPI, which cannot be reached")
    CACHE.mkdir(parents=True, exist_ok=True)
    stage = CACHE / f".stage-{os.getpid()}"
    try:
        fetched = PyPISource().fetch(stack, Target.for_stack(stack), stage, print)
        dest = CACHE / fetched.path.name
        os.replace(fetched.path, dest)
        return dest
    finally:
        shutil.rmtree(stage, ignore_errors=True)


# The wheels of the last wheelhouse built with PyPI reachable: a later build without PyPI uses them.
DEPS_CACHE = CACHE / "wheelhouse-deps"


def make_wheelhouse(stack: cm.Stack, out: Path, online: bool | None = None) -> Path:
    """The row's wheelhouse, built by the current code: its dependencies from PyPI when it can be
    reached (and cached for later), else from the wheels an earlier run cached (pip --no-index)."""
    source = os.environ.get("TORCH_SOURCE") or \
        ("/opt/wheels" if list(Path("/opt/wheels").glob(f"torch-{stack.row.torch}+cpu-cp311-*.whl")) else CPU_INDEX)
    online = reachable("pypi.org") if online is None else online
    if not online and not any(DEPS_CACHE.glob("*.whl")):
        pytest.skip(f"PyPI cannot be reached and no earlier run cached the wheelhouse's dependencies in "
                    f"{DEPS_CACHE}: run the image tests once with PyPI reachable")
    torch_npu_wheel(stack)
    # No CPU torchvision here: keep PyPI's build, as the wheelhouse test does (recorded in its notes).
    torchvision = "index" if source != CPU_INDEX else "auto"
    if online:
        wh.build(stack, wh.Options(out=out, torch_source=source, sources=[f"dir:{CACHE}", "pypi"],
                                   torchvision=torchvision))
        DEPS_CACHE.mkdir(parents=True, exist_ok=True)
        for wheel in out.glob("*.whl"):
            if not (DEPS_CACHE / wheel.name).exists():
                tmp = DEPS_CACHE / f".{wheel.name}.{os.getpid()}"
                shutil.copy2(wheel, tmp)
                os.replace(tmp, DEPS_CACHE / wheel.name)   # atomic: another test may read the cache meanwhile
    else:
        wh.build(stack, wh.Options(out=out, torch_source=source, sources=[f"dir:{CACHE}"], offline=True,
                                   find_links=[DEPS_CACHE], torchvision=torchvision))
    return out




def rebuilt_torch_npu(house: Path, out: Path) -> Path:
    """A copy of the wheelhouse whose torch_npu wheel has other bytes (a rebuilt wheel of the
    same version: a new zip comment) and whose manifest, sums, index and pins follow it."""
    shutil.copytree(house, out, copy_function=os.link)
    manifest = json.loads((out / wh.MANIFEST).read_text())
    record = next(w for w in manifest["wheels"] if w["role"] == "torch_npu")
    wheel = out / record["file"]
    data = wheel.read_bytes()
    wheel.unlink()
    wheel.write_bytes(data)
    with zipfile.ZipFile(wheel, "a") as z:
        z.comment = f"npuenv test rebuild {uuid.uuid4()}".encode()
    record.update(sha256=sha256_file(wheel), size=wheel.stat().st_size)
    shutil.rmtree(out / wh.INDEX)
    for name in (wh.SUMS, wh.REQUIREMENTS, wh.MANIFEST):
        (out / name).unlink()  # hard links to the original: replace, do not write through
    wh.write_files(out, manifest)
    return out


def row_lock(torch_npu: str, installers: Path, wheelhouses: list[Path] = ()) -> lock_mod.Lock:
    """A lock of the row (Python 3.11, x86_64, debian12: the simulated nodes) whose firmware is named,
    as an operator names it when one folder holds several rows' firmware (npuenv lock --installer)."""
    constraints = cm.Constraints(torch_npu="==" + torch_npu, python="3.11", arch="x86_64", os="debian12")
    stack = cm.resolve(cm.load_matrix(), constraints).stack
    firmware = sim_installers.package_names(sim_installers.release_of(stack))["firmware"]
    return lock_mod.make(cm.load_matrix(), constraints, installers=installers, wheelhouses=list(wheelhouses),
                         pinned_installers={"firmware": firmware})

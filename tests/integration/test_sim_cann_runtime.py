"""The real torch_npu wheel imports against the simulated CANN runtime.

torch_npu 2.13.0 from PyPI is installed (no deps, plus numpy, which it imports) into a
temporary folder, the simulated toolkit is built for it, and fresh interpreters import
it with and without the toolkit's set_env.sh sourced.
"""
from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.sim import state as sim_state
from tests.sim.cann_runtime.build import make_toolkit_tree

pytestmark = [pytest.mark.integration, pytest.mark.network]

ROOT = Path(__file__).resolve().parents[2]
PYTHON = ROOT / ".venv" / "bin" / "python"
CACHE = ROOT / ".cache" / "wheels"
# torch_npu pins torch==2.13.0; numpy is its one dependency the venv lacks.
WHEELS = {"torch_npu-2.13.0-cp311-*.whl": "torch-npu==2.13.0", "numpy-2.4.6-cp311-*.whl": "numpy==2.4.6"}
CANN_VERSION = "9.1.0"  # what torch_npu 2.13.0 pairs with (compat matrix)
HCCL_MISSING = "libhccl.so: cannot open shared object file"


def cached_wheel(pattern: str, requirement: str) -> Path:
    found = sorted(CACHE.glob(pattern))
    if not found:
        CACHE.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            [str(PYTHON), "-m", "pip", "download", "--no-deps", "--only-binary=:all:", requirement,
             "-d", str(CACHE)], capture_output=True, text=True)
        found = sorted(CACHE.glob(pattern))
        if done.returncode or not found:
            pytest.skip(f"cannot download {requirement} from PyPI: {done.stderr.strip()[-300:]}")
    return found[-1]


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """A folder holding torch_npu (and numpy), as `pip install --target` leaves it."""
    if not PYTHON.exists():
        pytest.fail(f"{PYTHON} missing: run `make setup`")
    wheels = [cached_wheel(p, r) for p, r in WHEELS.items()]
    target = tmp_path_factory.mktemp("site")
    subprocess.run([str(PYTHON), "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
                    "--target", str(target), *map(str, wheels)], check=True)
    return target


@pytest.fixture(scope="module")
def set_env(site, tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("Ascend") / "ascend-toolkit" / CANN_VERSION
    return make_toolkit_tree(home, CANN_VERSION, "x86_64", site)


@pytest.fixture
def node(tmp_path) -> dict:
    """A simulated 8 x 910B3 node: its state file and device nodes."""
    dev = tmp_path / "dev"
    dev.mkdir()
    for chip in sim_state.chips(sim_state.default_state()):
        (dev / f"davinci{chip['phy_id']}").touch()
    path = tmp_path / "state.json"
    sim_state.save(sim_state.default_state(), path)
    return {"state": path, "dev": dev}


def python(code: str, site: Path, node: dict, set_env: Path | None = None, **env) -> subprocess.CompletedProcess:
    """Run `python -c code` in a clean environment, after `source set_env` when given."""
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("ASCEND_", "NPU_SIM_", "TORCH_DEVICE_")) and k not in ("LD_LIBRARY_PATH", "PYTHONPATH")}
    clean.update(PYTHONPATH=str(site), NPU_SIM_STATE=str(node["state"]), NPU_SIM_DEV_DIR=str(node["dev"]), **env)
    run = f"exec {shlex.quote(str(PYTHON))} -c {shlex.quote(code)}"
    if set_env:
        run = f"source {shlex.quote(str(set_env))} && {run}"
    return subprocess.run(["bash", "-c", run], env=clean, capture_output=True, text=True, timeout=300)


QUERY = "import torch, torch_npu; print(torch.npu.is_available(), torch.npu.device_count(), torch.npu.get_device_name(0))"


def answer(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.strip().splitlines()[-1]


def test_device_count_follows_the_simulated_node(site, set_env, node):
    assert answer(python(QUERY, site, node, set_env)) == "True 8 Ascend910B3"

    for phy_id in (1, 2, 4, 5, 6):  # five device nodes gone: three NPUs left
        (node["dev"] / f"davinci{phy_id}").unlink()
    assert answer(python(QUERY, site, node, set_env)) == "True 3 Ascend910B3"

    # A rewritten state file is read at the next call: one 310P card, dies 0 and 1.
    sim_state.save(sim_state.default_state("310p"), node["state"])
    (node["dev"] / "davinci1").touch()
    assert answer(python(QUERY, site, node, set_env)) == "True 2 Ascend310P3"


def test_no_device_means_not_available(site, set_env, node):
    for dev in node["dev"].iterdir():
        dev.unlink()
    done = python("import torch, torch_npu; print(torch.npu.is_available(), torch.npu.device_count())",
                  site, node, set_env)
    assert answer(done) == "False 0"


def test_visible_devices_and_autoload(site, set_env, node):
    # torch alone imports torch_npu through its device-backend entry point.
    code = "import sys, torch; print(torch.npu.device_count(), sys.modules['torch_npu'].npu.utils.get_cann_version())"
    done = python(code, site, node, set_env, ASCEND_RT_VISIBLE_DEVICES="2,5")
    assert answer(done) == f"2 {CANN_VERSION}"


def test_device_init_works_and_compute_fails_cleanly(site, set_env, node):
    # set_device runs torch_npu's whole device init; memory is reported from the state
    # (910B3: 3407 of 65536 MB used). Nothing can run: the first tensor raises (which
    # call fails first depends on the CANN version's feature gates), it does not crash.
    code = ("import torch, torch_npu\n"
            "torch.npu.set_device(3)\n"
            "info = [torch.npu.current_device(), *torch.npu.mem_get_info()]\n"
            "try:\n"
            "    torch.zeros(2, device='npu')\n"
            "except RuntimeError:\n"
            "    info.append('RuntimeError')\n"
            "print(*info)\n")
    # (torch_npu logs warnings on stdout, so only the last line is ours.)
    assert answer(python(code, site, node, set_env)) == f"3 {(65536 - 3407) << 20} {65536 << 20} RuntimeError"


def test_every_torch_npu_library_resolves(site, set_env, node):
    # RTLD_NOW binds every symbol at once, so a missing stub shows here even for torchair
    # and the ATB plugin, which `import torch_npu` does not load.
    code = (
        "import ctypes, glob, os, torch, torch_npu\n"
        "d = os.path.dirname(torch_npu.__file__)\n"
        # _abi_compat_ge_apis.so uses symbols of _torchair.so, which loads it.
        "for so in sorted(glob.glob(d + '/**/*.so', recursive=True), key=lambda p: '_abi_compat' in p):\n"
        "    ctypes.CDLL(so, mode=os.RTLD_NOW)\n"
        "print('loaded')\n")
    assert answer(python(code, site, node, set_env)) == "loaded"


@pytest.mark.parametrize("autoload", [None, "0"])
def test_import_without_set_env_fails_like_on_a_real_host(site, node, autoload):
    env = {"TORCH_DEVICE_BACKEND_AUTOLOAD": autoload} if autoload else {}
    done = python("import torch, torch_npu", site, node, **env)
    assert done.returncode != 0
    assert HCCL_MISSING in done.stderr
    # With autoload on (torch's default), `import torch` itself fails through the entry point.
    if autoload is None:
        assert "Failed to load the backend extension: torch_npu" in done.stderr


def test_build_cli_writes_the_libraries_with_sonames(site, tmp_path):
    out = tmp_path / "lib64"
    done = subprocess.run([sys.executable, "-m", "tests.sim.cann_runtime.build", "--torch-npu-dir", str(site),
                           "--out", str(out)], cwd=ROOT, capture_output=True, text=True, check=True)
    built = {Path(line).name for line in done.stdout.split()}
    assert {"libascendcl.so", "libhccl.so", "libacl_op_compiler.so", "libge_runner.so", "libgraph.so",
            "libacl_tdt_channel.so"} <= built
    for name in built:
        dynamic = subprocess.run(["readelf", "-d", str(out / name)], capture_output=True, text=True).stdout
        assert f"Library soname: [{name}]" in dynamic

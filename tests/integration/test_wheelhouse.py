"""The wheelhouse and the bundle with the real tools.

* The real torch_npu 2.13.0 wheel from PyPI and the CPU torch from the torch
  source make a wheelhouse that installs into a fresh virtual environment with
  pip's network disabled; torch imports there.
* The source-build driver builds the stand-in tree (tests/fixtures/wheelhouse/
  standin: the vendor's interface, `ci/build.sh --python=3.X` -> dist/*.whl)
  from a tagged git repository with a submodule, on this host and in a podman
  container; a tag that does not compile fails cleanly.
* A bundle is made, unpacked elsewhere with tar, checked with sha256sum and
  `npuenv bundle verify`, and installs with no network.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

import compat_matrix as cm
from npuenv.cli import main
from tests.conftest import ROOT, reachable
from tests.fixtures.wheelhouse.synth import make_stack_wheels
from tests.sim import installers as sim_installers
from torch_npu_pkg import wheelhouse
from torch_npu_pkg.sources import PyPISource
from torch_npu_pkg.wheels import Target, sha256_file

ROW, PYTHON, ARCH = "2.13.0", "3.11", "x86_64"
CACHE = ROOT / ".cache" / "wheels"
STANDIN = ROOT / "tests" / "fixtures" / "wheelhouse" / "standin"
CPU_INDEX = "https://download.pytorch.org/whl/cpu"
M = cm.load_matrix()
STACK = cm.resolve(M, cm.Constraints(torch_npu="==" + ROW, python=PYTHON, arch=ARCH)).stack



def torch_source() -> str:
    """TORCH_SOURCE as the Makefile sets it: a directory with the CPU torch, else PyTorch's CPU index."""
    if os.environ.get("TORCH_SOURCE"):
        return os.environ["TORCH_SOURCE"]
    if list(Path("/opt/wheels").glob(f"torch-{STACK.row.torch}+cpu-cp311-*.whl")):
        return "/opt/wheels"
    return CPU_INDEX


def offline_env(home: Path) -> dict:
    """An environment in which pip cannot reach any index: no config files, a dead index URL, no proxy."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "PIP_CONFIG_FILE": os.devnull,
           "PIP_NO_INDEX": "1", "PIP_INDEX_URL": "http://127.0.0.1:9/", "PIP_DISABLE_PIP_VERSION_CHECK": "1",
           "PIP_NO_CACHE_DIR": "1", "NO_PROXY": "*", "no_proxy": "*"}
    home.mkdir(parents=True, exist_ok=True)
    return env


def fresh_venv(path: Path) -> Path:
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True, capture_output=True)
    return path / "bin" / "python"


def cached_torch_npu() -> Path:
    """The real torch_npu wheel, downloaded once from PyPI into .cache/wheels (shared with other tests)."""
    target = Target.for_stack(STACK)
    have = sorted(CACHE.glob(f"torch_npu-{ROW}-cp311-cp311-manylinux_2_28_{ARCH}.whl"))
    if have:
        return have[0]
    CACHE.mkdir(parents=True, exist_ok=True)
    stage = CACHE / f".stage-{os.getpid()}"
    try:
        fetched = PyPISource().fetch(STACK, target, stage, print)
        dest = CACHE / fetched.path.name
        os.replace(fetched.path, dest)   # atomic: another test may read the cache meanwhile
        return dest
    finally:
        shutil.rmtree(stage, ignore_errors=True)


# --- the real wheel -------------------------------------------------------------------

@pytest.mark.network
def test_real_wheelhouse_installs_offline_and_imports_torch(tmp_path, capsys):
    if not reachable("pypi.org"):
        pytest.skip("pypi.org:443 cannot be reached from this machine: the real torch_npu wheel and the "
                    "dependencies come from PyPI")
    src = torch_source()
    if src == CPU_INDEX and not reachable("download.pytorch.org"):
        pytest.skip("no CPU torch: TORCH_SOURCE is unset, /opt/wheels has no torch wheel and "
                    "download.pytorch.org cannot be reached")
    npu = cached_torch_npu()
    out = tmp_path / "wheelhouse"
    torchvision = "auto" if src == CPU_INDEX else "index"   # this machine has no CPU build of torchvision
    rc = main(["wheelhouse", "build", "--row", ROW, "--python", PYTHON, "--arch", ARCH, "--out", str(out),
               "--torch-source", src, "--source", f"dir:{CACHE}", "--source", "pypi", "--torchvision", torchvision])
    printed = capsys.readouterr()
    assert rc == 0, printed.err
    manifest = json.loads((out / "manifest.json").read_text())
    by_role = {w["role"]: w for w in manifest["wheels"] if w["role"] in ("torch", "torch_npu", "torchvision")}
    assert by_role["torch"]["version"] == "2.13.0+cpu"
    assert by_role["torch_npu"]["file"] == npu.name and by_role["torch_npu"]["sha256"] == sha256_file(npu)
    assert by_role["torch_npu"]["source"]["requires_torch"].replace(" ", "") == "torch==2.13.0.*"
    if src != CPU_INDEX:
        assert by_role["torch"]["sha256"] == sha256_file(next(Path(src).glob("torch-2.13.0+cpu-cp311-*.whl")))
        assert any("is a CUDA build" in n for n in manifest["notes"])   # PyPI's torchvision, recorded
    names = {w["name"] for w in manifest["wheels"]}
    assert {"numpy", "decorator", "attrs", "protobuf", "scipy", "filelock", "sympy"} <= names
    assert not any(n.startswith("nvidia-") for n in names), "a CUDA package got into the wheelhouse"
    assert main(["wheelhouse", "verify", str(out)]) == 0

    python = fresh_venv(tmp_path / "venv")
    env = offline_env(tmp_path / "home")
    install = subprocess.run([str(python), "-m", "pip", "install", "--no-index", "--find-links", str(out),
                              "-r", str(out / "requirements.txt")], env=env, capture_output=True, text=True)
    assert install.returncode == 0, install.stdout[-3000:] + install.stderr[-3000:]
    probe = ("import torch, importlib.metadata as m; "
             "print(torch.__version__, m.version('torch_npu'), float(torch.ones(3).sum()))")
    ran = subprocess.run([str(python), "-c", probe], env={**env, "TORCH_DEVICE_BACKEND_AUTOLOAD": "0"},
                         capture_output=True, text=True)
    assert ran.returncode == 0, ran.stderr[-3000:]
    assert ran.stdout.split() == ["2.13.0+cpu", "2.13.0", "3.0"]
    # With autoload on, torch loads the real torch_npu, which needs CANN's libraries (not on this host).
    autoload = subprocess.run([str(python), "-c", "import torch"], env=env, capture_output=True, text=True)
    assert autoload.returncode != 0 and "libhccl.so" in autoload.stderr

    # The PEP 503 index serves the same set, hash-checked, from file:// (the only index pip is given).
    index_env = {k: v for k, v in env.items() if k != "PIP_NO_INDEX"}
    dry = subprocess.run([str(python), "-m", "pip", "install", "--dry-run", "--ignore-installed", "--index-url",
                          (out / "simple").as_uri(), "-r", str(out / "requirements.txt")],
                         env=index_env, capture_output=True, text=True)
    assert dry.returncode == 0, dry.stderr[-3000:]
    assert "torch-2.13.0+cpu" in dry.stdout and "torch_npu-2.13.0" in dry.stdout


# --- the source-build driver against the stand-in tree ---------------------------------

def _git(*args, cwd):
    subprocess.run(["git", "-c", "user.name=npuenv-test", "-c", "user.email=test@npuenv.invalid",
                    "-c", "protocol.file.allow=always", "-c", "init.defaultBranch=main", *args],
                   cwd=cwd, check=True, capture_output=True, text=True)


def _head(cwd) -> str:
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, check=True, capture_output=True,
                          text=True).stdout.strip()


@pytest.fixture(scope="module")
def standin_repo(tmp_path_factory):
    """The stand-in tree as a git repository: a good tag and a tag that does not compile, one submodule."""
    base = tmp_path_factory.mktemp("standin")
    sub = base / "op-plugin"
    sub.mkdir()
    (sub / "op_plugin.txt").write_text("stand-in op-plugin\n")
    _git("init", "-q", cwd=sub)
    _git("add", ".", cwd=sub)
    _git("commit", "-q", "-m", "op-plugin", cwd=sub)
    repo = base / "pytorch"
    shutil.copytree(STANDIN, repo)
    (repo / "version.txt").write_text(STACK.row.torch_npu + "\n")
    (repo / "torch_version.txt").write_text(STACK.row.torch + "\n")
    _git("init", "-q", cwd=repo)
    _git("submodule", "add", "-q", str(sub), "third_party/op-plugin", cwd=repo)
    _git("add", ".", cwd=repo)
    _git("commit", "-q", "-m", "stand-in torch_npu", cwd=repo)
    good_tag = f"v-standin-pytorch{STACK.row.torch}"
    _git("tag", good_tag, cwd=repo)
    good = _head(repo)
    (repo / "torch_npu" / "ops.py").write_text("def broken(:\n    pass\n")
    _git("add", ".", cwd=repo)
    _git("commit", "-q", "-m", "a change that does not compile", cwd=repo)
    _git("tag", "v-standin-broken", cwd=repo)
    return {"repo": repo, "good": good_tag, "good_commit": good, "broken": "v-standin-broken",
            "sub_commit": _head(sub)}


@pytest.fixture
def offline_sources(tmp_path):
    """Synthetic CPU torch (the torch source) and dependencies; torch_npu must come from the build."""
    torch_dir, deps = tmp_path / "torch-source", tmp_path / "deps"
    wheels = make_stack_wheels(torch_dir, deps, STACK)
    wheels["torch_npu"].unlink()
    return torch_dir, deps


def build_args(out, torch_dir, deps, repo, ref, work, *extra):
    return ["wheelhouse", "build", "--row", ROW, "--python", PYTHON, "--arch", ARCH, "--out", str(out),
            "--torch-source", str(torch_dir), "--find-links", str(deps), "--offline", "--source", "build",
            "--source-repo", str(repo), "--source-ref", ref, "--work-dir", str(work), *extra]


def _built_record(out: Path) -> dict:
    manifest = json.loads((out / "manifest.json").read_text())
    return next(w for w in manifest["wheels"] if w["role"] == "torch_npu")


def test_source_build_on_this_host(tmp_path, standin_repo, offline_sources):
    if shutil.which(f"python{PYTHON}") is None:
        pytest.fail(f"python{PYTHON} is not on PATH: the local runner builds with the host's Python "
                    f"(the project's own Python, BOOTSTRAP_PYTHON in the Makefile)")
    torch_dir, deps = offline_sources
    out = tmp_path / "house"
    rc = main(build_args(out, torch_dir, deps, standin_repo["repo"], standin_repo["good"], tmp_path / "work",
                         "--build-runner", "local"))
    assert rc == 0
    rec = _built_record(out)
    short = standin_repo["good_commit"][:7]
    assert rec["file"] == f"torch_npu-{ROW}+git{short}-cp311-cp311-linux_x86_64.whl"
    prov = rec["source"]["provenance"]
    assert prov["source"]["ref"] == standin_repo["good"] and prov["source"]["commit"] == standin_repo["good_commit"]
    assert prov["source"]["submodules"] == {"third_party/op-plugin": standin_repo["sub_commit"]}
    assert prov["source"]["dirty"] is False and prov["npuenv_provenance"] == 1
    assert prov["command"] == f"bash ci/build.sh --python={PYTHON}" and prov["runner"] == "local"
    assert prov["sha256"] == rec["sha256"] == sha256_file(out / rec["file"])
    host_gcc = subprocess.run(["gcc", "-dumpfullversion"], capture_output=True, text=True).stdout.strip() \
        if shutil.which("gcc") else "none"
    assert prov["toolchain"]["used"]["gcc"] == host_gcc
    assert prov["toolchain"]["guide"]["gcc"] == "13.3.1"      # what the vendor's guide names for torch 2.13
    assert Path(prov["log"]).is_file() and "-- wrote dist/" in Path(prov["log"]).read_text()
    assert wheelhouse.verify(out, M) == []

    # An existing checkout builds as well (no clone), and its provenance says so.
    tree = tmp_path / "checkout"
    _git("clone", "-q", "--recurse-submodules", "--branch", standin_repo["good"], str(standin_repo["repo"]),
         str(tree), cwd=tmp_path)
    rc = main(["wheelhouse", "build", "--row", ROW, "--python", PYTHON, "--arch", ARCH, "--out", str(out),
               "--torch-source", str(torch_dir), "--find-links", str(deps), "--offline", "--source", "build",
               "--source-tree", str(tree), "--build-runner", "local", "--work-dir", str(tmp_path / "work")])
    assert rc == 0
    assert _built_record(out)["source"]["provenance"]["source"]["commit"] == standin_repo["good_commit"]


def test_failing_source_build_leaves_the_wheelhouse_as_it_was(tmp_path, standin_repo, offline_sources, capsys):
    if shutil.which(f"python{PYTHON}") is None:
        pytest.fail(f"python{PYTHON} is not on PATH: the local runner builds with the host's Python "
                    f"(the project's own Python, BOOTSTRAP_PYTHON in the Makefile)")
    torch_dir, deps = offline_sources
    out = tmp_path / "house"
    work = tmp_path / "work"
    assert main(build_args(out, torch_dir, deps, standin_repo["repo"], standin_repo["good"], work,
                           "--build-runner", "local")) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    capsys.readouterr()
    rc = main(build_args(out, torch_dir, deps, standin_repo["repo"], standin_repo["broken"], work,
                         "--build-runner", "local"))
    err = capsys.readouterr().err
    assert rc == 2
    assert f"npuenv: the torch_npu source build failed: `bash ci/build.sh --python={PYTHON}` exited 1" in err
    assert "Failed to compile the wheel file" in err and "SyntaxError" in err
    assert "Traceback" not in err.split("Last lines of the log:")[0]
    log = Path(err.split("Full log: ")[1].split()[0])
    assert log.is_file() and "def broken(:" in log.read_text()
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    assert [p for p in tmp_path.iterdir() if p.name.startswith(".house")] == []

    # A ref that does not exist is a clear error too.
    rc = main(build_args(out, torch_dir, deps, standin_repo["repo"], "v-no-such-tag", work, "--build-runner", "local"))
    assert rc == 2 and "cannot check out v-no-such-tag" in capsys.readouterr().err


def test_source_build_in_a_container(tmp_path, standin_repo, offline_sources, node_image):
    """The podman runner: the tree is mounted into a builder image with no network. The simulated node's
    Debian image stands in for the manylinux builder (which needs quay.io); it has python3.11."""
    torch_dir, deps = offline_sources
    out = tmp_path / "house"
    rc = main(build_args(out, torch_dir, deps, standin_repo["repo"], standin_repo["good"], tmp_path / "work",
                         "--build-runner", "podman", "--builder-image", node_image, "--build-network", "none",
                         "--builder-has-torch"))
    assert rc == 0
    prov = _built_record(out)["source"]["provenance"]
    assert prov["runner"] == "podman" and prov["builder_image"] == node_image
    assert prov["builder_image_id"] and prov["source"]["commit"] == standin_repo["good_commit"]
    assert prov["toolchain"]["used"]["gcc"] == "none"   # the stand-in builder has no compiler; recorded as such


def test_missing_builder_image_is_a_clear_error(tmp_path, standin_repo, offline_sources, capsys):
    if shutil.which("podman") is None:
        pytest.fail("podman is not installed: run `make setup` (tests/sim/setup-engine.sh)")
    torch_dir, deps = offline_sources
    rc = main(build_args(tmp_path / "house", torch_dir, deps, standin_repo["repo"], standin_repo["good"],
                         tmp_path / "work", "--build-runner", "podman"))
    assert rc == 2
    assert "builder image localhost/npuenv-torch-npu-builder:torch2.13-cp311-x86_64-gcc13-cmake3.18.4 is not " \
           "present" in capsys.readouterr().err


# --- the bundle ------------------------------------------------------------------------

def test_bundle_round_trip(tmp_path, capsys):
    torch_dir, deps = tmp_path / "torch-source", tmp_path / "deps"
    make_stack_wheels(torch_dir, deps, STACK)
    house = tmp_path / "wheelhouse"
    assert main(["wheelhouse", "build", "--row", ROW, "--python", PYTHON, "--arch", ARCH, "--out", str(house),
                 "--torch-source", str(torch_dir), "--source", f"dir:{deps}", "--offline"]) == 0
    installers = tmp_path / "installer-cache"
    made = sim_installers.make_installers(STACK, installers)
    # the cache also holds another stack's installers: they stay out of the bundle
    other = cm.resolve(M, cm.Constraints(torch_npu="==2.4.0.post2", arch=ARCH)).stack
    sim_installers.make_installers(other, installers)
    sim_installers.write_sha256sums(installers)
    archive = tmp_path / "out" / "bundle.tar"
    capsys.readouterr()
    # two firmware packages match the stack's pattern (the matrix does not track the firmware's version)
    assert main(["bundle", "make", "--wheelhouse", str(house), "--installers", str(installers),
                 "--out", str(archive), "--no-controller"]) == 2
    assert "holds several packages of one kind" in capsys.readouterr().err and not archive.exists()
    assert main(["bundle", "make", "--wheelhouse", str(house), "--installers", str(installers),
                 "--out", str(archive), "--installer", f"firmware={made['firmware'].name}", "--no-controller"]) == 0
    assert "sha256sum -c SHA256SUMS" in capsys.readouterr().out
    assert main(["bundle", "verify", str(archive)]) == 0

    site = tmp_path / "site"
    site.mkdir()
    subprocess.run(["tar", "-xf", str(archive), "-C", str(site)], check=True)
    (top,) = list(site.iterdir())
    check = subprocess.run(["sha256sum", "-c", "--quiet", "SHA256SUMS"], cwd=top, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    assert main(["bundle", "verify", str(top)]) == 0
    assert sorted(p.name for p in (top / "installers").iterdir()) == sorted([p.name for p in made.values()]
                                                                            + ["SHA256SUMS"])
    for f in (ROOT / "playbooks").rglob("*"):
        if f.is_file() and "__pycache__" not in f.parts:
            assert (top / "source" / "playbooks" / f.relative_to(ROOT / "playbooks")).is_file()
    manifest = json.loads((top / "MANIFEST.json").read_text())
    assert manifest["stack"]["torch_npu"] == ROW and manifest["stack"]["chip"] == "910b"
    assert {i["kind"] for i in manifest["installers"]} == {"driver", "firmware", "toolkit", "kernels", "nnal"}
    assert all(i["checked_against"] == "SHA256SUMS" for i in manifest["installers"])

    # The unpacked bundle is usable with no network: the matrix loads from it, the wheelhouse installs.
    # -B: importing from the bundle must not write __pycache__ into it (bundle verify refuses unknown files)
    load = subprocess.run([sys.executable, "-I", "-B", "-c", "import sys; sys.path.insert(0, sys.argv[1]); "
                           "import compat_matrix as cm; print(cm.load_matrix().find(sys.argv[2]).torch)",
                           str(top / "source"), ROW], capture_output=True, text=True, cwd=site)
    assert load.returncode == 0 and load.stdout.strip() == STACK.row.torch, load.stderr
    python = fresh_venv(tmp_path / "venv")
    env = offline_env(tmp_path / "home")
    wh = top / "wheelhouse"
    install = subprocess.run([str(python), "-m", "pip", "install", "--no-index", "--find-links", str(wh),
                              "-r", str(wh / "requirements.txt")], env=env, capture_output=True, text=True)
    assert install.returncode == 0, install.stderr[-3000:]
    ran = subprocess.run([str(python), "-c", "import torch, torch_npu; print(torch.__version__, torch_npu.__version__)"],
                         env=env, capture_output=True, text=True)
    assert ran.stdout.split() == ["2.13.0+cpu", ROW], ran.stderr

    # Tampering is found, naming the file: other bytes of the same size fail their checksum
    # (another size is refused before hashing: tests/unit/test_bundle_verify.py).
    toolkit = top / "installers" / made["toolkit"].name
    data = bytearray(toolkit.read_bytes())
    data[-2] ^= 0xFF
    toolkit.write_bytes(bytes(data))
    capsys.readouterr()
    assert main(["bundle", "verify", str(top)]) == 1
    assert f"installers/{made['toolkit'].name}: checksum mismatch" in capsys.readouterr().err
    # Packed again by hand: in tar's order the manifest is not first, so nothing after it is read...
    repacked = tmp_path / "repacked.tar"
    subprocess.run(["tar", "-cf", str(repacked), "-C", str(site), top.name], check=True)
    assert main(["bundle", "verify", str(repacked)]) == 1
    assert "so it cannot be checked before it is read" in capsys.readouterr().err
    # ...and with the manifest first, as `bundle make` writes it, the damaged file is named.
    subprocess.run(["tar", "-cf", str(repacked), "-C", str(site), f"{top.name}/MANIFEST.json"], check=True)
    subprocess.run(["tar", "-rf", str(repacked), "-C", str(site), "--exclude", f"{top.name}/MANIFEST.json", top.name],
                   check=True)
    assert main(["bundle", "verify", str(repacked)]) == 1
    assert f"installers/{made['toolkit'].name}: checksum mismatch" in capsys.readouterr().err


def test_bundle_refuses_missing_or_corrupt_installers(tmp_path, capsys):
    torch_dir, deps = tmp_path / "torch-source", tmp_path / "deps"
    make_stack_wheels(torch_dir, deps, STACK)
    house = tmp_path / "wheelhouse"
    assert main(["wheelhouse", "build", "--row", ROW, "--python", PYTHON, "--arch", ARCH, "--out", str(house),
                 "--torch-source", str(torch_dir), "--source", f"dir:{deps}", "--offline"]) == 0
    installers = tmp_path / "installers"
    made = sim_installers.make_installers(STACK, installers)
    archive = tmp_path / "bundle.tar"
    archive.write_bytes(b"an older bundle")
    made["nnal"].unlink()
    capsys.readouterr()
    assert main(["bundle", "make", "--wheelhouse", str(house), "--installers", str(installers),
                 "--out", str(archive), "--no-controller"]) == 2
    err = capsys.readouterr().err
    assert "lacks installers of the stack" in err and f"nnal: {STACK.packages['nnal']}" in err
    assert archive.read_bytes() == b"an older bundle"
    made = sim_installers.make_installers(STACK, installers)
    made["driver"].write_bytes(made["driver"].read_bytes() + b"x")
    assert main(["bundle", "make", "--wheelhouse", str(house), "--installers", str(installers),
                 "--out", str(archive), "--no-controller"]) == 2
    assert f"driver: {made['driver'].name}: checksum mismatch" in capsys.readouterr().err
    assert archive.read_bytes() == b"an older bundle"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".bundle")] == []
    # an image-only bundle may leave the host-side packages out
    made = sim_installers.make_installers(STACK, installers)
    assert main(["bundle", "make", "--wheelhouse", str(house), "--installers", str(installers), "--out",
                 str(tmp_path / "image.tar.gz"), "--skip-installer", "driver", "--skip-installer", "firmware",
                 "--no-controller"]) == 0
    with tarfile.open(tmp_path / "image.tar.gz") as tar:
        names = [n for n in tar.getnames() if "/installers/" in n and not n.endswith("/SHA256SUMS")]
    assert len(names) == 3 and not any("driver" in n or "firmware" in n for n in names)

"""Real image builds with podman from the local Debian base and the simulated
vendor installers, one row of each CANN packaging generation:

* torch_npu 2.13.0 / CANN 9.1.0 (cann-<v> + ops package) with the full Python
  stack from a real wheelhouse (the CPU torch of /opt/wheels, torch_npu from
  PyPI), its toolkit carrying the simulated CANN runtime so that the real
  torch_npu imports and counts the devices passed with --device;
* torch_npu 2.8.0 / CANN 8.3.RC1 (ascend-toolkit/<v> + kernels package) with
  the CANN layers only (--cann-only): the only CPU torch here is 2.13.0 for
  cp311, so no wheelhouse can be made for 2.8.0's torch.

Both images are built once per test session (shared across xdist workers) and
removed at its end; later sessions reuse the engine's layer cache.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import zipfile
from pathlib import Path

import pytest
from filelock import FileLock

import compat_matrix as cm
from compat_matrix.checksums import sha256_file
from images import build, render, run
from npuenv.cli import main
from tests.conftest import ROOT
from tests.sim import installers as sim_installers
from tests.sim import state as sim_state
from tests.sim.cann_runtime.build import build_runtime
from tests.sim.inputs import make_wheelhouse, rebuilt_torch_npu, torch_npu_wheel
from torch_npu_pkg import wheelhouse as wh

pytestmark = pytest.mark.integration

M = cm.load_matrix()
OS, PYTHON, ARCH = "debian12", "3.11", "x86_64"
CURRENT, LEGACY = "2.13.0", "2.8.0"
TAG = "localhost/npuenv-test-images"


def stack_for(torch_npu: str) -> cm.Stack:
    return cm.resolve(M, cm.Constraints(torch_npu="==" + torch_npu, python=PYTHON, arch=ARCH, os=OS)).stack


def podman(*args: str, check: bool = True, timeout: int = 300) -> subprocess.CompletedProcess:
    done = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        raise AssertionError(f"podman {' '.join(args[:3])} failed ({done.returncode}):\n"
                             f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done



# --- inputs and builds, once per session ---------------------------------------------

def make_current_installers(stack: cm.Stack, out: Path) -> Path:
    """The simulated installers, the toolkit's and NNAL's carrying the simulated CANN runtime
    built for the real torch_npu wheel."""
    with tempfile.TemporaryDirectory(prefix="npuenv-images-") as tmp:
        with zipfile.ZipFile(torch_npu_wheel(stack)) as whl:
            whl.extractall(Path(tmp) / "site")
        build_runtime(Path(tmp) / "lib", Path(tmp) / "site")
        sim_installers.make_installers(stack, out, runtime_libs=Path(tmp) / "lib")
    return out


def _produce(base: Path) -> dict:
    current, legacy = stack_for(CURRENT), stack_for(LEGACY)
    house = make_wheelhouse(current, base / "wheelhouse")
    inst_current = make_current_installers(current, base / "installers-current")
    inst_legacy = base / "installers-legacy"
    sim_installers.make_installers(legacy, inst_legacy)
    full = build.build(current, inst_current, house, tag=f"{TAG}:current", engine="podman",
                       sbom=base / "sbom" / "current.cdx.json")
    cann_only = build.build(legacy, inst_legacy, None, cann_only=True, tag=f"{TAG}:legacy", engine="podman",
                            sbom=base / "sbom" / "legacy.cdx.json")
    return {"house": str(house), "installers": {"current": str(inst_current), "legacy": str(inst_legacy)},
            "full": {"tag": full.tag, "id": full.image_id, "seconds": full.seconds, "sbom": str(full.sbom)},
            "cann_only": {"tag": cann_only.tag, "id": cann_only.image_id, "seconds": cann_only.seconds,
                          "sbom": str(cann_only.sbom)}}


@pytest.fixture(scope="session")
def images(tmp_path_factory, worker_id) -> dict:
    if shutil.which("podman") is None:
        pytest.fail("podman is not installed: run `make setup` (tests/sim/setup-engine.sh)")
    base_image = M.platforms.operating_systems[OS]["base_image"]
    if podman("image", "exists", base_image, check=False).returncode != 0:
        pytest.fail(f"the base image {base_image} is missing: run `make engine` (tests/sim/setup-engine.sh)")
    if worker_id == "master":
        built = _produce(tmp_path_factory.mktemp("images"))
    else:  # xdist: the first worker builds, the others read what it built
        shared = tmp_path_factory.getbasetemp().parent
        with FileLock(str(shared / "npuenv-images.lock")):
            record = shared / "npuenv-images.json"
            if record.is_file():
                built = json.loads(record.read_text())
            else:
                built = _produce(shared / "npuenv-images")
                record.write_text(json.dumps(built))
    yield built
    if worker_id == "master":
        podman("rmi", "-f", built["full"]["tag"], built["cann_only"]["tag"], check=False)


def in_image(tag: str, script: str, *args: str, login: bool = False) -> str:
    done = podman("run", "--rm", "--network", "none", *args, tag, "bash", "-lc" if login else "-c", script)
    return done.stdout


# --- the full image: layout, environment, Python, devices --------------------------------

def test_full_image_layout_environment_and_user(images):
    stack = stack_for(CURRENT)
    p = stack.paths
    out = in_image(images["full"]["tag"], f"""
        id -un; id -u
        for d in {p['toolkit_home']} {p['kernels_dir']} {p['nnal_dir']} {p['nnal_home']}/lib; do
            test -d $d && echo "dir $d"
        done
        # up to CANN 8.3 `latest` is a folder of links into the running version (runtime -> ../<v>/runtime)
        basename "$(dirname "$(readlink -f {p['toolkit_latest']}/runtime)")"
        test -e {p['driver_home']} || echo no-driver
        cat /etc/Ascend/ascend_cann_install.info
        python -c 'import json, sys; print(json.load(open(sys.argv[1]))["stack"]["torch_npu"])' \\
            {p['wheelhouse_manifest']}
        env""")
    lines = out.splitlines()
    assert lines[:2] == ["HwHiAiUser", str(render.load_manifest()["user"]["uid"])]
    for key in ("toolkit_home", "kernels_dir", "nnal_dir"):
        assert f"dir {p[key]}" in lines
    assert f"cann-{stack.row.cann}" in lines and "no-driver" in lines
    assert f"Install_Path={p['install_root']}" in lines and CURRENT in lines
    env = dict(line.split("=", 1) for line in lines if "=" in line and not line.startswith("Install_Path"))
    scalars, lists = stack.environment()
    for key, value in scalars.items():
        assert env[key] == value, key
    # the entrypoint sourced set_env.sh again: the toolkit's and NNAL's paths lead
    assert env["LD_LIBRARY_PATH"].split(":")[:3] == lists["LD_LIBRARY_PATH"][:3]
    assert "TORCH_DEVICE_BACKEND_AUTOLOAD" not in env


def test_torch_imports_in_plain_and_login_shells(images):
    probe = "import torch; print(torch.__version__, float(torch.ones(3).sum()))"
    # As `podman run IMAGE python ...` runs it: torch loads torch_npu (autoload), which finds
    # CANN's libraries through the baked-in environment alone.
    plain = podman("run", "--rm", "--network", "none", images["full"]["tag"], "python", "-c", probe).stdout
    # A login shell (whose /etc/profile resets PATH) still finds the venv's python.
    login = in_image(images["full"]["tag"], f"command -v python; python -c '{probe}'",
                     "-e", "TORCH_DEVICE_BACKEND_AUTOLOAD=0", login=True)
    assert plain.split()[-2:] == ["2.13.0+cpu", "3.0"]
    assert login.split()[0] == stack_for(CURRENT).platforms.npuenv_files["venv"] + "/bin/python"
    assert login.split()[-2:] == ["2.13.0+cpu", "3.0"]


@pytest.fixture
def atlas_host(tmp_path) -> Path:
    return make_atlas_host(tmp_path / "host")


def make_atlas_host(host: Path) -> Path:
    """A fake Atlas host's filesystem: 8 device nodes made with mknod (copies of /dev/null's
    numbers), the driver's shared nodes, a driver tree, npu-smi and the device-state file."""
    if os.geteuid() != 0:
        pytest.skip("mknod needs root")
    (host / "dev").mkdir(parents=True)
    null = os.stat("/dev/null").st_rdev
    spec = render.load_manifest()["run"]
    for name in [f"{spec['device_prefix']}{i}" for i in range(8)] + M.platforms.hdk["device_nodes"]:
        os.mknod(host / "dev" / name, 0o666 | 0o020000, null)
    stack = stack_for(CURRENT)
    p = {k: host / v.lstrip("/") for k, v in stack.paths.items() if v.startswith("/")}
    (p["driver_home"] / "lib64").mkdir(parents=True)
    (p["driver_home"] / "version.info").write_text(f"Version={stack.row.hdk['version'].lower()}\n")
    p["dcmi"].mkdir(parents=True)
    p["npu_smi"].parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "tests" / "sim" / "tools" / "npu_smi.py", p["npu_smi"])
    p["install_info"].parent.mkdir(parents=True, exist_ok=True)
    p["install_info"].write_text(f"Driver_Install_Path_Param={stack.paths['install_root']}\n")
    sim_state.save(sim_state.default_state(), host / "npu-sim" / "state.json")
    return host


def test_torch_npu_sees_the_devices_passed_in(images, atlas_host):
    stack = stack_for(CURRENT)
    tag = images["full"]["tag"]
    probe = ("import torch, torch_npu; "
             "print(torch_npu.__version__, torch.npu.is_available(), torch.npu.device_count(), "
             "torch.npu.get_device_name(0))")
    script = f"npu-smi info | head -3; python -c '{probe}'"
    cmd = run.run_command(stack, tag, engine="podman", ids=[0, 1, 5], dev_dir=atlas_host / "dev",
                          host_root=str(atlas_host), command=["bash", "-c", script])
    # The simulator's hardware (its state file) goes in beside what run-cmd gives.
    at = cmd.index(tag)
    cmd[at:at] = ["--network", "none", "-v", f"{atlas_host / 'npu-sim'}:/etc/npu-sim:ro"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.startswith("+---") and "npu-smi" in done.stdout, done.stdout  # the host's npu-smi, mounted
    assert done.stdout.splitlines()[-1] == f"{CURRENT} True 3 Ascend910B3"


# --- what is (not) in the layers ---------------------------------------------------------

def _payload_window(installer: Path, size: int = 48) -> bytes:
    """A piece of an installer's compressed payload (no newline, so grep can take it as a
    pattern): any layer holding the file holds these bytes."""
    data = installer.read_bytes()
    for start in range(len(data) - 2048, len(data) // 2, -size):
        window = data[start:start + size]
        if b"\n" not in window:
            return window
    raise AssertionError(f"no newline-free window in {installer}")


def _grep(patterns: list[bytes], where: Path, tmp: Path) -> bool:
    """Whether any pattern occurs in a file or anywhere under a directory (devices skipped)."""
    listing = tmp / "patterns"
    listing.write_bytes(b"\n".join(patterns) + b"\n")
    # LC_ALL=C: byte patterns, byte matching (a UTF-8 locale makes binary patterns slow)
    done = subprocess.run(["grep", "-r", "-a", "-q", "-F", "-f", str(listing), str(where)],
                          env={**os.environ, "LC_ALL": "C"})
    assert done.returncode in (0, 1), f"grep failed on {where}"
    return done.returncode == 0


def _layers(tag: str, tmp: Path) -> list[Path]:
    """Every layer of the image: its directory in podman's overlay storage (read in place), or
    else the layer tarballs of `podman image save`."""
    driver = json.loads(podman("image", "inspect", tag).stdout)[0]["GraphDriver"]
    if driver["Name"] == "overlay":
        dirs = [driver["Data"]["UpperDir"]] + driver["Data"].get("LowerDir", "").split(":")
        return [Path(d) for d in dirs if d]
    podman("image", "save", "--format", "docker-dir", "-o", str(tmp / "saved"), tag)
    manifest = json.loads((tmp / "saved" / "manifest.json").read_text())
    return [tmp / "saved" / layer["digest"].split(":")[1] for layer in manifest["layers"]]


def _file_names(layer: Path) -> set[str]:
    if layer.is_dir():
        return {name for _, _, files in os.walk(layer) for name in files}
    with tarfile.open(layer) as tar:
        return {Path(m.name).name for m in tar}


def test_installers_and_wheels_are_in_no_layer(images, tmp_path):
    """Every layer of the image is searched for the installers' names and bytes and for the
    wheelhouse's files; a control (a file the toolkit installed) must be found."""
    runs = sorted(Path(images["installers"]["current"]).glob("*.run"))
    wheels = {p.name for p in Path(images["house"]).glob("*.whl")}
    needles = [p.name.encode() for p in runs] + [_payload_window(p) for p in runs]
    assert all(_grep([_payload_window(p)], p, tmp_path) for p in runs), "the byte search must find each installer"
    control = f"path={stack_for(CURRENT).paths['toolkit_home']}/{ARCH}-linux".encode()
    layers = _layers(images["full"]["tag"], tmp_path)
    assert len(layers) >= 5
    for layer in layers:
        assert not _grep(needles, layer, tmp_path), f"an installer's name or bytes are in layer {layer}"
        assert not _file_names(layer) & (wheels | {p.name for p in runs}), f"a build input is a file in {layer}"
    assert any(_grep([control], layer, tmp_path) for layer in reversed(layers)), \
        "the search cannot find what the installers installed: it proves nothing"
    history = podman("history", "--no-trunc", "--format", "{{.CreatedBy}}", images["full"]["tag"]).stdout
    assert not re.search(r"(COPY|ADD) [^\n]*\.(run|whl)", history)


def _uncached_steps(output: str) -> list[str]:
    """The build steps that ran rather than came from the cache. buildah builds a stage
    when a later one first needs it (COPY --from), printing its steps inside that step:
    the open steps form a stack, closed by their "--> ID" line."""
    open_steps, ran = [], []
    for line in output.splitlines():
        if re.match(r"\[\d+/\d+\] STEP \d+/\d+: ", line) and ": FROM " not in line:
            open_steps.append([line, False])
        elif line.startswith("--> Using cache ") and open_steps:
            open_steps[-1][1] = True
        elif re.fullmatch(r"--> [0-9a-f]{6,}", line) and open_steps:
            header, cached = open_steps.pop()
            if not cached:
                ran.append(header)
    return ran


def test_a_torch_npu_change_rebuilds_only_the_python_layer(images, tmp_path):
    stack = stack_for(CURRENT)
    house = rebuilt_torch_npu(Path(images["house"]), tmp_path / "wheelhouse")
    assert wh.verify(house) == []
    again = build.build(stack, Path(images["installers"]["current"]), house, tag=f"{TAG}:rebuilt", engine="podman",
                        sbom=tmp_path / "rebuilt.cdx.json")
    try:
        before = json.loads(podman("image", "inspect", images["full"]["tag"]).stdout)[0]["RootFS"]["Layers"]
        after = json.loads(podman("image", "inspect", again.tag).stdout)[0]["RootFS"]["Layers"]
        assert len(after) == len(before) and after[:-1] == before[:-1], "a layer below torch_npu's changed"
        assert after[-1] != before[-1]
        ran = [s for s in _uncached_steps(again.output) if re.search(r"STEP \d+/\d+: (RUN|COPY)", s)]
        assert len(ran) == 1 and "/wheelhouse/requirements.txt" in ran[0], ran
        labels = json.loads(podman("image", "inspect", again.tag).stdout)[0]["Labels"]
        assert labels["io.npuenv.wheelhouse.requirements.sha256"] == sha256_file(house / wh.REQUIREMENTS)
    finally:
        podman("rmi", "-f", again.tag, check=False)


def test_labels_carry_the_row(images):
    stack = stack_for(CURRENT)
    labels = json.loads(podman("image", "inspect", images["full"]["tag"]).stdout)[0]["Labels"]
    assert labels["io.npuenv.row.torch_npu"] == CURRENT and labels["io.npuenv.row.cann"] == stack.row.cann
    assert labels["io.npuenv.row.hdk.version"] == stack.row.hdk["version"]
    assert labels["io.npuenv.stack.os"] == OS and labels["io.npuenv.stack.python"] == PYTHON
    assert labels["org.opencontainers.image.base.name"] == M.platforms.operating_systems[OS]["base_image"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", labels["org.opencontainers.image.created"])
    sums = (Path(images["installers"]["current"]) / "SHA256SUMS").read_text()
    assert f"{labels['io.npuenv.installer.toolkit.sha256']}  {stack.packages['toolkit']}" in sums


# --- the other packaging generation, CANN layers only ------------------------------------

def test_legacy_cann_only_image(images):
    stack = stack_for(LEGACY)
    p = stack.paths
    assert stack.row.packaging == "ascend-toolkit"
    out = in_image(images["cann_only"]["tag"], f"""
        id -un
        # up to CANN 8.3 `latest` is a folder of links into the running version (runtime -> ../<v>/runtime)
        basename "$(dirname "$(readlink -f {p['toolkit_latest']}/runtime)")"
        for f in {p['env_script']} {p['nnal_env_script']}; do test -f $f && echo "file $f"; done
        for d in {p['toolkit_home']} {p['kernels_dir']} {p['nnal_dir']}; do test -d $d && echo "dir $d"; done
        test -e {stack.platforms.npuenv_files['venv']} || echo no-venv
        python3 -c 'import sys; print("python %d.%d" % sys.version_info[:2])'
        env""", login=True)
    lines = out.splitlines()
    assert lines[:2] == ["HwHiAiUser", stack.row.cann]
    for key in ("env_script", "nnal_env_script"):
        assert f"file {p[key]}" in lines
    for key in ("toolkit_home", "kernels_dir", "nnal_dir"):
        assert f"dir {p[key]}" in lines
    assert "no-venv" in lines and f"python {PYTHON}" in lines
    env = dict(line.split("=", 1) for line in lines if "=" in line)
    scalars, lists = stack.environment()
    for key, value in scalars.items():
        assert env[key] == value, key
    assert set(lists["PATH"]) <= set(env["PATH"].split(":")), "the login shell lost the CANN PATH"
    labels = json.loads(podman("image", "inspect", images["cann_only"]["tag"]).stdout)[0]["Labels"]
    assert labels["io.npuenv.stack.cann_only"] == "true" and labels["io.npuenv.row.torch_npu"] == LEGACY


def test_failing_install_step_tags_nothing(images, tmp_path, capsys):
    """An installer that passes its checksums but fails inside the build: exit 2, no image tagged."""
    stack = stack_for(LEGACY)
    inst = tmp_path / "installers"
    shutil.copytree(images["installers"]["legacy"], inst)
    (inst / stack.packages["toolkit"]).write_text("#!/bin/bash\necho 'simulated install failure' >&2\nexit 1\n")
    sim_installers.write_sha256sums(inst)
    tag = f"{TAG}:must-not-exist"
    rc = main(["image", "build", "--row", LEGACY, "--os", OS, "--python", PYTHON, "--arch", ARCH,
               "--installers", str(inst), "--cann-only", "--tag", tag, "--engine", "podman"])
    err = capsys.readouterr().err
    assert rc == 2 and "podman build failed" in err and "nothing was tagged" in err
    assert "simulated install failure" in err
    assert podman("image", "exists", tag, check=False).returncode == 1

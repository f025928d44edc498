"""The image build driver and the run line, without building: inputs are
checked before any engine runs (and the message names the expected file and
checksum), the engine is chosen by whether it answers, a failed build tags
nothing, and run-cmd / compose give the devices and driver mounts of the stack."""
from __future__ import annotations

import json
import os
import shutil
import signal
import stat
from pathlib import Path

import pytest
import yaml

import compat_matrix as cm
from compat_matrix import interrupts
from compat_matrix.checksums import sha256_file
from images import build, engine, render, run
from npuenv.cli import main
from tests.sim import installers as sim_installers
from tests.fixtures.wheelhouse.synth import make_stack_wheels
from torch_npu_pkg import wheelhouse as wh

M = cm.load_matrix()
ROW = "2.13.0"


def stack_for(torch_npu=ROW, **kw) -> cm.Stack:
    kw = {"python": "3.11", "arch": "x86_64", "os": "debian12", **kw}
    return cm.resolve(M, cm.Constraints(torch_npu="==" + torch_npu, **kw)).stack


@pytest.fixture
def installers(tmp_path) -> tuple[cm.Stack, Path, dict]:
    stack = stack_for()
    made = sim_installers.make_installers(stack, tmp_path / "installers", kinds=("toolkit", "kernels", "nnal"))
    return stack, tmp_path / "installers", made


TOOLS = ("podman", "buildah", "docker")


def fake_tool(bin_dir: Path, name: str, script: str) -> Path:
    """An executable on a private PATH that records its arguments and runs ``script``."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    path = bin_dir / name
    path.write_text(f'#!/bin/bash\necho "{name} $*" >> "{bin_dir}/calls.log"\n{script}\n')
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return path


def calls(bin_dir: Path) -> list[str]:
    """The recorded calls, one a line (an argument with newlines in it, a script, continues the line)."""
    log = bin_dir / "calls.log"
    out: list[str] = []
    for line in log.read_text().splitlines() if log.exists() else []:
        if any(line.startswith(f"{tool} ") for tool in TOOLS) or not out:
            out.append(line)
        else:
            out[-1] += "\n" + line
    return out


# --- inputs -------------------------------------------------------------------------

def test_installers_pass_and_give_the_build_args(installers):
    stack, directory, made = installers
    args = build.check_installers(stack, directory)
    sums = dict(line.split()[::-1] for line in (directory / "SHA256SUMS").read_text().splitlines())
    assert args == {"TOOLKIT_SHA256": sums[made["toolkit"].name], "KERNELS_SHA256": sums[made["kernels"].name],
                    "NNAL_SHA256": sums[made["nnal"].name]}


def test_missing_installer_names_the_file_and_its_checksum(installers):
    stack, directory, made = installers
    expected = sha256_file(made["kernels"])
    made["kernels"].unlink()
    with pytest.raises(cm.UserError) as e:
        build.check_installers(stack, directory)
    msg = str(e.value)
    assert f"kernels: {stack.packages['kernels']} is missing" in msg and f"expects sha256 {expected}" in msg
    assert "CANN 9.1.0 (cann packaging), 910b, x86_64" in msg


def test_mismatched_installer_gives_both_checksums(installers):
    stack, directory, made = installers
    listed = sha256_file(made["toolkit"])
    made["toolkit"].write_bytes(made["toolkit"].read_bytes() + b"tampered")
    with pytest.raises(cm.UserError) as e:
        build.check_installers(stack, directory)
    msg = str(e.value)
    assert f"{made['toolkit'].name}: checksum mismatch: {directory / 'SHA256SUMS'} says sha256 {listed}" in msg
    assert f"the file has {sha256_file(made['toolkit'])}" in msg


def test_unlisted_installer_and_missing_sums_are_refused(installers):
    stack, directory, made = installers
    sums = directory / "SHA256SUMS"
    sums.write_text("".join(l + "\n" for l in sums.read_text().splitlines() if made["nnal"].name not in l))
    with pytest.raises(cm.UserError, match=f"nnal: {made['nnal'].name} is not listed in"):
        build.check_installers(stack, directory)
    sums.unlink()
    with pytest.raises(cm.UserError, match="has no SHA256SUMS"):
        build.check_installers(stack, directory)
    with pytest.raises(cm.UserError, match="no such directory"):
        build.check_installers(stack, directory / "nope")


def test_source_python_needs_its_tarball_among_the_installers(tmp_path):
    stack = render.choose_python(stack_for(python=None, os="openeuler22.03"), python_given=False)
    sim_installers.make_installers(stack, tmp_path, kinds=("toolkit", "kernels", "nnal"))
    plan = render.python_plan(stack)
    with pytest.raises(cm.UserError, match=f"python_source: {plan.file} is missing"):
        build.check_installers(stack, tmp_path)
    (tmp_path / plan.file).write_bytes(b"not really a tarball")
    sim_installers.write_sha256sums(tmp_path)  # lists *.run only
    with (tmp_path / "SHA256SUMS").open("a") as f:
        f.write(f"{sha256_file(tmp_path / plan.file)}  {plan.file}\n")
    assert "PYTHON_SOURCE_SHA256" in build.check_installers(stack, tmp_path)


@pytest.fixture(scope="module")
def synthetic_wheelhouse(tmp_path_factory) -> Path:
    """A whole wheelhouse of tiny synthetic wheels for row 2.13.0 / 3.11 / x86_64 (offline, seconds)."""
    base = tmp_path_factory.mktemp("wheelhouse")
    stack = stack_for()
    make_stack_wheels(base / "torch", base / "deps", stack)
    wh.build(stack, wh.Options(out=base / "house", torch_source=str(base / "torch"), sources=[f"dir:{base / 'deps'}"],
                               offline=True))
    return base / "house"


def test_wheelhouse_gives_the_layer_keys(synthetic_wheelhouse):
    args = build.check_wheelhouse(stack_for(), synthetic_wheelhouse)
    requirements = (synthetic_wheelhouse / wh.REQUIREMENTS).read_text()
    assert args[render.WHEELHOUSE_ARG] == sha256_file(synthetic_wheelhouse / wh.REQUIREMENTS)
    assert args[render.PYTHON_DEPS_ARG] == render.sha256_text(render.python_deps(requirements))
    assert "torch-npu==" not in render.python_deps(requirements).lower().replace("_", "-")
    assert "numpy==" in render.python_deps(requirements)


def test_wheelhouse_for_another_row_or_broken_is_refused(synthetic_wheelhouse, tmp_path):
    with pytest.raises(cm.UserError) as e:
        build.check_wheelhouse(stack_for(python="3.10"), synthetic_wheelhouse)
    assert "built for torch_npu 2.13.0, Python 3.11, x86_64" in str(e.value)
    assert "npuenv wheelhouse build --row 2.13.0 --python 3.10 --arch x86_64" in str(e.value)
    broken = tmp_path / "house"
    shutil.copytree(synthetic_wheelhouse, broken)
    (broken / "SHA256SUMS").unlink()
    with pytest.raises(cm.UserError, match="is not whole"):
        build.check_wheelhouse(stack_for(), broken)
    with pytest.raises(cm.UserError, match="no such directory"):
        build.check_wheelhouse(stack_for(), tmp_path / "nope")


# --- engines ----------------------------------------------------------------------------

def test_docker_without_a_daemon_is_not_chosen(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    fake_tool(bin_dir, "docker",
              'echo "Cannot connect to the Docker daemon at unix:///var/run/docker.sock" >&2; exit 1')
    monkeypatch.setenv("PATH", str(bin_dir))
    with pytest.raises(cm.UserError) as e:
        engine.find()
    msg = str(e.value)
    assert "no usable container engine" in msg and "podman: not installed" in msg
    assert "docker: `docker info` failed: Cannot connect to the Docker daemon" in msg
    fake_tool(bin_dir, "buildah", "exit 0")
    assert engine.find().name == "buildah"
    fake_tool(bin_dir, "podman", "exit 0")
    assert engine.find().name == "podman"
    with pytest.raises(cm.UserError, match="docker: `docker info` failed"):
        engine.find("docker")


def test_build_commands_per_engine():
    kw = dict(dockerfile="/c/Dockerfile", context="/c", contexts={"installers": "/i", "wheelhouse": "/w"},
              build_args={"A": "1"}, platform="linux/amd64", iidfile="/t/id")
    podman = engine.Engine("podman", "/usr/bin/podman").build_command(**kw)
    assert podman[:3] == ["/usr/bin/podman", "build", "--layers"] and "-t" not in podman
    assert ["--build-context", "installers=/i"] == podman[podman.index("--build-context"):][:2]
    assert "--iidfile" in podman and podman[-1] == "/c"
    docker = engine.Engine("docker", "/usr/bin/docker").build_command(**kw, no_cache=True)
    assert docker[:4] == ["/usr/bin/docker", "buildx", "build", "--load"] and "--no-cache" in docker


def test_failed_build_tags_nothing_and_inputs_are_checked_first(installers, tmp_path, monkeypatch, capsys):
    stack, directory, made = installers
    bin_dir = tmp_path / "bin"
    fake_tool(bin_dir, "podman", 'if [ "$1" = build ]; then echo "STEP 4/9: RUN ... toolkit"; '
                                 'echo "Error: building at STEP: exit status 1"; exit 1; fi; exit 0')
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    args = ["image", "build", "--row", ROW, "--os", "debian12", "--python", "3.11", "--arch", "x86_64",
            "--installers", str(directory), "--cann-only", "--tag", "localhost/x:y"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "podman build failed (exit 1); nothing was tagged" in err and "exit status 1" in err
    assert "Traceback" not in err
    assert [c.split()[:2] for c in calls(bin_dir)] == [["podman", "info"], ["podman", "build"]]  # no tag
    build_call = calls(bin_dir)[1]
    assert f"--build-context installers={directory.resolve()}" in build_call
    assert "--build-arg TOOLKIT_SHA256=" in build_call and "--platform linux/amd64" in build_call

    # a bad installer is refused before any build starts
    (bin_dir / "calls.log").unlink()
    made["nnal"].write_bytes(b"not the published file")
    assert main(args) == 2
    assert "nnal: " + made["nnal"].name + ": checksum mismatch" in capsys.readouterr().err
    assert [c.split()[1] for c in calls(bin_dir)] == ["info"]


# A podman that builds nothing: `build` writes an image id (the label-only build, with -t,
# another) and keeps its Dockerfile; `image inspect` answers for the base image; `run` prints
# what the SBOM probe prints inside an image. FAIL_PROBE / FAIL_LABELS make those steps fail.
FAKE_PODMAN = r"""
case "$1" in
  build)
    for a; do
      case "$prev" in
        --iidfile) iid="$a";;
        -f) cp "$a" "$(dirname "$0")/Dockerfile.$(ls "$(dirname "$0")" | grep -c '^Dockerfile')";;
        -t) tagged=1;;
      esac
      prev="$a"
    done
    if [ -n "$tagged" ]; then
      [ -n "$FAIL_LABELS" ] && { echo "Error: label step broke"; exit 125; }
      echo sha256:fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210 > "$iid"
    else
      echo sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef > "$iid"
    fi;;
  image)
    echo '[{"Id": "93cd39d2e523", "Digest": "sha256:c978eef00276deee49d83e8d09a5e419fc7e1f6340b96fbec437693459018967", "Labels": {}}]';;
  run)
    [ -n "$FAIL_PROBE" ] && { echo "python3: not found" >&2; exit 127; }
    printf '%s\n' '{"os_release": {"ID": "debian", "VERSION_ID": "12", "PRETTY_NAME": "Debian GNU/Linux 12 (bookworm)"}, "os_packages": "installed\tbash\t5.2.15-2+b7\tamd64\nconfig-files\told-lib\t1.0\tamd64\ninstalled\tpython3.11\t3.11.2-6+deb12u6\tamd64\n", "python": null}';;
esac
exit 0
"""


def test_successful_build_writes_the_sbom_and_labels_then_tags(installers, tmp_path, monkeypatch, capsys):
    stack, directory, made = installers
    bin_dir = tmp_path / "bin"
    fake_tool(bin_dir, "podman", FAKE_PODMAN)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    sbom_file = tmp_path / "out" / "image.cdx.json"
    assert main(["image", "build", "--row", ROW, "--os", "debian12", "--python", "3.11", "--arch", "x86_64",
                 "--installers", str(directory), "--cann-only", "--user-ids", "1001:1002",
                 "--sbom", str(sbom_file)]) == 0
    captured = capsys.readouterr()
    tag = render.image_name(stack, cann_only=True)
    assert captured.out.startswith(f"{tag} (fedcba987654), built with podman")
    assert f"SBOM (CycloneDX 1.6 JSON): {sbom_file}" in captured.out
    commands = [c.split()[:2] for c in calls(bin_dir)]
    assert commands == [["podman", "info"], ["podman", "build"], ["podman", "image"], ["podman", "run"],
                        ["podman", "build"]], "tagged by the last build only, after the SBOM"
    first, label_build = calls(bin_dir)[1], calls(bin_dir)[4]
    assert " -t " not in first and f" -t {tag} " in label_build
    assert "--build-arg USER_UID=1001 --build-arg USER_GID=1002" in first and "BUILD_DATE" not in first
    # progress: each phase is named and timed
    for phase in ("podman build", "SBOM: reading the built image", "labels and tag"):
        assert f"npuenv: {phase} ..." in captured.err and f"npuenv: {phase}: done in " in captured.err
    # the label-only step: FROM the built image, the labels only the build knows
    dockerfile = (bin_dir / "Dockerfile.1").read_text()
    assert dockerfile.startswith("FROM 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\nLABEL ")
    assert len([l for l in dockerfile.splitlines() if not l.startswith(" ")]) == 2, "no RUN, no COPY: no layer"
    sums = dict(line.split()[::-1] for line in (directory / "SHA256SUMS").read_text().splitlines())
    text = sbom_file.read_text()
    for label in ('org.opencontainers.image.created="2023-11-14T22:13:20Z"',
                  'org.opencontainers.image.base.name="localhost/debian:bookworm"',
                  'org.opencontainers.image.base.digest="sha256:c978eef00276deee49d83e8d09a5e419fc7e1f6340b96fbec437693459018967"',
                  f'io.npuenv.installer.toolkit.sha256="{sums[made["toolkit"].name]}"',
                  f'io.npuenv.sbom.file="image.cdx.json"', f'io.npuenv.sbom.sha256="{sha256_file(sbom_file)}"',
                  'io.npuenv.sbom.format="CycloneDX 1.6 JSON"'):
        assert label in dockerfile, label
    doc = json.loads(text)
    assert doc["bomFormat"] == "CycloneDX" and doc["specVersion"] == "1.6"
    names = {c["name"]: c for c in doc["components"]}
    assert names["bash"]["version"] == "5.2.15-2+b7" and "old-lib" not in names, "only installed packages"
    assert names[made["nnal"].name]["hashes"] == [{"alg": "SHA-256", "content": sums[made["nnal"].name]}]


@pytest.mark.parametrize("failing", ["FAIL_PROBE", "FAIL_LABELS"])
def test_a_failed_sbom_or_label_step_tags_nothing_and_writes_no_sbom(installers, tmp_path, monkeypatch, capsys,
                                                                    failing):
    _, directory, _ = installers
    bin_dir = tmp_path / "bin"
    fake_tool(bin_dir, "podman", FAKE_PODMAN)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    monkeypatch.setenv(failing, "1")
    sbom_file = tmp_path / "image.cdx.json"
    assert main(["image", "build", "--row", ROW, "--os", "debian12", "--python", "3.11", "--arch", "x86_64",
                 "--installers", str(directory), "--cann-only", "--sbom", str(sbom_file)]) == 2
    err = capsys.readouterr().err
    assert "nothing was tagged" in err and "Traceback" not in err
    assert ("python3: not found" if failing == "FAIL_PROBE" else "label step broke") in err
    assert not sbom_file.exists() and list(tmp_path.glob("*.cdx.json*")) == []
    if failing == "FAIL_PROBE":
        assert [c.split()[1] for c in calls(bin_dir)] == ["info", "build", "image", "run"]


def test_an_sbom_path_that_cannot_be_written_is_refused_before_the_build(installers, tmp_path, monkeypatch, capsys):
    _, directory, _ = installers
    bin_dir = tmp_path / "bin"
    fake_tool(bin_dir, "podman", FAKE_PODMAN)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    (tmp_path / "a-file").write_text("x")
    assert main(["image", "build", "--row", ROW, "--os", "debian12", "--python", "3.11", "--arch", "x86_64",
                 "--installers", str(directory), "--cann-only", "--sbom", str(tmp_path / "a-file" / "s.json")]) == 2
    assert "--sbom" in capsys.readouterr().err and calls(bin_dir) == []


def test_usage_errors_exit_2(installers, tmp_path, capsys):
    _, directory, _ = installers
    base = ["image", "build", "--row", ROW, "--os", "debian12", "--python", "3.11", "--installers", str(directory)]
    assert main(base) == 2 and "--wheelhouse DIR is needed" in capsys.readouterr().err
    assert main(base + ["--cann-only", "--tag", "Bad Tag"]) == 2
    assert "not a valid image reference" in capsys.readouterr().err
    assert main(base + ["--cann-only", "--user-ids", "0:0"]) == 2
    # the driver's account (Ascend's HDK installation guide: the driver runs as HwHiAiUser)
    assert "give the host's HwHiAiUser ids as UID:GID (`id HwHiAiUser`), not root's" in capsys.readouterr().err
    assert main(["image", "render", "--row", "9.9.9"]) == 2
    assert "unknown row: no torch_npu 9.9.9" in capsys.readouterr().err
    assert main(["image", "render", "--row", ROW, "--os", "windows"]) == 2
    assert "unknown OS 'windows'" in capsys.readouterr().err
    assert main(["image", "render", "--torch", "2.13", "--python", "3.8"]) == 1  # nothing fits: as `matrix resolve`
    assert "no matrix row fits" in capsys.readouterr().err


def test_render_cli_prints_the_dockerfile_or_writes_the_context(tmp_path, capsys):
    assert main(["image", "render", "--row", ROW, "--os", "debian12", "--arch", "x86_64", "--chip", "a3"]) == 0
    printed = capsys.readouterr()
    assert printed.out.startswith("# npuenv image: torch_npu 2.13.0 on CANN 9.1.0 (debian12, x86_64, a3)")
    assert "python=3.11: the newest of the row's Pythons that debian12 ships" in printed.err
    assert main(["image", "render", "--row", ROW, "--os", "debian12", "--output", str(tmp_path / "ctx")]) == 0
    written = {p.name for p in (tmp_path / "ctx").iterdir()}
    assert written == {render.DOCKERFILE, render.ENTRYPOINT_FILE, render.PROFILE_FILE, render.LOCK_FILE}
    assert os.access(tmp_path / "ctx" / render.ENTRYPOINT_FILE, os.X_OK)
    entry = (tmp_path / "ctx" / render.ENTRYPOINT_FILE).read_text()
    stack = stack_for()
    assert f"npuenv_source {stack.paths['env_script']}\n" in entry
    # the ABI of the row's torch (2.13, x86_64: the C++11 one), not whichever python3 comes first at login
    assert f"npuenv_source {stack.paths['nnal_env_script']} --cxx_abi=1\n" in entry
    assert entry.rstrip().endswith('exec "$@"')


# --- running ----------------------------------------------------------------------------

def test_run_cmd_for_a_host_with_devices(tmp_path, capsys):
    dev = tmp_path / "dev"
    dev.mkdir()
    for i in (0, 1, 5):
        (dev / f"davinci{i}").touch()
    (dev / "davinci_manager").touch()
    assert main(["image", "run-cmd", "--row", ROW, "--os", "debian12", "--python", "3.11", "--engine", "podman",
                 "--dev-dir", str(dev), "--image", "img:1", "--", "python", "-c", "print(1)"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0] == "podman run --rm \\"
    assert [l.strip(" \\") for l in lines if "--device" in l] == [
        f"--device {dev}/davinci{n}:/dev/davinci{n}" for n in (0, 1, 5)] + [
        f"--device {dev}/{n}:/dev/{n}" for n in ("davinci_manager", "devmm_svm", "hisi_hdc")]
    paths = stack_for().paths
    for key in ("driver_home", "dcmi", "npu_smi", "install_info"):
        assert f"-v {paths[key]}:{paths[key]}:ro" in out
    assert lines[-1].strip() == "img:1 python -c 'print(1)'"
    assert "/usr/local/Ascend/driver" not in out.split("-v")[0]


def test_device_choice():
    a3 = stack_for(chip="a3")
    ids, why = run.device_ids(a3, None, Path("/nonexistent"))
    assert ids == list(range(16)) and "full a3 node" in why        # 8 NPUs x 2 dies
    assert run.device_ids(a3, "0,2-4", Path("/dev"))[0] == [0, 2, 3, 4]
    with pytest.raises(cm.UserError, match="--npus '3-1'"):
        run.parse_npus("3-1", 8)
    cmd = run.run_command(a3, "img", engine="docker", ids=[0], host_root="/host", host_ipc=True)
    assert cmd[:4] == ["docker", "run", "--rm", "-it"] and "--ipc=host" in cmd
    assert "/host/usr/local/Ascend/driver:/usr/local/Ascend/driver:ro" in cmd
    with pytest.raises(cm.UserError):
        run.run_command(a3, "img", engine="buildah", ids=[0])


def test_compose_file(tmp_path, capsys):
    out = tmp_path / "compose.yaml"
    assert main(["image", "compose", "--row", ROW, "--os", "debian12", "--python", "3.11", "--npus", "0-1",
                 "--host-ipc", "--output", str(out), "--", "python", "train.py"]) == 0
    svc = yaml.safe_load(out.read_text())["services"]["npu"]
    stack = stack_for()
    assert svc["image"] == render.image_name(stack)
    assert svc["devices"] == ["/dev/davinci0", "/dev/davinci1", "/dev/davinci_manager", "/dev/devmm_svm",
                              "/dev/hisi_hdc"]
    assert f"{stack.paths['driver_home']}:{stack.paths['driver_home']}:ro" in svc["volumes"]
    assert svc["ipc"] == "host" and svc["command"] == ["python", "train.py"]


def test_makefile_targets_call_the_cli():
    text = (Path(__file__).resolve().parents[2] / "Makefile").read_text()
    for target, call in (("image", "image build $(ROW_ARGS)"), ("dockerfile", "image render $(ROW_ARGS)"),
                         ("run-cmd", "image run-cmd $(ROW_ARGS)"), ("compose", "image compose $(ROW_ARGS)")):
        head = next(l for l in text.splitlines() if l.startswith(f"{target}:"))
        assert "## " in head, f"{target} has no help text"
        body = text.split(head, 1)[1].split("\n\n")[0]
        assert call in body, f"make {target} does not call `npuenv {call}`"


# A podman whose build prints a stage's image id and runs on, and that lists two working
# containers: one made from that stage, one from an image the build never printed (another build's).
STOPPED_PODMAN = r"""
case "$1" in
  build) echo "[1/2] STEP 2/2: RUN echo one"; echo "--> 7f010646f59"; echo "[2/2] STEP 2/2: RUN sleep"
         sleep 30; echo "podman build ran to its end" >> "$(dirname "$0")/calls.log";;
  ps) echo '[{"Id": "c0ffee", "ImageID": "7f010646f59f254d", "State": "storage", "Created": 1},
             {"Id": "0ther5", "ImageID": "5e1f0000aaaa", "State": "storage", "Created": 1}]';;
  image) echo '[{"Id": "93cd39d2e523", "Digest": "", "Labels": {}}]';;
esac
exit 0
"""


def test_a_build_stopped_by_a_signal_removes_its_working_containers_only(installers, tmp_path, monkeypatch):
    stack, directory, made = installers
    bin_dir = tmp_path / "bin"
    fake_tool(bin_dir, "podman", STOPPED_PODMAN)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")

    def operator(line: str) -> None:   # SIGTERM once the second stage runs, as an operator would send it
        if "RUN sleep" in line:
            os.kill(os.getpid(), signal.SIGTERM)
    with pytest.raises(interrupts.Interrupted) as stopped:
        build.build(stack, directory, None, cann_only=True, tag="localhost/x:y", log=operator)
    assert stopped.value.exit_code == 128 + signal.SIGTERM
    assert [c for c in calls(bin_dir) if c.startswith("podman rm")] == ["podman rm --force c0ffee"]
    assert "podman build ran to its end" not in calls(bin_dir), "the command waited for the engine's build"

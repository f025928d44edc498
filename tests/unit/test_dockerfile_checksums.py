"""The checksum checks inside the rendered Dockerfile, executed: each RUN that
takes an installer (or the wheelhouse) from a bind mount is run with /bin/sh,
as the build runs it, against a folder standing for the mount. A wrong
sha256, an installer missing from SHA256SUMS, a corrupt file and an unset
build arg stop it before the installer runs; SHA256SUMS with CRLF line ends
(written on Windows) is read as sha256sum -c reads it."""
from __future__ import annotations

import hashlib
import re
import subprocess
from pathlib import Path

import pytest

import compat_matrix as cm
from images import render

STACK = render.choose_python(cm.resolve(cm.load_matrix(), cm.Constraints(
    torch_npu="==2.13.0", arch="x86_64", os="debian12", chip="910b", python="3.11")).stack, python_given=True)
DOCKERFILE = render.render(STACK)[render.DOCKERFILE]
MOUNTS = render.load_manifest()["mounts"]
TOOLKIT = "Ascend-cann-toolkit_9.1.0_linux-x86_64.run"
KERNELS = "Ascend-cann-910b-ops_9.1.0_linux-x86_64.run"
NNAL = "Ascend-cann-nnal_9.1.0_linux-x86_64.run"


def runs() -> list[str]:
    """The shell of every RUN instruction (continuation lines kept: the shell joins them)."""
    out = []
    for m in re.finditer(r"^RUN (.*?[^\\])$", DOCKERFILE, re.M | re.S):
        out.append(m.group(1))
    return out


def run_using(name: str) -> str:
    found = [r for r in runs() if f"/{name}" in r and "SHA256SUMS" in r]
    assert len(found) == 1, f"one RUN installs {name}"
    return re.sub(r"^--mount=\S+\s*\\?\s*", "", found[0])


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def installers_dir(tmp_path: Path, sums: str | None = None) -> Path:
    """Fake installers that record that they ran, and a SHA256SUMS of them."""
    d = tmp_path / "installers"
    d.mkdir()
    for name in (TOOLKIT, KERNELS, NNAL):
        (d / name).write_text(f'echo "ran {name} $*" >> "{tmp_path}/ran.log"\n')
    if sums is None:
        sums = "".join(f"{sha((d / n).read_bytes())}  {n}\n" for n in (TOOLKIT, KERNELS, NNAL))
    (d / "SHA256SUMS").write_text(sums)
    return d


def execute(script: str, mount: Path, target: str, env: dict) -> subprocess.CompletedProcess:
    script = script.replace(f"{target}/", f"{mount}/")
    return subprocess.run(["/bin/sh", "-c", script], capture_output=True, text=True, env={"PATH": "/usr/bin:/bin",
                          **env}, timeout=60)


def verify_only(name: str) -> str:
    """The RUN up to the installer's invocation: the two checks."""
    script = run_using(name)
    return script[:script.index(f" && bash {MOUNTS['installers']['target']}/{name}")] \
        if f" && bash {MOUNTS['installers']['target']}/{name}" in script else \
        script[:script.index(" && bash -c")]


def test_every_installer_run_checks_before_it_installs():
    for name in (TOOLKIT, KERNELS, NNAL):
        script = run_using(name)
        assert script.index("SHA256SUMS") < script.index("sha256sum") < script.rindex(name)


def test_listed_installer_with_its_checksum_installs(tmp_path):
    d = installers_dir(tmp_path)
    p = execute(run_using(TOOLKIT), d, MOUNTS["installers"]["target"],
                {"TOOLKIT_SHA256": sha((d / TOOLKIT).read_bytes())})
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "ran.log").read_text() == f"ran {TOOLKIT} --install --install-for-all --quiet\n"


@pytest.mark.parametrize("name, arg", [(TOOLKIT, "TOOLKIT_SHA256"), (KERNELS, "KERNELS_SHA256"),
                                       (NNAL, "NNAL_SHA256")])
def test_wrong_sha256_stops_the_build_before_the_installer(tmp_path, name, arg):
    d = installers_dir(tmp_path)
    wrong = sha(b"another file")
    p = execute(run_using(name), d, MOUNTS["installers"]["target"], {arg: wrong})
    assert p.returncode == 1
    assert p.stderr == f"{name}: SHA256SUMS in the installer directory does not list it with sha256 {wrong} alone\n"
    assert not (tmp_path / "ran.log").exists()


def test_installer_missing_from_sha256sums_is_refused(tmp_path):
    d = installers_dir(tmp_path)
    good = sha((d / TOOLKIT).read_bytes())
    (d / "SHA256SUMS").write_text(f"{sha((d / KERNELS).read_bytes())}  {KERNELS}\n")
    p = execute(run_using(TOOLKIT), d, MOUNTS["installers"]["target"], {"TOOLKIT_SHA256": good})
    assert p.returncode == 1
    assert p.stderr == f"{TOOLKIT}: SHA256SUMS in the installer directory does not list it with sha256 {good} alone\n"
    assert not (tmp_path / "ran.log").exists()


@pytest.mark.parametrize("line", [
    "{sha}  Ascend-cann-toolkit_9X1X0_linux-x86_64Xrun",   # '.' in the name is no wildcard
    "{sha}  {name}.bak",                                     # the whole name, nothing after it
    "{sha}  old/{name}",                                     # nothing before it
    "{sha}{name}",                                           # sha256sum's separator is required
])
def test_only_an_exact_sha256sum_line_counts(tmp_path, line):
    d = installers_dir(tmp_path)
    good = sha((d / TOOLKIT).read_bytes())
    (d / "SHA256SUMS").write_text(line.format(sha=good, name=TOOLKIT) + "\n")
    p = execute(run_using(TOOLKIT), d, MOUNTS["installers"]["target"], {"TOOLKIT_SHA256": good})
    assert p.returncode == 1 and "does not list it" in p.stderr
    assert not (tmp_path / "ran.log").exists()


def test_corrupt_installer_listed_with_the_expected_sha256_is_refused(tmp_path):
    d = installers_dir(tmp_path)
    good = sha((d / TOOLKIT).read_bytes())
    (d / TOOLKIT).write_text("echo tampered\n")
    p = execute(run_using(TOOLKIT), d, MOUNTS["installers"]["target"], {"TOOLKIT_SHA256": good})
    assert p.returncode == 1
    assert p.stderr == f"{TOOLKIT}: checksum mismatch, expected sha256 {good}\n"
    assert not (tmp_path / "ran.log").exists()


def test_unset_build_arg_says_which_to_pass(tmp_path):
    d = installers_dir(tmp_path)
    p = execute(verify_only(KERNELS), d, MOUNTS["installers"]["target"], {})
    assert p.returncode != 0
    assert (f"KERNELS_SHA256: pass --build-arg KERNELS_SHA256: the sha256 of {KERNELS} in SHA256SUMS"
            in p.stderr)


@pytest.mark.parametrize("sep", ["  ", " *"])
def test_crlf_sha256sums_and_binary_marker_are_read_as_sha256sum_reads_them(tmp_path, sep):
    d = installers_dir(tmp_path)
    sums = "".join(f"{sha((d / n).read_bytes())}{sep}{n}\r\n" for n in (TOOLKIT, KERNELS, NNAL))
    (d / "SHA256SUMS").write_text(sums, newline="")
    # GNU sha256sum -c accepts the same file
    assert subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=d, capture_output=True).returncode == 0
    for name, arg in ((TOOLKIT, "TOOLKIT_SHA256"), (KERNELS, "KERNELS_SHA256"), (NNAL, "NNAL_SHA256")):
        p = execute(verify_only(name) + " && echo verified", d, MOUNTS["installers"]["target"],
                    {arg: sha((d / name).read_bytes())})
        assert (p.returncode, p.stdout) == (0, "verified\n"), p.stderr


# ------------------------------------------------------------------ the wheelhouse

def wheelhouse_check() -> str:
    target = MOUNTS["wheelhouse"]["target"]
    found = [r for r in runs() if f'"$(sha256sum {target}/requirements.txt)"' in r]
    assert len(found) == 1
    script = re.sub(r"^--mount=\S+\s*\\?\s*", "", found[0])
    return script[:script.index("; fi") + len("; fi")]


def test_wheelhouse_requirements_are_checked(tmp_path):
    house = tmp_path / "wheelhouse"
    house.mkdir()
    (house / "requirements.txt").write_text("torch==2.13.0+cpu \\\n    --hash=sha256:00\n")
    good = sha((house / "requirements.txt").read_bytes())
    target = MOUNTS["wheelhouse"]["target"]
    p = execute(wheelhouse_check() + " && echo verified", house, target, {"WHEELHOUSE_SHA256": good})
    assert (p.returncode, p.stdout) == (0, "verified\n"), p.stderr
    p = execute(wheelhouse_check(), house, target, {"WHEELHOUSE_SHA256": sha(b"other")})
    assert p.returncode == 1
    assert p.stderr == "the wheelhouse's requirements.txt does not match WHEELHOUSE_SHA256\n"

"""Building a wheelhouse from small synthetic wheels, offline (pip runs with --no-index).

Covers the layout (SHA256SUMS, hash-pinned requirements, PEP 503 index, manifest),
cross-arch targets, and bad input: each refused with exit code 2 and a message
naming both sides, the existing wheelhouse left as it was.
"""
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import compat_matrix as cm
from npuenv.cli import main
from tests.conftest import ROOT
from tests.fixtures.wheelhouse.synth import make_elf, make_stack_wheels, make_wheel
from torch_npu_pkg import wheelhouse

M = cm.load_matrix()
ROW = "2.13.0"


def stack(python="3.11", arch="x86_64", row=ROW):
    return cm.resolve(M, cm.Constraints(torch_npu="==" + row, python=python, arch=arch)).stack


@pytest.fixture
def sources(tmp_path):
    """A torch source directory (CPU torch, torchvision) and a local wheel directory (the rest)."""
    torch_dir, deps = tmp_path / "torch-source", tmp_path / "wheels"
    wheels = make_stack_wheels(torch_dir, deps, stack())
    return torch_dir, deps, wheels


def build_args(out, torch_dir, deps, *extra, python="3.11", arch="x86_64", row=ROW):
    return ["wheelhouse", "build", "--row", row, "--python", python, "--arch", arch, "--out", str(out),
            "--torch-source", str(torch_dir), "--source", f"dir:{deps}", "--offline", *extra]


def snapshot(directory):
    return {p.relative_to(directory).as_posix(): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


@pytest.fixture
def built(tmp_path, sources, capsys):
    torch_dir, deps, wheels = sources
    out = tmp_path / "house"
    assert main(build_args(out, torch_dir, deps)) == 0
    printed = capsys.readouterr().out
    assert f"install offline: pip install --no-index --find-links {out} -r {out}/requirements.txt" in printed
    return out, wheels


def test_wheelhouse_layout(built):
    out, wheels = built
    manifest = json.loads((out / "manifest.json").read_text())
    files = {w["file"]: w for w in manifest["wheels"]}
    assert set(files) == {p.name for p in out.glob("*.whl")}
    assert {w["role"] for w in manifest["wheels"]} == {"torch", "torch_npu", "torchvision", "cann-python-dep",
                                                       "dependency"}
    assert files[wheels["torch"].name]["source"]["kind"] == "torch-source"
    assert files[wheels["torch_npu"].name]["source"]["kind"] == "dir"
    assert manifest["stack"] == {"torch_npu": "2.13.0", "torch": "2.13.0", "torchvision": "0.28.0", "cann": "9.1.0",
                                 "python": "3.11", "arch": "x86_64"}
    assert manifest["row"]["torch_npu"] == ROW and manifest["target"]["interpreter"] == "cp311"
    # every CANN Python dependency of the matrix is there
    names = {w["name"] for w in manifest["wheels"]}
    assert {"attrs", "decorator", "protobuf", "absl-py", "pathlib2"} <= names
    # SHA256SUMS in sha256sum's own format
    check = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=out, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    # requirements.txt: every wheel pinned with its hash
    reqs = (out / "requirements.txt").read_text()
    for w in manifest["wheels"]:
        digest = hashlib.sha256((out / w["file"]).read_bytes()).hexdigest()
        assert f"{w['project']}=={w['version']} \\\n    --hash=sha256:{digest}" in reqs
    # PEP 503: normalised project pages, relative links with #sha256 fragments
    top = (out / "simple" / "index.html").read_text()
    assert 'href="torch-npu/"' in top and 'href="absl-py/"' in top
    page = (out / "simple" / "torch-npu" / "index.html").read_text()
    link = re.search(r'href="([^"#]+)#sha256=([0-9a-f]{64})"', page)
    assert (out / "simple" / "torch-npu" / link.group(1)).resolve() == (out / wheels["torch_npu"].name).resolve()
    assert link.group(2) == files[wheels["torch_npu"].name]["sha256"]
    assert wheelhouse.verify(out, M) == []


def test_the_index_serves_pip_with_hash_checking(built, tmp_path):
    out, _ = built
    dest = tmp_path / "got"
    proc = subprocess.run([sys.executable, "-m", "pip", "download", "--isolated", "--no-deps", "--index-url", (out / "simple").as_uri(),
                           "-d", str(dest), "--only-binary=:all:", "--platform", "manylinux_2_28_x86_64",
                           "--python-version", "3.11", "torch-npu==2.13.0"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert [p.name for p in dest.iterdir()] == ["torch_npu-2.13.0-cp311-cp311-manylinux_2_28_x86_64.whl"]


def test_verify_finds_tampering(built, capsys):
    out, wheels = built
    victim = out / wheels["torch_npu"].name
    victim.write_bytes(victim.read_bytes() + b"x")
    (out / "stray-1.0-py3-none-any.whl").write_bytes(b"")
    problems = wheelhouse.verify(out, M)
    assert any("checksum mismatch" in p and victim.name in p for p in problems)
    assert any("stray-1.0-py3-none-any.whl: a wheel not listed" in p for p in problems)
    assert main(["wheelhouse", "verify", str(out)]) == 1
    assert "problem(s)" in capsys.readouterr().err


def test_cross_arch_and_target_markers(tmp_path):
    """An aarch64 / Python 3.12 wheelhouse made on this x86_64 host: pip judges markers for the host,
    the wheelhouse for the target, so the aarch64-only dependency is fetched in a second round."""
    s = stack(python="3.12", arch="aarch64")
    torch_dir, deps = tmp_path / "t", tmp_path / "w"
    wheels = make_stack_wheels(torch_dir, deps, s)
    wheels["torch_npu"].unlink()
    make_wheel(deps, "torch_npu", ROW, "cp312-cp312-manylinux_2_28_aarch64",
               requires=["torch==2.13.0.*", "numpy", 'armonly; platform_machine == "aarch64"',
                         'x86only; platform_machine == "x86_64"'])
    make_wheel(deps, "armonly", "1.0")
    make_wheel(deps, "x86only", "1.0")
    out = tmp_path / "house"
    assert main(build_args(out, torch_dir, deps, python="3.12", arch="aarch64")) == 0
    names = {w["name"] for w in json.loads((out / "manifest.json").read_text())["wheels"]}
    assert "armonly" in names and "x86only" not in names
    assert all("aarch64" in p.name or "none-any" in p.name for p in out.glob("*.whl"))
    assert wheelhouse.verify(out, M) == []


def test_dependencies_resolve_with_every_manylinux_tag_and_no_prereleases(tmp_path, capsys):
    """The final release tagged for an older glibc (manylinux_2_17) fits a manylinux_2_28 target: pip is
    given every tag the target accepts, so it does not fall back to a pre-release tagged 2_28."""
    torch_dir, deps = tmp_path / "torch-source", tmp_path / "wheels"
    wheels = make_stack_wheels(torch_dir, deps, stack())
    wheels["cffi"].unlink()
    final = make_wheel(deps, "cffi", "2.0.0", "cp311-cp311-manylinux_2_17_x86_64")
    make_wheel(deps, "cffi", "2.0.0b1", "cp311-cp311-manylinux_2_28_x86_64")
    out = tmp_path / "house"
    assert main(build_args(out, torch_dir, deps)) == 0
    cffi = next(w for w in json.loads((out / "manifest.json").read_text())["wheels"] if w["name"] == "cffi")
    assert cffi["file"] == final.name
    # only the pre-release fits: refused, unless asked for
    final.unlink()
    capsys.readouterr()
    assert main(build_args(tmp_path / "pre", torch_dir, deps)) == 2
    err = capsys.readouterr().err
    assert "pip chose pre-release wheels, because no final release of them fits the target: " \
           "cffi-2.0.0b1-cp311-cp311-manylinux_2_28_x86_64.whl" in err and "or pass --pre" in err
    assert not (tmp_path / "pre").exists() and not list(tmp_path.glob(".pre.tmp-*"))
    assert main(build_args(tmp_path / "pre", torch_dir, deps, "--pre")) == 0
    manifest = json.loads((tmp_path / "pre" / "manifest.json").read_text())
    assert "pre-release dependencies accepted (--pre): cffi-2.0.0b1-cp311-cp311-manylinux_2_28_x86_64.whl" \
           in manifest["notes"]


def test_bad_torch_pin_is_refused_and_the_old_wheelhouse_stays(built, tmp_path, capsys):
    out, wheels = built
    before = snapshot(out)
    bad = tmp_path / "bad"
    make_wheel(bad, "torch_npu", ROW, "cp311-cp311-manylinux_2_28_x86_64", requires=["torch==2.12.0"])
    capsys.readouterr()
    assert main(build_args(out, wheels["torch"].parent, bad)) == 2
    err = capsys.readouterr().err
    assert "npuenv: torch_npu-2.13.0-cp311-cp311-manylinux_2_28_x86_64.whl: Requires-Dist 'torch==2.12.0' pins " \
           "torch 2.12.0, but matrix row torch_npu 2.13.0 pins torch 2.13.0" in err
    assert "Traceback" not in err
    assert snapshot(out) == before
    assert [p.name for p in out.parent.iterdir() if p.name.startswith(".house")] == []


def test_checksum_mismatch_is_refused(built, capsys):
    out, wheels = built
    before = snapshot(out)
    deps = wheels["torch_npu"].parent
    (deps / "SHA256SUMS").write_text(f"{'0' * 64}  {wheels['torch_npu'].name}\n")
    assert main(build_args(out, wheels["torch"].parent, deps)) == 2
    err = capsys.readouterr().err
    assert f"{wheels['torch_npu'].name}: checksum mismatch: {deps / 'SHA256SUMS'} says sha256 {'0' * 64}" in err
    assert snapshot(out) == before
    # a folder with a SHA256SUMS vouches only for what it lists (compat_matrix.checksums' one policy)
    (deps / "SHA256SUMS").write_text(f"{'0' * 64}  some-other.whl\n")
    assert main(build_args(out, wheels["torch"].parent, deps)) == 2
    err = capsys.readouterr().err
    assert f"{wheels['torch_npu'].name} is not listed in {deps / 'SHA256SUMS'}" in err
    assert snapshot(out) == before


def test_missing_torch_npu_lists_every_source_tried(tmp_path, sources, capsys):
    torch_dir, deps, wheels = sources
    wheels["torch_npu"].unlink()
    out = tmp_path / "house"
    assert main(build_args(out, torch_dir, deps, "--source", "pypi")) == 2
    err = capsys.readouterr().err
    assert "no source gave torch_npu 2.13.0 for Python 3.11 (cp311) on x86_64" in err
    assert f"dir:{deps}: no torch_npu 2.13.0 wheel" in err
    assert "pypi: offline: the package index is not asked" in err
    assert not out.exists()
    assert list(tmp_path.glob(".house*")) == []


def test_wheel_for_another_python_in_the_directory_is_named(tmp_path, sources, capsys):
    torch_dir, deps, wheels = sources
    wheels["torch_npu"].unlink()
    make_wheel(deps, "torch_npu", ROW, "cp312-cp312-manylinux_2_28_x86_64", requires=["torch==2.13.0.*"])
    assert main(build_args(tmp_path / "house", torch_dir, deps)) == 2
    assert "torch_npu-2.13.0-cp312-cp312-manylinux_2_28_x86_64.whl (its Python tags cp312-cp312 do not fit the " \
           "requested Python 3.11 (cp311))" in capsys.readouterr().err


def test_torch_source_without_the_cpu_torch(tmp_path, sources, capsys):
    torch_dir, deps, wheels = sources
    wheels["torch"].unlink()
    assert main(build_args(tmp_path / "house", torch_dir, deps)) == 2
    assert f"torch source {torch_dir} has no torch 2.13.0 wheel for Python 3.11 (cp311) on x86_64" \
        in capsys.readouterr().err
    assert main(build_args(tmp_path / "house", tmp_path / "nowhere", deps)) == 2
    assert "is not a directory (nor an index URL)" in capsys.readouterr().err


def test_cuda_torch_in_the_torch_source_is_refused(tmp_path, capsys):
    torch_dir, deps = tmp_path / "t", tmp_path / "w"
    make_stack_wheels(torch_dir, deps, stack(), torch_label="", torch_files={
        "torch/__init__.py": b"", "torch/lib/libc10_cuda.so": make_elf(["libcudart.so.13"])})
    assert main(build_args(tmp_path / "house", torch_dir, deps)) == 2
    assert "is a CUDA build of torch (it ships torch/lib/libc10_cuda.so)" in capsys.readouterr().err


def test_cuda_torchvision_is_refused_unless_asked_for(tmp_path, capsys):
    torch_dir, deps = tmp_path / "t", tmp_path / "w"
    make_stack_wheels(torch_dir, deps, stack(), torchvision=False)
    make_wheel(deps, "torchvision", "0.28.0", "cp311-cp311-manylinux_2_28_x86_64",
               requires=["numpy", "torch==2.13.0"],
               files={"torchvision/_C.so": make_elf(["libc10_cuda.so", "libcudart.so.13"])})
    out = tmp_path / "house"
    assert main(build_args(out, torch_dir, deps)) == 2
    err = capsys.readouterr().err
    assert "torchvision/_C.so links libc10_cuda.so, libcudart.so.13" in err
    assert "--torchvision index" in err and not out.exists()
    assert main(build_args(out, torch_dir, deps, "--torchvision", "index")) == 0
    notes = json.loads((out / "manifest.json").read_text())["notes"]
    assert notes == ["torchvision-0.28.0-cp311-cp311-manylinux_2_28_x86_64.whl is a CUDA build (torchvision/_C.so "
                     "links libc10_cuda.so, libcudart.so.13): with the CPU torch its operators do not load and "
                     "`import torchvision` fails; kept because --torchvision index was given. Put the CPU build "
                     "(torchvision==0.28.0+cpu) in the torch source to fix it."]
    assert main(build_args(tmp_path / "none", torch_dir, deps, "--torchvision", "none")) == 0
    names = {w["name"] for w in json.loads((tmp_path / "none" / "manifest.json").read_text())["wheels"]}
    assert "torchvision" not in names and "torch-npu" in names


def test_out_that_is_not_a_wheelhouse_is_not_replaced(tmp_path, sources, capsys):
    torch_dir, deps, _ = sources
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    assert main(build_args(out, torch_dir, deps)) == 2
    assert "is not empty and is not a wheelhouse" in capsys.readouterr().err
    assert (out / "notes.txt").read_text() == "keep me"


def test_rebuilding_replaces_the_wheelhouse_whole(built, sources):
    out, wheels = built
    torch_dir, deps, _ = sources
    (out / "leftover-1.0-py3-none-any.whl").write_bytes(b"")
    assert main(build_args(out, torch_dir, deps, "--torchvision", "none")) == 0
    assert not (out / "leftover-1.0-py3-none-any.whl").exists()
    assert wheelhouse.verify(out, M) == []


def test_no_matching_row_exits_1_and_an_unknown_row_2(tmp_path, sources, capsys):
    torch_dir, deps, _ = sources
    assert main(build_args(tmp_path / "h", torch_dir, deps, python="3.8")) == 1
    assert "no matrix row fits" in capsys.readouterr().err
    assert main(build_args(tmp_path / "h", torch_dir, deps, row="9.9.9")) == 2
    assert "unknown row: no torch_npu 9.9.9 in the matrix" in capsys.readouterr().err
    assert not (tmp_path / "h").exists()


def test_unknown_source_is_a_usage_error(tmp_path, sources, capsys):
    torch_dir, deps, _ = sources
    assert main(build_args(tmp_path / "h", torch_dir, deps, "--source", "ftp")) == 2
    assert "unknown torch_npu source 'ftp'" in capsys.readouterr().err


def test_torch_source_can_be_an_index_url(tmp_path):
    """Like PyTorch's CPU index: torch and torchvision's CPU builds come from it, asked in isolation."""
    torch_dir, deps = tmp_path / "cpu-index", tmp_path / "wheels"
    wheels = make_stack_wheels(torch_dir, deps, stack())
    entries = [{"name": n, "file": wheels[n].name, "requires_python": None,
                "sha256": hashlib.sha256(wheels[n].read_bytes()).hexdigest()} for n in ("torch", "torchvision")]
    wheelhouse.write_index(torch_dir, entries)
    url = (torch_dir / "simple").as_uri()
    out = tmp_path / "house"
    assert main(build_args(out, url, deps)) == 0
    records = {w["role"]: w for w in json.loads((out / "manifest.json").read_text())["wheels"]}
    assert records["torch"]["source"] == {"kind": "torch-source", "location": url,
                                          "checksum_source": "index (#sha256 verified by pip)"}
    assert records["torchvision"]["version"] == "0.28.0+cpu"
    assert records["torchvision"]["source"]["location"] == url


class _BlockingIndex:
    """A package index on loopback that answers nothing until released: pip, asked for the
    dependencies, waits there mid-build with the wheelhouse's temporary folder in place."""

    def __init__(self):
        import http.server
        import threading

        self.asked, self.release = threading.Event(), threading.Event()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                outer.asked.set()
                outer.release.wait(60)
                self.send_error(404)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/simple"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.release.set()
        self.server.shutdown()


def _processes_mentioning(text: str) -> list[str]:
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if text.encode() in cmdline.read_bytes():
                found.append(cmdline.parent.name)
        except OSError:
            pass
    return found


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_an_interrupted_build_leaves_nothing_behind(tmp_path, sources, sig):
    torch_dir, deps, _ = sources
    out = tmp_path / "house"
    tmpdir = tmp_path / "tmp"   # npuenv's and pip's temporary folders
    tmpdir.mkdir()
    index = _BlockingIndex()
    try:
        args = [a for a in build_args(out, torch_dir, deps) if a != "--offline"] + ["--index-url", index.url]
        proc = subprocess.Popen([sys.executable, "-m", "npuenv", *args], cwd=tmp_path, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                env={**os.environ, "PIP_CONFIG_FILE": os.devnull, "PYTHONPATH": str(ROOT),
                                     "TMPDIR": str(tmpdir)})
        assert index.asked.wait(120), "pip never asked the index"
        (work,) = list(tmp_path.glob(".house.tmp-*"))   # mid-build: pip is downloading into it
        assert (work / "download").is_dir()
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    finally:
        index.close()
    assert proc.returncode == 128 + sig.value, err
    assert f"npuenv: wheelhouse build {out}: interrupted by {sig.name}; its temporary files are removed and " \
           f"nothing was written" in err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tmp", "torch-source", "wheels"]
    assert list(tmpdir.iterdir()) == []   # pip's pip-download-* and pip-build-tracker-* among them
    assert _processes_mentioning(str(work)) == [], "pip was left running"


def test_a_failed_build_removes_the_folders_it_made_for_out(tmp_path, sources, capsys):
    """--out out/h where out/ did not exist: a failed build leaves no out/ behind (a good one keeps it)."""
    torch_dir, deps, wheels = sources
    (tmp_path / "kept").mkdir()
    wheels["torch_npu"].unlink()
    assert main(build_args(tmp_path / "out" / "deeper" / "house", torch_dir, deps)) == 2
    assert "no source gave torch_npu 2.13.0" in capsys.readouterr().err
    assert main(build_args(tmp_path / "kept" / "house", torch_dir, deps)) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept", "torch-source", "wheels"]
    assert list((tmp_path / "kept").iterdir()) == []

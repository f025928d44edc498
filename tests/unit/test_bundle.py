"""The air-gapped bundle, made offline from synthetic wheels and simulated installers: what
`bundle make` refuses, what `bundle verify` refuses (paths out of the bundle, links, an
empty manifest), and interrupts that leave nothing behind."""
from __future__ import annotations

import io
import json
import re
import signal
import shutil
import subprocess
import sys
import tarfile
import textwrap
from pathlib import Path

import pytest
from packaging.utils import parse_wheel_filename

import compat_matrix as cm
from compat_matrix import checksums
from npuenv.cli import main
from tests.conftest import ROOT
from tests.fixtures.wheelhouse.synth import make_controller_wheels, make_stack_wheels
from tests.sim import installers as sim_installers
from torch_npu_pkg import bundle

ROW, PYTHON, ARCH = "2.13.0", "3.11", "x86_64"
STACK = cm.resolve(cm.load_matrix(), cm.Constraints(torch_npu="==" + ROW, python=PYTHON, arch=ARCH)).stack


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """A wheelhouse, an installer cache with its SHA256SUMS and the controller's wheels."""
    root = tmp_path_factory.mktemp("bundle-inputs")
    torch_dir, deps = root / "torch-source", root / "deps"
    make_stack_wheels(torch_dir, deps, STACK)
    house = root / "wheelhouse"
    assert main(["wheelhouse", "build", "--row", ROW, "--python", PYTHON, "--arch", ARCH, "--out", str(house),
                 "--torch-source", str(torch_dir), "--source", f"dir:{deps}", "--offline"]) == 0
    installers = root / "installers"
    made = sim_installers.make_installers(STACK, installers)
    controller = root / "controller-wheels"
    make_controller_wheels(controller, ROOT / "requirements.lock")
    return {"house": house, "installers": installers, "made": made, "controller": controller}


def make_args(inputs, out, *extra, installers=None):
    return ["bundle", "make", "--wheelhouse", str(inputs["house"]), "--installers",
            str(installers or inputs["installers"]), "--out", str(out), "--controller-wheels",
            str(inputs["controller"]), "--offline", *extra]


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


@pytest.fixture(scope="module")
def archive(inputs, tmp_path_factory):
    out = tmp_path_factory.mktemp("bundle") / "bundle.tar"
    before = checkout_build_state()
    assert main(make_args(inputs, out)) == 0
    # the checkout the wheel was built from is left as it was: no build/ nor *.egg-info written (an older
    # editable install's egg-info stays)
    assert checkout_build_state() == before
    return out


def checkout_build_state():
    return (ROOT / "build").exists(), sorted((p.name, p.stat().st_mtime) for p in ROOT.glob("*.egg-info"))


@pytest.fixture
def unpacked(archive, tmp_path):
    subprocess.run(["tar", "-xf", str(archive), "-C", str(tmp_path)], check=True)
    (top,) = list(tmp_path.iterdir())
    return top


def rewrite_sums(top: Path) -> None:
    """SHA256SUMS (and MANIFEST.json's files) as they would be for the tree as it now is."""
    manifest = json.loads((top / "MANIFEST.json").read_text())
    files = {p.relative_to(top).as_posix(): checksums.sha256_file(p) for p in top.rglob("*")
             if p.is_file() and p.relative_to(top).as_posix() not in ("SHA256SUMS", "MANIFEST.json")}
    manifest["files"] = {k: {"sha256": v, "size": (top / k).stat().st_size} for k, v in files.items()}
    (top / "MANIFEST.json").write_text(json.dumps(manifest))
    files["MANIFEST.json"] = checksums.sha256_file(top / "MANIFEST.json")
    (top / "SHA256SUMS").write_text(checksums.format_sums(files))


def test_a_bundle_carries_what_the_playbooks_import_and_the_controllers_packages(archive, unpacked, capsys):
    assert main(["bundle", "verify", str(archive)]) == 0
    assert main(["bundle", "verify", str(unpacked)]) == 0
    # the filter plugin's imports
    assert all((unpacked / "source" / "validation" / "node" / "vendor_tools" / f"{m}.py").is_file()
               for m in ("__init__", "common", "npu_smi", "hccn_tool"))
    # installers/ serves as the site's installer cache: sha256sum -c there passes
    assert subprocess.run(["sha256sum", "-c", "--quiet", "SHA256SUMS"], cwd=unpacked / "installers").returncode == 0
    assert len((unpacked / "installers" / "SHA256SUMS").read_text().splitlines()) == 5
    assert (unpacked / "source" / "compat_matrix" / "checksums.py").is_file()   # the installers lookup's
    # nothing at the top that a command run there would import instead of the installed packages
    assert sorted(p.name for p in unpacked.iterdir()) == ["MANIFEST.json", "SHA256SUMS", "USAGE.txt", "collection",
                                                           "controller", "installers", "npuenv.lock.json", "source",
                                                           "wheelhouse"]
    # the roles and plugins as the npuenv.ascend collection, for `ansible-galaxy collection install`
    (tarball,) = (unpacked / "collection").iterdir()
    with tarfile.open(tarball) as collection:
        info = json.load(collection.extractfile("MANIFEST.json"))["collection_info"]
        assert (info["namespace"], info["name"], tarball.name) == ("npuenv", "ascend", "npuenv-ascend-0.1.0.tar.gz")
        assert {"roles/preflight/tasks/main.yml", "plugins/modules/npuenv_files.py"} <= set(collection.getnames())
    # USAGE.txt's install command names that tarball
    [named] = re.findall(r"--offline (\S+) -p", " ".join((unpacked / "USAGE.txt").read_text().split()))
    assert [p.relative_to(unpacked) for p in unpacked.glob(named)] == [tarball.relative_to(unpacked)]
    manifest = json.loads((unpacked / "MANIFEST.json").read_text())
    names = sorted(p.name for p in (unpacked / "controller").glob("*.whl"))
    assert sorted(parse_wheel_filename(n)[0] for n in names) == ["ansible-core", "cyclonedx-python-lib", "jinja2",
                                                                  "npuenv", "packaging", "prometheus-client", "pygments", "pytest",
                                                                  "pytest-testinfra", "pyyaml"]
    assert manifest["controller"]["wheels"] == names
    # wheels for the matrix's Pythons that npuenv's requires-python (>=3.11) allows, on both arches
    assert {"3.11", "3.12", "3.13"} <= set(manifest["controller"]["pythons"]) and \
        "3.10" not in manifest["controller"]["pythons"]
    assert manifest["controller"]["archs"] == ["aarch64", "x86_64"]
    reqs = (unpacked / "controller" / "requirements.txt").read_text()
    npuenv_wheel = next((unpacked / "controller").glob("npuenv-*.whl"))
    assert f"npuenv==0.1.0 \\\n    --hash=sha256:{checksums.sha256_file(npuenv_wheel)}" in reqs
    commands = bundle.usage_commands((unpacked / "USAGE.txt").read_text())
    assert commands[0] == f"cd {unpacked.name} && sha256sum -c --quiet SHA256SUMS"
    assert f"{bundle.VENV}/bin/pip install --no-index --find-links controller -r controller/requirements.txt" \
        in commands
    assert f"{bundle.VENV}/bin/npuenv bundle verify ." in commands
    assert "--lock npuenv.lock.json" in commands[-1]
    # the venv is made outside the bundle's folder (tests/integration/test_install.py runs the commands)
    assert not (unpacked / bundle.VENV).resolve().is_relative_to(unpacked)


def test_controller_requirements_mark_a_wheel_only_some_targets_need(tmp_path):
    from tests.fixtures.wheelhouse.synth import make_wheel

    targets = [("3.11", "x86_64"), ("3.12", "x86_64")]
    yaml11, yaml12 = (make_wheel(tmp_path, "pyyaml", "6.0.3", tag=f"cp3{m}-cp3{m}-manylinux2014_x86_64")
                      for m in (11, 12))
    tomli = make_wheel(tmp_path, "tomli", "2.0.0")
    used = {yaml11.name: {targets[0]}, yaml12.name: {targets[1]}, tomli.name: {targets[0]}}
    text = bundle.requirements(tmp_path, used, targets)
    hashes = sorted(checksums.sha256_file(w) for w in (yaml11, yaml12))
    # one requirement serving both targets with the hash of each one's wheel; tomli only where it was needed
    assert f"pyyaml==6.0.3 \\\n    --hash=sha256:{hashes[0]} \\\n    --hash=sha256:{hashes[1]}\n" in text
    assert f'tomli==2.0.0 ; (python_version == "3.11" and platform_machine == "x86_64") \\\n    ' \
           f"--hash=sha256:{checksums.sha256_file(tomli)}\n" in text
    used[make_wheel(tmp_path, "tomli", "2.0.1").name] = {targets[1]}
    with pytest.raises(cm.UserError, match=r"tomli at several versions \(2.0.0, 2.0.1\)"):
        bundle.requirements(tmp_path, used, targets)


def test_usage_commands_are_the_prompt_lines_with_their_continuations():
    usage = "1. Do:\n     $ a \\\n         b\n   not this\n  $ c 'd e'\n$x\n"
    assert bundle.usage_commands(usage) == ["a \\\nb", "c 'd e'"]


def test_a_venv_inside_the_bundle_folder_is_one_problem_that_says_where_it_belongs(unpacked, capsys):
    venv = unpacked / "venv"   # what following an older USAGE.txt left: thousands of files the bundle does not list
    for i in range(200):
        (venv / "lib" / f"m{i}").mkdir(parents=True)
        (venv / "lib" / f"m{i}" / "__init__.py").write_text("")
    (venv / "pyvenv.cfg").write_text("home = /usr/bin\n")
    assert main(["bundle", "verify", str(unpacked)]) == 1
    err = capsys.readouterr().err
    assert "venv/: a Python virtual environment inside the bundle's folder" in err
    assert f"python3 -m venv {bundle.VENV}" in err and "venv/lib" not in err
    (venv / "pyvenv.cfg").unlink()   # not a venv: every file is refused, as any stray file is
    assert main(["bundle", "verify", str(unpacked)]) == 1
    assert "venv/lib/m0/__init__.py: not in MANIFEST.json; not read" in capsys.readouterr().err


def test_installers_without_sums_or_unlisted_are_not_bundled(inputs, tmp_path, capsys):
    cache = tmp_path / "cache"
    made = sim_installers.make_installers(STACK, cache)
    out = tmp_path / "out" / "bundle.tar"
    out.parent.mkdir()
    (cache / "SHA256SUMS").unlink()
    assert main(make_args(inputs, out, installers=cache)) == 2
    err = capsys.readouterr().err
    assert f"npuenv: {cache} has no SHA256SUMS; every file taken from it is checked against it" in err
    assert list(out.parent.iterdir()) == []
    sim_installers.write_sha256sums(cache)
    sums = cache / "SHA256SUMS"
    sums.write_text("".join(line + "\n" for line in sums.read_text().splitlines() if made["nnal"].name not in line))
    assert main(make_args(inputs, out, installers=cache)) == 2
    err = capsys.readouterr().err
    assert f"nnal: {made['nnal'].name} is not listed in {sums}; a file nobody vouched for is not used" in err
    assert "Traceback" not in err and not out.exists()
    made["toolkit"].write_bytes(made["toolkit"].read_bytes() + b"x")
    sim_installers.write_sha256sums(cache)
    made["toolkit"].write_bytes(made["toolkit"].read_bytes() + b"y")
    assert main(make_args(inputs, out, installers=cache)) == 2
    assert f"toolkit: {made['toolkit'].name}: checksum mismatch: {sums} says sha256" in capsys.readouterr().err
    assert not out.exists() and leftovers(out.parent) == []


def test_an_archive_holding_only_an_empty_manifest_is_refused(tmp_path, capsys):
    fake = tmp_path / "fake.tar"
    empty = b"{}"
    sums = f"{checksums.sha256_bytes(empty)}  MANIFEST.json\n".encode()
    with tarfile.open(fake, "w") as tar:
        for name, data in (("top/MANIFEST.json", empty), ("top/SHA256SUMS", sums)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    assert main(["bundle", "verify", str(fake)]) == 1
    assert f"MANIFEST.json is not a bundle manifest of format {bundle.FORMAT} made by `npuenv bundle make`" in \
        capsys.readouterr().err
    # a manifest of the right kind that lists nothing is no better
    listless = json.dumps({"format": bundle.FORMAT, "created_by": "npuenv bundle make", "top": "top", "files": {}}).encode()
    with tarfile.open(fake, "w") as tar:
        for name, data in (("top/MANIFEST.json", listless),
                           ("top/SHA256SUMS", f"{checksums.sha256_bytes(listless)}  MANIFEST.json\n".encode())):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    assert main(["bundle", "verify", str(fake)]) == 1
    assert "MANIFEST.json lists no files; an empty bundle is not a bundle" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["/etc/hostname", "../outside.txt", "installers/../../outside.txt"])
def test_sums_naming_a_path_out_of_the_bundle_is_not_followed(unpacked, name, capsys):
    outside = unpacked.parent / "outside.txt"
    outside.write_text("not part of the bundle\n")
    target = Path(name) if name.startswith("/") else outside
    with (unpacked / "SHA256SUMS").open("a") as f:
        f.write(f"{checksums.sha256_file(target)}  {name}\n")
    assert main(["bundle", "verify", str(unpacked)]) == 2
    err = capsys.readouterr().err
    assert "SHA256SUMS:" in err and f"{name!r} is not a path inside the checked directory" in err
    assert "refusing to follow it" in err and "Traceback" not in err


@pytest.mark.parametrize("field,value,message", [
    ("files", {"../outside.txt": {"sha256": "0" * 64}}, "MANIFEST.json names '../outside.txt', a path that leaves"),
    ("installers", [{"file": "/etc/hostname", "sha256": "0" * 64}],
     "MANIFEST.json: installer '/etc/hostname' is not a file under installers/; not followed"),
    ("wheelhouse", {"path": "../elsewhere"}, "the wheelhouse is always wheelhouse/, not '../elsewhere'; not followed"),
])
def test_manifest_naming_a_path_out_of_the_bundle_is_not_followed(unpacked, field, value, message, capsys):
    manifest = json.loads((unpacked / "MANIFEST.json").read_text())
    if field == "files":
        manifest["files"].update(value)
    else:
        manifest[field] = value
    (unpacked / "MANIFEST.json").write_text(json.dumps(manifest))
    assert main(["bundle", "verify", str(unpacked)]) == 1
    assert message in capsys.readouterr().err


def test_a_link_in_an_unpacked_bundle_is_refused(unpacked, capsys):
    toolkit = next((unpacked / "installers").glob("*toolkit*"))
    data = toolkit.read_bytes()
    elsewhere = unpacked.parent / "elsewhere.run"
    elsewhere.write_bytes(data)
    toolkit.unlink()
    toolkit.symlink_to(elsewhere)   # same bytes, but outside the bundle
    assert main(["bundle", "verify", str(unpacked)]) == 1
    assert f"installers/{toolkit.name}: a symbolic link; a bundle holds plain files only" in capsys.readouterr().err


def test_an_extra_file_is_refused_even_with_sums_rewritten(unpacked, capsys):
    (unpacked / "wheelhouse" / "evil-1.0.tar.gz").write_bytes(b"sdist")
    rewrite_sums(unpacked)
    assert main(["bundle", "verify", str(unpacked)]) == 1
    assert "wheelhouse: evil-1.0.tar.gz: a source archive (sdist) beside the wheels" in capsys.readouterr().err


# --- interrupts -----------------------------------------------------------------------

DRIVER = textwrap.dedent("""\
    import os, signal, sys, tarfile
    sys.path.insert(0, {root!r})
    from npuenv.cli import main
    added = []
    real_add = tarfile.TarFile.add
    def add(self, *a, **kw):
        # mid-archive: the temporary archive is half written
        added.append(1)
        if len(added) == 5:
            os.kill(os.getpid(), signal.{sig})
        return real_add(self, *a, **kw)
    tarfile.TarFile.add = add
    sys.exit(main(sys.argv[1:]))
""")


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT"])
def test_an_interrupted_bundle_make_leaves_nothing_behind(inputs, tmp_path, sig):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    (out_dir / "bundle.tar").write_bytes(b"the previous bundle")
    proc = subprocess.run([sys.executable, "-c", DRIVER.format(root=str(ROOT), sig=sig),
                           *make_args(inputs, out_dir / "bundle.tar")], capture_output=True, text=True, cwd=tmp_path)
    number = getattr(signal, sig).value
    assert proc.returncode == 128 + number, proc.stderr
    assert f"npuenv: bundle make {out_dir / 'bundle.tar'}: interrupted by {sig}; its temporary files are removed " \
           f"and nothing was written" in proc.stderr
    assert "Traceback" not in proc.stderr and "bundle: writing" in proc.stderr
    assert sorted(p.name for p in out_dir.iterdir()) == ["bundle.tar"]
    assert (out_dir / "bundle.tar").read_bytes() == b"the previous bundle"


def test_a_bundle_carries_its_lock_and_bundles_what_a_given_lock_pins(inputs, archive, unpacked, tmp_path, capsys):
    from compat_matrix import lock

    # without --lock: the lock of the wheelhouse's row and the installers bundled
    manifest = json.loads((unpacked / "MANIFEST.json").read_text())
    carried = lock.load(unpacked / "npuenv.lock.json")
    assert manifest["lock"] == {lock.FORMAT_KEY: lock.FORMAT, "digest": carried.digest, "file": "npuenv.lock.json"}
    pinned = carried.entry(ARCH, "ubuntu22.04")["installers"]
    assert {k: (v["name"], v["sha256"]) for k, v in pinned.items()} == \
        {r["kind"]: (Path(r["file"]).name, r["sha256"]) for r in manifest["installers"]}
    assert carried.data["wheelhouses"] == {ARCH: lock.wheelhouse_digest(inputs["house"])}
    # with --lock: that lock's installers, that lock in the bundle
    given = tmp_path / "given.json"
    assert main(["lock", "--row", ROW, "--python", PYTHON, "--arch", ARCH, "--os", "debian12", "--installers",
                 str(inputs["installers"]), "--wheelhouse", str(inputs["house"]), "--out", str(given)]) == 0
    out = tmp_path / "locked.tar"
    args = ["bundle", "make", "--wheelhouse", str(inputs["house"]), "--installers", str(inputs["installers"]),
            "--no-controller", "--lock", str(given)]
    assert main([*args, "--out", str(out)]) == 0
    assert f"  lock {lock.load(given).digest} (npuenv.lock.json: `npuenv lock show`)" in capsys.readouterr().out
    top = tmp_path / "locked"
    top.mkdir()
    subprocess.run(["tar", "-xf", str(out), "-C", str(top)], check=True)
    [root] = top.iterdir()
    assert lock.load(root / "npuenv.lock.json").digest == lock.load(given).digest
    assert json.loads((root / "MANIFEST.json").read_text())["stack"]["os"] == "debian12"
    assert main(["bundle", "verify", str(out)]) == 0
    # a lock made from other files: nothing bundled
    other = tmp_path / "other-installers"
    shutil.copytree(inputs["installers"], other)
    toolkit = next(p for p in other.iterdir() if "toolkit" in p.name)
    toolkit.write_bytes(toolkit.read_bytes() + b"x")
    sim_installers.write_sha256sums(other)
    capsys.readouterr()
    assert main([*args[:5], str(other), *args[6:], "--out", str(tmp_path / "refused.tar")]) == 2
    err = capsys.readouterr().err
    assert f"the bundle's inputs are not those of the lock {lock.load(given).digest[:19]}; nothing was bundled" in err
    assert f"toolkit: the lock pins {toolkit.name}" in err and not (tmp_path / "refused.tar").exists()
    # the row is the lock's: --chip beside it is refused
    assert main([*args, "--chip", "a3", "--out", str(tmp_path / "chip.tar")]) == 2
    assert f"--lock {given} and --chip: give one or the other" in capsys.readouterr().err

"""The air-gapped bundle's checksums: installers checked against their
SHA256SUMS when the bundle is made, and a bundle (archive or unpacked folder)
verified file by file, with each problem named exactly."""
from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest

import compat_matrix as cm
from compat_matrix.errors import UserError
from tests.sim import installers as sim_installers
from torch_npu_pkg import bundle

STACK = cm.resolve(cm.load_matrix(), cm.Constraints(torch_npu="==2.13.0", python="3.11", arch="x86_64")).stack
TOP = "npuenv-bundle-test"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def archive(path: Path, files: dict[str, bytes], sums: dict[str, str] | None = None, extra=()) -> Path:
    """A bundle-shaped tar: files under TOP, a SHA256SUMS of them (or the given one), extra members."""
    files = dict(files)
    files.setdefault("MANIFEST.json", b"{}\n")
    listing = sums if sums is not None else {k: sha(v) for k, v in files.items()}
    files["SHA256SUMS"] = "".join(f"{h}  {k}\n" for k, h in sorted(listing.items())).encode()
    with tarfile.open(path, "w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(f"{TOP}/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for info in extra:
            tar.addfile(info, io.BytesIO(b"x" * info.size) if info.isfile() else None)
    return path


def test_a_whole_archive_has_no_problem(tmp_path):
    assert bundle.verify(archive(tmp_path / "b.tar", {"a.txt": b"a", "wheelhouse/w.whl": b"w"})) == []


def test_a_changed_file_is_a_checksum_mismatch(tmp_path):
    sums = {"a.txt": sha(b"original"), "MANIFEST.json": sha(b"{}\n")}
    problems = bundle.verify(archive(tmp_path / "b.tar", {"a.txt": b"changed"}, sums))
    assert problems == [f"a.txt: checksum mismatch: SHA256SUMS says sha256 {sha(b'original')}, the file has "
                        f"{sha(b'changed')}"]


def test_missing_and_unlisted_files(tmp_path):
    sums = {"a.txt": sha(b"a"), "gone.txt": sha(b"g"), "MANIFEST.json": sha(b"{}\n")}
    problems = bundle.verify(archive(tmp_path / "b.tar", {"a.txt": b"a", "new.txt": b"n"}, sums))
    assert problems == ["gone.txt: listed in SHA256SUMS but missing", "new.txt: not listed in SHA256SUMS"]


def test_unsafe_members_links_and_several_tops(tmp_path):
    link = tarfile.TarInfo(f"{TOP}/link")
    link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
    up = tarfile.TarInfo("../evil")
    up.size = 1
    other = tarfile.TarInfo("other/x")
    other.size = 1
    folder = tarfile.TarInfo(f"{TOP}/dir")
    folder.type = tarfile.DIRTYPE
    problems = bundle.verify(archive(tmp_path / "b.tar", {"a.txt": b"a"}, extra=(link, up, other, folder)))
    assert problems == [f"{TOP}/link: not a plain file (links and devices do not belong in a bundle)",
                        "../evil: an unsafe path in the archive",
                        f"expected one top folder, found {TOP}, other",
                        "x: not listed in SHA256SUMS"]


def test_manifest_and_sums_must_be_there(tmp_path):
    path = tmp_path / "b.tar"
    with tarfile.open(path, "w") as tar:
        info = tarfile.TarInfo(f"{TOP}/a.txt")
        info.size = 1
        tar.addfile(info, io.BytesIO(b"a"))
    assert bundle.verify(path) == ["MANIFEST.json is missing; this is not an npuenv bundle", "SHA256SUMS is missing"]
    with tarfile.open(path, "w"):
        pass
    assert bundle.verify(path)[0] == "expected one top folder, found nothing"


def test_not_an_archive_is_a_usage_error(tmp_path):
    (tmp_path / "x.tar").write_text("not a tar")
    with pytest.raises(UserError, match=r"x.tar is not a tar archive"):
        bundle.verify(tmp_path / "x.tar")
    with pytest.raises(UserError, match=r"nope.tar does not exist"):
        bundle.verify(tmp_path / "nope.tar")


# ------------------------------------------------------------------ making one

@pytest.fixture
def inputs(tmp_path, monkeypatch):
    """The row's (simulated) installers with their SHA256SUMS, and a one-file wheelhouse that passes."""
    inst = tmp_path / "installers"
    made = sim_installers.make_installers(STACK, inst)
    house = tmp_path / "house"
    house.mkdir()
    (house / "requirements.txt").write_text("torch-npu==2.13.0\n")
    monkeypatch.setattr(bundle.wheelhouse, "load_manifest", lambda d: {
        "stack": {"torch_npu": "2.13.0", "python": "3.11", "arch": "x86_64"}, "wheels": [], "notes": []})
    monkeypatch.setattr(bundle.wheelhouse, "verify", lambda d: [])
    return inst, house, made


def test_a_made_bundle_verifies_and_records_each_installers_checksum(tmp_path, inputs):
    inst, house, made = inputs
    out = tmp_path / "out" / "b.tar"
    manifest = bundle.make(out, house, inst, STACK, playbooks=tmp_path / "no-playbooks")
    assert bundle.verify(out) == []
    records = {r["kind"]: r for r in manifest["installers"]}
    for kind, path in made.items():
        assert records[kind]["sha256"] == sha(path.read_bytes())
        assert records[kind]["checked_against"] == "SHA256SUMS"
    with tarfile.open(out) as tar:
        tar.extractall(tmp_path / "unpacked", filter="tar")
    root = tmp_path / "unpacked" / manifest["top"]
    assert bundle.verify_dir(root) == []
    toolkit = root / "installers" / made["toolkit"].name
    toolkit.write_bytes(toolkit.read_bytes() + b"x")
    assert bundle.verify_dir(root) == [
        f"installers/{toolkit.name}: checksum mismatch: SHA256SUMS says sha256 {sha(made['toolkit'].read_bytes())}, "
        f"the file has {sha(toolkit.read_bytes())}"]


def test_an_installer_that_does_not_match_its_sha256sums_is_refused(tmp_path, inputs):
    inst, house, made = inputs
    toolkit = made["toolkit"]
    listed = sha(toolkit.read_bytes())
    toolkit.write_bytes(toolkit.read_bytes()[:-10])
    with pytest.raises(UserError) as info:
        bundle.make(tmp_path / "b.tar", house, inst, STACK, playbooks=tmp_path / "none")
    assert str(info.value) == (f"{toolkit}: checksum mismatch: {inst / 'SHA256SUMS'} says sha256 {listed}, the file "
                               f"has {sha(toolkit.read_bytes())}; download it again")
    assert not (tmp_path / "b.tar").exists() and not list(tmp_path.glob(".b.tar.tmp-*"))


def test_an_installer_not_in_sha256sums_is_recorded_as_unchecked(tmp_path, inputs):
    inst, house, made = inputs
    lines = (inst / "SHA256SUMS").read_text().splitlines()
    (inst / "SHA256SUMS").write_text("".join(l + "\n" for l in lines if made["nnal"].name not in l))
    manifest = bundle.make(tmp_path / "b.tar", house, inst, STACK, playbooks=tmp_path / "none")
    records = {r["kind"]: r for r in manifest["installers"]}
    assert records["nnal"]["checked_against"] is None and records["toolkit"]["checked_against"] == "SHA256SUMS"


def test_unpacked_folder_problems(tmp_path, inputs):
    inst, house, made = inputs
    out = tmp_path / "b.tar"
    manifest = bundle.make(out, house, inst, STACK, playbooks=tmp_path / "none")
    with tarfile.open(out) as tar:
        tar.extractall(tmp_path / "u", filter="tar")
    root = tmp_path / "u" / manifest["top"]
    (root / "stray.txt").write_text("s")
    (root / "wheelhouse" / "requirements.txt").unlink()
    assert bundle.verify_dir(root) == ["wheelhouse/requirements.txt: listed in SHA256SUMS but missing",
                                       "stray.txt: not listed in SHA256SUMS"]
    data = json.loads((root / "MANIFEST.json").read_text())
    data["files"]["USAGE.txt"]["sha256"] = "0" * 64
    (root / "MANIFEST.json").write_text(json.dumps(data))
    problems = bundle.verify_dir(root)
    assert "USAGE.txt: MANIFEST.json and SHA256SUMS disagree" in problems
    (root / "MANIFEST.json").write_text("{not json")
    assert bundle.verify_dir(root)[0].startswith(f"{root / 'MANIFEST.json'}: not valid JSON")
    (root / "MANIFEST.json").unlink()
    assert bundle.verify_dir(root) == [f"{root}: MANIFEST.json is missing; this is not an npuenv bundle"]


def test_archive_members_are_all_checked_whatever_comes_first(tmp_path):
    folder = tarfile.TarInfo(f"{TOP}/installers")
    folder.type = tarfile.DIRTYPE
    absolute = tarfile.TarInfo("/etc/cron.d/x")
    absolute.size = 1
    path = tmp_path / "b.tar"
    with tarfile.open(path, "w") as tar:
        for info in (folder, absolute):
            tar.addfile(info, io.BytesIO(b"x") if info.isfile() else None)
        for name, data in (("MANIFEST.json", b"{}\n"), ("late.txt", b"l")):
            info = tarfile.TarInfo(f"{TOP}/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        sums = f"{sha(b'{}' + bytes([10]))}  MANIFEST.json\n".encode()
        info = tarfile.TarInfo(f"{TOP}/SHA256SUMS")
        info.size = len(sums)
        tar.addfile(info, io.BytesIO(sums))
    assert bundle.verify(path) == ["/etc/cron.d/x: an unsafe path in the archive", "late.txt: not listed in SHA256SUMS"]


def test_bytes_that_are_not_utf8_in_the_lists_are_reported_not_fatal(tmp_path):
    path = tmp_path / "b.tar"
    with tarfile.open(path, "w") as tar:
        for name, data in (("MANIFEST.json", b"{\xff}\n"), ("SHA256SUMS", b"\xff\xfe  a.txt\n")):
            info = tarfile.TarInfo(f"{TOP}/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    assert bundle.verify(path) == ["a.txt: listed in SHA256SUMS but missing", "MANIFEST.json: not listed in SHA256SUMS"]


def rewrite_manifest(root: Path, data: dict) -> None:
    """Change an unpacked bundle's MANIFEST.json and its line in SHA256SUMS."""
    text = json.dumps(data).encode()
    (root / "MANIFEST.json").write_bytes(text)
    lines = [l for l in (root / "SHA256SUMS").read_text().splitlines() if not l.endswith("  MANIFEST.json")]
    (root / "SHA256SUMS").write_text("".join(l + "\n" for l in lines + [f"{sha(text)}  MANIFEST.json"]))


def made_folder(tmp_path, inputs) -> Path:
    inst, house, _ = inputs
    manifest = bundle.make(tmp_path / "b.tar", house, inst, STACK, playbooks=tmp_path / "none")
    with tarfile.open(tmp_path / "b.tar") as tar:
        tar.extractall(tmp_path / "u", filter="tar")
    return tmp_path / "u" / manifest["top"]


def test_a_folder_is_verified_as_a_folder(tmp_path, inputs):
    root = made_folder(tmp_path, inputs)
    (root / "stray.txt").write_text("s")
    assert bundle.verify(root) == bundle.verify_dir(root) == ["stray.txt: not listed in SHA256SUMS"]


def test_bad_or_empty_sha256sums_in_a_folder(tmp_path, inputs):
    root = made_folder(tmp_path, inputs)
    (root / "SHA256SUMS").write_text("garbage\n")
    assert bundle.verify_dir(root) == [f"{root / 'SHA256SUMS'}:1: not a sha256sum line: 'garbage'"]
    (root / "SHA256SUMS").write_text("")
    assert bundle.verify_dir(root) == [f"{root / 'SHA256SUMS'} is missing or empty"]


def test_every_installer_of_the_manifest_must_be_in_sha256sums(tmp_path, inputs):
    root = made_folder(tmp_path, inputs)
    name = inputs[2]["nnal"].name
    lines = (root / "SHA256SUMS").read_text().splitlines()
    (root / "SHA256SUMS").write_text("".join(l + "\n" for l in lines if name not in l))
    (root / "installers" / name).unlink()
    data = json.loads((root / "MANIFEST.json").read_text())
    del data["files"][f"installers/{name}"]
    data["files"].pop("MANIFEST.json", None)
    rewrite_manifest(root, data)
    assert bundle.verify_dir(root) == [f"installers/{name}: an installer of the manifest is not in SHA256SUMS"]


def test_the_wheelhouse_named_by_the_manifest_is_verified(tmp_path, inputs, monkeypatch):
    root = made_folder(tmp_path, inputs)
    checked = []
    monkeypatch.setattr(bundle.wheelhouse, "verify", lambda d: checked.append(d) or ["wheel x: checksum mismatch"])
    assert bundle.verify_dir(root) == ["wheelhouse: wheel x: checksum mismatch"]
    assert checked == [root / "wheelhouse"]

    def broken(d):
        raise UserError(f"{d} is not a wheelhouse: manifest.json is missing")
    monkeypatch.setattr(bundle.wheelhouse, "verify", broken)
    assert bundle.verify_dir(root) == [f"wheelhouse: {root / 'wheelhouse'} is not a wheelhouse: manifest.json is missing"]
    # a manifest naming no lists at all: the defaults apply
    data = json.loads((root / "MANIFEST.json").read_text())
    for key in ("files", "installers", "wheelhouse"):
        del data[key]
    rewrite_manifest(root, data)
    monkeypatch.setattr(bundle.wheelhouse, "verify", lambda d: checked.append(d) or [])
    problems = bundle.verify_dir(root)
    assert problems == [] and checked[-1] == root / "wheelhouse"
    data["wheelhouse"] = {"path": "house"}
    rewrite_manifest(root, data)
    assert bundle.verify_dir(root) == ["wheelhouse/ is missing"]

"""The air-gapped bundle's checksums: installers checked against their
SHA256SUMS when the bundle is made, and a bundle (archive or unpacked folder)
verified file by file, with each problem named exactly.

(tests/unit/test_bundle.py drives `npuenv bundle` end to end, controller packages
included; here the library is called directly, on synthetic archives and on
bundles made without the controller's packages.)"""
from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from pathlib import Path

import pytest

import compat_matrix as cm
from compat_matrix import outputs
from compat_matrix.errors import UserError
from npuenv.cli import main
from tests.fixtures.archives import add_sparse_member
from tests.fixtures.wheelhouse.synth import make_stack_wheels
from tests.sim import installers as sim_installers
from torch_npu_pkg import bundle

ROW, PYTHON, ARCH = "2.13.0", "3.11", "x86_64"
STACK = cm.resolve(cm.load_matrix(), cm.Constraints(torch_npu="==" + ROW, python=PYTHON, arch=ARCH)).stack
TOP = "npuenv-bundle-test"
NOT_FOLLOWED = "an unsafe path in the archive (absolute or with '..'); not followed"
# What every bundle holds besides its MANIFEST.json and SHA256SUMS (a wheel among them).
WHOLE = {name: f"{name}\n".encode() for name in (
    "USAGE.txt", "wheelhouse/manifest.json", "wheelhouse/SHA256SUMS", "wheelhouse/requirements.txt",
    "wheelhouse/torch_npu-2.13.0-cp311-cp311-manylinux_2_17_x86_64.whl", "source/playbooks/site.yml",
    "source/compat_matrix/data/matrix.yaml", "source/validation/node/vendor_tools/npu_smi.py")}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sums_text(listing: dict[str, str]) -> bytes:
    return "".join(f"{h}  {k}\n" for k, h in sorted(listing.items())).encode()


def manifest_bytes(listing: dict[str, str], top: str = TOP, sizes: dict[str, int] | None = None) -> bytes:
    """A bundle manifest, as `bundle make` writes one without installers or controller, for the files
    listed (sha256 and size; a size not given is 1)."""
    return json.dumps({"format": bundle.FORMAT, "created_by": "npuenv bundle make", "top": top, "installers": [],
                       "wheelhouse": {"path": "wheelhouse"}, "controller": None,
                       "files": {k: {"sha256": h, "size": (sizes or {}).get(k, 1)} for k, h in listing.items()}}).encode()


def member(name: str, data: bytes | None = None, kind: bytes = tarfile.REGTYPE, link: str = "") -> tuple:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, link
    info.size = len(data) if data is not None else 0
    return info, data


def write_tar(path: Path, members, mode: str = "w") -> Path:
    with tarfile.open(path, mode) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def archive(path: Path, files: dict[str, bytes], listed: dict[str, str | None] | None = None, *, before=(),
            after=(), top: str = TOP, manifest_top: str = TOP, sizes: dict[str, int] | None = None) -> Path:
    """A bundle-shaped tar as `bundle make` writes it: MANIFEST.json first, then SHA256SUMS, then WHOLE
    and ``files`` under ``top``. The lists name them with their sha256 and size (``listed`` changes
    SHA256SUMS' entries, and the manifest with it: None drops one; ``sizes`` changes the manifest's
    sizes); ``before``/``after`` are members around them."""
    files = {**WHOLE, **files}
    listing = {k: sha(v) for k, v in files.items()}
    listing.update(listed or {})
    listing = {k: h for k, h in listing.items() if h is not None}
    manifest = manifest_bytes(listing, manifest_top, {**{k: len(v) for k, v in files.items()}, **(sizes or {})})
    listing["MANIFEST.json"] = sha(manifest)
    lists = {"MANIFEST.json": manifest, "SHA256SUMS": sums_text(listing)}
    return write_tar(path, [*before, *(member(f"{top}/{k}", v) for k, v in {**lists, **files}.items()), *after])


def test_a_whole_archive_has_no_problem(tmp_path):
    assert bundle.verify(archive(tmp_path / "b.tar", {"a.txt": b"a"})) == []
    # the top folder is the one the manifest names
    assert bundle.verify(archive(tmp_path / "b.tar", {"a.txt": b"a"}, top="renamed")) == [
        f"MANIFEST.json says the top folder is '{TOP}', the archive's is 'renamed'"]


def test_a_changed_file_is_a_checksum_mismatch(tmp_path):
    problems = bundle.verify(archive(tmp_path / "b.tar", {"a.txt": b"changed"}, {"a.txt": sha(b"original")}))
    assert problems == [f"a.txt: checksum mismatch: SHA256SUMS says sha256 {sha(b'original')}, the file has "
                        f"{sha(b'changed')}"]


def test_missing_and_unlisted_files(tmp_path):
    problems = bundle.verify(archive(tmp_path / "b.tar", {"a.txt": b"a", "new.txt": b"n"},
                                     {"gone.txt": sha(b"g"), "new.txt": None}))
    assert problems == ["new.txt: not in MANIFEST.json; not read", "gone.txt: listed in SHA256SUMS but missing"]


def test_unsafe_members_links_and_other_tops(tmp_path):
    extra = (member(f"{TOP}/link", kind=tarfile.SYMTYPE, link="/etc/passwd"),
             member(f"{TOP}/hard", kind=tarfile.LNKTYPE, link=f"{TOP}/a.txt"),
             member("../evil", b"x"), member("other/x", b"x"), member(TOP, b"x"),
             member(f"{TOP}/dir", kind=tarfile.DIRTYPE))
    problems = bundle.verify(archive(tmp_path / "b.tar", {"a.txt": b"a"}, after=extra))
    assert problems == [f"{TOP}/link: not a plain file (links and devices do not belong in a bundle)",
                        f"{TOP}/hard: not a plain file (links and devices do not belong in a bundle)",
                        f"../evil: {NOT_FOLLOWED}",
                        f"other/x: outside the bundle's top folder {TOP}/; not read",
                        f"{TOP}: outside the bundle's top folder {TOP}/; not read"]


def test_a_manifest_naming_files_without_checksums_does_not_make_a_bundle(tmp_path):
    # a bundle holding nothing but a manifest that names every required member without its checksum
    manifest = json.loads(manifest_bytes({}))
    manifest["files"] = {name: {} for name in WHOLE}
    data = json.dumps(manifest).encode()
    path = write_tar(tmp_path / "b.tar", [member(f"{TOP}/MANIFEST.json", data),
                                          member(f"{TOP}/SHA256SUMS", sums_text({"MANIFEST.json": sha(data)}))])
    problems = bundle.verify(path)
    assert sorted({p.split(": ")[0] for p in problems}) == sorted(WHOLE)


def test_a_member_twice_is_reported_and_not_read_again(tmp_path):
    problems = bundle.verify(archive(tmp_path / "b.tar", {"a.txt": b"a"}, after=[
        member(f"{TOP}/a.txt", b"b"), member(f"{TOP}/SHA256SUMS", b"x"), member(f"{TOP}/MANIFEST.json", b"{}")]))
    assert problems == [f"{TOP}/a.txt: in the archive twice; not read again",
                        f"{TOP}/SHA256SUMS: in the archive twice; not read again",
                        f"{TOP}/MANIFEST.json: in the archive twice; not read again"]


def test_manifest_and_sums_must_be_there(tmp_path):
    path = tmp_path / "b.tar"
    write_tar(path, [member(f"{TOP}/dir", kind=tarfile.DIRTYPE)])
    assert bundle.verify(path) == ["MANIFEST.json is missing; this is not an npuenv bundle"]
    manifest = manifest_bytes({"a.txt": sha(b"a")})
    write_tar(path, [member(f"{TOP}/MANIFEST.json", manifest), member(f"{TOP}/a.txt", b"a")])
    assert bundle.verify(path) == ["SHA256SUMS is missing"]
    write_tar(path, [])
    assert bundle.verify(path) == ["MANIFEST.json is missing; this is not an npuenv bundle"]


def test_not_an_archive_is_a_usage_error(tmp_path):
    (tmp_path / "x.tar").write_text("not a tar")
    with pytest.raises(UserError, match=r"x.tar is not a tar archive"):
        bundle.verify(tmp_path / "x.tar")
    with pytest.raises(UserError, match=r"nope.tar does not exist"):
        bundle.verify(tmp_path / "nope.tar")


def test_nothing_with_data_comes_before_the_manifest(tmp_path):
    """Before MANIFEST.json nothing can be judged by its size, so the first member with data that is
    not the manifest ends the reading; folders, links and unsafe names before it are reported."""
    first = (member(f"{TOP}/installers", kind=tarfile.DIRTYPE), member("/etc/cron.d/x"),
             member(f"{TOP}/l", kind=tarfile.SYMTYPE, link="/"))
    path = archive(tmp_path / "b.tar", {}, before=first)
    assert bundle.verify(path) == [f"/etc/cron.d/x: {NOT_FOLLOWED}",
                                   f"{TOP}/l: not a plain file (links and devices do not belong in a bundle)"]
    path = archive(tmp_path / "b.tar", {}, before=[member(f"{TOP}/big.run", b"x" * 10)])
    assert bundle.verify(path) == [f"{TOP}/big.run: comes before MANIFEST.json, so it cannot be checked before it "
                                   f"is read (`npuenv bundle make` writes MANIFEST.json first); not read further"]
    path = archive(tmp_path / "b.tar", {}, before=[member(f"{TOP}/d{i}", kind=tarfile.DIRTYPE) for i in range(200)])
    assert bundle.verify(path) == [f"no MANIFEST.json among the archive's first {bundle.MAX_PROBLEMS} members; this "
                                   f"is not an npuenv bundle (`npuenv bundle make` writes MANIFEST.json first)"]


def write_sparse_tar(path: Path, members, name: str, size: int) -> Path:
    """A gzip-compressed tar of ``members``, then ``name``: a sparse file of ``size`` bytes that is
    one hole (one 512-byte header in the archive)."""
    with tarfile.open(path, "w:gz", format=tarfile.GNU_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
        add_sparse_member(tar, name, size)
    return path


@pytest.mark.parametrize("listed_size", [None, 1])
def test_a_sparse_member_of_20_gb_is_refused_unread_whatever_its_size_on_disk(tmp_path, listed_size, monkeypatch):
    """A tiny compressed archive whose member claims 20 GB: not in the manifest, or in it with another
    size, it is refused by its size alone and nothing of it is hashed."""
    files = {**WHOLE, "huge.bin": b"x"}
    listing = {k: sha(v) for k, v in files.items()}
    if listed_size is None:
        del listing["huge.bin"]
    manifest = manifest_bytes(listing, sizes={k: len(v) for k, v in files.items()})
    listing["MANIFEST.json"] = sha(manifest)
    lists = [member(f"{TOP}/MANIFEST.json", manifest), member(f"{TOP}/SHA256SUMS", sums_text(listing))]
    path = write_sparse_tar(tmp_path / "b.tar.gz", lists + [member(f"{TOP}/{k}", v) for k, v in WHOLE.items()],
                            f"{TOP}/huge.bin", 20 << 30)
    with tarfile.open(path) as tar:   # what tar and Python see: a member of 20 GB
        assert tar.getmember(f"{TOP}/huge.bin").size == 20 << 30
    assert path.stat().st_size < 4096
    hashed = []
    real = bundle.checksums.sha256_fileobj
    monkeypatch.setattr(bundle.checksums, "sha256_fileobj", lambda f: hashed.append(f) or real(f))
    problems = bundle.verify(path)
    said = "not in MANIFEST.json; not read" if listed_size is None else "21474836480 bytes, but MANIFEST.json says 1; " \
                                                                      "not read"
    assert problems[0] == f"huge.bin: {said}"
    assert len(hashed) == len(WHOLE), "only the files the manifest lists with their size are read"


def test_reading_stops_where_the_archive_holds_more_than_the_manifest_lists(tmp_path, monkeypatch):
    """Each member skipped unread still costs decompressing it: past the manifest's sizes (and room
    for a SHA256SUMS) the archive is not read further."""
    junk = [member(f"{TOP}/junk{i}.bin", b"\0" * (1 << 20)) for i in range(3)]
    path = archive(tmp_path / "b.tar", {}, after=junk)
    assert bundle.verify(path) == [f"junk{i}.bin: not in MANIFEST.json; not read" for i in range(3)]
    monkeypatch.setattr(bundle.outputs, "MAX_INPUT_BYTES", (1 << 20) + 4096)
    assert bundle.verify(path) == ["junk0.bin: not in MANIFEST.json; not read",
                                   "junk1.bin: not in MANIFEST.json; not read",
                                   f"the archive holds more than its MANIFEST.json lists; stopped reading at "
                                   f"{TOP}/junk1.bin"]


def test_reading_stops_after_max_problems(tmp_path):
    junk = [member(f"{TOP}/junk{i}", b"") for i in range(bundle.MAX_PROBLEMS + 50)]
    problems = bundle.verify(archive(tmp_path / "b.tar", {}, after=junk))
    assert problems == [f"junk{i}: not in MANIFEST.json; not read" for i in range(bundle.MAX_PROBLEMS)] + [
        f"stopped after {bundle.MAX_PROBLEMS} problems: this is not the bundle its MANIFEST.json describes"]


def test_bytes_that_are_not_utf8_in_the_lists(tmp_path):
    # a manifest that is not UTF-8 is a problem of the bundle
    manifest = b"{\xff}\n"
    path = write_tar(tmp_path / "b.tar", [member(f"{TOP}/MANIFEST.json", manifest),
                                          member(f"{TOP}/SHA256SUMS", sums_text({"MANIFEST.json": sha(manifest)}))])
    assert bundle.verify(path) == ["MANIFEST.json: not valid JSON text ('utf-8' codec can't decode byte 0xff in "
                                   "position 1: invalid start byte)"]
    # a SHA256SUMS that is not UTF-8 cannot be read at all: bad input, as for every SHA256SUMS
    data = manifest_bytes({"a.txt": sha(b"a")})
    write_tar(path, [member(f"{TOP}/MANIFEST.json", data), member(f"{TOP}/SHA256SUMS", b"\xff\xfe  a.txt\n")])
    with pytest.raises(UserError) as info:
        bundle.verify(path)
    assert str(info.value) == (f"{path}: SHA256SUMS is not UTF-8 text (byte 0); write it with "
                               f"`sha256sum FILES > SHA256SUMS`")


# ------------------------------------------------------------------ making one

@pytest.fixture(scope="module")
def house(tmp_path_factory):
    """A real wheelhouse of synthetic wheels for the stack (offline)."""
    root = tmp_path_factory.mktemp("bundle-verify-house")
    make_stack_wheels(root / "torch-source", root / "deps", STACK)
    house = root / "wheelhouse"
    assert main(["wheelhouse", "build", "--row", ROW, "--python", PYTHON, "--arch", ARCH, "--out", str(house),
                 "--torch-source", str(root / "torch-source"), "--source", f"dir:{root / 'deps'}", "--offline"]) == 0
    return house


@pytest.fixture
def inputs(tmp_path, house):
    """The row's (simulated) installers with their SHA256SUMS, and the wheelhouse."""
    inst = tmp_path / "installers"
    made = sim_installers.make_installers(STACK, inst)
    return inst, house, made


def make(out: Path, inputs) -> dict:
    inst, house, _ = inputs
    return bundle.make(out, house, inst, STACK, controller=bundle.ControllerOptions(include=False))


def test_a_made_bundle_verifies_and_records_each_installers_checksum(tmp_path, inputs):
    made = inputs[2]
    out = tmp_path / "out" / "b.tar"
    manifest = make(out, inputs)
    assert bundle.verify(out) == []
    assert sorted(p.name for p in out.parent.iterdir()) == ["b.tar"]
    records = {r["kind"]: r for r in manifest["installers"]}
    assert sorted(records) == sorted(made)
    for kind, path in made.items():
        assert records[kind] == {"kind": kind, "file": f"installers/{path.name}", "sha256": sha(path.read_bytes()),
                                 "size": path.stat().st_size, "checked_against": "SHA256SUMS"}
    with tarfile.open(out) as tar:
        tar.extractall(tmp_path / "unpacked", filter="tar")
    root = tmp_path / "unpacked" / manifest["top"]
    assert bundle.verify_dir(root) == []
    toolkit = root / "installers" / made["toolkit"].name
    data = toolkit.read_bytes()
    toolkit.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))   # same size, other bytes
    assert bundle.verify_dir(root) == [
        f"installers/{toolkit.name}: checksum mismatch: SHA256SUMS says sha256 {sha(made['toolkit'].read_bytes())}, "
        f"the file has {sha(toolkit.read_bytes())}"]
    # a file of another size than the manifest's is refused unread; a folder of them stops it
    os.truncate(toolkit, 20 << 30)
    assert bundle.verify_dir(root) == [
        f"installers/{toolkit.name}: {20 << 30} bytes, but MANIFEST.json says {len(data)}; not read"]


def test_an_installer_that_does_not_match_its_sha256sums_is_refused(tmp_path, inputs):
    inst, _, made = inputs
    toolkit = made["toolkit"]
    listed = sha(toolkit.read_bytes())
    toolkit.write_bytes(toolkit.read_bytes()[:-10])
    out = tmp_path / "out" / "b.tar"
    with pytest.raises(UserError) as info:
        make(out, inputs)
    assert str(info.value) == (
        f"the installers in {inst} are not vouched for by its SHA256SUMS; nothing was bundled:\n"
        f"  toolkit: {toolkit.name}: checksum mismatch: {inst / 'SHA256SUMS'} says sha256 {listed}, the file has "
        f"{sha(toolkit.read_bytes())}; the file is corrupt or was replaced\n"
        f"check each file against the vendor's published checksum, then list it in SHA256SUMS")
    assert not out.parent.exists()


def test_an_installer_not_in_sha256sums_is_refused(tmp_path, inputs):
    inst, _, made = inputs
    lines = (inst / "SHA256SUMS").read_text().splitlines()
    (inst / "SHA256SUMS").write_text("".join(l + "\n" for l in lines if made["nnal"].name not in l))
    out = tmp_path / "out" / "b.tar"
    with pytest.raises(UserError) as info:
        make(out, inputs)
    assert str(info.value) == (
        f"the installers in {inst} are not vouched for by its SHA256SUMS; nothing was bundled:\n"
        f"  nnal: {made['nnal'].name} is not listed in {inst / 'SHA256SUMS'}; a file nobody vouched for is not used "
        f"(add its sha256 line once you have checked it)\n"
        f"check each file against the vendor's published checksum, then list it in SHA256SUMS")
    assert not out.parent.exists()


def made_folder(tmp_path, inputs) -> Path:
    manifest = make(tmp_path / "b.tar", inputs)
    with tarfile.open(tmp_path / "b.tar") as tar:
        tar.extractall(tmp_path / "u", filter="tar")
    return tmp_path / "u" / manifest["top"]


def rewrite_manifest(root: Path, data: dict) -> None:
    """Change an unpacked bundle's MANIFEST.json and its line in SHA256SUMS."""
    text = json.dumps(data).encode()
    (root / "MANIFEST.json").write_bytes(text)
    lines = [l for l in (root / "SHA256SUMS").read_text().splitlines() if not l.endswith("  MANIFEST.json")]
    (root / "SHA256SUMS").write_text("".join(l + "\n" for l in lines + [f"{sha(text)}  MANIFEST.json"]))


def test_unpacked_folder_problems(tmp_path, inputs):
    root = made_folder(tmp_path, inputs)
    (root / "stray.txt").write_text("s")
    requirements = (root / "wheelhouse" / "requirements.txt").read_bytes()
    (root / "wheelhouse" / "requirements.txt").unlink()
    # the bundle's lists; the wheelhouse's own check only once the bundle vouches for all its files
    assert bundle.verify_dir(root) == ["stray.txt: not in MANIFEST.json; not read",
                                       "wheelhouse/requirements.txt: listed in SHA256SUMS but missing"]
    (root / "stray.txt").unlink()
    (root / "wheelhouse" / "requirements.txt").write_bytes(requirements)
    assert bundle.verify_dir(root) == []
    listed = sha((root / "MANIFEST.json").read_bytes())

    def manifest_changed_to(text: str) -> list[str]:
        (root / "MANIFEST.json").write_text(text)
        return [f"MANIFEST.json: checksum mismatch: SHA256SUMS says sha256 {listed}, the file has {sha(text.encode())}"]

    data = json.loads((root / "MANIFEST.json").read_text())
    data["files"]["USAGE.txt"]["sha256"] = "0" * 64
    mismatch = manifest_changed_to(json.dumps(data))
    assert bundle.verify_dir(root) == mismatch + ["USAGE.txt: MANIFEST.json and SHA256SUMS disagree"]
    # a manifest that cannot be read gives no sizes: nothing else is read
    manifest_changed_to("{not json")
    assert bundle.verify_dir(root) == [
        "MANIFEST.json: not valid JSON text (Expecting property name enclosed in double quotes: line 1 column 2 "
        "(char 1))"]
    (root / "MANIFEST.json").unlink()
    assert bundle.verify_dir(root) == ["MANIFEST.json is missing; this is not an npuenv bundle"]


def test_a_folder_is_verified_as_a_folder(tmp_path, inputs):
    root = made_folder(tmp_path, inputs)
    (root / "stray.txt").write_text("s")
    assert bundle.verify(root) == bundle.verify_dir(root) == ["stray.txt: not in MANIFEST.json; not read"]


def test_a_special_file_in_a_folder_is_reported(tmp_path, inputs):
    root = made_folder(tmp_path, inputs)
    os.mkfifo(root / "installers" / "pipe")
    problems = bundle.verify_dir(root)
    assert len(problems) == 1 and problems[0].startswith("installers/pipe: ")


@pytest.mark.parametrize("name", ["MANIFEST.json", "SHA256SUMS", "USAGE.txt"])
def test_a_list_or_file_that_would_block_or_never_end_is_refused_unread(tmp_path, inputs, name):
    """A FIFO blocks whoever opens it, /dev/zero never ends: in an unpacked bundle each is refused
    without being opened for a blocking read."""
    root = made_folder(tmp_path, inputs)
    (root / name).unlink()
    os.mkfifo(root / name)
    problems = bundle.verify_dir(root)
    if name == "MANIFEST.json":
        assert problems == [f"{root / name}: is not a regular file (a pipe, socket or device); the bundle's "
                            f"MANIFEST.json must be a plain file"]
    else:
        assert problems[0] == f"{name}: not a plain file (a pipe, socket or device); a bundle holds plain files only"
    (root / name).unlink()
    (root / name).symlink_to("/dev/zero")
    problems = bundle.verify_dir(root)
    if name == "MANIFEST.json":
        assert problems == ["MANIFEST.json is missing; this is not an npuenv bundle"]
    else:
        assert problems[0] == f"{name}: a symbolic link; a bundle holds plain files only (not followed)"


def test_a_file_is_hashed_no_further_than_its_listed_size_and_a_fifo_not_at_all(tmp_path):
    """What verify_dir reads of a file it admitted by its size: a file that grew since is read one
    byte past that size (its checksum differs anyway), one swapped for a FIFO is not opened to wait."""
    grown = tmp_path / "grown"
    grown.write_bytes(b"0123456789")
    assert bundle._hash_at_most(grown, 4) == sha(b"01234")
    assert bundle._hash_at_most(grown, 10) == sha(b"0123456789")
    os.mkfifo(tmp_path / "fifo")
    assert bundle._hash_at_most(tmp_path / "fifo", 0) is None


def test_an_oversized_manifest_is_refused_unread(tmp_path, inputs):
    root = made_folder(tmp_path, inputs)
    size = outputs.MAX_INPUT_BYTES + 1
    os.truncate(root / "MANIFEST.json", size)   # sparse: nothing to read but zeros
    assert bundle.verify_dir(root) == [f"{root / 'MANIFEST.json'}: is {size} bytes, more than the {size - 1} bytes "
                                       f"the bundle's MANIFEST.json may have; is it the right file?"]


def test_bad_or_empty_sha256sums_in_a_folder(tmp_path, inputs):
    root = made_folder(tmp_path, inputs)
    (root / "SHA256SUMS").write_text("garbage\n")
    with pytest.raises(UserError) as info:
        bundle.verify_dir(root)
    assert str(info.value) == (f"{root}: SHA256SUMS:1: not a sha256sum line ('garbage'); each line is "
                               f"'SHA256  NAME' as `sha256sum` writes it")
    # an empty one vouches for nothing: every file is unlisted, and the manifest disagrees with it
    (root / "SHA256SUMS").write_text("")
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    manifest = json.loads((root / "MANIFEST.json").read_text())
    installers = [r["file"] for r in manifest["installers"]]   # in the manifest's order
    assert len(installers) == len(inputs[2])
    assert bundle.verify_dir(root) == (
        [f"{rel}: not listed in SHA256SUMS" for rel in files if rel != "SHA256SUMS"]
        + [f"{rel}: MANIFEST.json and SHA256SUMS disagree" for rel in sorted(manifest["files"])]
        + ["SHA256SUMS does not list MANIFEST.json"]
        + [f"{rel}: an installer of the manifest that SHA256SUMS does not vouch for" for rel in installers])


def test_every_installer_of_the_manifest_must_be_in_sha256sums(tmp_path, inputs):
    root = made_folder(tmp_path, inputs)
    name = inputs[2]["nnal"].name
    lines = (root / "SHA256SUMS").read_text().splitlines()
    (root / "SHA256SUMS").write_text("".join(l + "\n" for l in lines if name not in l))
    (root / "installers" / name).unlink()
    data = json.loads((root / "MANIFEST.json").read_text())
    del data["files"][f"installers/{name}"]
    rewrite_manifest(root, data)
    assert bundle.verify_dir(root) == [
        f"installers/{name}: an installer of the manifest that SHA256SUMS does not vouch for"]


def test_the_wheelhouse_folder_is_verified_whatever_the_manifest_says(tmp_path, inputs, monkeypatch):
    root = made_folder(tmp_path, inputs)
    checked = []
    monkeypatch.setattr(bundle.wheelhouse, "verify", lambda d: checked.append(d) or ["wheel x: checksum mismatch"])
    assert bundle.verify_dir(root) == ["wheelhouse: wheel x: checksum mismatch"]
    assert checked == [root / "wheelhouse"]

    def broken(d):
        raise UserError(f"{d} is not a wheelhouse: manifest.json is missing")
    monkeypatch.setattr(bundle.wheelhouse, "verify", broken)
    assert bundle.verify_dir(root) == [f"wheelhouse: {root / 'wheelhouse'} is not a wheelhouse: manifest.json is missing"]
    monkeypatch.setattr(bundle.wheelhouse, "verify", lambda d: checked.append(d) or [])
    data = json.loads((root / "MANIFEST.json").read_text())
    # a manifest that names another wheelhouse is not followed: wheelhouse/ is still the one checked
    data["wheelhouse"] = {"path": "house"}
    rewrite_manifest(root, data)
    assert bundle.verify_dir(root) == ["MANIFEST.json: the wheelhouse is always wheelhouse/, not 'house'; not followed"]
    assert checked[-1] == root / "wheelhouse"
    # a manifest naming no lists at all is not a bundle's
    for key in ("files", "installers", "wheelhouse"):
        del data[key]
    rewrite_manifest(root, data)
    assert bundle.verify_dir(root) == ["MANIFEST.json lists no files; an empty bundle is not a bundle"]

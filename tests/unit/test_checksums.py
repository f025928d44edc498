"""One SHA256SUMS policy: compat_matrix.checksums, and the Dockerfile's shell check of the
same rules, judged on the same table of files (each verdict written out, not computed)."""
from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import pytest

import compat_matrix as cm
from compat_matrix import checksums
from images import render

PAYLOAD = b"the vendor's installer\n"
GOOD = hashlib.sha256(PAYLOAD).hexdigest()
OTHER = hashlib.sha256(b"someone else's installer\n").hexdigest()
NAME = "Ascend-cann-toolkit_9.1.0_linux-x86_64.run"

# (case, SHA256SUMS bytes, accepted?, what the refusal says)
CASES = [
    ("text mode", f"{GOOD}  {NAME}\n".encode(), True, None),
    ("binary marker", f"{GOOD} *{NAME}\n".encode(), True, None),
    ("CRLF line ends", f"{GOOD}  {NAME}\r\n{OTHER}  other.run\r\n".encode(), True, None),
    ("upper-case hex", f"{GOOD.upper()}  {NAME}\n".encode(), True, None),
    ("--tag format", f"SHA256 ({NAME}) = {GOOD}\n".encode(), True, None),
    ("./ before the name", f"{GOOD}  ./{NAME}\n".encode(), True, None),
    ("escaped line of another file", f"\\{OTHER}  a\\\\b.run\n{GOOD}  {NAME}\n".encode(), True, None),
    ("listed twice, same sum", f"{GOOD}  {NAME}\n{GOOD} *{NAME}\n".encode(), True, None),
    ("blank lines", f"\n{GOOD}  {NAME}\n\n".encode(), True, None),
    ("not listed", f"{OTHER}  other.run\n".encode(), False, f"{NAME} is not listed in"),
    ("empty file", b"", False, f"{NAME} is not listed in"),
    ("another checksum", f"{OTHER}  {NAME}\n".encode(), False, f"{NAME}: checksum mismatch: "),
    ("listed twice, two sums", f"{OTHER}  {NAME}\n{GOOD}  {NAME}\n".encode(), False,
     f":2: {NAME} is listed a second time with another sha256 (line 1 says {OTHER}"),
    ("one space only", f"{GOOD} {NAME}\n".encode(), False, ":1: not a sha256sum line"),
    ("a comment line", f"# checked by me\n{GOOD}  {NAME}\n".encode(), False, ":1: not a sha256sum line"),
    ("short hash", f"{GOOD[:63]}  {NAME}\n".encode(), False, ":1: not a sha256sum line"),
    ("absolute path", f"{GOOD}  {NAME}\n{OTHER}  /etc/shadow\n".encode(), False,
     ":2: '/etc/shadow' is not a path inside the checked directory"),
    ("climbing out", f"{GOOD}  {NAME}\n{OTHER}  ../x/{NAME}\n".encode(), False,
     f":2: '../x/{NAME}' is not a path inside the checked directory"),
    ("binary file", b"\x00\x01\x02" + GOOD.encode(), False, "is a binary file, not a list of checksums"),
    ("not UTF-8", f"{GOOD}  {NAME}\n".encode() + b"\xff\xfe  x.run\n", False, "is not UTF-8 text (byte 109)"),
]


def python_verdict(directory) -> str | None:
    try:
        sums = checksums.read_sums(directory)
        checksums.check_file(directory / NAME, sums, directory / "SHA256SUMS")
    except checksums.ChecksumError as e:
        return str(e)
    return None


def shell_check(mount) -> str:
    """The Dockerfile's check of one installer, as the template renders it."""
    stack = cm.resolve(cm.load_matrix(), cm.Constraints(torch_npu="==2.13.0", arch="x86_64")).stack
    module = render._jinja().get_template("Dockerfile.j2").make_module(vars=render.context(stack))
    return str(module.verify(str(mount), NAME, "TOOLKIT_SHA256"))


@pytest.mark.parametrize("case,data,accepted,message", CASES, ids=[c[0] for c in CASES])
def test_python_and_the_dockerfile_judge_sums_alike(tmp_path, case, data, accepted, message):
    (tmp_path / NAME).write_bytes(PAYLOAD)
    (tmp_path / "SHA256SUMS").write_bytes(data)
    refusal = python_verdict(tmp_path)
    if accepted:
        assert refusal is None
    else:
        assert refusal is not None and message in refusal
        assert isinstance(checksums.ChecksumError(refusal), cm.UserError)  # exit code 2 at the CLI
    # the image build passes the checksum Python read; the shell sees the same file
    shell = subprocess.run(["bash", "-c", shell_check(tmp_path)], capture_output=True, text=True,
                           env={**os.environ, "TOOLKIT_SHA256": GOOD})
    assert (shell.returncode == 0) is accepted, shell.stderr
    if not accepted:
        assert f"{NAME}: " in shell.stderr


def test_the_shell_check_catches_a_file_that_changed_after_listing(tmp_path):
    (tmp_path / NAME).write_bytes(PAYLOAD + b"tampered")
    (tmp_path / "SHA256SUMS").write_text(f"{GOOD}  {NAME}\n")
    shell = subprocess.run(["bash", "-c", shell_check(tmp_path)], capture_output=True, text=True,
                           env={**os.environ, "TOOLKIT_SHA256": GOOD})
    assert shell.returncode == 1 and f"{NAME}: checksum mismatch, expected sha256 {GOOD}" in shell.stderr
    assert f"{NAME}: checksum mismatch: {tmp_path / 'SHA256SUMS'} says sha256 {GOOD}" in python_verdict(tmp_path)


def test_missing_sums_file_is_refused_with_how_to_write_one(tmp_path):
    with pytest.raises(checksums.ChecksumError) as e:
        checksums.read_sums(tmp_path)
    assert f"{tmp_path} has no SHA256SUMS" in str(e.value) and "sha256sum FILES > SHA256SUMS" in str(e.value)
    assert checksums.read_sums(tmp_path, required=False) == {}


def test_format_sums_is_what_sha256sum_checks(tmp_path):
    (tmp_path / "b.whl").write_bytes(b"b")
    (tmp_path / "a.whl").write_bytes(b"a")
    text = checksums.format_sums({n: checksums.sha256_file(tmp_path / n) for n in ("b.whl", "a.whl")})
    assert text.splitlines()[0].endswith("  a.whl")
    (tmp_path / "SHA256SUMS").write_text(text)
    assert subprocess.run(["sha256sum", "-c", "--quiet", "SHA256SUMS"], cwd=tmp_path).returncode == 0
    assert checksums.read_sums(tmp_path) == {"a.whl": hashlib.sha256(b"a").hexdigest(),
                                             "b.whl": hashlib.sha256(b"b").hexdigest()}


def test_names_that_sha256sum_escapes_are_read_back(tmp_path):
    """GNU sha256sum starts a line with a backslash and escapes the name when it holds a backslash,
    newline or carriage return; the reader gives the file's real name back."""
    names = ["a\\b.whl", "c\nd.whl", "e\rf.whl", "g\\n.whl"]
    for i, name in enumerate(names):
        (tmp_path / name).write_bytes(bytes([i]))
    listing = subprocess.run(["sha256sum", "--", *names], cwd=tmp_path, capture_output=True, check=True).stdout
    assert listing.count(b"\n") >= 1 and listing.startswith(b"\\")  # escaped lines, as sha256sum writes them
    assert checksums.parse_sums(listing, "SHA256SUMS") == {n: hashlib.sha256(bytes([i])).hexdigest()
                                                           for i, n in enumerate(names)}
    # Only escaped lines are unescaped; an escape sha256sum never writes stays as it is.
    digest = "0" * 64
    assert checksums.parse_sums(f"{digest}  h\\nk.whl\n".encode(), "S") == {"h\\nk.whl": digest}
    assert checksums.parse_sums(f"\\{digest}  t\\tab.whl\n".encode(), "S") == {"t\\tab.whl": digest}


def test_unreadable_or_malformed_sums_name_the_file(tmp_path, monkeypatch):
    sums = tmp_path / "SHA256SUMS"
    sums.write_text("")
    real_open = os.open

    def denied(path, *args, **kwargs):  # what a non-root user meets (this runs as root, which reads anything)
        if Path(path) == sums:
            raise PermissionError(13, "Permission denied")
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", denied)
    with pytest.raises(checksums.ChecksumError) as e:
        checksums.read_sums(tmp_path)
    assert str(e.value) == f"{sums}: cannot read the list of checksums (SHA256SUMS): Permission denied"
    monkeypatch.undo()
    # a FIFO would block the read, /dev/zero never end, a sparse 20 GB file fill the memory: refused unread
    sums.unlink()
    os.mkfifo(sums)
    with pytest.raises(checksums.ChecksumError) as e:
        checksums.read_sums(tmp_path, required=False)
    assert str(e.value) == (f"{sums}: is not a regular file (a pipe, socket or device); the list of checksums "
                            f"(SHA256SUMS) must be a plain file")
    sums.unlink()
    sums.symlink_to("/dev/zero")
    with pytest.raises(checksums.ChecksumError, match="is not a regular file"):
        checksums.read_sums(tmp_path)
    sums.unlink()
    sums.write_bytes(b"")
    os.truncate(sums, 20 << 30)   # sparse: no disk used
    with pytest.raises(checksums.ChecksumError, match=f"is {20 << 30} bytes, more than the"):
        checksums.read_sums(tmp_path)
    sums.unlink()
    sums.symlink_to(tmp_path / "nowhere")
    with pytest.raises(checksums.ChecksumError, match=r"SHA256SUMS: no such file \(the list of checksums"):
        checksums.read_sums(tmp_path, required=False)
    other = tmp_path / "other"
    other.mkdir()
    (other / "SHA256SUMS").write_text("not a checksum\n")
    with pytest.raises(checksums.ChecksumError) as e:
        checksums.read_sums(other)
    assert str(e.value).startswith(f"{other / 'SHA256SUMS'}:1: not a sha256sum line ('not a checksum')")


def test_a_name_with_nul_is_not_a_path():
    assert checksums.safe_relative("a\0b.whl") is None
    assert checksums.safe_relative("./x/./a.whl") == "x/a.whl"


def test_no_other_copy_of_the_sums_reader():
    """sha256 and SHA256SUMS live in compat_matrix/checksums.py only (the Dockerfile's shell check aside):
    no other module of the product hashes files itself or names the file on its own."""
    import re

    from tests.conftest import ROOT

    offenders = []
    packages = [init.parent for init in ROOT.glob("*/__init__.py") if init.parent.name != "tests"]
    assert {"compat_matrix", "images", "validation", "torch_npu_pkg"} <= {p.name for p in packages}
    for path in (p for package in packages for p in package.rglob("*.py")):
        if path.name == "checksums.py":
            continue
        text = path.read_text(encoding="utf-8")
        if re.search(r"^\s*(import hashlib|from hashlib)", text, re.M) or '"SHA256SUMS"' in text:
            offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []


def test_the_hashing_writer_writes_every_byte_and_hashes_them_as_written(tmp_path):
    parts = [b"ustar", b"", b"x" * 100_000, b"\0" * 3]
    with open(tmp_path / "a.tar", "wb") as raw:
        out = checksums.HashingWriter(raw)
        assert [out.write(p) for p in parts] == [len(p) for p in parts]
        assert out.tell() == sum(map(len, parts))
    data = b"".join(parts)
    assert (tmp_path / "a.tar").read_bytes() == data
    assert out.hexdigest() == hashlib.sha256(data).hexdigest()


def test_a_listed_pipe_is_refused_unread_and_a_missing_file_is_named_missing(tmp_path):
    os.mkfifo(tmp_path / "a.run")
    sums = {"a.run": "0" * 64, "b.run": "0" * 64}
    assert checksums.problem(tmp_path / "a.run", "a.run", sums, "SUMS") == \
        "a.run is not a regular file (a pipe, socket or device); put the file SUMS lists in its place"
    assert checksums.problem(tmp_path / "b.run", "b.run", sums, "SUMS") == "b.run is listed in SUMS but missing"


@pytest.mark.parametrize("limit", [1, 2, checksums.CHUNK + 1])
def test_the_sha256_of_the_next_limit_bytes_covers_exactly_them(limit):
    import io

    data = bytes(range(256)) * (2 * checksums.CHUNK // 256 + 1)
    assert checksums.sha256_fileobj(io.BytesIO(data), limit) == hashlib.sha256(data[:limit]).hexdigest()


def test_a_long_bad_line_is_quoted_to_80_characters():
    with pytest.raises(checksums.ChecksumError) as e:
        checksums.parse_sums(b"x" * 100 + b"\n", "SUMS")
    assert str(e.value).startswith(f"SUMS:1: not a sha256sum line ({'x' * 80!r}); each line is ")

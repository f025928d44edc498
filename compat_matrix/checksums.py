"""SHA-256 checksums and SHA256SUMS files: one reader, one policy, for every part.

The installers (images, the playbooks' lookup, the bundle), the wheelhouse and
the bundle itself are all checked here, the same way:

* a SHA256SUMS file is what ``sha256sum`` writes: ``HASH  NAME`` (text mode),
  ``HASH *NAME`` (binary mode), ``\\HASH  NAME`` for names it had to escape, or
  ``SHA256 (NAME) = HASH`` (``--tag``); LF or CRLF line ends; hex in either case;
* a file that is not UTF-8 text, a line that is none of those, a name that is
  absolute or climbs out with ``..``, and one name listed twice with different
  checksums are refused (``ChecksumError``: exit code 2, the file and line named);
* a file that is not listed, or whose SHA-256 differs, is refused.

The Dockerfile template repeats the listed-and-matching check in shell inside the
build (images/templates/Dockerfile.j2, macro ``verify``): the same rules.
"""
from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path, PurePosixPath

from . import outputs
from .errors import UserError

SUMS_FILE = "SHA256SUMS"
CHUNK = 1 << 20
_GNU = re.compile(r"^(\\?)([0-9a-fA-F]{64}) [ *](.+)$")
_TAG = re.compile(r"^(\\?)SHA256 \((.+)\) = ([0-9a-fA-F]{64})$")


class ChecksumError(UserError):
    """An unreadable SHA256SUMS, or a file it does not vouch for."""


def sha256_file(path: Path) -> str:
    with open(path, "rb") as f:
        return sha256_fileobj(f)


def sha256_fileobj(f, limit: int | None = None) -> str:
    """The sha256 of what is left to read in a binary file object, or of its next ``limit`` bytes."""
    digest = hashlib.sha256()
    while limit is None or limit > 0:
        block = f.read(CHUNK if limit is None else min(CHUNK, limit))
        if not block:
            break
        digest.update(block)
        limit = None if limit is None else limit - len(block)
    return digest.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class HashingWriter:
    """A binary file being written, whose sha256 is taken as it is written (no second read)."""

    def __init__(self, raw):
        self.raw, self._digest = raw, hashlib.sha256()

    def write(self, data) -> int:
        self._digest.update(data)
        return self.raw.write(data)

    def tell(self) -> int:
        return self.raw.tell()

    def hexdigest(self) -> str:
        return self._digest.hexdigest()


def format_sums(digests: dict[str, str]) -> str:
    """SHA256SUMS text for {name: sha256}, as ``sha256sum`` writes it, sorted by name."""
    return "".join(f"{digest}  {name}\n" for name, digest in sorted(digests.items()))


def _unescape(name: str) -> str:
    """sha256sum's escapes for a name holding a backslash, newline or carriage return."""
    return re.sub(r"\\(.)", lambda m: {"\\": "\\", "n": "\n", "r": "\r"}.get(m.group(1), m.group(0)), name)


def safe_relative(name: str) -> str | None:
    """``name`` as a relative POSIX path that stays inside its directory (``./`` dropped), or None."""
    if not name or name.startswith("/") or "\0" in name:
        return None
    parts = [p for p in PurePosixPath(name).parts if p != "."]
    if not parts or ".." in parts:
        return None
    return "/".join(parts)


def parse_sums(data: bytes, where: str) -> dict[str, str]:
    """The entries of a SHA256SUMS file's bytes: {relative name: lower-case sha256}.

    ``where`` names the file in messages."""
    if b"\0" in data:
        raise ChecksumError(f"{where} is a binary file, not a list of checksums; write it with "
                            f"`sha256sum FILES > {SUMS_FILE}`")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ChecksumError(f"{where} is not UTF-8 text (byte {e.start}); write it with "
                            f"`sha256sum FILES > {SUMS_FILE}`") from None
    sums: dict[str, str] = {}
    first_line: dict[str, int] = {}
    for number, line in enumerate(text.split("\n"), 1):
        line = line.removesuffix("\r")
        if not line.strip():
            continue
        gnu, tag = _GNU.match(line), _TAG.match(line)
        if gnu:
            escaped, digest, name = gnu.groups()
        elif tag:
            escaped, name, digest = tag.groups()
        else:
            raise ChecksumError(f"{where}:{number}: not a sha256sum line ({line[:80]!r}); each line is "
                                f"'SHA256  NAME' as `sha256sum` writes it")
        if escaped:
            name = _unescape(name)
        rel = safe_relative(name)
        if rel is None:
            raise ChecksumError(f"{where}:{number}: {name!r} is not a path inside the checked directory "
                                f"(absolute, or climbing out with '..'); refusing to follow it")
        digest = digest.lower()
        if rel in sums and sums[rel] != digest:
            raise ChecksumError(f"{where}:{number}: {rel} is listed a second time with another sha256 (line "
                                f"{first_line[rel]} says {sums[rel]}, this one {digest}); keep only the "
                                f"checksum the publisher gives")
        sums.setdefault(rel, digest)
        first_line.setdefault(rel, number)
    return sums


def read_sums(directory: Path, *, required: bool = True, name: str = SUMS_FILE) -> dict[str, str]:
    """``directory``'s SHA256SUMS. Without one: ChecksumError when ``required``, else {}."""
    path = Path(directory) / name
    if not os.path.lexists(path):
        if required:
            raise ChecksumError(f"{directory} has no {name}; every file taken from it is checked against it. "
                                f"Write it from the checksums the publisher gives, or `cd {directory} && "
                                f"sha256sum FILES > {name}` once you have checked the files")
        return {}
    try:   # a FIFO, a device or a huge file in its place is refused unread
        data = outputs.read_bytes(path, f"the list of checksums ({name})")
    except UserError as e:
        raise ChecksumError(str(e)) from None
    return parse_sums(data, str(path))


def problem(path: Path, name: str, sums: dict[str, str], sums_path: Path | str) -> str | None:
    """Why the file ``path`` (listed as ``name``) is not vouched for by ``sums``, or None when it is."""
    expected = sums.get(name)
    if expected is None:
        return (f"{name} is not listed in {sums_path}; a file nobody vouched for is not used "
                f"(add its sha256 line once you have checked it)")
    if not Path(path).is_file():
        if Path(path).exists():   # there, but hashing it would block or never end
            return (f"{name} is not a regular file (a pipe, socket or device); put the file {sums_path} "
                    f"lists in its place")
        return f"{name} is listed in {sums_path} but missing"
    actual = sha256_file(path)
    if actual != expected:
        return (f"{name}: checksum mismatch: {sums_path} says sha256 {expected}, the file has {actual}; "
                f"the file is corrupt or was replaced")
    return None


def check_file(path: Path, sums: dict[str, str], sums_path: Path | str, name: str | None = None) -> str:
    """The file's sha256, when ``sums`` lists it with that checksum; ChecksumError otherwise."""
    name = name or Path(path).name
    why = problem(path, name, sums, sums_path)
    if why is not None:
        raise ChecksumError(why)
    return sums[name]

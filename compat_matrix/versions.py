"""Version grammars of the field.

PyTorch, torch_npu and torchvision follow PEP 440 (``2.1.0.post8``); Huawei's
CANN and HDK versions do not (``8.0.RC3``, ``24.1.RC2.1``), so they get their own
ordering: ``RCn`` sorts before the final release of the same major.minor.
"""
from __future__ import annotations

import re
from functools import total_ordering

from packaging.version import InvalidVersion, Version

# A trailing build tag (24.1.rc1.b030, as npu-smi prints driver versions) is
# accepted and ignored for ordering.
_VENDOR_RE = re.compile(r"(\d+)\.(\d+)\.(?:(RC)(\d+)|(\d+)|(X))(?:\.(\d+))?(?:\.B\d+)?", re.IGNORECASE)
_PYTHON_RE = re.compile(r"3\.(\d+)")


@total_ordering
class VendorVersion:
    """A CANN or HDK version such as ``8.0.RC3``, ``8.5.0`` or ``25.0.RC1.1``.

    The vendor writes ranges with a wildcard, ``25.2.X`` ("any 25.2 release");
    such a version is only meaningful as a bound: see ``in_range``.
    """

    __slots__ = ("text", "key", "wildcard")

    def __init__(self, text: str):
        m = _VENDOR_RE.fullmatch(str(text))
        if not m:
            raise ValueError(
                f"{text!r} is not a CANN/HDK version (expected MAJOR.MINOR.PATCH or MAJOR.MINOR.RCn, e.g. 8.0.0 or 8.0.RC3)"
            )
        major, minor, rc, rc_n, patch, wildcard, sub = m.groups()
        self.text = str(text)
        self.wildcard = bool(wildcard)
        if wildcard:
            self.key = (int(major), int(minor), -1, 0, 0)
        elif rc:
            self.key = (int(major), int(minor), 0, int(rc_n), int(sub or 0))
        else:
            self.key = (int(major), int(minor), 1, int(patch), int(sub or 0))

    @property
    def major_minor(self) -> tuple[int, int]:
        return self.key[0], self.key[1]

    def __eq__(self, other):
        return isinstance(other, VendorVersion) and self.key == other.key

    def __lt__(self, other):
        return self.key < other.key

    def __hash__(self):
        return hash(self.key)

    def __str__(self):
        return self.text

    def __repr__(self):
        return f"VendorVersion({self.text!r})"


def in_range(version: VendorVersion, low: str | None, high: str | None) -> bool:
    """``low <= version <= high``; a ``N.M.X`` bound covers every N.M release."""
    if low:
        lo = VendorVersion(low)
        if (version.major_minor < lo.major_minor) if lo.wildcard else (version < lo):
            return False
    if high:
        hi = VendorVersion(high)
        if (version.major_minor > hi.major_minor) if hi.wildcard else (hi < version):
            return False
    return True


def pep440(text: str) -> Version:
    """Parse a PEP 440 version, raising ValueError with a readable message."""
    try:
        if str(text) != str(text).strip():  # Version() would strip the blanks and accept it
            raise InvalidVersion(text)
        return Version(str(text))
    except InvalidVersion:
        raise ValueError(f"{text!r} is not a PEP 440 version (e.g. 2.4.0 or 2.1.0.post8)") from None


def python_version(text: str) -> tuple[int, int]:
    m = _PYTHON_RE.fullmatch(str(text))
    if not m:
        raise ValueError(f"{text!r} is not a Python version (expected 3.N, e.g. 3.10)")
    return 3, int(m.group(1))


def python_tag(version: str) -> str:
    """``3.10`` -> ``cp310`` (the CPython wheel tag)."""
    major, minor = python_version(version)
    return f"cp{major}{minor}"


def release_prefix_matches(wanted: str, actual: str) -> bool:
    """True when ``actual``'s release starts with ``wanted``'s components.

    ``2.4`` matches ``2.4.0`` and ``2.4.0.post2``; ``2.4.0`` matches ``2.4.0`` only
    (its post releases too, since they are the same release line);
    an exact full version such as ``2.4.0.post2`` matches only itself.
    """
    w = str(wanted).strip()
    if w == str(actual):
        return True
    try:
        wv, av = Version(w), Version(str(actual))
    except InvalidVersion:
        return False
    if wv.post is not None or wv.pre is not None or wv.dev is not None:
        return wv == av
    return av.release[: len(wv.release)] == wv.release


def vendor_prefix_matches(wanted: str, actual: VendorVersion) -> bool:
    """``8.0`` matches ``8.0.RC3`` and ``8.0.0``; a full version matches itself."""
    parts = str(wanted).strip().split(".")
    have = actual.text.split(".")
    return [p.upper() for p in have[: len(parts)]] == [p.upper() for p in parts]

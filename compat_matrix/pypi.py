"""Check the matrix against what PyPI actually publishes for torch-npu.

For every row whose wheel comes from PyPI, read the release's files (Python tags
and platforms) and each wheel's own METADATA (its ``Requires-Dist`` torch pin,
read with HTTP range requests: PyPI serves no PEP 658 metadata for these
wheels), and report every disagreement. Responses can be
recorded to a directory and replayed, so tests need no network.
"""
from __future__ import annotations

import io
import json
import urllib.error
import urllib.request
import zipfile
from urllib.parse import urljoin
from dataclasses import dataclass
from email.parser import HeaderParser
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import parse_wheel_filename
from packaging.version import Version

from . import outputs
from .errors import UserError
from .model import Matrix, Row, torch_pin

PROJECT_URL = "https://pypi.org/pypi/torch-npu/json"
TIMEOUT_S = 30


@dataclass(frozen=True)
class Disagreement:
    torch_npu: str
    field: str
    matrix: str
    pypi: str

    def __str__(self):
        return f"torch_npu {self.torch_npu}: {self.field}: matrix says {self.matrix}, PyPI has {self.pypi}"


class PyPIUnavailable(Exception):
    pass


def _http(url: str, headers: dict | None = None) -> bytes:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT_S) as resp:
            return resp.read()
    except (urllib.error.URLError, OSError) as e:
        raise PyPIUnavailable(f"cannot read {url}: {getattr(e, 'reason', e)}") from None


class _RangeFile(io.RawIOBase):
    """A remote file read with HTTP Range requests, so zipfile can pick one
    member (a wheel's METADATA) out of a large wheel without downloading it."""

    def __init__(self, url: str, size: int):
        self.url, self.size, self.pos = url, size, 0

    def seekable(self):
        return True

    def readable(self):
        return True

    def tell(self):
        return self.pos

    def seek(self, offset, whence=io.SEEK_SET):
        self.pos = {io.SEEK_SET: 0, io.SEEK_CUR: self.pos, io.SEEK_END: self.size}[whence] + offset
        return self.pos

    def readinto(self, buffer) -> int:
        end = min(self.size, self.pos + len(buffer))
        if end <= self.pos:
            return 0
        data = _http(self.url, {"Range": f"bytes={self.pos}-{end - 1}"})
        buffer[: len(data)] = data
        self.pos += len(data)
        return len(data)


def wheel_requires_dist(url: str, size: int) -> list[str]:
    """The ``Requires-Dist`` lines of a remote wheel's METADATA."""
    with zipfile.ZipFile(io.BufferedReader(_RangeFile(url, size), buffer_size=65536)) as whl:
        name = next(n for n in whl.namelist() if n.endswith(".dist-info/METADATA"))
        return _requires_dist(whl.read(name).decode("utf-8", "replace"))


class LivePyPI:
    """Reads pypi.org (optionally saving every answer under ``record_dir``)."""

    def __init__(self, record_dir: Path | None = None):
        self.record_dir = record_dir
        self._project = None

    def _releases(self) -> dict:
        if self._project is None:
            self._project = json.loads(_http(PROJECT_URL))["releases"]
        return self._project

    def versions(self) -> list[str]:
        versions = sorted(self._releases())
        self._save("_project.json", {"releases": versions})
        return versions

    def release(self, version: str) -> dict | None:
        files = self._releases().get(version)
        if not files:
            self._save(f"{version}.json", None)
            return None
        record = {"version": version, "files": [
            {"filename": f["filename"], "requires_dist": wheel_requires_dist(urljoin(PROJECT_URL, f["url"]), f["size"])}
            for f in files if f["filename"].endswith(".whl") and not f.get("yanked")
        ]}
        self._save(f"{version}.json", record)
        return record

    def _save(self, name: str, obj) -> None:
        if self.record_dir:
            self.record_dir.mkdir(exist_ok=True)
            outputs.write_text(self.record_dir / name, json.dumps(obj, indent=1, sort_keys=True) + "\n", "--record")


class RecordedPyPI:
    """Replays answers saved by ``LivePyPI(record_dir=...)``."""

    def __init__(self, directory: Path):
        self.dir = Path(directory)
        self._versions = self._read_versions()  # a bad recording is refused before any row is checked

    def versions(self) -> list[str]:
        return self._versions

    def _read_versions(self) -> list[str]:
        data = self._load(self.dir / "_project.json")
        releases = data.get("releases") if isinstance(data, dict) else None
        if not isinstance(releases, list) or not all(isinstance(v, str) for v in releases):
            raise UserError(f"{self.dir / '_project.json'}: not a recorded PyPI project (no list of releases); "
                            f"record it again with --record")
        for v in releases:
            try:
                Version(v)
            except ValueError:
                raise UserError(f"{self.dir / '_project.json'}: {v!r} is not a version; record it again") from None
        return releases

    def release(self, version: str) -> dict | None:
        path = self.dir / f"{version}.json"
        if not path.exists():
            raise PyPIUnavailable(f"no recorded PyPI answer for torch-npu {version} in {self.dir}")
        record = self._load(path)
        if record is not None and not _is_release_record(record):
            raise UserError(f"{path}: not a recorded PyPI release (files with filename and requires_dist); "
                            f"record it again with --record")
        return record

    @staticmethod
    def _load(path: Path):
        try:
            return json.loads(outputs.read_text(path, "a recorded PyPI answer"))
        except ValueError as e:
            raise UserError(f"{path}: not valid JSON ({e}); record it again with --record") from None


def _is_release_record(record) -> bool:
    if not isinstance(record, dict) or not isinstance(record.get("files"), list):
        return False
    for f in record["files"]:
        if not (isinstance(f, dict) and isinstance(f.get("filename"), str) and isinstance(f.get("requires_dist"), list)
                and all(isinstance(r, str) for r in f["requires_dist"])):
            return False
        try:
            parse_wheel_filename(f["filename"])
            for r in f["requires_dist"]:
                Requirement(r)
        except ValueError:
            return False
    return True


def _requires_dist(metadata: str) -> list[str]:
    return HeaderParser().parsestr(metadata).get_all("Requires-Dist") or []


def _arch_of(platform_tag: str) -> str:
    for arch in ("x86_64", "aarch64"):
        if platform_tag.endswith(arch):
            return arch
    return platform_tag


def published(record: dict) -> dict:
    """Python tags, primary platform tags and per-arch torch pins of a recorded release."""
    tags, platforms, torch_reqs = set(), set(), {}
    for f in record["files"]:
        _, _, _, wheel_tags = parse_wheel_filename(f["filename"])
        tags.update(t.interpreter for t in wheel_tags)
        primary = f["filename"][:-4].split("-")[-1].split(".")[0]
        platforms.add(primary)
        for req in f["requires_dist"]:
            r = Requirement(req)
            if r.name == "torch" and not r.marker:
                torch_reqs.setdefault(_arch_of(primary), set()).add(f"torch{r.specifier}")
    return {"python_tags": tags, "platforms": platforms, "torch": torch_reqs}


def check_row(row: Row, record: dict | None) -> list[Disagreement]:
    if record is None:
        return [Disagreement(row.torch_npu, "wheel.index", "pypi", "no such release; use release_page")]
    pub = published(record)
    out = []
    mine = set(row.wheel["python_tags"])
    if mine != pub["python_tags"]:
        out.append(Disagreement(row.torch_npu, "wheel.python_tags", _fmt(mine), _fmt(pub["python_tags"])))
    if set(row.wheel["platforms"]) != pub["platforms"]:
        out.append(Disagreement(row.torch_npu, "wheel.platforms", _fmt(row.wheel["platforms"]), _fmt(pub["platforms"])))
    for arch, reqs in sorted(pub["torch"].items()):
        for req in sorted(reqs):
            pinned = torch_pin(req)
            if pinned is not None and pinned != Version(row.torch):
                out.append(Disagreement(row.torch_npu, f"torch ({arch} Requires-Dist)", row.torch, req))
            declared = row.torch_requirement(arch)
            if "torch_requirement" in row.wheel and (declared and str(Requirement(declared))) != req:
                out.append(Disagreement(row.torch_npu, f"wheel.torch_requirement.{arch}", str(declared), req))
    return out


def verify(matrix: Matrix, source) -> list[Disagreement]:
    out = []
    listed = {r.torch_npu for r in matrix.rows} | {e["torch_npu"] for e in matrix.excluded}
    for row in matrix.rows:
        if row.wheel["index"] == "pypi":
            out.extend(check_row(row, source.release(row.torch_npu)))
    for v in source.versions():
        version = Version(v)
        if not version.is_prerelease and v not in listed:
            out.append(Disagreement(v, "row", "none", "a published final release; add a row for it"))
    return out


def _fmt(values) -> str:
    return ", ".join(sorted(values)) or "nothing"

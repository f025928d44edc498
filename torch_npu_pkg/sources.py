"""Where wheels come from.

* The torch source (``TORCH_SOURCE``): a local directory of wheels or a package
  index URL such as PyPI's CPU index. It gives the CPU build of torch, and
  torchvision's CPU build when it has one. The default PyPI index is never asked
  for torch: its x86_64 build is the CUDA one, gigabytes of it.
* torch_npu sources, tried in the order the user gives:
  ``dir:PATH`` (a local directory), ``pypi`` (the package index; torch_npu is on
  PyPI from 2.1.0.post8 on), ``release`` (the vendor's GitHub release page the
  matrix names for older rows) and ``build`` (a source build, see builder.py).
  A source that does not have the wheel says why and the next one is tried; a
  wheel that is there but wrong (checksum, torch pin, tags) stops the build.
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable

from packaging import tags as ptags
from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename
from packaging.version import Version

from compat_matrix import Stack, UserError, checksums, outputs
from compat_matrix.versions import python_version
from compat_matrix.model import Row

from . import builder
from .wheels import CHUNK, Target, WheelError, WheelInfo, check_tags

Log = Callable[[str], None]
GITHUB_API = "https://api.github.com"
GITHUB_API_ENV = "NPUENV_GITHUB_API"   # another API base (a GitHub Enterprise mirror, or tests)
HTTP_TIMEOUT_S = 60
SOURCE_KINDS = ("dir:PATH", "pypi", "release", "build")
PIP_TAIL_LINES = 15
PROVENANCE_SUFFIX = ".provenance.json"   # a wheel's build provenance, kept beside it


class NotHere(Exception):
    """This source does not have the wheel (the next source is tried)."""


@dataclass
class Fetched:
    path: Path
    source: dict


def _quiet(_msg: str) -> None:
    pass


# --- pip ---------------------------------------------------------------------

def pip_env() -> dict:
    """pip's environment for torch_npu and the dependencies: the user's own configuration
    (index, mirrors, certificates, proxy) applies."""
    env = dict(os.environ)
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


# Settings that still apply when pip runs isolated from the user's configuration.
_PASS_THROUGH = {"cert": "--cert", "client-cert": "--client-cert", "proxy": "--proxy",
                 "trusted-host": "--trusted-host", "timeout": "--timeout", "default-timeout": "--timeout"}


@lru_cache(maxsize=1)
def _pip_settings() -> tuple[tuple[str, str], ...]:
    proc = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True)
    found: dict[str, str] = {}
    for line in proc.stdout.splitlines():
        key, sep, value = line.partition("=")
        option = _PASS_THROUGH.get(key.rsplit(".", 1)[-1])
        if not sep or option is None:
            continue
        value = value.strip().strip("'\"")
        if key.startswith(":env:"):
            found[option] = value
        else:
            found.setdefault(option, value)
    return tuple(found.items())


def isolated_args() -> list[str]:
    """``--isolated`` (no configured index, extra index or find-links can slip in) with the
    user's certificate, proxy and timeout settings passed on."""
    args = ["--isolated"]
    for option, value in _pip_settings():
        for item in (value.split() if option == "--trusted-host" else [value]):
            args += [option, item]
    return args


def run_pip(args: list[str], env: dict, log: Log = _quiet) -> subprocess.CompletedProcess:
    """pip with a temporary folder of its own (TMPDIR), removed afterwards: when npuenv is
    interrupted, subprocess.run kills pip, which then cannot remove its own pip-* folders."""
    cmd = [sys.executable, "-m", "pip", *args]
    log("  $ pip " + " ".join(args))
    with tempfile.TemporaryDirectory(prefix="npuenv-pip-") as tmp:
        return subprocess.run(cmd, env={**env, "TMPDIR": tmp}, capture_output=True, text=True)


def pip_tail(proc: subprocess.CompletedProcess, lines: int = PIP_TAIL_LINES) -> str:
    text = (proc.stdout + "\n" + proc.stderr).strip().splitlines()
    keep = [line for line in text if line.strip()][-lines:]
    return "\n".join("    " + line for line in keep)


def _no_match(proc: subprocess.CompletedProcess) -> bool:
    text = proc.stdout + proc.stderr
    return "No matching distribution" in text or "Could not find a version" in text


# --- helpers -----------------------------------------------------------------

def _wheels_in(directory: Path, project: str) -> list[Path]:
    out = []
    for path in sorted(Path(directory).glob("*.whl")):
        try:
            name = parse_wheel_filename(path.name)[0]
        except InvalidWheelFilename:
            continue
        if name == canonicalize_name(project):
            out.append(path)
    return out


def vouched_by_sums(path: Path, directory: Path) -> str | None:
    """A wheel taken from a folder of the user's: when the folder has a SHA256SUMS, the wheel must be
    listed there with its checksum (compat_matrix.checksums' policy). Returns what vouched for it."""
    sums = checksums.read_sums(directory, required=False)
    if not (Path(directory) / checksums.SUMS_FILE).is_file():
        return None
    checksums.check_file(path, sums, Path(directory) / checksums.SUMS_FILE)
    return checksums.SUMS_FILE


def _pick(candidates: list[WheelInfo], target: Target) -> WheelInfo | None:
    """The candidate whose best tag ranks highest for the target."""
    order = {str(tag): i for i, tag in enumerate(_ranked_tags(target))}
    best = None
    for wheel in candidates:
        ranks = [order[str(t)] for t in wheel.tags if str(t) in order]
        if ranks and (best is None or min(ranks) < best[0]):
            best = (min(ranks), wheel)
    return best[1] if best else None


def _ranked_tags(target: Target):
    version = python_version(target.python)
    yield from ptags.cpython_tags(version, abis=[target.interpreter], platforms=list(target.platforms))
    yield from ptags.compatible_tags(version, target.interpreter, platforms=list(target.platforms))


def _matching(directory: Path, project: str, version: str, target: Target) -> tuple[list[WheelInfo], list[str]]:
    """Wheels of ``project`` at ``version`` (public part) in ``directory`` fitting the target,
    and a description of every other wheel of the project found there."""
    fit, other = [], []
    for path in _wheels_in(directory, project):
        wheel = WheelInfo.read(path)
        if Version(wheel.version.public) != Version(version):
            other.append(f"{path.name} (version {wheel.version})")
            continue
        try:
            check_tags(wheel, target)
        except WheelError as e:
            reason = str(e).split(": ", 1)[-1]
            other.append(f"{path.name} ({reason})")
            continue
        fit.append(wheel)
    return fit, other


# --- the torch source -----------------------------------------------------------

class TorchSource:
    """A directory of wheels or a package index URL holding PyPI's CPU builds."""

    def __init__(self, value: str):
        value = str(value).strip()
        if not value:
            raise UserError("no torch source: pass --torch-source DIR (a directory with the CPU torch wheel) "
                            "or --torch-source URL (e.g. https://download.pytorch.org/whl/cpu)")
        self.value = value
        self.is_url = bool(re.match(r"^[a-z][a-z0-9+.-]*://", value))
        if not self.is_url:
            self.dir = Path(value).expanduser().resolve()
            if not self.dir.is_dir():
                raise UserError(f"torch source {value} is not a directory (nor an index URL); set TORCH_SOURCE "
                                f"to the directory holding the CPU torch wheel, or to PyTorch's CPU index URL")

    def __str__(self) -> str:
        return self.value

    def fetch(self, project: str, version: str, target: Target, stage: Path, log: Log = _quiet,
              required: bool = True) -> Fetched | None:
        """The project's wheel at the row's version for the target, or None (``required=False``) when absent."""
        if self.is_url:
            return self._fetch_index(project, version, target, stage, log, required)
        return self._fetch_dir(project, version, target, log, required)

    def _fetch_dir(self, project, version, target, log, required) -> Fetched | None:
        fit, other = _matching(self.dir, project, version, target)
        if not fit:
            if not required:
                return None
            have = f" (it holds: {'; '.join(other)})" if other else " (it holds no such wheel)"
            raise UserError(f"torch source {self.dir} has no {project} {version} wheel for "
                            f"{target.describe()}{have}; put the CPU build there or use PyTorch's CPU index URL")
        wheel = _pick(fit, target)
        checked = vouched_by_sums(wheel.path, self.dir)
        log(f"{project}: {wheel.path} (torch source)")
        return Fetched(wheel.path, {"kind": "torch-source", "location": str(self.dir), "checksum_source": checked})

    def _fetch_index(self, project, version, target, stage, log, required) -> Fetched | None:
        dest = stage / f"torch-source-{canonicalize_name(project)}"
        dest.mkdir(parents=True, exist_ok=True)
        # Only the torch source is asked: never an index from pip's configuration (PyPI's torch is CUDA).
        proc = run_pip(["download", *isolated_args(), "--no-deps", "--retries", "2", "--index-url", self.value,
                        *target.pip_args(), "-d", str(dest), f"{project}=={version}"], pip_env(), log)
        if proc.returncode != 0:
            if not required and _no_match(proc):
                return None
            raise UserError(f"torch source {self.value} did not give {project} {version} for "
                            f"{target.describe()} (pip download exited {proc.returncode}):\n{pip_tail(proc)}")
        paths = _wheels_in(dest, project)
        if len(paths) != 1:
            raise UserError(f"torch source {self.value}: expected one {project} wheel, pip left "
                            f"{', '.join(p.name for p in paths) or 'none'}")
        log(f"{project}: {paths[0].name} (torch source {self.value})")
        return Fetched(paths[0], {"kind": "torch-source", "location": self.value,
                                  "checksum_source": "index (#sha256 verified by pip)"})


# --- torch_npu sources ----------------------------------------------------------

class DirSource:
    kind = "dir"

    def __init__(self, path: str):
        self.dir = Path(path).expanduser().resolve()
        self.label = f"dir:{self.dir}"

    def fetch(self, stack: Stack, target: Target, stage: Path, log: Log) -> Fetched:
        if not self.dir.is_dir():
            raise NotHere(f"{self.dir} is not a directory")
        fit, other = _matching(self.dir, "torch_npu", stack.row.torch_npu, target)
        if not fit:
            have = f"; it holds {'; '.join(other)}" if other else ""
            raise NotHere(f"no torch_npu {stack.row.torch_npu} wheel for {target.describe()} in {self.dir}{have}")
        wheel = _pick(fit, target)
        source = {"kind": "dir", "location": str(self.dir), "checksum_source": vouched_by_sums(wheel.path, self.dir)}
        prov = wheel.path.with_name(wheel.path.name + PROVENANCE_SUFFIX)
        if prov.is_file():
            source["provenance"] = json.loads(outputs.read_text(prov, "the wheel's provenance"))
        return Fetched(wheel.path, source)


class PyPISource:
    kind = "pypi"
    label = "pypi"

    def __init__(self, index_url: str | None = None, offline: bool = False):
        self.index_url = index_url
        self.offline = offline

    def fetch(self, stack: Stack, target: Target, stage: Path, log: Log) -> Fetched:
        row = stack.row
        if self.offline:
            raise NotHere("offline: the package index is not asked")
        if row.wheel["index"] != "pypi":
            raise NotHere(f"the matrix says torch_npu {row.torch_npu} is not on PyPI "
                          f"(its wheel comes from {row.wheel['index']}: {row.wheel['url']})")
        dest = stage / "pypi"
        dest.mkdir(parents=True, exist_ok=True)
        args = ["download", "--no-deps", "--retries", "2", *target.pip_args(), "-d", str(dest)]
        if self.index_url:
            args += ["--index-url", self.index_url]
        proc = run_pip(args + [f"torch-npu=={row.torch_npu}"], pip_env(), log)
        if proc.returncode != 0:
            raise NotHere(f"the package index gave no torch_npu {row.torch_npu} wheel for {target.describe()} "
                          f"(pip download exited {proc.returncode}):\n{pip_tail(proc, 6)}")
        paths = _wheels_in(dest, "torch_npu")
        if len(paths) != 1:
            raise NotHere(f"pip left {len(paths)} torch_npu wheels in {dest}")
        return Fetched(paths[0], {"kind": "pypi", "location": self.index_url or "pip's configured index (PyPI)",
                                  "url": row.wheel["url"], "checksum_source": "index (#sha256 verified by pip)"})


class ReleaseSource:
    """The vendor's GitHub release for the row (``wheel.url`` of release-page rows)."""

    kind = "release"
    label = "release"

    def __init__(self, api: str | None = None, offline: bool = False):
        self.api = (api or os.environ.get(GITHUB_API_ENV) or GITHUB_API).rstrip("/")
        self.offline = offline

    @staticmethod
    def release_of(url: str) -> tuple[str, str, str] | None:
        m = re.match(r"^https://github\.com/([^/]+)/([^/]+)/(?:releases/tag|tree)/([^/?#]+)", url or "")
        return (m.group(1), m.group(2), m.group(3)) if m else None

    def _get(self, url: str, accept: str) -> bytes:
        req = urllib.request.Request(url, headers={"Accept": accept, "User-Agent": "npuenv"})
        with urllib.request.urlopen(req, timeout=HTTP_TIMEOUT_S) as resp:
            return resp.read()

    def fetch(self, stack: Stack, target: Target, stage: Path, log: Log) -> Fetched:
        row = stack.row
        tag, release = self._release(row)
        assets, other = _release_wheels(release, row.torch_npu, target)
        if not assets:
            have = f" (it has {', '.join(other)})" if other else ""
            raise NotHere(f"release {tag} has no torch_npu {row.torch_npu} wheel for {target.describe()}{have}")
        asset = assets[0]
        dest = stage / "release"
        dest.mkdir(parents=True, exist_ok=True)
        path = dest / asset["name"]
        url = asset.get("browser_download_url")
        log(f"torch_npu: downloading {url}")
        self._download(url, path)
        actual = checksums.sha256_file(path)
        if asset.get("size") is not None and path.stat().st_size != asset["size"]:
            raise WheelError(f"{url}: size mismatch: the release says {asset['size']} bytes, "
                             f"{path.stat().st_size} arrived; the download is incomplete")
        digest = asset.get("digest") or ""
        checksum_source = None
        if digest.startswith("sha256:"):
            if digest[7:].lower() != actual:
                raise WheelError(f"{url}: checksum mismatch: the release says sha256 {digest[7:]}, the download "
                                 f"has {actual}")
            checksum_source = "release asset digest"
        return Fetched(path, {"kind": "release", "location": row.wheel["url"], "url": url,
                              "checksum_source": checksum_source})

    def _release(self, row: Row) -> tuple[str, dict]:
        """The row's release tag and the API's description of that release."""
        if self.offline:
            raise NotHere("offline: the release page is not asked")
        if row.wheel["index"] != "release_page":
            raise NotHere(f"the matrix names no release page for torch_npu {row.torch_npu} "
                          f"(its wheel is on {row.wheel['index']})")
        where = self.release_of(row.wheel["url"])
        if where is None:
            raise NotHere(f"the matrix's wheel URL {row.wheel['url']} is not a GitHub release or tag page")
        owner, repo, tag = where
        api_url = f"{self.api}/repos/{owner}/{repo}/releases/tags/{tag}"
        try:
            return tag, json.loads(self._get(api_url, "application/vnd.github+json"))
        except urllib.error.HTTPError as e:
            raise NotHere(f"{api_url}: HTTP {e.code} (no release {tag} with assets)") from None
        except (urllib.error.URLError, OSError, ValueError) as e:
            raise NotHere(f"cannot read {api_url}: {getattr(e, 'reason', e)}") from None

    @staticmethod
    def _download(url: str, path: Path) -> None:
        try:
            req = urllib.request.Request(url, headers={"User-Agent": "npuenv"})
            with urllib.request.urlopen(req, timeout=HTTP_TIMEOUT_S) as resp, open(path, "wb") as out:
                for chunk in iter(lambda: resp.read(CHUNK), b""):
                    out.write(chunk)
        except (urllib.error.URLError, OSError) as e:
            raise NotHere(f"cannot download {url}: {getattr(e, 'reason', e)}") from None


def _release_wheels(release: dict, torch_npu: str, target: Target) -> tuple[list[dict], list[str]]:
    """The release's assets that are torch_npu ``torch_npu``'s wheel for ``target``, and the names of
    its other torch_npu wheels."""
    assets, other = [], []
    for asset in release.get("assets") or []:
        name = asset.get("name", "")
        try:
            project, version, _b, tags = parse_wheel_filename(name)
        except InvalidWheelFilename:
            continue
        if project != "torch-npu":
            continue
        if Version(version.public) != Version(torch_npu) or not (frozenset(tags) & target.tags):
            other.append(name)
            continue
        assets.append(asset)
    return assets, other


class BuildSource:
    kind = "build"
    label = "build"

    def __init__(self, options: builder.BuildOptions):
        self.options = options

    def using_torch(self, wheel: Path) -> "BuildSource":
        """This source building against ``wheel``, unless its options name a torch wheel already."""
        return BuildSource(dataclasses.replace(self.options, torch_wheel=self.options.torch_wheel or wheel))

    def fetch(self, stack: Stack, target: Target, stage: Path, log: Log) -> Fetched:
        path, provenance = builder.build_wheel(stack, self.options, target, log)
        dest = stage / "build"
        dest.mkdir(parents=True, exist_ok=True)
        copy = dest / path.name
        shutil.copy2(path, copy)
        return Fetched(copy, {"kind": "build", "location": provenance["source"]["repo"], "provenance": provenance,
                              "checksum_source": "built here"})


def parse_sources(values: list[str], *, index_url: str | None, offline: bool,
                  build_options: builder.BuildOptions) -> list:
    out = []
    for value in values:
        v = value.strip()
        if v.startswith("dir:"):
            out.append(DirSource(v[4:]))
        elif v == "pypi":
            out.append(PyPISource(index_url, offline))
        elif v == "release":
            out.append(ReleaseSource(offline=offline))
        elif v == "build":
            out.append(BuildSource(build_options))
        else:
            raise UserError(f"unknown torch_npu source {value!r}; use any of {', '.join(SOURCE_KINDS)} in the "
                            f"order to try them (e.g. --source dir:/mnt/wheels --source pypi)")
    if not out:
        raise UserError(f"no torch_npu source given; use any of {', '.join(SOURCE_KINDS)}")
    return out

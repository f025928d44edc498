"""Wheels and the checks every wheel passes before it enters a wheelhouse.

A wheel is read once (file name, METADATA, file list) into a ``WheelInfo``. A
``Target`` is what the wheelhouse is for: one Python, one arch, the platform
tags of the matrix row. The checks compare the two and compare the wheel with
the matrix row (the ``Requires-Dist`` torch pin, the versions, the CPU build of
torch); each refusal names the wheel and both sides of the mismatch.
"""
from __future__ import annotations

import re
import struct
import zipfile
from dataclasses import dataclass, field
from email.parser import HeaderParser
from functools import cached_property
from pathlib import Path

from packaging import tags as ptags
from packaging.markers import default_environment
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename
from packaging.version import Version

from compat_matrix import Stack, UserError, outputs
from compat_matrix.checksums import sha256_file
from compat_matrix.model import torch_pin
from compat_matrix.versions import python_tag, python_version

CHUNK = 1 << 20
# Shared objects a CUDA build of PyTorch ships or links; a CPU build has none.
CUDA_LIBRARIES = ("libc10_cuda.so", "libtorch_cuda.so", "libcudart.so")
# Native extensions larger than this are not opened for the CUDA-linkage check
# (the check is meant for extension modules such as torchvision/_C.so).
ELF_SCAN_LIMIT = 64 << 20


class WheelError(UserError):
    """A wheel that cannot enter the wheelhouse."""


# --- reading a wheel ---------------------------------------------------------

@dataclass
class WheelInfo:
    path: Path
    name: str                 # canonical project name (torch-npu)
    version: Version
    tags: frozenset
    metadata_name: str        # the project name as METADATA spells it
    requires_dist: tuple[str, ...]
    requires_python: str | None
    files: tuple[str, ...] = field(repr=False, default=())

    @classmethod
    def read(cls, path: Path) -> "WheelInfo":
        path = Path(path)
        try:
            name, version, _build, tags = parse_wheel_filename(path.name)
        except InvalidWheelFilename as e:
            raise WheelError(f"{path}: not a wheel file name ({e})") from None
        try:   # a FIFO named *.whl would block the zip reader, a device never end
            outputs.check_input_file(path, "a wheel", max_bytes=None)
        except UserError as e:
            raise WheelError(str(e)) from None
        try:
            with zipfile.ZipFile(path) as zf:
                files = tuple(zf.namelist())
                meta_name = _metadata_member(files, name)
                if meta_name is None:
                    raise WheelError(f"{path}: no .dist-info/METADATA inside; the file is not a wheel")
                # the size its directory gives bounds what is inflated: no zip bomb as METADATA
                if zf.getinfo(meta_name).file_size > outputs.MAX_INPUT_BYTES:
                    raise WheelError(f"{path}: its {meta_name} is {zf.getinfo(meta_name).file_size} bytes, more "
                                     f"than the {outputs.MAX_INPUT_BYTES} a wheel's METADATA may have")
                meta = HeaderParser().parsestr(zf.read(meta_name).decode("utf-8", "replace"))
        except (zipfile.BadZipFile, OSError) as e:
            raise WheelError(f"{path}: cannot be read as a wheel (zip): {e}") from None
        meta_version = meta.get("Version", "")
        try:
            same = Version(meta_version) == version
        except ValueError:
            same = False
        if canonicalize_name(meta.get("Name", "")) != name or not same:
            raise WheelError(f"{path}: file name says {name} {version}, its METADATA says "
                             f"{meta.get('Name')} {meta_version}; the file was renamed or is corrupt")
        return cls(path=path, name=name, version=version, tags=frozenset(tags), metadata_name=meta.get("Name"),
                   requires_dist=tuple(meta.get_all("Requires-Dist") or ()),
                   requires_python=meta.get("Requires-Python"), files=files)

    @property
    def filename(self) -> str:
        return self.path.name

    @cached_property
    def sha256(self) -> str:
        return sha256_file(self.path)

    @property
    def size(self) -> int:
        return self.path.stat().st_size

    def requirements(self, env: dict, extras: frozenset = frozenset()) -> list[Requirement]:
        """``Requires-Dist`` entries that apply in ``env`` (with the given extras requested)."""
        out = []
        for text in self.requires_dist:
            try:
                req = Requirement(text)
            except InvalidRequirement:
                raise WheelError(f"{self.path}: unreadable Requires-Dist {text!r}") from None
            if req.marker is None:
                out.append(req)
                continue
            for extra in ("", *sorted(extras)):
                if req.marker.evaluate({**env, "extra": extra}):
                    out.append(req)
                    break
        return out

    def torch_requirements(self, env: dict) -> list[Requirement]:
        return [r for r in self.requirements(env) if canonicalize_name(r.name) == "torch"]


def _metadata_member(files, name: str) -> str | None:
    for member in files:
        parts = member.split("/")
        if len(parts) == 2 and parts[1] == "METADATA" and parts[0].endswith(".dist-info"):
            dist = parts[0][: -len(".dist-info")].rsplit("-", 1)[0]
            if canonicalize_name(dist) == name:
                return member
    return None


# --- the target ---------------------------------------------------------------

_MANYLINUX = re.compile(r"^manylinux_(\d+)_(\d+)_(.+)$")
_LEGACY = {"manylinux1": (2, 5), "manylinux2010": (2, 12), "manylinux2014": (2, 17)}


def _glibc(platform_tag: str) -> tuple[tuple[int, int], str] | None:
    m = _MANYLINUX.match(platform_tag)
    if m:
        return (int(m.group(1)), int(m.group(2))), m.group(3)
    for legacy, glibc in _LEGACY.items():
        if platform_tag.startswith(legacy + "_"):
            return glibc, platform_tag[len(legacy) + 1:]
    return None


@dataclass(frozen=True)
class Target:
    """One Python, one arch, and the platform tags a wheel may carry."""

    python: str                       # "3.11"
    arch: str                         # "x86_64"
    row_platforms: tuple[str, ...]    # the row's wheel platforms for this arch (newest glibc they need)

    @classmethod
    def for_stack(cls, stack: Stack) -> "Target":
        plats = tuple(p for p in stack.row.wheel["platforms"] if p.endswith("_" + stack.arch))
        if not plats:
            raise UserError(f"matrix row torch_npu {stack.row.torch_npu} has no {stack.arch} wheel platform "
                            f"(it lists {', '.join(stack.row.wheel['platforms'])})")
        return cls(python=stack.python, arch=stack.arch, row_platforms=plats)

    @property
    def interpreter(self) -> str:
        return python_tag(self.python)

    @property
    def glibc(self) -> tuple[int, int]:
        """The newest glibc the row's own wheels ask for: the wheelhouse asks no more of the host."""
        levels = [g for g, arch in filter(None, map(_glibc, self.row_platforms)) if arch == self.arch]
        return max(levels) if levels else (2, 17)

    @cached_property
    def platforms(self) -> tuple[str, ...]:
        """Every platform tag a wheel for this target may carry, most specific first:
        manylinux levels up to the row's glibc, the legacy aliases, then plain linux_<arch>
        (PyTorch's CPU index and local builds use that one)."""
        major, minor = self.glibc
        out = [f"manylinux_{major}_{m}_{self.arch}" for m in range(minor, 4, -1)]
        out += [f"{legacy}_{self.arch}" for legacy, g in sorted(_LEGACY.items(), key=lambda kv: kv[1], reverse=True)
                if g <= (major, minor)]
        out.append(f"linux_{self.arch}")
        return tuple(out)

    @property
    def pip_platforms(self) -> list[str]:
        """``pip download --platform`` values: every tag the target's glibc accepts. pip widens only the
        legacy manylinux2014/2010 names by itself, not manylinux_2_28: given that one alone, it skips a
        final release tagged for an older glibc and falls back to another version (a pre-release)."""
        return list(self.platforms)

    @cached_property
    def tags(self) -> frozenset:
        version = python_version(self.python)
        interp = self.interpreter
        found = set(ptags.cpython_tags(version, abis=[interp], platforms=list(self.platforms)))
        found |= set(ptags.compatible_tags(version, interp, platforms=list(self.platforms)))
        return frozenset(found)

    @cached_property
    def python_tags(self) -> frozenset:
        """(interpreter, abi) pairs this Python accepts."""
        return frozenset((t.interpreter, t.abi) for t in self.tags)

    @cached_property
    def platform_tags(self) -> frozenset:
        return frozenset(t.platform for t in self.tags)

    @property
    def marker_env(self) -> dict:
        """PEP 508 marker values of the target (not of this host)."""
        env = default_environment()
        major, minor = python_version(self.python)
        env.update({
            "implementation_name": "cpython", "platform_python_implementation": "CPython",
            "implementation_version": f"{major}.{minor}.0", "python_version": f"{major}.{minor}",
            "python_full_version": f"{major}.{minor}.0", "os_name": "posix", "sys_platform": "linux",
            "platform_system": "Linux", "platform_machine": self.arch, "platform_release": "",
            "platform_version": "",
        })
        return env

    def pip_args(self) -> list[str]:
        major, minor = python_version(self.python)
        args = ["--only-binary=:all:", "--implementation", "cp", "--python-version", f"{major}.{minor}",
                "--abi", self.interpreter]
        for plat in self.pip_platforms:
            args += ["--platform", plat]
        return args

    def describe(self) -> str:
        return f"Python {self.python} ({self.interpreter}) on {self.arch} (glibc <= {self.glibc[0]}.{self.glibc[1]})"

    def to_dict(self) -> dict:
        return {"python": self.python, "arch": self.arch, "interpreter": self.interpreter,
                "platforms": list(self.platforms), "row_platforms": list(self.row_platforms)}


# --- checks -------------------------------------------------------------------

def _tag_text(tags) -> str:
    return ", ".join(sorted(str(t) for t in tags))


def check_tags(wheel: WheelInfo, target: Target) -> None:
    """The wheel's Python tags and platform tags must fit the target; names both when not."""
    if wheel.tags & target.tags:
        return
    py_ok = any((t.interpreter, t.abi) in target.python_tags for t in wheel.tags)
    plat_ok = any(t.platform in target.platform_tags for t in wheel.tags)
    wheel_py = sorted({f"{t.interpreter}-{t.abi}" for t in wheel.tags})
    wheel_plat = sorted({t.platform for t in wheel.tags})
    problems = []
    if not py_ok:
        problems.append(f"its Python tags {', '.join(wheel_py)} do not fit the requested Python {target.python} "
                        f"({target.interpreter})")
    if not plat_ok:
        problems.append(f"its platform tags {', '.join(wheel_plat)} do not fit the requested {target.arch} "
                        f"({target.platforms[0]} or older, or {target.platforms[-1]})")
    if not problems:
        problems.append(f"its tags {_tag_text(wheel.tags)} fit neither Python {target.python} nor {target.arch} together")
    raise WheelError(f"{wheel.filename}: {'; '.join(problems)}")


def check_torch_pin(wheel: WheelInfo, stack: Stack, target: Target, required: bool) -> str | None:
    """The wheel's ``Requires-Dist`` torch pin must be the row's torch.

    Returns the requirement text (None when the wheel declares none and that is allowed).
    """
    row = stack.row
    reqs = wheel.torch_requirements(target.marker_env)
    if not reqs:
        if required:
            raise WheelError(
                f"{wheel.filename}: declares no Requires-Dist on torch, but matrix row torch_npu {row.torch_npu} "
                f"records {row.torch_requirement(stack.arch)!r} for {stack.arch}; this is not the row's wheel")
        return None
    for req in reqs:
        text = str(req)
        pin = torch_pin(text)
        if pin is None:
            raise WheelError(f"{wheel.filename}: Requires-Dist {text!r} does not pin one torch version; "
                             f"matrix row torch_npu {row.torch_npu} needs torch {row.torch}")
        if pin != Version(row.torch):
            raise WheelError(f"{wheel.filename}: Requires-Dist {text!r} pins torch {pin}, but matrix row "
                             f"torch_npu {row.torch_npu} pins torch {row.torch}")
    return "; ".join(str(r) for r in reqs)


def check_version(wheel: WheelInfo, expected: str, what: str) -> None:
    if Version(wheel.version.public) != Version(expected):
        raise WheelError(f"{wheel.filename}: is {wheel.name} {wheel.version}, but the matrix row needs "
                         f"{what} {expected}")


def torch_cuda_evidence(wheel: WheelInfo, target: Target) -> list[str]:
    """Why a torch wheel is a CUDA build (empty for a CPU build)."""
    found = [f for f in wheel.files if f.rsplit("/", 1)[-1].startswith(("libtorch_cuda", "libc10_cuda"))]
    needs = [str(r) for r in wheel.requirements(target.marker_env) if canonicalize_name(r.name).startswith("nvidia-")]
    evidence = []
    if found:
        evidence.append(f"it ships {found[0]}")
    if needs:
        evidence.append(f"it requires {', '.join(needs[:3])}{' ...' if len(needs) > 3 else ''}")
    return evidence


def check_cpu_torch(wheel: WheelInfo, stack: Stack, target: Target) -> None:
    check_version(wheel, stack.row.torch, "torch")
    evidence = torch_cuda_evidence(wheel, target)
    if evidence:
        raise WheelError(f"{wheel.filename}: is a CUDA build of torch ({'; '.join(evidence)}); the wheelhouse "
                         f"takes the CPU build (torch=={stack.row.torch}+cpu on x86_64) from the torch source")


def cuda_linked_libraries(wheel: WheelInfo) -> dict[str, list[str]]:
    """Native extensions of the wheel that link CUDA libraries: {member: [needed libs]}."""
    out: dict[str, list[str]] = {}
    with zipfile.ZipFile(wheel.path) as zf:
        for info in zf.infolist():
            base = info.filename.rsplit("/", 1)[-1]
            if not (base.endswith(".so") or ".so." in base) or info.file_size > ELF_SCAN_LIMIT:
                continue
            needed = elf_needed(zf.read(info))
            cuda = [n for n in needed if n.startswith(CUDA_LIBRARIES)]
            if cuda:
                out[info.filename] = cuda
    return out


# --- ELF ----------------------------------------------------------------------

def elf_needed(data: bytes) -> list[str]:
    """The DT_NEEDED entries of an ELF shared object (empty when ``data`` is not ELF)."""
    if len(data) < 64 or data[:4] != b"\x7fELF" or data[4] not in (1, 2) or data[5] not in (1, 2):
        return []
    is64, end = data[4] == 2, "<" if data[5] == 1 else ">"
    try:
        if is64:
            phoff, = struct.unpack_from(end + "Q", data, 0x20)
            phentsize, phnum = struct.unpack_from(end + "HH", data, 0x36)
        else:
            phoff, = struct.unpack_from(end + "I", data, 0x1C)
            phentsize, phnum = struct.unpack_from(end + "HH", data, 0x2A)
        loads, dynamic = [], None
        for i in range(phnum):
            off = phoff + i * phentsize
            if is64:
                p_type, _flags, p_offset, p_vaddr, _paddr, p_filesz = struct.unpack_from(end + "IIQQQQ", data, off)
            else:
                p_type, p_offset, p_vaddr, _paddr, p_filesz = struct.unpack_from(end + "IIIII", data, off)
            if p_type == 1:
                loads.append((p_vaddr, p_offset, p_filesz))
            elif p_type == 2:
                dynamic = (p_offset, p_filesz)
        if dynamic is None:
            return []
        entry = struct.Struct(end + ("qQ" if is64 else "iI"))
        needed, strtab = [], None
        for off in range(dynamic[0], dynamic[0] + dynamic[1], entry.size):
            tag, val = entry.unpack_from(data, off)
            if tag == 0:
                break
            if tag == 1:
                needed.append(val)
            elif tag == 5:
                strtab = val
        if strtab is None:
            return []
        base = next((o + strtab - v for v, o, size in loads if v <= strtab < v + size), None)
        if base is None:
            return []
        names = []
        for idx in needed:
            start = base + idx
            stop = data.index(b"\0", start)
            names.append(data[start:stop].decode("utf-8", "replace"))
        return names
    except (struct.error, ValueError):
        return []

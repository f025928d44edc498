"""Build an image for a resolved stack: check the inputs, render the build
context into a temporary directory, run the engine, tag only on success.

Inputs are checked here before anything is built, so that a missing or
mismatched installer is a clear error (the expected file name and checksum)
rather than a failure deep in a build log. The Dockerfile checks them again
inside the build (the same SHA256s, passed as build args).
"""
from __future__ import annotations

import datetime as dt
import os
import platform as host_platform
import re
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from compat_matrix import Stack, UserError, checksums
from torch_npu_pkg import wheelhouse as wh

from . import engine as engines
from . import render

Log = Callable[[str], None]
SUMS = checksums.SUMS_FILE
# A reference as docker and podman accept it: [registry[:port]/]path[:tag], lower case path.
_TAG_RE = re.compile(r"^(?:[a-zA-Z0-9.-]+(?::\d+)?/)?[a-z0-9]+(?:[._-]+[a-z0-9]+)*(?:/[a-z0-9]+(?:[._-]+[a-z0-9]+)*)*"
                     r"(?::[\w][\w.-]{0,127})?$")


def _quiet(_msg: str) -> None:
    pass


# --- inputs ------------------------------------------------------------------------

def needed_installers(stack: Stack) -> list[tuple[str, str, str]]:
    """(kind, file name, build arg) of every file the build takes from the installer directory."""
    out = [(i["kind"], i["file"], i["arg"]) for i in render.cann_installers(stack)]
    py = render.python_plan(stack)
    if py.mode == "source":
        out.append((render.PYTHON_SOURCE_KIND, py.file, render.build_arg(render.PYTHON_SOURCE_KIND)))
    return out


def check_installers(stack: Stack, directory: Path) -> dict[str, str]:
    """Every installer the image needs is in ``directory``, listed in its
    SHA256SUMS and has that checksum. Returns {build arg: sha256}."""
    directory = Path(directory)
    if not directory.is_dir():
        raise UserError(f"--installers {directory}: no such directory; it should hold the vendor's .run "
                        f"packages and their {SUMS}")
    sums = checksums.read_sums(directory)
    problems, args = [], {}
    for kind, name, arg in needed_installers(stack):
        why = checksums.problem(directory / name, name, sums, directory / SUMS)
        if why is None:
            args[arg] = sums[name]
        elif not (directory / name).is_file():
            expected = sums.get(name)
            listed = f"{SUMS} expects sha256 {expected}" if expected else f"not listed in {SUMS} either"
            problems.append(f"{kind}: {name} is missing from {directory} ({listed})")
        else:
            problems.append(f"{kind}: {why}")
    if problems:
        what = f"CANN {stack.row.cann} ({stack.row.packaging} packaging), {stack.chip}, {stack.arch}"
        raise UserError(f"the installer directory does not hold what the image needs for {what}:\n  "
                        + "\n  ".join(problems))
    return args


def check_wheelhouse(stack: Stack, house: Path) -> dict[str, str]:
    """The wheelhouse was built for this row, Python and arch and is whole.
    Returns the build args keyed on its requirements (the layer cache keys)."""
    house = Path(house)
    if not house.is_dir():
        raise UserError(f"--wheelhouse {house}: no such directory; build one with `npuenv wheelhouse build` "
                        f"(make wheelhouse)")
    built_for = wh.load_manifest(house)["stack"]
    want = {"torch_npu": stack.row.torch_npu, "python": stack.python, "arch": stack.arch}
    got = {k: built_for.get(k) for k in want}
    if got != want:
        raise UserError(f"the wheelhouse {house} was built for torch_npu {got['torch_npu']}, Python {got['python']}, "
                        f"{got['arch']}; the image is for torch_npu {want['torch_npu']}, Python {want['python']}, "
                        f"{want['arch']}. Build a matching one: npuenv wheelhouse build --row {want['torch_npu']} "
                        f"--python {want['python']} --arch {want['arch']} --out DIR")
    problems = wh.verify(house)
    if problems:
        raise UserError(f"the wheelhouse {house} is not whole:\n  " + "\n  ".join(problems))
    requirements = (house / wh.REQUIREMENTS).read_text(encoding="utf-8")
    return {render.WHEELHOUSE_ARG: render.sha256_text(requirements),
            render.PYTHON_DEPS_ARG: render.sha256_text(render.python_deps(requirements))}


def oci_platform(stack: Stack) -> str:
    """linux/amd64 or linux/arm64: the OCI name is the arch's first alias in platforms.yaml."""
    aliases = stack.platforms.archs[stack.arch].get("aliases") or [stack.arch]
    return f"linux/{aliases[0]}"


def check_arch(stack: Stack) -> None:
    host = stack.platforms.canonical_arch(host_platform.machine())
    if host == stack.arch:
        return
    handler = Path("/proc/sys/fs/binfmt_misc") / f"qemu-{stack.arch}"
    if not handler.exists():
        raise UserError(f"building a {stack.arch} image on this {host} host needs emulation, and no "
                        f"binfmt handler for {stack.arch} is registered ({handler} is missing); install "
                        f"qemu-user-static (apt-get install qemu-user-static binfmt-support) or build on a "
                        f"{stack.arch} host")


def parse_user_ids(text: str) -> tuple[str, str]:
    """'1001:1001' -> ('1001', '1001'): HwHiAiUser's uid and gid in the image."""
    m = re.fullmatch(r"(\d+):(\d+)", text.strip())
    if not m or m.group(1) == "0":
        raise UserError(f"--user-ids {text!r}: give the host's HwHiAiUser ids as UID:GID (`id HwHiAiUser`), "
                        f"not root's")
    return m.group(1), m.group(2)


def build_date() -> str:
    """SOURCE_DATE_EPOCH when set (reproducible builds), else now; UTC, RFC 3339."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    when = dt.datetime.fromtimestamp(int(epoch), dt.timezone.utc) if epoch else dt.datetime.now(dt.timezone.utc)
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


# --- building ------------------------------------------------------------------------

@dataclass
class BuildResult:
    image_id: str
    tag: str
    engine: str
    seconds: float
    output: str = ""
    build_args: dict = field(default_factory=dict)


def build(stack: Stack, installers: Path, house: Path | None, *, cann_only: bool = False, tag: str | None = None,
          engine: str | None = None, date: str | None = None, base_image: str | None = None,
          user_ids: str | None = None, no_cache: bool = False, log: Log = _quiet) -> BuildResult:
    """Build the image for ``stack`` and tag it; nothing is tagged when anything fails."""
    if house is None and not cann_only:
        raise UserError("--wheelhouse DIR is needed for the Python stack (make one with `npuenv wheelhouse "
                        "build`); or pass --cann-only for an image with the CANN layers only")
    if house is not None and cann_only:
        raise UserError("--cann-only builds no Python stack: leave out --wheelhouse")
    tag = tag or render.image_name(stack, cann_only)
    if not _TAG_RE.match(tag):
        raise UserError(f"--tag {tag!r} is not a valid image reference (e.g. registry.example/team/npu:2.13.0)")
    files = render.render(stack, cann_only)        # a stack the templates cannot serve fails before any work
    check_arch(stack)
    eng = engines.find(engine)
    build_args = check_installers(stack, installers)
    contexts = {render.load_manifest()["mounts"]["installers"]["context"]: str(Path(installers).resolve())}
    if house is not None:
        build_args.update(check_wheelhouse(stack, house))
        contexts[render.load_manifest()["mounts"]["wheelhouse"]["context"]] = str(Path(house).resolve())
    build_args["BUILD_DATE"] = date or build_date()
    if base_image:
        build_args["BASE_IMAGE"] = base_image
    if user_ids:
        build_args["USER_UID"], build_args["USER_GID"] = parse_user_ids(user_ids)

    with tempfile.TemporaryDirectory(prefix="npuenv-image-") as tmp:
        ctx = render.write_context(files, Path(tmp) / "context")
        iidfile = Path(tmp) / "image-id"
        cmd = eng.build_command(dockerfile=str(ctx / render.DOCKERFILE), context=str(ctx), contexts=contexts,
                                build_args=build_args, platform=oci_platform(stack), iidfile=str(iidfile),
                                no_cache=no_cache)
        log(f"building {tag} with {eng.name} ({oci_platform(stack)})")
        started = time.monotonic()
        output = _run_streaming(cmd, log)
        seconds = time.monotonic() - started
        if output[0] != 0:
            tail = "\n".join(output[1].splitlines()[-25:])
            raise UserError(f"{eng.name} build failed (exit {output[0]}); nothing was tagged. Last lines:\n{tail}")
        image_id = iidfile.read_text().strip().removeprefix("sha256:")
    tagged = subprocess.run(eng.command("tag", image_id, tag), capture_output=True, text=True)
    if tagged.returncode != 0:
        raise UserError(f"the image built ({image_id[:12]}) but `{eng.name} tag` failed: {tagged.stderr.strip()}")
    log(f"built {tag} ({image_id[:12]}) in {seconds:.0f} s")
    return BuildResult(image_id=image_id, tag=tag, engine=eng.name, seconds=seconds, output=output[1],
                       build_args=build_args)


def _run_streaming(cmd: list[str], log: Log) -> tuple[int, str]:
    """Run ``cmd``, passing each output line to ``log`` as it comes; returns (exit code, all output)."""
    lines = []
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            log(line.rstrip("\n"))
    return proc.returncode, "".join(lines)

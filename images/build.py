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

from compat_matrix import Stack, UserError, checksums, interrupts, outputs
from compat_matrix import lock as lock_mod
from compat_matrix.lock import Lock
from torch_npu_pkg import wheelhouse as wh

from . import engine as engines
from . import render
from . import sbom as sbom_mod
from .progress import Progress

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
        elif not (directory / name).exists():
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


def parse_user_ids(text: str, user: str) -> tuple[str, str]:
    """'1001:1001' -> ('1001', '1001'): the uid and gid in the image of ``user``, the account the driver
    runs as (render.image_user)."""
    m = re.fullmatch(r"(\d+):(\d+)", text.strip())
    if not m or m.group(1) == "0":
        raise UserError(f"--user-ids {text!r}: give the host's {user} ids as UID:GID (`id {user}`), not root's")
    return m.group(1), m.group(2)


def build_date() -> str:
    """SOURCE_DATE_EPOCH when set (reproducible builds), else now; UTC, RFC 3339."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    when = dt.datetime.fromtimestamp(int(epoch), dt.timezone.utc) if epoch else dt.datetime.now(dt.timezone.utc)
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


# --- building ------------------------------------------------------------------------

# Where the SBOM goes when no path is given (relative to the working directory, as the other
# commands' outputs under out/).
SBOM_DIR = Path("out/images")
SBOM_FORMAT_LABEL = f"{render.load_manifest()['labels']['namespace']}.sbom.format"


@dataclass
class BuildResult:
    image_id: str               # the tagged image (after the label-only step)
    tag: str
    engine: str
    seconds: float              # the whole command: engine build, SBOM, labels and tag
    output: str = ""            # the engine's output of the Dockerfile build
    build_args: dict = field(default_factory=dict)
    sbom: Path | None = None
    labels: dict = field(default_factory=dict)    # the labels the label-only step added
    phases: dict = field(default_factory=dict)    # seconds per phase
    steps: list = field(default_factory=list)     # (engine build step, seconds), in order
    lock: Lock | None = None                      # the lock the image carries


def default_sbom_path(tag: str) -> Path:
    return SBOM_DIR / sbom_mod.file_name(tag)


def image_kinds() -> tuple[str, ...]:
    """The installer kinds an image's lock pins (the CANN packages: no driver or firmware in an image)."""
    return tuple(k for k in lock_mod.INSTALLER_KINDS if k in render.load_manifest()["installers"])


def check_against_lock(stack: Stack, lock: Lock, sums: dict[str, str], house: Path | None,
                       installers: Path) -> None:
    """The installers and the wheelhouse are the lock's: each installer the lock pins for the image's
    entry has the lock's name and sha256 in the folder's SHA256SUMS, and a wheelhouse the lock
    recorded for the arch has the lock's digest."""
    entry = lock.entry(stack.arch, stack.os)
    pinned = entry.get("installers") or {}
    problems = []
    for kind, name, arg in needed_installers(stack):
        pin = pinned.get(kind)
        if pin is None:
            continue
        if pin["name"] != name:
            problems.append(f"{kind}: the lock pins {pin['name']}, the image needs {name}")
        elif sums.get(arg) != pin["sha256"]:
            problems.append(f"{kind}: {name} has sha256 {sums.get(arg)} in {Path(installers) / SUMS}, the lock pins "
                            f"{pin['sha256']}")
    wrong_house = lock_mod.wheelhouse_problem(lock.data, stack.arch, house) if house is not None else ""
    if wrong_house:
        problems.append(f"wheelhouse: {wrong_house}")
    if problems:
        raise UserError(f"the inputs are not the lock {lock.digest[:19]}'s (it was made from other files); nothing "
                        f"was built:\n  " + "\n  ".join(problems) + "\nbuild with the installers and wheelhouse the "
                        "lock was made from, or make a new lock from these (`npuenv lock --installers DIR`)")


def build(stack: Stack, installers: Path, house: Path | None, *, cann_only: bool = False, tag: str | None = None,
          engine: str | None = None, date: str | None = None, base_image: str | None = None,
          user_ids: str | None = None, no_cache: bool = False, sbom: Path | None = None,
          lock: Lock | None = None, make_lock: Callable[[Path | None, Path | None], Lock] | None = None,
          log: Log = _quiet) -> BuildResult:
    """Build the image for ``stack``, write its SBOM and tag it; nothing is tagged (and no SBOM
    written) when anything fails. The image carries a lock (a file, and its digest in a label):
    ``lock``, the lock ``stack`` is an entry of, against whose pins the inputs are checked; else the
    one ``make_lock(installers, wheelhouse)`` makes once the inputs are checked.

    Three phases: the engine builds the Dockerfile (untagged); the SBOM is assembled from the
    inputs and from what the built image holds; a label-only step adds what only the build knows
    (date, input checksums, base digest, the SBOM's file and sha256) and tags the result."""
    tag, sbom_path = _check_request(stack, house, cann_only, tag, sbom)
    files = render.render(stack, cann_only, lock)  # a stack the templates cannot serve fails before any work
    check_arch(stack)
    eng = engines.find(engine)
    build_args, contexts, installer_records = _checked_inputs(stack, installers, house)
    wheelhouse_manifest = None if house is None else wh.load_manifest(house)
    if lock is not None:
        check_against_lock(stack, lock, build_args, house, installers)
    elif make_lock is not None:
        lock = make_lock(Path(installers), house)   # the image's own lock, of the inputs just checked
        files = render.render(stack, cann_only, lock)
    base_ref = base_image or stack.platforms.operating_systems[stack.os]["base_image"]
    if base_image:
        build_args["BASE_IMAGE"] = base_image
    if user_ids:
        build_args["USER_UID"], build_args["USER_GID"] = parse_user_ids(user_ids, render.image_user(stack)["name"])
    created = date or build_date()
    progress = Progress(log)
    started = time.monotonic()

    with interrupts.interruptible(f"image build {tag}"):
        with tempfile.TemporaryDirectory(prefix="npuenv-image-") as tmp:
            ctx = render.write_context(files, Path(tmp) / "context")
            built_id, output = _engine_build(eng, stack, ctx, contexts, build_args, tag, base_ref, no_cache,
                                             progress, log)
            with progress.phase("SBOM: reading the built image"):
                base_digest, contents = _read_image(eng, built_id, base_ref, stack, cann_only)
                inputs = sbom_mod.Inputs(image=tag, image_id=built_id, created=created, base_image=base_ref,
                                         base_digest=base_digest, installers=installer_records,
                                         wheelhouse=wheelhouse_manifest)
                sbom_text = sbom_mod.assemble(stack, cann_only, inputs, contents)
            labels = _labels(inputs, build_args, sbom_path.name, sbom_text)
            with progress.phase("labels and tag"):
                final_id = _add_labels(eng, built_id, labels, tag, Path(tmp) / "labels", progress)
        try:
            outputs.write_text(sbom_path, sbom_text, "--sbom")
        except BaseException:
            subprocess.run(eng.command("rmi", tag), capture_output=True)  # nothing tagged without its SBOM
            raise
    seconds = time.monotonic() - started
    log(f"npuenv: built {tag} ({final_id[:12]}) in {seconds:.0f} s: {progress.summary()}; SBOM {sbom_path}")
    return BuildResult(image_id=final_id, tag=tag, engine=eng.name, seconds=seconds, output=output,
                       build_args=build_args, sbom=sbom_path, labels=labels, phases=dict(progress.phases),
                       steps=list(progress.steps), lock=lock)


def _labels(inputs: sbom_mod.Inputs, build_args: dict, sbom_name: str, sbom_text: str) -> dict[str, str]:
    """What only the build knows, as the image's labels: date, input checksums, base, the SBOM."""
    return render.build_labels(
        created=inputs.created, base_name=inputs.base_image, base_digest=inputs.base_digest,
        installer_sums={i["kind"]: i["sha256"] for i in inputs.installers},
        requirements_sha256=build_args.get(render.WHEELHOUSE_ARG),
        sbom={"file": sbom_name, "sha256": render.sha256_text(sbom_text), "format": sbom_mod.FORMAT})


def _check_request(stack: Stack, house: Path | None, cann_only: bool, tag: str | None,
                   sbom: Path | None) -> tuple[str, Path]:
    """The options agree with each other; returns the image's tag and the SBOM's path."""
    if house is None and not cann_only:
        raise UserError("--wheelhouse DIR is needed for the Python stack (make one with `npuenv wheelhouse "
                        "build`); or pass --cann-only for an image with the CANN layers only")
    if house is not None and cann_only:
        raise UserError("--cann-only builds no Python stack: leave out --wheelhouse")
    tag = tag or render.image_name(stack, cann_only)
    if not _TAG_RE.match(tag):
        raise UserError(f"--tag {tag!r} is not a valid image reference (e.g. registry.example/team/npu:2.13.0)")
    return tag, outputs.check_file_output(Path(sbom) if sbom else default_sbom_path(tag), "--sbom")


def _checked_inputs(stack: Stack, installers: Path, house: Path | None) -> tuple[dict, dict, list[dict]]:
    """The installers (and the wheelhouse) checked: the build arguments they give, the build contexts
    that mount them, and a record of each installer."""
    build_args = check_installers(stack, installers)
    installer_records = [{"kind": kind, "file": name, "sha256": build_args[arg]}
                         for kind, name, arg in needed_installers(stack)]
    contexts = {render.load_manifest()["mounts"]["installers"]["context"]: str(Path(installers).resolve())}
    if house is not None:
        build_args.update(check_wheelhouse(stack, house))
        contexts[render.load_manifest()["mounts"]["wheelhouse"]["context"]] = str(Path(house).resolve())
    return build_args, contexts, installer_records


def _engine_build(eng: engines.Engine, stack: Stack, ctx: Path, contexts: dict, build_args: dict, tag: str,
                  base_ref: str, no_cache: bool, progress: Progress, log: Log) -> tuple[str, str]:
    """The engine builds the rendered context, untagged; returns the image's id and the engine's output."""
    iidfile = ctx.parent / "image-id"   # beside the context, not in it
    cmd = eng.build_command(dockerfile=str(ctx / render.DOCKERFILE), context=str(ctx), contexts=contexts,
                            build_args=build_args, platform=oci_platform(stack), iidfile=str(iidfile),
                            no_cache=no_cache)
    log(f"building {tag} with {eng.name} ({oci_platform(stack)})")
    with progress.phase(f"{eng.name} build"), eng.removing_stopped_builds(progress, base_ref):
        code, output = progress.run(cmd)
        if code != 0:
            tail = "\n".join(output.splitlines()[-25:])
            raise UserError(f"{eng.name} build failed (exit {code}); nothing was tagged. Last lines:\n{tail}")
        return iidfile.read_text().strip().removeprefix("sha256:"), output


def _read_image(eng: engines.Engine, built_id: str, base_ref: str, stack: Stack,
                cann_only: bool) -> tuple[str, sbom_mod.ImageContents]:
    """What the SBOM needs from the engine: the base image's digest and what the built image holds."""
    base = eng.inspect(base_ref) or {}
    probe = eng.run_in_image(built_id, sbom_mod.probe_command(stack, cann_only))
    if probe.returncode != 0:
        raise UserError(f"reading the built image {built_id[:12]} for its SBOM failed (exit "
                        f"{probe.returncode}); nothing was tagged:\n{probe.stderr.strip()[-2000:]}")
    return base.get("digest", ""), sbom_mod.parse_probe(probe.stdout)


def _add_labels(eng: engines.Engine, image_id: str, labels: dict[str, str], tag: str, workdir: Path,
                progress: Progress) -> str:
    """A label-only build on top of ``image_id`` (no new layer), tagged ``tag``; returns its id."""
    workdir.mkdir()
    words = " \\\n      ".join(f"{k}={render.quote(v)}" for k, v in labels.items())
    (workdir / render.DOCKERFILE).write_text(f"FROM {image_id}\nLABEL {words}\n", encoding="utf-8")
    iidfile = workdir / "image-id"
    cmd = eng.build_command(dockerfile=str(workdir / render.DOCKERFILE), context=str(workdir), contexts={},
                            build_args={}, platform=None, iidfile=str(iidfile), tag=tag)
    with eng.removing_stopped_builds(progress, image_id):
        code, output = progress.run(cmd)
    if code != 0:
        tail = "\n".join(output.splitlines()[-10:])
        raise UserError(f"the image built ({image_id[:12]}) but its label-only step failed (exit {code}); "
                        f"nothing was tagged:\n{tail}")
    return iidfile.read_text().strip().removeprefix("sha256:")

"""Building torch_npu from source: the builder image, the checkout, the build
driver and the wheel's provenance.

The vendor's interface is small and stable: a source tree with submodules, and
``bash ci/build.sh --python=3.X`` leaving ``dist/*.whl`` (CANN is not needed;
the build compiles stub libraries). The builder image is manylinux_2_28 with the
gcc toolset and cmake that the vendor's build guide names for the row's torch
line (``data/builder.yaml``). Two runners execute the build: ``podman`` (the
builder image, the tree mounted in) and ``local`` (this host's toolchain).
"""
from __future__ import annotations

import datetime as dt
import os
import re
import shlex
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Callable

import yaml
from packaging.version import Version

from compat_matrix import Stack, UserError
from compat_matrix.model import Row
from compat_matrix.checksums import sha256_file
from compat_matrix.versions import python_tag

from .wheels import Target, WheelError, WheelInfo, check_tags

DATA = Path(__file__).resolve().parent / "data" / "builder.yaml"
RUNNERS = ("podman", "local")
LOG_TAIL_LINES = 25
TOOLCHAIN_PROBE = ('echo "npuenv-toolchain gcc=$(gcc -dumpfullversion 2>/dev/null || echo none)'
                   ' cmake=$( (cmake --version 2>/dev/null || echo "cmake version none") | head -n1 | cut -d" " -f3)"')

Log = Callable[[str], None]


def _quiet(_msg: str) -> None:
    pass


@lru_cache(maxsize=1)
def builder_facts() -> dict:
    with open(DATA, encoding="utf-8") as f:
        return yaml.safe_load(f)


# --- toolchain and builder image ------------------------------------------------

@dataclass(frozen=True)
class Toolchain:
    torch_line: str
    arch: str
    gcc: str
    cmake: str
    source: str
    inferred: bool = False
    note: str = ""

    @property
    def gcc_major(self) -> int:
        return int(self.gcc.split(".")[0])

    @property
    def cmake_requirement(self) -> str:
        """A pip requirement for the guide's cmake: an exact release, or the guide's minimum."""
        if self.cmake[:1] in "<>=!~":
            return f"cmake{self.cmake}"
        return f"cmake=={self.cmake}.*"

    def fill(self, template: str, **extra) -> str:
        return template.format(arch=self.arch, gcc_major=self.gcc_major, **extra)

    def to_dict(self) -> dict:
        return {"torch_line": self.torch_line, "arch": self.arch, "gcc": self.gcc, "cmake": self.cmake,
                "gcc_toolset": self.fill(builder_facts()["builder"]["gcc_toolset"]["package"]),
                "source": self.source, "inferred": self.inferred, "note": self.note}


def torch_line(torch: str) -> str:
    v = Version(torch)
    return f"{v.major}.{v.minor}"


def toolchain_for(stack: Stack) -> Toolchain:
    line = torch_line(stack.row.torch)
    entry = builder_facts()["toolchains"].get(line)
    if entry is None or stack.arch not in entry:
        known = ", ".join(builder_facts()["toolchains"])
        raise UserError(f"no builder toolchain for torch {line} on {stack.arch} in {DATA}; known torch lines: {known}")
    spec = entry[stack.arch]
    return Toolchain(torch_line=line, arch=stack.arch, gcc=str(spec["gcc"]), cmake=str(spec["cmake"]),
                     source=entry["source"], inferred=bool(entry.get("inferred")), note=entry.get("note", ""))


def builder_image_name(stack: Stack, toolchain: Toolchain | None = None) -> str:
    tc = toolchain or toolchain_for(stack)
    cmake = re.sub(r"[^0-9A-Za-z.]", "", tc.cmake)
    return (f"localhost/npuenv-torch-npu-builder:torch{tc.torch_line}-{python_tag(stack.python)}-{stack.arch}"
            f"-gcc{tc.gcc_major}-cmake{cmake}")


def render_containerfile(stack: Stack, toolchain: Toolchain | None = None) -> str:
    """The builder image for a row, Python and arch (manylinux_2_28 + the guide's toolchain)."""
    tc = toolchain or toolchain_for(stack)
    b = builder_facts()["builder"]
    cp = python_tag(stack.python)
    base = tc.fill(b["base_image"])
    toolset = tc.fill(b["gcc_toolset"]["package"])
    root = tc.fill(b["gcc_toolset"]["root"])
    pybin = b["python_bin"].format(cp=cp)
    pip_reqs = " ".join(shlex.quote(r) for r in [tc.cmake_requirement, *b["build_requirements"]])
    env = " \\\n    ".join(f"{k}={shlex.quote(str(v))}" for k, v in b["env"].items())
    inferred = f"\n# NOTE: inferred, not stated by the guide: {tc.note}" if tc.inferred else ""
    return f"""\
# torch_npu builder for torch_npu {stack.row.torch_npu} (torch {stack.row.torch}), Python {stack.python}, {stack.arch}.
# Rendered by `npuenv wheelhouse containerfile` from compat_matrix and torch_npu_pkg/data/builder.yaml.
# Toolchain named by the vendor's build guide for torch {tc.torch_line} on {stack.arch}:
#   gcc {tc.gcc} ({toolset}), cmake {tc.cmake}
#   {tc.source}{inferred}
# Base image: {b['base_image_source']}
FROM {base}

RUN yum install -y {toolset} {' '.join(b['system_packages'])} \\
 && yum clean all

# The toolset's compilers and the chosen CPython (with the pinned cmake) come first.
ENV PATH={root}/usr/bin:{pybin}:$PATH \\
    LD_LIBRARY_PATH={root}/usr/lib64:{root}/usr/lib \\
    {env}

RUN {pybin}/python{stack.python} -m pip install --no-cache-dir {pip_reqs} \\
 && git config --system --add safe.directory '*'

LABEL org.opencontainers.image.title="npuenv torch_npu builder" \\
      io.npuenv.builder.torch="{tc.torch_line}" \\
      io.npuenv.builder.python="{stack.python}" \\
      io.npuenv.builder.arch="{stack.arch}" \\
      io.npuenv.builder.gcc="{tc.gcc}" \\
      io.npuenv.builder.cmake="{tc.cmake}" \\
      io.npuenv.builder.base="{base}"

WORKDIR {b['workdir']}
"""


def build_builder_image(stack: Stack, engine: str = "podman", tag: str | None = None, log: Log = _quiet) -> str:
    """``podman build`` the rendered Containerfile (needs the base image's registry)."""
    if shutil.which(engine) is None:
        raise UserError(f"{engine} is not installed; the builder image needs a container engine "
                        f"(or use --build-runner local with a host toolchain)")
    tag = tag or builder_image_name(stack)
    with tempfile.TemporaryDirectory(prefix="npuenv-builder-") as ctx:
        (Path(ctx) / "Containerfile").write_text(render_containerfile(stack), encoding="utf-8")
        log(f"building builder image {tag}")
        proc = subprocess.run([engine, "build", "-t", tag, "-f", str(Path(ctx) / "Containerfile"), ctx],
                              capture_output=True, text=True)
    if proc.returncode != 0:
        raise UserError(f"building the builder image {tag} failed ({engine} build exited {proc.returncode}):\n"
                        + _tail(proc.stdout + proc.stderr))
    return tag


# --- source ---------------------------------------------------------------------

def default_repo(row: Row) -> str | None:
    """The vendor repository, read from the row's adapter source URL."""
    m = re.match(r"^(https://[^/]+/[^/]+/[^/]+?)(?:\.git)?(?:/(?:tree|tags|releases)\b.*)?$",
                 row.sources.get("adapter") or "")
    return m.group(1) if m else None


def default_ref(row: Row) -> str | None:
    return row.adapter.get("tag") or row.adapter.get("branch")


@dataclass
class SourceInfo:
    tree: Path
    repo: str | None
    ref: str | None
    commit: str
    describe: str
    dirty: bool
    submodules: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"repo": self.repo, "ref": self.ref, "commit": self.commit, "describe": self.describe,
                "dirty": self.dirty, "submodules": dict(self.submodules)}


def _git(*args: str, cwd: Path | None = None, local_files: bool = False) -> subprocess.CompletedProcess:
    if shutil.which("git") is None:
        raise UserError("git is not installed; the source build checks out the vendor's tree with git")
    cmd = ["git", *(["-c", "protocol.file.allow=always"] if local_files else []), *args]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)


def _is_local(repo: str) -> bool:
    return repo.startswith("file://") or repo.startswith("/") or Path(repo).exists()


def checkout(repo: str, ref: str, dest: Path, log: Log = _quiet) -> SourceInfo:
    """Clone ``repo`` at tag/branch ``ref`` with its submodules into ``dest`` (which must not exist)."""
    log(f"checking out {repo} at {ref} (with submodules)")
    proc = _git("clone", "--quiet", "--depth", "1", "--branch", ref, "--recurse-submodules",
                "--shallow-submodules", repo, str(dest), local_files=_is_local(repo))
    if proc.returncode != 0:
        raise UserError(f"cannot check out {ref} of {repo}: git clone exited {proc.returncode}: "
                        f"{proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else 'no message'}")
    return source_info(dest, repo=repo, ref=ref)


def source_info(tree: Path, repo: str | None = None, ref: str | None = None) -> SourceInfo:
    tree = Path(tree)
    if not (tree / "ci" / "build.sh").is_file():
        raise UserError(f"{tree} is not a torch_npu source tree: it has no ci/build.sh")
    head = _git("rev-parse", "HEAD", cwd=tree)
    if head.returncode != 0:
        raise UserError(f"{tree} is not a git checkout (git rev-parse HEAD failed): the build's provenance "
                        f"needs the commit; clone the vendor's repository instead")
    describe = _git("describe", "--tags", "--always", cwd=tree).stdout.strip()
    dirty = bool(_git("status", "--porcelain", "--untracked-files=no", cwd=tree).stdout.strip())
    subs = {}
    for line in _git("submodule", "status", "--recursive", cwd=tree).stdout.splitlines():
        parts = line[1:].split()
        if len(parts) >= 2:
            subs[parts[1]] = parts[0]
    if repo is None:
        repo = _git("config", "--get", "remote.origin.url", cwd=tree).stdout.strip() or None
    return SourceInfo(tree=tree, repo=repo, ref=ref or describe, commit=head.stdout.strip(), describe=describe,
                      dirty=dirty, submodules=subs)


# --- the build -----------------------------------------------------------------

@dataclass
class BuildOptions:
    runner: str = "podman"
    image: str | None = None          # builder image (default: the rendered one's name)
    engine: str = "podman"
    source_tree: Path | None = None   # an existing checkout instead of a fresh clone
    repo: str | None = None           # default: from the matrix row
    ref: str | None = None            # default: the row's adapter tag (or branch)
    work_dir: Path | None = None      # checkouts and logs (default: a temporary directory)
    network: str | None = None        # podman --network for the build container
    torch_wheel: Path | None = None   # the CPU torch to install in the builder before building
    install_torch: bool = True        # False: the builder image already has the row's torch


def _tail(text: str, lines: int = LOG_TAIL_LINES) -> str:
    return "\n".join("    " + line for line in text.rstrip().splitlines()[-lines:])


def _run_logged(cmd: list[str], cwd: Path, env: dict | None, log_path: Path, log: Log) -> int:
    with open(log_path, "a", encoding="utf-8") as out:
        out.write(f"$ {shlex.join(cmd)}\n")
        out.flush()
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, errors="replace")
        assert proc.stdout is not None
        for line in proc.stdout:
            out.write(line)
            log("  | " + line.rstrip("\n"))
        return proc.wait()


def _build_script(stack: Stack, install_torch: bool) -> str:
    b = builder_facts()["builder"]
    cmd = shlex.join(part.format(python=stack.python) for part in b["build_command"])
    steps = ["set -euo pipefail", TOOLCHAIN_PROBE]
    if install_torch:
        steps.append(f'python{stack.python} -m pip install --no-cache-dir "$NPUENV_TORCH_WHEEL"')
    steps.append(cmd)
    return "\n".join(steps)


def _dist_wheels(tree: Path) -> dict[Path, float]:
    glob = builder_facts()["builder"]["dist_glob"]
    return {p: p.stat().st_mtime for p in tree.glob(glob)}


def build_wheel(stack: Stack, opts: BuildOptions, target: Target, log: Log = _quiet) -> tuple[Path, dict]:
    """Check out (or take) the source tree, run the vendor's build, return the new wheel and its provenance."""
    if opts.runner not in RUNNERS:
        raise UserError(f"unknown build runner {opts.runner!r}; use one of: {', '.join(RUNNERS)}")
    toolchain = toolchain_for(stack)
    image, image_id = _builder_image(stack, opts, toolchain)   # before any checkout: a clone takes a while
    work = Path(opts.work_dir) if opts.work_dir else Path(tempfile.mkdtemp(prefix="npuenv-torch-npu-build-"))
    work.mkdir(parents=True, exist_ok=True)
    tree, info = _source_tree(stack.row, opts, work, log)
    if info.dirty:
        log(f"warning: {tree} has uncommitted changes; the provenance records the tree as dirty")
    before = _dist_wheels(tree)
    run = _run_build(stack, opts, tree, work, image, log)
    built = _new_wheel(tree, before, target, run.log_path)
    wheel_path = work / built.name
    shutil.copy2(built, wheel_path)
    if not opts.source_tree:
        shutil.rmtree(tree.parent, ignore_errors=True)   # our own clone; the wheel and the log are kept
    return wheel_path, _provenance(stack, opts, info, toolchain, (image, image_id), run, wheel_path)


def _builder_image(stack: Stack, opts: BuildOptions, toolchain: Toolchain) -> tuple[str | None, str | None]:
    """The builder image's name and id for the podman runner (None, None for the local one)."""
    if opts.runner != "podman":
        return None, None
    if shutil.which(opts.engine) is None:
        raise UserError(f"{opts.engine} is not installed; use --build-runner local or install podman")
    image = opts.image or builder_image_name(stack, toolchain)
    inspect = subprocess.run([opts.engine, "image", "inspect", "--format", "{{.Id}}", image],
                             capture_output=True, text=True)
    if inspect.returncode != 0:
        raise UserError(f"builder image {image} is not present; build it first with "
                        f"`npuenv wheelhouse builder-image` (render it with `npuenv wheelhouse containerfile`) "
                        f"or name another with --builder-image")
    return image, inspect.stdout.strip()


def _source_tree(row: Row, opts: BuildOptions, work: Path, log: Log) -> tuple[Path, SourceInfo]:
    """The tree to build: the one given with --source-tree, or a fresh clone of the row's source under ``work``."""
    if opts.source_tree:
        tree = Path(opts.source_tree).resolve()
        if not tree.is_dir():
            raise UserError(f"--source-tree {tree} does not exist")
        return tree, source_info(tree, repo=opts.repo)
    repo = opts.repo or default_repo(row)
    ref = opts.ref or default_ref(row)
    if not repo:
        raise UserError(f"matrix row torch_npu {row.torch_npu} names no source repository; pass --source-repo URL")
    if not ref:
        raise UserError(f"matrix row torch_npu {row.torch_npu} has no adapter tag or branch to build from "
                        f"(its adapter is {row.adapter}); pass --source-ref TAG")
    dest = Path(tempfile.mkdtemp(prefix="src-", dir=work)) / "pytorch"
    return dest, checkout(repo, ref, dest, log)


@dataclass
class _Run:
    """One run of the vendor's build: its log and when it ran."""
    log_path: Path
    text: str
    started: dt.datetime
    finished: dt.datetime


def _run_build(stack: Stack, opts: BuildOptions, tree: Path, work: Path, image: str | None, log: Log) -> _Run:
    """Run the vendor's build in ``tree`` with the chosen runner, logging to a file under ``work``."""
    row = stack.row
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    log_path = work / f"build-{row.torch_npu}-{python_tag(stack.python)}-{stack.arch}-{stamp}.log"
    b = builder_facts()["builder"]
    install_torch = opts.runner == "podman" and opts.install_torch and opts.torch_wheel is not None
    script = _build_script(stack, install_torch)
    if opts.runner == "podman":
        cmd = [opts.engine, "run", "--rm", "-v", f"{tree}:{b['workdir']}", "-w", b["workdir"]]
        if opts.network:
            cmd += ["--network", opts.network]
        if install_torch:
            mount = f"/npuenv/torch/{Path(opts.torch_wheel).name}"
            cmd += ["-v", f"{Path(opts.torch_wheel).resolve()}:{mount}:ro", "-e", f"NPUENV_TORCH_WHEEL={mount}"]
        cmd += [image, "bash", "-c", script]
        cwd, env = work, None
    else:
        cmd = ["bash", "-c", script]
        cwd, env = tree, dict(os.environ)
    started = dt.datetime.now(dt.timezone.utc)
    log(f"building torch_npu {row.torch_npu} for Python {stack.python} ({opts.runner} runner"
        f"{', image ' + image if image else ''}); log: {log_path}")
    rc = _run_logged(cmd, cwd, env, log_path, log)
    finished = dt.datetime.now(dt.timezone.utc)
    text = log_path.read_text(encoding="utf-8", errors="replace")
    if rc != 0:
        raise UserError(f"the torch_npu source build failed: `{' '.join(b['build_command']).format(python=stack.python)}` "
                        f"exited {rc} in {tree} ({opts.runner} runner{', image ' + image if image else ''}).\n"
                        f"Last lines of the log:\n{_tail(text)}\nFull log: {log_path}")
    return _Run(log_path, text, started, finished)


def _new_wheel(tree: Path, before: dict[Path, float], target: Target, log_path: Path) -> Path:
    """The one wheel for ``target`` that the build added (or rewrote) under the tree's dist folder."""
    glob = builder_facts()["builder"]["dist_glob"]
    after = _dist_wheels(tree)
    new = sorted(p for p, mtime in after.items() if before.get(p) != mtime)
    if not new:
        raise UserError(f"the torch_npu source build exited 0 but left no new wheel under {tree}/{glob}; "
                        f"full log: {log_path}")
    fitting = []
    refusals = []
    for path in new:
        wheel = WheelInfo.read(path)
        try:
            check_tags(wheel, target)
            fitting.append(path)
        except WheelError as e:
            refusals.append(str(e))
    if len(fitting) != 1:
        found = ", ".join(p.name for p in new)
        raise UserError(f"the source build produced {len(fitting)} wheels for {target.describe()} "
                        f"(new under dist/: {found}){': ' + '; '.join(refusals) if refusals else ''}")
    return fitting[0]


# A built wheel's provenance (kept beside it, wheelhouse PROVENANCE_SUFFIX): its kind and format.
PROVENANCE_KEY = "npuenv_provenance"
PROVENANCE_VERSION = 1


def _provenance(stack: Stack, opts: BuildOptions, info: SourceInfo, toolchain: Toolchain,
                image: tuple[str | None, str | None], run: _Run, wheel_path: Path) -> dict:
    """Where the wheel came from and how it was built; ``image`` is the builder image's name and id."""
    b = builder_facts()["builder"]
    probe = re.search(r"npuenv-toolchain gcc=(\S+) cmake=(\S+)", run.text)
    return {
        PROVENANCE_KEY: PROVENANCE_VERSION,
        "kind": "source-build",
        "source": info.to_dict(),
        "runner": opts.runner,
        "builder_image": image[0],
        "builder_image_id": image[1],
        "base_image": toolchain.fill(b["base_image"]) if opts.runner == "podman" else None,
        "toolchain": {"guide": toolchain.to_dict(),
                      "used": {"gcc": probe.group(1) if probe else "unknown",
                               "cmake": probe.group(2) if probe else "unknown"}},
        "command": " ".join(b["build_command"]).format(python=stack.python),
        "python": stack.python,
        "started": run.started.isoformat(timespec="seconds"),
        "finished": run.finished.isoformat(timespec="seconds"),
        "log": str(run.log_path),
        "wheel": wheel_path.name,
        "sha256": sha256_file(wheel_path),
    }

"""``npuenv wheelhouse ...`` and ``npuenv bundle ...``: thin commands over the library.

Exit codes: 0 success, 1 a check failed (verify found problems, or no matrix
row fits), 2 bad input or environment (a wheel that does not match, a checksum
mismatch, a missing source, a failed build): the message says which and how to
fix it, and an existing wheelhouse or bundle is left as it was; 128 + the
signal's number when SIGINT or SIGTERM stopped it (nothing left behind).
"""
from __future__ import annotations

import functools
import os
import sys
from pathlib import Path

import compat_matrix as cm
from compat_matrix import outputs, render
from compat_matrix import lock as lock_mod
from compat_matrix.interrupts import interruptible
from compat_matrix.refs import check_image_ref
from compat_matrix.resolver import host_arch
from compat_matrix.cli_options import (RawDescriptionHelpFormatter, add_constraint_args, add_env_argument, add_lock_arg,
                                      constraints_from, load, lock_from)

from . import builder, bundle, wheelhouse


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _interruptible(what):
    """Run the command with SIGINT and SIGTERM turned into a clean stop (compat_matrix.interrupts):
    temporary files removed, a message and exit code 128 + the signal, no traceback."""
    def wrap(cmd):
        @functools.wraps(cmd)
        def run(args):
            with interruptible(what(args)):
                return cmd(args)
        return run
    return wrap


def _stack(args) -> cm.Stack | None:
    """The row's stack: the entry of --lock for the arch (--arch, else the one the lock has, else this
    host's; the wheels are the same on every OS of an arch), or the constraints resolved."""
    matrix = load(args)
    given = lock_from(args) if hasattr(args, "lock") else None
    if given is not None:
        arch = (matrix.platforms.canonical_arch(args.arch) or args.arch) if args.arch else None
        fits = [e for e in given.entries.values()
                if (arch is None or e["arch"] == arch) and (args.os is None or e["os"] == args.os)]
        if len({e["arch"] for e in fits}) > 1:
            fits = [e for e in fits if e["arch"] == host_arch(matrix)] or fits
        if not fits or len({e["arch"] for e in fits}) > 1:
            given.select(arch, args.os)   # raises, naming the entries
        entry = fits[0]   # the wheels are the same on every OS of an arch
        _log(f"the lock {given.digest[:19]}: torch_npu {given.row['torch_npu']}, Python {given.row['python']}, "
             f"{entry['arch']}")
        return given.stack(matrix, entry["arch"], entry["os"])
    try:
        res = cm.resolve(matrix, constraints_from(args))
    except cm.NoMatch as e:
        print(str(e), file=sys.stderr)
        return None
    _log(res.reason)
    return res.stack


def _mib(n: int) -> str:
    return f"{n / (1 << 20):.0f} MiB" if n >= 1 << 20 else f"{n / 1024:.0f} KiB"


# --- wheelhouse -------------------------------------------------------------------

MAIN_ROLES = ("torch", "torch_npu", "torchvision")


def wheel_lines(manifest: dict) -> list[str]:
    """A built wheelhouse's main wheels, one aligned line each (columns as wide as their content), then the
    count of the others."""
    main = [w for w in manifest["wheels"] if w["role"] in MAIN_ROLES]
    rows = [(w["role"], w["file"], _mib(w["size"]), f"{w['source'].get('kind')}: {w['source'].get('location')}")
            for w in main]
    cann = sum(1 for w in manifest["wheels"] if w["role"] == "cann-python-dep")
    return ["  " + line for line in render.aligned(rows, right=(2,))] + [
        f"  + {len(manifest['wheels']) - len(main)} more wheels ({cann} CANN Python dependencies and what they "
        f"all need)"]


@_interruptible(lambda args: f"wheelhouse build {args.out}")
def cmd_wheelhouse_build(args) -> int:
    outputs.check_dir_output(args.out, "--out")
    if args.builder_image:
        check_image_ref(args.builder_image, "--builder-image")
    if args.source_repo and args.source_repo.startswith("-"):
        raise cm.UserError(f"--source-repo {args.source_repo!r}: give a repository URL (https://...) or a folder")
    stack = _stack(args)
    if stack is None:
        return 1
    opts = wheelhouse.Options(
        out=args.out, torch_source=args.torch_source or "", sources=args.sources or list(wheelhouse.DEFAULT_SOURCES),
        index_url=args.index_url, offline=args.offline, torchvision=args.torchvision,
        find_links=list(args.find_links or ()), pre=args.pre,
        build=builder.BuildOptions(runner=args.build_runner, image=args.builder_image, source_tree=args.source_tree,
                                   repo=args.source_repo, ref=args.source_ref, work_dir=args.work_dir,
                                   network=args.build_network, install_torch=not args.builder_has_torch))
    manifest = wheelhouse.build(stack, opts, log=_log)
    s = manifest["stack"]
    out = Path(args.out)
    print(f"wheelhouse {out}: torch_npu {s['torch_npu']}, torch {s['torch']}, Python {s['python']}, {s['arch']}")
    for line in wheel_lines(manifest):
        print(line)
    for note in manifest["notes"]:
        print(f"  note: {note}")
    print(f"install offline: pip install --no-index --find-links {out} -r {out}/requirements.txt")
    return 0


@_interruptible(lambda args: f"wheelhouse verify {args.dir}")
def cmd_wheelhouse_verify(args) -> int:
    matrix = load(args)
    problems = wheelhouse.verify(args.dir, matrix)
    for p in problems:
        print(f"{args.dir}: {p}", file=sys.stderr)
    if problems:
        print(f"{args.dir}: {len(problems)} problem(s)", file=sys.stderr)
        return 1
    m = wheelhouse.load_manifest(args.dir)
    print(f"{args.dir}: ok ({len(m['wheels'])} wheels, torch_npu {m['stack']['torch_npu']}, "
          f"Python {m['stack']['python']}, {m['stack']['arch']})")
    return 0


def cmd_wheelhouse_containerfile(args) -> int:
    if args.output:
        outputs.check_file_output(args.output, "--output")
    stack = _stack(args)
    if stack is None:
        return 1
    text = builder.render_containerfile(stack)
    if args.output:
        outputs.write_text(args.output, text, "--output")
        print(f"{args.output}: builder for {builder.builder_image_name(stack)}")
    else:
        sys.stdout.write(text)
    return 0


def cmd_wheelhouse_builder_image(args) -> int:
    if args.tag:
        check_image_ref(args.tag, "--tag")
    stack = _stack(args)
    if stack is None:
        return 1
    print(builder.build_builder_image(stack, engine=args.engine, tag=args.tag, log=_log))
    return 0


# --- bundle -----------------------------------------------------------------------

@_interruptible(lambda args: f"bundle make {args.out}")
def cmd_bundle_make(args) -> int:
    outputs.check_file_output(args.out, "--out")
    manifest = wheelhouse.load_manifest(args.wheelhouse)
    s = manifest["stack"]
    matrix = load(args)
    given = lock_from(args)   # --chip chooses the row: refused beside --lock; --os picks its entry
    if given is not None:
        if args.installer:
            raise cm.UserError(f"--lock {args.lock} and --installer: the lock names the installers to bundle; "
                               f"drop --installer (or make a new lock with it)")
        entry = given.select(s["arch"], args.os)
        stack = given.stack(matrix, entry["arch"], entry["os"])
        if (s["torch_npu"], s["python"]) != (stack.row.torch_npu, stack.python):
            raise cm.UserError(f"{args.wheelhouse} was built for torch_npu {s['torch_npu']} / Python {s['python']}, "
                               f"the lock is of torch_npu {stack.row.torch_npu} / Python {stack.python}; build the "
                               f"lock's wheelhouse (`npuenv wheelhouse build --lock {args.lock}`)")
        skip = tuple(args.skip_installer or ())
        chosen = {k: p["name"] for k, p in (entry.get("installers") or {}).items() if k not in skip}
    else:
        c = lock_mod.constraints_from_mapping({"row": s["torch_npu"], "python": s["python"], "arch": s["arch"],
                                               "chip": args.chip, "os": args.os})
        try:
            stack = cm.resolve(matrix, c).stack
        except cm.NoMatch as e:
            raise cm.UserError(f"{args.wheelhouse} was built for torch_npu {s['torch_npu']}, which the matrix "
                               f"no longer has:\n{e}") from None
        chosen = lock_mod.parse_installer_choices(args.installer)
    controller = bundle.ControllerOptions(include=not args.no_controller, find_links=list(args.controller_wheels or ()),
                                          offline=args.offline, index_url=args.index_url)
    made = bundle.make(args.out, args.wheelhouse, args.installers, stack,
                       skip_installers=tuple(args.skip_installer or ()), chosen_installers=chosen,
                       controller=controller, lock=given, matrix=matrix, log=_log)
    print(f"bundle {args.out}: {made['top']}")
    for inst in made["installers"]:
        print(f"  installer {inst['kind']:<9} {Path(inst['file']).name}")
    print(f"  wheelhouse: {made['wheelhouse']['wheels']} wheels; source/ holds playbooks/, compat_matrix/ and validation/")
    print(f"  lock {made['lock']['digest']} ({made['lock']['file']}: `npuenv lock show`)")
    if made["controller"]:
        c = made["controller"]
        print(f"  controller: {len(c['wheels'])} wheels (npuenv, Ansible, pytest-testinfra) for CPython "
              f"{', '.join(c['pythons'])} on {', '.join(c['archs'])}")
    print(f"  check it at the site: tar -xf {Path(args.out).name} && cd {made['top']} && sha256sum -c SHA256SUMS")
    return 0


@_interruptible(lambda args: f"bundle verify {args.path}")
def cmd_bundle_verify(args) -> int:
    problems = bundle.verify(args.path)
    for p in problems:
        print(f"{args.path}: {p}", file=sys.stderr)
    if problems:
        print(f"{args.path}: {len(problems)} problem(s)", file=sys.stderr)
        return 1
    print(f"{args.path}: ok")
    return 0


# --- parser -----------------------------------------------------------------------

def register(sub) -> None:
    """Add ``wheelhouse`` and ``bundle`` to the ``npuenv`` command's subparsers."""
    _register_wheelhouse(sub)
    _register_bundle(sub)


def _register_wheelhouse(sub) -> None:
    w = sub.add_parser("wheelhouse", help="the offline wheelhouse of a row (CPU torch, torch_npu, torchvision, "
                                          "CANN Python deps)").add_subparsers(dest="wheelhouse_cmd", required=True)
    _register_wheelhouse_build(w)

    p = w.add_parser("verify", help="check a wheelhouse: checksums, requirements, index, tags, torch pins")
    p.add_argument("dir", type=Path)
    p.set_defaults(func=cmd_wheelhouse_verify)

    p = w.add_parser("containerfile", help="render the torch_npu builder image's Containerfile for a row")
    add_constraint_args(p)
    p.add_argument("--output", "-o", help="write it to this file instead of stdout")
    p.set_defaults(func=cmd_wheelhouse_containerfile)

    p = w.add_parser("builder-image", help="build the torch_npu builder image for a row (needs quay.io)")
    add_constraint_args(p)
    p.add_argument("--engine", choices=("podman", "docker"), default="podman")
    p.add_argument("--tag", help="image tag (default: derived from the toolchain)")
    p.set_defaults(func=cmd_wheelhouse_builder_image)


def _register_wheelhouse_build(w) -> None:
    p = w.add_parser("build", help="fetch or build every wheel of a row into an offline wheelhouse",
                     formatter_class=RawDescriptionHelpFormatter,
                     description="Sources of torch_npu are tried in the order given: dir:PATH (a local directory), "
                                 "pypi (the package index), release (the vendor's release page of older rows), "
                                 "build (a source build). Default: pypi, then release.")
    add_constraint_args(p)
    add_lock_arg(p)
    p.add_argument("--out", required=True, type=Path, help="the wheelhouse directory (replaced only when complete)")
    p.add_argument("--torch-source", default=os.environ.get("TORCH_SOURCE"),
                   help="where the CPU torch (and torchvision) come from: a directory of wheels or an index URL "
                        "such as https://download.pytorch.org/whl/cpu (default: $TORCH_SOURCE)")
    p.add_argument("--source", action="append", dest="sources", metavar="SOURCE",
                   help="a torch_npu source: dir:PATH, pypi, release or build; repeat, in the order to try")
    p.add_argument("--index-url", help="the package index for torch_npu and the dependencies (default: pip's)")
    p.add_argument("--find-links", action="append", type=Path, metavar="DIR",
                   help="a local folder of wheels for the dependencies (repeatable; dir: sources count too)")
    p.add_argument("--offline", action="store_true",
                   help="ask no package index: only the torch source, dir: sources and --find-links folders")
    p.add_argument("--pre", action="store_true",
                   help="accept pre-release dependencies (refused by default: pip takes one only when no final "
                        "release fits the target)")
    p.add_argument("--torchvision", choices=wheelhouse.TORCHVISION_POLICIES, default="auto",
                   help="auto: the torch source's CPU build, else the index's if it is a CPU build; torch-source: "
                        "only the torch source's; index: the index's even if it is a CUDA build; none: leave it out")
    _add_source_build_args(p.add_argument_group("source build (--source build)"))
    p.set_defaults(func=cmd_wheelhouse_build)


def _add_source_build_args(g) -> None:
    g.add_argument("--build-runner", choices=builder.RUNNERS, default="podman",
                   help="podman: in the builder image; local: with this host's toolchain")
    g.add_argument("--builder-image", help="builder image (default: the one `wheelhouse builder-image` builds)")
    g.add_argument("--source-tree", type=Path, help="an existing checkout to build instead of a fresh clone")
    g.add_argument("--source-repo", help="repository to clone (default: the row's, from the matrix)")
    g.add_argument("--source-ref", help="tag or branch to build (default: the row's adapter tag)")
    g.add_argument("--work-dir", type=Path, help="where checkouts and build logs go (default: a temporary folder)")
    g.add_argument("--build-network", help="podman --network for the build container (e.g. none)")
    g.add_argument("--builder-has-torch", action="store_true",
                   help="the builder image already has the row's torch; do not install the torch source's into it")


def _register_bundle(sub) -> None:
    b = sub.add_parser("bundle", help="one archive for an air-gapped site").add_subparsers(dest="bundle_cmd",
                                                                                           required=True)
    p = b.add_parser("make", help="installers + wheelhouse + playbooks + matrix in one archive with SHA256SUMS")
    p.add_argument("--wheelhouse", required=True, type=Path, help="a wheelhouse made by `wheelhouse build`")
    p.add_argument("--installers", required=True, type=Path, help="the folder holding the vendor's .run packages")
    p.add_argument("--out", required=True, type=Path, help="the archive: *.tar, *.tar.gz or *.tar.xz")
    p.add_argument("--chip", help="910, 910b, a3 or 310p (default: 910b): picks the installers")
    p.add_argument("--os", help="base OS recorded in the bundle (default: ubuntu22.04)")
    p.add_argument("--skip-installer", action="append", metavar="KIND",
                   help="leave out one installer kind (driver, firmware, toolkit, kernels, nnal)")
    p.add_argument("--installer", action="append", metavar="KIND=FILE",
                   help="the file to bundle for one installer kind, when the folder holds several (firmware)")
    add_env_argument(p, "lock", "--lock", metavar="FILE",
                     help="bundle this lock's stack: its entry for the wheelhouse's arch (and --os), its installers "
                     "(each checked by sha256); the bundle carries the lock either way (without --lock, the one made "
                     "from the wheelhouse's row and these installers)")
    g = p.add_argument_group("the controller's packages (npuenv, Ansible, pytest-testinfra), for every CPython of "
                             "the matrix that npuenv supports, on every arch of the matrix")
    g.add_argument("--controller-wheels", action="append", type=Path, metavar="DIR",
                   help="a local folder of wheels to take them from (repeatable)")
    g.add_argument("--offline", action="store_true", help="ask no package index: only --controller-wheels")
    g.add_argument("--index-url", help="the package index to ask (default: pip's)")
    g.add_argument("--no-controller", action="store_true",
                   help="leave them out: the site installs npuenv on its controller some other way")
    p.set_defaults(func=cmd_bundle_make)

    p = b.add_parser("verify", help="check a bundle archive or an unpacked bundle folder")
    p.add_argument("path", type=Path)
    p.set_defaults(func=cmd_bundle_verify)

"""``npuenv image ...``: render, build, push and run the image of a matrix row.

Exit codes: 0 success, 1 no matrix row fits the constraints, 2 bad input or
environment (an unknown row or OS, a missing or mismatched installer, a wheelhouse
for another row, no container engine, a failed build); nothing is tagged then.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable

import compat_matrix as cm
from compat_matrix import outputs, refs
from compat_matrix.cli_options import add_constraint_args, add_lock_arg, constraints_from, load, lock_from

from compat_matrix import lock as lock_mod
from compat_matrix.lock import Lock
from compat_matrix.resolver import host_arch

from . import build as builder
from . import engine as engines
from . import registry, render, run, sbom


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _locked(args) -> tuple[cm.Stack, Lock | None, Callable[..., Lock] | None] | None:
    """The image's stack, and the lock it comes from: (stack, the --lock lock, None), or without --lock
    (stack, None, a function making the image's lock from its checked inputs); None when no row fits
    (the reason is printed).

    With --lock: its entry for the image's arch and OS (--arch/--os pick it; the only one, else this
    host's arch). Without: the constraints resolved as `npuenv lock` resolves them, into a lock of the
    one platform, pinning the CANN installers and the wheelhouse it is given (``make(installers,
    house)``); without --python the image gets the newest of the row's Pythons its OS ships."""
    matrix = load(args)
    given = lock_from(args)
    if given is not None:
        arch = matrix.platforms.canonical_arch(args.arch) or args.arch if args.arch else None
        entry = given.select(arch, args.os, prefer_arch=host_arch(matrix))
        r = given.row
        _log(f"the entry {entry['arch']}/{entry['os']} of the lock {given.digest[:19]}: torch_npu {r['torch_npu']}, "
             f"CANN {r['cann']}, Python {r['python']}, chip {r['chip']}")
        return given.stack(matrix, entry["arch"], entry["os"]), given, None
    c = constraints_from(args)
    try:
        res = cm.resolve(matrix, c)
    except cm.NoMatch as e:
        print(str(e), file=sys.stderr)
        return None
    stack = render.choose_python(res.stack, python_given=bool(c.python))
    _log(res.reason)
    if stack.python != res.stack.python:
        _log(f"python={stack.python}: the newest of the row's Pythons that {stack.os} ships "
             f"(pass --python to choose; another is built from source)")
    pins = cm.Constraints(**{**c.given(), "python": stack.python, "arch": stack.arch, "os": stack.os,
                             "chip": stack.chip})

    def make(installers: Path | None = None, house: Path | None = None) -> Lock:
        return lock_mod.make(matrix, pins, installers=installers, wheelhouses=[house] if house else [],
                             kinds=builder.image_kinds())
    return stack, None, make


def _stack(args) -> cm.Stack | None:
    """The stack only (run-cmd, compose, push): the lock's entry or the constraints resolved."""
    found = _locked(args)
    return found[0] if found else None


def cmd_render(args) -> int:
    if args.output:
        outputs.check_dir_output(args.output, "--output")
    found = _locked(args)
    if found is None:
        return 1
    stack, lock, make = found
    files = render.render(stack, args.cann_only, lock or make())
    if args.output:
        out = render.write_context(files, Path(args.output), "--output")
        _log(f"{out}: build context written ({', '.join(sorted(files))})")
    else:
        sys.stdout.write(files[render.DOCKERFILE])
    return 0


def _access(args) -> registry.Access:
    """The registry options, checked (before any build or push starts)."""
    return registry.Access(authfile=Path(args.authfile) if args.authfile else None,
                           cert_dir=Path(args.cert_dir) if args.cert_dir else None,
                           ca_cert=Path(args.ca_cert) if args.ca_cert else None,
                           creds_from_env=args.creds_from_env).check()


def _print_push(result: registry.PushResult) -> None:
    for tag in result.tags:
        print(f"{result.repository}:{tag}")
    print(f"{result.pinned}  (the manifest digest: pull by it to get exactly this image)")


def cmd_build(args) -> int:
    for option, ref in (("--tag", args.tag), ("--base-image", args.base_image)):
        if ref is not None:
            refs.check_image_ref(ref, option)
    if args.user_ids is not None:
        builder.parse_user_ids(args.user_ids, cm.load_platforms().hdk["run_user"])
    access = None
    if args.push is not None:
        registry.split_repository(args.push, "--push")
        access = _access(args)
    elif any((args.authfile, args.cert_dir, args.ca_cert, args.creds_from_env)):
        raise cm.UserError("--authfile, --cert-dir, --ca-cert and --creds-from-env are for --push REGISTRY/REPO")
    house = Path(args.wheelhouse) if args.wheelhouse else None
    found = _locked(args)
    if found is None:
        return 1
    stack, lock, make = found
    result = builder.build(stack, Path(args.installers), house,
                           cann_only=args.cann_only, tag=args.tag, engine=args.engine, date=args.build_date,
                           base_image=args.base_image, user_ids=args.user_ids, no_cache=args.no_cache,
                           sbom=Path(args.sbom) if args.sbom else None, lock=lock, make_lock=make, log=_log)
    lock = result.lock
    print(f"{result.tag} ({result.image_id[:12]}), built with {result.engine} in {result.seconds:.0f} s")
    print(f"SBOM ({result.labels[builder.SBOM_FORMAT_LABEL]}): {result.sbom}")
    print(f"lock {lock.digest} (label {render.LOCK_LABEL}; the file {stack.paths['lock']} in the image)")
    if args.push is not None:
        _print_push(registry.push(result.image_id, args.push, engine=result.engine, access=access, log=_log))
    print(f"run it on an Atlas host: npuenv image run-cmd --row {stack.row.torch_npu} --os {stack.os} "
          f"--python {stack.python} --arch {stack.arch} --chip {stack.chip} --image {result.tag}")
    return 0


def cmd_push(args) -> int:
    registry.split_repository(args.repository)
    access = _access(args)
    if args.image is not None:
        image = refs.check_image_ref(args.image, "--image")
    else:
        stack = _stack(args)
        if stack is None:
            return 1
        image = render.image_name(stack, args.cann_only)
    _print_push(registry.push(image, args.repository, engine=args.engine, access=access, log=_log))
    return 0


def _run_inputs(args, stack: cm.Stack) -> tuple[str, list[int]]:
    image = refs.check_image_ref(args.image, "--image") if args.image is not None else \
        render.image_name(stack, args.cann_only)
    ids, where = run.device_ids(stack, args.npus, Path(args.dev_dir))
    _log(f"NPU devices: {', '.join(map(str, ids))} ({where})")
    return image, ids


def _command(args) -> list[str]:
    return args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd


def cmd_run_cmd(args) -> int:
    if args.name is not None:
        refs.check_container_name(args.name, "--name")
    stack = _stack(args)
    if stack is None:
        return 1
    engine = args.engine
    if engine is None:
        try:
            engine = engines.find().name
        except cm.UserError:
            engine = "docker"
        engine = engine if engine in run.RUN_ENGINES else "podman"  # buildah runs nothing: podman is its runner
    image, ids = _run_inputs(args, stack)
    cmd = run.run_command(stack, image, engine=engine, ids=ids, dev_dir=Path(args.dev_dir), host_root=args.host_root,
                          host_ipc=args.host_ipc, command=_command(args), name=args.name)
    sys.stdout.write(run.format_command(cmd, image))
    return 0


def cmd_compose(args) -> int:
    if args.output:
        outputs.check_file_output(args.output, "--output")
    stack = _stack(args)
    if stack is None:
        return 1
    image, ids = _run_inputs(args, stack)
    text = run.compose(stack, image, ids=ids, dev_dir=Path(args.dev_dir), host_root=args.host_root,
                       host_ipc=args.host_ipc, command=_command(args), service=args.service)
    if args.output:
        outputs.write_text(args.output, text, "--output")
        _log(f"{args.output}: compose file written")
    else:
        sys.stdout.write(text)
    return 0


def _run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--image", help="image reference (default: the name `npuenv image build` gives the stack)")
    p.add_argument("--cann-only", action="store_true", help="the CANN-only image's default name")
    p.add_argument("--npus", help="device numbers (/dev/davinciN), e.g. 0,1 or 0-3; default all: this "
                                  "host's nodes, else a full node of the chip")
    p.add_argument("--dev-dir", default="/dev", help="where the host's device nodes are (default /dev)")
    p.add_argument("--host-root", default="/", help="where the host's filesystem is seen from here, for "
                                                    "the driver mounts (default /)")
    p.add_argument("--host-ipc", action="store_true", help="share the host's IPC namespace (multi-process HCCL)")
    p.add_argument("cmd", nargs=argparse.REMAINDER, help="the command to run in the container (after --)")


def _registry_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--authfile", metavar="FILE", help="the registry credentials (`podman login --authfile FILE`; "
                                                       "default: the engine's own auth file)")
    p.add_argument("--creds-from-env", action="store_true",
                   help=f"the credentials from ${registry.CREDS_ENV[0]} and ${registry.CREDS_ENV[1]}")
    p.add_argument("--cert-dir", metavar="DIR", help="the registry's CA as DIR/ca.crt (podman's --cert-dir)")
    p.add_argument("--ca-cert", metavar="FILE", help="the registry's CA certificate (PEM)")


def register(subparsers) -> None:
    """Add `npuenv image render|build|push|run-cmd|compose`."""
    image = subparsers.add_parser("image", help="container images for a matrix row (images/)")
    sub = image.add_subparsers(dest="image_cmd", required=True)

    p = sub.add_parser("render", help="print the Dockerfile for a row x OS x arch x chip")
    add_constraint_args(p)
    add_lock_arg(p)
    p.add_argument("--cann-only", action="store_true", help="the CANN layers only, no Python stack")
    p.add_argument("--output", metavar="DIR", help="write the whole build context (Dockerfile, entrypoint, "
                                                   "profile script) to DIR instead")
    p.set_defaults(func=cmd_render)

    _register_build(sub)

    p = sub.add_parser("push", help="push a row's image to a registry under tags that say what it is")
    add_constraint_args(p)
    add_lock_arg(p)
    p.add_argument("repository", metavar="REGISTRY/REPO", help="e.g. harbor.example.com/ai/npuenv")
    p.add_argument("--image", help="the local image (default: the name `npuenv image build` gives the stack)")
    p.add_argument("--cann-only", action="store_true", help="the CANN-only image's default name")
    p.add_argument("--engine", choices=engines.ENGINES, help="default: the first that works of "
                                                             + ", ".join(engines.ENGINES))
    _registry_options(p)
    p.set_defaults(func=cmd_push)

    p = sub.add_parser("run-cmd", help="print the docker/podman run line for an Atlas host")
    add_constraint_args(p)
    add_lock_arg(p)
    _run_options(p)
    p.add_argument("--engine", choices=run.RUN_ENGINES, help="default: the engine present here, else docker")
    p.add_argument("--name", help="container name")
    p.set_defaults(func=cmd_run_cmd)

    p = sub.add_parser("compose", help="print a compose file that runs the image on an Atlas host")
    add_constraint_args(p)
    add_lock_arg(p)
    _run_options(p)
    p.add_argument("--service", default="npu", help="the service's name (default npu)")
    p.add_argument("--output", metavar="FILE", help="write the compose file to FILE")
    p.set_defaults(func=cmd_compose)


def _register_build(sub) -> None:
    p = sub.add_parser("build", help="build the image with podman, buildah or docker; tag it on success")
    add_constraint_args(p)
    add_lock_arg(p)
    p.add_argument("--installers", required=True, metavar="DIR",
                   help="the vendor's .run packages and their SHA256SUMS")
    p.add_argument("--wheelhouse", metavar="DIR", help="the row's wheelhouse (npuenv wheelhouse build)")
    p.add_argument("--cann-only", action="store_true", help="the CANN layers only: no wheelhouse, no Python stack")
    p.add_argument("--tag", help="image reference (default: localhost/npuenv-torch-npu:<row>-cann<v>-py<v>-<os>-...)")
    p.add_argument("--engine", choices=engines.ENGINES, help="default: the first that works of "
                                                             + ", ".join(engines.ENGINES))
    p.add_argument("--base-image", help="another base image of the same OS (a mirror), instead of platforms.yaml's")
    user, manifest = cm.load_platforms().hdk["run_user"], render.load_manifest()["user"]
    p.add_argument("--user-ids", metavar="UID:GID",
                   help=f"{user}'s ids in the image; match the host's (`id {user}`) so that it may open the devices "
                        f"(default {manifest['uid']}:{manifest['gid']})")
    p.add_argument("--build-date", help="the created label (default: SOURCE_DATE_EPOCH, else now)")
    p.add_argument("--no-cache", action="store_true", help="rebuild every layer")
    p.add_argument("--sbom", metavar="FILE", help="where the image's SBOM (CycloneDX JSON) goes (default: "
                                                  f"{builder.SBOM_DIR}/<name>_<tag>{sbom.SUFFIX})")
    p.add_argument("--push", metavar="REGISTRY/REPO", help="push the image once built (as `npuenv image push`)")
    _registry_options(p)
    p.set_defaults(func=cmd_build)

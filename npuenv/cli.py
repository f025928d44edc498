"""The `npuenv` command: a thin layer over the project's library functions.

Exit codes: 0 success, 1 a check failed (or nothing fits), 2 usage or
environment error (bad input, bad data, missing tools).
"""
from __future__ import annotations

import argparse
import errno
import importlib.metadata
import json
import sys
from pathlib import Path

import compat_matrix as cm
from compat_matrix import interrupts, lock, outputs, pypi, render
from compat_matrix.errors import UserError
from compat_matrix.model import ROW_KEY, ROWS_KEY, ROWS_VERSION
from compat_matrix.resolver import filter_rows, normalise, unknown_row_message
from images import cli as images_cli
from torch_npu_pkg import cli as wheelhouse_cli
from validation.node import options as validate_options
from validation.node import model
from validation.node.runner import FLEET_PORT, check_name
from validation.report import STRAGGLER_MARGIN
from validation.stragglers import MIN_PEERS

from .args import (Parser, add_constraint_args, add_env_argument, add_lock_arg, apply_env_defaults, constraints_from,
                   load, lock_from)


def resolve_stack(args) -> cm.Resolution:
    return cm.resolve(load(args), constraints_from(args))


# --- matrix -----------------------------------------------------------------

def cmd_matrix_list(args) -> int:
    matrix = load(args)
    rows = filter_rows(matrix, normalise(matrix, constraints_from(args)))
    if args.status:
        rows = [r for r in rows if r.status == args.status]
    if args.format == "json":
        print(json.dumps({ROWS_KEY: ROWS_VERSION, "rows": [r.to_dict() for r in rows]}, indent=2))
        return 0
    table = [("torch_npu", "torch", "torchvision", "CANN", "Python", "HDK", "status")]
    table += [(r.torch_npu, r.torch, r.torchvision, r.cann, ", ".join(r.python_sorted), r.hdk["version"], r.status)
              for r in rows]
    print("\n".join(render.aligned(table)))
    return 0


def cmd_matrix_show(args) -> int:
    matrix = load(args)
    row = matrix.find(args.torch_npu_version)
    if row is None:
        raise cm.MatrixError([cm.Problem("<constraints>", 0, unknown_row_message(args.torch_npu_version))])
    print(json.dumps({ROW_KEY: ROWS_VERSION, **row.to_dict()}, indent=2))
    return 0


def cmd_matrix_resolve(args) -> int:
    try:
        res = resolve_stack(args)
    except cm.NoMatch as e:
        print(str(e), file=sys.stderr)
        return 1
    if args.format == "text":
        s = res.stack
        print(res.reason)
        print(json.dumps({k: v for k, v in s.to_dict().items()
                          if k in ("torch_npu", "torch", "torchvision", "cann", "python", "arch", "chip", "hdk",
                                   "packaging", "packages", "sources", "inferred")}, indent=2))
    else:
        if args.format == "json":
            # What the validation suite compares a host with (`pytest validation/node/suite/... --npuenv-stack=FILE`):
            # the resolved stack, the environment its env scripts export and the Python modules CANN needs.
            from validation.run import expected_stack

            print(json.dumps(expected_stack(res.stack), indent=2))
        else:
            print(res.stack.export(args.format))
        if args.explain:
            print(res.reason, file=sys.stderr)
    return 0


def cmd_matrix_lint(args) -> int:
    path = args.file or cm.DEFAULT_MATRIX
    cm.load_matrix(path)  # raises MatrixError -> exit 2 with FILE:LINE lines
    print(f"{path}: ok")
    return 0


def cmd_matrix_table(args) -> int:
    matrix = load(args)
    table = render.markdown_table(matrix)
    if args.update or args.check:
        path = Path(args.update or args.check)
        option = "--update" if args.update else "--check"
        if args.update:
            outputs.check_file_output(path, option)
        text = outputs.read_text(path, "the file holding the support table")
        try:
            new = render.splice(text, table)
        except ValueError as e:
            raise UserError(f"{option} {path}: {e}") from None
        if args.check:
            if new != text:
                print(f"{path}: the support table is out of date; run `npuenv matrix table --update {path}`",
                      file=sys.stderr)
                return 1
            print(f"{path}: support table is current")
            return 0
        outputs.write_text(path, new, option, mode=path.stat().st_mode & 0o7777)
        print(f"{path}: support table updated")
        return 0
    sys.stdout.write(table)
    return 0


def cmd_matrix_verify(args) -> int:
    matrix = load(args)
    if args.record:
        outputs.check_dir_output(args.record, "--record")
    if args.recorded and not Path(args.recorded).is_dir():
        raise UserError(f"--recorded {args.recorded}: no such folder; record one with --record DIR")
    source = pypi.RecordedPyPI(Path(args.recorded)) if args.recorded else \
        pypi.LivePyPI(Path(args.record) if args.record else None)
    try:
        found = pypi.verify(matrix, source)
    except pypi.PyPIUnavailable as e:
        raise UserError(f"{e}; check the network or use --recorded DIR") from None
    for d in found:
        print(d)
    checked = sum(1 for r in matrix.rows if r.wheel["index"] == "pypi")
    print(f"{checked} PyPI rows checked, {len(found)} disagreement(s)")
    return 1 if found else 0


# --- lock -------------------------------------------------------------------

LOCK_MAKE_OPTIONS = ("installers", "installer", "wheelhouse", "out", *lock.CONSTRAINT_KEYS)


def cmd_lock_make(args) -> int:
    matrix = load(args)
    constraints = constraints_from(args)
    out = outputs.check_file_output(args.out or lock.DEFAULT_FILE, "--out")
    pinned = lock.parse_installer_choices(args.installer)
    if pinned and not args.installers:
        raise UserError("--installer names a file of the installer folder: give the folder with --installers DIR")
    installers = Path(args.installers) if args.installers else None
    if installers is not None and not installers.is_dir():
        raise UserError(f"--installers {installers}: no such folder; give the folder holding the vendor's .run "
                        f"packages and their SHA256SUMS")
    for house in args.wheelhouse or ():
        if not Path(house).is_dir():
            raise UserError(f"--wheelhouse {house}: no such folder; give a wheelhouse made by `npuenv wheelhouse "
                            f"build`")
    try:
        made = lock.make(matrix, constraints, installers=installers, pinned_installers=pinned,
                         wheelhouses=[Path(h) for h in args.wheelhouse or ()])
    except cm.NoMatch as e:
        print(str(e), file=sys.stderr)
        return 1
    lock.write(made, out, "--out")
    sys.stdout.write(lock.summary_text(made, out))
    return 0


def _lock_file_only(args, command: str) -> None:
    """`lock show` and `lock diff` read locks: the options that make one are refused before them."""
    given = [lock.cli_name(k) for k in LOCK_MAKE_OPTIONS if getattr(args, k, None) not in (None, [], "")]
    if given:
        raise UserError(f"npuenv lock {command} reads lock files; {', '.join(given)} belong to making a lock "
                        f"(`npuenv lock --row ... --out FILE`): leave them out here")


def cmd_lock_show(args) -> int:
    _lock_file_only(args, "show")
    shown = lock.load(args.file)
    sys.stdout.write(lock.render(shown) if args.lock_format == "json" else lock.summary_text(shown, args.file))
    return 0


def cmd_lock_diff(args) -> int:
    _lock_file_only(args, "diff")
    a, b = lock.load(args.a), lock.load(args.b)
    d = lock.diff(a, b)
    sys.stdout.write(json.dumps(d, indent=1) + "\n" if args.lock_format == "json" else lock.diff_text(d, a, b))
    return 0


# --- deploy -----------------------------------------------------------------

def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of hosts, 1 or more")
    return int(text)


def cmd_deploy(args) -> int:
    from ansible_run import ansible_options
    from playbooks import rollout

    plan = rollout.prepare(args.inventory, lock_path=args.lock, limit=args.limit, batch_size=args.batch_size,
                           gate=args.gate, gate_backend=args.gate_backend, allow_busy=args.allow_busy,
                           check=args.check, tags=args.tags, extra_vars=args.extra_vars,
                           ansible=ansible_options.Given.from_args(args), log_dir=args.log_dir, matrix=args.matrix)
    return rollout.deploy(plan, Path(args.log_dir or rollout.DEFAULT_LOG_DIR))


def cmd_status(args) -> int:
    from ansible_run import ansible_options
    from ansible_run import run as playbooks_run
    from playbooks import status

    # status.yml reads the nodes with sudo: -K asked once, the vault and forks options as validate's;
    # an interrupt closes the session's SSH masters too
    with interrupts.interruptible("status"), playbooks_run.session(ansible_options.Given.from_args(args)):
        return status.status(args.inventory, args.lock, fmt=args.format, limit=args.limit, matrix=args.matrix)


def cmd_collection_build(args) -> int:
    from ansible_run import collection

    print(collection.build(args.out))
    return 0


# --- validation -------------------------------------------------------------

def cmd_facts(args) -> int:
    from validation.node import facts

    if not Path(args.root).is_dir():
        raise UserError(f"--root {args.root}: no such folder; give the folder an image or disk is unpacked or "
                        f"mounted at (default /)")
    data = facts.collect(facts.LocalProbe(args.root))
    if args.format == "json":
        print(json.dumps({facts.HOST_FACTS_KEY: facts.HOST_FACTS_VERSION, **data}, indent=2))
        return 0
    driver = (data["driver"] or {}).get("version", "none")
    firmware = (data["firmware"] or {}).get("version", "none")
    print(f"driver {driver}, firmware {firmware}")
    for t in data["cann"]:
        print(f"CANN {t['version']} ({t['generation']}, kernels: {', '.join(t['kernels']) or 'none'})")
    print("NNAL " + (", ".join(data["nnal"]) or "none"))
    print(", ".join(f"{k} {v or 'missing'}" for k, v in data["python"].items() if k in ("torch", "torch_npu", "torchvision")))
    for d in data["devices"]:
        print(f"NPU {d['npu']} chip {d['chip']}: {d['name']} {d['health']} {d['bus_id']}")
    if (data["npu_smi"] or {}).get("error"):
        print(f"npu-smi: {data['npu_smi']['error']}")
    return 0


def cmd_validate(args) -> int:
    from ansible_run import ansible_options
    from ansible_run import run as playbooks_run
    from validation import run

    options = validate_options.suite_arguments(vars(args))
    given = lock_from(args, picks_entry=False)   # each host takes its own entry: no --arch/--os beside it
    # ansible:// targets: -K asked once, the vault and forks options for each Ansible run; retry files in --out;
    # an interrupt closes the session's SSH masters too
    with interrupts.interruptible("validate"), \
            playbooks_run.session(ansible_options.Given.from_args(args), retry_dir=Path(args.out)):
        return run.validate(args.target, args.level, constraints_from(args), Path(args.out), backend=args.backend,
                            host_root=args.host_root, run_args=args.run_arg or [], suite_options=options,
                            only=args.only, straggler_margin=args.straggler_margin,
                            straggler_min_peers=args.straggler_min_peers, fleet_port=args.fleet_port,
                            matrix=args.matrix, lock=given)


# --- parser -----------------------------------------------------------------

def package_version() -> str:
    try:
        return importlib.metadata.version("npuenv")
    except importlib.metadata.PackageNotFoundError:
        return "unknown (not installed: pip install it to have one)"


def version_text(matrix_file: str | None) -> str:
    """What `npuenv --version` prints: the package, the matrix's date and the lock format it reads and writes."""
    matrix = cm.load_matrix(matrix_file) if matrix_file else cm.load_matrix()
    date = matrix.generated or "undated (the file has no 'generated:')"
    return (f"npuenv {package_version()}\n"
            f"compatibility matrix: {date} ({matrix.file})\n"
            f"lock format: {lock.FORMAT}\n")


class _Version(argparse.Action):
    """--version: print version_text for the matrix in use (--matrix given before it, or $NPUENV_MATRIX)."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        # --matrix given before --version, else its default ($NPUENV_MATRIX, checked as apply_env_defaults does)
        matrix = apply_env_defaults(argparse.Namespace(matrix=getattr(namespace, "matrix", None))).matrix
        sys.stdout.write(version_text(matrix))
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="npuenv", description="Environment suite for Ascend NPU clusters.")
    parser.add_argument("--version", action=_Version,
                        help="print npuenv's version, the compatibility matrix's date and the lock format, and exit")
    add_env_argument(parser, "matrix", "--matrix", metavar="FILE", help="matrix YAML to use instead of the bundled one")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_matrix(sub)
    _add_lock(sub)
    p = sub.add_parser("facts", help="what is installed here: devices, driver, firmware, CANN, torch, torch_npu")
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.add_argument("--root", default="/", help="read the files under DIR instead (an unpacked image, a mounted disk)")
    p.set_defaults(func=cmd_facts)
    _add_validate(sub)
    _add_deploy(sub)
    _add_status(sub)
    _add_collection(sub)
    wheelhouse_cli.register(sub)  # npuenv wheelhouse ... / npuenv bundle ...
    images_cli.register(sub)  # npuenv image render|build|run-cmd|compose
    return parser


def _add_matrix(sub) -> None:
    m = sub.add_parser("matrix", help="the compatibility matrix").add_subparsers(dest="matrix_cmd", required=True)
    p = m.add_parser("list", help="list rows (filterable by the constraints)")
    add_constraint_args(p)
    p.add_argument("--status", choices=("active", "eol"))
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.set_defaults(func=cmd_matrix_list)

    p = m.add_parser("show", help="show one row")
    p.add_argument("torch_npu_version", metavar="TORCH_NPU")
    p.set_defaults(func=cmd_matrix_show)

    p = m.add_parser("resolve", help="pick the best row for constraints and export it")
    add_constraint_args(p)
    p.add_argument("--format", choices=("text", "json", "shell", "ansible"), default="text",
                   help="json: the whole stack as validation expects it, the file the suite's --npuenv-stack takes")
    p.add_argument("--explain", action="store_true", help="also print why the row was chosen (stderr)")
    p.set_defaults(func=cmd_matrix_resolve)

    p = m.add_parser("lint", help="check a matrix file; prints FILE:LINE: message per problem")
    p.add_argument("file", nargs="?")
    p.set_defaults(func=cmd_matrix_lint)

    p = m.add_parser("table", help="render the matrix as a Markdown support table")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--update", metavar="FILE", help="rewrite the generated table block in FILE")
    g.add_argument("--check", metavar="FILE", help="exit 1 if FILE's table block is out of date")
    p.set_defaults(func=cmd_matrix_table)

    p = m.add_parser("verify", help="compare the matrix with the wheels PyPI publishes")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--recorded", metavar="DIR", help="replay PyPI answers saved with --record")
    g.add_argument("--record", metavar="DIR", help="save PyPI's answers to DIR")
    p.set_defaults(func=cmd_matrix_verify)


def _add_lock(sub) -> None:
    p = sub.add_parser("lock", help="resolve a row once into a lock file that every command takes",
                       description="Resolve row constraints once into a lock: the row, every version, one entry per "
                                   "arch/OS with its resolved stack, each vendor installer pinned by name, sha256 and "
                                   "size, each wheelhouse's digest. deploy, image build, bundle make and validate "
                                   "take it with --lock. `npuenv lock show FILE` prints one, `npuenv lock diff A B` "
                                   "what moving from A to B changes.")
    add_constraint_args(p)
    p.add_argument("--installers", metavar="DIR", help="pin each installer by name, sha256 and size from "
                   "DIR/SHA256SUMS (one folder may hold many rows' installers; arches with none of theirs are left "
                   "out, and the summary says why)")
    p.add_argument("--installer", action="append", metavar="KIND=NAME", help="the file of one kind when DIR holds "
                   "several for the row, e.g. firmware=Ascend-hdk-910b-npu-firmware_7.8.0.2.212.run (repeatable)")
    p.add_argument("--wheelhouse", action="append", metavar="DIR", help="record this wheelhouse's digest for the "
                   "arch it was built for (`npuenv wheelhouse build`; repeatable, one per arch)")
    p.add_argument("--out", metavar="FILE", help=f"where the lock goes, written atomically (default: "
                   f"{lock.DEFAULT_FILE})")
    p.set_defaults(func=cmd_lock_make)
    lock_sub = p.add_subparsers(dest="lock_cmd", metavar="{show,diff}")
    s = lock_sub.add_parser("show", help="print a lock's summary (or the lock itself with --format json)")
    s.add_argument("file", metavar="FILE")
    s.add_argument("--format", dest="lock_format", choices=("text", "json"), default="text")
    s.set_defaults(func=cmd_lock_show)
    s = lock_sub.add_parser("diff", help="what moving from lock A to lock B changes, component by component")
    s.add_argument("a", metavar="A", help="the lock the hosts are at")
    s.add_argument("b", metavar="B", help="the lock they move to")
    s.add_argument("--format", dest="lock_format", choices=("text", "json"), default="text")
    s.set_defaults(func=cmd_lock_diff)


def _add_validate(sub) -> None:
    from ansible_run import ansible_options
    p = sub.add_parser("validate", help="run the post-install validation suite and write the reports",
                       description="Each host is checked against --lock, or the row constraints resolved as `npuenv "
                                   "lock` resolves them, or, with neither, the lock it records itself (a node: the "
                                   "one its deploy wrote; an image: the one it was built with, its digest checked "
                                   "against its label); always the lock's entry for the host's own arch and OS.")
    p.add_argument("--target", action="append", required=True,
                   help="local | podman://NAME | image:REF[?ca_cert=F&cert_dir=D&authfile=F&creds_from_env=1] | "
                   "ssh://USER@HOST[:PORT][?ssh_identity_file=KEY&ssh_config=FILE] | ansible://GROUP?inventory=PATH "
                   "(repeatable; all are validated at once)")
    add_env_argument(p, "validate_level", "--level", choices=model.LEVELS, default=model.DEFAULT_LEVEL,
                     help="how deep the checks go (validation/README.md lists each level's checks)")
    add_constraint_args(p)
    add_lock_arg(p, picks_entry=False)
    p.add_argument("--backend", choices=model.BACKENDS, default=model.AUTO,
                   help="device for the workloads (auto: npu with HCCL, else cuda with NCCL, else cpu with gloo; "
                   "default: %(default)s)")
    add_env_argument(p, "validate_out", "--out", type=validate_options.nonempty_path, default="out/validation",
                     metavar="DIR", help="directory for results.json, report.html, junit.xml and metrics.prom, "
                     "Prometheus text")
    for option in validate_options.SUITE_OPTIONS:
        p.add_argument(f"--{option.name}", type=option.parse, default=option.default, help=option.help)
    p.add_argument("--host-root", default="/", help="image targets: where the host's driver and /dev live "
                   "(default: %(default)s)")
    p.add_argument("--run-arg", action="append", help="image targets: extra podman run argument (repeatable)")
    p.add_argument("--straggler-margin", type=validate_options.fraction, default=STRAGGLER_MARGIN,
                   help="flag a host whose training or busbw figure is this fraction below the median of its "
                   "peers (and beyond their spread; 0 to less than 1; default: %(default)s)")
    p.add_argument("--straggler-min-peers", type=validate_options.peers, default=MIN_PEERS,
                   help="compare hosts for stragglers only in groups (target kind and chip) of at least this many "
                   "(2 or more; default: %(default)s)")
    p.add_argument("--fleet-port", type=validate_options.port, default=FLEET_PORT,
                   help="rendezvous port of the all_reduce across nodes (default: %(default)s)")
    p.add_argument("--only", action="append", type=check_name, metavar="CHECK",
                   help="run only the check of this name (repeatable), e.g. npu_health")
    ansible_options.add_to(p, ansible_options.FOR_VALIDATE, "passed to ansible-playbook (ansible:// targets)")
    p.set_defaults(func=cmd_validate)


def _add_deploy(sub) -> None:
    from ansible_run import ansible_options
    from playbooks import rollout
    p = sub.add_parser("deploy", help="roll a lock out to the fleet in batches, each validated before the next",
                       description="Roll one lock (--lock, or the one made from the inventory's npuenv_row, "
                       "npuenv_installer_cache and npuenv_wheelhouse) out with Ansible (playbooks/site.yml), "
                       "--batch-size hosts at a time; each batch is validated at the --gate level before the next, "
                       "and a batch that fails stops the roll. Ends with a line per host (outcome, cause, the lock "
                       "it is at now) and the command that reruns the hosts that need it; everything is kept in a "
                       "folder of its own under --log-dir. Exit 0: every host at the lock and validated; 1: a host "
                       "failed, was unreachable, skipped or not attempted; 2: bad input, nothing changed.")
    add_env_argument(p, "inventory", "--inventory", "-i", help="Ansible inventory whose npu_nodes group is the "
                     "fleet (see playbooks/inventory/example)")
    add_lock_arg(p, picks_entry=False)
    p.add_argument("--batch-size", type=_positive_int, default=rollout.DEFAULT_BATCH, metavar="N",
                   help="at most N hosts change at once, in inventory order (default: %(default)s)")
    p.add_argument("--gate", choices=rollout.GATES, default=None,
                   help="the validation level each batch must pass before the next starts; none: no gate "
                   f"(default: {rollout.DEFAULT_GATE}; none with --tags, a partial run)")
    p.add_argument("--gate-backend", choices=model.BACKENDS, default=model.AUTO,
                   help="the gate's workload device, as validate --backend (default: %(default)s)")
    p.add_argument("--allow-busy", action="store_true",
                   help="deploy also to hosts whose NPUs run processes (without it they are skipped, untouched)")
    p.add_argument("--log-dir", type=validate_options.nonempty_path, metavar="DIR",
                   help=f"each run's log, lock, summary and gate reports go into a new folder DIR/<UTC time> "
                   f"(default: {rollout.DEFAULT_LOG_DIR})")
    p.add_argument("--check", action="store_true", help="preview what would change on every host, change nothing "
                   "(no gates)")
    p.add_argument("--tags", type=lambda v: v.split(","), help="only these components, e.g. driver,cann")
    p.add_argument("--limit", help="only these hosts or groups")
    p.add_argument("-e", "--extra-vars", action="append", dest="extra_vars",
                   help="extra variables: KEY=VALUE (typed as in a YAML inventory: 1000 a number, '1000' text), "
                   "@FILE or a JSON object")
    ansible_options.add_to(p)
    p.set_defaults(func=cmd_deploy)


def _add_status(sub) -> None:
    from ansible_run import ansible_options
    records = Path(cm.load_platforms().data["install_records"]["node_record"]).parent
    p = sub.add_parser("status", help="which lock each node runs and what drifts from it (facts only, no workload)",
                       description="Read every node of the inventory (one task each: installed versions, npu-smi's "
                       f"process table, the deploy records under {records}) and compare it with --lock, or with "
                       "the lock the node recorded when none is named. Exit 0: every node read and none drifts; 1: "
                       "a node drifts (never deployed, half-upgraded, another lock, a package or setting changed) "
                       "or could not be read; 2: bad input.")
    add_env_argument(p, "inventory", "--inventory", "-i", help="Ansible inventory whose npu_nodes group is the fleet")
    add_lock_arg(p, picks_entry=False)
    p.add_argument("--limit", help="only these hosts or groups")
    p.add_argument("--format", choices=("text", "json"), default="text", help="(default: %(default)s)")
    ansible_options.add_to(p, ansible_options.FOR_VALIDATE, "passed to ansible-playbook")
    p.set_defaults(func=cmd_status)


def _add_collection(sub) -> None:
    p = sub.add_parser("collection", help="the npuenv.ascend Ansible collection (the roles and plugins)")
    s = p.add_subparsers(dest="collection_cmd", required=True).add_parser(
        "build", help="build its tarball, for `ansible-galaxy collection install` into playbooks of your own",
        description="Build the npuenv.ascend collection (the roles and plugins npuenv deploy runs) with "
                    "ansible-galaxy into --out, replacing a tarball of the same version there, and print its path.")
    s.add_argument("--out", default="out/collection", metavar="DIR", help="folder of the tarball (default: %(default)s)")
    s.set_defaults(func=cmd_collection_build)


def main(argv: list[str] | None = None) -> int:
    try:
        parser = build_parser()
        args = apply_env_defaults(parser.parse_args(argv))
        lock.use_matrix(args.matrix)   # the Ansible runs a command starts use its matrix too
        return args.func(args)
    except KeyboardInterrupt:
        print("npuenv: interrupted (Ctrl-C)", file=sys.stderr)
        return 130
    except cm.MatrixError as e:
        for problem in e.problems:
            print(problem if problem.line else problem.message, file=sys.stderr)
        return e.exit_code
    except UserError as e:
        print(f"npuenv: {e}", file=sys.stderr)
        return e.exit_code
    except BrokenPipeError:
        return 0
    except OSError as e:
        if e.errno != errno.ENAMETOOLONG:
            raise
        # A path the user gave that the file system cannot take: met wherever it is first used
        # (Path.exists() and is_dir() raise it), so it is answered here, once.
        print(f"npuenv: {e.filename}: the path is too long for the file system ({e.strerror}); give a shorter "
              f"one", file=sys.stderr)
        return 2

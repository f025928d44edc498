"""The `npuenv` command: a thin layer over the project's library functions.

Exit codes: 0 success, 1 a check failed (or nothing fits), 2 usage or
environment error (bad input, bad data, missing tools).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import compat_matrix as cm
from compat_matrix import pypi, render
from compat_matrix.errors import UserError
from compat_matrix.resolver import filter_rows, normalise


def add_constraint_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("row constraints (any subset; resolved through the matrix)")
    g.add_argument("--row", dest="torch_npu", metavar="TORCH_NPU", help="a torch_npu version (the row's key)")
    g.add_argument("--torch-npu", dest="torch_npu", help="torch_npu version or prefix")
    g.add_argument("--torch", help="torch version, prefix (2.4) or specifier (>=2.4)")
    g.add_argument("--cann", help="CANN version or prefix (8.0, 8.0.RC3)")
    g.add_argument("--python", help="Python version, e.g. 3.10")
    g.add_argument("--arch", help="x86_64 or aarch64 (default: this host's)")
    g.add_argument("--chip", help="910, 910b, a3 or 310p (default: 910b)")
    g.add_argument("--os", help="base OS, e.g. ubuntu22.04 (default: ubuntu22.04)")


def constraints_from(args) -> cm.Constraints:
    return cm.Constraints(**{k: getattr(args, k, None) for k in
                             ("torch", "torch_npu", "cann", "python", "arch", "chip", "os")})


def load(args) -> cm.Matrix:
    return cm.load_matrix(args.matrix) if getattr(args, "matrix", None) else cm.load_matrix()


def resolve_stack(args) -> cm.Resolution:
    return cm.resolve(load(args), constraints_from(args))


# --- matrix -----------------------------------------------------------------

def cmd_matrix_list(args) -> int:
    matrix = load(args)
    rows = filter_rows(matrix, normalise(matrix, constraints_from(args)))
    if args.status:
        rows = [r for r in rows if r.status == args.status]
    if args.format == "json":
        print(json.dumps([r.to_dict() for r in rows], indent=2))
        return 0
    print(f"{'torch_npu':<16} {'torch':<8} {'torchvision':<12} {'CANN':<9} {'Python':<26} {'HDK':<10} status")
    for r in rows:
        print(f"{r.torch_npu:<16} {r.torch:<8} {r.torchvision:<12} {r.cann:<9} {', '.join(r.python_sorted):<26} "
              f"{r.hdk['version']:<10} {r.status}")
    return 0


def cmd_matrix_show(args) -> int:
    matrix = load(args)
    row = matrix.find(args.torch_npu_version)
    if row is None:
        known = ", ".join(r.torch_npu for r in matrix.rows)
        raise UserError(f"no matrix row for torch_npu {args.torch_npu_version}; known rows: {known}")
    print(json.dumps(row.to_dict(), indent=2))
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
        try:
            text = path.read_text(encoding="utf-8")
            new = render.splice(text, table)
        except (OSError, ValueError) as e:
            raise UserError(f"{path}: {e}") from None
        if args.check:
            if new != text:
                print(f"{path}: the support table is out of date; run `npuenv matrix table --update {path}`",
                      file=sys.stderr)
                return 1
            print(f"{path}: support table is current")
            return 0
        path.write_text(new, encoding="utf-8")
        print(f"{path}: support table updated")
        return 0
    sys.stdout.write(table)
    return 0


def cmd_matrix_verify(args) -> int:
    matrix = load(args)
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


# --- parser -----------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="npuenv", description="Environment suite for Ascend NPU clusters.")
    parser.add_argument("--matrix", help="matrix YAML to use instead of the bundled one")
    sub = parser.add_subparsers(dest="command", required=True)

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
    p.add_argument("--format", choices=("text", "json", "shell", "ansible"), default="text")
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
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except cm.MatrixError as e:
        for problem in e.problems:
            print(problem if problem.line else problem.message, file=sys.stderr)
        return e.exit_code
    except UserError as e:
        print(f"npuenv: {e}", file=sys.stderr)
        return e.exit_code
    except BrokenPipeError:
        return 0

"""Command-line arguments every subcommand that takes a matrix row shares."""
from __future__ import annotations

import argparse

import compat_matrix as cm
from compat_matrix.resolver import version_constraint_problem, version_matches


def add_constraint_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("row constraints (any subset; resolved through the matrix)")
    g.add_argument("--row", metavar="TORCH_NPU", help="exactly this row (its torch_npu version, e.g. 2.12.0)")
    g.add_argument("--torch-npu", dest="torch_npu", help="torch_npu version or prefix")
    g.add_argument("--torch", help="torch version, prefix (2.4) or specifier (>=2.4)")
    g.add_argument("--cann", help="CANN version or prefix (8.0, 8.0.RC3)")
    g.add_argument("--python", help="Python version, e.g. 3.10")
    g.add_argument("--arch", help="x86_64 or aarch64 (default: this host's)")
    g.add_argument("--chip", help="910, 910b, a3 or 310p (default: 910b)")
    g.add_argument("--os", help="base OS, e.g. ubuntu22.04 (default: ubuntu22.04)")


def constraints_from(args) -> cm.Constraints:
    """The row constraints of the command line. ``--row V`` means that row
    exactly; ``--torch-npu V`` is a prefix like the other versions (2.12.0 also
    matches its post releases)."""
    given = {k: getattr(args, k, None) for k in ("torch", "torch_npu", "cann", "python", "arch", "chip", "os")}
    row = getattr(args, "row", None)
    if row:
        why = version_constraint_problem("--row", row)
        if why or row[:1] in "<>=!~":
            raise cm.UserError(f"--row {row!r} is not a torch_npu version such as 2.12.0 or 2.4.0.post2; "
                               f"`npuenv matrix list` shows the rows")
        wanted = given["torch_npu"]
        if wanted and version_constraint_problem("--torch-npu", wanted):
            raise cm.UserError(version_constraint_problem("--torch-npu", wanted))
        if wanted and not version_matches(wanted, row):
            raise cm.UserError(f"--row {row} and --torch-npu {wanted} contradict each other (row {row} is not "
                               f"torch_npu {wanted}); give only --row")
        given["torch_npu"] = "==" + row
    return cm.Constraints(**given)


def load(args) -> cm.Matrix:
    return cm.load_matrix(args.matrix) if getattr(args, "matrix", None) else cm.load_matrix()

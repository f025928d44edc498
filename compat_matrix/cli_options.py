"""The command-line options every command that acts on a matrix row shares: the row constraints,
``--lock`` and the matrix they are read in. The CLIs of npuenv, images/ and torch_npu_pkg/ add
them from here, so that they are spelled, documented and read one way.

The constraints mean what ``lock.constraints_from_mapping`` says (``--row`` one row exactly,
``--torch-npu`` a prefix like the other versions), on the command line as in an inventory's
``npuenv_row``. A command given ``--lock`` takes its stack from the lock and resolves nothing:
row constraints beside it are refused (one or the other); ``--arch`` and ``--os`` may pick the
lock's entry where a command acts on one platform (an image, a wheelhouse).
"""
from __future__ import annotations

import argparse

from . import lock as lock_mod
from .errors import UserError
from .loader import load_matrix
from .model import Matrix
from .resolver import Constraints

# The constraints that choose the row; --arch and --os choose a platform (a lock's entry).
ROW_CHOOSERS = ("row", "torch_npu", "torch", "cann", "python", "chip")
PLATFORM_CHOOSERS = ("arch", "os")


def add_constraint_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("row constraints (any subset; resolved through the matrix)")
    g.add_argument("--row", metavar="TORCH_NPU", help="exactly this row (its torch_npu version, e.g. 2.12.0)")
    g.add_argument("--torch-npu", dest="torch_npu", help="torch_npu version or prefix (2.12.0 also matches "
                                                         "2.12.0.post3)")
    g.add_argument("--torch", help="torch version, prefix (2.4) or specifier (>=2.4)")
    g.add_argument("--cann", help="CANN version or prefix (8.0, 8.0.RC3)")
    g.add_argument("--python", help="Python version, e.g. 3.10")
    g.add_argument("--arch", help="x86_64 or aarch64 (default: this host's)")
    g.add_argument("--chip", help="910, 910b, a3 or 310p (default: 910b)")
    g.add_argument("--os", help="base OS, e.g. ubuntu22.04 (default: ubuntu22.04)")


def add_lock_arg(p: argparse.ArgumentParser, picks_entry: bool = True) -> None:
    """``--lock FILE``; ``picks_entry``: --arch/--os choose the lock's entry for this command."""
    p.add_argument("--lock", metavar="FILE",
                   help="take the stack from this lock (`npuenv lock`) instead of resolving row constraints"
                        + ("; --arch and --os pick its entry when it has several" if picks_entry else
                           "; each host is checked against the entry of its own arch and OS"))


def constraints_from(args) -> Constraints:
    """The row constraints of the command line (lock.constraints_from_mapping: one meaning everywhere)."""
    return lock_mod.constraints_from_mapping({k: getattr(args, k, None) for k in lock_mod.CONSTRAINT_KEYS})


def load(args) -> Matrix:
    """The matrix --matrix names, else the bundled one."""
    return load_matrix(args.matrix) if getattr(args, "matrix", None) else load_matrix()


def given_constraints(args, keys=lock_mod.CONSTRAINT_KEYS) -> list[str]:
    """The constraint options given on the command line, as it spells them."""
    return [lock_mod.cli_name(k) for k in keys if getattr(args, k, None) not in (None, "")]


def lock_from(args, picks_entry: bool = True) -> lock_mod.Lock | None:
    """The lock --lock names (None without it), refused together with the row constraints: a lock
    is resolved once, and a command never resolves again beside it."""
    path = getattr(args, "lock", None)
    if not path:
        return None
    refused = given_constraints(args, ROW_CHOOSERS if picks_entry else lock_mod.CONSTRAINT_KEYS)
    if refused:
        also = " (--arch and --os may pick its entry)" if picks_entry else ""
        raise UserError(f"--lock {path} and {', '.join(refused)}: give one or the other; the lock already says "
                        f"the row (`npuenv lock show {path}`){also}. Drop {', '.join(refused)}, or drop --lock to "
                        f"resolve the constraints afresh")
    return lock_mod.load(path)

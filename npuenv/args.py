"""Command-line arguments every subcommand that takes a matrix row shares.

They live in compat_matrix.cli_options (the library packages' own CLIs add them too, and no
library package imports npuenv); this module names them for npuenv's commands."""
from __future__ import annotations

from compat_matrix.cli_options import (ENV_OPTIONS, Parser, add_constraint_args, add_env_argument, add_lock_arg,
                                      apply_env_defaults, constraints_from, load, lock_from)

__all__ = ["ENV_OPTIONS", "Parser", "add_constraint_args", "add_env_argument", "add_lock_arg", "apply_env_defaults",
           "constraints_from", "load", "lock_from"]

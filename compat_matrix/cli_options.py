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
import copy
import os
from dataclasses import dataclass

from . import lock as lock_mod
from .errors import UserError
from .loader import load_matrix
from .model import Matrix
from .resolver import Constraints

# The constraints that choose the row; --arch and --os choose a platform (a lock's entry).
ROW_CHOOSERS = ("row", "torch_npu", "torch", "cann", "python", "chip")
PLATFORM_CHOOSERS = ("arch", "os")


# --- options the environment may set --------------------------------------------------------

@dataclass(frozen=True)
class EnvOption:
    """An option users set on every call, which an environment variable may set instead: the variable's
    value is the option's default, and the command line wins over it."""

    var: str
    option: str
    commands: str


# The one table of NPUENV_* variables (the README's table is checked against it). None of them is a row
# constraint: `eval "$(npuenv matrix resolve --format shell)"` exports NPUENV_<stack field> names, which
# must never change what a later command resolves.
ENV_OPTIONS = {
    "matrix": EnvOption(lock_mod.MATRIX_ENV, "--matrix", "every command"),
    "lock": EnvOption("NPUENV_LOCK", "--lock", "validate, deploy, status, image, wheelhouse build, bundle make"),
    "inventory": EnvOption("NPUENV_INVENTORY", "--inventory", "deploy, status"),
    "validate_out": EnvOption("NPUENV_VALIDATE_OUT", "--out", "validate"),
    "validate_level": EnvOption("NPUENV_VALIDATE_LEVEL", "--level", "validate"),
}


class FromEnv:
    """An option's default taken from its environment variable, read and checked as the command line's
    value would be once the command is known (``apply_env_defaults``): a bad value in a variable that
    the command does not use stops nothing."""

    def __init__(self, env: EnvOption, text: str, parser: argparse.ArgumentParser, action: argparse.Action):
        self.env, self.text, self.parser, self.action = env, text, parser, action

    def __str__(self) -> str:   # what --help shows as the default
        return self.text

    def value(self):
        where = f"argument {self.env.option} (from ${self.env.var}={self.text})"
        try:
            value = self.action.type(self.text) if self.action.type else self.text
        except argparse.ArgumentTypeError as e:
            self.parser.error(f"{where}: {e}; fix or unset {self.env.var}")
        except (TypeError, ValueError):
            name = getattr(self.action.type, "__name__", "")
            self.parser.error(f"{where}: invalid {name} value: {self.text!r}; fix or unset {self.env.var}")
        if self.action.choices is not None and value not in self.action.choices:
            choices = ", ".join(map(repr, self.action.choices))
            self.parser.error(f"{where}: invalid choice: {value!r} (choose from {choices}); fix or unset "
                              f"{self.env.var}")
        return value


def add_env_argument(p: argparse.ArgumentParser, key: str, *flags: str, **kwargs) -> argparse.Action:
    """``p.add_argument(*flags, **kwargs)`` whose default ENV_OPTIONS[key]'s variable may set."""
    env = ENV_OPTIONS[key]
    assert env.option in flags, (env.option, flags)
    action = p.add_argument(*flags, **kwargs)
    action.env_var = env.var
    text = os.environ.get(env.var, "")
    if text:
        action.default = FromEnv(env, text, p, action)
    return action


def apply_env_defaults(args: argparse.Namespace) -> argparse.Namespace:
    """Replace each default an environment variable gave with its value, checked as the command line's
    would be (a bad one: the parser's usage error, exit 2). ``args.from_env`` names the options set so."""
    args.from_env = {}
    for dest, value in list(vars(args).items()):
        if isinstance(value, FromEnv):
            setattr(args, dest, value.value())
            args.from_env[dest] = value.env.var
    return args


class HelpFormatter(argparse.HelpFormatter):
    """Help that shows each option's default, where it has one, and the variable that may set it."""

    def _format_action(self, action):
        extra = []
        default = action.default
        help_text = action.help or ""
        # A help that already speaks of its default (`%(default)s`, or in words) says it once.
        if action.option_strings and default not in (None, False, "", [], argparse.SUPPRESS) \
                and "default" not in help_text.lower():
            extra.append("default: %(default)s")
        env = getattr(action, "env_var", None)
        if env:
            extra.append("env: " + env)
        if extra and action.help != argparse.SUPPRESS:
            action = copy.copy(action)
            action.help = (f"{help_text} ({'; '.join(extra)})" if help_text else "; ".join(extra))
        return super()._format_action(action)


class RawDescriptionHelpFormatter(argparse.RawDescriptionHelpFormatter, HelpFormatter):
    """HelpFormatter, with the description printed as written."""


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose help shows defaults (HelpFormatter); its subcommands' parsers are Parsers too."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)


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
    add_env_argument(p, "lock", "--lock", metavar="FILE",
                     help="take the stack from this lock (`npuenv lock`) instead of resolving row constraints"
                          + ("; --arch and --os pick its entry when it has several" if picks_entry else
                             "; each host is checked against the entry of its own arch and OS")
                          + "; row constraints on the command line win over the variable's lock")


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
    if refused and "lock" in getattr(args, "from_env", {}):
        return None   # the command line's constraints win over the lock the environment names
    if refused:
        also = " (--arch and --os may pick its entry)" if picks_entry else ""
        raise UserError(f"--lock {path} and {', '.join(refused)}: give one or the other; the lock already says "
                        f"the row (`npuenv lock show {path}`){also}. Drop {', '.join(refused)}, or drop --lock to "
                        f"resolve the constraints afresh")
    return lock_mod.load(path)

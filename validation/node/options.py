"""The options of `npuenv validate` and of the suite on the node, checked in one
place: their names, defaults, ranges and help. The CLI reads them as
``--timeout``, the suite (validation/node/suite/conftest.py) as ``--npuenv-timeout``,
and both refuse a value out of range with the option's name and its range.

Every function here is an argparse ``type=``: it takes the text given and
returns the value, or raises ``argparse.ArgumentTypeError`` (argparse, and
pytest's option parser, print it and exit 2, or 4 for pytest). ``checked()``
applies one to a value given to the library (validation.run.validate).
"""
from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from typing import Callable

from compat_matrix.errors import UserError

# TCP ports a rendezvous can listen on (0 would be "any port", which the other nodes cannot know).
PORT_RANGE = (1, 65535)
# No collective legitimately takes a day: a larger value is a typo.
MAX_TIMEOUT_S = 24 * 3600


def integer(low: int, high: int | None = None) -> Callable[[str], int]:
    """A whole number in [low, high]."""
    def parse(text: str) -> int:
        try:
            value = int(str(text).strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"{value} is out of range; give {_range(low, high)}")
        return value
    parse.__name__ = "integer"
    return parse


def number(low: float, high: float | None = None) -> Callable[[str], float]:
    """A finite number in [low, high) (NaN and infinity refused: no comparison with them means anything)."""
    def parse(text: str) -> float:
        try:
            value = float(str(text).strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{text!r} is not a finite number; "
                                             f"give {_range(low, high, open_high=True)}")
        if value < low or (high is not None and value >= high):
            raise argparse.ArgumentTypeError(f"{value:g} is out of range; give {_range(low, high, open_high=True)}")
        return value
    parse.__name__ = "number"
    return parse


def _range(low, high, open_high: bool = False) -> str:
    if high is None:
        return f"{low} or more"
    return f"at least {low} and less than {high}" if open_high else f"{low} to {high}"


def nonempty_path(text: str) -> str:
    """A path to write to: '' would be the current folder, which nobody means."""
    if not str(text).strip():
        raise argparse.ArgumentTypeError("an empty path; give a folder, e.g. out/validation")
    return text


port = integer(*PORT_RANGE)
port.__name__ = "port"
# A share of the peers' median (--straggler-margin): 0 to less than 1.
fraction = number(0.0, 1.0)
fraction.__name__ = "fraction"
# The fewest hosts of one kind compared for stragglers (--straggler-min-peers; stragglers.MIN_PEERS): with one
# host there is nothing to compare it with.
peers = integer(2)
peers.__name__ = "peers"


@dataclass(frozen=True)
class SuiteOption:
    """An option of the suite: ``--NAME`` on `npuenv validate`, ``--npuenv-NAME`` on the node."""
    name: str
    parse: Callable[[str], object]
    default: object
    help: str

    @property
    def key(self) -> str:
        """Its name in the suite's ``options`` fixture and in argparse's namespace."""
        return self.name.replace("-", "_")


SUITE_OPTIONS = (
    SuiteOption("devices", integer(1), None, "NPU devices each host should show (default: the chip's per node)"),
    SuiteOption("nproc", integer(1), None, "processes per host for the collectives (default: one per device)"),
    SuiteOption("timeout", integer(1, MAX_TIMEOUT_S), 60,
                "seconds after which a collective counts as hung (default: %(default)s)"),
    SuiteOption("max-bytes", integer(1), 1 << 30,
                "largest all_reduce of the full level's sweep, in bytes (default: %(default)s)"),
    SuiteOption("busbw-floor", number(0.0), 0.0, "minimum busbw (GB/s) at the largest size (default: %(default)s)"),
)


def suite_arguments(values: dict) -> list[str]:
    """The node's arguments for the suite options given (``values`` by key; None: the suite's default)."""
    return [f"--npuenv-{o.name}={values[o.key]}" for o in SUITE_OPTIONS if values.get(o.key) is not None]


def checked(option: str, parse: Callable[[str], object], value):
    """``value`` (given to the library, not typed) through ``parse``; a UserError naming ``option``."""
    try:
        return parse(str(value))
    except argparse.ArgumentTypeError as e:
        raise UserError(f"{option}: {e}") from None

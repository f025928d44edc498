"""What the vendor-output parsers share: their errors, the unread-line record and small helpers.

Real output is messy: log lines before a table, rows elided as ``...`` in
published copies, tables cut at either end, cells older drivers leave blank.
The table parsers read every row they can and list the lines they could not
read (``unreadable``) instead of giving up on the whole table. Text that is not
the tool's output at all raises :class:`VendorOutputError` naming the offending
line; text that is the tool's own error report (DCMI -8020, ``Invalid card id.``,
``Device ID is out of the valid range.``) raises :class:`VendorToolFailure`, and
``npu_smi.npu_smi_error`` / ``hccn_tool.hccn_error`` / ``hccl_test.hccl_test_errors``
say which without raising. What a code means is in validation.node.codes.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from .. import codes


class VendorOutputError(ValueError):
    """Output that does not have the vendor's layout; names the line."""

    def __init__(self, message: str, line: str | None = None, lineno: int | None = None):
        self.line, self.lineno = line, lineno
        if line is not None:
            message = f"{message} (line {lineno}: {line!r})" if lineno else f"{message}: {line!r}"
        super().__init__(message)


class VendorToolFailure(VendorOutputError):
    """The tool printed an error report instead of the data asked for."""

    def __init__(self, error: "ToolError"):
        self.error = error
        super().__init__(f"the tool reported an error: {error.describe()}")


@dataclass(frozen=True)
class ToolError:
    message: str                      # the vendor's line(s), e.g. "dcmi module initialize failed. ret is -8005"
    codes: tuple[int, ...] = ()       # DCMI return codes, in the order printed
    parameter: str | None = None      # "-i" / "-c" / "-t" for a rejected npu-smi parameter

    @property
    def code(self) -> int | None:
        return self.codes[0] if self.codes else None

    def describe(self) -> str:
        entry = codes.dcmi_entry(self.codes) if self.codes else None
        return f"{self.message} ({entry.meaning}: {entry.cause})" if entry else self.message


@dataclass(frozen=True)
class Unread:
    """A line a parser could not read, and why; the rest of the output was still read."""
    lineno: int
    line: str
    reason: str


# How published copies mark lines left out; a parser skips them as a reader would.
ELISIONS = ("...", "\u2026")


def _lines(text: str):
    """(line number, line) for every non-blank line."""
    return [(n, line) for n, line in enumerate(text.splitlines(), 1) if line.strip()]


def _int(value: str, line: str, lineno: int, what: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise VendorOutputError(f"{what} is not a number: {value!r}", line, lineno) from None


def _na(value: str | None) -> bool:
    return value is None or value in ("NA", "N/A", "-", "")


def _float_or_none(value: str | None) -> float | None:
    if _na(value):
        return None
    m = re.match(r"-?\d+(?:\.\d+)?", value.strip())
    return float(m.group()) if m else None
"""Parser for the result table the ``hccl_test`` binaries (all_reduce_test, ...) print."""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from .common import Unread, _lines


# busbw = algbw x factor, the nccl-tests factors (nccl-tests doc/PERFORMANCE.md)
# for n ranks. hccl_test prints algbw only ("alg_bandwidth").
BUSBW_FACTORS = {
    "all_reduce": lambda n: 2 * (n - 1) / n,
    "all_gather": lambda n: (n - 1) / n,
    "reduce_scatter": lambda n: (n - 1) / n,
    "alltoall": lambda n: (n - 1) / n,
    "alltoallv": lambda n: (n - 1) / n,
    "broadcast": lambda n: 1.0,
    "reduce": lambda n: 1.0,
}


@dataclass(frozen=True)
class HcclRow:
    bytes: int
    time_us: float
    algbw_gbps: float
    check: str          # success | failed | NULL (check disabled or the result would overflow)


@dataclass(frozen=True)
class HcclError:
    location: str       # "./common/src/hccl_test_common.cc:538"
    retcode: int
    stage: str | None   # from "This is an error in init_hcclComm."
    line: str


@dataclass
class HcclTestResult:
    rows: list[HcclRow]
    min_bytes: int | None = None
    max_bytes: int | None = None
    iters: int | None = None
    warmup_iters: int | None = None
    errors: list[HcclError] = field(default_factory=list)
    failed_ranks: list[str] = field(default_factory=list)   # "local rank_id N, check result failed, ..." lines
    notes: list[str] = field(default_factory=list)          # warnings the tool printed
    unreadable: list[Unread] = field(default_factory=list)

    def busbw_gbps(self, row: HcclRow, op: str, ranks: int) -> float:
        return row.algbw_gbps * BUSBW_FACTORS[op](ranks)


_HCCL_HEADER = re.compile(r"data_size\(Bytes\):")


def hccl_test_errors(text: str) -> list[HcclError]:
    return parse_hccl_test(text).errors


def parse_hccl_test(text: str) -> HcclTestResult:
    """The table an ``hccl_test`` binary (all_reduce_test, ...) prints on rank 0.

    The binaries spell the header ``aveg_time(us):``, the docs ``avg_time(us):``;
    numbers are left-aligned (binaries) or right-aligned (docs) between ``|``.
    A ``the minbytes is ...`` preamble may come first; an MPI or HCCL error
    prints ``hccl interface return err <file>:<line>, retcode: N`` followed by
    ``This is an error in <stage>.``. Columns are taken by their header names.
    """
    result = HcclTestResult(rows=[])
    columns: list[str] | None = None
    for n, raw in _lines(text):
        line = raw.strip()
        m = re.search(r"the minbytes is (\d+), maxbytes is (\d+), iters is (\d+), warmup_iters is (\d+)", line)
        if m:
            result.min_bytes, result.max_bytes, result.iters, result.warmup_iters = map(int, m.groups())
            continue
        m = re.search(r"hccl interface return err\w*\s+(\S+), retcode: (-?\d+)", line)
        if m:
            result.errors.append(HcclError(m.group(1), int(m.group(2)), None, line))
            continue
        m = re.match(r"This is an error in (\w+)\.?", line)
        if m and result.errors and result.errors[-1].stage is None:
            last = result.errors[-1]
            result.errors[-1] = HcclError(last.location, last.retcode, m.group(1), last.line)
            continue
        if re.match(r"(local )?rank.?id \d+, check result failed", line):
            result.failed_ranks.append(line)
            continue
        if _HCCL_HEADER.match(line):
            columns = [c.strip().rstrip(":") for c in line.split("|")]
            continue
        cells = [c.strip() for c in line.split("|")]
        if columns and len(cells) == len(columns) and cells[0].isdigit():
            row = dict(zip(columns, cells))
            time_key = next((c for c in columns if c.endswith("_time(us)")), None)
            try:
                result.rows.append(HcclRow(int(row["data_size(Bytes)"]), float(row[time_key]),
                                           float(row["alg_bandwidth(GB/s)"]), row["check_result"]))
            except (KeyError, TypeError, ValueError):
                result.unreadable.append(Unread(n, raw, "a result row whose cells are not numbers"))
            continue
        if line.startswith("Warning:"):
            result.notes.append(line)
            continue
        result.unreadable.append(Unread(n, raw, "not part of the hccl_test table"))
    return result

"""Terminal tables take their column widths from their content (#23): render.aligned, and the tables
that use it (matrix list, the wheelhouse build summary)."""
from __future__ import annotations

from compat_matrix.render import aligned
from torch_npu_pkg.cli import wheel_lines


def test_columns_are_as_wide_as_their_widest_cell_and_right_aligned_where_asked():
    rows = [("a", "bb", "7", "x"), ("a-much-longer-cell", "b", "12345", "last cell")]
    lines = aligned(rows, right=(2,))
    assert lines == ["a                   bb      7  x",
                     "a-much-longer-cell  b   12345  last cell"]
    assert aligned([]) == [] and aligned([("only",)]) == ["only"]


def test_the_wheelhouse_summary_lines_up_names_longer_than_any_fixed_width():
    long = "torch_npu-2.13.0-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"
    manifest = {"wheels": [
        {"role": "torch", "file": "torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl", "size": 200 << 20,
         "source": {"kind": "dir", "location": "/opt/wheels"}},
        {"role": "torch_npu", "file": long + "-and-a-bit-more-to-pass-any-fixed-column", "size": 30 << 20,
         "source": {"kind": "pypi", "location": "https://pypi.org/simple"}},
        {"role": "torchvision", "file": "torchvision-0.28.0-cp311-cp311-manylinux_2_28_x86_64.whl", "size": 900 << 10,
         "source": {"kind": "dir", "location": "/opt/wheels"}},
        {"role": "cann-python-dep", "file": "decorator-5.1.1-py3-none-any.whl", "size": 9000, "source": {}},
        {"role": "dep", "file": "six-1.16.0-py2.py3-none-any.whl", "size": 11000, "source": {}},
    ]}
    lines = wheel_lines(manifest)
    assert lines[-1] == "  + 2 more wheels (1 CANN Python dependencies and what they all need)"
    sizes = ["200 MiB", "30 MiB", "900 KiB"]
    ends = {line.index(size) + len(size) for line, size in zip(lines, sizes)}
    assert len(ends) == 1   # sizes right-aligned in one column
    sources = {line.index(kind) for line, kind in zip(lines, ("dir:", "pypi:", "dir:"))}
    assert len(sources) == 1   # and the source column starts in one place
    assert lines[1].startswith("  torch_npu    torch_npu-2.13.0")


def test_the_deploy_summary_lines_up_whatever_its_hosts_hold():
    from playbooks import rollout
    hosts = [{"host": "npu-a", "batch": 1, "outcome": "changed", "gate": "passed",
              "at": "sha256:0123456789ab", "cause": "", "needs_rerun": False},
             {"host": "a-node-with-a-long-inventory-name", "batch": 12345678, "outcome": "not attempted",
              "gate": "not run", "at": "half-upgraded sha256:0123456789ab -> sha256:ba9876543210", "cause": "x",
              "needs_rerun": True},
             {"host": "b", "batch": None, "outcome": "skipped", "gate": "not run", "at": "x" * 500, "cause": "busy",
              "needs_rerun": False}]
    data = {"hosts": hosts, "lock": {"digest": "sha256:0123456789abcdef", "row": {"torch_npu": "2.13.0",
                                                                                 "cann": "9.1.0", "hdk": "26.1.0"}},
            "check": False, "batch_size": 2, "gate": "quick", "counts": {"changed": 1}, "at_lock": 1,
            "partial": [], "stopped_after_batch": None, "rerun": "", "log": "out/deploy/x"}
    lines = rollout.render(data).splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("host "))
    table = lines[header:header + 4]
    heads = ("batch", "outcome", "gate", "lock now", "cause")
    starts = [table[0].index(h) for h in heads]
    for line, host in zip(table[1:], hosts):
        cells = (str(host["batch"] or "-"), host["outcome"], host["gate"], host["at"][:rollout.AT_SHOWN])
        assert [line.index(c, s) for c, s in zip(cells, starts)] == starts[:4], line
    assert len(table[3]) < 200   # the lock shown is cut

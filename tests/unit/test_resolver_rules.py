"""Each ranking rule of the resolver, isolated in a small synthetic matrix in
which only that rule can decide. The winners and orders are written by hand.

The rules (compat_matrix/resolver.py): active before end of life, then the
newest CANN (vendor ordering: 8.0.RC3 < 8.0.0), then the newest torch, then
the newest torch_npu (PEP 440: post10 > post8)."""
from __future__ import annotations

import json
import re

import pytest

import compat_matrix as cm
from compat_matrix import resolver

TORCHVISION = {"2.1": "0.16.0", "2.4": "0.19.0", "2.8": "0.23.0", "2.9": "0.24.0", "2.10": "0.25.0"}


def row(torch_npu: str, cann: str, status: str = "active", python=("3.9", "3.10", "3.11"),
        archs=("x86_64", "aarch64")) -> dict:
    release = re.match(r"\d+\.\d+\.\d+", torch_npu).group(0)
    torch_mm = ".".join(release.split(".")[:2])
    packaging = "cann" if cann.startswith(("8.5", "9.")) else "ascend-toolkit"
    url = "https://example.org/synthetic"
    return {
        "torch_npu": torch_npu, "torch": release, "torchvision": TORCHVISION[torch_mm], "cann": cann,
        "python": list(python), "packaging": packaging,
        "adapter": {"release": None, "branch": None, "tag": None},
        "hdk": {"version": "25.5.0", "min": "25.0.X"},
        "wheel": {"index": "pypi", "url": f"https://pypi.org/project/torch-npu/{torch_npu}/",
                  "python_tags": ["cp" + p.replace(".", "") for p in python],
                  "platforms": [f"manylinux_2_28_{a}" for a in archs]},
        "status": status,
        "sources": {k: url for k in ("versions", "python", "torchvision", "adapter", "hdk", "wheel")},
    }


def matrix(*rows: dict) -> cm.Matrix:
    return cm.load_matrix("synthetic.yaml", text=json.dumps({"rows": list(rows)}))


def ranked(m: cm.Matrix, **constraints) -> list[str]:
    res = cm.resolve(m, cm.Constraints(arch="x86_64", **constraints))
    assert res.stack.row is res.fitting[0]
    return [r.torch_npu for r in res.fitting]


def test_active_row_beats_an_end_of_life_row_with_newer_cann_torch_and_torch_npu():
    m = matrix(row("2.9.0.post2", "9.0.0", status="eol"), row("2.8.0", "8.3.RC1"))
    assert ranked(m) == ["2.8.0", "2.9.0.post2"]


def test_newest_cann_beats_newer_torch_and_torch_npu():
    m = matrix(row("2.9.0.post9", "8.5.0"), row("2.8.0.post2", "9.0.0"))
    assert ranked(m) == ["2.8.0.post2", "2.9.0.post9"]


def test_cann_release_candidates_sort_before_the_release():
    m = matrix(row("2.4.0.post4", "8.0.RC3"), row("2.4.0.post2", "8.0.0"), row("2.4.0.post6", "8.0.RC2"))
    assert ranked(m) == ["2.4.0.post2", "2.4.0.post4", "2.4.0.post6"]


def test_with_the_same_cann_the_newest_torch_wins_numerically():
    m = matrix(row("2.9.0.post9", "8.5.0"), row("2.10.0", "8.5.0"), row("2.8.0.post5", "8.5.0"))
    assert ranked(m) == ["2.10.0", "2.9.0.post9", "2.8.0.post5"]


def test_with_the_same_cann_and_torch_the_newest_torch_npu_wins_numerically():
    m = matrix(row("2.1.0.post8", "8.0.0"), row("2.1.0.post10", "8.0.0"), row("2.1.0", "8.0.0"))
    assert ranked(m) == ["2.1.0.post10", "2.1.0.post8", "2.1.0"]


def test_end_of_life_rows_rank_among_themselves_by_the_same_rules():
    m = matrix(row("2.1.0.post10", "8.0.RC3", status="eol"), row("2.4.0", "8.0.RC3", status="eol"),
               row("2.1.0.post8", "8.0.0", status="eol"))
    assert ranked(m) == ["2.1.0.post8", "2.4.0", "2.1.0.post10"]


def test_the_reason_names_the_winner_and_the_runner_up():
    m = matrix(row("2.9.0.post2", "9.0.0", status="eol"), row("2.8.0", "8.3.RC1"))
    reason = cm.resolve(m, cm.Constraints(arch="x86_64", python="3.10")).reason
    assert reason == ("2 row(s) fit python=3.10, arch=x86_64; chose torch_npu 2.8.0 (torch 2.8.0, CANN 8.3.RC1, "
                      "active) by the ranking: active rows before end-of-life ones, then the newest CANN, then the "
                      "newest torch, then the newest torch_npu. Runner-up: torch_npu 2.9.0.post2 (CANN 9.0.0, eol). "
                      "Defaults: chip=910b, os=ubuntu22.04.")


def test_constraints_filter_before_ranking():
    m = matrix(row("2.9.0", "8.5.0"), row("2.8.0.post2", "9.0.0", python=("3.11",)))
    assert ranked(m, python="3.10") == ["2.9.0"]
    assert ranked(m, cann="8.5") == ["2.9.0"]
    assert ranked(m, torch="2.8") == ["2.8.0.post2"]


def test_default_python_is_the_newest_numerically():
    m = matrix(row("2.9.0", "8.5.0", python=("3.9", "3.10", "3.11")))
    assert cm.resolve(m, cm.Constraints(arch="x86_64")).stack.python == "3.11"


def test_nearest_rows_break_the_fewest_constraints_then_rank():
    m = matrix(row("2.9.0", "8.5.0", python=("3.10",)), row("2.8.0.post2", "9.0.0", python=("3.10",)),
               row("2.4.0.post2", "8.0.0", python=("3.9",)))
    with pytest.raises(cm.NoMatch) as info:
        cm.resolve(m, cm.Constraints(torch="2.9", python="3.9", arch="x86_64"))
    assert [(r.torch_npu, broken) for r, broken in info.value.nearest] == [
        ("2.9.0", ["no Python 3.9 (has 3.10)"]),
        ("2.4.0.post2", ["torch is 2.4.0, not 2.9"]),
        ("2.8.0.post2", ["torch is 2.8.0, not 2.9", "no Python 3.9 (has 3.10)"]),
    ]


def test_version_constraints_by_prefix_and_by_specifier():
    m = matrix(row("2.9.0", "8.5.0"), row("2.10.0", "8.5.0"), row("2.1.0rc1", "8.0.0"))
    assert ranked(m, torch="==2.9.0") == ["2.9.0"]
    assert ranked(m, torch="~=2.9.0") == ["2.9.0"]
    assert ranked(m, torch="!=2.9.0") == ["2.10.0", "2.1.0rc1"]
    assert ranked(m, torch="2.1") == ["2.1.0rc1"]
    # a specifier admits pre-releases: torch_npu 2.1.0rc1 is a row of its own
    assert ranked(m, torch_npu=">=2.0,<2.2") == ["2.1.0rc1"]
    with pytest.raises(cm.MatrixError, match="torch '>=two' is not a version"):   # bad input, not "nothing fits"
        cm.resolve(m, cm.Constraints(torch=">=two", arch="x86_64"))


def test_no_match_message_lists_the_nearest_three_rows_and_what_each_breaks():
    m = matrix(row("2.9.0", "8.5.0", python=("3.10", "3.11")), row("2.8.0.post2", "9.0.0", python=("3.10",)),
               row("2.4.0.post2", "8.0.0", python=("3.9",), archs=("aarch64",)), row("2.1.0", "8.0.RC3"))
    with pytest.raises(cm.NoMatch) as info:
        cm.resolve(m, cm.Constraints(torch_npu="2.9", cann="9.0", python="3.9", arch="x86_64"))
    assert info.value.constraints == cm.Constraints(torch_npu="2.9", cann="9.0", python="3.9", arch="x86_64")
    # each breaks two constraints; ties in the ranking's order (newest CANN first)
    assert str(info.value) == (
        "no matrix row fits torch_npu=2.9, cann=9.0, python=3.9, arch=x86_64.\n"
        "nearest rows (and what they break):\n"
        "  torch_npu 2.8.0.post2 (torch 2.8.0, CANN 9.0.0, Python 3.10, active): torch_npu is 2.8.0.post2, "
        "not 2.9; no Python 3.9 (has 3.10)\n"
        "  torch_npu 2.9.0 (torch 2.9.0, CANN 8.5.0, Python 3.10, 3.11, active): CANN is 8.5.0, not 9.0; "
        "no Python 3.9 (has 3.10, 3.11)\n"
        "  torch_npu 2.1.0 (torch 2.1.0, CANN 8.0.RC3, Python 3.9, 3.10, 3.11, active): torch_npu is 2.1.0, "
        "not 2.9; CANN is 8.0.RC3, not 9.0")
    with pytest.raises(cm.MatrixError, match="unknown row: no torch_npu 2.9.0.post1 in the matrix"):
        cm.resolve(m, cm.Constraints(torch_npu="2.9.0.post1"))
    with pytest.raises(cm.NoMatch) as info:
        cm.resolve(m, cm.Constraints(torch="2.4", arch="x86_64"))
    assert dict((r.torch_npu, broken) for r, broken in info.value.nearest)["2.4.0.post2"] == ["no x86_64 wheel"]


def test_constraints_without_values_describe_themselves():
    assert cm.Constraints().describe() == "no constraints"
    m = matrix(row("2.9.0", "8.5.0"))
    assert cm.resolve(m, cm.Constraints()).reason.startswith("1 row(s) fit no constraints; chose torch_npu 2.9.0")


def test_unknown_arch_chip_os_and_python_are_usage_errors_naming_the_choices():
    m = matrix(row("2.9.0", "8.5.0"))
    with pytest.raises(cm.MatrixError) as info:
        cm.resolve(m, cm.Constraints(arch="sparc", chip="h100", os="windows11", python="2.7"))
    assert str(info.value) == (
        "<constraints>:0: unknown arch 'sparc'; use one of: x86_64, aarch64\n"
        "<constraints>:0: unknown chip 'h100'; use one of: 910b, 910, a3, 310p\n"
        "<constraints>:0: unknown OS 'windows11'; use one of: ubuntu22.04, openeuler22.03, openeuler24.03, "
        "debian12\n"
        "<constraints>:0: --python: '2.7' is not a Python version (expected 3.N, e.g. 3.10)")


def test_aliases_and_known_values_pass_through():
    m = matrix(row("2.9.0", "8.5.0"))
    stack = cm.resolve(m, cm.Constraints(arch="arm64", chip="910B", os="debian12", python="3.10")).stack
    assert (stack.arch, stack.chip, stack.os, stack.python) == ("aarch64", "910b", "debian12", "3.10")


def test_default_arch_is_this_hosts_or_the_first_the_row_covers(monkeypatch):
    m = matrix(row("2.9.0", "8.5.0"), row("2.8.0", "8.3.RC1", archs=("aarch64",)))
    monkeypatch.setattr(resolver.platform, "machine", lambda: "x86_64")
    res = cm.resolve(m, cm.Constraints(torch_npu="2.9.0"))
    assert res.stack.arch == "x86_64"
    res = cm.resolve(m, cm.Constraints(torch_npu="2.8.0"))
    assert res.stack.arch == "aarch64"
    assert "Defaults: arch=aarch64 (this host's, or the first the row's wheels cover), python=3.11 (the newest " \
           "the row supports), chip=910b, os=ubuntu22.04." in res.reason
    monkeypatch.setattr(resolver.platform, "machine", lambda: "arm64")
    assert resolver.host_arch(m) == "aarch64"
    assert cm.resolve(m, cm.Constraints(torch_npu="2.9.0")).stack.arch == "aarch64"   # the row covers both
    monkeypatch.setattr(resolver.platform, "machine", lambda: "riscv64")
    assert resolver.host_arch(m) == "x86_64"   # unknown: the first arch of platforms.yaml


# --- how a constraint that cannot be used is reported -------------------------------------------

def _problems(**constraints) -> list[tuple[str, int, str]]:
    with pytest.raises(cm.MatrixError) as e:
        resolver.normalise(cm.load_matrix(), cm.Constraints(**constraints))
    return [(p.file, p.line, p.message) for p in e.value.problems]


def test_an_unknown_row_is_named_as_asked_without_the_exact_match_operator():
    assert resolver.unknown_row_message("==2.99.0") == \
        "unknown row: no torch_npu 2.99.0 in the matrix; `npuenv matrix list` shows the rows"
    assert resolver.unknown_row_message("===2.99.0").startswith("unknown row: no torch_npu ===2.99.0 in")
    assert resolver.unknown_row_message("2.99").startswith("unknown row: no torch_npu 2.99 in")
    assert _problems(torch_npu="==2.99.0") == [("<constraints>", 0, resolver.unknown_row_message("==2.99.0"))]


def test_bad_version_constraints_name_their_field():
    assert _problems(torch_npu="two", cann="eight") == [
        ("<constraints>", 0, "torch_npu 'two' is not a version (2.4.0), a version prefix (2.4) or a specifier "
                             "('>=2.4', '==2.4.0.post2'); quote a specifier in the shell"),
        ("<constraints>", 0, "cann 'eight' is not a CANN version or prefix (8.0, 8.0.RC3, 8.5.0)")]
    assert resolver.version_constraint_problem("torch", " 2.4") is not None    # padded: not what was meant
    assert resolver.version_constraint_problem("torch", "") is not None
    assert resolver.version_constraint_problem("torch", ">=2.4") is None


def test_a_specifier_never_matches_a_version_it_cannot_read():
    assert resolver.version_matches(">=2.4", "2.5.0") is True
    assert resolver.version_matches(">=2.4,<", "2.5.0") is False   # a broken specifier matches nothing

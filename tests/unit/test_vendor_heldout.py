"""The held-out set: published vendor outputs the parsers were not developed
against (tests/fixtures/vendor_samples/heldout, sources in SOURCES.md), each with
what it must read written by hand in EXPECTED.json. Every file is one test; the
last test prints the score."""
import json
from pathlib import Path

import pytest

from validation.node import codes, explain
from validation.node.vendor_tools import hccl_test, hccn_tool, npu_smi

HELDOUT = Path(__file__).resolve().parents[2] / "tests/fixtures/vendor_samples/heldout"
EXPECTED = {k: v for k, v in json.loads((HELDOUT / "EXPECTED.json").read_text()).items() if not k.startswith("_")}


def check_npu_smi_info(text, want):
    info = npu_smi.parse_npu_smi_info(text)
    assert info.version == want["version"]
    if "npu_smi_version" in want:
        assert info.npu_smi_version == want["npu_smi_version"]
    if "chips" in want:
        assert [[c.npu, c.chip] for c in info.chips] == want["chips"]
    if "chip_count" in want:
        assert len(info.chips) == want["chip_count"]
    if "npu_ids" in want:
        assert info.npu_ids() == want["npu_ids"]
    if "unreadable" in want:
        assert len(info.unreadable) == want["unreadable"], info.unreadable
    if "unreadable_at_most" in want:
        assert len(info.unreadable) <= want["unreadable_at_most"], info.unreadable
    for index, fields in want.get("fields", {}).items():
        chip = info.chips[int(index)]
        for name, value in fields.items():
            got = getattr(chip, name)
            assert (list(got) if isinstance(got, tuple) else got) == value, (index, name)
    if "processes" in want:
        assert [[p.npu, p.chip, p.pid, p.name, p.mem_mb] for p in info.processes] == want["processes"]


def check_topo(text, want):
    topo = npu_smi.parse_topo(text)
    assert topo.devices == want["devices"]
    for a, b, kind in want["links"]:
        assert topo.link(a, b) == kind
    assert topo.cpu_affinity == {k: v for k, v in topo.cpu_affinity.items()} and \
        all(topo.cpu_affinity[k] == v for k, v in want["affinity"].items())
    if not want["affinity"]:
        assert topo.cpu_affinity == {}


def check_chip_report(text, want):
    report = npu_smi.parse_chip_report(text)
    assert report.npu == want["npu"]
    values = report.values(want["chip"])
    for key, value in want["values"].items():
        assert values[key] == value, key
    for key, value in want.get("mcu", {}).items():
        assert report.mcu[key] == value


def check_board(text, want):
    board = npu_smi.parse_board(text)
    for key, value in want["values"].items():
        assert board[key] == value


def check_lldp(text, want):
    n = hccn_tool.parse_lldp(text)
    assert n.port_id == want["port_id"] and n.mgmt_ipv4 == want["mgmt_ipv4"]
    assert want["system_description_contains"] in n.system_description
    for tlv, lines in want["tlvs"].items():
        assert n.tlvs[tlv] == lines


def check_route(text, want):
    routes = hccn_tool.parse_route(text)
    assert len(routes) == want["routes"]
    default = next(r for r in routes if r.destination == "default")
    assert (default.gateway, default.iface) == (want["default_gateway"], want["default_iface"])


def check_ping(text, want):
    r = hccn_tool.parse_ping(text)
    assert (r.target, r.transmitted, r.received) == (want["target"], want["transmitted"], want["received"])


def check_hccn_error(text, want):
    assert hccn_tool.hccn_error(text).message == want["message"]


def check_gateway(text, want):
    assert hccn_tool.parse_gateway(text) == hccn_tool.Gateway(want["gateway"], want["iface"])


def check_hccl_test(text, want):
    r = hccl_test.parse_hccl_test(text)
    assert len(r.rows) == want["rows"]
    if "last" in want:
        last = r.rows[-1]
        assert [last.bytes, last.time_us, last.algbw_gbps, last.check] == want["last"]
    if "min_bytes" in want:
        assert (r.min_bytes, r.iters) == (want["min_bytes"], want["iters"])
    if "error_retcode" in want:
        assert r.errors and all(e.retcode == want["error_retcode"] for e in r.errors)
        assert r.errors[0].stage == want["error_stage"]
    else:
        assert r.errors == [] and r.unreadable == []


def check_npu_smi_error(text, want):
    error = npu_smi.npu_smi_error(text)
    assert list(error.codes) == want["codes"]
    if "explanation_contains" in want:
        assert want["explanation_contains"] in " ".join(explain.explain(text))
        assert codes.dcmi_entry(error.codes).codes == tuple(want["codes"])


CHECKS = {"npu_smi_info": check_npu_smi_info, "topo": check_topo, "usages": check_chip_report,
          "temp": check_chip_report, "power": check_chip_report, "memory": check_chip_report,
          "ecc": check_chip_report, "board": check_board, "lldp": check_lldp, "route": check_route,
          "ping": check_ping, "hccn_error": check_hccn_error, "gateway": check_gateway,
          "hccl_test": check_hccl_test, "npu_smi_error": check_npu_smi_error}


def read_right(name: str) -> bool:
    want = EXPECTED[name]
    try:
        CHECKS[want["parser"]]((HELDOUT / name).read_text(), want)
        return True
    except Exception:  # a parser that raises reads the file wrong
        return False


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_heldout_output_is_read_right(name):
    want = EXPECTED[name]
    CHECKS[want["parser"]]((HELDOUT / name).read_text(), want)


def test_every_heldout_file_has_an_expectation_and_a_source():
    files = {p.name for p in HELDOUT.iterdir() if p.name != "EXPECTED.json"}
    assert files == set(EXPECTED)
    sources = (HELDOUT.parent / "SOURCES.md").read_text()
    assert [f for f in sorted(files) if f not in sources] == []


def test_score(capsys):
    right = [name for name in sorted(EXPECTED) if read_right(name)]
    tables = [n for n in EXPECTED if EXPECTED[n]["parser"] == "npu_smi_info"]
    with capsys.disabled():
        print(f"\nheld-out: {len(right)}/{len(EXPECTED)} read right "
              f"({sum(n in right for n in tables)}/{len(tables)} npu-smi info tables)")
    assert len(right) == len(EXPECTED)

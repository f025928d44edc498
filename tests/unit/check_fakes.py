"""Fakes for calling the validation suite's checks directly: a probe that
answers commands from a table, a pytest request that only collects
user_properties, the expected stack as the runner builds it, and recorded
facts of a healthy Atlas 800T A2 node (8 x 910B3, the row's driver, CANN and
Python stack), which each test then breaks in one place."""
from __future__ import annotations

import copy
import fnmatch
import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import compat_matrix as cm
from validation.node import facts as facts_mod
from validation.node.results import PROP_DATA, PROP_FAILURE, PROP_WARNING
from validation.run import expected_stack
from validation.node.suite.conftest import Checker, CheckFailed

SAMPLES = Path(__file__).resolve().parents[1] / "fixtures" / "vendor_samples"

# The rows the checks are tested with: one of each CANN packaging generation.
CURRENT_ROW = "2.13.0"      # CANN 9.1.0, cann-<v> layout, HDK 26.1.0 (>= 25.2.X)
LEGACY_ROW = "2.4.0.post2"  # CANN 8.0.0, ascend-toolkit/<v> layout, HDK 24.1.0 (>= 24.1.0)


def sample(name: str) -> str:
    return (SAMPLES / name).read_text()


_MATRIX = None


def stack(row: str = CURRENT_ROW, **constraints) -> dict:
    """The expected stack the runner hands the suite (``--npuenv-stack``)."""
    global _MATRIX
    _MATRIX = _MATRIX or cm.load_matrix()
    constraints.setdefault("arch", "x86_64")
    resolved = cm.resolve(_MATRIX, cm.Constraints(torch_npu="==" + row, **constraints)).stack
    return json.loads(json.dumps(expected_stack(resolved)))


# The suite's options as its conftest makes them; the fleet ones are unset outside the fleet phase
# (29512 is the default rendezvous port, --npuenv-fleet-port).
OPTIONS = {"backend": "cpu", "devices": None, "max_bytes": 1 << 20, "busbw_floor": 0.0, "timeout": 60, "nproc": None,
           "fleet_size": None, "fleet_rank": None, "fleet_master": None, "fleet_port": 29512, "peer_ips": ""}


def options(**changes) -> dict:
    return {**OPTIONS, **changes}


class UnexpectedCommand(AssertionError):
    pass


# facts.run_sections batches commands into one shell call:
#   echo @@npuenv-section KEY; COMMAND 2>&1; printf '\n@@npuenv-rc %s\n' $?; ...
_SECTION = re.compile(rf"echo {re.escape(facts_mod.SECTION)} ('[^']*'|\S+); (.*?) 2>&1; "
                      rf"printf '\\n{re.escape(facts_mod.SECTION_RC)} %s\\n' \$\?; ", re.S)


def _sections(script: str) -> list[tuple[str, str]] | None:
    """(key, command) of each command of a batched script; None when ``script`` is not one."""
    found, end = [], 0
    for m in _SECTION.finditer(script):
        if m.start() != end:
            return None
        found.append((shlex.split(m.group(1))[0], m.group(2)))
        end = m.end()
    return found if found and end == len(script) else None


@dataclass
class FakeProbe(facts_mod.Probe):
    """Answers ``run`` from ``commands`` (regex -> (rc, stdout, stderr), first
    match wins), ``read`` and ``glob`` from ``files``. A command nobody
    expected fails the test, so a check cannot pass on an answer it never got.

    A batched script (facts.run_sections) is answered command by command, its
    output put together as bash prints it (each command's stdout and stderr,
    then the marker line with its exit code). ``runs`` lists the calls (one per
    round trip to the host), ``answered`` every single command answered."""

    commands: list[tuple[str, tuple[int, str, str]]] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)
    runs: list[str] = field(default_factory=list)
    answered: list[str] = field(default_factory=list)
    runnable: bool = True
    local: bool = False       # the machine the suite runs on (the artefact's local:// run)

    def answer(self, pattern: str, rc: int = 0, out: str = "", err: str = "") -> "FakeProbe":
        self.commands.insert(0, (pattern, (rc, out, err)))
        return self

    def _answer(self, command):
        for pattern, result in self.commands:
            if re.search(pattern, command):
                self.answered.append(command)
                return result
        raise UnexpectedCommand(f"the fake host has no answer for: {command}")

    def run(self, command):
        self.runs.append(command)
        batch = _sections(command)
        if batch is None:
            return self._answer(command)
        out = ""
        for key, single in batch:
            rc, stdout, stderr = self._answer(single)
            out += f"{facts_mod.SECTION} {key}\n{stdout}{stderr}\n{facts_mod.SECTION_RC} {rc}\n"
        return 0, out, ""

    def read(self, path):
        return self.files.get(path)

    def glob(self, pattern):
        return sorted(p for p in self.files if fnmatch.fnmatch(p, pattern))

    @property
    def can_run(self):
        return self.runnable

    @property
    def is_local(self):
        return self.local


@dataclass
class _Node:
    user_properties: list = field(default_factory=list)


@dataclass
class FakeRequest:
    node: _Node = field(default_factory=_Node)


@dataclass
class Outcome:
    """What one check call left: the failure it recorded (None if it passed),
    its warnings and the data it recorded."""
    failure: dict | None
    warnings: list[str]
    data: list
    error: CheckFailed | None = None
    skipped: str | None = None     # the reason, when the check skipped itself

    @property
    def passed(self) -> bool:
        return self.failure is None and self.skipped is None


def run_check(check_fn, **kwargs) -> Outcome:
    """Call a check with a Checker bound to a fake request; collect what it recorded.
    A skip is caught and recorded: escaping, it would turn the calling test into a skip."""
    request = FakeRequest()
    error = skipped = None
    try:
        check_fn(check=Checker(request), **kwargs)
    except CheckFailed as e:
        error = e
    except pytest.skip.Exception as e:
        skipped = str(e)
    props = request.node.user_properties
    failures = [json.loads(v) for k, v in props if k == PROP_FAILURE]
    assert len(failures) == (1 if error else 0), "a failed check records exactly one failure"
    return Outcome(failure=failures[0] if failures else None,
                   warnings=[v for k, v in props if k == PROP_WARNING],
                   data=[json.loads(v) for k, v in props if k == PROP_DATA], error=error, skipped=skipped)


def failed(check_fn, **kwargs) -> dict:
    """The failure a check must record; fails the test when the check passes."""
    outcome = run_check(check_fn, **kwargs)
    if outcome.failure is None:
        pytest.fail(f"{check_fn.__name__} {'skipped' if outcome.skipped else 'passed'} where it must fail")
    return outcome.failure


def passed(check_fn, **kwargs) -> Outcome:
    outcome = run_check(check_fn, **kwargs)
    assert outcome.passed, f"{check_fn.__name__} failed on a healthy host: {outcome.failure}"
    return outcome


# --------------------------------------------------------------- recorded facts

def _devices(n: int = 8, name: str = "910B3") -> list[dict]:
    bus = ["0000:C1:00.0", "0000:C2:00.0", "0000:81:00.0", "0000:82:00.0",
           "0000:01:00.0", "0000:02:00.0", "0000:41:00.0", "0000:42:00.0"]
    return [{"npu": i, "chip": 0, "phy_id": i, "name": name, "health": "OK", "bus_id": bus[i % 8]}
            for i in range(n)]


def network_facts(ips: dict[int, str | None]) -> list[dict]:
    """facts["network"]: one entry per NPU port as collect() reads it (hccn_tool), with
    only what the checks here read filled in: link, net health, device IP (None where
    none was preset), the optical module's presence."""
    return [{"port": port, "link": "UP", "net_health": "Success",
             "ip": {"address": ip, "netmask": "255.255.255.0"} if ip else None, "optical": {"present": True}}
            for port, ip in ips.items()]


_HEALTHY = {
    "install_info": {"UserName": "HwHiAiUser", "UserGroup": "HwHiAiUser", "Driver_Install_Type": "full",
                     "Driver_Install_Path_Param": "/usr/local/Ascend", "Driver_Install_For_All": "yes",
                     "Firmware_Install_Type": "full", "Firmware_Install_Path_Param": "/usr/local/Ascend"},
    "driver": {"version": "26.1.0", "package_version": "26.1.0"},
    "firmware": {"version": "7.8.0.1.212", "package_version": "26.1.0"},
    "devices": _devices(),
    "npu_smi": {"version": "26.1.0", "processes": []},
    "cann": [{"generation": "cann", "version": "9.1.0", "home": "/usr/local/Ascend/cann", "arch": "x86_64",
              "kernels": ["ascend910b"], "innerversion": None, "running": None, "env_script": True}],
    "nnal": ["9.1.0"],
    "nnal_active": {"version": "9.1.0", "entry_point": "/usr/local/Ascend/nnal/atb/latest", "env_script": True},
    "python": {"interpreter": "python3", "torch": "2.13.0+cpu", "torch_npu": "2.13.0", "torchvision": "0.28.0"},
    "network": network_facts({i: f"192.168.1.{10 + i}" for i in range(8)}),
}


def healthy_facts(**changes) -> dict:
    """Facts of a healthy node of CURRENT_ROW, with top-level keys replaced."""
    facts = copy.deepcopy(_HEALTHY)
    facts.update(copy.deepcopy(changes))
    return facts


# --------------------------------------------------------------- a running node's vendor tools

# Where the recorded node has its tools: npu-smi as `command -v npu-smi` finds it,
# hccn_tool where the driver installs it ({root}/driver/tools/hccn_tool).
NPU_SMI = "/usr/local/bin/npu-smi"
HCCN = "/usr/local/Ascend/driver/tools/hccn_tool"


def key_value_lines(*pairs, width: int = 31) -> str:
    """npu-smi's key/value sub-commands (FORMAT_NOTES section 3): a TAB, the key padded
    to ``width``, ': value'; a pair of None is a blank line."""
    return "".join("\n" if key is None else f"\t{key:<{width}}: {value}\n" for key, value in pairs)


def chip_reports(npu: int, chip: int, temp_c: int = 36, power_w: float = 94.8, hbm_temp_c: int = 40,
                 hbm_single_bit: int = 0) -> dict[str, str]:
    """What a healthy 910B3 chip answers to ``npu-smi info -t temp|power|memory|ecc -i N -c C``,
    written in the layout FORMAT_NOTES describes (no capture of these on 910B3 is kept
    outside the held-out set)."""
    head = (("NPU ID", npu), ("Chip Count", 1), (None, None))
    ecc = [(f"HBM {name}", count) for name, count in (
        ("Single Bit Error Count", hbm_single_bit), ("Double Bit Error Count", 0),
        ("Single Bit Aggregate Total Err Cnt", hbm_single_bit), ("Double Bit Aggregate Total Err Cnt", 0),
        ("Single Bit Isolated Pages Count", 0), ("Double Bit Isolated Pages Count", 0))]
    return {
        "temp": key_value_lines(*head, ("NPU Temperature (C)", temp_c), ("Chip ID", chip)),
        "power": key_value_lines(*head, ("NPU Real-time Power(W)", power_w), ("Chip ID", chip)),
        "memory": key_value_lines(("NPU ID", npu), ("DDR Capacity(MB)", 0), ("HBM Capacity(MB)", 65536),
                                  ("HBM Temperature(C)", hbm_temp_c), ("Chip ID", chip)),
        "ecc": key_value_lines(*head, *ecc, ("Chip ID", chip), width=41),
    }


def port_reports(port: int, ip: str | None) -> dict[str, tuple[int, str]]:
    """What hccn_tool answers for a healthy NPU port (FORMAT_NOTES section 5): query -> (rc, output)."""
    net = ip.rsplit(".", 1)[0] if ip else "192.168.1"
    return {
        "link": (0, sample("hccn_tool_-link_-g_UP.txt")),
        # a 200GE port as the 910B tool prints it (its format string; SOURCES.md), FEC not switchable on 910B
        "speed": (0, "Speed: 200000 Mb/s\n"),
        "fec": (0, sample("hccn_tool_-fec_-g_910B_not_switchable_source.txt")),
        "net_health": (0, sample("hccn_tool_-net_health_-g_Success.txt")),
        "ip": (0, f"ipaddr:{ip}\nnetmask:255.255.255.0\n") if ip else
              (255, "Get ipconf failed, because no ip was preset there!\n"),
        "optical": (0, "optical info:\npresent              : present\ntemperature          : 45 C\n"
                       + "".join(f"Tx Power{lane}            : 1.1000 mW\nRx Power{lane}            : 0.9500 mW\n"
                                 for lane in range(4))),
        "link_stat": (0, f"[devid {port}]current time        : Wed Aug  2 03:09:26 2022\n"
                         f"[devid {port}]link up count       : 1\n[devid {port}]link change records :\n"
                         f"[devid {port}]    Tue Aug  1 14:43:40 2022    LINK UP\n"),
        "stat": (0, "packet statistics:\nmac_tx_total_pkt_num:120034\nmac_rx_total_pkt_num:119876\n"
                    "mac_rx_fcs_err_pkt_num:0\nroce_rx_err_pkt_num:0\n"),
        "gateway": (0, f"default gateway:{net}.1, Iface:eth{port}\n"),
        "routes": (0, "Routing table:\nDestination     Gateway         Genmask         Flags Metric Ref    Use Iface\n"
                      f"{net + '.0':<16}0.0.0.0         255.255.255.0   U     0      0        0 eth{port}\n"),
        # no LLDP neighbour (the switch sends none): hccn_tool prints nothing
        "lldp": (0, ""),
        # as a deployment guide prints it ("netdetect address: 11.12.165.1", SOURCES.md)
        "netdetect": (0, f"netdetect address: {net}.254\n"),
        # the switch line of MindCluster's fault-diag guide (hccn_tool_-tls_-g_switch_lines_mindcluster_doc.txt)
        "tls": (0, f"dev_id:{port}, tls switch[0](0:disable, 1:enable), tls preconfigured[1](0:non-preset, "
                   "1:preset), tls alarm time threshold[60]days\n"),
    }


def chip_mapping(chips: list[tuple[int, int]]) -> str:
    """``npu-smi info -m`` for ``chips`` in the order given (their logic ids 0, 1, ...), in the layout
    of the published capture npu-smi_info_-m_910B4_8npu_with_mcu.txt: a TAB, columns 31 wide."""
    rows = [("NPU ID", "Chip ID", "Chip Logic ID", "Chip Name")]
    rows += [(npu, chip, logic_id, "Ascend 910B3") for logic_id, (npu, chip) in enumerate(chips)]
    return "".join("\t" + "".join(f"{cell:<31}" for cell in row[:-1]) + f"{row[-1]}\n" for row in rows)


HCCN_FLAGS = {"link": "-link", "speed": "-speed", "fec": "-fec", "net_health": "-net_health", "ip": "-ip",
              "optical": "-optical",
              "link_stat": "-link_stat", "stat": "-stat", "gateway": "-gateway", "routes": "-route", "tls": "-tls",
              "netdetect": "-netdetect", "lldp": "-lldp"}


def answer_node(probe: FakeProbe, table: str | None = None, chips: list[tuple[int, int]] | None = None,
                ips: dict[int, str | None] | None = None, smi: str = NPU_SMI) -> FakeProbe:
    """Answer everything facts.collect() asks a running node: ``npu-smi info`` (a real
    8 x 910B3 table unless ``table``), where npu-smi is, each chip's health (a real OK
    capture), temperature (30 + NPU id), power (90 + NPU id), HBM temperature (40 + NPU
    id) and ECC for each (npu, chip) of ``chips``, the topology (a real 910B3 capture),
    each NPU port's hccn_tool queries with the device IPs of ``ips`` (port -> IP or
    None), each chip's logic id (its place in ``chips``), and the row's Python distributions."""
    table = table if table is not None else sample("npu-smi_info_910B3_25.2.0_8npu_with_process.txt")
    chips = chips if chips is not None else [(npu, 0) for npu in range(8)]
    ips = ips if ips is not None else {port: f"192.168.1.{10 + port}" for port in range(8)}
    probe.answer(r"^python3 -c 'import importlib\.metadata as m, json", 0,
                 '{"torch": "2.13.0+cpu", "torch_npu": "2.13.0", "torchvision": "0.28.0"}\n')
    probe.answer(r"^npu-smi info$", 0, table)
    probe.answer(r"^command -v npu-smi \|\| ", 0, smi + "\n")
    at = re.escape(shlex.quote(smi))
    probe.answer(rf"^{at} info -t topo$", 0, sample("npu-smi_info_-t_topo_910B3_8npu.txt"))
    probe.answer(rf"^{at} info -m$", 0, chip_mapping(chips))
    # the stored capture lost the final newline that npu-smi prints after each line
    health_ok = sample("npu-smi_info_-t_health_-i_0_-c_0_OK.txt").rstrip("\n") + "\n"
    probe.answer(rf"^{at} info -t health -i \d+ -c \d+$", 0, health_ok)
    for npu, chip in chips:
        reports = chip_reports(npu, chip, temp_c=30 + npu, power_w=90.0 + npu, hbm_temp_c=40 + npu)
        for kind, text in reports.items():
            probe.answer(rf"^{at} info -t {kind} -i {npu} -c {chip}$", 0, text)
    for port, ip in ips.items():
        for query, (rc, text) in port_reports(port, ip).items():
            probe.answer(rf"^{HCCN} -i {port} {HCCN_FLAGS[query]} -g$", rc, text)
    return probe

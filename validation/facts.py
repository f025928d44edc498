"""What is installed on a host, read the way the quick level reads it.

A ``Probe`` runs commands and reads files on the target: the local host, a
directory tree (an unpacked image, a mounted disk: files only), or a remote
host through testinfra. ``collect`` turns what it finds into plain data:
devices and their health, driver, firmware, CANN, NNAL, torch and torch_npu.
"""
from __future__ import annotations

import dataclasses
import glob as globlib
import json
import os
import re
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path

import compat_matrix as cm
from compat_matrix import outputs

from . import vendor_tools

# Where the driver installs npu-smi when it is not on PATH.
NPU_SMI_FALLBACKS = ("/usr/local/bin/npu-smi", "/usr/local/sbin/npu-smi")
# The Python distributions whose versions validation compares with the row.
PYTHON_DISTS = ("torch", "torch_npu", "torchvision")
_PY_VERSIONS = ("import importlib.metadata as m, json\n"
                "def v(d):\n    try:\n        return m.version(d)\n    except m.PackageNotFoundError:\n        return None\n"
                f"print(json.dumps({{d: v(d) for d in {PYTHON_DISTS!r}}}))\n")


class Probe:
    """Reads a target. ``run`` executes in a login shell, so the target's
    profile (CANN's set_env.sh) applies as it would for a user."""

    def run(self, command: str) -> tuple[int, str, str]:
        raise NotImplementedError

    def read(self, path: str) -> str | None:
        raise NotImplementedError

    def glob(self, pattern: str) -> list[str]:
        raise NotImplementedError

    @property
    def can_run(self) -> bool:
        return True

    @property
    def is_local(self) -> bool:
        """Whether commands run on the machine this code runs on."""
        return False


@dataclass
class LocalProbe(Probe):
    """This machine (root "/") or a directory tree standing for one (files only)."""

    root: str = "/"

    def _path(self, path: str) -> str:
        return os.path.join(self.root, path.lstrip("/")) if self.root != "/" else path

    @property
    def can_run(self) -> bool:
        return self.root == "/"

    @property
    def is_local(self) -> bool:
        return self.root == "/"

    def run(self, command):
        if not self.can_run:
            return 127, "", f"not run: {self.root} is a directory tree, not a running host"
        p = subprocess.run(["bash", "-lc", command], capture_output=True, text=True)
        return p.returncode, p.stdout, p.stderr

    def read(self, path):
        """A regular file's text, else None, as HostProbe reads (`test -f`): a FIFO under --root
        would block, a device never end."""
        try:
            return outputs.read_bytes(self._path(path), path).decode("utf-8", errors="replace")
        except cm.UserError:
            return None

    def glob(self, pattern):
        found = sorted(globlib.glob(self._path(pattern)))
        if self.root == "/":
            return found
        return ["/" + os.path.relpath(f, self.root) for f in found]


@dataclass
class HostProbe(Probe):
    """A testinfra host (podman://, ansible://, local://, ...)."""

    host: object

    @property
    def is_local(self) -> bool:
        return self.host.backend.NAME == "local"

    def run(self, command):
        r = self.host.run("bash -lc " + shlex.quote(command))
        return r.rc, r.stdout, r.stderr

    def read(self, path):
        f = self.host.file(path)
        return f.content_string if f.exists and f.is_file else None

    def glob(self, pattern):
        rc, out, _ = self.run(f"for p in {pattern}; do [ -e \"$p\" ] && echo \"$p\"; done; true")
        return [line for line in out.splitlines() if line]


def key_values(text: str | None) -> dict[str, str]:
    """KEY=VALUE files (version.info, ascend_install.info, *_install.info)."""
    out = {}
    for line in (text or "").splitlines():
        key, sep, value = line.partition("=")
        if sep:
            out[key.strip()] = value.strip()
    return out


def npu_smi(probe: Probe, args: str = "info") -> tuple[int, str]:
    """Run npu-smi from PATH or the driver's standard locations."""
    rc, out, err = probe.run(f"npu-smi {args}")
    for path in NPU_SMI_FALLBACKS:
        if rc != 127:
            break
        rc, out, err = probe.run(f"{path} {args}")
    return rc, out + err


class Facts(dict):
    """A host's facts, with its NPU ports (eight hccn_tool queries per port)
    read only when a check first asks for them: the quick level needs none."""

    def __init__(self, data: dict, read_network):
        super().__init__(data)
        self._read_network = read_network

    def __missing__(self, key):
        if key != "network":
            raise KeyError(key)
        self["network"] = self._read_network()
        return self["network"]

    def get(self, key, default=None):
        return self[key] if key in self or key == "network" else default


def collect(probe: Probe, platforms: cm.Platforms | None = None, network: bool = True) -> dict:
    """Everything the checks read. ``network=False``: a ``Facts`` that reads the
    NPU ports when first asked."""
    platforms = platforms or cm.load_platforms()
    root = platforms.install_root
    install_info = key_values(probe.read(platforms.hdk["paths"]["install_info"]))
    driver_root = install_info.get("Driver_Install_Path_Param", root)
    driver = key_values(probe.read(f"{driver_root}/driver/version.info"))
    firmware = key_values(probe.read(f"{driver_root}/firmware/version.info"))
    facts = {
        "install_info": install_info,
        "driver": {"version": driver.get("Version"), "package_version": driver.get("package_version")}
        if driver else None,
        "firmware": {"version": firmware.get("Version"), "package_version": firmware.get("package_version")}
        if firmware else None,
        "devices": [],
        "npu_smi": None,
        "cann": _cann(probe, platforms),
        "nnal": sorted({n["version"] for n in _nnal(probe, root)}),
        "nnal_detail": _nnal(probe, root),
        "python": _python(probe),
        "topology": None,
        "network": [],
    }
    if probe.can_run:
        rc, text = npu_smi(probe)
        if rc == 127:
            facts["npu_smi"] = {"error": "npu-smi not found (no driver on this host)"}
        else:
            try:
                info = vendor_tools.parse_npu_smi_info(text)
                facts["npu_smi"] = {"version": info.version, "unreadable": [dataclasses.asdict(u) for u in info.unreadable]}
                # A chip's logic id is its place in the table unless the table
                # prints it (310/310P "Device").
                facts["devices"] = [{"npu": c.npu, "chip": c.chip, "phy_id": c.phy_id, "name": c.name,
                                     "logic_id": c.device_id if c.device_id is not None else i,
                                     "health": c.health, "bus_id": c.bus_id, "temp_c": c.temp_c,
                                     "power_w": c.power_w, "hbm_mb": c.hbm_mb, "aicore_pct": c.aicore_pct}
                                    for i, c in enumerate(info.chips)]
                facts["npu_smi"]["processes"] = [{"npu": p.npu, "chip": p.chip, "pid": p.pid, "name": p.name}
                                                 for p in info.processes]
            except vendor_tools.VendorOutputError as e:
                facts["npu_smi"] = {"error": str(e)}
        if facts["devices"]:
            _device_details(probe, facts)
    if not network:
        del facts["network"]
        return Facts(facts, lambda: _network(probe, platforms, facts["devices"]) if facts["devices"] else [])
    if facts["devices"]:
        facts["network"] = _network(probe, platforms, facts["devices"])
    return facts


# ------------------------------------------------ per-device vendor queries

SECTION = "@@npuenv-section"
SECTION_RC = "@@npuenv-rc"


def run_sections(probe: Probe, commands: dict[str, str]) -> dict[str, tuple[int, str]]:
    """Run several commands in one shell call (one round trip to the host):
    key -> (exit code, output with stderr)."""
    # The newline before each exit-code marker ends output that has none of its own.
    script = "".join(f"echo {SECTION} {shlex.quote(key)}; {command} 2>&1; printf '\\n{SECTION_RC} %s\\n' $?; "
                     for key, command in commands.items())
    rc, out, err = probe.run(script)
    found: dict[str, tuple[int, str]] = {}
    key, lines = None, []
    for line in out.splitlines():
        if line.startswith(SECTION + " "):
            key, lines = line[len(SECTION) + 1:], []
        elif line.startswith(SECTION_RC + " ") and key is not None:
            if lines and lines[-1] == "":
                lines.pop()  # the marker's own newline
            found[key] = (int(line.split()[1]), "\n".join(lines) + "\n" if lines else "")
            key = None
        elif key is not None:
            lines.append(line)
    for missing in set(commands) - set(found):
        found[missing] = (rc or 1, (err or out).strip()[-300:] or "no output")
    return found


def _npu_smi_command(probe: Probe) -> str:
    rc, out, _ = probe.run("command -v npu-smi || for p in " + " ".join(NPU_SMI_FALLBACKS) +
                           "; do [ -x $p ] && echo $p && break; done; true")
    return shlex.quote(out.strip().splitlines()[0]) if out.strip() else "npu-smi"


def _read(parser, text: str):
    """A parser's result as plain (JSON) data, or {"error": why}: a fact that could not be read says so."""
    try:
        return json.loads(json.dumps(_plain(parser(text))))
    except vendor_tools.VendorOutputError as e:
        return {"error": str(e)}


def _plain(result):
    if isinstance(result, vendor_tools.Topology):
        return {"devices": result.devices, "cpu_affinity": result.cpu_affinity, "legend": result.legend,
                "links": {a: {b: result.links[(a, b)] for b in result.devices if (a, b) in result.links}
                          for a in result.devices},
                "unreadable": [dataclasses.asdict(u) for u in result.unreadable]}
    if dataclasses.is_dataclass(result):
        return dataclasses.asdict(result)
    if isinstance(result, list):
        return [dataclasses.asdict(r) if dataclasses.is_dataclass(r) else r for r in result]
    return result


def _chip_values(parser_keys: tuple[str, ...], chip: int):
    def read(text):
        return vendor_tools.parse_chip_report(text).number(parser_keys, chip)
    return read


def _ecc(chip: int):
    def read(text):
        report = vendor_tools.parse_chip_report(text)
        return {memory: dataclasses.asdict(counts) for memory in ("HBM", "DDR")
                if (counts := vendor_tools.ecc_counts(report, memory, chip)) is not None}
    return read


def _device_details(probe: Probe, facts: dict) -> None:
    """Each chip's health codes, temperatures, power, HBM and ECC, and the
    topology, from npu-smi's sub-commands (one shell call)."""
    smi = _npu_smi_command(probe)
    commands = {"topo": f"{smi} info -t topo"}
    for d in facts["devices"]:
        where = f"-i {d['npu']} -c {d['chip']}"
        for kind in ("health", "temp", "power", "memory", "ecc"):
            commands[f"{kind} {d['npu']} {d['chip']}"] = f"{smi} info -t {kind} {where}"
    out = run_sections(probe, commands)
    facts["topology"] = _read(vendor_tools.parse_topo, out["topo"][1])
    for d in facts["devices"]:
        key = f"{d['npu']} {d['chip']}"
        d["health_detail"] = _read(vendor_tools.parse_health, out[f"health {key}"][1])
        d["sensors"] = {
            "temp_c": _read(_chip_values(vendor_tools.TEMPERATURE_KEYS, d["chip"]), out[f"temp {key}"][1]),
            "power_w": _read(_chip_values(vendor_tools.POWER_KEYS, d["chip"]), out[f"power {key}"][1]),
            "hbm_temp_c": _read(_chip_values(vendor_tools.HBM_TEMPERATURE_KEYS, d["chip"]), out[f"memory {key}"][1]),
        }
        d["ecc"] = _read(_ecc(d["chip"]), out[f"ecc {key}"][1])


def network_port(device: dict, index: int) -> int:
    """hccn_tool -i takes the chip's physical id; tables without a Phy-ID column list chips in that order."""
    return device["phy_id"] if device.get("phy_id") is not None else index


HCCN_QUERIES = {  # what the checks read of each NPU port, and how
    "link": ("-link -g", vendor_tools.parse_link),
    "net_health": ("-net_health -g", vendor_tools.parse_net_health),
    "ip": ("-ip -g", vendor_tools.parse_ip),
    "optical": ("-optical -g", vendor_tools.parse_optical),
    "link_stat": ("-link_stat -g", vendor_tools.parse_link_stat),
    "stat": ("-stat -g", vendor_tools.parse_stat),
    "gateway": ("-gateway -g", vendor_tools.parse_gateway),
    "routes": ("-route -g", vendor_tools.parse_route),
}


def read_ports(probe: Probe, hccn: str, ports: list[int], queries: tuple[str, ...] = tuple(HCCN_QUERIES)) -> dict:
    """port -> {query: value or {"error": ...}} for the given hccn_tool queries (one shell call)."""
    commands = {f"{q} {port}": f"{shlex.quote(hccn)} -i {port} {HCCN_QUERIES[q][0]}" for port in ports for q in queries}
    out = run_sections(probe, commands)
    return {port: {q: _read(HCCN_QUERIES[q][1], out[f"{q} {port}"][1]) for q in queries} for port in ports}


def _network(probe: Probe, platforms: cm.Platforms, devices: list[dict]) -> list[dict]:
    hccn = platforms.hdk["paths"]["hccn_tool"].format(root=platforms.install_root)
    ports = [network_port(d, i) for i, d in enumerate(devices)]
    read = read_ports(probe, hccn, ports)
    return [{"port": port, **read[port]} for port in ports]


def colon_values(text: str | None) -> dict[str, str]:
    """``key : value`` files (NNAL's version.info, indented or not)."""
    out = {}
    for line in (text or "").splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip():
            out[key.strip()] = value.strip()
    return out


def _nnal(probe: Probe, root: str) -> list[dict]:
    """Each installed NNAL (ATB) version: from its own version.info
    (``Ascend-cann-atb : 8.2.RC2``), else its directory's name. The ``latest``
    link is an entry point, not a version."""
    found = []
    for atb in probe.glob(f"{root}/nnal/atb/*/atb"):
        folder = Path(atb).parent
        if folder.name == "latest":
            continue
        own = colon_values(probe.read(f"{folder}/version.info")).get("Ascend-cann-atb")
        found.append({"dir": str(folder), "version": own or folder.name,
                      "from": "version.info" if own else "directory name"})
    return sorted(found, key=lambda n: n["dir"])


def _nnae(probe: Probe, root: str) -> list[dict]:
    """NNAE (the runtime-only CANN some hosts carry instead of the toolkit)."""
    found = []
    for info_path in probe.glob(f"{root}/nnae/latest/ascend_nnae_install.info") + \
            probe.glob(f"{root}/nnae/latest/*-linux/ascend_nnae_install.info"):
        info = key_values(probe.read(info_path))
        found.append({"generation": "nnae", "version": info.get("version"), "home": f"{root}/nnae/latest",
                      "arch": info.get("arch"), "kernels": []})
    return found[:1]


def _cann(probe: Probe, platforms: cm.Platforms) -> list[dict]:
    """Every CANN toolkit reachable through a generation's 'latest' entry point, and NNAE."""
    found = _nnae(probe, platforms.install_root)
    for generation, spec in platforms.packaging.items():
        latest = spec["paths"]["toolkit_latest"].format(root=platforms.install_root)
        for info_path in probe.glob(f"{latest}/*-linux/ascend_toolkit_install.info"):
            info = key_values(probe.read(info_path))
            kernels = [Path(p).name for p in probe.glob(f"{latest}/opp/built-in/op_impl/ai_core/tbe/kernel/*")
                       if Path(p).name != "config"]
            found.append({"generation": generation, "version": info.get("version"), "home": latest,
                          "arch": info.get("arch"), "kernels": kernels})
    return found


def _python(probe: Probe) -> dict:
    if probe.can_run:
        rc, out, err = probe.run(f"python3 -c {shlex.quote(_PY_VERSIONS)}")
        if rc == 0 and out.strip():
            return {"interpreter": "python3", **json.loads(out.strip().splitlines()[-1])}
        return {"interpreter": "python3", "error": (err or out).strip()[-500:]}
    versions = {}
    for dist in PYTHON_DISTS:
        hits = probe.glob(f"/opt/*/venv/lib/python3*/site-packages/{dist}-*.dist-info") + \
            probe.glob(f"/usr/local/lib/python3*/site-packages/{dist}-*.dist-info") + \
            probe.glob(f"/usr/lib/python3/dist-packages/{dist}-*.dist-info")
        m = re.match(rf"{dist}-(.+)\.dist-info$", Path(hits[0]).name) if hits else None
        versions[dist] = m.group(1) if m else None
    return {"interpreter": None, **versions}

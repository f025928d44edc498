"""What is installed on a host, read the way the quick level reads it.

A ``Probe`` runs commands and reads files on the target: the local host, a
directory tree (an unpacked image, a mounted disk: files only), or a remote
host through testinfra. ``collect`` turns what it finds into plain data:
devices and their health, driver, firmware, CANN, NNAL, torch and torch_npu.
"""
from __future__ import annotations

import dataclasses
import functools
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

from .vendor_tools.common import VendorOutputError
from .vendor_tools.hccn_tool import (parse_fec, parse_gateway, parse_hccn_conf, parse_ip, parse_link, parse_link_stat,
                                     parse_lldp, parse_net_health, parse_netdetect, parse_optical, parse_route,
                                     parse_speed, parse_stat, parse_tls)
from .vendor_tools.kernel_log import parse_kernel_log
from .vendor_tools.npu_smi import (HBM_TEMPERATURE_KEYS, POWER_KEYS, TEMPERATURE_KEYS, Topology, ecc_counts,
                                   parse_board, parse_chip_report, parse_hccs, parse_health, parse_mapping,
                                   parse_mcu_version, parse_npu_smi_info, parse_spod_info, parse_topo)

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

    def run_once(self, command: str) -> tuple[int, str, str]:
        """``run``, once per probe for each command: checks that read one answer share one run."""
        answers = self.__dict__.setdefault("_answers", {})
        if command not in answers:
            answers[command] = self.run(command)
        return answers[command]

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
        # Bytes that are no UTF-8 (a kernel log may hold some) are replaced, never an exception.
        p = subprocess.run(["bash", "-lc", command], capture_output=True, text=True, errors="replace")
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
    """A host's facts, with the costly ones (``lazy``: key -> reader; the NPU ports at thirteen
    hccn_tool queries each, the boards, the kernel log) read only when a check first asks for
    them: the quick level needs none."""

    def __init__(self, data: dict, lazy: dict):
        super().__init__(data)
        self._lazy = lazy

    def __missing__(self, key):
        if key not in self._lazy:
            raise KeyError(key)
        self[key] = self._lazy[key]()
        return self[key]

    def get(self, key, default=None):
        return self[key] if key in self or key in self._lazy else default


# `npuenv facts --format json`: collect()'s answer under a key of its own, with its format's version.
HOST_FACTS_KEY = "npuenv_host_facts"
HOST_FACTS_VERSION = 1


def collect(probe: Probe, platforms: cm.Platforms | None = None, network: bool = True, *,
            device_details: bool = True, python: str = "python3") -> dict:
    """Everything the checks read, as a ``Facts`` that reads the boards, HCCS, super pod and the
    kernel log when first asked, and the NPU ports too with ``network=False``. ``device_details=False``
    leaves out each chip's sensors and the topology (five npu-smi calls per chip; `npuenv status`
    needs none); ``python`` is the interpreter whose torch, torch_npu and torchvision are read."""
    platforms = platforms or cm.load_platforms()
    root = platforms.install_root
    facts = {
        **_driver_facts(probe, platforms),
        "devices": [],
        "npu_smi": None,
        "cann": _cann(probe, platforms),
        "nnal": sorted({n["version"] for n in _nnal(probe, root)}),
        "nnal_detail": _nnal(probe, root),
        "nnal_active": _nnal_active(probe, platforms),
        "python": _python(probe, python),
        "topology": None,
        "hccn_conf": _hccn_conf(probe, platforms),
    }
    npu_smi_path = functools.cache(lambda: _npu_smi_command(probe))   # looked up once, when first needed
    if probe.can_run:
        facts["npu_smi"], facts["devices"] = _npu_smi_info(probe)
        if facts["devices"] and device_details:
            facts["npu_smi"], facts["devices"], facts["topology"] = _device_details(
                probe, facts["npu_smi"], facts["devices"], npu_smi_path())
    lazy = {"boards": lambda: _boards(probe, npu_smi_path, facts["devices"]),
            "hccs": lambda: _per_chip(probe, npu_smi_path, facts["devices"], "hccs", "hccs", parse_hccs),
            "super_pod": lambda: _per_chip(probe, npu_smi_path, facts["devices"], "spod-info", "spod",
                                           parse_spod_info),
            "kernel_log": lambda: _kernel_log(probe),
            "network": lambda: _network(probe, platforms, facts["devices"]) if facts["devices"] else []}
    if network:
        facts["network"] = lazy.pop("network")()
    return Facts(facts, lazy)


def _driver_facts(probe: Probe, platforms: cm.Platforms) -> dict:
    """The HDK's install record and the driver's and firmware's version files."""
    install_info = key_values(probe.read(platforms.hdk["paths"]["install_info"]))
    driver_root = install_info.get("Driver_Install_Path_Param", platforms.install_root)
    driver = key_values(probe.read(f"{driver_root}/driver/version.info"))
    firmware = key_values(probe.read(f"{driver_root}/firmware/version.info"))
    return {
        "install_info": install_info,
        # compatible_version: the CANN inner versions ([V100R001C23],...) the driver supports;
        # Innerversion: its own (hicann/driver itf_ver.conf, compatible_version.conf).
        "driver": {"version": driver.get("Version"), "package_version": driver.get("package_version"),
                   "innerversion": driver.get("Innerversion"), "compatible_version": driver.get("compatible_version")}
        if driver else None,
        "firmware": {"version": firmware.get("Version"), "package_version": firmware.get("package_version")}
        if firmware else None,
    }


def _npu_smi_info(probe: Probe) -> tuple[dict, list[dict]]:
    """``npu-smi info``'s table: what it says of itself (version, unread rows, processes, or
    {"error": why}) and one entry per chip (none where it could not be read)."""
    rc, text = npu_smi(probe)
    if rc == 127:
        return {"error": "npu-smi not found (no driver on this host)"}, []
    try:
        info = parse_npu_smi_info(text)
    except VendorOutputError as e:
        return {"error": str(e)}, []
    # The table prints a chip's logic id only on 310/310P ("Device"); elsewhere
    # `npu-smi info -m` says it (_device_details), not the chip's place in the table.
    devices = [{"npu": c.npu, "chip": c.chip, "phy_id": c.phy_id, "name": c.name,
                "logic_id": c.device_id,
                "health": c.health, "bus_id": c.bus_id, "temp_c": c.temp_c,
                "power_w": c.power_w, "hbm_mb": c.hbm_mb, "aicore_pct": c.aicore_pct}
               for c in info.chips]
    summary = {"version": info.version, "unread_rows": [dataclasses.asdict(u) for u in info.unread_rows()],
               "processes": [{"npu": p.npu, "chip": p.chip, "pid": p.pid, "name": p.name} for p in info.processes]}
    return summary, devices


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
    except VendorOutputError as e:
        return {"error": str(e)}


def _plain(result):
    if isinstance(result, Topology):
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
        return parse_chip_report(text).number(parser_keys, chip)
    return read


def _ecc(chip: int):
    def read(text):
        report = parse_chip_report(text)
        return {memory: dataclasses.asdict(counts) for memory in ("HBM", "DDR")
                if (counts := ecc_counts(report, memory, chip)) is not None}
    return read


def _device_details(probe: Probe, npu_smi_facts: dict, devices: list[dict],
                    smi: str) -> tuple[dict, list[dict], dict]:
    """Each chip's health codes, temperatures, power, HBM and ECC, and the topology, from
    npu-smi's sub-commands (one shell call): the npu_smi facts (with a mapping error, if any),
    the devices with their details added and their logic ids filled in, and the topology."""
    commands = {"topo": f"{smi} info -t topo", "mapping": f"{smi} info -m"}
    for d in devices:
        where = f"-i {d['npu']} -c {d['chip']}"
        for kind in ("health", "temp", "power", "memory", "ecc"):
            commands[f"{kind} {d['npu']} {d['chip']}"] = f"{smi} info -t {kind} {where}"
    out = run_sections(probe, commands)
    topology = _read(parse_topo, out["topo"][1])
    mapping = _read(parse_mapping, out["mapping"][1])
    if isinstance(mapping, dict):   # {"error": why}
        npu_smi_facts = {**npu_smi_facts, "mapping_error": mapping["error"]}
        logic_ids = {}
    else:
        logic_ids = {(m["npu"], m["chip"]): m["logic_id"] for m in mapping}
    detailed = []
    for d in devices:
        key = f"{d['npu']} {d['chip']}"
        logic_id = d["logic_id"] if d["logic_id"] is not None else logic_ids.get((d["npu"], d["chip"]))
        detailed.append({
            **d, "logic_id": logic_id,
            "health_detail": _read(parse_health, out[f"health {key}"][1]),
            "sensors": {
                "temp_c": _read(_chip_values(TEMPERATURE_KEYS, d["chip"]), out[f"temp {key}"][1]),
                "power_w": _read(_chip_values(POWER_KEYS, d["chip"]), out[f"power {key}"][1]),
                "hbm_temp_c": _read(_chip_values(HBM_TEMPERATURE_KEYS, d["chip"]),
                                    out[f"memory {key}"][1]),
            },
            "ecc": _read(_ecc(d["chip"]), out[f"ecc {key}"][1]),
        })
    return npu_smi_facts, detailed, topology


def _boards(probe: Probe, npu_smi_path, devices: list[dict]) -> list[dict]:
    """Each card's board (the firmware it runs, its compatibility with the driver) and MCU
    version, from npu-smi (one shell call; ``npu_smi_path()`` says where npu-smi is)."""
    if not devices:
        return []
    smi = npu_smi_path()
    cards = sorted({d["npu"] for d in devices})
    commands = {}
    for npu in cards:
        commands[f"board {npu}"] = f"{smi} info -t board -i {npu}"
        commands[f"mcu {npu}"] = f"{smi} upgrade -b mcu -i {npu}"
    out = run_sections(probe, commands)
    return [{"npu": npu, "board": _read(parse_board, out[f"board {npu}"][1]),
             "mcu": _read(parse_mcu_version, out[f"mcu {npu}"][1])} for npu in cards]


def _per_chip(probe: Probe, npu_smi_path, devices: list[dict], kind: str, key: str, parser) -> list[dict]:
    """Each chip's ``npu-smi info -t KIND`` read by ``parser`` under ``key`` (one shell call)."""
    if not devices:
        return []
    smi = npu_smi_path()
    out = run_sections(probe, {f"{d['npu']} {d['chip']}": f"{smi} info -t {kind} -i {d['npu']} -c {d['chip']}"
                               for d in devices})
    return [{"npu": d["npu"], "chip": d["chip"], key: _read(parser, out[f"{d['npu']} {d['chip']}"][1])}
            for d in devices]


def _kernel_log(probe: Probe) -> list[dict] | dict:
    """The Ascend driver's lines of the kernel's ring buffer (`dmesg`: since boot, as far as the buffer
    reaches), or {"error": why} where it cannot be read (a host that restricts dmesg to root, a tree)."""
    rc, out, err = probe.run("dmesg")
    if rc != 0:
        return {"error": (err or out).strip()[-300:] or f"dmesg exited {rc}"}
    return _read(parse_kernel_log, out)


def network_port(device: dict, index: int) -> int:
    """hccn_tool -i takes the chip's physical id; tables without a Phy-ID column list chips in that order."""
    return device["phy_id"] if device.get("phy_id") is not None else index


HCCN_QUERIES = {  # what the checks read of each NPU port, and how
    "link": ("-link -g", parse_link),
    "speed": ("-speed -g", parse_speed),
    "fec": ("-fec -g", parse_fec),
    "net_health": ("-net_health -g", parse_net_health),
    "ip": ("-ip -g", parse_ip),
    "optical": ("-optical -g", parse_optical),
    "link_stat": ("-link_stat -g", parse_link_stat),
    "stat": ("-stat -g", parse_stat),
    "gateway": ("-gateway -g", parse_gateway),
    "routes": ("-route -g", parse_route),
    "netdetect": ("-netdetect -g", parse_netdetect),
    "tls": ("-tls -g", parse_tls),
    "lldp": ("-lldp -g", parse_lldp),
}


def read_ports(probe: Probe, hccn: str, ports: list[int], queries: tuple[str, ...] = tuple(HCCN_QUERIES)) -> dict:
    """port -> {query: value or {"error": ...}} for the given hccn_tool queries (one shell call)."""
    commands = {f"{q} {port}": f"{shlex.quote(hccn)} -i {port} {HCCN_QUERIES[q][0]}" for port in ports for q in queries}
    out = run_sections(probe, commands)
    return {port: {q: _read(HCCN_QUERIES[q][1], out[f"{q} {port}"][1]) for q in queries} for port in ports}


def _hccn_conf(probe: Probe, platforms: cm.Platforms) -> dict | None:
    """/etc/hccn.conf as port ("0", ...) -> {key: value}; None when there is none, {"error": why} unreadable."""
    text = probe.read(platforms.hdk["paths"]["hccn_conf"])
    return None if text is None else _read(parse_hccn_conf, text)


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


def _nnal_active(probe: Probe, platforms: cm.Platforms) -> dict:
    """The NNAL version a login runs: the one nnal/atb/latest leads to (its version.info, read
    through the link, as the vendor's guides read it), and whether nnal/atb/set_env.sh is there."""
    paths = next(iter(platforms.packaging.values()))["paths"]
    latest = paths["nnal_latest"].format(root=platforms.install_root)
    own = colon_values(probe.read(f"{latest}/version.info")).get("Ascend-cann-atb")
    return {"version": own, "entry_point": latest,
            "env_script": probe.read(paths["nnal_env_script"].format(root=platforms.install_root)) is not None}


def _nnae(probe: Probe, root: str) -> list[dict]:
    """NNAE (the runtime-only CANN some hosts carry instead of the toolkit)."""
    found = []
    for info_path in probe.glob(f"{root}/nnae/latest/ascend_nnae_install.info") + \
            probe.glob(f"{root}/nnae/latest/*-linux/ascend_nnae_install.info"):
        info = key_values(probe.read(info_path))
        found.append({"generation": "nnae", "version": info.get("version"), "home": f"{root}/nnae/latest",
                      "arch": info.get("arch"), "kernels": []})
    return found[:1]


def _version_dirs(value: str | None) -> list[str]:
    """latest/version.cfg's ``[<inner>:<dir>][...]`` -> the version folders, as written."""
    return [pair.split(":", 1)[1] for pair in re.findall(r"\[([^\]]*)\]", value or "") if ":" in pair]


def _cann(probe: Probe, platforms: cm.Platforms) -> list[dict]:
    """The CANN toolkit each generation's entry point runs (its install-info read through the
    entry point: ascend-toolkit/latest up to 8.3, cann from 8.5), and NNAE. Up to 8.3 also the
    version latest/version.cfg records as running (``running``); ``env_script``: whether the
    generation's set_env.sh is there."""
    found = _nnae(probe, platforms.install_root)
    root = platforms.install_root
    for generation, spec in platforms.packaging.items():
        paths = spec["paths"]
        latest = paths["toolkit_latest"].format(root=root)
        # <home>/<arch>-linux/ascend_toolkit_install.info, <home> being the entry point
        info_rel = paths["toolkit_info"].replace(paths["toolkit_home"], "", 1).format(arch="*")
        cfg = key_values(probe.read(paths["version_cfg"].format(root=root))) if "version_cfg" in paths else {}
        running = _version_dirs(cfg.get("toolkit_running_version"))
        for info_path in probe.glob(latest + info_rel):
            info = key_values(probe.read(info_path))
            kernels = [Path(p).name for p in probe.glob(f"{latest}/opp/built-in/op_impl/ai_core/tbe/kernel/*")
                       if Path(p).name != "config"]
            found.append({"generation": generation, "version": info.get("version"), "home": latest,
                          "arch": info.get("arch"), "kernels": kernels, "innerversion": info.get("innerversion"),
                          "running": (running[0] if running else None) if "version_cfg" in paths else None,
                          "env_script": probe.read(paths["env_script"].format(root=root)) is not None})
    return found


def _python(probe: Probe, interpreter: str) -> dict:
    if probe.can_run:
        rc, out, err = probe.run(f"{shlex.quote(interpreter)} -c {shlex.quote(_PY_VERSIONS)}")
        if rc == 0 and out.strip():
            return {"interpreter": interpreter, **json.loads(out.strip().splitlines()[-1])}
        return {"interpreter": interpreter, "error": (err or out).strip()[-500:]}
    versions = {}
    for dist in PYTHON_DISTS:
        hits = probe.glob(f"/opt/*/venv/lib/python3*/site-packages/{dist}-*.dist-info") + \
            probe.glob(f"/usr/local/lib/python3*/site-packages/{dist}-*.dist-info") + \
            probe.glob(f"/usr/lib/python3/dist-packages/{dist}-*.dist-info")
        m = re.match(rf"{dist}-(.+)\.dist-info$", Path(hits[0]).name) if hits else None
        versions[dist] = m.group(1) if m else None
    return {"interpreter": None, **versions}


# ------------------------------------------------ what `npuenv status` reads

RECORDS = ("lock", "node_record", "deploying")
# A deploy record is a lock (a few KiB per platform) or less; anything larger is not one.
MAX_RECORD_BYTES = 4 << 20


def os_release(probe: Probe) -> dict:
    """ID and VERSION_ID of /etc/os-release (the controller maps them to the matrix's OS)."""
    values = key_values(probe.read("/etc/os-release"))
    return {k.lower(): values[k].strip("\"'") if k in values else None for k in ("ID", "VERSION_ID")}


def read_records(probe: Probe, platforms: cm.Platforms) -> tuple[dict, dict]:
    """The node's deploy records (platforms.yaml install_records: the lock, the node record, the
    in-progress marker) as JSON data, None where absent; and why each unreadable one could not be read."""
    paths = platforms.data["install_records"]
    records, errors = {}, {}
    for key in RECORDS:
        text = probe.read(paths[key])
        records[key] = None
        if text is None:
            continue
        try:
            if len(text) > MAX_RECORD_BYTES:
                raise ValueError(f"more than {MAX_RECORD_BYTES} bytes")
            data = json.loads(text)
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
            records[key] = data
        except ValueError as e:
            errors[key] = f"{paths[key]}: {str(e)[:300]}"
    return records, errors


def read_sysctl(probe: Probe, names) -> dict:
    """{kernel parameter: its live value (whitespace as sysctl prints it), None when there is none}."""
    from .document import SYSCTL_NAME

    out = {}
    for name in names:
        if isinstance(name, str) and SYSCTL_NAME.fullmatch(name):
            path = "/proc/sys/" + name.replace(".", "/")
            text = _proc_text(path) if probe.is_local else probe.read(path)
            out[name] = " ".join(text.split()) if text is not None else None
    return out


def _proc_text(path: str) -> str | None:
    """A /proc/sys file of this machine, read with a small buffer (the kernel refuses a large one: ENOMEM)."""
    try:
        with open(path, "rb") as f:
            return f.read(1 << 16).decode("utf-8", errors="replace")
    except OSError:
        return None


def wheelhouse_left_out(probe: Probe, platforms: cm.Platforms) -> list[str]:
    """The Python distributions the node's wheelhouse says it deliberately has no wheel of."""
    try:
        manifest = json.loads(probe.read(platforms.data["install_records"]["wheelhouse_manifest"]) or "{}")
    except ValueError:
        return []
    notes = manifest.get("notes", []) if isinstance(manifest, dict) else []
    return [d for d in PYTHON_DISTS if any(isinstance(n, str) and n.startswith(f"{d} left out") for n in notes)]


def status_facts(probe: Probe, platforms: cm.Platforms | None = None) -> dict:
    """What `npuenv status` compares with a lock, read cheaply (no sensors, no NPU ports): the
    installed versions (the Python packages in the interpreter the node record names), npu-smi's
    process table, the deploy records and the live values of the kernel parameters the deploy set."""
    platforms = platforms or cm.load_platforms()
    records, errors = read_records(probe, platforms)
    node = records["node_record"] or {}
    python = node.get("python")
    # The recorded interpreter only when it is an absolute path (the record is root's, but still only data).
    python = python if isinstance(python, str) and python.startswith("/") and "\n" not in python else "python3"
    data = collect(probe, platforms, network=False, device_details=False, python=python)
    smi = data["npu_smi"] or {}
    settings = node.get("settings") if isinstance(node.get("settings"), dict) else {}
    wanted = settings.get("sysctl") if isinstance(settings.get("sysctl"), dict) else {}
    return {
        "installed": {
            "driver": (data["driver"] or {}).get("version"),
            "firmware": (data["firmware"] or {}).get("version"),
            "firmware_package": (data["firmware"] or {}).get("package_version"),
            "cann": [{"generation": t["generation"], "version": t["version"], "kernels": t["kernels"]}
                     for t in data["cann"]],
            # the NNAL a login runs (nnal/atb/latest), not every version on disk
            "nnal": [data["nnal_active"]["version"]] if (data.get("nnal_active") or {}).get("version") else [],
            "python": data["python"],
            "left_out": wheelhouse_left_out(probe, platforms),
        },
        "npu_smi": {"error": smi.get("error"), "processes": smi.get("processes", [])},
        "records": records,
        "record_errors": errors,
        "sysctl": read_sysctl(probe, list(wanted)[:256]),
    }

"""What is installed on a host, read the way the quick level reads it.

A ``Probe`` runs commands and reads files on the target: the local host, a
directory tree (an unpacked image, a mounted disk: files only), or a remote
host through testinfra. ``collect`` turns what it finds into plain data:
devices and their health, driver, firmware, CANN, NNAL, torch and torch_npu.
"""
from __future__ import annotations

import glob as globlib
import json
import os
import re
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path

import compat_matrix as cm

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
        try:
            return Path(self._path(path)).read_text(errors="replace")
        except OSError:
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


def collect(probe: Probe, platforms: cm.Platforms | None = None) -> dict:
    platforms = platforms or cm.load_platforms()
    root = platforms.install_root
    install_info = key_values(probe.read(platforms.hdk["paths"]["install_info"]))
    driver_root = install_info.get("Driver_Install_Path_Param", root)
    driver = key_values(probe.read(f"{driver_root}/driver/version.info"))
    firmware = key_values(probe.read(f"{driver_root}/firmware/version.info"))
    facts = {
        "install_info": install_info,
        "driver": {"version": driver.get("Version")} if driver else None,
        "firmware": {"version": firmware.get("Version"), "package_version": firmware.get("package_version")}
        if firmware else None,
        "devices": [],
        "npu_smi": None,
        "cann": _cann(probe, platforms),
        "nnal": sorted(Path(p).parent.name for p in probe.glob(f"{root}/nnal/atb/*/atb")),
        "python": _python(probe),
    }
    if probe.can_run:
        rc, text = npu_smi(probe)
        if rc == 127:
            facts["npu_smi"] = {"error": "npu-smi not found (no driver on this host)"}
        else:
            try:
                info = vendor_tools.parse_npu_smi_info(text)
                facts["npu_smi"] = {"version": info.version}
                facts["devices"] = [{"npu": c.npu, "chip": c.chip, "phy_id": c.phy_id, "name": c.name,
                                     "health": c.health, "bus_id": c.bus_id} for c in info.chips]
                facts["npu_smi"]["processes"] = [{"npu": p.npu, "chip": p.chip, "pid": p.pid, "name": p.name}
                                                 for p in info.processes]
            except vendor_tools.VendorOutputError as e:
                facts["npu_smi"] = {"error": str(e)}
    return facts


def _cann(probe: Probe, platforms: cm.Platforms) -> list[dict]:
    """Every CANN toolkit reachable through a generation's 'latest' entry point."""
    found = []
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

#!/usr/bin/python
"""Read what the vendor's installers left on a node, changing nothing.

The preflight role hands the result to the ``npuenv_plan`` filter
(plugins/filter/npuenv_plan.py), which decides every step of the deploy from
it. Paths come from the locked stack and platforms.yaml (the ``layouts``
filter), never from this file.
"""
from __future__ import annotations

DOCUMENTATION = r"""
module: npuenv_node_state
short_description: Read the Ascend HDK, CANN and NNAL installs, the deploy records and free space of a node
description:
  - Reads install-info and version files, the CANN packaging generations' version folders and entry points
    (latest/version.cfg, the cann entry point), NNAL's versions, latest link and upgrade backups, npuenv's
    deploy records, the free space of given paths, finds the node's interpreter for a Python version, the
    commands of a list that are missing and whether the running kernel's headers are there, and runs
    C(npu-smi info) (its process table).
  - One module call for everything the preflight role decides from (each task costs the controller a
    worker process per host).
  - Changes nothing; supports check mode.
options:
  install_root: {description: The Ascend install root., type: str, required: true}
  arch: {description: The node's arch as the vendor's folders name it (x86_64, aarch64)., type: str, required: true}
  layouts: {description: "Generation -> paths, {cann} standing for the version (the npuenv_layouts filter).",
            type: dict, required: true}
  hdk: {description: "install_info, driver_home, firmware_home.", type: dict, required: true}
  records: {description: "Name -> path of npuenv's deploy records (JSON).", type: dict, default: {}}
  space: {description: Paths whose free space to read (the nearest existing folder is asked)., type: list,
          elements: str, default: []}
  staged: {description: Files whose size to read (installers staged earlier)., type: list, elements: str,
           default: []}
  files: {description: Small text files to return whole., type: list, elements: str, default: []}
  python: {description: "The Python version (3.11) whose interpreter to find.", type: str}
  venv: {description: A virtual environment whose Python version to read., type: str}
  tools: {description: Command names to look for on PATH (the missing ones are returned)., type: list,
          elements: str, default: []}
  npu_smi: {description: "The npu-smi whose C(info) to run (its rc and output are returned; rc null when it
            cannot run: no driver yet).", type: str}
author: npuenv
"""

RETURN = r"""
state:
  description: What was found (see plugins/filter/npuenv_plan.py for how it is read).
  type: dict
  returned: always
"""

import glob
import json
import os
import pwd
import re
import shutil
import subprocess

from ansible.module_utils.basic import AnsibleModule

MAX_TEXT = 1 << 20    # install-info, version files and records are a few KiB
MAX_RECORD = 4 << 20  # a lock is a few KiB per platform


def read_text(path, limit=MAX_TEXT):
    """A regular file's text (bounded), else None."""
    try:
        if not os.path.isfile(path):
            return None
        with open(path, "rb") as f:
            return f.read(limit).decode("utf-8", errors="replace")
    except OSError:
        return None


def key_values(text):
    # validation.node.facts.key_values, which this module cannot import: a module runs on the node alone.
    out = {}
    for line in (text or "").splitlines():
        key, sep, value = line.partition("=")
        if sep:
            out[key.strip()] = value.strip()
    return out


def colon_values(text):
    out = {}
    for line in (text or "").splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip():
            out[key.strip()] = value.strip()
    return out


def size_kib(top):
    """What a folder takes (its files, links not followed), in KiB."""
    total = 0
    for folder, dirs, files in os.walk(top):
        for name in files:
            try:
                st = os.lstat(os.path.join(folder, name))
            except OSError:
                continue
            total += getattr(st, "st_blocks", 0) * 512 if hasattr(st, "st_blocks") else st.st_size
    return total // 1024


# A version folder's name as the vendor writes them (8.3.RC1, 9.1.0, 8.0.RC2.alpha003); anything
# else in those folders is not an install of theirs and is left alone.
VERSION_NAME = re.compile(r"[0-9][0-9A-Za-z._-]*")


def versions_in(template):
    """{version: folder} of the folders matching a path template with {cann} (real folders, not links)."""
    head, _, tail = template.partition("{cann}")
    pattern = re.compile(re.escape(head) + r"([^/]+)" + re.escape(tail) + r"$")
    found = {}
    for path in glob.glob(glob.escape(head) + "*" + glob.escape(tail)):
        m = pattern.match(path)
        if m and VERSION_NAME.fullmatch(m.group(1)) and os.path.isdir(path) and not os.path.islink(path):
            found[m.group(1)] = path
    return found


def link_name(path):
    try:
        return os.path.basename(os.readlink(path).rstrip("/")) if os.path.islink(path) else None
    except OSError:
        return None


def toolkits(layouts):
    found = []
    for generation, lay in layouts.items():
        latest = lay.get("toolkit_latest")
        for version, home in sorted(versions_in(lay["toolkit_home"]).items()):
            if home == latest or version == os.path.basename(latest or ""):
                continue
            fill = lambda key: lay[key].replace("{cann}", version) if lay.get(key) else None  # noqa: E731
            found.append({
                "generation": generation, "version": version, "home": home,
                "info": key_values(read_text(fill("toolkit_info"))) or None,
                "env_script": os.path.isfile(fill("version_env_script")),
                "switch": bool(fill("version_switch")) and os.path.isfile(fill("version_switch")),
                "uninstall": os.path.isfile(fill("toolkit_uninstall")),
                "kernels": os.path.isdir(fill("kernels_dir")),
                "kernels_info": key_values(read_text(fill("kernels_info"))) or None if lay.get("kernels_info") else None,
                "kernels_uninstall": os.path.isfile(fill("kernels_uninstall")),
            })
    return found


def active(layouts, found):
    out = {}
    for generation, lay in layouts.items():
        latest = lay["toolkit_latest"]
        info_path = lay["toolkit_info"].replace(lay["toolkit_home"], latest, 1)
        entry = {
            "entry_point": latest,
            "link": link_name(latest),
            "info_version": key_values(read_text(info_path)).get("version"),
            "env_script": os.path.isfile(lay["env_script"]),
        }
        if lay.get("version_cfg"):
            entry["version_cfg"] = key_values(read_text(lay["version_cfg"]))
        # The running version's size: what an --upgrade replaces (the vendor's free-space rule).
        running = next((t for t in found if t["generation"] == generation and t["version"] == entry["info_version"]),
                       None)
        if running:
            running["size_kib"] = size_kib(running["home"])
        out[generation] = entry
    return out


def nnal(layouts):
    lay = next(iter(layouts.values()))
    root = os.path.dirname(lay["nnal_version_info"].split("{cann}", 1)[0] + "x")  # <root>/nnal/atb
    latest = lay["nnal_latest"]
    out = {"root": root, "versions": [], "recover": [], "active": link_name(latest),
           "env_script": os.path.isfile(lay["nnal_env_script"])}
    if not os.path.isdir(root):
        return out
    for name in sorted(os.listdir(root)):
        path = os.path.join(root, name)
        if not os.path.isdir(path) or os.path.islink(path) or path == latest:
            continue
        if not VERSION_NAME.fullmatch(name.removesuffix("_recover")):
            continue
        if name.endswith("_recover"):
            out["recover"].append({"version": name[:-len("_recover")], "dir": path,
                                   "set_env_recover": os.path.isfile(os.path.join(root, "set_env_recover.sh"))})
            continue
        fill = lambda key: lay[key].replace("{cann}", name)  # noqa: E731
        own = colon_values(read_text(fill("nnal_version_info"))).get("Ascend-cann-atb")
        out["versions"].append({
            "version": name, "dir": path, "own_version": own,
            "complete": own == name and os.path.isdir(os.path.join(path, "atb")),
            "switch": os.path.isfile(fill("nnal_switch")),
            "uninstall": os.path.isfile(fill("nnal_uninstall")),
        })
    return out


def records(paths):
    out = {}
    for name, path in paths.items():
        text = read_text(path, MAX_RECORD + 1)
        if text is None:
            out[name] = None
            continue
        try:
            if len(text) > MAX_RECORD:
                raise ValueError(f"more than {MAX_RECORD} bytes")
            data = json.loads(text)
            out[name] = data if isinstance(data, dict) else {"error": "not a JSON object"}
        except ValueError as e:
            out[name] = {"error": f"{path}: {str(e)[:200]}"}
    return out


def space(paths):
    out = {}
    for path in paths:
        at = path
        while not os.path.isdir(at) and at not in ("", "/"):
            at = os.path.dirname(at)
        try:
            st = os.statvfs(at or "/")
            out[path] = {"free_kib": st.f_bavail * st.f_frsize // 1024, "dev": os.stat(at or "/").st_dev,
                         "at": at or "/"}
        except OSError as e:
            out[path] = {"free_kib": None, "error": str(e)}
    return out


def python_for(version):
    """The interpreter for a Python version: pythonX.Y on PATH, else python3 when it is that version."""
    seen = []
    for name in (f"python{version}", "python3"):
        path = shutil.which(name)
        if not path or path in [p for p, _ in seen]:
            continue
        try:
            p = subprocess.run([path, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                               capture_output=True, text=True, timeout=60)
            found = p.stdout.strip() if p.returncode == 0 else f"exit {p.returncode}"
        except (OSError, subprocess.TimeoutExpired) as e:
            found = str(e)
        if found == version:
            return {"path": path, "version": version, "seen": []}
        seen.append((path, found))
    return {"path": None, "version": None, "seen": [f"{p} is Python {v}" for p, v in seen]}


def venv_version(venv):
    cfg = key_values(read_text(os.path.join(venv, "pyvenv.cfg")) if venv else None)
    full = cfg.get("version_info") or cfg.get("version")
    return ".".join(full.split(".")[:2]) if full else None


def npu_smi_info(path):
    """{rc, stdout} of `npu-smi info`; rc None when it cannot be run (no driver installed yet)."""
    try:
        p = subprocess.run([path, "info"], capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as e:
        return {"rc": None, "stdout": "", "error": str(e)}
    return {"rc": p.returncode, "stdout": p.stdout[:MAX_TEXT]}


def collect(p):
    info = key_values(read_text(p["hdk"]["install_info"]))
    recorded = info.get("Driver_Install_Path_Param")
    driver_home = os.path.join(recorded, os.path.basename(p["hdk"]["driver_home"])) if recorded \
        else p["hdk"]["driver_home"]
    fw_recorded = info.get("Firmware_Install_Path_Param")
    firmware_home = os.path.join(fw_recorded, os.path.basename(p["hdk"]["firmware_home"])) if fw_recorded \
        else p["hdk"]["firmware_home"]
    driver = key_values(read_text(os.path.join(driver_home, "version.info")))
    firmware = key_values(read_text(os.path.join(firmware_home, "version.info")))
    found = toolkits(p["layouts"])
    # Where a .run unpacks itself: $TMPDIR (else /tmp), and $HOME when TMPDIR is not usable.
    tmpdir = os.environ.get("TMPDIR")
    tmpdir = tmpdir if tmpdir and os.path.isdir(tmpdir) else "/tmp"
    # The user's home, found as os.path finds "~", spelled out: ansible-test's sanity check takes a call
    # of that function in a module for an argument that should have been type=path.
    home = os.environ.get("HOME") or pwd.getpwuid(os.getuid()).pw_dir
    return {
        "install_info": info,
        "driver": {"version": (driver.get("Version") or "").lower() or None, "info": driver, "home": driver_home},
        "firmware": {"version": firmware.get("Version") or None, "info": firmware, "home": firmware_home},
        "toolkits": found,
        "active": active(p["layouts"], found),
        "nnal": nnal(p["layouts"]),
        "records": records(p.get("records") or {}),
        "space": space(list(dict.fromkeys((p.get("space") or []) + [tmpdir, home]))),
        "staged": {path: os.path.getsize(path) if os.path.isfile(path) else None for path in p.get("staged") or []},
        "files": {path: read_text(path) for path in p.get("files") or []},
        "python": python_for(p["python"]) if p.get("python") else None,
        "venv_version": venv_version(p.get("venv")),
        "tmpdir": tmpdir,
        "home": home,
        # The driver builds its kernel module with DKMS against the running kernel's headers.
        "kernel": os.uname().release,
        "kernel_headers": os.path.isdir(f"/lib/modules/{os.uname().release}/build"),
        "tools_missing": [t for t in p.get("tools") or [] if shutil.which(t) is None],
        "npu_smi": npu_smi_info(p["npu_smi"]) if p.get("npu_smi") else None,
    }


def main():
    module = AnsibleModule(argument_spec={
        "install_root": {"type": "str", "required": True},
        "arch": {"type": "str", "required": True},
        "layouts": {"type": "dict", "required": True},
        "hdk": {"type": "dict", "required": True},
        "records": {"type": "dict", "default": {}},
        "space": {"type": "list", "elements": "str", "default": []},
        "staged": {"type": "list", "elements": "str", "default": []},
        "files": {"type": "list", "elements": "str", "default": []},
        "python": {"type": "str"},
        "venv": {"type": "str"},
        "tools": {"type": "list", "elements": "str", "default": []},
        "npu_smi": {"type": "str"},
    }, supports_check_mode=True)
    module.exit_json(changed=False, state=collect(module.params))


if __name__ == "__main__":
    main()

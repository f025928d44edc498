"""What a deploy does on one node, decided from the node's real state.

The preflight role reads the node (the ``npuenv_node_state`` module of
roles/preflight/library: install-info and version files, the vendor's
bookkeeping of which version runs, the NNAL links, free space) and hands that
state, the locked stack and the pinned installers to ``npuenv_plan``. The plan
is a list of steps in the vendor's order, each one installer run, vendor
script or removal, with what it would run (check mode shows exactly that),
and what the run needs: the installers (verified before anything changes),
the free space on every path it writes, whether the NPUs must be idle.

The vendor's rules the plan follows (sources in /work/research/vendor-upgrade.md
and compat_matrix/data/platforms.yaml):

* HDK: a first install is driver then firmware; an overwrite (upgrade or
  rollback, "回退操作方式和升级操作相同") is firmware then driver, each with
  ``--upgrade --quiet``. A driver is installed only when
  /etc/ascend_install.info says ``Driver_Install_Status=complete``; one
  recorded without it (an install stopped midway) is installed again.
  Neither can go back without its installer.
* CANN up to 8.3 (``ascend-toolkit/<v>``): versions live side by side;
  ``latest`` is a folder of links kept by the vendor's latest manager, and a
  version still on disk is made the running one again with its own
  ``create_version_softlink.sh`` (no installer). A new version is installed
  beside the old one (``--install``). A version is installed when its
  install-info, latest/version.cfg's record of it and the env script are all
  there; anything less is installed again (the installer removes what is
  there first).
* CANN 8.5 and later (``cann-<v>``): forward with ``--upgrade`` (from a <= 8.3
  toolkit that is the documented way in); back with the newer version
  uninstalled first, then ``--install`` of the older ("CANN 8.5.0不支持使用
  --upgrade参数回退"): both need the installers, and no vendor script switches
  between two ``cann-<v>`` trees, so this layout keeps no second version.
* The kernels/ops package goes with its toolkit: after a toolkit install or
  upgrade it is installed again.
* NNAL: versions side by side in ``nnal/atb/<v>``; ``latest`` and
  ``set_env.sh`` follow the version installed or switched to last
  (``scripts/create_version_softlink.sh``). A ``<v>_recover`` backup left by
  an interrupted ``--upgrade`` is put back as the installer's own exit handler
  does. A version's ``uninstall.sh`` deletes ``set_env.sh``, so removals come
  before the switch or install of the version that stays.
* Old versions beyond ``keep`` (the one deployed, the one running before, then
  the newest) are removed with their own uninstall scripts, never the one in use.
"""
from __future__ import annotations

import re
from typing import NamedTuple

from ansible.errors import AnsibleFilterError

CANN_KINDS = ("toolkit", "kernels", "nnal")
HDK_KINDS = ("driver", "firmware")
# The components of site.yml's roles whose tasks a deploy must have run to be at its lock.
ROLE_TAGS = ("driver", "cann", "python", "env", "hccn", "tuning")
MIB = 1024   # KiB


def _platforms():
    from compat_matrix import lock

    return lock.matrix_from_env().platforms


def platform_data(section: str):
    """A section of platforms.yaml (``disk_space``): read once on the controller and handed to the
    filters that need it, so that no worker reads the matrix again for each host."""
    return _platforms().data[section]


def _version_key(version: str):
    from compat_matrix.versions import VendorVersion

    try:
        return (0, VendorVersion(version))
    except ValueError:
        return (-1, str(version))


# ------------------------------------------------------------------ what to read

def layouts(stack: dict) -> dict:
    """Each CANN packaging generation's paths for this node (the install root, arch and chip
    filled in, ``{cann}`` left for the version): the ``npuenv_node_state`` module's ``layouts``."""
    platforms = _platforms()
    chip = platforms.chips[stack["chip"]]
    values = {"root": stack["paths"]["install_root"], "arch": stack["arch"], "cann": "{cann}",
              "chip": chip["package_token"], "kernel_dir": chip["opp_kernel_dir"], "cxx_abi": "{cxx_abi}"}
    out = {}
    for generation, spec in platforms.packaging.items():
        out[generation] = {k: v.format(**values) for k, v in spec["paths"].items()}
    return out


# ------------------------------------------------------------------ the HDK

def firmware_version(name: str, pattern: str) -> str:
    """The firmware's own version from its file name and the stack's glob (``...firmware_*.run``)."""
    head, star, tail = pattern.partition("*")
    if not star or not name.startswith(head) or not name.endswith(tail) or len(name) <= len(head) + len(tail):
        raise AnsibleFilterError(f"the lock's firmware file {name!r} is not named as {pattern!r}")
    return name[len(head):len(name) - len(tail)]


def _flags(stack: dict, key: str) -> list[str]:
    return str(stack["install_flags"][key]).split()


def _installer_step(component, action, kind, flags, installers, say_extra="", why="", version=None):
    name = installers[kind]["name"] if kind in installers else f"the {kind} package"
    # New firmware runs after a reboot; so does a driver installed with --force (no hot reset).
    reboot = kind == "firmware" or (kind == "driver" and "--force" in flags)
    return {"component": component, "action": action, "installer": kind, "flags": flags, "argv": None,
            "version": version, "why": why, "reboot": reboot, "run": "nnal" if kind == "nnal" else "installer",
            "say": f"would run {name} {' '.join(flags)}{say_extra}" + (" and reboot" if reboot else "")}


def _script_step(component, action, script, say, why="", version=None):
    return {"component": component, "action": action, "installer": None, "flags": [], "argv": [script],
            "version": version, "why": why, "reboot": False, "run": "script", "say": say}


def plan_hdk(state: dict, stack: dict, installers: dict, options: dict) -> list[dict]:
    steps = []
    info = state.get("install_info") or {}
    driver = (state.get("driver") or {}).get("version")
    firmware = (state.get("firmware") or {}).get("version")
    recorded = bool(info.get("Driver_Install_Path_Param"))
    complete = info.get("Driver_Install_Status") == "complete"
    want_driver = str(stack["hdk"]["version"]).lower()
    want_firmware = firmware_version(installers["firmware"]["name"], stack["packages"]["firmware"]) \
        if "firmware" in installers else None
    force = _flags(stack, "driver_force") if options.get("busy") and options.get("allow_busy") else []
    user, group = options["driver_user"], options["driver_group"]   # the npu_driver role's (hdk.run_user)
    firmware_needed = want_firmware is not None and firmware != want_firmware
    firmware_step = _installer_step(
        "firmware", "upgrade" if firmware else "install", "firmware",
        _flags(stack, "firmware_upgrade" if firmware else "firmware"), installers, version=want_firmware,
        why=f"firmware {firmware or 'none'} -> {want_firmware} (takes effect after a reboot; no way back "
            f"without the old firmware's installer)")
    if not recorded:
        # First installation: the driver, then the firmware (installation guides, instg_0005).
        steps.append(_installer_step(
            "driver", "install", "driver",
            _flags(stack, "driver") + [f"--install-username={user}", f"--install-usergroup={group}"] + force,
            installers, version=want_driver, why=f"no driver recorded in {stack['paths']['install_info']}"))
        if firmware_needed:
            steps.append(firmware_step)
        return steps
    if not complete:
        # Recorded, never completed (stopped midway): no driver is installed, so it comes first, with
        # --upgrade, which uninstalls what was recorded and installs at the recorded path (driver_install.sh).
        steps.append(_installer_step(
            "driver", "upgrade", "driver", _flags(stack, "driver_upgrade") + force, installers, version=want_driver,
            why=f"driver {driver or '(files missing)'} is recorded without Driver_Install_Status=complete in "
                f"{stack['paths']['install_info']} (an install that stopped midway): installed again"))
        if firmware_needed:
            steps.append(firmware_step)
        return steps
    # An overwrite: the firmware, then the driver (instg_0005), each with --upgrade.
    if firmware_needed:
        steps.append(firmware_step)
    if driver != want_driver:
        steps.append(_installer_step(
            "driver", "upgrade", "driver", _flags(stack, "driver_upgrade") + force, installers, version=want_driver,
            why=f"driver {driver} -> {want_driver} (no way back without the old driver's installer)"))
    return steps


# ------------------------------------------------------------------ CANN

def _pairs(value: str | None) -> list[str]:
    """version.cfg's ``[<inner>:<dir>][...]`` -> the dirs, in the order written."""
    return [p.split(":", 1)[1] for p in re.findall(r"\[([^\]]*)\]", value or "") if ":" in p]


def _toolkit_state(state: dict, generation: str, version: str) -> dict | None:
    return next((t for t in state.get("toolkits") or [] if t["generation"] == generation and t["version"] == version),
                None)


def _legacy_cfg(state: dict) -> dict:
    return ((state.get("active") or {}).get("ascend-toolkit") or {}).get("version_cfg") or {}


def toolkit_complete(state: dict, t: dict | None) -> bool:
    """Install-info of this version, its env script, and (<= 8.3) latest/version.cfg's record of it."""
    if not t or (t.get("info") or {}).get("version") != t["version"] or not t.get("env_script"):
        return False
    if t["generation"] == "ascend-toolkit":
        return t["version"] in _pairs(_legacy_cfg(state).get("toolkit_installed_version"))
    return True


def active_toolkit(state: dict, generation: str) -> str | None:
    """The version the generation's entry point runs: latest/version.cfg's running toolkit whose
    install-info latest shows (<= 8.3), the cann entry point's version (8.5+)."""
    active = (state.get("active") or {}).get(generation) or {}
    if generation == "ascend-toolkit":
        running = _pairs(_legacy_cfg(state).get("toolkit_running_version"))
        version = running[0] if running else None
        return version if version and active.get("info_version") == version else None
    return active.get("info_version")


def kernels_complete(state: dict, t: dict | None) -> bool:
    if not t or not t.get("kernels"):
        return False
    if t["generation"] == "ascend-toolkit":
        return t["version"] in _pairs(_legacy_cfg(state).get("opp_kernel_installed_version"))
    return (t.get("kernels_info") or {}).get("version") == t["version"]


def _nnal(state: dict) -> dict:
    return state.get("nnal") or {}


def nnal_complete(state: dict, version: str) -> dict | None:
    found = next((n for n in _nnal(state).get("versions") or [] if n["version"] == version), None)
    return found if found and found.get("complete") else None


def _keep(candidates: list[str], target: str, previous: str | None, keep: int, newest_first: list[str]) -> list[str]:
    """The versions of ``candidates`` to remove: all but ``target``, the one running before and the
    newest others, ``keep`` in all."""
    kept = [target] + ([previous] if previous and previous != target and previous in candidates else [])
    for v in newest_first:
        if len(kept) >= keep:
            break
        if v not in kept and v in candidates:
            kept.append(v)
    return [v for v in candidates if v not in kept[:max(keep, 1)] and v != target]


class _Toolkits(NamedTuple):
    """What the toolkit's steps are decided from (a NamedTuple: Ansible's dataclass patch needs the module
    in sys.modules, and a plugin loaded from its file need not be)."""
    generation: str          # the locked CANN's layout
    version: str             # the locked CANN
    lay: dict                # both layouts' paths and scripts (layouts())
    other: list[dict]        # the toolkits on disk in the other layout
    target: dict | None      # the locked version on disk (None: not there)
    previous: str | None     # the version running now
    ok: bool                 # the locked version is complete and running: nothing to do
    install: dict            # the step that installs the locked version


def plan_cann(state: dict, stack: dict, installers: dict, options: dict) -> tuple[list[dict], list[str]]:
    """(steps, notes) for the toolkit, the kernels/ops package and NNAL."""
    generation, version = stack["packaging"], stack["cann"]
    keep = int(options.get("keep", 2))
    lay = layouts(stack)
    toolkits = state.get("toolkits") or []
    target = _toolkit_state(state, generation, version)
    previous = active_toolkit(state, generation)
    tk = _Toolkits(
        generation=generation, version=version, lay=lay,
        other=[t for t in toolkits if t["generation"] != generation], target=target, previous=previous,
        ok=bool(toolkit_complete(state, target) and previous == version
                and ((state.get("active") or {}).get(generation) or {}).get("env_script")),
        install=_installer_step("toolkit", "install", "toolkit", _flags(stack, "toolkit"), installers,
                                version=version, why=f"CANN {version} is not installed completely"))
    if generation == "ascend-toolkit":
        steps, toolkit_installed, gone = _legacy_toolkit_steps(state, tk)
    else:
        steps, toolkit_installed, gone = _toolkit_steps(state, stack, installers, tk)

    # The kernels (<= 8.3) or ops (8.5+) package of the chip, after its toolkit.
    if toolkit_installed or not kernels_complete(state, target):
        steps.append(_installer_step("kernels", "install", "kernels", _flags(stack, "kernels"), installers,
                                     version=version,
                                     why="after its toolkit (a toolkit install or upgrade removes the one installed before)"
                                     if toolkit_installed
                                     else f"the {stack['chip']} kernels/ops package of CANN {version} is missing"))

    notes: list[str] = []
    if not tk.other:
        mine = [t for t in toolkits if t["generation"] == generation]
        removals, notes = _old_toolkits(state, tk, mine, gone, keep)
        steps += removals
    if options.get("nnal", True):
        nnal_steps, nnal_notes = _plan_nnal(state, stack, lay[generation], installers, keep)
        steps += nnal_steps
        notes += nnal_notes
    return steps, notes


def _uninstall(lay: dict, t: dict, why: str) -> dict:
    """The step that removes toolkit ``t`` with its own uninstall script."""
    script = lay[t["generation"]]["toolkit_uninstall"].format(cann=t["version"])
    if not t.get("uninstall"):
        raise AnsibleFilterError(f"CANN {t['version']} ({t['generation']} layout) must be removed first ({why}), "
                                 f"but {script} is missing; uninstall it with its installer's --uninstall")
    return _script_step("toolkit", "uninstall", script, f"would remove CANN {t['version']} ({script})",
                        why=why, version=t["version"])


def _oldest_first(toolkits: list[dict]) -> list[dict]:
    return sorted(toolkits, key=lambda t: _version_key(t["version"]))


def _legacy_toolkit_steps(state: dict, tk: _Toolkits) -> tuple[list[dict], bool, set[str]]:
    """(steps, whether they install a toolkit, the versions they remove) for an ascend-toolkit (<= 8.3)
    stack, whose versions live side by side."""
    version, previous, here = tk.version, tk.previous, tk.lay[tk.generation]
    if tk.other:
        # Back from 8.5+: the newer layout is uninstalled, then the older version installed
        # (8.5.0 release note); this needs the installers.
        steps = [_uninstall(tk.lay, t, f"CANN {t['version']} ({t['generation']} layout) cannot go back to "
                                       f"{version} with --upgrade: it is uninstalled, then {version} installed")
                 for t in _oldest_first(tk.other)]
        return steps + [{**tk.install, "why": f"back to CANN {version} from the {tk.other[0]['generation']} layout"}], \
            True, set()
    if tk.ok:
        return [], False, set()
    if toolkit_complete(state, tk.target) and tk.target.get("switch"):
        return [_script_step(
            "toolkit", "switch", here["version_switch"].format(cann=version),
            f"would switch CANN {previous or 'none'} -> {version} "
            f"({here['version_switch'].format(cann=version)}; no installer needed)",
            why=f"CANN {version} is on disk beside {previous or 'nothing running'}", version=version)], False, set()
    return [tk.install], True, set()


def _toolkit_steps(state: dict, stack: dict, installers: dict, tk: _Toolkits) -> tuple[list[dict], bool, set[str]]:
    """(steps, whether they install a toolkit, the versions they remove) for a cann-<v> (8.5+) stack,
    which keeps one version."""
    version, previous = tk.version, tk.previous
    legacy_running = active_toolkit(state, "ascend-toolkit")
    if tk.other and legacy_running:
        return [{**_installer_step("toolkit", "upgrade", "toolkit", _flags(stack, "toolkit_upgrade"),
                                   installers, version=version), "replaces": legacy_running,
                 "why": f"CANN {legacy_running} (ascend-toolkit layout) -> {version}: the way into 8.5+ is "
                        f"--upgrade, which removes every ascend-toolkit version (no way back without "
                        f"{legacy_running}'s installers)"}], True, set()
    if tk.other:
        steps = [_uninstall(tk.lay, t, f"CANN {t['version']} is on disk but not running; 8.5+ installs only "
                                       f"once every older version is uninstalled")
                 for t in _oldest_first(tk.other)]
        return steps + [tk.install], True, set()
    if tk.ok:
        return [], False, set()
    if previous and previous != version and _version_key(version) > _version_key(previous):
        return [{**_installer_step("toolkit", "upgrade", "toolkit", _flags(stack, "toolkit_upgrade"),
                                   installers, version=version), "replaces": previous,
                 "why": f"CANN {previous} -> {version} (--upgrade; no way back without {previous}'s "
                        f"installers)"}], True, {previous}
    if previous and previous != version:
        running = _toolkit_state(state, tk.generation, previous) or {"generation": tk.generation,
                                                                     "version": previous, "uninstall": False}
        return [_uninstall(tk.lay, running, f"CANN {previous} cannot go back to {version} with --upgrade (8.5.0 "
                                            f"release note): it is uninstalled, then {version} installed"),
                {**tk.install, "why": f"back to CANN {version} from {previous}"}], True, {previous}
    return [tk.install], True, set()


def _old_toolkits(state: dict, tk: _Toolkits, mine: list[dict], gone: set[str],
                  keep: int) -> tuple[list[dict], list[str]]:
    """Steps that remove this layout's old toolkit versions beyond ``keep`` (after the target runs),
    and a note for each that has no uninstall script."""
    here = tk.lay[tk.generation]
    order = _pairs(_legacy_cfg(state).get("toolkit_installed_version")) if tk.generation == "ascend-toolkit" else []
    candidates = [t["version"] for t in mine if t["version"] != tk.version and t["version"] not in gone]
    newest = list(reversed(order)) + sorted((v for v in candidates if v not in order), key=_version_key,
                                            reverse=True)
    steps, notes = [], []
    for v in _keep(candidates, tk.version, tk.previous, keep, newest):
        t = _toolkit_state(state, tk.generation, v)
        script = here["toolkit_uninstall"].format(cann=v)
        if t.get("uninstall"):
            steps.append(_script_step("toolkit", "remove", script, f"would remove CANN {v} ({script})",
                                      why=f"beyond cann_keep_versions={keep}", version=v))
        else:
            notes.append(f"CANN {v} is beyond cann_keep_versions={keep} but has no {script}; left in place")
    return steps, notes


def _plan_nnal(state, stack, here, installers, keep) -> tuple[list[dict], list[str]]:
    """(steps, notes) for NNAL."""
    steps, notes = [], []
    nnal = _nnal(state)
    version = stack["cann"]
    for backup in nnal.get("recover") or []:
        steps.append({"component": "nnal", "action": "recover", "installer": None, "flags": [], "reboot": False,
                      "run": "recover",
                      "argv": None, "version": backup["version"], "recover": backup,
                      "why": f"{backup['dir']} is the backup an interrupted NNAL --upgrade left",
                      "say": f"would put NNAL {backup['version']} back from {backup['dir']} (as the NNAL "
                             f"installer does when an upgrade fails)"})
    recovered = {b["version"] for b in nnal.get("recover") or []}
    present = {n["version"]: n for n in nnal.get("versions") or []}
    active = nnal.get("active")
    if recovered:
        active = next(iter(sorted(recovered)))
        present.update({v: {"version": v, "complete": True, "switch": True, "uninstall": True} for v in recovered})
    candidates = [v for v in present if v != version]
    removed = []
    for v in _keep(candidates, version, active, keep,
                   sorted(candidates, key=_version_key, reverse=True)):
        script = here["nnal_uninstall"].format(cann=v)
        if present[v].get("uninstall"):
            steps.append(_script_step("nnal", "remove", script, f"would remove NNAL {v} ({script})",
                                      why=f"beyond cann_keep_versions={keep}", version=v))
            removed.append(v)
        else:
            notes.append(f"NNAL {v} is beyond cann_keep_versions={keep} but has no {script}; left in place")
    target = present.get(version)
    complete = bool(target and target.get("complete"))
    env_ok = nnal.get("env_script") and not removed and not recovered
    if complete and active == version and env_ok:
        return steps, notes
    if complete and target.get("switch"):
        script = here["nnal_switch"].format(cann=version)
        steps.append(_script_step("nnal", "switch", script,
                                  f"would switch NNAL {active or 'none'} -> {version} ({script}; no installer needed)",
                                  why="NNAL's latest link or set_env.sh does not name this version", version=version))
    else:
        steps.append(_installer_step("nnal", "install", "nnal", _flags(stack, "nnal"), installers, version=version,
                                     say_extra=" (with the toolkit's set_env.sh sourced)",
                                     why=f"NNAL {version} is not installed completely"))
    return steps, notes


# ------------------------------------------------------------------ the whole plan

def plan(state: dict, stack: dict, installers: dict, options: dict | None = None) -> dict:
    """The node's steps (vendor order), the installers they need, whether the NPUs must be idle,
    and the space each path needs. ``options``: keep (cann_keep_versions), nnal (install NNAL),
    allow_busy, processes (npu-smi's process table), driver_user, driver_group."""
    options = dict(options or {})
    processes = options.get("processes") or []
    options["busy"] = bool(processes)
    hdk = plan_hdk(state, stack, installers, options)
    cann, notes = plan_cann(state, stack, installers, options)
    steps = hdk + cann
    kinds = [k for k in HDK_KINDS + CANN_KINDS if any(s["installer"] == k for s in steps)]
    return {"steps": steps, "hdk": hdk, "cann": cann, "installers": kinds, "notes": notes,
            "changes": bool(steps), "busy": options["busy"] and bool(steps),
            "reboot": any(s["reboot"] for s in steps)}


def missing_installers(plan_: dict, installers: dict) -> list[str]:
    return [k for k in plan_["installers"] if k not in installers]


def busy_problem(plan_: dict, processes: list[dict], allow: bool) -> str:
    """Why this node is not touched ('' when it may be): its NPUs run processes and the plan changes it."""
    if not plan_["changes"] or not processes or allow:
        return ""
    listed = "; ".join(f"pid {p.get('pid')} ({p.get('name') or 'no name'}) on NPU {p.get('npu')} chip {p.get('chip')}"
                       for p in processes)
    return (f"the NPUs run processes ({listed}), so this node is not changed: stop them (or drain the node) and "
            f"deploy again, or set npuenv_allow_busy: true to go ahead (the driver is then installed with --force "
            f"and takes effect after a reboot; the running jobs may fail)")


# ------------------------------------------------------------------ free space

def space_needs(plan_: dict, state: dict, stack: dict, installers: dict, paths: dict,
                wheelhouse: dict | None = None, figures: dict | None = None) -> dict:
    """{path: {"kib": needed, "what": [reasons]}} for every path the run writes.

    ``paths``: install_root, stage_dirs (list), venv, wheelhouse_dest; ``wheelhouse``: {bytes,
    installed, push} (push: the node's staged wheelhouse differs from the controller's); ``figures``:
    platforms.yaml's disk_space (read here when not given)."""
    figures = figures or platform_data("disk_space")
    needs: dict[str, dict] = {}

    def need(path, kib, what):
        if kib <= 0:
            return
        entry = needs.setdefault(path, {"kib": 0, "what": []})
        entry["kib"] += int(kib)
        entry["what"].append(f"{what} {max(1, round(kib / MIB))} MiB")

    root = paths["install_root"]
    sizes = {t["version"]: t.get("size_kib") or 0 for t in state.get("toolkits") or []}
    for s in plan_["steps"]:
        kind = s["installer"]
        size_kib = ((installers.get(kind) or {}).get("size") or 0) / 1024 if kind else 0
        if kind == "toolkit" and s["action"] == "upgrade":
            need(root, sizes.get(s.get("replaces"), 0) + figures["toolkit_upgrade_extra_mb"] * MIB,
                 f"CANN {s['version']} --upgrade (installed size + {figures['toolkit_upgrade_extra_mb']} MiB, "
                 f"the vendor's rule):")
        elif kind == "toolkit":
            need(root, figures["toolkit_install_mb"] * MIB, f"CANN {s['version']} toolkit (the vendor's rule):")
        elif kind == "driver":
            need(root, figures["driver_mb"] * MIB, "driver (the vendor's rule):")
        elif kind == "firmware":
            need(root, figures["firmware_mb"] * MIB, "firmware (the vendor's rule):")
        elif kind in ("kernels", "nnal"):
            need(root, size_kib, f"{kind} (at least the package's size):")
    staged = state.get("staged") or {}
    runs = list(plan_["installers"])
    for kind in runs:
        pin = installers.get(kind) or {}
        size = pin.get("size") or 0
        stage = paths["stage_dirs"][kind]
        if staged.get(f"{stage}/{pin.get('name')}") != size:   # not there yet (or another file)
            need(stage, size / 1024, f"{pin.get('name')}:")
    biggest = max(((installers.get(k) or {}).get("size") or 0 for k in runs), default=0)
    if biggest:
        for folder in dict.fromkeys([state.get("tmpdir") or "/tmp", state.get("home") or "/root"]):
            need(folder, biggest / 1024 * figures["extract_factor"],
                 f"unpacking the largest installer ({figures['extract_factor']} x its size):")
    if wheelhouse and wheelhouse.get("push"):
        need(paths["wheelhouse_dest"], wheelhouse["bytes"] / 1024, "the wheelhouse:")
        need(paths["venv"], wheelhouse["installed"] / 1024, "the Python stack installed from it:")
    return needs


def space_problems(needs: dict, space: dict) -> list[str]:
    """One message per path whose filesystem has less free space than the run writes there (paths on
    one filesystem share its free space)."""
    by_fs: dict = {}
    for path, entry in needs.items():
        fs = (space.get(path) or {}).get("dev", path)
        by_fs.setdefault(fs, []).append(path)
    problems = []
    for fs, members in by_fs.items():
        total = sum(needs[p]["kib"] for p in members)
        for path in members:
            free = (space.get(path) or {}).get("free_kib")
            if free is None:
                problems.append(f"{path}: its free space could not be read "
                                f"({(space.get(path) or {}).get('error', 'no answer')})")
                continue
            if total > free:
                others = [p for p in members if p != path]
                shared = (f", and {round(sum(needs[p]['kib'] for p in others) / MIB)} MiB more for "
                          f"{', '.join(others)} on the same filesystem" if others else "")
                problems.append(f"{path}: needs {round(needs[path]['kib'] / MIB)} MiB ({'; '.join(needs[path]['what'])})"
                                f"{shared}, but only {free // MIB} MiB are free on "
                                f"{(space.get(path) or {}).get('at', path)}")
    return problems


# ------------------------------------------------------------------ the lock

def lock_entry(lock_data: dict, arch: str, distribution: str, version: str) -> dict:
    """{key, problem}: the lock's entry for a host of this arch and OS, or why none fits."""
    from compat_matrix import lock
    from compat_matrix.errors import UserError

    try:
        parsed = lock.Lock(lock_data)
        host = lock.machine(_platforms(), arch=arch, distribution=distribution, version=version)
        key, entry = lock.entry_for(parsed, _platforms(), host)
    except UserError as e:
        return {"key": None, "problem": str(e)}
    except (KeyError, TypeError) as e:
        return {"key": None, "problem": f"npuenv_lock is not a lock document ({e}); make one with `npuenv lock`"}
    if not entry.get("installers"):
        return {"key": key, "problem": f"the lock {lock_data.get('digest', '')[:19]} pins no installers for {key}; "
                                       f"lock with --installers DIR (the folder of the vendor's .run files)"}
    return {"key": key, "problem": ""}


def lock_entries(lock_data: dict, facts: dict) -> dict:
    """{host: {key, problem}} for every host of ``facts`` ({host: its ansible_facts}), each arch and
    OS looked up once: the play takes every host's entry in one task rather than one per host (a task
    costs the controller a worker process per host, and this one also reads the matrix)."""
    found: dict[tuple, dict] = {}
    out = {}
    for host, f in facts.items():
        machine = (f.get("architecture"), f.get("distribution"), f.get("distribution_version"))
        if machine not in found:
            found[machine] = lock_entry(lock_data, *machine)
        out[host] = found[machine]
    return out


# ------------------------------------------------------------------ the Python stack

def wheelhouse_check(directory: str, lock_data: dict, arch: str) -> dict:
    """{sums, problem} of a host's wheelhouse on the controller: its SHA256SUMS ('' without one; a
    node whose staged SHA256SUMS differs gets it pushed), and why it is not the wheelhouse the lock
    recorded for the host's arch ('' when it is). Per host, and cheap: one small file read."""
    from pathlib import Path

    from compat_matrix import checksums, lock
    from compat_matrix.errors import UserError

    sums = Path(directory) / checksums.SUMS_FILE
    try:
        problem = lock.wheelhouse_problem(lock_data, arch, Path(directory))
    except UserError as e:
        problem = str(e)
    if problem:
        problem = (f"the wheelhouse {problem}: give the wheelhouse the lock was made from (npuenv_wheelhouse), "
                   f"or make a new lock from this one (`npuenv lock --wheelhouse DIR`)")
    return {"sums": sums.read_text(errors="replace") if sums.is_file() else "", "problem": problem}


def wheelhouse_size(directory: str) -> dict:
    """{bytes, installed} of the controller's wheelhouse: what its files take, and what its wheels
    take installed (the sizes their zip directories list)."""
    import zipfile
    from pathlib import Path

    from compat_matrix import checksums

    folder = Path(directory)
    if not (folder / checksums.SUMS_FILE).is_file():
        return {"bytes": 0, "installed": 0}
    total = installed = 0
    for path in folder.iterdir():
        if not path.is_file():
            continue
        total += path.stat().st_size
        if path.suffix == ".whl":
            try:
                with zipfile.ZipFile(path) as wheel:
                    installed += sum(i.file_size for i in wheel.infolist())
            except (OSError, zipfile.BadZipFile):
                installed += path.stat().st_size
    return {"bytes": total, "installed": installed}


# ------------------------------------------------------------------ records, tuning

def deploy_complete(run_tags: list[str], skip_tags: list[str]) -> bool:
    """Whether this run ran every role (so that the node is at the lock when it ends)."""
    return all((tag in run_tags or "all" in run_tags) and tag not in skip_tags for tag in ROLE_TAGS)


def record_changed(old: dict | None, new: dict) -> bool:
    """Whether the node record differs from the one on the node, its time aside."""
    if not isinstance(old, dict):
        return True
    strip = lambda d: {k: v for k, v in d.items() if k != "deployed_at"}  # noqa: E731
    return strip(old) != strip(new)


class FilterModule:
    def filters(self):
        return {
            "npuenv_layouts": layouts,
            "npuenv_platform_data": platform_data,
            "npuenv_plan": plan,
            "npuenv_missing_installers": missing_installers,
            "npuenv_busy_problem": busy_problem,
            "npuenv_space_needs": space_needs,
            "npuenv_space_problems": space_problems,
            "npuenv_lock_entries": lock_entries,
            "npuenv_firmware_version": firmware_version,
            "npuenv_deploy_complete": deploy_complete,
            "npuenv_wheelhouse_size": wheelhouse_size,
            "npuenv_wheelhouse_check": wheelhouse_check,
            "npuenv_record_changed": record_changed,
        }

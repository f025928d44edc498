"""What a deploy does on a node, decided from what the vendor's installers left
there (the collection's plugins/modules/npuenv_node_state.py reads it,
plugins/filter/npuenv_plan.py decides): upgrade and rollback in the
vendor's order across both CANN packaging generations, versions kept side by
side and switched with the vendor's scripts, nodes stopped midway, old
versions removed, busy NPUs, free space.

The node trees are laid out as the vendor's documents and published listings
show them (/work/research/vendor-upgrade.md): up to CANN 8.3
ascend-toolkit/<v> with latest/ a folder of links and version.cfg
("[<inner>:<dir>]" entries, a published CANN 8.2.RC2 copy), the version's
create_version_softlink.sh and <arch>-linux/script/uninstall.sh
(instg_0032); from 8.5 cann-<v> behind the cann entry point with
ascend_ops_install.info; NNAL nnal/atb/<v> with latest -> <v>, set_env.sh and
scripts/{uninstall,create_version_softlink}.sh; the driver's
/etc/ascend_install.info with Driver_Install_Status=complete after a finished
install (hicann/driver install.sh statusUpdate)."""
from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import pytest
from ansible.errors import AnsibleFilterError

import compat_matrix as cm
from tests.conftest import ROOT
from tests.unit.test_playbook_plugins import plugin

plan_mod = plugin("filter", "npuenv_plan")
_spec = importlib.util.spec_from_file_location(
    "npuenv_node_state", ROOT / "playbooks" / "collections" / "ansible_collections" / "npuenv" / "ascend" / "plugins" / "modules" / "npuenv_node_state.py")
state_mod = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(state_mod)

ARCH = "x86_64"
FIRMWARE = {"25.2.0": "7.7.2.1.200", "25.3.RC1": "7.7.3.1.200", "25.5.0": "7.7.5.1.200", "26.1.0": "7.8.1.1.200"}


def stack_of(row: str, root: Path) -> dict:
    """The locked stack of a row (as a lock entry carries it), installed under ``root``."""
    s = cm.resolve(cm.load_matrix(), cm.Constraints(torch_npu="==" + row, arch=ARCH, python="3.11")).stack
    data = json.loads(json.dumps(s.with_environment()))
    data["paths"] = s.paths_at(str(root / "usr/local/Ascend"))
    return data


def pins_of(stack: dict, sizes: dict | None = None) -> dict:
    firmware = FIRMWARE[stack["hdk"]["version"]]
    return {kind: {"name": name.replace("*", firmware), "sha256": "0" * 64, "size": (sizes or {}).get(kind, 1 << 20)}
            for kind, name in stack["packages"].items()}


def write(path: Path, text: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def inner(version: str) -> str:
    c = {"8.2.RC1": 22, "8.3.RC1": 23, "8.5.0": 25, "9.1.0": 27}[version]
    return f"V100R001C{c}SPC001B200"


class Node:
    """A node's files under a temporary root, written as the vendor's installers leave them."""

    def __init__(self, root: Path):
        self.root = root
        self.ascend = root / "usr/local/Ascend"
        self.info = root / "etc/ascend_install.info"

    # --- HDK
    def driver(self, version: str, complete: bool = True, files: bool = True, firmware: str | None = None):
        lines = ["UserName=HwHiAiUser", "UserGroup=HwHiAiUser", "Driver_Install_Type=full",
                 f"Driver_Install_Path_Param={self.ascend}", "Driver_Install_For_All=yes"]
        if firmware:
            lines += ["Firmware_Install_Type=full", f"Firmware_Install_Path_Param={self.ascend}"]
            write(self.ascend / "firmware/version.info", f"Version={firmware}\nfirmware_version=1.0\n")
        if complete:
            lines.append("Driver_Install_Status=complete")
        write(self.info, "\n".join(lines) + "\n")
        if files:
            write(self.ascend / "driver/version.info", f"Version={version}\npackage_version={version}\n")
        return self

    # --- CANN up to 8.3
    def legacy(self, version: str, *, kernels: bool = True, listed: bool = True):
        home = self.ascend / "ascend-toolkit" / version
        write(home / f"{ARCH}-linux/ascend_toolkit_install.info",
              f"package_name=Ascend-cann-toolkit\nversion={version}\ninnerversion={inner(version)}\narch={ARCH}\n")
        write(home / "create_version_softlink.sh", "#!/bin/bash\n")
        write(home / f"{ARCH}-linux/script/uninstall.sh", "#!/bin/bash\n")
        if kernels:
            (home / "opp/built-in/op_impl/ai_core/tbe/kernel/ascend910b").mkdir(parents=True)
            write(home / "opp_kernel/script/uninstall.sh", "#!/bin/bash\n")
        if listed:
            self._cfg_add(version, kernels)
        return self

    def _cfg(self) -> dict:
        cfg = self.ascend / "ascend-toolkit/latest/version.cfg"
        return state_mod.key_values(cfg.read_text()) if cfg.exists() else {}

    def _cfg_write(self, values: dict):
        write(self.ascend / "ascend-toolkit/latest/version.cfg",
              "# version: 1.0\n" + "".join(f"{k}={v}\n" for k, v in values.items()))

    def _cfg_add(self, version: str, kernels: bool):
        values = self._cfg()
        pair = f"[{inner(version)}:{version}]"
        for pkg in ("toolkit",) + (("opp_kernel",) if kernels else ()):
            values[f"{pkg}_installed_version"] = values.get(f"{pkg}_installed_version", "") + pair
        self._cfg_write(values)

    def run_legacy(self, version: str, env: bool = True):
        """latest runs ``version``: version.cfg's running entries and the links to its install-info."""
        values = self._cfg()
        values["toolkit_running_version"] = f"[{inner(version)}:{version}]"
        values["opp_kernel_running_version"] = f"[{inner(version)}:{version}]"
        self._cfg_write(values)
        link = self.ascend / f"ascend-toolkit/latest/{ARCH}-linux/ascend_toolkit_install.info"
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink():
            link.unlink()
        os.symlink(f"../../{version}/{ARCH}-linux/ascend_toolkit_install.info", link)
        if env:
            write(self.ascend / "ascend-toolkit/set_env.sh", "# toolkit env\n")
        return self

    # --- CANN 8.5+
    def cann(self, version: str, *, env: bool = True, ops: bool = True, active: bool = True):
        home = self.ascend / f"cann-{version}"
        write(home / f"{ARCH}-linux/ascend_toolkit_install.info",
              f"package_name=Ascend-cann-toolkit\nversion={version}\ninnerversion={inner(version)}\narch={ARCH}\n")
        write(home / f"{ARCH}-linux/script/uninstall.sh", "#!/bin/bash\n")
        if env:
            write(home / "set_env.sh", "# toolkit env\n")
        if ops:
            (home / "opp/built-in/op_impl/ai_core/tbe/kernel/ascend910b").mkdir(parents=True)
            write(home / f"{ARCH}-linux/ascend_ops_install.info", f"package_name=Ascend-cann-910b-ops\nversion={version}\n")
        if active:
            link = self.ascend / "cann"
            if link.is_symlink():
                link.unlink()
            os.symlink(f"cann-{version}", link)
        return self

    # --- NNAL
    def nnal(self, version: str, *, active: bool = True, env: bool = True):
        d = self.ascend / "nnal/atb" / version
        write(d / "version.info", f"    Ascend-cann-atb : {version}\n    Ascend-cann-atb Version : {version}.B030\n")
        (d / "atb/cxx_abi_1").mkdir(parents=True, exist_ok=True)
        write(d / "scripts/uninstall.sh", "#!/bin/bash\n")
        write(d / "scripts/create_version_softlink.sh", "#!/bin/bash\n")
        if active:
            latest = self.ascend / "nnal/atb/latest"
            if latest.is_symlink():
                latest.unlink()
            os.symlink(version, latest)
        if env:
            write(self.ascend / "nnal/atb/set_env.sh", "# nnal env\n")
        return self

    def read(self, stack: dict) -> dict:
        """What the preflight role's module reads on this node."""
        return state_mod.collect({
            "install_root": stack["paths"]["install_root"], "arch": ARCH,
            "layouts": plan_mod.layouts(stack),
            "hdk": {"install_info": str(self.info), "driver_home": stack["paths"]["driver_home"],
                    "firmware_home": stack["paths"]["firmware_home"]},
            "records": {}, "space": [str(self.root)], "staged": [], "files": [], "python": None, "venv": None})


ROW_A, ROW_B, ROW_82 = "2.8.0", "2.13.0", "2.6.0"   # CANN 8.3.RC1 / HDK 25.3.RC1, 9.1.0 / 26.1.0, 8.2.RC1 / 25.2.0


@pytest.fixture
def node(tmp_path) -> Node:
    return Node(tmp_path)


# The account the driver installs for, as preflight passes the npu_driver role's (Ascend's default
# names both HwHiAiUser; a group of another name shows which option goes where).
DRIVER_ACCOUNT = {"driver_user": "HwHiAiUser", "driver_group": "HwHiAiGroup"}


def plan(node: Node, row: str, **options) -> dict:
    stack = stack_of(row, node.root)
    pins = options.pop("pins", None) or pins_of(stack)
    return plan_mod.plan(node.read(stack), stack, pins, {"keep": 2, "nnal": True, **DRIVER_ACCOUNT, **options})


def steps(p: dict) -> list[tuple[str, str]]:
    return [(s["component"], s["action"]) for s in p["steps"]]


def at_row_a(node: Node) -> Node:
    node.driver("25.3.rc1", firmware="7.7.3.1.200")
    node.legacy("8.3.RC1").run_legacy("8.3.RC1")
    return node.nnal("8.3.RC1")


def at_row_b(node: Node, keep_nnal_a: bool = True) -> Node:
    node.driver("26.1.0", firmware="7.8.1.1.200")
    node.cann("9.1.0")
    if keep_nnal_a:
        node.nnal("8.3.RC1", active=False)
    return node.nnal("9.1.0")


# ------------------------------------------------------------------ first install, converged

def test_a_bare_node_gets_driver_then_firmware_then_cann_in_order(node):
    p = plan(node, ROW_B)
    assert [s["say"] for s in p["steps"]] == [
        "would run Ascend-hdk-910b-npu-driver_26.1.0_linux-x86_64.run --full --install-for-all --quiet "
        "--install-username=HwHiAiUser --install-usergroup=HwHiAiGroup",
        "would run Ascend-hdk-910b-npu-firmware_7.8.1.1.200.run --full --quiet and reboot",
        "would run Ascend-cann-toolkit_9.1.0_linux-x86_64.run --install --install-for-all --quiet",
        "would run Ascend-cann-910b-ops_9.1.0_linux-x86_64.run --install --install-for-all --quiet",
        "would run Ascend-cann-nnal_9.1.0_linux-x86_64.run --install --install-for-all --quiet "
        "(with the toolkit's set_env.sh sourced)"]
    assert p["installers"] == ["driver", "firmware", "toolkit", "kernels", "nnal"] and p["reboot"]


def test_a_node_at_its_lock_has_nothing_to_do(node):
    assert plan(at_row_b(node), ROW_B)["steps"] == []
    other = Node(node.root.parent / "a")
    p = plan(at_row_a(other), ROW_A)
    assert p["steps"] == [] and p["installers"] == [] and not p["changes"]


# ------------------------------------------------------------------ upgrade and rollback

def test_upgrade_from_an_8_3_row_to_9_1_goes_firmware_driver_then_toolkit_upgrade(node):
    p = plan(at_row_a(node), ROW_B)
    assert steps(p) == [("firmware", "upgrade"), ("driver", "upgrade"), ("toolkit", "upgrade"),
                        ("kernels", "install"), ("nnal", "install")]
    fw, drv, tk = p["steps"][:3]
    # --upgrade alone for the HDK: the driver refuses --install-for-all / --install-username with it
    assert fw["flags"] == ["--upgrade", "--quiet"] and fw["reboot"]
    assert drv["flags"] == ["--upgrade", "--quiet"] and not drv["reboot"]
    # into 8.5+ from the ascend-toolkit layout: --upgrade (850 instg_0008), and it says what it removes
    assert tk["flags"] == ["--upgrade", "--quiet"] and tk["replaces"] == "8.3.RC1"
    assert "removes every ascend-toolkit version (no way back without 8.3.RC1's installers)" in tk["why"]
    # NNAL 8.3.RC1 stays beside the new one (cann_keep_versions=2)
    assert not [s for s in p["steps"] if s["action"] == "remove"]


def test_rollback_from_9_1_to_8_3_uninstalls_the_new_layout_and_switches_nnal_without_its_installer(node):
    p = plan(at_row_b(node), ROW_A)
    assert steps(p) == [("firmware", "upgrade"), ("driver", "upgrade"), ("toolkit", "uninstall"),
                        ("toolkit", "install"), ("kernels", "install"), ("nnal", "switch")]
    uninstall = p["steps"][2]
    assert uninstall["argv"] == [f"{node.ascend}/cann-9.1.0/{ARCH}-linux/script/uninstall.sh"]
    assert "cannot go back to 8.3.RC1 with --upgrade" in uninstall["why"]
    assert p["steps"][3]["flags"] == ["--install", "--install-for-all", "--quiet"]
    switch = p["steps"][-1]
    assert switch["argv"] == [f"{node.ascend}/nnal/atb/8.3.RC1/scripts/create_version_softlink.sh"]
    assert switch["say"].startswith("would switch NNAL 9.1.0 -> 8.3.RC1")
    # NNAL's installer is not needed: the cache may lack it
    assert p["installers"] == ["driver", "firmware", "toolkit", "kernels"]


def test_within_8_x_a_kept_version_is_switched_back_without_installers(node):
    # 8.2.RC1 was installed, then 8.3.RC1 beside it (latest follows the last installed)
    node.driver("25.2.0", firmware="7.7.2.1.200")
    node.legacy("8.2.RC1").legacy("8.3.RC1").run_legacy("8.3.RC1")
    node.nnal("8.2.RC1", active=False).nnal("8.3.RC1")
    p = plan(node, ROW_82)
    assert [(s["component"], s["action"], s["argv"]) for s in p["steps"]] == [
        ("toolkit", "switch", [f"{node.ascend}/ascend-toolkit/8.2.RC1/create_version_softlink.sh"]),
        ("nnal", "switch", [f"{node.ascend}/nnal/atb/8.2.RC1/scripts/create_version_softlink.sh"])]
    assert p["installers"] == []   # nothing to download, nothing to stage
    assert p["steps"][0]["say"].startswith("would switch CANN 8.3.RC1 -> 8.2.RC1")


def test_within_8_x_a_new_version_is_installed_beside_the_old_one(node):
    node.driver("25.3.rc1", firmware="7.7.3.1.200")
    node.legacy("8.2.RC1").run_legacy("8.2.RC1").nnal("8.2.RC1")
    p = plan(node, ROW_A)
    assert steps(p) == [("toolkit", "install"), ("kernels", "install"), ("nnal", "install")]
    assert p["steps"][0]["flags"] == ["--install", "--install-for-all", "--quiet"]   # not --upgrade: 8.2 stays


def test_within_8_5_plus_forward_is_an_upgrade_and_back_is_uninstall_then_install(node):
    node.driver("26.1.0", firmware="7.8.1.1.200")
    node.cann("8.5.0").nnal("8.5.0")
    p = plan(node, ROW_B)
    assert steps(p)[:2] == [("toolkit", "upgrade"), ("kernels", "install")]
    assert p["steps"][0]["replaces"] == "8.5.0"
    back = Node(node.root.parent / "back")
    back.driver("25.5.0", firmware="7.7.5.1.200")
    back.cann("9.1.0").nnal("9.1.0")
    p = plan(back, "2.9.0")   # CANN 8.5.0
    assert steps(p)[:3] == [("toolkit", "uninstall"), ("toolkit", "install"), ("kernels", "install")]
    assert "8.5.0 release note" in p["steps"][0]["why"]


# ------------------------------------------------------------------ a node stopped midway

def test_a_toolkit_stopped_after_its_files_but_before_its_bookkeeping_is_installed_again(node):
    # 8.3.RC1's folder and install-info are there, but latest/version.cfg never recorded it
    # and there is no set_env.sh (the simulator's power cut "files_copied"; a real one anywhere)
    node.driver("25.3.rc1", firmware="7.7.3.1.200").legacy("8.3.RC1", listed=False).nnal("8.3.RC1")
    p = plan(node, ROW_A)
    assert steps(p) == [("toolkit", "install"), ("kernels", "install")]


def test_a_version_beside_a_running_one_that_version_cfg_never_recorded_is_installed_not_switched(node):
    # 8.2.RC1 runs (its set_env.sh and version.cfg are there); 8.3.RC1's files were copied beside it
    # when the install stopped: its create_version_softlink.sh exists, but the latest manager never
    # recorded it, so switching to it would link a version the vendor's bookkeeping does not know
    node.driver("25.3.rc1", firmware="7.7.3.1.200")
    node.legacy("8.2.RC1").run_legacy("8.2.RC1").legacy("8.3.RC1", listed=False).nnal("8.3.RC1")
    assert steps(plan(node, ROW_A)) == [("toolkit", "install"), ("kernels", "install")]


def test_an_8_5_toolkit_without_its_set_env_is_installed_again(node):
    at_row_b(node)
    (node.ascend / "cann-9.1.0/set_env.sh").unlink()
    assert steps(plan(node, ROW_B)) == [("toolkit", "install"), ("kernels", "install")]


def test_a_driver_recorded_without_its_completion_mark_is_installed_again_first(node):
    # Driver_Install_Path_Param written, Driver_Install_Status=complete never appended, no files
    node.driver("26.1.0", complete=False, files=False)
    p = plan(node, ROW_B)
    assert steps(p)[:2] == [("driver", "upgrade"), ("firmware", "install")]
    assert "without Driver_Install_Status=complete" in p["steps"][0]["why"]
    # with its files there the same: the mark, not the version file, says it is installed
    other = Node(node.root.parent / "o")
    other.driver("26.1.0", complete=False, firmware="7.8.1.1.200")
    at = plan(other, ROW_B)
    assert steps(at)[0] == ("driver", "upgrade")


def test_an_nnal_upgrade_backup_is_put_back_first_as_the_installer_would(node):
    at_row_a(node)
    # an interrupted --upgrade: 8.3.RC1 copied to 8.3.RC1_recover, then removed with latest and set_env.sh
    os.rename(node.ascend / "nnal/atb/8.3.RC1", node.ascend / "nnal/atb/8.3.RC1_recover")
    (node.ascend / "nnal/atb/latest").unlink()
    os.rename(node.ascend / "nnal/atb/set_env.sh", node.ascend / "nnal/atb/set_env_recover.sh")
    p = plan(node, ROW_A)
    assert steps(p) == [("nnal", "recover"), ("nnal", "switch")]
    assert p["steps"][0]["recover"] == {"version": "8.3.RC1", "dir": f"{node.ascend}/nnal/atb/8.3.RC1_recover",
                                        "set_env_recover": True}


# ------------------------------------------------------------------ old versions

def test_versions_beyond_keep_are_removed_with_their_uninstall_scripts_never_the_active_one(node):
    node.driver("25.3.rc1", firmware="7.7.3.1.200")
    for v in ("8.2.RC1", "8.3.RC1"):
        node.legacy(v)
    node.run_legacy("8.2.RC1").nnal("8.2.RC1")
    # a third, older version (left by hand); 8.2.RC1 runs; the row is 8.3.RC1, already on disk
    p = plan(node, ROW_A, keep=1)
    assert [(s["action"], s["version"], s["argv"]) for s in p["steps"] if s["component"] == "toolkit"] == [
        ("switch", "8.3.RC1", [f"{node.ascend}/ascend-toolkit/8.3.RC1/create_version_softlink.sh"]),
        ("remove", "8.2.RC1", [f"{node.ascend}/ascend-toolkit/8.2.RC1/{ARCH}-linux/script/uninstall.sh"])]
    assert plan(node, ROW_A, keep=2)["steps"][0]["action"] == "switch"
    assert [s for s in plan(node, ROW_A, keep=2)["steps"] if s["action"] == "remove"] == []


def test_removing_an_nnal_version_is_followed_by_the_switch_that_restores_set_env(node):
    # ATB's version uninstall.sh deletes nnal/atb/set_env.sh: the version that stays is switched to again
    at_row_a(node).nnal("8.2.RC1", active=False)
    node.nnal("8.3.RC1")
    p = plan(node, ROW_A, keep=1)
    assert steps(p) == [("nnal", "remove"), ("nnal", "switch")]
    assert p["steps"][0]["argv"] == [f"{node.ascend}/nnal/atb/8.2.RC1/scripts/uninstall.sh"]


# ------------------------------------------------------------------ busy NPUs, free space, names

def test_busy_npus_stop_a_change_unless_allowed_and_then_the_driver_runs_with_force(node):
    procs = [{"npu": 0, "chip": 0, "pid": 19334, "name": "VLLMWorker_TP"}]
    p = plan(at_row_a(node), ROW_B, processes=procs)
    why = plan_mod.busy_problem(p, procs, allow=False)
    assert why.startswith("the NPUs run processes (pid 19334 (VLLMWorker_TP) on NPU 0 chip 0), so this node is "
                          "not changed") and "npuenv_allow_busy: true" in why
    assert plan_mod.busy_problem(p, procs, allow=True) == ""
    forced = plan(node, ROW_B, processes=procs, allow_busy=True)
    driver = next(s for s in forced["steps"] if s["component"] == "driver")
    assert driver["flags"] == ["--upgrade", "--quiet", "--force"] and driver["reboot"]
    # a node with nothing to change is not refused for its running jobs
    converged = plan(at_row_b(Node(node.root.parent / "c")), ROW_B, processes=procs)
    assert plan_mod.busy_problem(converged, procs, allow=False) == ""


def test_free_space_is_asked_per_path_for_what_the_run_writes_there(node):
    at_row_a(node)
    stack = stack_of(ROW_B, node.root)
    pins = pins_of(stack, sizes={"driver": 400 << 20, "firmware": 100 << 20, "toolkit": 2 << 30,
                                 "kernels": 3 << 30, "nnal": 500 << 20})
    state = node.read(stack)
    p = plan_mod.plan(state, stack, pins, {"keep": 2, **DRIVER_ACCOUNT})
    paths = {"install_root": stack["paths"]["install_root"], "venv": "/opt/npuenv/venv",
             "wheelhouse_dest": "/var/cache/npuenv/wheelhouse",
             "stage_dirs": {k: "/var/cache/npuenv/installers" for k in pins}}
    needs = plan_mod.space_needs(p, state, stack, pins, paths,
                                 {"bytes": 300 << 20, "installed": 1200 << 20, "push": True})
    root = needs[stack["paths"]["install_root"]]
    # the toolkit --upgrade: the running version's size + 10 GiB (the vendor's rule); driver 300 MiB,
    # firmware 32 MiB; the ops and NNAL packages at least their own size
    assert root["kib"] == (state["toolkits"][0]["size_kib"] + 10240 * 1024 + 300 * 1024 + 32 * 1024
                           + (3 << 30) // 1024 + (500 << 20) // 1024)
    assert needs["/var/cache/npuenv/installers"]["kib"] == ((400 + 100 + 500) * (1 << 20) + (5 << 30)) // 1024
    assert needs["/tmp"]["kib"] == needs[state["home"]]["kib"] == 2 * (3 << 30) // 1024
    assert needs["/opt/npuenv/venv"]["kib"] == 1200 * 1024 and needs["/var/cache/npuenv/wheelhouse"]["kib"] == 300 * 1024
    space = {path: {"free_kib": 20 << 20, "dev": 1, "at": "/"} for path in needs}   # one 20 GiB filesystem
    problems = plan_mod.space_problems(needs, space)
    assert len(problems) == len(needs)          # one message per path, each with its figures
    first = problems[0]
    assert first.startswith(f"{stack['paths']['install_root']}: needs ") and "MiB more for" in first \
        and "but only 20480 MiB are free on /" in first
    space = {path: {"free_kib": 1 << 30, "dev": i, "at": path} for i, path in enumerate(needs)}
    assert plan_mod.space_problems(needs, space) == []


def test_the_firmware_version_comes_from_the_locked_file_name():
    assert plan_mod.firmware_version("Ascend-hdk-910b-npu-firmware_7.8.1.1.200.run",
                                     "Ascend-hdk-910b-npu-firmware_*.run") == "7.8.1.1.200"
    with pytest.raises(AnsibleFilterError):
        plan_mod.firmware_version("Ascend-hdk-910-npu-firmware_7.8.1.1.200.run", "Ascend-hdk-910b-npu-firmware_*.run")


def test_the_node_state_skips_names_that_are_no_versions(node):
    at_row_a(node)
    (node.ascend / "ascend-toolkit/..hidden").mkdir()
    (node.ascend / "nnal/atb/x;id_recover").mkdir()
    state = node.read(stack_of(ROW_A, node.root))
    assert [t["version"] for t in state["toolkits"]] == ["8.3.RC1"]
    assert state["nnal"]["recover"] == [] and state["active"]["ascend-toolkit"]["info_version"] == "8.3.RC1"


# ------------------------------------------------------------------ lock entry, records, tuning

def test_a_host_no_lock_entry_fits_is_refused_with_what_it_is_and_what_the_lock_has():
    from compat_matrix import lock
    m = cm.load_matrix()
    data = lock.make(m, cm.Constraints(torch_npu="==2.13.0", python="3.11", arch="x86_64", os="debian12")).data
    assert plan_mod.lock_entry(data, "x86_64", "Debian", "12.12")["problem"].startswith(
        f"the lock {data['digest'][:19]} pins no installers for x86_64/debian12")
    found = plan_mod.lock_entry(data, "aarch64", "Debian", "12.12")
    assert found["key"] is None and "has no entry for this machine's platform aarch64/debian12" in found["problem"]
    found = plan_mod.lock_entry(data, "x86_64", "CentOS", "7.9")
    assert "runs an OS the matrix does not support" in found["problem"]


def test_only_a_run_of_every_component_brings_the_node_to_its_lock():
    assert plan_mod.deploy_complete(["all"], [])
    assert not plan_mod.deploy_complete(["driver", "cann", "env"], [])
    assert plan_mod.deploy_complete(["preflight", "driver", "cann", "python", "env", "hccn", "tuning"], [])
    assert not plan_mod.deploy_complete(["all"], ["python"])


def test_the_node_record_is_rewritten_only_when_more_than_its_time_changed():
    old = {"npuenv_node": 1, "lock_digest": "sha256:a", "deployed_at": "2026-01-01T00:00:00Z"}
    assert not plan_mod.record_changed(old, {"npuenv_node": 1, "lock_digest": "sha256:a"})
    assert plan_mod.record_changed(old, {"npuenv_node": 1, "lock_digest": "sha256:b"})
    assert plan_mod.record_changed(None, {"npuenv_node": 1})


@pytest.mark.parametrize("text", ["Version=24.1.0\n", " Version = 25.0.rc1.1 \nno separator here\n\n", "a=b=c",
                                  "=x\nk=\n", "", None])
def test_the_node_state_modules_copy_of_key_values_reads_as_facts_does(text):
    # a module runs on the node alone and cannot import validation: its copy is held equal here
    from validation.node import facts

    assert state_mod.key_values(text) == facts.key_values(text)

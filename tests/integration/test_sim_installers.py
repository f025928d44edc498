"""The simulated vendor installers: flags, preconditions, both CANN layouts,
idempotent reinstall, refusal of damaged archives, and the lifecycle the
vendor documents (tests/sim/vendor.yaml lifecycle): CANN versions side by side
with ascend-toolkit/latest a directory of links, switching, upgrade and
rollback in both CANN generations, uninstall re-linking, NNAL's recover
backup, driver and firmware upgrade, rollback and busy devices, and a power
cut at each of the installers' stop points. Each scenario runs in a fresh
simulated node."""
from __future__ import annotations

import json
import re
import subprocess
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.sim import faults as sim_faults
from tests.sim import installers as sim_installers
from tests.sim import nodes as sim_nodes
from tests.sim import state as sim_state

PRELUDE = r'''
step() { local label="$1"; shift; echo "@@begin $label"; "$@" 2>&1; echo "@@end $label rc=$?"; }
mkuser() { groupadd HwHiAiUser && useradd -g HwHiAiUser -d /home/HwHiAiUser -m HwHiAiUser -s /bin/bash; }
cd /inst
'''


def steps(result) -> dict[str, tuple[int, str]]:
    out = {}
    for m in re.finditer(r"@@begin (\S+)\n(.*?)@@end \1 rc=(\d+)", result.stdout, re.S):
        out[m.group(1)] = (int(m.group(3)), m.group(2))
    assert out, f"no steps ran:\n{result.stdout}\n{result.stderr}"
    return out


def names(inst):
    return {k: p.name for k, p in inst.files.items()}


def test_preconditions_are_refused_and_leave_nothing(fresh_node, installer_sets):
    inst = installer_sets["legacy"]
    n = names(inst)
    r = fresh_node.run(PRELUDE + f'''
step driver_no_user ./{n["driver"]} --full --install-for-all
step after_no_user test -e /usr/local/Ascend/driver/version.info
step firmware_first ./{n["firmware"]} --full
step kernels_first ./{n["kernels"]} --install --quiet
step unknown_flag ./{n["toolkit"]} --frobnicate
step version ./{n["toolkit"]} --version
step tk ./{n["toolkit"]} --install --install-for-all --quiet
step nnal_unsourced ./{n["nnal"]} --install --quiet
step after_nnal test -e /usr/local/Ascend/nnal
''', mounts={"/inst": inst.dir})
    s = steps(r)
    rc, out = s["driver_no_user"]
    assert rc == 1 and "[ERROR]The user HwHiAiUser or group HwHiAiUser does not exist" in out
    assert s["after_no_user"][0] == 1, "a refused driver install must leave nothing behind"
    rc, out = s["firmware_first"]
    assert rc == 1 and "install the driver first" in out
    rc, out = s["kernels_first"]
    assert rc == 1 and "[kernels_910b]" in out and \
        "[ERROR] Kernel package depends on toolkit nnae or nnrt, none of these packages are installed in /usr/local/Ascend." in out
    rc, out = s["unknown_flag"]
    assert rc == 1 and "Usage:" in out and "--install-path=<path>" in out
    assert s["version"][0] == 0 and s["version"][1].strip().endswith("\n8.0.0")
    assert s["tk"][0] == 0
    rc, out = s["nnal_unsourced"]
    assert rc == 1 and "[cann-atb]" in out and \
        "[ERROR] Check owner failed, please check env ASCEND_TOOLKIT_HOME or ASCEND_NNAE_HOME is set." in out
    assert s["after_nnal"][0] == 1, "a refused NNAL install left files"


@pytest.mark.parametrize("generation", ["legacy", "current"])
def test_full_install_writes_the_vendor_layout(fresh_node, installer_sets, generation):
    inst = installer_sets[generation]
    stack, n = inst.stack, names(inst)
    paths = stack.paths
    # NNAL's set_env.sh picks ATB's C++ ABI from the installed torch (this node has none): the legacy
    # row's torch 2.4.0 x86_64 wheel has the pre-C++11 ABI, 2.13.0's the C++11 one.
    abi = 0 if generation == "legacy" else 1
    r = fresh_node.run(PRELUDE + f'''
mkuser
step driver ./{n["driver"]} --full --install-for-all --quiet
step firmware ./{n["firmware"]} --full --quiet
step toolkit ./{n["toolkit"]} --install --install-for-all --quiet
step kernels ./{n["kernels"]} --install --install-for-all --quiet
step nnal bash -c '. {paths["env_script"]} && ./{n["nnal"]} --install --install-for-all --quiet'
step env bash -c '. {paths["env_script"]} && . {paths["nnal_env_script"]} --cxx_abi={abi} && env | sort'
step files bash -c 'cat {paths["driver_home"]}/version.info {paths["firmware_home"]}/version.info /etc/ascend_install.info; \
    readlink -f {paths["toolkit_latest"]}/runtime; cat {paths["toolkit_home"]}/{stack.arch}-linux/ascend_toolkit_install.info; \
    ls {paths["toolkit_home"]}/opp/built-in/op_impl/ai_core/tbe/kernel/; ls -l /dev/ | grep -E "davinci|devmm|hisi"; \
    cat /etc/Ascend/ascend_cann_install.info'
''', mounts={"/inst": inst.dir})
    s = steps(r)
    assert [s[k][0] for k in ("driver", "toolkit", "kernels", "nnal")] == [0, 0, 0, 0], r.stdout
    assert s["firmware"][0] == 2 and "Reboot now or after driver installation" in s["firmware"][1]
    files = s["files"][1]
    hdk = stack.row.hdk["version"]
    assert f"Version={hdk.lower()}" in files
    assert f"package_version={hdk.lower()}" in files
    assert "Driver_Install_Path_Param=/usr/local/Ascend" in files and "Firmware_Install_Type=full" in files
    assert f"version={stack.row.cann}\n" in files and "package_name=Ascend-cann-toolkit" in files
    assert stack.chip_info["opp_kernel_dir"] in files
    assert len(re.findall(r"^c.* davinci\d+$", files, re.M)) == 8
    assert all(dev in files for dev in ("davinci_manager", "devmm_svm", "hisi_hdc"))
    assert "Install_Path=/usr/local/Ascend" in files
    env = dict(line.split("=", 1) for line in s["env"][1].splitlines() if "=" in line)
    scalars, lists = stack.environment()
    for key, value in scalars.items():
        assert env[key] == value, key
    # (a trailing slash names the same directory: CANN 8.5's script writes driver/lib64/common/)
    ld = [p.rstrip("/") for p in env["LD_LIBRARY_PATH"].split(":")]
    assert ld[: len(lists["LD_LIBRARY_PATH"])] == lists["LD_LIBRARY_PATH"]
    # the entry point leads to the version installed (a link, or a directory of links up to 8.3)
    assert f"{paths['toolkit_home']}/runtime\n" in files
    if generation == "current":
        assert files.count("cann-9.1.0") >= 1 and paths["env_script"] == "/usr/local/Ascend/cann/set_env.sh"
        assert env["ASCEND_HOME_PATH"] == "/usr/local/Ascend/cann-9.1.0"
    else:
        assert env["ASCEND_HOME_PATH"] == "/usr/local/Ascend/ascend-toolkit/latest"


def test_reinstall_is_idempotent_and_uninstall_removes(fresh_node, installer_sets):
    inst = installer_sets["current"]
    n = names(inst)
    snapshot = ("find /usr/local/Ascend /etc/ascend_install.info /etc/Ascend /dev -path /usr/local/Ascend/nnal -prune "
                "-o -printf '%p %l %s\\n' | sort | md5sum")
    r = fresh_node.run(PRELUDE + f'''
mkuser
./{n["driver"]} --full --install-for-all --quiet >/dev/null
./{n["firmware"]} --full --quiet >/dev/null
./{n["toolkit"]} --install --install-for-all --quiet >/dev/null
./{n["kernels"]} --install --quiet >/dev/null
step first bash -c "{snapshot}"
step driver_again ./{n["driver"]} --full --install-for-all --quiet
step firmware_again ./{n["firmware"]} --full --quiet
step toolkit_again ./{n["toolkit"]} --install --install-for-all --quiet
step kernels_again ./{n["kernels"]} --install --quiet
step second bash -c "{snapshot}"
step uninstall_kernels ./{n["kernels"]} --uninstall --quiet
step uninstall_toolkit ./{n["toolkit"]} --uninstall --quiet
step after bash -c 'ls /usr/local/Ascend; test -e /usr/local/Ascend/cann || echo no-cann-link'
step uninstall_driver /usr/local/Ascend/driver/script/uninstall.sh
step devices bash -c 'ls /dev | grep -c davinci || true'
''', mounts={"/inst": inst.dir})
    s = steps(r)
    assert s["first"][1] == s["second"][1], "a reinstall of the same versions changed the node"
    assert s["driver_again"][0] == 0 and s["toolkit_again"][0] == 0 and s["kernels_again"][0] == 0
    assert s["firmware_again"][0] == 0 and "already installed" in s["firmware_again"][1]
    assert s["uninstall_kernels"][0] == 0 and s["uninstall_toolkit"][0] == 0
    assert "cann-9.1.0" not in s["after"][1] and "no-cann-link" in s["after"][1]
    assert s["uninstall_driver"][0] == 0 and s["devices"][1].strip() == "0"


def test_corrupt_and_truncated_archives_are_refused(fresh_node, installer_sets, tmp_path):
    inst = installer_sets["legacy"]
    toolkit = inst.files["toolkit"].read_bytes()
    corrupt = bytearray(toolkit)
    corrupt[-100] ^= 0xFF
    (tmp_path / "corrupt.run").write_bytes(bytes(corrupt))
    (tmp_path / "truncated.run").write_bytes(toolkit[:-500])
    for f in tmp_path.glob("*.run"):
        f.chmod(0o755)
    r = fresh_node.run(PRELUDE + '''
step corrupt ./corrupt.run --install --install-for-all
step truncated ./truncated.run --install --install-for-all
step nothing bash -c 'test -e /usr/local/Ascend && echo installed || echo clean'
''', mounts={"/inst": tmp_path})
    s = steps(r)
    rc, out = s["corrupt"]
    assert rc == 2 and re.search(r"Error in SHA256 checksums: [0-9a-f]{64} is different from [0-9a-f]{64}", out)
    rc, out = s["truncated"]
    assert rc == 2 and "Unexpected archive size." in out
    assert s["nothing"][1].strip() == "clean"


def test_header_options_and_custom_install_path(fresh_node, installer_sets):
    inst = installer_sets["legacy"]
    n = names(inst)
    r = fresh_node.run(PRELUDE + f'''
step info ./{n["toolkit"]} --info
step list ./{n["toolkit"]} --list
step check ./{n["toolkit"]} --check
step custom ./{n["toolkit"]} --install --install-path=/opt/ascend --quiet
step custom_env bash -c '. /opt/ascend/ascend-toolkit/set_env.sh && echo $ASCEND_HOME_PATH'
step other_path ./{n["toolkit"]} --install --install-path=/srv/ascend --quiet
''', mounts={"/inst": inst.dir})
    s = steps(r)
    assert "Identification: ASCEND_RUN_PACKAGE" in s["info"][1]
    assert "install.sh" in s["list"][1] and "package.env" in s["list"][1]
    assert s["check"][0] == 0 and "SHA256 checksums are OK." in s["check"][1]
    assert s["custom"][0] == 0
    assert s["custom_env"][1].strip() == "/opt/ascend/ascend-toolkit/latest"
    rc, out = s["other_path"]
    assert rc == 1 and "ascend_cann_install.info exists ! 'install-path' parameter are not supported." in out


def test_nnal_files_atb_abi_and_an_nnae_only_host(fresh_node, tmp_path):
    """NNAL's version.info is in the vendor's "key : value" form and its set_env.sh picks ATB's C++ ABI
    as the vendor's does; NNAE installs on its own (a production host without the toolkit)."""
    release = sim_installers.Release(cann="8.0.0", hdk="24.1.0", chip="910b", arch="x86_64")
    made = {k: p.name for k, p in sim_installers.make_installers(
        release, tmp_path, kinds=("toolkit", "nnal", "nnae")).items()}
    assert made == {"toolkit": "Ascend-cann-toolkit_8.0.0_linux-x86_64.run",
                    "nnal": "Ascend-cann-nnal_8.0.0_linux-x86_64.run",
                    "nnae": "Ascend-cann-nnae_8.0.0_linux-x86_64.run"}
    r = fresh_node.run(PRELUDE + f'''
step nnae ./{made["nnae"]} --install --install-for-all --quiet
step nnae_files bash -c 'cat /usr/local/Ascend/nnae/latest/ascend_nnae_install.info; readlink /usr/local/Ascend/nnae/latest'
step nnae_env bash -c '. /usr/local/Ascend/nnae/set_env.sh && env | grep -E "^ASCEND_(HOME|OPP)_PATH=" | sort'
step toolkit ./{made["toolkit"]} --install --install-for-all --quiet
step nnal bash -c '. /usr/local/Ascend/ascend-toolkit/set_env.sh && ./{made["nnal"]} --install --quiet'
step nnal_version cat /usr/local/Ascend/nnal/atb/latest/version.info
step abi_default bash -c '. /usr/local/Ascend/nnal/atb/set_env.sh && echo $ATB_HOME_PATH'
step abi_0 bash -c '. /usr/local/Ascend/nnal/atb/set_env.sh --cxx_abi=0 && echo $ATB_HOME_PATH'
''', mounts={"/inst": tmp_path})
    s = steps(r)
    assert s["nnae"][0] == 0
    assert s["nnae_files"][1] == ("package_name=Ascend-cann-nnae\nversion=8.0.0\ninnerversion=V100R001C20SPC000B200\n"
                                  "arch=x86_64\nos=linux\npath=/usr/local/Ascend/nnae/8.0.0\n8.0.0\n")
    assert s["nnae_env"][1] == ("ASCEND_HOME_PATH=/usr/local/Ascend/nnae/latest\n"
                                "ASCEND_OPP_PATH=/usr/local/Ascend/nnae/latest/opp\n")
    assert s["toolkit"][0] == 0 and s["nnal"][0] == 0, r.stdout
    assert s["nnal_version"][1] == ("    Ascend-cann-atb : 8.0.0\n    Ascend-cann-atb Version : 8.0.0.B030\n"
                                    "    Platform : x86_64\n    branch : br_release_cann_8.0.0\n"
                                    "    commit id : 02a94694766ebf12d820aa4b5d9c95c4fe149379\n")
    # no torch on this node: the vendor's script falls back to the C++11 ABI
    assert s["abi_default"][1] == "/usr/local/Ascend/nnal/atb/latest/atb/cxx_abi_1\n"
    assert s["abi_0"][1] == "/usr/local/Ascend/nnal/atb/latest/atb/cxx_abi_0\n"


# --- The lifecycle: side by side, upgrade, rollback, uninstall ---------------------------------
# One release per step the fleet moves between (x86_64, 910B): only versions; how each is
# packaged and behaves is the simulator's (tests/sim/vendor.yaml).
RELEASES = {"8.0.0": "24.1.0", "8.3.RC1": "25.3.RC1", "8.5.0": "25.5.0", "9.1.0": "26.1.0"}
TK = "/usr/local/Ascend/ascend-toolkit"
ATB = "/usr/local/Ascend/nnal/atb"
SOURCED = f". {TK}/set_env.sh &&"


@pytest.fixture(scope="module")
def releases(tmp_path_factory) -> tuple[Path, dict[str, dict[str, str]]]:
    """The installers of RELEASES under <dir>/<cann>/, and each one's path as the node sees it from /inst."""
    root = tmp_path_factory.mktemp("lifecycle-installers")
    runs = {}
    for cann, hdk in RELEASES.items():
        made = sim_installers.make_installers(sim_installers.Release(cann, hdk, "910b", "x86_64"), root / cann)
        runs[cann] = {kind: f"./{cann}/{path.name}" for kind, path in made.items()}
    return root, runs


def test_toolkit_versions_side_by_side_switch_and_uninstall(fresh_node, releases):
    """Up to CANN 8.3: versions side by side, latest a directory of links that follows the last
    install (even an older one), the version switch script, a reinstall that repairs, and uninstall
    re-linking the first installed version left."""
    inst, r = releases
    old, new = r["8.0.0"], r["8.3.RC1"]
    res = fresh_node.run(PRELUDE + f'''
mkuser
{old["driver"]} --full --install-for-all --quiet >/dev/null
step ask83 bash -c 'echo n | {new["toolkit"]} --install --install-for-all; ls /usr/local/Ascend'
step tk83 {new["toolkit"]} --install --install-for-all --quiet
step tk80 {old["toolkit"]} --install --install-for-all --quiet
step k80 {old["kernels"]} --install --install-for-all --quiet
step latest bash -c 'cd {TK}; test -d latest && ! test -L latest && echo latest-is-a-directory; ls; \
    for e in runtime opp opp_kernel lib64 bin x86_64-linux/ascend_toolkit_install.info tools/hccl_test; do \
    echo "$e -> $(readlink latest/$e)"; done; test -f latest/var/manager.sh && echo manager-in-var; cat latest/version.cfg'
step env bash -c '{SOURCED} echo $ASCEND_HOME_PATH && grep ^version= $ASCEND_HOME_PATH/x86_64-linux/ascend_toolkit_install.info \
    && ls $ASCEND_OPP_PATH/built-in/op_impl/ai_core/tbe/kernel/ && ls $ASCEND_HOME_PATH/tools/hccl_test/bin/all_reduce_test'
step switch {TK}/8.3.RC1/create_version_softlink.sh
step switched bash -c 'cd {TK}/latest; readlink runtime; readlink opp_kernel || echo no-kernels-linked; \
    grep -E "^(toolkit|opp_kernel)_running" version.cfg'
step damage rm {TK}/set_env.sh
step repair {new["toolkit"]} --install --install-for-all --quiet
step repaired bash -c '{SOURCED} grep ^version= $ASCEND_HOME_PATH/x86_64-linux/ascend_toolkit_install.info; \
    grep ^toolkit_installed {TK}/latest/version.cfg'
step un83 {TK}/8.3.RC1/x86_64-linux/script/uninstall.sh
step after83 bash -c 'cd {TK}; ls; readlink latest/runtime latest/opp_kernel; grep _running_version latest/version.cfg | LC_ALL=C sort'
step unk80 {TK}/8.0.0/opp_kernel/script/uninstall.sh
step afterk80 bash -c 'ls {TK}/8.0.0/opp/built-in/op_impl/ai_core/tbe/kernel/; test -e {TK}/latest/opp_kernel || echo no-kernels-linked; \
    grep -c opp_kernel {TK}/latest/version.cfg || true'
step un80 {old["toolkit"]} --uninstall --quiet
step after80 bash -c 'ls /usr/local/Ascend; ls -A /etc/Ascend; test -e {TK} || echo ascend-toolkit-gone'
''', mounts={"/inst": inst})
    s = steps(res)
    # the driver (HDK 24.1.0) accepts CANN 8.0.0's release train, not 8.3.RC1's: without --quiet a question
    # (answered "n": nothing installed), with --quiet only a warning
    rc, out = s["ask83"]
    assert rc == 0 and "[WARNING] Check version does not matched, do you want to continue? [y/n]" in out
    assert out.endswith("[INFO] stop installation!\ndriver\n"), out
    assert s["tk83"][0] == 0 and "[Toolkit]" in s["tk83"][1] and "[WARNING] Check version does not matched!" in s["tk83"][1]
    assert s["tk80"][0] == 0 and "[INFO] Check version matched!" in s["tk80"][1]
    assert s["k80"][0] == 0
    latest = s["latest"][1]
    assert latest.startswith("latest-is-a-directory\n8.0.0\n8.3.RC1\nlatest\nset_env.sh\n"), latest
    for link in ("runtime -> ../8.0.0/runtime", "opp -> ../8.0.0/opp", "opp_kernel -> ../8.0.0/opp_kernel",
                 "lib64 -> x86_64-linux/lib64", "bin -> x86_64-linux/bin",
                 "x86_64-linux/ascend_toolkit_install.info -> ../../8.0.0/x86_64-linux/ascend_toolkit_install.info",
                 "tools/hccl_test -> ../../8.0.0/tools/hccl_test", "manager-in-var"):
        assert link in latest, link
    cfg = latest[latest.index("# version: 1.0"):]
    for line in ("toolkit_running_version=[8.0.0.0.220:8.0.0]", "runtime_running_version=[8.0.0.0.220:8.0.0]",
                 "toolkit_installed_version=[8.3.0.1.220:8.3.RC1][8.0.0.0.220:8.0.0]",
                 "opp_kernel_running_version=[8.0.0.0.220:8.0.0]", "opp_kernel_installed_version=[8.0.0.0.220:8.0.0]"):
        assert line + "\n" in cfg, line
    assert s["env"] == (0, f"{TK}/latest\nversion=8.0.0\nascend910b\nconfig\n{TK}/latest/tools/hccl_test/bin/all_reduce_test\n")
    # the switch relinks 8.3.RC1; 8.0.0's kernels do not fit it and leave latest
    assert s["switch"][0] == 0
    assert s["switched"][1] == "../8.3.RC1/runtime\nno-kernels-linked\ntoolkit_running_version=[8.3.0.1.220:8.3.RC1]\n"
    # a reinstall of the installed version (uninstall, install) brings back the deleted set_env.sh
    assert s["repair"][0] == 0 and "[y/n]" not in s["repair"][1]
    assert s["repaired"][1] == "version=8.3.RC1\ntoolkit_installed_version=[8.0.0.0.220:8.0.0][8.3.0.1.220:8.3.RC1]\n"
    # uninstalling the running version links the first installed one left, its kernels included
    assert s["un83"][0] == 0 and "Ascend-cann-toolkit_8.3.RC1_linux-x86_64 uninstall success." in s["un83"][1]
    running = [f"{p}_running_version=[8.0.0.0.220:8.0.0]" for p in
               ("compiler", "hccl", "opp_kernel", "opp", "runtime", "toolkit")]  # sorted lines
    assert s["after83"][1] == "8.0.0\nlatest\nset_env.sh\n../8.0.0/runtime\n../8.0.0/opp_kernel\n" + "\n".join(running) + "\n"
    assert s["unk80"][0] == 0 and s["afterk80"][1] == "config\nno-kernels-linked\n0\n"
    # the last version gone: latest, set_env.sh and the install record go with it
    assert s["un80"][0] == 0 and s["after80"][1] == "driver\nascend-toolkit-gone\n"


def test_upgrade_and_rollback_across_both_generations(fresh_node, releases):
    """--upgrade replaces the running version (kernels/ops removed with it), up to 8.3 in both
    directions; into 8.5+ only by --upgrade; back from 8.5+ only by --uninstall then --install;
    the ops package's own rules and uninstall scripts."""
    inst, r = releases
    t80, t83, t85, t91 = (r[v]["toolkit"] for v in ("8.0.0", "8.3.RC1", "8.5.0", "9.1.0"))
    k80, k83, o85, o91 = (r[v]["kernels"] for v in ("8.0.0", "8.3.RC1", "8.5.0", "9.1.0"))
    res = fresh_node.run(PRELUDE + f'''
step up_nothing {t83} --upgrade --quiet
{t80} --install --quiet >/dev/null && {k80} --install --quiet >/dev/null
step up83 {t83} --upgrade --quiet
step after_up83 bash -c 'cd {TK}; ls; readlink latest/runtime; test -e latest/opp_kernel || echo kernels-removed; \
    grep -c ":8.0.0\\]" latest/version.cfg || true'
step k83_upgrade {k83} --upgrade --quiet
step k83 {k83} --install --quiet
step back80 {t80} --upgrade --quiet
step after_back80 bash -c 'cd {TK}; ls; readlink latest/runtime; test -e 8.3.RC1 || echo 8.3.RC1-gone'
step install91 {t91} --install --quiet
step after_install91 bash -c 'ls /usr/local/Ascend'
step up91 {t91} --upgrade --quiet
step after_up91 bash -c 'ls /usr/local/Ascend {TK}; readlink /usr/local/Ascend/cann {TK}/latest; cat /etc/Ascend/ascend_cann_install.info'
step o91 {o91} --install --quiet
step back85 {t85} --upgrade --quiet
step back83_upgrade {t83} --upgrade --quiet
step back83_install {t83} --install --quiet
step o85_on91 {o85} --install --quiet
step still91 bash -c 'readlink /usr/local/Ascend/cann; ls /usr/local/Ascend/cann-9.1.0/opp/built-in/op_impl/ai_core/tbe/kernel/'
step ops_un /usr/local/Ascend/cann-9.1.0/x86_64-linux/script/ops_uninstall.sh
step after_ops_un bash -c 'ls /usr/local/Ascend/cann-9.1.0/opp/built-in/op_impl/ai_core/tbe/kernel/; \
    ls /usr/local/Ascend/cann-9.1.0/x86_64-linux/ | grep -c ops || true'
step un91 /usr/local/Ascend/cann-9.1.0/x86_64-linux/script/uninstall.sh
step t85 {t85} --install --quiet
step o85_upgrade {o85} --upgrade --quiet
step o85 {o85} --install --quiet
step up91_from85 {t91} --upgrade --quiet
step after_up91_from85 bash -c 'ls /usr/local/Ascend; ls /usr/local/Ascend/cann/opp/built-in/op_impl/ai_core/tbe/kernel/ | wc -l'
step un91b {t91} --uninstall --quiet
step back83 {t83} --install --quiet
step after_back83 bash -c 'ls /usr/local/Ascend {TK}; readlink {TK}/latest/runtime'
step other_path {t83} --install --install-path=/opt/ascend --quiet
step records bash -c 'cat /etc/Ascend/ascend_cann_install.info; ls /etc/Ascend | grep -cE "^[0-9]{{14}}$"; \
    grep -h ^Install_Path= /etc/Ascend/[0-9]*/ascend_cann_install.info'
''', mounts={"/inst": inst})
    s = steps(res)
    not_installed = "[ERROR] ERR_NO:0x0080;ERR_DES:Runfile is not installed in /usr/local/Ascend, upgrade failed"
    assert s["up_nothing"][0] == 1 and not_installed in s["up_nothing"][1]
    # 8.0.0 -> 8.3.RC1: the old version and its kernels are gone, the new kernels are not there yet
    assert s["up83"][0] == 0 and "Ascend-cann-toolkit_8.3.RC1_linux-x86_64 upgrade success" in s["up83"][1]
    assert s["after_up83"][1] == "8.3.RC1\nlatest\nset_env.sh\n../8.3.RC1/runtime\nkernels-removed\n0\n"
    assert s["k83_upgrade"][0] == 1 and not_installed in s["k83_upgrade"][1]
    assert s["k83"][0] == 0
    # back to 8.0.0 with the same --upgrade
    assert s["back80"][0] == 0
    assert s["after_back80"][1] == "8.0.0\nlatest\nset_env.sh\n../8.0.0/runtime\n8.3.RC1-gone\n"
    # into 9.1.0: a plain --install over the ascend-toolkit layout is refused and changes nothing
    assert s["install91"][0] == 1 and ("Ascend-cann-toolkit 8.0.0 is installed in /usr/local/Ascend/ascend-toolkit: upgrade "
                                       "it to CANN 9.1.0 with --upgrade, or uninstall all of these versions") in s["install91"][1]
    assert s["after_install91"][1] == "ascend-toolkit\n"
    assert s["up91"][0] == 0
    assert s["after_up91"][1] == ("/usr/local/Ascend:\nascend-toolkit\ncann\ncann-9.1.0\n\n/usr/local/Ascend/ascend-toolkit:\n"
                                  "latest\nset_env.sh\ncann-9.1.0\n/usr/local/Ascend/cann-9.1.0\n"
                                  "Install_Path=/usr/local/Ascend\nToolkit_InstallPath=/usr/local/Ascend/cann-9.1.0\n")
    assert s["o91"][0] == 0
    # no way back with --upgrade from 8.5+, nor an ascend-toolkit install beside it
    for step_name, target in (("back85", "8.5.0"), ("back83_upgrade", "8.3.RC1")):
        rc, out = s[step_name]
        assert rc == 1 and (f"CANN 9.1.0 does not support going back to an earlier version with --upgrade: uninstall "
                            f"CANN 9.1.0 with --uninstall, then install CANN {target} with --install.") in out
    assert s["back83_install"][0] == 1 and \
        "CANN 9.1.0 is installed in /usr/local/Ascend: uninstall it with --uninstall before installing CANN 8.3.RC1." in s["back83_install"][1]
    # ops need the toolkit of their own version in the same path
    assert s["o85_on91"][0] == 1 and "The toolkit package of version 8.5.0 is not installed in /usr/local/Ascend" in s["o85_on91"][1]
    assert s["still91"][1] == "cann-9.1.0\nascend910b\nconfig\n"
    assert s["ops_un"][0] == 0 and s["after_ops_un"][1] == "config\n0\n"
    assert s["un91"][0] == 0
    # 8.5.0's ops install with --install only; a toolkit upgrade takes them away
    assert s["t85"][0] == 0
    assert s["o85_upgrade"][0] == 1 and \
        "Ascend-cann-910b-ops 8.5.0 can only be installed with --install, --upgrade is not supported." in s["o85_upgrade"][1]
    assert s["o85"][0] == 0
    assert s["up91_from85"][0] == 0 and s["after_up91_from85"][1] == "ascend-toolkit\ncann\ncann-9.1.0\n0\n"
    # the way back: uninstall 9.1.0, then install 8.3.RC1
    assert s["un91b"][0] == 0 and s["back83"][0] == 0
    assert s["after_back83"][1] == ("/usr/local/Ascend:\nascend-toolkit\n\n/usr/local/Ascend/ascend-toolkit:\n"
                                    "8.3.RC1\nlatest\nset_env.sh\n../8.3.RC1/runtime\n")
    # from 8.1 on another --install-path replaces the record and keeps the old one in a time-stamped folder
    assert s["other_path"][0] == 0
    assert s["records"][1] == ("Install_Path=/opt/ascend\nToolkit_InstallPath=/opt/ascend/ascend-toolkit/8.3.RC1\n1\n"
                               "Install_Path=/usr/local/Ascend\n")


def test_nnal_versions_upgrade_recover_and_uninstall(fresh_node, releases):
    """NNAL: latest names the last installed version, an installed version is uninstalled first,
    the switch script, --upgrade with its _recover backup, and what each uninstall removes."""
    inst, r = releases
    n80, n83, n91 = (r[v]["nnal"] for v in ("8.0.0", "8.3.RC1", "9.1.0"))
    res = fresh_node.run(PRELUDE + f'''
{r["8.0.0"]["toolkit"]} --install --quiet >/dev/null
step n80 bash -c '{SOURCED} {n80} --install --quiet'
step n83 bash -c '{SOURCED} {n83} --install --quiet'
step latest1 readlink {ATB}/latest
step n80_again bash -c '{SOURCED} {n80} --install --quiet'
step latest2 readlink {ATB}/latest
step switch {ATB}/8.3.RC1/scripts/create_version_softlink.sh
step switched bash -c 'readlink {ATB}/latest; . {ATB}/set_env.sh --cxx_abi=1 && echo $ATB_HOME_PATH; \
    grep "Ascend-cann-atb :" {ATB}/latest/version.info'
step up91 bash -c '{SOURCED} {n91} --upgrade --quiet'
step after_up bash -c 'ls {ATB}; readlink {ATB}/latest'
step leftover mkdir {ATB}/9.1.0_recover
step up_leftover bash -c '{SOURCED} {n91} --upgrade --quiet'
step leftover_gone rmdir {ATB}/9.1.0_recover
step script_un {ATB}/8.0.0/scripts/uninstall.sh
step after_script bash -c 'ls {ATB}; readlink {ATB}/latest'
step up_no_env bash -c '{SOURCED} {n91} --upgrade --quiet'
step n80_b bash -c '{SOURCED} {n80} --install --quiet'
step switch91 {ATB}/9.1.0/scripts/create_version_softlink.sh
step un80 {n80} --uninstall --quiet
step after_un80 ls {ATB}
step un91 {n91} --uninstall --quiet
step nnal_gone test -e /usr/local/Ascend/nnal
''', mounts={"/inst": inst})
    s = steps(res)
    assert s["n80"][0] == 0 and s["n83"][0] == 0 and "[cann-atb]" in s["n83"][1]
    assert s["latest1"][1] == "8.3.RC1\n"
    # installing 8.0.0 again uninstalls it first and makes it latest, older as it is
    assert s["n80_again"][0] == 0 and "[INFO] The installation directory exists, uninstall first.." in s["n80_again"][1]
    assert s["latest2"][1] == "8.0.0\n"
    assert s["switch"][0] == 0 and "Successfully switched latest symlink and set_env." in s["switch"][1]
    assert s["switched"][1] == (f"{ATB}/8.3.RC1\n{ATB}/latest/atb/cxx_abi_1\n    Ascend-cann-atb : 8.3.RC1\n")
    # --upgrade replaces the version latest names, through a backup it deletes at the end
    rc, out = s["up91"]
    assert rc == 0 and "back up the old Ascend-cann-atb version success!" in out and "Ascend-cann-atb upgrade success!" in out
    assert s["after_up"][1] == "8.0.0\n9.1.0\nlatest\nset_env.sh\n9.1.0\n"
    rc, out = s["up_leftover"]
    assert rc == 1 and ("[ERROR] Upgrade failed, *_recover file is exist, can not back up the old version of "
                        "Ascend-cann-atb.") in out
    # the version's own uninstall script leaves latest when it names another version; set_env.sh goes
    assert s["script_un"][0] == 0 and s["after_script"][1] == "9.1.0\nlatest\n9.1.0\n"
    assert s["up_no_env"][0] == 1 and "[ERROR] Can not find file set_env.sh or latest!" in s["up_no_env"][1]
    # the installer's uninstall deletes latest and set_env.sh, whatever version latest names
    assert s["n80_b"][0] == 0 and s["switch91"][0] == 0
    assert s["un80"][0] == 0 and s["after_un80"][1] == "9.1.0\n"
    assert s["un91"][0] == 0 and s["nnal_gone"][0] == 1


def hold_devices(field: str, value) -> str:
    """A command that sets one die's field in the node's device state (a process holding it)."""
    return ("python3 -c 'import json,sys; p=\"/etc/npu-sim/state.json\"; s=json.load(open(p)); "
            f"s[\"npus\"][3][\"chips\"][0][\"{field}\"]=json.loads(sys.argv[1]); json.dump(s,open(p,\"w\"),indent=1)' "
            f"'{json.dumps(value)}'")


def test_driver_and_firmware_upgrade_rollback_and_busy_devices(fresh_node, releases):
    """--upgrade's parameter rules, firmware then driver up and back down, the install status mark,
    devices held by a process, --force and its exit 2, and the driver's uninstall."""
    inst, r = releases
    d24, f24, d26, f26 = r["8.0.0"]["driver"], r["8.0.0"]["firmware"], r["9.1.0"]["driver"], r["9.1.0"]["firmware"]
    versions = "grep -h ^Version= /usr/local/Ascend/driver/version.info /usr/local/Ascend/firmware/version.info"
    res = fresh_node.run(PRELUDE + f'''
mkuser
step d24 {d24} --full --install-for-all --quiet --install-username=HwHiAiUser --install-usergroup=HwHiAiUser
step f24 {f24} --full --quiet
step flag_all {d26} --upgrade --install-for-all --quiet
step flag_path {d26} --upgrade --install-path=/opt/ascend --quiet
step flag_user {d26} --upgrade --install-username=HwHiAiUser --install-usergroup=HwHiAiUser --quiet
step flag_fw {f26} --upgrade --install-for-all --quiet
step unchanged {versions}
step f26 {f26} --upgrade --quiet
step d26 {d26} --upgrade --quiet
step after_up bash -c '{versions}; cat /etc/ascend_install.info'
step hold {hold_devices("processes", [{"pid": 4242, "name": "python", "mem_mb": 2048}])}
step busy_upgrade {d24} --upgrade --quiet
step busy_full {d24} --full --quiet
step busy_uninstall /usr/local/Ascend/driver/script/uninstall.sh
step still26 bash -c '{versions}; ls /dev | grep -c "^davinci[0-9]"'
step f24_back {f24} --upgrade --quiet
step d24_force {d24} --upgrade --quiet --force
step after_back bash -c '{versions}; grep -c Driver_Install_Status=complete /etc/ascend_install.info'
step release {hold_devices("processes", [])}
step held_elsewhere {hold_devices("busy", -8020)}
step busy_code {d26} --upgrade --quiet
step free {hold_devices("busy", None)}
step overwrite {d24} --full --quiet
step uninstall /usr/local/Ascend/driver/script/uninstall.sh
step after_un bash -c 'cat /etc/ascend_install.info; ls /usr/local/Ascend; ls /dev | grep -c davinci || true'
''', mounts={"/inst": inst})
    s = steps(res)
    assert s["d24"][0] == 0 and s["f24"][0] == 2
    for name, what in (("flag_all", "install-for-all param need used with full/debug/run/devel."),
                       ("flag_path", "install-path param need used with full/debug/run/docker/devel."),
                       ("flag_user", "install-username and install-usergroup params need used with full/debug/run/docker/devel."),
                       ("flag_fw", "install-for-all param need used with full/debug/run/devel.")):
        rc, out = s[name]
        assert rc == 1 and f"[ERROR]ERR_NO:0x0004;ERR_DES:{what}" in out, name
    assert s["unchanged"][1] == "Version=24.1.0\nVersion=7.6.1.1.200\n"
    # upgrade: firmware first (exit 2, a reboot pending), then the driver
    assert s["f26"][0] == 2 and "Firmware package upgraded successfully! Reboot now or after driver installation" in s["f26"][1]
    assert s["d26"][0] == 0 and \
        "[INFO]Driver package upgraded successfully! The new version takes effect immediately. " in s["d26"][1]
    info = s["after_up"][1]
    assert info.startswith("Version=26.1.0\nVersion=7.8.1.1.200\n")
    assert "Driver_Install_Path_Param=/usr/local/Ascend\n" in info and "Driver_Install_For_All=yes\n" in info
    assert info.count("Driver_Install_Status=complete") == 1 and info.endswith("Driver_Install_Status=complete\n")
    # a process holds a device: no driver change without --force
    busy = ("[ERROR]The davinci nodes are occupied by some processes, please stop processes and install or uninstall "
            "again, details in : /var/log/ascend_seclog/ascend_install.log ")
    force_hint = "[INFO]If you want to install or uninstall the driver forcibly, add the force parameter."
    for name in ("busy_upgrade", "busy_full", "busy_uninstall", "busy_code"):
        rc, out = s[name]
        assert rc == 1 and busy in out and force_hint in out, name
    assert s["still26"][1] == "Version=26.1.0\nVersion=7.8.1.1.200\n8\n"
    # rollback: the same --upgrade with the older packages, firmware first; --force installs, a reboot is needed
    assert s["f24_back"][0] == 2
    rc, out = s["d24_force"]
    assert rc == 2 and "[INFO]Driver package upgraded successfully! Reboot needed for installation/upgrade to take effect! " in out
    assert s["after_back"][1] == "Version=24.1.0\nVersion=7.6.1.1.200\n1\n"
    assert s["overwrite"][0] == 0 and "Driver package installed successfully! The new version takes effect immediately." in s["overwrite"][1]
    assert s["uninstall"][0] == 0 and \
        "Driver package uninstalled successfully! Uninstallation takes effect immediately." in s["uninstall"][1]
    assert s["after_un"][1] == ("UserName=HwHiAiUser\nUserGroup=HwHiAiUser\nFirmware_Install_Type=full\n"
                                "Firmware_Install_Path_Param=/usr/local/Ascend\nfirmware\n0\n")


# --- Power cuts in the middle of an installer ---------------------------------------------------
def test_every_stop_point_is_in_its_installer(tmp_path):
    """Each point of installers.STOP_POINTS is a `power_cut <point>` call in its package's payload,
    and faults.power_cut arms only those."""
    for kind, points in sim_installers.STOP_POINTS.items():
        payload = (sim_installers.PAYLOAD / f"{kind}.sh").read_text()
        for point in points:
            assert re.search(rf"^\s*power_cut {point}$", payload, re.M), (kind, point)
    assert sim_faults.power_cut(tmp_path, "toolkit", "files_copied").read_text() == "toolkit files_copied\n"
    with pytest.raises(ValueError, match="no stop point 'after_everything' in the toolkit installer"):
        sim_faults.power_cut(tmp_path, "toolkit", "after_everything")


@dataclass
class RestartingNode:
    """A node as nodes.start_nodes runs one (--init --restart always): a power cut ends it and
    podman boots it again, with its disk as the cut left it."""
    name: str
    hardware: Path   # its /etc/npu-sim on this machine

    def sh(self, script: str) -> subprocess.CompletedProcess:
        return subprocess.run(["podman", "exec", self.name, "bash", "-c", PRELUDE + script],
                              capture_output=True, text=True, timeout=300)

    def restarts(self) -> int:
        out = subprocess.run(["podman", "inspect", self.name, "--format", "{{.RestartCount}} {{.State.Running}}"],
                             capture_output=True, text=True, check=True).stdout.split()
        return int(out[0]) if out[1] == "true" else -1

    def cut(self, kind: str, point: str, command: str) -> None:
        """Run an installer command with a power cut armed at ``point``; return once the node is back."""
        before = self.restarts()
        control = sim_faults.power_cut(self.hardware, kind, point)
        run = self.sh(command)
        assert not control.exists(), "the power cut was not consumed"
        # The node going down ends the exec: podman reports the kill (137) or, when the container's end
        # wins the race, that it lost the exec session (255). Which one is the engine's timing.
        assert run.returncode in (137, 255), run.stdout + run.stderr
        deadline = time.time() + 60
        while self.restarts() <= before:
            assert time.time() < deadline, f"{self.name} did not come back after the power cut:\n{run.stdout}{run.stderr}"
            time.sleep(0.2)
        while self.sh("pgrep -x sshd >/dev/null").returncode != 0:   # boot.sh done: sshd is its last step
            assert time.time() < deadline, f"{self.name} did not finish booting"
            time.sleep(0.2)


@contextmanager
def restarting_node(image: str, hardware: Path, inst: Path):
    sim_state.save(sim_state.default_state("910b"), hardware / "state.json")
    name = f"npu-sim-inst-{uuid.uuid4().hex[:8]}"
    cid = subprocess.run(["podman", "run", "-d", "--name", name, "--label", sim_nodes.LABEL, "--init",
                          "--restart", "always", "--network", "none", "--cap-add", "MKNOD",
                          "-v", f"{hardware}:{sim_nodes.HARDWARE_DIR}", "-v", f"{inst}:/inst:ro", image],
                         capture_output=True, text=True, check=True).stdout.strip()
    try:
        yield RestartingNode(name, hardware)
    finally:
        subprocess.run(["podman", "rm", "--force", "--time", "0", cid], capture_output=True)


def test_power_cut_at_each_stop_point_leaves_what_the_installer_had_written(node_image, releases, tmp_path):
    inst, r = releases
    old, new, cur = r["8.0.0"], r["8.3.RC1"], r["9.1.0"]
    hardware = tmp_path / "hardware"
    hardware.mkdir()
    with restarting_node(node_image, hardware, inst) as node:
        assert node.sh("mkuser").returncode == 0
        # driver, first install: the info is written, no file copied, no completed mark
        node.cut("driver", "info_written", f"{old['driver']} --full --install-for-all --quiet")
        s = steps(node.sh('''step state bash -c 'cat /etc/ascend_install.info; test -e /usr/local/Ascend/driver || echo no-driver-files; \
            ls /dev | grep -c davinci || true'
step again {d} --full --install-for-all --quiet
step done bash -c 'tail -n1 /etc/ascend_install.info; grep ^Version= /usr/local/Ascend/driver/version.info' '''
                          .replace("{d}", old["driver"])))
        assert s["state"][1] == ("UserName=HwHiAiUser\nUserGroup=HwHiAiUser\nDriver_Install_Type=full\n"
                                 "Driver_Install_Path_Param=/usr/local/Ascend\nDriver_Install_For_All=yes\nno-driver-files\n0\n")
        assert s["again"][0] == 0 and s["done"][1] == "Driver_Install_Status=complete\nVersion=24.1.0\n"

        # driver --upgrade: the old driver removed, the new one not copied; after the reboot no devices
        node.cut("driver", "old_removed", f"{cur['driver']} --upgrade --quiet")
        s = steps(node.sh(f'''step state bash -c 'grep -c Driver_Install_Status /etc/ascend_install.info; \
            grep ^Driver_Install_Path_Param= /etc/ascend_install.info; ls /usr/local/Ascend; ls /dev | grep -c davinci || true'
step again {cur["driver"]} --upgrade --quiet
step done grep ^Version= /usr/local/Ascend/driver/version.info'''))
        assert s["state"][1] == "0\nDriver_Install_Path_Param=/usr/local/Ascend\n0\n"
        assert s["again"][0] == 0 and s["done"][1] == "Version=26.1.0\n"

        # toolkit: the version directory copied, no latest, no set_env.sh, no record
        node.cut("toolkit", "files_copied", f"{old['toolkit']} --install --quiet")
        s = steps(node.sh(f'''step state bash -c 'ls {TK} {TK}/8.0.0/x86_64-linux; test -e /etc/Ascend/ascend_cann_install.info || echo no-record'
step again {old["toolkit"]} --install --quiet
step done bash -c 'ls {TK}; grep ^toolkit_running {TK}/latest/version.cfg' '''))
        assert s["state"][1] == (f"{TK}:\n8.0.0\n\n{TK}/8.0.0/x86_64-linux:\nascend_toolkit_install.info\nbin\nconf\n"
                                 "include\nlib64\nscript\nno-record\n")
        assert s["again"][0] == 0 and s["done"][1] == "8.0.0\nlatest\nset_env.sh\ntoolkit_running_version=[8.0.0.0.220:8.0.0]\n"

        # toolkit --upgrade: the running version removed (the last one: latest with it), the new one not copied
        node.cut("toolkit", "old_removed", f"{new['toolkit']} --upgrade --quiet")
        s = steps(node.sh(f'''step state bash -c 'ls {TK}; cat /etc/Ascend/ascend_cann_install.info'
step upgrade_again {new["toolkit"]} --upgrade --quiet
step install {new["toolkit"]} --install --quiet
step done readlink {TK}/latest/runtime'''))
        assert s["state"][1] == "set_env.sh\nInstall_Path=/usr/local/Ascend\nToolkit_InstallPath=/usr/local/Ascend/ascend-toolkit/8.0.0\n"
        assert s["upgrade_again"][0] == 1 and "Runfile is not installed in /usr/local/Ascend, upgrade failed" in s["upgrade_again"][1]
        assert s["install"][0] == 0 and s["done"][1] == "../8.3.RC1/runtime\n"

        # NNAL --upgrade after the backup: the next upgrade stops on the backup
        assert node.sh(f"{SOURCED} {new['nnal']} --install --quiet").returncode == 0
        node.cut("nnal", "backed_up", f"{SOURCED} {cur['nnal']} --upgrade --quiet")
        s = steps(node.sh(f'''step state bash -c 'ls {ATB}; readlink {ATB}/latest'
step again bash -c '{SOURCED} {cur["nnal"]} --upgrade --quiet' '''))
        assert s["state"][1] == "8.3.RC1\n8.3.RC1_recover\nlatest\nset_env.sh\nset_env_recover.sh\n8.3.RC1\n"
        assert s["again"][0] == 1 and "Upgrade failed, *_recover file is exist" in s["again"][1]

        # NNAL --upgrade after the old version's removal: no latest, no set_env.sh, the backup left
        assert node.sh(f"rm -rf {ATB}/8.3.RC1_recover {ATB}/set_env_recover.sh").returncode == 0
        node.cut("nnal", "old_removed", f"{SOURCED} {cur['nnal']} --upgrade --quiet")
        s = steps(node.sh(f'''step state ls {ATB}
step again bash -c '{SOURCED} {cur["nnal"]} --upgrade --quiet' '''))
        assert s["state"][1] == "8.3.RC1_recover\nset_env_recover.sh\n"
        assert s["again"][0] == 1 and "Can not find file set_env.sh or latest!" in s["again"][1]

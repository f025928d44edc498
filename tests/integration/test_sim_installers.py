"""The simulated vendor installers: flags, preconditions, both CANN layouts,
idempotent reinstall, upgrade, uninstall, and refusal of damaged archives.
Each scenario runs in a fresh simulated node."""
from __future__ import annotations

import re

import pytest

from tests.integration.conftest import stack_for
from tests.sim import installers as sim_installers

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
''', mounts={"/inst": inst.dir})
    s = steps(r)
    rc, out = s["driver_no_user"]
    assert rc == 1 and "[ERROR]The user HwHiAiUser or group HwHiAiUser does not exist" in out
    assert s["after_no_user"][0] == 1, "a refused driver install must leave nothing behind"
    rc, out = s["firmware_first"]
    assert rc == 1 and "install the driver first" in out
    rc, out = s["kernels_first"]
    assert rc == 1 and "please install toolkit first" in out and "[kernels_910b]" in out
    rc, out = s["unknown_flag"]
    assert rc == 1 and "Usage:" in out and "--install-path=<path>" in out
    assert s["version"][0] == 0 and s["version"][1].strip().endswith("\n8.0.0")
    assert s["tk"][0] == 0
    rc, out = s["nnal_unsourced"]
    assert rc == 1 and "source set_env.sh" in out


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
    readlink {paths["toolkit_latest"]}; cat {paths["toolkit_home"]}/{stack.arch}-linux/ascend_toolkit_install.info; \
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
    if generation == "current":
        assert files.count("cann-9.1.0") >= 1 and paths["env_script"] == "/usr/local/Ascend/cann/set_env.sh"
        assert env["ASCEND_HOME_PATH"] == "/usr/local/Ascend/cann-9.1.0"
    else:
        assert "8.0.0\n" in files  # ascend-toolkit/latest -> 8.0.0
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


def test_upgrade_paths(fresh_node, matrix, tmp_path):
    old = stack_for(matrix, "2.4.0.post2")        # CANN 8.0.0, HDK 24.1.0
    new = stack_for(matrix, "2.4.0.post4")        # CANN 8.1.RC1, HDK 25.0.RC1
    a = sim_installers.make_installers(old, tmp_path / "old")
    b = sim_installers.make_installers(new, tmp_path / "new")
    r = fresh_node.run(PRELUDE + f'''
mkuser
./old/{a["driver"].name} --full --install-for-all --quiet >/dev/null
./old/{a["firmware"].name} --full --quiet >/dev/null
./old/{a["toolkit"].name} --install --install-for-all --quiet >/dev/null
step driver_full_over_old ./new/{b["driver"].name} --full --install-for-all --quiet
step firmware_overwrite ./new/{b["firmware"].name} --full --quiet
step driver_upgrade ./new/{b["driver"].name} --upgrade --install-for-all --quiet
step toolkit_upgrade ./new/{b["toolkit"].name} --upgrade --install-for-all --quiet
step state bash -c 'cat /usr/local/Ascend/driver/version.info; readlink /usr/local/Ascend/ascend-toolkit/latest'
''', mounts={"/inst/old": tmp_path / "old", "/inst/new": tmp_path / "new"})
    s = steps(r)
    rc, out = s["driver_full_over_old"]
    assert rc == 1 and "please use --upgrade" in out
    assert s["firmware_overwrite"][0] == 2
    assert s["driver_upgrade"][0] == 0 and s["toolkit_upgrade"][0] == 0
    assert "Version=25.0.rc1" in s["state"][1] and s["state"][1].strip().endswith("8.1.RC1")


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
    assert s["nnae_files"][1] == ("package_name=Ascend-cann-nnae\nversion=8.0.0\ninnerversion=V100R001C80SPC000B200\n"
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

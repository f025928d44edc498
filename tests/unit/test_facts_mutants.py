"""What collect() reads that mutation testing found unchecked (bench/mutate.py run validation/node/facts.py):
the saved port configuration, a report that names both chips of a card, DDR's ECC, the table's own logic
ids, npu-smi's fallback name, unread table rows and topology lines, NNAE found twice, `key : value` files,
the Python asked for, and a batched shell call that died."""
from __future__ import annotations

import json

import pytest

from tests.unit.check_fakes import NPU_SMI, FakeProbe, chip_mapping, sample
from tests.unit.test_facts import running_host, tree_files
from validation.node import facts as facts_mod


def test_the_saved_port_configuration_is_read_when_the_host_has_one(tmp_path):
    probe = running_host(tmp_path)
    assert facts_mod.collect(probe, network=False)["hccn_conf"] is None
    probe.files["/etc/hccn.conf"] = "address_0=10.0.0.1\nnetmask_0=255.255.255.0\nnetdetect_0=10.0.0.254\n"
    assert facts_mod.collect(probe, network=False)["hccn_conf"] == {
        "0": {"address": "10.0.0.1", "netmask": "255.255.255.0", "netdetect": "10.0.0.254"}}


def two_chip_report(key: str, values: tuple[str, str]) -> str:
    """npu-smi's -t report of a card that prints both of its chips."""
    return "".join([f"\tNPU ID : 0\n\tChip Count : 2\n\n",
                    *(f"\tChip ID : {chip}\n\t{key} : {value}\n\n" for chip, value in enumerate(values))])


def test_each_chip_takes_its_own_values_from_a_report_that_names_both(tmp_path):
    a3 = sample("npu-smi_info_A3_Ascend910_24.1.rc3.7_8npu_16chip.txt")
    both_dies = [(npu, chip) for npu in range(8) for chip in (0, 1)]
    probe = running_host(tmp_path, (0, a3, ""), chips=both_dies)
    probe.answer(rf"^{NPU_SMI} info -t temp -i 0 -c 1$", 0, two_chip_report("NPU Temperature (C)", ("40", "55")))
    probe.answer(rf"^{NPU_SMI} info -t power -i 0 -c 1$", 0, two_chip_report("NPU Real-time Power(W)", ("80", "95")))
    probe.answer(rf"^{NPU_SMI} info -t memory -i 0 -c 1$", 0, two_chip_report("HBM Temperature(C)", ("41", "57")))
    ecc = ("\tNPU ID : 0\n\tChip Count : 2\n\n\tChip ID : 0\n\tDDR Single Bit Error Count : 0\n\n"
           "\tChip ID : 1\n\tDDR Single Bit Error Count : 3\n\tDDR Double Bit Error Count : 1\n"
           "\tDDR Single Bit Aggregate Total Err Cnt : 4\n\tDDR Double Bit Aggregate Total Err Cnt : 2\n"
           "\tDDR Single Bit Isolated Pages Count : 0\n\tDDR Double Bit Isolated Pages Count : 1\n")
    probe.answer(rf"^{NPU_SMI} info -t ecc -i 0 -c 1$", 0, ecc)
    second_die = next(d for d in facts_mod.collect(probe, network=False)["devices"] if (d["npu"], d["chip"]) == (0, 1))
    assert second_die["sensors"] == {"temp_c": 55.0, "power_w": 95.0, "hbm_temp_c": 57.0}
    assert second_die["ecc"] == {"DDR": {"single_bit": 3, "double_bit": 1, "single_bit_total": 4,
                                         "double_bit_total": 2, "single_bit_isolated_pages": 0,
                                         "double_bit_isolated_pages": 1}}


def test_a_logic_id_the_table_prints_wins_over_npu_smi_info_m(tmp_path):
    # 310P prints each chip's logic id in the table (Device); -m is asked all the same, and may disagree
    cards = [(npu, chip) for npu in (1, 2, 4, 5) for chip in (0, 1)]
    probe = running_host(tmp_path, (0, sample("npu-smi_info_310P3_300IDuo_25.0.rc1.b033_4card_Critical.txt"), ""),
                         chips=cards)
    probe.answer(rf"^{NPU_SMI} info -m$", 0, chip_mapping(list(reversed(cards))))
    assert [d["logic_id"] for d in facts_mod.collect(probe, network=False)["devices"]] == list(range(8))


def test_npu_smi_is_called_by_its_name_when_no_path_is_found(tmp_path):
    probe = running_host(tmp_path)
    probe.answer(r"^command -v npu-smi", 0, "")
    probe.answer(r"^npu-smi info -", 1, "", "unknown")   # the queries by name, each answered (and failing)
    facts_mod.collect(probe, network=False)
    assert "npu-smi info -t temp -i 3 -c 0" in probe.answered


def test_table_rows_and_topology_lines_that_could_not_be_read_are_kept_with_their_place(tmp_path):
    table = sample("npu-smi_info_910B3_25.2.0_8npu_with_process.txt").splitlines()
    stray = "| 9                         | 0000:FF:00.0  | 0           0    / 0          3407 / 65536      |"
    at = next(i for i, line in enumerate(table) if line.startswith("| 0 ")) + 3   # after NPU 0's two rows
    probe = running_host(tmp_path, (0, "\n".join(table[:at] + [stray] + table[at:]) + "\n", ""))
    topo = sample("npu-smi_info_-t_topo_910B3_8npu.txt")
    probe.answer(rf"^{NPU_SMI} info -t topo$", 0, "=== node-3 ===\n" + topo)
    facts = facts_mod.collect(probe, network=False)
    assert facts["npu_smi"]["unread_rows"] == [{"lineno": at + 1, "line": stray,
                                                "reason": "a chip's second row without its first"}]
    assert facts["topology"]["unreadable"] == [{"lineno": 1, "line": "=== node-3 ===",
                                                "reason": "before the topology header"}]


def test_nnae_is_one_runtime_however_many_of_its_install_records_are_found(tmp_path):
    info = "version=8.0.0\narch=x86_64\n"
    probe = FakeProbe(files={"/usr/local/Ascend/nnae/latest/ascend_nnae_install.info": info,
                             "/usr/local/Ascend/nnae/latest/x86_64-linux/ascend_nnae_install.info": info},
                      runnable=False)
    nnae = [c for c in facts_mod.collect(probe)["cann"] if c["generation"] == "nnae"]
    assert [(c["version"], c["arch"]) for c in nnae] == [("8.0.0", "x86_64")]


def test_colon_values_split_at_the_first_colon_and_need_a_key():
    assert facts_mod.colon_values("Ascend-cann-atb : 8.2.RC2\nbuilt : 12:30\n : orphan\nno colon\n") == {
        "Ascend-cann-atb": "8.2.RC2", "built": "12:30"}


def test_the_python_asked_for_is_the_one_probed(tmp_path):
    probe = running_host(tmp_path)
    probe.answer(r"^/opt/x/bin/python3 -c ", 0, '{"torch": "2.4.0", "torch_npu": null, "torchvision": null}\n')
    python = facts_mod.collect(probe, network=False, device_details=False, python="/opt/x/bin/python3")["python"]
    assert python == {"interpreter": "/opt/x/bin/python3", "torch": "2.4.0", "torch_npu": None, "torchvision": None}


@pytest.mark.parametrize("rc, out, err, expected", [
    (0, "", "", (1, "no output")),                      # the shell died before any section: an error, not rc 0
    (255, "", "x" * 100 + "y" * 300, (255, "y" * 300)),  # ssh's own failure: the end of what it said
])
def test_sections_a_dead_shell_never_printed_are_errors_that_say_why(rc, out, err, expected):
    class DeadShell(facts_mod.Probe):
        def run(self, command):
            return rc, out, err

    assert facts_mod.run_sections(DeadShell(), {"a": "true", "b": "false"}) == {"a": expected, "b": expected}


def test_a_version_cfg_without_the_toolkits_running_line_says_none_runs(tmp_path):
    from tests.unit.test_facts import installed_tree, write

    root = installed_tree(tmp_path, layout="ascend-toolkit")
    write(root, "/usr/local/Ascend/ascend-toolkit/latest/version.cfg", "# version: 1.0\n")
    [cann] = facts_mod.collect(facts_mod.LocalProbe(str(root)))["cann"]
    assert (cann["version"], cann["running"]) == ("8.0.0", None)


def test_status_facts_are_the_installed_versions_the_process_table_the_records_and_the_settings(tmp_path):
    """What `npuenv status` compares with a lock, whole: read without sensors or ports (no per-chip or
    per-port query is answered here, so asking one fails the test)."""
    files = tree_files(tmp_path)
    node = {"python": "/opt/npuenv/venv/bin/python3", "settings": {"sysctl": {"net.core.somaxconn": 4096}}}
    files.update({"/etc/npuenv/node.json": json.dumps(node), "/etc/npuenv/lock.json": "[1]",
                  "/etc/npuenv/deploying.json": "{" + " " * (facts_mod.MAX_RECORD_BYTES + 1) + "}",
                  "/proc/sys/net/core/somaxconn": "4096\n"})
    probe = FakeProbe(files=files)
    probe.answer(r"^npu-smi info$", 0, sample("npu-smi_info_910B3_25.2.0_8npu_with_process.txt"))
    probe.answer(r"^/opt/npuenv/venv/bin/python3 -c ", 0, '{"torch": "2.4.0", "torch_npu": null, "torchvision": null}\n')
    got = facts_mod.status_facts(probe)
    assert got["installed"] == {
        "driver": "24.1.rc3", "firmware": "7.5.0.1.129", "firmware_package": "24.1.rc3",
        "cann": [{"generation": "cann", "version": "8.5.0", "kernels": ["ascend910b"]}], "nnal": [],
        "python": {"interpreter": "/opt/npuenv/venv/bin/python3", "torch": "2.4.0", "torch_npu": None,
                   "torchvision": None},
        "left_out": []}
    assert got["npu_smi"] == {"error": None, "processes": [{"npu": 4, "chip": 0, "pid": 1601114, "name": "python"}]}
    assert got["records"] == {"lock": None, "node_record": node, "deploying": None}
    assert got["record_errors"] == {
        "lock": "/etc/npuenv/lock.json: not a JSON object",
        "deploying": f"/etc/npuenv/deploying.json: more than {facts_mod.MAX_RECORD_BYTES} bytes"}
    assert got["sysctl"] == {"net.core.somaxconn": "4096"}


def test_npu_smis_failure_is_what_status_facts_say_of_it(tmp_path):
    probe = FakeProbe(files={})
    probe.answer(r"^npu-smi info$", 1, "", "dcmi module initialize failed. ret is -8005\n")
    probe.answer(r"^python3 -c ", 0, '{"torch": null, "torch_npu": null, "torchvision": null}\n')
    smi = facts_mod.status_facts(probe)["npu_smi"]
    assert smi["processes"] == [] and "-8005" in smi["error"]


def test_an_os_release_without_version_id_has_none():
    # Debian testing and sid ship no VERSION_ID (os-release(5): it is optional)
    assert facts_mod.os_release(FakeProbe(files={"/etc/os-release": 'ID=debian\nPRETTY_NAME="trixie/sid"\n'})) == {
        "id": "debian", "version_id": None}


def test_a_record_of_exactly_the_largest_size_is_read():
    platforms = facts_mod.cm.load_platforms()
    path = platforms.data["install_records"]["node_record"]
    text = '{"a": "' + "x" * (facts_mod.MAX_RECORD_BYTES - 9) + '"}'
    assert len(text) == facts_mod.MAX_RECORD_BYTES
    records, errors = facts_mod.read_records(FakeProbe(files={path: text}), platforms)
    assert records["node_record"] == {"a": "x" * (facts_mod.MAX_RECORD_BYTES - 9)} and errors == {}


def test_status_reads_the_first_256_recorded_settings_each_as_sysctl_prints_it():
    wanted = {"net.ipv4.tcp_rmem": "4096 131072 6291456", **{f"net.core.x{i}": 1 for i in range(300)}}
    node = {"python": "/opt/x\n/bin/python3", "settings": {"sysctl": wanted}}
    probe = FakeProbe(files={"/etc/npuenv/node.json": json.dumps(node),
                             "/proc/sys/net/ipv4/tcp_rmem": "4096\t131072\t6291456\n"})
    probe.answer(r"npu-smi info$", 127, "", "not found")   # on PATH and in the driver's places
    probe.answer(r"^python3 -c ", 0, '{"torch": null, "torch_npu": null, "torchvision": null}\n')
    got = facts_mod.status_facts(probe)
    assert len(got["sysctl"]) == 256 and got["sysctl"]["net.ipv4.tcp_rmem"] == "4096 131072 6291456"
    # a recorded interpreter holding a newline is not run: python3 is
    assert got["installed"]["python"]["interpreter"] == "python3"


@pytest.mark.parametrize("manifest, left_out", [('["torchvision left out"]', []), ("{not json", []),
                                                ('{"notes": ["torchvision left out (--torchvision none)"]}',
                                                 ["torchvision"])])
def test_what_the_wheelhouse_left_out_is_read_from_its_manifests_notes_only(manifest, left_out):
    platforms = facts_mod.cm.load_platforms()
    path = platforms.data["install_records"]["wheelhouse_manifest"]
    assert facts_mod.wheelhouse_left_out(FakeProbe(files={path: manifest}), platforms) == left_out

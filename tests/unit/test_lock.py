"""The lock (compat_matrix/lock.py): one resolution of a row, with its installers pinned by
name and sha256, that every command takes; what it refuses."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

import compat_matrix as cm
from compat_matrix import lock
from compat_matrix.errors import UserError

# File names as Huawei publishes them for HDK 26.1.0 / CANN 9.1.0 on x86_64 (written out here, not
# derived from platforms.yaml, so that a wrong name template there fails this test).
X86_INSTALLERS = {
    "driver": "Ascend-hdk-910b-npu-driver_26.1.0_linux-x86_64.run",
    "firmware": "Ascend-hdk-910b-npu-firmware_7.8.0.2.212.run",
    "toolkit": "Ascend-cann-toolkit_9.1.0_linux-x86_64.run",
    "kernels": "Ascend-cann-910b-ops_9.1.0_linux-x86_64.run",
    "nnal": "Ascend-cann-nnal_9.1.0_linux-x86_64.run",
}
OTHER_ROW = ["Ascend-cann-toolkit_8.3.RC1_linux-x86_64.run", "Ascend-hdk-910b-npu-driver_25.3.rc1_linux-x86_64.run"]


@pytest.fixture(scope="module")
def matrix():
    return cm.load_matrix()


def sums_folder(tmp_path: Path, names) -> Path:
    folder = tmp_path / "installers"
    folder.mkdir()
    (folder / "SHA256SUMS").write_text("".join(f"{i:064x}  {n}\n" for i, n in enumerate(names, 1)))
    return folder


def test_a_lock_pins_every_installer_by_name_and_sha256_among_other_rows_files(matrix, tmp_path):
    folder = sums_folder(tmp_path, [*X86_INSTALLERS.values(), *OTHER_ROW])
    (folder / X86_INSTALLERS["toolkit"]).write_bytes(b"12345")
    made = lock.make(matrix, lock.constraints_from_mapping({"row": "2.13.0", "python": "3.11"}), installers=folder)
    assert made.row == {"torch_npu": "2.13.0", "torch": "2.13.0", "torchvision": "0.28.0", "cann": "9.1.0",
                        "hdk": "26.1.0", "python": "3.11", "chip": "910b"}
    # aarch64 has none of its installers in the folder: left out, and said so
    assert sorted(made.entries) == ["x86_64/debian12", "x86_64/openeuler22.03", "x86_64/openeuler24.03",
                                    "x86_64/ubuntu22.04"]
    assert made.data["skipped_archs"] == ["aarch64"]
    pinned = made.entries["x86_64/debian12"]["installers"]
    assert {k: v["name"] for k, v in pinned.items()} == X86_INSTALLERS
    assert pinned["toolkit"] == {"name": X86_INSTALLERS["toolkit"], "sha256": f"{3:064x}", "size": 5}
    # sizes are known only for files that are there (this folder holds only their SHA256SUMS)
    assert made.installer("x86_64", "debian12", "firmware") == {"name": X86_INSTALLERS["firmware"],
                                                               "sha256": f"{2:064x}", "size": None}


def test_two_firmware_files_for_the_chip_must_be_named(matrix, tmp_path):
    other_fw = "Ascend-hdk-910b-npu-firmware_7.7.0.1.231.run"
    folder = sums_folder(tmp_path, [*X86_INSTALLERS.values(), other_fw])
    c = lock.constraints_from_mapping({"row": "2.13.0", "python": "3.11", "arch": "x86_64"})
    with pytest.raises(UserError, match=r"holds 2 firmware packages for this stack \(Ascend-hdk-910b-npu-firmware_7"
                                        r"\.7\.0\.1\.231\.run, Ascend-hdk-910b-npu-firmware_7\.8\.0\.2\.212\.run\); "
                                        r"name the one of HDK 26\.1\.0 with --installer firmware=NAME"):
        lock.make(matrix, c, installers=folder)
    made = lock.make(matrix, c, installers=folder, pinned_installers={"firmware": other_fw})
    assert made.installer("x86_64", "debian12", "firmware")["name"] == other_fw
    with pytest.raises(UserError, match="--installer firmware=Ascend-cann-toolkit_9.1.0_linux-x86_64.run: not a "
                                        "firmware package of this stack"):
        lock.make(matrix, c, installers=folder, pinned_installers={"firmware": X86_INSTALLERS["toolkit"]})


def test_an_arch_asked_for_without_its_installers_is_an_error(matrix, tmp_path):
    folder = sums_folder(tmp_path, X86_INSTALLERS.values())
    c = lock.constraints_from_mapping({"row": "2.13.0", "python": "3.11", "arch": "aarch64"})
    with pytest.raises(UserError, match=r"lists no Ascend-hdk-910b-npu-driver_26\.1\.0_linux-aarch64\.run"):
        lock.make(matrix, c, installers=folder)


def test_row_means_exactly_that_row_and_torch_npu_a_prefix_in_every_source(matrix):
    exact = lock.constraints_from_mapping({"row": "2.12.0"})
    prefix = lock.constraints_from_mapping({"torch_npu": "2.12.0"}, lock.inventory_name)
    assert cm.resolve(matrix, exact).stack.row.torch_npu == "2.12.0"
    assert cm.resolve(matrix, prefix).stack.row.torch_npu == "2.12.0.post3"
    inventory_row = lock.constraints_from_mapping({"row": "2.12.0"}, lock.inventory_name)
    assert inventory_row == exact


@pytest.mark.parametrize("values, message", [
    ({"row": ">=2.4"}, "npuenv_row.row '>=2.4' is not a torch_npu version such as 2.12.0"),
    ({"row": "2.12.0", "torch_npu": "2.11"}, "npuenv_row.row 2.12.0 and npuenv_row.torch_npu 2.11 contradict each "
                                             "other (row 2.12.0 is not torch_npu 2.11); give only npuenv_row.row"),
    ({"torch": ["2.4"]}, "npuenv_row.torch: ['2.4'] is not a version"),
    ({"torch": True}, "npuenv_row.torch: True is not a version"),
    ({"cuda": "12"}, "npuenv_row.cuda: unknown row constraint(s); use npuenv_row.row, npuenv_row.torch_npu"),
])
def test_bad_constraints_are_named_as_their_source_spells_them(values, message):
    with pytest.raises(UserError) as e:
        lock.constraints_from_mapping(values, lock.inventory_name)
    assert message in str(e.value)


def test_the_command_line_spells_its_options(matrix):
    with pytest.raises(UserError, match=r"^--row 2\.12\.0 and --torch-npu 2\.11 contradict"):
        lock.constraints_from_mapping({"row": "2.12.0", "torch_npu": "2.11"})


def test_a_lock_round_trips_and_its_stack_is_rebuilt_from_the_pins(matrix, tmp_path):
    made = lock.make(matrix, lock.constraints_from_mapping({"row": "2.8.0", "arch": "aarch64", "os": "ubuntu22.04"}))
    path = lock.write(made, tmp_path / "npuenv.lock.json")
    again = lock.load(path)
    assert again.digest == made.digest and again.digest.startswith("sha256:")
    stack = again.stack(matrix)
    assert (stack.row.torch_npu, stack.row.cann, stack.arch, stack.os, stack.python) == \
        ("2.8.0", "8.3.RC1", "aarch64", "ubuntu22.04", "3.11")
    assert stack.packages["kernels"] == "Ascend-cann-kernels-910b_8.3.RC1_linux-aarch64.run"


def test_an_edited_lock_is_refused(matrix, tmp_path):
    made = lock.make(matrix, lock.constraints_from_mapping({"row": "2.13.0", "arch": "x86_64", "os": "debian12"}))
    data = json.loads(lock.render(made))
    data["row"]["cann"] = "8.5.0"
    with pytest.raises(UserError, match="the lock's digest does not match its content"):
        lock.parse(json.dumps(data), "edited.json")
    data = json.loads(lock.render(made))
    data[lock.FORMAT_KEY] = 2
    with pytest.raises(UserError, match=r"not a lock of format 1 \(npuenv_lock is 2\)"):
        lock.parse(json.dumps(data), "future.json")
    with pytest.raises(UserError, match="NaN is not a number JSON allows"):
        lock.parse('{"npuenv_lock": NaN}', "nan.json")


def test_a_matrix_that_changed_under_a_lock_is_refused(matrix, tmp_path):
    made = lock.make(matrix, lock.constraints_from_mapping({"row": "2.13.0", "arch": "x86_64", "os": "debian12"}))
    text = Path(matrix.file).read_text()
    # the same row, now pointing at another HDK: the lock's facts no longer hold
    at = text.index('torch_npu: "2.13.0"')
    edited = text[:at] + text[at:].replace('version: "26.1.0"', 'version: "26.0.RC1"', 1)
    changed = tmp_path / "matrix.yaml"
    changed.write_text(edited)
    with pytest.raises(UserError, match=r"no longer gives the locked stack of torch_npu 2\.13\.0 \(.*hdk.*\)"):
        made.stack(cm.load_matrix(changed))


def test_a_platform_the_lock_lacks_is_named(matrix):
    made = lock.make(matrix, lock.constraints_from_mapping({"row": "2.13.0", "arch": "x86_64", "os": "debian12"}))
    with pytest.raises(UserError, match=r"has no entry for aarch64/debian12 \(it has x86_64/debian12\)"):
        made.entry("aarch64", "debian12")
    with pytest.raises(UserError, match="does not pin the toolkit installer for x86_64/debian12; lock again with "
                                        "--installers DIR"):
        made.installer("x86_64", "debian12", "toolkit")


def test_a_wheelhouse_is_the_locks_only_when_its_sha256sums_is_the_one_recorded_for_the_arch(tmp_path):
    import hashlib

    (tmp_path / "SHA256SUMS").write_text("ab" * 32 + "  torch.whl\n")
    digest = "sha256:" + hashlib.sha256(("ab" * 32 + "  torch.whl\n").encode()).hexdigest()
    other = "sha256:" + "0" * 64
    assert lock.wheelhouse_problem({"wheelhouses": {"x86_64": digest}}, "x86_64", tmp_path) == ""
    assert lock.wheelhouse_problem({"wheelhouses": {"x86_64": other}}, "x86_64", tmp_path) == \
        f"{tmp_path} has digest {digest}, the lock recorded {other} for x86_64"
    assert lock.wheelhouse_problem({"wheelhouses": {"x86_64": other}}, "aarch64", tmp_path) == ""
    assert lock.wheelhouse_problem({}, "x86_64", tmp_path) == ""
    with pytest.raises(UserError, match="SHA256SUMS"):
        lock.wheelhouse_problem({"wheelhouses": {"x86_64": other}}, "x86_64", tmp_path / "none")

"""`npuenv lock`, `lock show` and `lock diff` end to end (in this process, through npuenv.cli.main), the
one meaning of row constraints on every path, and --matrix honoured by the lock and by the Ansible runs
npuenv starts."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

import compat_matrix as cm
from compat_matrix import lock
from npuenv.cli import main
from ansible_run import run as playbooks_run

# The vendor's file names for two rows in one folder (written out, not derived from platforms.yaml).
ROW_2_13 = {
    "driver": "Ascend-hdk-910b-npu-driver_26.1.0_linux-x86_64.run",
    "toolkit": "Ascend-cann-toolkit_9.1.0_linux-x86_64.run",
    "kernels": "Ascend-cann-910b-ops_9.1.0_linux-x86_64.run",
    "nnal": "Ascend-cann-nnal_9.1.0_linux-x86_64.run",
}
ROW_2_8 = {
    "driver": "Ascend-hdk-910b-npu-driver_25.3.rc1_linux-x86_64.run",
    "toolkit": "Ascend-cann-toolkit_8.3.RC1_linux-x86_64.run",
    "kernels": "Ascend-cann-kernels-910b_8.3.RC1_linux-x86_64.run",
    "nnal": "Ascend-cann-nnal_8.3.RC1_linux-x86_64.run",
}
FIRMWARE_NEW = "Ascend-hdk-910b-npu-firmware_7.8.0.2.212.run"
FIRMWARE_OLD = "Ascend-hdk-910b-npu-firmware_7.7.0.1.231.run"


def folder(path: Path, names) -> Path:
    """An installer folder: each file holds its own name, SHA256SUMS lists them all."""
    path.mkdir()
    for name in names:
        (path / name).write_text(name)
    (path / "SHA256SUMS").write_text("".join(f"{hashlib.sha256(n.encode()).hexdigest()}  {n}\n" for n in names))
    return path


@pytest.fixture
def installers(tmp_path) -> Path:
    """One folder for many rows (as an operator keeps it): both rows' packages, two firmware files."""
    return folder(tmp_path / "installers", [*ROW_2_13.values(), *ROW_2_8.values(), FIRMWARE_NEW, FIRMWARE_OLD])


def sha(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


def test_lock_pins_the_rows_installers_among_others_and_prints_its_summary(installers, tmp_path, capsys):
    out = tmp_path / "locks" / "a.json"
    base = ["lock", "--row", "2.13.0", "--python", "3.11", "--installers", str(installers), "--out", str(out)]
    # two firmware files fit the chip: the operator names one, and nothing is written before
    assert main(base) == 2
    err = capsys.readouterr().err
    # (every arch was left out: the error says why for each)
    assert f"{installers} holds the installers of no arch this row supports (x86_64: the folder holds 2 firmware " \
           f"packages for this stack ({FIRMWARE_OLD}, {FIRMWARE_NEW}); name the one of HDK 26.1.0 with --installer " \
           f"firmware=NAME; aarch64: SHA256SUMS lists no Ascend-hdk-910b-npu-driver_26.1.0_linux-aarch64.run" in err
    assert "Traceback" not in err
    assert not out.exists() and not out.parent.exists()
    assert main(base + ["--installer", f"firmware={FIRMWARE_NEW}"]) == 0
    printed = capsys.readouterr().out
    made = lock.load(out)
    assert printed == lock.summary_text(made, out)
    assert printed.startswith(f"lock {out}: {made.digest}\n")
    assert "  row         torch_npu 2.13.0 (torch 2.13.0, torchvision 0.28.0), CANN 9.1.0, HDK 26.1.0, Python " \
           "3.11, chip 910b\n" in printed
    assert "  asked for   row 2.13.0, python 3.11\n" in printed
    # aarch64 has none of its packages here: left out, and why
    assert sorted(made.entries) == ["x86_64/debian12", "x86_64/openeuler22.03", "x86_64/openeuler24.03",
                                    "x86_64/ubuntu22.04"]
    assert "  left out    aarch64: SHA256SUMS lists no Ascend-hdk-910b-npu-driver_26.1.0_linux-aarch64.run; put the " \
           "vendor's driver package for aarch64 in the folder and add its sha256 line\n" in printed
    pinned = made.entry("x86_64", "debian12")["installers"]
    assert {k: v["name"] for k, v in pinned.items()} == {**ROW_2_13, "firmware": FIRMWARE_NEW}
    assert pinned["toolkit"] == {"name": ROW_2_13["toolkit"], "sha256": sha(ROW_2_13["toolkit"]),
                                 "size": len(ROW_2_13["toolkit"])}
    assert f"    toolkit   {ROW_2_13['toolkit']} (sha256 {sha(ROW_2_13['toolkit'])[:16]}..., 42 bytes)\n" in printed
    # the same inputs anywhere give the same lock: the folder's path is in no fact of it
    moved = installers.rename(tmp_path / "elsewhere")
    assert main(["lock", "--row", "2.13.0", "--python", "3.11", "--installers", str(moved), "--installer",
                 f"firmware={FIRMWARE_NEW}", "--out", str(tmp_path / "b.json")]) == 0
    assert lock.load(tmp_path / "b.json").digest == made.digest


def test_lock_writes_npuenv_lock_json_by_default_and_show_reads_it(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["lock", "--row", "2.8.0", "--arch", "x86_64", "--os", "debian12"]) == 0
    capsys.readouterr()
    path = tmp_path / lock.DEFAULT_FILE
    made = lock.load(path)
    assert made.row["torch_npu"] == "2.8.0" and list(made.entries) == ["x86_64/debian12"]
    assert [p.name for p in tmp_path.iterdir()] == [lock.DEFAULT_FILE]   # atomic: no temporary file stays
    assert main(["lock", "show", str(path)]) == 0
    shown = capsys.readouterr().out
    assert shown == lock.summary_text(made, path)
    assert "  installers  x86_64/debian12: none pinned (lock with --installers DIR to pin them)\n" in shown
    assert main(["lock", "show", str(path), "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data == made.data and data[lock.FORMAT_KEY] == lock.FORMAT


def test_row_is_exact_and_torch_npu_a_prefix_on_the_command_line_as_in_an_inventory(tmp_path, capsys):
    assert main(["lock", "--row", "2.12.0", "--out", str(tmp_path / "row.json")]) == 0
    assert main(["lock", "--torch-npu", "2.12.0", "--out", str(tmp_path / "prefix.json")]) == 0
    capsys.readouterr()
    assert lock.load(tmp_path / "row.json").row["torch_npu"] == "2.12.0"
    assert lock.load(tmp_path / "prefix.json").row["torch_npu"] == "2.12.0.post3"
    inventory = lock.make(cm.load_matrix(), lock.constraints_from_mapping({"torch_npu": "2.12.0"},
                                                                         lock.inventory_name))
    assert inventory.digest == lock.load(tmp_path / "prefix.json").digest
    exact = lock.make(cm.load_matrix(), lock.constraints_from_mapping({"row": "2.12.0"}, lock.inventory_name))
    assert exact.digest == lock.load(tmp_path / "row.json").digest


def test_diff_names_each_component_an_upgrade_moves_and_a_rollback_moves_back(installers, tmp_path, capsys):
    old, new = tmp_path / "old.json", tmp_path / "new.json"
    common = ["--python", "3.11", "--arch", "x86_64", "--os", "ubuntu22.04", "--installers", str(installers)]
    assert main(["lock", "--row", "2.8.0", *common, "--installer", f"firmware={FIRMWARE_OLD}", "--out", str(old)]) == 0
    assert main(["lock", "--row", "2.13.0", *common, "--installer", f"firmware={FIRMWARE_NEW}", "--out", str(new)]) == 0
    capsys.readouterr()
    assert main(["lock", "diff", str(old), str(new)]) == 0
    text = capsys.readouterr().out
    a, b = lock.load(old), lock.load(new)
    assert text.startswith(f"from {a.digest[:19]} (torch_npu 2.8.0, CANN 8.3.RC1, HDK 25.3.RC1)\n"
                           f"  to {b.digest[:19]} (torch_npu 2.13.0, CANN 9.1.0, HDK 26.1.0)\n"
                           f"an upgrade; per platform as on x86_64/ubuntu22.04\n")
    for line in ("  driver       25.3.RC1 -> 26.1.0  (upgrade)",
                 f"  firmware     {FIRMWARE_OLD} -> {FIRMWARE_NEW}  (upgrade)",
                 "  CANN         8.3.RC1 (ascend-toolkit layout) -> 9.1.0 (cann layout)  (upgrade)",
                 f"  kernels      {ROW_2_8['kernels']} -> {ROW_2_13['kernels']}  (upgrade)",
                 f"  NNAL         {ROW_2_8['nnal']} -> {ROW_2_13['nnal']}  (upgrade)",
                 "  torch        2.8.0 -> 2.13.0  (upgrade)", "  torch_npu    2.8.0 -> 2.13.0  (upgrade)",
                 "  torchvision  0.23.0 -> 0.28.0  (upgrade)",
                 f"  installer toolkit on x86_64/ubuntu22.04: {ROW_2_8['toolkit']} -> {ROW_2_13['toolkit']}"):
        assert line + "\n" in text, line
    assert "Python" not in text   # unchanged: not named
    assert main(["lock", "diff", str(new), str(old), "--format", "json"]) == 0
    back = json.loads(capsys.readouterr().out)
    assert back[lock.FORMAT_KEY] == lock.FORMAT and back["move"] == "rollback"
    assert (back["from"], back["to"]) == (b.digest, a.digest)
    assert {c["component"]: c["direction"] for c in back["components"]} == {
        "driver": "downgrade", "firmware": "downgrade", "CANN": "downgrade", "kernels": "downgrade",
        "NNAL": "downgrade", "torch": "downgrade", "torch_npu": "downgrade", "torchvision": "downgrade"}


def test_diff_of_one_row_made_from_another_file_names_the_installer(installers, tmp_path, capsys):
    first, second = tmp_path / "1.json", tmp_path / "2.json"
    common = ["lock", "--row", "2.13.0", "--python", "3.11", "--arch", "x86_64", "--installers", str(installers),
              "--installer", f"firmware={FIRMWARE_NEW}"]
    assert main([*common, "--out", str(first)]) == 0
    # the vendor republished the toolkit under the same name
    sums = installers / "SHA256SUMS"
    sums.write_text(sums.read_text().replace(sha(ROW_2_13["toolkit"]), "ab" * 32))
    assert main([*common, "--out", str(second)]) == 0
    capsys.readouterr()
    assert main(["lock", "diff", str(first), str(second)]) == 0
    text = capsys.readouterr().out
    assert "\nthe same versions from other installer files; per platform as on x86_64/debian12\n" in text
    assert (f"  installer toolkit on x86_64/debian12, x86_64/openeuler22.03, x86_64/openeuler24.03, "
            f"x86_64/ubuntu22.04: "
            f"{ROW_2_13['toolkit']}: sha256 {sha(ROW_2_13['toolkit'])[:16]}... -> {'ab' * 8}... (the same name, "
            f"another file)\n") in text
    assert main(["lock", "diff", str(first), str(first)]) == 0
    assert capsys.readouterr().out.endswith("the same lock: nothing changes\n")


@pytest.mark.parametrize("args, message", [
    (["lock", "--row", "2.13.0", "show", "x.json"], "npuenv lock show reads lock files; --row belong to making a "
                                                    "lock"),
    (["lock", "--installer", "firmware=x.run"], "--installer names a file of the installer folder: give the folder "
                                                "with --installers DIR"),
    (["lock", "--installers", "{tmp}", "--installer", "bios=x.run"], "--installer bios=x.run: 'bios' is not an "
                                                                     "installer kind"),
    (["lock", "--installers", "{tmp}/none"], "--installers {tmp}/none: no such folder"),
    (["lock", "--wheelhouse", "{tmp}/none"], "--wheelhouse {tmp}/none: no such folder"),
    (["lock", "--row", "2.13.0", "--out", "{tmp}/file/x.json"], "--out {tmp}/file/x.json: {tmp}/file is not a "
                                                                "folder"),
    (["lock", "--row", ">=2.4"], "--row '>=2.4' is not a torch_npu version"),
])
def test_bad_input_is_exit_2_naming_what_is_wrong_and_writes_nothing(tmp_path, monkeypatch, capsys, args, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "file").write_text("")
    assert main([a.replace("{tmp}", str(tmp_path)) for a in args]) == 2
    err = capsys.readouterr().err
    assert message.replace("{tmp}", str(tmp_path)) in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_show_refuses_an_edited_lock(tmp_path, capsys):
    path = tmp_path / "l.json"
    assert main(["lock", "--row", "2.13.0", "--arch", "x86_64", "--os", "debian12", "--out", str(path)]) == 0
    data = json.loads(path.read_text())
    data["row"]["cann"] = "9.0.0"
    path.write_text(json.dumps(data))
    capsys.readouterr()
    assert main(["lock", "show", str(path)]) == 2
    assert "the lock's digest does not match its content" in capsys.readouterr().err


@pytest.fixture
def edited_matrix(tmp_path) -> Path:
    """A copy of the matrix in which row 2.13.0 pairs with another HDK."""
    text = Path(cm.DEFAULT_MATRIX).read_text()
    at = text.index('torch_npu: "2.13.0"')
    path = tmp_path / "matrix.yaml"
    path.write_text(text[:at] + text[at:].replace('version: "26.1.0"', 'version: "26.0.RC1"', 1))
    return path


def test_the_matrix_option_is_the_one_the_lock_and_every_ansible_run_use(edited_matrix, tmp_path, capsys):
    path = tmp_path / "l.json"
    try:
        assert main(["--matrix", str(edited_matrix), "lock", "--row", "2.13.0", "--arch", "x86_64", "--os",
                     "debian12", "--out", str(path)]) == 0
        assert lock.load(path).row["hdk"] == "26.0.RC1"
        # the playbooks this process would start resolve in the same matrix
        assert playbooks_run.ansible_env()[lock.MATRIX_ENV] == str(edited_matrix.resolve())
        # a command with the bundled matrix refuses the lock: its facts are not that matrix's
        assert main(["image", "render", "--lock", str(path)]) == 2
        assert "no longer gives the locked stack of torch_npu 2.13.0 (hdk, packages differ)" in capsys.readouterr().err
        assert playbooks_run.ansible_env()[lock.MATRIX_ENV] == str(cm.DEFAULT_MATRIX)
    finally:
        lock.use_matrix(None)

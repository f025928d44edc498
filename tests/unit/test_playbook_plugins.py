"""The playbooks' controller-side plugins: the row lookup, the installer check
and the filters that read the vendor tools' output with the product's parsers."""
from __future__ import annotations

import hashlib
import importlib.util
import os
from pathlib import Path

import pytest
from ansible.errors import AnsibleError

from ansible_run import run as playbook_run
from tests.conftest import ROOT

PLUGINS = ROOT / "playbooks" / "collections" / "ansible_collections" / "npuenv" / "ascend" / "plugins"


def plugin(kind: str, name: str):
    spec = importlib.util.spec_from_file_location(f"npuenv_{kind}_{name}", PLUGINS / kind / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def lookup(name: str):
    """The lookup as Ansible loads it (its DOCUMENTATION declares the options)."""
    from ansible.plugins.loader import lookup_loader

    lookup_loader.add_directory(str(PLUGINS / "lookup"))
    return lookup_loader.get(name)


def stack_lookup(**kw):
    return lookup("npuenv_stack").run([], variables={}, **kw)[0]


def test_row_resolves_for_the_hosts_arch_and_os():
    s = stack_lookup(row={"torch_npu": "2.13.0", "python": "3.11"}, arch="x86_64", distribution="Debian",
                     version="12.12")
    assert s["torch_npu"] == "2.13.0" and s["os"] == "debian12" and s["arch"] == "x86_64"
    assert s["packages"]["toolkit"] == "Ascend-cann-toolkit_9.1.0_linux-x86_64.run"
    assert s["environment"]["variables"]["ASCEND_HOME_PATH"] == "/usr/local/Ascend/cann-9.1.0"
    assert s["install_flags"]["toolkit"] == "--install --install-for-all --quiet"


@pytest.mark.parametrize("kw,message", [
    ({"row": {"torch_npu": "9.9.9"}, "arch": "x86_64", "distribution": "Ubuntu", "version": "22.04"},
     "npuenv_row is invalid: unknown row: no torch_npu 9.9.9 in the matrix"),
    ({"row": {"torch_npu": "2.13.0", "python": "3.8"}, "arch": "x86_64", "distribution": "Ubuntu", "version": "22.04"},
     "npuenv_row cannot be resolved for this host: no matrix row fits torch_npu=2.13.0, python=3.8"),
    ({"row": {"torch_npu": "2.13.0"}, "arch": "x86_64", "distribution": "CentOS", "version": "7.9"},
     "this host runs CentOS 7.9, which the matrix does not support; supported: Ubuntu 22.04"),
    ({"row": {"torch_npu": "2.13.0"}, "arch": "ppc64le", "distribution": "Ubuntu", "version": "22.04"},
     "unknown arch 'ppc64le'"),
    ({"row": {"torchnpu": "2.13.0"}, "arch": "x86_64", "distribution": "Ubuntu", "version": "22.04"},
     "npuenv_row.torchnpu: unknown row constraint(s); use npuenv_row.row, npuenv_row.torch_npu"),
])
def test_a_host_that_does_not_fit_fails_with_the_reason(kw, message):
    with pytest.raises(AnsibleError) as info:
        stack_lookup(**kw)
    assert message in str(info.value)


def installers(cache: Path, files: dict[str, bytes]):
    cache.mkdir(exist_ok=True)
    for name, data in files.items():
        (cache / name).write_bytes(data)
    plug = lookup("npuenv_installers")
    return lambda pins, kinds: plug.run([], variables={}, cache=str(cache), pins=pins, kinds=kinds)[0]


def pin(name: str, data: bytes) -> dict:
    return {"name": name, "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}


def test_installers_are_the_files_the_lock_names_checked_against_its_sha256(tmp_path):
    # One folder with two rows' firmware: the lock's name is taken, not a pattern's last match.
    fw_old, fw_new = "Ascend-hdk-910b-npu-firmware_7.7.0.1.231.run", "Ascend-hdk-910b-npu-firmware_7.8.1.1.200.run"
    find = installers(tmp_path / "c", {fw_old: b"old", fw_new: b"new", "tk.run": b"tk"})
    found = find({"firmware": pin(fw_old, b"old"), "toolkit": pin("tk.run", b"tk")}, ["firmware", "toolkit"])
    assert found["firmware"] == {"name": fw_old, "path": str(tmp_path / "c" / fw_old),
                                 "sha256": hashlib.sha256(b"old").hexdigest(), "size": 3}
    assert set(found) == {"firmware", "toolkit"}


def test_only_the_kinds_asked_for_are_looked_at(tmp_path):
    # The NNAL installer is not in the cache: a node that switches NNAL without it does not need it.
    find = installers(tmp_path / "c", {"tk.run": b"tk"})
    pins = {"toolkit": pin("tk.run", b"tk"), "nnal": pin("nnal.run", b"nnal")}
    assert set(find(pins, ["toolkit"])) == {"toolkit"}
    assert find(pins, []) == {}
    with pytest.raises(AnsibleError) as info:
        find(pins, ["toolkit", "nnal"])
    assert (f"{tmp_path / 'c' / 'nnal.run'} is missing: the node needs the nnal installer the lock pins (nnal.run, "
            f"sha256 {hashlib.sha256(b'nnal').hexdigest()})") in str(info.value)


def test_corrupt_and_unpinned_installers_are_refused(tmp_path):
    find = installers(tmp_path / "c", {"tk.run": b"damaged"})
    with pytest.raises(AnsibleError) as info:
        find({"toolkit": pin("tk.run", b"good")}, ["toolkit"])
    assert (f"{tmp_path / 'c' / 'tk.run'} is corrupt or not the vendor's file: tk.run: checksum mismatch: the lock "
            f"pins sha256 {hashlib.sha256(b'good').hexdigest()}, the file has "
            f"{hashlib.sha256(b'damaged').hexdigest()}") in str(info.value)
    for bad in ({}, {"toolkit": {"name": "tk.run"}}, {"toolkit": {"name": "../tk.run", "sha256": "0" * 64}}):
        with pytest.raises(AnsibleError) as info:
            find(bad, ["toolkit"])
        assert "the lock pins no toolkit installer" in str(info.value)


def test_a_file_replaced_after_it_was_checked_is_checked_again(tmp_path):
    find = installers(tmp_path / "c", {"tk.run": b"good"})
    assert find({"toolkit": pin("tk.run", b"good")}, ["toolkit"])["toolkit"]["size"] == 4
    (tmp_path / "c" / "tk.run").write_bytes(b"evil")   # same size, new contents and times
    with pytest.raises(AnsibleError) as info:
        find({"toolkit": pin("tk.run", b"good")}, ["toolkit"])
    assert "checksum mismatch" in str(info.value)


def test_deploy_exit_codes():
    assert playbook_run.exit_code(0) == 0
    assert playbook_run.exit_code(2) == 1   # a host failed
    assert playbook_run.exit_code(4) == 1   # a host was unreachable
    assert playbook_run.exit_code(5) == 2   # bad options: the run could not start


def lock_lookup(**kw):
    return lookup("npuenv_lock").run([], variables={}, **kw)[0]


def test_the_lock_lookup_checks_a_given_lock_and_makes_one_from_the_row_otherwise(tmp_path):
    import json as json_mod

    from compat_matrix import lock as lock_mod
    from tests.sim import installers as sim_installers

    cache = tmp_path / "installers"
    sim_installers.make_installers(sim_installers.Release(cann="9.1.0", hdk="26.1.0", chip="910b", arch="x86_64"),
                                   cache, kinds=("driver", "firmware", "toolkit", "kernels", "nnal"))
    made = lock_lookup(row={"row": "2.13.0", "python": "3.11", "arch": "x86_64", "os": "debian12"},
                       installers=str(cache))
    assert made["row"]["torch_npu"] == "2.13.0" and list(made["entries"]) == ["x86_64/debian12"]
    assert made["entries"]["x86_64/debian12"]["installers"]["toolkit"]["name"] == \
        "Ascend-cann-toolkit_9.1.0_linux-x86_64.run"
    # given, it comes back as it is (as a mapping or as its JSON text), its digest checked
    assert lock_lookup(lock=made) == made and lock_lookup(lock=json_mod.dumps(made)) == made
    edited = json_mod.loads(json_mod.dumps(made))
    edited["row"]["cann"] = "8.5.0"
    with pytest.raises(AnsibleError) as info:
        lock_lookup(lock=edited)
    assert "npuenv_lock: npuenv_lock: the lock's digest does not match its content" in str(info.value)
    assert lock_mod.digest_of(made) == made["digest"]
    with pytest.raises(AnsibleError) as info:
        lock_lookup(row={"torch_npu": "9.9.9"}, installers=str(cache))
    assert "npuenv_lock: npuenv_row is invalid: unknown row: no torch_npu 9.9.9" in str(info.value)
    with pytest.raises(AnsibleError) as info:
        lock_lookup(row={"torchnpu": "2.13.0"}, installers=str(cache))
    assert "npuenv_row.torchnpu: unknown row constraint(s)" in str(info.value)
    with pytest.raises(AnsibleError) as info:
        lock_lookup()
    assert "give npuenv_lock (a lock from `npuenv lock`), or npuenv_row and npuenv_installer_cache" in str(info.value)


def test_a_hosts_wheelhouse_must_be_the_one_the_lock_recorded_for_its_arch(tmp_path):
    check = plugin("filter", "npuenv_plan").FilterModule().filters()["npuenv_wheelhouse_check"]
    sums = "ab" * 32 + "  torch-2.13.0-cp311-cp311-manylinux_2_28_x86_64.whl\n"
    locked, other, empty = tmp_path / "locked", tmp_path / "other", tmp_path / "empty"
    for folder, text in ((locked, sums), (other, sums.replace("ab", "cd"))):
        folder.mkdir()
        (folder / "SHA256SUMS").write_text(text)
    empty.mkdir()
    digest = "sha256:" + hashlib.sha256(sums.encode()).hexdigest()
    lock = {"digest": "sha256:" + "0" * 64, "wheelhouses": {"x86_64": digest}}
    assert check(str(locked), lock, "x86_64") == {"sums": sums, "problem": ""}
    wrong = check(str(other), lock, "x86_64")
    assert wrong["sums"] == sums.replace("ab", "cd")
    assert wrong["problem"].startswith(f"the wheelhouse {other} has digest sha256:"
                                       f"{hashlib.sha256(wrong['sums'].encode()).hexdigest()}, the lock recorded "
                                       f"{digest} for x86_64: give the wheelhouse the lock was made from")
    assert "SHA256SUMS" in check(str(empty), lock, "x86_64")["problem"]
    assert check(str(empty), lock, "x86_64")["sums"] == ""
    # A lock that records no wheelhouse for the arch (made without --wheelhouse) leaves it to the push's own check.
    assert check(str(other), lock, "aarch64")["problem"] == ""
    assert check(str(other), {"digest": lock["digest"]}, "x86_64")["problem"] == ""


def test_the_wheelhouse_pack_writes_one_archive_per_folder_with_its_sha256_and_root_as_owner(tmp_path):
    import tarfile

    pack = plugin("action", "npuenv_pack").pack
    houses = []
    for name in ("x86_64", "aarch64"):
        house = tmp_path / name
        (house / "simple" / "torch").mkdir(parents=True)
        (house / f"torch-{name}.whl").write_bytes(name.encode() * 1000)
        (house / "simple" / "torch" / "index.html").write_text(name)
        if os.geteuid() == 0:   # files of another user than root, as a controller's are
            for path in (house, *house.rglob("*")):
                os.lchown(path, 1000, 1000)
        houses.append(str(house))
    (tmp_path / "scratch").mkdir()
    made = pack(houses, str(tmp_path / "scratch"))
    assert Path(made["path"]).parent == tmp_path / "scratch" and Path(made["path"]).name.startswith("npuenv-wheelhouse-")
    assert [a["folder"] for a in made["archives"]] == houses
    for archive, name in zip(made["archives"], ("x86_64", "aarch64")):
        data = Path(archive["path"]).read_bytes()
        assert archive["sha256"] == hashlib.sha256(data).hexdigest()
        with tarfile.open(archive["path"]) as tar:
            members = {m.name: m for m in tar.getmembers()}
            assert sorted(members) == [".", "./simple", "./simple/torch", "./simple/torch/index.html",
                                       f"./torch-{name}.whl"]
            assert {(m.uid, m.gid, m.uname, m.gname) for m in members.values()} == {(0, 0, "root", "root")}
            assert tar.extractfile(f"./torch-{name}.whl").read() == name.encode() * 1000


def test_the_progress_callback_preloads_every_library_module_the_plugins_import():
    """Ansible forks a worker per task and host; what its main process imported, each worker has.
    Every npuenv module a filter, lookup or action imports must be imported by the stdout callback
    (which the main process loads first), or each worker imports it again (~0.07 CPU-s each)."""
    import ast
    import json
    import subprocess
    import sys

    wanted = set()   # each module imported, and M.N for each "from M import N" (N a module, or a name in M)
    for path in PLUGINS.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                wanted.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                wanted.update([node.module, *(f"{node.module}.{a.name}" for a in node.names)])
    wanted = {m for m in wanted if m.split(".")[0] in ("compat_matrix", "validation")}
    assert {"compat_matrix.lock", "validation.node.vendor_tools.npu_smi"} <= wanted
    code = (f"import importlib.util, json, sys\nspec = importlib.util.spec_from_file_location('cb', "
            f"{str(PLUGINS / 'callback' / 'npuenv_progress.py')!r})\nspec.loader.exec_module("
            f"importlib.util.module_from_spec(spec))\nprint(json.dumps(sorted(sys.modules)))")
    loaded = set(json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                           check=True, cwd=ROOT).stdout))
    assert {m for m in wanted if _is_module(m)} - loaded == set()


def _is_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False

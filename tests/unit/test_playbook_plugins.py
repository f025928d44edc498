"""The playbooks' controller-side plugins: the row lookup, the installer check
and the filters that read the vendor tools' output with the product's parsers."""
from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

import pytest
from ansible.errors import AnsibleError

from playbooks import run as playbook_run
from tests.conftest import ROOT

PLUGINS = ROOT / "playbooks" / "plugins"


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
     "npuenv_row: unknown key(s) torchnpu"),
])
def test_a_host_that_does_not_fit_fails_with_the_reason(kw, message):
    with pytest.raises(AnsibleError) as info:
        stack_lookup(**kw)
    assert message in str(info.value)


def installers(cache: Path, files: dict[str, bytes], sums: dict[str, str] | None = None):
    cache.mkdir(exist_ok=True)
    for name, data in files.items():
        (cache / name).write_bytes(data)
    sums = sums if sums is not None else {n: hashlib.sha256(d).hexdigest() for n, d in files.items()}
    (cache / "SHA256SUMS").write_text("".join(f"{h}  {n}\n" for n, h in sums.items()))
    plug = lookup("npuenv_installers")
    return lambda packages, kinds: plug.run([], variables={}, cache=str(cache), packages=packages, kinds=kinds)[0]


def test_installers_are_found_by_name_and_glob_and_checked(tmp_path):
    find = installers(tmp_path / "c", {"Ascend-hdk-910b-npu-firmware_7.8.1.1.200.run": b"fw", "tk.run": b"tk"})
    found = find({"firmware": "Ascend-hdk-910b-npu-firmware_*.run", "toolkit": "tk.run"}, ["firmware", "toolkit"])
    assert found["firmware"]["name"] == "Ascend-hdk-910b-npu-firmware_7.8.1.1.200.run"
    assert found["toolkit"]["sha256"] == hashlib.sha256(b"tk").hexdigest()


def test_missing_corrupt_and_unlisted_installers_are_refused(tmp_path):
    find = installers(tmp_path / "c", {"tk.run": b"damaged"}, sums={"tk.run": hashlib.sha256(b"good").hexdigest()})
    with pytest.raises(AnsibleError) as info:
        find({"toolkit": "tk.run"}, ["toolkit"])
    assert f"{tmp_path / 'c' / 'tk.run'} is corrupt or not the vendor's file" in str(info.value)
    assert (f"tk.run: checksum mismatch: {tmp_path / 'c' / 'SHA256SUMS'} says sha256 {hashlib.sha256(b'good').hexdigest()}, "
            f"the file has {hashlib.sha256(b'damaged').hexdigest()}") in str(info.value)
    with pytest.raises(AnsibleError) as info:
        find({"nnal": "nnal.run"}, ["nnal"])
    assert "nnal.run is not in" in str(info.value) and "add its SHA256 to SHA256SUMS" in str(info.value)
    (tmp_path / "c" / "SHA256SUMS").unlink()
    with pytest.raises(AnsibleError) as info:
        find({"toolkit": "tk.run"}, ["toolkit"])
    assert "has no SHA256SUMS" in str(info.value)


def test_hccn_survey_and_todo_filters():
    f = plugin("filter", "npuenv").FilterModule().filters()
    text = ("@@ip 0\nipaddr:10.0.0.1\nnetmask:255.255.255.0\n"
            "@@netdetect 0\nnetdetect address: 10.0.0.254\n@@link 0\nlink status: UP\n"
            "@@health 0\nnet health status: Success\n"
            "@@ip 1\nGet ipconf failed, because no ip was preset there!\n"
            "@@netdetect 1\nnetdetect address: 0.0.0.0\n@@link 1\nlink status: DOWN\n"
            "@@health 1\nnet health status: Init\n")
    state = f["npuenv_hccn_survey"](text)
    assert state[0] == {"ip": {"address": "10.0.0.1", "netmask": "255.255.255.0"}, "netdetect": "10.0.0.254",
                        "link": "UP", "health": "Success"}
    assert state[1]["ip"] is None and state[1]["link"] == "DOWN" and state[1]["health"] == "Init"
    todo = f["npuenv_hccn_todo"](state, ["10.0.0.1", "10.0.1.1"], "255.255.255.0", "10.0.0.254")
    assert todo == {"ip": [1], "netdetect": [1]}
    assert f["npuenv_key_values"]("Version=24.1.0\nfoo=bar=baz\n") == {"Version": "24.1.0", "foo": "bar=baz"}


def test_deploy_exit_codes():
    assert playbook_run.exit_code(0) == 0
    assert playbook_run.exit_code(2) == 1   # a host failed
    assert playbook_run.exit_code(4) == 1   # a host was unreachable
    assert playbook_run.exit_code(5) == 2   # bad options: the run could not start

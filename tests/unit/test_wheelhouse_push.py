"""The python_stack role's wheelhouse push (tasks/push.yml), for real on this machine (connection
local): in one batch, each host gets its own wheelhouse. A mixed-arch fleet names one wheelhouse per
arch (the lock records one per arch); the archive is packed once per batch, on the controller, and
a host must never be sent another host's."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

from ansible_run import run

PUSH = """
- hosts: npu_nodes
  gather_facts: false
  tasks:
    - name: The facts the role's main.yml sets before it includes push.yml
      ansible.builtin.set_fact:
        python_stack_push: "{{ push }}"
        python_stack_from: "{{ python_stack_wheelhouse }}"
    - name: Push
      ansible.builtin.include_role:
        name: npuenv.ascend.python_stack
        tasks_from: push
"""


def wheelhouse(folder: Path, wheels: dict[str, bytes]) -> Path:
    folder.mkdir()
    for name, data in wheels.items():
        (folder / name).write_bytes(data)
    (folder / "SHA256SUMS").write_text("".join(f"{hashlib.sha256(d).hexdigest()}  {n}\n" for n, d in wheels.items()))
    return folder


def test_each_host_of_a_batch_gets_its_own_wheelhouse(tmp_path):
    x86 = wheelhouse(tmp_path / "house-x86_64", {"torch-2.13.0-cp311-cp311-manylinux_2_28_x86_64.whl": b"x86"})
    arm = wheelhouse(tmp_path / "house-aarch64", {"torch-2.13.0-cp311-cp311-manylinux_2_28_aarch64.whl": b"arm"})
    local = {"ansible_connection": "local", "ansible_become": False, "ansible_python_interpreter": sys.executable}
    hosts = {"x1": (x86, True), "a1": (arm, True), "x2": (x86, True), "a2": (arm, False)}
    (tmp_path / "hosts.yml").write_text(json.dumps({"all": {"children": {"npu_nodes": {"hosts": {
        h: {**local, "python_stack_wheelhouse": str(house), "push": push,
            "python_stack_wheelhouse_dest": str(tmp_path / "nodes" / h)}
        for h, (house, push) in hosts.items()}}}}}))
    (tmp_path / "push.yml").write_text(PUSH)
    scratch = tmp_path / "controller-tmp"
    scratch.mkdir()
    env = {**os.environ, "ANSIBLE_COLLECTIONS_PATH": str(run.PLAYBOOK_DIR / "collections"),
           "ANSIBLE_LOCAL_TEMP": str(tmp_path / "ansible-tmp"), "TMPDIR": str(scratch)}
    done = subprocess.run([run.ansible_command("ansible-playbook"), "-i", str(tmp_path / "hosts.yml"),
                           str(tmp_path / "push.yml")], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    for h, (house, push) in hosts.items():
        got = tmp_path / "nodes" / h
        if push:
            assert sorted(p.name for p in got.iterdir()) == sorted(p.name for p in house.iterdir()), h
            assert (got / "SHA256SUMS").read_text() == (house / "SHA256SUMS").read_text(), h
        else:
            assert not got.exists(), h
    assert list(scratch.iterdir()) == []   # the archives' private folder is removed


BAD_PACKS = """
- hosts: localhost
  gather_facts: false
  tasks:
    - name: "{{ item.what }}"
      npuenv.ascend.npuenv_pack:
        folders: "{{ item.folders | default(omit) }}"
        under: "{{ item.under | default(omit) }}"
        remove: "{{ item.remove | default(omit) }}"
      loop:
        - {what: not a folder, folders: ["{{ tmp }}/none"], under: "{{ tmp }}"}
        - {what: no list, folders: "{{ tmp }}", under: "{{ tmp }}"}
        - {what: relative under, folders: [], under: scratch}
        - {what: no such under, folders: [], under: "{{ tmp }}/none"}
        - {what: a folder it did not make, remove: "{{ tmp }}"}
      register: packs
      ignore_errors: true
    - name: What each said
      ansible.builtin.copy:
        content: "{{ packs.results | map(attribute='msg') | list | to_json }}"
        dest: "{{ tmp }}/said.json"
        mode: "0600"
"""


def test_the_pack_refuses_what_it_cannot_pack_or_did_not_make_and_says_which(tmp_path):
    (tmp_path / "packs.yml").write_text(BAD_PACKS)
    env = {**os.environ, "ANSIBLE_COLLECTIONS_PATH": str(run.PLAYBOOK_DIR / "collections"),
           "ANSIBLE_LOCAL_TEMP": str(tmp_path / "ansible-tmp")}
    done = subprocess.run([run.ansible_command("ansible-playbook"), "-i", "localhost,", "-c", "local",
                           "-e", json.dumps({"tmp": str(tmp_path), "ansible_python_interpreter": sys.executable}), str(tmp_path / "packs.yml")],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert json.loads((tmp_path / "said.json").read_text()) == [
        f"npuenv_pack: folders must be a list of the controller's folders, not ['{tmp_path}/none']",
        f"npuenv_pack: folders must be a list of the controller's folders, not '{tmp_path}'",
        "npuenv_pack: under 'scratch' is not a folder of the controller",
        f"npuenv_pack: under '{tmp_path}/none' is not a folder of the controller",
        f"npuenv_pack: {tmp_path} is not a folder npuenv_pack made"]
    assert tmp_path.is_dir()   # refused, not removed

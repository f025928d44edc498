"""Which machine a host is (validation/node/identity.py): read on the node, compared
on the controller, and two names for one machine refused by `npuenv validate`
(here) and by site.yml's first play (its filter, here; end to end in
tests/integration/test_host_identity.py)."""
from __future__ import annotations

import base64
import subprocess
import sys

import pytest
import yaml

import compat_matrix as cm
from compat_matrix.errors import UserError
from tests.conftest import ROOT
from tests.unit.test_playbook_plugins import plugin
from ansible_run import run as playbook_run
from validation import report, run
from validation.node import identity
from validation.merge import Outcome

MID_A, MID_B = "0123456789abcdef0123456789abcdef", "fedcba9876543210fedcba9876543210"


def keypair(directory, kind="ed25519", name="ssh_host_ed25519_key"):
    """A real host key pair, as ssh-keygen -A makes them."""
    directory.mkdir(parents=True, exist_ok=True)
    subprocess.run(["ssh-keygen", "-q", "-t", kind, "-N", "", "-C", "root@node", "-f", str(directory / name)],
                   check=True)
    return (directory / f"{name}.pub").read_text().strip()


def node_root(tmp_path, machine_id: str | None, kinds=("ed25519",)):
    root = tmp_path / "root"
    if machine_id is not None:
        (root / "etc").mkdir(parents=True)
        (root / "etc" / "machine-id").write_text(machine_id + "\n")
    lines = [keypair(root / "etc" / "ssh", k, f"ssh_host_{k}_key") for k in kinds]
    return root, lines


def test_read_gives_the_machine_id_and_the_host_keys_without_their_comments(tmp_path):
    root, lines = node_root(tmp_path, MID_A, kinds=("ed25519", "rsa"))
    found = identity.read(str(root))
    assert found["machine_id"] == MID_A
    assert found["host_keys"] == sorted(" ".join(line.split()[:2]) for line in lines)
    assert all(k.startswith(("ssh-ed25519 AAAA", "ssh-rsa AAAA")) for k in found["host_keys"])
    assert len(found["host_keys"]) == 2


def test_read_of_a_host_without_either_gives_none_and_no_keys(tmp_path):
    assert identity.read(str(tmp_path)) == {"machine_id": None, "host_keys": []}


@pytest.mark.parametrize("text", ["", "uninitialized", MID_A.upper(), MID_A[:31], MID_A + "0", "; reboot"])
def test_a_machine_id_that_is_not_32_lower_case_hex_is_no_identity(tmp_path, text):
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "machine-id").write_text(text + "\n")
    assert identity.read(str(tmp_path))["machine_id"] is None


def test_parse_ignores_what_is_not_a_key():
    text = (f"machine_id {MID_A}\nhost_key ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDxx root@a\n"
            "host_key not-a-key AAAA\nhost_key ssh-ed25519 !!notbase64\nhost_key\nsomething else\n")
    assert identity.parse(text) == {"machine_id": MID_A, "host_keys": ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDxx"]}


def test_the_fingerprint_is_the_one_ssh_keygen_shows(tmp_path):
    line = keypair(tmp_path)
    shown = subprocess.run(["ssh-keygen", "-lf", str(tmp_path / "ssh_host_ed25519_key.pub")], capture_output=True,
                           text=True, check=True).stdout.split()[1]
    assert identity.fingerprint(" ".join(line.split()[:2])) == f"ssh-ed25519 {shown}"


def ed25519(seed: bytes) -> str:
    """An ed25519 public key line of the wire format (RFC 8709) with ``seed`` repeated as the key."""
    blob = b"".join(len(part).to_bytes(4, "big") + part for part in (b"ssh-ed25519", (seed * 32)[:32]))
    return "ssh-ed25519 " + base64.b64encode(blob).decode()


KEY_1, KEY_2 = ed25519(b"1"), ed25519(b"2")


def test_hosts_that_share_a_machine_id_or_a_key_are_named_with_what_they_share():
    fp1 = identity.fingerprint(KEY_1)
    found = identity.clashes({
        "node-0": {"machine_id": MID_A, "host_keys": [KEY_1]},
        "node-1": {"machine_id": MID_B, "host_keys": [KEY_2]},
        "alias-of-0": {"machine_id": MID_A, "host_keys": [KEY_1 + " root@node-0"]},
    })
    assert found == [f"node-0 and alias-of-0 share /etc/machine-id {MID_A}, SSH host key {fp1}"]
    # a clone with its own host keys but the image's machine-id; and one that shares only a key
    assert identity.clashes({"a": {"machine_id": MID_A, "host_keys": [KEY_1]},
                             "b": {"machine_id": MID_A, "host_keys": [KEY_2]}}) == \
        [f"a and b share /etc/machine-id {MID_A}"]
    assert identity.clashes({"a": {"machine_id": MID_A, "host_keys": [KEY_1]},
                             "b": {"machine_id": MID_B, "host_keys": [KEY_1]}}) == [f"a and b share SSH host key {fp1}"]


def test_three_names_for_one_machine_are_one_sentence_and_separate_machines_are_fine():
    found = identity.clashes({"a": {"machine_id": MID_A}, "b": {"machine_id": MID_B, "host_keys": [KEY_1]},
                              "c": {"machine_id": MID_A, "host_keys": [KEY_1]}, "d": {"host_keys": [KEY_2]}})
    assert found == [f"a, b and c share /etc/machine-id {MID_A}, SSH host key {identity.fingerprint(KEY_1)}"]
    assert identity.clashes({"a": {"machine_id": MID_A}, "b": {"machine_id": MID_B}}) == []


@pytest.mark.parametrize("junk", [None, "x", [], {"machine_id": 5, "host_keys": "ssh-ed25519 AAAA"},
                                  {"machine_id": MID_A[:31]}, {"host_keys": [None, 3, "ssh-ed25519"]}])
def test_an_untrusted_document_without_a_well_formed_identity_matches_nothing(junk):
    assert identity.clashes({"a": junk, "b": junk, "c": {"machine_id": MID_B, "host_keys": []}}) == []
    assert identity.unknown({"a": junk}) == ["a"]


def test_a_machine_id_sent_in_upper_case_is_still_the_same_machine():
    assert identity.clashes({"a": {"machine_id": MID_A}, "b": {"machine_id": MID_A.upper()}}) == \
        [f"a and b share /etc/machine-id {MID_A}"]


# --- npuenv validate ---------------------------------------------------------------

class Nodes:
    """A transport whose hosts send back documents with the given identities."""
    fleet_member = True

    def __init__(self, identities: dict[str, dict], fleet_member: bool = True):
        self.identities, self.hosts, self.fleet_member = identities, list(identities), fleet_member
        self.phases = 0

    def run(self, artefact_path, args, done=None):
        self.phases += 1
        return {h: Outcome("ran", document={**self.identities[h], "results": [
            {"check": "npu_health", "level": "quick", "status": "passed", "duration_s": 0.1, "message": "",
             "data": None}]}) for h in self.hosts}


def validate(monkeypatch, tmp_path, *transports):
    monkeypatch.setattr(run, "plan", lambda *a, **k: (list(transports), {}))
    return run.validate(["ansible://x?inventory=y"], "full", cm.Constraints(torch_npu="2.13.0"), tmp_path / "out",
                        quiet=True)


def test_validate_refuses_two_targets_on_one_machine_and_removes_the_last_reports(monkeypatch, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    for name in report.REPORTS:
        (out / name).write_text("the last run's verdict")
    nodes = Nodes({"node-0": {"machine_id": MID_A, "host_keys": [KEY_1]},
                   "node-1": {"machine_id": MID_B, "host_keys": [KEY_2]},
                   "alias-of-0": {"machine_id": MID_A, "host_keys": [KEY_1]}})
    with pytest.raises(UserError) as e:
        validate(monkeypatch, tmp_path, nodes)
    assert str(e.value) == (f"targets that reach one machine: node-0 and alias-of-0 share /etc/machine-id {MID_A}, "
                            f"SSH host key {identity.fingerprint(KEY_1)}; {identity.FIX}; nothing was reported")
    assert e.value.exit_code == 2
    assert list(out.iterdir()) == []
    assert nodes.phases == 1  # the fleet phase never started


def test_validate_compares_across_transports_but_not_with_image_containers(monkeypatch, tmp_path):
    shared = {"machine_id": MID_A, "host_keys": [KEY_1]}
    with pytest.raises(UserError) as e:
        validate(monkeypatch, tmp_path, Nodes({"ssh://u@h:22": shared}), Nodes({"podman://n": shared}))
    assert "ssh://u@h:22 and podman://n share" in str(e.value)
    # an image's containers are started for the run; two of one image carry its files
    assert validate(monkeypatch, tmp_path, Nodes({"node-0": shared}), Nodes({"image:a": shared}, fleet_member=False),
                    Nodes({"image:b": shared}, fleet_member=False)) == 0
    assert (tmp_path / "out" / "results.json").exists()


def test_the_artefact_document_carries_this_machines_identity(tmp_path):
    from validation import artefact

    stack = cm.resolve(cm.load_matrix(), cm.Constraints(torch_npu="2.13.0", python="3.11", arch="x86_64")).stack
    pyz = artefact.build(tmp_path / "v.pyz", run.expected_stack(stack))
    p = subprocess.run([sys.executable, str(pyz), "--level", "quick", "--only", "driver_version"],
                       capture_output=True, text=True, timeout=300)
    doc = yaml.safe_load(p.stdout.strip().splitlines()[-1])
    assert (doc["machine_id"], doc["host_keys"]) == (identity.read()["machine_id"], identity.read()["host_keys"])
    assert doc["machine_id"] is None or len(doc["machine_id"]) == 32


# --- site.yml's first play -----------------------------------------------------------

filters = plugin("filter", "npuenv").FilterModule().filters()


def probe_output(root) -> str:
    return subprocess.run(filters["npuenv_identity_probe"](str(root)), capture_output=True, text=True,
                          check=True).stdout


def test_the_deploy_probe_and_refusal_name_both_inventory_names_and_what_they_share(tmp_path):
    root, [line] = node_root(tmp_path, MID_A)
    other, _ = node_root(tmp_path / "other", MID_B)
    node0, node1 = probe_output(root), probe_output(other)
    assert filters["npuenv_identity_refusal"]({"node-0": node0, "node-1": node1}) == ""
    refusal = filters["npuenv_identity_refusal"]({"node-0": node0, "node-1": node1, "alias": node0})
    key = identity.fingerprint(" ".join(line.split()[:2]))
    assert refusal == (f"inventory names that reach one machine: node-0 and alias share /etc/machine-id {MID_A}, "
                       f"SSH host key {key}; {identity.FIX}")


def test_deploy_refuses_hosts_it_cannot_tell_apart_but_not_a_host_alone(tmp_path):
    bare = probe_output(tmp_path)  # no machine-id, no host keys
    node0 = probe_output(node_root(tmp_path, MID_A)[0])
    assert filters["npuenv_identity_refusal"]({"bare": bare}) == ""
    assert filters["npuenv_identity_refusal"]({"bare": bare, "node-0": node0}) == (
        "bare: no /etc/machine-id and no SSH host key in /etc/ssh, so nothing tells it apart from the other hosts; "
        "give it a machine-id (systemd-machine-id-setup)")


def test_site_checks_identity_first_on_all_hosts_at_once_with_every_tag_and_in_check_mode():
    plays = yaml.safe_load((ROOT / "playbooks" / "site.yml").read_text())
    first = plays[0]
    assert first["hosts"] == "npu_nodes" and "serial" not in first and first["tags"] == ["always"]
    # then, in the same play, every role's inputs are checked, the lock taken and every host's entry
    # checked (the npuenv.ascend collection's roles/preflight/tasks/lock.yml)
    # (imported, static: the play's tags reach them)
    read, compare, tell, refuse, *inputs, facts, lock = first["tasks"]
    assert [i["ansible.builtin.import_role"]["tasks_from"] for i in inputs] == ["inputs"] * len(inputs) == ["inputs"] * 7
    assert lock["ansible.builtin.import_role"] == {"name": "npuenv.ascend.preflight", "tasks_from": "lock"}
    assert facts["ansible.builtin.setup"] == {"gather_subset": ["min"]}
    assert read["ansible.builtin.command"]["argv"] == "{{ '/' | npuenv.ascend.npuenv_identity_probe }}"
    assert read["check_mode"] is False and read["changed_when"] is False
    # the hosts are compared once, all of them, and the refusal set on each
    assert compare["run_once"] is True
    assert "ansible_play_hosts" in compare["ansible.builtin.set_fact"]["npuenv_identity_refusal"]
    assert tell["check_mode"] is False and tell["delegate_to"] == "localhost" and tell["run_once"] is True
    assert refuse["ansible.builtin.assert"]["that"] == "npuenv_identity_refusal | length == 0"
    assert "run_once" not in refuse and "ansible.builtin.import_role" in plays[1]["tasks"][0]   # the roles' play
    # npuenv deploy skips these four by their tag (its preflight compared every host of the run) and nothing else
    assert [t.get("tags") for t in first["tasks"][:4]] == [[playbook_run.IDENTITY_TAG]] * 4
    assert all(playbook_run.IDENTITY_TAG not in t.get("tags", []) for t in first["tasks"][4:])

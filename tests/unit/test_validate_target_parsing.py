"""`npuenv validate`'s targets parsed into typed values (validation/targets.py):
what each kind accepts and refuses, and that what reaches ssh, podman and
Ansible is one argument per value, so that no option rides along in a name, a
path or a node's answer. (The runs against real nodes are in
tests/integration/test_validate_targets.py and test_fleet.py.)"""
from __future__ import annotations

import json
import os
import shlex
import sys
from pathlib import Path
from urllib.parse import quote

import pytest
from ansible.plugins.connection import ConnectionBase

import compat_matrix as cm
from compat_matrix.errors import UserError
from validation import artefact as artefact_mod
from validation import run, targets
from validation.merge import Outcome
from validation.targets import AnsibleTarget, ImageTarget, LocalTarget, PodmanTarget, SshTarget

# The exact split Ansible's ssh connection applies to ansible_ssh_common_args.
ansible_split = ConnectionBase._split_ssh_args


def refused(target: str) -> str:
    with pytest.raises(UserError) as e:
        targets.parse(target)
    return str(e.value)


# --- ssh:// -----------------------------------------------------------------------

def test_a_good_ssh_target_gives_these_inventory_values(tmp_path):
    folder = tmp_path / "keys and configs"  # a space: still one argument each
    folder.mkdir()
    (folder / "id").write_text("key")
    (folder / "cfg").write_text("Host *\n")
    target = targets.parse(f"ssh://ops@10.0.0.11:2222?ssh_identity_file={folder}/id&ssh_config={folder}/cfg")
    assert target == SshTarget("ops", "10.0.0.11", 2222, folder / "id", folder / "cfg")
    assert target.name == "ops@10.0.0.11:2222"
    assert target.hostvars() == {"ansible_host": "10.0.0.11", "ansible_port": 2222, "ansible_user": "ops",
                                 "ansible_become": True, "ansible_ssh_private_key_file": f"{folder}/id",
                                 "ansible_ssh_common_args": f"-F '{folder}/cfg'"}
    assert ansible_split(target.hostvars()["ansible_ssh_common_args"]) == ["-F", f"{folder}/cfg"]
    shown = quote(str(folder))
    assert str(target) == f"ssh://ops@10.0.0.11:2222?ssh_identity_file={shown}/id&ssh_config={shown}/cfg"
    assert targets.parse(str(target)) == target  # what results.json names reads back as the same target


def test_the_defaults_are_port_22_and_the_login_user(monkeypatch):
    monkeypatch.setenv("USER", "deploy")
    assert targets.parse("ssh://atlas-02") == SshTarget("deploy", "atlas-02", 22)
    assert targets.parse("ssh://root@atlas-02").hostvars() == {
        "ansible_host": "atlas-02", "ansible_port": 22, "ansible_user": "root", "ansible_become": False}


def test_a_proxycommand_in_the_ssh_config_value_cannot_become_an_ssh_option(tmp_path):
    smuggled = f"{tmp_path}/cfg -o ProxyCommand=touch PWNED"
    # No such file: refused, naming the option.
    assert refused(f"ssh://ops@h?ssh_config={smuggled}") == \
        f"{smuggled}: no such file (the ssh_config of ssh://ops@h?ssh_config={smuggled})"
    # A file of exactly that name (or the same, percent-encoded): it stays one argument after -F.
    Path(smuggled).write_text("Host *\n")
    for query in (smuggled, smuggled.replace(" ", "%20").replace("=", "%3D")):
        args = targets.parse(f"ssh://ops@h?ssh_config={query}").hostvars()["ansible_ssh_common_args"]
        assert ansible_split(args) == ["-F", smuggled]
    assert not (tmp_path / "PWNED").exists()


@pytest.mark.parametrize("target, message", [
    ("ssh://ops@-oProxyCommand=x", "'-oProxyCommand=x' is not a host name"),
    ("ssh://ops@-Jjump.example", "'-Jjump.example' is not a host name"),
    ("ssh://-lroot@host", "'-lroot' is not a user name"),
    ("ssh://-oProxyCommand=x", "'-oProxyCommand=x' is not a host name"),
    ("ssh://-oProxyCommand=x@host", "'-oProxyCommand=x' is not a user name"),
    ("ssh://ops@ho;st", "'ho;st' is not a host name"),
    ("ssh://ops@ho$(id)st", "is not a host name"),
    ("ssh://o$(id)@host", "'o$(id)' is not a user name"),
    ("ssh://.ops@host", "'.ops' is not a user name"),
    ("ssh://@host", "'' is not a user name"),
    ("ssh://ops@{{7*6}}", "'{{7*6}}' is not a host name"),
    ("ssh://ops@::1", "an IPv6 address goes in brackets: ssh://USER@[ADDRESS]:PORT"),
    ("ssh://ops@[zz::1]:22", "[zz::1] is not an IPv6 address"),
    ("ssh://ops@[::1", "(an IPv6 address in brackets: [ADDRESS]:PORT)"),
    ("ssh://ops@host/etc", "'/etc' is not part of an SSH target"),
    ("ssh://ops@host?ssh_config=/x#frag", "'#frag' is not part of an SSH target"),
    ("ssh://ops@host?password=x", "unknown option(s) password; known: ssh_identity_file, ssh_config"),
    ("ssh://ops@host?ssh_config=/a&ssh_config=/b", "ssh_config given twice; give each option once"),
    ("ssh://ops@host?ssh_identity_file=", "ssh_identity_file= names no file; give its path"),
])
def test_names_that_ssh_would_read_as_options_or_syntax_are_refused(target, message):
    assert message in refused(target)


@pytest.mark.parametrize("port", ["0", "65536", "99999999", "-1", "", "http", "22a", "２２"])
def test_a_port_outside_1_to_65535_is_refused_never_replaced_by_22(port):
    assert refused(f"ssh://ops@host:{port}") == (f"ssh://ops@host:{port}: the port must be a number from 1 to "
                                                 f"65535, not '{port}' (leave it out for 22)")


def test_the_ports_at_the_ends_of_the_range_and_ipv6_in_brackets():
    assert targets.parse("ssh://ops@host:1").port == 1
    assert targets.parse("ssh://ops@host:65535").port == 65535
    v6 = targets.parse("ssh://ops@[fe80::1]:2222")
    assert (v6.host, v6.port, v6.name, str(v6)) == ("fe80::1", 2222, "ops@fe80::1:2222", "ssh://ops@[fe80::1]:2222")


@pytest.mark.parametrize("target", ["ssh://ops:s3cret@host", "ssh://ops:s3cret@host:2222?ssh_config=/x",
                                    "ssh://ops:s3/cret@host", "ssh://ops:s3?cret@host", "ssh://ops:s3#cret@host",
                                    "ssh://ops:@host"])
def test_a_password_is_refused_and_never_repeated(target):
    message = refused(target)
    assert message.startswith("ssh://ops:***@host") and "a password in the target is refused" in message
    assert "log in with a key: ssh://USER@HOST?ssh_identity_file=KEY" in message
    assert "s3" not in message and "cret" not in message


def test_a_password_never_reaches_the_reports_or_a_file(tmp_path, monkeypatch):
    monkeypatch.setattr(run, "plan", lambda *a, **k: pytest.fail("planned a run for a refused target"))
    with pytest.raises(UserError) as e:
        run.validate(["local", "ssh://ops:s3cret@host"], "quick", cm.Constraints(torch_npu="2.13.0"), tmp_path / "out")
    assert "s3cret" not in str(e.value)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("option", ["ssh_identity_file", "ssh_config"])
def test_the_key_and_the_config_must_be_plain_files_of_bounded_size(tmp_path, option):
    target = f"ssh://ops@host?{option}="
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "big").write_bytes(b"x" * (targets.SSH_FILE_MAX_BYTES + 1))
    assert refused(target + f"{tmp_path}/missing") == \
        f"{tmp_path}/missing: no such file (the {option} of {target}{tmp_path}/missing)"
    assert refused(target + str(tmp_path)) == \
        f"{tmp_path}: is a folder; the {option} of {target}{tmp_path} must be a file"
    assert refused(target + f"{tmp_path}/fifo").startswith(f"{tmp_path}/fifo: is not a regular file")
    assert refused(target + "/dev/zero").startswith("/dev/zero: is not a regular file")
    assert refused(target + f"{tmp_path}/big") == (
        f"{tmp_path}/big: is {targets.SSH_FILE_MAX_BYTES + 1} bytes, more than the {targets.SSH_FILE_MAX_BYTES} "
        f"bytes the {option} of {target}{tmp_path}/big may have; is it the right file?")


@pytest.mark.parametrize("name, shown", [('a"b', "'\"'"), ("a%hb", "'%'"), ("a{{x}}b", "'{' '}'"),
                                         ("a\\b", "'\\\\'"), ("a\nb", "'\\n'")])
def test_a_path_that_ssh_or_ansible_would_read_as_syntax_is_refused(tmp_path, name, shown):
    (tmp_path / name).write_text("key")
    message = refused(f"ssh://ops@host?ssh_identity_file={tmp_path}/{name}")
    assert f"the path holds {shown}, which ssh or Ansible would read as syntax" in message


def test_ssh_targets_become_one_inventory_that_ansible_reads_back_unchanged(tmp_path):
    from ansible_run import run as playbooks_run

    (tmp_path / "my cfg").write_text("Host *\n")
    good = [targets.parse(f"ssh://ops@10.0.0.11:2222?ssh_config={tmp_path}/my cfg"),
            targets.parse("ssh://root@[fd00::7]")]
    listing = playbooks_run.read_inventory(targets.ssh_inventory(good, tmp_path))
    assert playbooks_run.group_members(listing, "npu_nodes") == ["ops@10.0.0.11:2222", "root@fd00::7:22"]
    for target in good:
        assert listing["_meta"]["hostvars"][target.name] == target.hostvars()


# --- podman://, image:, ansible://, local -----------------------------------------------

@pytest.mark.parametrize("target", ["podman://", "podman://-x", "podman://--rm", "podman://a;b", "podman://a b",
                                    "podman://.x"])
def test_container_names_are_podmans_own(target):
    assert refused(target) == f"{target}: use podman://CONTAINER (a container's name or ID)"


@pytest.mark.parametrize("target", ["image:", "image:--help", "image:-v/:/host", "image:a b", "image:x;id",
                                    "image:/abs"])
def test_image_references_never_begin_with_a_dash_or_hold_shell_syntax(target):
    ref = target.removeprefix("image:")
    assert refused(target) == f"image:{ref} is not an image reference; use image:[REGISTRY/]REPOSITORY[:TAG]"


def test_image_targets_and_their_registry_options(tmp_path):
    assert targets.parse("image:localhost/npuenv-torch-npu:2.13.0") == ImageTarget("localhost/npuenv-torch-npu:2.13.0")
    pulled = targets.parse(f"image:reg.example:5000/npu/t@sha256:ab12?ca_cert={tmp_path}/ca.pem&creds_from_env=1")
    assert pulled == ImageTarget("reg.example:5000/npu/t@sha256:ab12", ca_cert=tmp_path / "ca.pem", creds_from_env=True)
    assert str(pulled) == f"image:reg.example:5000/npu/t@sha256:ab12?ca_cert={tmp_path}/ca.pem&creds_from_env=1"
    assert "unknown option(s) tls_verify; known: authfile, cert_dir, ca_cert, creds_from_env" in \
        refused("image:reg.example/x?tls_verify=0")
    assert refused("image:reg.example/x?creds_from_env=maybe") == \
        "image:reg.example/x?creds_from_env=maybe: creds_from_env=maybe: give creds_from_env=1 (or 0)"


def test_ansible_targets_and_local():
    assert targets.parse("ansible://npu_nodes:!atlas-03?inventory=hosts.yml") == \
        AnsibleTarget("npu_nodes:!atlas-03", "hosts.yml")
    assert targets.parse("ansible://") == AnsibleTarget("npu_nodes")
    assert str(targets.parse("ansible://web?inventory=/inv/hosts.yml")) == "ansible://web?inventory=/inv/hosts.yml"
    assert "'-x' is not a host pattern" in refused("ansible://-x?inventory=h")
    assert "unknown option(s) limit" in refused("ansible://x?inventory=h&limit=y")
    assert targets.parse("local") == LocalTarget() and targets.parse(targets.parse("local")) == LocalTarget()
    assert refused("nfs://u:pw@x") == ("unknown target 'nfs://u:***@x'; use local, podman://NAME, image:REF, "
                                       "ssh://USER@HOST[:PORT] or ansible://GROUP?inventory=FILE")


def test_podman_targets_reach_podman_by_their_parsed_name(tmp_path, monkeypatch):
    from contextlib import ExitStack
    calls = []
    monkeypatch.setattr(targets, "_podman", lambda *a, **k: calls.append(a) or type("P", (), {"returncode": 0})())
    with ExitStack() as stack:
        transports, _ = targets.plan([PodmanTarget("npu-sim-1"), "podman://npu-sim-2"], "/", [], stack, tmp_path)
    assert calls == [("container", "exists", "--", "npu-sim-1"), ("container", "exists", "--", "npu-sim-2")]
    assert [(t.container, t.hosts) for t in transports] == [("npu-sim-1", ["podman://npu-sim-1"]),
                                                            ("npu-sim-2", ["podman://npu-sim-2"])]


# --- what results.json names -----------------------------------------------------------------

def test_results_json_names_the_targets_in_their_parsed_form(tmp_path, monkeypatch):
    (tmp_path / "cfg").write_text("Host *\n")

    class Ran:
        fleet_member, hosts = True, ["ops@10.0.0.11:22"]

        def run(self, artefact_path, args, done=None):
            document = {"hostname": "n1", "python": "3.11.2", "results": [
                {"host": "local://", "check": "nnal", "level": "quick", "status": "passed", "duration_s": 0.1,
                 "message": "", "data": None}]}
            return {h: Outcome("ran", document=document) for h in self.hosts}

    monkeypatch.setattr(run, "plan", lambda *a, **k: ([Ran()], {}))
    rc = run.validate([f"ssh://ops@10.0.0.11?ssh_config={tmp_path}/./cfg"], "quick",
                      cm.Constraints(torch_npu="2.13.0"), tmp_path / "out", only=["nnal"], quiet=True)
    assert rc == 0
    meta = json.loads((tmp_path / "out" / "results.json").read_text())["meta"]
    assert meta["targets"] == [f"ssh://ops@10.0.0.11:22?ssh_config={tmp_path}/cfg"]


# --- the artefact's way through Ansible ------------------------------------------------------

# Records the arguments it was started with (the document the controller reads is not this test's subject).
ECHO_ARTEFACT = "import json, sys\nopen({log!r}, 'w').write(json.dumps(sys.argv[1:]))\n"


def test_ansible_runs_the_artefact_from_a_path_with_a_space_and_passes_values_as_text(tmp_path, monkeypatch):
    """validate.yml and the validation role, for real, on this machine (connection local): the
    artefact under a TMPDIR with a space, and node arguments that a shell or a template would run."""
    temp = tmp_path / "tmp dir"
    temp.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(temp))
    artefact = temp / "npuenv validate.pyz"
    artefact.write_text(ECHO_ARTEFACT.format(log=str(tmp_path / "argv.json")))
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(json.dumps({"all": {"children": {"npu_nodes": {"hosts": {"n1": {
        "ansible_connection": "local", "ansible_become": False, "ansible_python_interpreter": sys.executable}}}}}}))
    values = ["--level", "quick", "{{ 7 * 6 }}", "a b", f"$(touch {tmp_path}/PWNED)", "'\"; id"]
    # This machine keeps the artefact where a node keeps it (root's cache, or the user's): removed afterwards.
    cache = Path("/var/cache/npuenv/validate" if os.geteuid() == 0 else "~/.cache/npuenv/validate").expanduser()
    cached = cache / f"npuenv-validate-{artefact_mod.digest(artefact)[:16]}.pyz"
    try:
        outcomes = targets.AnsibleTransport(inventory, "npu_nodes", ["n1"]).run(artefact, {"n1": values})
        assert "gave no result (exit 0)" in outcomes["n1"].reason  # it ran, and printed no document
        assert json.loads((tmp_path / "argv.json").read_text()) == values
        assert not (tmp_path / "PWNED").exists()
        assert list(temp.iterdir()) == [artefact]  # its own temporary folder is gone
        assert cached.read_bytes() == artefact.read_bytes()
    finally:
        cached.unlink(missing_ok=True)


def test_the_extra_vars_are_yaml_whose_every_string_is_unsafe():
    text = targets.unsafe_yaml({"validation_artefact": "/t/a.pyz", "validation_node_args": {"n1": ["{{ x }}", 3]}})
    assert text == ("validation_artefact: !unsafe '/t/a.pyz'\nvalidation_node_args:\n  n1:\n"
                    "  - !unsafe '{{ x }}'\n  - 3\n")
    assert shlex.split("-F " + shlex.quote("/a b/c'd")) == ["-F", "/a b/c'd"]

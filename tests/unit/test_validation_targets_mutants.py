"""How the validation artefact reaches each kind of target (validation/targets.py),
with podman, ansible-playbook and ansible-inventory replaced by fakes that
answer as they do: the commands run, in order, and what each answer becomes
(an outcome, a message the user reads, a container removed afterwards)."""
from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from contextlib import ExitStack
from pathlib import Path

import pytest

import compat_matrix as cm
from compat_matrix.errors import UserError
from ansible_run import run as playbooks_run
from validation import targets
from validation.targets import ImageLock, ImageTarget

DOC = {"format": 1, "hostname": "n", "addresses": ["10.0.0.5"], "python": "3.11.2", "level": "quick",
       "fleet": False, "results": [{"host": "local://", "check": "nnal", "level": "quick", "status": "passed",
                                    "duration_s": 0.1, "message": "", "data": None}],
       "pytest_exit": 0, "duration_s": 1.0}


class FakePodman:
    """podman: each call recorded (without the leading 'podman'), answered by ``answer(args)``."""

    def __init__(self, answer=None):
        self.calls: list[list[str]] = []
        self.answer = answer or (lambda args: (0, "", ""))

    def __call__(self, cmd, **kwargs):
        assert cmd[0] == "podman"
        self.calls.append(cmd[1:])
        rc, out, err = self.answer(cmd[1:])
        return subprocess.CompletedProcess(cmd, rc, out, err)


@pytest.fixture
def podman(monkeypatch):
    fake = FakePodman()
    monkeypatch.setattr(targets.shutil, "which", lambda name: "/usr/bin/podman" if name == "podman" else None)
    monkeypatch.setattr(targets.interrupts, "run", fake)
    return fake


def test_without_podman_a_podman_target_says_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setattr(targets.shutil, "which", lambda name: None)
    with pytest.raises(UserError) as e, ExitStack() as stack:
        targets.plan(["podman://npu-1"], "/", [], stack, tmp_path)
    assert str(e.value) == "podman is not installed; it is needed for podman:// and image: targets"


def test_a_podman_target_that_does_not_exist_is_refused(podman, tmp_path):
    podman.answer = lambda args: (1, "", "")
    with pytest.raises(UserError) as e, ExitStack() as stack:
        targets.plan(["podman://npu-1"], "/", [], stack, tmp_path)
    assert str(e.value) == "podman://npu-1: no such podman container"


def test_a_target_given_twice_is_refused(podman, tmp_path):
    with pytest.raises(UserError) as e, ExitStack() as stack:
        targets.plan(["podman://b", "local", "podman://a", "podman://b", "local", "podman://a"], "/", [], stack,
                     tmp_path)
    assert str(e.value) == "target(s) given twice: local, podman://a, podman://b"


def test_local_and_podman_targets_are_fleet_members(podman, tmp_path):
    with ExitStack() as stack:
        transports, hints = targets.plan(["local", "podman://npu-1"], "/", [], stack, tmp_path)
    assert [(type(t).__name__, t.hosts, t.fleet_member) for t in transports] == [
        ("LocalTransport", ["local"], True), ("PodmanTransport", ["podman://npu-1"], True)]
    assert hints == {"row": None, "images": {}}


# --- a running container ----------------------------------------------------------------

def test_a_container_runs_the_artefact_with_its_login_python_and_it_is_removed_after(podman, tmp_path):
    def answer(args):
        if args[:2] == ["container", "inspect"]:
            return 0, "true\n", ""
        if args[:3] == ["exec", "npu-1", "bash"]:
            return 1, "log\n" + json.dumps(DOC) + "\n", ""
        return 0, "", ""
    podman.answer = answer
    out = targets.PodmanTransport("npu-1", "podman://npu-1").run(tmp_path / "a.pyz",
                                                                 {"podman://npu-1": ["--level", "quick"]})
    assert out["podman://npu-1"].status == "ran" and out["podman://npu-1"].document["hostname"] == "n"
    inspect, cp, run, rm = podman.calls
    assert inspect == ["container", "inspect", "--format", "{{.State.Running}}", "npu-1"]
    remote = cp[2].removeprefix("npu-1:")
    assert re.fullmatch(r"/tmp/npuenv-validate-[0-9a-f]{8}\.pyz", remote)
    assert cp == ["cp", str(tmp_path / "a.pyz"), f"npu-1:{remote}"]
    assert run == ["exec", "npu-1", "bash", "-lc", 'exec python3 "$@"', "npuenv-validate", remote, "--level", "quick"]
    assert rm == ["exec", "npu-1", "rm", "-f", remote]


def test_a_run_killed_on_the_node_says_so_and_a_failed_removal_is_no_error(podman, tmp_path):
    def answer(args):
        if args[:2] == ["container", "inspect"]:
            return 0, "true", ""
        if args[0] == "exec" and args[2] == "bash":
            return 137, "", "Killed"
        if args[0] == "exec" and args[2] == "rm":
            return 1, "", "Error: container stopped"
        return 0, "", ""
    podman.answer = answer
    out = targets.PodmanTransport("npu-1", "podman://npu-1").run(tmp_path / "a.pyz", {"podman://npu-1": []})
    assert (out["podman://npu-1"].status, out["podman://npu-1"].reason) == (
        "error", "the validation artefact gave no result (exit 137): Killed")


def test_the_copy_is_removed_even_when_the_run_is_interrupted(podman, tmp_path):
    def answer(args):
        if args[:2] == ["container", "inspect"]:
            return 0, "true", ""
        if args[0] == "exec" and args[2] == "bash":
            raise KeyboardInterrupt
        return 0, "", ""
    podman.answer = answer
    with pytest.raises(KeyboardInterrupt):
        targets.PodmanTransport("npu-1", "podman://npu-1").run(tmp_path / "a.pyz", {"podman://npu-1": []})
    assert podman.calls[-1][:4] == ["exec", "npu-1", "rm", "-f"]


@pytest.mark.parametrize("inspect, reason", [
    ((125, "", "time=x level=warn\ntime=y level=warn\nError: no such container npu-1\n"),
     "podman: Error: no such container npu-1"),
    ((0, "false\n", ""), "podman: the container is not running"),
])
def test_a_container_that_is_gone_or_stopped_is_unreachable(podman, tmp_path, inspect, reason):
    podman.answer = lambda args: inspect
    out = targets.PodmanTransport("npu-1", "podman://npu-1").run(tmp_path / "a.pyz", {"podman://npu-1": []})
    assert (out["podman://npu-1"].status, out["podman://npu-1"].reason) == ("unreachable", reason)
    assert len(podman.calls) == 1   # nothing copied, nothing run


def test_a_copy_that_fails_is_unreachable_with_podmans_reason(podman, tmp_path):
    podman.answer = lambda args: (0, "true", "") if args[0] == "container" else (125, "", " Error: disk full \n")
    out = targets.PodmanTransport("npu-1", "podman://npu-1").run(tmp_path / "a.pyz", {"podman://npu-1": []})
    assert (out["podman://npu-1"].status, out["podman://npu-1"].reason) == ("unreachable", "podman cp: Error: disk full")
    assert [c[0] for c in podman.calls] == ["container", "cp"]


# --- an image, started as a real run would ------------------------------------------------

def host_root(tmp_path: Path) -> Path:
    root = tmp_path / "host"
    (root / "dev").mkdir(parents=True)
    for name in ("davinci1", "davinci0", "davinci10", "davinci_manager", "hisi_hdc", "davinciX"):
        (root / "dev" / name).write_text("")
    (root / "usr/local/Ascend/driver").mkdir(parents=True)
    (root / "usr/local/bin").mkdir(parents=True)
    (root / "usr/local/bin/npu-smi").write_text("")
    return root


def image_answer(labels, *, local=True, run_rc=0):
    def answer(args):
        if args[:3] == ["image", "inspect", "--"] and len(args) == 4 and args[3]:
            return (0, json.dumps([{"Labels": labels}]), "") if local else (125, "", "Error: image not known")
        if args[0] == "image":
            return 125, "", "Error: unknown flag or no image named"
        if args[0] == "run":
            return run_rc, "abc123\n", "" if run_rc == 0 else "Error: no space left\n"
        return 0, "", ""
    return answer


def test_an_image_starts_with_the_hosts_devices_and_driver_and_is_removed_after(podman, tmp_path):
    root = host_root(tmp_path)
    podman.answer = image_answer({"io.npuenv.lock.digest": "sha256:" + "a" * 64})
    with ExitStack() as stack:
        name, found = targets.start_image(ImageTarget("localhost/t:1"), str(root), ["--cpus", "2"], stack)
        assert re.fullmatch(r"npuenv-validate-[0-9a-f]{8}", name)
        assert found == ImageLock("sha256:" + "a" * 64, None)
        inspect, run = podman.calls
        assert inspect == ["image", "inspect", "--", "localhost/t:1"]
        dev = root / "dev"
        assert run == ["run", "-d", "--name", name,
                       "--device", f"{dev}/davinci0:/dev/davinci0", "--device", f"{dev}/davinci1:/dev/davinci1",
                       "--device", f"{dev}/davinci10:/dev/davinci10",
                       "--device", f"{dev}/davinci_manager:/dev/davinci_manager",
                       "--device", f"{dev}/hisi_hdc:/dev/hisi_hdc",
                       "-v", f"{root}/usr/local/Ascend/driver:/usr/local/Ascend/driver:ro",
                       "-v", f"{root}/usr/local/bin/npu-smi:/usr/local/bin/npu-smi:ro",
                       "--cpus", "2", "--entrypoint", "sleep", "--", "localhost/t:1", "infinity"]
    assert podman.calls[2:] == [["rm", "-f", "-t", "0", name]]


def test_every_mount_of_a_real_run_when_the_host_has_them_all(podman, tmp_path):
    root = tmp_path / "host"
    for folder in ("usr/local/Ascend/driver", "usr/local/Ascend/firmware", "usr/local/dcmi", "etc", "usr/local/bin"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    (root / "usr/local/bin/npu-smi").write_text("")
    (root / "etc/ascend_install.info").write_text("")
    podman.answer = image_answer({})
    with ExitStack() as stack:
        targets.start_image(ImageTarget("localhost/t:1"), str(root), [], stack)
        run = podman.calls[1]
    mounts = [run[i + 1] for i, a in enumerate(run) if a == "-v"]
    assert mounts == [f"{root}/usr/local/Ascend/driver:/usr/local/Ascend/driver:ro",
                      f"{root}/usr/local/Ascend/firmware:/usr/local/Ascend/firmware:ro",
                      f"{root}/usr/local/dcmi:/usr/local/dcmi:ro",
                      f"{root}/usr/local/bin/npu-smi:/usr/local/bin/npu-smi:ro",
                      f"{root}/etc/ascend_install.info:/etc/ascend_install.info:ro"]
    assert "--device" not in run


def test_a_container_already_gone_at_the_end_is_no_error(podman, tmp_path):
    answer = image_answer({})
    podman.answer = lambda args: (1, "", "Error: no container npuenv-validate-x") if args[0] == "rm" else answer(args)
    with ExitStack() as stack:
        name, _ = targets.start_image(ImageTarget("localhost/t:1"), str(tmp_path), [], stack)
    assert podman.calls[-1] == ["rm", "-f", "-t", "0", name]


def test_an_image_that_fails_to_start_says_why_and_is_still_removed(podman, tmp_path):
    podman.answer = image_answer({}, run_rc=125)
    with pytest.raises(UserError) as e, ExitStack() as stack:
        targets.start_image(ImageTarget("localhost/t:1"), str(tmp_path), [], stack)
    assert str(e.value) == "podman run -d failed: Error: no space left"
    assert podman.calls[-1][:4] == ["rm", "-f", "-t", "0"]


@pytest.mark.parametrize("ref", ["t:1", "localhost/t:1", "npu/t:1", "npu/t.v2/x:1"])
def test_an_image_not_in_local_storage_and_without_a_registry_is_refused(podman, tmp_path, ref):
    podman.answer = image_answer({}, local=False)
    with pytest.raises(UserError) as e, ExitStack() as stack:
        targets.start_image(ImageTarget(ref), str(tmp_path), [], stack)
    assert str(e.value) == (f"image {ref} does not exist; build it with `make image`, or name its registry "
                            f"(image:REGISTRY/REPO:TAG) to pull it")


@pytest.mark.parametrize("ref", ["reg.example/npu/t:1", "reg:5000/t:1"])
def test_an_image_of_a_registry_is_pulled_with_the_targets_options(podman, tmp_path, monkeypatch, capsys, ref):
    from images import registry

    pulled = []

    def pull(r, *, engine, access, log):
        pulled.append((r, engine, access))
        log("pulling")
        podman.answer = image_answer({})

    monkeypatch.setattr(registry, "pull", pull)
    podman.answer = image_answer({}, local=False)
    target = ImageTarget(ref, authfile=tmp_path / "auth.json", cert_dir=tmp_path / "certs", ca_cert=tmp_path / "ca",
                         creds_from_env=False)
    with ExitStack() as stack:
        targets.start_image(target, str(tmp_path), [], stack)
    assert pulled == [(ref, "podman", registry.Access(authfile=tmp_path / "auth.json", cert_dir=tmp_path / "certs",
                                                      ca_cert=tmp_path / "ca", creds_from_env=False))]
    assert podman.calls[:2] == [["image", "inspect", "--", ref], ["image", "inspect", "--", ref]]
    assert podman.calls[2][:2] == ["run", "-d"]
    assert capsys.readouterr().err == "pulling\n"
    target = ImageTarget(ref, creds_from_env=True)
    podman.answer = image_answer({}, local=False)
    with ExitStack() as stack:
        targets.start_image(target, str(tmp_path), [], stack)
    assert pulled[-1][2] == registry.Access(creds_from_env=True)


def test_registry_options_for_an_image_in_local_storage_are_refused(podman, tmp_path):
    podman.answer = image_answer({})
    with pytest.raises(UserError) as e, ExitStack() as stack:
        targets.start_image(ImageTarget("reg.example/t:1", creds_from_env=True), str(tmp_path), [], stack)
    assert str(e.value) == ("image:reg.example/t:1?creds_from_env=1: the registry options are for an image that is "
                            "pulled; reg.example/t:1 is in local storage already")


def test_an_image_target_is_no_fleet_member_and_its_labels_are_the_hint(podman, tmp_path):
    podman.answer = image_answer({"io.npuenv.row.torch_npu": "2.13.0", "io.npuenv.stack.python": "3.11"})
    with ExitStack() as stack:
        transports, hints = targets.plan(["image:localhost/t:1"], str(tmp_path), [], stack, tmp_path)
        [t] = transports
        assert (t.hosts, t.fleet_member, t.container) == (["image:localhost/t:1"], False, podman.calls[1][3])
    row = cm.Constraints(torch_npu="==2.13.0", python="3.11")
    assert hints == {"row": row, "images": {"image:localhost/t:1": ImageLock(None, row)}}


@pytest.mark.parametrize("labels, found", [
    ({"io.npuenv.lock.digest": "sha256:" + "b" * 64, "io.npuenv.row.torch_npu": "2.13.0"},
     ImageLock("sha256:" + "b" * 64, None)),
    ({"io.npuenv.lock.digest": "", "io.npuenv.row.torch_npu": "2.13.0", "io.npuenv.stack.python": "3.11",
      "io.npuenv.stack.chip": "", "io.npuenv.stack.arch": "aarch64", "io.npuenv.stack.os": "ubuntu22.04"},
     ImageLock(None, cm.Constraints(torch_npu="==2.13.0", python="3.11", arch="aarch64", os="ubuntu22.04"))),
    ({"org.opencontainers.image.title": "x"}, ImageLock(None, None)),
    ({"io.npuenv.row.torch_npu": ""}, ImageLock(None, None)),
])
def test_what_an_images_labels_say_of_its_lock(labels, found):
    assert targets.image_lock(labels) == found


# --- this machine ---------------------------------------------------------------------------

def test_local_runs_the_artefact_with_npuenvs_python_and_shows_the_tail_of_an_error(monkeypatch, tmp_path, capsys):
    calls = []

    def fake(cmd, **kwargs):
        calls.append(cmd)
        return subprocess.CompletedProcess(cmd, rc, "", "E" + "x" * 4000)

    monkeypatch.setattr(targets.interrupts, "run", fake)
    for rc in (0, 1):
        out = targets.LocalTransport().run(tmp_path / "a.pyz", {"local": ["--level", "quick"]})
        assert capsys.readouterr().err == ""
    assert calls[0] == [sys.executable, str(tmp_path / "a.pyz"), "--level", "quick"]
    rc = 2
    out = targets.LocalTransport().run(tmp_path / "a.pyz", {"local": []})
    assert capsys.readouterr().err == "x" * 4000
    assert (out["local"].status, out["local"].reason) == (
        "error", "the validation artefact gave no result (exit 2): " + "x" * 1500)


# --- an inventory's hosts over Ansible ----------------------------------------------------------

def test_ansible_runs_validate_yml_for_the_hosts_with_arguments_and_reads_each_hosts_result(monkeypatch, tmp_path):
    seen = {}

    def run_playbook(playbook, inventory, *, limit, extra_vars, npuenv_vars, capture, env, hosts, hostvars):
        seen.update(playbook=playbook, inventory=inventory, limit=limit, capture=capture, env=env, hosts=hosts,
                    hostvars=hostvars, extra_vars=extra_vars)
        assert Path(env["ANSIBLE_CALLBACK_TREE_DIR"]).parent.name.startswith("npuenv-validate-")
        [at] = npuenv_vars
        seen["vars"] = Path(at.removeprefix("@")).read_text()
        tree = Path(env["ANSIBLE_CALLBACK_TREE_DIR"])
        tree.mkdir()
        (tree / "h1").write_text(json.dumps({"unreachable": True, "msg": "Task failed: Failed to connect\n  to h1"}))
        (tree / "h2").write_text(json.dumps({"rc": 0, "stdout": json.dumps(DOC), "stderr": ""}))
        (tree / "h3").write_text(json.dumps({"failed": True, "msg": "module  failure:\n  no python"}))
        (tree / "h5").write_text(json.dumps({"rc": 0, "stdout": json.dumps(DOC)}))
        return subprocess.CompletedProcess([], 4, "play out\n", "play err\n")

    monkeypatch.setattr(playbooks_run, "run_playbook", run_playbook)
    hostvars = {"h1": {"ansible_port": 2222}}
    transport = targets.AnsibleTransport(tmp_path / "inv.yml", "npu_nodes:!h9", ["h4", "h1", "h2", "h3", "h5"],
                                         hostvars)
    args = {h: ["--level", "quick", h] for h in ("h1", "h2", "h3", "h4")}
    (tmp_path / "a.pyz").write_bytes(b"PK an artefact")
    out = transport.run(tmp_path / "a.pyz", args)
    assert (seen["playbook"], seen["inventory"], seen["limit"], seen["capture"]) == (
        "validate.yml", tmp_path / "inv.yml", "npu_nodes:!h9", True)
    # the hosts that run, in inventory order, and the variables already read: no second ansible-inventory
    assert seen["hosts"] == ["h4", "h1", "h2", "h3"] and seen["hostvars"] is hostvars
    assert seen["extra_vars"] == []   # the user gave no -e: npuenv's own variables go apart (npuenv_vars)
    env = dict(seen["env"])
    assert env.pop("ANSIBLE_CALLBACK_TREE_DIR").endswith("/tree")
    assert env == {"ANSIBLE_CALLBACKS_ENABLED": "ansible.builtin.tree", "ANSIBLE_DISPLAY_OK_HOSTS": "false",
                   "ANSIBLE_DISPLAY_SKIPPED_HOSTS": "false"}
    import yaml
    assert yaml.safe_load(seen["vars"].replace("!unsafe", "")) == {
        "validation_artefact": str(tmp_path / "a.pyz"), "validation_node_args": args,
        "validation_artefact_digest": hashlib.sha256(b"PK an artefact").hexdigest()}
    assert sorted(out) == ["h1", "h2", "h3", "h4"]          # h5 had no arguments: not run
    assert (out["h1"].status, out["h1"].reason) == ("unreachable", "Failed to connect to h1")
    assert out["h2"].status == "ran" and out["h2"].document["hostname"] == "n"
    assert (out["h3"].status, out["h3"].reason) == ("error", "module failure: no python")
    assert (out["h4"].status, out["h4"].reason) == ("error", "ansible-playbook gave no result for h4 (exit 4): "
                                                             "play out\nplay err")
    assert not Path(seen["env"]["ANSIBLE_CALLBACK_TREE_DIR"]).exists()   # its temporary folder is gone


def test_an_ansible_result_without_a_message_is_quoted_whole_to_1500_characters(monkeypatch, tmp_path):
    def run_playbook(playbook, inventory, *, limit, extra_vars, npuenv_vars, capture, env, hosts, hostvars):
        tree = Path(env["ANSIBLE_CALLBACK_TREE_DIR"])
        tree.mkdir()
        (tree / "h1").write_text(json.dumps({"changed": False, "x": "y" * 2000}))
        (tree / "h2").write_text(json.dumps({"unreachable": True}))
        (tree / "h4").write_text(json.dumps({"rc": 2}))
        (tree / "h5").write_text(json.dumps({"rc": 1, "stderr": "Traceback: boom"}))
        return subprocess.CompletedProcess([], 2, "o" * 1000, "e" * 1000)

    monkeypatch.setattr(playbooks_run, "run_playbook", run_playbook)
    (tmp_path / "a").write_bytes(b"")
    out = targets.AnsibleTransport(tmp_path / "i", "all", ["h1", "h2", "h3", "h4", "h5"]).run(
        tmp_path / "a", {"h1": [], "h2": [], "h3": [], "h4": [], "h5": []})
    assert out["h4"].reason == "the validation artefact gave no result (exit 2): exit 2, no output"
    assert out["h5"].reason == "the validation artefact gave no result (exit 1): Traceback: boom"
    assert out["h1"].reason == str({"changed": False, "x": "y" * 2000})[:1500]
    assert (out["h2"].status, out["h2"].reason) == ("unreachable", "")
    assert out["h3"].reason == "ansible-playbook gave no result for h3 (exit 2): " + "o" * 500 + "e" * 1000


def listing(hosts, row=None):
    hostvars = {h: {} for h in hosts}
    if row is not None:
        hostvars[hosts[0]]["npuenv_row"] = row
    return {"_meta": {"hostvars": hostvars}, "all": {"children": ["npu_nodes"]}, "npu_nodes": {"hosts": hosts}}


def test_an_ansible_target_reads_its_inventory_and_the_first_hosts_row(monkeypatch, tmp_path):
    read = []
    monkeypatch.setattr(playbooks_run, "read_inventory",
                        lambda inv, limit=None: read.append((inv, limit)) or listing(["a1", "a2"], {"row": "2.13.0"}))
    (tmp_path / "inv.yml").write_text("")
    monkeypatch.chdir(tmp_path)
    transport, row = targets.ansible_transport(targets.AnsibleTarget("grp", "inv.yml"))
    assert read == [("inv.yml", "grp")]
    assert (transport.inventory, transport.pattern, transport.hosts) == (tmp_path / "inv.yml", "grp", ["a1", "a2"])
    assert row == {"row": "2.13.0"}
    monkeypatch.setattr(playbooks_run, "read_inventory", lambda inv, limit=None: listing(["a1"]))
    assert targets.ansible_transport(targets.AnsibleTarget("grp", "inv.yml"))[1] == {}
    monkeypatch.setattr(playbooks_run, "read_inventory", lambda inv, limit=None: {"npu_nodes": {"hosts": ["a1"]}})
    assert targets.ansible_transport(targets.AnsibleTarget("grp", "inv.yml"))[1] == {}


def test_an_ansible_target_whose_hosts_are_known_does_not_read_the_inventory_again(monkeypatch, tmp_path):
    """npuenv deploy's gate: the hosts and variables as the deploy read them, once for every batch."""
    monkeypatch.setattr(playbooks_run, "read_inventory", lambda inv, limit=None: pytest.fail("read again"))
    (tmp_path / "inv.yml").write_text("")
    hostvars = {"b2": {"npuenv_row": {"row": "2.13.0"}}, "b1": {}, "other": {"npuenv_row": {"row": "2.12.0"}}}
    known = targets.AnsibleTarget("b2,b1", str(tmp_path / "inv.yml"), known=(("b2", "b1"), hostvars))
    transport, row = targets.ansible_transport(known)
    assert (transport.hosts, transport.hostvars, row) == (["b2", "b1"], hostvars, {"row": "2.13.0"})
    assert known == targets.AnsibleTarget("b2,b1", str(tmp_path / "inv.yml")) and "known" not in repr(known)


def test_an_ansible_target_reaches_its_hosts_with_the_callers_extra_vars(monkeypatch, tmp_path):
    """npuenv deploy's gate: its hosts are reached with the deploy's -e (its ansible_user, say), not as the
    inventory alone says; the values stay out of the target's text and repr (a password may be among them)."""
    given = ("ansible_user=ops", "ansible_become_password=s3cret")
    target = targets.AnsibleTarget("b1", str(tmp_path / "inv.yml"), known=(("b1",), {}), extra_vars=given)
    transport, _ = targets.ansible_transport(target)
    assert transport.extra_vars == given
    assert "s3cret" not in repr(target) + str(target) and target == targets.AnsibleTarget("b1", str(tmp_path / "inv.yml"))
    seen = []

    def run_playbook(playbook, inventory, *, extra_vars, npuenv_vars, env, **kw):
        seen.append((extra_vars, npuenv_vars))
        tree = Path(env["ANSIBLE_CALLBACK_TREE_DIR"])
        tree.mkdir()
        (tree / "b1").write_text(json.dumps({"rc": 0, "stdout": json.dumps(DOC)}))
        return subprocess.CompletedProcess([], 0, "", "")

    monkeypatch.setattr(playbooks_run, "run_playbook", run_playbook)
    (tmp_path / "a.pyz").write_bytes(b"PK")
    assert transport.run(tmp_path / "a.pyz", {"b1": []})["b1"].status == "ran"
    [(extra_vars, npuenv_vars)] = seen
    assert extra_vars == list(given) and not set(given) & set(npuenv_vars)


def test_an_ansible_target_without_an_inventory_takes_ansible_inventory_or_says_how(monkeypatch, tmp_path):
    monkeypatch.delenv("ANSIBLE_INVENTORY", raising=False)
    with pytest.raises(UserError) as e:
        targets.ansible_transport(targets.AnsibleTarget("grp"))
    assert str(e.value) == "ansible://grp: name the inventory: ansible://grp?inventory=PATH"
    monkeypatch.setenv("ANSIBLE_INVENTORY", str(tmp_path / "env.yml"))
    monkeypatch.setattr(playbooks_run, "read_inventory", lambda inv, limit=None: listing(["a1"]) if inv == str(
        tmp_path / "env.yml") else pytest.fail(inv))
    assert targets.ansible_transport(targets.AnsibleTarget("grp"))[0].inventory == tmp_path / "env.yml"


def test_an_ansible_target_matching_no_node_is_refused(monkeypatch, tmp_path):
    monkeypatch.setattr(playbooks_run, "read_inventory", lambda inv, limit=None: {"other": {"hosts": ["x"]}})
    with pytest.raises(UserError) as e:
        targets.ansible_transport(targets.AnsibleTarget("web", "/inv.yml"))
    assert str(e.value) == "ansible://web?inventory=/inv.yml: no host of the group 'npu_nodes' in /inv.yml matches 'web'"


def test_plan_takes_the_row_of_the_first_inventory_that_names_one(monkeypatch, tmp_path):
    rows = {"i1": None, "i2": {"row": "2.13.0", "python": "3.11"}, "i3": {"row": "2.12.0"}}
    monkeypatch.setattr(playbooks_run, "read_inventory",
                        lambda inv, limit=None: listing([f"{inv}-h"], rows[inv]))
    with ExitStack() as stack:
        transports, hints = targets.plan(["ansible://a?inventory=i1", "ansible://b?inventory=i2",
                                          "ansible://c?inventory=i3"], "/", [], stack, tmp_path)
    assert [t.hosts for t in transports] == [["i1-h"], ["i2-h"], ["i3-h"]]
    assert hints == {"row": cm.Constraints(torch_npu="==2.13.0", python="3.11"), "images": {}}


def test_an_inventory_row_that_is_not_a_mapping_is_refused(monkeypatch, tmp_path):
    monkeypatch.setattr(playbooks_run, "read_inventory", lambda inv, limit=None: listing(["h"], "2.13.0"))
    with pytest.raises(UserError) as e, ExitStack() as stack:
        targets.plan(["ansible://a?inventory=/i.yml"], "/", [], stack, tmp_path)
    assert str(e.value) == ("ansible://a?inventory=/i.yml: npuenv_row in /i.yml is not a mapping; write it as "
                            "npuenv_row: {row: \"2.13.0\", python: \"3.11\"}")


def test_ssh_targets_share_one_inventory_after_the_other_targets(monkeypatch, tmp_path):
    read = []
    monkeypatch.setattr(playbooks_run, "read_inventory",
                        lambda inv, limit=None: read.append(inv) or json.loads(Path(inv).read_text())["all"]["children"])
    with ExitStack() as stack:
        transports, _ = targets.plan(["ssh://ops@n1", "local", "ssh://root@n2:2222"], "/", [], stack, tmp_path)
    assert read == [tmp_path / "ssh-inventory.yml"]
    assert [t.hosts for t in transports] == [["local"], ["ops@n1:22", "root@n2:2222"]]
    assert (transports[1].inventory, transports[1].pattern) == (tmp_path / "ssh-inventory.yml", "npu_nodes")


def test_an_inventory_of_ssh_targets_takes_only_ssh_targets(tmp_path):
    with pytest.raises(UserError) as e:
        targets.ssh_inventory(["ssh://ops@n1", "local"], tmp_path)
    assert str(e.value) == "local: not an ssh:// target"


# --- running a phase --------------------------------------------------------------------------

def test_a_phase_runs_only_the_transports_with_work_and_gives_each_only_its_hosts(tmp_path):
    class T:
        fleet_member = True

        def __init__(self, hosts):
            self.hosts, self.given = hosts, None

        def run(self, artefact, args, done=None):
            self.given = (artefact, args)
            return {h: h.upper() for h in args}

    a, b, idle = T(["a1", "a2"]), T(["b1"]), T(["c1"])
    out = targets.run_phase([a, b, idle], tmp_path / "x.pyz", {"a2": ["--x"], "b1": ["--y"], "a1": ["--z"]})
    assert out == {"a2": "A2", "a1": "A1", "b1": "B1"}
    assert a.given == (tmp_path / "x.pyz", {"a2": ["--x"], "a1": ["--z"]}) and b.given[1] == {"b1": ["--y"]}
    assert idle.given is None
    assert targets.run_phase([idle], tmp_path / "x.pyz", {}) == {}


def test_a_phase_runs_every_transport_at_once_however_many_there_are(tmp_path):
    """The fleet phase's collective needs every node running together: one thread per transport."""
    import threading

    count = 40
    barrier = threading.Barrier(count, timeout=60)   # a safety net only: all 40 arrive at once, or none passes

    class T:
        fleet_member = True

        def __init__(self, host):
            self.hosts = [host]

        def run(self, artefact, args, done=None):
            barrier.wait()
            return {self.hosts[0]: "ran"}

    hosts = [f"n{i}" for i in range(count)]
    out = targets.run_phase([T(h) for h in hosts], tmp_path / "x.pyz", {h: [] for h in hosts})
    assert out == {h: "ran" for h in hosts}


# --- parsing what the user wrote ------------------------------------------------------------

def refused(target: str) -> str:
    with pytest.raises(UserError) as e:
        targets.parse(target)
    return str(e.value)


def test_each_target_written_back_without_options():
    assert str(targets.LocalTarget()) == "local"
    assert str(targets.AnsibleTarget("grp")) == "ansible://grp"
    assert str(targets.ImageTarget("reg.example/t:1")) == "image:reg.example/t:1"
    assert targets.ImageTarget("reg.example/t:1").query() == {}
    assert str(targets.ImageTarget("t:1", creds_from_env=True)) == "image:t:1?creds_from_env=1"


def test_ansible_target_mistakes_are_named_with_the_target():
    assert refused("ansible://[x?inventory=h") == ("ansible://[x?inventory=h: Invalid IPv6 URL; use "
                                                   "ansible://GROUP?inventory=FILE")
    assert refused("ansible://x?inventory=h&limit=y") == "ansible://x?inventory=h&limit=y: unknown option(s) limit; " \
                                                         "known: inventory"
    assert refused("ansible://a b?inventory=h") == ("ansible://a b?inventory=h: 'a b' is not a host pattern (no spaces, "
                                                    "not beginning with '-'); use ansible://GROUP?inventory=FILE")


def test_an_ansible_pattern_keeps_its_letters_and_loses_its_slashes():
    assert targets.parse("ansible:///Xeon_nodes/?inventory=h") == targets.AnsibleTarget("Xeon_nodes", "h")


def test_an_ansible_inventory_may_be_a_folder_but_not_a_pipe(tmp_path):
    import os

    assert targets.parse(f"ansible://g?inventory={tmp_path}") == targets.AnsibleTarget("g", str(tmp_path))
    os.mkfifo(tmp_path / "fifo")
    assert refused(f"ansible://g?inventory={tmp_path}/fifo") == (
        f"ansible://g?inventory={tmp_path}/fifo: the inventory {tmp_path}/fifo is not a file or a folder "
        f"(a pipe, socket or device)")


def test_image_target_options_are_named_with_the_target(tmp_path):
    assert refused("image:reg.example/x?tls_verify=0&b=1") == (
        "image:reg.example/x?tls_verify=0&b=1: unknown option(s) b, tls_verify; known: authfile, cert_dir, ca_cert, "
        "creds_from_env")
    assert refused("image:r.example/x?ca_cert=/a&authfile=/b&ca_cert=/c&authfile=/d") == (
        "image:r.example/x?ca_cert=/a&authfile=/b&ca_cert=/c&authfile=/d: authfile, ca_cert given twice; give each "
        "option once")
    assert refused("image:r.example/x?authfile=") == "image:r.example/x?authfile=: authfile= names no file; give its path"


def test_image_options_take_every_path_even_one_ssh_would_not(tmp_path):
    got = targets.parse(f"image:r.example/x?authfile={tmp_path}/a%25uth.json&cert_dir={tmp_path}/certs"
                        f"&ca_cert={tmp_path}/ca.pem")
    assert got == ImageTarget("r.example/x", authfile=tmp_path / "a%uth.json", cert_dir=tmp_path / "certs",
                              ca_cert=tmp_path / "ca.pem")


def test_an_ssh_target_without_a_user_and_without_user_set_logs_in_as_root(monkeypatch):
    monkeypatch.delenv("USER", raising=False)
    assert targets.parse("ssh://Xeon-01") == targets.SshTarget("root", "Xeon-01", 22)


def test_ssh_target_mistakes_are_named_with_the_target(tmp_path):
    usage = "use ssh://USER@HOST[:PORT][?ssh_identity_file=KEY&ssh_config=FILE]"
    assert refused("ssh://ops@h?port=2") == "ssh://ops@h?port=2: unknown option(s) port; known: ssh_identity_file, " \
                                            "ssh_config"
    assert refused("ssh://ops@h?ssh_config=") == "ssh://ops@h?ssh_config=: ssh_config= names no file; give its path"
    assert refused("ssh://ops@h/a@b") == f"ssh://ops@h/a@b: '/a@b' is not part of an SSH target; {usage}"
    assert refused("ssh://ops@h?ssh_config=x#a#b") == f"ssh://ops@h?ssh_config=x#a#b: '#a#b' is not part of an SSH " \
                                                      f"target; {usage}"
    assert refused("ssh://ops@h?ssh_config=~no_such_user_here/cfg") == (
        "ssh://ops@h?ssh_config=~no_such_user_here/cfg: ssh_config ~no_such_user_here/cfg: Could not determine home "
        "directory.")
    assert refused(f"ssh://ops@h?ssh_config={tmp_path}/cfg%20") == (
        f"ssh://ops@h?ssh_config={tmp_path}/cfg%20: ssh_config '{tmp_path}/cfg ': the path holds a space at its end, "
        f"which ssh or Ansible would read as syntax; move the file (or link it) to a plain path")


def test_an_at_sign_in_an_option_is_no_password(tmp_path):
    (tmp_path / "a@b").write_text("Host *\n")
    assert targets.parse(f"ssh://n1:2222?ssh_config={tmp_path}/a@b").ssh_config == tmp_path / "a@b"


def test_the_extra_vars_tag_only_what_yaml_reads_as_text():
    text = targets.unsafe_yaml({"v": "3.11", "t": "true", "n": "null", "s": "text", "i": 3, "l": ["{{ x }}", "22"]})
    assert text == "i: 3\nl:\n- !unsafe '{{ x }}'\n- '22'\nn: 'null'\ns: !unsafe 'text'\nt: 'true'\nv: '3.11'\n"

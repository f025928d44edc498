"""The rolling, gated deploy and `npuenv status` on three simulated nodes reached over SSH as a
non-root user with sudo, with host keys checked.

A lock made once (`npuenv lock`) is rolled out in batches of one, each batch validated at the
quick level; the second node's installer cache holds a corrupt toolkit, so the roll stops at its
batch: the first node is at the lock and validated, the second failed with the installer named,
the third was not attempted and is named so. The rerun command the deploy printed, run exactly as
printed once the cache is fixed, converges the two. `npuenv status` says "never deployed" before,
nothing after, names a kernel parameter changed by hand (exit 1) and nothing once a deploy has
put it back."""
from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import testinfra
import yaml

from tests.integration.conftest import stack_for
from tests.sim import installers as sim_installers
from tests.sim import nodes as sim_nodes
from tests.sim.cann_runtime.build import build_runtime_for_wheel

ROW = "2.13.0"
PREFIX = sim_nodes.checkout_prefix("npu-sim-roll")
ROOT = Path(__file__).resolve().parents[2]
NPUENV = [sys.executable, "-m", "npuenv"]


def npuenv(*args) -> subprocess.CompletedProcess:
    return subprocess.run([*NPUENV, *args], capture_output=True, text=True, cwd=ROOT)


@dataclass
class Rollout:
    tmp: Path
    names: list[str]
    lock: Path
    inventory: Path          # the second node takes its installers from the corrupt cache
    installers: Path
    corrupt: Path
    toolkit: str
    logs: Path


@pytest.fixture(scope="module")
def fleet(node_image, matrix, tmp_path_factory) -> Rollout:
    """Three bare nodes, the row's wheelhouse and installers, a lock of them, and an inventory whose
    second node has a cache with a damaged toolkit (its SHA256SUMS still lists the good file)."""
    torch_source = os.environ.get("TORCH_SOURCE", "/opt/wheels")
    if not Path(torch_source).is_dir():
        pytest.fail(f"TORCH_SOURCE={torch_source} is not a directory with the CPU torch wheel (make setup sets it)")
    tmp = tmp_path_factory.mktemp("rollout")
    stack = stack_for(matrix, ROW, python="3.11")
    wheelhouse, installers, corrupt = tmp / "wheelhouse", tmp / "installers", tmp / "installers-corrupt"
    built = npuenv("wheelhouse", "build", "--row", ROW, "--python", "3.11", "--arch", "x86_64",
                   "--torch-source", torch_source, "--torchvision", "none", "--out", str(wheelhouse))
    assert built.returncode == 0, built.stderr[-2000:]
    build_runtime_for_wheel(tmp / "runtime", next(wheelhouse.glob("torch_npu-*.whl")))
    sim_installers.make_installers(stack, installers, runtime_libs=tmp / "runtime")
    corrupt.mkdir()
    for src in installers.iterdir():
        data = bytearray(src.read_bytes())
        if src.name == stack.packages["toolkit"]:
            data[-64] ^= 0xFF
        (corrupt / src.name).write_bytes(bytes(data))
        (corrupt / src.name).chmod(src.stat().st_mode)
    lock = tmp / "npuenv.lock.json"
    made = npuenv("lock", "--row", ROW, "--python", "3.11", "--arch", "x86_64", "--os", "debian12",
                  "--installers", str(installers), "--wheelhouse", str(wheelhouse), "--out", str(lock))
    assert made.returncode == 0, made.stderr
    access = sim_nodes.SshAccess.create(tmp / "ssh")
    names = sim_nodes.start_nodes(3, tmp / "state", prefix=PREFIX, access=access)
    host_vars = {n: {"hccn_device_ips": [f"10.70.{d}.{i + 1}" for d in range(8)]} for i, n in enumerate(names)}
    host_vars[names[1]]["npuenv_installer_cache"] = str(corrupt)
    inventory = tmp / "inventory.yml"
    inventory.write_text(yaml.safe_dump(sim_nodes.inventory(names, access, host_vars=host_vars, group_vars={
        "npuenv_row": {"torch_npu": ROW, "python": "3.11", "chip": "910b"},
        "npuenv_installer_cache": str(installers), "npuenv_wheelhouse": str(wheelhouse),
        "hccn_netdetect_address": "10.70.0.254"})))
    yield Rollout(tmp, names, lock, inventory, installers, corrupt, stack.packages["toolkit"], tmp / "deploy")
    sim_nodes.remove_nodes(names)


def status(f: Rollout, *args) -> tuple[int, dict]:
    p = npuenv("status", "-i", str(f.inventory), "--format", "json", *args)
    assert p.returncode in (0, 1), p.stderr
    return p.returncode, json.loads(p.stdout)


def logins(name: str) -> int:
    """How many SSH logins the node's sshd has accepted (it logs each to its container's output)."""
    logged = sim_nodes.podman("logs", name)
    return (logged.stdout + logged.stderr).count("Accepted publickey for ")


def summary_of(run: subprocess.CompletedProcess) -> tuple[dict, Path]:
    folder = Path(run.stdout.rsplit("log: ", 1)[1].split()[0]).parent
    return json.loads((folder / "summary.json").read_text()), folder


@pytest.fixture(scope="module")
def never_deployed(fleet) -> tuple[int, dict]:
    return status(fleet)


@pytest.fixture(scope="module")
def first_roll(fleet, never_deployed):
    run = npuenv("deploy", "-i", str(fleet.inventory), "--lock", str(fleet.lock), "--batch-size", "1",
                 "--gate", "quick", "--gate-backend", "cpu", "--log-dir", str(fleet.logs))
    bare = not testinfra.get_host(f"podman://{fleet.names[2]}").file("/usr/local/Ascend").exists
    return run, bare


@pytest.fixture(scope="module")
def rerun(fleet, first_roll):
    """The installer fixed in the cache, then the rerun command exactly as the first roll printed it."""
    shutil.copy2(fleet.installers / fleet.toolkit, fleet.corrupt / fleet.toolkit)
    printed = first_roll[0].stdout.split("that need it:\n  ", 1)[1].splitlines()[0]
    argv = shlex.split(printed)
    assert argv[0] == "npuenv"
    return argv, subprocess.run([*NPUENV, *argv[1:]], capture_output=True, text=True, cwd=ROOT)


def test_status_says_never_deployed_before_the_first_deploy(fleet, never_deployed):
    code, data = never_deployed
    assert code == 1
    assert [(n["host"], n["at"], [d["kind"] for d in n["drift"]]) for n in data["nodes"]] == \
        [(n, "never deployed", ["never deployed"]) for n in fleet.names]


def test_a_roll_in_batches_of_one_stops_at_the_failing_node_and_names_the_rest(fleet, first_roll):
    run, third_untouched = first_roll
    assert run.returncode == 1, run.stdout[-4000:]
    summary, folder = summary_of(run)
    first, second, third = (h for h in summary["hosts"])
    assert (first["host"], first["batch"], first["outcome"], first["gate"], first["at_lock"]) == \
        (fleet.names[0], 1, "changed", "passed", True)
    assert (second["host"], second["batch"], second["outcome"], second["at_lock"]) == \
        (fleet.names[1], 2, "failed", False)
    assert f"{fleet.toolkit} is corrupt or not the vendor's file" in second["cause"], second["cause"]
    assert (third["host"], third["batch"], third["outcome"]) == (fleet.names[2], None, "not attempted")
    assert third["cause"] == f"the roll stopped after batch 2 failed ({fleet.names[1]})"
    assert third_untouched   # a host not attempted was not touched
    # the table names every host with its outcome; the log holds what Ansible printed and the summary
    lines = run.stdout.splitlines()
    assert any(line.startswith(fleet.names[2]) and "not attempted" in line for line in lines)
    log = (folder / "deploy.log").read_text()
    assert "PLAY RECAP" in log and "npuenv validate: level quick" in log and log.endswith(run.stdout[-500:])
    assert summary["lock"]["digest"] == json.loads(fleet.lock.read_text())["digest"]


def test_the_printed_rerun_command_converges_the_hosts_that_needed_it(fleet, rerun):
    argv, run = rerun
    assert argv[argv.index("--limit") + 1] == f"{fleet.names[1]},{fleet.names[2]}"
    assert run.returncode == 0, run.stdout[-4000:]
    summary, _ = summary_of(run)
    assert [(h["host"], h["outcome"], h["gate"], h["at_lock"]) for h in summary["hosts"]] == \
        [(fleet.names[1], "changed", "passed", True), (fleet.names[2], "changed", "passed", True)]


def test_status_names_a_setting_changed_by_hand_until_a_deploy_puts_it_back(fleet, rerun):
    code, data = status(fleet, "--lock", str(fleet.lock))
    assert code == 0 and data["summary"]["ok"] == 3, data
    sim_nodes.run_in(fleet.names[0], "sysctl", "-w", "net.core.somaxconn=4096")
    code, data = status(fleet)
    assert code == 1
    drifting = {n["host"]: n["drift"] for n in data["nodes"] if n["drift"]}
    assert drifting == {fleet.names[0]: [{"kind": "setting", "what": "net.core.somaxconn is 4096, the deploy set "
                                                                    "65535"}]}
    text = npuenv("status", "-i", str(fleet.inventory))
    assert text.returncode == 1 and f"setting: 1 node(s): {fleet.names[0]}" in text.stdout
    before = {name: logins(name) for name in fleet.names}
    # The user named on the command line, as an operator does: every run of the deploy reaches the nodes so.
    again = npuenv("deploy", "-i", str(fleet.inventory), "--lock", str(fleet.lock), "--batch-size", "3",
                   "--gate", "quick", "--gate-backend", "cpu", "--log-dir", str(fleet.logs),
                   "-e", f"ansible_user={sim_nodes.LOGIN_USER}")
    assert again.returncode == 0, again.stdout[-4000:]
    # The preflight, the batch, the read-back and the gate (with the deploy's -e too): four playbook runs,
    # one SSH login per node.
    assert {name: logins(name) - before[name] for name in fleet.names} == {name: 1 for name in fleet.names}
    code, data = status(fleet, "--lock", str(fleet.lock))
    assert code == 0 and all(n["state"] == "ok" for n in data["nodes"]), data
    # each node keeps one copy of the artefact, root's, and status leaves no temporary folder behind
    for name in fleet.names:
        kept = sim_nodes.run_in(name, "bash", "-c", "stat -c '%U %a %n' /var/cache/npuenv/status "
                                "/var/cache/npuenv/status/*; ls -A /home/npuadmin/.ansible/tmp 2>/dev/null | wc -l"
                                ).stdout.splitlines()
        assert kept[0] == "root 700 /var/cache/npuenv/status" and len(kept) == 3, kept
        assert kept[1].startswith("root 600 /var/cache/npuenv/status/npuenv-validate-") and kept[2] == "0", kept


@pytest.mark.parametrize("fault", ["other SHA256SUMS", "no requirements.txt"])
def test_a_wheelhouse_other_than_the_locks_or_unbuilt_is_refused_before_anything_changes(fleet, rerun, fault):
    """The lock records the wheelhouse's digest for x86_64; a host whose inventory names another
    wheelhouse (here the same wheels, one line fewer in SHA256SUMS), or one without its
    requirements.txt, fails its preflight, unchanged."""
    inventory = yaml.safe_load(fleet.inventory.read_text())
    group = inventory["all"]["children"]["npu_nodes"]
    locked = Path(group["vars"]["npuenv_wheelhouse"])
    other = fleet.tmp / f"wheelhouse-{fault.split()[0]}"
    other.mkdir()
    left_out = "SHA256SUMS" if fault == "other SHA256SUMS" else "requirements.txt"
    for entry in locked.iterdir():
        if entry.name != left_out:
            (other / entry.name).symlink_to(entry)
    if fault == "other SHA256SUMS":
        (other / "SHA256SUMS").write_text("".join((locked / "SHA256SUMS").read_text().splitlines(keepends=True)[1:]))
    group["hosts"][fleet.names[0]]["npuenv_wheelhouse"] = str(other)
    changed = fleet.tmp / f"inventory-{fault.split()[0]}-wheelhouse.yml"
    changed.write_text(yaml.safe_dump(inventory))
    run = npuenv("deploy", "-i", str(changed), "--lock", str(fleet.lock), "--limit", fleet.names[0],
                 "--gate", "none", "--log-dir", str(fleet.logs))
    assert run.returncode == 1, run.stdout[-4000:]
    summary, _ = summary_of(run)
    (host,) = summary["hosts"]
    assert (host["host"], host["outcome"]) == (fleet.names[0], "failed")
    assert host["cause"].startswith("Preflight | Check the node can be deployed"), host["cause"]
    if fault == "other SHA256SUMS":
        assert f"the wheelhouse {other} has digest sha256:" in host["cause"], host["cause"]
        recorded = json.loads(fleet.lock.read_text())["wheelhouses"]["x86_64"]
        assert f", the lock recorded {recorded} for x86_64: give the wheelhouse the lock was made from" in run.stdout
    else:
        stack = json.loads(fleet.lock.read_text())["row"]
        assert (f"{other} has no requirements.txt; build the wheelhouse first: make wheelhouse "
                f"ROW={stack['torch_npu']} PYTHON={stack['python']} ARCH=x86_64 OUT={other}") in run.stdout, \
            run.stdout[-4000:]
    code, data = status(fleet, "--lock", str(fleet.lock))
    assert code == 0 and data["nodes"][0]["state"] == "ok", data   # still at the lock, not marked as deploying

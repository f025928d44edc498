"""Each host is one machine, and each run's SSH connections are its own, on two
simulated nodes reached over SSH as real servers are.

An inventory whose third name points (ansible_host, ansible_port) at node 0 is
refused with exit 2, naming both names and what they share, by `npuenv deploy
--check` before any role starts and by `npuenv validate` before anything is
reported. An ssh:// target with an empty known_hosts fails host key
verification right after a run that reached the same node: no SSH master
outlives the run that opened it, and none is left behind."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml

from tests.sim import nodes as sim_nodes
from validation.node import identity

ROW = "2.13.0"
PREFIX = sim_nodes.checkout_prefix("npu-sim-id")
ALIAS = f"{PREFIX}-0-again"
ROOT = Path(__file__).resolve().parents[2]


class Pair:
    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.access = sim_nodes.SshAccess.create(tmp / "ssh")
        self.names = sim_nodes.node_names(2, PREFIX)
        # A private TMPDIR, short enough for SSH control sockets: what a run leaves in it is visible.
        self.tmpdir = Path(tempfile.mkdtemp(prefix="npuenv-idt-", dir="/tmp"))

    def npuenv(self, *args) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "npuenv", *args], capture_output=True, text=True, cwd=ROOT,
                              env=dict(os.environ, TMPDIR=str(self.tmpdir)), timeout=600)

    def identity_of(self, name: str) -> dict:
        """The node's identity as the test sees it from outside (podman exec), not through the product."""
        return identity.parse(sim_nodes.run_in(name, *identity.probe_argv()).stdout)

    def assert_nothing_left(self) -> None:
        """No folder of a run under its TMPDIR, and no process (an SSH master) that names one."""
        assert list(self.tmpdir.iterdir()) == []
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            assert str(self.tmpdir) not in cmdline, f"process {pid} outlived its run: {cmdline!r}"


@pytest.fixture(scope="module")
def pair(node_image, tmp_path_factory):
    p = Pair(tmp_path_factory.mktemp("identity"))
    sim_nodes.start_nodes(2, p.tmp / "state", prefix=PREFIX, access=p.access)
    inv = sim_nodes.inventory(p.names, p.access, group_vars={
        "npuenv_row": {"torch_npu": ROW, "python": "3.11", "chip": "910b"}})
    hosts = inv["all"]["children"]["npu_nodes"]["hosts"]
    hosts[ALIAS] = {"ansible_host": "127.0.0.1", "ansible_port": sim_nodes.ssh_port(p.names[0])}
    p.inventory = p.tmp / "hosts.yml"
    p.inventory.write_text(yaml.safe_dump(inv))
    yield p
    sim_nodes.remove_nodes(p.names)
    shutil.rmtree(p.tmpdir, ignore_errors=True)


def test_each_simulated_node_has_a_machine_id_of_its_own(pair):
    ids = [pair.identity_of(n)["machine_id"] for n in pair.names]
    assert all(i and re.fullmatch(r"[0-9a-f]{32}", i) for i in ids) and ids[0] != ids[1], ids


def expected_clash(pair) -> str:
    node0 = pair.identity_of(pair.names[0])
    assert node0["machine_id"] and node0["host_keys"]
    what = [f"/etc/machine-id {node0['machine_id']}"] + [f"SSH host key {identity.fingerprint(k)}"
                                                         for k in node0["host_keys"]]
    return f"{pair.names[0]} and {ALIAS} share {', '.join(what)}"


def test_deploy_refuses_two_names_for_one_machine_before_any_role_starts(pair):
    logs = pair.tmp / "deploy-logs"
    run = pair.npuenv("deploy", "-i", str(pair.inventory), "--check", "--log-dir", str(logs))
    assert run.returncode == 2, run.stdout[-3000:] + run.stderr[-3000:]
    assert run.stderr == (f"npuenv: inventory names that reach one machine: {expected_clash(pair)}; {identity.FIX}; "
                          f"nothing was changed on any host\n")
    log = next(logs.glob("*/deploy.log")).read_text()
    assert "refused: inventory names that reach one machine" in log     # the summary says why, per host
    assert "Roll out the Ascend NPU stack" not in log and "Preflight |" not in log  # site.yml never started
    pair.assert_nothing_left()


def test_validate_refuses_two_names_for_one_machine_and_reports_nothing(pair):
    out = pair.tmp / "validation"
    out.mkdir()
    (out / "results.json").write_text('{"summary": "the last run"}')
    run = pair.npuenv("validate", "--target", f"ansible://npu_nodes?inventory={pair.inventory}", "--backend", "cpu",
                      "--level", "quick", "--only", "driver_version", "--out", str(out))
    assert run.returncode == 2, run.stdout[-3000:] + run.stderr[-3000:]
    assert run.stderr.endswith(f"npuenv: targets that reach one machine: {expected_clash(pair)}; {identity.FIX}; "
                               f"nothing was reported\n"), run.stderr[-3000:]
    assert not (out / "results.json").exists()
    pair.assert_nothing_left()


def ssh_target(pair, known_hosts: Path) -> str:
    config = pair.tmp / f"ssh_config-{known_hosts.name}"
    config.write_text(f"Host 127.0.0.1\n  IdentityFile {pair.access.key}\n  UserKnownHostsFile {known_hosts}\n"
                      f"  StrictHostKeyChecking yes\n")
    port = sim_nodes.ssh_port(pair.names[1])
    return f"ssh://{sim_nodes.LOGIN_USER}@127.0.0.1:{port}?ssh_config={config}"


def validate_one(pair, target: str) -> tuple[subprocess.CompletedProcess, dict | None]:
    out = pair.tmp / f"validation-{len(list(pair.tmp.glob('validation-*')))}"
    run = pair.npuenv("validate", "--target", target, "--row", ROW, "--backend", "cpu", "--level", "quick",
                      "--only", "driver_version", "--out", str(out))
    results = out / "results.json"
    return run, json.loads(results.read_text()) if results.exists() else None


def test_an_empty_known_hosts_fails_right_after_a_run_that_reached_the_node(pair):
    run, results = validate_one(pair, ssh_target(pair, pair.access.known_hosts))
    [host] = results["hosts"]
    # reached: the check ran there (and failed: the node has no driver)
    assert run.returncode == 1 and results["host_status"][host]["status"] == "failed", run.stderr[-3000:]
    pair.assert_nothing_left()

    empty = pair.tmp / "empty_known_hosts"
    empty.write_text("")
    run, results = validate_one(pair, ssh_target(pair, empty))
    # the one target unreachable: nothing was checked, exit 2, and ssh's own reason
    assert run.returncode == 2 and results is None, run.stdout[-3000:] + run.stderr[-3000:]
    assert re.search(rf"no check ran on any target \({re.escape(host)}: unreachable .*Host key verification failed",
                     run.stderr), run.stderr[-3000:]
    assert empty.read_text() == ""
    pair.assert_nothing_left()

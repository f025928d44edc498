"""Every kind of validation target keeps the exit codes: 1 when a check fails
(here: hosts without an NPU driver), 2 when nothing could be checked, never 0
for a host that was not checked. Over SSH the node keeps the artefact under its
digest: sent once, an altered copy replaced and never run. (The other SSH and
inventory tests, and healthy hosts passing with 0, are in test_fleet.py.)"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.sim import nodes as sim_nodes

ROOT = Path(__file__).resolve().parents[2]
PREFIX = sim_nodes.checkout_prefix("npu-sim-v")


def validate(tmp_path, *targets, only=("driver_version", "npu_health")):
    tmp_path.mkdir(exist_ok=True)
    out = tmp_path / "out"
    p = subprocess.run([sys.executable, "-m", "npuenv", "validate", *[a for t in targets for a in ("--target", t)],
                        "--row", "2.13.0", "--level", "quick", *[a for c in only for a in ("--only", c)],
                        "--out", str(out)], capture_output=True, text=True, cwd=ROOT, timeout=900)
    results = json.loads((out / "results.json").read_text()) if (out / "results.json").exists() else None
    return p.returncode, results, p.stdout + p.stderr


@pytest.fixture(scope="module")
def bare_node(node_image, tmp_path_factory):
    [name] = sim_nodes.start_nodes(1, tmp_path_factory.mktemp("bare"), prefix=PREFIX)
    yield name
    sim_nodes.remove_nodes([name])


@pytest.fixture(scope="module")
def ssh_node(node_image, tmp_path_factory):
    """A node reached as a server is: over SSH, as a user with sudo, its host key checked."""
    tmp = tmp_path_factory.mktemp("ssh-node")
    access = sim_nodes.SshAccess.create(tmp / "ssh")
    [name] = sim_nodes.start_nodes(1, tmp / "state", prefix=f"{PREFIX}-ssh", access=access)
    inventory = tmp / "hosts.yml"
    inventory.write_text(json.dumps(sim_nodes.inventory([name], access)))
    yield name, f"ansible://npu_nodes?inventory={inventory}"
    sim_nodes.remove_nodes([name])


CACHE = "/var/cache/npuenv/validate"


def cached_copies(node: str) -> list[tuple[str, ...]]:
    """(name, owner, mode, inode, sha256) of each file in the node's artefact folder."""
    listing = sim_nodes.run_in(node, "sh", "-c", f"cd {CACHE} && for f in npuenv-validate-*.pyz .npuenv*; do "
                               '[ -e "$f" ] && echo "$f $(stat -c %U:%a:%i "$f") $(sha256sum < "$f")"; done; true')
    return [tuple(line.replace(":", " ", 2).split()[:5]) for line in listing.stdout.splitlines()]


def test_over_ssh_the_artefact_is_sent_once_and_an_altered_copy_is_replaced_never_run(ssh_node, tmp_path):
    name, target = ssh_node

    def checks(results):
        return {(r["host"], r["check"], r["status"], r["message"]) for r in results["results"]}

    rc, first, text = validate(tmp_path / "first", target)
    assert rc == 1, text[-2000:]
    assert {(c, s) for _, c, s, _ in checks(first)} == {("driver_version", "failed"), ("npu_health", "failed")}
    assert f"npuenv: [1/1] {name}: 2 failed (" in text     # the host's line as its result came back
    [(copy, owner, mode, inode, digest)] = cached_copies(name)
    assert (owner, mode) == ("root", "600") and copy == f"npuenv-validate-{digest[:16]}.pyz"
    # nothing stays in the login user's temporary folder
    assert sim_nodes.run_in(name, "ls", "-A", f"/home/{sim_nodes.LOGIN_USER}/.ansible/tmp").stdout == ""

    rc, again, text = validate(tmp_path / "again", target)
    assert rc == 1 and checks(again) == checks(first), text[-2000:]
    assert cached_copies(name) == [(copy, owner, mode, inode, digest)]   # the same file: not sent again

    # A copy altered on the node (same name, other bytes) is not run: it is replaced by the artefact.
    marker = "/tmp/npuenv-altered-copy-ran"
    subprocess.run(["podman", "exec", "-i", name, "sh", "-c", f"cat > {CACHE}/{copy}"], check=True,
                   input=f"open({marker!r}, 'w')\n", text=True)
    rc, altered, text = validate(tmp_path / "altered", target)
    assert rc == 1 and checks(altered) == checks(first), text[-2000:]
    assert sim_nodes.run_in(name, "test", "-e", marker, check=False).returncode == 1
    [(_, _, _, new_inode, new_digest)] = cached_copies(name)
    assert new_digest == digest and new_inode != inode


def test_local_without_a_driver_fails(tmp_path):
    rc, results, text = validate(tmp_path, "local")
    assert rc == 1, text[-2000:]
    assert results["hosts"] == ["local"] and results["host_status"]["local"]["status"] == "failed"
    assert {r["check"]: r["status"] for r in results["results"]} == {"driver_version": "failed", "npu_health": "failed"}


def test_a_podman_node_without_a_driver_fails_and_a_stopped_one_is_not_an_ok(bare_node, tmp_path):
    rc, results, text = validate(tmp_path, f"podman://{bare_node}")
    assert rc == 1, text[-2000:]
    assert results["host_status"][f"podman://{bare_node}"]["status"] == "failed"
    # a container name that does not exist is a mistake in the command: nothing runs
    rc, results, text = validate(tmp_path / "missing", f"podman://{bare_node}", f"podman://{PREFIX}-missing")
    assert rc == 2 and f"podman://{PREFIX}-missing: no such podman container" in text and results is None
    # a stopped node: nothing was checked, and the earlier run's reports are gone from --out
    sim_nodes.stop_node(bare_node)
    rc, results, text = validate(tmp_path, f"podman://{bare_node}")
    assert rc == 2 and "no check ran on any target" in text
    assert f"podman://{bare_node}: unreachable podman: the container is not running" in text
    assert results is None


def test_an_image_without_the_hosts_driver_fails_and_a_missing_image_is_bad_input(node_image, tmp_path):
    rc, results, text = validate(tmp_path, f"image:{node_image}")
    assert rc == 1, text[-2000:]
    assert results["hosts"] == [f"image:{node_image}"]
    driver = next(r for r in results["results"] if r["check"] == "driver_version")
    assert driver["failure"]["summary"] == "no NPU driver is installed"
    rc, results, text = validate(tmp_path, "image:localhost/npuenv-no-such-image:1")
    assert rc == 2 and "image localhost/npuenv-no-such-image:1 does not exist" in text
    rc, results, text = validate(tmp_path, "image:--help")
    assert rc == 2 and "image:--help is not an image reference" in text
    # no container was left behind
    left = subprocess.run(["podman", "ps", "-a", "--filter", "name=npuenv-validate-", "--format", "{{.Names}}"],
                          capture_output=True, text=True).stdout.split()
    assert left == []


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_an_interrupted_image_validation_leaves_nothing_behind(node_image, tmp_path, signum):
    """Stopped while the suite runs inside the image's container: the container is
    removed, no report or temporary file stays, one line says so, exit 128+N."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "npuenv", "validate", "--target", f"image:{node_image}",
                             "--row", "2.13.0", "--level", "standard", "--out", str(tmp_path / "out")],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "TMPDIR": str(tmp)})

    def containers():
        return subprocess.run(["podman", "ps", "-a", "--filter", "name=npuenv-validate-", "--format", "{{.Names}}"],
                              capture_output=True, text=True).stdout.split()

    deadline = time.time() + 120
    while not containers() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert containers(), "the image's container never started"
    time.sleep(1)  # the artefact is being copied in or runs
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signum, (out, err)
    # what it said before the signal, and then one line; no host's run, ended by the signal, is told as a result
    *before, last = err.strip().splitlines()
    assert last == f"npuenv: validate: interrupted by {signum.name}; its temporary files are removed and " \
                   "nothing was written", err
    assert before == ["npuenv: checking 1 host at the standard level: a line each as it finishes"], err
    assert containers() == []
    assert not (tmp_path / "out").exists()
    assert list(tmp.iterdir()) == []

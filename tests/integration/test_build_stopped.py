"""An image build that a signal stops leaves no working containers behind.

podman 4.3 (and buildah 1.28) keep a multi-stage build's working containers when
the build is stopped by SIGTERM or SIGINT; they then pin the base image. The
build here starts from an image of its own, so that every container made from it
or from its stages is this test's, whatever else the engine runs meanwhile.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.integration

BASE = "localhost/debian:bookworm"

# The product's engine and progress, as images.build runs them, under the CLI's interrupt handling.
BUILD = """
import sys
from compat_matrix import interrupts
from images import engine
from images.progress import Progress

eng = engine.find("podman")
progress = Progress(lambda line: print(line, flush=True))
try:
    with interrupts.interruptible("the test build"), eng.removing_stopped_builds(progress, sys.argv[2]):
        progress.run(eng.build_command(dockerfile=sys.argv[1] + "/Dockerfile", context=sys.argv[1], contexts={},
                                       build_args={}, platform=None, iidfile=sys.argv[1] + "/iid"))
except interrupts.Interrupted as stopped:
    sys.exit(stopped.exit_code)
"""


def podman(*args: str) -> str:
    done = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout


def builders_from(image_ids: set[str]) -> list[str]:
    listed = json.loads(podman("ps", "--all", "--external", "--format", "json") or "[]") or []
    return [c["Id"] for c in listed if c.get("ImageID") in image_ids]


@pytest.fixture
def own_base(tmp_path: Path):
    """A base image no other test uses (a marker file on the Debian base); at the end its
    containers, the stage images made from it and the base itself are removed."""
    name = f"localhost/npuenv-test-stopped-{uuid.uuid4().hex[:12]}"
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "Dockerfile").write_text(f"FROM {BASE}\nRUN echo {name} > /marker\n")
    podman("build", "-q", "-t", name, str(tmp_path / "base"))
    images = {podman("image", "inspect", "--format", "{{.Id}}", name).strip()}
    yield name, images   # the test adds the stage images it sees
    subprocess.run(["podman", "rm", "--force", *builders_from(images)], capture_output=True)
    subprocess.run(["podman", "rmi", "--force", *images], capture_output=True)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_build_stopped_by_a_signal_in_its_second_stage_leaves_no_working_container(own_base, tmp_path, signum):
    name, images = own_base
    context = tmp_path / "context"
    context.mkdir()
    (context / "Dockerfile").write_text(f"FROM {name} AS os\nRUN echo one > /one\n"
                                        f"FROM os AS next\nRUN sleep 900\n")
    proc = subprocess.Popen([sys.executable, "-c", BUILD, str(context), name], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        stop_in_second_stage(proc, signum, images)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def stop_in_second_stage(proc: subprocess.Popen, signum: int, images: set[str]) -> None:
    seen = []
    for line in proc.stdout:   # to the second stage's RUN (the stage's container is made at its FROM)
        seen.append(line)
        if "RUN sleep 900" in line:
            break
    assert "RUN sleep 900" in "".join(seen), "".join(seen)
    stages = {podman("image", "inspect", "--format", "{{.Id}}", line.split()[1]).strip()
              for line in seen if line.startswith("--> ")}
    assert len(stages) == 1, seen
    images |= stages
    assert builders_from(images), "the running build shows no working container to leave behind"
    proc.send_signal(signum)
    # A build step of 900 s: the engine must be stopped with the command, not waited for.
    rest, _ = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signum, "".join(seen) + rest
    assert builders_from(images) == []

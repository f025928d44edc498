"""images.registry: the messages, the engine errors read as causes, and push and pull through fake
engines (podman and docker as shell scripts that log their calls), including docker's own push path and
the pull `npuenv validate --target image:REF` does. Found by mutation testing
(bench/mutate.py run images/registry.py); test_images_registry.py has the rest."""
from __future__ import annotations

import base64
import json
import os
import re
import signal
import tempfile
from pathlib import Path

import pytest

import compat_matrix as cm
from compat_matrix import interrupts
from images import registry

IMAGE_ID = "e0c96d65f113a72fdd3c7c9375deaf07dafcd7961bd41eb24958563b6634efa9"
LABELS = {"io.npuenv.row.torch_npu": "2.13.0", "io.npuenv.row.cann": "9.1.0", "io.npuenv.stack.python": "3.11",
          "io.npuenv.stack.os": "debian12", "io.npuenv.stack.arch": "x86_64", "io.npuenv.stack.chip": "910b",
          "io.npuenv.stack.cann_only": "false"}
TAG = "2.13.0-cann9.1.0-py3.11-debian12-x86_64-910b"
DIGEST = "sha256:" + "0" * 63 + "7"
USER, PASSWORD = registry.CREDS_ENV


# ------------------------------------------------------------------ engine errors

@pytest.mark.parametrize("output, action, expected", [
    # the last error line is the one read: "Error ..." / "FATAL ..." at the start, or "error:" anywhere
    ("Copying blob\nError writing blob: EOF\nStoring signatures\n", "push", "push failed: Error writing blob: EOF"),
    ("Copying blob\nFATAL: registry gone\nStoring signatures\n", "push", "push failed: FATAL: registry gone"),
    ("Copying config\nwriting manifest: Error: manifest invalid\nStoring signatures\n", "push",
     "push failed: writing manifest: Error: manifest invalid"),
    # no error line: the last line; no output at all: said so
    ("Copying blob\nsomething odd\n", "push", "push failed: something odd"),
    ("\n  \n", "pull", "pull failed: no output"),
    ("", "push", "push failed: no output"),
    # a missing image is the user's problem only when pulling
    ("Error: initializing source docker://r.example/x:1: reading manifest 1 in r.example/x: manifest unknown\n",
     "pull", "r.example has no such image (manifest unknown); `npuenv image push` prints the references it wrote"),
    ("Error: writing manifest: name unknown: repository r.example/x not found\n", "push",
     "push failed: Error: writing manifest: name unknown: repository r.example/x not found"),
    ("Error: something new broke\n", "pull", "pull failed: Error: something new broke"),
    # the reason starts at the first word that names the cause
    ("Error: denied: requested access to the resource is denied\n", "push",
     "r.example refused the credentials (denied: requested access to the resource is denied). Log in with `podman "
     f"login r.example` (the engine's auth file), or pass --authfile FILE, or --creds-from-env with {USER} and "
     f"{PASSWORD} set"),
])
def test_the_engines_error_line_becomes_the_users_problem(output, action, expected):
    assert registry.explain(output, "r.example", action) == expected


# ------------------------------------------------------------------ credentials

def test_credentials_from_the_environment_name_what_is_missing_or_wrong(monkeypatch):
    monkeypatch.delenv(USER, raising=False)
    monkeypatch.delenv(PASSWORD, raising=False)
    with pytest.raises(cm.UserError) as e:
        registry.credentials_from_env()
    assert str(e.value) == (f"--creds-from-env: {USER} and {PASSWORD} not set; export the registry user as {USER} "
                            f"and the password or token as {PASSWORD}")
    monkeypatch.setenv(USER, "robot")
    with pytest.raises(cm.UserError, match=f"--creds-from-env: {PASSWORD} not set; "):
        registry.credentials_from_env()
    monkeypatch.setenv(USER, "robot:ci")
    monkeypatch.setenv(PASSWORD, "pw")
    with pytest.raises(cm.UserError) as e:
        registry.credentials_from_env()
    assert str(e.value) == f"--creds-from-env: {USER} holds a ':'; it should be the user name alone"
    monkeypatch.setenv(USER, "robot")
    assert registry.credentials_from_env() == ("robot", "pw")


def test_the_auth_file_is_the_json_podman_login_writes():
    # containers-auth.json(5): {"auths": {REGISTRY: {"auth": base64("user:password")}}}
    token = base64.b64encode(b"robot:p:w").decode()
    assert registry.auth_json("r.example:5000", "robot", "p:w") == (
        '{\n  "auths": {\n    "r.example:5000": {\n      "auth": "' + token + '"\n    }\n  }\n}\n')


@pytest.mark.parametrize("access, message", [
    (dict(authfile=Path("a.json"), creds_from_env=True),
     "--authfile and --creds-from-env both name the credentials: give one of them"),
    (dict(cert_dir=Path("."), ca_cert=Path("ca.pem")),
     "--cert-dir and --ca-cert both name the registry's CA: give one of them"),
])
def test_options_that_say_the_same_twice(access, message):
    with pytest.raises(cm.UserError) as e:
        registry.Access(**access).check()
    assert str(e.value) == message


def test_a_cert_dir_file_that_is_no_plain_file_is_named_as_such(tmp_path):
    certs = tmp_path / "certs.d"
    certs.mkdir()
    (certs / "ca.crt").mkdir()
    with pytest.raises(cm.UserError) as e:
        registry.Access(cert_dir=certs).check()
    assert str(e.value).startswith(f"--cert-dir {certs}: {certs / 'ca.crt'}: is a folder; a certificate or key of "
                                   f"the cert folder must be a file")


# ------------------------------------------------------------------ references and tags

def test_repositories_name_their_registry():
    assert registry.split_repository("registry:5000/ai/npu") == ("registry:5000", "ai/npu")
    for bad, why in (("team/npu", "name the registry, e.g. harbor.example.com/ai/npuenv or 127.0.0.1:5000/npuenv "
                                  "(a name without one would go to docker.io)"),
                     ("r.example/npu:1", "give the repository without a tag or digest (the tags say what the image "
                                         "is: {tag}, {tag}-{image_id})")):
        with pytest.raises(cm.UserError) as e:
            registry.split_repository(bad)
        assert str(e.value) == f"REGISTRY/REPO {bad!r}: {why}"
    with pytest.raises(cm.UserError) as e:
        registry.split_repository("Team/Npu")
    assert str(e.value).startswith("REGISTRY/REPO 'Team/Npu' is not a valid image reference")


@pytest.mark.parametrize("ref, registry_name", [
    ("localhost/npu:1", "localhost"), ("registry:5000/npu:1", "registry:5000"), ("r.example/npu", "r.example"),
    ("team/npu:1", "docker.io"), ("npu:1", "docker.io"), ("localhostx/npu", "docker.io"),
])
def test_the_registry_of_a_reference(ref, registry_name):
    assert registry.registry_of(ref) == registry_name


def test_tags_need_every_label_and_must_be_tags():
    labels = {k: v for k, v in LABELS.items() if k not in ("io.npuenv.row.cann", "io.npuenv.stack.os")}
    with pytest.raises(cm.UserError) as e:
        registry.tags_for(labels, IMAGE_ID, "localhost/x:1")
    assert str(e.value).startswith("localhost/x:1 lacks the labels io.npuenv.row.cann, io.npuenv.stack.os: ")
    with pytest.raises(cm.UserError) as e:
        registry.tags_for({**LABELS, "io.npuenv.stack.os": "debian 12"}, IMAGE_ID, "localhost/x:1")
    assert str(e.value) == (f"localhost/x:1: its labels give the tag '2.13.0-cann9.1.0-py3.11-debian 12-x86_64-910b', "
                            f"which is not a valid tag")


# ------------------------------------------------------------------ push and pull through fake engines

PODMAN = r"""
case "$1" in
  info) exit 0;;
  image) if [ -n "$NO_IMAGE" ]; then exit 125; fi
         printf '[{"Id": "%s", "Digest": "", "Labels": %s}]\n' "$IMAGE_ID" "$LABELS";;
  push) for a; do [ "$prev" = --digestfile ] && df="$a"; [ "$prev" = --authfile ] && cat "$a" >> "$LOG.auth"
                  prev="$a"; done
        if [ -n "$SLOW_PUSH" ]; then echo "Copying blob sha256:5e1f"; sleep 30; echo "push ran to its end" >> "$LOG"; fi
        n=$(grep -c '^podman push' "$LOG")
        if [ -n "$PUSH_ERROR" ] && [ "$n" -ge "${PUSH_FAIL_AT:-1}" ]; then echo "$PUSH_ERROR"; exit 125; fi
        echo "Writing manifest to image destination"; echo "$DIGEST" > "$df";;
  pull) for a; do [ "$prev" = --authfile ] && cat "$a" >> "$LOG.auth"; prev="$a"; done
        if [ -n "$SLOW_PUSH" ]; then echo "Copying blob sha256:5e1f"; sleep 30; echo "push ran to its end" >> "$LOG"; fi
        if [ -n "$PULL_ERROR" ]; then echo "Trying to pull $3..."; echo "$PULL_ERROR" >&2; exit 125; fi
        echo "Trying to pull ..."; echo "Writing manifest to image destination";;
esac
"""
DOCKER = r"""
case "$1" in
  info) exit 0;;
  buildx) exit 0;;
  image) printf '[{"Id": "sha256:%s", "RepoDigests": [], "Config": {"Labels": %s}}]\n' "$IMAGE_ID" "$LABELS";;
  tag) if [ -n "$TAG_ERROR" ]; then echo "$TAG_ERROR" >&2; exit 1; fi
       if [ -n "$TAG_FAILS" ]; then exit 1; fi;;
  push|pull) if [ -n "$DOCKER_CONFIG" ]; then cat "$DOCKER_CONFIG/config.json" >> "$LOG.auth"; fi;;&
  push) echo "The push refers to repository [$2]"
        if [ -z "$NO_DIGEST" ]; then echo "${2##*:}: digest: $DIGEST size: 1234"; fi;;
esac
"""


@pytest.fixture
def engines(tmp_path, monkeypatch):
    """A podman and a docker on PATH; returns the log of their calls (one line per call)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls.log"
    for name, script in (("podman", PODMAN), ("docker", DOCKER)):
        tool = bin_dir / name
        tool.write_text(f'#!/bin/bash\necho "{name} $*" >> "$LOG"\n{script}\n')
        tool.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    for key, value in (("LOG", str(log)), ("IMAGE_ID", IMAGE_ID), ("LABELS", json.dumps(LABELS)),
                       ("DIGEST", DIGEST)):
        monkeypatch.setenv(key, value)
    return log


def calls(log: Path, *commands: str) -> list[str]:
    return [line for line in log.read_text().splitlines() if line.split()[1] in commands]


def test_push_with_podman_logs_each_tag_and_returns_the_phases(engines, monkeypatch):
    monkeypatch.setenv(USER, "robot")
    monkeypatch.setenv(PASSWORD, "pw")
    lines: list[str] = []
    repo = "r.example:5000/ai/npu"
    result = registry.push("localhost/x:1", repo, engine="podman", access=registry.Access(creds_from_env=True),
                           log=lines.append)
    assert (result.repository, result.tags, result.digest) == (repo, [TAG, f"{TAG}-e0c96d65f113"], DIGEST)
    assert list(result.phases) == [f"push {repo}:{TAG}", f"push {repo}:{TAG}-e0c96d65f113"]
    assert result.seconds == sum(result.phases.values())
    assert re.fullmatch(rf"npuenv: pushed localhost/x:1 as {repo}:{TAG}, {repo}:{TAG}-e0c96d65f113 \({DIGEST}\) in "
                        r"\d+ s", lines[-1])
    assert lines[0] == f"npuenv: push {repo}:{TAG} ..."
    pushes = calls(engines, "push")
    digestfiles = [p.split("--digestfile ")[1].split()[0] for p in pushes]
    assert [Path(d).name for d in digestfiles] == ["digest-0", "digest-1"]
    assert Path(digestfiles[0]).parent.name.startswith("npuenv-push-") and not Path(digestfiles[0]).parent.exists()
    # the private auth file names the repository's registry
    auth = json.loads(Path(str(engines) + ".auth").read_text().split("\n}\n")[0] + "\n}\n")
    assert list(auth["auths"]) == ["r.example:5000"]


def test_push_that_fails_for_an_unknown_reason_quotes_the_engine(engines, monkeypatch):
    monkeypatch.setenv("PUSH_ERROR", "Error: something new broke")
    with pytest.raises(cm.UserError) as e:
        registry.push("localhost/x:1", "r.example/ai/npu", engine="podman")
    assert str(e.value) == "push failed: Error: something new broke. Nothing was tagged in r.example"


def test_a_push_that_fails_later_names_the_tags_already_in_the_registry(engines, monkeypatch):
    monkeypatch.setattr(registry, "load_push_tags", lambda: ["{tag}", "{tag}-{image_id}", "{tag}-latest"])
    monkeypatch.setenv("PUSH_ERROR", "Error: writing manifest: unauthorized: access denied")
    monkeypatch.setenv("PUSH_FAIL_AT", "3")
    with pytest.raises(cm.UserError) as e:
        registry.push("localhost/x:1", "r.example/ai/npu", engine="podman")
    assert str(e.value).endswith(f". {TAG}, {TAG}-e0c96d65f113 are in the registry; {TAG}-latest was not written")
    assert str(e.value).startswith("r.example refused the credentials (unauthorized: access denied).")


def test_push_of_an_image_without_npuenvs_labels_names_it(engines, monkeypatch):
    monkeypatch.setenv("LABELS", "{}")
    with pytest.raises(cm.UserError) as e:
        registry.push("localhost/x:1", "r.example/ai/npu", engine="podman")
    assert str(e.value).startswith("localhost/x:1 lacks the labels ")


def test_push_with_docker_tags_the_image_then_pushes_the_tag(engines):
    lines: list[str] = []
    result = registry.push("localhost/x:1", "r.example/ai/npu", engine="docker", log=lines.append)
    assert result.digest == DIGEST and calls(engines, "push", "tag") == [
        f"docker tag {IMAGE_ID} r.example/ai/npu:{TAG}", f"docker push r.example/ai/npu:{TAG}",
        f"docker tag {IMAGE_ID} r.example/ai/npu:{TAG}-e0c96d65f113",
        f"docker push r.example/ai/npu:{TAG}-e0c96d65f113"]
    assert not calls(engines, "pull") and not [l for l in engines.read_text().splitlines() if l.startswith("podman")]


def test_a_docker_tag_that_fails_is_an_error_not_a_traceback(engines, monkeypatch):
    monkeypatch.setenv("TAG_ERROR", "Error response from daemon: No such image")
    with pytest.raises(cm.UserError) as e:
        registry.push("localhost/x:1", "r.example/ai/npu", engine="docker")
    assert str(e.value) == (f"docker could not tag localhost/x:1 as r.example/ai/npu:{TAG}: Error response from "
                            f"daemon: No such image. Nothing was tagged in r.example")
    assert not calls(engines, "push")


def test_a_docker_tag_that_fails_silently_or_at_length(engines, monkeypatch):
    monkeypatch.setenv("TAG_FAILS", "1")
    with pytest.raises(cm.UserError) as e:
        registry.push("localhost/x:1", "r.example/ai/npu", engine="docker")
    assert str(e.value) == (f"docker could not tag localhost/x:1 as r.example/ai/npu:{TAG}: exit 1. Nothing was "
                            f"tagged in r.example")
    monkeypatch.setenv("TAG_ERROR", "x" * 100 + "y" * 300)
    with pytest.raises(cm.UserError) as e:
        registry.push("localhost/x:1", "r.example/ai/npu", engine="docker")
    assert str(e.value) == (f"docker could not tag localhost/x:1 as r.example/ai/npu:{TAG}: {'y' * 300}. Nothing was "
                            f"tagged in r.example")     # the end of a long reason, 300 characters


def test_docker_reads_the_credentials_from_its_config_for_push_and_pull(engines, monkeypatch):
    monkeypatch.setenv(USER, "robot")
    monkeypatch.setenv(PASSWORD, "pw")
    access = registry.Access(creds_from_env=True)
    registry.push("localhost/x:1", "r.example/ai/npu", engine="docker", access=access)
    registry.pull("r.example/ai/npu:1", engine="docker", access=access)
    configs = Path(str(engines) + ".auth").read_text().split("\n}\n")[:-1]
    assert [list(json.loads(c + "\n}\n")["auths"]) for c in configs] == [["r.example"]] * 3   # two tags, one pull


def test_a_pull_with_credentials_from_the_environment_names_the_references_registry(engines, monkeypatch):
    monkeypatch.setenv(USER, "robot")
    monkeypatch.setenv(PASSWORD, "pw")
    registry.pull("registry:5000/ai/npu:1", engine="podman", access=registry.Access(creds_from_env=True))
    auth = json.loads(Path(str(engines) + ".auth").read_text())
    assert auth == {"auths": {"registry:5000": {"auth": base64.b64encode(b"robot:pw").decode()}}}


def test_a_push_without_a_manifest_digest_is_not_reported_done(engines, monkeypatch):
    monkeypatch.setenv("NO_DIGEST", "1")
    with pytest.raises(cm.UserError) as e:
        registry.push("localhost/x:1", "r.example/ai/npu", engine="docker")
    assert str(e.value) == (f"docker pushed r.example/ai/npu:{TAG} but reported no manifest digest, so its tags "
                            f"cannot be checked to be one image; push again")


def test_pull_through_the_engine_with_its_options(engines, tmp_path):
    certs = tmp_path / "certs"
    certs.mkdir()
    (certs / "ca.crt").write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    lines: list[str] = []
    assert registry.pull("r.example/ai/npu:1", engine="podman", access=registry.Access(cert_dir=certs),
                         log=lines.append) is None
    assert calls(engines, "pull") == [f"podman pull --cert-dir {certs} docker://r.example/ai/npu:1"]
    assert lines[0] == "npuenv: pull r.example/ai/npu:1 ..." and lines[-1].startswith(
        "npuenv: pull r.example/ai/npu:1: done in ")


def test_pull_of_a_missing_image_or_a_bad_reference(engines, monkeypatch):
    monkeypatch.setenv("PULL_ERROR", "Error: initializing source docker://localhost/ai/npu:1: reading manifest 1 in "
                                     "localhost/ai/npu: manifest unknown")
    with pytest.raises(cm.UserError) as e:
        registry.pull("localhost/ai/npu:1", engine="podman")
    assert str(e.value) == ("cannot pull localhost/ai/npu:1: localhost has no such image (manifest unknown); "
                            "`npuenv image push` prints the references it wrote")
    engines.unlink()
    with pytest.raises(cm.UserError) as e:
        registry.pull("Bad/Ref", engine="podman")
    assert str(e.value).startswith("image 'Bad/Ref' is not a valid image reference")
    with pytest.raises(cm.UserError, match="give one of them"):
        registry.pull("localhost/ai/npu:1", engine="podman",
                      access=registry.Access(authfile=Path("a.json"), creds_from_env=True))
    assert not engines.exists()        # nothing ran


def test_pull_picks_the_engine_asked_for(engines):
    registry.pull("r.example/ai/npu:1", engine="docker")
    assert calls(engines, "pull") == ["docker pull r.example/ai/npu:1"]


@pytest.mark.parametrize("action", ["push", "pull"])
def test_a_push_or_pull_stopped_by_a_signal_stops_the_engine_and_leaves_no_private_file(
        engines, monkeypatch, tmp_path, action):
    """SIGTERM while the engine copies a blob: the engine is stopped, not waited for, and the private
    folders (the auth file made from NPUENV_REGISTRY_* among them) are removed."""
    monkeypatch.setenv(USER, "robot")
    monkeypatch.setenv(PASSWORD, "pw")
    monkeypatch.setenv("SLOW_PUSH", "1")
    private = tmp_path / "tmp"
    private.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(private))

    def operator(line: str) -> None:
        if "Copying blob" in line:
            os.kill(os.getpid(), signal.SIGTERM)
    access = registry.Access(creds_from_env=True)
    with pytest.raises(interrupts.Interrupted) as stopped:
        if action == "push":
            registry.push("localhost/x:1", "r.example/ai/npu", engine="podman", access=access, log=operator)
        else:
            registry.pull("r.example/ai/npu:1", engine="podman", access=access, log=operator)
    assert stopped.value.exit_code == 128 + signal.SIGTERM
    assert list(private.iterdir()) == []
    assert "push ran to its end" not in engines.read_text(), "the command waited for the engine"

"""`npuenv image push` without a registry: the tags an image gets (from its
labels), the repository check, the engine options for credentials and TLS
(files made for them are private and gone afterwards), the engines' push and
pull commands, the engine's errors turned into causes and fixes, and a push
that fails half-way naming what is in the registry."""
from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import pytest

import compat_matrix as cm
from compat_matrix import outputs
from images import engine, registry
from npuenv.cli import main

PODMAN = engine.Engine("podman", "/usr/bin/podman")
BUILDAH = engine.Engine("buildah", "/usr/bin/buildah")
DOCKER = engine.Engine("docker", "/usr/bin/docker")
IMAGE_ID = "e0c96d65f113a72fdd3c7c9375deaf07dafcd7961bd41eb24958563b6634efa9"
LABELS = {"io.npuenv.row.torch_npu": "2.13.0", "io.npuenv.row.cann": "9.1.0", "io.npuenv.stack.python": "3.11",
          "io.npuenv.stack.os": "debian12", "io.npuenv.stack.arch": "x86_64", "io.npuenv.stack.chip": "910b",
          "io.npuenv.stack.cann_only": "false"}
PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


def test_tags_say_what_the_image_is_and_name_the_build():
    assert registry.tags_for(LABELS, IMAGE_ID, "img") == [
        "2.13.0-cann9.1.0-py3.11-debian12-x86_64-910b", "2.13.0-cann9.1.0-py3.11-debian12-x86_64-910b-e0c96d65f113"]
    cann_only = {**LABELS, "io.npuenv.row.torch_npu": "2.8.0", "io.npuenv.row.cann": "8.3.RC1",
                 "io.npuenv.stack.cann_only": "true"}
    assert registry.tags_for(cann_only, "sha256:" + IMAGE_ID, "img")[0] == "cann8.3.RC1-py3.11-debian12-x86_64-910b"


def test_an_image_npuenv_did_not_build_has_no_tags():
    labels = {k: v for k, v in LABELS.items() if k != "io.npuenv.row.cann"}
    with pytest.raises(cm.UserError, match=r"img lacks the labels io.npuenv.row.cann: it was not built by `npuenv "
                                           r"image build`"):
        registry.tags_for(labels, IMAGE_ID, "img")


@pytest.mark.parametrize("repository, why", [
    ("npuenv/torch-npu", "name the registry"),
    ("team", "name the registry"),
    ("harbor.example.com/ai/npu:latest", "without a tag or digest"),
    ("harbor.example.com/ai/npu@sha256:" + "a" * 64, "without a tag or digest"),
    ("Harbor.example.com/AI/npu", "not a valid image reference"),
    ("-x.example/y", "not a valid image reference"),
])
def test_a_repository_must_name_its_registry_and_nothing_else(repository, why):
    with pytest.raises(cm.UserError, match=why):
        registry.split_repository(repository)


def test_repositories_and_references_split_at_the_registry():
    assert registry.split_repository("127.0.0.1:5000/npuenv/torch-npu") == ("127.0.0.1:5000", "npuenv/torch-npu")
    assert registry.split_repository("localhost/x") == ("localhost", "x")
    assert registry.registry_of("harbor.example.com/ai/npu:1") == "harbor.example.com"
    assert registry.registry_of("library/debian:12") == "docker.io"


def test_credentials_from_the_environment_go_to_a_private_auth_file_removed_afterwards(monkeypatch):
    monkeypatch.setenv("NPUENV_REGISTRY_USER", "robot$ci")
    monkeypatch.setenv("NPUENV_REGISTRY_PASSWORD", "p:a ss")
    access = registry.Access(creds_from_env=True).check()
    with registry.engine_options(PODMAN, access, "harbor.example.com") as (opts, env):
        assert opts[0] == "--authfile" and env is None
        auth = Path(opts[1])
        assert stat.S_IMODE(auth.stat().st_mode) == 0o600 and stat.S_IMODE(auth.parent.stat().st_mode) == 0o700
        token = json.loads(auth.read_text())["auths"]["harbor.example.com"]["auth"]
        assert base64.b64decode(token).decode() == "robot$ci:p:a ss"
        assert "p:a ss" not in " ".join(opts), "the password never goes on a command line"
    assert not auth.exists() and not auth.parent.exists()


def test_a_ca_file_becomes_a_cert_dir_and_options_pass_through(tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text(PEM)
    with registry.engine_options(BUILDAH, registry.Access(ca_cert=ca).check(), "r.example") as (opts, _):
        assert opts[0] == "--cert-dir" and (Path(opts[1]) / "ca.crt").read_text() == PEM
        made = Path(opts[1])
    assert not made.exists()
    (tmp_path / "auth.json").write_text("{}")
    access = registry.Access(authfile=tmp_path / "auth.json", cert_dir=tmp_path).check()
    with registry.engine_options(PODMAN, access, "r.example") as (opts, _):
        assert opts == ["--authfile", str(tmp_path / "auth.json"), "--cert-dir", str(tmp_path)]
    with registry.engine_options(PODMAN, registry.Access(), "r.example") as (opts, env):
        assert opts == [] and env is None, "the engine's own auth file and certs.d"


def test_docker_gets_credentials_through_its_config_and_refuses_a_ca(tmp_path, monkeypatch):
    monkeypatch.setenv("NPUENV_REGISTRY_USER", "u")
    monkeypatch.setenv("NPUENV_REGISTRY_PASSWORD", "pw")
    with registry.engine_options(DOCKER, registry.Access(creds_from_env=True), "r.example") as (opts, env):
        assert opts == [] and json.loads((Path(env["DOCKER_CONFIG"]) / "config.json").read_text())["auths"]
    ca = tmp_path / "ca.pem"
    ca.write_text(PEM)
    with pytest.raises(cm.UserError, match=r"/etc/docker/certs.d/r.example/ca.crt"):
        with registry.engine_options(DOCKER, registry.Access(ca_cert=ca), "r.example"):
            pass


@pytest.mark.parametrize("access, why", [
    (dict(authfile="nope.json"), r"--authfile nope.json: no such file \(the registry's auth file\); write one with "
                                 r"`podman login --authfile nope.json REGISTRY`"),
    (dict(cert_dir="no-such-dir"), r"--cert-dir no-such-dir: no such folder"),
    (dict(ca_cert="not-pem"), r"--ca-cert .*not-pem: not a PEM certificate"),
    (dict(creds_from_env=True), r"--creds-from-env: NPUENV_REGISTRY_USER and NPUENV_REGISTRY_PASSWORD not set"),
    (dict(authfile="auth.json", creds_from_env=True), r"give one of them"),
    (dict(ca_cert="not-pem", cert_dir="."), r"give one of them"),
])
def test_registry_options_are_checked_before_any_work(access, why, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("NPUENV_REGISTRY_USER", raising=False)
    monkeypatch.delenv("NPUENV_REGISTRY_PASSWORD", raising=False)
    (tmp_path / "not-pem").write_text("hello\n")
    (tmp_path / "auth.json").write_text("{}")
    with pytest.raises(cm.UserError, match=why):
        registry.Access(**{k: Path(v) if isinstance(v, str) else v for k, v in access.items()}).check()


@pytest.mark.parametrize("make, option, why", [
    (lambda p: os.mkfifo(p), "authfile", r"--authfile {p}: is not a regular file \(a pipe, socket or device\); the "
                                         r"registry's auth file must be a plain file; write one with `podman login"),
    (lambda p: p.symlink_to("/dev/zero"), "authfile", r"--authfile {p}: is not a regular file"),
    (lambda p: p.mkdir(), "authfile", r"--authfile {p}: is a folder; the registry's auth file must be a file"),
    (lambda p: os.mkfifo(p), "ca_cert", r"--ca-cert {p}: is not a regular file \(a pipe, socket or device\); the "
                                        r"registry's CA certificate must be a plain file; give the registry's CA"),
    (lambda p: p.symlink_to("/dev/zero"), "ca_cert", r"--ca-cert {p}: is not a regular file"),
    (lambda p: p.symlink_to("/dev/urandom"), "ca_cert", r"--ca-cert {p}: is not a regular file"),
    (lambda p: p.mkdir(), "ca_cert", r"--ca-cert {p}: is a folder"),
    (lambda p: (p.write_text(PEM), os.truncate(p, outputs.MAX_INPUT_BYTES + 1)), "ca_cert",
     rf"--ca-cert {{p}}: is {outputs.MAX_INPUT_BYTES + 1} bytes, more than the {outputs.MAX_INPUT_BYTES} bytes the "
     rf"registry's CA certificate may have"),
])
def test_a_registry_file_that_would_block_or_never_end_is_refused_unread(make, option, why, tmp_path):
    """A FIFO blocks whoever opens it (npuenv, or the engine it hands the path to) and /dev/zero never
    ends: each is refused at once, by name, before any engine runs."""
    path = tmp_path / "given"
    make(path)
    with pytest.raises(cm.UserError, match=why.format(p=path)):
        registry.Access(**{option: path}).check()


@pytest.mark.parametrize("name, make", [
    ("ca.crt", lambda p: os.mkfifo(p)),
    ("client.cert", lambda p: p.symlink_to("/dev/zero")),
    ("client.key", lambda p: os.mkfifo(p)),
    ("extra.crt", lambda p: p.mkdir()),
])
def test_every_file_the_engine_reads_in_a_cert_dir_is_a_plain_file(name, make, tmp_path):
    certs = tmp_path / "certs.d"
    certs.mkdir()
    if name != "ca.crt":
        (certs / "ca.crt").write_text(PEM)
    make(certs / name)
    with pytest.raises(cm.UserError, match=rf"--cert-dir {certs}: {certs / name}: is (not a regular file|a folder).*"
                                           rf"the engine reads every \*.crt, \*.cert, \*.key file there"):
        registry.Access(cert_dir=certs).check()
    os.rmdir(certs / name) if (certs / name).is_dir() else os.unlink(certs / name)
    os.mkfifo(certs / "notes.txt")   # a file the engine does not read may be anything
    assert registry.Access(cert_dir=certs).check().cert_dir == certs


def test_the_ca_and_auth_files_given_to_the_engine_are_the_checked_bytes(tmp_path, monkeypatch):
    """The engine gets a copy of what was checked: a path swapped for a FIFO or /dev/zero after the
    check is refused again, not streamed into the private folder."""
    ca, auth = tmp_path / "ca.pem", tmp_path / "auth.json"
    ca.write_text(PEM)
    auth.write_text('{"auths": {}}')
    access = registry.Access(ca_cert=ca).check()
    ca.unlink()
    ca.symlink_to("/dev/zero")
    with pytest.raises(cm.UserError, match=rf"--ca-cert {ca}: is not a regular file"):
        with registry.engine_options(PODMAN, access, "r.example"):
            pass
    access = registry.Access(authfile=auth).check()
    with registry.engine_options(DOCKER, access, "r.example") as (_, env):
        assert (Path(env["DOCKER_CONFIG"]) / "config.json").read_text() == '{"auths": {}}'
    auth.unlink()
    os.mkfifo(auth)
    with pytest.raises(cm.UserError, match=rf"--authfile {auth}: is not a regular file"):
        with registry.engine_options(DOCKER, access, "r.example"):
            pass


def test_push_and_pull_commands_per_engine():
    assert PODMAN.push_command(IMAGE_ID, "r.example/a:t", ["--authfile", "A"], "/t/d") == [
        "/usr/bin/podman", "push", "--authfile", "A", "--digestfile", "/t/d", IMAGE_ID, "docker://r.example/a:t"]
    assert BUILDAH.push_command(IMAGE_ID, "r.example/a:t", [], "/t/d")[:2] == ["/usr/bin/buildah", "push"]
    assert DOCKER.push_command(IMAGE_ID, "r.example/a:t", [], "/t/d") == ["/usr/bin/docker", "push", "r.example/a:t"]
    assert DOCKER.pushed_digest("t: digest: sha256:" + "b" * 64 + " size: 1234\n", "") == "sha256:" + "b" * 64
    assert PODMAN.pull_command("r.example/a:t", ["--cert-dir", "D"]) == [
        "/usr/bin/podman", "pull", "--cert-dir", "D", "docker://r.example/a:t"]


@pytest.mark.parametrize("output, expected", [
    ("Copying blob sha256:32\nError: trying to reuse blob sha256:32 at destination: checking whether a blob sha256:32 "
     "exists in 127.0.0.1:5000/a: unauthorized: authentication required\n",
     "127.0.0.1:5000 refused the credentials (unauthorized: authentication required). Log in with `podman login "
     "127.0.0.1:5000`"),
    ('Error: pinging container registry 127.0.0.1:5000: Get "https://127.0.0.1:5000/v2/": x509: certificate signed '
     'by unknown authority\n',
     "cannot verify 127.0.0.1:5000's TLS certificate (x509: certificate signed by unknown authority); pass its CA "
     "with --ca-cert FILE or --cert-dir DIR"),
    ('Error: pinging container registry 127.0.0.1:5000: Get "https://127.0.0.1:5000/v2/": dial tcp 127.0.0.1:5000: '
     'connect: connection refused\n',
     "cannot reach 127.0.0.1:5000 (connection refused); check the address"),
    ("Error: something new broke\n", "push failed: Error: something new broke"),
])
def test_engine_errors_become_a_cause_and_a_fix(output, expected):
    assert registry.explain(output, "127.0.0.1:5000", "push").startswith(expected)


def fake_engine(bin_dir: Path, script: str) -> None:
    bin_dir.mkdir(parents=True, exist_ok=True)
    tool = bin_dir / "podman"
    tool.write_text(f'#!/bin/bash\necho "podman $*" >> "{bin_dir}/calls.log"\n{script}\n')
    tool.chmod(0o755)


# A podman whose store holds one image built by npuenv; its second push fails when FAIL_SECOND is set.
FAKE = r"""
case "$1" in
  info) exit 0;;
  image) printf '[{"Id": "%s", "Digest": "", "Labels": %s}]\n' "$IMAGE_ID" "$LABELS";;
  push)
    for a; do [ "$prev" = --digestfile ] && df="$a"; prev="$a"; done
    n=$(grep -c '^podman push' "$(dirname "$0")/calls.log")
    if [ -n "$FAIL_SECOND" ] && [ "$n" -ge 2 ]; then echo "Error: writing manifest: unauthorized: access denied"; exit 125; fi
    echo "Writing manifest to image destination"
    if [ -n "$OTHER_DIGEST" ] && [ "$n" -ge 2 ]; then echo "sha256:$(printf %064d 8)" > "$df"
    else echo "sha256:$(printf %064d 7)" > "$df"; fi;;
esac
"""


def test_push_writes_every_tag_on_one_digest_and_a_later_failure_names_what_is_there(tmp_path, monkeypatch, capsys):
    bin_dir = tmp_path / "bin"
    fake_engine(bin_dir, FAKE)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    monkeypatch.setenv("IMAGE_ID", IMAGE_ID)
    monkeypatch.setenv("LABELS", json.dumps(LABELS))
    repo = "r.example:5000/ai/npu"
    assert main(["image", "push", repo, "--image", "localhost/x:1"]) == 0
    out = capsys.readouterr().out.splitlines()
    tag = "2.13.0-cann9.1.0-py3.11-debian12-x86_64-910b"
    assert out == [f"{repo}:{tag}", f"{repo}:{tag}-e0c96d65f113",
                   f"{repo}@sha256:{'0' * 63}7  (the manifest digest: pull by it to get exactly this image)"]
    pushes = [l for l in (bin_dir / "calls.log").read_text().splitlines() if l.startswith("podman push")]
    assert [p.split()[-1] for p in pushes] == [f"docker://{repo}:{tag}", f"docker://{repo}:{tag}-e0c96d65f113"]
    assert all(f" {IMAGE_ID} " in p for p in pushes), "pushed by id: what was inspected is what goes"

    (bin_dir / "calls.log").unlink()
    monkeypatch.setenv("FAIL_SECOND", "1")
    assert main(["image", "push", repo, "--image", "localhost/x:1"]) == 2
    err = capsys.readouterr().err
    assert ("r.example:5000 refused the credentials (unauthorized: access denied). Log in with" in err
            and f"{tag} is in the registry; {tag}-e0c96d65f113 was not written" in err)


def test_tags_that_got_different_manifests_are_an_error(tmp_path, monkeypatch, capsys):
    bin_dir = tmp_path / "bin"
    fake_engine(bin_dir, FAKE)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    monkeypatch.setenv("IMAGE_ID", IMAGE_ID)
    monkeypatch.setenv("LABELS", json.dumps(LABELS))
    monkeypatch.setenv("OTHER_DIGEST", "1")
    assert main(["image", "push", "r.example/ai/npu", "--image", "localhost/x:1"]) == 2
    assert "the engine wrote two different manifests for one image; push again" in capsys.readouterr().err


def test_push_of_a_missing_image_or_with_bad_options_does_nothing(tmp_path, monkeypatch, capsys):
    bin_dir = tmp_path / "bin"
    fake_engine(bin_dir, 'case "$1" in info) exit 0;; image) echo "Error: no such image" >&2; exit 125;; esac')
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    assert main(["image", "push", "r.example/ai/npu", "--image", "localhost/none:1"]) == 2
    assert "no image localhost/none:1 in podman's store; build it with `npuenv image build`" in capsys.readouterr().err
    (bin_dir / "calls.log").unlink()
    assert main(["image", "push", "r.example/ai/npu", "--image", "localhost/none:1", "--ca-cert",
                 str(tmp_path / "missing.pem")]) == 2
    assert "--ca-cert" in capsys.readouterr().err and not (bin_dir / "calls.log").exists()
    assert main(["image", "build", "--row", "2.13.0", "--installers", str(tmp_path), "--cann-only",
                 "--authfile", "x.json"]) == 2
    assert "are for --push REGISTRY/REPO" in capsys.readouterr().err

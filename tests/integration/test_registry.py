"""Images through a real registry: Debian's docker-registry on loopback with TLS
(a throw-away CA) and basic auth (bcrypt htpasswd), started for this module and
removed after it.

The session's full image (test_images.py builds it once) is pushed with
`npuenv image push`: a wrong password is refused and tags nothing; the right
one gives the tags that say what the image is, both on one manifest digest.
Then, in a container storage of its own where the image has never been, it is
validated from the registry (`npuenv validate --target image:REGISTRY/REPO:TAG`
pulls it first), and the SBOM written at its build is checked against what the
pulled image holds: its dpkg and pip lists, the wheels and installers it was
built from, its base image's digest and its SBOM label.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import compat_matrix as cm
from npuenv.cli import main
from tests.integration.registry_server import RegistryServer
from tests.integration.test_images import CURRENT, OS, images, make_atlas_host  # noqa: F401 (a fixture)

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
REPO = "npuenv/torch-npu"
# What the tags must say for torch_npu 2.13.0 / CANN 9.1.0 / Python 3.11 / debian12 / x86_64 / 910B (the row's
# CANN from the matrix; the other fields are the session's image's).
TAG = "2.13.0-cann9.1.0-py3.11-debian12-x86_64-910b"
CHECKS = ("cann_toolkit", "nnal", "login_environment", "python_versions", "pip_check", "cann_python_deps",
          "torch_npu_libraries", "torch_npu_import")


def podman(*args: str, env: dict | None = None, check: bool = True, timeout: int = 600) -> subprocess.CompletedProcess:
    done = subprocess.run(["podman", *args], capture_output=True, text=True, env=env, timeout=timeout)
    if check and done.returncode != 0:
        raise AssertionError(f"podman {' '.join(args[:3])} failed ({done.returncode}): {done.stderr[-2000:]}")
    return done


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    for tool, package in (("docker-registry", "docker-registry"), ("htpasswd", "apache2-utils")):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is not installed (Debian package {package}): run `make setup`")
    with RegistryServer(tmp_path_factory.mktemp("registry")) as server:
        yield server
    assert not server.dir.exists(), "the registry's storage must be gone"


@pytest.fixture(scope="module")
def cert_dir(registry, tmp_path_factory) -> Path:
    """A --cert-dir as podman reads it: the registry's CA as ca.crt."""
    d = tmp_path_factory.mktemp("certs")
    shutil.copy(registry.ca_file, d / "ca.crt")
    return d


@pytest.fixture(scope="module")
def authfile(registry, cert_dir, tmp_path_factory) -> Path:
    """Credentials the way users make them: `podman login --authfile`."""
    path = tmp_path_factory.mktemp("auth") / "auth.json"
    done = subprocess.run(["podman", "login", "--authfile", str(path), "--cert-dir", str(cert_dir), "-u",
                           registry.user, "--password-stdin", registry.address], input=registry.password,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return path


def test_a_wrong_password_is_refused_and_nothing_is_tagged(images, registry, monkeypatch, capsys):
    monkeypatch.setenv("NPUENV_REGISTRY_USER", registry.user)
    monkeypatch.setenv("NPUENV_REGISTRY_PASSWORD", "not-the-password")
    rc = main(["image", "push", f"{registry.address}/{REPO}", "--image", images["full"]["tag"], "--creds-from-env",
               "--ca-cert", str(registry.ca_file)])
    err = capsys.readouterr().err
    assert rc == 2, err[-2000:]
    assert f"{registry.address} refused the credentials (unauthorized: authentication required)" in err
    assert f"Nothing was tagged in {registry.address}" in err and "Traceback" not in err
    assert registry.tags(REPO) == []
    # and a registry whose CA is not given is not trusted
    monkeypatch.setenv("NPUENV_REGISTRY_PASSWORD", registry.password)
    rc = main(["image", "push", f"{registry.address}/{REPO}", "--image", images["full"]["tag"], "--creds-from-env"])
    err = capsys.readouterr().err
    assert rc == 2 and f"cannot verify {registry.address}'s TLS certificate (x509: certificate signed by unknown " \
                       f"authority)" in err
    assert registry.tags(REPO) == []


@pytest.fixture(scope="module")
def pushed(images, registry, authfile, cert_dir) -> dict:
    out = subprocess.run([sys.executable, "-m", "npuenv", "image", "push", f"{registry.address}/{REPO}", "--image",
                          images["full"]["tag"], "--authfile", str(authfile), "--cert-dir", str(cert_dir)],
                         capture_output=True, text=True, cwd=ROOT, timeout=900)
    assert out.returncode == 0, (out.stdout + out.stderr)[-3000:]
    return {"stdout": out.stdout, "stderr": out.stderr}


def test_push_gives_tags_that_say_what_the_image_is_on_one_digest(images, registry, pushed):
    image_id = json.loads(podman("image", "inspect", images["full"]["tag"]).stdout)[0]["Id"]
    want = [TAG, f"{TAG}-{image_id[:12]}"]
    assert sorted(registry.tags(REPO)) == sorted(want)
    digests = {t: registry.get(f"/v2/{REPO}/manifests/{t}", accept="application/vnd.oci.image.manifest.v1+json, "
                               "application/vnd.docker.distribution.manifest.v2+json")[0]["Docker-Content-Digest"]
               for t in want}
    assert len(set(digests.values())) == 1
    lines = pushed["stdout"].splitlines()
    assert lines[:2] == [f"{registry.address}/{REPO}:{t}" for t in want]
    assert lines[2].startswith(f"{registry.address}/{REPO}@{digests[TAG]}")
    # progress: what ran and how long it took
    assert f"npuenv: push {registry.address}/{REPO}:{TAG} ..." in pushed["stderr"]
    assert f"npuenv: push {registry.address}/{REPO}:{TAG}: done in " in pushed["stderr"]


def test_buildah_pushes_the_same_image_to_the_same_digest(images, registry, pushed, authfile, cert_dir, capsys):
    assert main(["image", "push", f"{registry.address}/{REPO}", "--image", images["full"]["tag"], "--engine",
                 "buildah", "--authfile", str(authfile), "--cert-dir", str(cert_dir)]) == 0
    assert capsys.readouterr().out.splitlines() == pushed["stdout"].splitlines()


@pytest.fixture(scope="module")
def private_store(tmp_path_factory):
    """podman's environment for a container storage of its own, which has never held the image."""
    tmp = tmp_path_factory.mktemp("store")
    conf = tmp / "storage.conf"
    conf.write_text(f'[storage]\ndriver = "overlay"\ngraphroot = "{tmp}/graph"\nrunroot = "{tmp}/run"\n')
    env = {**os.environ, "CONTAINERS_STORAGE_CONF": str(conf)}
    assert podman("info", "--format", "{{.Store.GraphRoot}}", env=env).stdout.strip() == f"{tmp}/graph"
    yield env
    for image in podman("images", "-q", env=env, check=False).stdout.split():
        podman("rmi", "-f", image, env=env, check=False)
    shutil.rmtree(tmp / "graph", ignore_errors=True)
    shutil.rmtree(tmp / "run", ignore_errors=True)


@pytest.fixture(scope="module")
def validated(pushed, registry, private_store, tmp_path_factory) -> dict:
    """`npuenv validate --target image:REGISTRY/REPO:TAG?...` in the private store: it pulls the image
    (credentials from the environment, the test CA) and runs the image's own checks, with a fake
    Atlas host's devices and driver mounted as a real run would."""
    ref = f"{registry.address}/{REPO}:{TAG}"
    assert podman("image", "exists", ref, env=private_store, check=False).returncode == 1, "not there before"
    tmp = tmp_path_factory.mktemp("validate")
    host = make_atlas_host(tmp / "host")
    env = {**private_store, "NPUENV_REGISTRY_USER": registry.user, "NPUENV_REGISTRY_PASSWORD": registry.password}
    target = f"image:{ref}?creds_from_env=1&ca_cert={registry.ca_file}"
    p = subprocess.run([sys.executable, "-m", "npuenv", "validate", "--target", target, "--row", CURRENT,
                        "--level", "quick", *[a for c in CHECKS for a in ("--only", c)], "--host-root", str(host),
                        f"--run-arg=-v={host / 'npu-sim'}:/etc/npu-sim:ro", "--out", str(tmp / "out")],
                       capture_output=True, text=True, cwd=ROOT, env=env, timeout=900)
    results = tmp / "out" / "results.json"
    return {"ref": ref, "rc": p.returncode, "output": p.stdout + p.stderr, "env": env,
            "results": json.loads(results.read_text()) if results.exists() else None}


def test_validate_pulls_the_image_from_the_registry(validated, registry, private_store, tmp_path):
    assert validated["rc"] == 0, validated["output"][-4000:]
    assert f"npuenv: pull {validated['ref']} ..." in validated["output"]
    assert {r["check"]: r["status"] for r in validated["results"]["results"]} == {c: "passed" for c in CHECKS}
    assert podman("image", "exists", validated["ref"], env=private_store, check=False).returncode == 0
    # a wrong password when pulling is bad input, with the registry's reason
    env = {**validated["env"], "NPUENV_REGISTRY_PASSWORD": "wrong"}
    p = subprocess.run([sys.executable, "-m", "npuenv", "validate", "--target",
                        f"image:{registry.address}/{REPO}:{TAG}-nope?creds_from_env=1&ca_cert={registry.ca_file}",
                        "--row", CURRENT, "--out", str(tmp_path / "refused")], capture_output=True, text=True,
                       cwd=ROOT, env=env, timeout=300)
    assert p.returncode == 2, (p.stdout + p.stderr)[-2000:]
    assert f"cannot pull {registry.address}/{REPO}:{TAG}-nope: {registry.address} refused the credentials" in p.stderr


def _sbom_components(sbom: dict, prefix: str) -> dict[str, dict]:
    return {c["name"]: c for c in sbom["components"] if c.get("purl", "").startswith(prefix)}


def test_the_sbom_matches_what_the_pulled_image_holds(images, validated, private_store):
    ref = validated["ref"]
    assert podman("image", "exists", ref, env=private_store, check=False).returncode == 0, validated["output"][-3000:]
    sbom_path = Path(images["full"]["sbom"])
    sbom = json.loads(sbom_path.read_text())
    labels = json.loads(podman("image", "inspect", ref, env=private_store).stdout)[0]["Labels"]
    # the label points at this SBOM (file name and sha256) and came through the registry
    assert labels["io.npuenv.sbom.file"] == sbom_path.name
    assert labels["io.npuenv.sbom.sha256"] == sha256_file(sbom_path)
    assert sbom["bomFormat"] == "CycloneDX" and sbom["specVersion"] == "1.6"

    def run(*argv: str) -> str:
        return podman("run", "--rm", "--network", "none", "--user", "0", "--entrypoint", argv[0], ref, *argv[1:],
                      env=private_store).stdout

    # every installed dpkg package, with its version, and nothing else
    dpkg = run("dpkg-query", "-W", "-f", "${db:Status-Abbrev} ${Package} ${Version}\n")
    installed = {parts[1]: parts[2] for parts in (l.split() for l in dpkg.splitlines()) if parts[0] == "ii"}
    debs = _sbom_components(sbom, "pkg:deb/")
    assert {n: c["version"] for n, c in debs.items()} == installed
    # every distribution pip lists in the venv, with its version; each one from the wheelhouse with its wheel's sha256
    pip = json.loads(run("/opt/npuenv/venv/bin/pip", "list", "--format", "json", "--disable-pip-version-check"))
    pypi = _sbom_components(sbom, "pkg:pypi/")
    assert {n.lower().replace("_", "-"): c["version"] for n, c in pypi.items()} == \
        {d["name"].lower().replace("_", "-"): d["version"] for d in pip}
    house = Path(images["house"])
    wheels = {w.name: sha256_file(w) for w in house.glob("*.whl")}
    for name, comp in pypi.items():
        props = {p["name"]: p["value"] for p in comp.get("properties", [])}
        if "io.npuenv:wheel" in props:
            assert comp["hashes"] == [{"alg": "SHA-256", "content": wheels[props["io.npuenv:wheel"]]}], name
        else:
            assert name == "pip", f"{name} is in the venv but not from the wheelhouse"
    assert {"torch", "torch_npu"} <= set(pypi) or {"torch", "torch-npu"} <= set(pypi)
    assert len([c for c in pypi.values() if c.get("hashes")]) == len(wheels), "every wheel is installed and listed"
    # every vendor installer the image was built from (its labels name them), with its sha256; not the
    # driver's and firmware's, which lie in the same folder but never enter an image
    installers = Path(images["installers"]["current"])
    listed = {c["name"]: c["hashes"][0]["content"] for c in sbom["components"] if c["bom-ref"].startswith("installer:")}
    used = {v for k, v in labels.items() if k.startswith("io.npuenv.installer.") and not k.endswith(".sha256")}
    assert len(used) == 3 and listed == {name: sha256_file(installers / name) for name in used}
    assert any("hdk" in p.name for p in installers.glob("*.run")) and not any("hdk" in n for n in listed)
    # the base image and its digest, as the engine has it
    base_ref = cm.load_platforms().operating_systems[OS]["base_image"]
    base_digest = json.loads(podman("image", "inspect", base_ref).stdout)[0]["Digest"]
    base = next(c for c in sbom["components"] if c["bom-ref"] == "base-image")
    assert base["name"] == base_ref and base["version"] == base_digest
    assert labels["org.opencontainers.image.base.digest"] == base_digest
    # the OS itself
    release = dict(l.split("=", 1) for l in run("cat", "/etc/os-release").splitlines() if "=" in l)
    os_comp = next(c for c in sbom["components"] if c["type"] == "operating-system")
    assert (os_comp["name"], os_comp["version"]) == (release["ID"], release["VERSION_ID"].strip('"'))

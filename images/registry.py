"""Images in a registry: `npuenv image push`, and the pull that `npuenv validate
--target image:REGISTRY/REPO:TAG` does, both through the engine's own client
(podman push/pull, buildah push/pull, docker push/pull).

Credentials come from the engine's normal auth file (`podman login`), from
--authfile FILE, or from the environment with --creds-from-env (CREDS_ENV),
written to a private auth file for the one command and removed after it: a
password never appears on a command line. TLS is always verified: against the
system's CAs and the engine's own certs.d, a --cert-dir DIR (podman's and
buildah's format: the CA as DIR/ca.crt), or a --ca-cert FILE.

Nothing is half-pushed: a registry shows a tag only once the tag's manifest is
written, the last step of a push, after every layer is there. The image is
pushed under its first tag, then the others (only their manifests move); every
tag must give the same manifest digest.
"""
from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from compat_matrix import UserError, interrupts, outputs, refs

from . import engine as engines
from . import render
from .progress import Progress

Log = Callable[[str], None]
CREDS_ENV = ("NPUENV_REGISTRY_USER", "NPUENV_REGISTRY_PASSWORD")
# The CA file name podman and buildah read in a --cert-dir (containers-certs.d(5)).
CA_FILE_IN_CERT_DIR = "ca.crt"
# Every file they read there: CAs, client certificates and their keys (containers-certs.d(5)).
CERT_DIR_SUFFIXES = (".crt", ".cert", ".key")
# Where docker's daemon reads a registry's CA (docker has no per-command option).
DOCKER_CERTS_D = "/etc/docker/certs.d"


def _quiet(_msg: str) -> None:
    pass


@dataclass(frozen=True)
class Access:
    """How to reach a registry: credentials and the TLS roots, beyond the engine's defaults."""
    authfile: Path | None = None
    cert_dir: Path | None = None
    ca_cert: Path | None = None
    creds_from_env: bool = False

    def check(self) -> "Access":
        if self.authfile is not None and self.creds_from_env:
            raise UserError("--authfile and --creds-from-env both name the credentials: give one of them")
        if self.cert_dir is not None and self.ca_cert is not None:
            raise UserError("--cert-dir and --ca-cert both name the registry's CA: give one of them")
        if self.authfile is not None:   # the engine reads it: a FIFO would hang it, /dev/zero fill its memory
            _registry_file("--authfile", self.authfile, "the registry's auth file",
                           f"write one with `podman login --authfile {self.authfile} REGISTRY`", read=False)
        if self.cert_dir is not None:
            if not Path(self.cert_dir).is_dir():
                raise UserError(f"--cert-dir {self.cert_dir}: no such folder; it should hold the registry's CA as "
                                f"{CA_FILE_IN_CERT_DIR}")
            for entry in sorted(Path(self.cert_dir).iterdir()):
                if entry.name.endswith(CERT_DIR_SUFFIXES):   # what the engine will read
                    _registry_file(f"--cert-dir {self.cert_dir}:", entry, "a certificate or key of the cert folder",
                                   f"the engine reads every {', '.join('*' + s for s in CERT_DIR_SUFFIXES)} file "
                                   f"there", read=False)
        if self.ca_cert is not None:
            self.ca_pem()
        if self.creds_from_env:
            credentials_from_env()
        return self

    def ca_pem(self) -> bytes:
        """The --ca-cert file's bytes: a regular file of bounded size holding a PEM certificate."""
        fix = "give the registry's CA certificate in PEM"
        data = _registry_file("--ca-cert", self.ca_cert, "the registry's CA certificate", fix, read=True)
        if b"-----BEGIN CERTIFICATE-----" not in data:
            raise UserError(f"--ca-cert {self.ca_cert}: not a PEM certificate (no BEGIN CERTIFICATE line); {fix}")
        return data


def _registry_file(option: str, path: Path, what: str, fix: str, *, read: bool) -> bytes | None:
    """A file of the registry options, refused (with the option and the fix) unless it is a regular
    file of bounded size; its bytes when ``read``."""
    try:
        if read:
            return outputs.read_bytes(path, what)
        outputs.check_input_file(path, what)
        return None
    except UserError as e:
        raise UserError(f"{option} {e}; {fix}") from None


def credentials_from_env() -> tuple[str, str]:
    user, password = (os.environ.get(name, "") for name in CREDS_ENV)
    missing = [name for name, value in zip(CREDS_ENV, (user, password)) if not value]
    if missing:
        raise UserError(f"--creds-from-env: {' and '.join(missing)} not set; export the registry user as "
                        f"{CREDS_ENV[0]} and the password or token as {CREDS_ENV[1]}")
    if ":" in user:
        raise UserError(f"--creds-from-env: {CREDS_ENV[0]} holds a ':'; it should be the user name alone")
    return user, password


def auth_json(registry: str, user: str, password: str) -> str:
    """An auth file as `podman login` and `docker login` write it (containers-auth.json(5))."""
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return json.dumps({"auths": {registry: {"auth": token}}}, indent=2) + "\n"


def split_repository(repository: str, option: str = "REGISTRY/REPO") -> tuple[str, str]:
    """'harbor.example.com:8443/ai/npuenv' -> ('harbor.example.com:8443', 'ai/npuenv'). The
    registry must be named: a bare name would go to docker.io."""
    refs.check_image_ref(repository, option)
    if "@" in repository or ":" in repository.rsplit("/", 1)[-1]:
        raise UserError(f"{option} {repository!r}: give the repository without a tag or digest (the tags say "
                        f"what the image is: {', '.join(load_push_tags())})")
    registry, _, path = repository.partition("/")
    if not path or not ("." in registry or ":" in registry or registry == "localhost"):
        raise UserError(f"{option} {repository!r}: name the registry, e.g. harbor.example.com/ai/npuenv or "
                        f"127.0.0.1:5000/npuenv (a name without one would go to docker.io)")
    return registry, path


def registry_of(ref: str) -> str:
    """The registry part of an image reference (docker.io when it names none)."""
    first, sep, _ = ref.partition("/")
    return first if sep and ("." in first or ":" in first or first == "localhost") else "docker.io"


def load_push_tags() -> list[str]:
    return list(render.load_manifest()["push_tags"])


def tags_for(labels: dict[str, str], image_id: str, image: str) -> list[str]:
    """The tags an image gets in a registry, from its own labels (what it is, not what a row
    resolves to today) and its id."""
    ns = render.load_manifest()["labels"]["namespace"]
    keys = {"torch_npu": f"{ns}.row.torch_npu", "cann": f"{ns}.row.cann", "python": f"{ns}.stack.python",
            "os": f"{ns}.stack.os", "arch": f"{ns}.stack.arch", "chip": f"{ns}.stack.chip"}
    missing = [key for key in keys.values() if not labels.get(key)]
    if missing:
        raise UserError(f"{image} lacks the labels {', '.join(missing)}: it was not built by `npuenv image build`, "
                        f"so its tags cannot say what it is; build it with `npuenv image build` (make image)")
    cann_only = labels.get(f"{ns}.stack.cann_only") == "true"
    tag = render.image_tag({k: labels[v] for k, v in keys.items()}, cann_only)
    short_id = image_id.removeprefix("sha256:")[:render.load_manifest()["push_image_id_length"]]
    tags = [t.format(tag=tag, image_id=short_id) for t in load_push_tags()]
    for t in tags:
        if not re.fullmatch(r"[\w][\w.-]{0,127}", t):
            raise UserError(f"{image}: its labels give the tag {t!r}, which is not a valid tag")
    return tags


@contextmanager
def engine_options(eng: engines.Engine, access: Access, registry: str) -> Iterator[tuple[list[str], dict | None]]:
    """The engine's options (and environment) for ``access``; any file made for them (the auth
    file of --creds-from-env, the cert folder of --ca-cert) lives in a private folder removed
    afterwards."""
    with tempfile.TemporaryDirectory(prefix="npuenv-registry-") as tmp:
        os.chmod(tmp, 0o700)
        auth = None
        if access.creds_from_env:
            auth = Path(tmp) / "auth.json"
            fd = os.open(auth, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(auth_json(registry, *credentials_from_env()))
        elif access.authfile is not None:
            auth = Path(access.authfile)
        if eng.name == "docker":
            if access.cert_dir or access.ca_cert:
                raise UserError(f"docker reads a registry's CA on the daemon's machine only "
                                f"({DOCKER_CERTS_D}/{registry}/{CA_FILE_IN_CERT_DIR}); put it there, or use podman or "
                                f"buildah, which take --cert-dir and --ca-cert")
            env = None
            if auth is not None:    # docker reads DOCKER_CONFIG/config.json, the same format
                config = Path(tmp) / "docker"
                config.mkdir()
                (config / "config.json").write_bytes(
                    _registry_file("--authfile", auth, "the registry's auth file", "write it with `docker login`",
                                   read=True))
                env = {**os.environ, "DOCKER_CONFIG": str(config)}
            yield [], env
            return
        opts: list[str] = []
        if auth is not None:
            opts += ["--authfile", str(auth)]
        if access.cert_dir is not None:
            opts += ["--cert-dir", str(access.cert_dir)]
        elif access.ca_cert is not None:
            certs = Path(tmp) / "certs"
            certs.mkdir()
            (certs / CA_FILE_IN_CERT_DIR).write_bytes(access.ca_pem())   # read and checked again: never a copy of a special file
            opts += ["--cert-dir", str(certs)]
        yield opts, None


# What an engine's error says, the words its reason starts at (the engines put the operation
# that failed first: "trying to reuse blob ... at destination: checking whether ...: unauthorized: ...").
_CAUSES = {
    "credentials": ("unauthorized", "authentication required", "denied", "403 forbidden"),
    "tls": ("x509:", "tls: failed to verify", "certificate signed by unknown authority"),
    "unreachable": ("connection refused", "no such host", "i/o timeout", "network is unreachable"),
    "missing": ("manifest unknown", "name unknown", "not found"),
}


def _reason(line: str, words: tuple[str, ...]) -> str:
    at = [line.lower().find(w) for w in words if w in line.lower()]
    return line[min(at):] if at else line


def explain(output: str, registry: str, action: str) -> str:
    """The engine's failure as the user's problem: which, and how to fix it."""
    lines = [l.strip() for l in output.splitlines() if l.strip()]
    errors = [l for l in lines if l.lower().startswith(("error", "fatal")) or "error:" in l.lower()]
    line = (errors or lines or ["no output"])[-1]
    low = line.lower()
    cause = next((c for c, words in _CAUSES.items() if any(w in low for w in words)), None)
    reason = _reason(line, _CAUSES[cause]) if cause else line
    if cause == "credentials":
        return (f"{registry} refused the credentials ({reason}). Log in with `podman login {registry}` (the "
                f"engine's auth file), or pass --authfile FILE, or --creds-from-env with {CREDS_ENV[0]} and "
                f"{CREDS_ENV[1]} set")
    if cause == "tls":
        return (f"cannot verify {registry}'s TLS certificate ({reason}); pass its CA with --ca-cert FILE or "
                f"--cert-dir DIR (the CA as DIR/{CA_FILE_IN_CERT_DIR})")
    if cause == "unreachable":
        return f"cannot reach {registry} ({reason}); check the address and that the registry is up"
    if cause == "missing" and action == "pull":
        return f"{registry} has no such image ({reason}); `npuenv image push` prints the references it wrote"
    return f"{action} failed: {line}"


@dataclass
class PushResult:
    repository: str
    tags: list[str]
    digest: str
    seconds: float
    phases: dict = field(default_factory=dict)

    @property
    def pinned(self) -> str:
        return f"{self.repository}@{self.digest}"


def push(image: str, repository: str, *, engine: str | None = None, access: Access = Access(),
         log: Log = _quiet) -> PushResult:
    """Push a local image (by reference or id) to ``repository`` under the tags that say what it
    is; returns the tags and the manifest digest."""
    registry, _ = split_repository(repository)
    access.check()
    eng = engines.find(engine)
    info = eng.inspect(image)
    if info is None:
        raise UserError(f"no image {image} in {eng.name}'s store; build it with `npuenv image build` (make image)")
    tags = tags_for(info["labels"], info["id"], image)
    progress = Progress(log)
    # An interrupt stops the engine and removes the private folders (the auth file of --creds-from-env too).
    with interrupts.interruptible(f"image push {image}"):
        digest = _push_tags(eng, info, image, repository, registry, tags, access, progress)
    seconds = sum(progress.phases.values())
    log(f"npuenv: pushed {image} as {', '.join(f'{repository}:{t}' for t in tags)} ({digest}) in "
        f"{seconds:.0f} s")
    return PushResult(repository=repository, tags=tags, digest=digest, seconds=seconds, phases=progress.phases)


def _push_tags(eng: engines.Engine, info: dict, image: str, repository: str, registry: str, tags: list[str],
               access: Access, progress: Progress) -> str:
    """Push the image under each tag of ``repository`` (in ``registry``); the one manifest digest they all got."""
    digest = ""
    done: list[str] = []
    with engine_options(eng, access, registry) as (opts, env), \
            tempfile.TemporaryDirectory(prefix="npuenv-push-") as tmp:
        for tag in tags:
            dest = f"{repository}:{tag}"
            digestfile = Path(tmp) / f"digest-{len(done)}"
            written = (f"{', '.join(done)} {'is' if len(done) == 1 else 'are'} in the registry; {tag} was "
                       f"not written") if done else f"Nothing was tagged in {registry}"
            with progress.phase(f"push {dest}"):
                if eng.name == "docker":    # docker pushes a local name
                    tagged = subprocess.run(eng.command("tag", info["id"], dest), capture_output=True, text=True)
                    if tagged.returncode != 0:
                        reason = (tagged.stderr.strip() or tagged.stdout.strip() or f"exit {tagged.returncode}")
                        raise UserError(f"docker could not tag {image} as {dest}: {reason[-300:]}. {written}")
                code, output = progress.run(eng.push_command(info["id"], dest, opts, str(digestfile)), env)
                if code != 0:
                    raise UserError(f"{explain(output, registry, 'push')}. {written}")
                got = eng.pushed_digest(output, str(digestfile))
                if not got:   # nothing to pin the image by: a push that cannot be checked is not reported done
                    raise UserError(f"{eng.name} pushed {dest} but reported no manifest digest, so its tags cannot be "
                                    f"checked to be one image; push again")
            if digest and got != digest:
                raise UserError(f"{dest} got the manifest {got}, but {done[0]} got {digest}: the engine wrote "
                                f"two different manifests for one image; push again")
            digest = digest or got
            done.append(tag)
    return digest


def pull(ref: str, *, engine: str | None = None, access: Access = Access(), log: Log = _quiet) -> None:
    """Pull ``ref`` into the engine's store; a failure is a UserError with the engine's reason."""
    refs.check_image_ref(ref, "image")
    access.check()
    eng = engines.find(engine)
    registry = registry_of(ref)
    progress = Progress(log)
    with interrupts.interruptible(f"image pull {ref}"), engine_options(eng, access, registry) as (opts, env), \
            progress.phase(f"pull {ref}"):
        code, output = progress.run(eng.pull_command(ref, opts), env)
        if code != 0:
            raise UserError(f"cannot pull {ref}: {explain(output, registry, 'pull')}")

"""The container engine that builds and runs images: podman, buildah or docker.

An engine counts as present only when it answers ``ENGINE info``: a docker
client whose daemon is unreachable is not an engine. Without a choice the
first present one in ``ENGINES`` is used.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from compat_matrix import UserError, interrupts

from .progress import Progress

# Preference when the user names none: the daemonless engines first (they need
# no service and build as the invoking user).
ENGINES = ("podman", "buildah", "docker")
INFO_TIMEOUT_S = 30
# podman/buildah print each stage's image id when the stage is committed: "--> 7f010646f59"
STAGE_ID_RE = re.compile(r"^--> ([0-9a-f]{11,64})\b")

@dataclass(frozen=True)
class Engine:
    name: str
    path: str

    def build_command(self, *, dockerfile: str, context: str, contexts: dict[str, str], build_args: dict[str, str],
                      platform: str | None, iidfile: str, no_cache: bool = False, tag: str | None = None) -> list[str]:
        """The build command; ``tag`` only for the last build of an image (an engine tags only a
        build that succeeded)."""
        if self.name == "docker":
            # buildx with --load: BuildKit's named contexts and bind mounts, result in the local image store.
            cmd = [self.path, "buildx", "build", "--load"]
        else:
            cmd = [self.path, "build", "--layers"]  # --layers: cache every step (buildah's default is off)
        cmd += ["-f", dockerfile, "--iidfile", iidfile]
        if platform:
            cmd += ["--platform", platform]
        if tag:
            cmd += ["-t", tag]
        if no_cache:
            cmd.append("--no-cache")
        for name, path in contexts.items():
            cmd += ["--build-context", f"{name}={path}"]
        for key, value in build_args.items():
            cmd += ["--build-arg", f"{key}={value}"]
        return cmd + [context]

    @contextmanager
    def removing_stopped_builds(self, progress: Progress, base_ref: str) -> Iterator[None]:
        """Remove the working containers of a build in the block that a signal stopped: podman 4.3
        and buildah 1.28 leave them behind (``buildah containers`` lists them, and they pin the
        base image); a build that fails removes its own. A container is this build's when it was
        made from a stage image the build printed, or (podman, which tells when a container was
        made) from the base image since the build began. docker's BuildKit keeps no such containers."""
        began = int(time.time())
        try:
            yield
        except interrupts.Interrupted:
            if self.name != "docker":
                base = (self.inspect(base_ref) or {}).get("id", "")   # now: the build may have pulled it
                stages = [m.group(1) for m in map(STAGE_ID_RE.match, progress.lines) if m]
                ours = [c["id"] for c in self._builders() if c["image"] and (
                    any(c["image"].startswith(s) for s in stages) or (c["image"] == base and c["made"] >= began))]
                if ours:
                    subprocess.run([self.path, "rm", *ours] if self.name == "buildah"
                                   else [self.path, "rm", "--force", *ours], capture_output=True)
            raise

    def _builders(self) -> list[dict]:
        """The build (working) containers in the local store: id, image id and when it was made
        (0 where the engine does not say)."""
        cmd = ([self.path, "containers", "--json"] if self.name == "buildah"
               else [self.path, "ps", "--all", "--external", "--format", "json"])
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            return []
        found = json.loads(done.stdout or "[]") or []
        if self.name == "buildah":
            return [{"id": c.get("id", ""), "image": c.get("imageid", ""), "made": 0} for c in found]
        return [{"id": c.get("Id", ""), "image": c.get("ImageID", ""), "made": c.get("Created") or 0}
                for c in found if c.get("State") == "storage"]

    def command(self, *args: str) -> list[str]:
        """An image-store command (tag, inspect, rmi); buildah spells some differently."""
        if self.name == "buildah" and args[:2] == ("image", "inspect"):
            return [self.path, "inspect", "--type", "image", *args[2:]]
        if self.name == "buildah" and args[:1] == ("tag",):
            return [self.path, "tag", *args[1:]]
        return [self.path, *args]

    def push_command(self, image_id: str, dest: str, opts: list[str], digestfile: str) -> list[str]:
        """Push ``image_id`` to the registry reference ``dest`` (podman and buildah write the
        manifest digest to ``digestfile``; docker pushes a local tag of that name, made first)."""
        if self.name == "docker":
            return [self.path, "push", dest]
        return [self.path, "push", *opts, "--digestfile", digestfile, image_id, f"docker://{dest}"]

    def pushed_digest(self, output: str, digestfile: str) -> str:
        if self.name == "docker":   # "TAG: digest: sha256:... size: N"
            found = re.findall(r"digest: (sha256:[0-9a-f]{64})", output)
            return found[-1] if found else ""
        return Path(digestfile).read_text().strip()

    def pull_command(self, ref: str, opts: list[str]) -> list[str]:
        if self.name == "docker":
            return [self.path, "pull", ref]
        return [self.path, "pull", *opts, f"docker://{ref}"]

    @property
    def runs_containers(self) -> bool:
        return self.name in ("podman", "docker")

    def inspect(self, ref: str) -> dict | None:
        """The image's id, digest and labels, or None when the local store has no such image."""
        done = subprocess.run(self.command("image", "inspect", ref), capture_output=True, text=True)
        if done.returncode != 0:
            return None
        data = json.loads(done.stdout)
        data = data[0] if isinstance(data, list) else data
        if self.name == "buildah":  # buildah's own layout: the OCI config and the image's ids
            config = data.get("OCIv1") or {}
            return {"id": data.get("FromImageID", ""), "digest": data.get("FromImageDigest", ""),
                    "labels": (config.get("config") or {}).get("Labels") or {}}
        digest = data.get("Digest") or next((d.split("@", 1)[1] for d in data.get("RepoDigests") or []), "")
        return {"id": data.get("Id", "").removeprefix("sha256:"), "digest": digest,
                "labels": data.get("Labels") or (data.get("Config") or {}).get("Labels") or {}}

    def run_in_image(self, image: str, argv: list[str], timeout: float = 300) -> subprocess.CompletedProcess:
        """Run ``argv`` as root in a throw-away container of ``image``, without a network and
        without the image's entrypoint."""
        if self.name == "buildah":
            made = subprocess.run([self.path, "from", "--pull=never", "--quiet", image], capture_output=True,
                                  text=True)
            if made.returncode != 0:
                return made
            container = made.stdout.strip()
            try:
                return subprocess.run([self.path, "run", "--network", "none", "--user", "0", container, "--", *argv],
                                      capture_output=True, text=True, timeout=timeout)
            finally:
                subprocess.run([self.path, "rm", container], capture_output=True)
        return subprocess.run([self.path, "run", "--rm", "--network", "none", "--user", "0", "--entrypoint",
                               argv[0], image, *argv[1:]], capture_output=True, text=True, timeout=timeout)


def _answers(name: str, path: str) -> tuple[bool, str]:
    try:
        info = subprocess.run([path, "info"], capture_output=True, text=True, timeout=INFO_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return False, f"`{name} info` did not answer within {INFO_TIMEOUT_S} s"
    if info.returncode != 0:
        why = (info.stderr.strip() or info.stdout.strip()).splitlines()
        return False, f"`{name} info` failed: {why[-1] if why else f'exit {info.returncode}'}"
    if name == "docker":
        buildx = subprocess.run([path, "buildx", "version"], capture_output=True, text=True)
        if buildx.returncode != 0:
            return False, "docker has no buildx plugin (BuildKit is needed for RUN --mount and named contexts)"
    return True, ""


def find(choice: str | None = None) -> Engine:
    """The engine to use: ``choice`` if given (and working), else the first working one."""
    if choice and choice not in ENGINES:
        raise UserError(f"unknown container engine '{choice}'; use one of: {', '.join(ENGINES)}")
    reasons = []
    for name in [choice] if choice else ENGINES:
        path = shutil.which(name)
        if path is None:
            reasons.append(f"{name}: not installed")
            continue
        ok, why = _answers(name, path)
        if ok:
            return Engine(name, path)
        reasons.append(f"{name}: {why}")
    raise UserError("no usable container engine (" + "; ".join(reasons) + "). Install podman or buildah "
                    "(`make engine` on Debian), or start the docker daemon; choose one with --engine")

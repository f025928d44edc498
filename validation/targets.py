"""The targets of `npuenv validate` and how the validation artefact reaches
each of them (see run.py's docstring for the target syntax). Each transport
runs the artefact on its hosts and returns one Outcome per host."""
from __future__ import annotations

import concurrent.futures
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import uuid
from contextlib import ExitStack
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import compat_matrix as cm
from compat_matrix import interrupts
from compat_matrix.errors import UserError

from .merge import Outcome, judge

# The row an image was built for is in its labels (images/ writes them).
IMAGE_ROW_LABEL = "io.npuenv.row.torch_npu"


# --- transports: how the artefact reaches a target ------------------------------

def _podman(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    if shutil.which("podman") is None:
        raise UserError("podman is not installed; it is needed for podman:// and image: targets")
    p = interrupts.run(["podman", *args])
    if check and p.returncode != 0:
        raise UserError(f"podman {' '.join(args[:2])} failed: {p.stderr.strip()}")
    return p


class LocalTransport:
    """This machine, with npuenv's own Python."""
    fleet_member = True

    def __init__(self):
        self.hosts = ["local"]

    def run(self, artefact: Path, args: dict[str, list[str]]) -> dict[str, Outcome]:
        p = interrupts.run([sys.executable, str(artefact), *args["local"]])
        sys.stderr.write(p.stderr[-4000:] if p.returncode not in (0, 1) else "")
        return {"local": judge(p.returncode, p.stdout, p.stderr)}


class PodmanTransport:
    """A running container: the artefact copied in and run by its python3."""

    def __init__(self, container: str, display: str, fleet_member: bool = True):
        self.container, self.hosts, self.fleet_member = container, [display], fleet_member

    def run(self, artefact: Path, args: dict[str, list[str]]) -> dict[str, Outcome]:
        host = self.hosts[0]
        state = _podman("container", "inspect", "--format", "{{.State.Running}}", self.container, check=False)
        if state.returncode != 0 or state.stdout.strip() != "true":
            why = state.stderr.strip().splitlines()[-1] if state.returncode else "the container is not running"
            return {host: Outcome("unreachable", f"podman: {why}")}
        remote = f"/tmp/npuenv-validate-{uuid.uuid4().hex[:8]}.pyz"
        copied = _podman("cp", str(artefact), f"{self.container}:{remote}", check=False)
        if copied.returncode != 0:
            return {host: Outcome("unreachable", f"podman cp: {copied.stderr.strip()}")}
        try:
            # A login shell, so python3 is the one the target's profile puts first.
            p = _podman("exec", self.container, "bash", "-lc", 'exec python3 "$@"', "npuenv-validate", remote,
                        *args[host], check=False)
        finally:
            _podman("exec", self.container, "rm", "-f", remote, check=False)
        return {host: judge(p.returncode, p.stdout, p.stderr)}


class AnsibleTransport:
    """Hosts of an inventory, reached over their own connections by
    ansible-playbook (validate.yml), all at once."""
    fleet_member = True

    def __init__(self, inventory: Path, pattern: str, hosts: list[str]):
        self.inventory, self.pattern, self.hosts = inventory, pattern, hosts

    def run(self, artefact: Path, args: dict[str, list[str]]) -> dict[str, Outcome]:
        from playbooks import run as playbooks_run

        with tempfile.TemporaryDirectory(prefix="npuenv-validate-") as tmp:
            tree = Path(tmp) / "tree"
            extra = Path(tmp) / "vars.json"
            extra.write_text(json.dumps({"validation_artefact": str(artefact),
                                         "validation_node_args": {h: args[h] for h in self.hosts}}))
            # The tree callback keeps each host's last result (unreachable ones
            # too, with SSH's own reason); only failures and the recap are shown.
            p = playbooks_run.run_playbook(
                "validate.yml", self.inventory, limit=self.pattern, extra_vars=[f"@{extra}"], capture=True,
                env={"ANSIBLE_CALLBACKS_ENABLED": "ansible.builtin.tree", "ANSIBLE_CALLBACK_TREE_DIR": str(tree),
                     "ANSIBLE_DISPLAY_OK_HOSTS": "false", "ANSIBLE_DISPLAY_SKIPPED_HOSTS": "false"})
            outcomes = {}
            for host in self.hosts:
                path = tree / host
                if not path.exists():
                    outcomes[host] = Outcome("error", f"ansible-playbook gave no result for {host} (exit "
                                                      f"{p.returncode}): {(p.stdout + p.stderr).strip()[-1500:]}")
                    continue
                res = json.loads(path.read_text())
                if res.get("unreachable"):
                    msg = " ".join(str(res.get("msg", "")).split()).removeprefix("Task failed: ")
                    outcomes[host] = Outcome("unreachable", msg)
                elif "rc" in res:
                    outcomes[host] = judge(res["rc"], res.get("stdout", ""), res.get("stderr", ""))
                else:
                    outcomes[host] = Outcome("error", " ".join(str(res.get("msg", res)).split())[:1500])
            return outcomes


# --- targets -----------------------------------------------------------------

def start_image(ref: str, host_root: str, run_args: list[str], cleanup: ExitStack) -> tuple[str, dict]:
    """Start an image as a real run would: every /dev/davinci* of the host and
    the host's driver mounted read-only. Returns (container name, row hint).
    An image not in local storage is pulled first (REF?authfile=F&cert_dir=D&
    ca_cert=F&creds_from_env=1: the registry options of `npuenv image push`)."""
    from images import registry

    ref, _, query = ref.partition("?")
    if ref.startswith("-") or not ref:
        raise UserError(f"image:{ref} is not an image reference")
    inspect = _podman("image", "inspect", "--", ref, check=False)
    if inspect.returncode != 0:
        host, slash, _ = ref.partition("/")
        if not slash or not ("." in host or ":" in host):   # localhost/... is local storage's own name
            raise UserError(f"image {ref} does not exist; build it with `make image`, or name its registry "
                            f"(image:REGISTRY/REPO:TAG) to pull it")
        params = _query(f"image:{ref}", query, ("authfile", "cert_dir", "ca_cert", "creds_from_env"))
        access = registry.Access(authfile=Path(params["authfile"]) if params.get("authfile") else None,
                                 cert_dir=Path(params["cert_dir"]) if params.get("cert_dir") else None,
                                 ca_cert=Path(params["ca_cert"]) if params.get("ca_cert") else None,
                                 creds_from_env=params.get("creds_from_env", "") not in ("", "0", "false"))
        registry.pull(ref, engine="podman", access=access, log=lambda m: print(m, file=sys.stderr, flush=True))
        inspect = _podman("image", "inspect", "--", ref)
    elif query:
        raise UserError(f"image:{ref}?{query}: the registry options are for an image that is pulled; {ref} is in "
                        f"local storage already")
    labels = json.loads(inspect.stdout)[0].get("Labels") or {}
    root = Path(host_root)
    platforms = cm.load_platforms()
    devices = sorted(p for p in (root / "dev").glob("davinci*") if p.name[7:].isdigit())
    devices += [root / "dev" / n for n in platforms.hdk["device_nodes"] if (root / "dev" / n).exists()]
    hdk = platforms.hdk["paths"]
    # A real run's driver mounts, plus the firmware's version file so that the
    # driver/firmware pairing can be checked from inside.
    mounts = [hdk[k].format(root=platforms.install_root) for k in ("driver_home", "firmware_home")] + \
        [hdk["dcmi"], hdk["npu_smi"], hdk["install_info"]]
    args = []
    for dev in devices:
        args += ["--device", f"{dev}:/dev/{dev.name}"]
    for path in mounts:
        src = root / path.lstrip("/")
        if src.exists():
            args += ["-v", f"{src}:{path}:ro"]
    name = f"npuenv-validate-{uuid.uuid4().hex[:8]}"
    with interrupts.deferred():  # an interrupt waits until the container is known to the cleanup
        cleanup.callback(_podman, "rm", "-f", "-t", "0", name, check=False)
        _podman("run", "-d", "--name", name, *args, *run_args, "--entrypoint", "sleep", "--", ref, "infinity")
    hint = {"torch_npu": "==" + labels[IMAGE_ROW_LABEL]} if IMAGE_ROW_LABEL in labels else {}
    return name, hint


def _query(target: str, query: str, allowed: tuple[str, ...]) -> dict[str, str]:
    params = {k: v[-1] for k, v in parse_qs(query, keep_blank_values=True).items()}
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise UserError(f"{target}: unknown option(s) {', '.join(unknown)}; known: {', '.join(allowed)}")
    return params


def ssh_inventory(targets: list[str], directory: Path) -> Path:
    """An inventory for ssh://USER@HOST[:PORT] targets (npu_nodes, one host each)."""
    hosts = {}
    for target in targets:
        parts = urlsplit(target)
        params = _query(target, parts.query, ("ssh_identity_file", "ssh_config"))
        if not parts.hostname or not re.fullmatch(r"[A-Za-z0-9_.:\-]+", parts.hostname):
            raise UserError(f"{target}: use ssh://USER@HOST[:PORT]")
        try:
            port = parts.port or 22
        except ValueError:
            raise UserError(f"{target}: the port must be a number") from None
        user = parts.username or os.environ.get("USER") or "root"
        if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*", user):
            raise UserError(f"{target}: '{user}' is not a user name")
        name = f"{user}@{parts.hostname}:{port}"
        hv = {"ansible_host": parts.hostname, "ansible_port": port, "ansible_user": user,
              "ansible_become": user != "root"}
        if "ssh_identity_file" in params:
            hv["ansible_ssh_private_key_file"] = str(Path(params["ssh_identity_file"]).expanduser().resolve())
        if "ssh_config" in params:
            hv["ansible_ssh_common_args"] = "-F " + str(Path(params["ssh_config"]).expanduser().resolve())
        hosts[name] = hv
    # JSON is YAML: Ansible's yaml inventory plugin reads it.
    path = directory / "ssh-inventory.yml"
    path.write_text(json.dumps({"all": {"children": {"npu_nodes": {"hosts": hosts}}}}))
    return path


def ansible_transport(target: str) -> tuple[AnsibleTransport, dict]:
    """ansible://PATTERN?inventory=F -> the transport and the row of its first host."""
    from playbooks import run as playbooks_run

    parts = urlsplit(target)
    pattern = (parts.netloc + parts.path).strip("/") or playbooks_run.FLEET_GROUP
    params = _query(target, parts.query, ("inventory",))
    inventory = params.get("inventory") or os.environ.get("ANSIBLE_INVENTORY")
    if not inventory:
        raise UserError(f"{target}: name the inventory: ansible://{pattern}?inventory=PATH")
    listing = playbooks_run.read_inventory(inventory, limit=pattern)
    hostvars = listing.get("_meta", {}).get("hostvars", {})
    hosts = playbooks_run.group_members(listing, playbooks_run.FLEET_GROUP)
    if not hosts:
        raise UserError(f"{target}: no host of the group '{playbooks_run.FLEET_GROUP}' in {inventory} "
                        f"matches '{pattern}'")
    row = hostvars.get(hosts[0], {}).get("npuenv_row") or {}
    return AnsibleTransport(Path(inventory).resolve(), pattern, hosts), row


def plan(targets: list[str], host_root: str, run_args: list[str], cleanup: ExitStack,
         workdir: Path) -> tuple[list, dict]:
    """The transports for the targets, and the row hint they carry."""
    transports, hint, ssh = [], {}, []
    for target in targets:
        if target == "local":
            transports.append(LocalTransport())
        elif target.startswith("podman://"):
            name = target.removeprefix("podman://")
            if not name or name.startswith("-"):
                raise UserError(f"{target}: use podman://CONTAINER")
            if _podman("container", "exists", "--", name, check=False).returncode != 0:
                raise UserError(f"{target}: no such podman container")
            transports.append(PodmanTransport(name, target))
        elif target.startswith("image:"):
            name, image_hint = start_image(target.removeprefix("image:"), host_root, run_args, cleanup)
            transports.append(PodmanTransport(name, target, fleet_member=False))
            hint = hint or image_hint
        elif target.startswith("ssh://"):
            ssh.append(target)
        elif target.startswith("ansible://"):
            transport, row = ansible_transport(target)
            transports.append(transport)
            hint = hint or row
        else:
            raise UserError(f"unknown target '{target}'; use local, podman://NAME, image:REF, "
                            "ssh://USER@HOST[:PORT] or ansible://GROUP?inventory=FILE")
    if ssh:
        inventory = ssh_inventory(ssh, workdir)
        from playbooks import run as playbooks_run
        listing = playbooks_run.read_inventory(inventory)
        transports.append(AnsibleTransport(inventory, playbooks_run.FLEET_GROUP,
                                           playbooks_run.group_members(listing, playbooks_run.FLEET_GROUP)))
    names = [h for t in transports for h in t.hosts]
    dupes = sorted({h for h in names if names.count(h) > 1})
    if dupes:
        raise UserError(f"target(s) given twice: {', '.join(dupes)}")
    return transports, hint


def run_phase(transports: list, artefact: Path, args: dict[str, list[str]]) -> dict[str, Outcome]:
    """Run the artefact on every host that has arguments, all transports at once."""
    busy = [t for t in transports if any(h in args for h in t.hosts)]
    outcomes: dict[str, Outcome] = {}
    with concurrent.futures.ThreadPoolExecutor(max(1, len(busy))) as pool:
        for result in pool.map(lambda t: t.run(artefact, {h: a for h, a in args.items() if h in t.hosts}), busy):
            outcomes.update(result)
    return outcomes

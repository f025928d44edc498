"""The targets of `npuenv validate` and how the validation artefact reaches
each of them (see run.py's docstring for the target syntax). Each transport
runs the artefact on its hosts and returns one Outcome per host; a transport of
many hosts also tells each host's outcome as soon as it is known (``done``)."""
from __future__ import annotations

import concurrent.futures
import ipaddress
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import uuid
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, quote, urlencode, urlsplit

import yaml

import compat_matrix as cm
from compat_matrix import interrupts, outputs
from compat_matrix.errors import UserError

from . import artefact as artefact_mod
from .merge import Outcome, judge
from .node import options


@dataclass(frozen=True)
class ImageLock:
    """What an image's labels (images/render.py writes them) say it was built from: the digest of the
    lock it holds (at platforms.yaml's install_records.lock), or for an image built before locks the
    row and platform its labels name (None when it has no npuenv labels)."""
    digest: str | None
    row: cm.Constraints | None


def image_lock(labels: dict[str, str]) -> ImageLock:
    """An image's ImageLock, from its labels."""
    from images.render import LOCK_LABEL, label

    if labels.get(LOCK_LABEL):
        return ImageLock(labels[LOCK_LABEL], None)
    row = labels.get(label("row.torch_npu"))
    if not row:
        return ImageLock(None, None)
    stack = {k: labels.get(label(f"stack.{k}")) or None for k in ("python", "chip", "arch", "os")}
    return ImageLock(None, cm.Constraints(torch_npu="==" + row, **stack))


# --- transports: how the artefact reaches a target ------------------------------

# Told each host's outcome once, as soon as it is known. A transport of one host has nothing to tell
# early: run_phase tells what run returns.
Done = Callable[[str, Outcome], None]

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

    def run(self, artefact: Path, args: dict[str, list[str]], done: Done | None = None) -> dict[str, Outcome]:
        p = interrupts.run([sys.executable, str(artefact), *args["local"]])
        sys.stderr.write(p.stderr[-4000:] if p.returncode not in (0, 1) else "")
        return {"local": judge(p.returncode, p.stdout, p.stderr)}


class PodmanTransport:
    """A running container: the artefact copied in and run by its python3."""

    def __init__(self, container: str, display: str, fleet_member: bool = True):
        self.container, self.hosts, self.fleet_member = container, [display], fleet_member

    def run(self, artefact: Path, args: dict[str, list[str]], done: Done | None = None) -> dict[str, Outcome]:
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

    def __init__(self, inventory: Path, pattern: str, hosts: list[str], hostvars: dict | None = None,
                 extra_vars: tuple[str, ...] = ()):
        # hostvars: the inventory's variables, as read to find the hosts (run_playbook would read it again).
        self.inventory, self.pattern, self.hosts, self.hostvars = inventory, pattern, hosts, hostvars
        self.extra_vars = extra_vars   # the user's -e (AnsibleTarget.extra_vars)

    def run(self, artefact: Path, args: dict[str, list[str]], done: Done | None = None) -> dict[str, Outcome]:
        from ansible_run import run as playbooks_run

        with tempfile.TemporaryDirectory(prefix="npuenv-validate-") as tmp:
            tree = Path(tmp) / "tree"
            extra = Path(tmp) / "vars.yml"
            # Only the hosts with arguments run (the fleet phase leaves out those that did not run the first).
            wanted = [h for h in self.hosts if h in args]
            # The digest names the node's cached copy, and is what the node checks that copy against.
            extra.write_text(unsafe_yaml({"validation_artefact": str(artefact),
                                          "validation_artefact_digest": artefact_mod.digest(artefact),
                                          "validation_node_args": {h: args[h] for h in wanted}}))
            # The tree callback keeps each host's last result (unreachable ones
            # too, with SSH's own reason); only failures and the recap are shown.
            with TreeWatch(tree, wanted, done) as watch:
                p = playbooks_run.run_playbook(
                    "validate.yml", self.inventory, limit=self.pattern, extra_vars=list(self.extra_vars),
                    npuenv_vars=[f"@{extra}"], capture=True,
                    hosts=wanted, hostvars=self.hostvars,
                    env={"ANSIBLE_CALLBACKS_ENABLED": "ansible.builtin.tree",
                         "ANSIBLE_CALLBACK_TREE_DIR": str(tree),
                         "ANSIBLE_DISPLAY_OK_HOSTS": "false", "ANSIBLE_DISPLAY_SKIPPED_HOSTS": "false"})
            # A result the watch has read is not read again (a node's document may be hundreds of KB).
            return {host: watch.read.get(host) or tree_outcome(tree / host) or Outcome(
                        "error", f"ansible-playbook gave no result for {host} (exit {p.returncode}): "
                                 f"{(p.stdout + p.stderr).strip()[-1500:]}")
                    for host in wanted}


def tree_outcome(path: Path) -> Outcome | None:
    """A host's outcome from the file Ansible's tree callback wrote for it; None while there is none, or
    while it is being written (a part of a JSON object is never a whole one)."""
    try:
        res = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return None
    if res.get("unreachable"):
        return Outcome("unreachable", " ".join(str(res.get("msg", "")).split()).removeprefix("Task failed: "))
    if "rc" in res:
        return judge(res["rc"], res.get("stdout", ""), res.get("stderr", ""))
    return Outcome("error", " ".join(str(res.get("msg", res)).split())[:1500])


class TreeWatch:
    """While ansible-playbook runs, tells ``done`` each host's outcome as soon as the tree callback has
    written it: the play's one task ends at different times on different nodes, and a fleet's run
    lasts minutes."""
    POLL_S = 0.5

    def __init__(self, tree: Path, hosts: list[str], done: Done | None):
        self.tree, self.waiting, self.done = tree, list(hosts), done
        self.read: dict[str, Outcome] = {}   # the outcomes told so far
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._watch, name="npuenv-tree-watch", daemon=True)

    def __enter__(self):
        if self.done is not None:
            self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        if self.thread.is_alive():
            self.thread.join()

    def _watch(self) -> None:
        while not self.stop.wait(self.POLL_S):
            for host in list(self.waiting):
                outcome = tree_outcome(self.tree / host)
                if outcome is not None:
                    self.waiting.remove(host)
                    self.read[host] = outcome
                    self.done(host, outcome)


# --- targets: what the user names, parsed and checked before anything runs --------

SSH_PORT = 22
# An ssh key or config is a few KiB; anything larger is the wrong file.
SSH_FILE_MAX_BYTES = 1 << 20
# Names as ssh, podman and Ansible take them: no option (a leading '-'), no
# shell, template or URL syntax. A host may be an ssh_config alias, hence '_'.
_HOST = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,251}[A-Za-z0-9_])?")
_USER = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}")
_CONTAINER = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")  # podman's own rule for names (and IDs)
_IMAGE_REF = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/:@-]*")
# Characters of a path that ssh (a quoted IdentityFile, its %-tokens) or Ansible
# (templates in inventory values) would read as syntax.
_PATH_SYNTAX = '"\\%{}'
_TRUE, _FALSE = ("1", "true", "yes"), ("0", "false", "no")
USAGE = "local, podman://NAME, image:REF, ssh://USER@HOST[:PORT] or ansible://GROUP?inventory=FILE"


def _query_text(params: dict[str, str]) -> str:
    """A target's options as its query: what parse() reads back to the same values."""
    return urlencode(params, safe="/", quote_via=quote)


@dataclass(frozen=True)
class LocalTarget:
    def __str__(self) -> str:
        return "local"


@dataclass(frozen=True)
class PodmanTarget:
    name: str

    def __str__(self) -> str:
        return f"podman://{self.name}"


@dataclass(frozen=True)
class ImageTarget:
    """An image, and the registry options for pulling it (those of `npuenv image push`)."""
    ref: str
    authfile: Path | None = None
    cert_dir: Path | None = None
    ca_cert: Path | None = None
    creds_from_env: bool = False

    def query(self) -> dict[str, str]:
        q = {k: str(getattr(self, k)) for k in ("authfile", "cert_dir", "ca_cert") if getattr(self, k) is not None}
        return {**q, "creds_from_env": "1"} if self.creds_from_env else q

    def __str__(self) -> str:
        return f"image:{self.ref}" + (f"?{_query_text(self.query())}" if self.query() else "")


@dataclass(frozen=True)
class SshTarget:
    user: str
    host: str
    port: int = SSH_PORT
    identity_file: Path | None = None
    ssh_config: Path | None = None

    @property
    def name(self) -> str:
        """Its host name in the inventory and the reports (brackets would be a range to Ansible)."""
        return f"{self.user}@{self.host}:{self.port}"

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        query = {k: str(v) for k, v in (("ssh_identity_file", self.identity_file), ("ssh_config", self.ssh_config))
                 if v is not None}
        return f"ssh://{self.user}@{host}:{self.port}" + (f"?{_query_text(query)}" if query else "")

    def hostvars(self) -> dict:
        """Its inventory entry: each value one argument of ssh's (Ansible builds `-o User="..."` and so on)."""
        hv = {"ansible_host": self.host, "ansible_port": self.port, "ansible_user": self.user,
              "ansible_become": self.user != "root"}
        if self.identity_file is not None:
            hv["ansible_ssh_private_key_file"] = str(self.identity_file)
        if self.ssh_config is not None:
            # Ansible splits this string like a shell does: quoted, the path stays one argument.
            hv["ansible_ssh_common_args"] = "-F " + shlex.quote(str(self.ssh_config))
        return hv


@dataclass(frozen=True)
class AnsibleTarget:
    pattern: str
    inventory: str | None = None  # None: $ANSIBLE_INVENTORY
    # (the hosts the pattern selects, the inventory's hostvars) when the caller has read the inventory
    # already (npuenv deploy's gate, once per batch): it is not read again.
    known: tuple[tuple[str, ...], dict] | None = field(default=None, compare=False, repr=False)
    # The -e of the command that validates its hosts (npuenv deploy's gate): they are reached as that
    # command reached them (ansible_user, a become password file), over its SSH connections.
    extra_vars: tuple[str, ...] = field(default=(), compare=False, repr=False)

    def __str__(self) -> str:
        query = {"inventory": self.inventory} if self.inventory else {}
        return f"ansible://{self.pattern}" + (f"?{_query_text(query)}" if query else "")


Target = LocalTarget | PodmanTarget | ImageTarget | SshTarget | AnsibleTarget


def redacted(text: str) -> str:
    """``text`` with the password of a URL's user (SCHEME://USER:PASSWORD@...) replaced by ***."""
    return re.sub(r"(://[^/?#@:]*):[^@]*@", r"\1:***@", text)


def parse(target: str | Target) -> Target:
    """A target as the user wrote it, parsed and checked (UserError naming what is wrong)."""
    if not isinstance(target, str):
        return target
    if target == "local":
        return LocalTarget()
    if target.startswith("podman://"):
        name = target.removeprefix("podman://")
        if not _CONTAINER.fullmatch(name):
            raise UserError(f"{target}: use podman://CONTAINER (a container's name or ID)")
        return PodmanTarget(name)
    if target.startswith("image:"):
        return _parse_image(target)
    if target.startswith("ssh://"):
        return _parse_ssh(target)
    if target.startswith("ansible://"):
        return _parse_ansible(target)
    raise UserError(f"unknown target '{redacted(target)}'; use {USAGE}")


def _query(target: str, query: str, allowed: tuple[str, ...]) -> dict[str, str]:
    pairs = parse_qsl(query, keep_blank_values=True)
    unknown = sorted({k for k, _ in pairs} - set(allowed))
    if unknown:
        raise UserError(f"{target}: unknown option(s) {', '.join(unknown)}; known: {', '.join(allowed)}")
    keys = [k for k, _ in pairs]
    twice = sorted({k for k in keys if keys.count(k) > 1})
    if twice:
        raise UserError(f"{target}: {', '.join(twice)} given twice; give each option once")
    return dict(pairs)


def _user_path(target: str, option: str, value: str, for_ssh: bool = True) -> Path:
    """A path given in a target's query: absolute (Ansible and podman run elsewhere), and for ssh plain."""
    if not value.strip():
        raise UserError(f"{target}: {option}= names no file; give its path")
    try:
        path = Path(value).expanduser().resolve()
    except (RuntimeError, OSError) as e:
        raise UserError(f"{target}: {option} {value}: {e}") from None
    bad = sorted({c for c in str(path) if c in _PATH_SYNTAX or not c.isprintable()})
    if for_ssh and (bad or str(path) != str(path).strip()):
        held = " ".join(map(repr, bad)) or "a space at its end"
        raise UserError(f"{target}: {option} {str(path)!r}: the path holds {held}, which ssh or Ansible would read "
                        f"as syntax; move the file (or link it) to a plain path")
    return path


def _parse_ssh(target: str) -> SshTarget:
    rest = target.removeprefix("ssh://")
    # RFC 3986: the authority ends at the first '/', '?' or '#'; the user is what comes before its last '@'.
    end = next((i for i, c in enumerate(rest) if c in "/?#"), len(rest))
    authority, tail = rest[:end], rest[end:]
    userinfo, at, hostport = authority.rpartition("@")
    # A password holding '/', '?' or '#' ends the authority early: its '@' then comes before any option's '='.
    if ":" in userinfo or (":" in authority and not at and "@" in tail.partition("=")[0]):
        raise UserError(f"{redacted(target)}: a password in the target is refused (other users of this machine "
                        f"see it in the process list, and it stays in the shell's history); "
                        f"log in with a key: ssh://USER@HOST?ssh_identity_file=KEY, or name an ssh_config: "
                        f"ssh://USER@HOST?ssh_config=FILE")
    usage = "use ssh://USER@HOST[:PORT][?ssh_identity_file=KEY&ssh_config=FILE]"
    path, _, query = tail.partition("?")
    if path or "#" in query:
        raise UserError(f"{target}: '{path or query[query.index('#'):]}' is not part of an SSH target; {usage}")
    if hostport.startswith("["):
        host, close, after = hostport[1:].partition("]")
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise UserError(f"{target}: [{host}] is not an IPv6 address; {usage}") from None
        if not close or (after and not after.startswith(":")):
            raise UserError(f"{target}: {usage} (an IPv6 address in brackets: [ADDRESS]:PORT)")
        port_text = after[1:] if after else None
    else:
        host, colon, port_text = hostport.partition(":")
        if ":" in port_text:
            raise UserError(f"{target}: an IPv6 address goes in brackets: ssh://USER@[ADDRESS]:PORT")
        if not _HOST.fullmatch(host):
            raise UserError(f"{target}: '{host}' is not a host name (letters, digits, '.', '-', '_'; not beginning "
                            f"with '-') or an address; {usage}")
        port_text = port_text if colon else None
    if port_text is None:
        port = SSH_PORT
    elif not re.fullmatch(r"[0-9]{1,5}", port_text) or not \
            options.PORT_RANGE[0] <= int(port_text) <= options.PORT_RANGE[1]:
        raise UserError(f"{target}: the port must be a number from {options.PORT_RANGE[0]} to "
                        f"{options.PORT_RANGE[1]}, not '{port_text}' (leave it out for {SSH_PORT})")
    else:
        port = int(port_text)
    user = userinfo if at else (os.environ.get("USER") or "root")
    if not _USER.fullmatch(user):
        raise UserError(f"{target}: '{user}' is not a user name (letters, digits, '_', '.', '-'; not beginning "
                        f"with '-' or '.')")
    params = _query(target, query, ("ssh_identity_file", "ssh_config"))
    files = {}
    for option in ("ssh_identity_file", "ssh_config"):
        if option in params:
            path = _user_path(target, option, params[option])
            files[option] = outputs.check_input_file(path, f"the {option} of {target}", SSH_FILE_MAX_BYTES)
    return SshTarget(user, host, port, files.get("ssh_identity_file"), files.get("ssh_config"))


def _parse_image(target: str) -> ImageTarget:
    ref, _, query = target.removeprefix("image:").partition("?")
    if not _IMAGE_REF.fullmatch(ref):
        raise UserError(f"image:{ref} is not an image reference; use image:[REGISTRY/]REPOSITORY[:TAG]")
    params = _query(target, query, ("authfile", "cert_dir", "ca_cert", "creds_from_env"))
    flag = params.get("creds_from_env", "0").lower()
    if flag not in _TRUE + _FALSE:
        raise UserError(f"{target}: creds_from_env={flag}: give creds_from_env=1 (or 0)")
    paths = {k: _user_path(target, k, params[k], for_ssh=False) for k in ("authfile", "cert_dir", "ca_cert")
             if k in params}
    return ImageTarget(ref, **paths, creds_from_env=flag in _TRUE)


def _parse_ansible(target: str) -> AnsibleTarget:
    from ansible_run import run as playbooks_run

    try:
        parts = urlsplit(target)
    except ValueError as e:  # an unbalanced '[' or ']'
        raise UserError(f"{target}: {e}; use ansible://GROUP?inventory=FILE") from None
    pattern = (parts.netloc + parts.path).strip("/") or playbooks_run.FLEET_GROUP
    if pattern.startswith("-") or not pattern.isprintable() or any(c.isspace() for c in pattern):
        raise UserError(f"{target}: '{pattern}' is not a host pattern (no spaces, not beginning with '-'); "
                        f"use ansible://GROUP?inventory=FILE")
    params = _query(target, parts.query, ("inventory",))
    inventory = params.get("inventory") or None
    if inventory and Path(inventory).exists() and not (Path(inventory).is_file() or Path(inventory).is_dir()):
        raise UserError(f"{target}: the inventory {inventory} is not a file or a folder (a pipe, socket or device)")
    return AnsibleTarget(pattern, inventory)


# --- what each target becomes ------------------------------------------------

def start_image(target: ImageTarget, host_root: str, run_args: list[str], cleanup: ExitStack) -> tuple[str, ImageLock]:
    """Start an image as a real run would: every /dev/davinci* of the host and
    the host's driver mounted read-only. Returns (container name, what its labels say of its lock).
    An image not in local storage is pulled first, with the target's registry
    options (authfile, cert_dir, ca_cert, creds_from_env)."""
    from images import registry

    ref = target.ref
    inspect = _podman("image", "inspect", "--", ref, check=False)
    if inspect.returncode != 0:
        host, slash, _ = ref.partition("/")
        if not slash or not ("." in host or ":" in host):   # localhost/... is local storage's own name
            raise UserError(f"image {ref} does not exist; build it with `make image`, or name its registry "
                            f"(image:REGISTRY/REPO:TAG) to pull it")
        access = registry.Access(authfile=target.authfile, cert_dir=target.cert_dir, ca_cert=target.ca_cert,
                                 creds_from_env=target.creds_from_env)
        registry.pull(ref, engine="podman", access=access, log=lambda m: print(m, file=sys.stderr, flush=True))
        inspect = _podman("image", "inspect", "--", ref)
    elif target.query():
        raise UserError(f"{target}: the registry options are for an image that is pulled; {ref} is in "
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
    return name, image_lock(labels)


def ssh_inventory(targets: list[str | SshTarget], directory: Path) -> Path:
    """An inventory for ssh://USER@HOST[:PORT] targets (npu_nodes, one host each)."""
    hosts = {}
    for target in map(parse, targets):
        if not isinstance(target, SshTarget):
            raise UserError(f"{target}: not an ssh:// target")
        hosts[target.name] = target.hostvars()
    # JSON is YAML: Ansible's yaml inventory plugin reads it.
    path = directory / "ssh-inventory.yml"
    path.write_text(json.dumps({"all": {"children": {"npu_nodes": {"hosts": hosts}}}}))
    return path


def ansible_transport(target: AnsibleTarget) -> tuple[AnsibleTransport, dict]:
    """ansible://PATTERN?inventory=F -> the transport and the npuenv_row of its first host."""
    from ansible_run import run as playbooks_run

    inventory = target.inventory or os.environ.get("ANSIBLE_INVENTORY")
    if not inventory:
        raise UserError(f"{target}: name the inventory: ansible://{target.pattern}?inventory=PATH")
    if target.known is not None:
        hosts, hostvars = list(target.known[0]), target.known[1]
    else:
        listing = playbooks_run.read_inventory(inventory, limit=target.pattern)
        hostvars = listing.get("_meta", {}).get("hostvars", {})
        hosts = playbooks_run.group_members(listing, playbooks_run.FLEET_GROUP)
    if not hosts:
        raise UserError(f"{target}: no host of the group '{playbooks_run.FLEET_GROUP}' in {inventory} "
                        f"matches '{target.pattern}'")
    row = hostvars.get(hosts[0], {}).get("npuenv_row") or {}
    return AnsibleTransport(Path(inventory).resolve(), target.pattern, hosts, hostvars, target.extra_vars), row


def plan(targets: list[str | Target], host_root: str, run_args: list[str], cleanup: ExitStack,
         workdir: Path) -> tuple[list, dict]:
    """The transports for the targets, and what they say of their row: {"row": the constraints of the
    first inventory's npuenv_row (lock.constraints_from_mapping: they mean what they mean on the
    command line) or image's labels, "images": {host: ImageLock}}."""
    from compat_matrix import lock as lock_mod

    transports, hint, ssh, images = [], None, [], {}
    for target in map(parse, targets):
        if isinstance(target, LocalTarget):
            transports.append(LocalTransport())
        elif isinstance(target, PodmanTarget):
            if _podman("container", "exists", "--", target.name, check=False).returncode != 0:
                raise UserError(f"{target}: no such podman container")
            transports.append(PodmanTransport(target.name, str(target)))
        elif isinstance(target, ImageTarget):
            name, found = start_image(target, host_root, run_args, cleanup)
            transports.append(PodmanTransport(name, str(target), fleet_member=False))
            images[str(target)] = found
            hint = hint or found.row
        elif isinstance(target, SshTarget):
            ssh.append(target)
        else:
            transport, row = ansible_transport(target)
            transports.append(transport)
            if row and hint is None:
                if not isinstance(row, dict):
                    raise UserError(f"{target}: npuenv_row in {transport.inventory} is not a mapping; write it as "
                                    f"npuenv_row: {{row: \"2.13.0\", python: \"3.11\"}}")
                hint = lock_mod.constraints_from_mapping(row, lock_mod.inventory_name)
    if ssh:
        inventory = ssh_inventory(ssh, workdir)
        from ansible_run import run as playbooks_run
        listing = playbooks_run.read_inventory(inventory)
        transports.append(AnsibleTransport(inventory, playbooks_run.FLEET_GROUP,
                                           playbooks_run.group_members(listing, playbooks_run.FLEET_GROUP),
                                           listing.get("_meta", {}).get("hostvars", {})))
    names = [h for t in transports for h in t.hosts]
    dupes = sorted({h for h in names if names.count(h) > 1})
    if dupes:
        raise UserError(f"target(s) given twice: {', '.join(dupes)}")
    return transports, {"row": hint, "images": images}


class _Unsafe(str):
    pass


class _UnsafeDumper(yaml.SafeDumper):
    pass


_UnsafeDumper.add_representer(_Unsafe, lambda dumper, v: dumper.represent_scalar("!unsafe", str(v)))


def _plain_is_text(value: str) -> bool:
    """Whether YAML reads ``value`` unquoted as text (not a number, bool, null or date)."""
    return yaml.resolver.Resolver().resolve(yaml.ScalarNode, value, (True, False)) == "tag:yaml.org,2002:str"


def unsafe_yaml(data) -> str:
    """YAML for Ansible (-e @FILE) in which every string value is tagged !unsafe:
    Ansible never renders it as a template, so a node's reported address or a
    TMPDIR holding '{{' stays text and runs nothing on the controller. Ansible
    (2.19) reads an !unsafe scalar as if unquoted ('3.11' would be a number), so
    text that unquoted YAML reads otherwise is written quoted and untagged: it
    cannot hold a template anyway."""
    def tag(value):
        if isinstance(value, str):
            return _Unsafe(value) if _plain_is_text(value) else value
        if isinstance(value, dict):
            return {k: tag(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [tag(v) for v in value]
        return value
    return yaml.dump(tag(data), Dumper=_UnsafeDumper, default_flow_style=False)


def run_phase(transports: list, artefact: Path, args: dict[str, list[str]],
              done: Done | None = None) -> dict[str, Outcome]:
    """Run the artefact on every host that has arguments, all transports at once; ``done`` is told each
    host's outcome once, as soon as it is known (from the transports' threads)."""
    busy = [t for t in transports if any(h in args for h in t.hosts)]
    told, lock = set(), threading.Lock()

    def tell(host: str, outcome: Outcome) -> None:
        with lock:
            # A run the interrupt ended came back with no result: that is no host's outcome to tell.
            if done is None or host in told or interrupts.stopping():
                return
            told.add(host)
            done(host, outcome)

    def run(t) -> dict[str, Outcome]:
        result = t.run(artefact, {h: a for h, a in args.items() if h in t.hosts}, tell)
        for host, outcome in result.items():
            tell(host, outcome)
        return result

    outcomes: dict[str, Outcome] = {}
    with concurrent.futures.ThreadPoolExecutor(max(1, len(busy))) as pool:
        for result in pool.map(run, busy):
            outcomes.update(result)
    return outcomes

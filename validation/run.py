"""`npuenv validate`: run the suite on every target, in parallel, and merge
one fleet report.

The suite runs on each target itself: the validation artefact (artefact.py, a
zipapp with the suite, the workloads, pytest and testinfra) is copied there and
run by the target's python3, which prints one JSON document (node.py). How it
gets there depends on the target:

  local                          this machine
  podman://NAME                  a running container (podman cp, podman exec)
  image:REF                      a container started from the image with the host's devices and driver
                                 mounted, as a real run would, and removed afterwards
  ssh://USER@HOST[:PORT]         over SSH with Ansible, sudo when USER is not root; options as testinfra's:
                                 ?ssh_identity_file=KEY&ssh_config=FILE
  ansible://PATTERN?inventory=F  the inventory's hosts matching PATTERN, each over its own connection

Nodes run their own checks first; at the full level the checks that need every
node at once (the all_reduce across nodes, netdetect between peers) then run on
all of them together. Exit codes: 0 every check passed; 1 a check failed or a
target was unreachable; 2 bad input, or nothing could be checked at all.
"""
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
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import compat_matrix as cm
from compat_matrix import interrupts, outputs
from compat_matrix.errors import UserError

from . import artefact as artefact_mod
from . import explain, report, workloads
from .node import FLEET_PORT, LEVELS
from .report import FLEET

# The row an image was built for is in its labels (images/ writes them).
IMAGE_ROW_LABEL = "io.npuenv.row.torch_npu"
# The checks of the fleet phase (marked `fleet` in the suite).
FLEET_CHECKS = ("allreduce_across_nodes", "netdetect_peers")
# Where the device IPs of a node are recorded in its results, for its peer's netdetect.
DEVICE_IPS_CHECK = "npu_network"
# Extra seconds a node may take beyond the suite's own timeouts before the
# controller gives up on it.
RUN_GRACE_S = 900


def expected_stack(stack: cm.Stack) -> dict:
    """What the suite compares hosts with: the resolved row plus its environment."""
    return {**stack.with_environment(),
            "cann_python_modules": sorted(set(stack.platforms.cann_python_deps.values()))}


@dataclass
class Outcome:
    """What came back from one target in one phase."""
    status: str                 # "ran", "unreachable" or "error"
    reason: str = ""            # why it is unreachable or in error
    document: dict = field(default_factory=dict)  # the node's JSON (node.py)


def judge(rc: int, stdout: str, stderr: str) -> Outcome:
    """A node run's outcome from the artefact's exit code and output."""
    doc = workloads.last_json(stdout)
    if doc is None:
        tail = (stdout + stderr).strip()[-1500:] or f"exit {rc}, no output"
        return Outcome("error", f"the validation artefact gave no result (exit {rc}): {tail}")
    if doc.get("error"):
        return Outcome("error", doc["error"], doc)
    return Outcome("ran", document=doc)


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


# --- merging -----------------------------------------------------------------

def _host_record(host: str, check: str, status: str, summary: str, expected: str, found: str) -> dict:
    known = explain.explain(found)
    cause, fix = known if known else ("see the reason above", "fix the target's access and run again")
    return {"host": host, "check": check, "level": "quick", "status": status, "duration_s": 0.0,
            "message": summary, "data": None,
            "failure": {"summary": summary, "expected": expected, "found": found, "cause": cause, "fix": fix}}


def records_of(host: str, outcome: Outcome) -> list[dict]:
    """The check records one target contributed in one phase."""
    if outcome.status == "unreachable":
        return [_host_record(host, "reachable", "failed", f"unreachable: {outcome.reason}",
                             "the host answers over its connection", outcome.reason)]
    if outcome.status == "error":
        return [_host_record(host, "suite", "error", f"the suite could not run: {outcome.reason[:300]}",
                             "the validation artefact runs on the host", outcome.reason)]
    return [{**r, "host": host} for r in outcome.document.get("results", [])]


def fleet_records(phase: dict[str, Outcome], members: list[str]) -> list[dict]:
    """One fleet-wide record per fleet check, naming the nodes that failed it;
    first those the others waited for (a collective's stuck_nodes, by rank)."""
    out = []
    for check in FLEET_CHECKS:
        stuck = sorted({members[n] for h in members if phase[h].status == "ran"
                        for r in phase[h].document.get("results", [])
                        if r["check"] == check and isinstance(r.get("data"), dict)
                        for n in r["data"].get("stuck_nodes", []) if 0 <= n < len(members)})
        bad = [f"{h} (the other nodes waited for it: it never reached the collective)" for h in stuck]
        for host in members:
            outcome = phase[host]
            if host in stuck:
                continue
            if outcome.status != "ran":
                bad.append(f"{host} ({outcome.status}: {outcome.reason[:200]})")
                continue
            for r in outcome.document.get("results", []):
                if r["check"] == check and r["status"] in ("failed", "error"):
                    bad.append(f"{host} ({r['message'][:200]})")
        ran = any(r["check"] == check for h in members if phase[h].status == "ran"
                  for r in phase[h].document.get("results", []))
        if not ran and not bad:
            continue
        status = "failed" if bad else "passed"
        rec = {"host": FLEET, "check": check, "level": "full", "status": status, "duration_s": 0.0,
               "message": (f"{len(bad)} of {len(members)} node(s) failed: " + "; ".join(bad)) if bad else
               f"all {len(members)} nodes took part", "data": None}
        if bad:
            rec["failure"] = {"summary": rec["message"], "expected": f"every one of the {len(members)} nodes passes",
                              "found": "; ".join(bad), "cause": "the nodes named here failed, hung or could not "
                              "be reached while the others waited for them",
                              "fix": "fix or drain the named nodes, then validate the fleet again"}
        out.append(rec)
    return out


def fleet_args(phase1: dict[str, Outcome], members: list[str], base: list[str], port: int) -> dict[str, list[str]]:
    """Each node's arguments for the fleet phase: its rank, rank 0's address,
    and the device IPs of the next node (for netdetect)."""
    master = (phase1[members[0]].document.get("addresses") or ["127.0.0.1"])[0]
    out = {}
    for rank, host in enumerate(members):
        peer = phase1[members[(rank + 1) % len(members)]].document
        ips = next((r.get("data") or {} for r in peer.get("results", []) if r["check"] == DEVICE_IPS_CHECK), {})
        peer_ips = ",".join(f"{dev}={ip}" for dev, ip in (ips.get("device_ips") or {}).items() if ip)
        out[host] = [*base, "--fleet", f"--npuenv-fleet-size={len(members)}", f"--npuenv-fleet-rank={rank}",
                     f"--npuenv-fleet-master={master}", f"--npuenv-fleet-port={port}", f"--npuenv-peer-ips={peer_ips}"]
    return out


def exit_status(records: list[dict]) -> int:
    failed = any(r["status"] in ("failed", "error") for r in records)
    return 1 if failed else 0


def checks_ran(records: list[dict]) -> bool:
    """Whether any real check executed (not a skip, not a stand-in for an unreachable host)."""
    return any(r["status"] in ("passed", "failed", "warning") and r["check"] not in ("reachable", "suite")
               for r in records)


def validate(targets: list[str], level: str, constraints: cm.Constraints, out_dir: Path, *,
             backend: str = "auto", host_root: str = "/", run_args: list[str] | None = None,
             suite_options: list[str] | None = None, only: list[str] | None = None,
             straggler_margin: float = report.STRAGGLER_MARGIN, fleet_port: int = FLEET_PORT,
             matrix: str | None = None, quiet: bool = False) -> int:
    if level not in LEVELS:
        raise UserError(f"unknown level '{level}'; use quick, standard or full")
    out_dir = outputs.check_dir_output(Path(out_dir), "--out")
    the_matrix = cm.load_matrix(matrix) if matrix else cm.load_matrix()
    # An interrupt ends the targets' runs and removes what was started (image containers, temporary files).
    with interrupts.interruptible("validate"), ExitStack() as cleanup:
        workdir = Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="npuenv-validate-")))
        transports, hint = plan(targets, host_root, run_args or [], cleanup, workdir)
        # What the targets carry (an inventory's npuenv_row: chip, python, ...;
        # an image's label) fills in what the command line does not say.
        given = constraints.given()
        row = {k: str(v) for k, v in hint.items() if v is not None}
        constraints = cm.Constraints(**{**row, **given})
        if not constraints.given():
            raise UserError("which matrix row should the hosts match? pass --row or constraints "
                            "(images carry theirs in a label, inventories in npuenv_row)")
        resolved = cm.resolve(the_matrix, constraints).stack
        stack = expected_stack(resolved)
        artefact = artefact_mod.build(workdir / "npuenv-validate.pyz", stack)
        base = ["--level", level, f"--npuenv-backend={backend}", *(suite_options or [])]
        for check in only or []:
            base += ["--only", check]
        hosts = [h for t in transports for h in t.hosts]
        phase1 = run_phase(transports, artefact, {h: base for h in hosts})
        records = [r for h in hosts for r in records_of(h, phase1[h])]
        members = [h for t in transports if t.fleet_member for h in t.hosts if phase1[h].status == "ran"]
        wants_fleet = level == "full" and (not only or set(only) & set(FLEET_CHECKS))
        if wants_fleet and len(members) >= 2:
            phase2 = run_phase(transports, artefact, fleet_args(phase1, members, base, fleet_port))
            for h in members:
                records += records_of(h, phase2[h])
            records += fleet_records(phase2, members)
        if not checks_ran(records):
            # A CI job reading junit.xml afterwards must not find the last run's verdict.
            report.remove_all(out_dir)
            reasons = "; ".join(f"{h}: {phase1[h].status} {phase1[h].reason[:300]}".strip() for h in hosts)
            raise UserError(f"no check ran on any target ({reasons})")
    data = report.fleet_result(records, hosts, phase1, straggler_margin=straggler_margin)
    data["meta"] = {"level": level, "backend": backend, "targets": targets,
                    **{k: resolved.to_dict()[k] for k in ("torch_npu", "torch", "cann", "python", "chip")}}
    written = report.write_all(data, out_dir)
    if not quiet:
        sys.stdout.write(report.terminal(data))
        print("reports: " + ", ".join(str(p) for p in written))
    return exit_status(records)

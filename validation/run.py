"""`npuenv validate`: run the suite against targets and write the reports.

Targets: ``local``, ``podman://NAME``, ``image:REF`` (started with the devices
and driver mounts of a real run, validated inside, removed afterwards) and
``ansible://GROUP`` (hosts of an inventory group, in parallel).
Exit codes: 0 all passed, 1 a check failed, 2 the suite could not run.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import uuid
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import compat_matrix as cm
from compat_matrix.errors import UserError

from . import report

SUITE = Path(__file__).resolve().parent / "suite"
LEVELS = {"quick": "quick", "standard": "quick or standard", "full": "quick or standard or full"}
# The row an image was built for is in its labels (images/ writes them).
IMAGE_ROW_LABEL = "io.npuenv.row.torch_npu"


@dataclass
class Plan:
    hosts: list[str] = field(default_factory=list)        # testinfra host specs
    row_hint: dict = field(default_factory=dict)           # constraints found on the targets


def expected_stack(stack: cm.Stack) -> dict:
    """What the suite compares hosts with: the resolved row plus its environment."""
    return {**stack.with_environment(),
            "cann_python_modules": sorted(set(stack.platforms.cann_python_deps.values()))}


def _podman(*args, check=True) -> subprocess.CompletedProcess:
    if shutil.which("podman") is None:
        raise UserError("podman is not installed; it is needed for podman:// and image: targets")
    p = subprocess.run(["podman", *args], capture_output=True, text=True)
    if check and p.returncode != 0:
        raise UserError(f"podman {' '.join(args[:2])} failed: {p.stderr.strip()}")
    return p


def start_image(ref: str, host_root: str, run_args: list[str], stack: ExitStack) -> tuple[str, dict]:
    """Start an image as a real run would: every /dev/davinci* of the host and
    the host's driver mounted read-only. Returns (container name, row label hint)."""
    inspect = _podman("image", "inspect", ref, check=False)
    if inspect.returncode != 0:
        raise UserError(f"image {ref} does not exist; build it with `make image` or pull it")
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
    _podman("run", "-d", "--name", name, *args, *run_args, "--entrypoint", "sleep", ref, "infinity")
    stack.callback(_podman, "rm", "-f", "-t", "0", name, check=False)
    hint = {"torch_npu": "==" + labels[IMAGE_ROW_LABEL]} if IMAGE_ROW_LABEL in labels else {}
    return name, hint


def ansible_hosts(target: str) -> tuple[list[str], dict]:
    """ansible://GROUP[?inventory=PATH] -> testinfra specs (podman-connected hosts as podman://)."""
    spec, _, query = target.removeprefix("ansible://").partition("?")
    params = dict(p.split("=", 1) for p in query.split("&") if "=" in p)
    inventory = params.get("inventory") or os.environ.get("ANSIBLE_INVENTORY")
    if not inventory:
        raise UserError(f"{target}: name the inventory: ansible://{spec}?inventory=PATH")
    exe = Path(sys.executable).parent / "ansible-inventory"
    p = subprocess.run([str(exe) if exe.exists() else "ansible-inventory", "-i", inventory, "--list"],
                       capture_output=True, text=True)
    if p.returncode != 0:
        raise UserError(f"cannot read inventory {inventory}: {p.stderr.strip()}")
    inv = json.loads(p.stdout)
    hostvars = inv.get("_meta", {}).get("hostvars", {})

    def members(group):
        g = inv.get(group, {})
        return list(g.get("hosts", [])) + [h for child in g.get("children", []) for h in members(child)]

    names = []
    for part in re.split(r"[:,]", spec):  # a group, a host, or several joined by ':' as in Ansible patterns
        found = members(part) or ([part] if part in hostvars else [])
        if not found:
            raise UserError(f"{target}: no host or group '{part}' in {inventory}")
        names += [n for n in found if n not in names]
    hosts = []
    for name in names:
        hv = hostvars.get(name, {})
        if hv.get("ansible_connection") in ("containers.podman.podman", "podman"):
            hosts.append(f"podman://{name}")
        else:
            hosts.append(f"ansible://{name}?ansible_inventory={Path(inventory).resolve()}")
    row = hostvars.get(names[0], {}).get("npuenv_row") or {}
    return hosts, row


def plan(targets: list[str], host_root: str, run_args: list[str], stack: ExitStack) -> Plan:
    out = Plan()
    for target in targets:
        if target == "local":
            out.hosts.append("local://")
        elif target.startswith("podman://"):
            name = target.removeprefix("podman://")
            if _podman("container", "exists", name, check=False).returncode != 0:
                raise UserError(f"{target}: no such podman container")
            out.hosts.append(target)
        elif target.startswith("image:"):
            name, hint = start_image(target.removeprefix("image:"), host_root, run_args, stack)
            out.hosts.append(f"podman://{name}")
            out.row_hint = out.row_hint or hint
        elif target.startswith("ansible://"):
            hosts, row = ansible_hosts(target)
            out.hosts += hosts
            out.row_hint = out.row_hint or row
        else:
            raise UserError(f"unknown target '{target}'; use local, podman://NAME, image:REF or ansible://GROUP")
    return out


def validate(targets: list[str], level: str, constraints: cm.Constraints, out_dir: Path, *,
             backend: str = "auto", host_root: str = "/", run_args: list[str] | None = None,
             parallel: int = 4, suite_options: list[str] | None = None, only: list[str] | None = None,
             quiet: bool = False) -> int:
    if level not in LEVELS:
        raise UserError(f"unknown level '{level}'; use quick, standard or full")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with ExitStack() as cleanup:
        the_plan = plan(targets, host_root, run_args or [], cleanup)
        given = constraints.given()
        if not given.get("torch_npu") and the_plan.row_hint:
            row = {k: str(v) for k, v in the_plan.row_hint.items() if v is not None}
            constraints = cm.Constraints(**{**row, **given})
        if not constraints.given():
            raise UserError("which matrix row should the hosts match? pass --row or constraints "
                            "(images carry theirs in a label, inventories in npuenv_row)")
        resolved = cm.resolve(cm.load_matrix(), constraints).stack
        (out_dir / "stack.json").write_text(json.dumps(expected_stack(resolved), indent=1))
        results = out_dir / "results.json"
        results.unlink(missing_ok=True)
        cmd = [sys.executable, "-m", "pytest", str(SUITE), "-p", "validation.results", "-p", "no:cacheprovider",
               "--rootdir", str(SUITE), "-c", os.devnull, "-m", LEVELS[level], "-q", "-rN",
               f"--hosts={','.join(the_plan.hosts)}", f"--npuenv-stack={out_dir / 'stack.json'}",
               f"--npuenv-backend={backend}", f"--npuenv-results={results}", f"--junitxml={out_dir / 'junit.xml'}",
               *(suite_options or [])]
        if only:
            cmd += ["-k", " or ".join(only)]
        workers = min(len(the_plan.hosts), parallel)
        if workers > 1:
            cmd += ["-n", str(workers), "--dist", "loadgroup"]
        else:
            cmd += ["-p", "no:xdist"]
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(SUITE.parent.parent), os.environ.get("PYTHONPATH", "")]))
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if not results.exists():
        raise UserError(f"the suite did not run (pytest exit {proc.returncode}):\n{(proc.stdout + proc.stderr)[-3000:]}")
    data = report.load(results)
    data["meta"] = {"level": level, "backend": backend, "targets": targets,
                    **{k: resolved.to_dict()[k] for k in ("torch_npu", "torch", "cann", "python", "chip")}}
    results.write_text(json.dumps(data, indent=1) + "\n")
    (out_dir / "report.html").write_text(report.html_page(data))
    if not quiet:
        sys.stdout.write(report.terminal(data))
        print(f"reports: {out_dir / 'report.html'}, {results}, {out_dir / 'junit.xml'}")
    failed = any(r["status"] in ("failed", "error") for r in data["results"])
    if proc.returncode not in (0, 1):
        print((proc.stdout + proc.stderr)[-3000:], file=sys.stderr)
        return 2
    return 1 if failed else 0

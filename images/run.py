"""How to start an image on an Atlas host: the ``docker run`` / ``podman run``
line and a compose file. The container gets the NPUs' device nodes and the
host's driver, mounted read-only; the image itself carries no driver."""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import yaml

from compat_matrix import Stack, UserError

from . import render

RUN_ENGINES = ("docker", "podman")


def _spec() -> dict:
    return render.load_manifest()["run"]


def parse_npus(text: str, count: int, node: str = "a node") -> list[int]:
    """'0,1,4-7' -> [0, 1, 4, 5, 6, 7]; every number below ``count`` (the device nodes of ``node``)."""
    ids: set[int] = set()
    for part in text.split(","):
        m = re.fullmatch(r"\s*([0-9]{1,9})\s*(?:-\s*([0-9]{1,9})\s*)?", part)
        if not m or (m.group(2) and int(m.group(2)) < int(m.group(1))):
            raise UserError(f"--npus {text!r}: use device numbers and ranges, e.g. 0,1 or 0-7, or 'all'")
        low, high = int(m.group(1)), int(m.group(2) or m.group(1))
        if high >= count:
            raise UserError(f"--npus {text!r}: {node} has the device numbers 0-{count - 1}; {high} is not one of them")
        ids.update(range(low, high + 1))
    return sorted(ids)


def device_ids(stack: Stack, npus: str | None = None, dev_dir: Path = Path("/dev")) -> tuple[list[int], str]:
    """The /dev/davinciN numbers to pass, and where they came from. 'all' (the
    default) means the host's own nodes, or, where there are none (the command
    is printed for another host), every die of a full node of the stack's chip."""
    chip = stack.chip_info
    count = chip["npus_per_node"] * chip.get("dies_per_npu", 1)
    if npus is not None and npus != "all":
        return parse_npus(npus, count, f"a {stack.chip} node ({count} device nodes)"), "--npus"
    prefix = _spec()["device_prefix"]
    found = sorted(int(p.name[len(prefix):]) for p in Path(dev_dir).glob(f"{prefix}*")
                   if p.name[len(prefix):].isdigit())
    if found:
        return found, f"the {prefix}* nodes in {dev_dir}"
    return list(range(count)), f"a full {stack.chip} node ({count} device nodes; none in {dev_dir})"


def devices(stack: Stack, ids: list[int], dev_dir: Path = Path("/dev")) -> list[tuple[str, str]]:
    """(host node, container node) pairs: the chosen davinciN and the driver's shared nodes."""
    names = [f"{_spec()['device_prefix']}{i}" for i in ids] + list(stack.platforms.hdk["device_nodes"])
    return [(str(Path(dev_dir) / n), f"/dev/{n}") for n in names]


def mounts(stack: Stack, host_root: str = "/") -> list[tuple[str, str]]:
    """(host path, container path) of the driver pieces, from the stack's paths;
    ``host_root`` is where the host's filesystem is seen (a chroot, a test fixture)."""
    paths = stack.paths
    root = Path(host_root)
    return [(str(root / paths[key].lstrip("/")), paths[key]) for key in _spec()["host_paths"]]


def run_command(stack: Stack, image: str, *, engine: str = "docker", ids: list[int], dev_dir: Path = Path("/dev"),
                host_root: str = "/", host_ipc: bool = False, command: list[str] | None = None,
                name: str | None = None) -> list[str]:
    if engine not in RUN_ENGINES:
        raise UserError(f"--engine {engine}: run lines are printed for {' or '.join(RUN_ENGINES)}")
    cmd = [engine, "run", "--rm"]
    if not command:
        cmd.append("-it")
    if name:
        cmd += ["--name", name]
    if host_ipc:
        cmd.append("--ipc=host")  # HCCL's processes on one node share memory through IPC
    for host, inside in devices(stack, ids, dev_dir):
        cmd += ["--device", host if host == inside else f"{host}:{inside}"]
    for host, inside in mounts(stack, host_root):
        cmd += ["-v", f"{host}:{inside}:ro"]
    return cmd + [image, *(command or [])]


def format_command(cmd: list[str], image: str) -> str:
    """One option per line, as people paste them; the image and its command last."""
    at = cmd.index(image, 2)
    lines, current = [], cmd[:2]
    i = 2
    while i < at:
        if cmd[i] in ("--device", "-v", "--name"):
            lines.append(current)
            current = cmd[i:i + 2]
            i += 2
        else:
            current.append(cmd[i])
            i += 1
    lines += [current, cmd[at:]]
    return " \\\n  ".join(" ".join(shlex.quote(w) for w in line) for line in lines) + "\n"


def compose(stack: Stack, image: str, *, ids: list[int], dev_dir: Path = Path("/dev"), host_root: str = "/",
            host_ipc: bool = False, command: list[str] | None = None, service: str = "npu") -> str:
    svc: dict = {"image": image,
                 "devices": [h if h == c else f"{h}:{c}" for h, c in devices(stack, ids, dev_dir)],
                 "volumes": [f"{h}:{c}:ro" for h, c in mounts(stack, host_root)]}
    if host_ipc:
        svc["ipc"] = "host"
    if command:
        svc["command"] = list(command)
    else:
        svc.update(stdin_open=True, tty=True)
    header = (f"# npuenv: {render.labels(stack, False)['org.opencontainers.image.title']}\n"
              f"# Generated by `npuenv image compose`; the driver comes from the host, read-only.\n")
    return header + yaml.safe_dump({"services": {service: svc}}, sort_keys=False)

"""Which machine a host is: its /etc/machine-id and its SSH host public keys.

Two inventory names (or validation targets) that reach one machine would be
reported as two hosts that passed, and a deploy would write one host's
settings (its device IPs) onto the other. `npuenv deploy` (site.yml's first
play) and `npuenv validate` (after the nodes' first phase) read every host's
identity with the one probe below and refuse to go on when two hosts share
any part of it. The kernel's boot_id is no identity: containers share their
host's kernel, and it changes at every boot.

What a node sends back is untrusted: only a well-formed machine-id and key
lines are compared.
"""
from __future__ import annotations

import base64
import binascii
import re
import subprocess

from compat_matrix.checksums import sha256_bytes

# machine-id(5): 32 lower-case hex characters, written at first boot.
MACHINE_ID_FILE = "etc/machine-id"
# sshd's host keys (ssh-keygen -A writes one pair per key type).
HOST_KEY_DIR = "etc/ssh"
_MACHINE_ID_RE = re.compile(r"[0-9a-f]{32}")
_KEY_TYPE_RE = re.compile(r"(?:ssh|ecdsa|sk)-[a-z0-9@.-]+")
# The paths are the script's arguments; it prints one `machine_id ...` line and one `host_key ...` per key.
_PROBE = ('printf "machine_id %s\\n" "$(head -c 100 -- "$1" 2>/dev/null)"; '
          'for key in "$2"/ssh_host_*_key.pub; do '
          '[ -f "$key" ] && printf "host_key %s\\n" "$(head -n 1 -- "$key")"; done; true')

# How to resolve a clash, for the messages of deploy and validate.
FIX = ("name each machine once (check ansible_host and ansible_port in the inventory, and the targets); machines "
       "cloned from one disk image need identities of their own: rm /etc/machine-id && systemd-machine-id-setup, "
       "and rm /etc/ssh/ssh_host_* && ssh-keygen -A")


def probe_argv(root: str = "/") -> list[str]:
    """The command that prints the identity of the machine it runs on (under ``root``)."""
    base = root.rstrip("/")
    return ["/bin/sh", "-c", _PROBE, "npuenv-identity", f"{base}/{MACHINE_ID_FILE}", f"{base}/{HOST_KEY_DIR}"]


def _key(line) -> str | None:
    """'TYPE BASE64' of an OpenSSH public key line (its comment dropped), or None when it is not one."""
    if not isinstance(line, str):
        return None
    parts = line.split()
    if len(parts) < 2 or not _KEY_TYPE_RE.fullmatch(parts[0]):
        return None
    try:
        base64.b64decode(parts[1], validate=True)
    except (binascii.Error, ValueError):
        return None
    return f"{parts[0]} {parts[1]}"


def parse(text: str) -> dict:
    """The probe's output -> {"machine_id": 32 hex or None, "host_keys": ['TYPE BASE64', ...]}."""
    machine_id, keys = None, set()
    for line in (text or "").splitlines():
        what, _, value = line.partition(" ")
        if what == "machine_id" and _MACHINE_ID_RE.fullmatch(value.strip()):
            machine_id = value.strip()
        elif what == "host_key" and _key(value):
            keys.add(_key(value))
    return {"machine_id": machine_id, "host_keys": sorted(keys)}


def read(root: str = "/") -> dict:
    """This machine's identity (runner.py puts it in the node's document)."""
    try:
        p = subprocess.run(probe_argv(root), capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return parse("")
    return parse(p.stdout)


def fingerprint(key: str) -> str:
    """'TYPE SHA256:...' as ssh-keygen -l shows a key."""
    kind, blob = key.split()
    digest = base64.b64encode(bytes.fromhex(sha256_bytes(base64.b64decode(blob)))).decode().rstrip("=")
    return f"{kind} SHA256:{digest}"


def _marks(identity) -> list[tuple[str, str]]:
    """What identifies a host, as (kind, value) pairs, from a document that may be anything."""
    if not isinstance(identity, dict):
        return []
    marks = []
    machine_id = identity.get("machine_id")
    # in either case: a document may say the same id in upper case, and refusing is the safe side
    if isinstance(machine_id, str) and _MACHINE_ID_RE.fullmatch(machine_id.lower()):
        marks.append(("machine_id", machine_id.lower()))
    keys = identity.get("host_keys")
    for line in keys if isinstance(keys, list) else []:
        key = _key(line)
        if key and ("host_key", key) not in marks:
            marks.append(("host_key", key))
    return marks


def clashes(identities: dict[str, dict]) -> list[str]:
    """One sentence per group of hosts that share a machine-id or a host key,
    naming the hosts and what they share; [] when every host is its own machine."""
    holders: dict[tuple[str, str], list[str]] = {}
    for host, identity in identities.items():
        for mark in _marks(identity):
            holders.setdefault(mark, []).append(host)
    # Hosts joined by any shared mark form one group (union-find over the shared marks).
    parent = {host: host for host in identities}

    def top(host: str) -> str:
        while parent[host] != host:
            parent[host] = parent[parent[host]]
            host = parent[host]
        return host

    for hosts in holders.values():
        for other in hosts[1:]:
            parent[top(other)] = top(hosts[0])
    groups: dict[str, list[str]] = {}
    for host in identities:
        groups.setdefault(top(host), []).append(host)
    out = []
    for members in groups.values():
        if len(members) < 2:
            continue
        shared = [mark for mark, hosts in holders.items() if len(hosts) > 1 and hosts[0] in members]
        what = [f"/etc/machine-id {value}" if kind == "machine_id" else f"SSH host key {fingerprint(value)}"
                for kind, value in shared]
        names = ", ".join(members[:-1]) + f" and {members[-1]}"
        out.append(f"{names} share {', '.join(what)}")
    return out


def unknown(identities: dict[str, dict]) -> list[str]:
    """Hosts with neither a machine-id nor a host key: nothing tells them apart from another host."""
    return [host for host, identity in identities.items() if not _marks(identity)]

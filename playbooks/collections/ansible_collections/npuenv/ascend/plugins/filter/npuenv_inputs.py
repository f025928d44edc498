"""The check of the roles' inputs that argument specs cannot express: patterns.

A role's meta/argument_specs.yml gives each variable's type and choices;
Ansible's argument specs have no patterns, so each role's tasks/inputs.yml
passes its variables here with their kind, and fails before the role runs
anything when a value is not of its kind: an IPv4 address that is not one, a
path that is not absolute or holds a space or a shell character. Values are
passed to the nodes as argv anyway; this check is what says, before anything
runs, which value is wrong and how. A path the role writes on the node must
also lie where the role owns things (PLACES): never /etc/passwd, never a file
of the system's or of another package.
"""
from __future__ import annotations

import ipaddress
import re
from pathlib import PurePosixPath

_PATH_RE = re.compile(r"/[A-Za-z0-9._+@/-]*")
_COMMAND_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._+-]*")
_ACCOUNT_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,31}")  # useradd's portable names
_ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SYSCTL_KEY_RE = re.compile(r"[A-Za-z0-9_-]+(?:[./][A-Za-z0-9_@:*-]+)+")
_SYSCTL_VALUE_RE = re.compile(r"[A-Za-z0-9._:,/+-]+(?: [A-Za-z0-9._:,/+-]+)*")
_SCALAR = (str, int, float)


def _path(name, value):
    if not isinstance(value, str) or not _PATH_RE.fullmatch(value) or ".." in value.split("/"):
        return (f"{name}: {value!r} is not an absolute path of letters, digits and ._+@/- "
                f"(no spaces, no shell characters, no '..'); e.g. /var/cache/npuenv")
    return None


# The places the roles write on a node, by kind of path: (folder, the file
# name's pattern or None for a folder anywhere below it, what the rule says).
PLACES = {
    "cache_dir": ("/var/cache/npuenv", None, "a folder below /var/cache/npuenv, e.g. /var/cache/npuenv/installers"),
    "venv_dir": ("/opt/npuenv", None, "a folder below /opt/npuenv, e.g. /opt/npuenv/venv"),
    "profile_script": ("/etc/profile.d", re.compile(r"[A-Za-z0-9._-]*npuenv[A-Za-z0-9._-]*\.sh"),
                       "a file directly in /etc/profile.d whose name holds npuenv and ends in .sh, "
                       "e.g. /etc/profile.d/npuenv-ascend.sh"),
    "sysctl_file": ("/etc/sysctl.d", re.compile(r"[A-Za-z0-9._-]*npuenv[A-Za-z0-9._-]*\.conf"),
                    "a file directly in /etc/sysctl.d whose name holds npuenv and ends in .conf, "
                    "e.g. /etc/sysctl.d/90-npuenv-cluster.conf"),
    # The driver restores the device IPs from this one file at boot.
    "hccn_conf": ("/etc", re.compile(r"hccn\.conf"), "/etc/hccn.conf, the file the NPU driver reads at boot"),
}


def _place(kind):
    folder, file_name, rule = PLACES[kind]

    def check(name, value):
        why = _path(name, value)
        if why:
            return why
        path = PurePosixPath(value)
        # A file written plainly: a trailing / would make the template's dest a folder.
        inside = str(path) == value and path.parent == PurePosixPath(folder) and file_name.fullmatch(path.name) \
            if file_name else PurePosixPath(folder) in path.parents
        if not inside:
            return f"{name}: {value!r} is not a place this role writes to; it must be {rule}"
        return None

    return check


def _account(name, value):
    if not isinstance(value, str) or not _ACCOUNT_RE.fullmatch(value):
        return f"{name}: {value!r} is not a user or group name (a letter or _, then letters, digits, _ and -; e.g. HwHiAiUser)"
    return None


def _ipv4(name, value):
    try:
        if isinstance(value, str) and re.fullmatch(r"[0-9.]+", value):
            ipaddress.IPv4Address(value)
            return None
    except ValueError:
        pass
    return f"{name}: {value!r} is not an IPv4 address (four numbers 0-255, e.g. 192.168.100.101)"


def _ipv4_or_empty(name, value):
    return None if value == "" else _ipv4(name, value)


def _netmask(name, value):
    try:
        if isinstance(value, str) and re.fullmatch(r"[0-9]+(?:\.[0-9]+){3}", value):
            ipaddress.IPv4Network(f"0.0.0.0/{value}")
            return None
    except ValueError:
        pass
    return f"{name}: {value!r} is not a netmask (e.g. 255.255.255.0)"


def _ipv4_list(name, value):
    if not isinstance(value, list):
        return f"{name}: must be a list of IPv4 addresses, got {value!r}"
    for i, item in enumerate(value):
        why = _ipv4(f"{name}[{i}]", item)
        if why:
            return why
        if item in value[:i]:
            return f"{name}[{i}]: {item} is listed twice; each device needs its own address"
    return None


def _commands(name, value):
    if not isinstance(value, list):
        return f"{name}: must be a list of command names, got {value!r}"
    for i, item in enumerate(value):
        if not isinstance(item, str) or not _COMMAND_RE.fullmatch(item):
            return f"{name}[{i}]: {item!r} is not a command name (letters, digits and ._+-, e.g. lspci)"
    return None


def _single_line(value) -> bool:
    return isinstance(value, _SCALAR) and not isinstance(value, bool) and \
        not any(ord(c) < 32 or ord(c) == 127 for c in str(value))


def _environment(name, value):
    if not isinstance(value, dict):
        return f"{name}: must be a mapping of variable names to values, got {value!r}"
    for key, item in value.items():
        if not isinstance(key, str) or not _ENV_NAME_RE.fullmatch(key):
            return f"{name}: {key!r} is not an environment variable name (letters, digits and _, e.g. HCCL_CONNECT_TIMEOUT)"
        if not _single_line(item):
            return f"{name}.{key}: {item!r} must be one line of text or a number"
    return None


def _sysctl(name, value):
    if not isinstance(value, dict):
        return f"{name}: must be a mapping of sysctl keys to values, got {value!r}"
    for key, item in value.items():
        if not isinstance(key, str) or not _SYSCTL_KEY_RE.fullmatch(key):
            return f"{name}: {key!r} is not a sysctl key (e.g. net.core.somaxconn)"
        if not _single_line(item) or not _SYSCTL_VALUE_RE.fullmatch(str(item)):
            return (f"{name}.{key}: {item!r} is not a sysctl value (numbers, words and ranges such as "
                    f"60000-60015, separated by single spaces)")
    return None


def _keep_count(name, value):
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 9:
        return (f"{name}: {value!r} is not a number of versions to keep (a whole number from 1 to 9; 1 keeps "
                f"only the one deployed, 2 also the one it replaced)")
    return None


KINDS = {
    "path": _path,
    "account": _account,
    "ipv4": _ipv4,
    "ipv4_or_empty": _ipv4_or_empty,
    "netmask": _netmask,
    "ipv4_list": _ipv4_list,
    "commands": _commands,
    "environment": _environment,
    "sysctl": _sysctl,
    "keep_count": _keep_count,
    **{kind: _place(kind) for kind in PLACES},
}


def input_problems(inputs):
    """``{variable: [kind, value]}`` -> one message per variable whose value is not of its kind."""
    problems = []
    for name, (kind, value) in inputs.items():
        why = KINDS[kind](name, value)
        if why:
            problems.append(why)
    return problems


class FilterModule:
    def filters(self):
        return {"npuenv_input_problems": input_problems}

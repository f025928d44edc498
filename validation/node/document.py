"""The node document: the one JSON object validation/node/runner.py prints on stdout,
and what the controller accepts of it.

A node is not trusted (DESIGN.md, day 2: the trust boundary): a broken or
compromised one may send anything. So its document is parsed strictly (no
NaN or Infinity, no repeated keys, bounded size and nesting) and checked
against the schema below before anything in it is merged; one that fails
becomes a failure of that node alone, with the field and the problem named.
The values that reach other nodes' arguments (its addresses, its device IPs)
must be IP addresses, and device ids small numbers.

Text from a node (and from a target's own error output) is made safe for the
reports once, by ``clean``: no control characters, ESC included (a terminal
would obey them), no character XML 1.0 forbids, no non-finite number (strict
JSON has none), each text bounded in length. Each report then escapes what its
format needs (HTML, XML attributes, the terminal's newlines).

This module is also packed into the validation artefact: runner.py reads the
format version from here, results.py fits its records into the limits.
"""
from __future__ import annotations

import ipaddress
import json
import math
import re

from compat_matrix.lock import FORMAT as LOCK_FORMAT
from compat_matrix.lock import FORMAT_KEY as LOCK_FORMAT_KEY

from .model import FAILURE_FIELDS, LEVELS, REACHABLE, STATUSES, SUITE

# The document's format: runner.py writes it, the controller accepts only its own.
FORMAT_KEY = "format"
FORMAT_VERSION = 1

# The host name of records about the whole fleet (the checks that need every node).
FLEET = "fleet"
# The controller's own checks (beside model.py's REACHABLE and SUITE, about a host as a whole): no node may
# send them.
STRAGGLER = "straggler"
TLS_ACROSS_NODES, CABLING_ACROSS_NODES = "tls_across_nodes", "cabling_across_nodes"
SUPER_POD_ACROSS_NODES = "super_pod_across_nodes"
# Checks the controller makes from what every node reported; no node may report them.
CONTROLLER_CHECKS = (REACHABLE, SUITE, STRAGGLER, TLS_ACROSS_NODES, CABLING_ACROSS_NODES, SUPER_POD_ACROSS_NODES)
# The node checks (validation/node/suite/test_hardware.py) whose recorded data the controller compares.
TLS_NODE_CHECK, CABLING_NODE_CHECK, SUPER_POD_NODE_CHECK = "npu_tls", "npu_cabling", "super_pod"

# Limits, far above what an honest node sends (a full-level document is tens of KB).
MAX_DOCUMENT_BYTES = 4 << 20
MAX_RESULTS = 1000
MAX_TEXT = 16 << 10          # characters of any one string
MAX_NAME = 255               # characters of a name (hostname, Python version)
MAX_DEPTH = 16               # nesting of lists and objects in a record's data
MAX_INT = 1 << 63            # larger integers are no count or size of this world
MAX_ADDRESSES = 64
DEVICE_IDS = range(64)       # an NPU's number on its node
MAX_RANK = 1 << 20           # a node's rank in the fleet phase
MAX_HOST_KEYS = 8
MAX_HOST_KEY_CHARS = 1000
# What a report shows of one text at most.
SHOWN_TEXT = 4000

MAX_CHECK_NAME = 100
CHECK_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,%d}" % (MAX_CHECK_NAME - 1))
MACHINE_ID = re.compile(r"[0-9a-fA-F]{32}")
# An OpenSSH public key line: type, base64 key, optional comment (printable).
HOST_KEY = re.compile(r"(?:ssh|ecdsa|sk)-[A-Za-z0-9@.+-]{1,64} [A-Za-z0-9+/]{16,}={0,3}(?: [^\x00-\x1f\x7f-\x9f]*)?")


class NoDocument(ValueError):
    """The output has no line that could be a document."""


class DocumentError(ValueError):
    """The document breaks the schema: ``str()`` names the field and the problem."""

    def __init__(self, path: str, problem: str):
        self.path, self.problem = path, problem
        super().__init__(f"{path}: {problem}" if path else problem)


def _show(value) -> str:
    """A value as a message may quote it: short, control characters escaped (repr does that)."""
    if isinstance(value, str):
        return repr(value[:60]) + (f" (and {len(value) - 60} more characters)" if len(value) > 60 else "")
    if isinstance(value, (dict, list)):
        return f"a JSON {'object' if isinstance(value, dict) else 'array'}"
    return "null" if value is None else repr(value)


def _kind(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    return {str: "a string", int: "a number", float: "a number", list: "an array", dict: "an object"}.get(
        type(value), type(value).__name__)


# --- strict parsing ------------------------------------------------------------

def _no_constant(name: str):
    raise DocumentError("", f"{name} is not a JSON number (only finite numbers are accepted)")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise DocumentError("", f"{text[:40]} is out of range (only finite numbers are accepted)")
    return value


def _bounded_int(text: str) -> int:
    # The length first: converting thousands of digits is slow, and refused anyway.
    if len(text.lstrip("-")) > len(str(MAX_INT)) or abs(int(text)) > MAX_INT:
        raise DocumentError("", f"the integer {text[:20]}... is larger than {MAX_INT}")
    return int(text)


def _unique_keys(pairs: list) -> dict:
    out = {}
    for key, value in pairs:
        if key in out:
            raise DocumentError("", f"the key {_show(key)} appears twice in one object")
        out[key] = value
    return out


def loads(text: str):
    """JSON as the controller reads a node's: finite numbers only, no repeated keys,
    nesting Python can parse; DocumentError otherwise."""
    try:
        return json.loads(text, parse_constant=_no_constant, parse_float=_finite_float, parse_int=_bounded_int,
                          object_pairs_hook=_unique_keys)
    except RecursionError:
        raise DocumentError("", "it is nested too deeply to parse") from None
    except DocumentError:
        raise
    except ValueError as e:
        raise DocumentError("", f"it is not valid JSON ({str(e)[:200]})") from None


def _document_line(stdout: str):
    """The JSON of a node's stdout (the last line that starts with '{'; logs may follow it),
    parsed strictly. NoDocument when there is no such line."""
    line = next((ln for ln in reversed(stdout.strip().splitlines()) if ln.startswith("{")), None)
    if line is None:
        raise NoDocument("no JSON document on stdout")
    # A character is at least one byte: the cheap test first.
    if len(line) > MAX_DOCUMENT_BYTES or len(line.encode("utf-8", "surrogatepass")) > MAX_DOCUMENT_BYTES:
        raise DocumentError("", f"it is larger than {MAX_DOCUMENT_BYTES} bytes")
    return loads(line)


def read(stdout: str) -> dict:
    """The node's document from its stdout, parsed strictly and checked. NoDocument when there is none."""
    return check(_document_line(stdout))


# --- the schema ---------------------------------------------------------------------

def _text(limit: int = MAX_TEXT, *, empty: bool = True):
    def valid(value, path):
        if not isinstance(value, str):
            raise DocumentError(path, f"{_kind(value)}, not a string")
        if len(value) > limit:
            raise DocumentError(path, f"a string of {len(value)} characters, more than {limit}")
        if not empty and not value:
            raise DocumentError(path, "an empty string")
        return value
    return valid


def _number(value, path, *, minimum: float | None = None):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise DocumentError(path, f"{_kind(value)} ({_show(value)}), not a number")
    if not math.isfinite(value) or abs(value) > MAX_INT:
        raise DocumentError(path, f"{value!r} is not a finite number")
    if minimum is not None and value < minimum:
        raise DocumentError(path, f"{value!r} is below {minimum}")
    return value


def _duration(value, path):
    return _number(value, path, minimum=0)


def _int(value, path, *, low: int = -MAX_INT, high: int = MAX_INT):
    if isinstance(value, bool) or not isinstance(value, int):
        raise DocumentError(path, f"{_kind(value)} ({_show(value)}), not an integer")
    if not low <= value <= high:
        raise DocumentError(path, f"{value} is outside {low}..{high}")
    return value


def _bool(value, path):
    if not isinstance(value, bool):
        raise DocumentError(path, f"{_kind(value)} ({_show(value)}), not true or false")
    return value


def _one_of(choices):
    def valid(value, path):
        if not isinstance(value, str) or value not in choices:
            raise DocumentError(path, f"{_show(value)} is not one of {', '.join(choices)}")
        return value
    return valid


_level = _one_of(LEVELS)


def _format(value, path):
    if type(value) is not int or value != FORMAT_VERSION:
        raise DocumentError(path, f"{_show(value)} is not {FORMAT_VERSION}, the format this controller reads: "
                                  "the node ran another version's validation artefact")
    return value


def ip_address(value, path) -> str:
    """An IPv4 or IPv6 address a peer can connect to, normalised; DocumentError otherwise."""
    text = _text(64, empty=False)(value, path)
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        raise DocumentError(path, f"{_show(value)} is not an IP address") from None
    # A scope (fe80::1%eth0) is free text that would reach a peer's command line.
    if getattr(ip, "scope_id", None) is not None or ip.is_unspecified or ip.is_multicast:
        raise DocumentError(path, f"{_show(value)} is not an address a peer can connect to")
    return str(ip)


def _list(item, limit: int):
    def valid(value, path):
        if not isinstance(value, list):
            raise DocumentError(path, f"{_kind(value)}, not an array")
        if len(value) > limit:
            raise DocumentError(path, f"{len(value)} items, more than {limit}")
        return [item(v, f"{path}[{i}]") for i, v in enumerate(value)]
    return valid


def _machine_id(value, path):
    if value is None:   # the host has no /etc/machine-id (validation/node/identity.py)
        return None
    if not isinstance(value, str) or not MACHINE_ID.fullmatch(value):
        raise DocumentError(path, f"{_show(value)} is not a machine id (32 hexadecimal characters)")
    return value


def _host_key(value, path):
    text = _text(MAX_HOST_KEY_CHARS)(value, path)
    if not HOST_KEY.fullmatch(text):
        raise DocumentError(path, f"{_show(value)} is not an SSH public key line (TYPE BASE64 [COMMENT])")
    return text


def _device_ips(value, path):
    """{device id: its RoCE address or null}: the addresses a peer pings in the fleet phase."""
    if not isinstance(value, dict):
        raise DocumentError(path, f"{_kind(value)}, not an object")
    out = {}
    for key, ip in value.items():
        where = f"{path}[{_show(key)}]"
        if not (isinstance(key, str) and key.isascii() and key.isdigit() and len(key) <= 3
                and int(key) in DEVICE_IDS):
            raise DocumentError(where, f"{_show(key)} is not a device id "
                                       f"({DEVICE_IDS.start}..{DEVICE_IDS.stop - 1})")
        out[str(int(key))] = None if ip is None else ip_address(ip, where)
    return out


def _ranks(value, path):
    return _list(lambda v, p: _int(v, p, low=0, high=MAX_RANK), MAX_RANK)(value, path)


# Fields of a record's data that the controller acts on (merge.fleet_args, merge.fleet_records).
DATA_FIELDS = {"device_ips": _device_ips, "stuck_nodes": _ranks}


def _data(value, path, depth: int = 0):
    """Any JSON within the limits; the fields in DATA_FIELDS in their own shape."""
    if depth > MAX_DEPTH:
        raise DocumentError(path, f"nested more than {MAX_DEPTH} levels deep")
    if isinstance(value, dict):
        out = {}
        for key, v in value.items():
            _text(MAX_NAME)(key, f"{path} (a key)")
            where = f"{path}.{key}" if CHECK_NAME.fullmatch(key) else f"{path}[{_show(key)}]"
            out[key] = DATA_FIELDS[key](v, where) if key in DATA_FIELDS else _data(v, where, depth + 1)
        return out
    if isinstance(value, list):
        return [_data(v, f"{path}[{i}]", depth + 1) for i, v in enumerate(value)]
    if isinstance(value, str):
        return _text()(value, path)
    if isinstance(value, float):
        return _number(value, path)
    if value is None or isinstance(value, (bool, int)):
        return value
    raise DocumentError(path, f"{_kind(value)} is not JSON")


def _check_name(value, path):
    if not isinstance(value, str) or not CHECK_NAME.fullmatch(value):
        raise DocumentError(path, f"{_show(value)} is not a check name (letters, digits and _, "
                                  f"at most {MAX_CHECK_NAME} characters, not starting with a digit)")
    if value in CONTROLLER_CHECKS:
        raise DocumentError(path, f"'{value}' is a check of the controller's own, not of a node")
    return value


def _failure(value, path):
    if value is None:
        return None
    return _object({k: _text() for k in FAILURE_FIELDS}, FAILURE_FIELDS)(value, path)


RECORD_FIELDS = {"host": _text(MAX_NAME), "check": _check_name, "level": _level, "status": _one_of(STATUSES),
                 "duration_s": _duration, "message": _text(), "data": _data, "failure": _failure}
RECORD_REQUIRED = ("host", "check", "level", "status", "duration_s", "message", "data")


def _object(fields: dict, required: tuple):
    def valid(value, path):
        if not isinstance(value, dict):
            raise DocumentError(path, f"{_kind(value)}, not an object")
        missing = [k for k in required if k not in value]
        if missing:
            raise DocumentError(path, f"the field '{missing[0]}' is missing")
        unknown = [k for k in value if k not in fields]
        if unknown:
            raise DocumentError(path, f"unknown field {_show(unknown[0])}")
        return {k: fields[k](v, f"{path}.{k}" if path else k) for k, v in value.items()}
    return valid


LOCK_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


def _lock_digest(value, path):
    if not isinstance(value, str) or not LOCK_DIGEST.fullmatch(value):
        raise DocumentError(path, f"{_show(value)} is not a lock digest (sha256:64 hexadecimal characters)")
    return value


def _lock_format(value, path):
    if type(value) is not int or value != LOCK_FORMAT:
        raise DocumentError(path, f"{_show(value)} is not {LOCK_FORMAT}, the lock format this controller reads")
    return value


# What a node says of the lock it was checked against (runner.py expectation()).
LOCK_INFO = _object({LOCK_FORMAT_KEY: _lock_format, "digest": _lock_digest, "entry": _text(MAX_NAME),
                     "source": _one_of(("given", "recorded")), **{k: _text(MAX_NAME) for k in
                                                                   ("torch_npu", "torch", "cann", "python", "chip")}},
                    (LOCK_FORMAT_KEY, "digest", "entry", "source"))

# The document runner.py prints (a key of its `out` dict each): the required ones
# when the suite ran, and what the controller checks each one with.
FIELDS = {
    FORMAT_KEY: _format,
    "hostname": _text(MAX_NAME),
    "addresses": _list(ip_address, MAX_ADDRESSES),      # rank 0's is the fleet phase's rendezvous
    "python": _text(MAX_NAME),
    "level": _level,
    "fleet": _bool,
    "results": _list(_object(RECORD_FIELDS, RECORD_REQUIRED), MAX_RESULTS),
    "pytest_exit": _int,
    "duration_s": _duration,
    "error": _text(empty=False),                          # only when the suite could not run
    "machine_id": _machine_id,                           # the host's identity, when it has one
    "host_keys": _list(_host_key, MAX_HOST_KEYS),
    "lock": LOCK_INFO,                                   # the lock it was checked against, when one was
}
REQUIRED = (FORMAT_KEY, "hostname", "addresses", "python", "level", "fleet", "results", "pytest_exit",
            "duration_s")


def check(doc) -> dict:
    """The document, checked against the schema and normalised (addresses as the
    ipaddress module writes them); DocumentError names the first field at fault.

    A document with "error" says the suite could not run: only that is required
    (the artefact's entry point sends nothing else when its Python is too old)."""
    required = ("error",) if isinstance(doc, dict) and "error" in doc else REQUIRED
    return _object(FIELDS, required)(doc, "")


# --- the facts document (runner.py --facts: what `npuenv status` and the rollout read) --------

# Its own kind and format: a validation document is never taken for one, nor one for it.
FACTS_KEY = "npuenv_facts"
FACTS_VERSION = 1
MAX_PROCESSES = 1024          # npu-smi's process table: a few per NPU
MAX_SETTINGS = 256            # kernel parameters a deploy records
MAX_VERSIONS = 64             # CANN toolkits, NNAL versions, kernel folders side by side
SYSCTL_NAME = re.compile(r"[a-z0-9_]+(?:\.[A-Za-z0-9_-]+){1,15}")


def _optional(valid):
    def check_optional(value, path):
        return None if value is None else valid(value, path)
    return check_optional


def _facts_format(value, path):
    if type(value) is not int or value != FACTS_VERSION:
        raise DocumentError(path, f"{_show(value)} is not {FACTS_VERSION}, the facts format this controller reads: "
                                  "the node ran another version's artefact")
    return value


def _record(value, path):
    """One of the node's deploy records: an object (its fields are read by the controller with care), or null."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise DocumentError(path, f"{_kind(value)}, not an object")
    return _data(value, path)


def _sysctl(value, path):
    """{kernel parameter: its live value, null when the node has no such parameter}."""
    if not isinstance(value, dict):
        raise DocumentError(path, f"{_kind(value)}, not an object")
    if len(value) > MAX_SETTINGS:
        raise DocumentError(path, f"{len(value)} parameters, more than {MAX_SETTINGS}")
    for key, v in value.items():
        if not SYSCTL_NAME.fullmatch(key):
            raise DocumentError(f"{path}[{_show(key)}]", "not a kernel parameter's name (net.core.somaxconn)")
        _optional(_text(MAX_NAME * 4))(v, f"{path}.{key}")
    return value


_VERSION = _optional(_text(MAX_NAME))
_VERSIONS = _list(_text(MAX_NAME), MAX_VERSIONS)
_PROCESS = _object({"npu": lambda v, p: _int(v, p, low=0, high=MAX_RANK), "chip": lambda v, p: _int(v, p, low=0,
                    high=MAX_RANK), "pid": lambda v, p: _int(v, p, low=0, high=MAX_INT), "name": _text(MAX_NAME)},
                   ("npu", "chip", "pid", "name"))
_TOOLKIT = _object({"generation": _text(MAX_NAME), "version": _VERSION, "kernels": _VERSIONS},
                   ("generation", "version", "kernels"))
_DISTS = {"interpreter": _optional(_text(MAX_NAME * 4)), "torch": _VERSION, "torch_npu": _VERSION,
          "torchvision": _VERSION, "error": _text()}
INSTALLED_FIELDS = {"driver": _VERSION, "firmware": _VERSION, "firmware_package": _VERSION,
                    "cann": _list(_TOOLKIT, MAX_VERSIONS), "nnal": _VERSIONS,
                    "python": _object(_DISTS, ("interpreter",)), "left_out": _VERSIONS}
FACTS_FIELDS = {
    FACTS_KEY: _facts_format,
    "hostname": _text(MAX_NAME),
    "machine_id": _machine_id,
    "host_keys": _list(_host_key, MAX_HOST_KEYS),
    "python": _text(MAX_NAME),
    "arch": _text(64, empty=False),
    "os": _object({"id": _VERSION, "version_id": _VERSION}, ("id", "version_id")),
    "installed": _object(INSTALLED_FIELDS, tuple(INSTALLED_FIELDS)),
    "npu_smi": _object({"error": _optional(_text()), "processes": _list(_PROCESS, MAX_PROCESSES)},
                       ("error", "processes")),
    "records": _object({k: _record for k in ("lock", "node_record", "deploying")},
                       ("lock", "node_record", "deploying")),
    "record_errors": _object({k: _text() for k in ("lock", "node_record", "deploying")}, ()),  # unreadable ones
    "sysctl": _sysctl,
    "error": _text(empty=False),                          # only when the artefact could not run
}
FACTS_REQUIRED = (FACTS_KEY, "hostname", "python", "arch", "os", "installed", "npu_smi", "records",
                  "record_errors", "sysctl")


def check_facts(doc) -> dict:
    """A facts document checked against its schema; DocumentError names the first field at fault.
    One with "error" says the artefact could not run: only that is required."""
    required = ("error",) if isinstance(doc, dict) and "error" in doc else FACTS_REQUIRED
    return _object(FACTS_FIELDS, required)(doc, "")


def read_facts(stdout: str) -> dict:
    """A node's facts document from its stdout, parsed strictly and checked (NoDocument, DocumentError)."""
    return check_facts(_document_line(stdout))


# --- text made safe for every report -----------------------------------------------

# C0 and C1 controls (ESC among them) but the newline, DEL, lone surrogates, the two
# non-characters XML 1.0 forbids, line/paragraph separators and bidirectional overrides
# (which reorder what a terminal shows).
_UNSAFE = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff\ufffe\uffff]")
REPLACEMENT = "\ufffd"


def shorten(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters, saying how many were left out."""
    if len(text) <= limit:
        return text
    keep = max(limit - 40, 0)   # room for the note
    return text[:keep] + f"... ({len(text) - keep} more characters)"


def clean_text(text: str, limit: int = SHOWN_TEXT) -> str:
    """``text`` with line ends as newlines, tabs as spaces, every other control
    character replaced by U+FFFD, and at most ``limit`` characters."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\t", " ")
    return shorten(_UNSAFE.sub(REPLACEMENT, text), limit)


def _clean_str(text: str) -> str:
    # Most texts are short and clean already: kept as they are without a copy (a 1,000-host result holds
    # millions of them).
    return text if len(text) <= SHOWN_TEXT and _UNSAFE.search(text) is None else clean_text(text)


# Values that are safe as they are (exact types: a subclass goes the long way).
_SAFE_TYPES = frozenset({int, bool, type(None)})


def clean(value):
    """A JSON-like value made safe for every report: each string (keys too) cleaned
    by ``clean_text``, each non-finite number null, tuples as lists."""
    if isinstance(value, str):
        return _clean_str(value)
    if isinstance(value, dict):
        return {_clean_str(k) if type(k) is str else clean_text(str(k)): v if type(v) in _SAFE_TYPES else clean(v)
                for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [v if type(v) in _SAFE_TYPES else clean(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def fit(value):
    """What a node writes, fitted into the schema's limits before it is sent: each
    string at most MAX_TEXT characters, each non-finite number as its name ("nan",
    "inf", "-inf"; strict JSON has no such numbers)."""
    if isinstance(value, str):
        return shorten(value, MAX_TEXT)
    if isinstance(value, dict):
        return {k: fit(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [fit(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    return value

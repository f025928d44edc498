"""`npuenv status`: which lock each node runs, and how it drifts from a lock, from facts only.

One task per node (status.yml): the validation artefact's facts mode reads what is
installed (driver, firmware, the CANN toolkit and its kernels, NNAL, torch,
torch_npu and torchvision in the Python the deploy recorded), npu-smi's process
table, the node's deploy records (platforms.yaml install_records) and the live
values of the kernel parameters the deploy set. No workload runs. The controller
reads each node's document as untrusted input (validation/node/document.py check_facts)
and compares it with the lock named, or with the node's own recorded lock.

Drift (exit 1): a node never deployed (no records), a half-finished deploy (the
in-progress marker is still there), a node at another lock than the one named,
records that cannot be read, a package that is not the lock's, a recorded
setting whose live value differs, a platform the lock has no entry for. NPUs in
use are shown, and are not drift. A node that cannot be reached, or whose
document is broken, is named and fails the run as well (exit 1).
"""
from __future__ import annotations

import json
import posixpath
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ansible_run import run
import compat_matrix as cm
from compat_matrix import lock as lock_mod
from compat_matrix.render import aligned
from compat_matrix.errors import UserError
from validation import artefact as artefact_mod
from validation.node import document, identity
from validation.targets import unsafe_yaml

PLAYBOOK = "status.yml"
# The JSON report's kind and format (--format json): its own key, as the lock's and results.json's.
FORMAT_KEY = "npuenv_status"
FORMAT = 1

# A node's state as status reports it.
OK, DRIFT, UNREACHABLE, ERROR = "ok", "drift", "unreachable", "error"
# Kinds of drift, in the order a node's are shown.
NEVER_DEPLOYED, HALF_UPGRADED, OTHER_LOCK, RECORDS, NO_ENTRY, PACKAGE, SETTING = (
    "never deployed", "half-upgraded", "other lock", "records", "no entry", "package", "setting")
DRIFT_KINDS = (NEVER_DEPLOYED, HALF_UPGRADED, OTHER_LOCK, RECORDS, NO_ENTRY, PACKAGE, SETTING)
SHORT_DIGEST = 19  # "sha256:" and 12 hex characters, as the lock prints itself
# What one shown text from a node may take in the table (the JSON has up to document.SHOWN_TEXT).
SHOWN = 300


def short(digest) -> str:
    return str(digest)[:SHORT_DIGEST]


def safe(text, limit: int = document.SHOWN_TEXT) -> str:
    """A node's text for one terminal line or a JSON string: control characters replaced, bounded."""
    return document.clean_text(str(text), limit).replace("\n", " ")


@dataclass
class Probed:
    """What one node's facts task gave: ran (with its checked document), unreachable or error."""
    host: str
    status: str
    reason: str = ""
    facts: dict | None = None


@dataclass
class NodeStatus:
    host: str
    state: str
    lock: dict | None = None          # {"digest", "row"}: the lock the node's records say it runs
    deploying: dict | None = None     # the in-progress marker, when a deploy did not finish
    drift: list[dict] = field(default_factory=list)   # [{"kind", "what"}]
    busy: list[str] = field(default_factory=list)     # npu-smi's process table, one line per process
    reason: str = ""                  # why a node could not be read
    platform: str | None = None       # arch/os of the lock's entries

    @property
    def at(self) -> str:
        """The lock the node runs, in a few words."""
        if self.state in (UNREACHABLE, ERROR):
            return "unknown"
        if self.deploying is not None:
            return (f"half-upgraded {short(self.deploying.get('from_lock_digest') or 'none')} -> "
                    f"{short(self.deploying.get('lock_digest'))}")
        if self.lock is None:
            return "never deployed"
        row = self.lock.get("row") or {}
        what = f" torch_npu {row['torch_npu']} (CANN {row.get('cann', '?')})" if row.get("torch_npu") else ""
        return short(self.lock["digest"]) + what

    def to_dict(self) -> dict:
        return {**asdict(self), "at": self.at}


# --- the node side, through Ansible --------------------------------------------------------------

def read_facts(inventory: str | Path, hosts: list[str], *, extra_vars: list[str] | None = None,
               env: dict[str, str] | None = None) -> dict[str, Probed]:
    """Each host's facts document (status.yml, all hosts at once), checked; unreachable hosts with SSH's reason."""
    artefact = artefact_mod.cached({})  # the facts mode needs no stack: one artefact for every run
    digest = artefact_mod.digest(artefact)
    with tempfile.TemporaryDirectory(prefix="npuenv-status-") as tmp:
        tree, extra = Path(tmp) / "tree", Path(tmp) / "vars.yml"
        extra.write_text(unsafe_yaml({"npuenv_status_artefact": str(artefact), "npuenv_status_digest": digest}))
        # The tree callback keeps each host's result (unreachable ones with SSH's own reason).
        p = run.run_playbook(PLAYBOOK, inventory, limit=",".join(hosts), hosts=hosts, capture=True,
                             extra_vars=extra_vars, npuenv_vars=[f"@{extra}"],
                             env={"ANSIBLE_CALLBACKS_ENABLED": "ansible.builtin.tree",
                                  "ANSIBLE_CALLBACK_TREE_DIR": str(tree), **(env or {})})
        return {h: judge(h, tree / h, p) for h in hosts}


def judge(host: str, path: Path, proc) -> Probed:
    """One host's result file of the tree callback, as a Probed."""
    if not path.exists():
        return Probed(host, ERROR, f"ansible-playbook gave no result for it (exit {proc.returncode}): "
                                   f"{safe((proc.stdout + proc.stderr).strip()[-600:], 600)}")
    try:
        res = json.loads(path.read_text(errors="replace"))
    except ValueError as e:
        return Probed(host, ERROR, f"its result could not be read: {e}")
    if res.get("unreachable"):
        return Probed(host, UNREACHABLE, safe(" ".join(str(res.get("msg", "")).split()).removeprefix("Task failed: ")))
    if "rc" not in res:
        return Probed(host, ERROR, safe(" ".join(str(res.get("msg", res)).split()), 1500))
    try:
        facts = document.read_facts(str(res.get("stdout", "")))
    except document.NoDocument:
        return Probed(host, ERROR, f"the facts mode printed no document (exit {res['rc']}): "
                                   f"{safe(str(res.get('stderr', '')).strip()[-600:], 600)}")
    except document.DocumentError as e:
        return Probed(host, ERROR, f"its facts document is refused: {safe(e, 600)}")
    if "error" in facts:
        return Probed(host, ERROR, safe(facts["error"], 1500))
    return Probed(host, "ran", facts=facts)


def identity_clashes(probed: dict[str, Probed]) -> list[str]:
    """Groups of inventory names that reached one machine (a wrong ansible_port, a cloned disk)."""
    return identity.clashes({h: p.facts for h, p in probed.items() if p.facts})


# --- comparing a node with a lock -----------------------------------------------------------------

def machine_of(facts: dict, platforms: cm.Platforms) -> lock_mod.Machine:
    """The node's platform as the lock's entries name it (arch/os), from its facts."""
    os_info = facts.get("os") or {}
    return lock_mod.machine(platforms, arch=facts["arch"], distribution=str(os_info.get("id") or ""),
                            version=str(os_info.get("version_id") or ""))


def _recorded_lock(records: dict) -> tuple[lock_mod.Lock | None, str | None]:
    """The lock document the node recorded, checked as any lock is (its digest), or why not."""
    data = records.get("lock")
    if data is None:
        return None, None
    try:
        return lock_mod.parse(json.dumps(data), "the node's lock record"), None
    except UserError as e:
        return None, str(e)


def _same(a, b) -> bool:
    return " ".join(str(a).split()).lower() == " ".join(str(b).split()).lower()


def _public(version) -> str | None:
    return str(version).split("+")[0] if version is not None else None


def firmware_version(entry: dict) -> str | None:
    """The firmware's own version, from the file name the lock pins (the matrix does not track it)."""
    name = ((entry.get("installers") or {}).get("firmware") or {}).get("name")
    pattern = (entry.get("stack", {}).get("packages") or {}).get("firmware")
    if not isinstance(name, str) or not isinstance(pattern, str) or pattern.count("*") != 1:
        return None
    before, after = pattern.split("*")
    fits = name.startswith(before) and name.endswith(after) and len(name) > len(before) + len(after)
    return name[len(before):len(name) - len(after)] if fits else None


def package_drift(installed: dict, entry: dict) -> list[str]:
    """What differs between the installed versions and a lock entry's stack, one sentence each."""
    stack = entry.get("stack") or {}
    hdk = (stack.get("hdk") or {}).get("version")
    out = []
    driver = installed.get("driver")
    if driver is None:
        out.append(f"driver not installed, the lock has {hdk}")
    elif hdk and not _same(driver, hdk):
        out.append(f"driver {driver}, the lock has {hdk}")
    firmware, package = installed.get("firmware"), installed.get("firmware_package")
    pinned = firmware_version(entry)
    if firmware is None:
        out.append(f"firmware not installed, the lock has {pinned or 'HDK ' + str(hdk)}")
    elif pinned and not _same(firmware, pinned):
        out.append(f"firmware {firmware}, the lock has {pinned}")
    elif not pinned and package and hdk and not _same(package, hdk):
        out.append(f"firmware of HDK {package}, the lock has HDK {hdk}")
    cann, generation = stack.get("cann"), stack.get("packaging")
    toolkits = [t for t in installed.get("cann") or [] if t.get("generation") == generation]
    active = next((t for t in toolkits if t.get("version") == cann), None)
    if active is None:
        found = ", ".join(f"{t.get('version')} ({t.get('generation')})" for t in installed.get("cann") or []) or "none"
        out.append(f"CANN toolkit {found}, the lock has {cann} ({generation})")
    else:
        kernels = posixpath.basename((stack.get("paths") or {}).get("kernels_dir", ""))
        if kernels and kernels not in active.get("kernels", []):
            out.append(f"CANN kernels for {kernels} not installed in {cann} (found: "
                       f"{', '.join(active.get('kernels', [])) or 'none'})")
    nnal = posixpath.basename((stack.get("paths") or {}).get("nnal_dir", ""))
    if nnal and nnal not in (installed.get("nnal") or []):
        out.append(f"NNAL {', '.join(installed.get('nnal') or []) or 'none'} active, the lock has {nnal}")
    python = installed.get("python") or {}
    if "error" in python:
        out.append(f"{python.get('interpreter') or 'python3'} cannot report its packages: {python['error'][-200:]}")
    else:
        for dist in ("torch", "torch_npu", "torchvision"):
            have, want = _public(python.get(dist)), stack.get(dist)
            if have is None and dist in (installed.get("left_out") or []):
                continue  # the wheelhouse recorded that it has no such wheel
            if have != want:
                out.append(f"{dist} {have or 'not installed'} in {python.get('interpreter')}, the lock has {want}")
    return out


def setting_drift(node_record: dict, sysctl: dict) -> list[str]:
    """Kernel parameters whose live value is not what the deploy set (node.json settings.sysctl)."""
    settings = node_record.get("settings") if isinstance(node_record.get("settings"), dict) else {}
    applied = settings.get("sysctl") if isinstance(settings.get("sysctl"), dict) else {}
    out = []
    for name, value in applied.items():
        live = sysctl.get(name)
        if live is None:
            out.append(f"{name} cannot be read, the deploy set {value}")
        elif not _same(live, value):
            out.append(f"{name} is {live}, the deploy set {value}")
    return out


def assess(probed: Probed, named: lock_mod.Lock | None, platforms: cm.Platforms) -> NodeStatus:
    """One node compared with the named lock, or with its own recorded lock when none is named."""
    if probed.status != "ran":
        return NodeStatus(probed.host, UNREACHABLE if probed.status == UNREACHABLE else ERROR, reason=probed.reason)
    facts = probed.facts
    machine = machine_of(facts, platforms)
    node = NodeStatus(probed.host, OK, platform=machine.key)
    drift = []

    def add(kind: str, what: str) -> None:
        drift.append({"kind": kind, "what": safe(what, SHOWN)})

    records = facts["records"]
    for key, why in facts.get("record_errors", {}).items():
        add(RECORDS, f"{key} record unreadable: {why}")
    record = records.get("node_record") or {}
    recorded, why = _recorded_lock(records)
    if why:
        add(RECORDS, f"lock record refused: {why}")
    digest = record.get("lock_digest") if isinstance(record.get("lock_digest"), str) else None
    if recorded is not None and digest is not None and digest != recorded.digest:
        add(RECORDS, f"node record says lock {short(digest)}, the lock record is {short(recorded.digest)}")
    if digest is not None:
        row = recorded.row if recorded is not None and recorded.digest == digest else {}
        node.lock = {"digest": digest, "row": {k: row.get(k) for k in ("torch_npu", "torch", "cann", "hdk", "python",
                                                                         "chip") if k in row}}
    deploying = records.get("deploying")
    if deploying is not None:
        node.deploying = {k: safe(deploying[k], SHOWN) for k in ("lock_digest", "from_lock_digest", "started")
                          if isinstance(deploying.get(k), str)}
        add(HALF_UPGRADED, f"a deploy to lock {short(node.deploying.get('lock_digest', '?'))} (from "
                           f"{short(node.deploying.get('from_lock_digest') or 'none')}) started "
                           f"{node.deploying.get('started', 'at an unknown time')} and did not finish")
    if not record and recorded is None and deploying is None:
        folder = posixpath.dirname(platforms.data["install_records"]["node_record"])
        add(NEVER_DEPLOYED, f"no deploy records ({folder}): npuenv never deployed this node")
    target = named or (recorded if recorded is not None and recorded.digest == digest else None)
    if named is not None and digest is not None and digest != named.digest:
        add(OTHER_LOCK, f"runs lock {short(digest)}, not {short(named.digest)}")
    if target is not None:
        try:
            _, entry = lock_mod.entry_for(target, platforms, machine)
        except UserError as e:
            add(NO_ENTRY, str(e).replace("this machine", "the node"))
        else:
            for what in package_drift(facts["installed"], entry):
                add(PACKAGE, what)
    for what in setting_drift(record, facts.get("sysctl") or {}):
        add(SETTING, what)
    node.busy = [safe(f"NPU {p['npu']} chip {p['chip']}: pid {p['pid']} {p['name']}", SHOWN)
                 for p in facts["npu_smi"]["processes"]]
    node.drift = sorted(drift, key=lambda d: DRIFT_KINDS.index(d["kind"]))
    node.state = DRIFT if drift else OK
    return node


# --- the fleet's view --------------------------------------------------------------------------------

def summary(nodes: list[NodeStatus]) -> dict:
    return {"nodes": len(nodes), **{s: sum(1 for n in nodes if n.state == s) for s in (OK, DRIFT, UNREACHABLE, ERROR)},
            "busy": sum(1 for n in nodes if n.busy)}


def drift_groups(nodes: list[NodeStatus]) -> list[dict]:
    """Drift grouped by kind, with the hosts each hits (what reads at 100 hosts)."""
    groups = {}
    for n in nodes:
        for d in n.drift:
            groups.setdefault(d["kind"], []).append(n.host)
    return [{"kind": k, "hosts": sorted(set(groups[k]), key=groups[k].index)} for k in DRIFT_KINDS if k in groups]


def to_json(nodes: list[NodeStatus], named: lock_mod.Lock | None) -> dict:
    return {FORMAT_KEY: FORMAT, "lock": {"digest": named.digest, "row": named.row} if named else None,
            "summary": summary(nodes),
            "drift": drift_groups(nodes), "nodes": [n.to_dict() for n in nodes]}


def _names(hosts: list[str], limit: int = 10) -> str:
    return ", ".join(hosts[:limit]) + (f" and {len(hosts) - limit} more" if len(hosts) > limit else "")


def table(nodes: list[NodeStatus], named: lock_mod.Lock | None) -> str:
    """The text report: the compared lock, one line per node (then its drift indented), the drift by kind."""
    lines = [f"compared with: {named.summary()}" if named else "compared with: each node's own recorded lock"]
    width = max([len(n.host) for n in nodes] + [4])
    rows = aligned([("host", "lock", "state", "NPUs in use")]
                   + [(n.host, n.at, n.state, len(n.busy) and f"{len(n.busy)} process(es)" or "-")
                      for n in nodes])   # columns as wide as their content
    lines.append(rows[0])
    for n, row in zip(nodes, rows[1:]):
        lines.append(row)
        for d in n.drift:
            lines.append(f"{'':<{width}}    {d['kind']}: {d['what']}")
        if n.reason:
            lines.append(f"{'':<{width}}    {n.state}: {safe(n.reason, SHOWN)}")
        for p in n.busy[:4]:
            lines.append(f"{'':<{width}}    in use: {p}")
    s = summary(nodes)
    lines.append(f"{s['nodes']} node(s): {s[OK]} at the lock, {s[DRIFT]} drifting, {s[UNREACHABLE]} unreachable, "
                 f"{s[ERROR]} unreadable; NPUs in use on {s['busy']}")
    for g in drift_groups(nodes):
        lines.append(f"  {g['kind']}: {len(g['hosts'])} node(s): {_names(g['hosts'])}")
    down = [n.host for n in nodes if n.state in (UNREACHABLE, ERROR)]
    if down:
        lines.append(f"  not read: {_names(down)}")
    return "\n".join(lines) + "\n"


def exit_status(nodes: list[NodeStatus]) -> int:
    """0 when every node was read and none drifts, else 1 (never an OK for a node that was not read)."""
    return 0 if nodes and all(n.state == OK for n in nodes) else 1


def status(inventory: str | Path | None, lock_path: str | Path | None = None, *, fmt: str = "text",
           limit: str | None = None, matrix: str | None = None, out=None) -> int:
    """`npuenv status`: read every node of the inventory (after --limit), compare, report; the exit code."""
    if fmt not in ("text", "json"):
        raise UserError(f"--format {fmt}: use text or json")
    named = lock_mod.load(lock_path) if lock_path else None
    platforms = cm.load_matrix(matrix).platforms if matrix else cm.load_platforms()
    hosts, _ = run.fleet(inventory, limit)
    probed = read_facts(inventory, hosts)
    clashes = identity_clashes(probed)
    if clashes:
        raise UserError(f"inventory names that reach one machine: {'; '.join(clashes)}; {identity.FIX}")
    nodes = [assess(probed[h], named, platforms) for h in hosts]
    out = out or sys.stdout
    if fmt == "json":
        out.write(json.dumps(to_json(nodes, named), indent=1) + "\n")
    else:
        out.write(table(nodes, named))
    return exit_status(nodes)

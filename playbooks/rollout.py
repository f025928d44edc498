"""`npuenv deploy`: one lock rolled out to the fleet in batches, each batch
validated on its own nodes before the next one starts.

    preflight   every host of the run at once, before anything changes (status.yml: facts only):
                unreachable hosts, hosts no entry of the lock fits, hosts whose NPUs run processes
                (skipped unless --allow-busy, or already at the lock), two inventory names for one
                machine (refused), values the roles would refuse
    batches     at most --batch-size hosts at a time, in inventory order: site.yml on the batch with
                the lock (-e npuenv_lock), then `npuenv validate` at the --gate level on the batch's
                hosts against the same lock; a batch with a failed or unreachable host stops the roll,
                and the hosts of later batches are not attempted
    read-back   every host's deploy records, read again (status.yml): the lock each host is at now,
                a half-finished deploy named as such
    summary     one line per host (its outcome and cause, the lock it is at), the same as JSON, and
                the command that reruns just the hosts that need it

Everything lands in a folder of its own under --log-dir (never overwritten):
deploy.log (all Ansible printed, the gates' reports, the summary), lock.json (the
lock of the run, the one the rerun command names), summary.json and each batch's
validation reports (batch-N/).

Exit codes: 0 every host of the run is at the lock (its records say so) and passed
its gate; 1 a host failed, was unreachable, skipped or not attempted, or is not at
the lock; 2 the run could not start (bad input; nothing was changed).
"""
from __future__ import annotations

import json
import shlex
import signal
import sys
import tempfile
import time
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import compat_matrix as cm
from ansible_run import run
from ansible_run.ansible_options import Given
from compat_matrix import interrupts, outputs
from compat_matrix.render import aligned
from compat_matrix import lock as lock_mod
from compat_matrix.errors import UserError
from validation import report
from validation.node import identity
from validation.node.model import AUTO, LEVELS, PASSED, QUICK
from validation.targets import AnsibleTarget, unsafe_yaml

from . import status

PLAYBOOK = "site.yml"
GATES = (*LEVELS, "none")
DEFAULT_GATE = QUICK
# At most this many nodes change at once unless told otherwise (an upgrade's blast radius).
DEFAULT_BATCH = 10
DEFAULT_LOG_DIR = "out/deploy"
SUMMARY_KEY, SUMMARY_FORMAT = "npuenv_deploy_summary", 1   # summary.json's kind and format, its first key
# The inventory's variables a lock is made from when --lock is not given; they must be one for the run.
LOCK_SOURCES = ("npuenv_row", "npuenv_installer_cache", "npuenv_wheelhouse")
# A refusal of a node whose NPUs run processes names the variable that overrides it (the preflight role).
BUSY_OVERRIDE = "npuenv_allow_busy"
SHOWN = 300
# What the summary table shows of the lock a host is at.
AT_SHOWN = 60

# A host's outcome.
CHANGED, UNCHANGED, WOULD_CHANGE = "changed", "unchanged", "would change"
FAILED, UNREACHABLE, SKIPPED, NOT_ATTEMPTED = "failed", "unreachable", "skipped", "not attempted"
DONE = (CHANGED, UNCHANGED, WOULD_CHANGE)
OUTCOMES = (CHANGED, UNCHANGED, WOULD_CHANGE, FAILED, UNREACHABLE, SKIPPED, NOT_ATTEMPTED)


@dataclass
class HostResult:
    host: str
    outcome: str = NOT_ATTEMPTED
    batch: int | None = None      # 1-based; None: in no batch (refused or skipped at preflight)
    cause: str = ""
    changed: int = 0              # tasks that changed the host
    gate: str = "not run"         # passed, failed or not run
    at: str = "unknown"           # the lock the host is at now, read back from its records
    at_lock: bool = False         # its records say the run's lock, with no deploy half done

    def needs_rerun(self, partial: bool = False) -> bool:
        """A whole deploy must leave the host at the lock and through its gate; a partial one (--tags)
        cannot bring a host to the lock, so only a failed, unreachable or unattempted host needs it."""
        if partial:
            return self.outcome not in (CHANGED, UNCHANGED) or self.gate == "failed"
        return not (self.outcome in (CHANGED, UNCHANGED) and self.at_lock and self.gate in ("passed", "none"))


@dataclass
class Plan:
    """What a deploy was asked to do, checked."""
    inventory: Path
    lock: lock_mod.Lock
    hosts: list[str]
    batch_size: int = DEFAULT_BATCH
    gate: str = DEFAULT_GATE
    gate_backend: str = AUTO
    allow_busy: bool = False
    check: bool = False
    tags: list[str] | None = None
    extra_vars: list[str] = field(default_factory=list)
    ansible: Given = Given()      # the ansible-playbook options passed through (-K, vault, -v, -f, --start-at-task)
    log_dir: Path | None = None   # as the user gave it (None: the default), for the rerun command
    matrix: str | None = None
    hostvars: dict = field(default_factory=dict)   # the inventory's, read once for the whole run

    @property
    def partial(self) -> bool:
        """A run of some of site.yml (--tags, or --start-at-task, which skips what comes before): it
        cannot bring a host to the lock, and the node does not record the lock as reached."""
        return bool(self.tags) or self.ansible.start_at_task is not None


def batches(hosts: list[str], size: int) -> list[list[str]]:
    """The hosts in batches of ``size``, in the order given (the inventory's)."""
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise UserError(f"--batch-size {size}: give a whole number of hosts, 1 or more")
    return [hosts[i:i + size] for i in range(0, len(hosts), size)]


def short(text: str, limit: int = SHOWN) -> str:
    return status.safe(" ".join(str(text).split()), limit)


# --- inputs ---------------------------------------------------------------------------------------

def lock_from_inventory(hosts: list[str], hostvars: dict, matrix: cm.Matrix) -> lock_mod.Lock:
    """The lock made once from the inventory's npuenv_row, npuenv_installer_cache and npuenv_wheelhouse.
    The row must be the same for every host of the run. The folders may differ between hosts (a
    mirror per site, a host's own cache) as long as they give the same lock: a lock pins files by
    their SHA256SUMS lines, so each distinct folder is read and the locks they give must agree (a
    damaged file that its folder still lists is then refused by its node's checksum check)."""
    made: dict[str, tuple[lock_mod.Lock, list[str]]] = {}
    for source, group in _groups(hosts, hostvars).items():
        row, cache, house = json.loads(source)
        lock = _lock_of(row, cache, house, matrix)
        made.setdefault(lock.digest, (lock, []))[1].extend(group)
    if len(made) > 1:
        groups = "; ".join(f"{d[:19]} on {status._names(hs, 5)}" for d, (_, hs) in made.items())
        raise UserError(f"the hosts' {', '.join(LOCK_SOURCES)} give different locks ({groups}); a run deploys one "
                        f"lock: make them agree, deploy the groups in separate runs (--limit), or make a lock with "
                        f"`npuenv lock` and pass --lock FILE")
    return next(iter(made.values()))[0]


def _groups(hosts: list[str], hostvars: dict) -> dict[str, list[str]]:
    """The hosts by their (npuenv_row, npuenv_installer_cache, npuenv_wheelhouse), as JSON; one row only."""
    rows: dict[str, list[str]] = {}
    out: dict[str, list[str]] = {}
    for h in hosts:
        values = [(hostvars.get(h) or {}).get(name) for name in LOCK_SOURCES]
        rows.setdefault(json.dumps(values[0], sort_keys=True), []).append(h)
        out.setdefault(json.dumps(values, sort_keys=True), []).append(h)
    if len(rows) > 1:
        groups = "; ".join(f"{v} on {status._names(hs, 5)}" for v, hs in rows.items())
        raise UserError(f"{LOCK_SOURCES[0]} differs between the hosts of the run ({groups}); a run deploys one "
                        f"lock: set one {LOCK_SOURCES[0]} for them all, deploy them in separate runs (--limit), or "
                        f"make a lock with `npuenv lock` and pass --lock FILE")
    return out


def _lock_of(row, cache, house, matrix: cm.Matrix) -> lock_mod.Lock:
    for name, value in zip(LOCK_SOURCES, (row, cache, house)):
        if run._templated(value):
            raise UserError(f"{name} is a template ({value!r}): npuenv makes the lock before Ansible renders "
                            f"anything; write the value itself, or pass a lock made with `npuenv lock` (--lock FILE)")
    if not isinstance(row, dict) or not row:
        raise UserError("the inventory sets no npuenv_row (the matrix row: any of torch_npu, torch, cann, python, "
                        "chip) for the hosts of the run; set it in group_vars, or pass --lock FILE")
    constraints = lock_mod.constraints_from_mapping(row, lock_mod.inventory_name)
    # Relative paths are the playbooks' (ansible-playbook runs there), as the roles read them.
    folder = {n: (run.PLAYBOOK_DIR / v).resolve() for n, v in (("npuenv_installer_cache", cache),
                                                                  ("npuenv_wheelhouse", house)) if v}
    for name, path in folder.items():
        if not path.is_dir():
            raise UserError(f"{name} {path}: no such folder")
    try:
        return lock_mod.make(matrix, constraints, installers=folder.get("npuenv_installer_cache"),
                             wheelhouses=[folder["npuenv_wheelhouse"]] if "npuenv_wheelhouse" in folder else [])
    except cm.NoMatch as e:
        raise UserError(f"npuenv_row {row}: {e}") from None
    except cm.MatrixError as e:
        raise UserError(f"npuenv_row {row}: {'; '.join(p.message for p in e.problems)}") from None


def new_log_folder(base: Path) -> Path:
    """A folder of its own for this run under ``base``, named by the UTC time; never one that exists."""
    base = outputs.check_dir_output(base, "--log-dir")
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    try:
        base.mkdir(parents=True, exist_ok=True)
        for n in range(1000):
            folder = base / (stamp if n == 0 else f"{stamp}-{n}")
            try:
                folder.mkdir()
                return folder
            except FileExistsError:
                continue
    except OSError as e:
        raise UserError(f"--log-dir {base}: cannot make a folder there: {e.strerror}") from None
    raise UserError(f"--log-dir {base}: a thousand runs this second already")


# --- the run ----------------------------------------------------------------------------------------

class Log:
    """Each line to the terminal and to deploy.log."""

    def __init__(self, path: Path, out):
        self.path, self.out = path, out
        self.file = open(path, "a", encoding="utf-8", errors="replace")

    def write(self, text: str) -> int:
        self.out.write(text)
        self.out.flush()
        self.file.write(text)
        self.file.flush()
        return len(text)

    def flush(self) -> None:
        self.out.flush()
        self.file.flush()

    def line(self, text: str = "") -> None:
        self.write(text + "\n")

    def close(self) -> None:
        self.file.close()


# What a step of the roll found: host -> the HostResult fields to set (deploy sets them; no step writes
# into the results it is given).
Updates = dict[str, dict]


def apply(results: dict[str, HostResult], updates: Updates) -> None:
    for h, fields in updates.items():
        results[h] = replace(results[h], **fields)


def preflight(plan: Plan, probed: dict[str, status.Probed], platforms: cm.Platforms) -> tuple[list[str], Updates]:
    """Judge every host before anything changes: the hosts the batches take, and why each other one is not
    taken (its outcome and cause)."""
    clashes = status.identity_clashes(probed)
    if clashes:
        raise UserError(f"inventory names that reach one machine: {'; '.join(clashes)}; {identity.FIX}; nothing was "
                        f"changed on any host")
    eligible, refused = [], {}
    for h in plan.hosts:
        p = probed[h]
        if p.status == status.UNREACHABLE:
            refused[h] = {"outcome": UNREACHABLE, "cause": short(f"preflight: {p.reason}")}
            continue
        if p.status != "ran":
            refused[h] = {"outcome": FAILED, "cause": short(f"preflight: its facts could not be read: {p.reason}")}
            continue
        try:
            lock_mod.entry_for(plan.lock, platforms, status.machine_of(p.facts, platforms))
        except UserError as e:
            refused[h] = {"outcome": FAILED, "cause": short("preflight: " + str(e).replace("this machine", "the host"))}
            continue
        processes = p.facts["npu_smi"]["processes"]
        records = p.facts["records"]
        at_lock = (records.get("node_record") or {}).get("lock_digest") == plan.lock.digest and \
            records.get("deploying") is None
        # A busy node already at the lock goes on: the roles change nothing there, or refuse it themselves.
        if processes and not plan.allow_busy and not at_lock:
            shown = ", ".join(f"NPU {x['npu']} pid {x['pid']} {x['name']}" for x in processes[:4])
            refused[h] = {"outcome": SKIPPED, "cause": short(f"NPUs in use ({len(processes)} process(es): {shown}); "
                                                             f"left untouched (--allow-busy deploys anyway)")}
            continue
        eligible.append(h)
    return eligible, refused


def deploy_batch(plan: Plan, number: int, hosts: list[str], lock_vars: Path, log: Log, workdir: Path) -> Updates:
    """site.yml on one batch; each host's outcome from the run's recap and failing task."""
    outcomes_file = workdir / f"outcomes-{number}.json"
    forced = {"npuenv_serial": "100%", "npuenv_max_fail_percentage": 100, BUSY_OVERRIDE: plan.allow_busy}
    if plan.ansible.start_at_task is not None:   # the tasks skipped may be any: the node records no lock
        forced["npuenv_deploy_partial"] = True
    try:
        # The batch is the unit of the roll: within it no host is stopped part way because others failed.
        # site.yml's identity check is skipped: the preflight compared every host of the run.
        p = run.run_playbook(PLAYBOOK, plan.inventory, check=plan.check, tags=plan.tags,
                             skip_tags=[run.IDENTITY_TAG], limit=",".join(hosts),
                             hosts=hosts, hostvars=plan.hostvars,
                             extra_vars=plan.extra_vars, npuenv_vars=[f"@{lock_vars}", json.dumps(forced)],
                             log=log.write, env={"ANSIBLE_CALLBACKS_ENABLED": f"{run.COLLECTION}.npuenv_outcomes",
                                                 "NPUENV_OUTCOMES": str(outcomes_file)})
        returncode, refused = p.returncode, None
    except interrupts.Interrupted:
        raise
    except UserError as e:
        returncode, refused = None, str(e)
    seen = json.loads(outcomes_file.read_text()) if outcomes_file.exists() else {}
    return {h: {"batch": number, **_batch_outcome(plan, seen.get(h), refused, returncode)} for h in hosts}


def _batch_outcome(plan: Plan, o: dict | None, refused: str | None, returncode: int | None) -> dict:
    """One host's outcome of its batch: from the outcomes callback's record ``o`` of it."""
    if refused is not None:
        return {"outcome": FAILED, "cause": short(f"refused: {refused}")}
    if o is None:
        return {"outcome": FAILED, "cause": short(f"ansible-playbook gave no result for it (exit {returncode})")}
    if o.get("unreachable"):
        return {"outcome": UNREACHABLE, "cause": short(o.get("message") or "unreachable")}
    if o.get("failures"):
        busy = BUSY_OVERRIDE in o.get("message", "")
        return {"outcome": SKIPPED if busy else FAILED,
                "cause": short(f"{o.get('failed_task', '?')}: {o.get('message', '')}")}
    changed = int(o.get("changed", 0))
    return {"changed": changed, "outcome": (WOULD_CHANGE if plan.check else CHANGED) if changed else UNCHANGED}


def gate_batch(plan: Plan, number: int, hosts: list[str], folder: Path, log: Log) -> Updates:
    """`npuenv validate` at the gate level on the batch's hosts that deployed, against the run's lock."""
    from validation import run as validation_run

    out_dir = folder / f"batch-{number}"
    # The hosts and their variables as the deploy read them: the inventory is not read again per batch;
    # reached with the deploy's -e, as the batch was (and over its SSH connections).
    target = AnsibleTarget(",".join(hosts), str(plan.inventory), known=(tuple(hosts), plan.hostvars),
                           extra_vars=tuple(plan.extra_vars))
    try:
        with redirect_stdout(log), redirect_stderr(log):   # its progress lines too, into deploy.log
            validation_run.validate([target], plan.gate, cm.Constraints(), out_dir, backend=plan.gate_backend,
                                    matrix=plan.matrix, lock=plan.lock)
    except interrupts.Interrupted:
        raise
    except UserError as e:  # nothing could be checked (every host unreachable), or refused
        return {h: {"gate": "failed", "outcome": FAILED, "cause": short(f"gate {plan.gate}: {e}")} for h in hosts}
    data = report.load(out_dir / "results.json")
    updates = {}
    for h in hosts:
        state = (data["host_status"].get(h) or {}).get("status")
        if state == PASSED:
            updates[h] = {"gate": "passed"}
            continue
        failing = [f"{g['check']}: {g['cause']}" for g in data.get("failures", []) if h in g.get("hosts", [])]
        reason = "; ".join(failing) or (data["host_status"].get(h) or {}).get("reason", "")
        updates[h] = {"gate": "failed", "outcome": FAILED,
                      "cause": short(f"gate {plan.gate} {state or 'no result'}: {reason}")}
    return updates


def read_back(plan: Plan, platforms: cm.Platforms) -> Updates:
    """The lock each host is at now, from its records (all hosts of the run, one task each)."""
    probed = status.read_facts(plan.inventory, plan.hosts, extra_vars=plan.extra_vars)
    updates = {}
    for h in plan.hosts:
        node = status.assess(probed[h], plan.lock, platforms)
        updates[h] = {"at": node.at if node.state not in (status.UNREACHABLE, status.ERROR) else
                      f"unknown ({node.state}: {short(node.reason, 120)})",
                      "at_lock": bool(node.lock and node.lock.get("digest") == plan.lock.digest
                                      and node.deploying is None)}
    return updates


def rerun_command(plan: Plan, folder: Path, hosts: list[str]) -> str:
    """The command that runs the same deploy on just ``hosts``, with the lock this run wrote."""
    cmd = ["npuenv"] + (["--matrix", str(Path(plan.matrix).absolute())] if plan.matrix else [])
    cmd += ["deploy", "-i", str(plan.inventory), "--lock", str((folder / "lock.json").absolute()),
            "--limit", ",".join(hosts), "--batch-size", str(plan.batch_size), "--gate", plan.gate]
    if plan.gate_backend != AUTO:
        cmd += ["--gate-backend", plan.gate_backend]
    if plan.allow_busy:
        cmd.append("--allow-busy")
    if plan.log_dir is not None:
        cmd += ["--log-dir", str(Path(plan.log_dir).absolute())]
    if plan.tags:
        cmd += ["--tags", ",".join(plan.tags)]
    for e in plan.extra_vars:
        cmd += ["-e", e]
    cmd += plan.ansible.rerun_args()
    return shlex.join(cmd)


def exit_code(plan: Plan, results: list[HostResult]) -> int:
    if plan.check:
        return 0 if all(r.outcome in DONE for r in results) else 1
    return 1 if any(r.needs_rerun(plan.partial) for r in results) else 0


def summary(plan: Plan, results: list[HostResult], folder: Path, started: float, stopped_at: int | None) -> dict:
    rerun = [r.host for r in results if (r.outcome not in DONE if plan.check else r.needs_rerun(plan.partial))]
    counts = {o: sum(1 for r in results if r.outcome == o) for o in OUTCOMES}
    return {SUMMARY_KEY: SUMMARY_FORMAT,
            "lock": {"digest": plan.lock.digest, "row": plan.lock.row, "file": str(folder / "lock.json")},
            "check": plan.check, "gate": "none" if plan.check else plan.gate, "batch_size": plan.batch_size,
            "partial": plan.tags or None, "start_at_task": plan.ansible.start_at_task,
            "hosts": [asdict(r) | {"needs_rerun": r.host in rerun} for r in results],
            "counts": {k: v for k, v in counts.items() if v},
            "at_lock": sum(1 for r in results if r.at_lock), "stopped_after_batch": stopped_at,
            "rerun": rerun_command(plan, folder, rerun) if rerun else None,
            "log": str(folder / "deploy.log"), "started": started, "finished": time.time(),
            "exit": exit_code(plan, results)}


def render(data: dict) -> str:
    """The summary table: one line per host, then the counts and the rerun command."""
    hosts = data["hosts"]
    lines = ["", f"summary: lock {status.short(data['lock']['digest'])} (torch_npu {data['lock']['row']['torch_npu']}, "
                 f"CANN {data['lock']['row']['cann']}, HDK {data['lock']['row']['hdk']})"
                 + (" -- preview (--check): nothing was changed" if data["check"] else
                    f", batches of {data['batch_size']}, gate {data['gate']}")]
    # Columns as wide as their content; the lock a host is at is cut at AT_SHOWN characters.
    lines += aligned([("host", "batch", "outcome", "gate", "lock now", "cause")]
                     + [(h["host"], str(h["batch"] or "-"), h["outcome"], h["gate"], h["at"][:AT_SHOWN], h["cause"])
                        for h in hosts])
    counts = ", ".join(f"{n} {o}" for o, n in data["counts"].items())
    lines.append(f"{len(hosts)} host(s): {counts}; {data['at_lock']} at the lock")
    skipped = ([f"--tags {','.join(data['partial'])}"] if data["partial"] else []) + \
        ([f"--start-at-task {data['start_at_task']!r}"] if data.get("start_at_task") is not None else [])
    if skipped and not data["check"]:
        lines.append(f"a partial run ({', '.join(skipped)}) brings no host to the lock: deploy without "
                     f"{' or '.join(o.split()[0] for o in skipped)} for that (`npuenv status` says where each host is)")
    if data["stopped_after_batch"]:
        lines.append(f"the roll stopped after batch {data['stopped_after_batch']} failed: the hosts not attempted "
                     f"were left as they were")
    if data["rerun"]:
        lines.append(f"rerun the {sum(h['needs_rerun'] for h in hosts)} host(s) that need it:\n  {data['rerun']}")
    lines.append(f"log: {data['log']}")
    return "\n".join(lines) + "\n"


def deploy(plan: Plan, log_base: Path, out=None) -> int:
    """Roll plan.lock out (see the module's docstring); the exit code."""
    out = out or sys.stdout
    platforms = cm.load_matrix(plan.matrix).platforms if plan.matrix else cm.load_platforms()
    folder = new_log_folder(log_base)
    lock_mod.write(plan.lock, folder / "lock.json", None)
    log = Log(folder / "deploy.log", out)
    results = {h: HostResult(h) for h in plan.hosts}
    started, stopped_at, current = time.time(), None, []
    interrupted = refused = None
    # The summary is written inside the interruptible block: a second signal does not cut it short.
    with interrupts.interruptible("deploy"):
        try:
            # Retry files (when the user enables them) land in the log folder, beside deploy.log.
            with tempfile.TemporaryDirectory(prefix="npuenv-deploy-") as tmp, \
                    run.session(plan.ansible, retry_dir=folder):
                workdir = Path(tmp)
                lock_vars = _begin(plan, folder, workdir, log)
                eligible, refused_hosts = _preflight_logged(plan, platforms, log)
                apply(results, refused_hosts)
                # A preview shows every host at once; a real run goes batch by batch.
                groups = [eligible] if plan.check and eligible else batches(eligible, plan.batch_size)
                for number, batch in enumerate(groups, 1):
                    current = batch
                    log.line(f"\n=== batch {number}/{len(groups)}: {', '.join(batch)}")
                    apply(results, deploy_batch(plan, number, batch, lock_vars, log, workdir))
                    apply(results, _gate(plan, number, batch, folder, log, results))
                    bad = [h for h in batch if results[h].outcome in (FAILED, UNREACHABLE)]
                    if bad and not plan.check:
                        stopped_at = number
                        apply(results, _stop(number, bad, groups[number:], log))
                        break
                current = []
                apply(results, read_back(plan, platforms))
        except interrupts.Interrupted as e:
            interrupted = e
            apply(results, {h: {"outcome": FAILED, "cause": f"interrupted by {signal.Signals(e.signum).name} during "
                                                          f"its batch: it may be part way through a task"}
                            for h in current})
        except UserError as e:  # refused before batch 1 (two names for one machine): nothing changed
            refused = e
            apply(results, {h: {"cause": r.cause or short(f"refused: {e}")} for h, r in results.items()})
        try:
            data = summary(plan, list(results.values()), folder, started, stopped_at)
            outputs.write_text(folder / "summary.json", json.dumps(data, indent=1) + "\n")
            log.write(render(data))
        finally:
            log.close()
    if refused is not None:
        raise refused
    if interrupted is not None:
        interrupted.args = (f"deploy: interrupted by {signal.Signals(interrupted.signum).name}; the summary above "
                            f"says where each host is; run the rerun command to converge them",)
        raise interrupted
    return data["exit"]


def _begin(plan: Plan, folder: Path, workdir: Path, log: Log) -> Path:
    """Write the lock as the playbook's extra vars and log what is about to happen; returns the vars file."""
    lock_vars = workdir / "lock-vars.yml"
    # !unsafe: nothing in the lock is ever rendered as a template by Ansible.
    lock_vars.write_text(unsafe_yaml({"npuenv_lock": plan.lock.data}))
    log.line(f"deploy {plan.lock.summary()} to {len(plan.hosts)} host(s) of {plan.inventory}; log "
             f"folder {folder}")
    off = run.host_key_checking_off()
    if off:
        log.line(f"host key checking is off ({off}): a host is not proven to be the machine its name "
                 f"says; remove that setting to turn it back on")
    return lock_vars


def _preflight_logged(plan: Plan, platforms: cm.Platforms, log: Log) -> tuple[list[str], Updates]:
    """Read every host's facts and keep the hosts fit to deploy (``preflight``), saying why the others are not."""
    t0 = time.monotonic()
    probed = status.read_facts(plan.inventory, plan.hosts, extra_vars=plan.extra_vars)
    eligible, refused = preflight(plan, probed, platforms)
    log.line(f"preflight ({time.monotonic() - t0:.1f} s): {len(eligible)} of {len(plan.hosts)} host(s) "
             f"to deploy" + "".join(f"\n  {h}: {r['outcome']}: {r['cause']}" for h, r in refused.items()))
    return eligible, refused


def _gate(plan: Plan, number: int, batch: list[str], folder: Path, log: Log,
          results: dict[str, HostResult]) -> Updates:
    """Validate the batch's deployed hosts with the plan's gate (not in a preview)."""
    done = [h for h in batch if results[h].outcome in (CHANGED, UNCHANGED)]
    if not plan.check and plan.gate != "none" and done:
        log.line(f"=== batch {number}: gate {plan.gate} on {', '.join(done)}")
        return gate_batch(plan, number, done, folder, log)
    return {h: {"gate": "none"} for h in done} if plan.gate == "none" else {}


def _stop(number: int, bad: list[str], later: list[list[str]], log: Log) -> Updates:
    """The roll stops after a failed batch: the ``later`` batches' hosts say why they were not attempted."""
    log.line(f"=== batch {number} failed ({', '.join(bad)}): the roll stops here")
    why = f"the roll stopped after batch {number} failed ({', '.join(bad[:3])})"
    return {h: {"cause": why} for batch in later for h in batch}


def prepare(inventory, *, lock_path=None, limit=None, batch_size=DEFAULT_BATCH, gate=None,
            gate_backend=AUTO, allow_busy=False, check=False, tags=None, extra_vars=None,
            ansible: Given | None = None, log_dir=None, matrix=None) -> Plan:
    """Every input checked (UserError: exit 2, nothing started), the hosts listed and the lock had.
    ``gate`` None: DEFAULT_GATE, or none for a partial run (--tags, --start-at-task), which leaves the
    rest of the stack as it was and so could never pass a whole validation."""
    if gate is None:
        gate = "none" if tags or (ansible and ansible.start_at_task is not None) else DEFAULT_GATE
    if gate not in GATES:
        raise UserError(f"--gate {gate}: use one of {', '.join(GATES)}")
    batches([], batch_size)
    ansible = (ansible or Given()).checked()   # a vault file that cannot serve: exit 2 before anything runs
    if ansible.start_at_task is not None:
        run.check_start_at_task(PLAYBOOK, ansible.start_at_task)
    extra_vars = list(extra_vars or [])
    run.extra_vars_values(extra_vars)
    run.check_tags(PLAYBOOK, tags)
    the_matrix = cm.load_matrix(matrix) if matrix else cm.load_matrix()
    given = lock_mod.load(lock_path) if lock_path else None
    with run.session(replace(ansible, ask_become_pass=False)):   # encrypted group_vars need the vault options
        hosts, hostvars = run.fleet(inventory, limit)
    the_lock = given or lock_from_inventory(hosts, hostvars, the_matrix)
    plan = Plan(Path(inventory).absolute(), the_lock, hosts, batch_size, gate, gate_backend, allow_busy, check, tags,
                extra_vars, ansible, Path(log_dir) if log_dir else None, matrix, hostvars)
    extra = run.extra_vars_values(extra_vars)
    if extra is not None:  # the roles' own input checks, for every host of the run before batch 1
        run.check_role_inputs(PLAYBOOK, hosts, hostvars, extra)
    return plan

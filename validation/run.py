"""`npuenv validate`: run the suite on every target, in parallel, and merge
one fleet report.

The suite runs on each target itself: the validation artefact (artefact.py, a
zipapp with the suite, the workloads, pytest and testinfra) is copied there and
run by the target's python3, which prints one JSON document (node/runner.py). How it
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

import sys
import tempfile
import time
from collections import Counter
from contextlib import ExitStack
from pathlib import Path

import compat_matrix as cm
from compat_matrix import interrupts, outputs
from compat_matrix import lock as lock_mod
from compat_matrix.errors import UserError

from . import artefact as artefact_mod, report, targets as targets_mod
from .merge import FLEET_CHECKS, Outcome, checks_ran, exit_status, fleet_args, fleet_records, records_of
from .node import document, identity, options
from .node.model import AUTO, FULL, LEVELS, LEVELS_TEXT
from .node.runner import FLEET_PORT, check_name, level_problem
from .node.runner import expected_stack as node_expected_stack
from .targets import plan, run_phase


def expected_stack(stack: cm.Stack) -> dict:
    """What the suite compares hosts with: the resolved row plus its environment (as a node makes it
    from a lock's entry: node.expected_stack)."""
    return node_expected_stack(stack.with_environment(), stack.platforms)


# The row fields the report's meta names (from the lock the hosts were checked against).
META_ROW = ("torch_npu", "torch", "cann", "python", "chip")


def _lock_for(matrix: cm.Matrix, constraints: cm.Constraints, what: str) -> lock_mod.Lock:
    """The lock of ``constraints`` (`npuenv lock`'s resolution, every platform of the row: each host
    takes the entry of its own arch and OS)."""
    try:
        return lock_mod.make(matrix, constraints)
    except cm.NoMatch as e:
        raise UserError(f"{e}\nthe hosts are checked against one row ({what}): change the constraints to fit one "
                        f"(`npuenv matrix list` shows the rows and their Pythons)") from None


def expectations(hosts: list[str], hints: dict, constraints: cm.Constraints, lock: lock_mod.Lock | None,
                 matrix: cm.Matrix, log=None) -> tuple[dict[str, list[str]], dict[str, lock_mod.Lock]]:
    """What each host is checked against, as the node's arguments, and the locks the artefact ships:
    --lock's lock; else the constraints resolved into a lock (what the targets carry, an inventory's
    npuenv_row or an image's labels, fills in chip and Python the command line does not say); else
    each host's own: the lock a node records, the lock an image holds (its digest checked against its
    label), or for an image built before locks the row its labels name."""
    given = constraints.given()
    if lock is not None and given:
        raise UserError(f"a lock and row constraints ({constraints.describe()}): give one or the other")
    if lock is not None:
        lock.stacks(matrix)   # the matrix still gives every entry's facts
        return {h: ["--lock", lock.digest] for h in hosts}, {lock.digest: lock}
    if given:
        hint = {k: v for k, v in ((hints or {}).get("row") or cm.Constraints()).given().items()
                if k not in ("arch", "os")}   # each host's own platform is its entry's
        made = _lock_for(matrix, cm.Constraints(**{**hint, **given}), "the constraints given")
        return {h: ["--lock", made.digest] for h in hosts}, {made.digest: made}
    images = (hints or {}).get("images") or {}
    args, locks = {}, {}
    for h in hosts:
        image = images.get(h)
        if image is None:
            args[h] = ["--recorded-lock"]
        elif image.digest:
            args[h] = ["--recorded-lock", "--lock-digest", image.digest]
        elif image.row is not None:
            made = _lock_for(matrix, image.row, f"the row {h}'s labels name")
            locks[made.digest] = made
            args[h] = ["--lock", made.digest]
            if log:
                log(f"{h} holds no lock (built before npuenv images carried one): checked against the row its "
                    f"labels name, torch_npu {made.row['torch_npu']}, Python {made.row['python']}, chip "
                    f"{made.row['chip']}; rebuild it to carry its lock")
        else:
            raise UserError(f"{h} carries neither a lock nor npuenv's row labels (not built by `npuenv image "
                            f"build`): pass --lock FILE or --row")
    return args, locks


def lock_meta(hosts: list[str], outcomes: dict, locks: dict[str, lock_mod.Lock]) -> dict:
    """The report's meta about the locks: each host's (what its node said it was checked against,
    null when it said nothing), and the row they share (or "per host" when they differ)."""
    per_host = {h: (getattr(outcomes.get(h), "document", None) or {}).get("lock") for h in hosts}
    digests = {i["digest"] for i in per_host.values() if i} or set(locks)
    meta = {lock_mod.FORMAT_KEY: lock_mod.FORMAT, "locks": per_host}
    if len(digests) == 1:
        [digest] = digests
        known = locks.get(digest)
        row = known.row if known else next(i for i in per_host.values() if i and i["digest"] == digest)
        meta.update({"lock": digest, **{k: row.get(k) for k in META_ROW if row.get(k) is not None}})
    else:
        meta.update({"lock": None, **{k: "per host" if digests else "unknown" for k in META_ROW}})
    return meta


def machines(transports: list) -> list[str]:
    """The hosts that are machines of the fleet, in the targets' order: not the image targets, which are
    containers started for this run on a machine (the controller, or a node whose host root they mount)."""
    return [h for t in transports if t.fleet_member for h in t.hosts]


def peer_groups(transports: list, outcomes: dict) -> dict[str, str]:
    """host -> its peers for the straggler comparison (stragglers.py): the kind of target (a node, or an
    image run in a container on the controller, which shares the controller's CPUs) and the chip its lock
    names."""
    groups = {}
    for t in transports:
        for h in t.hosts:
            chip = ((getattr(outcomes.get(h), "document", None) or {}).get("lock") or {}).get("chip")
            groups[h] = f"{'node' if t.fleet_member else 'image'}/{chip or 'unknown chip'}"
    return groups


def outcome_line(host: str, outcome: Outcome) -> str:
    """What one host's run came to, in one line: its checks counted by status, or why none ran."""
    if outcome.status != "ran":
        return f"{host}: {outcome.status}: {outcome.reason}"
    counts = Counter(r["status"] for r in records_of(host, outcome))
    seen = ", ".join(f"{counts[s]} {s}" for s in document.STATUSES if counts[s])
    return f"{host}: {seen or 'no check ran'}"


class Progress:
    """A line per host as its outcome arrives, so that a run of minutes over a fleet shows where it is
    (the report comes at the end)."""
    SHOWN = 160   # a reason is the node's text: one short, safe line of it

    def __init__(self, say, hosts: int):
        self.say, self.total, self.count, self.started = say, hosts, 0, time.monotonic()

    def __call__(self, host: str, outcome: Outcome) -> None:
        self.count += 1
        line = report.one_line(outcome_line(host, outcome), self.SHOWN)
        self.say(f"[{self.count}/{self.total}] {line} ({time.monotonic() - self.started:.0f} s)")


def validate(targets: list[str], level: str, constraints: cm.Constraints, out_dir: Path, *,
             backend: str = AUTO, host_root: str = "/", run_args: list[str] | None = None,
             suite_options: list[str] | None = None, only: list[str] | None = None,
             straggler_margin: float = report.STRAGGLER_MARGIN,
             straggler_min_peers: int = report.stragglers_mod.MIN_PEERS, fleet_port: int = FLEET_PORT,
             matrix: str | None = None, lock: lock_mod.Lock | str | Path | None = None,
             quiet: bool = False) -> int:
    """Run the suite on every target and write the reports. The hosts are checked against ``lock``
    (a Lock or its file), else ``constraints`` resolved into one, else each host's own recorded lock
    (``expectations``); each host against the lock's entry for its own arch and OS."""
    parsed, only = _checked_inputs(targets, level, only, host_root, straggler_margin, straggler_min_peers,
                                   fleet_port)
    out_dir = outputs.check_dir_output(Path(out_dir), "--out")
    if lock is not None and not isinstance(lock, lock_mod.Lock):
        lock = lock_mod.load(lock)
    if lock is not None and constraints.given():
        raise UserError(f"--lock and row constraints ({constraints.describe()}): give one or the other")
    the_matrix = cm.load_matrix(matrix) if matrix else cm.load_matrix()
    say = (lambda m: None) if quiet else (lambda m: print(f"npuenv: {m}", file=sys.stderr, flush=True))
    # An interrupt ends the targets' runs and removes what was started (image containers, temporary files).
    with interrupts.interruptible("validate"), ExitStack() as cleanup:
        workdir = Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="npuenv-validate-")))
        transports, hints = plan(parsed, host_root, run_args or [], cleanup, workdir)
        hosts = [h for t in transports for h in t.hosts]
        expect, locks = expectations(hosts, hints, constraints, lock, the_matrix, log=say)
        # The whole locks travel: each node takes the entry of its own arch and OS (node/runner.py).
        artefact = artefact_mod.cached(None, locks={d: lk.data for d, lk in locks.items()})
        base = ["--level", level, f"--npuenv-backend={backend}", *(suite_options or [])]
        for check in only:
            base += ["--only", check]
        say(f"checking {len(hosts)} host{'s' if len(hosts) > 1 else ''} at the {level} level: a line each as it "
            f"finishes")
        phase1 = run_phase(transports, artefact, {h: expect[h] + base for h in hosts}, Progress(say, len(hosts)))
        _refuse_clashes(transports, phase1, out_dir)
        records = [r for h in hosts for r in records_of(h, phase1[h])]
        if level == FULL and (not only or set(only) & set(FLEET_CHECKS)):
            records += _fleet_phase(transports, artefact, phase1, expect, base, fleet_port, say)
        meta = {"level": level, "backend": backend, "targets": [str(t) for t in parsed],  # the parsed, safe form
                **lock_meta(hosts, phase1, locks)}
        data = report.fleet_result(records, hosts, phase1, straggler_margin=straggler_margin, meta=meta,
                                   peers=peer_groups(transports, phase1), straggler_min_peers=straggler_min_peers,
                                   machines=machines(transports))
        if not checks_ran(records):
            _nothing_checked(data, hosts, phase1, out_dir)
        # All reports or none (an earlier run's are removed then), also when interrupted.
        written = report.write_all(data, out_dir)
    if not quiet:
        report.show(report.terminal(data), sys.stdout)
        print("reports: " + ", ".join(str(p) for p in written))
    return exit_status(data)


def _checked_inputs(targets: list[str], level: str, only: list[str] | None, host_root: str,
                    straggler_margin: float, straggler_min_peers: int, fleet_port: int) -> tuple[list, list[str]]:
    """The targets parsed and the --only checks, every input checked before anything starts (the CLI's parser
    has checked most already); UserError names the first that is wrong."""
    if level not in LEVELS:
        raise UserError(f"unknown level '{level}'; use {LEVELS_TEXT}")
    parsed = [targets_mod.parse(t) for t in targets]
    only = [options.checked("--only", check_name, name) for name in only or []]
    problem = level_problem(only, level)
    if problem:
        raise UserError(problem)
    options.checked("--straggler-margin", options.fraction, straggler_margin)
    options.checked("--straggler-min-peers", options.peers, straggler_min_peers)
    options.checked("--fleet-port", options.port, fleet_port)
    if any(isinstance(t, targets_mod.ImageTarget) for t in parsed) and not Path(host_root).is_dir():
        raise UserError(f"--host-root {host_root}: no such folder; give the folder the host's /dev and NPU driver "
                        f"are under (default /)")
    return parsed, only


def _refuse_clashes(transports: list, phase1: dict[str, Outcome], out_dir: Path) -> None:
    """Two targets that reach one machine would be reported as two hosts that passed: refused before
    anything is reported. (Image targets are containers started for this run, not machines.)"""
    clashes = identity.clashes({h: phase1[h].document for h in machines(transports)})
    if clashes:
        report.remove_all(out_dir)
        raise UserError(f"targets that reach one machine: {'; '.join(clashes)}; {identity.FIX}; "
                        f"nothing was reported")


def _fleet_phase(transports: list, artefact: Path, phase1: dict[str, Outcome], expect: dict[str, list[str]],
                 base: list[str], fleet_port: int, say) -> list[dict]:
    """The records of the checks across nodes, run on the nodes that ran the first phase (none when
    fewer than two did)."""
    members = [h for h in machines(transports) if phase1[h].status == "ran"]
    if len(members) < 2:
        return []
    say(f"the checks across nodes, on the {len(members)} that ran: a line each as it finishes")
    phase2 = run_phase(transports, artefact, {h: expect[h] + a for h, a in
                                              fleet_args(phase1, members, base, fleet_port).items()},
                       Progress(say, len(members)))
    return [r for h in members for r in records_of(h, phase2[h])] + fleet_records(phase2, members)


def _nothing_checked(data: dict, hosts: list[str], phase1: dict[str, Outcome], out_dir: Path) -> None:
    """Raise the UserError of a run where no check ran. metrics.prom alone says so, each host at passed 0
    (an alert on it fires; a missing file would not), and no report of an earlier run stays to be read as
    this run's verdict."""
    try:
        [metrics] = report.write_all(data, out_dir, names=(report.METRICS,))
        written = f"{metrics} records it ({report.HOST_PASSED} 0 for each host)"
    except interrupts.Interrupted:
        raise
    except UserError as e:
        written = str(e)
    reasons = "; ".join(report.one_line(f"{h}: {phase1[h].status} {phase1[h].reason[:300]}".strip()
                                        if phase1[h].status != "ran" else f"{h}: every check was skipped")
                        for h in hosts)
    raise UserError(f"no check ran on any target ({reasons}); {written}")

"""Merging what the targets sent back into check records: one target's
outcome (its node document, or why there is none) becomes its records; the
fleet phase's records are judged across all nodes; each node's arguments for
the fleet phase come from what the others reported in the first.

What a node sends is untrusted (validation/node/document.py checks it first): its
records only ever speak for itself, and what it says about its peers is a hint
that never makes another node fail."""
from __future__ import annotations

from dataclasses import dataclass, field

from .artefact import MIN_PYTHON
from .node import document, explain
from .node.model import ERROR, FAILED, FULL, PASSED, QUICK, REACHABLE, SKIPPED, SUITE, CheckResult, HostResult
from .report import FLEET, executed, host_failure

# The checks of the fleet phase (marked `fleet` in the suite).
FLEET_CHECKS = ("allreduce_across_nodes", "netdetect_peers")
# Where the device IPs of a node are recorded in its results, for its peer's netdetect.
DEVICE_IPS_CHECK = "npu_network"
# Rank 0's address when it reported none (every node then runs on one machine).
LOOPBACK = "127.0.0.1"
# How much of a reason a summary or a cause quotes.
QUOTED = 300


@dataclass
class Outcome:
    """What came back from one target in one phase."""
    status: str                 # "ran", "unreachable" or "error"
    reason: str = ""            # why it is unreachable or in error
    document: dict = field(default_factory=dict)  # the node's JSON (node/runner.py), checked by document.py
    refused: str = ""           # what is wrong with the node's document, when the controller refused it

    def records(self) -> list[CheckResult]:
        """The records the node sent (document.py checked them); none unless it ran."""
        return [CheckResult.from_dict(r) for r in self.document.get("results", [])] if self.status == "ran" else []


def judge(rc: int, stdout: str, stderr: str) -> Outcome:
    """A node run's outcome from the artefact's exit code and output."""
    try:
        doc = document.read(stdout)
    except document.NoDocument:
        tail = (stdout + stderr).strip()[-1500:] or f"exit {rc}, no output"
        return Outcome("error", f"the validation artefact gave no result (exit {rc}): {tail}")
    except document.DocumentError as e:
        return Outcome("error", f"its result document was refused: {e}", refused=str(e))
    if "error" in doc:
        return Outcome("error", doc["error"], doc)
    return Outcome("ran", document=doc)


# --- merging -----------------------------------------------------------------

def _quote(text: str) -> str:
    """A reason as one short line, to say what was observed."""
    return document.shorten(" ".join(text.split()), QUOTED)


def _host_record(host: str, check: str, status: str, summary: str, expected: str, found: str,
                 cause: str, fix: str, *, known_failure: bool = True) -> dict:
    """A record about the host as a whole; a known failure's own cause and fix win over the given ones
    (unless ``known_failure`` is False: what ``found`` quotes then is no symptom)."""
    known = explain.explain(found) if known_failure else None
    cause, fix = known if known else (cause, fix)
    return host_failure(host, check, QUICK, summary, summary, expected, found, cause, fix, status)


def records_of(host: str, outcome: Outcome) -> list[dict]:
    """The check records one target contributed in one phase, each with the controller's name of the host."""
    if outcome.status == "unreachable":
        return [_host_record(
            host, REACHABLE, FAILED, f"unreachable: {outcome.reason}", "the host answers over its connection",
            outcome.reason, f"the controller could not reach the host: {_quote(outcome.reason)}",
            f"reach {host} by hand over the same connection (ssh with the inventory's user, port and key; "
            f"podman ps -a for a container) and fix what it reports, then validate again")]
    if outcome.status == ERROR and outcome.refused:
        return [_host_record(
            host, SUITE, ERROR, f"the node's result document was refused: {outcome.refused[:QUOTED]}",
            f"one result document in the node document's format {document.FORMAT_VERSION}, within its limits",
            outcome.refused, f"the node sent a result the controller does not accept ({_quote(outcome.refused)}): "
            "its validation artefact or its Python was altered, or the host is compromised",
            f"validate {host} alone and read what it prints; until its result is well-formed, take it out of the "
            f"fleet and reinstall it rather than trust its results", known_failure=False)]
    if outcome.status == ERROR:
        return [_host_record(
            host, SUITE, ERROR, f"the suite could not run: {outcome.reason[:QUOTED]}",
            "the validation artefact runs on the host", outcome.reason,
            f"the validation artefact did not run to its end on the host: {_quote(outcome.reason)}",
            f"validate {host} alone (npuenv validate --target ...) and read the suite's output it prints; "
            f"the host's python3 must be {'.'.join(map(str, MIN_PYTHON))} or newer")]
    return [{**r, "host": host} for r in outcome.document.get("results", [])]


def _mine(outcome: Outcome, check: str) -> list[CheckResult]:
    """A member's own records of a fleet check (none when it did not run)."""
    return [r for r in outcome.records() if r.check == check]


def _own_failure(outcome: Outcome, check: str, ran: bool) -> str | None:
    """Why a member failed a fleet check, as the controller saw it itself: its
    outcome, or its own record of the check (missing, failed, in error); None if it passed or skipped."""
    if outcome.status != "ran":
        return f"{outcome.status}: {outcome.reason[:200]}"
    mine = _mine(outcome, check)
    if not mine:
        return "it sent no result for this check" if ran else None
    bad = [r for r in mine if r.bad]
    return bad[0].message[:200] if bad else None


def fleet_records(phase: dict[str, Outcome], members: list[str]) -> list[dict]:
    """One fleet-wide record per fleet check, naming the nodes that failed it by
    their own outcome and records; first those the others say they waited for
    (a collective's stuck_nodes, by rank), which is believed only of a node
    that failed by its own account."""
    out = []
    for check in FLEET_CHECKS:
        ran = any(r.check == check for h in members for r in phase[h].records())
        failed = {h: why for h in members if (why := _own_failure(phase[h], check, ran)) is not None}
        if not ran and not failed:
            continue
        waited_for = {members[n] for h in members for r in _mine(phase[h], check) if isinstance(r.data, dict)
                      for n in r.data.get("stuck_nodes", []) if 0 <= n < len(members)}
        bad = [f"{h} (the other nodes waited for it: it never reached the collective; {failed[h]})"
               for h in members if h in failed and h in waited_for]
        bad += [f"{h} ({failed[h]})" for h in members if h in failed and h not in waited_for]
        # Skipped is not passed: a member that only skipped the check took no part in it.
        skipped = {h: mine[0].message for h in members if h not in failed
                   and (mine := _mine(phase[h], check)) and not any(r.executed for r in mine)}
        took_part = sum(1 for h in members if h not in failed and any(r.executed for r in _mine(phase[h], check)))
        status = FAILED if bad else PASSED if took_part else SKIPPED
        message = (f"{len(bad)} of {len(members)} node(s) failed: " + "; ".join(bad) if bad else
                   f"all {len(members)} nodes took part" if not skipped else
                   f"{took_part} of {len(members)} nodes took part" if took_part else
                   f"none of the {len(members)} nodes took part")
        if skipped:
            message += "; skipped on " + "; ".join(f"{h} ({_quote(why)})" for h, why in skipped.items())
        failure = {"summary": message, "expected": f"every one of the {len(members)} nodes passes",
                   "found": "; ".join(bad), "cause": "the nodes named here failed, hung or could not be reached "
                   "while the others waited for them",
                   "fix": "fix or drain the named nodes, then validate the fleet again"} if bad else None
        out.append(CheckResult(FLEET, check, FULL, status, message=message, failure=failure).to_dict())
    return out


def fleet_args(phase1: dict[str, Outcome], members: list[str], base: list[str], port: int) -> dict[str, list[str]]:
    """Each node's arguments for the fleet phase: its rank, rank 0's address,
    and the device IPs of the next node (for netdetect). The addresses and
    device IPs come from documents document.py checked: IP addresses, device
    ids small numbers (a node with others is not a member)."""
    master = (phase1[members[0]].document.get("addresses") or [LOOPBACK])[0]
    out = {}
    for rank, host in enumerate(members):
        peer = phase1[members[(rank + 1) % len(members)]].document
        data = next((r.get("data") for r in peer.get("results", []) if r["check"] == DEVICE_IPS_CHECK), None)
        ips = (data.get("device_ips") if isinstance(data, dict) else None) or {}
        peer_ips = ",".join(f"{dev}={ip}" for dev, ip in ips.items() if ip)
        out[host] = [*base, "--fleet", f"--npuenv-fleet-size={len(members)}", f"--npuenv-fleet-rank={rank}",
                     f"--npuenv-fleet-master={master}", f"--npuenv-fleet-port={port}", f"--npuenv-peer-ips={peer_ips}"]
    return out


def exit_status(result: dict) -> int:
    """1 when a check failed (the fleet's included) or a host did not pass (report.fleet_result's verdict:
    failed, unreachable, in error, not checked), else 0."""
    failed = any(CheckResult.from_dict(r).bad for r in result["results"]) or \
        any(HostResult.from_dict(s).status != PASSED for s in result["host_status"].values())
    return 1 if failed else 0


def checks_ran(records: list[dict]) -> bool:
    """Whether any real check executed (not a skip, not a stand-in for an unreachable host)."""
    return any(map(executed, records))

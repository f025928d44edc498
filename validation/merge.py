"""Merging what the targets sent back into check records: one target's
outcome (its node document, or why there is none) becomes its records; the
fleet phase's records are judged across all nodes; each node's arguments for
the fleet phase come from what the others reported in the first."""
from __future__ import annotations

from dataclasses import dataclass, field

from . import explain, workloads
from .report import FLEET

# The checks of the fleet phase (marked `fleet` in the suite).
FLEET_CHECKS = ("allreduce_across_nodes", "netdetect_peers")
# Where the device IPs of a node are recorded in its results, for its peer's netdetect.
DEVICE_IPS_CHECK = "npu_network"


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

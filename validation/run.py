"""`npuenv validate`: run the suite on every target, in parallel, and merge
one fleet report.

The suite runs on each target itself: the validation artefact (artefact.py, a
zipapp with the suite, the workloads, pytest and testinfra) is copied there and
run by the target's python3, which prints one JSON document (node.py). How it
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

from __future__ import annotations

import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path

import compat_matrix as cm
from compat_matrix import interrupts, outputs
from compat_matrix.errors import UserError

from . import artefact as artefact_mod
from . import report
from .merge import FLEET_CHECKS, checks_ran, exit_status, fleet_args, fleet_records, records_of
from .node import FLEET_PORT, LEVELS
from .targets import plan, run_phase


def expected_stack(stack: cm.Stack) -> dict:
    """What the suite compares hosts with: the resolved row plus its environment."""
    return {**stack.with_environment(),
            "cann_python_modules": sorted(set(stack.platforms.cann_python_deps.values()))}


def validate(targets: list[str], level: str, constraints: cm.Constraints, out_dir: Path, *,
             backend: str = "auto", host_root: str = "/", run_args: list[str] | None = None,
             suite_options: list[str] | None = None, only: list[str] | None = None,
             straggler_margin: float = report.STRAGGLER_MARGIN, fleet_port: int = FLEET_PORT,
             matrix: str | None = None, quiet: bool = False) -> int:
    if level not in LEVELS:
        raise UserError(f"unknown level '{level}'; use quick, standard or full")
    out_dir = outputs.check_dir_output(Path(out_dir), "--out")
    the_matrix = cm.load_matrix(matrix) if matrix else cm.load_matrix()
    # An interrupt ends the targets' runs and removes what was started (image containers, temporary files).
    with interrupts.interruptible("validate"), ExitStack() as cleanup:
        workdir = Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="npuenv-validate-")))
        transports, hint = plan(targets, host_root, run_args or [], cleanup, workdir)
        # What the targets carry (an inventory's npuenv_row: chip, python, ...;
        # an image's label) fills in what the command line does not say.
        given = constraints.given()
        row = {k: str(v) for k, v in hint.items() if v is not None}
        constraints = cm.Constraints(**{**row, **given})
        if not constraints.given():
            raise UserError("which matrix row should the hosts match? pass --row or constraints "
                            "(images carry theirs in a label, inventories in npuenv_row)")
        resolved = cm.resolve(the_matrix, constraints).stack
        stack = expected_stack(resolved)
        artefact = artefact_mod.build(workdir / "npuenv-validate.pyz", stack)
        base = ["--level", level, f"--npuenv-backend={backend}", *(suite_options or [])]
        for check in only or []:
            base += ["--only", check]
        hosts = [h for t in transports for h in t.hosts]
        phase1 = run_phase(transports, artefact, {h: base for h in hosts})
        records = [r for h in hosts for r in records_of(h, phase1[h])]
        members = [h for t in transports if t.fleet_member for h in t.hosts if phase1[h].status == "ran"]
        wants_fleet = level == "full" and (not only or set(only) & set(FLEET_CHECKS))
        if wants_fleet and len(members) >= 2:
            phase2 = run_phase(transports, artefact, fleet_args(phase1, members, base, fleet_port))
            for h in members:
                records += records_of(h, phase2[h])
            records += fleet_records(phase2, members)
        if not checks_ran(records):
            # A CI job reading junit.xml afterwards must not find the last run's verdict.
            report.remove_all(out_dir)
            reasons = "; ".join(f"{h}: {phase1[h].status} {phase1[h].reason[:300]}".strip() for h in hosts)
            raise UserError(f"no check ran on any target ({reasons})")
    data = report.fleet_result(records, hosts, phase1, straggler_margin=straggler_margin)
    data["meta"] = {"level": level, "backend": backend, "targets": targets,
                    **{k: resolved.to_dict()[k] for k in ("torch_npu", "torch", "cann", "python", "chip")}}
    written = report.write_all(data, out_dir)
    if not quiet:
        sys.stdout.write(report.terminal(data))
        print("reports: " + ", ".join(str(p) for p in written))
    return exit_status(records)

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
from . import identity, report
from .merge import FLEET_CHECKS, checks_ran, exit_status, fleet_args, fleet_records, nothing_checked, records_of
from . import options
from . import targets as targets_mod
from .node import FLEET_PORT, LEVELS, check_name, level_problem
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
    # Every input is checked before anything starts (the CLI's parser has checked most already).
    parsed = [targets_mod.parse(t) for t in targets]
    only = [options.checked("--only", check_name, name) for name in only or []]
    problem = level_problem(only, level)
    if problem:
        raise UserError(problem)
    options.checked("--straggler-margin", options.fraction, straggler_margin)
    options.checked("--fleet-port", options.port, fleet_port)
    if any(isinstance(t, targets_mod.ImageTarget) for t in parsed) and not Path(host_root).is_dir():
        raise UserError(f"--host-root {host_root}: no such folder; give the folder the host's /dev and NPU driver "
                        f"are under (default /)")
    out_dir = outputs.check_dir_output(Path(out_dir), "--out")
    the_matrix = cm.load_matrix(matrix) if matrix else cm.load_matrix()
    # An interrupt ends the targets' runs and removes what was started (image containers, temporary files).
    with interrupts.interruptible("validate"), ExitStack() as cleanup:
        workdir = Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="npuenv-validate-")))
        transports, hint = plan(parsed, host_root, run_args or [], cleanup, workdir)
        # What the targets carry (an inventory's npuenv_row: chip, python, ...;
        # an image's label) fills in what the command line does not say.
        given = constraints.given()
        row = {k: str(v) for k, v in hint.items() if v is not None}
        constraints = cm.Constraints(**{**row, **given})
        if not constraints.given():
            raise UserError("which matrix row should the hosts match? pass --row or constraints "
                            "(images carry theirs in a label, inventories in npuenv_row)")
        try:
            resolved = cm.resolve(the_matrix, constraints).stack
        except cm.NoMatch as e:
            raise UserError(f"{e}\nthe hosts are checked against one row: change the constraints to fit one "
                            f"(`npuenv matrix list` shows the rows and their Pythons)") from None
        stack = expected_stack(resolved)
        artefact = artefact_mod.build(workdir / "npuenv-validate.pyz", stack)
        base = ["--level", level, f"--npuenv-backend={backend}", *(suite_options or [])]
        for check in only or []:
            base += ["--only", check]
        hosts = [h for t in transports for h in t.hosts]
        phase1 = run_phase(transports, artefact, {h: base for h in hosts})
        # Two targets that reach one machine would be reported as two hosts that passed: refused before
        # anything is reported. (Image targets are containers started for this run, not machines.)
        clashes = identity.clashes({h: phase1[h].document for t in transports if t.fleet_member for h in t.hosts})
        if clashes:
            report.remove_all(out_dir)
            raise UserError(f"targets that reach one machine: {'; '.join(clashes)}; {identity.FIX}; "
                            f"nothing was reported")
        records = [r for h in hosts for r in records_of(h, phase1[h])]
        members = [h for t in transports if t.fleet_member for h in t.hosts if phase1[h].status == "ran"]
        wants_fleet = level == "full" and (not only or set(only) & set(FLEET_CHECKS))
        if wants_fleet and len(members) >= 2:
            phase2 = run_phase(transports, artefact, fleet_args(phase1, members, base, fleet_port))
            for h in members:
                records += records_of(h, phase2[h])
            records += fleet_records(phase2, members)
        meta = {"level": level, "backend": backend, "targets": [str(t) for t in parsed],  # the parsed, safe form
                **{k: resolved.to_dict()[k] for k in ("torch_npu", "torch", "cann", "python", "chip")}}
        if not checks_ran(records):
            # Nothing was checked: metrics.prom alone says so, each host at reachable 0 (an alert on
            # it fires; a missing file would not), and no report of an earlier run stays to be read
            # as this run's verdict.
            data = report.fleet_result(records + nothing_checked(records, hosts), hosts, phase1,
                                       straggler_margin=straggler_margin, meta=meta)
            try:
                [metrics] = report.write_all(data, out_dir, names=(report.METRICS,))
                written = f"{metrics} records it ({report.HOST_REACHABLE} 0 for each host)"
            except interrupts.Interrupted:
                raise
            except UserError as e:
                written = str(e)
            reasons = "; ".join(report.one_line(f"{h}: {phase1[h].status} {phase1[h].reason[:300]}".strip()
                                                if phase1[h].status != "ran" else f"{h}: every check was skipped")
                                for h in hosts)
            raise UserError(f"no check ran on any target ({reasons}); {written}")
        data = report.fleet_result(records, hosts, phase1, straggler_margin=straggler_margin, meta=meta)
        # All reports or none (an earlier run's are removed then), also when interrupted.
        written = report.write_all(data, out_dir)
    if not quiet:
        report.show(report.terminal(data), sys.stdout)
        print("reports: " + ", ".join(str(p) for p in written))
    return exit_status(records)

"""Progress on long work (image builds and pushes): which step runs, and how long it took.

A phase is a named part of a command (the engine's build, the SBOM, a push);
its start and its time are logged. While an engine runs, its own lines pass
through, and each of its build steps that took a second or more is followed by
a line with its time (podman and buildah print when a step starts, not how
long it took; docker's BuildKit prints both itself).
"""
from __future__ import annotations

import re
import subprocess
import time
from contextlib import contextmanager
from typing import Callable, Iterator

from compat_matrix import interrupts

Log = Callable[[str], None]
# podman/buildah: "[2/4] STEP 3/9: RUN ..." (multi-stage) or "STEP 3/9: RUN ..." (one stage).
STEP_RE = re.compile(r"^((?:\[\d+/\d+\] )?STEP \d+/\d+: \S+)")
# Steps quicker than this get no time line (cached steps take a tenth of a second).
STEP_REPORT_S = 1.0


def seconds(value: float) -> str:
    return f"{value:.1f} s" if value < 100 else f"{value:.0f} s"


class Progress:
    def __init__(self, log: Log, clock: Callable[[], float] = time.monotonic):
        self.log, self.clock = log, clock
        self.phases: dict[str, float] = {}
        self.steps: list[tuple[str, float]] = []     # every engine build step run, with its time
        self.lines: list[str] = []                   # the output of the last run, as far as it came

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Log the phase's start and, when it ends without an error, its time."""
        self.log(f"npuenv: {name} ...")
        started = self.clock()
        yield
        self.phases[name] = self.clock() - started
        self.log(f"npuenv: {name}: done in {seconds(self.phases[name])}")

    def summary(self) -> str:
        return ", ".join(f"{name} {seconds(s)}" for name, s in self.phases.items())

    def run(self, cmd: list[str], env: dict[str, str] | None = None) -> tuple[int, str]:
        """Run ``cmd``, passing each output line on as it comes, with the time of each build step
        that took STEP_REPORT_S or more; returns (exit code, all output)."""
        lines = self.lines = []   # kept on the object: what a stopped engine printed tells what it left
        step, step_started = None, 0.0

        def close_step() -> None:
            if step is None:
                return
            took = self.clock() - step_started
            self.steps.append((step, took))
            if took >= STEP_REPORT_S:
                self.log(f"npuenv:   {step} took {seconds(took)}")

        with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
                              env=env) as proc, interrupts.ended_on_interrupt(proc):
            assert proc.stdout is not None
            for line in proc.stdout:
                lines.append(line)
                m = STEP_RE.match(line)
                if m:
                    close_step()
                    step, step_started = m.group(1), self.clock()
                self.log(line.rstrip("\n"))
        close_step()
        return proc.returncode, "".join(lines)

"""What the validation artefact runs on a node: the testinfra suite against
``local://``, and one JSON document on stdout with every check's record.

    python3 npuenv-validate.pyz --level standard [--only CHECK ...] [--fleet] [suite options]

Suite options (``--npuenv-backend``, ``--npuenv-timeout``, ...) pass through to
the suite (validation/suite/conftest.py). ``--fleet`` runs only the checks that
need every node at once (the controller starts them on all nodes together).
Exit codes: 0 every check passed, 1 a check failed, 2 the suite could not run
(the JSON's "error" says why).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

SUITE = Path(__file__).resolve().parent / "suite"
# Which checks each level runs (pytest marker expressions). Checks that need
# every node at once carry the `fleet` mark and run in their own phase.
LEVELS = {"quick": "quick", "standard": "quick or standard", "full": "quick or standard or full"}
FLEET_MARK = "fleet"
EXIT_PASSED, EXIT_FAILED, EXIT_ERROR = 0, 1, 2
# Rank 0's rendezvous port for the checks across nodes.
FLEET_PORT = 29512


def marker_expression(level: str, fleet: bool) -> str:
    return FLEET_MARK if fleet else f"({LEVELS[level]}) and not {FLEET_MARK}"


def suite_command(level: str, hosts: str, stack: Path, results: Path, *, fleet: bool = False,
                  only: list[str] | None = None, options: list[str] | None = None) -> list[str]:
    """pytest's arguments for one run of the suite."""
    args = [str(SUITE), "-p", "validation.results", "-p", "no:cacheprovider", "-p", "no:xdist",
            "--rootdir", str(SUITE), "-c", os.devnull, "-m", marker_expression(level, fleet), "-q", "-rN",
            f"--hosts={hosts}", f"--npuenv-stack={stack}", f"--npuenv-results={results}", *(options or [])]
    if only:
        args += ["-k", " or ".join(only)]
    return args


def addresses() -> list[str]:
    """The node's addresses as its peers reach it (`hostname -I`)."""
    try:
        p = subprocess.run(["hostname", "-I"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return p.stdout.split()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="npuenv-validate.pyz", description=__doc__.split("\n\n")[0])
    parser.add_argument("--level", choices=tuple(LEVELS), default="quick")
    parser.add_argument("--only", action="append", help="run only this check (repeatable)")
    parser.add_argument("--fleet", action="store_true", help="run the checks that need every node at once")
    parser.add_argument("--stack", type=Path, help="the stack JSON to match (default: the one in the artefact)")
    args, suite_options = parser.parse_known_args(argv)
    started = time.time()
    out = {"hostname": socket.gethostname(), "addresses": addresses(), "python": sys.version.split()[0],
           "level": args.level, "fleet": args.fleet, "results": []}
    stack = args.stack or Path(__file__).resolve().parent.parent / "npuenv-stack.json"
    with tempfile.TemporaryDirectory(prefix="npuenv-results-") as tmp:
        results = Path(tmp) / "results.json"
        command = [sys.executable, "-m", "pytest",
                   *suite_command(args.level, "local://", stack, results, fleet=args.fleet, only=args.only,
                                  options=suite_options)]
        # Only the artefact's plugins: none the node's Python happens to have
        # installed (there are no entry points in the artefact, so testinfra is named).
        command[3:3] = ["-p", "testinfra.plugin"]
        env = dict(os.environ, PYTEST_DISABLE_PLUGIN_AUTOLOAD="1")
        # pytest's own output goes to stderr: stdout carries only the JSON.
        proc = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        sys.stderr.write(proc.stdout)
        results_written = results.exists()
        if results_written:
            out["results"] = json.loads(results.read_text())["results"]
    out["pytest_exit"] = proc.returncode
    out["duration_s"] = round(time.time() - started, 2)
    # pytest exits 1 for failed checks, and also when it could not start at all:
    # only a results file says the checks ran.
    ran = proc.returncode in (0, 1) and results_written
    if not ran:
        out["error"] = f"the suite could not run (pytest exit {proc.returncode}): " + proc.stdout.strip()[-1500:]
    print(json.dumps(out))
    return {0: EXIT_PASSED, 1: EXIT_FAILED}[proc.returncode] if ran else EXIT_ERROR


def run_from_archive(archive: str) -> int:
    """Unpack the artefact into a private directory, run main() from there
    (pytest collects the suite from real files), and remove the directory,
    also when the run is interrupted."""
    root = Path(tempfile.mkdtemp(prefix="npuenv-validate-"))
    child = None

    def stop(signum, _frame):
        if child and child.poll() is None:
            child.send_signal(signum)
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(root)
        env = dict(os.environ, PYTHONPATH=str(root), PYTHONDONTWRITEBYTECODE="1")
        child = subprocess.Popen([sys.executable, "-m", "validation.node", *sys.argv[1:]], env=env, cwd=root)
        return child.wait()
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

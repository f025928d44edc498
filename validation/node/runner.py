"""What the validation artefact runs on a node: the testinfra suite against
``local://``, and one JSON document on stdout with every check's record.

    python3 npuenv-validate.pyz --level standard [--only CHECK ...] [--fleet] [suite options]

Suite options (``--npuenv-backend``, ``--npuenv-timeout``, ...) pass through to
the suite (validation/node/suite/conftest.py). ``--fleet`` runs only the checks that
need every node at once (the controller starts them on all nodes together).
``--only`` takes check names (``suite_checks()``), each selected exactly.
``--facts`` runs no check and prints the facts document instead (``npuenv
status``: installed versions, npu-smi's process table, the deploy records).
Exit codes: 0 every check passed (or none of the --only checks is of this
phase: an empty result), 1 a check failed, 2 the suite could not run (the
JSON's "error" says why), 128+N stopped by signal N (SIGTERM, SIGINT), with
every process of the run ended and its temporary folders removed.
"""
from __future__ import annotations

import argparse
import ast
import functools
import importlib.util
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

from compat_matrix import interrupts

from . import identity, model
from .document import FACTS_KEY, FACTS_VERSION, FORMAT_KEY, FORMAT_VERSION
from .layout import LIBRARIES, LIBRARY_ARCHIVE, LOCKS_NAME, MODULES, STACK_NAME

SUITE = Path(__file__).resolve().parent / "suite"
# The unpacked artefact on a node: the folder that holds validation/.
ARTEFACT_ROOT = Path(__file__).resolve().parents[2]
# Which checks each level runs (pytest marker expressions: its own mark and those of the levels
# before it). Checks that need every node at once carry the `fleet` mark and run in their own phase.
LEVELS = {level: " or ".join(model.LEVELS[:i + 1]) for i, level in enumerate(model.LEVELS)}
FLEET_MARK = "fleet"
EXIT_PASSED, EXIT_FAILED, EXIT_ERROR = 0, 1, 2
# Rank 0's rendezvous port for the checks across nodes.
FLEET_PORT = 29512


# After SIGTERM, how long the suite's processes get to end before SIGKILL.
STOP_GRACE_S = 10


@dataclass(frozen=True)
class Check:
    """One check of the suite: a test_* function of suite/test_*.py, named without the prefix."""
    name: str
    level: str    # the lowest level that runs it
    fleet: bool   # it needs every node at once (the fleet phase)


def _marks(expr: ast.expr) -> set[str]:
    """The NAMEs of the ``pytest.mark.NAME`` marks in a decorator or a ``pytestmark`` value."""
    out = set()
    for item in expr.elts if isinstance(expr, (ast.List, ast.Tuple)) else [expr]:
        item = item.func if isinstance(item, ast.Call) else item
        if isinstance(item, ast.Attribute) and isinstance(item.value, ast.Attribute) and item.value.attr == "mark":
            out.add(item.attr)
    return out


@functools.lru_cache(maxsize=None)
def suite_checks() -> dict[str, Check]:
    """The suite's checks by name, read from its source (the controller does not
    import the suite: the checks are selected by their exact names, and the
    names are known before anything runs)."""
    checks: dict[str, Check] = {}
    for path in sorted(SUITE.glob("test_*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        module_marks = set().union(*(_marks(n.value) for n in tree.body if isinstance(n, ast.Assign)
                                     and any(isinstance(t, ast.Name) and t.id == "pytestmark" for t in n.targets)))
        for node in tree.body:
            if not (isinstance(node, ast.FunctionDef) and node.name.startswith("test_")):
                continue
            marks = set().union(*map(_marks, node.decorator_list))
            levels = [lv for lv in LEVELS if lv in marks] or [lv for lv in LEVELS if lv in module_marks]
            name = node.name.removeprefix("test_")
            if not levels or name in checks:
                raise ValueError(f"{path.name}: {node.name} " + ("is defined twice in the suite" if name in checks
                                 else f"has no level mark (pytest.mark.{model.LEVELS_TEXT})"))
            checks[name] = Check(name, levels[0], FLEET_MARK in marks | module_marks)
    return checks


def check_name(text: str) -> str:
    """``--only``'s type: a check of the suite, by its exact name."""
    if text not in suite_checks():
        raise argparse.ArgumentTypeError(f"no check is named {text!r}; the checks are: "
                                         f"{', '.join(sorted(suite_checks()))}")
    return text


def level_problem(only: list[str], level: str) -> str | None:
    """Why ``--level`` would not run every check ``--only`` names (None when it would)."""
    order = list(LEVELS)
    above = [suite_checks()[n] for n in only if order.index(suite_checks()[n].level) > order.index(level)]
    if not above:
        return None
    needed = max((c.level for c in above), key=order.index)
    return (f"--only {', '.join(f'{c.name} (a {c.level} check)' for c in above)}: --level {level} does not run "
            f"{'it' if len(above) == 1 else 'them'}; pass --level {needed}")


def marker_expression(level: str, fleet: bool) -> str:
    return FLEET_MARK if fleet else f"({LEVELS[level]}) and not {FLEET_MARK}"


def suite_command(level: str, hosts: str, stack: Path, results: Path, *, fleet: bool = False,
                  only: list[str] | None = None, options: list[str] | None = None) -> list[str]:
    """pytest's arguments for one run of the suite."""
    args = [str(SUITE), "-p", "validation.node.results", "-p", "no:cacheprovider", "-p", "no:xdist",
            "--rootdir", str(SUITE), "-c", os.devnull, "-m", marker_expression(level, fleet), "-q", "-rN",
            f"--hosts={hosts}", f"--npuenv-stack={stack}", f"--npuenv-results={results}", *(options or [])]
    # By exact name (validation/node/results.py), not pytest's -k, which matches substrings and takes expressions.
    args += [f"--npuenv-only={name}" for name in only or []]
    return args


def addresses() -> list[str]:
    """The node's addresses as its peers reach it (`hostname -I`)."""
    try:
        p = subprocess.run(["hostname", "-I"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return p.stdout.split()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="npuenv-validate.pyz", description=__doc__.split("\n\n")[0])
    parser.add_argument("--level", choices=tuple(LEVELS), default=model.DEFAULT_LEVEL)
    parser.add_argument("--only", action="append", type=check_name, help="run only this check (repeatable)")
    parser.add_argument("--fleet", action="store_true", help="run the checks that need every node at once")
    parser.add_argument("--stack", type=Path, help="the stack JSON to match (default: the one in the artefact)")
    parser.add_argument("--lock", metavar="DIGEST", help="match the entry for this node's arch and OS of the lock "
                        "of this digest the artefact carries")
    parser.add_argument("--recorded-lock", action="store_true", help="match the entry for this node's arch and OS "
                        "of the lock the node records (platforms.yaml install_records.lock)")
    parser.add_argument("--lock-digest", metavar="DIGEST", help="with --recorded-lock: the digest the recorded "
                        "lock must have (an image's label)")
    parser.add_argument("--facts", action="store_true", help="run no check: print what is installed, the deploy "
                        "records and the settings they name, as one JSON document (npuenv status)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args, suite_options = parser.parse_known_args(argv)
    if args.facts:
        print(json.dumps(facts_document()))
        return EXIT_PASSED
    problem = level_problem(args.only or [], args.level)
    if problem:
        parser.error(problem)
    started = time.time()
    out = _head(args)
    with tempfile.TemporaryDirectory(prefix="npuenv-results-") as tmp:
        stack = _stack_file(args, out, Path(tmp))
        if stack is None:
            # No stack to check against: the document says why (the identity above still goes back).
            print(json.dumps(out))
            return EXIT_ERROR
        proc, records, problem = _run_checks(args, suite_options, stack, Path(tmp))
    if records is not None:
        out["results"] = records
    return _finish(args, out, proc, records is not None, problem, started)


def _head(args: argparse.Namespace) -> dict:
    """The document before the suite runs: which node this is, what it was asked, no result yet."""
    # machine_id and host_keys say which machine this is: the controller refuses
    # two targets that reach one machine (validation/node/identity.py).
    return {FORMAT_KEY: FORMAT_VERSION,
            "hostname": socket.gethostname(), "addresses": addresses(), **identity.read(),
            "python": sys.version.split()[0], "level": args.level, "fleet": args.fleet, "results": []}


def _stack_file(args: argparse.Namespace, out: dict, tmp: Path) -> Path | None:
    """The stack JSON the suite matches: --stack, the lock's entry for this node (written into ``tmp``;
    ``out`` says which lock), or the artefact's own. None when the lock gives none (``out``'s error says why)."""
    # Absolute: pytest runs in a folder of its own.
    stack = args.stack.resolve() if args.stack else ARTEFACT_ROOT / STACK_NAME
    if args.lock or args.recorded_lock:
        from compat_matrix.errors import UserError
        try:
            expected, out["lock"] = expectation(args.lock, args.lock_digest)
        except UserError as e:
            out["error"] = str(e)
            return None
        stack = tmp / STACK_NAME
        stack.write_text(json.dumps(expected))
    return stack


def _run_checks(args: argparse.Namespace, suite_options: list[str], stack: Path,
                tmp: Path) -> tuple[subprocess.CompletedProcess, list[dict] | None, str | None]:
    """pytest's run of the suite in ``tmp``, the records it wrote (None when none) and what is wrong with
    its results file (None when nothing is)."""
    results = tmp / "results.json"
    # Only the artefact's plugins: none the node's Python happens to have
    # installed (there are no entry points in the artefact, so testinfra is named).
    command = [*python_running("pytest", ARTEFACT_ROOT), "-p", "testinfra.plugin",
               *suite_command(args.level, "local://", stack, results, fleet=args.fleet, only=args.only,
                              options=suite_options)]
    env = dict(os.environ, PYTEST_DISABLE_PLUGIN_AUTOLOAD="1")
    # pytest's own output goes to stderr: stdout carries only the JSON. It runs in the private
    # folder, which the checks' commands inherit as theirs (not the unpacked artefact).
    proc = run_suite(command, env, cwd=str(tmp))
    sys.stderr.write(proc.stdout)
    if not results.exists():
        return proc, None, None
    try:
        return proc, suite_results(results), None
    except ValueError as e:
        return proc, None, str(e)


def suite_results(path: Path) -> list[dict]:
    """The records of the file the suite's plugin (results.py) wrote; ValueError when it is of another format."""
    data = json.loads(path.read_text())
    if data.get(model.SUITE_RESULTS_KEY) != model.SUITE_RESULTS_VERSION:
        raise ValueError(f"{path.name} is not of the suite results' format {model.SUITE_RESULTS_VERSION} "
                         f"({model.SUITE_RESULTS_KEY} is {data.get(model.SUITE_RESULTS_KEY)!r}): the artefact is "
                         f"broken; rebuild it")
    return data["results"]


def _finish(args: argparse.Namespace, out: dict, proc: subprocess.CompletedProcess, results_written: bool,
            problem: str | None, started: float) -> int:
    """Print the document, with why the suite could not run when it could not (``problem``, else pytest's
    output); the exit code."""
    out["pytest_exit"] = proc.returncode
    out["duration_s"] = round(time.time() - started, 2)
    # pytest exits 1 for failed checks, and also when it could not start at all:
    # only a results file says the checks ran.
    # The checks --only names may all belong to the other phase (those across nodes run in the fleet
    # phase, the others before it): pytest's "no tests ran" (5) is then this phase's empty result.
    other_phase = bool(args.only) and all(suite_checks()[n].fleet != args.fleet for n in args.only)
    ran = (proc.returncode in (0, 1) or (proc.returncode == 5 and other_phase)) and results_written
    if not ran:
        out["error"] = problem or f"the suite could not run (pytest exit {proc.returncode}): " + \
            proc.stdout.strip()[-1500:]
    print(json.dumps(out))
    return {0: EXIT_PASSED, 1: EXIT_FAILED, 5: EXIT_PASSED}[proc.returncode] if ran else EXIT_ERROR


def expected_stack(entry_stack: dict, platforms) -> dict:
    """What the suite compares a host with: a lock entry's stack (Stack.with_environment()) plus the
    Python modules CANN needs."""
    return {model.STACK_KEY: model.STACK_VERSION, **entry_stack,
            "cann_python_modules": sorted(set(platforms.cann_python_deps.values()))}


def locks_shipped() -> dict[str, dict]:
    """The locks the artefact carries, by digest (layout.LOCKS_NAME)."""
    path = ARTEFACT_ROOT / LOCKS_NAME
    return json.loads(path.read_text())["locks"] if path.is_file() else {}


def expectation(digest: str | None, label_digest: str | None = None, *, root: Path | str = "/",
                arch: str | None = None) -> tuple[dict, dict]:
    """(the expected stack, what the document says of the lock) for this machine: the entry for its
    arch and OS (os-release under ``root``) of the shipped lock of ``digest``, or (None) of the lock
    the machine records itself, which must have ``label_digest`` when one is given (an image's label).
    UserError says why there is none: no lock recorded, another digest, no entry for this platform."""
    from compat_matrix import load_platforms
    from compat_matrix import lock as lock_mod
    from compat_matrix.errors import UserError

    platforms = load_platforms()
    if digest is not None:
        shipped = locks_shipped().get(digest)
        if shipped is None:
            raise UserError(f"the validation artefact carries no lock {digest[:19]}; it was built wrong")
        lock, source = lock_mod.parse(json.dumps(shipped), "the lock from the controller"), "given"
    else:
        path = Path(root) / platforms.data["install_records"]["lock"].lstrip("/")
        shown = "/" + platforms.data["install_records"]["lock"].lstrip("/")
        if not path.exists() and not path.is_symlink():
            raise UserError(f"never deployed by npuenv: this machine has no {shown} (the lock a deploy or an "
                            f"image build records); pass --lock or --row")
        lock, source = lock_mod.load(path), "recorded"
        if label_digest is not None and lock.digest != label_digest:
            raise UserError(f"{shown} is the lock {lock.digest[:19]}, but the image's label "
                            f"{label_digest[:19]} names another: the file was changed after the build; rebuild "
                            f"the image, or validate it with --lock")
    host = lock_mod.machine(platforms, arch=arch, root=root)
    key, entry = lock_mod.entry_for(lock, platforms, host)
    info = {lock_mod.FORMAT_KEY: lock_mod.FORMAT, "digest": lock.digest, "entry": key, "source": source,
            **{k: lock.row[k] for k in ("torch_npu", "torch", "cann", "python", "chip")}}
    return expected_stack(entry["stack"], platforms), info


def facts_document() -> dict:
    """The facts mode's document (validation/node/document.py FACTS_FIELDS): who the node is, and what
    `npuenv status` compares with a lock (validation/node/facts.py status_facts)."""
    from . import facts

    probe = facts.LocalProbe("/")
    return {FACTS_KEY: FACTS_VERSION, "hostname": socket.gethostname(), **identity.read(),
            "python": sys.version.split()[0], "arch": platform.machine(), "os": facts.os_release(probe),
            **facts.status_facts(probe)}


def run_suite(command: list[str], env: dict[str, str], cwd: str | None = None) -> subprocess.CompletedProcess:
    """pytest's run (output and stderr together), in a session of its own: when
    the run is interrupted (SIGTERM, SIGINT), pytest and every process it
    started (the workloads) are ended before the caller's cleanup runs."""
    proc = None
    try:
        with interrupts.deferred():  # a signal waits until the process is known here
            proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                                    cwd=cwd, start_new_session=True)
        output, _ = proc.communicate()
    except interrupts.Interrupted:
        if proc is not None:
            _end_session(proc)
        raise
    return subprocess.CompletedProcess(command, proc.returncode, output)


def _session(sid: int) -> list[int]:
    """The live processes of a session. Its process group is not enough: `timeout`
    (which the suite runs workloads under) moves itself into a group of its own."""
    pids = []
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else ():
        if not entry.isdigit():
            continue
        try:
            # /proc/PID/stat: pid (comm) state ppid pgrp session ...; comm may hold ')'.
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[3] == str(sid) and fields[0] != "Z":
            pids.append(int(entry))
    return pids


def _end_session(proc: subprocess.Popen) -> None:
    """SIGTERM to every process of ``proc``'s session, then SIGKILL to those still there after STOP_GRACE_S."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in _session(proc.pid) or [-proc.pid]:  # without /proc: its process group
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + STOP_GRACE_S
        while time.monotonic() < deadline and (proc.poll() is None or _session(proc.pid)):
            time.sleep(0.05)
        if proc.poll() is not None and not _session(proc.pid):
            return


def python_running(module: str, root: Path) -> list[str]:
    """This Python running ``module`` as ``python -m`` does, with ``root`` (the unpacked artefact)
    and its LIBRARY_ARCHIVE first on its path, but neither in PYTHONPATH nor as the working
    directory, which every process of the run would inherit: python3 in the checks must import the
    node's own packages, never the artefact's copies (it carries yaml, one of CANN's Python
    dependencies, and packaging)."""
    path = [str(root), str(root / LIBRARY_ARCHIVE)]
    return [sys.executable, "-c", f"import runpy, sys; sys.path[:0] = {path!r}; "
                                  f"runpy.run_module({module!r}, run_name='__main__', alter_sys=True)"]


def unpack(archive: str, root: Path) -> None:
    """Extract the artefact into ``root``: the archive itself (LIBRARY_ARCHIVE: the libraries are
    imported from it), and every other file, each module's bytecode (``X.pyc`` beside ``X.py``,
    artefact.bytecode) into ``__pycache__`` where this Python looks for it when it was compiled for
    this Python (its magic number; otherwise it is left out and the source is compiled)."""
    shutil.copyfile(archive, root / LIBRARY_ARCHIVE)
    magic, tag = importlib.util.MAGIC_NUMBER, sys.implementation.cache_tag
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            top = info.filename.split("/", 1)[0]
            if top in LIBRARIES or top.rsplit(".", 1)[0] in MODULES:
                continue
            if not info.filename.endswith(".pyc"):
                zf.extract(info, root)
                continue
            folder, name = os.path.split(info.filename)
            data = zf.read(info)
            if tag is None or data[:4] != magic or os.path.isabs(folder) or ".." in folder.split("/"):
                continue
            # Named by hand rather than by cache_from_source, which follows PYTHONPYCACHEPREFIX out of root.
            target = root / folder / "__pycache__" / f"{name[:-len('.pyc')]}.{tag}.pyc"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)


def run_from_archive(archive: str) -> int:
    """Unpack the artefact into a private directory, run main() from there
    (pytest collects the suite from real files), and remove the directory,
    also when the run is interrupted (SIGTERM, SIGINT): the run is stopped
    first, and removes its own temporary files."""
    root = child = None
    with interrupts.interruptible("the validation artefact"):
        try:
            with interrupts.deferred():  # the folder is known to the cleanup before a signal is acted on
                root = Path(tempfile.mkdtemp(prefix="npuenv-validate-"))
            unpack(archive, root)
            env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
            with interrupts.deferred():
                child = subprocess.Popen([*python_running("validation.node.runner", root), *sys.argv[1:]], env=env,
                                         cwd=root)
            return child.wait()
        except interrupts.Interrupted as e:
            if child is not None:
                # The run (if it did not get the signal itself) ends pytest and removes its results folder;
                # this waits for that, and removes the unpacked copy after it.
                child.send_signal(e.signum)
                try:
                    child.wait(timeout=2 * STOP_GRACE_S)
                except subprocess.TimeoutExpired:
                    child.kill()
                    child.wait()
            print(f"npuenv-validate: {e}", file=sys.stderr)
            return e.exit_code
        finally:
            if root is not None:
                shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    with interrupts.interruptible("the validation suite"):
        try:
            sys.exit(main())
        except interrupts.Interrupted as e:  # main() ended pytest and removed its temporary folder on the way out
            print(f"npuenv-validate: {e}", file=sys.stderr)
            sys.exit(e.exit_code)

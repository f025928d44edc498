"""Defects of `npuenv validate` found by an audit (issue #20), each shown fixed:
an interrupted node run leaves nothing behind, a row without the Python asked
for is exit 2 with the row's Pythons, a phase holding none of the --only checks
is an empty result (not an error), and torch_npu's library check on a node
without torch fails saying so."""
from __future__ import annotations

import _ctypes
import contextlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

import compat_matrix as cm
from npuenv import cli
from tests.unit.check_fakes import FakeProbe, FakeRequest, failed
from validation import artefact, run
from validation.node import facts as facts_mod
from validation.node import runner
from validation.node.suite import test_quick as q
from validation.node.suite.conftest import Checker, CheckFailed


@pytest.fixture(scope="module")
def pyz(tmp_path_factory):
    stack = cm.resolve(cm.load_matrix(), cm.Constraints(torch_npu="2.13.0", python="3.11", arch="x86_64")).stack
    return artefact.build(tmp_path_factory.mktemp("artefact") / "v.pyz", run.expected_stack(stack))


def node_env(tmp_path: Path) -> dict[str, str]:
    """A private TMPDIR and HOME. Workloads run in a login shell, whose /etc/profile resets PATH: the
    login's own ~/.bash_profile puts this Python (it has torch) first, as a node's profile would, so
    that the workload runs instead of failing at once on a system python3 without torch."""
    temp = tmp_path / "tmp"
    temp.mkdir()
    bindir = Path(sys.executable).parent
    (tmp_path / ".bash_profile").write_text(f"PATH={shlex.quote(str(bindir))}:\"$PATH\"\n")
    return {"PATH": f"{bindir}:/usr/bin:/bin", "TMPDIR": str(temp), "HOME": str(tmp_path)}


def processes_under(path: Path) -> dict[int, str]:
    """The command lines of live processes that name ``path`` (the unpacked artefact is under it), by pid."""
    found = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if str(path) in cmdline and state != "Z":
            found[int(pid)] = cmdline
    return found


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_during_the_run_ends_every_process_and_leaves_no_temporary_folder(pyz, tmp_path, signum):
    """The signal reaches only the artefact's own process (as `kill PID` sends it) while a
    workload runs under pytest: pytest, `timeout` (a process group of its own) and the workload
    end, npuenv-results-* and the unpacked npuenv-validate-* are removed."""
    env = node_env(tmp_path)
    temp = Path(env["TMPDIR"])
    proc = subprocess.Popen([sys.executable, str(pyz), "--level", "standard", "--only", "train"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not any("workloads/train_cnn.py" in c for c in processes_under(temp).values()):
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                out, err = proc.communicate()
                pytest.fail(f"the workload never started (exit {proc.returncode}):\n{out[-3000:]}\n{err[-3000:]}")
            time.sleep(0.05)
        assert any(p.name.startswith("npuenv-results-") for p in temp.iterdir())
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        left = processes_under(temp)
        for pid in left:  # what a failure would leave running
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    assert left == {}
    assert proc.returncode == 128 + signum, err[-2000:]
    # The run itself was stopped (no result document), then the artefact's process ended.
    assert out == ""
    assert err.endswith(f"npuenv-validate: the validation suite: interrupted by {signum.name}; its temporary files "
                        f"are removed and nothing was written\nnpuenv-validate: the validation artefact: interrupted "
                        f"by {signum.name}; its temporary files are removed and nothing was written\n"), err[-2000:]
    assert list(temp.iterdir()) == []


def test_ending_the_suite_ends_the_processes_that_left_its_process_group(tmp_path):
    """`timeout` moves itself into a process group of its own: ending pytest's group would leave it and
    its (silent) command running; the whole session is ended."""
    sleeper = f"{sys.executable} -c 'import time; time.sleep(300)' {tmp_path}/marker"
    proc = subprocess.Popen(["sh", "-c", f"timeout 300 {sleeper} & {sleeper} & wait"], start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while len(processes_under(tmp_path)) < 3:  # the two sleepers and timeout
            assert time.monotonic() < deadline, processes_under(tmp_path)
            time.sleep(0.05)
        runner._end_session(proc)
        assert proc.poll() is not None
        assert processes_under(tmp_path) == {}
    finally:  # what a failure would leave running
        for pid in processes_under(tmp_path):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        proc.kill()
        proc.wait()


def test_a_phase_holding_none_of_the_only_checks_is_an_empty_result(pyz, tmp_path):
    """The first phase of `--level full --only allreduce_across_nodes` runs nothing (that check runs
    in the fleet phase) and says so with an empty result, so that the fleet phase can follow."""
    env = node_env(tmp_path)
    for argv in (["--level", "full", "--only", "allreduce_across_nodes"], ["--fleet", "--only", "nnal"]):
        p = subprocess.run([sys.executable, str(pyz), *argv], capture_output=True, text=True, env=env, timeout=300)
        out = json.loads(p.stdout)
        assert (p.returncode, out["results"], out["pytest_exit"], "error" in out) == (0, [], 5, False), p.stderr
    assert list(Path(env["TMPDIR"]).iterdir()) == []


def test_a_row_without_the_python_asked_for_is_exit_2_naming_the_rows_pythons(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    row = cm.load_matrix().find("2.13.0")
    assert "3.8" not in row.python_sorted
    rc = cli.main(["validate", "--target", "local", "--row", "2.13.0", "--python", "3.8", "--out",
                   str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    assert err.startswith("npuenv: no matrix row fits torch_npu===2.13.0, python=3.8.")
    assert f"no Python 3.8 (has {', '.join(row.python_sorted)})" in err
    assert "`npuenv matrix list` shows the rows and their Pythons" in err
    assert list(tmp_path.iterdir()) == []


# --- torch_npu_libraries -------------------------------------------------------------------

LIBRARIES = r"^dirs=\$\("


@pytest.mark.parametrize("absent, summary, found", [
    ("torch_npu", "torch_npu not installed: torch_npu's shared libraries cannot be checked", "no torch_npu module"),
    ("torch torch_npu", "torch and torch_npu not installed: torch_npu's shared libraries cannot be checked",
     "no torch and no torch_npu module"),
])
def test_torch_npu_libraries_without_torch_fails_saying_so(absent, summary, found):
    probe = FakeProbe().answer(LIBRARIES, 1, "", f"{q.NOT_INSTALLED} {absent}\n")
    assert failed(q.test_torch_npu_libraries, probe=probe) == {
        "summary": summary, "expected": "torch and torch_npu installed for python3", "found": found,
        "cause": "the row's Python stack is not installed for the python3 on PATH (or another python3 comes first)",
        "fix": "install the row's wheelhouse (make deploy TAGS=python) and check `command -v python3`"}


def test_torch_npu_libraries_with_no_library_listed_is_not_a_pass():
    f = failed(q.test_torch_npu_libraries, probe=FakeProbe().answer(LIBRARIES, 0, ""))
    assert f == {"summary": "no shared library of torch_npu was found to check",
                 "expected": "torch_npu's lib/*.so files", "found": "none under its package folder",
                 "cause": "a torch_npu without its compiled libraries (a broken or source-only install)",
                 "fix": "reinstall torch_npu from the row's wheelhouse (make deploy TAGS=python)"}


class ShellProbe(facts_mod.Probe):
    """This machine through sh (not a login shell: PATH stays the test's)."""
    is_local = True

    def __init__(self, env):
        self.env = env

    def run(self, command):
        p = subprocess.run(["sh", "-c", command], capture_output=True, text=True, env=self.env, timeout=120)
        return p.returncode, p.stdout, p.stderr


def python3_on_path(tmp_path: Path, site: Path | None) -> dict[str, str]:
    """A python3 that sees no installed package, only ``site`` (PYTHONPATH) if given."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python3").write_text(f"#!/bin/sh\nexec {sys.executable} -S \"$@\"\n")
    (bin_dir / "python3").chmod(0o755)
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin"}
    return {**env, "PYTHONPATH": str(site)} if site else env


def test_torch_npu_libraries_on_a_node_without_torch_runs_and_fails_with_the_cause(tmp_path):
    with pytest.raises(CheckFailed) as e:
        q.test_torch_npu_libraries(ShellProbe(python3_on_path(tmp_path, None)), Checker(FakeRequest()))
    assert str(e.value).startswith("torch and torch_npu not installed: torch_npu's shared libraries cannot be "
                                   "checked\n  expected: torch and torch_npu installed for python3\n  found:    "
                                   "no torch and no torch_npu module\n")


def test_torch_npu_libraries_under_a_path_with_a_space_are_listed(tmp_path):
    """torch and torch_npu in a folder with a space; torch_npu's library is a real shared object
    (one of this Python's own extension modules) whose dependencies resolve."""
    site = tmp_path / "site packages"
    (site / "torch").mkdir(parents=True)
    (site / "torch" / "__init__.py").write_text("")
    (site / "torch_npu" / "lib").mkdir(parents=True)
    (site / "torch_npu" / "__init__.py").write_text("")
    shutil.copy(_ctypes.__file__, site / "torch_npu" / "lib" / "libtorch_npu.so")  # it needs libffi
    q.test_torch_npu_libraries(ShellProbe(python3_on_path(tmp_path, site)), Checker(FakeRequest()))  # passes


def python_site(tmp_path: Path, modules: dict[str, str]) -> Path:
    """A site folder of modules (name -> source) for python3_on_path."""
    site = tmp_path / "site"
    for name, source in modules.items():
        path = site.joinpath(*name.split(".")).with_suffix(".py")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source)
    return site


# A torch whose NPU module answers as torch_npu's does, and one dependency of CANN that cannot load.
NPU_TORCH = {"torch": "class npu:\n    is_available = staticmethod(lambda: True)\n"
                      "    device_count = staticmethod(lambda: 8)\n",
             "torch_npu": "", "decorator": "", "sympy": "raise ImportError('libgmp.so.10: cannot open shared object')"}


def test_torch_npu_and_cann_deps_are_imported_by_one_real_python3(tmp_path):
    probe = ShellProbe(python3_on_path(tmp_path, python_site(tmp_path, NPU_TORCH)))
    answers, rc, out, err = q.python_imports(probe, ["decorator", "sympy", "absl"])
    assert rc == 0, err
    assert answers == {"torch_npu": {"available": True, "count": 8},
                       "cann_python_modules": {"sympy": "ImportError: libgmp.so.10: cannot open shared object",
                                               "absl": "ModuleNotFoundError: No module named 'absl'"}}
    stack = {"cann_python_modules": ["decorator", "sympy"]}
    with pytest.raises(CheckFailed) as e:
        q.test_cann_python_deps(probe, stack, Checker(FakeRequest()))
    assert "found:    sympy: ImportError: libgmp.so.10: cannot open shared object\n" in str(e.value)
    facts = {"devices": [{}] * 8}
    q.test_torch_npu_import(probe, facts, stack, Checker(FakeRequest()))   # passes: 8 of 8


def test_a_torch_npu_that_raises_is_a_failure_and_the_deps_are_imported_alone(tmp_path):
    site = python_site(tmp_path, {**NPU_TORCH, "torch_npu": "raise RuntimeError('libascendcl.so: not found')"})
    probe = ShellProbe(python3_on_path(tmp_path, site))
    answers, rc, _, err = q.python_imports(probe, ["decorator"])
    assert rc == 0, err
    assert answers["torch_npu"]["error"].splitlines()[-1] == "RuntimeError: libascendcl.so: not found"
    assert answers["cann_python_modules"] == {}
    with pytest.raises(CheckFailed) as e:
        q.test_torch_npu_import(probe, {"devices": []}, {"cann_python_modules": ["decorator"]},
                                Checker(FakeRequest()))
    assert str(e.value).startswith("import torch_npu fails\n  expected: import torch_npu succeeds\n"
                                   "  found:    RuntimeError: libascendcl.so: not found\n")


def test_a_python3_that_dies_in_torch_npu_fails_the_import_and_still_checks_the_deps(tmp_path):
    # torch_npu ends the process (as a crash in its native code would): no answer, its output the reason
    dies = ("import os, sys\nprint('npu init: device 0')\nprint('npu init failed: drvErr=87')\nsys.stdout.flush()\n"
            "os._exit(134)")
    site = python_site(tmp_path, {**NPU_TORCH, "torch_npu": dies})
    probe = ShellProbe(python3_on_path(tmp_path, site))
    with pytest.raises(CheckFailed) as e:
        q.test_torch_npu_import(probe, {"devices": []}, {"cann_python_modules": ["decorator"]},
                                Checker(FakeRequest()))
    assert "  found:    npu init failed: drvErr=87\n" in str(e.value)
    # the dependencies, imported by a python3 of their own, without torch's backend autoload
    with pytest.raises(CheckFailed) as e:
        q.test_cann_python_deps(probe, {"cann_python_modules": ["decorator", "sympy", "absl"]},
                                Checker(FakeRequest()))
    assert ("found:    sympy: ImportError: libgmp.so.10: cannot open shared object; "
            "absl: ModuleNotFoundError: No module named 'absl'\n") in str(e.value)
    q.test_cann_python_deps(probe, {"cann_python_modules": ["decorator"]}, Checker(FakeRequest()))   # passes

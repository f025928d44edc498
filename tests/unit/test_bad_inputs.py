"""The bad-input corpus (bad_inputs.yaml): every command and make target given
what a careless or hostile user gives it. Each case states the input, the exit
code, a fragment of the message (and the FILE:LINE it must name), and the run
must print no traceback and leave nothing behind: no file in the case's folder,
no temporary file, no container, no command run by a value.

A case is one of:
  npuenv: [ARGS]          `npuenv ARGS`, in this process (the CLI's main())
  make: {target, vars}    the real Makefile, with a recording `npuenv`/`python`
                          (`argv:` the exact arguments they must receive), or with
                          the real npuenv (`real: true`)
Case fields: files (what to create first, see make_file), exit, message,
line (FILE:LINE the message names), podman_never_sees (a value that must not
reach podman as an argument), interrupt_at (MODULE:ATTR that raises Ctrl-C),
xfail (who fixes it: such cases fail today and must pass once merged; with
`until: MODULE`, only while the module their work adds is absent).
"""
from __future__ import annotations

import importlib
import importlib.util
import io
import json
import os
import re
import shlex
import socket
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

import pytest
import yaml

from npuenv.cli import main
from tests.conftest import ROOT
from tests.fixtures.archives import add_sparse_member

CORPUS = Path(__file__).with_name("bad_inputs.yaml")
BUNDLED_MATRIX = ROOT / "compat_matrix" / "data" / "matrix.yaml"
CASES = yaml.safe_load(CORPUS.read_text(encoding="utf-8"))["cases"]


def params():
    seen = set()
    for case in CASES:
        assert case["id"] not in seen, f"duplicate case id {case['id']}"
        seen.add(case["id"])
        marks = [pytest.mark.xfail(strict=True, reason=case["xfail"])] if fails_today(case) else []
        yield pytest.param(case, id=case["id"], marks=marks)


def fails_today(case) -> bool:
    """A case someone else fixes: it fails until their work is merged. `until: MODULE` names a
    module their work adds; once it exists, the case runs as any other."""
    if not case.get("xfail"):
        return False
    return not case.get("until") or importlib.util.find_spec(case["until"]) is None


# A file name longer than any file system takes (NAME_MAX is 255 bytes).
TOO_LONG = "n" * 300


def fill(value, tmp: Path):
    """Placeholders in the corpus: {tmp} the case's folder, {repo} the checkout, {marker} a file
    that exists only if a value was run as a command, {toolong} a file name too long for any file system."""
    if isinstance(value, str):
        return value.replace("{tmp}", str(tmp)).replace("{repo}", str(ROOT)).replace("{marker}", str(tmp / "PWNED")) \
            .replace("{toolong}", TOO_LONG)
    if isinstance(value, list):
        return [fill(v, tmp) for v in value]
    if isinstance(value, dict):
        return {k: fill(v, tmp) for k, v in value.items()}
    return value


def make_file(path: Path, spec) -> int | None:
    """Create one input file; returns the line a matrix edit landed on (for `line: edited`).

    text: UTF-8 text | latin1: text whose code points are the bytes | expr: a Python expression
    giving str or bytes | matrix: [[old, new], ...] the bundled matrix with the first occurrence of
    each old replaced | json: a value written as JSON | dir: true | fifo: true | socket: true (a Unix
    socket's file) | symlink: TARGET (e.g. /dev/zero, or a name that loops back to itself) |
    sparse: SIZE (SIZE bytes that are one hole: no disk used, all of it zeros to read) |
    zip: {MEMBER: TEXT or {zeros: N}} (deflated) | tar: [MEMBER, ...] an archive, compressed as its
    name says (.tar.gz, .tar.xz), each member {name} with text, json, sparse (a GNU sparse member
    of that size, one header in the archive) or symlink"""
    path.parent.mkdir(parents=True, exist_ok=True)
    if spec.get("dir"):
        path.mkdir(exist_ok=True)
        return None
    if spec.get("fifo"):
        os.mkfifo(path)
        return None
    if spec.get("socket"):   # bound by its name in its folder: a socket's address has at most 108 bytes
        cwd = os.getcwd()
        os.chdir(path.parent)
        try:
            with socket.socket(socket.AF_UNIX) as sock:
                sock.bind(path.name)
        finally:
            os.chdir(cwd)
        return None
    if "symlink" in spec:
        path.symlink_to(spec["symlink"])
        return None
    if "sparse" in spec:
        path.write_bytes(b"")
        os.truncate(path, spec["sparse"])
        return None
    if "zip" in spec:
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
            for name, member in spec["zip"].items():
                zf.writestr(name, member if isinstance(member, str) else b"\0" * member["zeros"])
        return None
    if "tar" in spec:
        write_tar(path, spec["tar"])
        return None
    line = None
    if "text" in spec:
        data = spec["text"].encode("utf-8")
    elif "latin1" in spec:
        data = spec["latin1"].encode("latin-1")
    elif "expr" in spec:
        data = eval(spec["expr"], {"__builtins__": {}, "bytes": bytes, "range": range, "str": str})  # noqa: S307
        data = data.encode("utf-8") if isinstance(data, str) else data
    elif "json" in spec:
        data = json.dumps(spec["json"]).encode("utf-8")
    else:
        text = BUNDLED_MATRIX.read_text(encoding="utf-8")
        for old, new in spec["matrix"]:
            at = text.index(old)
            line = line or text[:at].count("\n") + 1
            text = text[:at] + new + text[at + len(old):]
        data = text.encode("utf-8")
    path.write_bytes(data)
    return line


def write_tar(path: Path, members: list[dict]) -> None:
    mode = "w:gz" if path.name.endswith((".tar.gz", ".tgz")) else "w:xz" if path.name.endswith(".tar.xz") else "w"
    with tarfile.open(path, mode, format=tarfile.GNU_FORMAT) as tar:
        for m in members:
            info = tarfile.TarInfo(m["name"])
            if "sparse" in m:
                add_sparse_member(tar, m["name"], m["sparse"])
                continue
            data = None
            if "symlink" in m:
                info.type, info.linkname = tarfile.SYMTYPE, m["symlink"]
            else:
                data = (json.dumps(m["json"]) if "json" in m else m.get("text", "")).encode("utf-8")
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)


def snapshot(root: Path) -> dict[str, tuple]:
    out = {}
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        out[p.relative_to(root).as_posix()] = (st.st_mode, st.st_size, st.st_mtime_ns)
    return out


def containers() -> set[str]:
    p = subprocess.run(["podman", "ps", "-a", "--format", "{{.Names}}"], capture_output=True, text=True)
    return set(p.stdout.split())


PODMAN_RECORDER = """#!/bin/sh
printf '%s\\n' "$(printf '%s\\0' "$@" | base64 -w0)" >> "$NPUENV_TEST_PODMAN_LOG"
exit 125
"""

ARGV_RECORDER = """#!{python}
import json, sys
with open({log!r}, "a") as f:
    f.write(json.dumps(sys.argv[1:]) + "\\n")
"""


def recorded_podman_calls(log: Path) -> list[list[str]]:
    import base64

    if not log.exists():
        return []
    return [base64.b64decode(line).decode().split("\0")[:-1] for line in log.read_text().split()]


@pytest.fixture
def case_dir(tmp_path, monkeypatch):
    """The case's folder (its cwd), its TMPDIR, and a folder for the test's own tools and logs."""
    work, temp, tools = tmp_path / "case", tmp_path / "temp", tmp_path / "tools"
    for d in (work, temp, tools):
        d.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("TMPDIR", str(temp))
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    return work, temp, tools


@pytest.mark.parametrize("case", list(params()))
def test_bad_input(case, case_dir, capsys, monkeypatch):
    work, temp, tools = case_dir
    edited = None
    for name, spec in (case.get("files") or {}).items():
        edited = make_file(work / fill(name, work), fill(spec, work)) or edited
    before = snapshot(work)
    watch_containers = case.get("containers", False)
    before_containers = containers() if watch_containers else set()

    if "make" in case:
        rc, out, err = run_make(case, work, tools)
    else:
        rc, out, err = run_npuenv(case, work, tools, capsys, monkeypatch)

    text = out + err
    assert "Traceback" not in text, text[-3000:]
    assert rc == case["exit"], f"exit {rc}, expected {case['exit']}:\n{text[-3000:]}"
    if "message" in case:
        message = fill(case["message"], work)
        assert message in (err if case["exit"] else text), f"{message!r} not in:\n{text[-3000:]}"
    if "line" in case:
        file = fill(case["line"]["file"], work)
        number = edited if case["line"]["at"] == "edited" else case["line"]["at"]
        assert f"{file}:{number}: " in err, f"{file}:{number} not named in:\n{err[-3000:]}"
    if "argv" in case:
        assert recorded_argv(tools) == ([fill(case["argv"], work)] if case["argv"] is not None else [])
    assert not (work / "PWNED").exists(), "a value ran as a command"
    assert snapshot(work) == before, "the command left files behind or changed them"
    assert not list(temp.iterdir()), f"temporary files left: {list(temp.iterdir())}"
    if case.get("podman_never_sees"):
        value = fill(case["podman_never_sees"], work)
        for call in recorded_podman_calls(tools / "podman.log"):
            args = call[:call.index("--")] if "--" in call else call
            assert value not in args, f"podman got {value!r} as an argument: {call}"
    if watch_containers:
        assert containers() == before_containers


def run_npuenv(case, work: Path, tools: Path, capsys, monkeypatch):
    if case.get("podman_never_sees"):
        bin_dir = tools / "bin"
        bin_dir.mkdir()
        (bin_dir / "podman").write_text(PODMAN_RECORDER)
        (bin_dir / "podman").chmod(0o755)
        monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
        monkeypatch.setenv("NPUENV_TEST_PODMAN_LOG", str(tools / "podman.log"))
    if case.get("interrupt_at"):
        module, attr = case["interrupt_at"].split(":")

        def interrupted(*_a, **_k):
            raise KeyboardInterrupt

        monkeypatch.setattr(importlib.import_module(module), attr, interrupted)
    try:
        rc = main(fill(case["npuenv"], work))
    except SystemExit as e:  # argparse's usage errors
        rc = e.code
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def run_make(case, work: Path, tools: Path):
    spec = case["make"]
    venv = tools / "venv"
    (venv / "bin").mkdir(parents=True)
    log = tools / "argv.log"
    if spec.get("real"):
        run = f"#!/bin/sh\nPYTHONPATH={shlex.quote(str(ROOT))} exec {shlex.quote(sys.executable)}"
        (venv / "bin" / "npuenv").write_text(run + ' -m npuenv "$@"\n')
        (venv / "bin" / "python").write_text(run + ' "$@"\n')
    else:
        for tool in ("npuenv", "python"):
            (venv / "bin" / tool).write_text(ARGV_RECORDER.format(python=sys.executable, log=str(log)))
    for tool in (venv / "bin").iterdir():
        tool.chmod(0o755)
    (venv / ".installed").touch()  # newer than pyproject.toml: no setup
    variables = [f"{k}={v}" for k, v in fill(spec.get("vars") or {}, work).items()]
    # setup and engine would install things: count them as done (-o)
    cmd = ["make", "-s", "-C", str(ROOT), "-o", "setup", "-o", "engine", spec["target"], f"VENV={venv}", *variables]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAKE")}
    p = subprocess.run(cmd, cwd=work, capture_output=True, text=True, env=env)
    untracked = subprocess.run(["git", "status", "--porcelain", "--ignored", "--untracked-files=all"], cwd=ROOT,
                               capture_output=True, text=True).stdout
    assert not any(line.split()[-1].startswith(("=", "PWNED")) for line in untracked.splitlines()), untracked
    return p.returncode, p.stdout, p.stderr


def recorded_argv(tools: Path) -> list[list[str]]:
    log = tools / "argv.log"
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def test_the_corpus_is_large_and_covers_every_command_and_target():
    assert len(CASES) >= 500
    commands = {tuple(c["npuenv"][:2]) if c["npuenv"][:1] != ["--matrix"] else tuple(c["npuenv"][2:4])
                for c in CASES if "npuenv" in c}
    for command in [("matrix", "list"), ("matrix", "show"), ("matrix", "resolve"), ("matrix", "lint"),
                    ("matrix", "table"), ("matrix", "verify"), ("image", "render"), ("image", "build"),
                    ("image", "run-cmd"), ("image", "compose"), ("wheelhouse", "build"), ("wheelhouse", "verify"),
                    ("wheelhouse", "containerfile"), ("wheelhouse", "builder-image"), ("bundle", "make"),
                    ("bundle", "verify")]:
        assert command in commands, command
    assert {c["npuenv"][0] for c in CASES if c.get("npuenv")} >= {"facts", "validate", "deploy"}
    makefile = (ROOT / "Makefile").read_text()
    targets = {m.group(1) for m in re.finditer(r"^([a-zA-Z_-]+):.*## ", makefile, re.M)}
    with_vars = {c["make"]["target"] for c in CASES if "make" in c}
    # targets that take no value from the user need no case
    assert targets - with_vars <= {"help", "setup", "engine", "test", "test-scenario", "test-unit", "test-lowest",
                                   "lint", "matrix-table", "role-docs", "bench",
                                   "demo", "sim-clean"}, targets - with_vars

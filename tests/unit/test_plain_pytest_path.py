"""validation/README.md's plain-pytest path, word for word: `npuenv matrix resolve --format json`
writes the stack file the suite's --npuenv-stack takes, and the suite runs with it (#23)."""
from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import xml.etree.ElementTree as ET

from tests.conftest import ROOT

README = ROOT / "validation" / "README.md"
# Where the README's command reaches a real host, the test reaches this machine (testinfra's local backend).
REMOTE = "--hosts=ssh://ops@HOST --sudo"


def readme_commands() -> list[str]:
    """The lines of the README's code block that runs the suite with --npuenv-stack."""
    blocks = re.findall(r"```bash\n(.*?)```", README.read_text(), re.S)
    block = next(b for b in blocks if "--npuenv-stack" in b)
    return [line for line in block.splitlines() if line.strip()]


def stack_keys_read_by_the_suite() -> set[str]:
    text = "".join(p.read_text() for p in (ROOT / "validation" / "node" / "suite").glob("*.py"))
    return set(re.findall(r"""\bstack\[["']([a-z_]+)["']\]""", text))


def test_the_readme_commands_write_the_stack_and_run_the_suite_with_it(tmp_path):
    resolve, suite = readme_commands()
    assert resolve.startswith("npuenv matrix resolve ") and resolve.endswith(" --format json > stack.json")
    argv = shlex.split(resolve.removesuffix(" > stack.json"))
    run = subprocess.run([sys.executable, "-m", *argv], capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 0, run.stderr
    stack = json.loads(run.stdout)
    assert stack_keys_read_by_the_suite() <= set(stack), stack_keys_read_by_the_suite() - set(stack)
    (tmp_path / "stack.json").write_text(run.stdout)

    assert suite.startswith("pytest validation/node/suite/test_quick.py ") and REMOTE in suite
    argv = shlex.split(suite.replace(REMOTE, "--hosts=local://").replace("=stack.json", f"={tmp_path / 'stack.json'}"))
    junit = tmp_path / "junit.xml"
    run = subprocess.run([sys.executable, "-m", *argv, "-p", "no:cacheprovider", f"--junitxml={junit}", "-q"],
                         capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert run.returncode in (0, 1), run.stdout[-3000:] + run.stderr[-3000:]
    cases = ET.parse(junit).getroot().iter("testcase")
    problems = [(c.get("name"), e.get("message", "")[:300]) for c in cases for e in c
                if e.tag in ("failure", "error")
                and not e.get("message", "").startswith("validation.node.suite.conftest.CheckFailed")]
    # This machine has no NPU: checks fail, each with its verdict; none stops at the stack file.
    assert not problems, problems


def test_resolve_json_holds_what_validation_compares_hosts_with():
    from compat_matrix import load_matrix, resolve, Constraints
    from validation.run import expected_stack

    argv = ["matrix", "resolve", "--row", "2.1.0.post8", "--arch", "aarch64", "--chip", "910b", "--format", "json"]
    run = subprocess.run([sys.executable, "-m", "npuenv", *argv], capture_output=True, text=True, cwd=ROOT)
    assert run.returncode == 0, run.stderr
    want = expected_stack(resolve(load_matrix(), Constraints(torch_npu="2.1.0.post8", arch="aarch64",
                                                             chip="910b")).stack)
    assert json.loads(run.stdout) == json.loads(json.dumps(want))

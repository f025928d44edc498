"""How the artefact runs the suite on a node (validation/node.py): what the checks start sees the
node's Python, not the artefact's own packages."""
from __future__ import annotations

import json
import subprocess
import sys

from validation import artefact


def test_python_in_the_checks_imports_the_nodes_packages_not_the_artefacts(tmp_path):
    """The artefact carries packages (validation, pytest, yaml: one of CANN's Python dependencies);
    python3 in a check must not import them, neither through PYTHONPATH nor from its working
    directory: a node that lacks one fails cann_python_deps."""
    pyz = artefact.build(tmp_path / "v.pyz", {"cann_python_modules": ["json", "validation"]})
    # A login shell's /etc/profile puts the system's python3 first: it has no `validation` of its own.
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    p = subprocess.run([sys.executable, str(pyz), "--level", "quick", "--only", "cann_python_deps"],
                       capture_output=True, text=True, env=env, timeout=300)
    [result] = json.loads(p.stdout.strip().splitlines()[-1])["results"]
    assert (result["status"], result["failure"]["found"]) == (
        "failed", "validation: ModuleNotFoundError: No module named 'validation'"), p.stderr[-3000:]
    assert p.returncode == 1

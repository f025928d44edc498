"""The npuenv.ascend collection's tarball, built by ansible-galaxy from the collection npuenv runs
(run.COLLECTION_DIR): for `npuenv collection build` (`make collection`) and the air-gapped bundle."""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import yaml

from compat_matrix import outputs
from compat_matrix.errors import UserError

from .run import COLLECTION_DIR, ansible_command

GALAXY = COLLECTION_DIR / "galaxy.yml"


def tarball_name() -> str:
    """The file ansible-galaxy names the build: NAMESPACE-NAME-VERSION.tar.gz (from galaxy.yml)."""
    info = yaml.safe_load(GALAXY.read_text())
    return f"{info['namespace']}-{info['name']}-{info['version']}.tar.gz"


def build(out_dir: Path | str, log=lambda _msg: None) -> Path:
    """Build the tarball into ``out_dir`` (made if missing; a tarball of the same version there is
    replaced) and return its path. The build goes to a folder of its own inside ``out_dir`` first,
    so a failed or interrupted one leaves the old tarball (or none), never half of one."""
    out_dir = outputs.check_dir_output(out_dir, "--out").absolute()
    out_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=out_dir, prefix=".collection-"))
    try:
        # Run in the collection's folder: no ansible.cfg of a folder the user runs in applies to a build.
        p = subprocess.run([ansible_command("ansible-galaxy"), "collection", "build", str(COLLECTION_DIR),
                            "--output-path", str(work)], cwd=COLLECTION_DIR, capture_output=True, text=True)
        built = work / tarball_name()
        if p.returncode != 0 or not built.is_file():
            raise UserError(f"ansible-galaxy could not build the collection from {COLLECTION_DIR} (exit "
                            f"{p.returncode}):\n{(p.stdout + p.stderr).strip()[-2000:]}")
        out = out_dir / built.name
        os.replace(built, out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    log(f"collection: {out}")
    return out

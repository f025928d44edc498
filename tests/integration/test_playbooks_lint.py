"""The playbooks pass ansible-lint's production profile and a syntax check."""
import os
import subprocess
import sys
from pathlib import Path

PLAYBOOKS = Path(__file__).resolve().parents[2] / "playbooks"
BIN = Path(sys.executable).parent


def run(*cmd):
    env = dict(os.environ, PATH=f"{BIN}:{os.environ['PATH']}", ANSIBLE_CONFIG=str(PLAYBOOKS / "ansible.cfg"))
    return subprocess.run(cmd, cwd=PLAYBOOKS, env=env, capture_output=True, text=True)


def test_ansible_lint_production_profile_is_clean():
    r = run(str(BIN / "ansible-lint"), "--offline", "--profile", "production", "site.yml", "validate.yml", "status.yml")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "Profile 'production' was required, and it passed" in r.stdout + r.stderr


def test_syntax_check():
    for playbook in ("site.yml", "validate.yml", "status.yml"):
        r = run(str(BIN / "ansible-playbook"), "--syntax-check", playbook)
        assert r.returncode == 0, r.stdout + r.stderr

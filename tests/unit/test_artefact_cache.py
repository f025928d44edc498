"""The validation artefact kept on the node under its digest (the collection's plugins/action/npuenv_artefact.py):
sent once, run from the cache afterwards, checked against the digest before every run, so that a corrupt,
altered or foreign copy is replaced and never run. The "node" is this machine: a stand-in connection runs
each command in a local shell, in a folder of the test's own."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace

import pytest
from ansible.errors import AnsibleActionFail

from playbooks.collections.ansible_collections.npuenv.ascend.plugins.action import npuenv_artefact

# An artefact that records its arguments and prints a line; the copy the node runs is the one that speaks.
ARTEFACT = "import json, sys\nopen({log!r}, 'w').write(json.dumps(sys.argv[1:]))\nprint('ran', {name!r})\n"


class Node:
    """npuenv_artefact's action with a connection that runs commands here, and what it did."""

    def __init__(self, tmp_path: Path):
        self.tmp, self.commands, self.transfers = tmp_path, [], 0

    def run(self, **args) -> dict:
        node = self

        class Local(npuenv_artefact.ActionModule):
            def _low_level_execute_command(self, cmd, sudoable=True, **kw):
                node.commands.append(cmd)
                p = subprocess.run(["/bin/sh", "-c", cmd], capture_output=True, text=True)
                return {"rc": p.returncode, "stdout": p.stdout, "stderr": p.stderr}

            def _make_tmp_path(self, remote_user=None):
                return tempfile.mkdtemp(dir=node.tmp, prefix="ansible-tmp-")

            def _transfer_file(self, local, remote):
                node.transfers += 1
                shutil.copy(local, remote)

            def _fixup_perms2(self, paths, remote_user=None, execute=True):
                pass

            def _remove_tmp_path(self, path, force=False):
                shutil.rmtree(path)

        task = SimpleNamespace(args=args, async_val=0, check_mode=False, action="npuenv_artefact")
        connection = SimpleNamespace(_shell=SimpleNamespace(tmpdir=None, join_path=os.path.join))
        self.commands, self.transfers = [], 0
        return Local(task, connection, None, None, None).run(task_vars={})


@pytest.fixture
def setup(tmp_path):
    log = tmp_path / "argv.json"
    artefact = tmp_path / "npuenv-validate.pyz"
    artefact.write_text(ARTEFACT.format(log=str(log), name="the artefact"))
    digest = hashlib.sha256(artefact.read_bytes()).hexdigest()
    folder = tmp_path / "cache" / "validate"
    args = {"artefact": str(artefact), "digest": digest, "python": sys.executable, "folder": str(folder)}
    return SimpleNamespace(node=Node(tmp_path), args=args, log=log, folder=folder,
                           cached=folder / f"npuenv-validate-{digest[:16]}.pyz", artefact=artefact)


def test_the_artefact_is_sent_once_and_run_from_the_cache_afterwards(setup):
    s = setup
    argv = ["--level", "quick", "a b", "$(touch /tmp/npuenv-PWNED)", "'\"; id", "{{ 7 * 6 }}"]
    first = s.node.run(**s.args, argv=argv)
    assert (first["rc"], first["stdout"], first["copied"], first["changed"]) == (0, "ran the artefact\n", True, False)
    assert s.node.transfers == 1 and json.loads(s.log.read_text()) == argv   # each argument one word, never run
    assert not Path("/tmp/npuenv-PWNED").exists()
    assert sorted(p.name for p in s.folder.iterdir()) == [s.cached.name]
    assert s.cached.read_bytes() == s.artefact.read_bytes() and oct(s.folder.stat().st_mode & 0o777) == "0o700"
    again = s.node.run(**s.args, argv=["--level", "standard"])
    # one command, nothing sent, the cached copy run with this run's arguments
    assert (again["rc"], again["copied"], s.node.transfers, len(s.node.commands)) == (0, False, 0, 1)
    assert json.loads(s.log.read_text()) == ["--level", "standard"]
    assert [p.name for p in s.node.tmp.iterdir() if p.name.startswith("ansible-tmp-")] == []   # no temporary folder


@pytest.mark.parametrize("damage", ["altered", "truncated", "empty"])
def test_a_cached_copy_that_does_not_match_the_digest_is_replaced_and_never_run(setup, damage):
    s = setup
    s.node.run(**s.args)
    marker = s.node.tmp / "the altered copy ran"
    bad = {"altered": ARTEFACT.format(log=str(marker), name="the altered copy"),
           "truncated": s.artefact.read_text()[:20], "empty": ""}[damage]
    s.cached.write_text(bad)
    got = s.node.run(**s.args)
    assert (got["rc"], got["stdout"], got["copied"], s.node.transfers) == (0, "ran the artefact\n", True, 1)
    assert not marker.exists() and s.cached.read_bytes() == s.artefact.read_bytes()


def test_a_copy_of_another_user_or_a_link_is_replaced_and_never_run(setup):
    s = setup
    if os.geteuid() != 0:
        pytest.skip("giving a file to another user needs root")
    s.node.run(**s.args)
    os.chown(s.cached, 65534, 65534)
    got = s.node.run(**s.args)
    assert got["copied"] and got["rc"] == 0 and s.cached.stat().st_uid == 0
    # a link in place of the copy, even to a whole copy, is not run from
    whole = s.node.tmp / "whole.pyz"
    shutil.copy(s.cached, whole)
    s.cached.unlink()
    s.cached.symlink_to(whole)
    got = s.node.run(**s.args)
    assert got["copied"] and not s.cached.is_symlink()


def test_a_folder_of_another_user_is_refused_and_nothing_runs(setup):
    s = setup
    if os.geteuid() != 0:
        pytest.skip("giving a folder to another user needs root")
    s.folder.mkdir(parents=True)
    os.chown(s.folder, 65534, 65534)
    got = s.node.run(**s.args)
    assert got["rc"] == 3 and f"npuenv: {s.folder} belongs to another user; remove it" in got["stderr"]
    assert not s.log.exists() and list(s.folder.iterdir()) == []


def test_a_sent_copy_that_does_not_match_the_digest_is_removed_and_not_run(setup):
    s = setup
    got = s.node.run(**{**s.args, "digest": "0" * 64})
    assert got["rc"] == 3 and "the copied artefact does not match its sha256" in got["stderr"]
    assert not s.log.exists() and list(s.folder.iterdir()) == []


def test_older_copies_go_when_a_new_artefact_arrives(setup):
    s = setup
    s.folder.mkdir(parents=True)
    older = s.folder / "npuenv-validate-0000000000000000.pyz"
    older.write_text("an older artefact")
    s.node.run(**s.args)
    assert sorted(p.name for p in s.folder.iterdir()) == [s.cached.name]


def test_the_default_folder_is_roots_cache_or_the_users_own():
    def folder(*as_user):
        script = npuenv_artefact.DEFAULT_FOLDER + '; echo "$d"'
        return subprocess.run([*as_user, "sh", "-c", script], capture_output=True, text=True,
                              env={"HOME": "/home/ops user", "PATH": os.environ["PATH"]}).stdout.strip()

    expected = "/var/cache/npuenv/validate" if os.geteuid() == 0 else "/home/ops user/.cache/npuenv/validate"
    assert folder() == expected
    if os.geteuid() == 0 and shutil.which("setpriv"):
        assert folder("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups") == \
            "/home/ops user/.cache/npuenv/validate"


@pytest.mark.parametrize("args,problem", [
    ({"digest": "abc"}, "digest 'abc' is not a sha256 in hex"),
    ({"digest": "A" * 64}, "is not a sha256 in hex"),
    ({"python": "python3; rm -rf /"}, "python 'python3; rm -rf /' is not a plain absolute path"),
    ({"python": "/usr/bin/env python3"}, "python '/usr/bin/env python3' is not a plain absolute path"),
    ({"folder": "/var/cache/../../etc"}, "folder '/var/cache/../../etc' is not a plain absolute path"),
    ({"folder": "/tmp/$(id)"}, r"folder '/tmp/\$\(id\)' is not a plain absolute path"),
    ({"argv": "--level quick"}, "argv '--level quick' is not a list of strings"),
    ({"argv": ["--level", 3]}, r"argv \['--level', 3\] is not a list of strings"),
])
def test_arguments_a_shell_would_read_as_syntax_are_refused_before_anything_runs(setup, args, problem):
    with pytest.raises(AnsibleActionFail, match=problem):
        setup.node.run(**{**setup.args, **args})
    assert setup.node.commands == []

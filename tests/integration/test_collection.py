"""The npuenv.ascend collection used as an Ansible user uses one: a playbook folder of the user's own,
with its own ansible.cfg, installs the tarball `make collection` builds (offline, into ./collections)
and runs a role of it by its full name against a simulated node reached over SSH; nothing of
npuenv's source tree is on any of Ansible's paths there. And ansible-lint's production profile
passes on the collection as it is installed, as do the tests of `ansible-test sanity` that run
offline (the others need the network to make their virtual environments)."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ansible_run import collection, role_docs
from tests.sim import nodes as sim_nodes

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
PREFIX = sim_nodes.checkout_prefix("npu-sim-coll")
# where the cluster_tuning role writes when the play names no file (its argument spec's default)
SYSCTL_FILE = role_docs.argument_spec(role_docs.ROLES_DIR / "cluster_tuning")["cluster_tuning_sysctl_file"]["default"]
SOMAXCONN = 4096

PLAY = [{"name": "Tune my NPU nodes with npuenv's role", "hosts": "npu_nodes", "become": True,
         "roles": [{"role": "npuenv.ascend.cluster_tuning",
                    "vars": {"cluster_tuning_sysctl": {"net.core.somaxconn": SOMAXCONN}}}]}]


def user_env(home: Path) -> dict[str, str]:
    """A user's shell: no ANSIBLE_* of the test run's, a home of their own (no collections in
    ~/.ansible), the venv's Ansible on PATH. PYTHONPATH names this checkout so that the plugins import
    its compat_matrix, as a user's import their installed npuenv's (it holds no ansible_collections)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    return dict(env, HOME=str(home), PATH=f"{BIN}:{env['PATH']}", PYTHONPATH=str(ROOT))


@pytest.fixture(scope="module")
def tarball(tmp_path_factory):
    return collection.build(tmp_path_factory.mktemp("collection-build"))


@pytest.fixture(scope="module")
def user(tarball, node_image, tmp_path_factory):
    """The user's playbook folder, with the collection installed from the tarball, and one node."""
    tmp = tmp_path_factory.mktemp("my-playbooks")
    home, folder = tmp / "home", tmp / "site"
    home.mkdir()
    folder.mkdir()
    (folder / "ansible.cfg").write_text("[defaults]\ncollections_path = ./collections\nhost_key_checking = True\n")
    env = user_env(home)
    install = subprocess.run([str(BIN / "ansible-galaxy"), "collection", "install", "--offline", str(tarball),
                              "-p", "./collections"], cwd=folder, env=env, capture_output=True, text=True)
    assert install.returncode == 0, install.stdout + install.stderr
    access = sim_nodes.SshAccess.create(tmp / "ssh")
    names = sim_nodes.start_nodes(1, tmp / "state", prefix=PREFIX, access=access)
    (folder / "hosts.yml").write_text(yaml.safe_dump(sim_nodes.inventory(names, access)))
    (folder / "tune.yml").write_text(yaml.safe_dump(PLAY, sort_keys=False))
    yield folder, env, names[0]
    sim_nodes.remove_nodes(names)


def playbook(folder: Path, env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "ansible-playbook"), "-i", "hosts.yml", "tune.yml", *args], cwd=folder, env=env,
                          capture_output=True, text=True, timeout=600)


def recap(out: str) -> dict[str, int]:
    line = re.search(r"^\S+\s+: (ok=.*)$", out, re.M).group(1)
    return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", line)}


def test_the_collection_installs_offline_into_the_users_own_folder(user):
    folder, env, _ = user
    listed = subprocess.run([str(BIN / "ansible-galaxy"), "collection", "list", "npuenv.ascend"], cwd=folder,
                            env=env, capture_output=True, text=True)
    assert listed.returncode == 0, listed.stderr
    assert f"# {folder / 'collections' / 'ansible_collections'}" in listed.stdout, listed.stdout
    assert re.search(r"^npuenv\.ascend\s+0\.1\.0\s*$", listed.stdout, re.M), listed.stdout
    installed = folder / "collections" / "ansible_collections" / "npuenv" / "ascend"
    assert (installed / "plugins" / "filter" / "npuenv_inputs.py").is_file()


def test_a_users_playbook_runs_a_role_of_the_collection_on_a_node(user):
    folder, env, node = user
    first = playbook(folder, env)
    out = first.stdout + first.stderr
    assert first.returncode == 0, out[-4000:]
    # its input check (the npuenv_input_problems filter) and its tasks ran, under the collection's name
    assert "npuenv.ascend.cluster_tuning : Cluster tuning | Persist the kernel network settings" in out, out[-4000:]
    assert f"net.core.somaxconn = {SOMAXCONN}" in sim_nodes.run_in(node, "cat", SYSCTL_FILE).stdout
    assert sim_nodes.run_in(node, "sysctl", "-n", "net.core.somaxconn").stdout.strip() == str(SOMAXCONN)
    again = playbook(folder, env)
    assert again.returncode == 0 and recap(again.stdout)["changed"] == 0, again.stdout[-4000:]


def test_a_bad_value_is_refused_by_the_collections_filter(user):
    folder, env, node = user
    bad = playbook(folder, env, "-e", '{"cluster_tuning_sysctl_file": "/etc/passwd"}')
    assert bad.returncode == 2, bad.stdout[-4000:]
    assert "cluster_tuning_sysctl_file: '/etc/passwd'" in bad.stdout, bad.stdout[-4000:]
    assert sim_nodes.run_in(node, "head", "-c", "4", "/etc/passwd").stdout == "root"


# The tests of `ansible-test sanity` that need no virtual environment of their own: the others
# (ansible-doc, import, pep8, pylint, validate-modules, yamllint, ...) pip-install their tools into
# one first, which needs the network (ansible-test bootstraps pip from ci-files.testing.ansible.com).
SANITY_OFFLINE = ["action-plugin-docs", "compile", "empty-init", "line-endings", "no-assert", "no-get-exception",
                  "no-illegal-filenames", "no-smart-quotes", "replace-urlopen", "shebang", "symlinks",
                  "use-argspec-type-path", "use-compat-six"]


@pytest.fixture
def installed(tarball, tmp_path):
    """The collection installed from the tarball in a collections folder of its own: (folder, env)."""
    env = user_env(tmp_path)
    install = subprocess.run([str(BIN / "ansible-galaxy"), "collection", "install", "--offline", str(tarball),
                              "-p", str(tmp_path)], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert install.returncode == 0, install.stdout + install.stderr
    # ansible-lint finds the collection's own modules on the path it is installed in
    return tmp_path / "ansible_collections" / "npuenv" / "ascend", dict(env, ANSIBLE_COLLECTIONS_PATH=str(tmp_path))


def test_ansible_lint_production_profile_passes_on_the_installed_collection(installed):
    folder, env = installed
    lint = subprocess.run([str(BIN / "ansible-lint"), "--offline", "--profile", "production"], cwd=folder, env=env,
                          capture_output=True, text=True)
    out = lint.stdout + lint.stderr
    assert lint.returncode == 0, out[-4000:]
    assert "Profile 'production' was required, and it passed" in out


def test_the_sanity_tests_that_run_offline_pass_on_the_installed_collection(installed):
    folder, env = installed
    sanity = subprocess.run([str(BIN / "ansible-test"), "sanity", "--python", f"{sys.version_info.major}."
                             f"{sys.version_info.minor}", *[a for t in SANITY_OFFLINE for a in ("--test", t)]],
                            cwd=folder, env=env, capture_output=True, text=True)
    out = sanity.stdout + sanity.stderr
    assert sanity.returncode == 0, out[-4000:]
    assert [t for t in SANITY_OFFLINE if f'Running sanity test "{t}"' not in out] == [], out[-4000:]

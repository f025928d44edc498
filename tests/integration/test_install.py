"""npuenv as users install it, away from this checkout:

* `pip install .` (not editable) into a fresh virtual environment outside the
  checkout: `npuenv image render`, `npuenv deploy --check` against a simulated
  node and `npuenv validate` work from the installed copy alone;
* `pip install` from the checkout mounted read-only: the build writes nothing
  into the source tree;
* an air-gapped site: a bundle unpacked in a clean folder and the commands of
  its USAGE.txt run as written (the rollout in check mode): a fresh virtual
  environment made only from the bundle's own wheels with pip's index turned
  off, `bundle verify`, `deploy` and `validate`.

The controller's wheels (npuenv's dependencies and its `controller` extra:
ansible-core, pytest-testinfra) are fetched once from PyPI into
.cache/wheels/controller; every install below is offline (--no-index).
The node is reached as sites reach their servers: over SSH as a non-root user
with sudo and strict host key checking (ansible-core needs no collection).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

import pytest
import yaml

import compat_matrix as cm
from ansible_run.run import COLLECTION_DIR
from tests.conftest import ROOT, reachable
from tests.fixtures.wheelhouse.synth import make_stack_wheels
from tests.integration.conftest import stack_for
from tests.sim import installers as sim_installers
from tests.sim import nodes as sim_nodes
from torch_npu_pkg import bundle

ROW, PYTHON, ARCH, CHIP = "2.13.0", "3.11", "x86_64", "910b"
NODE_OS = "debian12"   # the simulated nodes' OS: the bundle's lock must have an entry for it
PREFIX = sim_nodes.checkout_prefix("npu-sim-i")
CONTROLLER_CACHE = ROOT / ".cache" / "wheels" / "controller"


def write_inventory(path: Path, names: list[str], access: sim_nodes.SshAccess, *, installers: Path,
                    wheelhouse: Path) -> Path:
    """The test fleet's inventory: the nodes over SSH, as sim_nodes.inventory reaches them."""
    inventory = sim_nodes.inventory(
        names, access, host_vars={name: {"hccn_device_ips": [f"10.40.{d}.{i + 1}" for d in range(8)]}
                                  for i, name in enumerate(names)},
        group_vars={"npuenv_row": {"torch_npu": ROW, "python": PYTHON, "chip": CHIP},
                    "npuenv_installer_cache": str(installers), "npuenv_wheelhouse": str(wheelhouse),
                    "hccn_netdetect_address": "10.40.0.254"})
    path.write_text(yaml.safe_dump(inventory))
    return path


def controller_wheels() -> Path:
    """npuenv's dependencies and its controller extra, as wheels at the versions of requirements.lock for
    each Python and arch a bundle carries them for (bundle.controller_targets), and its build backend for
    this Python: fetched once (the lists are read from pyproject.toml)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    wanted = project["project"]["dependencies"] + project["project"]["optional-dependencies"]["controller"]
    targets = bundle.controller_targets(project["project"]["requires-python"], cm.load_matrix())
    lock = ROOT / "requirements.lock"
    key = hashlib.sha256((json.dumps([wanted, targets, project["build-system"]]) + lock.read_text()).encode())
    done = CONTROLLER_CACHE / f".complete-{key.hexdigest()[:16]}"
    if done.exists():
        return CONTROLLER_CACHE
    if not reachable("pypi.org"):
        pytest.skip("pypi.org cannot be reached to fetch the controller's wheels (ansible-core, pytest-testinfra) "
                    "once into .cache/wheels/controller")
    CONTROLLER_CACHE.mkdir(parents=True, exist_ok=True)
    fetches = [["--only-binary=:all:", *project["build-system"]["requires"]]]
    fetches += [[*bundle.target_args(python, arch), *wanted] for python, arch in targets]
    for args in fetches:
        got = subprocess.run([sys.executable, "-m", "pip", "download", "-d", str(CONTROLLER_CACHE), "-c", str(lock),
                              *args], capture_output=True, text=True)
        assert got.returncode == 0, got.stderr[-3000:]
    done.touch()
    return CONTROLLER_CACHE


@pytest.fixture
def offline_env(tmp_path):
    """No index, no pip configuration, no PYTHONPATH, no checkout on any path, no Ansible collection."""
    (tmp_path / "home").mkdir(exist_ok=True)
    # ssh's ControlPersist socket path must fit a Unix socket name (108 bytes): not under pytest's tmp
    control = tempfile.mkdtemp(prefix="cp-", dir="/tmp")
    yield {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(tmp_path / "home"), "LANG": "C.UTF-8",
            "PIP_CONFIG_FILE": os.devnull, "PIP_NO_INDEX": "1", "PIP_INDEX_URL": "http://127.0.0.1:9/",
            "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_CACHE_DIR": "1", "NO_PROXY": "*",
            "ANSIBLE_COLLECTIONS_PATH": str(tmp_path / "collections"),
            "ANSIBLE_LOCAL_TEMP": str(tmp_path / "ansible-tmp"),
            "ANSIBLE_SSH_CONTROL_PATH_DIR": control}
    shutil.rmtree(control, ignore_errors=True)


def fresh_venv(path: Path, env: dict) -> Path:
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True, capture_output=True, env=env)
    return path / "bin"


def run(cmd: list, cwd: Path, env: dict, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def recap(output: str) -> dict[str, dict]:
    import re

    out = {}
    for m in re.finditer(r"^(\S+)\s+: (.*)$", output.split("PLAY RECAP")[-1], re.M):
        out[m.group(1)] = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", m.group(2))}
    return out


@pytest.fixture(scope="module")
def node(node_image, tmp_path_factory):
    state = tmp_path_factory.mktemp("install-state")
    access = sim_nodes.SshAccess.create(state / "ssh")
    (name,) = sim_nodes.start_nodes(1, state, prefix=PREFIX, access=access)
    yield name, access
    sim_nodes.remove_nodes([name])


@pytest.fixture(scope="module")
def inputs(matrix, tmp_path_factory):
    """A small wheelhouse (synthetic wheels: check mode installs nothing) and the row's installers."""
    root = tmp_path_factory.mktemp("install-inputs")
    stack = stack_for(matrix, ROW, python=PYTHON)
    make_stack_wheels(root / "torch-source", root / "deps", stack)
    house = root / "wheelhouse"
    built = subprocess.run([sys.executable, "-m", "npuenv", "wheelhouse", "build", "--row", ROW, "--python", PYTHON,
                            "--arch", ARCH, "--out", str(house), "--torch-source", str(root / "torch-source"),
                            "--source", f"dir:{root / 'deps'}", "--offline"], capture_output=True, text=True,
                           cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert built.returncode == 0, built.stderr[-2000:]
    installers = root / "installers"
    sim_installers.make_installers(stack, installers)
    return {"wheelhouse": house, "installers": installers}


def check_deploy_and_validate(bin_dir: Path, site: Path, env: dict, node: tuple, installers: Path,
                              wheelhouse: Path, push: bool) -> None:
    """Run from ``bin_dir`` in ``site``: deploy --check reaches the node and changes nothing; (``push``) the
    Python stack's push leaves nothing in the controller's TMPDIR; validate runs and finds no driver."""
    node, access = node
    inventory = write_inventory(site / "inventory.yml", [node], access, installers=installers, wheelhouse=wheelhouse)
    controller_tmp = site / "controller-tmp"
    controller_tmp.mkdir()
    env = {**env, "TMPDIR": str(controller_tmp)}
    deploy = run([bin_dir / "npuenv", "deploy", "-i", inventory, "--check"], site, env)
    assert deploy.returncode == 0, deploy.stdout[-4000:] + deploy.stderr[-2000:]
    r = recap(deploy.stdout)[node]
    assert r["failed"] == 0 and r["unreachable"] == 0 and r["changed"] > 0
    assert re.search(r"Python stack \| Report the wheelhouse that would be pushed .*\(changed 1\)", deploy.stdout)
    bare = subprocess.run(["podman", "exec", node, "test", "-e", "/usr/local/Ascend/driver"])
    assert bare.returncode == 1, "check mode changed the node"

    if push:
        pushed = run([bin_dir / "npuenv", "deploy", "-i", inventory, "--tags", "python"], site, env)
        assert pushed.returncode == 0, pushed.stdout[-4000:] + pushed.stderr[-2000:]
        staged = subprocess.run(["podman", "exec", node, "cat", "/var/cache/npuenv/wheelhouse/SHA256SUMS"],
                                capture_output=True, text=True)
        assert staged.stdout == (wheelhouse / "SHA256SUMS").read_text()
        assert [p.name for p in controller_tmp.iterdir() if p.name.startswith("npuenv-wheelhouse")] == []

    out = site / "validation"
    # The node was never deployed (it records no lock): the row is named, as an operator would.
    validate = run([bin_dir / "npuenv", "validate", "--target", f"ansible://{node}?inventory={inventory}",
                    "--row", ROW, "--python", PYTHON, "--level", "quick", "--backend", "cpu", "--out", out],
                   site, env)
    assert validate.returncode == 1, validate.stdout[-3000:] + validate.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    status = {r["check"]: r["status"] for r in results["results"]}
    assert status["driver_version"] == "failed", status   # nothing of the driver is installed: the check says so
    assert "error" not in status.values(), status         # no check broke for want of a file in the install
    assert (out / "report.html").is_file()


# Runs its arguments with the folder $1 mounted read-only, in a mount namespace of its own: the tests
# run as root, which file modes do not stop, and the mount is seen by nothing else.
READ_ONLY = 'mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" && shift && exec "$@"'


def read_only(folder: Path, cmd: list) -> list[str]:
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", READ_ONLY, "sh", str(folder),
            *map(str, cmd)]


def test_pip_install_from_a_read_only_checkout(tmp_path, offline_env):
    wheels = controller_wheels()
    env = offline_env
    probe = run(read_only(ROOT, ["touch", ROOT / "pyproject.toml"]), tmp_path, env)
    assert probe.returncode != 0 and "Read-only file system" in probe.stderr, probe.stderr
    bin_dir = fresh_venv(tmp_path / "venv", env)
    # pip builds in an isolated environment with the build backend from the wheels folder, as a user's pip would
    install = run(read_only(ROOT, [bin_dir / "python", "-m", "pip", "install", "--no-index", "--find-links", wheels,
                                   ROOT]), tmp_path, env)
    assert install.returncode == 0, install.stdout[-3000:] + install.stderr[-3000:]
    site_packages = next((tmp_path / "venv" / "lib").glob("python3*/site-packages"))
    assert (site_packages / COLLECTION_DIR.relative_to(ROOT) / "plugins" / "modules" / "npuenv_files.py").is_file()
    shown = run([bin_dir / "npuenv", "matrix", "resolve", "--row", ROW, "--python", PYTHON, "--arch", ARCH,
                 "--format", "text"], tmp_path, env)
    assert shown.returncode == 0 and "2.13.0" in shown.stdout, shown.stderr


def test_pip_install_outside_the_checkout_runs_every_command(node, inputs, tmp_path, offline_env):
    wheels = controller_wheels()
    env = offline_env
    # the project as a fresh clone has it: tracked files and new ones git does not ignore
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, capture_output=True,
                           check=True).stdout.decode().split("\0")
    src = tmp_path / "npuenv-src"
    for rel in filter(None, files):
        if (ROOT / rel).is_file():
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            (src / rel).write_bytes((ROOT / rel).read_bytes())
    bin_dir = fresh_venv(tmp_path / "venv", env)
    install = run([bin_dir / "python", "-m", "pip", "install", "--no-index", "--find-links", wheels,
                   f"{src}[controller]"], tmp_path, env)
    assert install.returncode == 0, install.stderr[-3000:]
    site_packages = next((tmp_path / "venv" / "lib").glob("python3*/site-packages"))
    assert (site_packages / "playbooks" / "collections" / "ansible_collections" / "npuenv" / "ascend" / "roles" / "python_stack" / "tasks" / "main.yml").is_file()
    assert not (site_packages / "npuenv").joinpath("__editable__").exists()
    where = run([bin_dir / "python", "-c", "import ansible_run.run, compat_matrix; "
                 "print(ansible_run.run.PLAYBOOK_DIR, compat_matrix.__file__)"], tmp_path, env)
    assert where.stdout.split() == [str(site_packages / "playbooks"), str(site_packages / "compat_matrix" /
                                                                       "__init__.py")], where.stderr

    rendered = run([bin_dir / "npuenv", "image", "render", "--row", ROW, "--python", PYTHON, "--arch", ARCH,
                    "--output", tmp_path / "context"], tmp_path, env)
    assert rendered.returncode == 0, rendered.stderr
    dockerfile = (tmp_path / "context" / "Dockerfile").read_text()
    assert "Ascend-cann-toolkit_9.1.0_linux-x86_64.run" in dockerfile and "SHA256SUMS" in dockerfile

    site = tmp_path / "site"
    site.mkdir()
    check_deploy_and_validate(bin_dir, site, env, node, inputs["installers"], inputs["wheelhouse"], push=True)


def make_bundle(inputs: dict, wheels: Path, archive: Path) -> None:
    made = subprocess.run([sys.executable, "-m", "npuenv", "bundle", "make", "--wheelhouse", str(inputs["wheelhouse"]),
                           "--installers", str(inputs["installers"]), "--out", str(archive),
                           "--controller-wheels", str(wheels), "--offline", "--os", NODE_OS], capture_output=True,
                          text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert made.returncode == 0, made.stderr[-3000:]


def usage_script(commands: list[str], **values: str) -> str:
    """USAGE.txt's commands as one shell script that stops at the first failure, each placeholder
    given its value (plain paths: they stand where USAGE.txt wrote the placeholder, quotes and all)."""
    script = "set -eu\n" + "\n".join(commands) + "\n"
    for name, value in values.items():
        assert name in bundle.PLACEHOLDERS and re.fullmatch(r"[\w/.-]+", value), (name, value)
        script = script.replace(name, value)
    return script


# Debian 13's python3 (3.13), a controller on another Python than this one; setup-engine.sh makes it.
SETUP_ENGINE = ROOT / "tests" / "sim" / "setup-engine.sh"
OTHER_PYTHON_IMAGE = re.search(r'OTHER_PYTHON_IMAGE="\$\{OTHER_PYTHON_IMAGE:-([^}]+)\}"', SETUP_ENGINE.read_text())[1]


def here(script: str, env: dict, cwd: Path) -> list[str]:
    return ["bash", "-c", script]


def on_other_python(script: str, env: dict, cwd: Path) -> list[str]:
    """``script`` run in OTHER_PYTHON_IMAGE with its python3, in the same folder: /tmp (the test's
    folders, the node's SSH key and known_hosts) at its own path, the host's loopback (the node's sshd)."""
    if subprocess.run(["podman", "image", "exists", OTHER_PYTHON_IMAGE]).returncode != 0:
        pytest.fail(f"{OTHER_PYTHON_IMAGE} is missing: `make engine` ({SETUP_ENGINE.relative_to(ROOT)}) makes it")
    return ["podman", "run", "--rm", "--network", "host", "-v", "/tmp:/tmp", "-w", str(cwd),
            *[f"--env={k}={v}" for k, v in env.items()], OTHER_PYTHON_IMAGE, "bash", "-c", script]


@pytest.mark.parametrize("runner, python", [(here, "3.11"), (on_other_python, "3.13")], ids=["here", "python3.13"])
def test_the_bundles_usage_runs_word_for_word_offline(node, inputs, tmp_path, runner, python, offline_env):
    archive = tmp_path / "made" / "bundle.tar"
    make_bundle(inputs, controller_wheels(), archive)
    env = offline_env
    site = tmp_path / "site"
    site.mkdir()
    subprocess.run(["tar", "-xf", str(archive), "-C", str(site)], check=True)
    (top,) = list(site.iterdir())
    commands = bundle.usage_commands((top / "USAGE.txt").read_text())
    name, access = node
    inventory = write_inventory(site / "inventory.yml", [name], access, installers=top / "installers",
                                wheelhouse=top / "wheelhouse")
    # The one change to USAGE.txt's words: its rollout runs in check mode here (test_fleet rolls a whole
    # stack out for real); the node is left as it was, and validation finds no driver on it.
    commands = [c + " --check" if " deploy " in c else c for c in commands]
    flow = run(runner(usage_script(commands, INVENTORY=str(inventory)), env, site), site, env)
    out = flow.stdout + flow.stderr
    venv = site / bundle.VENV.removeprefix("../")
    assert f"version = {python}." in (venv / "pyvenv.cfg").read_text(), out[-3000:]
    results = site / bundle.OUTPUTS.removeprefix("../") / "validation" / "results.json"
    assert flow.returncode == 1 and results.is_file(), out[-6000:]   # validate's exit: a check failed
    assert recap(flow.stdout)[name]["failed"] == 0 and recap(flow.stdout)[name]["changed"] > 0, out[-4000:]
    assert subprocess.run(["podman", "exec", name, "test", "-e", "/usr/local/Ascend/driver"]).returncode == 1
    status = {r["check"]: r["status"] for r in json.loads(results.read_text())["results"]}
    assert status["driver_version"] == "failed" and "error" not in status.values(), status
    # the flow left the bundle's folder as it was: verified again, it is whole
    again = run(runner(f"{venv}/bin/npuenv bundle verify {top}", env, site), site, env)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]

"""The simulator does not mirror the product: a node installed by the simulated
vendor installers (whose names, paths and scripts come from tests/sim/vendor.yaml)
passes the product's file and environment checks with the real platforms.yaml,
and fails them, each at the check that reads the fact, when one fact in a copy
of platforms.yaml is wrong: a path, an environment variable, a package name,
an operator directory, the install-info file.

One throw-away node is installed (driver, firmware, toolkit, ops, NNAL) and its
files and login environment are copied out; the product then reads them as it
reads an unpacked image (facts.collect over a directory tree) with the
platforms data under test."""
from __future__ import annotations

import re
import shutil
import tarfile
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

import compat_matrix as cm
from compat_matrix.errors import UserError
from images import build as image_build
from tests.unit.check_fakes import run_check
from tests.sim import installers as sim_installers
from validation.node import facts as facts_mod
from validation.run import expected_stack
from validation.node.suite import test_quick as q

ROW = "2.13.0"   # CANN 9.1.0 (cann-<v> layout), HDK 26.1.0
RELEASE = sim_installers.Release(cann="9.1.0", hdk="26.1.0", chip="910b", arch="x86_64")


@dataclass
class Node:
    root: Path        # the node's files: /usr/local/Ascend, /etc/ascend_install.info, /etc/Ascend
    env: str          # `env` of a login shell with the vendor's set_env scripts sourced
    installers: Path


@pytest.fixture(scope="module")
def node(fresh_node, tmp_path_factory) -> Node:
    inst = tmp_path_factory.mktemp("independence-installers")
    made = {k: p.name for k, p in sim_installers.make_installers(RELEASE, inst).items()}
    out = tmp_path_factory.mktemp("independence-node")
    # The simulator's own knowledge of where the vendor's scripts are.
    root = sim_installers.vendor()["install_root"]["value"]
    toolkit_env = sim_installers.layout(RELEASE)["env_script"].replace("@ROOT@", root)
    nnal_env = f"{root}/nnal/atb/set_env.sh"
    r = fresh_node.run(f'''set -e
groupadd HwHiAiUser && useradd -g HwHiAiUser -d /home/HwHiAiUser -m HwHiAiUser -s /bin/bash
cd /inst
./{made["driver"]} --full --install-for-all --quiet
./{made["firmware"]} --full --quiet || [ $? -eq 2 ]
./{made["toolkit"]} --install --install-for-all --quiet
./{made["kernels"]} --install --install-for-all --quiet
bash -c '. {toolkit_env} && ./{made["nnal"]} --install --install-for-all --quiet'
bash -c '. {toolkit_env} && . {nnal_env} && env' > /out/env.txt
tar -C / -cf /out/tree.tar usr/local/Ascend etc/ascend_install.info etc/Ascend
''', mounts={"/inst": inst}, writable={"/out": out})
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    tree = out / "root"
    with tarfile.open(out / "tree.tar") as tar:
        tar.extractall(tree, filter="tar")
    return Node(tree, (out / "env.txt").read_text(), inst)


class NodeProbe(facts_mod.LocalProbe):
    """The copied node: files from its tree, `env` from its login shell, and
    the check for directories answered from the tree."""

    def __init__(self, node: Node):
        super().__init__(str(node.root))
        self.env = node.env

    @property
    def can_run(self):
        return True

    def run(self, command):
        if command == "env":
            return 0, self.env, ""
        m = re.fullmatch(r"for d in (.*?); do \[ -d \$d \] \|\| echo \$d; done", command)
        if m:
            missing = [d for d in m.group(1).split() if not Path(self._path(d)).is_dir()]
            return 0, "".join(d + "\n" for d in missing), ""
        return 127, "", f"not run on the copied node: {command.split()[0]}"


def platforms_copy(tmp_path: Path, change=None) -> Path:
    """A copy of the product's platforms.yaml, with one fact changed."""
    data = yaml.safe_load(Path(cm.DEFAULT_PLATFORMS).read_text())
    if change:
        change(data)
    path = tmp_path / "platforms.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def product_view(node: Node, platforms_file: Path):
    """What the product expects and finds, with the given platforms data."""
    platforms = cm.load_platforms(platforms_file)
    resolved = cm.resolve(cm.load_matrix(platforms=platforms),
                          cm.Constraints(torch_npu="==" + ROW, arch="x86_64", chip="910b",
                                                         python="3.11", os="debian12")).stack
    probe = NodeProbe(node)
    return resolved, expected_stack(resolved), facts_mod.collect(probe, platforms), probe


def failures(node: Node, platforms_file: Path) -> dict[str, dict]:
    """check name -> its failure, for the checks that read files and the environment, and the
    image build's installer check (which reads the package names)."""
    resolved, stack, facts, probe = product_view(node, platforms_file)
    out = {}
    for check, kwargs in ((q.test_driver_version, {"facts": facts, "stack": stack}),
                          (q.test_firmware_pairs_with_driver, {"facts": facts}),
                          (q.test_install_info, {"facts": facts}),
                          (q.test_cann_toolkit, {"facts": facts, "stack": stack}),
                          (q.test_nnal, {"facts": facts, "stack": stack}),
                          (q.test_login_environment, {"probe": probe, "stack": stack})):
        outcome = run_check(check, **kwargs)
        if not outcome.passed:
            out[check.__name__] = outcome.failure
    try:
        image_build.check_installers(resolved, node.installers)
    except UserError as e:
        out["check_installers"] = {"summary": str(e)}
    return out


def test_the_real_platforms_data_passes_on_the_simulated_node(node, tmp_path):
    assert failures(node, platforms_copy(tmp_path)) == {}


def _set(path: tuple, value):
    def change(data):
        node = data
        for key in path[:-1]:
            node = node[key]
        assert path[-1] in node, path
        node[path[-1]] = value
    return change


WRONG_FACTS = {
    "a path: the CANN entry point": (
        _set(("packaging", "cann", "paths", "toolkit_latest"), "{root}/cann-latest"),
        "test_cann_toolkit", "found", "none"),
    "an environment variable's value": (
        _set(("packaging", "cann", "env", "ASCEND_OPP_PATH"), "{home}/ops"),
        "test_login_environment", "summary", "ASCEND_OPP_PATH is not set as CANN's set_env.sh sets it"),
    "a package name": (
        _set(("packaging", "cann", "packages", "kernels"), "Ascend-cann-ops-{chip}_{cann}_linux-{arch}.run"),
        "check_installers", "summary", "kernels: Ascend-cann-ops-910b_9.1.0_linux-x86_64.run is missing"),
    "the chip's operator directory": (
        _set(("chips", "910b", "opp_kernel_dir"), "ascend910b3"),
        "test_cann_toolkit", "summary", "the 910b kernels/ops package is not installed"),
    "the driver's install-info file": (
        _set(("hdk", "paths", "install_info"), "/etc/ascend/install.info"),
        "test_install_info", "found", "no such file"),
}


@pytest.mark.parametrize("what", list(WRONG_FACTS))
def test_a_wrong_fact_in_platforms_fails_the_check_that_reads_it(node, tmp_path, what):
    change, check, field, text = WRONG_FACTS[what]
    found = failures(node, platforms_copy(tmp_path, change))
    assert check in found, f"{what}: no check failed ({sorted(found)})"
    assert text in found[check][field]

"""`make demo`: the whole pipeline on simulated Atlas nodes, step by step.

Builds the wheelhouse for the default row, rolls it out to simulated nodes with
the playbooks, builds the row's image, injects one fault into one node, and
validates the nodes and the image at the standard level in one fleet report:
the healthy targets pass and the fault is caught. Everything it runs is the
product's CLI (npuenv ...); only the nodes, the vendor installers and the fault
come from the simulator.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

import compat_matrix as cm

from . import installers as sim_installers
from . import nodes as sim_nodes
from .cann_runtime.build import build_runtime_for_wheel

ROOT = Path(__file__).resolve().parents[2]
ROW = os.environ.get("DEMO_ROW", "2.13.0")
PYTHON = "3.11"
NODES = int(os.environ.get("DEMO_NODES", "2"))
PREFIX = "npu-sim-demo"
FAULT = {"npu": 3, "health": "Critical"}


class Steps:
    def __init__(self, total: int):
        self.total, self.n, self.started = total, 0, time.time()

    def run(self, title: str, fn):
        self.n += 1
        print(f"[{self.n}/{self.total}] {title} ...", flush=True)
        t = time.time()
        result = fn()
        print(f"      done in {time.time() - t:.1f} s", flush=True)
        return result


def npuenv(*args, check: bool = True, show: bool = False) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "npuenv", *args]
    print("      $ npuenv " + " ".join(args), flush=True)
    p = subprocess.run(cmd, cwd=ROOT, text=True, capture_output=not show)
    if check and p.returncode != 0:
        sys.stderr.write((p.stdout or "") + (p.stderr or ""))
        raise SystemExit(f"demo: `npuenv {args[0]}` failed (exit {p.returncode})")
    return p


def main() -> int:
    out = ROOT / "out" / "demo"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    torch_source = os.environ.get("TORCH_SOURCE", "/opt/wheels")
    matrix = cm.load_matrix()
    stack = cm.resolve(matrix, cm.Constraints(torch_npu=ROW, python=PYTHON, arch="x86_64", chip="910b",
                                              os="debian12")).stack
    print(f"npuenv demo: torch_npu {stack.row.torch_npu}, torch {stack.row.torch}, CANN {stack.row.cann}, "
          f"HDK {stack.row.hdk['version']}, Python {PYTHON}, x86_64, {NODES} simulated Atlas 800T A2 nodes "
          f"(8 x {stack.chip_info['npu_smi_name']})\n", flush=True)
    steps = Steps(7)
    wheelhouse, installers, state = out / "wheelhouse", out / "installers", out / "state"

    steps.run("offline wheelhouse (CPU torch, real torch_npu from PyPI, CANN Python deps)", lambda: npuenv(
        "wheelhouse", "build", "--row", ROW, "--python", PYTHON, "--arch", "x86_64", "--torch-source", torch_source,
        "--torchvision", "none", "--out", str(wheelhouse)))

    def make_installers():
        runtime = out / "cann-runtime"
        build_runtime_for_wheel(runtime, next(wheelhouse.glob("torch_npu-*.whl")))
        for path in sim_installers.make_installers(stack, installers, runtime_libs=runtime).values():
            print(f"      {path.name}")
    steps.run("the vendor's installers (simulated, with a simulated CANN runtime)", make_installers)

    access = sim_nodes.SshAccess.create(out / "ssh")
    names = steps.run(f"{NODES} simulated Atlas nodes under podman, reached over SSH as {sim_nodes.LOGIN_USER} with sudo",
                      lambda: sim_nodes.start_nodes(NODES, state, prefix=PREFIX, access=access))
    inventory = out / "inventory.yml"
    inventory.write_text(yaml.safe_dump(sim_nodes.inventory(
        names, access, host_vars={n: {"hccn_device_ips": [f"10.40.{d}.{i + 1}" for d in range(8)]}
                                  for i, n in enumerate(names)},
        group_vars={"npuenv_row": {"torch_npu": ROW, "python": PYTHON, "chip": "910b"},
                    "npuenv_installer_cache": str(installers), "npuenv_wheelhouse": str(wheelhouse),
                    "hccn_netdetect_address": "10.40.0.254"})))
    print(f"      inventory: {inventory} (known_hosts: {access.known_hosts})")

    def deploy():
        # the rollout's progress as it goes: a line per finished task, then the recap
        p = npuenv("deploy", "--inventory", str(inventory), check=False, show=True)
        if p.returncode != 0:
            raise SystemExit(f"demo: the rollout failed (exit {p.returncode}); its output is above")
    steps.run("roll the row out with Ansible over SSH, the firmware's reboot included (npuenv deploy)", deploy)

    image = f"localhost/npuenv-demo:{ROW}"
    steps.run("the row's container image (npuenv image build)", lambda: npuenv(
        "image", "build", "--row", ROW, "--python", PYTHON, "--arch", "x86_64", "--chip", "910b", "--os", "debian12",
        "--installers", str(installers), "--wheelhouse", str(wheelhouse), "--tag", image,
        "--sbom", str(out / "image-sbom.cdx.json")))

    faulty = names[-1]
    def inject():
        sim_nodes.update_state(state, faulty, FAULT["npu"], health=FAULT["health"])
        print(f"      {faulty}: NPU {FAULT['npu']} now reports Health {FAULT['health']}")
    steps.run(f"inject a fault into {faulty}", inject)

    # The image runs as on a real host: the host's driver, npu-smi and devices
    # mounted in (here: the first node's, copied out).
    host_root = out / "host-root"
    for path in (stack.paths["driver_home"], stack.paths["firmware_home"], stack.paths["dcmi"], "/usr/local/sbin/npu-smi",
                 stack.paths["install_info"]):
        (host_root / path.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["podman", "cp", f"{names[0]}:{path}", str(host_root / path.lstrip("/"))], check=True)
    (host_root / "usr/local/bin").mkdir(parents=True, exist_ok=True)
    (host_root / "usr/local/bin/npu-smi").unlink(missing_ok=True)
    shutil.copy(host_root / "usr/local/sbin/npu-smi", host_root / "usr/local/bin/npu-smi")
    (host_root / "dev").mkdir(exist_ok=True)
    for dev, major, minor in [(f"davinci{i}", 236, i) for i in range(8)] + \
            [("davinci_manager", 237, 0), ("devmm_svm", 238, 0), ("hisi_hdc", 239, 0)]:
        os.mknod(host_root / "dev" / dev, 0o660 | 0o020000, os.makedev(major, minor))

    def validate():
        targets = ["--target", f"ansible://npu_nodes?inventory={inventory}", "--target", f"image:{image}"]
        p = npuenv("validate", *targets, "--row", ROW, "--level", "standard", "--backend", "cpu",
                   "--host-root", str(host_root), f"--run-arg=-v={state / names[0]}:/etc/npu-sim:ro",
                   "--out", str(out / "validation"), check=False, show=True)
        return p.returncode
    rc = steps.run("validate the nodes (each on itself, over SSH) and the image (standard level, one fleet report)",
                   validate)

    results = json.loads((out / "validation" / "results.json").read_text())
    failed = {(r["host"], r["check"]) for r in results["results"] if r["status"] in ("failed", "error")}
    caught = failed == {(faulty, "npu_health")}
    print()
    print(f"healthy targets: {', '.join(h for h in results['hosts'] if h != faulty)} passed"
          if caught else f"unexpected failures: {sorted(failed)}")
    print(f"injected fault caught: {faulty} npu_health (NPU {FAULT['npu']} {FAULT['health']})" if caught else
          "the injected fault was not caught as expected")
    print(f"total {time.time() - steps.started:.0f} s; fleet report: {out / 'validation' / 'report.html'}")
    print(f"the nodes stay up to be looked at (ssh -F ... or `npuenv validate --target "
          f"'ansible://npu_nodes?inventory={inventory}'`); `make sim-clean` removes them")
    sim_nodes.update_state(state, faulty, FAULT["npu"], health="OK")
    return 0 if caught and rc == 1 else 1


if __name__ == "__main__":
    sys.exit(main())

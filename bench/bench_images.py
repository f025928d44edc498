"""What an image costs to build and to rebuild, and what it carries beyond its payload.

One row (torch_npu 2.13.0, CANN 9.1.0, Python 3.11, debian12, x86_64) is built
with podman from the simulated installers and a real wheelhouse:

* cold build: in a container storage of its own, which holds only the base
  image (no layer cache at all), OS packages included;
* rebuild after a torch_npu change (the same version, other wheel bytes, as a
  rebuilt wheel would be): ratio to the cold build;
* rebuild with nothing changed: ratio to the cold build;
* size overhead: the image's bytes that are neither the base image nor the
  software it installs (CANN trees, the venv, the OS packages' files, the few
  files npuenv adds), as a ratio to that payload. Layer bytes that no file of
  the final filesystem accounts for (a file written and deleted in different
  layers, caches) all land in the overhead.

Needs podman, the local base image (make engine) and PyPI for the wheelhouse's
dependencies (pip's cache makes later runs fast). Takes a few minutes.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import compat_matrix as cm  # noqa: E402
from images import build, render  # noqa: E402
from tests.integration.test_images import _rebuilt_torch_npu, make_wheelhouse  # noqa: E402
from tests.sim import installers as sim_installers  # noqa: E402

ROW, PYTHON, ARCH, OS = "2.13.0", "3.11", "x86_64", "debian12"
TAG = "localhost/npuenv-bench-images"

# Run inside the image as root: bytes of every regular file (hard links once), split into the
# given trees, files that dpkg lists for a package, and the rest.
SIZE_PROBE = r"""
import json, os, sys
trees, info = sys.argv[1].split(":"), "/var/lib/dpkg/info"
owner = {}
for name in os.listdir(info):
    if name.endswith(".list"):
        for line in open(os.path.join(info, name), errors="replace"):
            owner.setdefault(line.rstrip("\n"), name[:-5].split(":")[0])
out, seen = {"trees": 0, "packages": {}, "other": 0}, set()
for root, dirs, files in os.walk("/"):
    dirs[:] = [d for d in dirs if os.path.join(root, d) not in ("/proc", "/sys", "/dev", "/run")]
    for f in files:
        path = os.path.join(root, f)
        st = os.lstat(path)
        if not os.path.isfile(path) or os.path.islink(path) or (st.st_dev, st.st_ino) in seen:
            continue
        seen.add((st.st_dev, st.st_ino))
        if any(path == t or path.startswith(t + "/") for t in trees):
            out["trees"] += st.st_size
        elif path in owner:
            out["packages"][owner[path]] = out["packages"].get(owner[path], 0) + st.st_size
        else:
            out["other"] += st.st_size
print(json.dumps(out))
"""


def podman(*args: str) -> str:
    return subprocess.run(["podman", *args], check=True, capture_output=True, text=True).stdout


def image_size(ref: str) -> int:
    return json.loads(podman("image", "inspect", ref))[0]["Size"]


def payload_bytes(ref: str, base: str, stack: cm.Stack) -> dict:
    """The bytes of the software the image installs: the CANN trees, the venv, npuenv's files
    and the files of the OS packages the image added to its base (dpkg: the Debian image)."""
    m = render.load_manifest()
    trees = [stack.paths["install_root"], "/etc/Ascend", m["venv"], m["entrypoint"], m["profile_script"],
             stack.paths["wheelhouse_manifest"]]
    files = json.loads(podman("run", "--rm", "--network", "none", "--user", "0", "--entrypoint",
                              render.python_plan(stack).bin, ref, "-c", SIZE_PROBE, ":".join(trees)))
    in_base = {n[:-5].split(":")[0] for n in podman("run", "--rm", "--network", "none", base, "ls",
                                                     "/var/lib/dpkg/info").split() if n.endswith(".list")}
    added = {k: v for k, v in files["packages"].items() if k not in in_base}
    return {"stack_trees": files["trees"], "os_packages": sum(added.values()), "other_files": files["other"]}


@contextmanager
def private_store(tmp: Path, base: str):
    """A container storage of its own (CONTAINERS_STORAGE_CONF) holding only the base image:
    the cold build finds no cache, and the user's own images and cache are left alone."""
    tmp.mkdir(parents=True, exist_ok=True)
    conf = tmp / "storage.conf"
    conf.write_text(f'[storage]\ndriver = "overlay"\ngraphroot = "{tmp}/graph"\nrunroot = "{tmp}/run"\n')
    archive = tmp / "base.tar"
    podman("image", "save", "-o", str(archive), base)
    old = os.environ.get("CONTAINERS_STORAGE_CONF")
    os.environ["CONTAINERS_STORAGE_CONF"] = str(conf)
    try:
        podman("load", "-q", "-i", str(archive))
        archive.unlink()
        yield
    finally:
        if old is None:
            del os.environ["CONTAINERS_STORAGE_CONF"]
        else:
            os.environ["CONTAINERS_STORAGE_CONF"] = old
        shutil.rmtree(tmp / "graph", ignore_errors=True)
        shutil.rmtree(tmp / "run", ignore_errors=True)


def run() -> dict:
    matrix = cm.load_matrix()
    stack = cm.resolve(matrix, cm.Constraints(torch_npu="==" + ROW, python=PYTHON, arch=ARCH, os=OS)).stack
    base = stack.platforms.operating_systems[OS]["base_image"]
    with tempfile.TemporaryDirectory(prefix="npuenv-bench-images-") as tmp:
        tmp = Path(tmp)
        house = make_wheelhouse(stack, tmp / "wheelhouse")
        installers = tmp / "installers"
        sim_installers.make_installers(stack, installers)
        changed = _rebuilt_torch_npu(house, tmp / "wheelhouse-rebuilt")
        with private_store(tmp / "store", base):
            cold = build.build(stack, installers, house, tag=f"{TAG}:cold", engine="podman")
            same = build.build(stack, installers, house, tag=f"{TAG}:same", engine="podman")
            rebuilt = build.build(stack, installers, changed, tag=f"{TAG}:rebuilt", engine="podman")
            added = image_size(cold.tag) - image_size(base)
            payload = payload_bytes(cold.tag, base, stack)
    installed = payload["stack_trees"] + payload["os_packages"]
    mib = 1 << 20
    return {
        "name": "images",
        "cold_build_s": round(cold.seconds, 1),
        "rebuild_after_torch_npu_change_s": round(rebuilt.seconds, 1),
        "ratio_rebuild_torch_npu_to_cold": round(rebuilt.seconds / cold.seconds, 3),
        "ratio_rebuild_unchanged_to_cold": round(same.seconds / cold.seconds, 3),
        "image_added_over_base_mib": round(added / mib, 1),
        "payload_mib": round(installed / mib, 1),
        "ratio_size_overhead_to_payload": round((added - installed) / installed, 4),
    }


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))

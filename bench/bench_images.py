"""What an image costs to build and to rebuild, and what it carries beyond its payload.

One row (torch_npu 2.13.0, CANN 9.1.0, Python 3.11, debian12, x86_64) is built
with podman from the simulated installers and a real wheelhouse, each build
timed as the whole `npuenv image build` (engine build, SBOM, labels and tag):

* cold build: in a container storage of its own, which holds only the base
  image (no layer cache at all), OS packages included;
* rebuild after a torch_npu change (the same version, other wheel bytes, as a
  rebuilt wheel would be): ratio to the cold build, and where its time goes
  (the phases, the step that installs torch_npu, the rest of the engine's run:
  replaying the cached steps, their containers, the final commit);
* rebuild with nothing changed: ratio to the cold build;
* size: the bytes the image adds to its base (its layers as tar streams, as
  the engine counts them) against its payload: the CANN trees, the venv,
  npuenv's files and the files of the OS packages it adds (dpkg's lists, read
  through Debian's merged /usr). The rest is split into the layer format's own
  bytes (a tar header per file, directory and link, and padding to 512 bytes),
  byte code the OS packages compiled when they were installed (py3compile),
  the package manager's records, files nothing accounts for, and bytes in a
  layer that a later layer hides.

The layers are read in podman's overlay storage (their diff folders and sizes),
so this needs root, podman, the local base image (make engine) and PyPI for the
wheelhouse's dependencies (pip's cache makes later runs fast). A few minutes.
"""
from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path, PurePosixPath

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import compat_matrix as cm  # noqa: E402
from images import build, render  # noqa: E402
from tests.sim.inputs import make_wheelhouse, rebuilt_torch_npu  # noqa: E402
from tests.sim import installers as sim_installers  # noqa: E402

ROW, PYTHON, ARCH, OS = "2.13.0", "3.11", "x86_64", "debian12"
TAG = "localhost/npuenv-bench-images"
DPKG_INFO = "/var/lib/dpkg/info"
PACKAGE_RECORDS = ("/var/lib/dpkg/", "/var/cache/debconf/", "/var/log/apt/", "/var/log/dpkg.log",
                   "/var/cache/ldconfig/", "/etc/ld.so.cache")
MIB = 1 << 20


def podman(*args: str) -> str:
    return subprocess.run(["podman", *args], check=True, capture_output=True, text=True).stdout


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
        if podman("info", "--format", "{{.Store.GraphRoot}}").strip() != f"{tmp}/graph":
            raise SystemExit("podman does not use the benchmark's own storage; stopping before it builds")
        podman("load", "-q", "-i", str(archive))
        archive.unlink()
        yield tmp / "graph"
    finally:
        if old is None:
            del os.environ["CONTAINERS_STORAGE_CONF"]
        else:
            os.environ["CONTAINERS_STORAGE_CONF"] = old
        shutil.rmtree(tmp / "graph", ignore_errors=True)
        shutil.rmtree(tmp / "run", ignore_errors=True)


# --- where the bytes go -----------------------------------------------------------------

def _layers(ref: str) -> list[Path]:
    """The image's layer folders in overlay storage, top first."""
    driver = json.loads(podman("image", "inspect", ref))[0]["GraphDriver"]
    if driver["Name"] != "overlay":
        raise SystemExit(f"the size figures read overlay layers; this storage uses {driver['Name']}")
    return [Path(d) for d in [driver["Data"]["UpperDir"], *driver["Data"].get("LowerDir", "").split(":")] if d]


def _is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _opaque(path: Path) -> bool:
    for name in ("trusted.overlay.opaque", "user.overlay.opaque"):
        try:
            if os.getxattr(path, name) == b"y":
                return True
        except OSError:
            pass
    return False


def _hidden(path: str, hidden: set[str]) -> bool:
    p = PurePosixPath(path)
    return any(str(a) in hidden for a in [p, *p.parents])


def final_files(layers: list[Path]) -> tuple[dict[str, tuple[int, int]], dict[int, int]]:
    """{path: (layer index, size)} of every regular file the final filesystem shows, and the
    bytes of regular files per layer that the final filesystem does not show (a later layer
    replaced or deleted them)."""
    visible: dict[str, tuple[int, int]] = {}
    shadowed: dict[int, int] = {}
    hidden: set[str] = set()
    for index, layer in enumerate(layers):
        new_hidden = set()
        for root, dirs, files in os.walk(layer):
            rel = "/" + os.path.relpath(root, layer) if root != str(layer) else "/"
            for name in dirs:
                if _opaque(Path(root) / name):
                    new_hidden.add(os.path.normpath(f"{rel}/{name}") + "/*")
            for name in files:
                full = Path(root) / name
                st = os.lstat(full)
                path = os.path.normpath(f"{rel}/{name}")
                if _is_whiteout(st):
                    new_hidden.add(path)
                elif stat.S_ISREG(st.st_mode):
                    if path in visible or _hidden(path, hidden) or any(
                            str(a) + "/*" in hidden for a in PurePosixPath(path).parents):
                        shadowed[index] = shadowed.get(index, 0) + st.st_size
                    else:
                        visible[path] = (index, st.st_size)
        hidden |= new_hidden
    return visible, shadowed


def _read(layers: list[Path], path: str) -> str | None:
    for layer in layers:
        candidate = layer / path.lstrip("/")
        if candidate.is_file():
            return candidate.read_text(errors="replace")
    return None


def _canonical(path: str, aliases: dict[str, str]) -> str:
    """Debian's merged /usr: /bin, /lib, ... are links into /usr, and dpkg lists either name."""
    first, sep, rest = path.lstrip("/").partition("/")
    return f"{aliases['/' + first]}/{rest}" if sep and "/" + first in aliases else path


def size_breakdown(ref: str, base: str, graph: Path, trees: list[str]) -> dict:
    layers = _layers(ref)
    added_count = len(layers) - len(json.loads(podman("image", "inspect", base))[0]["RootFS"]["Layers"])
    sizes = {layer["id"]: layer.get("diff-size", 0)
             for layer in json.loads((graph / "overlay-layers" / "layers.json").read_text())}
    added_tar = sum(sizes[layer.parent.name] for layer in layers[:added_count])
    entries = file_bytes = 0
    for layer in layers[:added_count]:
        for root, dirs, files in os.walk(layer):
            entries += len(dirs) + len(files)
            file_bytes += sum(os.lstat(Path(root) / f).st_size for f in files
                              if stat.S_ISREG(os.lstat(Path(root) / f).st_mode))
    visible, shadowed = final_files(layers)
    base_layer = layers[-1]
    aliases = {f"/{n}": "/" + os.readlink(base_layer / n).lstrip("/") for n in os.listdir(base_layer)
               if (base_layer / n).is_symlink() and not os.readlink(base_layer / n).startswith(("/", "."))}
    in_base = {n[:-5].split(":")[0] for n in os.listdir(base_layer / DPKG_INFO.lstrip("/")) if n.endswith(".list")}
    owner: dict[str, str] = {}
    info_names = {p.rsplit("/", 1)[1] for p in visible if p.startswith(DPKG_INFO + "/")}
    for name in sorted(info_names):
        if name.endswith(".list"):
            package = name[:-5].split(":")[0]
            for line in (_read(layers, f"{DPKG_INFO}/{name}") or "").splitlines():
                owner.setdefault(_canonical(line, aliases), package)
    figures = {"stack_trees": 0, "os_packages": 0, "os_bytecode": 0, "package_records": 0, "other_files": 0}
    other: dict[str, int] = {}
    for path, (index, size) in visible.items():
        if index >= added_count:
            continue
        canonical = _canonical(path, aliases)
        package = owner.get(canonical)
        parent = PurePosixPath(canonical).parent
        if any(canonical == t or canonical.startswith(t + "/") for t in trees):
            figures["stack_trees"] += size
        elif package is not None and package not in in_base:
            figures["os_packages"] += size
        elif parent.name == "__pycache__" and canonical.endswith(".pyc") and \
                str(parent.parent / (PurePosixPath(canonical).name.split(".")[0] + ".py")) in owner:
            figures["os_bytecode"] += size
        elif canonical.startswith(PACKAGE_RECORDS):
            figures["package_records"] += size
        else:
            figures["other_files"] += size
            key = "/".join(canonical.split("/")[:4])
            other[key] = other.get(key, 0) + size
    figures["shadowed"] = sum(v for i, v in shadowed.items() if i < added_count)
    figures["tar_format"] = added_tar - file_bytes
    figures.update(added=added_tar, entries=entries,
                   largest_other={k: round(v / MIB, 2) for k, v in sorted(other.items(), key=lambda kv: -kv[1])[:5]})
    return figures


# --- the run --------------------------------------------------------------------------------

def timed_build(stack, installers: Path, house: Path, tag: str, sbom: Path) -> tuple[float, build.BuildResult]:
    started = time.monotonic()
    result = build.build(stack, installers, house, tag=tag, engine="podman", sbom=sbom)
    return time.monotonic() - started, result


def run() -> dict:
    matrix = cm.load_matrix()
    stack = cm.resolve(matrix, cm.Constraints(torch_npu="==" + ROW, python=PYTHON, arch=ARCH, os=OS)).stack
    base = stack.platforms.operating_systems[OS]["base_image"]
    m = render.load_manifest()
    trees = [stack.paths["install_root"], "/etc/Ascend", m["venv"], m["entrypoint"], m["profile_script"],
             stack.paths["wheelhouse_manifest"]]
    with tempfile.TemporaryDirectory(prefix="npuenv-bench-images-") as tmp:
        tmp = Path(tmp)
        house = make_wheelhouse(stack, tmp / "wheelhouse")
        installers = tmp / "installers"
        sim_installers.make_installers(stack, installers)
        changed = rebuilt_torch_npu(house, tmp / "wheelhouse-rebuilt")
        with private_store(tmp / "store", base) as graph:
            cold_s, cold = timed_build(stack, installers, house, f"{TAG}:cold", tmp / "cold.cdx.json")
            same_s, _ = timed_build(stack, installers, house, f"{TAG}:same", tmp / "same.cdx.json")
            rebuilt_s, rebuilt = timed_build(stack, installers, changed, f"{TAG}:rebuilt", tmp / "rebuilt.cdx.json")
            sizes = size_breakdown(cold.tag, base, graph, trees)
    payload = sizes["stack_trees"] + sizes["os_packages"]
    engine = rebuilt.phases["podman build"]
    npu_step = max(rebuilt.steps, key=lambda s: s[1])
    return flat({
        "name": "images",
        "cold_build_s": round(cold_s, 1),
        "rebuild_after_torch_npu_change_s": round(rebuilt_s, 1),
        "ratio_rebuild_torch_npu_to_cold": round(rebuilt_s / cold_s, 3),
        "ratio_rebuild_unchanged_to_cold": round(same_s / cold_s, 3),
        "rebuild_breakdown_s": {
            "checking_inputs": round(rebuilt_s - sum(rebuilt.phases.values()), 1),
            "torch_npu_step": round(npu_step[1], 1),
            "engine_other_steps_and_teardown": round(engine - npu_step[1], 1),
            **{k: round(v, 1) for k, v in rebuilt.phases.items() if k != "podman build"}},
        "image_added_over_base_mib": round(sizes["added"] / MIB, 1),
        "payload_mib": round(payload / MIB, 1),
        "ratio_size_overhead_to_payload": round((sizes["added"] - payload) / payload, 4),
        "overhead_mib": {k: round(sizes[k] / MIB, 1) for k in ("tar_format", "os_bytecode", "package_records",
                                                               "other_files", "shadowed")},
        "overhead_ratio_of_tar_format": round(sizes["tar_format"] / payload, 4),
        "layer_entries": sizes["entries"],
        "largest_other_files_mib": sizes["largest_other"],
    })


def flat(figures: dict, prefix: str = "") -> dict:
    """One level, as bench/run.py's table has it: {"a": {"b": 1}} -> {"a.b": 1}."""
    out = {}
    for key, value in figures.items():
        if isinstance(value, dict):
            out.update(flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))

"""Simulated vendor installers: self-extracting ``.run`` archives in the shape of
Huawei's (a makeself-style header that checks the payload's size and SHA256,
then runs the payload's install.sh with the vendor's flags).

``make_installers(release, out_dir)`` writes the driver, firmware, toolkit,
kernels (or ops) and NNAL packages of one CANN / HDK release for a chip and
arch, under the vendor's file names, plus a SHA256SUMS manifest. Which
versions to build is all the simulator takes from the product's matrix; how
the vendor names, lays out and configures them is the simulator's own
knowledge, in tests/sim/vendor.yaml (each fact with its source), so that a
wrong fact in compat_matrix's platforms.yaml fails the end-to-end tests.

Installed, the packages reinstall, upgrade, roll back and uninstall as the
vendor documents (vendor.yaml ``lifecycle``), and can be made to lose power
at the points in STOP_POINTS (tests/sim/faults.py power_cut).
"""
from __future__ import annotations

import hashlib
import io
import re
import shutil
import tarfile
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
PAYLOAD = HERE / "payload"
TOOLS = HERE.parent / "tools"
VENDOR = HERE.parent / "vendor.yaml"
KINDS = ("driver", "firmware", "toolkit", "kernels", "nnal")
# NNAE, the run-time engine installed instead of the toolkit (up to CANN 8.x): on request only.
OPTIONAL_KINDS = ("nnae",)
STATE_PATH = "/etc/npu-sim/state.json"


@lru_cache(maxsize=1)
def vendor() -> dict:
    return yaml.safe_load(VENDOR.read_text(encoding="utf-8"))


@dataclass(frozen=True)
class Release:
    """What to build: versions, chip and arch, nothing about how the vendor packages them."""
    cann: str
    hdk: str
    chip: str     # 910b, 910, a3, 310p
    arch: str     # x86_64, aarch64


def release_of(stack) -> Release:
    """Adapter for callers holding a resolved matrix stack: only its versions, chip and arch are read."""
    return Release(cann=stack.row.cann, hdk=stack.row.hdk["version"], chip=stack.chip, arch=stack.arch)


def _major_minor(version: str) -> tuple[int, int]:
    major, minor = version.split(".")[:2]
    return int(major), int(minor)


def generation(cann: str) -> str:
    """The packaging generation of a CANN version: ascend-toolkit up to 8.3, cann from 8.5."""
    gens = vendor()["generations"]
    if _major_minor(cann) <= _major_minor(gens["ascend-toolkit"]["until"]):
        return "ascend-toolkit"
    if _major_minor(cann) >= _major_minor(gens["cann"]["from"]):
        return "cann"
    raise ValueError(f"CANN {cann}: no packaging generation known to the simulator (vendor.yaml generations)")


def _fill(template: str, **values: str) -> str:
    # Plain replacement: the vendor's scripts are full of ${VAR}, which str.format would take for fields.
    for key, value in values.items():
        template = template.replace("{" + key + "}", value)
    return template


def package_names(release: Release) -> dict[str, str]:
    """The vendor's file name of each package of a release."""
    v = vendor()
    gen = generation(release.cann)
    chip = v["chips"][release.chip]
    templates = {k: t for k, t in v["packages"].items() if k not in ("kernels", "source")}
    templates["kernels"] = v["packages"]["kernels"][gen]
    for key, template in (chip.get("packages") or {}).items():
        kind, _, only = key.partition(".")
        if not only or only == gen:
            templates[kind] = template
    values = {"cann": release.cann, "hdk_file": release.hdk.lower(), "arch": release.arch, "chip": str(chip["token"]),
              "firmware": firmware_version(release.hdk)}
    return {k: _fill(t, **values) for k, t in templates.items()}


# Firmware versions seen shipped with real HDKs (install transcripts and
# version.info samples); other HDKs get a simulated number of the same shape.
KNOWN_FIRMWARE = {"23.0.7": "7.1.0.11.220", "24.1.RC3": "7.5.0.1.129", "25.0.RC1": "7.7.0.1.231"}
LABELS = {
    "driver": "ASCEND DRIVER RUN PACKAGE",
    "firmware": "ASCEND-HDK-{token}-NPU FIRMWARE RUN PACKAGE",
    "toolkit": "ASCEND_RUN_PACKAGE",
    "kernels": "ASCEND_RUN_PACKAGE",
    "nnal": "ASCEND_RUN_PACKAGE",
    "nnae": "ASCEND_RUN_PACKAGE",
}
# The driver's option lines as its help.info writes them (hicann/driver
# scripts/package/custom/driver/common/scripts/help.info), those simulated.
HDK_OPTIONS = (r"  --full                            Install full mode\n"
               r"  --upgrade                         Upgrade product immediately\n"
               r"  --install-path=<path>             Install to specific dir\n"
               r"  --install-username=<username>     Install to specific username\n"
               r"  --install-usergroup=<usergroup>   Install to specific usrgroup\n"
               r"  --uninstall                       Uninstall product\n"
               r"  --version                         Query the package version\n"
               r"  --install-for-all                 Install for all user\n"
               r"  --force                           Install and take effect later")
CANN_OPTIONS = (r"  --install                         Install run mode\n"
                r"  --uninstall                       Uninstall\n"
                r"  --upgrade                         Upgrade\n"
                r"  --devel                           Install devel mode\n"
                r"  --version                         Show version\n"
                r"  --install-for-all                 Install for all users\n"
                r"  --install-path=<path>             Install to specific path\n"
                r"  --chip=<chip_type>                Appoint chip type\n"
                r"  --whitelist=<feature_type>        Install features\n"
                r"  --full                            Install full mode")
_VERSION = re.compile(r"^(\d+)\.(\d+)\.(?:RC(\d+)|(\d+))(?:\.(\d+))?", re.IGNORECASE)


def _version_parts(version: str) -> tuple[int, int, int, int]:
    """major, minor, release-candidate or patch number, sub-release: 25.0.RC1.1 -> (25, 0, 1, 1)."""
    m = _VERSION.match(version)
    if not m:
        raise ValueError(f"{version!r} is not a CANN/HDK version")
    major, minor, rc, patch, sub = m.groups()
    return int(major), int(minor), int(rc or patch), int(sub or 0)


def firmware_version(hdk: str) -> str:
    if hdk in KNOWN_FIRMWARE:
        return KNOWN_FIRMWARE[hdk]
    major, minor, _, _ = _version_parts(hdk)
    return f"7.{major - 18}.{minor}.1.200"


def _order(version: str) -> tuple:
    """Release order: 8.0.RC1 < 8.0.RC3 < 8.0.0 < 8.0.1 < 8.1.RC1."""
    m = _VERSION.match(version)
    if not m:
        raise ValueError(f"{version!r} is not a CANN/HDK version")
    major, minor, rc, patch, sub = m.groups()
    return int(major), int(minor), (0, int(rc)) if rc else (1, int(patch)), int(sub or 0)


def _is_hdk(version: str) -> bool:
    # HDK versions are numbered by year (23.0.RC3, 26.1.0), CANN's by major release (7.0.0, 9.1.0).
    return _version_parts(version)[0] >= 20


def _train_index(version: str) -> int:
    """The release train of a CANN or HDK version: the last one of vendor.yaml's release_trains not newer."""
    trains = vendor()["release_trains"]["trains"]
    key, kind = _order(version), "hdk" if _is_hdk(version) else "cann"
    found = 0
    for i, train in enumerate(trains):
        if _order(train[kind]) <= key:
            found = i
    return found


def _train_c(index: int) -> int:
    return vendor()["release_trains"]["trains"][index]["c"]


def inner_version(version: str) -> str:
    """A vendor-style inner version V100R001C<nn>SPC<n>B<build>, C<nn> being the release train's number."""
    _, _, n, sub = _version_parts(version)
    return f"V100R001C{_train_c(_train_index(version)):02d}SPC{n:03d}B2{sub:02d}"


def driver_accepts(hdk: str) -> str:
    """The driver's compatible_version: its own train and the ones before it (vendor.yaml release_trains)."""
    last = _train_index(hdk)
    first = max(0, last - vendor()["release_trains"]["driver_accepts_trains"] + 1)
    return ",".join(f"[V100R001C{_train_c(i):02d}]" for i in range(first, last + 1))


def inner_dotted(version: str) -> str:
    """The inner version as latest/version.cfg writes it: 8.2.RC2 -> 8.2.0.2.220 (the published sample's
    shape, code index id 4926109241; the last field is the simulator's)."""
    m = _VERSION.match(version)
    major, minor, rc, patch, _ = m.groups()
    return f"{major}.{minor}.{patch or 0}.{rc or 0}.220"


# Where a simulated installer can lose power (tests/sim/faults.py power_cut): the
# point names the payload's `power_cut <point>` calls, and what the disk holds then.
STOP_POINTS = {
    "driver": {
        "info_written": "the install info is in /etc/ascend_install.info (no Driver_Install_Status), no driver files",
        "old_removed": "an overwrite or --upgrade removed the old driver; the new one is not copied",
    },
    "toolkit": {
        "files_copied": "the version directory is complete; not linked from latest (or cann), no set_env.sh, "
                        "the install record not (re)written",
        "old_removed": "an --upgrade removed the running version; the new one is not copied",
    },
    "nnal": {
        "backed_up": "an --upgrade copied the running version to <v>_recover and set_env.sh to set_env_recover.sh",
        "old_removed": "an --upgrade removed the running version, latest and set_env.sh; the new one is not copied",
    },
}


def layout(release: Release) -> dict[str, str]:
    """Install paths of the release's generation, @ROOT@ standing for the install root."""
    gen = vendor()["generations"][generation(release.cann)]
    return {k: _fill(v, cann=release.cann) for k, v in gen.items() if isinstance(v, str) and k != "source"}


def _payload_env(release: Release, kind: str) -> dict[str, str]:
    v = vendor()
    gen = generation(release.cann)
    paths = layout(release)
    chip = v["chips"][release.chip]
    hdk_kind = kind in ("driver", "firmware")
    version = release.hdk if hdk_kind else release.cann
    return {
        "KIND": kind,
        "VERSION": version,
        "VERSION_FILE_TEXT": release.hdk.lower(),  # driver files spell rc in lower case
        "FIRMWARE_VERSION": firmware_version(release.hdk),
        "INNER_VERSION": inner_version(version),
        "INNER_DOTTED": inner_dotted(version),
        "PACKAGE_FILE": package_names(release)[kind],
        "ARCH": release.arch,
        "LAYOUT": gen,
        "DEFAULT_ROOT": v["install_root"]["value"],
        "INSTALL_INFO": v["records"]["driver_install_info"],
        "CANN_INFO": v["records"]["cann_install_info"],
        "LOG_DIR": v["records"]["log_dir"],
        "TOOLKIT_HOME_T": paths["home"],
        "TOOLKIT_LATEST_T": paths["latest"],
        "LATEST_TARGET": paths.get("latest_target", ""),
        "ENV_SCRIPT_T": paths["env_script"],
        "COMPAT_LATEST_T": paths.get("compat_latest", ""),
        "COMPAT_ENV_SCRIPT_T": paths.get("compat_env_script", ""),
        "STATE_PATH": STATE_PATH,
        "OPP_KERNEL_DIR": chip["opp_kernel_dir"],
        "OPS_TAG": f"{paths['ops_tag']}_{str(chip['token']).lower()}",
        "OPS_INFO_NAME": paths["ops_info"],
        "PACKAGE_NAME": package_names(release)["kernels"].split("_")[0],
        "OPP_PACKAGE": f"Ascend{str(chip['token']).upper()}-opp_kernel",
        "PYTHON_LIST": "python3.7,python3.8,python3.9,python3.10,python3.11",
    }


def _files(release: Release) -> dict[str, str]:
    """The version and install-info files, in the vendor's formats (vendor.yaml ``files``)."""
    values = {"cann": release.cann, "hdk_file": release.hdk.lower(), "arch": release.arch,
              "firmware": firmware_version(release.hdk)}
    files = vendor()["files"]
    return {
        "driver": _fill(files["driver_version_info"], inner=inner_version(release.hdk),
                        accepts=driver_accepts(release.hdk), **values),
        "firmware": _fill(files["firmware_version_info"], **values),
        "toolkit": _fill(files["toolkit_install_info"], inner=inner_version(release.cann),
                         home=layout(release)["home"], **values),
        "nnal": _fill(files["nnal_version_info"], **values),
        "nnae": _fill(files["nnae_install_info"], inner=inner_version(release.cann),
                      home="@ROOT@/nnae/" + release.cann, **values),
    }


def set_env_script(release: Release, kind: str) -> str:
    """The set_env.sh a package installs (toolkit, nnae, nnal; nnal_entry: nnal/atb/set_env.sh)."""
    scripts = vendor()["set_env"]
    key = generation(release.cann) if kind == "toolkit" else kind
    return f"# {kind} {release.cann} environment (simulated set_env.sh)\n" + _fill(scripts[key], cann=release.cann)


def _placeholder(path: Path, what: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"simulated {what}\n")


def _stage(kind: str, release: Release, runtime_libs: Path | None, work: Path) -> Path:
    stage = work / kind
    stage.mkdir()
    shutil.copy(PAYLOAD / "common.sh", stage / "common.sh")
    shutil.copy(PAYLOAD / f"{kind}.sh", stage / "install.sh")
    if kind in ("toolkit", "kernels"):
        shutil.copy(PAYLOAD / "latest_manager.sh", stage / "latest_manager.sh")
    env = _payload_env(release, kind)
    (stage / "package.env").write_text("".join(f"{k}='{v}'\n" for k, v in env.items()))
    if kind in ("driver", "firmware", "toolkit", "nnal", "nnae"):
        (stage / "version.info").write_text(_files(release)[kind])
    files = stage / "files"
    if kind == "driver":
        files.mkdir()
        shutil.copy(TOOLS / "npu_smi.py", files / "npu-smi")
        shutil.copy(TOOLS / "hccn_tool.py", files / "hccn_tool")
        _placeholder(files / "lib64/driver/libascend_hal.so", "driver library")
        _placeholder(files / "lib64/common/libc_sec.so", "driver library")
        _placeholder(files / "dcmi/libdcmi.so", "dcmi library")
        _placeholder(files / "dcmi/dcmi_interface_api.h", "dcmi header")
    elif kind in ("toolkit", "nnae"):
        (stage / "set_env.sh").write_text(set_env_script(release, kind))
        if kind == "toolkit":
            # The toolkit's HCCL test programs (tools/hccl_test/bin/<op>_test), as a site
            # has them once it has built them with MPI (vendor.yaml: hccl_test).
            spec = vendor()["hccl_test"]
            bin_dir = files / "tools" / spec["dir"] / "bin"
            bin_dir.mkdir(parents=True)
            for op in spec["ops"]:
                shutil.copy(TOOLS / "hccl_test.py", bin_dir / f"{op}_test")
        libs = files / "lib64"
        libs.mkdir(parents=True)
        if runtime_libs:
            for lib in runtime_libs.glob("*.so*"):
                if not lib.name.startswith("libatb"):
                    shutil.copy(lib, libs / lib.name)
    elif kind == "kernels":
        token = vendor()["chips"][release.chip]["opp_kernel_dir"]
        _placeholder(files / "kernel" / f"{token}_binary_info.json", "kernel index")
    elif kind == "nnal":
        (stage / "set_env.sh").write_text(set_env_script(release, "nnal_entry"))
        (stage / "atb_set_env.sh").write_text(set_env_script(release, "nnal"))
        (files / "lib").mkdir(parents=True)
        if runtime_libs:
            for lib in runtime_libs.glob("libatb*.so*"):
                shutil.copy(lib, files / "lib" / lib.name)
    for script in stage.rglob("*"):
        if script.is_file():
            script.chmod(0o755 if script.suffix in (".sh", "") else 0o644)
    return stage


def _tar(stage: Path) -> bytes:
    """A reproducible tar.gz of the staged payload (fixed owners and times)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", format=tarfile.GNU_FORMAT, compresslevel=6) as tar:
        for path in sorted(stage.rglob("*")):
            info = tar.gettarinfo(str(path), arcname=str(path.relative_to(stage)))
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            info.mtime = 0
            if path.is_file():
                with path.open("rb") as f:
                    tar.addfile(info, f)
            else:
                tar.addfile(info)
    return _gzip_without_time(buf.getvalue())


def _gzip_without_time(data: bytes) -> bytes:
    return data[:4] + b"\0\0\0\0" + data[8:]  # gzip header MTIME field


def write_run(path: Path, label: str, options: str, payload: bytes) -> Path:
    """Header + payload; the header records the payload's offset, size and SHA256."""
    template = (HERE / "header.sh").read_text()
    header = (template.replace("@LABEL@", label).replace("@SIZE@", str(len(payload)))
              .replace("@SHA256@", hashlib.sha256(payload).hexdigest()).replace("@OPTIONS@", options))
    # The offset is the header's own length, written with a fixed width so
    # that filling it in does not change that length.
    header = header.replace("@OFFSET@", "@" * 10)
    header = header.replace("@" * 10, f"{len(header.encode()):010d}")
    path.write_bytes(header.encode() + payload)
    path.chmod(0o755)
    return path


def make_installers(release, out_dir: Path, *, hdk: str | None = None, runtime_libs: Path | None = None,
                    kinds=KINDS) -> dict[str, Path]:
    """Write a release's simulated installers into ``out_dir`` (vendor file names) and SHA256SUMS.

    ``release`` is a Release, or a resolved matrix stack (only its versions,
    chip and arch are read: release_of). ``hdk`` overrides the HDK version (to
    fake a driver that does not pair); ``runtime_libs`` is a directory of
    simulated CANN libraries for the toolkit and NNAL (see tests/sim/cann_runtime).
    """
    if not isinstance(release, Release):
        release = release_of(release)
    if hdk:
        release = Release(cann=release.cann, hdk=hdk, chip=release.chip, arch=release.arch)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    names = package_names(release)
    token = str(vendor()["chips"][release.chip]["token"]).upper()
    written = {}
    with tempfile.TemporaryDirectory() as tmp:
        for kind in kinds:
            options = HDK_OPTIONS if kind in ("driver", "firmware") else CANN_OPTIONS
            payload = _tar(_stage(kind, release, runtime_libs, Path(tmp)))
            written[kind] = write_run(out_dir / names[kind], LABELS[kind].format(token=token), options, payload)
    write_sha256sums(out_dir)
    return written


def write_sha256sums(directory: Path) -> Path:
    lines = []
    for run in sorted(Path(directory).glob("*.run")):
        lines.append(f"{hashlib.sha256(run.read_bytes()).hexdigest()}  {run.name}\n")
    out = Path(directory) / "SHA256SUMS"
    out.write_text("".join(lines))
    return out

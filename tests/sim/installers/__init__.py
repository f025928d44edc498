"""Simulated vendor installers: self-extracting ``.run`` archives in the shape of
Huawei's (a makeself-style header that checks the payload's size and SHA256,
then runs the payload's install.sh with the vendor's flags).

``make_installers(stack, out_dir)`` writes the driver, firmware, toolkit,
kernels (or ops) and NNAL packages of a resolved matrix row under the vendor's
file names, plus a SHA256SUMS manifest. The package names, install paths and
the environment the scripts export all come from the matrix (compat_matrix),
so the simulator and the product read the same facts.
"""
from __future__ import annotations

import hashlib
import io
import shutil
import tarfile
import tempfile
from pathlib import Path

from compat_matrix import Stack
from compat_matrix.stack import shell_exports
from compat_matrix.versions import VendorVersion

HERE = Path(__file__).resolve().parent
PAYLOAD = HERE / "payload"
TOOLS = HERE.parent / "tools"
KINDS = ("driver", "firmware", "toolkit", "kernels", "nnal")
STATE_PATH = "/etc/npu-sim/state.json"

# Firmware versions seen shipped with real HDKs (install transcripts and
# version.info samples); other HDKs get a simulated number of the same shape.
KNOWN_FIRMWARE = {"23.0.7": "7.1.0.11.220", "24.1.RC3": "7.5.0.1.129", "25.0.RC1": "7.7.0.1.231"}
LABELS = {
    "driver": "ASCEND DRIVER RUN PACKAGE",
    "firmware": "ASCEND-HDK-{token}-NPU FIRMWARE RUN PACKAGE",
    "toolkit": "ASCEND_RUN_PACKAGE",
    "kernels": "ASCEND_RUN_PACKAGE",
    "nnal": "ASCEND_RUN_PACKAGE",
}
HDK_OPTIONS = (r"  --full                            Install full mode\n"
               r"  --upgrade                         Upgrade\n"
               r"  --uninstall                       Uninstall\n"
               r"  --version                         Show version\n"
               r"  --install-for-all                 Install for all users\n"
               r"  --install-path=<path>             Install to specific path\n"
               r"  --install-username=<user>         Run user of the driver\n"
               r"  --install-usergroup=<group>       Run group of the driver")
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


def firmware_version(hdk: str) -> str:
    if hdk in KNOWN_FIRMWARE:
        return KNOWN_FIRMWARE[hdk]
    major, minor = VendorVersion(hdk).major_minor
    return f"7.{major - 18}.{minor}.1.200"


def inner_version(version: str) -> str:
    """A vendor-style inner version (V100R001C<minor>SPC<n>B<build>) for a CANN or HDK version."""
    key = VendorVersion(version).key
    return f"V100R001C{key[0] * 10 + key[1]:02d}SPC{key[3]:03d}B2{key[4]:02d}"


def _payload_env(stack: Stack, kind: str, hdk: str) -> dict[str, str]:
    paths = stack.paths_at("@ROOT@")
    chip = stack.chip_info
    generation = "ops" if stack.row.packaging == "cann" else "kernels"
    token = chip["package_token"]
    return {
        "KIND": kind,
        "VERSION": hdk if kind in ("driver", "firmware") else stack.row.cann,
        "VERSION_FILE_TEXT": hdk.lower(),  # driver files spell rc in lower case
        "FIRMWARE_VERSION": firmware_version(hdk),
        "INNER_VERSION": inner_version(hdk if kind in ("driver", "firmware") else stack.row.cann),
        "ARCH": stack.arch,
        "LAYOUT": stack.row.packaging,
        "DEFAULT_ROOT": stack.platforms.install_root,
        "TOOLKIT_HOME_T": paths["toolkit_home"],
        "TOOLKIT_LATEST_T": paths["toolkit_latest"],
        "ENV_SCRIPT_T": paths["env_script"],
        "STATE_PATH": STATE_PATH,
        "OPP_KERNEL_DIR": chip["opp_kernel_dir"],
        "OPS_TAG": f"{generation}_{token.lower()}",
        "OPS_INFO_NAME": f"ascend_{generation}_install.info",
        "PACKAGE_NAME": stack.packages["kernels"].split("_")[0],
        "OPP_PACKAGE": f"Ascend{token.upper()}-opp_kernel",
        "PYTHON_LIST": "python3.7,python3.8,python3.9,python3.10,python3.11",
    }


def _toolkit_env_script(stack: Stack) -> str:
    """The toolkit's set_env.sh: the driver's libraries when /etc/ascend_install.info
    names a driver, then the toolkit's variables (both from the matrix)."""
    driver_scalars, driver_paths = stack.environment(root="$_driver_root", parts=("driver",))
    scalars, lists = stack.environment(root="@ROOT@", parts=("toolkit",))
    return (f"# CANN {stack.row.cann} toolkit environment (simulated set_env.sh)\n"
            "_driver_root=$(sed -n 's/^Driver_Install_Path_Param=//p' /etc/ascend_install.info 2>/dev/null | tail -n1)\n"
            'if [ -n "$_driver_root" ] && [ -d "$_driver_root/driver/lib64" ]; then\n'
            + shell_exports(driver_scalars, driver_paths) +
            "fi\nunset _driver_root\n" + shell_exports(scalars, lists))


def _nnal_env_script(stack: Stack) -> str:
    scalars, lists = stack.environment(root="@ROOT@", parts=("nnal",))
    return f"# NNAL {stack.row.cann} (ATB) environment (simulated set_env.sh)\n" + shell_exports(scalars, lists)


def _placeholder(path: Path, what: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"simulated {what}\n")


def _stage(kind: str, stack: Stack, hdk: str, runtime_libs: Path | None, work: Path) -> Path:
    stage = work / kind
    stage.mkdir()
    shutil.copy(PAYLOAD / "common.sh", stage / "common.sh")
    shutil.copy(PAYLOAD / f"{kind}.sh", stage / "install.sh")
    env = _payload_env(stack, kind, hdk)
    (stage / "package.env").write_text("".join(f"{k}='{v}'\n" for k, v in env.items()))
    files = stage / "files"
    if kind == "driver":
        shutil.copy(PAYLOAD / "driver_uninstall.sh", stage / "uninstall.sh")
        files.mkdir()
        shutil.copy(TOOLS / "npu_smi.py", files / "npu-smi")
        shutil.copy(TOOLS / "hccn_tool.py", files / "hccn_tool")
        _placeholder(files / "lib64/driver/libascend_hal.so", "driver library")
        _placeholder(files / "lib64/common/libc_sec.so", "driver library")
        _placeholder(files / "dcmi/libdcmi.so", "dcmi library")
        _placeholder(files / "dcmi/dcmi_interface_api.h", "dcmi header")
    elif kind == "toolkit":
        (stage / "set_env.sh").write_text(_toolkit_env_script(stack))
        libs = files / "lib64"
        libs.mkdir(parents=True)
        if runtime_libs:
            for lib in runtime_libs.glob("*.so*"):
                if not lib.name.startswith("libatb"):
                    shutil.copy(lib, libs / lib.name)
    elif kind == "kernels":
        token = stack.chip_info["opp_kernel_dir"]
        _placeholder(files / "kernel" / f"{token}_binary_info.json", "kernel index")
    elif kind == "nnal":
        (stage / "set_env.sh").write_text(_nnal_env_script(stack))
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


def make_installers(stack: Stack, out_dir: Path, *, hdk: str | None = None, runtime_libs: Path | None = None,
                    kinds=KINDS) -> dict[str, Path]:
    """Write the row's simulated installers into ``out_dir`` (vendor file names) and SHA256SUMS.

    ``hdk`` overrides the row's HDK version (to fake a driver that does not pair);
    ``runtime_libs`` is a directory of simulated CANN libraries for the toolkit
    and NNAL (see tests/sim/cann_runtime).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    hdk = hdk or stack.row.hdk["version"]
    names = stack.packages
    token = stack.chip_info["package_token"].upper()
    written = {}
    with tempfile.TemporaryDirectory() as tmp:
        for kind in kinds:
            name = names[kind].replace("*", firmware_version(hdk))
            if kind == "driver":
                name = name.replace(stack.row.hdk["version"].lower(), hdk.lower())
            options = HDK_OPTIONS if kind in ("driver", "firmware") else CANN_OPTIONS
            payload = _tar(_stage(kind, stack, hdk, runtime_libs, Path(tmp)))
            written[kind] = write_run(out_dir / name, LABELS[kind].format(token=token), options, payload)
    write_sha256sums(out_dir)
    return written


def write_sha256sums(directory: Path) -> Path:
    lines = []
    for run in sorted(Path(directory).glob("*.run")):
        lines.append(f"{hashlib.sha256(run.read_bytes()).hexdigest()}  {run.name}\n")
    out = Path(directory) / "SHA256SUMS"
    out.write_text("".join(lines))
    return out

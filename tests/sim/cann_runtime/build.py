"""Build the simulated CANN runtime libraries that the real torch_npu wheel links against.

Everything is derived at build time from an installed torch_npu (the folder that
holds ``torch_npu/``, e.g. ``pip install --no-deps --target DIR torch_npu-*.whl``):

1. ``readelf -d`` of each of its shared objects gives the NEEDED libraries. Those
   that are neither in the wheel, nor torch's, nor versioned system libraries
   (``libc.so.6``...) are the CANN libraries (libascendcl.so, libhccl.so, ...).
2. ``readelf --dyn-syms`` (what ``nm -D --undefined-only`` lists, plus the symbol
   type) gives the undefined symbols. Symbols defined by the wheel, by torch, by
   the system libraries or by Python are dropped; the rest are CANN's. Functions
   torch_npu resolves lazily with dlsym are found as strings in its binaries.
3. Each CANN symbol goes to a library by name prefix (``_RULES``), else to a CANN
   library that every object using it loads. Libraries the wheel never NEEDs
   (libruntime.so, libprofapi.so, libc_sec.so) become dependencies of one it does,
   as the vendor's libascendcl.so pulls them in.
4. C source is generated (C++ names through GCC asm labels, data objects as data)
   and gcc builds one library per CANN library, with its SONAME. Every generated
   function fails with an error code. The hand-written ``acl_device.c`` (device
   queries and the device init torch_npu does) and ``acl_op_compiler.c`` (compile
   options) are compiled in instead of stubs for the names they define.

The stubs take no arguments and return an error code; callers' arguments are
ignored, which the x86_64 calling convention allows. Functions that return a
pointer or a size return NULL or 0 instead (``_NON_ERROR_RETURNS``). C++ methods
returning objects by value are not safe to call; nothing on the import, device
query or device init path calls one.

Only x86_64 is supported, and only for the host: the stubs rely on its calling
convention and the cp311 x86_64 wheel is what is tested. libatb.so is built too
(libop_plugin_atb.so NEEDs it); on a real host it belongs to NNAL
(``${ATB_HOME_PATH}/lib``), not the toolkit's lib64.

``make_toolkit_tree`` lays out a minimal toolkit around the libraries, for tests.
"""
from __future__ import annotations

import argparse
import importlib.util
import platform
import re
import shlex
import subprocess
import sys
import tempfile
import zipfile
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent

# Hand-written, real code compiled into a library instead of stubs for its names.
_HANDWRITTEN = {"libascendcl.so": [HERE / "acl_device.c"],
                "libacl_op_compiler.so": [HERE / "acl_op_compiler.c"]}

# (regex on the demangled name, providing library); first match wins.
_RULES = [
    (r"acltdt", "libacl_tdt_channel.so"),
    (r"aclopCompile|acl(Get|Set)Compileopt|acl(Create|Destroy)GraphDumpOpt|aclGenGraph|aclrt(Ctx)?(Set|Get)SysParamOpt",
     "libacl_op_compiler.so"),
    (r"acl", "libascendcl.so"),
    (r"[Hh]ccl", "libhccl.so"),
    (r"rt[A-Z]", "libruntime.so"),
    (r"Msprof", "libprofapi.so"),
    (r"[a-z]+_s$", "libc_sec.so"),  # securec: snprintf_s, strcpy_s, ...
    (r"atb::", "libatb.so"),
    (r"ge::(Session|CompiledGraphSummary|GE[A-Z])", "libge_runner.so"),
    (r"ge::", "libgraph.so"),
]

# Functions the vendor libraries export that torch_npu resolves with dlsym: NUL-delimited
# strings in its binaries. Only runtime/model/profiling/op/HCCL names: the operator API
# (aclnn*, aclCreateTensor...) lives in libopapi.so/libnnopbase.so, which stay absent.
# Names ending in H or L are fragments of inlined string immediates (x86 REX prefixes).
_LAZY_NAME = re.compile(
    rb"\0((?:acl(?:rt|mdl|prof|sys|op)|Hccl)[A-Z][A-Za-z0-9]*(?<![HL])|acl(?:Get|Set)Compileopt\w*)\0")

# Where a library lacking from an object's NEEDED list is hung instead.
_PREFERRED_HOST = "libascendcl.so"

# The error each library's stubs return (any non-zero value means failure).
_ERROR_CODE = {
    "libascendcl.so": 207000,  # ACL_ERROR_RT_FEATURE_NOT_SUPPORT
    "libacl_op_compiler.so": 207000,
    "libacl_tdt_channel.so": 207000,
    "libruntime.so": 207000,
    "libhccl.so": 5,  # HCCL_E_NOT_SUPPORT
    "libge_runner.so": -1,  # ge::FAILED / GRAPH_FAILED (0xFFFFFFFF)
    "libgraph.so": -1,
}
_DEFAULT_ERROR = -1

# C functions whose failure value is not an error code (public AscendCL API).
_NON_ERROR_RETURNS = {
    "aclCreateDataBuffer": "NULL", "aclCreateTensorDesc": "NULL", "aclopCreateAttr": "NULL",
    "acltdtCreateChannelWithCapacity": "NULL", "acltdtCreateChannel": "NULL",
    "acltdtCreateDataset": "NULL", "acltdtGetDataItem": "NULL", "acltdtGetDataAddrFromItem": "NULL",
    "aclGetCompileoptSize": "0", "aclGetTensorDescNumDims": "0", "acltdtGetDatasetSize": "0",
    "acltdtGetDataSizeFromItem": "0", "acltdtGetDimNumFromItem": "0",
    "aclGetTensorDescFormat": "-1", "aclGetTensorDescType": "-1",  # ACL_FORMAT/DT_UNDEFINED
    "acltdtGetDataTypeFromItem": "-1",
    "aclprofCreateConfig": "NULL", "aclprofCreateStepInfo": "NULL",
}

_DATA_SIZE = 64  # bytes given to a data object whose real size is unknown


def _run(*cmd: str) -> str:
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


def _needed(so: Path) -> list[str]:
    return re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", _run("readelf", "-dW", str(so)))


def _dyn_syms(so: Path):
    """(name, type, binding, defined, versioned) for each dynamic symbol."""
    for line in _run("readelf", "-W", "--dyn-syms", str(so)).splitlines():
        f = line.split()
        if len(f) < 8 or not f[0].endswith(":"):
            continue
        name, _, version = f[7].partition("@")
        yield name, f[3], f[4], f[6] != "UND", bool(version)


def _defined(paths) -> set[str]:
    return {name for p in paths for name, _, _, defined, _ in _dyn_syms(p) if defined}


def _torch_lib_dir(torch_npu_dir: Path) -> Path:
    beside = torch_npu_dir / "torch" / "lib"
    if beside.is_dir():
        return beside
    spec = importlib.util.find_spec("torch")
    if spec and spec.origin:
        return Path(spec.origin).parent / "lib"
    raise FileNotFoundError(
        "torch is needed to tell torch's symbols from CANN's; install it in this Python "
        f"or next to {torch_npu_dir}/torch_npu")


def _system_lib(name: str) -> Path | None:
    path = Path(_run("gcc", f"-print-file-name={name}").strip())
    return path if path.is_absolute() and path.exists() else None


def _demangle(names: list[str]) -> dict[str, str]:
    out = subprocess.run(["c++filt"], input="\n".join(names), check=True,
                         capture_output=True, text=True).stdout.splitlines()
    return dict(zip(names, out))


def _c_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def analyse(torch_npu_dir: Path) -> tuple[dict[str, dict[str, str]], dict[str, set[str]]]:
    """The CANN libraries with their symbols ({lib: {symbol: kind}}, kind FUNC, OBJECT
    or TLS) and the extra NEEDED entries they must carry ({lib: {dep, ...}})."""
    objects = sorted((torch_npu_dir / "torch_npu").rglob("*.so"))
    if not objects:
        raise FileNotFoundError(f"no torch_npu shared objects under {torch_npu_dir}/torch_npu")
    needed = {o: _needed(o) for o in objects}
    wheel_names = {o.name for o in objects}
    by_name = {o.name: o for o in objects}
    torch_dir = _torch_lib_dir(torch_npu_dir)

    # Versioned names (libc.so.6, libstdc++.so.6) are system libraries; CANN's and torch's are bare .so.
    all_needed = {n for names in needed.values() for n in names}
    system = {n for n in all_needed if re.search(r"\.so\.\d", n) or n.startswith("ld-linux")}
    torch_libs = {n for n in all_needed if (torch_dir / n).exists()}
    cann = all_needed - wheel_names - system - torch_libs

    def reach(o: Path, seen: set[Path]) -> set[str]:
        """CANN libraries in o's load tree (through the wheel's own libraries)."""
        seen.add(o)
        found = set(needed[o]) & cann
        for n in needed[o]:
            if n in by_name and by_name[n] not in seen:
                found |= reach(by_name[n], seen)
        return found

    reachable = {o: reach(o, set()) for o in objects}

    # All of torch's libraries: libtorch_python.so brings in more (libshm.so) at run time.
    known = _defined(objects) | _defined(p for p in torch_dir.glob("*.so*") if p.is_file())
    known |= _defined(p for p in map(_system_lib, sorted(system)) if p)

    users: dict[str, set[Path]] = defaultdict(set)
    kinds: dict[str, str] = {}
    for o in objects:
        for name, typ, bind, defined, versioned in _dyn_syms(o):
            # Weak references may stay unresolved; versioned ones are glibc/libstdc++'s.
            if defined or versioned or bind != "GLOBAL" or not name or name in known:
                continue
            if re.match(r"_?Py", name):  # the Python C API, from the interpreter
                continue
            users[name].add(o)
            kinds[name] = typ if typ in ("OBJECT", "TLS") else "FUNC"  # NOTYPE: a function

    # torch_npu also looks functions up at run time (dlopen + dlsym) by names kept as strings.
    lazy: dict[str, set[Path]] = defaultdict(set)
    for o in objects:
        for m in _LAZY_NAME.finditer(o.read_bytes()):
            name = m.group(1).decode()
            if name not in users and name not in known:
                lazy[name].add(o)

    demangled = _demangle(sorted(users))
    libs: dict[str, dict[str, str]] = {lib: {} for lib in cann}
    deps: dict[str, set[str]] = defaultdict(set)
    for name in sorted(users):
        common = set.intersection(*(reachable[o] for o in users[name]))
        # Template instances demangle with their return type first ("int atb::Create...").
        qualified = re.sub(r"^[\w:]+[*&]* (?=[A-Za-z_]\w*::)", "", demangled[name])
        lib = next((lib for rx, lib in _RULES if re.match(rx, qualified)), None)
        if lib is None:
            if not common:
                raise RuntimeError(f"cannot place CANN symbol {demangled[name]}: no rule, "
                                   "and its users share no CANN library")
            lib = _PREFERRED_HOST if _PREFERRED_HOST in common else sorted(common)[0]
        libs.setdefault(lib, {})[name] = kinds[name]
        # Users that do not reach the provider get it through a library they do reach.
        # (One that reaches no CANN library at all, like libnpu_profiler.so, is only
        # ever loaded by libtorch_npu.so and resolves in that load's scope.)
        for o in users[name]:
            mine = reachable[o]
            if mine and lib not in mine and not any(lib in deps[m] for m in mine):
                host = _PREFERRED_HOST if _PREFERRED_HOST in mine else sorted(mine)[0]
                deps[host].add(lib)
    for name in sorted(lazy):
        lib = next((lib for rx, lib in _RULES if re.match(rx, name)), None)
        if lib in libs:  # only libraries that are linked against; others stay absent
            libs[lib][name] = "FUNC"
    return libs, dict(deps)


def _compile_handwritten(lib: str, work: Path) -> tuple[list[Path], set[str]]:
    """The library's hand-written objects and the global names they define (not stubbed)."""
    objs = []
    for src in _HANDWRITTEN.get(lib, []):
        obj = work / (src.stem + ".o")
        subprocess.run(["gcc", "-c", "-fPIC", "-O2", "-Wall", "-Werror", f"-I{HERE}",
                        "-o", str(obj), str(src)], check=True)
        objs.append(obj)
    names = {line.split()[0] for o in objs
             for line in _run("nm", "-P", "--defined-only", "--extern-only", str(o)).splitlines()}
    return objs, names


def generate_source(lib: str, symbols: dict[str, str], skip: set[str], origin: str) -> str:
    code = _ERROR_CODE.get(lib, _DEFAULT_ERROR)
    names = sorted(set(symbols) - skip)
    demangled = _demangle(names) if names else {}
    out = [f"/* Generated by tests/sim/cann_runtime/build.py from {origin}; do not edit. */",
           '#include "sim_stub.h"', "#define NULL ((void *)0)", ""]
    for i, name in enumerate(names):
        # C++ (mangled) names are not C identifiers: define them through an asm label.
        label = f" __asm__({_c_string(name)})" if name.startswith("_Z") else ""
        ident = f"sim_sym_{i}" if label else name
        if symbols[name] in ("OBJECT", "TLS"):
            tls = "__thread " if symbols[name] == "TLS" else ""
            out.append(f"{tls}char {ident}[{_DATA_SIZE}]{label};")
            continue
        ret = _NON_ERROR_RETURNS.get(name)
        rtype = "void *" if ret == "NULL" else "long "
        value = ret if ret else str(code)
        out.append(f"{rtype}{ident}(void){label};")
        out.append(f"{rtype}{ident}(void) {{ sim_unsupported({_c_string(demangled[name])}, {code}); "
                   f"return {value}; }}")
    return "\n".join(out) + "\n"


def build_runtime(lib_dir: Path, torch_npu_dir: Path) -> list[Path]:
    """Build the simulated CANN libraries for the torch_npu installed in
    ``torch_npu_dir`` into ``lib_dir``; return their paths."""
    if platform.machine() != "x86_64":
        raise RuntimeError(f"the simulated CANN runtime builds on x86_64 only, not {platform.machine()}")
    lib_dir = Path(lib_dir)
    torch_npu_dir = Path(torch_npu_dir)
    lib_dir.mkdir(parents=True, exist_ok=True)
    libs, deps = analyse(torch_npu_dir)

    built: dict[str, Path] = {}
    with tempfile.TemporaryDirectory(prefix="npu-sim-cann-") as tmp:
        work = Path(tmp)
        # Dependencies first, so each can be named on the link line of the library that needs it.
        pending = sorted(libs)
        while pending:
            ready = [lib for lib in pending if deps.get(lib, set()) <= set(built)]
            if not ready:
                raise RuntimeError(f"dependency cycle among {pending}")
            for lib in ready:
                src = work / (lib.removesuffix(".so") + ".c")
                objs, real = _compile_handwritten(lib, work)
                src.write_text(generate_source(lib, libs[lib], real, str(torch_npu_dir)))
                out = lib_dir / lib
                # -fno-builtin: stub names may shadow compiler built-ins.
                subprocess.run(
                    ["gcc", "-shared", "-fPIC", "-O2", "-fno-builtin", f"-I{HERE}",
                     f"-Wl,-soname,{lib}", "-Wl,--no-as-needed", "-o", str(out), str(src),
                     str(HERE / "stub_support.c"), *map(str, objs),
                     *(str(built[d]) for d in sorted(deps.get(lib, ())))],
                    check=True)
                built[lib] = out
                pending.remove(lib)
    return [built[lib] for lib in sorted(built)]


def build_runtime_for_wheel(lib_dir: Path, wheel: Path) -> list[Path]:
    """``build_runtime`` for a torch_npu wheel file (unpacked to a temporary folder)."""
    with tempfile.TemporaryDirectory(prefix="npu-sim-wheel-") as tmp:
        with zipfile.ZipFile(wheel) as whl:
            whl.extractall(tmp)
        return build_runtime(lib_dir, Path(tmp))


def make_toolkit_tree(home: Path, cann_version: str, arch: str, torch_npu_dir: Path) -> Path:
    """Test helper, not the installer: the smallest toolkit ``import torch_npu`` accepts.

    ``home`` plays ``/usr/local/Ascend/ascend-toolkit/<version>``: ``lib64/`` with the
    libraries, the ``runtime/``, ``compiler/`` and ``opp/`` folders torch_npu checks
    for, ``<arch>-linux/ascend_toolkit_install.info`` it reads the version from, and a
    ``set_env.sh`` exporting what the vendor's (toolkit <= 8.3) does. Returns set_env.sh.
    """
    home = Path(home)
    build_runtime(home / "lib64", torch_npu_dir)
    for sub in ("runtime", "compiler", "opp", "python/site-packages", "bin", "toolkit"):
        (home / sub).mkdir(parents=True, exist_ok=True)
    info = home / f"{arch}-linux" / "ascend_toolkit_install.info"
    info.parent.mkdir(parents=True, exist_ok=True)
    info.write_text(f"package_name=Ascend-cann-toolkit\nversion={cann_version}\n"
                    f"arch={arch}\nos=linux\npath={info.parent}\n")
    set_env = home / "set_env.sh"
    set_env.write_text(f"""\
export ASCEND_TOOLKIT_HOME={shlex.quote(str(home))}
export LD_LIBRARY_PATH=${{ASCEND_TOOLKIT_HOME}}/lib64:${{ASCEND_TOOLKIT_HOME}}/lib64/plugin/opskernel:${{ASCEND_TOOLKIT_HOME}}/lib64/plugin/nnengine:${{ASCEND_TOOLKIT_HOME}}/opp/built-in/op_impl/ai_core/tbe/op_tiling/lib/linux/$(arch):$LD_LIBRARY_PATH
export LD_LIBRARY_PATH=${{ASCEND_TOOLKIT_HOME}}/tools/aml/lib64:${{ASCEND_TOOLKIT_HOME}}/tools/aml/lib64/plugin:$LD_LIBRARY_PATH
export PYTHONPATH=${{ASCEND_TOOLKIT_HOME}}/python/site-packages:${{ASCEND_TOOLKIT_HOME}}/opp/built-in/op_impl/ai_core/tbe:$PYTHONPATH
export PATH=${{ASCEND_TOOLKIT_HOME}}/bin:${{ASCEND_TOOLKIT_HOME}}/compiler/ccec_compiler/bin:${{ASCEND_TOOLKIT_HOME}}/tools/ccec_compiler/bin:$PATH
export ASCEND_AICPU_PATH=${{ASCEND_TOOLKIT_HOME}}
export ASCEND_OPP_PATH=${{ASCEND_TOOLKIT_HOME}}/opp
export TOOLCHAIN_HOME=${{ASCEND_TOOLKIT_HOME}}/toolkit
export ASCEND_HOME_PATH=${{ASCEND_TOOLKIT_HOME}}
""")
    return set_env


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--torch-npu-dir", type=Path, required=True,
                        help="folder holding the installed torch_npu/ package")
    parser.add_argument("--out", type=Path, required=True, help="lib64 folder to write the libraries to")
    args = parser.parse_args(argv)
    for path in build_runtime(args.out, args.torch_npu_dir):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())

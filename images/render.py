"""Render the image family: one Dockerfile (and the two small files it copies)
for a resolved matrix row x base OS x arch x chip.

The facts come from two places only: the resolved ``Stack`` (versions,
installer file names, install paths, the CANN environment) and
``manifest.yaml`` (what is specific to images: package lists and commands per
OS, stage names, the user, labels). ``templates/`` turns them into text.
"""
from __future__ import annotations

import dataclasses
import re
import shlex
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import jinja2
import yaml

from compat_matrix import Stack, UserError
from compat_matrix import lock as lock_mod
from compat_matrix.checksums import sha256_bytes
from compat_matrix.lock import Lock
from compat_matrix.versions import python_version
from compat_matrix import outputs

HERE = Path(__file__).resolve().parent
MANIFEST = HERE / "manifest.yaml"
TEMPLATES = HERE / "templates"
DOCKERFILE = "Dockerfile"
ENTRYPOINT_FILE = "npuenv-entrypoint.sh"
PROFILE_FILE = "npuenv-ascend.sh"
# The lock the image is built from, in the build context; the image holds it at platforms.yaml's
# install_records.lock (the Stack's paths["lock"]), where validation reads it back.
LOCK_FILE = "npuenv-lock.json"
# The CANN installers record their install path here (ascend_cann_install.info);
# later CANN installs and upgrades read it, so the image keeps it.
CANN_RECORDS = "/etc/Ascend"


@lru_cache(maxsize=1)
def load_manifest() -> dict:
    return yaml.safe_load(MANIFEST.read_text(encoding="utf-8"))


def label(name: str) -> str:
    """A label of npuenv's own, under the manifest's namespace (row.torch_npu, lock.digest, ...)."""
    return f"{load_manifest()['labels']['namespace']}.{name}"


# The digest of the lock the image was built from (validation checks the lock file inside against it).
LOCK_LABEL = label("lock.digest")


# --- choosing the Python --------------------------------------------------------

@dataclass(frozen=True)
class PythonPlan:
    """Where the image's interpreter comes from: the OS's package ("system") or a source build."""
    version: str
    mode: str                 # "system" | "source"
    bin: str                  # the interpreter the venv is made from
    release: str | None = None    # source: the CPython release built
    file: str | None = None       # source: the tarball expected among the installers
    prefix: str | None = None     # source: where it is installed


def os_spec(os_name: str) -> dict:
    spec = load_manifest()["operating_systems"].get(os_name)
    if spec is None:
        known = ", ".join(load_manifest()["operating_systems"])
        raise UserError(f"images/manifest.yaml has no entry for OS '{os_name}'; known: {known}")
    return spec


def choose_python(stack: Stack, python_given: bool) -> Stack:
    """The stack with the Python the image gets. When the user named none, the
    newest of the row's Pythons that the OS ships wins (no source build);
    failing that, the newest the row supports (built from source)."""
    if python_given:
        return stack
    native = os_spec(stack.os)["python"]["version"]
    python = native if native in stack.row.python else stack.row.python_sorted[-1]
    return dataclasses.replace(stack, python=python)


def python_plan(stack: Stack) -> PythonPlan:
    native = os_spec(stack.os)["python"]
    if stack.python == native["version"]:
        return PythonPlan(version=stack.python, mode="system", bin=native["bin"])
    src = load_manifest()["python_source"]
    release = src["releases"].get(stack.python)
    if release is None:
        raise UserError(f"{stack.os} ships Python {native['version']}, not {stack.python}, and "
                        f"images/manifest.yaml names no CPython release to build for {stack.python} "
                        f"(python_source.releases); add one or choose --python {native['version']}")
    prefix = src["prefix"].format(version=stack.python)
    return PythonPlan(version=stack.python, mode="source", bin=f"{prefix}/bin/python{stack.python}",
                      release=release, file=src["file"].format(release=release), prefix=prefix)


# --- the inputs the Dockerfile names ------------------------------------------

def build_arg(kind: str) -> str:
    """The build arg carrying an input's SHA256 (TOOLKIT_SHA256, ...): the
    check inside the build and the layer cache key (buildah does not hash
    bind-mounted files into its cache key, so the checksum has to be there)."""
    return re.sub(r"[^A-Z0-9]", "_", kind.upper()) + "_SHA256"


WHEELHOUSE_ARG = "WHEELHOUSE_SHA256"       # sha256 of the wheelhouse's requirements.txt
PYTHON_DEPS_ARG = "PYTHON_DEPS_SHA256"     # sha256 of the same without torch_npu (python_deps())
PYTHON_SOURCE_KIND = "python_source"


def cann_installers(stack: Stack) -> list[dict]:
    """The CANN packages installed into the image, in install order."""
    flags = stack.platforms.data["install_flags"]
    return [{"kind": kind, "file": stack.packages[kind], "arg": build_arg(kind), "flags": flags[kind],
             "source_env": stack.paths["env_script"] if kind in flags["needs_toolkit_env"] else None}
            for kind in load_manifest()["installers"]]


def _split_requirements(requirements: str) -> tuple[str, str]:
    """(requirements.txt without its torch_npu entry, the torch_npu entry alone). An entry runs
    over the lines that end in a backslash (its --hash options)."""
    rest, entry, in_entry = [], [], False
    for line in requirements.splitlines():
        if not in_entry and re.match(r"torch[-_.]npu==", line.lower()):
            in_entry = True
        if in_entry:
            entry.append(line)
            in_entry = line.endswith("\\")
            continue
        rest.append(line)
    return "".join(line + "\n" for line in rest), "".join(line + "\n" for line in entry)


def python_deps(requirements: str) -> str:
    """requirements.txt without its torch_npu entry. The image installs this first, so that a
    new torch_npu alone reuses the layer with torch and everything else. The Dockerfile's
    awk filter (DEPS_AWK) does the same; both must give the same bytes."""
    return _split_requirements(requirements)[0]


def torch_npu_requirement(requirements: str) -> str:
    """The torch_npu entry of requirements.txt alone, with its hashes: what the image's last
    layer installs (TORCH_NPU_AWK in the Dockerfile)."""
    return _split_requirements(requirements)[1]


# The same two filters in POSIX awk, for the Dockerfile.
DEPS_AWK = r"!skip && tolower($0) ~ /^torch[-_.]npu==/ { skip = 1 } skip { skip = /\\$/; next } { print }"
TORCH_NPU_AWK = r"!keep && tolower($0) ~ /^torch[-_.]npu==/ { keep = 1 } keep { print; keep = /\\$/ }"


# The Dockerfile's check of an installer against SHA256SUMS, in POSIX awk (mawk, gawk, busybox):
# compat_matrix.checksums' policy. Lines as sha256sum writes them ("HASH  NAME", "HASH *NAME",
# --tag's "SHA256 (NAME) = HASH", CRLF or LF, hex in either case, "./" before the name); exit 0
# only when NAME is listed with WANT and with no other checksum, and every line is such a line
# naming a path inside the folder.
SUMS_AWK = (
    'BEGIN { want = tolower(want) } '
    r'{ sub(/\r$/, ""); h = ""; n = ""; line = $0; if (substr(line, 1, 1) == "\\") line = substr(line, 2) } '
    'substr(line, 1, 8) == "SHA256 (" && substr(line, length(line) - 67, 4) == ") = " '
    '{ h = substr(line, length(line) - 63); n = substr(line, 9, length(line) - 76) } '
    'h == "" && substr(line, 65, 1) == " " && (substr(line, 66, 1) == " " || substr(line, 66, 1) == "*") '
    '{ h = substr(line, 1, 64); n = substr(line, 67) } '
    r'h == "" && line !~ /^[ \t]*$/ { bad = 1 } '
    r'h != "" && (length(h) != 64 || h ~ /[^0-9a-fA-F]/ || n == "" || n ~ /^\// || n ~ /(^|\/)\.\.(\/|$)/) { bad = 1 } '
    r'n != "" { sub(/^\.\//, "", n); if (n == name) { if (tolower(h) == want) ok = 1; else other = 1 } } '
    'END { exit !(ok && !other && !bad) }')


def sha256_text(text: str) -> str:
    return sha256_bytes(text.encode())


# --- labels --------------------------------------------------------------------

def _flatten(prefix: str, value) -> dict[str, str]:
    """``value`` as labels under ``prefix``: nested fields dotted, lists comma-joined."""
    if isinstance(value, dict):
        return {label: text for k, v in value.items() for label, text in _flatten(f"{prefix}.{k}", v).items()}
    if isinstance(value, (list, tuple)):
        return {prefix: ",".join(map(str, value))}
    return {prefix: "" if value is None else " ".join(str(value).split())}


def stack_fields(stack: Stack) -> dict:
    return {"torch_npu": stack.row.torch_npu, "cann": stack.row.cann, "python": stack.python, "os": stack.os,
            "arch": stack.arch, "chip": stack.chip}


def labels(stack: Stack, cann_only: bool, lock: Lock | None = None) -> dict[str, str]:
    """Static labels: OCI's and, under the namespace, every field of the row
    (row.*: nested fields dotted, lists comma-joined), the stack's choices (stack.*)
    and the digest of the lock it was built from (lock.digest)."""
    m = load_manifest()["labels"]
    ns = m["namespace"]
    base = stack.platforms.operating_systems[stack.os]["base_image"]
    fields = stack_fields(stack)
    out = {
        "org.opencontainers.image.title": m["title_cann_only" if cann_only else "title"].format(**fields),
        "org.opencontainers.image.description": " ".join(m["description"].split()),
        "org.opencontainers.image.version": stack.row.cann if cann_only else stack.row.torch_npu,
        "org.opencontainers.image.vendor": m["vendor"],
    }
    row = stack.row.to_dict()
    out.update(_flatten(f"{ns}.row", row))
    choices = {"python": stack.python, "arch": stack.arch, "chip": stack.chip, "os": stack.os,
               "base_image": base, "packaging": stack.row.packaging, "cann_only": str(cann_only).lower()}
    out.update(_flatten(f"{ns}.stack", choices))
    if lock is not None:
        out[LOCK_LABEL] = lock.digest
    return out


def installer_labels(stack: Stack) -> dict[str, str]:
    """The file name of every input the build takes from the installer directory (static: the
    row names them; their checksums are build labels)."""
    ns = load_manifest()["labels"]["namespace"]
    out = {f"{ns}.installer.{i['kind']}": i["file"] for i in cann_installers(stack)}
    py = python_plan(stack)
    if py.mode == "source":
        out[f"{ns}.installer.{PYTHON_SOURCE_KIND}"] = py.file
    return out


def build_labels(*, created: str, base_name: str, base_digest: str, installer_sums: dict[str, str],
                 requirements_sha256: str | None, sbom: dict[str, str]) -> dict[str, str]:
    """What only the build knows, added in a label-only step after it: the build date, the base
    image and its digest, each input's sha256 ({kind: sha256}), the wheelhouse's
    requirements.txt sha256, and where the SBOM is ({field: value}: file, sha256, format)."""
    ns = load_manifest()["labels"]["namespace"]
    out = {"org.opencontainers.image.created": created, "org.opencontainers.image.base.name": base_name}
    if base_digest:
        out["org.opencontainers.image.base.digest"] = base_digest
    out.update({f"{ns}.installer.{kind}.sha256": sha for kind, sha in installer_sums.items()})
    if requirements_sha256:
        out[f"{ns}.wheelhouse.requirements.sha256"] = requirements_sha256
    out.update({f"{ns}.sbom.{field}": value for field, value in sbom.items()})
    return out


def quote(value: str) -> str:
    """A Dockerfile double-quoted word: backslash, quote and $ escaped (no variable expansion)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$") + '"'


# --- rendering -----------------------------------------------------------------

def environment(stack: Stack, cann_only: bool) -> list[tuple[str, str]]:
    """The image's ENV: what the vendor's set_env scripts export (driver,
    toolkit, NNAL), PATH with the venv first, then the system's PATH."""
    m = load_manifest()
    scalars, lists = stack.environment()
    env = list(scalars.items())
    for key, items in lists.items():
        if key == "PATH":
            items = ([] if cann_only else [stack.platforms.npuenv_files["venv"] + "/bin"]) + items + [m["system_path"]]
        env.append((key, ":".join(items)))
    return env


@lru_cache(maxsize=1)
def _jinja() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), undefined=jinja2.StrictUndefined,
                             trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    env.filters["quote"] = quote
    env.filters["ere"] = lambda s: re.sub(r"([.^$*+?()\[\]{}|\\])", r"\\\1", s)  # a literal in grep -E
    # A shell parameter expansion; with a message, the shell stops with it when the variable is unset.
    env.filters["var"] = lambda name, unset=None: "${" + name + (f":?{unset}" if unset else "") + "}"
    return env


def image_user(stack: Stack) -> dict:
    """The image's non-root user: the driver's account name (the device nodes' group), the manifest's ids."""
    name = stack.platforms.hdk["run_user"]
    return {"name": name, "home": f"/home/{name}", **load_manifest()["user"]}


def context(stack: Stack, cann_only: bool = False, lock: Lock | None = None) -> dict:
    """Everything the templates use."""
    m = load_manifest()
    spec = os_spec(stack.os)
    family = stack.platforms.operating_systems[stack.os]["family"]
    py = python_plan(stack)
    packages = list(spec["packages"])
    packages += spec["python"]["packages"] if py.mode == "system" else spec["python_source"]["runtime_packages"]
    paths = stack.paths
    return {
        "stack": stack_fields(stack),
        "base_image": stack.platforms.operating_systems[stack.os]["base_image"],
        "install": m["package_managers"][family],
        "stages": m["stages"],
        "mounts": m["mounts"],
        "user": image_user(stack),
        "venv": stack.platforms.npuenv_files["venv"],
        "entrypoint": m["entrypoint"],
        "profile_script": stack.platforms.npuenv_files["profile_script"],
        "packages": packages,
        "install_packages": spec["install_packages"],
        "python": py,
        "python_source": {**spec["python_source"], "arg": build_arg(PYTHON_SOURCE_KIND)},
        "installers": cann_installers(stack),
        "install_root": paths["install_root"],
        "cann_records": CANN_RECORDS,
        "env_words": [f"{k}={quote(v)}" for k, v in environment(stack, cann_only)],
        "env_scripts": [shlex.join([paths["env_script"]]), shlex.join([paths["nnal_env_script"], *stack.nnal_env_args])],
        "install_info": paths["install_info"],
        "cann_only": cann_only,
        "wheelhouse_arg": WHEELHOUSE_ARG,
        "sums_awk": SUMS_AWK,
        "python_deps_arg": PYTHON_DEPS_ARG,
        "wheelhouse_manifest": paths.get("wheelhouse_manifest"),
        "lock": {"file": LOCK_FILE, "path": paths["lock"], "label": LOCK_LABEL} if lock is not None else None,
        "title": labels(stack, cann_only)["org.opencontainers.image.title"],
        "label_words": [f"{k}={quote(v)}" for k, v in
                        {**installer_labels(stack), **labels(stack, cann_only, lock)}.items()],
        "deps_awk": DEPS_AWK,
        "torch_npu_awk": TORCH_NPU_AWK,
        "files": {"entrypoint": ENTRYPOINT_FILE, "profile": PROFILE_FILE},
    }


def render(stack: Stack, cann_only: bool = False, lock: Lock | None = None) -> dict[str, str]:
    """The build context's files: {"Dockerfile": ..., "npuenv-entrypoint.sh": ..., ...}; with
    ``lock`` (the one ``stack`` comes from) also the lock, which the image keeps as a file and
    names in a label."""
    python_version(stack.python)  # a malformed Python is a usage error before anything renders
    if lock is not None:
        check_lock(stack, lock)
    ctx = context(stack, cann_only, lock)
    env = _jinja()
    files = {
        DOCKERFILE: env.get_template("Dockerfile.j2").render(**ctx),
        ENTRYPOINT_FILE: env.get_template("entrypoint.sh.j2").render(**ctx),
        PROFILE_FILE: env.get_template("profile.sh.j2").render(**ctx),
    }
    if lock is not None:
        files[LOCK_FILE] = lock_mod.render(lock)
    return files


def check_lock(stack: Stack, lock: Lock) -> None:
    """``stack`` is the lock's entry for its arch and OS (the same row, Python and chip): an image
    never carries a lock it was not built from."""
    entry = lock.entry(stack.arch, stack.os)
    if lock_mod.canonical_json(entry["stack"]) != lock_mod.canonical_json(stack.with_environment()):
        raise UserError(f"the image's stack (torch_npu {stack.row.torch_npu}, Python {stack.python}, chip "
                        f"{stack.chip}, {stack.arch}/{stack.os}) is not the lock {lock.digest[:19]}'s entry for "
                        f"{stack.arch}/{stack.os}; build from the lock alone (--lock FILE without row constraints)")


def write_context(files: dict[str, str], directory: Path, option: str | None = None) -> Path:
    """The build context's files in ``directory`` (all of them or, on an error, none)."""
    return outputs.write_files(directory, {name: (text, 0o755 if name.endswith(".sh") else 0o644)
                                           for name, text in files.items()}, option)


def image_tag(fields: dict, cann_only: bool = False) -> str:
    """The tag that says what an image is, from the stack's fields (stack_fields())."""
    return load_manifest()["image_names"]["cann_only" if cann_only else "full"]["tag"].format(**fields)


def image_name(stack: Stack, cann_only: bool = False) -> str:
    repository = load_manifest()["image_names"]["cann_only" if cann_only else "full"]["repository"]
    return f"{repository}:{image_tag(stack_fields(stack), cann_only)}"


"""The image's software bill of materials, in CycloneDX JSON (cyclonedx-python-lib).

What is listed, and where each fact comes from:

* every Python distribution in the image's venv (read inside the built image),
  with the wheel file and sha256 the wheelhouse manifest records for it; a
  distribution the wheelhouse did not bring (the venv's own pip) is listed with
  that said and no wheel hash;
* every input taken from the installer directory (the vendor's .run packages,
  a CPython tarball): file name and sha256 (as checked against SHA256SUMS);
* the base image and its digest;
* the operating system and every OS package (dpkg or rpm, read inside the
  built image: the query per OS family is in manifest.yaml).

The document is deterministic for one image: its serial number derives from
the image id and its timestamp is the build date, so that the same build gives
the same SBOM and the same label.
"""
from __future__ import annotations

import datetime as dt
import json
import uuid
from dataclasses import dataclass, field
from typing import Iterable

from packaging.utils import canonicalize_name
from packaging.version import Version

from compat_matrix import Stack, UserError

from . import render

FORMAT = "CycloneDX 1.6 JSON"
SUFFIX = ".cdx.json"
# Property names: CycloneDX's registered namespace for a tool's own data is free text;
# ours start with the image labels' namespace.
_NS = render.load_manifest()["labels"]["namespace"]
# Fixed namespace for the serial number (uuid5 of the image id).
_SERIAL_NS = uuid.UUID("6f2b8f3c-1a8e-4f55-9a53-6d1c0e7a2b41")

# Run with the image's own Python as root: the OS release, the OS package query's output and
# the venv's distributions (importlib.metadata over its site-packages), as one JSON document.
PROBE = r"""
import glob, importlib.metadata as md, json, subprocess, sys
query, venv = json.loads(sys.argv[1]), sys.argv[2]
release = {}
for line in open("/etc/os-release", encoding="utf-8"):
    key, sep, value = line.strip().partition("=")
    if sep:
        release[key] = value.strip().strip('"')
packages = subprocess.run(query, capture_output=True, text=True, check=True).stdout
python = None
if venv:
    sites = glob.glob(venv + "/lib/python*/site-packages")
    python = sorted([d.metadata["Name"], d.version] for d in md.distributions(path=sites))
print(json.dumps({"os_release": release, "os_packages": packages, "python": python}))
"""


@dataclass
class ImageContents:
    """What the probe read inside the built image."""
    os_release: dict[str, str]
    os_packages: list[tuple[str, str, str]]        # (name, version, arch), installed ones only
    python: list[tuple[str, str]] | None            # (name, version) in the venv; None: no venv


@dataclass
class Inputs:
    """What went into the build, from the host side."""
    image: str                                      # the tag the image gets
    image_id: str                                   # the built image (before its label-only step)
    created: str                                    # RFC 3339 build date
    base_image: str
    base_digest: str
    installers: list[dict] = field(default_factory=list)   # {kind, file, sha256}
    wheelhouse: dict | None = None                  # the wheelhouse manifest (manifest.json)


def os_query(stack: Stack) -> dict:
    """The OS package query of the stack's OS family (manifest.yaml: sbom.os_packages)."""
    family = stack.platforms.operating_systems[stack.os]["family"]
    spec = render.load_manifest()["sbom"]["os_packages"].get(family)
    if spec is None:
        raise UserError(f"images/manifest.yaml has no sbom.os_packages entry for the OS family '{family}'")
    return spec


def probe_command(stack: Stack, cann_only: bool) -> list[str]:
    """The command the build runs inside the image to read its contents."""
    venv = "" if cann_only else stack.platforms.npuenv_files["venv"]
    return [render.python_plan(stack).bin, "-c", PROBE, json.dumps(os_query(stack)["command"]), venv]


def parse_probe(stdout: str) -> ImageContents:
    """The probe's JSON; OS package lines are STATUS<TAB>NAME<TAB>VERSION<TAB>ARCH."""
    doc = json.loads(stdout)
    packages = []
    for line in doc["os_packages"].splitlines():
        parts = line.split("\t")
        if len(parts) == 4 and parts[0] == "installed":
            packages.append((parts[1], parts[2], parts[3]))
    python = None if doc["python"] is None else [(n, v) for n, v in doc["python"]]
    return ImageContents(os_release=doc["os_release"], os_packages=sorted(set(packages)), python=python)


def _sha256(hexdigest: str) -> list:
    from cyclonedx.model import HashAlgorithm, HashType
    return [HashType(alg=HashAlgorithm.SHA_256, content=hexdigest)]


def _props(**kw: str | None) -> list:
    from cyclonedx.model import Property
    return [Property(name=f"{_NS}:{k.replace('_', '-')}", value=v) for k, v in kw.items() if v]


def _oci_purl(ref: str, digest: str):
    """pkg:oci/NAME@DIGEST?repository_url=REPO&tag=TAG (purl-spec's oci type)."""
    from packageurl import PackageURL
    if not digest:
        return None
    name_part, _, tag = ref.rpartition(":") if ":" in ref.rsplit("/", 1)[-1] else (ref, "", "")
    return PackageURL(type="oci", name=name_part.rsplit("/", 1)[-1], version=digest,
                      qualifiers={"repository_url": name_part, **({"tag": tag} if tag else {})})


def python_components(contents: ImageContents, wheelhouse: dict | None) -> list:
    """The venv's distributions, each with the wheel the wheelhouse recorded for it."""
    from cyclonedx.model.component import Component, ComponentType
    from packageurl import PackageURL
    wheels = {canonicalize_name(w["name"]): w for w in (wheelhouse or {}).get("wheels", [])}
    out = []
    for name, version in contents.python or []:
        key = canonicalize_name(name)
        wheel = wheels.get(key)
        if wheel is not None and Version(wheel["version"]) != Version(version):
            raise UserError(f"the image's venv has {name} {version}, but the wheelhouse recorded "
                            f"{wheel['version']} ({wheel['file']}); the SBOM would be wrong: rebuild without cache")
        props = _props(wheel=wheel["file"], role=wheel["role"]) if wheel else \
            _props(source="not from the wheelhouse: installed by `python -m venv` (ensurepip)")
        out.append(Component(type=ComponentType.LIBRARY, name=name, version=version, bom_ref=f"pypi:{key}@{version}",
                             purl=PackageURL(type="pypi", name=key, version=version),
                             hashes=_sha256(wheel["sha256"]) if wheel else [], properties=props))
    return out


def os_components(stack: Stack, contents: ImageContents) -> list:
    from cyclonedx.model.component import Component, ComponentType
    from packageurl import PackageURL
    spec = os_query(stack)
    # purl-spec: the deb and rpm namespace is the vendor, lower case
    distro = (contents.os_release.get("ID") or stack.platforms.operating_systems[stack.os]["distribution"]).lower()
    distro_version = contents.os_release.get("VERSION_ID", "")
    out = [Component(type=ComponentType.OPERATING_SYSTEM, name=distro, version=distro_version,
                     bom_ref=f"os:{distro}@{distro_version}", description=contents.os_release.get("PRETTY_NAME"))]
    for name, version, arch in contents.os_packages:
        purl = PackageURL(type=spec["purl_type"], namespace=distro, name=name, version=version,
                          qualifiers={"arch": arch, "distro": f"{distro}-{distro_version}"})
        out.append(Component(type=ComponentType.LIBRARY, name=name, version=version, purl=purl,
                             bom_ref=f"{spec['purl_type']}:{name}@{version}:{arch}", properties=_props(
                                 package_manager=spec["name"])))
    return out


def installer_components(stack: Stack, installers: Iterable[dict]) -> list:
    from cyclonedx.model.component import Component, ComponentType
    versions = {render.PYTHON_SOURCE_KIND: (render.python_plan(stack).release or "")}
    return [Component(type=ComponentType.APPLICATION, name=i["file"], bom_ref=f"installer:{i['file']}",
                      version=versions.get(i["kind"], stack.row.cann), hashes=_sha256(i["sha256"]),
                      properties=_props(installer_kind=i["kind"]))
            for i in installers]


def assemble(stack: Stack, cann_only: bool, inputs: Inputs, contents: ImageContents) -> str:
    """The SBOM as CycloneDX 1.6 JSON text."""
    # Imported here: every npuenv command imports images/, only a build needs the library.
    from cyclonedx.model.bom import Bom, BomMetaData
    from cyclonedx.model.component import Component, ComponentType
    from cyclonedx.output.json import JsonV1Dot6
    name, _, tag = inputs.image.rpartition(":") if ":" in inputs.image.rsplit("/", 1)[-1] else (inputs.image, "", "")
    fields = render.stack_fields(stack)
    root = Component(type=ComponentType.CONTAINER, name=name, version=tag or None, bom_ref="image",
                     description=render.labels(stack, cann_only)["org.opencontainers.image.title"],
                     properties=_props(image_id=inputs.image_id, cann_only=str(cann_only).lower(),
                                       **{f"stack.{k}": v for k, v in fields.items()}))
    base = Component(type=ComponentType.CONTAINER, name=inputs.base_image, bom_ref="base-image",
                     version=inputs.base_digest or None, purl=_oci_purl(inputs.base_image, inputs.base_digest),
                     hashes=_sha256(inputs.base_digest.split(":", 1)[1]) if inputs.base_digest else [],
                     properties=_props(role="base image"))
    components = [base, *installer_components(stack, inputs.installers), *os_components(stack, contents),
                  *python_components(contents, inputs.wheelhouse)]
    created = dt.datetime.strptime(inputs.created, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.timezone.utc)
    bom = Bom(serial_number=uuid.uuid5(_SERIAL_NS, inputs.image_id),
              metadata=BomMetaData(component=root, timestamp=created), components=components)
    bom.register_dependency(root, components)
    text = JsonV1Dot6(bom).output_as_string(indent=2)
    return text if text.endswith("\n") else text + "\n"


def file_name(tag: str) -> str:
    """The SBOM's file name for an image reference: its last path part and tag, e.g.
    npuenv-torch-npu_2.13.0-cann9.1.0-py3.11-debian12-x86_64-910b.cdx.json."""
    last = tag.rsplit("/", 1)[-1].split("@", 1)[0]
    return last.replace(":", "_") + SUFFIX

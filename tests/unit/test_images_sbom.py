"""The image SBOM, assembled from made-up inputs and probe output: valid
CycloneDX 1.6 (the CycloneDX library's own schema check), every venv
distribution with its wheel's sha256 from the wheelhouse manifest, every
installer, the base image and its digest, the installed OS packages only, and
the same document for the same image."""
from __future__ import annotations

import json

import pytest
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from packageurl import PackageURL

import compat_matrix as cm
from images import render, sbom

M = cm.load_matrix()
BASE_DIGEST = "sha256:c978eef00276deee49d83e8d09a5e419fc7e1f6340b96fbec437693459018967"


def stack_for(os_name="debian12", **kw):
    return cm.resolve(M, cm.Constraints(torch_npu="==2.13.0", python="3.11", arch="x86_64", os=os_name, **kw)).stack


def wheel(name, version, sha, role="dependency"):
    return {"file": f"{name}-{version}-py3-none-any.whl", "project": name, "name": name.lower(), "version": version,
            "sha256": sha * 64, "role": role}


WHEELHOUSE = {"wheels": [wheel("torch", "2.13.0+cpu", "a", "torch"), wheel("torch_npu", "2.13.0", "b", "torch_npu"),
                         wheel("PyYAML", "6.0.4", "c")]}
PROBE_OUT = json.dumps({
    "os_release": {"ID": "debian", "VERSION_ID": "12", "PRETTY_NAME": "Debian GNU/Linux 12 (bookworm)"},
    "os_packages": "installed\tbash\t5.2.15-2+b7\tamd64\ninstalled\tlibc6\t2.36-9+deb12u9\tamd64\n"
                   "config-files\tgone\t1.0\tamd64\n",
    "python": [["PyYAML", "6.0.4"], ["pip", "23.0.1"], ["torch", "2.13.0+cpu"], ["torch_npu", "2.13.0"]]})


def inputs(**kw) -> sbom.Inputs:
    base = dict(image="localhost/npuenv-torch-npu:2.13.0-cann9.1.0-py3.11-debian12-x86_64-910b", image_id="f" * 64,
                created="2024-01-02T03:04:05Z", base_image="localhost/debian:bookworm", base_digest=BASE_DIGEST,
                installers=[{"kind": "toolkit", "file": "Ascend-cann-toolkit_9.1.0_linux-x86_64.run",
                             "sha256": "d" * 64}], wheelhouse=WHEELHOUSE)
    return sbom.Inputs(**{**base, **kw})


def assembled(**kw) -> tuple[str, dict]:
    text = sbom.assemble(stack_for(), False, inputs(**kw), sbom.parse_probe(PROBE_OUT))
    return text, json.loads(text)


def by_ref(doc) -> dict:
    return {c["bom-ref"]: c for c in doc["components"]}


def test_the_sbom_is_valid_cyclonedx_1_6_and_deterministic():
    text, doc = assembled()
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(text) is None
    assert doc["specVersion"] == "1.6" and doc["metadata"]["timestamp"].startswith("2024-01-02T03:04:05")
    again, _ = assembled()
    assert again == text, "the same image gives the same SBOM (and so the same label)"
    other, other_doc = assembled(image_id="e" * 64)
    assert other_doc["serialNumber"] != doc["serialNumber"]
    root = doc["metadata"]["component"]
    assert (root["type"], root["name"], root["version"]) == (
        "container", "localhost/npuenv-torch-npu", "2.13.0-cann9.1.0-py3.11-debian12-x86_64-910b")


def test_python_distributions_carry_their_wheels_sha256():
    _, doc = assembled()
    refs = by_ref(doc)
    torch_npu = refs["pypi:torch-npu@2.13.0"]
    assert torch_npu["purl"] == "pkg:pypi/torch-npu@2.13.0"
    assert torch_npu["hashes"] == [{"alg": "SHA-256", "content": "b" * 64}]
    props = {p["name"]: p["value"] for p in torch_npu["properties"]}
    assert props == {"io.npuenv:wheel": "torch_npu-2.13.0-py3-none-any.whl", "io.npuenv:role": "torch_npu"}
    assert refs["pypi:torch@2.13.0+cpu"]["hashes"][0]["content"] == "a" * 64
    pip = refs["pypi:pip@23.0.1"]
    assert "hashes" not in pip and "not from the wheelhouse" in pip["properties"][0]["value"]


def test_installers_base_image_os_and_installed_packages_only():
    _, doc = assembled()
    refs = by_ref(doc)
    toolkit = refs["installer:Ascend-cann-toolkit_9.1.0_linux-x86_64.run"]
    assert toolkit["hashes"] == [{"alg": "SHA-256", "content": "d" * 64}] and toolkit["version"] == "9.1.0"
    base = refs["base-image"]
    assert base["name"] == "localhost/debian:bookworm" and base["version"] == BASE_DIGEST
    purl = PackageURL.from_string(base["purl"])
    assert (purl.type, purl.name, purl.version) == ("oci", "debian", BASE_DIGEST)
    assert purl.qualifiers == {"repository_url": "localhost/debian", "tag": "bookworm"}
    assert refs["os:debian@12"]["type"] == "operating-system"
    debs = {c["name"]: c for c in doc["components"] if c.get("purl", "").startswith("pkg:deb/")}
    assert set(debs) == {"bash", "libc6"}, "config-files only: removed, not in the image"
    assert debs["libc6"]["purl"] == "pkg:deb/debian/libc6@2.36-9%2Bdeb12u9?arch=amd64&distro=debian-12"
    deps = next(d for d in doc["dependencies"] if d["ref"] == "image")
    assert len(deps["dependsOn"]) == len(doc["components"])


def test_a_venv_that_disagrees_with_the_wheelhouse_is_an_error():
    probe = json.loads(PROBE_OUT)
    probe["python"][2] = ["torch", "2.12.0"]
    with pytest.raises(cm.UserError, match=r"the image's venv has torch 2.12.0, but the wheelhouse recorded "
                                           r"2.13.0\+cpu"):
        sbom.assemble(stack_for(), False, inputs(), sbom.parse_probe(json.dumps(probe)))


def test_openeuler_reads_rpm_and_the_probe_runs_the_images_python():
    stack = stack_for("openeuler24.03")
    query = sbom.os_query(stack)
    assert query["command"][:2] == ["rpm", "-qa"] and query["purl_type"] == "rpm"
    cmd = sbom.probe_command(stack, cann_only=False)
    assert cmd[0] == render.python_plan(stack).bin and json.loads(cmd[3]) == query["command"]
    assert cmd[4] == cm.load_platforms().npuenv_files["venv"]
    assert sbom.probe_command(stack, cann_only=True)[4] == "", "no venv to read"
    probe = json.dumps({"os_release": {"ID": "openEuler", "VERSION_ID": "24.03"},
                        "os_packages": "installed\tbash\t5.2.15-9.oe2403\tx86_64\n", "python": None})
    doc = json.loads(sbom.assemble(stack, True, inputs(wheelhouse=None), sbom.parse_probe(probe)))
    [bash] = [c for c in doc["components"] if c["name"] == "bash"]
    assert bash["purl"] == "pkg:rpm/openeuler/bash@5.2.15-9.oe2403?arch=x86_64&distro=openeuler-24.03"
    assert not [c for c in doc["components"] if c.get("purl", "").startswith("pkg:pypi/")]


def test_file_name_from_the_tag():
    assert sbom.file_name("localhost/npuenv-torch-npu:2.13.0-x") == "npuenv-torch-npu_2.13.0-x.cdx.json"
    assert sbom.file_name("127.0.0.1:5000/a/b:t") == "b_t.cdx.json"

"""Facts read from the vendor's version files, as published copies show them:
the driver's version.info (package_version), NNAE without a toolkit, NNAL's own
``key : value`` version file (the ``latest`` link is not a version)."""
import os

from validation.node import facts as facts_mod

# Driver version.info, NNAE install.info: the mind-cluster fault-diagnosis fixture
# (tests/fixtures/vendor_samples/mindcluster_faultdiag_fixture_npu_info_after.txt).
DRIVER = ("Version=23.0.7\nascendhal_version=7.35.19\nInnerversion=V100R001C15SPC012B220\n"
          "compatible_version_fw=[7.0.0,7.1.99]\npackage_version=23.0.7\n")
NNAE = ("package_name=Ascend-cann-nnae\nversion=8.0.RC3\ninnerversion=V100R001C19SPC001B137\n"
        "arch=x86_64\nos=linux\npath=/usr/local/Ascend/nnae/8.0.RC3\n")
# NNAL's version.info as a published `cat /usr/local/Ascend/nnal/atb/latest/version.info` shows it
# (indented by the publisher; SOURCES.md).
ATB = ("    Ascend-cann-atb : 8.2.RC2\n    Ascend-cann-atb Version : 8.2.RC2.B030\n    Platform : aarch64\n"
       "    branch : br_release_cann_8.2.RC1_20251226\n")


def tree(tmp_path, files, links=()):
    for path, text in files.items():
        target = tmp_path / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        if text is None:
            target.mkdir()
        else:
            target.write_text(text)
    for link, to in links:
        os.symlink(to, tmp_path / link.lstrip("/"))
    return facts_mod.collect(facts_mod.LocalProbe(str(tmp_path)))


def test_driver_package_version_nnae_and_nnal_versions(tmp_path):
    facts = tree(tmp_path, {
        "/etc/ascend_install.info": "Driver_Install_Path_Param=/usr/local/Ascend\n",
        "/usr/local/Ascend/driver/version.info": DRIVER,
        "/usr/local/Ascend/nnae/latest/ascend_nnae_install.info": NNAE,
        "/usr/local/Ascend/nnal/atb/8.2.RC2/version.info": ATB,
        "/usr/local/Ascend/nnal/atb/8.2.RC2/atb": None,
        "/usr/local/Ascend/nnal/atb/work-copy/atb": None,     # no version file: its name stands in
    }, links=[("/usr/local/Ascend/nnal/atb/latest", "8.2.RC2")])
    assert facts["driver"] == {"version": "23.0.7", "package_version": "23.0.7",
                               "innerversion": "V100R001C15SPC012B220", "compatible_version": None}
    assert facts["cann"] == [{"generation": "nnae", "version": "8.0.RC3", "home": "/usr/local/Ascend/nnae/latest",
                              "arch": "x86_64", "kernels": []}]
    assert facts["nnal"] == ["8.2.RC2", "work-copy"]
    # the active NNAL is the one latest leads to (its version.info read through the link)
    assert facts["nnal_active"] == {"version": "8.2.RC2", "entry_point": "/usr/local/Ascend/nnal/atb/latest",
                                    "env_script": False}
    assert [n["from"] for n in facts["nnal_detail"]] == ["version.info", "directory name"]


def test_no_files_no_versions(tmp_path):
    facts = tree(tmp_path, {"/usr/local/Ascend/nnal/atb/latest/atb": None})
    assert facts["driver"] is None and facts["cann"] == [] and facts["nnal"] == []

"""explain(): each known failure of the field is recognised from the text users
actually see (vendor and library messages), and named with its own cause and
fix; unrelated text is not explained."""
from __future__ import annotations

import pytest

from tests.unit.check_fakes import sample
from validation.explain import KNOWN, explain

CANN_ENV = ("the CANN environment is not sourced (or the toolkit is missing): the loader cannot find CANN's libraries",
            "source the toolkit's set_env.sh (the ascend_env profile script does this for login shells), "
            "or install the CANN toolkit of the row")
SKEW = ("torch, torch_npu and CANN versions do not match (a library was built against another version)",
        "install the exact torch / torch_npu / CANN versions of one matrix row (npuenv matrix resolve ...)")
DRIVER_OLD = ("the NPU driver is older than this CANN needs",
              "upgrade the driver and firmware to the row's HDK (make deploy TAGS=driver)")
BUSY = ("the NPU is held by another process or container",
        "stop the process holding it (npu-smi info lists it) or give this job other devices")
DCMI = ("the driver is not loaded, or this user or container cannot reach /dev/davinci*",
        "check the driver is installed and the device nodes are passed in (--device /dev/davinciN, "
        "/dev/davinci_manager, /dev/devmm_svm, /dev/hisi_hdc)")
PYDEP = ("a Python package CANN needs at run time is missing",
         "install the row's wheelhouse (it carries CANN's Python dependencies): make deploy TAGS=python")
AUTOLOAD = ("torch loads torch_npu automatically and torch_npu failed to import (see the error above it)",
            "fix the torch_npu import error; to build without a driver set TORCH_DEVICE_BACKEND_AUTOLOAD=0")
ENV_VARS = ("the CANN environment variables are missing or point to a path that does not exist",
            "source the toolkit's set_env.sh of the installed CANN version")


@pytest.mark.parametrize("text, known", [
    ("ImportError: libhccl.so: cannot open shared object file: No such file or directory", CANN_ENV),
    ("OSError: libascendcl.so: cannot open shared object file: No such file or directory", CANN_ENV),
    ("libge_runner.so: cannot open shared object file", CANN_ENV),
    ("libgraph.so: cannot open shared object file", CANN_ENV),
    ("libacl_op_compiler.so: cannot open shared object file", CANN_ENV),
    ("ImportError: /opt/venv/lib/python3.11/site-packages/torch_npu/lib/libtorch_npu.so: undefined symbol: "
     "_ZN3c104impl3cow11cow_deleterEPv", SKEW),
    ("EL0003: The argument is invalid. ... aclrtSetDevice failed, error code is 507033", DRIVER_OLD),
    ("[ERROR] the driver version is too old for this CANN", DRIVER_OLD),
    ("drv version does not match the runtime", DRIVER_OLD),
    (sample("npu-smi_error_-8020_device_used.txt"), BUSY),
    (sample("npu-smi_error_-8020_device_used_ret4.txt"), BUSY),
    ("error: device or resource busy", BUSY),
    (sample("npu-smi_error_-8005_dcmi_init.txt"), DCMI),
    ("ModuleNotFoundError: No module named 'decorator'", PYDEP),
    ("ModuleNotFoundError: No module named 'attr'", PYDEP),
    ("ModuleNotFoundError: No module named 'google.protobuf'", PYDEP),
    ("ModuleNotFoundError: No module named 'yaml'", PYDEP),
    ("RuntimeError: Failed to load the backend extension: torch_npu. You can disable extension auto-loading with "
     "TORCH_DEVICE_BACKEND_AUTOLOAD=0.", AUTOLOAD),
    ("ASCEND_HOME_PATH is not set", ENV_VARS),
    ("please source set_env.sh first", ENV_VARS),
])
def test_known_failure_is_explained(text, known):
    assert explain(text) == known


def test_case_does_not_matter():
    assert explain("UNDEFINED SYMBOL: foo") == SKEW


def test_the_first_known_cause_in_the_table_wins():
    # torch's autoload message wraps the import error that caused it: the import error is the cause
    text = ("RuntimeError: Failed to load the backend extension: torch_npu. ...\n"
            "ImportError: libtorch_npu.so: undefined symbol: aclnnFoo")
    assert explain(text) == SKEW
    text = "Failed to load the backend extension: torch_npu\nImportError: libhccl.so: cannot open shared object file"
    assert explain(text) == CANN_ENV


@pytest.mark.parametrize("text", [
    "", None, "AssertionError: assert 1 == 2", "ModuleNotFoundError: No module named 'torch_npu'",
    "libfoo.so: cannot open shared object file", "timeout after 60 s", "ret is -8007",
])
def test_unrelated_text_is_not_explained(text):
    assert explain(text) is None


def test_every_entry_has_a_cause_and_a_fix_of_its_own():
    assert len({k.cause for k in KNOWN}) == len(KNOWN)
    assert len({k.fix for k in KNOWN}) == len(KNOWN)

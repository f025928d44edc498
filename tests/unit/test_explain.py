"""explain(): each known failure of the field is recognised from the text users
actually see (vendor and library messages), and named with its own cause and
fix; unrelated text is not explained."""
from __future__ import annotations

import pytest

from tests.unit.check_fakes import sample
from validation.node.explain import KNOWN, explain

CANN_ENV = ("the CANN environment is not sourced (or the toolkit is missing): the loader cannot find CANN's libraries",
            "source the toolkit's set_env.sh (the ascend_env profile script does this for login shells), "
            "or install the CANN toolkit of the row")
SKEW = ("torch, torch_npu and CANN versions do not match (a library was built against another version)",
        "install the exact torch / torch_npu / CANN versions of one matrix row (npuenv matrix resolve ...)")
DRIVER_OLD = ("the NPU driver is older than this CANN needs",
              "upgrade the driver and firmware to the row's HDK (make deploy TAGS=driver)")
# DCMI codes, explained from validation/node/codes.py's one table (issue #15): -8020 is a device
# held elsewhere; -8020 followed by -9005 a container without the driver's DCMI mounts;
# -8005 a driver that is not loaded (installed or upgraded without the reboot).
HELD = ("another process or container holds the device (the driver lets one container namespace open a device)",
        "stop the process or container holding it (npu-smi info lists processes; on the host "
        "/proc/uda/namespace_node names the holder) or give this job other devices")
NO_DCMI_MOUNTS = ("the container lacks the driver mounts DCMI needs at start-up (/usr/local/dcmi, the driver's lib64, "
                  "/etc/ascend_install.info), so its DCMI start-up collides with the host's (dmesg: "
                  "'uda_occupy_dev_by_ns ... Conflict open udevid'); no other process needs to hold the device",
                  "start the container with -v /usr/local/dcmi:/usr/local/dcmi -v /usr/local/Ascend/driver/lib64:"
                  "/usr/local/Ascend/driver/lib64 -v /etc/ascend_install.info:/etc/ascend_install.info "
                  "(npuenv image run-cmd prints them); stopping other containers does not cure it")
DRIVER_NOT_LOADED = ("the NPU driver is not loaded: it was installed or upgraded without the reboot it needs, the "
                     "kernel was upgraded so its modules no longer load, or this user or container cannot open "
                     "/dev/davinci*",
                     "reboot after installing or upgrading the driver and firmware, check `lsmod | grep drv_davinci` "
                     "and `dmesg`, and pass the device nodes (--device /dev/davinciN /dev/davinci_manager "
                     "/dev/devmm_svm /dev/hisi_hdc) to containers")
NO_SUCH_ID = ("a card or chip id that does not exist was asked for",
              "list the ids with `npu-smi info -l` / `npu-smi info -m`")
INTERFACE_MISMATCH = ("the caller and the driver disagree on the DCMI interface (for example Ascend Docker Runtime "
                      "7.0.RC1 speaks DCMI v1 while a 26.x device plugin speaks v2), or the function does not exist "
                      "on this chip",
                      "use Ascend Docker Runtime, device plugin and npu-exporter from the same MindCluster release as "
                      "the driver")
NO_LIBDCMI = ("the DCMI library is not installed or not mounted",
              "mount /usr/local/dcmi into the container, or reinstall the driver")
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
    (sample("npu-smi_error_-8020_device_used.txt"), HELD),
    (sample("npu-smi_error_-8020_device_used_ret4.txt"), HELD),
    (sample("npu-smi_error_-8020_device_used_ret4.txt") + "npu get board type failed. ret is -9005\n", NO_DCMI_MOUNTS),
    (sample("npu-smi_error_-8005_dcmi_init.txt"), DRIVER_NOT_LOADED),
    # the spellings of other DCMI clients: npu-exporter and the device plugin, and "ret code"
    ("dcmi init failed, error code: -8005", DRIVER_NOT_LOADED),
    ("get chip info failed, ret code: -8020", HELD),
    ("retCode=-8007 when querying card 9", NO_SUCH_ID),
    ("ret is -8007", NO_SUCH_ID),
    ("dcmi init failed, error code: -8255", INTERFACE_MISMATCH),
    ("load libdcmi.so failed: -99999", NO_LIBDCMI),
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


def test_device_or_resource_busy_is_a_device_held_elsewhere():
    assert explain("error: device or resource busy") == HELD
    # as strerror(EBUSY) spells it
    assert explain("open /dev/davinci0 failed: Device or resource busy") == HELD


def test_codes_are_found_in_every_spelling_and_bare_only_when_the_table_knows_them():
    from validation.node import codes
    assert codes.dcmi_codes_in("dcmi init failed, error code: -8255\nretCode=-8008; ret is -8005; ret code: -1234") == \
        [-8255, -8008, -8005, -1234]
    # standing alone, only a code of the table counts (a negative offset is no code)
    assert codes.dcmi_codes_in("offset -1234 of -8020, then -8020 again") == [-8020]
    assert codes.dcmi_codes_in(None) == [] and codes.dcmi_codes_in("") == []


def test_the_most_specific_dcmi_combination_wins_whatever_the_order():
    # -9005 printed first, or -9005 alone: the pair is the missing mounts, -9005 alone the board query
    assert explain("npu get board type failed. ret is -9005\nret is -8020") == NO_DCMI_MOUNTS
    assert explain("npu get board type failed. ret is -9005") == (
        "npu-smi could not read the board through DCMI",
        "check the driver mounts of the container and the driver's install (npu-smi info on the host)")
    # a code before a known library symptom: the code explains it
    assert explain("ret is -8005\nImportError: libhccl.so: cannot open shared object file") == DRIVER_NOT_LOADED


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
    "libfoo.so: cannot open shared object file", "timeout after 60 s",
    # codes the table does not hold, and numbers that only look like codes
    "ret is -8001", "error code: -1", "offset -80050 bytes", "exit status 8005", "version 24.1.rc3-8005",
])
def test_unrelated_text_is_not_explained(text):
    assert explain(text) is None


def test_every_entry_has_a_cause_and_a_fix_of_its_own():
    assert len({k.cause for k in KNOWN}) == len(KNOWN)
    assert len({k.fix for k in KNOWN}) == len(KNOWN)


def test_every_dcmi_code_has_a_cause_a_fix_and_a_source_of_its_own():
    from validation.node import codes
    entries = codes.DCMI_CODES
    assert len({e.cause for e in entries}) == len({e.fix for e in entries}) == len({e.codes for e in entries}) == \
        len(entries)
    assert all(e.source for e in entries)
    # none of the table's own texts reads as another code (an explanation quoted in a
    # later failure must not change what that failure is explained as)
    assert [codes.dcmi_codes_in(e.cause + " " + e.fix) for e in entries] == [[] for _ in entries]


# ---------------------------------------------------------- CANN error codes of failed jobs

def cann_error(name: str) -> str:
    return sample(f"cann_errors/{name}")


def test_a_socket_timeout_between_ranks_is_explained_by_ei0006_in_each_of_its_screen_forms():
    cause = ("EI0006 (a socket timed out while HCCL set up the links between ranks (HCCL_CONNECT_TIMEOUT, 120 s by "
             "default)): a peer rank did not connect in time: it is stuck, crashed or started late, or the NPU network "
             "between the nodes is broken (TLS on at one end only, a device IP or netdetect address missing, a port "
             "down)")
    fix = ("look for an earlier error on the other ranks; on every node check each NPU port: `hccn_tool -i N -tls -g` "
           "must agree across all nodes, `-ip -g` and `-netdetect -g` must be set, `-link -g` UP and `-net_health -g` "
           "Success; if the ranks only start far apart, raise HCCL_CONNECT_TIMEOUT (at most 7200)")
    for name in ("EI0006_vllm-ascend_486.txt", "EI0006_LlamaFactory_5071.txt", "EI0006_title_form_afd-plugin_229.txt"):
        assert explain(cann_error(name)) == (cause, fix), name


@pytest.mark.parametrize("name, code, fix_says", [
    ("EI0002_vllm-ascend_3413.txt", "EI0002", "raise HCCL_EXEC_TIMEOUT only for a step known to be slow"),
    ("EJ0001_verl_332.txt", "EJ0001", "end the previous job's processes on every node, wait 10 s"),
    ("EJ0003_title_form_hcclug_000035.txt", "EJ0003", "or move HCCL_IF_BASE_PORT"),
    ("EE1002_LlamaFactory_5551.txt", "EE1002", "check the device's health (`npu-smi info -t health`)"),
    # an internal code alone still says where to look
    ("EI9999_Ascend_pytorch_43.txt", "EI9999", "read the first error of each rank and the device logs"),
])
def test_each_published_cann_error_is_explained_by_its_code(name, code, fix_says):
    cause, fix = explain(cann_error(name))
    assert cause.startswith(f"{code} (") and fix_says in fix


def test_device_out_of_memory_wins_over_the_set_device_failure_it_caused():
    # aclrtSetDevice failed with 507033 because of EL0004: the code says more than the number
    assert explain(cann_error("EL0004_PTOAS_341.txt")) == (
        "EL0004 (device memory could not be allocated): the device has too little free memory: other processes hold "
        "it, or the job needs more than it has",
        "stop the processes holding the device (npu-smi info lists them) or make the job smaller")


def test_an_internal_code_gives_way_to_the_specific_one_printed_with_it():
    text = "EI9999: Inner Error!\n" + cann_error("EI0002_vllm-ascend_3413.txt")
    assert explain(text)[0].startswith("EI0002 (")
    # codes are read as printed: a token that only looks like one is not a code
    assert explain("commit 0xEI00060 built at E10035x") is None
    assert explain("EI0003: In [HcomInitByFile], value [0] for parameter [rankTablePath] is invalid.") is None


def test_hccl_tests_mpi_failures_are_explained():
    assert explain(cann_error("libmpi_missing_nccl_872.txt")) == (
        "the MPI library mpirun starts hccl_test with is not on the loader's path",
        "add the MPI's lib folder (/usr/local/mpich/lib or /usr/local/openmpi/lib) to LD_LIBRARY_PATH on every node, "
        "as the HCCL Test guide does")
    unresolved = ("mpirun could not start its processes on a host of the hostfile: the name does not resolve, or SSH "
                  "to it fails",
                  "make every host of the MPI hostfile resolve (/etc/hosts or DNS) on every node and accept SSH "
                  "without a password from the node that runs mpirun")
    # Open MPI's banner wins over the ssh line it quotes (which alone means an inventory host)
    assert explain(cann_error("mpirun_openmpi_unresolvable_host_aks-rdma-infiniband_30.txt")) == unresolved
    assert explain(cann_error("mpirun_mpich_unresolvable_host_mpich_4712.txt")) == unresolved

"""validation.node.codes read as a table: the meaning of each DCMI code the vendor's tools print,
and the fault levels of `npu-smi info -t health` error codes as npu-smi prints them."""
from __future__ import annotations

from validation.node import codes


def test_dcmi_meaning_of_single_codes_from_the_vendor_table():
    # meanings of mind-cluster's dcmi/common.go return code constants
    assert codes.dcmi_meaning(-8005) == "internal error"
    assert codes.dcmi_meaning(-8020) == "device resources are occupied"
    assert codes.dcmi_meaning(-9005) == "board type query failed"
    assert codes.dcmi_meaning(-99999) == "libdcmi.so failed to load"


def test_dcmi_meaning_of_a_code_nobody_lists_is_none():
    assert codes.dcmi_meaning(-1234) is None
    assert codes.dcmi_meaning(0) is None


def test_fault_level_of_the_codes_npu_smi_prints_in_the_alarm_sample():
    # tests/fixtures/vendor_samples/npu-smi_info_-t_health_-i_0_-c_0_Alarm.txt: "Error Code : A4025021 8C03A000 8C084E00";
    # levels from MindCluster's default faultCode.json
    assert [codes.fault_level(c).name for c in "A4025021 8C03A000 8C084E00".split()] == [
        "NotHandleFault", "RestartNPU", "FreeRestartNPU"]


def test_fault_level_takes_the_code_with_or_without_0x_in_either_case():
    # the function's contract: '0x80E01801' or '80E01801' (hex, as logs and faultCode.json spell it)
    assert codes.fault_level("0x80E01801").name == "RestartBusiness"
    assert codes.fault_level("0X80E01801").name == "RestartBusiness"
    assert codes.fault_level("80e01801").name == "RestartBusiness"
    # "0x" is a prefix only: a code that ends in it is not read as the code without it
    assert codes.fault_level("80E018010x") is None
    assert codes.fault_level("0x00000000") is None
    assert codes.fault_level("") is None


def test_every_cann_code_is_one_of_the_vendors_shape_with_its_own_cause_fix_and_source():
    assert len(codes.CANN_CODES) >= 20
    for code, entry in codes.CANN_CODES.items():
        assert codes.CANN_CODE.fullmatch(code) and entry.code == code
        assert entry.meaning and entry.cause and entry.fix and entry.source
        assert entry.internal == (code[2] == "9")
    assert len({e.fix for e in codes.CANN_CODES.values()}) == len(codes.CANN_CODES)
    assert [c.code for c in codes.CANN_CODES.values() if c.internal] == ["EI9999", "EE9999", "EZ9999", "E39009"]

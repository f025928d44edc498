"""The vendor's codes, written once: DCMI return codes (what npu-smi, hccn_tool,
npu-exporter and the device plugin print when the driver interface fails) and
the health states of ``npu-smi``. Everything that explains a code reads it here:
the parsers (validation.node.vendor_tools), the known failures (validation.node.explain),
the checks and the playbooks' filters.

Each DCMI entry says what the code means, the likely cause on a real host and
the fix, with the source the cause was taken from. Some codes mean something
else in company: -8020 followed by -9005 in a container is a container that
lacks the driver's mounts, not a device held by someone else.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

# Where the meanings come from (the vendor's own code and docs, and the public
# reports in which a fix was confirmed).
DCMI_SOURCE = "Ascend/mind-cluster component/ascend-common/devmanager/dcmi/common.go (return code constants)"


@dataclass(frozen=True)
class DcmiCode:
    codes: tuple[int, ...]    # every code that must be present for this entry (most specific first)
    meaning: str              # the vendor's meaning of the code
    cause: str                # the likely cause on a host or in a container
    fix: str
    source: str


# Most specific combinations first: lookup takes the first entry whose codes
# are all present.
DCMI_CODES: tuple[DcmiCode, ...] = (
    DcmiCode(
        (-8020, -9005), "device resources are occupied, then the board type query failed",
        "the container lacks the driver mounts DCMI needs at start-up (/usr/local/dcmi, the driver's lib64, "
        "/etc/ascend_install.info), so its DCMI start-up collides with the host's (dmesg: "
        "'uda_occupy_dev_by_ns ... Conflict open udevid'); no other process needs to hold the device",
        "start the container with -v /usr/local/dcmi:/usr/local/dcmi -v /usr/local/Ascend/driver/lib64:"
        "/usr/local/Ascend/driver/lib64 -v /etc/ascend_install.info:/etc/ascend_install.info "
        "(npuenv image run-cmd prints them); stopping other containers does not cure it",
        "public field report of a container failing with -8020, -9005 and 'Conflict open udevid', cured by adding "
        "those three mounts (search index id 51937753831); issue #15"),
    DcmiCode(
        (-8020,), "device resources are occupied",
        "another process or container holds the device (the driver lets one container namespace open a device)",
        "stop the process or container holding it (npu-smi info lists processes; on the host "
        "/proc/uda/namespace_node names the holder) or give this job other devices",
        f"{DCMI_SOURCE}; vllm-project/vllm-ascend#632, Ascend/cann-container-image#46"),
    DcmiCode(
        (-8005,), "internal error",
        "the NPU driver is not loaded: it was installed or upgraded without the reboot it needs, the kernel was "
        "upgraded so its modules no longer load, or this user or container cannot open /dev/davinci*",
        "reboot after installing or upgrading the driver and firmware, check `lsmod | grep drv_davinci` and "
        "`dmesg`, and pass the device nodes (--device /dev/davinciN /dev/davinci_manager /dev/devmm_svm "
        "/dev/hisi_hdc) to containers",
        f"{DCMI_SOURCE}; Huawei case library case_9289; vllm-project/vllm-ascend#2698; issue #15"),
    DcmiCode(
        (-8255,), "device id or function not supported",
        "the caller and the driver disagree on the DCMI interface (for example Ascend Docker Runtime 7.0.RC1 "
        "speaks DCMI v1 while a 26.x device plugin speaks v2), or the function does not exist on this chip",
        "use Ascend Docker Runtime, device plugin and npu-exporter from the same MindCluster release as the driver",
        f"{DCMI_SOURCE}; public deployment notes 'dcmi init failed, error code: -8255' (search index id 54645064220)"),
    DcmiCode((-8007,), "invalid device id", "a card or chip id that does not exist was asked for",
             "list the ids with `npu-smi info -l` / `npu-smi info -m`", DCMI_SOURCE),
    DcmiCode((-8008,), "the device does not exist", "the card dropped off the bus or was not passed in",
             "check `lspci | grep -i d80` on the host and the --device options of the container", DCMI_SOURCE),
    DcmiCode((-8012,), "not ready yet", "the device is still starting (after a reset or a driver load)",
             "wait and query again; if it stays, reset the card (npu-smi set -t reset)", DCMI_SOURCE),
    DcmiCode((-8013,), "not supported in containers", "this query only works on the host",
             "run it on the host", DCMI_SOURCE),
    DcmiCode((-9005,), "board type query failed", "npu-smi could not read the board through DCMI",
             "check the driver mounts of the container and the driver's install (npu-smi info on the host)",
             "npu-smi output 'npu get board type failed. ret is -9005' (FORMAT_NOTES.md section 4)"),
    DcmiCode((-99999,), "libdcmi.so failed to load", "the DCMI library is not installed or not mounted",
             "mount /usr/local/dcmi into the container, or reinstall the driver", DCMI_SOURCE),
)

# How the tools print a code: npu-smi "ret is -8005", npu-exporter and the
# device plugin "error code: -8005", others "ret code: -8010" / "retCode=-8020";
# a code of the table also counts when it stands alone ("-8020").
_LABELLED = re.compile(r"(?:\bret is|\berror code:?|\bret ?code[:=]?)\s*(-\d{4,5})\b", re.I)
_BARE = re.compile(r"(?<![\w.-])(-\d{4,5})(?![\w.])")


def dcmi_codes_in(text: str) -> list[int]:
    """Every DCMI code printed in ``text``, in order of appearance, without repeats."""
    known = {code for entry in DCMI_CODES for code in entry.codes}
    hits = [(m.start(), int(m.group(1))) for m in _LABELLED.finditer(text or "")]
    hits += [(m.start(), int(m.group(1))) for m in _BARE.finditer(text or "") if int(m.group(1)) in known]
    found: list[int] = []
    for _, code in sorted(hits):
        if code not in found:
            found.append(code)
    return found


def dcmi_entry(codes) -> DcmiCode | None:
    """The most specific entry whose codes are all among ``codes``."""
    present = set(codes)
    for entry in DCMI_CODES:
        if present.issuperset(entry.codes):
            return entry
    return None


def dcmi_meaning(code: int) -> str | None:
    entry = dcmi_entry([code])
    return entry.meaning if entry and entry.codes == (code,) else None


# ------------------------------------------------------------ health states

@dataclass(frozen=True)
class HealthState:
    name: str
    verdict: str       # "pass" | "warn" | "fail"
    meaning: str


# npu-smi's Health column and `-t health` Health Status (npu-smi manual,
# "info -t health"): OK, Warning (minor), Alarm (major), Critical.
HEALTH_STATES: dict[str, HealthState] = {s.name: s for s in (
    HealthState("OK", "pass", "healthy"),
    HealthState("Warning", "warn", "a minor fault: the device works, the fault is reported"),
    HealthState("Alarm", "fail", "a major fault: the device may not work correctly"),
    HealthState("Critical", "fail", "a critical fault: the device does not work"),
)}


def health_verdict(state: str) -> str:
    """pass / warn / fail; a state the vendor's manual does not list fails (never a silent OK)."""
    known = HEALTH_STATES.get(state)
    return known.verdict if known else "fail"


# ------------------------------------------- health error codes (-t health)

# MindCluster's fault levels for the chip fault codes that `npu-smi info -t
# health` lists under Error Code, with what each level asks of the operator.
# Source: Ascend/mind-cluster docs, "NPU硬件故障检测与恢复" (default fault-code
# configuration of Container Manager, faultCode.json), search index id 53678195582.
FAULT_CODE_SOURCE = "Ascend/mind-cluster docs: default faultCode.json of Container Manager (NPU fault levels)"


@dataclass(frozen=True)
class FaultLevel:
    name: str
    verdict: str     # "warn": no effect on work; "fail": the chip needs a reset or replacement
    meaning: str
    fix: str


FAULT_LEVELS: dict[str, FaultLevel] = {lvl.name: lvl for lvl in (
    FaultLevel("SeparateNPU", "fail", "the fault cannot be cured by a reset",
               "isolate the chip and have the card replaced"),
    FaultLevel("RestartNPU", "fail", "the chip must be reset",
               "stop the jobs on the card, then reset it: npu-smi set -t reset -i <npu> -c <chip>"),
    FaultLevel("FreeRestartNPU", "fail", "the chip must be reset once it is free",
               "stop the jobs on the card, then reset it: npu-smi set -t reset -i <npu> -c <chip>"),
    FaultLevel("RestartBusiness", "fail", "the running job must be restarted",
               "restart the job; reset the chip if the code stays"),
    FaultLevel("RestartRequest", "fail", "the failing request must be retried; a reset if it lasts over 60 s",
               "retry the job; if the code stays for a minute, reset the chip"),
    FaultLevel("NotHandleFault", "warn", "a fault with no effect on the work",
               "no action needed; keep an eye on it"),
)}

# Highest level first: a code listed under several levels takes the highest.
_LEVEL_CODES = {
    "SeparateNPU": """
    80E3A201 80E18402 80E0020B 817F8002 816F8002 814F8002 9419321B A2301000 A2301001 A2302001
    A4192C1A A4193216 A419321B A419321C A42F390F A42F3916 A42F391A A6183207 A62F3934 A8028801
    A819320F A8193234 A8193235 80818C00 80818C05 80DF8402 4C4BA00C
    """,
    "RestartNPU": """
    8C03A000 8C1FA006 40F84E00 80E24E00 80E21E01 80E38008 80E3A202 80E3A203 80E39200 819B800A
    80E2120D 80E78000 80E78008 80FA4E00 812E4E00 80C78008 80F78009 80F78008 80F78003 80E18404
    80FB8005 80A18008 80CD8008 80A38008 80A58008 80DE1801 80F18008 80F18000 80F1800A 80CF8000
    80DF8000 80DF8009 80DF8008 80DF800A 80F38008 80F2180D 80E18005 80E18008 80E1800A 812F8000
    80B98000 80B98008 80BD8008 80CB8001 81998009 81998008 81978008 815F8008 81338008 817F8008
    81478008 813B8008 81578008 81958008 A2141004 A2141006 A2142004 A2142006 A2145004 A4183200
    A6023001 A6023002 A6023003 A6023004 A6060000 A6060001 A6060002 A6060003 A6060004 A6060005
    A606000A A606000B A606000C A606000F A606009D A6060FFF A607FFFF A6140001 A6140002 A6140003
    A6140004 A6140005 A6140006 A6141003 A6142003 A6143003 A6144003 A6145003 A6192D15 A6193206
    A6193215 A6193248 A62F3905 A62FFFFF A6303003 A6303004 A6360000 A6361000 A6362000 A8021004
    A8060FFF A807FFFF A82A0000 80B78000 80B58000 81498004 80F78C02 80F78C03 80F78C04 81B38008
    80E18000 80E21008 80C98001 80E58005 80E58009 80E58E02 80E58E03 816F8008 814F8008 81938008
    80E44E00 80CF8009 80CF8008 813B8002 81338002 81578002 81958002 81938002 81478002 81978002
    815F8002 81C9800A 81C7800A 81C5800A 813F800A 8139800A 8145800A 8C4BA00C 80E3A207
    """,
    "FreeRestartNPU": """
    8C0E4E00 8C104E00 8C0C4E00 8C044E00 8C064E00 8C17A005 8C1DA005 8C19A005 8C0A4E00 8C084E00
    A4193217 A4193218 A42A0000 A42F3917 A42F3918 8C464E00 8C124E00
    """,
    "RestartBusiness": """
    8C204E00 A8028802 A4302003 A4302004 A4302005 A4302006 A4302009 A430200A A6301002 B4060011
    B406009C B4060008 B4060009 B406000E A60250A1 A2301001 A2301002 A2303001 B4060006 B4060007
    B406000D B4060014 B4060010 80E01801 81B38009 81B38004
    """,
    "RestartRequest": """
    80C98008 80C98002 80C98003 80C98009 80CB8002 80CB8008 80CB8009 80CF8003 81318008 80D58000
    80D58009 80D98008 80DB800A 80DB8000 80DD8000 80DD8003 80C98000 81AB800D 81AB8003 80BD8000
    80BB8009 80BD8003 80BD8009 80BB8000 80BB8003 80BB8008 80BB800A 81AB8008 80C9800A 80CB800A
    """,
    "NotHandleFault": """
    80E21007 80E38003 80F78006 80C98006 80CB8006 81318006 80A18006 80A18005 80FB8000 8C1F8609
    80CD8006 80CD8003 80A38006 80A38003 80A58006 80A58003 80DE1805 80F18006 80F18003 80DF8006
    80E01805 80E18400 80E01809 80E18401 80E00209 80F38006 80F38003 80E18006 80D38009 819B800D
    80DD8008 80DD8007 80B98006 80BD8006 819B8006 80DE1803 819D8000 81998006 81978006 81978004
    815F8006 815F8004 81338006 81338004 817F8006 817F8004 816F8006 816F8004 814F8006 814F8004
    81938006 81938004 81478006 81478004 813B8006 813B8004 81578006 81578004 81958006 81958004
    81078603 8C2FA009 A4025021 A60250C1 A4025081 A214000D A414000D A4028801 A4025101 A2140007
    A4140007 A2140008 A4140008 A40250E1 A214000A A414000A A4025061 A4025041 A214000B A414000B
    A414000C A2140009 A4140009 A4303002 80B78006 80B78005 80E1800F 80DE0200 814D8006 8C1F860B
    8C1F8608 4C1F8608 819B8003 80DF8401 80DF8400 80818200 80818201 80818202 80818203 80818204
    80818205 80F38009 81A3880C 81AD8605 80E20207 81078605 80DE0207 8C2FA001 819B8605 80818C06
    8C1F860A 80E18405
    """,}
FAULT_CODE_LEVELS: dict[str, str] = {}
for _level, _codes in _LEVEL_CODES.items():
    for _code in _codes.split():
        FAULT_CODE_LEVELS.setdefault(_code, _level)


def fault_level(code: str) -> FaultLevel | None:
    """The MindCluster level of a health error code ('0x80E01801' or '80E01801'), None if unlisted."""
    key = code.upper().removeprefix("0X")
    level = FAULT_CODE_LEVELS.get(key)
    return FAULT_LEVELS[level] if level else None


# ------------------------------------------------ HCCL return codes (hccl_test)

# HcclResult of CANN's hccl_types.h: hccl_test prints it as "retcode: N".
HCCL_RESULTS = {
    0: "success", 1: "parameter error", 2: "empty pointer", 3: "memory error", 4: "internal error",
    5: "feature not supported", 6: "resource not found", 7: "resource unavailable", 8: "system call error",
    9: "timeout", 10: "open file failure", 11: "TCP connect failure", 12: "RoCE connect failure",
    13: "TCP transfer failure", 14: "RoCE transfer failure", 15: "runtime API failure", 16: "driver API failure",
    17: "profiling API failure", 18: "CCE API failure", 19: "network API failure", 20: "try again",
    21: "remote error", 22: "suspending", 23: "operation retry failed", 24: "out of memory",
}
# What the HCCL Test FAQ says of a code, where it says something (CANN docs,
# "HCCL Test执行时返回retcode: 7错误": an hccl_test left running on a peer node).
HCCL_RESULT_CAUSES = {
    7: ("an hccl_test process from an earlier run is still running on this or a peer node",
        "kill the leftover processes on every node (mpirun -hostfile HOSTS -n N pkill -9 -f all_reduce_test), "
        "then run again"),
}


# ------------------------------------------- CANN error codes (jobs, hccl_test)

# What CANN prints when a job fails: a level letter, a module letter and four digits
# (EI0006: E = error, I = HCCL; J = HCCP, E = runtime, L = driver, Z = operators,
# 3 = AI CPU); codes x9xxx are the module's internal errors, which follow another
# failure. Screen forms: "EI0006: [PID: n] <time> ..." and, from CANN 8.5,
# "Communication_Error_Get_Socket(EI0006): ...". Sources: CANN troubleshooting,
# "error code structure" (hiascend.com canncommercial/850 maintenref
# troubleshooting_0225); the per-code pages below.
HCCL_ERROR_SOURCE = ("CANN error code reference, HCCL errors (hiascend.com maintenref/troubleshooting/"
                     "atlaserrorcode_15_0242..0247, 0324, 0350, 0381) and hicann/hcomm docs/en/error_codes")
HCCL_GUIDE_SOURCE = "CANN HCCL user guide, fault handling (hiascend.com commlib/hcclug/hcclug_000035..000059)"
RUNTIME_ERROR_SOURCE = "hicann/runtime src/dfx/error_manager/error_code.json (CANN's error catalogue)"
CANN_CODE = re.compile(r"\b(E[1-9A-Z]\d{4})\b")


@dataclass(frozen=True)
class CannCode:
    code: str
    meaning: str     # the vendor's meaning, in short
    cause: str       # what is likely wrong on a cluster
    fix: str
    source: str

    @property
    def internal(self) -> bool:
        return self.code[2] == "9"


_PORT_CHECKS = ("on every node check each NPU port: `hccn_tool -i N -tls -g` must agree across all nodes, "
                "`-ip -g` and `-netdetect -g` must be set, `-link -g` UP and `-net_health -g` Success")

CANN_CODES: dict[str, CannCode] = {c.code: c for c in (
    CannCode("EI0001", "an HCCL environment variable has an invalid value",
             "a variable outside its range (HCCL_CONNECT_TIMEOUT must be 120..7200 s) or a malformed HCCL_IF_IP, "
             "HCCL_SOCKET_IFNAME or HCCL_IF_BASE_PORT",
             "set the variable the message names to a value in the range it states", HCCL_ERROR_SOURCE),
    CannCode("EI0002", "a collective timed out waiting for a peer rank (Notify wait, HCCL_EXEC_TIMEOUT)",
             "another rank failed or fell behind: an earlier error on it, ranks given different amounts of work, "
             "different collective arguments, or packet loss on a link",
             "find the first error among the ranks' logs; give every rank the same work; check the links "
             "(`hccn_tool -i N -link_stat -g`, `-stat -g`); raise HCCL_EXEC_TIMEOUT only for a step known to be slow",
             f"{HCCL_ERROR_SOURCE}; {HCCL_GUIDE_SOURCE} (Notify Wait Timeout)"),
    CannCode("EI0004", "the rank table or a rank id is invalid",
             "the ranktable does not describe this cluster (rank ids, server count, device IPs)",
             "write the ranktable from the devices as they are (device IPs: `hccn_tool -i N -ip -g` on each node)",
             HCCL_ERROR_SOURCE),
    CannCode("EI0005", "the ranks called a collective with different arguments",
             "the script takes a different path on some ranks (another count, dtype or operator)",
             "make every rank run the same collectives with the same arguments", HCCL_ERROR_SOURCE),
    CannCode("EI0006", "a socket timed out while HCCL set up the links between ranks (HCCL_CONNECT_TIMEOUT, 120 s "
                       "by default)",
             "a peer rank did not connect in time: it is stuck, crashed or started late, or the NPU network "
             "between the nodes is broken (TLS on at one end only, a device IP or netdetect address missing, a "
             "port down)",
             f"look for an earlier error on the other ranks; {_PORT_CHECKS}; if the ranks only start far apart, "
             "raise HCCL_CONNECT_TIMEOUT (at most 7200)",
             f"{HCCL_ERROR_SOURCE} (atlaserrorcode_15_0246); {HCCL_GUIDE_SOURCE} (hcclug_000050)"),
    CannCode("EI0007", "HCCL could not allocate a resource (memory or notify registers)",
             "the device's resources are exhausted", "stop other work on the device, or create fewer communicators",
             HCCL_ERROR_SOURCE),
    CannCode("EI0008", "the ranks run different HCCL (CANN) versions",
             "nodes of the job are at different matrix rows",
             "install one row on every node (`npuenv status` shows which node runs what)", HCCL_ERROR_SOURCE),
    CannCode("EI0009", "an HCCL transport could not be set up: the NPU network port is down",
             "a cable, an optical module or the switch port of an NPU is down",
             "check each port: `hccn_tool -i N -optical -g` (module present), `-ip -g` (address set), `-lldp -g` "
             "(the switch seen)", HCCL_ERROR_SOURCE),
    CannCode("EI0011", "HCCL could not allocate device memory", "other processes hold the device's memory",
             "stop the processes holding the device (npu-smi info lists them)", HCCL_ERROR_SOURCE),
    CannCode("EI0012", "an SDMA copy of a collective failed",
             "a link failed, a peer process exited, or the buffers were too small or freed early",
             "check the links between the devices, then why the peer exited", HCCL_ERROR_SOURCE),
    CannCode("EI0013", "an error completion (CQE) on the RDMA network during a collective",
             "the network between two devices failed (a flapping port) or the peer exited early",
             "read the link history of both ports (`hccn_tool -i N -link_stat -g`) and the switch's, then the "
             "peer's log", HCCL_ERROR_SOURCE),
    CannCode("EI0014", "the ranktable does not match the devices",
             "a device_ip of the ranktable is not the NPU's address",
             "make the ranktable's device_ip values those `hccn_tool -i N -ip -g` prints", HCCL_ERROR_SOURCE),
    CannCode("EI0015", "the ranks could not reach the root rank to exchange the cluster's information",
             "the host network: HCCL chose a NIC the nodes do not share, a firewall, or a rank that never started",
             "set HCCL_SOCKET_IFNAME (or HCCL_IF_IP) to the NIC the nodes share, check the nodes reach each other "
             "on it, and raise HCCL_CONNECT_TIMEOUT if ranks start far apart", f"{HCCL_GUIDE_SOURCE} (hcclug_000037)"),
    CannCode("EI9999", "an HCCL internal error",
             "it follows another failure (on the device often an execution timeout: 'hccl fftsplus task timeout')",
             "read the first error of each rank and the device logs under ~/ascend/log", HCCL_ERROR_SOURCE),
    CannCode("EJ0001", "HCCP, the device-side network process, failed to start",
             "the previous training job's processes are still running",
             "end the previous job's processes on every node, wait 10 s, then start again", RUNTIME_ERROR_SOURCE),
    CannCode("EJ0003", "binding an IP port failed", "the port is taken (another job, or a service started twice)",
             "stop the process holding the port, or move HCCL_IF_BASE_PORT", f"{RUNTIME_ERROR_SOURCE}; "
             f"{HCCL_GUIDE_SOURCE} (hcclug_000035)"),
    CannCode("EE1002", "a stream synchronisation timed out (ACL 507046)",
             "a task on the device hung: a collective waiting for a peer, or a kernel that does not end",
             "look for HCCL errors on the other ranks and check the device's health (`npu-smi info -t health`)",
             RUNTIME_ERROR_SOURCE),
    CannCode("EE9999", "a runtime internal error", "it follows another failure on the device",
             "read the error printed before it and the device logs under ~/ascend/log", RUNTIME_ERROR_SOURCE),
    CannCode("EL0004", "device memory could not be allocated",
             "the device has too little free memory: other processes hold it, or the job needs more than it has",
             "stop the processes holding the device (npu-smi info lists them) or make the job smaller",
             RUNTIME_ERROR_SOURCE),
    CannCode("EL0005", "the device's resources are busy",
             "another process holds them, the device is being reset, or its software is not ready",
             "close other work on the device, wait and try again", RUNTIME_ERROR_SOURCE),
    CannCode("EL0015", "the device cannot be accessed",
             "the device is bound to another container, or this user has no permission on it",
             "check which container holds it (on the host /proc/uda/namespace_node) and for leftover container "
             "processes", RUNTIME_ERROR_SOURCE),
    CannCode("EZ9999", "an operator failed on the device (often an AI Core or Vector core exception)",
             "the CANN packages or environment do not match the row, or the operator's inputs are bad",
             "validate the node (npuenv validate) to check CANN, kernels and the environment against the row",
             RUNTIME_ERROR_SOURCE),
    CannCode("E39009", "the device does not answer (heartbeat lost or its channel disconnected)",
             "the device stopped responding", "collect the host and device logs, then reset the device "
                                              "(npu-smi set -t reset -i <npu> -c <chip>)", RUNTIME_ERROR_SOURCE),
)}


def cann_code(text: str) -> CannCode | None:
    """The code to explain a failed job by: the first one printed that the table knows, an internal one
    (x9xxx) only when nothing more specific is there (the vendor: start from the first error reported)."""
    known = [CANN_CODES[c] for c in CANN_CODE.findall(text or "") if c in CANN_CODES]
    return next((c for c in known if not c.internal), known[0] if known else None)

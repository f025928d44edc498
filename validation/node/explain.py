"""The field's known failures: a symptom seen in a check's output -> the likely
cause and the fix. Checks call ``explain(text)`` on what they saw; the workloads
name the same cause and fix (validation.node.workloads.source() writes KNOWN into
their scripts). DCMI return codes (-8005, -8020, ...) and CANN's error codes
(EI0006, EL0004, ...) are explained from the tables in validation.node.codes."""
from __future__ import annotations

import re
from dataclasses import dataclass

from . import codes


@dataclass(frozen=True)
class Known:
    pattern: str
    cause: str
    fix: str


KNOWN = (
    Known(r"lib(hccl|ascendcl|ge_runner|graph|acl_op_compiler)\.so: cannot open shared object file",
          "the CANN environment is not sourced (or the toolkit is missing): the loader cannot find CANN's libraries",
          "source the toolkit's set_env.sh (the ascend_env profile script does this for login shells), "
          "or install the CANN toolkit of the row"),
    # hccl_test runs under mpirun: the MPI's own library and its launcher (HCCL Test guide: LD_LIBRARY_PATH
    # names the MPI's lib folder; every host of the hostfile resolves and takes SSH without a password).
    Known(r"libmpi(_\w+)?\.so[.\d]*: cannot open shared object file",
          "the MPI library mpirun starts hccl_test with is not on the loader's path",
          "add the MPI's lib folder (/usr/local/mpich/lib or /usr/local/openmpi/lib) to LD_LIBRARY_PATH on every "
          "node, as the HCCL Test guide does"),
    Known(r"ORTE was unable to reliably start one or more daemons|unable to get host address for",
          "mpirun could not start its processes on a host of the hostfile: the name does not resolve, or SSH to it "
          "fails",
          "make every host of the MPI hostfile resolve (/etc/hosts or DNS) on every node and accept SSH without a "
          "password from the node that runs mpirun"),
    Known(r"undefined symbol",
          "torch, torch_npu and CANN versions do not match (a library was built against another version)",
          "install the exact torch / torch_npu / CANN versions of one matrix row (npuenv matrix resolve ...)"),
    Known(r"507033|driver version is too (old|low)|drv.*version.*(mismatch|not match)",
          "the NPU driver is older than this CANN needs",
          "upgrade the driver and firmware to the row's HDK (make deploy TAGS=driver)"),
    Known(r"No module named '?(decorator|attr|attrs|psutil|scipy|sympy|cffi|yaml|absl|google\.protobuf)",
          "a Python package CANN needs at run time is missing",
          "install the row's wheelhouse (it carries CANN's Python dependencies): make deploy TAGS=python"),
    Known(r"Failed to load the backend extension: torch_npu",
          "torch loads torch_npu automatically and torch_npu failed to import (see the error above it)",
          "fix the torch_npu import error; to build without a driver set TORCH_DEVICE_BACKEND_AUTOLOAD=0"),
    # Reaching a host (ssh's own messages, as Ansible relays them).
    Known(r"Host key verification failed|REMOTE HOST IDENTIFICATION HAS CHANGED",
          "the host's SSH key is not in known_hosts, or differs from the one recorded there",
          "check the key's fingerprint on the host's console, then add it to known_hosts (ssh-keyscan -p PORT HOST); "
          "never turn host key checking off"),
    Known(r"Permission denied \(publickey",
          "the login user does not accept this SSH key",
          "add the controller's public key to the user's ~/.ssh/authorized_keys, or set ansible_user / "
          "ansible_ssh_private_key_file"),
    Known(r"Connection refused",
          "nothing listens on the SSH port: sshd is down, the host is rebooting, or the port is wrong",
          "check the host is up and sshd runs (systemctl status ssh), and ansible_port"),
    Known(r"No route to host|Connection timed out|Operation timed out|Could not resolve hostname|"
          r"Network is unreachable",
          "the host cannot be reached over the network: it is down, the address is wrong, or a firewall drops SSH",
          "check the address in the inventory (ansible_host), the host's power and network, and port 22"),
    Known(r"a password is required|sudo: a terminal is required|Missing sudo password",
          "the login user cannot become root without a password",
          "allow the login user passwordless sudo (NOPASSWD; npuenv validate needs it), or let npuenv deploy ask "
          "for the password: npuenv deploy -K (--ask-become-pass)"),
    Known(r"ASCEND_HOME_PATH|ASCEND_OPP_PATH|set_env\.sh",
          "the CANN environment variables are missing or point to a path that does not exist",
          "source the toolkit's set_env.sh of the installed CANN version"),
)


# Words that mean a DCMI code when no code is printed (EBUSY from opening /dev/davinciN).
CODE_WORDS = ((r"device or resource busy|resources are occupied", -8020),)


def explain(text: str) -> tuple[str, str] | None:
    """(cause, fix) for the DCMI codes in ``text``, else its CANN error code, else the first known failure
    whose symptom appears."""
    implied = [code for pattern, code in CODE_WORDS if re.search(pattern, text or "", re.I)]
    entry = codes.dcmi_entry(codes.dcmi_codes_in(text) + implied)
    if entry:
        return entry.cause, entry.fix
    cann = codes.cann_code(text)
    if cann:
        return f"{cann.code} ({cann.meaning}): {cann.cause}", cann.fix
    for known in KNOWN:
        if re.search(known.pattern, text or "", re.I):
            return known.cause, known.fix
    return None

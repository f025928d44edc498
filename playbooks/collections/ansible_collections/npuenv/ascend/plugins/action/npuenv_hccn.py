"""The hccn role in one task: read every NPU device's IP, netdetect address, link and net health with
one `hccn_tool` survey, set what differs from the inventory (and read again) in one more command,
write /etc/hccn.conf (npuenv_files) and fail the node on a down link or bad net health. Four tasks
(survey, set, template, assert) cost the controller four workers per host and the template three
more remote calls; here the survey's output is read in this worker with the product's parsers
(validation.node.vendor_tools.hccn_tool), as validation reads it."""
from __future__ import annotations

import dataclasses
import ipaddress
import shlex

from ansible.errors import AnsibleActionFail
from ansible.module_utils.parsing.convert_bool import boolean
from ansible.plugins.action import ActionBase

# Without the driver's hccn_tool: a failure saying so, except in check mode ($3) on a node whose
# driver the run would install (nothing to survey yet). The tool, the devices and the addresses are
# the scripts' arguments ($1 the tool, $2 the number of devices, ...), never part of their text.
TOOL_SCRIPT = """\
tool=$1 count=$2
if [ ! -e "$tool" ]; then
  [ "$3" = check ] && exit 0
  echo "$tool is missing: the NPU driver is not installed (run the driver tag first)" >&2
  exit 1
fi
"""

# $3 the netmask, $4 the netdetect address, then device/address pairs, --, and the devices whose
# netdetect address to set.
SET_SCRIPT = """\
set -e
tool=$1 count=$2 netmask=$3 address=$4; shift 4
while [ "$1" != -- ]; do "$tool" -i "$1" -ip -s address "$2" netmask "$netmask"; shift 2; done; shift
for i in "$@"; do "$tool" -i "$i" -netdetect -s address "$address"; done
set +e
"""

# Each device's IP, netdetect address, link and net health, read in one command (a command per
# device and query costs seconds per node): one @@ section per device and query, which `survey`
# reads. It ends both scripts above.
SURVEY_SCRIPT = """\
for ((i = 0; i < count; i++)); do
  echo "@@ip $i"; "$tool" -i "$i" -ip -g 2>&1
  echo "@@netdetect $i"; "$tool" -i "$i" -netdetect -g 2>&1
  echo "@@link $i"; "$tool" -i "$i" -link -g 2>&1
  echo "@@health $i"; "$tool" -i "$i" -net_health -g 2>&1
done
"""

CONF_HEADER = "# Written by npuenv's hccn role (npuenv.ascend.hccn); a deploy writes it again\n"
SHOWN = 2000  # of the tool's output, when it failed
FIX = "check the cabling and the switch port, then `hccn_tool -i N -net_health -g`"


def survey_argv(tool: str, count: int, check: bool) -> list[str]:
    return ["/bin/bash", "-c", TOOL_SCRIPT + SURVEY_SCRIPT, "hccn-survey", tool, str(count),
            "check" if check else "run"]


def set_argv(tool: str, count: int, netmask: str, netdetect_address: str, device_ips: list[str],
             todo: dict) -> list[str]:
    pairs = [str(x) for i in todo["ip"] for x in (i, device_ips[i])]
    return ["/bin/bash", "-c", SET_SCRIPT + SURVEY_SCRIPT, "hccn-set", tool, str(count), netmask,
            netdetect_address, *pairs, "--", *(str(i) for i in todo["netdetect"])]


def survey(text: str) -> dict[int, dict]:
    """The survey's "@@ip N", "@@netdetect N", "@@link N", "@@health N" sections ->
    {N: {ip: {address, netmask} | None, netdetect, link, health}}; a value the tool could not give is None."""
    from validation.node.vendor_tools import common, hccn_tool

    parsers = {"ip": hccn_tool.parse_ip, "netdetect": hccn_tool.parse_netdetect,
               "link": hccn_tool.parse_link, "health": hccn_tool.parse_net_health}
    out: dict[int, dict] = {}
    for section in text.split("@@")[1:]:
        header, _, body = section.partition("\n")
        what, device = header.split()
        try:
            value = parsers[what](body)
        except common.VendorOutputError:
            value = None
        if dataclasses.is_dataclass(value):
            value = dataclasses.asdict(value)
        out.setdefault(int(device), {})[what] = value
    return out


def todo(state: dict, device_ips: list[str], netmask: str, netdetect_address: str) -> dict:
    """Devices whose IP (or netdetect address, when one is wanted) differs from the inventory."""
    ip = [i for i, want in enumerate(device_ips)
          if (state.get(i, {}).get("ip") or {}) != {"address": want, "netmask": netmask}]
    netdetect = [i for i in range(len(device_ips))
                 if netdetect_address and state.get(i, {}).get("netdetect") != netdetect_address]
    return {"ip": ip, "netdetect": netdetect}


def conf_text(device_ips: list[str], netmask: str, netdetect_address: str) -> str:
    """/etc/hccn.conf as the driver reads it at boot: address_N, netmask_N (and netdetect_N) per device."""
    lines = []
    for i, ip in enumerate(device_ips):
        lines += [f"address_{i}={ip}", f"netmask_{i}={netmask}"]
        if netdetect_address:
            lines.append(f"netdetect_{i}={netdetect_address}")
    return CONF_HEADER + "".join(f"{line}\n" for line in lines)


def health_problem(state: dict, count: int) -> str:
    """Why the NPU network is not ready ('' when every device's link is UP and net health Success)."""
    down = [i for i in range(count) if state.get(i, {}).get("link") != "UP"]
    unhealthy = [i for i in range(count) if state.get(i, {}).get("health") != "Success"]
    if not down and not unhealthy:
        return ""
    return (f"NPU network not ready: link down on device(s) {', '.join(map(str, down)) or 'none'}; "
            f"net health not Success on device(s) {', '.join(map(str, unhealthy)) or 'none'} ({FIX})")


def converge(args: dict, check: bool, execute, write_files) -> dict:
    """The role's work on one node. ``execute(argv)`` runs a command there: (rc, stdout, stderr);
    ``write_files(files)`` runs npuenv_files there: its result. Returns the task's result."""
    tool, ips = args["tool"], args["device_ips"]
    netmask, address = args["netmask"], args["netdetect_address"]
    rc, out, err = execute(survey_argv(tool, len(ips), check))
    if rc != 0:
        return {"failed": True, "msg": f"hccn_tool survey failed (rc {rc}): {(out + err).strip()[-SHOWN:]}"}
    state = survey(out)
    need = todo(state, ips, netmask, address)
    result = {"changed": False, "failed": False, "set": need if need["ip"] or need["netdetect"] else {}}
    if result["set"]:
        result["changed"] = True
        if not check:
            rc, out, err = execute(set_argv(tool, len(ips), netmask, address, ips, need))
            if rc != 0:
                return {**result, "failed": True, "msg": f"hccn_tool could not set {need} (rc {rc}): "
                                                         f"{(out + err).strip()[-SHOWN:]}"}
            state = survey(out)
    written = write_files([{"path": args["conf"], "content": conf_text(ips, netmask, address)}])   # mode 0644
    if written.get("failed"):
        return {**result, "failed": True, "msg": written.get("msg")}
    result["changed"] = result["changed"] or bool(written.get("changed"))
    if written.get("diff"):
        result["diff"] = written["diff"]
    if check or not args["check_health"]:
        return {**result, "msg": f"{len(ips)} NPU network device(s) read; health not checked"}
    problem = health_problem(state, len(ips))
    return {**result, "failed": bool(problem), "msg": problem or f"{len(ips)} NPU network device(s) up and healthy"}


def _checked(args: dict) -> dict:
    """The arguments, refused unless each is what it names (the role's inputs check them first: this
    keeps the action safe on its own)."""
    def fail(why):
        raise AnsibleActionFail(f"npuenv_hccn: {why}")

    paths = {k: args.get(k) for k in ("tool", "conf")}
    for k, v in paths.items():
        if not isinstance(v, str) or not v.startswith("/"):
            fail(f"{k} {v!r} is not an absolute path")
    ips, netmask, address = args.get("device_ips"), args.get("netmask"), args.get("netdetect_address")
    try:
        if not isinstance(ips, list) or not ips:
            raise ValueError
        for ip in ips:
            ipaddress.IPv4Address(ip)
        ipaddress.IPv4Network(f"0.0.0.0/{netmask}")
        if address:
            ipaddress.IPv4Address(address)
    except (ValueError, TypeError):
        fail(f"device_ips {ips!r}, netmask {netmask!r} and netdetect_address {address!r} must be IPv4 addresses, a "
             f"netmask and an address or ''")
    try:
        check_health = boolean(args.get("check_health", True))
    except TypeError:
        fail(f"check_health {args.get('check_health')!r} is not a boolean")
    return {**paths, "device_ips": ips, "netmask": netmask, "netdetect_address": address or "",
            "check_health": check_health}


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _supports_check_mode = True
    _VALID_ARGS = frozenset(("tool", "device_ips", "netmask", "netdetect_address", "conf", "check_health"))

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        args = _checked(self._task.args)

        def execute(argv):   # each value quoted whole: one argument of the script, never its text
            answer = self._low_level_execute_command(shlex.join(argv), sudoable=True)
            return answer["rc"], answer["stdout"], answer["stderr"]

        def write_files(files):
            return self._execute_module(module_name="npuenv.ascend.npuenv_files", module_args={"files": files},
                                        task_vars=task_vars)

        result.update(converge(args, bool(self._task.check_mode), execute, write_files))
        return result

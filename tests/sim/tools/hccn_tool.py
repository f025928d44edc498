#!/usr/bin/env python3
"""Simulated `hccn_tool`: the NPU NIC (RoCE port) answers from the device-state file.

Standalone on purpose (stdlib only, no project imports): the simulated driver
installer copies it to /usr/local/Ascend/driver/tools/hccn_tool.

Inputs: NPU_SIM_STATE (default $NPU_SIM_ROOT/etc/npu-sim/state.json, format
in tests/sim/state.py) and NPU_SIM_ROOT (prefix for /dev/davinci_manager and
/dev/davinciN). `-i N` names the device by its physical id, as the real tool
does (it maps phy id to logic id through DSMI).

Supported: -link -g, -net_health -g, -ip -g, -ip -s address A netmask M,
-netdetect -g, -netdetect -s address A, -lldp -g, -ping -g address A [pkt N].
`-s` commands write the state file back, so later calls see the change.

Formats: link/net_health/ip outputs and the error texts are Huawei's. No real
capture exists of -lldp -g, -ping -g, -netdetect -g when unset, or of the
silent -s commands: those are designed from the vendor's format strings and
docs (FORMAT_NOTES.md section 5) and marked "designed" below.

Exit codes (chosen here; the vendor does not document them): 0 success,
including a ping that got no reply (the summary says 100% loss); 1 a bad
command line (unknown command, invalid device id, invalid address);
255 the device could not do it (driver missing, no IP preset, link down).
"""
import ipaddress
import json
import os
import sys

ROOT = os.environ.get("NPU_SIM_ROOT", "")


class Failure(Exception):
    def __init__(self, text, code):
        super().__init__(text)
        self.text, self.code = text, code


def state_path():
    return os.environ.get("NPU_SIM_STATE") or ROOT + "/etc/npu-sim/state.json"


def fleet_states():
    """The other simulated nodes' states (tests/sim/nodes.py mounts them read-only)."""
    fleet = os.path.join(os.path.dirname(state_path()), "fleet")
    out = []
    for name in sorted(os.listdir(fleet)) if os.path.isdir(fleet) else []:
        try:
            with open(os.path.join(fleet, name, "state.json")) as f:
                out.append(json.load(f))
        except (OSError, ValueError):
            pass
    return out


def load_state():
    try:
        with open(state_path()) as f:
            return json.load(f)
    except (OSError, ValueError):
        raise Failure("Command execute failed!\n", 255) from None


def save_state(state):
    path = state_path()
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(state, f, indent=1)
        f.write("\n")
    os.replace(tmp, path)  # readers never see half a file


def find_device(state, dev_id):
    if not os.path.exists(ROOT + "/dev/davinci_manager"):
        raise Failure("Command execute failed!\n", 255)  # DSMI cannot reach the driver
    if dev_id.isdigit() and len(dev_id) <= 2 and os.path.exists(ROOT + f"/dev/davinci{int(dev_id)}"):
        for card in state["npus"]:
            for die in card["chips"]:
                if die["phy_id"] == int(dev_id):
                    return die
    raise Failure("Get invalid device id.\n", 1)


def invalid_params(cmd):
    return Failure(f"Get invalid parameters!\n[ hccn_tool -i devid {cmd} ] needs the following parameters:\n", 1)


def ipv4(text):
    try:
        return str(ipaddress.IPv4Address(text))
    except ValueError:
        raise Failure("The ip address you configured is invalid!\n", 1) from None


def options(args, cmd):
    """`key value` pairs after -s/-g, e.g. `address 1.2.3.4 netmask 255.0.0.0`."""
    if len(args) % 2:
        raise invalid_params(cmd)
    return dict(zip(args[::2], args[1::2]))


def all_ips(state):
    return [d["ip"] for card in state["npus"] for d in card["chips"] if d.get("ip")]


def cmd_link(state, die, mode, args):
    return f"link status: {die['link']}\n"


def cmd_net_health(state, die, mode, args):
    return f"net health status: {die['net_health']}\n"


def cmd_ip(state, die, mode, args):
    if mode == "-g":
        if not die.get("ip"):
            raise Failure("Get ipconf failed, because no ip was preset there!\n", 255)
        return f"ipaddr:{die['ip']}\nnetmask:{die['netmask']}\n"
    opts = options(args, "-ip")
    if set(opts) != {"address", "netmask"}:
        raise invalid_params("-ip")
    address, netmask = ipv4(opts["address"]), ipv4(opts["netmask"])
    try:
        ipaddress.IPv4Network(f"0.0.0.0/{netmask}")
    except ValueError:
        raise Failure("Inconsistent address and mask!\n", 1) from None
    if address != die.get("ip") and address in all_ips(state):
        raise Failure("The ip address configured is conflicted!\n", 1)
    die.update(ip=address, netmask=netmask)
    save_state(state)
    return ""  # set commands print nothing on success (designed: no capture)


def cmd_netdetect(state, die, mode, args):
    if mode == "-g":
        # Older docs print "netdetect address:", newer sources "netdetect addr:";
        # unset prints 0.0.0.0 (designed: no capture of that case).
        return f"netdetect address: {die.get('netdetect') or '0.0.0.0'}\n"
    opts = options(args, "-netdetect")
    if set(opts) != {"address"}:
        raise invalid_params("-netdetect")
    die["netdetect"] = ipv4(opts["address"])
    save_state(state)
    return ""


def cmd_lldp(state, die, mode, args):
    # Designed after lldptool's TLV listing, which Huawei's own parsers expect:
    # a TLV title alone on its line ("System Description TLV"), its value on the
    # next line after a TAB ("\tIfname: 400GE1/1/5:1"). No neighbour: no output.
    n = die.get("lldp")
    if not n or die["link"] != "UP":
        return ""
    chassis = n.get("chassis_id", "")
    subtype = "MAC" if chassis.count(":") == 5 else "Local"
    out = ["Chassis ID TLV", f"\t{subtype}: {chassis}",
           "Port ID TLV", f"\tIfname: {n.get('port_id', '')}",
           "Time to Live TLV", "\t121",
           "System Name TLV", f"\t{n.get('system_name', '')}",
           "System Description TLV",
           f"\t{n.get('system_description', 'Huawei Versatile Routing Platform Software')}"]
    if n.get("mgmt_ip"):
        out += ["Management Address TLV", f"\tIPv4: {n['mgmt_ip']}", "\tIfindex: 1"]
    out.append("End of LLDPDU TLV")
    return "\n".join(out) + "\n"


def cmd_ping(state, die, mode, args):
    # Designed: docs only say a good reply contains "3 received" and
    # "0.00% packet loss". A target answers when it is a device IP, with its
    # link up, of this node or of another node of the simulated fleet (their
    # states are mounted under fleet/), or is listed in the state's "peers".
    opts = options(args, "-ping")
    if "address" not in opts or set(opts) - {"address", "pkt"}:
        raise invalid_params("-ping")
    target = ipv4(opts["address"])
    count = int(opts.get("pkt", "3")) if opts.get("pkt", "3").isdigit() else 0
    if not 1 <= count <= 1000:
        raise invalid_params("-ping")
    if die["link"] != "UP":
        raise Failure("Execute failed: Link status is down.\n", 255)
    if not die.get("ip"):
        raise Failure("Get ipconf failed, because no ip was preset there!\n", 255)
    reached = target in state.get("peers", []) or any(
        d.get("ip") == target and d["link"] == "UP"
        for other in [state] + fleet_states() for card in other["npus"] for d in card["chips"])
    out = [f"device {die['logic_id']} PING {target}"]
    if reached:
        out += [f"recv seq={i},time=0.045000ms" for i in range(count)]
    got = count if reached else 0
    out.append(f"{count} packets transmitted, {got} received, {100 * (count - got) / count:.2f}% packet loss")
    return "\n".join(out) + "\n"


COMMANDS = {"-link": (cmd_link, {"-g"}), "-net_health": (cmd_net_health, {"-g"}),
            "-ip": (cmd_ip, {"-g", "-s"}), "-netdetect": (cmd_netdetect, {"-g", "-s"}),
            "-lldp": (cmd_lldp, {"-g"}), "-ping": (cmd_ping, {"-g"})}


def run(argv):
    if len(argv) < 4 or argv[0] != "-i":
        raise Failure('Get invalid major cmd type. The valid major cmd type should be "-a" or "-i".\n'
                      "Enter [ hccn_tool -h ] for more details.\n", 1)
    dev_id, cmd, mode, rest = argv[1], argv[2], argv[3], argv[4:]
    if cmd not in COMMANDS:
        raise Failure("Get invalid major cmd.\nEnter [ hccn_tool -h ] for more details.\n", 1)
    handler, modes = COMMANDS[cmd]
    if mode not in modes or (mode == "-g" and rest and cmd != "-ping"):
        raise invalid_params(cmd)
    state = load_state()
    die = find_device(state, dev_id)
    return handler(state, die, mode, rest)


def main(argv):
    try:
        sys.stdout.write(run(argv))
        return 0
    except Failure as f:
        sys.stdout.write(f.text)
        return f.code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

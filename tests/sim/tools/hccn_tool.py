#!/usr/bin/env python3
"""Simulated `hccn_tool`: the NPU NIC (RoCE port) answers from the device-state file.

Standalone on purpose (stdlib only, no project imports): the simulated driver
installer copies it to /usr/local/Ascend/driver/tools/hccn_tool.

Inputs: NPU_SIM_STATE (default $NPU_SIM_ROOT/etc/npu-sim/state.json, format
in tests/sim/state.py) and NPU_SIM_ROOT (prefix for /dev/davinci_manager and
/dev/davinciN). `-i N` names the device by its physical id, as the real tool
does (it maps phy id to logic id through DSMI).

Supported: -link -g, -speed -g, -fec -g, -net_health -g, -ip -g, -ip -s address A netmask M,
-netdetect -g, -netdetect -s address A, -lldp -g, -ping -g address A [pkt N],
-optical -g, -link_stat -g, -stat -g, -gateway -g, -gateway -s gateway A,
-route -g, -tls -g. `-s` commands write the state file back, so later calls see the
change; so does -stat -g when the state makes a counter grow ("stat_growth").

Formats: link/net_health/ip/optical/link_stat/stat/gateway/route/lldp/ping
outputs and the error texts are Huawei's (captures in FORMAT_NOTES.md section
5). No real capture exists of -netdetect -g or -gateway -g when unset, of an
absent optical module, or of the silent -s commands: those are designed from
the vendor's format strings and docs and marked "designed" below.

Exit codes (chosen here; the vendor does not document them): 0 success,
including a ping that got no reply (the summary says 100% loss); 1 a bad
command line (unknown command, invalid device id, invalid address);
255 the device could not do it (driver missing, no IP preset, link down).
"""
import ipaddress
import json
import os
import resource
import sys
import time

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


# A port's speed by chip: 910B ports are 200GE (a 910B capture in ArthurChiao's notes, "Speed:
# 200000Mb/s"; the A3 runs the same ascend910B tool build, whose static speeds are 200000 or 100000),
# 910A ports 100GE (MindCluster's hccn_tool.go example). A die's "speed" state overrides it.
SPEED_BY_CHIP = {"910b": 200000, "a3": 200000, "910": 100000}


def cmd_speed(state, die, mode, args):
    # The 910B tool's format strings (hicann/driver tool_ext.c); the speed of a link that is down is
    # not known to it (designed: no capture).
    if die["link"] != "UP":
        return "Speed: Unknown!\n"
    return f"Speed: {die.get('speed') or SPEED_BY_CHIP[state['chip']]} Mb/s\n"


def cmd_fec(state, die, mode, args):
    # The 910B/910C build reports no FEC mode (hicann/driver tool_ext.c, CFG_SOC_PLATFORM_CLOUD_V2);
    # 910A prints its mode: auto, no or rs (a die's "fec" state, default rs as MindCluster's doc shows).
    if state["chip"] != "910":
        return "This device does not support switching fec mode.\n"
    return f"fec mode: {die.get('fec', 'rs')} FEC mode\n"


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
    # A switch's System Description continues at column 0, blank lines inside
    # (captured on a Huawei DX511 neighbour); Capabilities and Maximum Frame Size
    # follow (captured).
    description = n.get("system_description", "Versatile Routing Platform Software\n"
                        "VRP (R) software, Version 8.211\n\nHuawei switch\n").split("\n")
    out = ["Chassis ID TLV", f"\t{subtype}: {chassis}",
           "Port ID TLV", f"\tIfname: {n.get('port_id', '')}",
           "Time to Live TLV", "\t121",
           "System Name TLV", f"\t{n.get('system_name', '')}",
           "System Description TLV", f"\t{description[0]}", *description[1:],
           "System Capabilities TLV", "\tEnabled capabilities: Bridge, Router"]
    if n.get("mgmt_ip"):
        out += ["Management Address TLV", f"\tIPv4: {n['mgmt_ip']}", "\tIfindex: 1"]
    out += ["Maximum Frame Size TLV", "\t9216", "End of LLDPDU TLV"]
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


# The optical module as the mind-cluster fixture prints it (a 4-lane QSFP);
# the thresholds are the module's own. A die's "optical" state overrides
# present / temperature_c / tx_power_mw / rx_power_mw.
OPTICAL_DEFAULT = {"present": True, "temperature_c": 47, "tx_power_mw": [1.4035, 1.3968, 1.4140, 1.4988],
                   "rx_power_mw": [1.0189, 0.9854, 0.9907, 1.0213]}


def cmd_optical(state, die, mode, args):
    o = {**OPTICAL_DEFAULT, **(die.get("optical") or {})}
    if not o["present"]:
        return "optical info:\npresent              : not present\n"  # designed: nothing to read without a module
    rows = [("present", "present"), ("temperature", f"{o['temperature_c']} C"), ("high power enable reg", "enabled"),
            ("vendor name", "Hisense"), ("vendor part number", "LMQ8611-PC+"), ("xsfp identifier", "QSFP+ or later"),
            ("xsfp wave length", "850 nm"), ("Vcc", "3262.90 mV")]
    for lane, (tx, rx) in enumerate(zip(o["tx_power_mw"], o["rx_power_mw"])):
        rows += [(f"Tx Power{lane}", f"{tx:.4f} mW"), (f"Rx Power{lane}", f"{rx:.4f} mW")]
    rows += [("Vcc High Thres", "3465.00 mV"), ("Vcc Low Thres", "3135.00 mV"), ("Temp High Thres", "70 C"),
             ("Temp Low Thres", "0 C"), ("TxPower High Thres", "3.5481 mW"), ("TxPower Low Thres", "0.2818 mW"),
             ("RxPower High Thres", "3.5481 mW"), ("RxPower Low Thres", "0.1445 mW"),
             ("Tx Los Flag", "0x0"), ("Rx Los Flag", "0x0")]
    return "optical info:\n" + "".join(f"{k:<21}: {v}\n" for k, v in rows)


def cmd_link_stat(state, die, mode, args):
    # As captured: "[devid N]" prefix, keys padded to 20, newest record first.
    # A die's "link_events" state: [[time, "LINK UP"|"LINK DOWN"], ...] newest
    # first; by default the one LINK UP of the driver's start.
    events = die.get("link_events") or [["Mon Jan  6 08:00:00 2025", "LINK UP"]]
    dev = f"[devid {die['phy_id']}]"
    out = [f"{dev}{'current time':<20}: {time.ctime()}",
           f"{dev}{'link up count':<20}: {sum(1 for _, e in events if e == 'LINK UP')}",
           f"{dev}link change records :"]
    out += [f"{dev}    {when}    {event}" for when, event in events]
    return "\n".join(out) + "\n"


# The counters of DCMI's dcmi_network_pkt_stats_info (dcmi_interface_api.h), in
# its order; the captured output prints "packet statistics:" then name:value.
STAT_COUNTERS = ("mac_tx_total_pkt_num", "mac_tx_total_oct_num", "mac_tx_bad_pkt_num", "mac_tx_bad_oct_num",
                 "mac_rx_total_pkt_num", "mac_rx_total_oct_num", "mac_rx_bad_pkt_num", "mac_rx_bad_oct_num",
                 "mac_rx_fcs_err_pkt_num", "roce_rx_rc_pkt_num", "roce_rx_all_pkt_num", "roce_rx_err_pkt_num",
                 "roce_tx_rc_pkt_num", "roce_tx_all_pkt_num", "roce_tx_err_pkt_num", "roce_cqe_num",
                 "roce_rx_cnp_pkt_num", "roce_tx_cnp_pkt_num", "roce_err_ack_num", "roce_err_psn_num",
                 "roce_verification_err_num", "roce_err_qp_status_num", "roce_new_pkt_rty_num", "roce_ecn_db_num",
                 "nic_tx_all_pkg_num", "nic_tx_all_oct_num", "nic_rx_all_pkg_num", "nic_rx_all_oct_num")


def cmd_stat(state, die, mode, args):
    counters = {name: 0 for name in STAT_COUNTERS}
    counters.update(die.get("stat") or {})
    growth = die.get("stat_growth") or {}
    if growth:  # a link corrupting frames: every read finds more of them
        for name, step in growth.items():
            counters[name] = counters.get(name, 0) + step
        die["stat"] = counters
        save_state(state)
    return "packet statistics:\n" + "".join(f"{k}:{v}\n" for k, v in counters.items())


def cmd_gateway(state, die, mode, args):
    iface = f"eth{die['phy_id']}"
    if mode == "-g":
        # Captured as "default gateway:11.12.165.1, Iface:eth0"; unset prints
        # 0.0.0.0 (designed, as netdetect does).
        return f"default gateway:{die.get('gateway') or '0.0.0.0'}, Iface:{iface}\n"
    opts = options(args, "-gateway")
    if set(opts) != {"gateway"}:
        raise invalid_params("-gateway")
    die["gateway"] = ipv4(opts["gateway"])
    save_state(state)
    return ""


def cmd_route(state, die, mode, args):
    # As captured: route(8)'s table for the port's eth interface and lo.
    iface = f"eth{die['phy_id']}"
    rows = []
    if die.get("ip") and die.get("gateway"):
        rows.append(("default", die["gateway"], "0.0.0.0", "UG", iface))
    if die.get("ip"):
        net = ipaddress.IPv4Network(f"{die['ip']}/{die['netmask']}", strict=False)
        rows.append((str(net.network_address), "*", die["netmask"], "U", iface))
    rows.append(("127.0.0.1", "*", "255.255.255.255", "UH", "lo"))
    out = ["Routing table:", "Destination     Gateway         Genmask         Flags Metric Ref    Use Iface"]
    out += [f"{d:<16}{g:<16}{m:<16}{f:<6}{0:<7}{0:<7}{0:>3} {i}" for d, g, m, f, i in rows]
    return "\n".join(out) + "\n"


def cmd_tls(state, die, mode, args):
    # The switch line as the 910B tool builds it (hccn_tool/tool_tls.c) and MindCluster's fault-diag
    # guide prints it; the preset certificates follow, switch on or off, as in the 950 guide's example,
    # indented with the TAB and space the 910B source prints. A die's "tls": 0 or 1 (default 0);
    # "tls_cert_expiry": the certificates' expiration status, 0 normal, 1 near expiration, 2 expired.
    dev = f"dev_id:{die['phy_id']}"
    out = [f"{dev}, tls switch[{die.get('tls', 0)}](0:disable, 1:enable), tls preconfigured[1](0:non-preset, "
           "1:preset), tls alarm time threshold[60]days"]
    for cert in ("pub cert", "ca1 cert"):
        out += [f"{dev}, [{cert}] info:", "\t subject[/C=CN/O=npu-sim/CN=node]",
                "\t issuer[/C=CN/O=npu-sim/CN=npu-sim CA]", "\t start_time[Sat Jan 31 03:10:27 2026 GMT]",
                "\t end_time[Wed Jun 18 03:10:27 2053 GMT]",
                f"\t tls expiration status[{die.get('tls_cert_expiry', 0)}](0:normal, 1:near expiration, "
                "2:has expired)"]
    return "\n".join(out) + "\n"


COMMANDS = {"-link": (cmd_link, {"-g"}), "-speed": (cmd_speed, {"-g"}), "-fec": (cmd_fec, {"-g"}),
            "-net_health": (cmd_net_health, {"-g"}),
            "-ip": (cmd_ip, {"-g", "-s"}), "-netdetect": (cmd_netdetect, {"-g", "-s"}),
            "-lldp": (cmd_lldp, {"-g"}), "-ping": (cmd_ping, {"-g"}),
            "-optical": (cmd_optical, {"-g"}), "-link_stat": (cmd_link_stat, {"-g"}), "-stat": (cmd_stat, {"-g"}),
            "-gateway": (cmd_gateway, {"-g", "-s"}), "-route": (cmd_route, {"-g"}), "-tls": (cmd_tls, {"-g"})}


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


def log_cpu(argv):
    """With NPU_SIM_CPU_LOG set, append this call's own CPU-seconds to that file as a JSON line
    (bench/bench_node_quick.py: the simulator's share of a node's CPU, which the vendor's C tool
    does not cost)."""
    path = os.environ.get("NPU_SIM_CPU_LOG")
    if path:
        used = resource.getrusage(resource.RUSAGE_SELF)   # microseconds; os.times() counts clock ticks
        with open(path, "a") as f:
            f.write(json.dumps({"tool": "hccn_tool", "args": argv, "cpu_s": used.ru_utime + used.ru_stime}) + "\n")


if __name__ == "__main__":
    code = main(sys.argv[1:])
    log_cpu(sys.argv[1:])
    sys.exit(code)

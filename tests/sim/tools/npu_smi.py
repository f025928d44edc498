#!/usr/bin/env python3
"""Simulated `npu-smi`: prints Huawei's formats from the device-state file.

Standalone on purpose (stdlib only, no project imports): the simulated driver
installer copies it into a bare container as /usr/local/bin/npu-smi.

Inputs, read on every call:
  NPU_SIM_STATE  the device-state file (default $NPU_SIM_ROOT/etc/npu-sim/state.json;
                 format in tests/sim/state.py)
  NPU_SIM_ROOT   prefix for every other absolute path: driver and firmware
                 version.info, /dev/davinci_manager, /dev/davinciN

Formats follow tests/fixtures/vendor_samples (FORMAT_NOTES.md has the columns).
Formats with no real capture are marked "designed" below.

Exit codes (not documented by the vendor, chosen here): 0 success; 1 a bad
parameter (invalid card/chip id, unknown -t type, usage); 255 a DCMI failure
(-8005 driver or device nodes missing, -8020 device held elsewhere).
"""
import json
import os
import sys

ROOT = os.environ.get("NPU_SIM_ROOT", "")
DRIVER_INFO = "/usr/local/Ascend/driver/version.info"
FIRMWARE_INFO = "/usr/local/Ascend/firmware/version.info"
USAGE = "Usage: npu-smi info <watch|proc|-h|-m|-l|-t type> [Options...]"
HEALTH_ORDER = ["OK", "Warning", "Alarm", "Critical"]
PCI_DEVICE_ID = {"910": "0xD801", "910b": "0xD802", "a3": "0xD803", "310p": "0xD500"}
# Designed defaults for `-t board` (only a 910A capture exists); a card's
# "board" object in the state overrides any of them.
BOARD_DEFAULTS = {"compatibility": "OK", "board_id": "0x02", "pcb_id": "A", "bom_id": "1",
                  "class_id": "NA", "subsystem_vendor_id": "0x0200", "subsystem_device_id": "0x0100"}
KEY_WIDTH = 31  # key/value sub-commands: TAB, key padded to 31, ": value"


class Failure(Exception):
    def __init__(self, text, code):
        super().__init__(text)
        self.text, self.code = text, code


def host(path):
    return ROOT + path


def state_path():
    return os.environ.get("NPU_SIM_STATE") or host("/etc/npu-sim/state.json")


def running_firmware():
    """The firmware the devices run: what the last boot activated (a reboot
    makes flashed firmware active; tests/sim/node/boot.sh), else the installed one."""
    try:
        with open(os.path.join(os.path.dirname(state_path()), "firmware.running")) as f:
            return f.read().strip()
    except OSError:
        return read_version(FIRMWARE_INFO)


def read_version(path):
    try:
        with open(host(path)) as f:
            for line in f:
                if line.startswith("Version="):
                    return line.split("=", 1)[1].strip()
    except OSError:
        pass
    return None


def dcmi_failure(code, driver):
    # Older drivers (23.0.x) log the console level, newer ones the ret code.
    major = driver.split(".")[0] if driver else ""
    level = "(g_conLogLevel=3)" if major.isdigit() and int(major) < 24 else "(ret=4)"
    if code == -8020:
        msg = "dcmi model initialized failed, because the device is used. ret is -8020"
    else:
        msg = f"dcmi module initialize failed. ret is {code}"
    return Failure(f"DrvMngGetConsoleLogLevel failed. {level}\n{msg}\n", 255)


def bad_param(flag):
    return Failure(f"Invalid card id.\nError parameter of {flag}\n{USAGE}\n", 1)


def load_node():
    """The state, reduced to the devices whose /dev/davinciN node exists.

    Like the real driver: no davinci_manager (driver not loaded, or not passed
    into the container) or no device node at all is DCMI -8005; a device held
    by another container makes DCMI init fail with its code (-8020).
    """
    driver = read_version(DRIVER_INFO)
    try:
        with open(state_path()) as f:
            state = json.load(f)
    except (OSError, ValueError):
        state = None
    if driver is None or state is None or not os.path.exists(host("/dev/davinci_manager")):
        raise dcmi_failure(-8005, driver)
    cards = []
    for card in state["npus"]:
        dies = [c for c in card["chips"] if os.path.exists(host(f"/dev/davinci{c['phy_id']}"))]
        if dies:
            cards.append(dict(card, chips=dies))
    if not cards:
        raise dcmi_failure(-8005, driver)
    for card in cards:
        for c in card["chips"]:
            if c.get("busy"):
                raise dcmi_failure(int(c["busy"]), driver)
    return dict(state, npus=cards), driver


# ---------------------------------------------------------------- main table

class Layout:
    """Column widths of one table generation (offsets in FORMAT_NOTES.md)."""

    def __init__(self, state):
        self.p310 = state["chip"] == "310p"
        if self.p310:  # 106 columns
            self.cols, self.proc_cols = (31, 17, 54), (31, 17, 26, 27)
            self.npu_w, self.first_w, self.version_w = 8, 13, 49
            self.chip_hdr = "Chip    Device"
        else:  # 98 columns, A2 and A3 alike
            self.cols, self.proc_cols = (27, 15, 52), (27, 15, 26, 25)
            self.npu_w, self.first_w, self.version_w = 6, 12, 33
            phy = state.get("phy_id_column", state["chip"] == "a3")
            self.chip_hdr = "Chip  Phy-ID" if phy else "Chip"

    def rule(self, fill, cols=None, inner=True):
        cols = cols or self.cols
        if not inner:
            return "+" + fill * (sum(cols) + len(cols) - 1) + "+"
        return "+" + "+".join(fill * w for w in cols) + "+"

    def row(self, *cells, cols=None):
        cols = cols or self.cols
        return "|" + "|".join((" " + c).ljust(w) for c, w in zip(cells, cols)) + "|"

    def wide(self, text):  # one cell spanning the table
        return "|" + (" " + text).ljust(sum(self.cols) + len(self.cols) - 1) + "|"


def pair(values, gap):
    """`used / total`: used padded to 5; 310P hugepages add a space (gap)."""
    used, total = values
    return f"{used:<5}{' ' if gap else ''}/ {total}"


def power(die, lay):
    p = die.get("power_w")
    if isinstance(p, (int, float)):
        return f"{p:.1f}"
    if p is None:  # A3 reports power on die 0 only; 310P and unsupported say NA
        return "-" if not lay.p310 and die["chip"] > 0 else "NA"
    return str(p)


def chip_cell(die, lay):
    if lay.p310:
        return f"{die['chip']:<8}{die['logic_id']}"
    if lay.chip_hdr == "Chip":
        return str(die["chip"])
    return f"{die['chip']:<6}{die['phy_id']}"


def info_table(state, driver):
    lay = Layout(state)
    w1 = lay.first_w
    out = [lay.rule("-", inner=False),
           lay.wide(f"npu-smi {driver}".ljust(lay.version_w) + f"Version: {driver}"),
           lay.rule("-"),
           lay.row("NPU".ljust(lay.npu_w) + "Name", "Health",
                   "Power(W)".ljust(w1) + "Temp(C)".ljust(18) + "Hugepages-Usage(page)"),
           lay.row(lay.chip_hdr, "Bus-Id",
                   "AICore(%)".ljust(w1) + "Memory-Usage(MB)" + ("" if lay.p310 else "  HBM-Usage(MB)")),
           lay.rule("=")]
    for card in state["npus"]:
        for i, die in enumerate(card["chips"]):
            if i:  # between dies of one card: A3 drops the inner '+', 310P keeps it
                out.append(lay.rule("-", inner=lay.p310))
            out.append(lay.row(f"{card['npu']:<{lay.npu_w}}{state['name']}", die["health"],
                               power(die, lay).ljust(w1) + str(die["temp_c"]).ljust(18)
                               + pair(die["hugepages"], lay.p310)))
            usage = str(die["aicore_pct"]).ljust(w1) + pair(die["memory_mb"], False)
            if not lay.p310:
                usage = usage.ljust(w1 + 18) + pair(die["hbm_mb"] or [0, 0], False)
            out.append(lay.row(chip_cell(die, lay), die["bus_id"], usage))
        out.append(lay.rule("="))
    # Process section: one block per card, right after the device table.
    pc = lay.proc_cols
    out += [lay.rule("-"),
            lay.row("NPU     Chip", "Process id", "Process name", "Process memory(MB)", cols=pc),
            lay.rule("=")]
    for card in state["npus"]:
        procs = [(die, p) for die in card["chips"] for p in die.get("processes", [])]
        if not procs:
            out.append(lay.wide(f"No running processes found in NPU {card['npu']}"))
        for die, p in procs:
            out.append(lay.row(f"{card['npu']:<8}{die['chip']}", str(p["pid"]),
                               p["name"][:25], str(p["mem_mb"]), cols=pc))
        out.append(lay.rule("="))
    return "\n".join(out) + "\n"


# ---------------------------------------------------------- key/value output

def kv(key, value):
    return f"\t{key:<{KEY_WIDTH}}: {value}"


def info_list(state):
    out = [kv("Total Count", len(state["npus"]))]
    for card in state["npus"]:
        out += ["", kv("NPU ID", card["npu"]), kv("Chip Count", len(card["chips"]))]
    return "\n".join(out) + "\n"


def info_mapping(state):
    # A2 boards list an MCU per card (chip id after the dies, logic id '-');
    # that layout pads the last column, the 910A one does not (both as captured).
    # A3 and 310P mappings are designed: no capture was found.
    mcu = state.get("mcu", state["chip"] == "910b")
    name = state.get("mapping_name") or (
        state["name"] if state["name"].startswith("Ascend") else f"Ascend {state['name']}")

    def line(*cells, pad_last):
        return "\t" + "".join(f"{c:<31}" for c in cells[:-1]) + (f"{cells[-1]:<30}" if pad_last else cells[-1])

    out = [line("NPU ID", "Chip ID", "Chip Logic ID", "Chip Name", pad_last=mcu)]
    for card in state["npus"]:
        for die in card["chips"]:
            out.append(line(card["npu"], die["chip"], die["logic_id"], name, pad_last=False))
        if mcu:
            out.append(line(card["npu"], len(card["chips"]), "-", "Mcu", pad_last=True))
    return "\n".join(out) + "\n"


def find_card(state, npu_id, chip_id=None):
    try:
        card = next(c for c in state["npus"] if str(c["npu"]) == npu_id)
    except StopIteration:
        raise bad_param("-i") from None
    if chip_id is None:
        return card, None
    try:
        return card, next(d for d in card["chips"] if str(d["chip"]) == chip_id)
    except StopIteration:
        # Huawei's own parser expects "Invalid card id." before "-c" as well.
        raise bad_param("-c") from None


def die_ids(die):
    # Designed stand-ins for the die serials (five 32-bit hex words), stable per phy id.
    serial = " ".join(f"{die['phy_id'] * 0x1010101 + w:08X}" for w in range(5))
    return die.get("vdie_id") or serial, die.get("ndie_id") or serial


def info_board(state, driver, card, die):
    b = {**BOARD_DEFAULTS, "slot_id": card["npu"], **card.get("board", {})}
    firmware = running_firmware() or "NA"
    if die is None:
        rows = [("NPU ID", card["npu"]), ("Software Version", driver), ("Firmware Version", firmware),
                ("Compatibility", b["compatibility"]), ("Board ID", b["board_id"]), ("PCB ID", b["pcb_id"]),
                ("BOM ID", b["bom_id"]), ("PCIe Bus Info", card["chips"][0]["bus_id"]),
                ("Slot ID", b["slot_id"]), ("Class ID", b["class_id"]), ("PCI Vendor ID", "0x19E5"),
                ("PCI Device ID", PCI_DEVICE_ID.get(state["chip"], "NA")),
                ("Subsystem Vendor ID", b["subsystem_vendor_id"]),
                ("Subsystem Device ID", b["subsystem_device_id"]), ("Chip Count", len(card["chips"]))]
        return "\n".join(kv(k, v) for k, v in rows) + "\n\n"  # the card view ends with a blank line
    vdie, ndie = die_ids(die)
    rows = [("NPU ID", card["npu"]), ("Chip ID", die["chip"]), ("Chip Type", "Ascend"),
            ("Chip Name", state["name"]), ("Chip Version", "V1"), ("Board ID", b["board_id"]),
            ("PCB ID", "NA"), ("BOM ID", b["bom_id"]), ("VDie ID", vdie), ("NDie ID", ndie),
            ("Chip Position ID", die["chip"]), ("PCIe Bus Info", die["bus_id"]), ("Firmware Version", firmware)]
    return "\n".join(kv(k, v) for k, v in rows) + "\n"


def info_health(card, die):
    # Without -c (designed): the card's worst die, with every die's codes.
    dies = [die] if die else card["chips"]
    status = max((d["health"] for d in dies), key=lambda h: HEALTH_ORDER.index(h) if h in HEALTH_ORDER else 0)
    codes = [code for d in dies for code in d.get("error_codes", [])]
    info = [text for d in dies for text in d.get("error_info", [])]
    out = [kv("Health Status", status), kv("Error Code", " ".join(codes) or "NA"),
           kv("Error Information", info[0] if info else "NA")]
    for extra in info[1:]:  # continuation lines: blank, then an empty key
        out += ["", kv("", extra)]
    return "\n".join(out) + "\n"


def default_links(state, a, b):
    if a is b:
        return "X"
    if state["chip"] in ("910b", "a3"):
        return "HCCS"  # A2/A3 boards: every pair over HCCS (as captured on 910B3)
    if state["chip"] == "910":
        return "HCCS" if a["logic_id"] // 4 == b["logic_id"] // 4 else "SYS"  # designed
    return "PIX" if a["bus_id"] == b["bus_id"] else "SYS"  # designed (310P)


def info_topo(state):
    topo = state.get("topology", {})
    dies = [d for card in state["npus"] for d in card["chips"]]
    links = topo.get("links")
    affinity = topo.get("cpu_affinity")
    if affinity is None and state["chip"] == "910b" and len(dies) == 8:
        affinity = ["144-167", "144-167", "96-119", "96-119", "0-23", "0-23", "48-71", "48-71"]
    names = [f"NPU{d['logic_id']}" for d in dies]
    out = ["\t   " + "".join(f"{n:<11}" for n in names) + "CPU Affinity"]
    for i, a in enumerate(dies):
        cells = [links[i][j] if links else default_links(state, a, b) for j, b in enumerate(dies)]
        out.append(f"{names[i]:<11}" + "".join(f"{c:<11}" for c in cells)
                   + (affinity[i] if affinity else "NA"))
    out += ["", "Legend:", "",
            "  X    = Self",
            "  SYS  = Path traversing PCIe and NUMA nodes. Nodes are connected through SMP, such as QPI, UPI.",
            "  PHB  = Path traversing PCIe and the PCIe host bridge of a CPU.",
            "  PIX  = Path traversing a single PCIe switch",
            "  PXB  = Path traversing multiple PCIe switches",
            "  HCCS = Connection traversing HCCS.",
            "  NA   = Unknown relationship."]
    return "\n".join(out) + "\n"


# ------------------------------------------------------------------- driver

def parse_info_args(args):
    opts, i = {}, 0
    while i < len(args):
        a = args[i]
        if a in ("-l", "-m"):
            opts[a] = True
            i += 1
        elif a in ("-t", "-i", "-c") and i + 1 < len(args):
            opts[a] = args[i + 1]
            i += 2
        else:
            raise Failure(f"{USAGE}\n", 1)
    return opts


def run(argv):
    if not argv or argv[0] != "info":
        raise Failure(f"{USAGE}\n", 1)  # watch/proc/set/... are not simulated
    opts = parse_info_args(argv[1:])
    state, driver = load_node()
    if opts.get("-l"):
        return info_list(state)
    if opts.get("-m"):
        return info_mapping(state)
    kind = opts.get("-t")
    if kind is None:
        return info_table(state, driver)
    if kind == "topo":
        return info_topo(state)
    if kind not in ("board", "health"):
        raise Failure(f"Error parameter of -t\n{USAGE}\n", 1)  # designed
    if "-i" not in opts:
        raise bad_param("-i")
    card, die = find_card(state, opts["-i"], opts.get("-c"))
    if kind == "board":
        return info_board(state, driver, card, die)
    return info_health(card, die)


def main(argv):
    try:
        sys.stdout.write(run(argv))
        return 0
    except Failure as f:
        sys.stdout.write(f.text)  # npu-smi reports its errors on stdout
        return f.code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

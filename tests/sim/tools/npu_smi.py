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
Formats with no real capture are marked "designed" below. Sub-commands:
-l, -m, -t board|health|hccs|spod-info|topo|usages|common|temp|power|memory|ecc;
upgrade -b mcu -i N.

Exit codes (not documented by the vendor, chosen here): 0 success; 1 a bad
parameter (invalid card/chip id, unknown -t type, usage); 255 a DCMI failure
(-8005 driver or device nodes missing, -8020 device held elsewhere, -8020 then
-9005 in a container that has the driver's libraries but not the DCMI mounts).
"""
import json
import os
import resource
import sys

ROOT = os.environ.get("NPU_SIM_ROOT", "")
DRIVER_INFO = "/usr/local/Ascend/driver/version.info"
FIRMWARE_INFO = "/usr/local/Ascend/firmware/version.info"
USAGE = "Usage: npu-smi info <watch|proc|-h|-m|-l|-t type> [Options...]"
HEALTH_ORDER = ["OK", "Warning", "Alarm", "Critical"]
PCI_DEVICE_ID = {"910": "0xD801", "910b": "0xD802", "a3": "0xD803", "310p": "0xD500"}
# `-t board` ids per chip: 910A from the mind-cluster capture, 910B from a 25.5.1
# capture (telegraf's npu_smi fixture); A3 and 310P are designed (no capture).
# A card's "board" object in the state overrides any of them.
BOARD_DEFAULTS = {"compatibility": "OK", "board_id": "0x02", "pcb_id": "A", "bom_id": "1",
                  "class_id": "NA", "subsystem_vendor_id": "0x0200", "subsystem_device_id": "0x0100"}
BOARD_BY_CHIP = {"910b": {"board_id": "0x60", "subsystem_vendor_id": "0x19E5", "subsystem_device_id": "0x3003",
                          "product_name": "IT21HMDC_Bin5", "model": "NA", "manufacturer": "Huawei"}}
KEY_WIDTH_ECC = 41  # `-t ecc` pads its keys wider (npu-smi prints them with %-40s)
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
    elif code == -9005:  # -8020 first, then the board query (container without the DCMI mounts)
        msg = ("dcmi model initialized failed, because the device is used. ret is -8020\n"
               "npu get board type failed. ret is -9005")
    else:
        msg = f"dcmi module initialize failed. ret is {code}"
    return Failure(f"DrvMngGetConsoleLogLevel failed. {level}\n{msg}\n", 255)


def lacks_dcmi_mounts():
    """A container given the driver's libraries but not /usr/local/dcmi or
    /etc/ascend_install.info: its DCMI start-up collides with the host's."""
    return os.path.isdir(host("/usr/local/Ascend/driver/lib64")) and not (
        os.path.isdir(host("/usr/local/dcmi")) and os.path.exists(host("/etc/ascend_install.info")))


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
    firmware = running_firmware()
    for card in state["npus"]:
        dies = [c for c in card["chips"] if os.path.exists(host(f"/dev/davinci{c['phy_id']}"))]
        # A die that faults only under one firmware (it shows after the reboot that activates it).
        dies = [dict(c, **c.get("with_firmware", {}).get(firmware or "", {})) for c in dies]
        if dies:
            cards.append(dict(card, chips=dies))
    if not cards:
        raise dcmi_failure(-8005, driver)
    if lacks_dcmi_mounts():
        raise dcmi_failure(-9005, driver)
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


def driver_major(driver):
    major = (driver or "").split(".")[0]
    return int(major) if major.isdigit() else 0


def driver_at_least(driver, major, minor):
    parts = (driver or "").split(".")
    minor_of = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0  # "rc1" counts as .0
    return (driver_major(driver), minor_of) >= (major, minor)


def info_board(state, driver, card, die):
    b = {**BOARD_DEFAULTS, **BOARD_BY_CHIP.get(state["chip"], {}), "slot_id": card["npu"], **card.get("board", {})}
    firmware = running_firmware() or "NA"
    if die is None:
        rows = [("NPU ID", card["npu"])]
        if state["chip"] == "910b" and driver_major(driver) >= 25:  # 25.x adds the product lines (capture)
            serial = b.get("serial_number") or f"1025C90{card['npu'] + 48791:05d}"
            rows += [("Product Name", b["product_name"]), ("Model", b["model"]),
                     ("Manufacturer", b["manufacturer"]), ("Serial Number", serial)]
        rows += [("Software Version", driver), ("Firmware Version", firmware),
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


def default_links(state, a, b, card_of):
    if a is b:
        return "X"
    if state["chip"] == "910b":
        return "HCCS"  # A2 boards: every pair over HCCS (as captured on 910B3)
    if state["chip"] == "a3":
        # The dies of one card over SIO (captured); across cards through the HCCS
        # switch (the A3 Legend's HCCS_SW; designed: no capture of a full board).
        return "SIO" if card_of[id(a)] == card_of[id(b)] else "HCCS_SW"
    if state["chip"] == "910":
        return "HCCS" if a["logic_id"] // 4 == b["logic_id"] // 4 else "SYS"  # designed
    return "PIX" if a["bus_id"] == b["bus_id"] else "SYS"  # designed (310P)


def topo_legend(state, driver):
    # 23.x drivers print no blank line after "Legend:" and no NA line (23.0.rc2
    # capture); later ones do (24.1.rc1 capture). PIX/PXB for 910B and A3, SIO and
    # HCCS_SW for A3 (captured), as npu-smi's source lists them. "multipul" is
    # the vendor's spelling.
    new = driver_major(driver) >= 24
    lines = ["Legend:"] + ([""] if new else []) + [
        "  X    = Self",
        "  SYS  = Path traversing PCIe and NUMA nodes. Nodes are connected through SMP, such as QPI, UPI.",
        "  PHB  = Path traversing PCIe and the PCIe host bridge of a CPU."]
    if state["chip"] in ("910b", "a3"):
        lines += ["  PIX  = Path traversing a single PCIe switch", "  PXB  = Path traversing multipul PCIe switches"]
    lines.append("  HCCS = Connection traversing HCCS.")
    if state["chip"] == "a3":
        lines += ["  SIO  = Path traversing the SIO bus", "  HCCS_SW = Connection traversing HCCS through a switch"]
    return lines + (["  NA   = Unknown relationship."] if new else [])


def info_topo(state, driver):
    topo = state.get("topology", {})
    dies = [d for card in state["npus"] for d in card["chips"]]
    card_of = {id(d): card["npu"] for card in state["npus"] for d in card["chips"]}
    links = topo.get("links")
    affinity = topo.get("cpu_affinity")
    if affinity is None and state["chip"] == "910b" and len(dies) == 8:
        affinity = ["144-167", "144-167", "96-119", "96-119", "0-23", "0-23", "48-71", "48-71"]
    names = [f"NPU{d['logic_id']}" for d in dies]
    out = ["\t   " + "".join(f"{n:<11}" for n in names) + "CPU Affinity"]
    for i, a in enumerate(dies):
        cells = [links[i][j] if links else default_links(state, a, b, card_of) for j, b in enumerate(dies)]
        out.append(f"{names[i]:<11}" + "".join(f"{c:<11}" for c in cells)
                   + (affinity[i] if affinity else "NA"))
    out += [""] + topo_legend(state, driver)
    return "\n".join(out) + "\n"


# ------------------------------------------- per-chip key/value sub-commands

def kv_ecc(key, value):
    return f"\t{key:<{KEY_WIDTH_ECC}}: {value}"


def card_report(card, die, block):
    """NPU ID and Chip Count, then one block per die (or the one asked for with -c)."""
    out = [kv("NPU ID", card["npu"]), kv("Chip Count", len(card["chips"]))]
    for d in ([die] if die else card["chips"]):
        out += [""] + block(d)
    return out


def info_usages(state, driver, card, die):
    # 910B/A3 as captured on 23.0.rc2, plus the two lines 25.5.x adds (capture);
    # 910A as in the mind-cluster capture. 310P is designed on the 910A layout.
    hbm_chip = state["chip"] in ("910b", "a3")

    def block(d):
        hbm_used, hbm_total = d.get("hbm_mb") or (0, 0)
        rate = round(100 * hbm_used / hbm_total) if hbm_total else 0
        mem_used, mem_total = d.get("memory_mb") or (0, 0)
        rows = [kv("DDR Capacity(MB)", mem_total), kv("DDR Usage Rate(%)", round(100 * mem_used / mem_total) if mem_total else 0),
                kv("DDR Hugepages Total(page)", d["hugepages"][1]), kv("DDR Hugepages Usage Rate(%)", 0)]
        if state["chip"] != "310p":
            rows += [kv("HBM Capacity(MB)", hbm_total), kv("HBM Usage Rate(%)", rate)]
        rows.append(kv("Aicore Usage Rate(%)", d["aicore_pct"]))
        if hbm_chip:
            rows.append(kv("Aivector Usage Rate(%)", 0))
        rows += [kv("Aicpu Usage Rate(%)", 0), kv("Ctrlcpu Usage Rate(%)", 0),
                 kv("DDR Bandwidth Usage Rate(%)", 0)]
        if state["chip"] != "310p":
            rows.append(kv("HBM Bandwidth Usage Rate(%)", 0))
        if hbm_chip and driver_at_least(driver, 25, 5):
            rows += [kv("NPU Utilization(%)", d["aicore_pct"]), kv("Aicube Usage Rate(%)", 0)]
        return rows + [kv("Chip ID", d["chip"])]
    return card_report(card, die, block)


def mcu_block(state, lines):
    """Boards with an MCU (A2, as -m lists it) end some reports with its block."""
    return ([""] + lines) if state.get("mcu", state["chip"] == "910b") else []


# `-t hccs -i N -c C`, designed from the driver's print code (npucli npu_info_print_ext.c; no capture of a
# whole chip is published): "hccs <field>" lines, a "[...]" list per field with one value per HCCS port
# ("%-20u " each), ports 1-7 on 910B and A3 boards. A port's lane mode is 4 (a third-party validator of an
# 8 x 910B3 box: lane mode 4, lane list 1111, speed 224 = 4 x 56 per port); a die's "hccs_lanes" state
# ([lanes of port 1, ..., port 7]) overrides it, 0 for a port that is down. 910A has no HCCS query
# (the driver lists hccs for 910B, 910_93 and 310P). Bytes are 20 per packet, as the driver counts them.
HCCS_PORTS = {"910b": 7, "a3": 7}
HCCS_LANE_BITS = {4: "1111", 2: "0011", 0: "0000"}


def info_hccs(state, card, die):
    if state["chip"] not in HCCS_PORTS:
        raise Failure("This device does not support querying hccs.\n", 255)
    if die is None:
        raise bad_param("-c")
    lanes = die.get("hccs_lanes") or [4] * HCCS_PORTS[state["chip"]]
    tx = [0 if n == 0 else 1200000000 + 1000 * die["phy_id"] + i for i, n in enumerate(lanes)]
    down = [i for i, n in enumerate(lanes) if n != max(lanes) or n == 0]

    def values(vs):
        return "[" + "".join(f"{v:<20} " for v in vs) + "]"

    rows = [("hccs health status", "NOK" if down else "OK"), ("hccs lane mode", values(lanes)),
            ("hccs link lane list", values(HCCS_LANE_BITS[n] for n in lanes)),
            ("hccs link speed", values(n * 56 for n in lanes)),
            ("hccs tx packets", values(tx)), ("hccs tx bytes", values(t * 20 for t in tx)),
            ("hccs rx packets", values(tx)), ("hccs rx bytes", values(t * 20 for t in tx)),
            ("hccs retry count", values([0] * len(lanes))), ("hccs error count", values([0] * len(lanes))),
            ("hccs first error lane", down[0] + 1 if down else "NA")]
    return "\n".join(kv(k, v) for k, v in rows) + "\n"


# `-t spod-info -i N -c C` of an A3 chip, the driver's print_npu_spod_info lines ("\t%-30s : %u"); the
# values as hicann/shmem's super-pod guide shows them (SDID 16777216, Super Pod Size 384, Super Pod ID 0,
# Server Index 4): the SDID carries the server index in bits 31-22, the NPU in 21-18, the die in 17-16
# and the phy id in 15-2 (MindCluster's SpodInfo). A node's "super_pod" state ({"pod", "size",
# "server_index"}) and a die's "server_index" override them; other chips answer the driver's
# "does not support querying" line.
SUPER_POD = {"pod": 0, "size": 384, "server_index": 4}


def info_spod(state, card, die):
    if state["chip"] != "a3":
        raise Failure("This device does not support querying spod-info.\n", 255)
    if die is None:
        raise bad_param("-c")
    pod = {**SUPER_POD, **state.get("super_pod", {})}
    index = die.get("server_index", pod["server_index"])
    sdid = (index << 22) | (card["npu"] << 18) | (die["chip"] << 16) | (die["phy_id"] << 2)
    rows = [("SDID", sdid), ("Super Pod Size", pod["size"]), ("Super Pod ID", pod["pod"]), ("Server Index", index)]
    return "\n".join(kv(k, v) for k, v in rows) + "\n"


def info_temp(state, card, die):
    # Captured on 910B (telegraf fixture): the chip, then the MCU's board sensors.
    out = card_report(card, die, lambda d: [kv("NPU Temperature (C)", d["temp_c"]), kv("Chip ID", d["chip"])])
    return out + mcu_block(state, [kv("LM75A_TE (C)", 36), kv("LM75B_TE (C)", 36), kv("Chip Name", "MCU")])


def info_power(state, card, die):
    # Captured on 910B; A3's second die and 310P have no reading (designed: NA).
    def block(d):
        p = d.get("power_w")
        return [kv("NPU Real-time Power(W)", f"{p:.1f}" if isinstance(p, (int, float)) else "NA"), kv("Chip ID", d["chip"])]
    return card_report(card, die, block)


def info_memory(state, card, die):
    # Captured (blog, 910B): no Chip Count line, no blank line, Chip ID last.
    out = [kv("NPU ID", card["npu"])]
    for d in ([die] if die else card["chips"]):
        mem_used, mem_total = d.get("memory_mb") or (0, 0)
        out += [kv("DDR Capacity(MB)", mem_total), kv("DDR Clock Speed(MHz)", 0)]
        if state["chip"] != "310p":
            out += [kv("HBM Capacity(MB)", (d.get("hbm_mb") or (0, 0))[1]), kv("HBM Clock Speed(MHz)", 1600),
                    kv("HBM Temperature(C)", d["temp_c"] if d.get("hbm_temp_c") is None else d["hbm_temp_c"])]
            if state["chip"] in ("910b", "a3"):
                out.append(kv("HBM Manufacturer ID", "0x57"))
        out.append(kv("Chip ID", d["chip"]))
    return out


ECC_FIELDS = (("Single Bit Error Count", "single_bit"), ("Double Bit Error Count", "double_bit"),
              ("Single Bit Aggregate Total Err Cnt", "single_bit_total"),
              ("Double Bit Aggregate Total Err Cnt", "double_bit_total"),
              ("Single Bit Isolated Pages Count", "single_bit_isolated_pages"),
              ("Double Bit Isolated Pages Count", "double_bit_isolated_pages"))


def info_ecc(state, card, die):
    # As the MindCluster fault-diagnosis guide prints it: the DDR lines, then the
    # HBM lines of HBM chips; a die's "ecc" state holds HBM counters by field name.
    def block(d):
        hbm = d.get("ecc") or {}
        rows = [kv_ecc(f"DDR {label}", 0) for label, _ in ECC_FIELDS]
        if state["chip"] != "310p":
            rows += [kv_ecc(f"HBM {label}", hbm.get(name, 0)) for label, name in ECC_FIELDS]
        return rows + [kv_ecc("Chip ID", d["chip"])]
    out = [kv_ecc("NPU ID", card["npu"]), kv_ecc("Chip Count", len(card["chips"]))]
    for d in ([die] if die else card["chips"]):
        out += [""] + block(d)
    return out


def info_common(state, card, die):
    # Captured on 910B (blog): Chip ID first, then usage, clocks and sensors, then the MCU.
    def block(d):
        hbm_used, hbm_total = d.get("hbm_mb") or (0, 0)
        p = d.get("power_w")
        return [kv("Chip ID", d["chip"]), kv("Memory Usage Rate(%)", 0),
                kv("HBM Usage Rate(%)", round(100 * hbm_used / hbm_total) if hbm_total else 0),
                kv("Aicore Usage Rate(%)", d["aicore_pct"]), kv("Aicore Freq(MHZ)", 1800),
                kv("Aicore curFreq(MHZ)", 800), kv("Aicore Count", 24), kv("Temperature(C)", d["temp_c"]),
                kv("NPU Real-time Power(W)", f"{p:.1f}" if isinstance(p, (int, float)) else "NA")]
    return card_report(card, die, block) + mcu_block(state, [kv("Chip Name", "mcu"), kv("Temperature(C)", 38)])


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


# `npu-smi upgrade -b mcu -i N`: the card's MCU version as a 910B4 node printed it in a blog (factory
# 23.3.13, 25.50.10 after the upgrade it shows); a card's "mcu_version" overrides it. A component the
# card lacks gets the manual's line (Atlas 200I A2 npu-smi manual, `-b bootloader`/`-b vrd`).
UPGRADE_USAGE = "Usage: npu-smi upgrade <-h|-t type|-q type|-b type|-a type> [Options...]"
MCU_VERSION = "25.50.10"


def upgrade_query(argv):
    if len(argv) != 4 or argv[0] != "-b" or argv[2] != "-i":
        raise Failure(f"{UPGRADE_USAGE}\n", 1)  # only the version query (-b) is simulated
    state, _ = load_node()
    card, _ = find_card(state, argv[3])
    if argv[1] != "mcu" or not state.get("mcu", state["chip"] == "910b"):
        return "This device does not support querying version.\n"
    return kv("Version", card.get("mcu_version", MCU_VERSION)) + "\n"


def run(argv):
    if argv and argv[0] == "upgrade":
        return upgrade_query(argv[1:])
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
        return info_topo(state, driver)
    if kind not in PER_CARD:
        raise Failure(f"Error parameter of -t\n{USAGE}\n", 1)  # designed
    if "-i" not in opts:
        raise bad_param("-i")
    card, die = find_card(state, opts["-i"], opts.get("-c"))
    if kind == "board":
        return info_board(state, driver, card, die)
    if kind == "health":
        return info_health(card, die)
    if kind == "hccs":
        return info_hccs(state, card, die)
    if kind == "spod-info":
        return info_spod(state, card, die)
    if kind == "usages":
        return "\n".join(info_usages(state, driver, card, die)) + "\n"
    return "\n".join(PER_CARD[kind](state, card, die)) + "\n"


PER_CARD = {"board": None, "health": None, "usages": None, "hccs": None, "spod-info": None, "temp": info_temp, "power": info_power,
            "memory": info_memory, "ecc": info_ecc, "common": info_common}


def main(argv):
    try:
        sys.stdout.write(run(argv))
        return 0
    except Failure as f:
        sys.stdout.write(f.text)  # npu-smi reports its errors on stdout
        return f.code


def log_cpu(argv):
    """With NPU_SIM_CPU_LOG set, append this call's own CPU-seconds to that file as a JSON line
    (bench/bench_node_quick.py: the simulator's share of a node's CPU, which the vendor's C tool
    does not cost)."""
    path = os.environ.get("NPU_SIM_CPU_LOG")
    if path:
        used = resource.getrusage(resource.RUSAGE_SELF)   # microseconds; os.times() counts clock ticks
        with open(path, "a") as f:
            f.write(json.dumps({"tool": "npu-smi", "args": argv, "cpu_s": used.ru_utime + used.ru_stime}) + "\n")


if __name__ == "__main__":
    code = main(sys.argv[1:])
    log_cpu(sys.argv[1:])
    sys.exit(code)

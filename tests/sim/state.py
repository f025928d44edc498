"""The simulated hardware: one JSON file per node describing its NPUs.

Inside a node the file lives at STATE_PATH; npu-smi, hccn_tool and the
simulated CANN runtime read it, and tests inject faults by rewriting it.

Format::

    {"chip": "910b",              # platforms.yaml chip key
     "name": "910B3",             # npu-smi's Name column
     "soc_name": "Ascend910_9392",  # optional: the runtime's SoC name when not "Ascend" + name (A3)
     "npus": [                    # one per card (npu-smi's NPU id)
       {"npu": 0, "chips": [      # one die for 910/910B, two for A3 and 300I Duo
         {"chip": 0, "phy_id": 0, "logic_id": 0,
          "health": "OK",         # OK | Warning | Alarm | Critical
          "error_codes": [],      # hex strings shown by `npu-smi info -t health`
          "power_w": 94.8, "temp_c": 36, "hugepages": [0, 0],
          "bus_id": "0000:C1:00.0", "aicore_pct": 0,
          "memory_mb": [0, 0], "hbm_mb": [3407, 65536],
          "busy": null,           # null, or a dcmi error code such as -8020 (held elsewhere)
          "processes": [],        # [{"pid": 1601114, "name": "python", "mem_mb": 18429}]
          "link": "UP",           # hccn_tool -link -g
          "net_health": "Success",  # Success | Init | Fault | Detect ip set | ...
          "ip": null, "netmask": null, "netdetect": null,
          "lldp": {"chassis_id": "...", "port_id": "...", "system_name": "..."}}]}]}

Optional keys, read by tests/sim/tools (npu_smi.py, hccn_tool.py) when present:

* top level: ``"phy_id_column"`` (bool: npu-smi's ``Chip  Phy-ID`` header; default
  true on a3 only), ``"mcu"`` (bool: ``npu-smi info -m`` lists an MCU per card;
  default true on 910b), ``"mapping_name"`` (``-m`` Chip Name, default
  ``"Ascend <name>"``), ``"topology"`` (``{"links": [[cell, ...], ...]`` by logic
  id, ``"cpu_affinity": ["144-167", ...]}`` for ``-t topo``), ``"peers"``
  (device IPs of other nodes that ``hccn_tool -ping`` reaches).
* per card: ``"board"`` (``-t board`` fields: ``board_id``, ``pcb_id``, ``bom_id``,
  ``slot_id``, ``class_id``, ``compatibility``, ``subsystem_vendor_id``,
  ``subsystem_device_id``).
* per die: ``"error_info"`` (``-t health`` Error Information: the first line,
  then continuation lines), ``"vdie_id"`` / ``"ndie_id"`` (``-t board -c``),
  ``"lldp"`` may add ``"system_description"`` and ``"mgmt_ip"``,
  ``"with_firmware"`` (``{firmware version: {field: value}}``: what the die
  shows instead while that firmware runs, e.g. a health fault that new
  firmware brings and that appears only once a reboot activates it).
* ``power_w`` may be null (A3 die 1 prints ``-``, 310P prints ``NA``) or a string
  printed as is.
* per die, read by ``npu-smi info -t memory|ecc``: ``"hbm_temp_c"`` (default: the
  die's ``temp_c``), ``"ecc"`` (HBM counters by name: ``single_bit``,
  ``double_bit``, ``single_bit_total``, ``double_bit_total``,
  ``single_bit_isolated_pages``, ``double_bit_isolated_pages``; default all 0).
* per die, read by ``hccn_tool``: ``"optical"`` (``present``, ``temperature_c``,
  ``tx_power_mw`` / ``rx_power_mw`` per lane; default a healthy 4-lane module),
  ``"link_events"`` (``[[time, "LINK UP"|"LINK DOWN"], ...]`` newest first;
  default one LINK UP), ``"stat"`` (``-stat -g`` counters, default 0) and
  ``"stat_growth"`` (added to those counters on every read), ``"gateway"``,
  ``"tls"`` (``-tls -g``'s switch, 0 or 1; default 0) and ``"tls_cert_expiry"``
  (its certificates' expiration status: 0 normal, 1 near, 2 expired).
* ``hccl_test`` (tests/sim/tools/hccl_test.py) reads ``"hccl_busbw_gbps"`` at the
  top level (the bus bandwidth its all_reduce reaches; default 150).

Other inputs of the simulated tools: driver and firmware versions come from
``/usr/local/Ascend/{driver,firmware}/version.info`` (``Version=`` line); the
driver needs ``/dev/davinci_manager`` and shows only dies whose
``/dev/davinci<phy_id>`` exists; ``NPU_SIM_ROOT`` prefixes those paths and
``NPU_SIM_STATE`` overrides STATE_PATH. ``hccn_tool -i N`` takes the phy id.

The simulated driver installer reads ``processes`` and ``busy`` too: a die with
either refuses a driver install, upgrade or uninstall without ``--force``, as
devices held by a process do. Beside state.json the hardware directory holds
``firmware.pending`` / ``firmware.running`` (firmware flashed / active since the
last boot) and, while a power cut is armed, ``power_cut`` (faults.power_cut).
"""
from __future__ import annotations

import copy
import json
from pathlib import Path

STATE_PATH = "/etc/npu-sim/state.json"

# Per chip: npu-smi name, NPUs per node, dies per NPU, HBM (MB) per die, and the
# PCI bus ids real 8-NPU boards show (samples in tests/fixtures/vendor_samples).
_CHIPS = {
    "910b": {"name": "910B3", "npus": 8, "dies": 1, "hbm_mb": 65536, "power_w": 94.8,
             "bus": ["0000:C1:00.0", "0000:C2:00.0", "0000:81:00.0", "0000:82:00.0",
                     "0000:01:00.0", "0000:02:00.0", "0000:41:00.0", "0000:42:00.0"]},
    "910": {"name": "910A", "npus": 8, "dies": 1, "hbm_mb": 32768, "power_w": 72.1,
            "bus": ["0000:C1:00.0", "0000:81:00.0", "0000:41:00.0", "0000:01:00.0",
                    "0000:C2:00.0", "0000:82:00.0", "0000:42:00.0", "0000:02:00.0"]},
    # npu-smi shows A3 dies as "Ascend910"; the runtime's SoC name is Ascend910_93xx.
    "a3": {"name": "Ascend910", "soc_name": "Ascend910_9392", "npus": 8, "dies": 2, "hbm_mb": 65536, "power_w": 162.0,
           "bus": ["0000:9D:00.0", "0000:9F:00.0", "0000:99:00.0", "0000:9B:00.0",
                   "0000:B9:00.0", "0000:BB:00.0", "0000:B5:00.0", "0000:B7:00.0"]},
    "310p": {"name": "310P3", "npus": 1, "dies": 2, "hbm_mb": 0, "power_w": None,
             "bus": ["0000:81:00.0"]},
}


def default_state(chip: str = "910b", npus: int | None = None, node_index: int = 0) -> dict:
    """A healthy node: ``npus`` cards of ``chip`` (8 x 910B3 by default).

    ``node_index`` makes device IPs and LLDP neighbours unique per node.
    """
    spec = _CHIPS[chip]
    count = npus or spec["npus"]
    cards, logic = [], 0
    for n in range(count):
        dies = []
        for d in range(spec["dies"]):
            phy = n * spec["dies"] + d
            dies.append({
                "chip": d, "phy_id": phy, "logic_id": logic,
                "health": "OK", "error_codes": [],
                "power_w": spec["power_w"] if d == 0 else None, "temp_c": 36 + (phy % 5),
                "hugepages": [0, 0], "bus_id": spec["bus"][n % len(spec["bus"])],
                "aicore_pct": 0, "memory_mb": [0, 0],
                "hbm_mb": [3407, spec["hbm_mb"]] if spec["hbm_mb"] else None,
                "busy": None, "processes": [],
                "link": "UP", "net_health": "Success",
                "ip": None, "netmask": None, "netdetect": None,
                "lldp": {"chassis_id": f"sim-leaf-{node_index // 4}", "port_id": f"200GE1/0/{node_index * 8 + phy + 1}",
                         "system_name": f"sim-leaf-{node_index // 4}"},
            })
            logic += 1
        cards.append({"npu": n, "chips": dies})
    state = {"chip": chip, "name": spec["name"], "npus": cards}
    if "soc_name" in spec:
        state["soc_name"] = spec["soc_name"]
    return state


def chips(state: dict):
    """Every die of the node, in logic-id order."""
    return [c for card in state["npus"] for c in card["chips"]]


def by_logic_id(state: dict, logic_id: int) -> dict:
    for c in chips(state):
        if c["logic_id"] == logic_id:
            return c
    raise KeyError(f"no device with logic id {logic_id}")


def load(path: Path | str) -> dict:
    return json.loads(Path(path).read_text())


def save(state: dict, path: Path | str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=1) + "\n")
    tmp.replace(path)  # readers never see half a file


def with_changes(state: dict, logic_id: int, **fields) -> dict:
    """A copy of ``state`` with one device's fields changed (fault injection)."""
    new = copy.deepcopy(state)
    by_logic_id(new, logic_id).update(fields)
    return new

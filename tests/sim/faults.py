"""Faults the simulated node can be given, each with the validation check that
must catch it. Tests inject one, validate, and revert it.

Besides the hardware faults in FAULTS, a node can lose power in the middle of
a vendor installer (``power_cut``): what its disk holds afterwards is what the
real installer's steps leave at that point, and the installer's next run
completes."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from . import nodes
from . import state as sim_state


@dataclass
class Node:
    """What a fault needs to reach one simulated node."""
    name: str
    state_root: Path
    toolkit_home: str            # from the resolved stack
    profile: str                 # the ascend_env role's profile script
    old_installers: dict = field(default_factory=dict)   # kind -> path of another HDK's driver/firmware
    installers: dict = field(default_factory=dict)       # kind -> path of the row's own


@dataclass
class Fault:
    name: str
    level: str                   # the validation level whose checks catch it
    fails: set[str]              # checks that must not pass
    says: str                    # text the primary failure's explanation contains
    inject: Callable[[Node], None]
    revert: Callable[[Node], None]
    status: str = "failed"       # "warning" for faults that only warn
    keeps_passing: set[str] = field(default_factory=set)


def _state(node: Node, **fields):
    nodes.update_state(node.state_root, node.name, 0, **fields)


def _healthy(node: Node):
    _state(node, health="OK", error_codes=[], link="UP", net_health="Success", busy=None, processes=[],
           temp_c=36, hbm_temp_c=None, ecc=None, optical=None, link_events=None, stat=None, stat_growth=None,
           tls=0, tls_cert_expiry=0, speed=None, hccs_lanes=None, kernel_log=None)


_KEPT_LLDP: dict[str, dict] = {}


def _lldp_of_port_0(node: Node, neighbour_of: int | None):
    """Port 0 sees what port ``neighbour_of`` sees (a cable in the wrong switch port), or nothing (None:
    LLDP off on its switch); the neighbour it had is kept for the revert."""
    state = sim_state.load(nodes.state_file(node.state_root, node.name))
    _KEPT_LLDP[node.name] = sim_state.by_logic_id(state, 0)["lldp"]
    lldp = sim_state.by_logic_id(state, neighbour_of)["lldp"] if neighbour_of is not None else None
    _state(node, lldp=lldp)


def _lldp_back(node: Node):
    _state(node, lldp=_KEPT_LLDP.pop(node.name))


_KEPT_RUNNING: dict[str, str | None] = {}
# What the node's cards run after a firmware upgrade that no reboot has activated yet: the firmware of
# HDK 24.1.RC3 (Ascend-hdk-910b-npu-firmware_7.5.0.1.129.run, its version.info in a published copy).
OLD_RUNNING_FIRMWARE = "7.5.0.1.129"


def _running_firmware(node: Node, version: str | None):
    """Set the firmware the cards run (tests/sim/node/boot.sh writes it at a reboot); None puts back
    what ran before."""
    running = nodes.state_file(node.state_root, node.name).parent / "firmware.running"
    if version is not None:
        _KEPT_RUNNING[node.name] = running.read_text() if running.exists() else None
        running.write_text(version + "\n")
    elif (kept := _KEPT_RUNNING.pop(node.name)) is None:
        running.unlink()
    else:
        running.write_text(kept)


def _sh(node: Node, command: str):
    nodes.run_in(node.name, "bash", "-c", command)


def _install(node: Node, path: str, flags: str):
    # The firmware package exits 2 after writing new firmware (reboot pending).
    _sh(node, f"{path} {flags} >/dev/null; rc=$?; [ $rc -eq 0 ] || [ $rc -eq 2 ]")


HARDWARE = {"driver_version", "install_info", "cann_toolkit", "nnal"}
# The hardware checks of validation/node/suite/test_hardware.py that run on every
# simulated node (npu_routes needs device IPs and hccl_test an installed
# hccl_test, so they are left out here).
SENSORS = {"npu_temperature", "hbm_ecc", "npu_topology"}
PORTS = {"optical_modules", "link_flaps", "packet_errors", "npu_tls", "hccn_conf", "npu_cabling", "link_speed_fec"}
HELD = "another process or container holds the device"
FLAPS = [["Mon Jan  6 10:04:00 2025", "LINK UP"], ["Mon Jan  6 10:03:58 2025", "LINK DOWN"],
         ["Mon Jan  6 10:01:00 2025", "LINK UP"], ["Mon Jan  6 10:00:57 2025", "LINK DOWN"],
         ["Mon Jan  6 09:40:00 2025", "LINK UP"], ["Mon Jan  6 09:39:55 2025", "LINK DOWN"],
         ["Mon Jan  6 08:00:00 2025", "LINK UP"]]

FAULTS = [
    Fault("npu_warning", "quick", {"npu_health"}, "Warning", lambda n: _state(n, health="Warning"), _healthy,
          status="warning", keeps_passing=HARDWARE | {"device_nodes", "torch_npu_import"}),
    Fault("npu_alarm", "quick", {"npu_health"}, "80E01801 (RestartBusiness",
          lambda n: _state(n, health="Alarm", error_codes=["80E01801"]), _healthy,
          keeps_passing=HARDWARE | {"device_nodes", "torch_npu_import"}),
    Fault("npu_critical", "quick", {"npu_health"}, "reports a fault", lambda n: _state(n, health="Critical"),
          _healthy, keeps_passing=HARDWARE | {"device_nodes", "torch_npu_import"}),
    Fault("device_node_removed", "quick", {"device_nodes", "npu_health"}, "not visible",
          lambda n: _sh(n, "rm /dev/davinci3"), lambda n: _sh(n, "mknod -m 660 /dev/davinci3 c 236 3"),
          keeps_passing=HARDWARE),
    Fault("device_busy", "quick", {"npu_health"}, HELD, lambda n: _state(n, busy=-8020),
          _healthy, keeps_passing=HARDWARE | {"device_nodes"}),
    Fault("foreign_process", "quick", {"npu_processes"}, HELD,
          lambda n: _state(n, processes=[{"pid": 4242, "name": "python", "mem_mb": 2048}]), _healthy,
          keeps_passing=HARDWARE | {"device_nodes", "npu_health"}),
    Fault("driver_too_old", "quick", {"driver_version", "firmware_pairs_with_driver"}, "outside the HDK range",
          lambda n: _install(n, n.old_installers["driver"], "--upgrade --quiet"),
          lambda n: _install(n, n.installers["driver"], "--upgrade --quiet"),
          keeps_passing={"cann_toolkit", "nnal", "device_nodes", "npu_health"}),
    Fault("firmware_mismatch", "quick", {"firmware_pairs_with_driver"}, "different HDK releases",
          lambda n: _install(n, n.old_installers["firmware"], "--full --quiet"),
          lambda n: _install(n, n.installers["firmware"], "--full --quiet"),
          keeps_passing=HARDWARE | {"device_nodes", "npu_health"}),
    Fault("library_dropped", "quick", {"torch_npu_libraries", "torch_npu_import"}, "cannot find CANN's libraries",
          lambda n: _sh(n, f"mv {n.toolkit_home}/lib64/libhccl.so /root/libhccl.so.away"),
          lambda n: _sh(n, f"mv /root/libhccl.so.away {n.toolkit_home}/lib64/libhccl.so"),
          keeps_passing=HARDWARE | {"device_nodes", "npu_health", "login_environment"}),
    Fault("env_unsourced", "quick", {"login_environment", "torch_npu_import"}, "environment",
          lambda n: _sh(n, f"mv {n.profile} /root/profile.away"),
          lambda n: _sh(n, f"mv /root/profile.away {n.profile}"),
          keeps_passing=HARDWARE | {"device_nodes", "npu_health"}),
    Fault("link_down", "standard", {"npu_network"}, "down", lambda n: _state(n, link="DOWN"), _healthy,
          keeps_passing={"smoke"}),
    Fault("net_health_fault", "standard", {"npu_network"}, "not configured", lambda n: _state(n, net_health="Fault"),
          _healthy, keeps_passing={"smoke"}),
    # Hardware faults (issue #15): each caught by its own check and by no other.
    # A port without its module has its link down, as on a real server; the
    # network check leaves that port to the optical check, which names the cause.
    Fault("optical_absent", "standard", {"optical_modules"}, "no optical module present",
          lambda n: _state(n, optical={"present": False}, link="DOWN", net_health="Fault"), _healthy,
          keeps_passing=SENSORS | (PORTS - {"optical_modules"}) | {"npu_network", "npu_health"}),
    # A port that came up at 100G among 200G ports (a 100G module or cable, a switch port set lower).
    Fault("port_at_lower_speed", "standard", {"link_speed_fec"}, "the slowest port's pace",
          lambda n: _state(n, speed=100000), _healthy,
          keeps_passing=SENSORS | (PORTS - {"link_speed_fec"}) | {"npu_network", "npu_health"}),
    Fault("link_flapping", "standard", {"link_flaps"}, "3 link downs since the driver started",
          lambda n: _state(n, link_events=FLAPS), _healthy,
          keeps_passing=SENSORS | (PORTS - {"link_flaps"}) | {"npu_network", "npu_health"}),
    Fault("crc_errors_growing", "standard", {"packet_errors"}, "frames arrive corrupted",
          lambda n: _state(n, stat={"mac_rx_fcs_err_pkt_num": 120}, stat_growth={"mac_rx_fcs_err_pkt_num": 37}),
          _healthy, keeps_passing=SENSORS | (PORTS - {"packet_errors"}) | {"npu_network", "npu_health"}),
    # TLS switched on at one port only (HCCL user guide: ranks whose TLS differs fail link setup, EI0006).
    Fault("tls_on_one_port", "standard", {"npu_tls"}, "ranks whose TLS settings differ",
          lambda n: _state(n, tls=1), _healthy,
          keeps_passing=SENSORS | (PORTS - {"npu_tls"}) | {"npu_network", "npu_health"}),
    Fault("tls_certificate_expired", "standard", {"npu_tls"}, "an expired certificate",
          lambda n: _state(n, tls_cert_expiry=2), _healthy,
          keeps_passing=SENSORS | (PORTS - {"npu_tls"}) | {"npu_network", "npu_health"}),
    # /etc/hccn.conf edited after the ports were set: the next boot would apply the stale address.
    Fault("stale_hccn_conf", "standard", {"hccn_conf"}, "the driver applies the file at boot",
          lambda n: _sh(n, "cp /etc/hccn.conf /root/hccn.conf.kept && "
                           "sed -i 's/^address_0=.*/address_0=10.99.0.9/' /etc/hccn.conf"),
          lambda n: _sh(n, "mv /root/hccn.conf.kept /etc/hccn.conf"),
          keeps_passing=SENSORS | (PORTS - {"hccn_conf"}) | {"npu_network", "npu_health"}),
    # Cabling seen over LLDP: two NPU ports on one switch port; a port whose switch sends no LLDP.
    Fault("two_ports_on_one_switch_port", "standard", {"npu_cabling"}, "two NPU ports see one switch port",
          lambda n: _lldp_of_port_0(n, 1), _lldp_back,
          keeps_passing=SENSORS | (PORTS - {"npu_cabling"}) | {"npu_network", "npu_health"}),
    Fault("no_lldp_neighbour", "standard", {"npu_cabling"}, "no LLDP neighbour",
          lambda n: _lldp_of_port_0(n, None), _lldp_back, status="warning",
          keeps_passing=SENSORS | (PORTS - {"npu_cabling"}) | {"npu_network", "npu_health"}),
    # A heartbeat lost since boot, the device answering again: only the kernel log keeps it. The line
    # is the older driver's, as MindCluster's fault-diag test data has it (messages_0x40F84E00).
    Fault("heartbeat_lost_since_boot", "standard", {"kernel_log"}, "even if npu-smi shows it healthy again",
          lambda n: _state(n, kernel_log=[
              "[ascend] [ERROR] [drv_soft_fault] [heart_beat_judge 318] <kworker/5:1H:39365> Heartbeat lost! "
              "(device=0; old_count=1104; new_count=1104; lost_count=4; total_lost_count=4; total_10s_count=0; "
              "total_15s_count 0)."]), _healthy,
          keeps_passing=SENSORS | PORTS | {"hccs_links", "firmware_running", "npu_network", "npu_health"}),
    # One HCCS port of a chip down (its lane mode 0); npu-smi's topology still says HCCS.
    Fault("hccs_port_down", "standard", {"hccs_links"}, "fault 0x81A38605",
          lambda n: _state(n, hccs_lanes=[4, 4, 4, 0, 4, 4, 4]), _healthy,
          keeps_passing=SENSORS | PORTS | {"kernel_log", "firmware_running", "npu_network", "npu_health"}),
    # The firmware installed, the node not rebooted since: the cards run the old firmware.
    Fault("firmware_not_activated", "standard", {"firmware_running"}, "not rebooted since",
          lambda n: _running_firmware(n, OLD_RUNNING_FIRMWARE), lambda n: _running_firmware(n, None),
          keeps_passing=SENSORS | PORTS | {"kernel_log", "hccs_links", "firmware_pairs_with_driver", "npu_network",
                                           "npu_health"}),
    Fault("hbm_ecc_errors", "quick", {"hbm_ecc"}, "uncorrectable (double-bit) HBM ECC error",
          lambda n: _state(n, ecc={"single_bit": 5, "double_bit": 2, "double_bit_total": 2}), _healthy,
          keeps_passing=(SENSORS - {"hbm_ecc"}) | {"npu_health", "device_nodes"}),
    Fault("overheating_chip", "quick", {"npu_temperature"}, "the chip overheats",
          lambda n: _state(n, temp_c=97, hbm_temp_c=91), _healthy,
          keeps_passing=(SENSORS - {"npu_temperature"}) | {"npu_health", "device_nodes"}),
]


def firmware_fails_after_boot(state_root: Path, name: str, firmware_version: str, logic_id: int = 0,
                              error_codes: tuple[str, ...] = ("80E01801",)) -> None:
    """Make one die of the node report an Alarm once ``firmware_version`` runs on it, that is after
    the reboot that activates that firmware (tests/sim/node/boot.sh), and never before."""
    nodes.update_state(state_root, name, logic_id, with_firmware={
        firmware_version: {"health": "Alarm", "error_codes": list(error_codes)}})


# --- Power cut during an installer -------------------------------------------
# The simulator's control file under the node's hardware directory (beside
# state.json): "<package kind> <point>". The simulated installer of that kind
# reads it when it reaches the point, deletes it (so only this run stops) and
# kills every process of the node at once, as a power loss would: a node
# started by nodes.start_nodes (--init --restart always) dies and boots again
# (tests/sim/node/boot.sh), with what was on its disk at that moment. The
# points and what each leaves on disk: installers.STOP_POINTS.
POWER_CUT_FILE = "power_cut"


def power_cut(state_dir: Path, kind: str, point: str) -> Path:
    """Make the next run of ``kind``'s installer on the node whose hardware
    directory (the one holding its state.json) is ``state_dir`` lose power at
    ``point``. Returns the control file."""
    from .installers import STOP_POINTS
    if point not in STOP_POINTS.get(kind, {}):
        known = {k: sorted(v) for k, v in STOP_POINTS.items()}
        raise ValueError(f"no stop point {point!r} in the {kind} installer; known points: {known}")
    control = Path(state_dir) / POWER_CUT_FILE
    control.write_text(f"{kind} {point}\n")
    return control


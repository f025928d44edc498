"""A fleet's check records at any size, for the report's tests and benchmark
(issue 22: the report at 1,000 hosts) without starting a node per host.

One simulated node's records at the full level, as a fleet run wrote them
(tests/fixtures/fleet/full_level_node.json, see the README there), are copied
for every host. Each copy gets figures of its own (training throughput, bus
bandwidth, optical powers: a real fleet's hosts never report the same numbers),
and a few hosts get what a real fleet has: an unhealthy NPU, a flapping port, a
slow node, unreachable hosts. The sample's two warnings (no default gateway on
the NPU ports, torchvision left out) stay on every host, as they were found on
every node of the simulated fleet."""
from __future__ import annotations

import copy
import json
import random
from pathlib import Path

SAMPLE = Path(__file__).resolve().parents[1] / "fixtures" / "fleet" / "full_level_node.json"


def host_name(i: int) -> str:
    return f"node-{i:04d}.npu.example"


class Fleet:
    """Records, host names and the meta of a fleet of ``size`` hosts; which hosts have which trouble."""

    def __init__(self, size: int, seed: int = 22):
        sample = json.loads(SAMPLE.read_text())
        rng = random.Random(seed)
        self.hosts = [host_name(i) for i in range(size)]
        # Trouble on a few hosts, spread over the fleet (none when it is too small to spare them).
        spare = self.hosts[1:] if size > 8 else []
        self.unhealthy = spare[2::size // 3][:3] if spare else []
        self.unreachable = spare[5::size // 2][:2] if spare else []
        self.flapping = spare[7::size // 5][:5] if spare else []
        self.slow = spare[3] if spare else None
        self.records = []
        for host in self.hosts:
            if host in self.unreachable:
                self.records.append(unreachable(host))
                continue
            factor = 0.4 if host == self.slow else rng.gauss(1.0, 0.04)
            for r in sample["node"]:
                self.records.append(self._varied(copy.deepcopy(r), len(self.records) // len(sample["node"]),
                                                 host, factor, rng))
        self.records += [{**copy.deepcopy(r)} for r in sample["fleet"]]
        self.meta = {"level": "full", "backend": "cpu", "targets": ["ansible://npu_nodes?inventory=hosts.yml"],
                     "locks": {h: sample["lock"] for h in self.hosts if h not in self.unreachable},
                     **{k: sample["lock"][k] for k in ("torch_npu", "torch", "cann", "python", "chip")}}

    def _varied(self, r: dict, i: int, host: str, factor: float, rng: random.Random) -> dict:
        r["host"] = host
        data = r.get("data")
        if r["check"] == "npu_cabling":   # each host's ports on switch ports of their own: 16 hosts a leaf
            data["cabling"] = {port: f"leaf-{i // 16} 400GE1/0/{(i % 16) * 8 + int(port) + 1}"
                               for port in data["cabling"]}
        if r["check"] == "train":
            data["samples_per_s"] = round(data["samples_per_s"] * factor, 2)
        elif isinstance(data, dict) and isinstance(data.get("sizes"), list):
            for row in data["sizes"]:
                row["algbw_gbps"] = round(row["algbw_gbps"] * factor, 4)
                row["busbw_gbps"] = round(row["busbw_gbps"] * factor, 4)
        elif r["check"] == "optical_modules":
            for port in data["optical"]:
                for key in ("tx_power_mw", "rx_power_mw"):
                    port["optical"][key] = [round(v * rng.uniform(0.9, 1.1), 4) for v in port["optical"][key]]
        if r["check"] == "npu_health" and host in self.unhealthy:
            r.update(status="failed", message="unhealthy NPU(s): NPU 3 chip 0 Critical",
                     failure={"summary": "1 of 8 NPUs unhealthy", "expected": "every NPU OK",
                              "found": "NPU 3 chip 0: Critical with no error code",
                              "cause": "the device reports a fault (Alarm or Critical): NPU 3 chip 0: Critical with "
                                       "no error code",
                              "fix": "npu-smi info -t health -i 3 names the alarm; reset the chip or replace it"})
        if r["check"] == "link_flaps" and host in self.flapping:
            port = rng.randrange(8)
            r.update(status="warning", message=f"port {port}: link went down {rng.randrange(2, 9)} times since boot")
        return r


def unreachable(host: str) -> dict:
    return {"host": host, "check": "reachable", "level": "quick", "status": "failed", "duration_s": 0.0,
            "message": "unreachable: ssh: connect to host port 22: Connection timed out", "data": None,
            "failure": {"summary": "the host did not answer", "expected": "the host answers over its connection",
                        "found": "ssh: connect to host port 22: Connection timed out",
                        "cause": "the controller could not reach the host",
                        "fix": "reach the host by hand over the same connection and fix what it reports"}}

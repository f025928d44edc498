"""Every full-level check, called directly: DDP and the bandwidth sweep with
recorded workload results, the cross-node all_reduce and netdetect with fake
testinfra hosts answering from a table."""
from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from types import SimpleNamespace

import pytest

from tests.unit.check_fakes import FakeProbe, failed, healthy_facts, options, passed, run_check, sample, stack
from tests.unit.test_checks_standard import ALLREDUCE_OK, FakeWorkload, envelope, row
from validation import facts as facts_mod
from validation.suite import test_full as full

# ------------------------------------------------------------------ DDP

DDP_OK = envelope(workload="ddp", world_size=8, loss_fell_all_ranks=True, params_equal=True, max_param_diff=0.0,
                  ranks=[{"rank": r, "loss_fell": True} for r in range(8)], params_changed=True)


def test_ddp_passes():
    wl = FakeWorkload(DDP_OK)
    passed(full.test_ddp, workload=wl, options=options())
    assert wl.calls == [("ddp", " --steps 10 --timeout 60")]


def test_ddp_loss_not_falling_on_a_rank_fails():
    ranks = [{"rank": r, "loss_fell": r != 5} for r in range(8)]
    bad = {**DDP_OK, "ok": False, "ranks": ranks, "loss_fell_all_ranks": False,
           "error": "the loss did not fall on rank(s) 5"}
    f = failed(full.test_ddp, workload=FakeWorkload(bad), options=options())
    assert f == {"summary": "DDP's loss did not fall on every rank", "expected": "loss falls on all ranks",
                 "found": "not on rank(s) [5]", "cause": "gradients are not synchronised",
                 "fix": "check the collectives"}


def test_ddp_parameters_differing_across_ranks_fail():
    bad = {**DDP_OK, "ok": False, "params_equal": False, "max_param_diff": 0.0125,
           "error": "parameters differ across ranks after 10 steps (max difference 0.0125)"}
    f = failed(full.test_ddp, workload=FakeWorkload(bad), options=options())
    assert f == {"summary": "parameters differ across ranks after a DDP step",
                 "expected": "identical parameters on every rank", "found": "max difference 0.0125",
                 "cause": "all_reduce of gradients is wrong or incomplete", "fix": "run the all_reduce checks"}


def test_ddp_failure_no_specific_check_covers_still_fails():
    bad = {**DDP_OK, "ok": False, "params_changed": False,
           "error": "the parameters did not change: no optimizer step took effect"}
    f = failed(full.test_ddp, workload=FakeWorkload(bad), options=options())
    assert f["summary"] == "the DDP workload failed: the parameters did not change: no optimizer step took effect"


def test_ddp_launch_error_fails_with_its_error():
    bad = envelope(workload="ddp", ok=False, world_size=8, timed_out=True,
                   error="rank 3 did not complete within 60 s")
    f = failed(full.test_ddp, workload=FakeWorkload(bad), options=options())
    assert f["summary"] == "the DDP workload failed: rank 3 did not complete within 60 s"


# ------------------------------------------------------------------ bandwidth sweep

def test_bandwidth_at_or_above_the_floor_passes():
    wl = FakeWorkload(ALLREDUCE_OK)
    out = passed(full.test_bandwidth_sweep, workload=wl, options=options(max_bytes=1 << 30, busbw_floor=12.5))
    assert "--max-bytes 1073741824" in wl.calls[0][1]
    assert out.data[0]["sizes"] == ALLREDUCE_OK["rows"]


def test_bandwidth_below_the_floor_fails():
    f = failed(full.test_bandwidth_sweep, workload=FakeWorkload(ALLREDUCE_OK),
               options=options(busbw_floor=20.0))
    assert f == {"summary": "busbw 12.500 GB/s at 4194304 B is below the floor 20.0 GB/s",
                 "expected": ">= 20.0 GB/s", "found": "12.500 GB/s",
                 "cause": "a slow or degraded link (or another job using the devices)",
                 "fix": "compare with the other nodes; check `hccn_tool -i N -link -g` speeds and `npu-smi info` "
                        "for other processes"}


def test_bandwidth_is_judged_at_the_largest_size():
    rows = [row(1024, busbw=30.0), row(4096, busbw=2.0)]
    f = failed(full.test_bandwidth_sweep, workload=FakeWorkload({**ALLREDUCE_OK, "rows": rows}),
               options=options(busbw_floor=5.0))
    assert f["found"] == "2.000 GB/s"


def test_incomplete_sweep_is_no_pass():
    # the workload stops short of the largest size without an error: ok is false
    short = {**ALLREDUCE_OK, "ok": False, "error": None, "rows": ALLREDUCE_OK["rows"][:3]}
    f = failed(full.test_bandwidth_sweep, workload=FakeWorkload(short), options=options())
    assert (f["summary"], f["found"]) == (
        "the all_reduce bandwidth sweep workload failed: it reports ok: false (an incomplete result)",
        "it reports ok: false (an incomplete result)")


# ------------------------------------------------------------------ across nodes

@dataclass
class FakeHost:
    """A testinfra host: ``run`` answers the command inside HostProbe's
    ``bash -lc '...'`` from a FakeProbe table."""
    name: str
    probe: FakeProbe = field(default_factory=FakeProbe)

    @property
    def backend(self):
        return SimpleNamespace(get_pytest_id=lambda: self.name)

    def run(self, command):
        words = shlex.split(command)
        assert words[:2] == ["bash", "-lc"], command
        rc, out, err = self.probe.run(words[2])
        return SimpleNamespace(rc=rc, stdout=out, stderr=err)


class FakeConfig:
    def __init__(self, hosts: list[FakeHost]):
        self.hosts = hosts

    def getoption(self, name):
        assert name == "hosts"
        return ",".join(f"fake://{h.name}" for h in self.hosts)


@pytest.fixture
def fleet(monkeypatch):
    """Two (or more) fake hosts, reached through testinfra.get_host."""
    def make(*names):
        hosts = [FakeHost(n) for n in names]
        by_spec = {f"fake://{h.name}": h for h in hosts}
        monkeypatch.setattr(full.testinfra, "get_host", lambda spec: by_spec[spec])
        return FakeConfig(hosts), hosts
    return make


def allreduce_json(world_size=2, **changes) -> str:
    import json
    return json.dumps({**ALLREDUCE_OK, "world_size": world_size, **changes}) + "\n"


TORCHRUN = r"^cat > /tmp/npuenv_allreduce\.py <<'NPUENV_WORKLOAD_EOF'\n"


def test_allreduce_across_two_nodes_passes(fleet):
    config, (a, b) = fleet("node-a", "node-b")
    a.probe.answer(r"^hostname -I$", 0, "10.88.0.11 fd00::11 \n").answer(TORCHRUN, 0, "warmup\n" + allreduce_json())
    b.probe.answer(TORCHRUN, 0, "")
    out = passed(full.test_allreduce_across_nodes, pytestconfig=config, options=options(), stack=stack())
    assert out.data[0]["world_size"] == 2
    for rank, host in enumerate((a, b)):
        command = host.probe.runs[-1]
        assert f"--nnodes=2 --node-rank={rank} --nproc-per-node=1 --master-addr=10.88.0.11 --master-port=29512" \
            in command


def test_node_missing_from_the_world_fails(fleet):
    config, (a, b) = fleet("node-a", "node-b")
    a.probe.answer(r"^hostname -I$", 0, "10.88.0.11\n").answer(TORCHRUN, 0, allreduce_json(world_size=1))
    b.probe.answer(TORCHRUN, 1, "", "connection refused\n")
    f = failed(full.test_allreduce_across_nodes, pytestconfig=config, options=options(), stack=stack())
    assert f == {"summary": "not every node joined the all_reduce", "expected": "world size 2",
                 "found": "world size 1", "cause": "a node cannot reach the master",
                 "fix": "check that port 29512 on 10.88.0.11 is reachable"}


def test_cross_node_allreduce_that_printed_nothing_fails(fleet):
    config, (a, b) = fleet("node-a", "node-b")
    a.probe.answer(r"^hostname -I$", 0, "10.88.0.11\n").answer(TORCHRUN, 1, "", "torchrun: rendezvous timed out\n")
    b.probe.answer(TORCHRUN, 1, "", "")
    f = failed(full.test_allreduce_across_nodes, pytestconfig=config, options=options(), stack=stack())
    assert (f["summary"], f["found"]) == ("the all_reduce across 2 nodes workload did not run",
                                          "torchrun: rendezvous timed out")


def test_fleet_checks_need_two_hosts(fleet):
    config, _ = fleet("node-a")
    for fn, kw in ((full.test_allreduce_across_nodes, {"options": options()}), (full.test_netdetect_peers, {})):
        assert run_check(fn, pytestconfig=config, stack=stack(), **kw).skipped == "needs two or more hosts, 1 given"


# ------------------------------------------------------------------ netdetect between peers

HCCN = "/usr/local/Ascend/driver/tools/hccn_tool"


def ping_reply(target: str, received: int = 3) -> str:
    # no verbatim capture is public; the summary line is the one the vendor documents
    loss = "%.2f" % (100 * (3 - received) / 3)
    return (f"device 0 PING {target}\n"
            f"3 packets transmitted, {received} received, {loss}% packet loss\n")


def netdetect_fleet(fleet, monkeypatch, npus=2):
    config, hosts = fleet("node-a", "node-b")
    for h, net in zip(hosts, ("192.168.1", "192.168.2")):
        h.facts = healthy_facts(devices=healthy_facts()["devices"][:npus])
        for dev in range(npus):
            h.probe.answer(rf"^{HCCN} -i {dev} -ip -g$", 0, f"ipaddr:{net}.{10 + dev}\nnetmask:255.255.255.0\n")
    monkeypatch.setattr(facts_mod, "HostProbe", lambda host: host.probe)
    monkeypatch.setattr(facts_mod, "collect", lambda probe: next(h.facts for h in hosts if h.probe is probe))
    return config, hosts


def test_every_device_reaching_its_peer_passes(fleet, monkeypatch):
    config, (a, b) = netdetect_fleet(fleet, monkeypatch)
    for dev in range(2):
        a.probe.answer(rf"^{HCCN} -i {dev} -ping -g address 192\.168\.2\.{10 + dev}$", 0,
                       ping_reply(f"192.168.2.{10 + dev}"))
        b.probe.answer(rf"^{HCCN} -i {dev} -ping -g address 192\.168\.1\.{10 + dev}$", 0,
                       ping_reply(f"192.168.1.{10 + dev}"))
    passed(full.test_netdetect_peers, pytestconfig=config, stack=stack())


def test_a_path_that_loses_packets_fails(fleet, monkeypatch):
    config, (a, b) = netdetect_fleet(fleet, monkeypatch)
    a.probe.answer(r"-ping -g address 192\.168\.2\.10$", 0, ping_reply("192.168.2.10"))
    a.probe.answer(r"-ping -g address 192\.168\.2\.11$", 0, ping_reply("192.168.2.11", received=0))
    b.probe.answer(r"-ping -g address 192\.168\.1\.1\d$", 0, ping_reply("192.168.1.10", received=2))
    f = failed(full.test_netdetect_peers, pytestconfig=config, stack=stack())
    assert f == {"summary": "3 NPU-to-NPU path(s) between nodes do not answer",
                 "expected": "every device reaches the same device of the next node",
                 "found": "node-a device 1 -> 192.168.2.11; node-b device 0 -> 192.168.1.10; "
                          "node-b device 1 -> 192.168.1.11",
                 "cause": "the RoCE network between these nodes is down or misconfigured (device IP, netmask, switch)",
                 "fix": "hccn_tool -i N -ping -g address PEER from both ends; check the leaf switch ports"}


def test_a_device_without_an_ip_fails(fleet, monkeypatch):
    config, (a, b) = netdetect_fleet(fleet, monkeypatch, npus=1)
    b.probe.answer(rf"^{HCCN} -i 0 -ip -g$", 255, "Get ipconf failed, because no ip was preset there!\n")
    a.probe.answer(r"-ping -g", 0, ping_reply("x"))
    f = failed(full.test_netdetect_peers, pytestconfig=config, stack=stack())
    assert f["found"] == "node-a device 0: no device IP to ping with; node-b device 0: no device IP to ping with"


def test_unparseable_ping_answer_is_a_failure(fleet, monkeypatch):
    config, (a, b) = netdetect_fleet(fleet, monkeypatch, npus=1)
    a.probe.answer(r"-ping -g", 0, ping_reply("192.168.2.10"))
    b.probe.answer(r"-ping -g", 1, sample("npu-smi_error_-8020_device_used.txt"))
    f = failed(full.test_netdetect_peers, pytestconfig=config, stack=stack())
    assert f["found"] == "node-b device 0 -> 192.168.1.10"


def test_ddp_runs_one_process_per_device_unless_told():
    wl = FakeWorkload(DDP_OK)
    passed(full.test_ddp, workload=wl, options=options(nproc=2))
    assert wl.calls == [("ddp", "--nproc 2 --steps 10 --timeout 60")]


def test_cross_node_command_carries_the_workload_and_a_longer_timeout(fleet):
    from validation import workloads
    config, (a, b) = fleet("node-a", "node-b")
    a.probe.answer(r"^hostname -I$", 0, "10.88.0.11\n").answer(TORCHRUN, 0, allreduce_json(world_size=4))
    b.probe.answer(TORCHRUN, 0, "")
    passed(full.test_allreduce_across_nodes, pytestconfig=config, options=options(nproc=2, timeout=30), stack=stack())
    command = a.probe.runs[-1]
    assert workloads.script("allreduce") in command
    assert "timeout 150 python3 -m torch.distributed.run --nnodes=2 --node-rank=0 --nproc-per-node=2" in command
    assert "--backend cpu --min-bytes 1024 --max-bytes 1048576 --factor 4 --iters 5 --warmup 2 --timeout 30" in command


def test_two_hosts_are_enough_for_the_fleet_checks(fleet):
    config, (a, b) = fleet("node-a", "node-b")
    a.probe.answer(r"^hostname -I$", 0, "10.88.0.11\n").answer(TORCHRUN, 0, allreduce_json())
    b.probe.answer(TORCHRUN, 0, "")
    assert run_check(full.test_allreduce_across_nodes, pytestconfig=config, options=options(),
                     stack=stack()).skipped is None


def test_devices_without_phy_id_ping_by_npu_number(fleet, monkeypatch):
    config, (a, b) = netdetect_fleet(fleet, monkeypatch, npus=1)
    for h, net in ((a, "192.168.1"), (b, "192.168.2")):
        h.facts["devices"][0].update(phy_id=None, npu=6)
        h.probe.answer(rf"^{HCCN} -i 6 -ip -g$", 0, f"ipaddr:{net}.16\nnetmask:255.255.255.0\n")
    a.probe.answer(rf"^{HCCN} -i 6 -ping -g address 192\.168\.2\.16$", 0, ping_reply("192.168.2.16"))
    b.probe.answer(rf"^{HCCN} -i 6 -ping -g address 192\.168\.1\.16$", 0, ping_reply("192.168.1.16"))
    passed(full.test_netdetect_peers, pytestconfig=config, stack=stack())


def test_each_node_pings_the_next_one_round_the_ring(fleet, monkeypatch):
    config, hosts = fleet("node-a", "node-b", "node-c")
    nets = ("192.168.1", "192.168.2", "192.168.3")
    for h, net in zip(hosts, nets):
        h.facts = healthy_facts(devices=healthy_facts()["devices"][:4])
        for dev in range(4):
            h.probe.answer(rf"^{HCCN} -i {dev} -ip -g$", 0, f"ipaddr:{net}.{10 + dev}\nnetmask:255.255.255.0\n")
            h.probe.answer(rf"-i {dev} -ping -g address", 0, ping_reply("x", received=0))
    monkeypatch.setattr(facts_mod, "HostProbe", lambda host: host.probe)
    monkeypatch.setattr(facts_mod, "collect", lambda probe: next(h.facts for h in hosts if h.probe is probe))
    f = failed(full.test_netdetect_peers, pytestconfig=config, stack=stack())
    assert f["summary"] == "12 NPU-to-NPU path(s) between nodes do not answer"
    # a -> b -> c -> a, ten paths named
    assert f["found"] == "; ".join([f"node-a device {d} -> 192.168.2.{10 + d}" for d in range(4)] +
                                   [f"node-b device {d} -> 192.168.3.{10 + d}" for d in range(4)] +
                                   [f"node-c device {d} -> 192.168.1.{10 + d}" for d in range(2)])


def test_a_device_without_ip_does_not_stop_the_others(fleet, monkeypatch):
    config, (a, b) = netdetect_fleet(fleet, monkeypatch, npus=2)
    a.probe.answer(rf"^{HCCN} -i 0 -ip -g$", 255, "Get ipconf failed, because no ip was preset there!\n")
    a.probe.answer(r"-i 1 -ping -g", 0, ping_reply("192.168.2.11", received=0))
    b.probe.answer(r"-ping -g", 0, ping_reply("x"))
    f = failed(full.test_netdetect_peers, pytestconfig=config, stack=stack())
    assert f["found"] == ("node-a device 0: no device IP to ping with; node-a device 1 -> 192.168.2.11; "
                          "node-b device 0: no device IP to ping with")


def test_netdetect_uses_the_phy_id_when_there_is_one(fleet, monkeypatch):
    config, (a, b) = netdetect_fleet(fleet, monkeypatch, npus=1)
    for h, net in ((a, "192.168.1"), (b, "192.168.2")):
        h.facts["devices"][0].update(phy_id=9, npu=1)
        h.probe.answer(rf"^{HCCN} -i 9 -ip -g$", 0, f"ipaddr:{net}.19\nnetmask:255.255.255.0\n")
    a.probe.answer(rf"^{HCCN} -i 9 -ping -g address 192\.168\.2\.19$", 0, ping_reply("192.168.2.19"))
    b.probe.answer(rf"^{HCCN} -i 9 -ping -g address 192\.168\.1\.19$", 0, ping_reply("192.168.1.19"))
    passed(full.test_netdetect_peers, pytestconfig=config, stack=stack())

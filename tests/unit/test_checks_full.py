"""Every full-level check, called directly: DDP and the bandwidth sweep with
recorded workload results; the cross-node all_reduce and netdetect in both
modes: on a node of the fleet phase (fleet options, the peer's device IPs; its
own commands answered from a table) and from a controller running
``pytest --hosts=a,b`` (fake testinfra hosts answering from a table)."""
from __future__ import annotations

import json
import shlex
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.unit.check_fakes import (HCCN, FakeProbe, answer_node, failed, healthy_facts, network_facts, options,
                                    passed, run_check, sample, stack)
from tests.unit.test_checks_standard import ALLREDUCE_OK, LOOK_CLOSER, FakeWorkload, envelope, row
from validation.node import facts as facts_mod, workloads

with warnings.catch_warnings():  # the fleet mark is registered by the suite's own conftest
    warnings.simplefilter("ignore", pytest.PytestUnknownMarkWarning)
    from validation.node.suite import test_full as full

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


def test_ddp_runs_one_process_per_device_unless_told():
    wl = FakeWorkload(DDP_OK)
    passed(full.test_ddp, workload=wl, options=options(nproc=2))
    assert wl.calls == [("ddp", "--nproc 2 --steps 10 --timeout 60")]


# ------------------------------------------------------------------ the all_reduce across nodes

ROOT = Path(__file__).resolve().parents[2]
ALLREDUCE_FILE = str(ROOT / "validation/node/workloads/allreduce.py")
SWEEP = "--backend cpu --min-bytes 1024 --max-bytes 1048576 --factor 4 --iters 5 --warmup 2 --timeout 60"
# How every node's rank is launched (180 s: the workload's 60 s timeout and 120 s to start and join)
TORCHRUN = r"^timeout 180 python3 -m torch\.distributed\.run "
# A remote testinfra host gets the workload's source as a file first
REMOTE_TORCHRUN = r"^cat > /tmp/npuenv_allreduce\.py <<'NPUENV_WORKLOAD_EOF'\n"


def allreduce_json(world_size=2, **changes) -> str:
    return json.dumps({**ALLREDUCE_OK, "world_size": world_size, **changes}) + "\n"


HUNG = {"ok": False, "timed_out": True, "world_size": 4, "timeout_s": 60, "rows": [], "stuck_ranks": [2, 3],
        "stuck_nodes": [1], "error": "all_reduce of 1 KiB did not complete within 60 s on 4 ranks; rank(s) 2, 3 "
                                     "(node rank(s) 1) never reached it: a rank is stuck or a link is down"}
# torchrun's own words when the rendezvous never completes, then `timeout` kills it (exit 124)
NEVER_JOINED = ("[W socket.cpp:601] [c10d] The client socket has timed out after 900s while trying to connect to "
                "(10.0.0.5, 29512).\n")


def fleet_node(rank=1, size=2, master="10.0.0.5", **changes):
    """The options of a node in the fleet phase (validation/node/runner.py --fleet)."""
    return options(fleet_size=size, fleet_rank=rank, fleet_master=master, **changes)


def node_allreduce(probe, **changes):
    return run_check(full.test_allreduce_across_nodes, pytestconfig=None, probe=probe, options=fleet_node(**changes))


def test_a_node_runs_its_own_rank_from_the_workload_file():
    probe = FakeProbe(local=True).answer(TORCHRUN, 0, "warmup\n" + allreduce_json())
    out = node_allreduce(probe, rank=1)
    assert out.passed
    assert probe.runs == [f"timeout 180 python3 -m torch.distributed.run --nnodes=2 --node-rank=1 --nproc-per-node=1 "
                          f"--master-addr=10.0.0.5 --master-port=29512 --max-restarts=0 {ALLREDUCE_FILE} {SWEEP}"]
    # the bandwidth table is kept by rank 0 alone
    assert out.data == []
    probe = FakeProbe(local=True).answer(TORCHRUN, 0, allreduce_json())
    out = node_allreduce(probe, rank=0, nproc=1)
    assert out.passed and out.data == [{"backend": "npu", "world_size": 2, "sizes": ALLREDUCE_OK["rows"]}]
    assert "--node-rank=0 " in probe.runs[0]


def test_a_remote_node_gets_the_workloads_source():
    probe = FakeProbe().answer(REMOTE_TORCHRUN, 0, allreduce_json(world_size=4))
    assert node_allreduce(probe, nproc=2, fleet_port=29600).passed
    assert probe.runs == [f"cat > /tmp/npuenv_allreduce.py <<'NPUENV_WORKLOAD_EOF'\n{workloads.script('allreduce')}\n"
                          "NPUENV_WORKLOAD_EOF\n"
                          "timeout 180 python3 -m torch.distributed.run --nnodes=2 --node-rank=1 --nproc-per-node=2 "
                          "--master-addr=10.0.0.5 --master-port=29600 --max-restarts=0 /tmp/npuenv_allreduce.py "
                          f"{SWEEP}"]


def test_the_master_address_reaches_the_shell_quoted():
    probe = FakeProbe(local=True).answer(TORCHRUN, 0, allreduce_json())
    assert node_allreduce(probe, master="node-a; reboot").passed
    assert " --master-addr='node-a; reboot' --master-port=29512 " in probe.runs[0]


def test_a_peer_that_never_joins_fails_as_not_finished():
    probe = FakeProbe(local=True).answer(TORCHRUN, 124, "", NEVER_JOINED)
    out = node_allreduce(probe)
    assert out.failure == {
        "summary": "the all_reduce across 2 nodes did not finish within 180 s",
        "expected": "every node joins the rendezvous and the sweep completes", "found": NEVER_JOINED.strip(),
        "cause": "a node did not join the rendezvous at 10.0.0.5:29512, or a rank hung",
        "fix": "see which nodes of the fleet report failed or unreachable for this check"}
    assert out.data == []


def test_a_hung_collective_records_the_nodes_it_waited_for():
    # the workload's own timeout fired: its JSON names the node whose ranks never reached the all_reduce
    probe = FakeProbe(local=True).answer(TORCHRUN, 1, "warmup\n" + allreduce_json(**HUNG), "")
    out = node_allreduce(probe, rank=0, nproc=2)
    assert out.data == [{"stuck_nodes": [1]}]
    assert out.failure == {"summary": "the all_reduce across 2 nodes hung", "expected": "completes within 60 s",
                           "found": HUNG["error"], "cause": "a rank is stuck or a link between devices is down",
                           "fix": "check every device's link (hccn_tool -link -g) and that no process holds a device"}
    # the JSON came before `timeout` killed torchrun: still the hang, with its stuck nodes
    probe = FakeProbe(local=True).answer(TORCHRUN, 124, allreduce_json(**HUNG), "")
    out = node_allreduce(probe, rank=1, nproc=2)
    assert out.data == [{"stuck_nodes": [1]}] and out.failure["summary"] == "the all_reduce across 2 nodes hung"
    # no stuck node named: nothing recorded
    probe = FakeProbe(local=True).answer(TORCHRUN, 1, allreduce_json(**{**HUNG, "stuck_nodes": []}), "")
    assert node_allreduce(probe, rank=0, nproc=2).data == []


def test_a_rank_that_printed_nothing_fails_with_its_output():
    probe = FakeProbe(local=True).answer(TORCHRUN, 1, "", "torch.distributed.elastic.multiprocessing.errors."
                                                          "ChildFailedError: allreduce.py FAILED\n")
    out = node_allreduce(probe)
    assert out.failure == {"summary": "the all_reduce across 2 nodes workload did not run",
                           "expected": "a JSON result line",
                           "found": "torch.distributed.elastic.multiprocessing.errors.ChildFailedError: "
                                    "allreduce.py FAILED",
                           "cause": "not a failure npuenv can explain; the check saw: torch.distributed.elastic."
                                    "multiprocessing.errors.ChildFailedError: allreduce.py FAILED",
                           "fix": LOOK_CLOSER}


def test_a_node_missing_from_the_world_fails():
    probe = FakeProbe(local=True).answer(TORCHRUN, 0, allreduce_json(world_size=2))
    out = node_allreduce(probe, nproc=2, size=2, fleet_port=29600)
    assert out.failure == {"summary": "not every node joined the all_reduce", "expected": "world size 4",
                           "found": "world size 2", "cause": "a node cannot reach the master",
                           "fix": "check that port 29600 on 10.0.0.5 is reachable"}


def test_wrong_sums_across_nodes_fail_on_every_node():
    rows = [row(1024), row(4096, correct=False, bad_ranks=(1,))]
    bad = allreduce_json(rows=rows, ok=False, all_correct=False, error="all_reduce of 4 KiB gave wrong sums")
    for rank in (0, 1):
        out = node_allreduce(FakeProbe(local=True).answer(TORCHRUN, 0, bad), rank=rank)
        assert (out.failure["summary"], out.failure["found"]) == (
            "the all_reduce across 2 nodes returned wrong sums", "4096 B: ranks [1]")


# controller mode: pytest --hosts=a,b runs every rank from here through testinfra

@dataclass
class FakeHost:
    """A remote testinfra host: ``run`` answers the command inside HostProbe's
    ``bash -lc '...'`` from a FakeProbe table."""
    name: str
    probe: FakeProbe = field(default_factory=FakeProbe)

    @property
    def backend(self):
        return SimpleNamespace(NAME="ssh", get_pytest_id=lambda: self.name)

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


def controller_allreduce(config, **changes):
    # the probe of the host pytest runs on is not used: every rank runs on the fleet's hosts
    return run_check(full.test_allreduce_across_nodes, pytestconfig=config, probe=FakeProbe(),
                     options=options(**changes))


def test_the_controller_runs_every_rank_and_judges_rank_0(fleet):
    config, (a, b) = fleet("node-a", "node-b")
    a.probe.answer(r"^hostname -I$", 0, "10.88.0.11 fd00::11 \n").answer(REMOTE_TORCHRUN, 0,
                                                                         "warmup\n" + allreduce_json())
    b.probe.answer(REMOTE_TORCHRUN, 0, "")
    out = controller_allreduce(config)
    assert out.passed and out.data == [{"backend": "npu", "world_size": 2, "sizes": ALLREDUCE_OK["rows"]}]
    for rank, host in enumerate((a, b)):
        assert host.probe.runs[-1].endswith(
            f"\ntimeout 180 python3 -m torch.distributed.run --nnodes=2 --node-rank={rank} --nproc-per-node=1 "
            f"--master-addr=10.88.0.11 --master-port=29512 --max-restarts=0 /tmp/npuenv_allreduce.py {SWEEP}")
    assert a.probe.runs[0] == "hostname -I"


def test_the_controller_reports_a_node_missing_from_the_world(fleet):
    config, (a, b) = fleet("node-a", "node-b")
    a.probe.answer(r"^hostname -I$", 0, "10.88.0.11\n").answer(REMOTE_TORCHRUN, 0, allreduce_json(world_size=1))
    b.probe.answer(REMOTE_TORCHRUN, 1, "", "connection refused\n")
    f = controller_allreduce(config).failure
    assert f == {"summary": "not every node joined the all_reduce", "expected": "world size 2",
                 "found": "world size 1", "cause": "a node cannot reach the master",
                 "fix": "check that port 29512 on 10.88.0.11 is reachable"}


def test_the_controller_reports_a_peer_that_never_joined(fleet):
    config, (a, b) = fleet("node-a", "node-b")
    a.probe.answer(r"^hostname -I$", 0, "10.88.0.11\n").answer(REMOTE_TORCHRUN, 124, "", "rendezvous timed out\n")
    b.probe.answer(REMOTE_TORCHRUN, 255, "", "ssh: connect to host node-b port 22: No route to host\n")
    out = controller_allreduce(config)
    assert (out.failure["summary"], out.failure["found"], out.failure["cause"]) == (
        "the all_reduce across 2 nodes did not finish within 180 s", "rendezvous timed out",
        "a node did not join the rendezvous at 10.88.0.11:29512, or a rank hung")


def test_the_controller_records_the_stuck_nodes_rank_0_names(fleet):
    config, (a, b) = fleet("node-a", "node-b")
    a.probe.answer(r"^hostname -I$", 0, "10.88.0.11\n").answer(REMOTE_TORCHRUN, 1, allreduce_json(**HUNG))
    b.probe.answer(REMOTE_TORCHRUN, 124, "", "")
    out = controller_allreduce(config, nproc=2)
    assert out.data == [{"stuck_nodes": [1]}]
    assert out.failure["summary"] == "the all_reduce across 2 nodes hung"


def test_the_controller_reports_output_without_a_result(fleet):
    config, (a, b) = fleet("node-a", "node-b")
    a.probe.answer(r"^hostname -I$", 0, "10.88.0.11\n").answer(REMOTE_TORCHRUN, 1, "", "torchrun: rendezvous "
                                                                                      "timed out\n")
    b.probe.answer(REMOTE_TORCHRUN, 1, "", "")
    f = controller_allreduce(config).failure
    assert (f["summary"], f["found"], f["cause"], f["fix"]) == (
        "the all_reduce across 2 nodes workload did not run", "torchrun: rendezvous timed out",
        "not a failure npuenv can explain; the check saw: torchrun: rendezvous timed out", LOOK_CLOSER)


def test_the_controller_needs_two_hosts(fleet):
    config, _ = fleet("node-a")
    assert controller_allreduce(config).skipped == "needs two or more hosts, 1 given"
    assert run_check(full.test_netdetect_peers, pytestconfig=config, probe=FakeProbe(), facts=healthy_facts(),
                     stack=stack(), options=options()).skipped == "needs two or more hosts, 1 given"
    config, (a, b) = fleet("node-a", "node-b")
    a.probe.answer(r"^hostname -I$", 0, "10.88.0.11\n").answer(REMOTE_TORCHRUN, 0, allreduce_json())
    b.probe.answer(REMOTE_TORCHRUN, 0, "")
    assert controller_allreduce(config).skipped is None


# ------------------------------------------------------------------ netdetect between peers

def ping_reply(target: str, received: int = 3) -> str:
    # the capture's lines (FORMAT_NOTES section 5): PING line, then the packet summary
    loss = "%.2f" % (100 * (3 - received) / 3)
    return (f"device 0 PING {target}\n"
            f"3 packets transmitted, {received} received, {loss}% packet loss\n")


PING_CAUSE = "the RoCE network between these nodes is down or misconfigured (device IP, netmask, switch)"
PING_FIX = "hccn_tool -i N -ping -g address PEER from both ends; check the leaf switch ports"


def node_netdetect(probe, facts=None, peer_ips=""):
    return run_check(full.test_netdetect_peers, pytestconfig=None, probe=probe, facts=facts or healthy_facts(),
                     stack=stack(), options=fleet_node(peer_ips=peer_ips))


PEER_IPS = ",".join(f"{d}=192.168.2.{10 + d}" for d in range(8))


def test_a_node_pings_the_same_device_of_its_peer():
    probe = FakeProbe().answer(rf"^{HCCN} -i \d -ping -g address 192\.168\.2\.1\d$", 0, ping_reply("x"))
    assert node_netdetect(probe, peer_ips=PEER_IPS).passed
    assert probe.runs == [f"{HCCN} -i {d} -ping -g address 192.168.2.{10 + d}" for d in range(8)]


def test_a_path_that_loses_packets_fails_on_the_node():
    probe = FakeProbe().answer(r"-ping -g address", 0, ping_reply("x"))
    probe.answer(rf"^{HCCN} -i 1 -ping -g address 192\.168\.2\.11$", 0, ping_reply("192.168.2.11", received=0))
    probe.answer(rf"^{HCCN} -i 6 -ping -g address 192\.168\.2\.16$", 0, ping_reply("192.168.2.16", received=2))
    out = node_netdetect(probe, peer_ips=PEER_IPS)
    assert out.failure == {"summary": "2 NPU-to-NPU path(s) between nodes do not answer",
                           "expected": "every device reaches the same device of the next node",
                           "found": "this node device 1 -> 192.168.2.11; this node device 6 -> 192.168.2.16",
                           "cause": PING_CAUSE, "fix": PING_FIX}


def test_a_device_without_an_ip_on_either_side_fails_on_the_node():
    facts = healthy_facts(network=network_facts({0: None, 1: "192.168.1.11", 2: "192.168.1.12"}))
    probe = FakeProbe().answer(r"-ping -g address", 0, ping_reply("x"))
    out = node_netdetect(probe, facts, peer_ips="0=192.168.2.10,1=192.168.2.11")
    assert out.failure["found"] == ("this node device 0: no device IP to ping with; "
                                    "this node device 2: no device IP to ping with")
    assert probe.runs == [f"{HCCN} -i 1 -ping -g address 192.168.2.11"]
    # without the peer's addresses nothing can be pinged: no pass
    out = node_netdetect(FakeProbe(), peer_ips="")
    assert out.failure["summary"] == "8 NPU-to-NPU path(s) between nodes do not answer"


def test_the_node_pings_from_the_ports_facts_name():
    # ports are the chips' physical ids where the table prints them (facts.network_port)
    facts = healthy_facts(network=network_facts({9: "192.168.1.19"}))
    probe = FakeProbe().answer(rf"^{HCCN} -i 9 -ping -g address 192\.168\.2\.19$", 0, ping_reply("192.168.2.19"))
    assert node_netdetect(probe, facts, peer_ips="9=192.168.2.19").passed


def test_a_peer_address_reaches_the_shell_quoted():
    facts = healthy_facts(network=network_facts({0: "192.168.1.10"}))
    probe = FakeProbe().answer(r"-ping -g address", 0, ping_reply("x"))
    node_netdetect(probe, facts, peer_ips="0=192.168.2.10;reboot")
    assert probe.runs == [f"{HCCN} -i 0 -ping -g address '192.168.2.10;reboot'"]


def test_unparseable_ping_answer_is_a_failure():
    facts = healthy_facts(network=network_facts({0: "192.168.1.10"}))
    probe = FakeProbe().answer(r"-ping -g", 1, sample("npu-smi_error_-8020_device_used.txt"))
    assert node_netdetect(probe, facts, peer_ips="0=192.168.2.10").failure["found"] == \
        "this node device 0 -> 192.168.2.10"


# controller mode: the facts of every host (collect() over its probe), then each host pings the next

def netdetect_fleet(fleet, monkeypatch, *names, ips=None):
    """Hosts answering what collect() asks (8 x 910B3, ports 0..7) with device IPs
    192.168.<n>.1x on the n-th host (or ``ips``: one dict per host)."""
    config, hosts = fleet(*names)
    for n, h in enumerate(hosts, 1):
        answer_node(h.probe, ips=ips[n - 1] if ips else {p: f"192.168.{n}.{10 + p}" for p in range(8)})
    monkeypatch.setattr(facts_mod, "HostProbe", lambda host: host.probe)
    return config, hosts


def controller_netdetect(config):
    return run_check(full.test_netdetect_peers, pytestconfig=config, probe=FakeProbe(), facts=healthy_facts(),
                     stack=stack(), options=options())


def test_every_device_reaching_its_peer_passes(fleet, monkeypatch):
    config, (a, b) = netdetect_fleet(fleet, monkeypatch, "node-a", "node-b")
    for dev in range(8):
        a.probe.answer(rf"^{HCCN} -i {dev} -ping -g address 192\.168\.2\.{10 + dev}$", 0,
                       ping_reply(f"192.168.2.{10 + dev}"))
        b.probe.answer(rf"^{HCCN} -i {dev} -ping -g address 192\.168\.1\.{10 + dev}$", 0,
                       ping_reply(f"192.168.1.{10 + dev}"))
    assert controller_netdetect(config).passed
    assert [c for c in a.probe.answered if "-ping" in c] == [
        f"{HCCN} -i {d} -ping -g address 192.168.2.{10 + d}" for d in range(8)]


def test_a_path_that_loses_packets_fails(fleet, monkeypatch):
    config, (a, b) = netdetect_fleet(fleet, monkeypatch, "node-a", "node-b")
    a.probe.answer(r"-ping -g address", 0, ping_reply("x"))
    a.probe.answer(r"-ping -g address 192\.168\.2\.11$", 0, ping_reply("192.168.2.11", received=0))
    b.probe.answer(r"-ping -g address", 0, ping_reply("x"))
    b.probe.answer(r"-ping -g address 192\.168\.1\.1[03]$", 0, ping_reply("192.168.1.10", received=2))
    f = controller_netdetect(config).failure
    assert f == {"summary": "3 NPU-to-NPU path(s) between nodes do not answer",
                 "expected": "every device reaches the same device of the next node",
                 "found": "node-a device 1 -> 192.168.2.11; node-b device 0 -> 192.168.1.10; "
                          "node-b device 3 -> 192.168.1.13",
                 "cause": PING_CAUSE, "fix": PING_FIX}


def test_a_device_without_ip_does_not_stop_the_others(fleet, monkeypatch):
    ips_a = {p: f"192.168.1.{10 + p}" if p != 0 else None for p in range(8)}
    ips_b = {p: f"192.168.2.{10 + p}" for p in range(8)}
    config, (a, b) = netdetect_fleet(fleet, monkeypatch, "node-a", "node-b", ips=[ips_a, ips_b])
    a.probe.answer(r"-ping -g address", 0, ping_reply("x"))
    a.probe.answer(r"-i 1 -ping -g", 0, ping_reply("192.168.2.11", received=0))
    b.probe.answer(r"-ping -g address", 0, ping_reply("x"))
    f = controller_netdetect(config).failure
    # node-a's device 0 has no IP to ping from, and node-b's device 0 none to ping
    assert f["found"] == ("node-a device 0: no device IP to ping with; node-a device 1 -> 192.168.2.11; "
                          "node-b device 0: no device IP to ping with")


def test_each_node_pings_the_next_one_round_the_ring(fleet, monkeypatch):
    config, hosts = netdetect_fleet(fleet, monkeypatch, "node-a", "node-b", "node-c")
    for h in hosts:
        h.probe.answer(r"-ping -g address", 0, ping_reply("x", received=0))
    f = controller_netdetect(config).failure
    assert f["summary"] == "24 NPU-to-NPU path(s) between nodes do not answer"
    # a -> b -> c -> a, ten paths named
    assert f["found"] == "; ".join([f"node-a device {d} -> 192.168.2.{10 + d}" for d in range(8)] +
                                   [f"node-b device {d} -> 192.168.3.{10 + d}" for d in range(2)])
    assert [c for c in hosts[2].probe.answered if "-ping" in c][0] == f"{HCCN} -i 0 -ping -g address 192.168.1.10"

"""Full level: DDP across the local devices, the bandwidth sweep against a
floor, an all_reduce across every node (torchrun) and netdetect between peers."""
from __future__ import annotations

import concurrent.futures
import shlex

import pytest
import testinfra

from validation.node import facts as facts_mod, workloads
from validation.node.vendor_tools.common import VendorOutputError
from validation.node.vendor_tools.hccn_tool import parse_ping
from validation.node.suite.test_standard import _answered, _completed, allreduce, check_allreduce, device_ips

pytestmark = pytest.mark.full

def test_ddp(workload, options, check):
    nproc = f"--nproc {options['nproc']}" if options["nproc"] else ""
    result, text = workload("ddp", f"{nproc} --steps 10 --timeout {options['timeout']}")
    _answered(check, result, text, "DDP", ("ranks", "loss_fell_all_ranks", "params_equal", "max_param_diff"))
    falling = [r["rank"] for r in result.get("ranks", []) if not r["loss_fell"]]
    check(result["loss_fell_all_ranks"], "DDP's loss did not fall on every rank", expected="loss falls on all ranks",
          found=f"not on rank(s) {falling}", cause="gradients are not synchronised", fix="check the collectives")
    check(result["params_equal"], "parameters differ across ranks after a DDP step",
          expected="identical parameters on every rank", found=f"max difference {result['max_param_diff']}",
          cause="all_reduce of gradients is wrong or incomplete", fix="run the all_reduce checks")
    _completed(check, result, text, "DDP")


def test_bandwidth_sweep(workload, options, check):
    result, text = allreduce(workload, options, options["max_bytes"])
    check_allreduce(check, result, text, "the all_reduce bandwidth sweep")
    largest = result["rows"][-1]
    floor = options["busbw_floor"]
    check(largest["busbw_gbps"] >= floor, f"busbw {largest['busbw_gbps']:.3f} GB/s at {largest['bytes']} B "
          f"is below the floor {floor} GB/s", expected=f">= {floor} GB/s", found=f"{largest['busbw_gbps']:.3f} GB/s",
          cause="a slow or degraded link (or another job using the devices)", fix="compare with the other nodes; "
          "check `hccn_tool -i N -link -g` speeds and `npu-smi info` for other processes")


def _fleet(pytestconfig):
    """The testinfra hosts of a controller-side run (pytest --hosts=a,b,...)."""
    specs = [h for h in (pytestconfig.getoption("hosts") or "").split(",") if h]
    if len(specs) < 2:
        pytest.skip(f"needs two or more hosts, {len(specs)} given")
    return [testinfra.get_host(spec) for spec in specs]


def allreduce_rank(probe, options, nnodes: int, rank: int, master: str) -> tuple[int, str, str]:
    """This node's part of the all_reduce across nodes: torchrun with a static
    rendezvous on ``master``, one process per device (or --npuenv-nproc)."""
    nproc = options["nproc"] or 1
    args = (f"--backend {options['backend']} --min-bytes 1024 --max-bytes 1048576 --factor 4 --iters 5 "
            f"--warmup 2 --timeout {options['timeout']}")
    launch = (f"timeout {options['timeout'] + 120} python3 -m torch.distributed.run --nnodes={nnodes} "
              f"--node-rank={rank} --nproc-per-node={nproc} --master-addr={shlex.quote(master)} "
              f"--master-port={options['fleet_port']} --max-restarts=0")
    if probe.is_local:
        return probe.run(f"{launch} {shlex.quote(str(workloads.source_path('allreduce')))} {args}")
    # A remote testinfra host: the workload's joined source as a file, for torchrun.
    marker = "NPUENV_WORKLOAD_EOF"
    return probe.run(f"cat > /tmp/npuenv_allreduce.py <<'{marker}'\n{workloads.script('allreduce')}\n{marker}\n"
                     f"{launch} /tmp/npuenv_allreduce.py {args}")


@pytest.mark.fleet
def test_allreduce_across_nodes(pytestconfig, probe, options, check):
    nproc = options["nproc"] or 1
    if options["fleet_size"]:
        # On a node, in the fleet phase: every node runs its rank at the same time.
        nnodes, rank, master = options["fleet_size"], options["fleet_rank"], options["fleet_master"]
        rc, out, err = allreduce_rank(probe, options, nnodes, rank, master)
    else:
        hosts = _fleet(pytestconfig)
        probes = [facts_mod.HostProbe(h) for h in hosts]
        _, addr, _ = probes[0].run("hostname -I")
        nnodes, rank, master = len(hosts), 0, addr.split()[0]
        with concurrent.futures.ThreadPoolExecutor(nnodes) as pool:
            outcomes = list(pool.map(lambda r: allreduce_rank(probes[r], options, nnodes, r, master), range(nnodes)))
        rc, out, err = outcomes[0]
    result = workloads.last_json(out)
    what = f"the all_reduce across {nnodes} nodes"
    if result and result.get("stuck_nodes"):
        # the ranks this node waited for: the controller names their nodes
        check.record({"stuck_nodes": result["stuck_nodes"]})
    check(result is not None or rc != 124, f"{what} did not finish within {options['timeout'] + 120} s",
          expected="every node joins the rendezvous and the sweep completes", found=(out + err).strip()[-600:],
          cause=f"a node did not join the rendezvous at {master}:{options['fleet_port']}, or a rank hung",
          fix="see which nodes of the fleet report failed or unreachable for this check")
    # Every node checks the sums; the bandwidth table is kept once, by rank 0.
    check_allreduce(check, result, out + err, what, record=rank == 0)
    check(result["world_size"] == nnodes * nproc, "not every node joined the all_reduce",
          expected=f"world size {nnodes * nproc}", found=f"world size {result['world_size']}",
          cause="a node cannot reach the master", fix=f"check that port {options['fleet_port']} on {master} is reachable")


def ping_peer(probe, hccn: str, own: dict, peer: dict, name: str) -> list[str]:
    """Ping the same device of the peer from each device; the paths that fail."""
    failures = []
    for dev, ip in own.items():
        target = peer.get(dev)
        if not ip or not target:
            failures.append(f"{name} device {dev}: no device IP to ping with")
            continue
        _, out, _ = probe.run(f"{hccn} -i {dev} -ping -g address {shlex.quote(target)}")
        try:
            ok = parse_ping(out).ok
        except VendorOutputError:
            ok = False
        if not ok:
            failures.append(f"{name} device {dev} -> {target}")
    return failures


def parse_peer_ips(text: str) -> dict[int, str]:
    """--npuenv-peer-ips DEVICE=IP,...: the next node's device addresses."""
    out = {}
    for item in filter(None, text.split(",")):
        dev, _, ip = item.partition("=")
        out[int(dev)] = ip
    return out


@pytest.mark.fleet
def test_netdetect_peers(pytestconfig, probe, facts, stack, options, check):
    hccn = stack["paths"]["hccn_tool"]
    if options["fleet_size"]:
        own = device_ips(facts)
        failures = ping_peer(probe, hccn, own, parse_peer_ips(options["peer_ips"]), "this node")
    else:
        hosts = _fleet(pytestconfig)
        probes = [facts_mod.HostProbe(h) for h in hosts]
        ips = [device_ips(facts_mod.collect(p)) for p in probes]
        failures = []
        for i, p in enumerate(probes):
            failures += ping_peer(p, hccn, ips[i], ips[(i + 1) % len(probes)], hosts[i].backend.get_pytest_id())
    check(not failures, f"{len(failures)} NPU-to-NPU path(s) between nodes do not answer",
          expected="every device reaches the same device of the next node", found="; ".join(failures[:10]),
          cause="the RoCE network between these nodes is down or misconfigured (device IP, netmask, switch)",
          fix="hccn_tool -i N -ping -g address PEER from both ends; check the leaf switch ports")

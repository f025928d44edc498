"""Full level: DDP across the local devices, the bandwidth sweep against a
floor, an all_reduce across every node (torchrun) and netdetect between peers."""
from __future__ import annotations

import concurrent.futures
import json
import shlex

import pytest
import testinfra

from validation import facts as facts_mod, vendor_tools, workloads
from validation.suite.test_standard import _answered, _completed, allreduce, check_allreduce

pytestmark = pytest.mark.full

MASTER_PORT = 29512


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
    specs = [h for h in (pytestconfig.getoption("hosts") or "").split(",") if h]
    if len(specs) < 2:
        pytest.skip(f"needs two or more hosts, {len(specs)} given")
    return [testinfra.get_host(spec) for spec in specs]


def test_allreduce_across_nodes(pytestconfig, options, stack, check):
    hosts = _fleet(pytestconfig)
    probes = [facts_mod.HostProbe(h) for h in hosts]
    _, addr, _ = probes[0].run("hostname -I")
    master = addr.split()[0]
    nproc = options["nproc"] or 1
    script = workloads.script("allreduce")
    marker = "NPUENV_WORKLOAD_EOF"

    def run(rank):
        command = (f"cat > /tmp/npuenv_allreduce.py <<'{marker}'\n{script}\n{marker}\n"
                   f"timeout {options['timeout'] + 120} python3 -m torch.distributed.run --nnodes={len(hosts)} "
                   f"--node-rank={rank} --nproc-per-node={nproc} --master-addr={master} --master-port={MASTER_PORT} "
                   f"/tmp/npuenv_allreduce.py --backend {options['backend']} --min-bytes 1024 --max-bytes 1048576 "
                   f"--factor 4 --iters 5 --warmup 2 --timeout {options['timeout']}")
        return probes[rank].run(command)

    with concurrent.futures.ThreadPoolExecutor(len(hosts)) as pool:
        outcomes = list(pool.map(run, range(len(hosts))))
    rc, out, err = outcomes[0]
    result = None
    for line in reversed(out.strip().splitlines()):
        if line.startswith("{"):
            result = json.loads(line)
            break
    check_allreduce(check, result, out + err, f"the all_reduce across {len(hosts)} nodes")
    check(result["world_size"] == len(hosts) * nproc, "not every node joined the all_reduce",
          expected=f"world size {len(hosts) * nproc}", found=f"world size {result['world_size']}",
          cause="a node cannot reach the master", fix=f"check that port {MASTER_PORT} on {master} is reachable")


def test_netdetect_peers(pytestconfig, stack, check):
    hosts = _fleet(pytestconfig)
    probes = [facts_mod.HostProbe(h) for h in hosts]
    hccn = stack["paths"]["hccn_tool"]
    ips = []
    for p in probes:
        devices = {}
        for chip in facts_mod.collect(p)["devices"]:
            dev = chip["phy_id"] if chip["phy_id"] is not None else chip["npu"]
            _, out, _ = p.run(f"{hccn} -i {dev} -ip -g")
            try:
                conf = vendor_tools.parse_ip(out)
            except vendor_tools.VendorOutputError:
                conf = None
            devices[dev] = conf.address if conf else None
        ips.append(devices)
    failures = []
    for i, p in enumerate(probes):
        peer = ips[(i + 1) % len(probes)]
        for dev, ip in ips[i].items():
            target = peer.get(dev)
            if not ip or not target:
                failures.append(f"{hosts[i].backend.get_pytest_id()} device {dev}: no device IP to ping with")
                continue
            _, out, err = p.run(f"{hccn} -i {dev} -ping -g address {shlex.quote(target)}")
            try:
                ok = vendor_tools.parse_ping(out).ok
            except vendor_tools.VendorOutputError:
                ok = False
            if not ok:
                failures.append(f"{hosts[i].backend.get_pytest_id()} device {dev} -> {target}")
    check(not failures, f"{len(failures)} NPU-to-NPU path(s) between nodes do not answer",
          expected="every device reaches the same device of the next node", found="; ".join(failures[:10]),
          cause="the RoCE network between these nodes is down or misconfigured (device IP, netmask, switch)",
          fix="hccn_tool -i N -ping -g address PEER from both ends; check the leaf switch ports")

#!/usr/bin/env python3
"""Simulated hccl_test binary (all_reduce_test and friends, under the toolkit's
tools/hccl_test/bin): one process per rank, launched by mpirun, printing what
the real binaries print. Standalone (stdlib only).

What the real tool prints, from its source and docs (FORMAT_NOTES.md section 6):
- root rank: ``the minbytes is %llu, maxbytes is %llu, iters is %d, warmup_iters is %d``;
- root rank: the header ``%-15s | %-12s | %-18s | %s`` of ``data_size(Bytes):``,
  ``aveg_time(us):`` (sic), ``alg_bandwidth(GB/s):``, ``check_result:``, then per
  size ``%-17llu | %-14.2f | %-20.5f | success|failed|NULL`` (NULL with -c 0);
- a failing HCCL call: ``hccl interface return err <file>:<line>, retcode: N ``
  then ``This is an error in <function>.`` on the rank that failed.

The rank comes from MPICH's PMI_RANK / PMI_SIZE or Open MPI's
OMPI_COMM_WORLD_RANK / OMPI_COMM_WORLD_SIZE. Rank r uses the device of logic id
r (HCCL_TEST_USE_DEVS is not simulated). Timings are designed: latency plus the
bytes over the bus bandwidth the state gives ("hccl_busbw_gbps", default 150).

Failures from the device state: a rank whose device is held elsewhere ("busy")
fails HcclCommInitRootInfo with retcode 7 (resource unavailable); a device in
Critical health or with its link DOWN on a multi-rank run makes the check of
that size fail. Exit codes: 0 success, 1 an HCCL error or a failed check.
"""
import json
import os
import sys

ROOT = os.environ.get("NPU_SIM_ROOT", "")
OPS = ("all_reduce", "all_gather", "reduce_scatter", "broadcast", "reduce", "alltoall", "alltoallv")
# nccl-tests' busbw factors: the simulated bus bandwidth becomes the printed algbw.
FACTORS = {"all_reduce": lambda n: 2 * (n - 1) / n, "all_gather": lambda n: (n - 1) / n,
           "reduce_scatter": lambda n: (n - 1) / n, "alltoall": lambda n: (n - 1) / n,
           "alltoallv": lambda n: (n - 1) / n, "broadcast": lambda n: 1.0, "reduce": lambda n: 1.0}
USAGE = ("Usage: {prog} [-b <minbytes>] [-e <maxbytes>] [-f <stepfactor>] [-o <operator>] [-r <root>] "
         "[-d <datatype>] [-n <iters_count>] [-w <warmup_iters_count>] [-c <0/1>] [-p <npus>]\n")


def size(text):
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:].upper(), 1)
    number = text[:-1] if mult > 1 else text
    if not number.isdigit():
        raise ValueError(text)
    return int(number) * mult


def parse(argv, prog):
    opts = {"-b": "64M", "-e": "64M", "-f": "2", "-o": "sum", "-d": "fp32", "-n": "20", "-w": "5", "-c": "1"}
    i = 0
    while i < len(argv):
        if argv[i] in ("-b", "-e", "-f", "-o", "-r", "-d", "-n", "-w", "-c", "-p") and i + 1 < len(argv):
            opts[argv[i]] = argv[i + 1]
            i += 2
        else:
            sys.stdout.write(USAGE.format(prog=prog))
            sys.exit(1)
    try:
        return size(opts["-b"]), size(opts["-e"]), int(opts["-f"]), int(opts["-n"]), int(opts["-w"]), opts["-c"] != "0"
    except ValueError:
        sys.stdout.write(USAGE.format(prog=prog))
        sys.exit(1)


def rank_and_size():
    for rank, size_ in (("PMI_RANK", "PMI_SIZE"), ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE")):
        if rank in os.environ:
            return int(os.environ[rank]), int(os.environ.get(size_, "1"))
    return 0, 1


def load_state():
    path = os.environ.get("NPU_SIM_STATE") or ROOT + "/etc/npu-sim/state.json"
    with open(path) as f:
        return json.load(f)


def main(argv, prog):
    op = os.path.basename(prog).removesuffix(".py").removesuffix("_test")
    op = op if op in OPS else "all_reduce"
    min_bytes, max_bytes, factor, iters, warmup, check = parse(argv, prog)
    rank, ranks = rank_and_size()
    state = load_state()
    dies = sorted((d for card in state["npus"] for d in card["chips"]), key=lambda d: d["logic_id"])
    if rank >= len(dies):
        sys.stdout.write(f"acl interface return err ./common/src/hccl_test_common.cc:402, retcode: 107001 \n")
        return 1
    die = dies[rank]
    if rank == 0:
        sys.stdout.write(f"the minbytes is {min_bytes}, maxbytes is {max_bytes}, iters is {iters}, "
                         f"warmup_iters is {warmup}\n")
    if any(d.get("busy") for d in dies[:ranks]):
        if die.get("busy"):
            sys.stdout.write("hccl interface return err ./common/src/hccl_test_common.cc:538, retcode: 7 \n"
                             "This is an error in init_hcclComm.\n")
        return 1
    broken = [d for d in dies[:ranks] if d["health"] == "Critical" or (ranks > 1 and d.get("link", "UP") != "UP")]
    busbw = float(state.get("hccl_busbw_gbps", 150.0))
    algbw_at_peak = busbw / FACTORS[op](ranks) if ranks > 1 and FACTORS[op](ranks) else busbw
    result = "NULL" if not check else ("failed" if broken else "success")
    data_size = min_bytes
    while data_size <= max_bytes:
        time_us = 20.0 + data_size / (algbw_at_peak * 1e3)
        algbw = data_size / (time_us * 1e3)
        if result == "failed" and die in broken:
            sys.stdout.write(f"local rank_id {rank}, check result failed, {data_size:<17} | {time_us:<14.2f} | "
                             f"{algbw:<20.5f} | failed\n")
        if rank == 0:
            if data_size == min_bytes:
                sys.stdout.write(f"{'data_size(Bytes):':<15} | {'aveg_time(us):':<12} | "
                                 f"{'alg_bandwidth(GB/s):':<18} | check_result:\n")
            sys.stdout.write(f"{data_size:<17} | {time_us:<14.2f} | {algbw:<20.5f} | {result}\n")
        data_size *= max(factor, 2)
    return 1 if result == "failed" else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], sys.argv[0]))

"""allreduce: all_reduce across every local device, one process per device, over a size sweep.

Each rank fills its float32 buffer with a rank-dependent integer pattern whose exact
sum is known, so every size's result is checked element by element on every rank.
Per size: bytes, time per all_reduce (the slowest rank's), algbw = bytes / time and
busbw = algbw * 2(n-1)/n (the nccl-tests all_reduce factor), GB/s with GB = 1e9.
The largest size, the figure the controller compares hosts by, is timed in --repeats
windows of --iters all_reduces (the row's own window first): their busbw are its repeats.

Processes: run plainly, the script is its own launcher: it starts --nproc workers
(default: one per NPU/GPU; 2 on cpu) with the torchrun environment (RANK,
WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT) and prints one merged JSON. Started
by torchrun (RANK/WORLD_SIZE set), each process is a normal worker and LOCAL_RANK 0
prints the JSON: multi-node is `torchrun --nnodes N --nproc-per-node D ... script`.

Bounds: every collective is watched; one that does not finish within --timeout ends
the run (exit 124) with a message naming the size and the ranks, and the launcher
kills the whole group. --hang-rank R makes rank R skip the first all_reduce (stuck),
to prove that bound; --corrupt-rank R perturbs rank R's input so the check must fail. --bare also times, per size in the same process group, a bare
torch.distributed loop (no watchdog marks) for the benchmark "suite vs bare".

CLI: python3 - [--backend B] [--timeout S] [--nproc N] [--min-bytes SIZE]
     [--max-bytes SIZE] [--factor 2|4] [--iters N] [--warmup N] [--repeats N]
     [--startup-timeout S] [--hang-rank R] [--corrupt-rank R] [--bare] < script
"""
if "_NPUENV_COMMON" not in globals():
    import os as _os

    _p = _os.path.join(_os.path.dirname(_os.path.abspath(__file__)), "_common.py")
    with open(_p) as _f:
        exec(compile(_f.read(), _p, "exec"))

HANG_HINT = "a rank is stuck or a link is down"


def allreduce_parser(run):
    p = run.parser("all_reduce size sweep across all local devices, checked and timed.", timeout=60)
    p.add_argument("--nproc", type=int, default=None,
                   help="processes on this node (default: one per NPU/GPU; 2 on cpu)")
    p.add_argument("--min-bytes", default="1K", help="smallest message (default %(default)s)")
    p.add_argument("--max-bytes", default=None, help="largest message (default 256M on npu/cuda, 4M on cpu)")
    p.add_argument("--factor", type=int, choices=(2, 4), default=2, help="size step (default %(default)s)")
    p.add_argument("--iters", type=int, default=20, help="timed all_reduces per size (default %(default)s)")
    p.add_argument("--warmup", type=int, default=5, help="untimed all_reduces per size (default %(default)s)")
    p.add_argument("--repeats", type=repeat_count, default=5,
                   help="timed windows of --iters all_reduces at the largest size, one busbw repeat each "
                        "(1 to %d; default %%(default)s)" % MAX_REPEATS)
    p.add_argument("--startup-timeout", type=float, default=300.0,
                   help="seconds a worker may take to start (import torch/torch_npu; default %(default)s)")
    p.add_argument("--hang-rank", type=int, default=None,
                   help="fault injection: this rank skips the first all_reduce, so the others hang")
    p.add_argument("--corrupt-rank", type=int, default=None,
                   help="fault injection: this rank adds 1 to one element of its input at every size's check")
    p.add_argument("--bare", action="store_true",
                   help="also time a bare torch.distributed loop per size and report the busbw ratio")
    return p


def sizes_from(args, backend_name):
    lo = parse_bytes(args.min_bytes, "--min-bytes")
    hi = parse_bytes(args.max_bytes, "--max-bytes") if args.max_bytes else (
        (256 << 20) if backend_name != "cpu" else (4 << 20))
    if lo < 4:
        raise UsageError("--min-bytes must be at least 4 (one float32), got %d" % lo)
    if hi < lo:
        raise UsageError("--max-bytes (%d) is smaller than --min-bytes (%d)" % (hi, lo))
    if args.iters < 1 or args.warmup < 0:
        raise UsageError("--iters must be at least 1 and --warmup at least 0")
    sizes = []
    s = lo
    while s <= hi:
        sizes.append((s // 4) * 4)
        s *= args.factor
    return sizes


def pattern_weights(n):
    """(weight of rank r, period m): every partial sum stays an exact float32 integer."""
    tri = n * (n + 1) // 2
    if tri * 2 <= 1 << 24:
        return (lambda r: r + 1), tri, max(2, min(251, (1 << 24) // tri))
    return (lambda r: 1), n, max(1, min(251, (1 << 24) // n))


def sweep(run, de, sizes):
    """One rank's part of the sweep. Returns the rows (complete on every rank)."""
    rows = []
    run.partial["rows"] = rows  # a timed-out step still reports the rows done so far
    for i, nbytes in enumerate(sizes):
        last = i == len(sizes) - 1
        label = "all_reduce of %s" % human_bytes(nbytes)
        figures = rank_figures(run, de, i, nbytes, label, last)
        row = size_row(nbytes, exchange_figures(run, de, figures, label), last, run.args.bare)
        rows.append(row)
        if de["rank"] == 0:
            emit_event("row", row=row)
    return rows


def filled_buffers(run, de, nbytes, label):
    """This rank's buffer of its pattern, and the sum every rank's buffers add up to."""
    be, wd = run.backend, run.watchdog
    torch = be.torch
    dev, count = be.device(de["local_rank"]), nbytes // 4
    weight, total, period = pattern_weights(de["world_size"])
    wd.watch("filling buffers for " + label, be.stuck_hint())
    idx = (torch.arange(count, device=dev, dtype=torch.int32) % period + 1).to(torch.float32)
    buf = idx * float(weight(de["rank"]))
    expected = idx * float(total)
    del idx
    be.synchronize()
    wd.done()
    return buf, expected


def hang_forever(rank, label):
    """--hang-rank: this rank never joins the first all_reduce, so the others wait in it."""
    emit_event("step", label="hang-rank fault: rank %d skips %s" % (rank, label))
    sys.stderr.write("allreduce: --hang-rank %d: skipping %s, sleeping\n" % (rank, label))
    sys.stderr.flush()
    while True:
        time.sleep(3600)


def rank_figures(run, de, i, nbytes, label, last):
    """This rank's figures for size i: [seconds per all_reduce, elements that summed wrong,
    seconds per bare all_reduce (0.0 without --bare)] + the largest size's other repeat windows."""
    args, be, wd = run.args, run.backend, run.watchdog
    import torch.distributed as dist

    buf, expected = filled_buffers(run, de, nbytes, label)
    if args.hang_rank == de["rank"] and i == 0:
        hang_forever(de["rank"], label)
    if args.corrupt_rank == de["rank"]:
        buf[nbytes // 4 // 2] += 1.0  # the middle element
    wd.watch(label, HANG_HINT)
    dist.all_reduce(buf)
    be.synchronize()
    mismatches = int(be.torch.ne(buf, expected).sum())
    for _ in range(args.warmup):
        wd.watch(label, HANG_HINT)
        dist.all_reduce(buf)
    be.synchronize()
    wd.done()

    def timed(watch_each):
        barrier(run, "barrier before timing " + label)
        if not watch_each:
            wd.watch("bare " + label, HANG_HINT)
        t0 = time.perf_counter()
        for _ in range(args.iters):
            if watch_each:
                wd.watch(label, HANG_HINT)
            dist.all_reduce(buf)
        be.synchronize()
        wd.done()
        return (time.perf_counter() - t0) / args.iters

    times = {}
    order = ("suite", "bare") if i % 2 == 0 else ("bare", "suite")
    for kind in order:
        if kind == "suite":
            times[kind] = timed(True)
        elif args.bare:
            times[kind] = timed(False)
    # Only the largest size is compared across hosts: only it pays for the repeats.
    more = [timed(True) for _ in range(args.repeats - 1)] if last else []
    return [times["suite"], float(mismatches), times.get("bare", 0.0)] + more


def exchange_figures(run, de, figures, label):
    """Every rank's figures (all_gather): one list per rank, in rank order."""
    be, wd = run.backend, run.watchdog
    torch = be.torch
    import torch.distributed as dist

    wd.watch("result exchange after " + label, HANG_HINT)
    stats = torch.tensor(figures, dtype=torch.float32, device=be.device(de["local_rank"]))
    gathered = [torch.zeros_like(stats) for _ in range(de["world_size"])]
    dist.all_gather(gathered, stats)
    g = torch.stack(gathered).cpu().tolist()
    wd.done()
    return g


def size_row(nbytes, g, last, bare):
    """One size's row from every rank's figures (g[rank], as rank_figures lists them)."""
    n = len(g)
    bus_factor = 2.0 * (n - 1) / n
    t = max(r[0] for r in g)
    algbw = nbytes / t / 1e9
    bad = [r for r in range(n) if g[r][1] > 0]
    row = {"bytes": nbytes, "count": nbytes // 4, "time_s": t, "algbw_gbps": algbw, "busbw_gbps": algbw * bus_factor,
           "correct": not bad, "mismatches": int(sum(r[1] for r in g)), "bad_ranks": bad}
    if last:
        # Each window's time is its slowest rank's, as the row's own (column 0) is.
        windows = [0] + list(range(3, len(g[0])))
        row["busbw_gbps_repeats"] = [sig(nbytes / max(r[w] for r in g) / 1e9 * bus_factor) for w in windows]
    if bare:
        bt = max(r[2] for r in g)
        row["bare_time_s"] = bt
        row["bare_algbw_gbps"] = nbytes / bt / 1e9
        row["bare_busbw_gbps"] = row["bare_algbw_gbps"] * bus_factor
    return row


def summarize(rows, args, n):
    out = {"rows": rows, "sizes": len(rows), "busbw_factor": 2.0 * (n - 1) / n,
           "all_correct": bool(rows) and all(r["correct"] for r in rows),
           "peak_busbw_gbps": max((r["busbw_gbps"] for r in rows), default=None)}
    if args.bare and rows:
        ratios = [r["busbw_gbps"] / r["bare_busbw_gbps"] for r in rows if r["bare_busbw_gbps"] > 0]
        out["bare_busbw_ratio"] = rows[-1]["busbw_gbps"] / rows[-1]["bare_busbw_gbps"]
        prod = 1.0
        for x in ratios:
            prod *= x
        out["bare_busbw_ratio_geomean"] = prod ** (1.0 / len(ratios)) if ratios else None
    return out


def verdict(summary, n):
    bad = [r for r in summary["rows"] if not r["correct"]]
    if not bad:
        return None
    r = bad[0]
    return ("all_reduce of %s gave wrong sums on %d ranks: %d mismatching elements on rank(s) %s "
            "(%d of %d sizes wrong)" % (human_bytes(r["bytes"]), n, r["mismatches"],
                                       ", ".join(map(str, r["bad_ranks"])), len(bad), len(summary["rows"])))


def check_fault_ranks(args, n):
    for opt in ("hang_rank", "corrupt_rank"):
        r = getattr(args, opt)
        if r is not None and not 0 <= r < n:
            raise UsageError("--%s %d is not a rank of %d processes" % (opt.replace("_", "-"), r, n))


def allreduce_body(run):
    args, be = run.args, run.backend
    sizes = sizes_from(args, be.name)
    common = {"iters": args.iters, "warmup": args.warmup, "repeats": args.repeats, "factor": args.factor,
              "dtype": "float32",
              "timeout_s": args.timeout, "hang_rank": args.hang_rank, "corrupt_rank": args.corrupt_rank,
              "bare": args.bare}
    if run.role == "launcher":
        nproc = resolve_nproc(be, args.nproc)
        check_fault_ranks(args, nproc)
        run.partial.update(common)
        run.partial.update({"launcher": "spawn", "world_size": nproc, "local_world_size": nproc, "nnodes": 1})
        outcome = launch_workers(run, nproc, args.timeout, args.startup_timeout)
        res0 = (outcome["results"].get(0) or {}).get("result") or {}
        run.adopt_versions(outcome["hello"].get(0) or {})
        rows = res0.get("rows") or [e["row"] for e in outcome["events"] if e.get("kind") == "row" and e["rank"] == 0]
        out = summarize(rows, args, nproc)
        out["exit_codes"] = outcome["exit_codes"]
        if outcome["failures"]:
            out["failures"] = outcome["failures"]
        if outcome["error"]:
            out.update({"ok": False, "error": outcome["error"], "timed_out": outcome["timed_out"],
                        "_exit_code": launch_exit_code(outcome)})
            return out
        err = verdict(out, nproc)
        out.update({"ok": err is None and len(rows) == len(sizes), "error": err})
        return out
    # a worker: spawned by the launcher above, or by torchrun
    de = dist_env()
    check_fault_ranks(args, de["world_size"])
    run.partial.update(common)
    run.partial.update({"launcher": "torchrun" if run.role == "torchrun" else "spawn", "rank": de["rank"],
                        "world_size": de["world_size"], "local_world_size": de["local_world_size"],
                        "nnodes": max(1, de["world_size"] // max(1, de["local_world_size"]))})
    run.start_watchdog(args.timeout)
    init_distributed(run, args.timeout)
    rows = sweep(run, de, sizes)
    finish_distributed(run)
    out = summarize(rows, args, de["world_size"])
    err = verdict(out, de["world_size"])
    out.update({"ok": err is None, "error": err})
    return out


if __name__ == "__main__":
    Run("allreduce", distributed=True).main(allreduce_parser, allreduce_body)

"""ddp: DistributedDataParallel across every local device, one process per device.

Each rank starts from differently seeded parameters (so DDP's initial broadcast is
exercised), trains a small MLP on its own shard of a fixed learnable regression
task for --steps steps, and the check is: the loss fell on every rank, the
parameters are bit-identical on all ranks after the steps (all_gather and compare,
with per-rank checksums reported) and they changed from the start.

Processes and bounds as in allreduce: the script launches --nproc workers itself
(default one per NPU/GPU, 2 on cpu) or runs as a torchrun worker; every step is
watched by --timeout.

CLI: python3 - [--backend B] [--timeout S] [--nproc N] [--steps N] [--lr F]
     [--startup-timeout S] < script
"""
if "_NPUENV_COMMON" not in globals():
    import os as _os

    _p = _os.path.join(_os.path.dirname(_os.path.abspath(__file__)), "_common.py")
    with open(_p) as _f:
        exec(compile(_f.read(), _p, "exec"))

DDP_HINT = "a rank is stuck or a link is down"


def ddp_parser(run):
    p = run.parser("DDP across all local devices: loss falls on every rank, parameters stay equal.", timeout=120)
    p.add_argument("--nproc", type=int, default=None,
                   help="processes on this node (default: one per NPU/GPU; 2 on cpu)")
    p.add_argument("--steps", type=int, default=20, help="training steps (default %(default)s)")
    p.add_argument("--lr", type=float, default=0.05, help="SGD learning rate (default %(default)s)")
    p.add_argument("--startup-timeout", type=float, default=300.0,
                   help="seconds a worker may take to start (import torch/torch_npu; default %(default)s)")
    return p


def flat_params(torch, model):
    return torch.cat([p.detach().reshape(-1).float() for p in model.parameters()])


def gather(run, tensor, label):
    torch = run.backend.torch
    import torch.distributed as dist

    run.watchdog.watch(label, DDP_HINT)
    out = [torch.zeros_like(tensor) for _ in range(dist.get_world_size())]
    dist.all_gather(out, tensor)
    result = [t.cpu() for t in out]
    run.watchdog.done()
    return result


def ddp_worker(run, de):
    args, be, wd = run.args, run.backend, run.watchdog
    torch = be.torch
    nn = torch.nn
    from torch.nn.parallel import DistributedDataParallel as DDP

    rank, n = de["rank"], de["world_size"]
    dev = be.device(de["local_rank"])
    torch.manual_seed(1000 + rank)  # different on purpose: DDP must broadcast rank 0's
    model = nn.Sequential(nn.Linear(16, 32), nn.Tanh(), nn.Linear(32, 1)).to(dev)
    before_wrap = flat_params(torch, model)
    wd.watch("DDP construction (parameter broadcast)", DDP_HINT)
    ddp = DDP(model, device_ids=[de["local_rank"]] if be.is_accelerator else None)
    be.synchronize()
    wd.done()
    start = flat_params(torch, model)

    g = torch.Generator().manual_seed(4242)  # the task: shared by all ranks
    w_true = torch.randn(16, 1, generator=g)
    gr = torch.Generator().manual_seed(100 + rank)  # this rank's shard
    x = torch.randn(256, 16, generator=gr)
    y = torch.tanh(x @ w_true) + 0.05 * torch.randn(256, 1, generator=gr)
    x, y = x.to(dev), y.to(dev)
    opt = torch.optim.SGD(ddp.parameters(), lr=args.lr, momentum=0.9)
    losses = torch.zeros(args.steps, device=dev)
    for i in range(args.steps):
        wd.watch("DDP step %d of %d (gradient all_reduce)" % (i + 1, args.steps), DDP_HINT)
        opt.zero_grad(set_to_none=True)
        loss = nn.functional.mse_loss(ddp(x), y)
        loss.backward()
        opt.step()
        losses[i] = loss.detach().float()
    be.synchronize()
    wd.done()
    end = flat_params(torch, model)
    loss_list = [float(v) for v in losses.cpu().tolist()]
    mine = torch.tensor([loss_list[0], loss_list[-1], 1.0 if loss_fell(loss_list) else 0.0], device=dev)

    befores = gather(run, before_wrap, "gathering the initial parameters")
    starts = gather(run, start, "gathering the broadcast parameters")
    ends = gather(run, end, "gathering the trained parameters")
    per_rank = gather(run, mine, "gathering the per-rank losses")
    ref = ends[0]
    max_diff = max(float((e - ref).abs().max()) for e in ends)
    return {
        "world_size": n,
        "steps": args.steps,
        "ranks": [{"rank": r, "first_loss": float(t[0]), "last_loss": float(t[1]), "loss_fell": bool(t[2] > 0)}
                  for r, t in enumerate(per_rank)],
        "loss_fell_all_ranks": all(bool(t[2] > 0) for t in per_rank),
        "initial_params_differed": any(not torch.equal(b, befores[0]) for b in befores[1:]),
        "broadcast_equal": all(torch.equal(s, starts[0]) for s in starts),
        "params_equal": all(torch.equal(e, ref) for e in ends),
        "max_param_diff": max_diff,
        "params_changed": not torch.equal(ends[0], starts[0]),
        "param_checksums": [float(e.double().sum()) for e in ends],
        "param_count": int(ref.numel()),
    }


def ddp_verdict(res):
    problems = []
    if not res.get("loss_fell_all_ranks"):
        bad = [r["rank"] for r in res.get("ranks", []) if not r["loss_fell"]]
        problems.append("the loss did not fall on rank(s) %s" % ", ".join(map(str, bad)))
    if not res.get("broadcast_equal"):
        problems.append("parameters differed across ranks right after DDP's initial broadcast")
    if not res.get("params_equal"):
        problems.append("parameters differ across ranks after %s steps (max difference %g): gradients were not "
                        "averaged identically" % (res.get("steps"), res.get("max_param_diff")))
    if not res.get("params_changed"):
        problems.append("the parameters did not change: no optimizer step took effect")
    return "; ".join(problems) or None


def ddp_body(run):
    args, be = run.args, run.backend
    if args.steps < 2:
        raise UsageError("--steps must be at least 2 to tell whether the loss fell")
    if run.role == "launcher":
        nproc = resolve_nproc(be, args.nproc)
        run.partial.update({"launcher": "spawn", "world_size": nproc, "steps": args.steps, "timeout_s": args.timeout})
        outcome = launch_workers(run, nproc, args.timeout, args.startup_timeout)
        res0 = (outcome["results"].get(0) or {}).get("result") or {}
        run.adopt_versions(outcome["hello"].get(0) or {})
        out = {k: v for k, v in res0.items() if k in (
            "ranks", "loss_fell_all_ranks", "initial_params_differed", "broadcast_equal", "params_equal",
            "max_param_diff", "params_changed", "param_checksums", "param_count")}
        out["exit_codes"] = outcome["exit_codes"]
        if outcome["failures"]:
            out["failures"] = outcome["failures"]
        if outcome["error"]:
            out.update({"ok": False, "error": outcome["error"], "timed_out": outcome["timed_out"],
                        "_exit_code": launch_exit_code(outcome)})
            return out
        err = ddp_verdict(res0)
        out.update({"ok": err is None, "error": err})
        return out
    de = dist_env()
    run.partial.update({"launcher": "torchrun" if run.role == "torchrun" else "spawn", "rank": de["rank"],
                        "world_size": de["world_size"], "steps": args.steps, "timeout_s": args.timeout})
    run.start_watchdog(args.timeout)
    init_distributed(run, args.timeout)
    res = ddp_worker(run, de)
    finish_distributed(run)
    err = ddp_verdict(res)
    res.update({"ok": err is None, "error": err})
    return res


if __name__ == "__main__":
    Run("ddp", distributed=True).main(ddp_parser, ddp_body)

"""migrate: an unmodified GPU-style training script run through torch_npu's automatic migration.

On an npu backend: `import torch_npu; from torch_npu.contrib import transfer_to_npu`,
then the function gpu_style_training() below, written for CUDA (.cuda(),
torch.device("cuda"), device="cuda", torch.cuda.*), runs as is; the check is that
it trains (loss falls) and that its tensors landed on the NPU.
On cpu/cuda backends the migration does not apply: the JSON says
{"applicable": false, "reason": ...} with ok true.

CLI: python3 - [--backend B] [--timeout S] [--steps N] < script
"""
if "_NPUENV_COMMON" not in globals():
    import os as _os

    _p = _os.path.join(_os.path.dirname(_os.path.abspath(__file__)), "_common.py")
    with open(_p) as _f:
        exec(compile(_f.read(), _p, "exec"))


def gpu_style_training(steps, on_step):
    """Plain CUDA-style PyTorch, as found in GPU training scripts. Do not 'port' it."""
    import torch
    import torch.nn as nn

    assert torch.cuda.is_available(), "torch.cuda.is_available() is False"
    device_count = torch.cuda.device_count()
    torch.cuda.set_device(0)
    torch.manual_seed(0)
    torch.cuda.manual_seed(0)
    device = torch.device("cuda")

    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 4)).cuda()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    criterion = nn.CrossEntropyLoss().cuda()

    g = torch.Generator().manual_seed(7)
    centers = torch.randn(4, 64, generator=g) * 2
    labels = torch.arange(512) % 4
    inputs = centers[labels] + torch.randn(512, 64, generator=g)
    inputs = inputs.cuda(non_blocking=True)
    labels = labels.to("cuda")
    extra = torch.zeros(1, device="cuda")

    losses = []
    for step in range(steps):
        on_step(step)
        optimizer.zero_grad()
        loss = criterion(model(inputs.to(device)), labels)
        loss.backward()
        optimizer.step()
        extra += 1
        losses.append(loss.item())
    torch.cuda.synchronize()
    return {
        "cuda_is_available": True,
        "cuda_device_count": device_count,
        "tensor_device": str(inputs.device),
        "model_device": str(next(model.parameters()).device),
        "losses": losses,
        "counter": extra.item(),
        "max_memory_allocated_bytes": int(torch.cuda.max_memory_allocated()),
    }


def migrate_parser(run):
    p = run.parser("Run an unmodified CUDA-style script on NPUs through transfer_to_npu.", timeout=300)
    p.add_argument("--steps", type=int, default=20, help="training steps (default %(default)s)")
    return p


def migrate_body(run):
    args, be = run.args, run.backend
    if args.steps < 2:
        raise UsageError("--steps must be at least 2 to tell whether the loss fell")
    if be.name != "npu":
        reason = ("backend is %s: the automatic migration maps torch.cuda calls onto NPUs and needs torch_npu "
                  "with at least one NPU" % be.name)
        if be.name == "cuda":
            reason += "; on a GPU the script would run natively"
        return {"ok": True, "applicable": False, "reason": reason}
    wd = run.start_watchdog(args.timeout)
    wd.watch("from torch_npu.contrib import transfer_to_npu", "importing the migration module hangs")
    from torch_npu.contrib import transfer_to_npu  # noqa: F401 - patches torch.cuda.* onto torch.npu
    hint = be.stuck_hint()
    out = gpu_style_training(args.steps, lambda i: wd.watch("migrated training step %d of %d" % (i + 1, args.steps),
                                                           hint))
    wd.done()
    losses = out.pop("losses")
    on_npu = out["tensor_device"].startswith("npu") and out["model_device"].startswith("npu")
    fell = loss_fell(losses)
    counted = out.pop("counter") == float(args.steps)
    problems = []
    if not on_npu:
        problems.append("tensors were placed on %s, not on the NPU" % out["tensor_device"])
    if not fell:
        problems.append("the loss did not fall (first %.4g, last %.4g)" % (losses[0], losses[-1]))
    if not counted:
        problems.append("an in-place update of a device tensor gave a wrong count")
    out.update({"ok": not problems, "error": "; ".join(problems) or None, "applicable": True, "reason": None,
                "on_npu": on_npu, "steps": args.steps, "first_loss": losses[0], "last_loss": losses[-1],
                "loss_fell": fell})
    return out


if __name__ == "__main__":
    Run("migrate").main(migrate_parser, migrate_body)

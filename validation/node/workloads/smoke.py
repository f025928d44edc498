"""smoke: the one-line check. A tensor on the device, added to itself, checked on the host.

Run through the suite as  python3 - [--backend auto|npu|cuda|cpu] [--device-index I]
[--elements N] [--timeout S] < script  (see validation.node.workloads.script).
"""
# When run as a file (development), load the shared helpers; the suite prepends them.
if "_NPUENV_COMMON" not in globals():
    import os as _os

    _p = _os.path.join(_os.path.dirname(_os.path.abspath(__file__)), "_common.py")
    with open(_p) as _f:
        exec(compile(_f.read(), _p, "exec"))


def smoke_parser(run):
    p = run.parser("Add a device tensor to itself and check the result on the host.", timeout=120)
    p.add_argument("--device-index", type=int, default=None,
                   help="device to use (default: LOCAL_RANK or 0)")
    p.add_argument("--elements", type=int, default=1024, help="tensor length (default %(default)s)")
    return p


def smoke_body(run):
    args, be = run.args, run.backend
    torch = be.torch
    if args.elements < 1:
        raise UsageError("--elements must be at least 1, got %d" % args.elements)
    index = args.device_index if args.device_index is not None else int(os.environ.get("LOCAL_RANK", "0"))
    if be.is_accelerator and not 0 <= index < be.device_count:
        raise UsageError("--device-index %d: only %d %s device(s) are visible" % (index, be.device_count, be.name))
    device = be.device(index)
    run.partial["device"] = str(device)
    wd = run.start_watchdog(args.timeout)
    wd.watch("tensor add on %s" % device, be.stuck_hint())
    host = torch.arange(args.elements, dtype=torch.float32)
    x = host.to(device)
    y = (x + x).cpu()
    be.synchronize()
    wd.done()
    mismatches = int(torch.ne(y, host * 2).sum())
    return {
        "ok": mismatches == 0,
        "device": str(device),
        "elements": args.elements,
        "mismatches": mismatches,
        "error": None if mismatches == 0 else "x + x differs from 2x in %d of %d elements on %s"
        % (mismatches, args.elements, device),
    }


if __name__ == "__main__":
    Run("smoke").main(smoke_parser, smoke_body)

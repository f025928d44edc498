"""train_cnn: the migration guide's quick-start idea, as a bounded check that a model trains.

A small CNN on MNIST-shaped data (1x28x28, 10 classes) trains for --steps steps on a
fixed, generated, learnable dataset (no download), with mixed precision: float16
autocast + GradScaler on npu/cuda, bfloat16 autocast on cpu (no scaler needed).
It reports the loss curve and whether it fell, the throughput (over all the steps after
warm-up, and per window of those steps: the repeats the controller compares hosts by), then saves a
checkpoint (model + optimizer + scaler state) to a temporary file, reloads it into a
fresh model and checks that the outputs on a fixed batch are bit-identical.

--bare also times the very same training loop without the suite's instrumentation
(no watchdog marks, no loss recording) on a fresh model, for the benchmark
"suite's training throughput vs the same loop run bare".

CLI: python3 - [--backend B] [--timeout S] [--steps N] [--batch-size N]
     [--warmup-steps N] [--dataset-size N] [--lr F] [--seed N] [--device-index I]
     [--windows N] [--no-amp] [--bare] < script
"""
if "_NPUENV_COMMON" not in globals():
    import os as _os

    _p = _os.path.join(_os.path.dirname(_os.path.abspath(__file__)), "_common.py")
    with open(_p) as _f:
        exec(compile(_f.read(), _p, "exec"))

import contextlib
import tempfile


def cnn_parser(run):
    p = run.parser("Train a small CNN with mixed precision, check the loss falls and a checkpoint reloads.",
                   timeout=300)
    p.add_argument("--steps", type=int, default=60, help="training steps (default %(default)s)")
    p.add_argument("--batch-size", type=int, default=64, help="samples per step (default %(default)s)")
    p.add_argument("--warmup-steps", type=int, default=5,
                   help="first steps left out of the throughput (operator compilation; default %(default)s)")
    p.add_argument("--windows", type=repeat_count, default=5,
                   help="windows the steps after warm-up are timed in, one throughput repeat each, at most one "
                        "per step (1 to %d; default %%(default)s)" % MAX_REPEATS)
    p.add_argument("--dataset-size", type=int, default=2048, help="generated samples (default %(default)s)")
    p.add_argument("--lr", type=float, default=0.02, help="SGD learning rate (default %(default)s)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device-index", type=int, default=None, help="device to use (default: LOCAL_RANK or 0)")
    p.add_argument("--no-amp", action="store_true", help="train in float32 without autocast or GradScaler")
    p.add_argument("--bare", action="store_true",
                   help="also time the same loop without instrumentation and report the ratio")
    return p


def make_model(torch, seed):
    nn = torch.nn
    F = torch.nn.functional

    class QuickStartCNN(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(1, 16, kernel_size=3, padding=1)
            self.conv2 = nn.Conv2d(16, 32, kernel_size=3, padding=1)
            self.fc1 = nn.Linear(32 * 7 * 7, 128)
            self.fc2 = nn.Linear(128, 10)

        def forward(self, x):
            x = F.max_pool2d(F.relu(self.conv1(x)), 2)
            x = F.max_pool2d(F.relu(self.conv2(x)), 2)
            return self.fc2(F.relu(self.fc1(torch.flatten(x, 1))))

    torch.manual_seed(seed)
    return QuickStartCNN()


def make_dataset(torch, n, seed):
    """n images: one fixed random prototype per class plus unit Gaussian noise."""
    g = torch.Generator().manual_seed(1234 + seed)
    prototypes = torch.randn(10, 1, 28, 28, generator=g)
    labels = torch.arange(n) % 10
    labels = labels[torch.randperm(n, generator=g)]
    images = prototypes[labels] + torch.randn(n, 1, 28, 28, generator=g)
    return images, labels


class Trainer:
    """Model, optimizer, scaler and one mixed-precision step: shared by both loops."""

    def __init__(self, be, device, seed, lr, use_amp):
        torch = be.torch
        self.torch = torch
        self.model = make_model(torch, seed).to(device)
        self.opt = torch.optim.SGD(self.model.parameters(), lr=lr, momentum=0.9)
        self.amp_dtype = be.amp_dtype() if use_amp else None
        self.use_scaler = use_amp and be.is_accelerator
        self.scaler = be.grad_scaler(enabled=self.use_scaler)
        self.device_type = be.device_type

    def step(self, x, y):
        torch = self.torch
        self.opt.zero_grad(set_to_none=True)
        amp = (torch.autocast(device_type=self.device_type, dtype=self.amp_dtype)
               if self.amp_dtype is not None else contextlib.nullcontext())
        with amp:
            loss = torch.nn.functional.cross_entropy(self.model(x), y)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.opt)
        self.scaler.update()
        return loss


def window_ends(start, stop, windows):
    """Where each of ``windows`` near-equal windows of the steps start..stop-1 ends (exclusive),
    at most one window per step."""
    n = min(windows, stop - start)
    return [start + (k + 1) * (stop - start) // n for k in range(n)]


def bare_loop(be, device, args, images, labels):
    """The same training loop, run bare: samples/s over the steps after warm-up."""
    trainer = Trainer(be, device, args.seed, args.lr, not args.no_amp)
    bs, nb = args.batch_size, images.shape[0] // args.batch_size
    t0 = time.perf_counter()
    for i in range(args.steps):
        if i == args.warmup_steps:
            be.synchronize()
            t0 = time.perf_counter()
        j = (i % nb) * bs
        trainer.step(images[j:j + bs], labels[j:j + bs])
    be.synchronize()
    return (args.steps - args.warmup_steps) * bs / (time.perf_counter() - t0)


def same_optimizer_state(torch, a, b):
    sa, sb = a.state_dict(), b.state_dict()
    if sa["param_groups"] != sb["param_groups"] or set(sa["state"]) != set(sb["state"]):
        return False
    for k, state in sa["state"].items():
        other = sb["state"][k]
        if set(state) != set(other):
            return False
        for name, value in state.items():
            if torch.is_tensor(value):
                if not (torch.is_tensor(other[name]) and torch.equal(value, other[name].to(value.device))):
                    return False
            elif value != other[name]:
                return False
    return True


def check_cnn_args(args):
    """Refuse option values the run cannot use, naming the option."""
    for opt in ("steps", "batch_size", "dataset_size"):
        if getattr(args, opt) < 1:
            raise UsageError("--%s must be at least 1" % opt.replace("_", "-"))
    if args.steps < 2:
        raise UsageError("--steps must be at least 2 to tell whether the loss fell")
    if not 0 <= args.warmup_steps < args.steps:
        raise UsageError("--warmup-steps must be between 0 and --steps - 1 (%d)" % (args.steps - 1))
    if args.dataset_size < args.batch_size:
        raise UsageError("--dataset-size (%d) must be at least --batch-size (%d)" % (args.dataset_size, args.batch_size))


def cnn_device(be, device_index):
    """The device to train on: --device-index, else LOCAL_RANK, else 0 (made current on an accelerator)."""
    index = device_index if device_index is not None else int(os.environ.get("LOCAL_RANK", "0"))
    if be.is_accelerator:
        if not 0 <= index < be.device_count:
            raise UsageError("--device-index %d: only %d %s device(s) are visible" % (index, be.device_count, be.name))
        be.set_device(index)
    return be.device(index)


def timed_training(run, trainer, device, images, labels, ends):
    """Train --steps steps under the watchdog. Returns the losses (on the device), the clock
    when the steps after warm-up began and the clock at the end of each window."""
    args, be, wd = run.args, run.backend, run.watchdog
    hint = be.stuck_hint()
    bs, nb = args.batch_size, args.dataset_size // args.batch_size
    losses = be.torch.zeros(args.steps, device=device)
    marks = []  # the clock at the end of each window, its steps done on the device
    t0 = time.perf_counter()
    for i in range(args.steps):
        if i == args.warmup_steps:
            be.synchronize()
            t0 = time.perf_counter()
        wd.watch("training step %d of %d" % (i + 1, args.steps), hint)
        j = (i % nb) * bs
        loss = trainer.step(images[j:j + bs], labels[j:j + bs])
        losses[i] = loss.detach().float()
        if i + 1 in ends[:-1]:
            be.synchronize()
            marks.append(time.perf_counter())
    wd.watch("finishing the training steps (device synchronize)", hint)
    be.synchronize()
    marks.append(time.perf_counter())
    return losses, t0, marks


def training_figures(args, ends, losses, t0, marks):
    """The loss curve and the throughput of timed_training's run, as reported, and the
    unrounded samples/s (the bare loop's ratio is taken from it)."""
    bs = args.batch_size
    train_time = marks[-1] - t0
    # The figure is the whole run's rate (all timed samples over all their time), as the bare
    # loop measures it, so the two compare. The windows' rates are its repeats: the controller
    # judges a host by their median and spread (validation/stragglers.py), which one disturbed
    # window barely moves, where it drags the whole run's rate down with it.
    samples_per_s = (args.steps - args.warmup_steps) * bs / train_time
    starts = [args.warmup_steps] + ends[:-1]
    repeats = [sig((end - start) * bs / (mark - begun))
               for start, end, begun, mark in zip(starts, ends, [t0] + marks[:-1], marks)]
    loss_values = [float(v) for v in losses.cpu().tolist()]
    finite = all(v == v and abs(v) != float("inf") for v in loss_values)
    fell = loss_fell(loss_values)
    figures = {"first_loss": loss_values[0], "last_loss": loss_values[-1], "losses": loss_values,
               "losses_finite": finite, "loss_fell": fell, "samples_per_s": round(samples_per_s, 2),
               "samples_per_s_repeats": repeats,
               "train_time_s": round(train_time, 4)}
    return figures, samples_per_s


def checkpoint_reload(be, device, trainer, args):
    """Save the trained model, optimizer and scaler to a temporary file, load them into a fresh
    Trainer and compare outputs on a fixed batch and the optimizer state: the result's checkpoint fields."""
    torch = be.torch
    g = torch.Generator().manual_seed(99)
    fixed = torch.randn(32, 1, 28, 28, generator=g).to(device)
    fd, path = tempfile.mkstemp(prefix="npuenv-ckpt-", suffix=".pt")
    os.close(fd)
    try:
        torch.save({"model": trainer.model.state_dict(), "optimizer": trainer.opt.state_dict(),
                    "scaler": trainer.scaler.state_dict(), "step": args.steps}, path)
        ckpt_bytes = os.path.getsize(path)
        fresh = Trainer(be, device, args.seed + 1, args.lr, not args.no_amp)
        fresh.model.eval()
        with torch.no_grad():
            reference = trainer.model(fixed)
            before = fresh.model(fixed)
        try:
            ckpt = torch.load(path, map_location=device, weights_only=True)
        except TypeError:  # torch without weights_only
            ckpt = torch.load(path, map_location=device)
        fresh.model.load_state_dict(ckpt["model"])
        fresh.opt.load_state_dict(ckpt["optimizer"])
        fresh.scaler.load_state_dict(ckpt["scaler"])
        with torch.no_grad():
            after = fresh.model(fixed)
        be.synchronize()
    finally:
        os.unlink(path)
    differs_before = not torch.equal(reference, before)
    identical = bool(torch.equal(reference, after))
    opt_identical = same_optimizer_state(torch, trainer.opt, fresh.opt)
    scale = float(trainer.scaler.get_scale()) if trainer.use_scaler else None
    return {
        "grad_scale_final": scale,
        "checkpoint_bytes": ckpt_bytes,
        "checkpoint_differs_before_load": differs_before,
        "checkpoint_identical": identical,
        "optimizer_state_identical": opt_identical,
    }


def cnn_problems(figures, result):
    """What went wrong, from the reported figures and checkpoint fields (empty: all held)."""
    problems = []
    if not figures["losses_finite"]:
        problems.append("the loss became NaN/inf")
    elif not figures["loss_fell"]:
        problems.append("the loss did not fall (first %.4g, last %.4g)" % (figures["first_loss"], figures["last_loss"]))
    if not result["checkpoint_differs_before_load"]:
        problems.append("a freshly initialised model already matched the trained one")
    if not result["checkpoint_identical"]:
        problems.append("the reloaded checkpoint gives different outputs on a fixed batch")
    if not result["optimizer_state_identical"]:
        problems.append("the reloaded optimizer state differs")
    return problems


def cnn_body(run):
    args, be = run.args, run.backend
    torch = be.torch
    check_cnn_args(args)
    device = cnn_device(be, args.device_index)
    wd = run.start_watchdog(args.timeout)
    hint = be.stuck_hint()

    wd.watch("moving the dataset to %s" % device, hint)
    images, labels = make_dataset(torch, args.dataset_size, args.seed)
    images, labels = images.to(device), labels.to(device)
    trainer = Trainer(be, device, args.seed, args.lr, not args.no_amp)
    ends = window_ends(args.warmup_steps, args.steps, args.windows)
    # run.partial is what a timed-out step still reports: each step adds what it learnt
    run.partial.update({
        "device": str(device), "steps": args.steps, "batch_size": args.batch_size, "warmup_steps": args.warmup_steps,
        "dataset_size": args.dataset_size, "windows": len(ends),
        "amp_dtype": str(trainer.amp_dtype).replace("torch.", "") if trainer.amp_dtype is not None else None,
        "grad_scaler": trainer.use_scaler,
    })
    losses, t0, marks = timed_training(run, trainer, device, images, labels, ends)
    figures, samples_per_s = training_figures(args, ends, losses, t0, marks)
    run.partial.update(figures)

    wd.watch("checkpoint save and reload", "writing or reading the temporary checkpoint hangs")
    trainer.model.eval()  # the reference outputs are the trained model's, in eval mode like the reloaded one
    result = checkpoint_reload(be, device, trainer, args)
    if args.bare:
        wd.watch("the bare training loop", hint)
        bare = bare_loop(be, device, args, images, labels)
        result["bare_samples_per_s"] = round(bare, 2)
        result["throughput_ratio"] = round(samples_per_s / bare, 4)
    wd.done()
    problems = cnn_problems(figures, result)
    result["ok"] = not problems
    result["error"] = "; ".join(problems) or None
    return result


if __name__ == "__main__":
    Run("train_cnn").main(cnn_parser, cnn_body)

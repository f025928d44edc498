"""Standard level (about two minutes): a tensor on the device, the quick-start
CNN trains, the GPU script migrates, the NPU network is up, and an all_reduce
across the local devices is correct and fast, or fails within its timeout."""
from __future__ import annotations

import pytest

from validation.node import facts as facts_mod
from validation.node.vendor_tools.common import VendorOutputError
from validation.node.vendor_tools.hccn_tool import parse_link, parse_net_health

pytestmark = pytest.mark.standard

# The standard level's all_reduce sweep: small sizes, a quick answer.
STANDARD_MAX_BYTES = 4 << 20


def _answered(check, result, text, what, measured=()):
    """The workload printed its JSON line. When it stopped before measuring what
    the check judges (a crash, a launch error), its own error is the failure."""
    check(result is not None, f"the {what.removeprefix('the ')} workload did not run", expected="a JSON result line",
          found=text.strip()[-600:] or "no output", seen=text)
    if any(key not in result for key in measured):
        _completed(check, result, text, what)


def _completed(check, result, text, what):
    """The workload's own verdict: called after the specific checks, so that a
    failure they explain is reported by them, and any other still fails."""
    error = result.get("error") or "it reports ok: false (an incomplete result)"
    check(result.get("ok") is True and not result.get("error"),
          f"the {what.removeprefix('the ')} workload failed: {error}",
          expected=f"{what} completes", found=error, seen=error + text)


def _ran(check, result, text, what):
    _answered(check, result, text, what)
    _completed(check, result, text, what)


def test_smoke(workload, check):
    result, text = workload("smoke")
    _answered(check, result, text, "one-line check", ("mismatches",))
    check(result["mismatches"] == 0, "a tensor added to itself on the device is wrong",
          expected="x + x == 2x on the device", found=f"{result['mismatches']} mismatching elements",
          cause="the device computes wrong results", fix="reset the device; check `npu-smi info -t health`")
    _completed(check, result, text, "one-line check")
    check.record({"backend": result["backend"], "device": result["device"]})


def test_train(workload, check):
    result, text = workload("train_cnn", "--steps 40")
    _answered(check, result, text, "training",
              ("loss_fell", "first_loss", "last_loss", "checkpoint_identical", "optimizer_state_identical"))
    check(result["loss_fell"], "the quick-start CNN's loss did not fall",
          expected=f"last loss < first loss ({result['first_loss']})", found=f"last loss {result['last_loss']}",
          cause="training is numerically broken on this device (or mixed precision misbehaves)",
          fix="run the train_cnn workload with --no-amp to separate AMP from the device")
    check(result["checkpoint_identical"] and result["optimizer_state_identical"],
          "a reloaded checkpoint does not reproduce the model's outputs",
          expected="identical outputs after save and reload", found="outputs differ",
          cause="saving or loading tensors from this device is broken", fix="check disk space and torch.save on the device")
    _completed(check, result, text, "training")
    check.record({k: result[k] for k in ("backend", "device", "first_loss", "last_loss", "samples_per_s",
                                          "samples_per_s_repeats", "amp_dtype", "grad_scaler")})


def test_migrate(workload, check):
    result, text = workload("migrate")
    _answered(check, result, text, "GPU-script migration", ("applicable",))
    if not result["applicable"]:
        _completed(check, result, text, "GPU-script migration")
        pytest.skip(f"not applicable: {result.get('reason')}")
    _answered(check, result, text, "GPU-script migration", ("ok", "on_npu", "loss_fell"))
    check(result["ok"] and result["on_npu"] and result["loss_fell"],
          "the unmodified GPU script did not train on the NPU through transfer_to_npu",
          expected="tensors on npu and a falling loss", found=f"device {result.get('tensor_device')}, "
          f"loss {result.get('first_loss')} -> {result.get('last_loss')}",
          cause="torch_npu's automatic migration does not cover this script", fix="see torch_npu.contrib.transfer_to_npu")


def device_ips(facts) -> dict[int, str | None]:
    """Each NPU port's RoCE address as the facts read it (hccn_tool -ip -g), None where unset."""
    return {p["port"]: (p.get("ip") or {}).get("address") for p in facts.get("network") or []}


def test_npu_network(probe, facts, stack, check):
    hccn = stack["paths"]["hccn_tool"]
    devices = [facts_mod.network_port(d, i) for i, d in enumerate(facts["devices"])]
    check(bool(devices), "no NPU to check the network of", expected="devices", found="none")
    # The fleet phase pings these from the previous node (test_full.test_netdetect_peers).
    check.record({"device_ips": device_ips(facts)})
    # A port without its optical module is down for that reason: optical_modules reports it.
    no_module = {p["port"] for p in facts.get("network") or [] if (p.get("optical") or {}).get("present") is False}
    bad = []
    for dev in (d for d in devices if d not in no_module):
        _, link_out, link_err = probe.run(f"{hccn} -i {dev} -link -g")
        _, health_out, health_err = probe.run(f"{hccn} -i {dev} -net_health -g")
        try:
            link = parse_link(link_out)
        except VendorOutputError:
            link = (link_out + link_err).strip() or "no answer"
        try:
            health = parse_net_health(health_out)
        except VendorOutputError:
            health = (health_out + health_err).strip() or "no answer"
        if link != "UP" or health != "Success":
            bad.append(f"device {dev}: link {link}, net health {health}")
    check(not bad, f"{len(bad)} NPU network interface(s) not ready", expected="link UP and net health Success",
          found="; ".join(bad), cause="a cable, optical module or switch port is down, or the device IP / netdetect "
          "address is not configured", fix="hccn_tool -i N -link -g / -net_health -g; make deploy TAGS=hccn")


def allreduce(workload, options, max_bytes: int, extra: str = ""):
    nproc = f"--nproc {options['nproc']}" if options["nproc"] else ""
    return workload("allreduce", f"{nproc} --min-bytes 1024 --max-bytes {max_bytes} --factor 4 --iters 5 "
                                 f"--warmup 2 --timeout {options['timeout']} {extra}")


def check_allreduce(check, result, text, what, record: bool = True):
    _answered(check, result, text, what)
    check(not result.get("timed_out"), f"{what} hung", expected=f"completes within {result.get('timeout_s')} s",
          found=str(result.get("error")), cause="a rank is stuck or a link between devices is down",
          fix="check every device's link (hccn_tool -link -g) and that no process holds a device")
    _answered(check, result, text, what, ("rows",))
    wrong = [r for r in result["rows"] if not r["correct"]]
    check(not wrong, f"{what} returned wrong sums", expected="every element equals the sum over ranks",
          found=", ".join(f"{r['bytes']} B: ranks {r['bad_ranks']}" for r in wrong),
          cause="a device or link corrupts data", fix="isolate the device in bad_ranks and run the smoke check on it")
    _completed(check, result, text, what)
    if record:
        check.record({"backend": result["backend"], "world_size": result["world_size"], "sizes": result["rows"]})


def test_allreduce_local(workload, options, check):
    result, text = allreduce(workload, options, STANDARD_MAX_BYTES)
    check_allreduce(check, result, text, "the all_reduce across local devices")

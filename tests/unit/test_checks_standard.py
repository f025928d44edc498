"""Every standard-level check, called directly with recorded workload results
(the JSON line each workload prints) and vendor hccn_tool captures: a healthy
run passes and records its figures, each failure mode fails with its own
summary, expected/found, cause and fix."""
from __future__ import annotations

import pytest

from tests.unit.check_fakes import (FakeProbe, failed, healthy_facts, network_facts, options, passed, run_check,
                                    sample, stack)
from validation.node.suite import test_standard as s

# A failure no known one explains: its cause quotes what the check saw, its fix says how to look closer.
LOOK_CLOSER = ("run the check alone to see its whole output (npuenv validate --target HOST --only CHECK) "
               "and compare what it found with what was expected")


class FakeWorkload:
    """The ``workload`` fixture: returns a recorded (result, output) and keeps the arguments."""

    def __init__(self, result, text=""):
        self.result, self.text, self.calls = result, text, []

    def __call__(self, name, args=""):
        self.calls.append((name, args))
        return self.result, self.text


def envelope(**fields) -> dict:
    """The fields every workload's JSON carries (validation/node/workloads/_common.py's envelope)."""
    return {"ok": True, "error": None, "timed_out": False, "backend": "npu", "device_type": "npu",
            "device_count": 8, **fields}


# ------------------------------------------------------------------ smoke

SMOKE_OK = envelope(workload="smoke", device="npu:0", elements=1024, mismatches=0)


def test_smoke_passes_and_records_the_device():
    out = passed(s.test_smoke, workload=FakeWorkload(SMOKE_OK))
    assert out.data == [{"backend": "npu", "device": "npu:0"}]


def test_smoke_that_did_not_run_fails_with_its_output():
    text = "bash: line 1: python3: command not found\n"
    f = failed(s.test_smoke, workload=FakeWorkload(None, text))
    assert (f["summary"], f["expected"], f["found"]) == (
        "the one-line check workload did not run", "a JSON result line", "bash: line 1: python3: command not found")
    f = failed(s.test_smoke, workload=FakeWorkload(None, ""))
    assert f["found"] == "no output"


def test_smoke_with_wrong_sums_names_the_device_as_the_cause():
    bad = {**SMOKE_OK, "ok": False, "mismatches": 3, "error": "x + x differs from 2x in 3 of 1024 elements on npu:0"}
    f = failed(s.test_smoke, workload=FakeWorkload(bad))
    assert f == {"summary": "a tensor added to itself on the device is wrong", "expected": "x + x == 2x on the device",
                 "found": "3 mismatching elements", "cause": "the device computes wrong results",
                 "fix": "reset the device; check `npu-smi info -t health`"}


def test_smoke_crash_is_explained_from_its_error():
    crash = envelope(workload="smoke", ok=False, device="npu:0",
                     error="smoke crashed: RuntimeError: libhccl.so: cannot open shared object file: No such file")
    f = failed(s.test_smoke, workload=FakeWorkload(crash))
    assert f["summary"] == ("the one-line check workload failed: smoke crashed: RuntimeError: libhccl.so: cannot open "
                            "shared object file: No such file")
    assert (f["expected"], f["found"]) == ("one-line check completes", crash["error"])
    assert f["cause"].startswith("the CANN environment is not sourced")


# ------------------------------------------------------------------ training

TRAIN_OK = envelope(workload="train_cnn", device="npu:0", first_loss=2.31, last_loss=0.42, loss_fell=True,
                    checkpoint_identical=True, optimizer_state_identical=True, samples_per_s=812.5,
                    samples_per_s_repeats=[815.2, 790.1, 820.4, 812.0, 809.9], amp_dtype="float16", grad_scaler=True)


def test_training_passes_and_records_its_figures():
    wl = FakeWorkload(TRAIN_OK)
    out = passed(s.test_train, workload=wl)
    assert wl.calls == [("train_cnn", "--steps 40")]
    # The figure and its repeats (each timed window's), which the controller compares hosts by.
    assert out.data == [{"backend": "npu", "device": "npu:0", "first_loss": 2.31, "last_loss": 0.42,
                         "samples_per_s": 812.5, "samples_per_s_repeats": [815.2, 790.1, 820.4, 812.0, 809.9],
                         "amp_dtype": "float16", "grad_scaler": True}]


def test_loss_that_does_not_fall_fails_as_numerically_broken_training():
    bad = {**TRAIN_OK, "ok": False, "loss_fell": False, "last_loss": 2.4,
           "error": "the loss did not fall (first 2.31, last 2.4)"}
    f = failed(s.test_train, workload=FakeWorkload(bad))
    assert f == {"summary": "the quick-start CNN's loss did not fall", "expected": "last loss < first loss (2.31)",
                 "found": "last loss 2.4",
                 "cause": "training is numerically broken on this device (or mixed precision misbehaves)",
                 "fix": "run the train_cnn workload with --no-amp to separate AMP from the device"}


def test_checkpoint_that_does_not_reload_fails():
    for key in ("checkpoint_identical", "optimizer_state_identical"):
        bad = {**TRAIN_OK, "ok": False, key: False, "error": "the reloaded checkpoint gives different outputs"}
        f = failed(s.test_train, workload=FakeWorkload(bad))
        assert f == {"summary": "a reloaded checkpoint does not reproduce the model's outputs",
                     "expected": "identical outputs after save and reload", "found": "outputs differ",
                     "cause": "saving or loading tensors from this device is broken",
                     "fix": "check disk space and torch.save on the device"}, key


def test_training_failure_no_specific_check_covers_still_fails():
    bad = {**TRAIN_OK, "ok": False, "error": "a freshly initialised model already matched the trained one"}
    f = failed(s.test_train, workload=FakeWorkload(bad))
    assert f["summary"] == "the training workload failed: a freshly initialised model already matched the trained one"


# ------------------------------------------------------------------ migration

MIGRATE_OK = envelope(workload="migrate", applicable=True, reason=None, on_npu=True, tensor_device="npu:0",
                      model_device="npu:0", first_loss=1.2, last_loss=0.3, loss_fell=True, steps=20)


def test_migration_passes():
    passed(s.test_migrate, workload=FakeWorkload(MIGRATE_OK))


def test_migration_off_the_npu_is_skipped_with_the_reason():
    reason = ("backend is cpu: the automatic migration maps torch.cuda calls onto NPUs and needs torch_npu "
              "with at least one NPU")
    wl = FakeWorkload(envelope(backend="cpu", applicable=False, reason=reason))
    assert run_check(s.test_migrate, workload=wl).skipped == f"not applicable: {reason}"
    assert wl.calls == [("migrate", "")]


def test_migration_that_stays_on_the_cpu_fails():
    bad = {**MIGRATE_OK, "ok": False, "on_npu": False, "tensor_device": "cpu",
           "error": "tensors were placed on cpu, not on the NPU"}
    f = failed(s.test_migrate, workload=FakeWorkload(bad))
    assert f == {"summary": "the unmodified GPU script did not train on the NPU through transfer_to_npu",
                 "expected": "tensors on npu and a falling loss", "found": "device cpu, loss 1.2 -> 0.3",
                 "cause": "torch_npu's automatic migration does not cover this script",
                 "fix": "see torch_npu.contrib.transfer_to_npu"}


# ------------------------------------------------------------------ NPU network

HCCN = "/usr/local/Ascend/driver/tools/hccn_tool"
LINK_UP = sample("hccn_tool_-link_-g_UP.txt")
HEALTH_OK = sample("hccn_tool_-net_health_-g_Success.txt")


def hccn_probe(link=None, health=None) -> FakeProbe:
    """hccn_tool on every device answers UP / Success, except devices named in link/health."""
    probe = FakeProbe()
    probe.answer(rf"^{HCCN} -i \d+ -link -g$", 0, LINK_UP).answer(rf"^{HCCN} -i \d+ -net_health -g$", 0, HEALTH_OK)
    for dev, text in (link or {}).items():
        probe.answer(rf"^{HCCN} -i {dev} -link -g$", 0, text)
    for dev, text in (health or {}).items():
        probe.answer(rf"^{HCCN} -i {dev} -net_health -g$", 0, text)
    return probe


NETWORK_CAUSE = ("a cable, optical module or switch port is down, or the device IP / netdetect address is not "
                 "configured")
NETWORK_FIX = "hccn_tool -i N -link -g / -net_health -g; make deploy TAGS=hccn"


def test_every_npu_port_up_and_healthy_passes():
    probe = hccn_probe()
    out = passed(s.test_npu_network, probe=probe, facts=healthy_facts(), stack=stack())
    assert sorted(probe.runs) == sorted([f"{HCCN} -i {i} -link -g" for i in range(8)] +
                                        [f"{HCCN} -i {i} -net_health -g" for i in range(8)])
    # the device IPs the facts read, kept for the fleet phase's netdetect (JSON: the ports as strings)
    assert out.data == [{"device_ips": {str(i): f"192.168.1.{10 + i}" for i in range(8)}}]


def test_device_ips_record_says_which_ports_have_none():
    facts = healthy_facts(network=network_facts({0: "192.168.1.10", 1: None}))
    out = passed(s.test_npu_network, probe=hccn_probe(), facts=facts, stack=stack())
    assert out.data == [{"device_ips": {"0": "192.168.1.10", "1": None}}]


def test_a_port_without_its_optical_module_is_left_to_the_optical_check():
    # its link is down for that reason, which test_hardware's optical check names
    facts = healthy_facts()
    facts["network"][3]["optical"] = {"present": False}
    probe = hccn_probe(link={3: "link status: DOWN\n"})
    passed(s.test_npu_network, probe=probe, facts=facts, stack=stack())
    assert not [c for c in probe.runs if " -i 3 " in c]
    # an optical module that could not be read is no excuse: the port is checked
    facts["network"][3]["optical"] = {"error": "no 'present' line in the optical info: ''"}
    f = failed(s.test_npu_network, probe=hccn_probe(link={3: "link status: DOWN\n"}), facts=facts, stack=stack())
    assert f["found"] == "device 3: link DOWN, net health Success"


def test_port_down_fails_naming_the_device():
    probe = hccn_probe(link={3: "link status: DOWN\n"})
    f = failed(s.test_npu_network, probe=probe, facts=healthy_facts(), stack=stack())
    assert f == {"summary": "1 NPU network interface(s) not ready", "expected": "link UP and net health Success",
                 "found": "device 3: link DOWN, net health Success", "cause": NETWORK_CAUSE, "fix": NETWORK_FIX}


def test_net_health_other_than_success_fails():
    probe = hccn_probe(health={1: sample("hccn_tool_-net_health_-g_Init.txt"),
                               6: sample("hccn_tool_-net_health_-g_Fault.txt")})
    f = failed(s.test_npu_network, probe=probe, facts=healthy_facts(), stack=stack())
    assert f["summary"] == "2 NPU network interface(s) not ready"
    assert f["found"] == "device 1: link UP, net health Init; device 6: link UP, net health Fault"
    probe = hccn_probe(health={0: sample("hccn_tool_-net_health_-g_Socket_failed_fixture.txt")})
    assert failed(s.test_npu_network, probe=probe, facts=healthy_facts(), stack=stack())["found"] == \
        "device 0: link UP, net health Socket failed"


def test_hccn_tool_that_does_not_answer_fails_with_its_text():
    probe = hccn_probe(link={2: ""})
    probe.answer(rf"^{HCCN} -i 2 -link -g$", 1, "", "bash: hccn_tool: No such file or directory\n")
    f = failed(s.test_npu_network, probe=probe, facts=healthy_facts(), stack=stack())
    assert f["found"] == "device 2: link bash: hccn_tool: No such file or directory, net health Success"


def test_devices_are_addressed_by_their_phy_id():
    facts = healthy_facts()
    for i, d in enumerate(facts["devices"]):
        d["phy_id"] = 8 + i
    probe = hccn_probe(link={8: "link status: DOWN\n"})
    f = failed(s.test_npu_network, probe=probe, facts=facts, stack=stack())
    assert f["found"] == "device 8: link DOWN, net health Success"


def test_no_npu_means_no_network_check_passes():
    f = failed(s.test_npu_network, probe=FakeProbe(), facts=healthy_facts(devices=[]), stack=stack())
    assert (f["summary"], f["expected"], f["found"]) == ("no NPU to check the network of", "devices", "none")


# ------------------------------------------------------------------ all_reduce

def row(size, correct=True, bad_ranks=(), busbw=12.5, **more):
    return {"bytes": size, "correct": correct, "bad_ranks": list(bad_ranks), "mismatches": 0 if correct else 7,
            "algbw_gbps": busbw / 1.75, "busbw_gbps": busbw, **more}


ALLREDUCE_OK = envelope(workload="allreduce", world_size=8, timeout_s=60, all_correct=True,
                        rows=[row(1024, busbw=0.4), row(4096, busbw=1.6), row(16384, busbw=5.1),
                              row(65536, busbw=9.0), row(262144, busbw=11.0), row(1048576, busbw=12.0),
                              row(4194304, busbw=12.5, busbw_gbps_repeats=[12.5, 12.46, 12.51, 12.3, 12.49])])


def test_local_allreduce_passes_and_records_every_size():
    wl = FakeWorkload(ALLREDUCE_OK)
    out = passed(s.test_allreduce_local, workload=wl, options=options())
    assert wl.calls == [("allreduce", " --min-bytes 1024 --max-bytes 4194304 --factor 4 --iters 5 --warmup 2 "
                                      "--timeout 60 ")]
    assert out.data == [{"backend": "npu", "world_size": 8, "sizes": ALLREDUCE_OK["rows"]}]
    # the largest size's repeats travel with its row, for the controller's comparison of hosts
    assert out.data[0]["sizes"][-1]["busbw_gbps_repeats"] == [12.5, 12.46, 12.51, 12.3, 12.49]
    wl = FakeWorkload(ALLREDUCE_OK)
    passed(s.test_allreduce_local, workload=wl, options=options(nproc=2, timeout=30))
    assert wl.calls[0][1].startswith("--nproc 2 --min-bytes 1024") and "--timeout 30" in wl.calls[0][1]


def test_hung_allreduce_fails_as_a_stuck_rank():
    hung = {**ALLREDUCE_OK, "ok": False, "timed_out": True, "rows": ALLREDUCE_OK["rows"][:2],
            "error": "all_reduce of 16 KiB did not complete within 60 s"}
    f = failed(s.test_allreduce_local, workload=FakeWorkload(hung), options=options())
    assert f == {"summary": "the all_reduce across local devices hung", "expected": "completes within 60 s",
                 "found": "all_reduce of 16 KiB did not complete within 60 s",
                 "cause": "a rank is stuck or a link between devices is down",
                 "fix": "check every device's link (hccn_tool -link -g) and that no process holds a device"}


def test_wrong_sums_fail_naming_the_ranks():
    rows = [row(1024), row(4096, correct=False, bad_ranks=(3,)), row(16384, correct=False, bad_ranks=(3, 5))]
    bad = {**ALLREDUCE_OK, "ok": False, "rows": rows, "all_correct": False,
           "error": "all_reduce of 4 KiB gave wrong sums on 8 ranks: 7 mismatching elements on rank(s) 3"}
    f = failed(s.test_allreduce_local, workload=FakeWorkload(bad), options=options())
    assert f == {"summary": "the all_reduce across local devices returned wrong sums",
                 "expected": "every element equals the sum over ranks",
                 "found": "4096 B: ranks [3], 16384 B: ranks [3, 5]", "cause": "a device or link corrupts data",
                 "fix": "isolate the device in bad_ranks and run the smoke check on it"}


def test_allreduce_that_could_not_launch_fails_with_its_error():
    bad = envelope(workload="allreduce", ok=False, world_size=8, timeout_s=60,
                   error="rank 2 exited with code 1 before the first collective")
    f = failed(s.test_allreduce_local, workload=FakeWorkload(bad), options=options())
    assert f["summary"] == ("the all_reduce across local devices workload failed: rank 2 exited with code 1 before "
                            "the first collective")
    assert (f["cause"], f["fix"]) == ("not a failure npuenv can explain; the check saw: rank 2 exited with code 1 "
                                      "before the first collective", LOOK_CLOSER)


# ------------------------------------------------------------------ workload verdicts, crashes and their labels

def test_each_check_runs_its_own_workload():
    for fn, result, call in ((s.test_smoke, SMOKE_OK, ("smoke", "")), (s.test_migrate, MIGRATE_OK, ("migrate", ""))):
        wl = FakeWorkload(result)
        passed(fn, workload=wl)
        assert wl.calls == [call]


def test_crashes_before_the_measurements_fail_with_the_workload_named():
    crash = envelope(ok=False, error="crashed: RuntimeError: device lost")
    for fn, label in ((s.test_train, "training"), (s.test_migrate, "GPU-script migration")):
        f = failed(fn, workload=FakeWorkload(crash))
        assert f["summary"] == f"the {label} workload failed: crashed: RuntimeError: device lost", fn.__name__
        assert f["expected"] == f"{label} completes"
    # applicable, but stopped before it measured anything
    f = failed(s.test_migrate, workload=FakeWorkload(envelope(ok=False, applicable=True, error="crashed: hang")))
    assert f["summary"] == "the GPU-script migration workload failed: crashed: hang"
    # not applicable, yet failing
    f = failed(s.test_migrate, workload=FakeWorkload(envelope(ok=False, applicable=False, reason="cpu",
                                                              error="import failed")))
    assert f["summary"] == "the GPU-script migration workload failed: import failed"


def test_a_failure_no_specific_check_covers_is_named_after_the_workload():
    bad = {**SMOKE_OK, "ok": False, "error": "the device reported ECC errors"}
    f = failed(s.test_smoke, workload=FakeWorkload(bad))
    assert f["summary"] == "the one-line check workload failed: the device reported ECC errors"
    # an error beside ok: true is still a failure
    f = failed(s.test_smoke, workload=FakeWorkload({**SMOKE_OK, "error": "late warning turned error"}))
    assert f["summary"] == "the one-line check workload failed: late warning turned error"


def test_migration_claiming_ok_off_the_npu_fails():
    f = failed(s.test_migrate, workload=FakeWorkload({**MIGRATE_OK, "on_npu": False, "loss_fell": False}))
    assert f["summary"] == "the unmodified GPU script did not train on the NPU through transfer_to_npu"


def test_explanations_read_the_whole_output():
    text = "ImportError: libhccl.so: cannot open shared object file\n" + "x" * 700
    f = failed(s.test_smoke, workload=FakeWorkload(None, text))
    assert f["found"] == text.strip()[-600:]
    assert f["cause"].startswith("the CANN environment is not sourced")
    bad = envelope(workload="allreduce", ok=False, world_size=8, timeout_s=60, error="rank 2 exited with code 1")
    f = failed(s.test_allreduce_local, workload=FakeWorkload(bad, "ImportError: libhccl.so: cannot open shared "
                                                                   "object file\n"), options=options())
    assert f["cause"].startswith("the CANN environment is not sourced")


def test_the_combined_helper_checks_both():
    from tests.unit.check_fakes import CheckFailed, Checker, FakeRequest
    check = Checker(FakeRequest())
    s._ran(check, SMOKE_OK, "", "one-line check")
    with pytest.raises(CheckFailed, match="the one-line check workload did not run"):
        s._ran(check, None, "", "one-line check")
    with pytest.raises(CheckFailed, match="the one-line check workload failed: boom"):
        s._ran(check, {**SMOKE_OK, "ok": False, "error": "boom"}, "", "one-line check")


def test_network_devices_without_a_phy_id_are_addressed_by_position():
    facts = healthy_facts()
    for d in facts["devices"]:
        d["phy_id"] = None
    probe = hccn_probe(link={5: ""})
    probe.answer(rf"^{HCCN} -i 5 -link -g$", 1, "", "")
    f = failed(s.test_npu_network, probe=probe, facts=facts, stack=stack())
    assert f["found"] == "device 5: link no answer, net health Success"


def test_net_health_that_does_not_answer_is_named():
    probe = hccn_probe(health={4: ""})
    probe.answer(rf"^{HCCN} -i 4 -net_health -g$", 1, "", "")
    f = failed(s.test_npu_network, probe=probe, facts=healthy_facts(), stack=stack())
    assert f["found"] == "device 4: link UP, net health no answer"
    probe.answer(rf"^{HCCN} -i 4 -net_health -g$", 1, "", "hccn_tool: device 4 busy\n")
    f = failed(s.test_npu_network, probe=probe, facts=healthy_facts(), stack=stack())
    assert f["found"] == "device 4: link UP, net health hccn_tool: device 4 busy"

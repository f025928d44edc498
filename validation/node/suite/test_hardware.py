"""Hardware checks real fleets run beside the stack checks: temperatures, HBM
ECC and the HCCS topology (quick); the driver's kernel log, the firmware each card
runs, the HCCS links, an A3 node's place in its super pod, the NPU ports' speed and
FEC, optical modules, link flaps, growing packet errors, TLS, /etc/hccn.conf against
the ports, LLDP cabling and gateway/routes (standard); HCCL's own hccl_test (full,
where the toolkit ships it). Thresholds and expected topologies are data in
validation/node/hardware.py; the facts are read once per host (validation/node/facts.py)."""
from __future__ import annotations

import shlex
import time

import pytest

from validation.node import codes, explain, facts as facts_mod, hardware
from validation.node.vendor_tools.hccl_test import parse_hccl_test


def _devices(facts, check):
    devices = facts["devices"]
    smi = facts["npu_smi"] or {}
    check(bool(devices), "no NPU to check", expected="the chips of npu-smi info",
          found=smi.get("error", "none listed"),
          cause="npu-smi lists no chip (see the npu_health check)", fix="fix what npu_health reports first")
    return devices


def _ports(facts, stack, check):
    if stack["chip"] not in hardware.ROCE_CHIPS:
        pytest.skip(f"not applicable: {stack['chip']} NPUs have no RoCE ports")
    _devices(facts, check)
    return facts["network"]


def _report(check, findings, summary, *, expected, cause, fix, data=None):
    """Warn on warnings, fail on failures (with every failing place listed)."""
    if data is not None:
        check.record(data)
    failing, warning = hardware.fails(findings), hardware.warns(findings)
    check(not failing, summary.format(n=len(failing)), expected=expected, found=hardware.listing(failing),
          cause=cause, fix=fix)
    if warning:
        check.warn(hardware.listing(warning))


@pytest.mark.quick
def test_npu_temperature(facts, check):
    devices = _devices(facts, check)
    t, h = hardware.NPU_TEMPERATURE_C, hardware.HBM_TEMPERATURE_C
    _report(check, hardware.temperature_findings(devices), "{n} NPU or HBM temperature(s) too high or not read",
            expected=f"NPU below {t.fail_at:g} C and HBM below {h.fail_at:g} C (warning from {t.warn_at:g} C)",
            cause="the chip overheats: blocked airflow or a failed fan, a failing cold plate or coolant loop, "
                  "or a chip drawing too much power",
            fix="check the server's fans and air or liquid cooling (iBMC sensors), then the chip's power "
                "(npu-smi info -t power -i <npu>); move jobs off the card until it cools",
            data={"temperatures": [{"npu": d["npu"], "chip": d["chip"], **(d.get("sensors") or {})} for d in devices]})


@pytest.mark.quick
def test_hbm_ecc(facts, check):
    devices = _devices(facts, check)
    _report(check, hardware.ecc_findings(devices), "{n} chip(s) with uncorrectable memory errors (or unread counters)",
            expected="no double-bit ECC error (npu-smi info -t ecc)",
            cause="the chip's HBM has uncorrectable errors: data on it can be wrong and jobs crash",
            fix="stop jobs on the card, reset it (npu-smi set -t reset -i <npu> -c <chip>); if double-bit errors "
                "return, have the card replaced",
            data={"ecc": [{"npu": d["npu"], "chip": d["chip"], "ecc": d.get("ecc")} for d in devices]})


@pytest.mark.quick
def test_npu_topology(facts, stack, check):
    devices = _devices(facts, check)
    if len(devices) < 2:
        pytest.skip("not applicable: one chip has no links")
    rule = hardware.TOPOLOGY.get(stack["chip"])
    _report(check, hardware.topology_findings(facts["topology"], devices, stack["chip"]),
            "{n} NPU pair(s) linked otherwise than a " + stack["chip"] + " server is built",
            expected=f"npu-smi info -t topo as {rule.source if rule else stack['chip']}",
            cause="an HCCS link is down or a card sits in the wrong slot: collectives fall back to PCIe "
                  "or fail (a NA cell is a path the driver cannot see)",
            fix="check `npu-smi info -t hccs -i <npu>` for the lanes, reseat or replace the card, "
                "and compare with a healthy node's `npu-smi info -t topo`",
            data={"topology": facts["topology"]})


@pytest.mark.standard
def test_optical_modules(facts, stack, check):
    ports = _ports(facts, stack, check)
    _report(check, hardware.optical_findings(ports), "{n} NPU port(s) with a missing or failing optical module",
            expected="an optical module present on every NPU port, Tx/Rx power within the module's own thresholds",
            cause="the optical module is missing or not seated, or its fiber is dirty or bent, or its laser is "
                  "failing (power outside the thresholds the module reports)",
            fix="seat or replace the module and clean the fiber ends; `hccn_tool -i <port> -optical -g` shows "
                "presence, power per lane and the thresholds",
            data={"optical": [{"port": p["port"], "optical": p.get("optical")} for p in ports]})


@pytest.mark.standard
def test_hccs_links(facts, stack, check):
    if stack["chip"] not in hardware.HCCS_CHIPS:
        pytest.skip(f"not applicable: npu-smi reports no HCCS links of {stack['chip']} chips")
    _devices(facts, check)
    chips = facts["hccs"]
    _report(check, hardware.hccs_findings(chips), "{n} chip(s) with an HCCS link down or degraded (or not read)",
            expected="every HCCS port of every chip up on all its lanes, hccs health status OK "
                     "(`npu-smi info -t hccs -i N -c C`)",
            cause="an HCCS port is down or lost lanes (fault 0x81A38605: some lanes of the port are faulty): "
                  "collectives between the NPUs of the node slow down or fail",
            fix="reset the chip (npu-smi set -t reset -i <npu> -c <chip>) and validate again; if the port stays "
                "down or degraded, have the board serviced",
            data={"hccs": hardware.hccs_summary(chips)})


@pytest.mark.standard
def test_super_pod(facts, stack, check):
    if stack["chip"] not in hardware.SUPER_POD_CHIPS:
        pytest.skip(f"not applicable: {stack['chip']} servers form no super pod")
    _devices(facts, check)
    chips = facts["super_pod"]
    # The node's place in its pod: the controller looks for a Server Index two nodes share (report.py).
    _report(check, hardware.super_pod_findings(chips), "{n} super-pod problem(s) of this node's chips",
            expected="every chip of the node in one super pod, of one size, under one Server Index "
                     "(`npu-smi info -t spod-info -i N -c C`)",
            cause="the server's Server ID was not set after a hardware replacement, so its chips disagree on "
                  "their place in the pod: jobs across the pod fail",
            fix="set the server's Server ID through its Redfish interface (the super pod's guide), then validate "
                "again",
            data={"super_pod": hardware.super_pod_state(chips)})


@pytest.mark.standard
def test_kernel_log(facts, check):
    _devices(facts, check)
    lines = facts["kernel_log"]
    _report(check, hardware.kernel_log_findings(lines), "the kernel log holds {n} kind(s) of NPU device fault",
            expected="no device fault in the Ascend driver's kernel-log lines since boot (`dmesg`: heartbeat "
                     "lost, device abnormal or dead, HDC or task scheduler down, ...)",
            cause="an NPU failed since the node booted, even if npu-smi shows it healthy again: it can fail "
                  "again in the middle of a job",
            fix="read the lines named (`dmesg | grep ascend`), reset the device (npu-smi set -t reset -i <npu> "
                "-c <chip>) or reboot the node, and have the card checked if the fault returns",
            data={"kernel_log": lines if isinstance(lines, dict) else
                  {"ascend_lines": len(lines), "errors": sum("ERROR" in line["tags"] for line in lines)}})


@pytest.mark.standard
def test_firmware_running(facts, check):
    _devices(facts, check)
    installed = (facts["firmware"] or {}).get("version")
    boards = facts["boards"]
    _report(check, hardware.firmware_findings(boards, installed),
            "{n} NPU(s) not running the installed firmware (or not read)",
            expected=f"every NPU running the installed firmware {installed} (`npu-smi info -t board -i N`: "
                     f"{hardware.FIRMWARE_KEY}), {hardware.COMPATIBILITY_KEY} OK, one MCU version on every card",
            cause="the firmware was upgraded but the node not rebooted since, so the cards still run the old one "
                  "(the firmware installer asks for a reboot); or the driver does not accept the running firmware",
            fix="reboot the node, then validate again; if the firmware still differs, install the row's firmware "
                "(make deploy TAGS=driver) and reboot. Upgrade an MCU that differs with `npu-smi upgrade -t mcu` "
                "to the version of the HDK",
            data={"boards": [{"npu": b["npu"], "firmware": (b.get("board") or {}).get(hardware.FIRMWARE_KEY),
                              "compatibility": (b.get("board") or {}).get(hardware.COMPATIBILITY_KEY),
                              "mcu": b.get("mcu")} for b in boards]})


@pytest.mark.standard
def test_link_speed_fec(facts, stack, check):
    ports = _ports(facts, stack, check)
    nominal = hardware.PORT_SPEED_MBPS.get(stack["chip"])
    _report(check, hardware.speed_fec_findings(ports, stack["chip"]), "{n} NPU port(s) at the wrong speed or FEC",
            expected="every NPU port at one speed" + (f" ({nominal} Mb/s on {stack['chip']})" if nominal else "")
                     + " and one FEC mode, FEC on (`hccn_tool -i N -speed -g`, `-fec -g`)",
            cause="a port negotiated a lower speed (a 100G module or cable in a 200G port, a switch port set "
                  "lower) or its FEC differs from the switch's: every collective runs at the slowest port's pace, "
                  "and a link without FEC drops frames",
            fix="check the module and cable of the port named (`hccn_tool -i <port> -optical -g`) and the switch "
                "port's speed and FEC; on 910A set RS-FEC with `hccn_tool -i <port> -fec -s encoding rs`",
            data={"speed_fec": [{k: p.get(k) for k in ("port", "speed", "fec")} for p in ports]})


@pytest.mark.standard
def test_link_flaps(facts, stack, check):
    ports = _ports(facts, stack, check)
    limits = hardware.LINK_DOWNS
    _report(check, hardware.link_flap_findings(ports), "{n} NPU port(s) flapping",
            expected=f"fewer than {limits.fail_at:g} link downs per port since the driver started "
                     f"(a warning from {limits.warn_at:g})",
            cause="the port's link goes down and up: a loose or damaged cable or module, or a failing switch port; "
                  "each flap aborts the collectives running over it",
            fix="`hccn_tool -i <port> -link_stat -g` lists the changes; reseat or replace the cable and module, "
                "and check the switch port's log",
            data={"link_stat": [{"port": p["port"], "link_stat": p.get("link_stat")} for p in ports]})


@pytest.mark.standard
def test_packet_errors(facts, probe, stack, check):
    ports = _ports(facts, stack, check)
    numbers = [p["port"] for p in ports]
    hccn = stack["paths"]["hccn_tool"]
    before = facts_mod.read_ports(probe, hccn, numbers, ("stat",))
    time.sleep(hardware.PACKET_ERRORS["interval_s"])
    after = facts_mod.read_ports(probe, hccn, numbers, ("stat",))
    _report(check, hardware.packet_error_findings(before, after), "{n} NPU port(s) with growing packet errors",
            expected="no error counter of `hccn_tool -stat -g` (FCS/CRC, bad packets, RoCE errors) growing "
                     f"over {hardware.PACKET_ERRORS['interval_s']:g} s",
            cause="frames arrive corrupted (CRC/FCS errors): a dirty or damaged fiber, a failing optical module, "
                  "or a bad switch port",
            fix="clean or replace the fiber and module of the port, then the switch port; "
                "`hccn_tool -i <port> -stat -g` shows the counters",
            data={"stat": {str(p): after[p].get("stat") for p in numbers}})


@pytest.mark.standard
def test_npu_tls(facts, stack, check):
    ports = _ports(facts, stack, check)
    # The state is recorded for the controller, which compares it across the nodes (report.py).
    _report(check, hardware.tls_findings(ports), "{n} NPU port TLS problem(s)",
            expected="the same TLS switch on every NPU port (`hccn_tool -i N -tls -g`), certificates not expired",
            cause="ranks whose TLS settings differ cannot set up HCCL links (EI0006, socket timeout); an expired "
                  "certificate fails the TLS handshake",
            fix="switch TLS on or off alike on every NPU port of every node (the HCCN Tool guide's TLS commands) "
                "and renew expired certificates",
            data={"tls": hardware.tls_state(ports)})


@pytest.mark.standard
def test_npu_cabling(facts, stack, check):
    ports = _ports(facts, stack, check)
    # Which switch port each NPU port sees: the controller looks for one seen from two nodes (report.py).
    _report(check, hardware.cabling_findings(ports), "{n} NPU cabling problem(s)",
            expected="each NPU port cabled to a switch port of its own, seen over LLDP (`hccn_tool -i N -lldp -g`)",
            cause="two NPU ports see one switch port: a cable is in the wrong port or the cabling map is stale; "
                  "collectives over those ports go to the wrong peer or nowhere",
            fix="trace the cables of the ports named to the switch, move the one in the wrong port, and check "
                "the switch's LLDP neighbour table",
            data={"cabling": {str(p["port"]): hardware.switch_port(p.get("lldp")) for p in ports}})


@pytest.mark.standard
def test_hccn_conf(facts, stack, check):
    ports = _ports(facts, stack, check)
    path = stack["paths"]["hccn_conf"]
    _report(check, hardware.hccn_conf_findings(facts["hccn_conf"], ports, path),
            "{n} NPU port setting(s) differ from " + path,
            expected=f"each port's address, netmask, netdetect and gateway as {path} saves them",
            cause=f"the ports were set by hand (hccn_tool -s) and {path} not updated, or the file was edited since: "
                  "the driver applies the file at boot, so the ports change at the next reboot",
            fix="deploy the hccn role again (make deploy TAGS=hccn): it sets the ports and writes the file from "
                "the inventory",
            data={"hccn_conf": facts["hccn_conf"]})


@pytest.mark.standard
def test_npu_routes(facts, stack, check):
    ports = _ports(facts, stack, check)
    with_ip = [p for p in ports if p.get("ip") and "error" not in p["ip"]]
    if not with_ip:
        pytest.skip("not applicable: no NPU port has a device IP (the npu_network check reports that)")
    _report(check, hardware.gateway_findings(ports), "{n} NPU port(s) whose gateway or routes disagree",
            expected="each port's gateway inside its own subnet and its default route through that gateway",
            cause="the port's gateway (hccn.conf gateway_N / hccn_tool -gateway -s) is wrong or its route table "
                  "was changed by hand: traffic to other subnets of the fabric goes nowhere",
            fix="set the gateway of the port's subnet: hccn_tool -i <port> -gateway -s gateway <ip> "
                "(make deploy TAGS=hccn), then check `hccn_tool -i <port> -route -g`",
            data={"routes": [{k: p.get(k) for k in ("port", "ip", "gateway", "routes")} for p in ports]})


@pytest.mark.full
def test_hccl_test(facts, probe, stack, options, check):
    devices = _devices(facts, check)
    spec = hardware.HCCL_TEST
    binary = f"{stack['paths']['toolkit_latest']}/{spec['binary'].format(op=spec['op'])}"
    if probe.read(binary) is None and probe.run(f"test -x {shlex.quote(binary)}")[0] != 0:
        pytest.skip(f"not applicable: hccl_test is not installed ({binary})")
    rc, out, err = probe.run("command -v mpirun")
    check(rc == 0, "hccl_test is installed but mpirun is not", expected="mpirun on PATH (MPICH or Open MPI)",
          found=(out + err).strip() or "no mpirun", cause="hccl_test is launched by MPI, which CANN does not ship",
          fix="install MPICH or Open MPI (the HCCL Test guide names both) and put its bin on PATH")
    n = options["nproc"] or len(devices)
    command = (f"OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 timeout {options['timeout'] + 120} "
               f"mpirun -n {n} {shlex.quote(binary)} {spec['args']} -p {n}")
    rc, out, err = probe.run(command)
    result = parse_hccl_test(out + err)
    errors = result.errors
    detail = "; ".join(f"{e.location} retcode {e.retcode} ({codes.HCCL_RESULTS.get(e.retcode, 'unknown')})"
                       + (f" in {e.stage}" if e.stage else "") for e in errors[:4])
    # The HCCL Test FAQ's word on a return code, else the CANN code or known failure the output shows.
    known = (codes.HCCL_RESULT_CAUSES.get(errors[0].retcode) if errors else None) or explain.explain(out + err)
    check(not errors, f"hccl_test failed with HCCL error(s): {detail}", expected="no 'hccl interface return err' line",
          found=detail, cause=known[0] if known else "HCCL could not set up or run the collective across the devices",
          fix=known[1] if known else "read the device logs under ~/ascend/log and run `npu-smi info` for held devices")
    check(bool(result.rows), f"hccl_test printed no result (exit {rc})",
          expected="one row per data size", found=(out + err).strip()[-600:] or "no output", seen=out + err)
    failed = [r for r in result.rows if r.check == "failed"] + ([None] if result.failed_ranks else [])
    check(not failed, "hccl_test's all_reduce returned wrong results",
          expected="check_result success at every size",
          found="; ".join(result.failed_ranks[:4]) or ", ".join(f"{r.bytes} B" for r in failed if r),
          cause="a device or link corrupts data", fix="run the smoke check on each device and the hccs/optical checks")
    check(rc == 0, f"hccl_test exited {rc}", expected="exit 0", found=(out + err).strip()[-600:], seen=out + err)
    largest = result.rows[-1]
    busbw = result.busbw_gbps(largest, spec["op"], n)
    check.record({"hccl_test": [{"bytes": r.bytes, "time_us": r.time_us, "algbw_gbps": r.algbw_gbps,
                                 "busbw_gbps": result.busbw_gbps(r, spec["op"], n), "check": r.check}
                                for r in result.rows], "ranks": n})
    floor = options["busbw_floor"]
    check(busbw >= floor, f"hccl_test busbw {busbw:.3f} GB/s at {largest.bytes} B is below the floor {floor} GB/s",
          expected=f">= {floor} GB/s", found=f"{busbw:.3f} GB/s",
          cause="a slow or degraded link (or another job using the devices)",
          fix="compare with the other nodes; check the topology and link checks")

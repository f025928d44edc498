"""Quick level (seconds): the host is the matrix row it should be, its NPUs are
visible and healthy, and torch_npu imports against the installed CANN."""
from __future__ import annotations

import json
import os
import re
from shlex import quote

import pytest

from compat_matrix.versions import VendorVersion, in_range
from validation.node import codes, hardware

pytestmark = pytest.mark.quick

HDK_HINT = "install the row's HDK driver and firmware (make deploy TAGS=driver)"


def expected_devices(stack, options) -> int:
    return options["devices"] or stack["npus_per_node"] * stack.get("dies_per_npu", 1)


def _train(innerversion: str | None) -> str | None:
    """A CANN inner version's release train: V100R001C23SPC002B210 -> V100R001C23."""
    m = re.match(r"V\d+R\d+C\d+", innerversion or "")
    return m.group(0) if m else None


def active_toolkit(facts, stack) -> dict | None:
    """The toolkit the row's packaging generation runs (its entry point), whatever its version."""
    return next((t for t in facts["cann"] if t["generation"] == stack["packaging"]), None)


def test_driver_version(facts, stack, check):
    hdk = stack["hdk"]
    driver = facts["driver"]
    wanted = f"{hdk['min']} .. {hdk.get('max') or 'newer'} (paired with CANN {stack['cann']}: {hdk['version']})"
    check(driver is not None, "no NPU driver is installed", expected=f"driver {wanted}",
          found="no driver/version.info", cause="the HDK driver is not installed (or not mounted into the container)",
          fix=HDK_HINT)
    version = driver["version"]
    try:
        ok = in_range(VendorVersion(version), hdk["min"], hdk.get("max"))
    except ValueError:
        ok = False
    check(ok, f"driver {version} does not pair with CANN {stack['cann']}", expected=f"driver {wanted}",
          found=f"driver {version}", cause="the driver is outside the HDK range this CANN supports (error 507033 at run time)",
          fix=HDK_HINT)
    # The vendor's own rule: the driver's version.info lists the CANN inner versions it supports
    # (compatible_version=[V100R001C19],...), and the CANN installers check the toolkit's train
    # against it (hicann/runtime install.sh ver_check). A driver newer than the row's is judged by
    # it; without the list (older drivers) only the row's HDK range above applies.
    toolkit = active_toolkit(facts, stack)
    train = _train((toolkit or {}).get("innerversion"))
    listed = re.findall(r"\[([^\]]+)\]", driver.get("compatible_version") or "")
    if train and listed:
        check(train in listed,
              f"driver {version} does not support the active CANN {toolkit['version']}: its version.info "
              f"compatible_version does not list {train}",
              expected=f"a driver whose compatible_version lists {train} (CANN {toolkit['version']}'s innerversion)",
              found=f"driver {version}: compatible_version={driver['compatible_version']}",
              cause="the driver is too old or too new for this CANN by the driver's own compatibility list "
                    "(the CANN installer's version check; error 507033 at run time)",
              fix=HDK_HINT)
    elif VendorVersion(version) > VendorVersion(hdk["version"]) and not hdk.get("max"):
        check.warn(f"driver {version} is newer than the row's HDK {hdk['version']}: the row sets no maximum and "
                   f"{'the driver lists no compatible_version' if not listed else 'the active toolkit names no innerversion'}"
                   f", so its support for CANN {stack['cann']} was not verified")


def test_firmware_pairs_with_driver(facts, check):
    fw, driver = facts["firmware"], facts["driver"]
    check(fw is not None, "no NPU firmware version found", expected="firmware/version.info",
          found="missing", cause="the firmware package is not installed", fix=HDK_HINT)
    if driver:
        check(fw["package_version"] == driver["version"],
              f"firmware {fw['version']} belongs to HDK {fw['package_version']}, the driver is {driver['version']}",
              expected=f"firmware from HDK {driver['version']}", found=f"firmware from HDK {fw['package_version']}",
              cause="driver and firmware come from different HDK releases", fix=HDK_HINT)


def test_install_info(facts, check):
    info = facts["install_info"]
    check(bool(info.get("Driver_Install_Path_Param")), "/etc/ascend_install.info does not record the driver",
          expected="Driver_Install_Path_Param=<install root>", found=json.dumps(info) if info else "no such file",
          cause="the driver was not installed with the vendor's installer, or the file was not mounted",
          fix="install the driver with its .run package; in containers mount /etc/ascend_install.info")


def test_device_nodes(probe, facts, stack, options, check):
    want = expected_devices(stack, options)
    shared = [f"/dev/{n}" for n in stack["device_nodes"]]
    rc, out, _ = probe.run(f"for d in /dev/davinci[0-9]* {' '.join(shared)}; "
                           "do [ -e \"$d\" ] && echo \"$(stat -c %F \"$d\") $d\"; done; true")
    chars = {line.rsplit(" ", 1)[1] for line in out.splitlines() if line.startswith("character special file")}
    davinci = sorted(d for d in chars if re.fullmatch(r"/dev/davinci\d+", d))
    missing = [d for d in shared if d not in chars]
    check(not missing, f"management device node(s) missing: {', '.join(missing)}",
          expected=f"{', '.join(shared)} as character devices",
          found=f"missing {', '.join(missing)}", seen="-8005",
          fix="load the driver; in containers pass --device for each of them")
    check(len(davinci) == want, f"{len(davinci)} /dev/davinciN device node(s), {want} expected",
          expected=f"{want} character devices /dev/davinci0..", found=", ".join(davinci) or "none",
          cause="an NPU is not visible: not passed into the container, dropped off the bus, or the driver did not load",
          fix="pass every /dev/davinciN (--device) or check the card with `npu-smi info` / `lspci`")


def test_npu_health(facts, stack, options, check):
    smi = facts["npu_smi"] or {}
    check("error" not in smi, "npu-smi info failed", expected="the device table",
          found=smi.get("error", ""), seen=smi.get("error", ""))
    devices = facts["devices"]
    bad = [d for d in devices if codes.health_verdict(d["health"]) == "fail"]
    check(not bad, "unhealthy NPU(s): " + ", ".join(f"NPU {d['npu']} chip {d['chip']} {d['health']}" for d in bad),
          expected="Health OK on every chip", found=hardware.listing(hardware.health_findings(bad)),
          cause="the device reports a fault (Alarm or Critical): " + hardware.listing(hardware.health_findings(bad)),
          fix=hardware.health_fix(bad, os.path.dirname(stack["paths"]["hccn_tool"])))
    rows = smi.get("unread_rows") or []
    check(not rows, f"npu-smi info: {len(rows)} row(s) of the device table could not be read",
          expected="every chip row in npu-smi info's layout",
          found="; ".join(f"line {u['lineno']}: {u['line']!r} ({u['reason']})" for u in rows),
          cause="npu-smi printed rows npuenv cannot read (a garbled or cut line, or a layout of a driver npuenv "
                "does not know): the chips on them were not checked",
          fix="run `npu-smi info` on the host and read the rows named; if the layout is the driver's own, "
              "add the output to npuenv's vendor samples")
    check(len(devices) == expected_devices(stack, options),
          f"npu-smi shows {len(devices)} device(s), {expected_devices(stack, options)} expected",
          expected=str(expected_devices(stack, options)), found=str(len(devices)),
          cause="an NPU is missing from the driver's view", fix="check the card (`lspci | grep d80`, `npu-smi info -l`)")
    warned = [d for d in devices if codes.health_verdict(d["health"]) == "warn"]
    if warned:
        check.warn("NPU health Warning: " + ", ".join(f"NPU {d['npu']} chip {d['chip']}" for d in warned))


def test_npu_processes(facts, check):
    procs = (facts["npu_smi"] or {}).get("processes") or []
    check(not procs, f"{len(procs)} process(es) already hold NPUs",
          expected="no process on any NPU before validation",
          found=", ".join(f"pid {p['pid']} ({p['name']}) on NPU {p['npu']}" for p in procs),
          seen="-8020")


def test_cann_toolkit(facts, stack, check):
    toolkits = facts["cann"]
    found = ", ".join(f"{t['version']} ({t['generation']})" for t in toolkits) or "none"
    entry = stack["paths"]["toolkit_latest"]
    match = [t for t in toolkits if t["version"] == stack["cann"] and t["generation"] == stack["packaging"]]
    check(bool(match), f"CANN toolkit {stack['cann']} is not installed",
          expected=f"CANN {stack['cann']} ({stack['packaging']} layout, {entry})",
          found=found, cause="the toolkit is missing or another version is active",
          fix="install the row's toolkit (make deploy TAGS=cann)")
    active = match[0]
    # Up to 8.3 latest/version.cfg also says which version runs; it must be this one.
    check(active["running"] in (None, stack["cann"]),
          f"CANN {stack['cann']}'s install-info is behind {entry}, but latest/version.cfg runs {active['running']}",
          expected=f"toolkit_running_version=[...:{stack['cann']}] in {entry}/version.cfg",
          found=f"toolkit_running_version names {active['running']}",
          cause="latest's links and its version.cfg disagree (a version switch or install that stopped midway)",
          fix="deploy the row again (it makes the version the running one with the vendor's create_version_softlink.sh)")
    check(active["env_script"], f"CANN {stack['cann']} is active but {stack['paths']['env_script']} is missing",
          expected=stack["paths"]["env_script"], found="missing",
          cause="the toolkit's install stopped before it wrote its env script",
          fix="deploy the row again (the toolkit is installed again)")
    kernel_dir = stack["paths"]["kernels_dir"].rsplit("/", 1)[1]
    check(kernel_dir in active["kernels"], f"the {stack['chip']} kernels/ops package is not installed",
          expected=f"{stack['packages']['kernels']} installed ({kernel_dir} kernels)",
          found=", ".join(active["kernels"]) or "no kernels",
          cause="the operator package for this chip was not installed",
          fix="install the row's kernels (up to CANN 8.3) or ops (from 8.5) package")


def test_nnal(facts, stack, check):
    active = facts["nnal_active"]
    check(stack["cann"] in facts["nnal"], f"NNAL {stack['cann']} is not installed",
          expected=f"{stack['paths']['nnal_dir']}", found=", ".join(facts["nnal"]) or "none",
          cause="the NNAL package was not installed", fix="install the row's NNAL package")
    # On disk is not enough: nnal/atb/latest (and set_env.sh, which follows it) must lead to it.
    check(active["version"] == stack["cann"],
          f"NNAL {stack['cann']} is installed but not the active one: {active['entry_point']} leads to "
          f"{active['version'] or 'no version'}",
          expected=f"{active['entry_point']} -> {stack['paths']['nnal_dir']}",
          found=f"{active['entry_point']} leads to NNAL {active['version'] or 'none'} "
                f"(on disk: {', '.join(facts['nnal'])})",
          cause="another NNAL version is the active one (the one installed or switched to last)",
          fix="deploy the row again (it switches NNAL with the version's create_version_softlink.sh)")
    check(active["env_script"], f"NNAL {stack['cann']} is active but {stack['paths']['nnal_env_script']} is missing",
          expected=stack["paths"]["nnal_env_script"], found="missing",
          cause="an NNAL version was uninstalled (its uninstall.sh removes set_env.sh) or an upgrade stopped midway",
          fix="deploy the row again (the switch to the version writes set_env.sh)")


def test_login_environment(probe, stack, check):
    scalars = stack["environment"]["variables"]
    rc, out, err = probe.run("env")
    env = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    for key in ("ASCEND_HOME_PATH", "ASCEND_OPP_PATH", "ASCEND_TOOLKIT_HOME"):
        check(env.get(key) == scalars[key], f"{key} is not set as CANN's set_env.sh sets it",
              expected=scalars[key], found=env.get(key, "unset"), seen="set_env.sh")
    lib64 = scalars["ASCEND_TOOLKIT_HOME"] + "/lib64"
    check(lib64 in env.get("LD_LIBRARY_PATH", "").split(":"), "the toolkit's lib64 is not on LD_LIBRARY_PATH",
          expected=lib64, found=env.get("LD_LIBRARY_PATH", "unset"), seen="libhccl.so: cannot open shared object file")
    home = env["ASCEND_HOME_PATH"]
    rc, out, _ = probe.run(f"for d in {home}/runtime {home}/compiler {env['ASCEND_OPP_PATH']}; do [ -d $d ] || echo $d; done")
    check(not out.strip(), "directories torch_npu checks at import are missing", expected="runtime/, compiler/, opp/",
          found="missing " + " ".join(out.split()), seen="ASCEND_HOME_PATH")


def test_python_versions(facts, probe, stack, check):
    record = probe.read(stack["paths"]["wheelhouse_manifest"])
    manifest = json.loads(record) if record else None
    py = facts["python"]
    check("error" not in py, "python3 cannot report the installed packages", expected="python3 on PATH",
          found=py.get("error", ""), seen=py.get("error", ""))
    notes = (manifest or {}).get("notes", [])
    for dist in ("torch", "torch_npu", "torchvision"):
        have = py.get(dist)
        left_out = [n for n in notes if n.startswith(f"{dist} left out")]
        if have is None and left_out:
            # The wheelhouse recorded that it deliberately has no such wheel.
            check.warn(f"{dist} {stack[dist]} not installed: the wheelhouse says {left_out[0]}")
            continue
        public = (have or "").split("+")[0]
        check(public == stack[dist], f"{dist} {have or 'missing'} installed, the row says {stack[dist]}",
              expected=f"{dist}=={stack[dist]}", found=have or "not installed",
              cause="drift: the host's Python stack is not the row's", fix="reinstall the row's wheelhouse (make deploy TAGS=python)")


def test_pip_check(probe, check):
    rc, out, err = probe.run("python3 -m pip check")
    check(rc == 0, "pip check reports broken requirements", expected="No broken requirements found.",
          found=(out + err).strip()[-800:], cause="packages were installed outside the wheelhouse",
          fix="reinstall from the row's wheelhouse")


# The answers of python_imports() are lines of their own, so that one printed before a crash is read.
IMPORTED = "@@npuenv-imported"


def python_imports(probe, modules: list[str]) -> tuple[dict, int, str, str]:
    """One python3 (per host: probe.run_once) for two checks: it imports torch and torch_npu first,
    as a job does (torch_npu_import), then CANN's Python dependencies, most of which torch imported
    by then (cann_python_deps: one interpreter instead of two, and numpy and sympy imported once).
    (answers by name, exit code, stdout, stderr); an answer python3 died before is missing."""
    code = ("import importlib, json, traceback\n"
            f"def answer(key, value):\n    print({IMPORTED!r}, json.dumps({{key: value}}), flush=True)\n"
            "try:\n    import torch, torch_npu\n"
            "    answer('torch_npu', {'available': torch.npu.is_available(), 'count': torch.npu.device_count()})\n"
            "except Exception:\n    answer('torch_npu', {'error': traceback.format_exc()})\n"
            f"bad = {{}}\nfor m in {modules!r}:\n    try:\n        importlib.import_module(m)\n"
            "    except Exception as e:\n        bad[m] = f'{type(e).__name__}: {e}'\n"
            "answer('cann_python_modules', bad)\n")
    rc, out, err = probe.run_once(f"python3 -c {quote(code)}")
    answers = {}
    for line in out.splitlines():
        if line.startswith(IMPORTED + " "):
            answers.update(json.loads(line[len(IMPORTED) + 1:]))
    return answers, rc, out, err


def test_cann_python_deps(probe, stack, check):
    modules = stack["cann_python_modules"]
    answers, rc, out, err = python_imports(probe, modules)
    bad = answers.get("cann_python_modules")
    if bad is None:
        # python3 died before them (in import torch_npu: that check fails with it): imported alone instead.
        code = ("import importlib, json\nbad = {}\n"
                f"for m in {modules!r}:\n    try:\n        importlib.import_module(m)\n"
                "    except Exception as e:\n        bad[m] = f'{type(e).__name__}: {e}'\nprint(json.dumps(bad))")
        rc, out, err = probe.run(f"TORCH_DEVICE_BACKEND_AUTOLOAD=0 python3 -c {quote(code)}")
        bad = json.loads(out.strip().splitlines()[-1]) if rc == 0 and out.strip() else {"python3": err.strip()}
    check(not bad, "CANN's Python dependencies do not import", expected=", ".join(modules),
          found="; ".join(f"{k}: {v}" for k, v in bad.items()), seen="No module named 'decorator'")


# What the library listing prints (on stderr) for a package python3 cannot find.
NOT_INSTALLED = "npuenv: not installed:"


def test_torch_npu_libraries(probe, check):
    # torch's and torch_npu's own libraries are loaded before these at import,
    # so they count as found; what must resolve from the environment is CANN.
    # The folders come one per line (IFS: a newline), so a path with a space stays one.
    finder = ("import importlib.util as u, os, sys\n"
              "specs = {m: u.find_spec(m) for m in ('torch', 'torch_npu')}\n"
              "missing = [m for m, s in specs.items() if s is None]\n"
              f"sys.exit({NOT_INSTALLED!r} + ' ' + ' '.join(missing)) if missing else None\n"
              "print(os.path.dirname(specs['torch'].origin)); print(specs['torch_npu'].submodule_search_locations[0])")
    rc, out, err = probe.run(
        f"dirs=$(TORCH_DEVICE_BACKEND_AUTOLOAD=0 python3 -c {quote(finder)}) && IFS='\n' && set -f && set -- $dirs && "
        "export LD_LIBRARY_PATH=$1/lib:$2/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH} && "
        "for f in $(find \"$2\" -name '*.so' -path '*lib*'); do ldd \"$f\" | sed \"s|^|$(basename \"$f\"): |\"; done")
    absent = next((line.removeprefix(NOT_INSTALLED).split() for line in err.splitlines()
                   if line.startswith(NOT_INSTALLED)), None)
    # Without them there is nothing to check: a failure that says so (the check did not check).
    check(not absent, f"{' and '.join(absent or [])} not installed: torch_npu's shared libraries cannot be checked",
          expected="torch and torch_npu installed for python3", found=f"no {' and no '.join(absent or [])} module",
          cause="the row's Python stack is not installed for the python3 on PATH (or another python3 comes first)",
          fix="install the row's wheelhouse (make deploy TAGS=python) and check `command -v python3`")
    missing = sorted({line.split(":")[0] + ": " + line.split("=>")[0].split(":", 1)[1].strip()
                      for line in out.splitlines() if "not found" in line})
    check(rc == 0, "torch_npu's shared libraries could not be listed", expected="torch_npu installed",
          found=(out + err).strip()[-500:], seen=err)
    # No library listed is no library checked, not a pass.
    check(bool(out.strip()), "no shared library of torch_npu was found to check",
          expected="torch_npu's lib/*.so files", found="none under its package folder",
          cause="a torch_npu without its compiled libraries (a broken or source-only install)",
          fix="reinstall torch_npu from the row's wheelhouse (make deploy TAGS=python)")
    check(not missing, f"{len(missing)} shared library dependency(ies) of torch_npu do not resolve",
          expected="every NEEDED library found with the CANN environment sourced", found="; ".join(missing[:12]),
          # the loader's own wording: explain() knows which libraries are CANN's
          seen=" ".join(f"{m}: cannot open shared object file" for m in missing))


def test_torch_npu_import(probe, facts, stack, check):
    answers, rc, out, err = python_imports(probe, stack["cann_python_modules"])
    result = answers.get("torch_npu")
    # No answer: python3 died in import torch_npu; an exit code after the last answer: at its exit.
    died = result is None or (rc != 0 and "cann_python_modules" in answers)
    failure = (err or "\n".join(line for line in out.splitlines() if not line.startswith(IMPORTED))) if died \
        else result.get("error", "")
    failure = failure.strip()
    check(not died and "error" not in result, "import torch_npu fails", expected="import torch_npu succeeds",
          found=failure.splitlines()[-1] if failure else f"exit {rc}", seen=f"{failure}\n{err}")
    shown = len(facts["devices"])
    check(result["available"] and result["count"] == shown,
          f"torch_npu sees {result['count']} device(s), npu-smi shows {shown}",
          expected=f"torch.npu.is_available() and device_count() == {shown}",
          found=f"is_available()={result['available']}, device_count()={result['count']}",
          cause="the devices are not visible to the process (device nodes, ASCEND_RT_VISIBLE_DEVICES) or busy",
          fix="pass every device into the container and check ASCEND_RT_VISIBLE_DEVICES")

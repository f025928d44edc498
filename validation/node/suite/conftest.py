"""Fixtures of the validation suite: the expected stack, per-host facts,
workload runner and the `check` helper that records why a check failed."""
from __future__ import annotations

import json
from dataclasses import dataclass
from shlex import quote

import pytest

from validation.node import explain, facts as facts_mod, workloads
from validation.node import options as suite_options
from validation.node.model import AUTO, BACKENDS, LEVELS, STACK_KEY, STACK_VERSION
from validation.node.runner import FLEET_PORT
from validation.node.results import PROP_DATA, PROP_FAILURE, PROP_WARNING


def pytest_addoption(parser):
    g = parser.getgroup("npuenv")
    g.addoption("--npuenv-stack", help="JSON file: the resolved matrix row the hosts must match")
    g.addoption("--npuenv-backend", default=AUTO, choices=BACKENDS)
    # The same names, defaults and ranges as `npuenv validate`'s options (validation/node/options.py).
    for option in suite_options.SUITE_OPTIONS:
        g.addoption(f"--npuenv-{option.name}", type=option.parse, default=option.default, help=option.help)
    # The fleet phase (validation/node/runner.py --fleet): every node runs its part at once.
    g.addoption("--npuenv-fleet-size", type=suite_options.integer(1), help="nodes taking part in the fleet checks")
    g.addoption("--npuenv-fleet-rank", type=suite_options.integer(0),
                help="this node's rank among them (0 hosts the rendezvous)")
    g.addoption("--npuenv-fleet-master", help="address of rank 0, as the nodes reach it")
    g.addoption("--npuenv-fleet-port", type=suite_options.port, default=FLEET_PORT, help="rendezvous port on rank 0")
    g.addoption("--npuenv-peer-ips", default="",
                help="device IPs of the next node, DEVICE=IP,... (netdetect between peers)")


def pytest_configure(config):
    for level in LEVELS:
        config.addinivalue_line("markers", f"{level}: validation level {level}")
    config.addinivalue_line("markers", "fleet: needs every node at once (run in the fleet phase)")


def pytest_collection_modifyitems(items):
    # One xdist group per host: a host's checks run in order on one worker,
    # different hosts in parallel.
    for item in items:
        host = item.callspec.params.get("_testinfra_host") if hasattr(item, "callspec") else None
        item.add_marker(pytest.mark.xdist_group(name=str(host or "fleet")))


@pytest.fixture(scope="session")
def stack(pytestconfig) -> dict:
    path = pytestconfig.getoption("--npuenv-stack")
    if not path:
        pytest.exit("the suite needs --npuenv-stack (run it through `npuenv validate`)", returncode=4)
    with open(path) as f:
        data = json.load(f)
    if not isinstance(data, dict) or data.get(STACK_KEY) != STACK_VERSION:
        found = data.get(STACK_KEY) if isinstance(data, dict) else type(data).__name__
        pytest.exit(f"--npuenv-stack {path}: not a stack of format {STACK_VERSION} ({STACK_KEY} is {found!r}); "
                    f"write it with `npuenv matrix resolve --format json`", returncode=4)
    return data


@pytest.fixture(scope="session")
def options(pytestconfig) -> dict:
    return {k: pytestconfig.getoption(f"--npuenv-{k.replace('_', '-')}")
            for k in ("backend", "devices", "max_bytes", "busbw_floor", "timeout", "nproc", "fleet_size",
                      "fleet_rank", "fleet_master", "fleet_port", "peer_ips")}


_FACTS: dict[str, dict] = {}
_PROBES: dict[str, facts_mod.Probe] = {}


def probe_for(host) -> facts_mod.Probe:
    """How a testinfra host is read. The machine the suite runs on (the artefact's local:// run) is
    read directly: through testinfra, every file read would cost it three shell processes."""
    here = host.backend.NAME == "local" and not host.backend.sudo
    return facts_mod.LocalProbe("/") if here else facts_mod.HostProbe(host)


@pytest.fixture
def probe(host) -> facts_mod.Probe:
    """One per host and worker."""
    key = host.backend.get_pytest_id()
    if key not in _PROBES:
        _PROBES[key] = probe_for(host)
    return _PROBES[key]


@pytest.fixture
def facts(host, probe) -> dict:
    """The host's facts, read once per host and worker (its NPU ports when a check first needs them)."""
    key = host.backend.get_pytest_id()
    if key not in _FACTS:
        _FACTS[key] = facts_mod.collect(probe, network=False)
    return _FACTS[key]


class CheckFailed(AssertionError):
    pass


def unexplained(summary: str, found: str) -> str:
    """The cause of a failure no known one explains: what the check saw (the last line of it)."""
    seen = next((line.strip() for line in reversed(str(found).splitlines()) if line.strip()), "") or summary
    return f"not a failure npuenv can explain; the check saw: {seen[:200]}"


def look_closer(test_name: str) -> str:
    """The next step for a failure no known one explains: the check's whole output."""
    name = test_name.removeprefix("test_") or "CHECK"
    return (f"run the check alone to see its whole output (npuenv validate --target HOST --only {name}) "
            "and compare what it found with what was expected")


@dataclass
class Checker:
    request: pytest.FixtureRequest

    def __call__(self, ok: bool, summary: str, *, expected: str, found: str, seen: str = "",
                 cause: str | None = None, fix: str | None = None) -> None:
        """Fail the check unless ``ok``: say what was expected, what was found,
        the likely cause and the fix (from the known failures when not given)."""
        if ok:
            return
        known = explain.explain(seen or found)
        cause = cause or (known[0] if known else unexplained(summary, found))
        fix = fix or (known[1] if known else look_closer(getattr(self.request.node, "originalname", "")))
        # Text, as the node document's schema wants it (validation/node/document.py).
        failure = {k: str(v) for k, v in
                   {"summary": summary, "expected": expected, "found": found, "cause": cause, "fix": fix}.items()}
        self.request.node.user_properties.append((PROP_FAILURE, json.dumps(failure)))
        raise CheckFailed(f"{summary}\n  expected: {expected}\n  found:    {found}\n"
                          f"  likely cause: {cause}\n  fix: {fix}")

    def warn(self, message: str) -> None:
        self.request.node.user_properties.append((PROP_WARNING, message))

    def record(self, data) -> None:
        self.request.node.user_properties.append((PROP_DATA, json.dumps(data)))


@pytest.fixture
def check(request) -> Checker:
    return Checker(request)


def workload_command(probe: facts_mod.Probe, name: str, args: str) -> str:
    """The command that runs a workload with the host's python3 (in a login shell).

    On the node itself (the artefact's local:// run) the workload is a file of
    the unpacked artefact; a remote testinfra host (pytest --hosts=ssh://...)
    gets its source on stdin."""
    if probe.is_local:
        return f"python3 {quote(str(workloads.source_path(name)))} {args}"
    source = workloads.script(name)
    marker = "NPUENV_WORKLOAD_EOF"
    assert marker not in source
    return f"python3 - {args} <<'{marker}'\n{source}\n{marker}"


def run_workload(probe: facts_mod.Probe, name: str, args: str, timeout: int = 600) -> tuple[dict | None, str]:
    """Run a workload with the host's python3; (its JSON, its output)."""
    rc, out, err = probe.run(f"timeout {timeout} {workload_command(probe, name, args)}")
    return workloads.last_json(out), out + err


@pytest.fixture
def workload(probe, options):
    def _run(name: str, args: str = "") -> tuple[dict | None, str]:
        return run_workload(probe, name, f"--backend {options['backend']} {args}".strip())
    return _run

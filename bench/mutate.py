"""Mutation testing, one module at a time, with mutmut.

  python bench/mutate.py run MODULE     mutate MODULE, run the unit tests that cover it, record the score
  python bench/mutate.py report         every recorded score in one table (bench/results/mutation.{json,md})
  python bench/mutate.py list           the modules and the tests each is judged by

Why mutmut (3.x): it forks one process per mutant from a warmed-up pytest and
runs only the tests that reach the mutated function, so a module takes
minutes on two cores; cosmic-ray re-runs the whole test command per mutant.

Each module gets its own workspace, out/mutation/<module>/, holding links to
the packages and tests and a setup.cfg naming that module and its tests:
mutmut reads its settings from the working directory and copies the packages
into mutants/ there; each run starts from a fresh copy, because mutmut keeps
a survivor's verdict when only the tests changed. Scores go to bench/results/mutation/<module>.json; survivors that
cannot be killed are listed with the reason in tests/mutation/equivalent.md
and count as killed in the adjusted score.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "out" / "mutation"
RESULTS = ROOT / "bench" / "results"
EQUIVALENT = ROOT / "tests" / "mutation" / "equivalent.md"
# The project's packages, as the wheel holds them (pyproject.toml)
PACKAGES = tuple(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["hatch"]["build"]["targets"]["wheel"]
                 ["packages"])
LINKED = (*PACKAGES, "tests", "pyproject.toml", "Makefile")
GOAL = 0.90
# Functions that verify checksums and hashes (the Dockerfile's own checks are shell in a
# template, which mutmut cannot mutate: tests/unit/test_dockerfile_checksums.py executes them).
CHECKSUM_FUNCTIONS = {
    "torch_npu_pkg/bundle.py": ["make", "verify", "verify_dir"],
    "torch_npu_pkg/wheelhouse.py": ["verify"],
    "images/build.py": ["check_installers", "check_wheelhouse"],
    "images/render.py": ["python_deps", "sha256_text"],
}

# The vendor_tools package's tests are per topic, not per module: each module is judged by all of them.
VENDOR_TOOLS_TESTS = ["tests/unit/test_vendor_tools.py", "tests/unit/test_vendor_variations.py",
                      "tests/unit/test_vendor_heldout.py", "tests/unit/test_vendor_tools_mutants.py"]

# module -> the unit tests that judge it (mutmut runs only those reaching the mutated function)
MODULES = {
    "compat_matrix/resolver.py": ["tests/unit/test_resolver_rules.py", "tests/unit/test_matrix_resolve.py",
                                  "tests/unit/test_resolver_prereleases.py"],
    "compat_matrix/loader.py": ["tests/unit/test_matrix_loader.py", "tests/unit/test_matrix_schema.py"],
    "compat_matrix/schema.py": ["tests/unit/test_matrix_schema.py"],
    "compat_matrix/versions.py": ["tests/unit/test_resolver_rules.py", "tests/unit/test_matrix_resolve.py",
                                  "tests/unit/test_matrix_schema.py", "tests/unit/test_checks_quick.py"],
    "compat_matrix/stack.py": ["tests/unit/test_matrix_resolve.py", "tests/unit/test_images_render.py"],
    "validation/node/suite/test_quick.py": ["tests/unit/test_checks_quick.py", "tests/unit/test_validate_defects.py",
                                            "tests/unit/test_facts.py"],
    "validation/node/suite/test_standard.py": ["tests/unit/test_checks_standard.py", "tests/unit/test_checks_full.py"],
    "validation/node/suite/test_full.py": ["tests/unit/test_checks_full.py"],
    "validation/node/explain.py": ["tests/unit/test_explain.py", "tests/unit/test_checks_quick.py"],
    # test_status's artefact test builds the artefact from the tree, which fails in mutmut's copy of it
    "validation/node/facts.py": ["tests/unit/test_facts.py", "tests/unit/test_facts_files.py",
                                 "tests/unit/test_facts_mutants.py", "tests/unit/test_status.py",
                                 "-k", "not the_node_gets_the_artefact_once"],
    # (not test_validate_options.py: its parameters are changed by the test itself, so mutmut's second
    # in-process pytest run, the clean run, fails)
    "validation/run.py": ["tests/unit/test_validation_run.py", "tests/unit/test_validate_composition.py",
                          "tests/unit/test_machine_identity.py", "tests/unit/test_lock_readback.py",
                          "tests/unit/test_validation_run_mutants.py", "tests/unit/test_validate_progress.py"],
    "validation/merge.py": ["tests/unit/test_validation_run.py", "tests/unit/test_hostile_node.py",
                            "tests/unit/test_validation_merge_mutants.py"],
    "validation/artefact.py": ["tests/unit/test_validation_run.py", "tests/unit/test_artefact_mutants.py",
                               "tests/unit/test_node_run.py"],
    "validation/targets.py": ["tests/unit/test_validation_run.py", "tests/unit/test_validate_target_parsing.py",
                              "tests/unit/test_lock_readback.py", "tests/unit/test_validation_targets_mutants.py",
                              "tests/unit/test_validate_progress.py", "tests/unit/test_validation_run_mutants.py"],
    "validation/report.py": ["tests/unit/test_report.py", "tests/unit/test_validation_run.py",
                             "tests/unit/test_hostile_node.py"],
    "validation/stragglers.py": ["tests/unit/test_stragglers.py", "tests/unit/test_validation_run.py"],
    "validation/node/codes.py": ["tests/unit/test_explain.py", "tests/unit/test_checks_quick.py",
                            "tests/unit/test_vendor_variations.py", "tests/unit/test_vendor_heldout.py",
                            "tests/unit/test_codes_table.py"],
    "validation/node/hardware.py": ["tests/unit/test_hardware_checks.py", "tests/unit/test_hardware_findings.py"],
    "validation/node/suite/test_hardware.py": ["tests/unit/test_hardware_checks.py"],
    "compat_matrix/checksums.py": ["tests/unit/test_checksums.py", "tests/unit/test_bundle_verify.py"],
    "validation/node/vendor_tools/common.py": VENDOR_TOOLS_TESTS,
    "validation/node/vendor_tools/npu_smi.py": VENDOR_TOOLS_TESTS,
    "validation/node/vendor_tools/kernel_log.py": VENDOR_TOOLS_TESTS,
    "validation/node/vendor_tools/hccn_tool.py": VENDOR_TOOLS_TESTS,
    "validation/node/vendor_tools/hccl_test.py": VENDOR_TOOLS_TESTS,
    # the xdist case runs pytest in a subprocess, where mutmut's trampolines find no settings
    "validation/node/results.py": ["tests/unit/test_results_plugin.py", "tests/unit/test_results_mutants.py",
                                   "-k", "not xdist"],
    # the interrupted build runs npuenv in a subprocess, where mutmut's trampolines find no settings
    "torch_npu_pkg/wheelhouse.py": ["tests/unit/test_wheelhouse_checks.py", "tests/unit/test_wheelhouse_build.py",
                                    "tests/unit/test_wheelhouse_attacks.py", "tests/unit/test_wheelhouse_mutants.py",
                                    "tests/unit/test_wheelhouse_build_steps.py", "-k", "not interrupted_build"],
    "torch_npu_pkg/bundle.py": ["tests/unit/test_bundle.py", "tests/unit/test_bundle_verify.py"],
    "images/render.py": ["tests/unit/test_images_render.py", "tests/unit/test_dockerfile_checksums.py",
                         "tests/unit/test_images_build.py"],
    "images/build.py": ["tests/unit/test_images_build.py"],
    "images/registry.py": ["tests/unit/test_images_registry.py", "tests/unit/test_images_registry_mutants.py"],
    "compat_matrix/interrupts.py": ["tests/unit/test_interrupts_unit.py"],
    "compat_matrix/lock.py": ["tests/unit/test_lock.py", "tests/unit/test_lock_cli.py", "tests/unit/test_lock_readback.py"],
    "validation/node/document.py": ["tests/unit/test_hostile_node.py", "tests/unit/test_validation_run.py"],
    "validation/node/model.py": ["tests/unit/test_result_model.py", "tests/unit/test_report.py",
                            "tests/unit/test_validation_merge_mutants.py"],
    "playbooks/collections/ansible_collections/npuenv/ascend/plugins/lookup/npuenv_stack.py": ["tests/unit/test_playbook_plugins.py"],
    "playbooks/collections/ansible_collections/npuenv/ascend/plugins/lookup/npuenv_installers.py": ["tests/unit/test_playbook_plugins.py"],
    "playbooks/collections/ansible_collections/npuenv/ascend/plugins/filter/npuenv.py": ["tests/unit/test_playbook_plugins.py"],
    "playbooks/collections/ansible_collections/npuenv/ascend/plugins/action/npuenv_hccn.py": ["tests/unit/test_converge_tasks.py"],
}


def slug(module: str) -> str:
    return module.removesuffix(".py").replace("/", ".")


def workspace(module: str) -> Path:
    """out/mutation/<module>/: links to the sources and tests, and mutmut's settings for this module."""
    ws = WORK / slug(module)
    ws.mkdir(parents=True, exist_ok=True)
    for name in LINKED:
        link = ws / name
        if not link.exists():
            link.symlink_to(ROOT / name)
    lines = ["[mutmut]", "source_paths ="] + [f"    {p}" for p in PACKAGES]
    lines += ["also_copy =", "    Makefile"]   # the build tests read the Makefile's targets
    lines += ["only_mutate =", f"    {module}", "pytest_add_cli_args_test_selection ="]
    lines += [f"    {t}" for t in MODULES[module]]
    # one process, no cache: mutmut forks its own workers
    lines += ["pytest_add_cli_args =", "    -p", "    no:cacheprovider", "    -p", "    no:xdist", "    -q"]
    (ws / "setup.cfg").write_text("\n".join(lines) + "\n")
    return ws


def mutmut(ws: Path, *args: str, quiet: bool = False) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).parent / "mutmut"
    if not exe.exists():
        raise SystemExit("mutmut is not installed in this venv: run `make setup` (it is a dev dependency)")
    env = dict(os.environ, TERM="dumb")
    return subprocess.run([str(exe), *args], cwd=ws, env=env, text=True, capture_output=quiet)


def run(module: str) -> int:
    if module not in MODULES:
        print(f"unknown module {module!r}; `python bench/mutate.py list` names the configured ones", file=sys.stderr)
        return 2
    missing = [t for t in MODULES[module] if t.endswith(".py") and not (ROOT / t).exists()]
    if missing:
        print(f"{module}: its tests are missing: {', '.join(missing)}", file=sys.stderr)
        return 2
    ws = workspace(module)
    shutil.rmtree(ws / "mutants", ignore_errors=True)
    done = mutmut(ws, "run", quiet=True)
    if done.returncode != 0:
        print(done.stdout[-3000:], done.stderr[-3000:], file=sys.stderr)
        return 2
    mutmut(ws, "export-cicd-stats", quiet=True)
    stats = json.loads((ws / "mutants" / "mutmut-cicd-stats.json").read_text())
    listed = mutmut(ws, "results", "--all", "true", quiet=True).stdout
    verdicts = {m.group(1): m.group(2) for m in re.finditer(r"^\s*(\S+): (.+?)\s*$", listed, re.M)}
    survivors = sorted(name for name, verdict in verdicts.items() if verdict == "survived")
    functions: dict[str, dict[str, int]] = {}
    for name, verdict in verdicts.items():
        counts = functions.setdefault(function_of(name), {"total": 0, "killed": 0})
        counts["total"] += 1
        counts["killed"] += verdict in ("killed", "timeout")
    record = {"module": module, "tests": MODULES[module], **{k: stats[k] for k in ("killed", "survived", "total",
                                                                                     "timeout", "no_tests",
                                                                                     "suspicious")},
              "survivors": survivors, "functions": functions}
    out = RESULTS / "mutation"
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{slug(module)}.json").write_text(json.dumps(record, indent=1) + "\n")
    print(f"{module}: {stats['killed']} of {stats['total']} mutants killed; {len(survivors)} survived "
          f"(`cd {ws.relative_to(ROOT)} && mutmut show NAME` shows one)")
    for name in survivors:
        print(f"  {name}")
    return 0


def function_of(mutant: str) -> str:
    """compat_matrix.resolver.x_resolve__mutmut_3 -> resolve; ...xǁNoMatchǁ__init____mutmut_1 -> NoMatch.__init__"""
    name = mutant.rsplit("__mutmut_", 1)[0].rsplit(".", 1)[1]
    return name.removeprefix("x_").removeprefix("xǁ").replace("ǁ", ".")


def equivalent_mutants() -> set[str]:
    """Mutant names listed in tests/mutation/equivalent.md (first column of its tables)."""
    if not EQUIVALENT.exists():
        return set()
    return set(re.findall(r"^\|\s*`([^`]+__mutmut_\d+)`", EQUIVALENT.read_text(), re.M))


def report() -> int:
    equivalent = equivalent_mutants()
    rows = []
    for path in sorted((RESULTS / "mutation").glob("*.json")):
        r = json.loads(path.read_text())
        listed = [s for s in r["survivors"] if s in equivalent]
        killed = r["killed"] + r.get("timeout", 0)
        score = killed / r["total"] if r["total"] else 0.0
        adjusted = (killed + len(listed)) / r["total"] if r["total"] else 0.0
        rows.append({"module": r["module"], "total": r["total"], "killed": killed, "survived": r["survived"],
                     "equivalent": len(listed), "score": round(score, 3), "adjusted": round(adjusted, 3),
                     "unexplained": sorted(set(r["survivors"]) - equivalent)})
    (RESULTS / "mutation.json").write_text(json.dumps(rows, indent=1) + "\n")
    lines = ["| module | mutants | killed | survived | listed equivalent | score | adjusted |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        mark = "" if r["adjusted"] >= GOAL else " (below 90 %)"
        lines.append(f"| {r['module']} | {r['total']} | {r['killed']} | {r['survived']} | {r['equivalent']} | "
                     f"{r['score']:.0%} | {r['adjusted']:.0%}{mark} |")
    # the checksum and hash verification code, function by function
    lines += ["", "| checksum / hash verification | mutants | killed or listed equivalent | score |", "|---|---|---|---|"]
    for module, names in CHECKSUM_FUNCTIONS.items():
        path = RESULTS / "mutation" / f"{slug(module)}.json"
        if not path.exists():
            lines.append(f"| {module} | not run | | |")
            continue
        r = json.loads(path.read_text())
        for name in names:
            counts = r.get("functions", {}).get(name)
            if not counts:
                continue
            listed = sum(1 for s in r["survivors"] if s in equivalent and function_of(s) == name)
            score = (counts["killed"] + listed) / counts["total"]
            lines.append(f"| {module}: {name} | {counts['total']} | {counts['killed'] + listed} | {score:.0%} |")
    text = "\n".join(lines) + "\n"
    (RESULTS / "mutation.md").write_text(text)
    print(text, end="")
    return 0


def main(argv: list[str]) -> int:
    if argv[:1] == ["run"] and len(argv) == 2:
        return run(argv[1])
    if argv == ["report"]:
        return report()
    if argv == ["list"]:
        for module, tests in MODULES.items():
            print(f"{module}: {' '.join(tests)}")
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

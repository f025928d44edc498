"""The resolver: best row for any subset of constraints, its reasons, and no-match help."""
import json
import subprocess
import sys

import pytest
import yaml

import compat_matrix as cm
from compat_matrix.resolver import RANKING_RULES, rank_key

M = cm.load_matrix()


def npuenv(*args):
    return subprocess.run([sys.executable, "-m", "npuenv", *args], capture_output=True, text=True)


def test_torch_24_python_310_aarch64_gives_the_full_stack_with_sources():
    res = cm.resolve(M, cm.Constraints(torch="2.4", python="3.10", arch="aarch64"))
    s = res.stack.to_dict()
    # every 2.4 row fits; the newest CANN among the active ones wins
    fitting = [r.torch_npu for r in res.fitting]
    assert set(fitting) == {r.torch_npu for r in M.rows if r.torch.startswith("2.4.")}
    assert s["torch_npu"] == "2.4.0.post4" and s["cann"] == "8.1.RC1"
    assert s["torch"] == "2.4.0" and s["torchvision"] == "0.19.0" and s["python"] == "3.10"
    assert s["packages"]["toolkit"] == "Ascend-cann-toolkit_8.1.RC1_linux-aarch64.run"
    assert s["packages"]["kernels"] == "Ascend-cann-kernels-910b_8.1.RC1_linux-aarch64.run"
    assert s["paths"]["env_script"] == "/usr/local/Ascend/ascend-toolkit/set_env.sh"
    assert all(u.startswith("https://") for u in s["sources"].values())
    assert "Runner-up: torch_npu 2.4.0.post2" in res.reason


def test_ranking_prefers_active_over_newer_eol():
    rows = [r for r in M.rows if r.torch.startswith("2.1.")]
    best = max(rows, key=rank_key)
    newest_eol = max((r for r in rows if not r.active), key=lambda r: r.cann_version)
    assert best.active
    res = cm.resolve(M, cm.Constraints(torch="2.1"))
    assert res.stack.row == best
    assert RANKING_RULES[0] in res.reason
    assert newest_eol in res.fitting and res.fitting.index(newest_eol) > 0


def test_ranking_between_active_rows_is_newest_cann_then_torch_then_torch_npu():
    res = cm.resolve(M, cm.Constraints(cann="9.1.0"))
    keys = [(r.cann_version, r.torch_version, r.torch_npu_version) for r in res.fitting if r.active]
    assert keys == sorted(keys, reverse=True)
    assert res.stack.row.torch_npu == res.fitting[0].torch_npu


def test_ambiguous_cann_prefix_resolves_and_names_the_runner_up():
    res = cm.resolve(M, cm.Constraints(cann="8.0", torch="2.4"))
    assert [r.torch_npu for r in res.fitting] == ["2.4.0.post2", "2.4.0"]
    assert res.stack.row.torch_npu == "2.4.0.post2"   # 8.0.0 (active) beats 8.0.RC3 (eol)
    assert "2 row(s) fit" in res.reason and "Runner-up: torch_npu 2.4.0" in res.reason


def test_exact_torch_npu_and_specifiers():
    assert cm.resolve(M, cm.Constraints(torch_npu="2.1.0.post8")).stack.row.cann == "8.0.RC3"
    res = cm.resolve(M, cm.Constraints(torch=">=2.5,<2.6"))
    assert all(r.torch.startswith("2.5") for r in res.fitting)


def test_python_default_is_the_newest_the_row_supports():
    res = cm.resolve(M, cm.Constraints(torch_npu="2.4.0.post2"))
    assert res.stack.python == "3.11" and "python=3.11 (the newest" in res.reason


def test_no_match_lists_nearest_rows_and_why():
    with pytest.raises(cm.NoMatch) as info:
        cm.resolve(M, cm.Constraints(torch="2.4", python="3.13"))
    err = info.value
    assert err.nearest, "nearest rows expected"
    row, broken = err.nearest[0]
    assert len(broken) == 1
    text = str(err)
    assert "no matrix row fits torch=2.4, python=3.13" in text
    assert "nearest rows" in text


def test_unknown_chip_is_a_usage_error():
    with pytest.raises(cm.MatrixError) as info:
        cm.resolve(M, cm.Constraints(chip="910c"))
    assert "unknown chip '910c'; use one of: 910b, 910, a3, 310p" in str(info.value)


def test_arch_alias_and_package_names_per_generation():
    new = cm.resolve(M, cm.Constraints(cann="8.5.0", arch="arm64", chip="a3")).stack
    assert new.arch == "aarch64"
    assert new.packages["kernels"] == "Ascend-cann-A3-ops_8.5.0_linux-aarch64.run"
    assert new.paths["toolkit_home"] == "/usr/local/Ascend/cann-8.5.0"
    assert new.paths["env_script"] == "/usr/local/Ascend/cann/set_env.sh"
    old = cm.resolve(M, cm.Constraints(cann="8.3", chip="a3", arch="x86_64")).stack
    assert old.packages["kernels"] == "Atlas-A3-cann-kernels_8.3.RC1_linux-x86_64.run"
    assert old.packages["driver"].startswith("Atlas-A3-hdk-npu-driver_")


def test_cli_resolve_json_has_the_interface_keys():
    run = npuenv("matrix", "resolve", "--torch", "2.4", "--python", "3.10", "--arch", "aarch64", "--format", "json")
    assert run.returncode == 0, run.stderr
    data = json.loads(run.stdout)
    assert {"torch_npu", "torch", "cann", "torchvision", "python"} <= set(data)
    assert data["python"] == "3.10"


def test_cli_resolve_no_match_exits_1_with_reasons_on_stderr():
    run = npuenv("matrix", "resolve", "--torch", "1.8", "--format", "json")
    assert run.returncode == 1
    assert run.stdout == ""
    assert "no matrix row fits torch=1.8" in run.stderr and "torch is" in run.stderr


def test_cli_bad_constraint_exits_2():
    run = npuenv("matrix", "resolve", "--arch", "riscv64")
    assert run.returncode == 2
    assert "unknown arch 'riscv64'; use one of: x86_64, aarch64" in run.stderr


def test_exports_shell_and_ansible_agree_with_json():
    stack = cm.resolve(M, cm.Constraints(torch_npu="2.4.0.post2", arch="x86_64")).stack
    shell = stack.export("shell")
    assert "export NPUENV_TORCH_NPU=2.4.0.post2" in shell.splitlines()
    assert "export NPUENV_PACKAGES_TOOLKIT=Ascend-cann-toolkit_8.0.0_linux-x86_64.run" in shell.splitlines()
    env = subprocess.run(["bash", "-c", shell + "\nenv"], capture_output=True, text=True).stdout
    assert "NPUENV_PYTHON_VERSIONS=3.8 3.9 3.10 3.11" in env
    ansible = yaml.safe_load(stack.export("ansible"))
    assert ansible["npuenv_stack"] == json.loads(stack.export("json"))


def test_list_filters_and_show():
    run = npuenv("matrix", "list", "--cann", "8.5.0", "--format", "json")
    listed = json.loads(run.stdout)
    assert listed["npuenv_matrix_rows"] == 1
    assert listed["rows"] and all(r["cann"] == "8.5.0" for r in listed["rows"])
    run = npuenv("matrix", "show", "2.9.0")
    shown = json.loads(run.stdout)
    assert (shown["npuenv_matrix_row"], shown["cann"]) == (1, "8.5.0")
    run = npuenv("matrix", "show", "9.9.9")
    assert run.returncode == 2 and "unknown row: no torch_npu 9.9.9 in the matrix" in run.stderr


def test_list_lines_up_every_column_whatever_the_rows_hold():
    """Rows with five Pythons and rows with two: each column starts where its heading does."""
    lines = npuenv("matrix", "list").stdout.splitlines()
    header = lines[0]
    starts = [header.index(h) for h in ("torch ", "torchvision", "CANN", "Python", "HDK", "status")]
    for line in lines[1:]:
        for start in starts:
            assert line[start - 2:start] == "  " and line[start] != " ", line
    rows = {line.split()[0]: line for line in lines[1:]}
    assert rows["2.13.0"][starts[3]:].startswith("3.10, 3.11, 3.12, 3.13, 3.14  26.1.0")

"""Checks on every wheel before it enters a wheelhouse: tags, torch pin, CPU build, closure."""
import os
import zipfile

import pytest
from packaging.requirements import Requirement

import compat_matrix as cm
from tests.fixtures.wheelhouse.synth import make_elf, make_wheel
from torch_npu_pkg import closure
from torch_npu_pkg.wheels import (Target, WheelError, WheelInfo, check_cpu_torch, check_tags, check_torch_pin,
                                  cuda_linked_libraries, elf_needed)

M = cm.load_matrix()


def stack(row="==2.13.0", python="3.11", arch="x86_64"):
    return cm.resolve(M, cm.Constraints(torch_npu=row, python=python, arch=arch)).stack


S = stack()
T = Target.for_stack(S)


@pytest.mark.parametrize("tag", ["cp311-cp311-manylinux_2_28_x86_64", "cp311-cp311-manylinux2014_x86_64",
                                 "cp311-cp311-linux_x86_64", "cp36-abi3-manylinux_2_17_x86_64", "py3-none-any",
                                 "py2.py3-none-any"])
def test_tags_that_fit_python_311_on_x86_64(tmp_path, tag):
    check_tags(WheelInfo.read(make_wheel(tmp_path, "pkg", "1.0", tag)), T)


def test_a_wheel_for_another_python_is_refused_naming_both(tmp_path):
    wheel = WheelInfo.read(make_wheel(tmp_path, "torch_npu", "2.13.0", "cp312-cp312-manylinux_2_28_x86_64"))
    with pytest.raises(WheelError) as e:
        check_tags(wheel, T)
    msg = str(e.value)
    assert "torch_npu-2.13.0-cp312-cp312-manylinux_2_28_x86_64.whl" in msg
    assert "cp312-cp312" in msg and "Python 3.11 (cp311)" in msg
    assert "platform" not in msg  # the platform fits; only the Python is named


def test_a_wheel_for_another_arch_is_refused_naming_both(tmp_path):
    wheel = WheelInfo.read(make_wheel(tmp_path, "torch_npu", "2.13.0", "cp311-cp311-manylinux_2_28_aarch64"))
    with pytest.raises(WheelError, match=r"platform tags manylinux_2_28_aarch64 do not fit the requested x86_64"):
        check_tags(wheel, T)


def test_a_wheel_needing_a_newer_glibc_than_the_row_is_refused(tmp_path):
    assert T.glibc == (2, 28)
    wheel = WheelInfo.read(make_wheel(tmp_path, "numpy", "9.0", "cp311-cp311-manylinux_2_34_x86_64"))
    with pytest.raises(WheelError, match="manylinux_2_34_x86_64"):
        check_tags(wheel, T)


def test_target_platforms_come_from_the_row():
    old = Target.for_stack(stack("==2.1.0.post8", "3.10"))   # manylinux2014 wheels
    assert old.glibc == (2, 17)
    assert "manylinux_2_28_x86_64" not in old.platforms and "manylinux2014_x86_64" in old.platforms
    assert old.platforms[-1] == "linux_x86_64"
    arm = Target.for_stack(stack(arch="aarch64"))
    assert all(p.endswith("_aarch64") for p in arm.platforms)
    assert arm.marker_env["platform_machine"] == "aarch64" and arm.marker_env["python_version"] == "3.11"
    assert "--platform" in arm.pip_args() and "manylinux_2_28_aarch64" in arm.pip_args()


@pytest.mark.parametrize("pin", ["torch==2.13.0.*", "torch==2.13.0", "torch==2.13.0+cpu", "torch (==2.13.0)"])
def test_torch_pin_equal_to_the_row_is_accepted(tmp_path, pin):
    wheel = WheelInfo.read(make_wheel(tmp_path, "torch_npu", "2.13.0", requires=[pin]))
    assert check_torch_pin(wheel, S, T, required=True)


def test_torch_pin_of_another_torch_is_refused_naming_both(tmp_path):
    wheel = WheelInfo.read(make_wheel(tmp_path, "torch_npu", "2.13.0", requires=["torch==2.12.0"]))
    with pytest.raises(WheelError) as e:
        check_torch_pin(wheel, S, T, required=True)
    assert "pins torch 2.12.0" in str(e.value) and "torch_npu 2.13.0 pins torch 2.13.0" in str(e.value)


def test_a_torch_range_is_not_a_pin(tmp_path):
    wheel = WheelInfo.read(make_wheel(tmp_path, "torch_npu", "2.13.0", requires=["torch>=2.0"]))
    with pytest.raises(WheelError, match="does not pin one torch version"):
        check_torch_pin(wheel, S, T, required=True)


def test_missing_pin_refused_when_the_matrix_records_one(tmp_path):
    wheel = WheelInfo.read(make_wheel(tmp_path, "torch_npu", "2.13.0", requires=["numpy"]))
    with pytest.raises(WheelError, match=r"declares no Requires-Dist on torch.*torch==2\.13\.0\.\*"):
        check_torch_pin(wheel, S, T, required=True)
    assert check_torch_pin(wheel, S, T, required=False) is None


def test_a_pin_behind_a_marker_for_another_platform_does_not_count(tmp_path):
    wheel = WheelInfo.read(make_wheel(tmp_path, "torch_npu", "2.13.0", requires=[
        'torch==2.13.0; platform_machine == "x86_64"', 'torch==2.12.0; platform_machine == "aarch64"']))
    assert check_torch_pin(wheel, S, T, required=True) == 'torch==2.13.0; platform_machine == "x86_64"'
    with pytest.raises(WheelError, match="pins torch 2.12.0"):
        check_torch_pin(wheel, stack(arch="aarch64"), Target.for_stack(stack(arch="aarch64")), required=True)


def test_cpu_torch_accepted_and_cuda_builds_refused(tmp_path):
    tag = "cp311-cp311-manylinux_2_28_x86_64"
    cpu = WheelInfo.read(make_wheel(tmp_path / "a", "torch", "2.13.0+cpu", tag, requires=["filelock"]))
    check_cpu_torch(cpu, S, T)
    ships = WheelInfo.read(make_wheel(tmp_path / "b", "torch", "2.13.0", tag,
                                      files={"torch/lib/libtorch_cuda.so": b"\x7fELF"}))
    with pytest.raises(WheelError, match=r"CUDA build of torch \(it ships torch/lib/libtorch_cuda.so"):
        check_cpu_torch(ships, S, T)
    needs = WheelInfo.read(make_wheel(tmp_path / "c", "torch", "2.13.0", tag, requires=[
        'nvidia-cublas==13.0; platform_system == "Linux"']))
    with pytest.raises(WheelError, match="it requires nvidia-cublas"):
        check_cpu_torch(needs, S, T)
    other = WheelInfo.read(make_wheel(tmp_path / "d", "torch", "2.12.0+cpu", tag))
    with pytest.raises(WheelError, match="is torch 2.12.0.cpu, but the matrix row needs torch 2.13.0"):
        check_cpu_torch(other, S, T)


def test_elf_needed_reads_the_dynamic_section():
    assert elf_needed(make_elf(["libc10_cuda.so", "libc.so.6"])) == ["libc10_cuda.so", "libc.so.6"]
    assert "libc.so.6" in elf_needed(open(os.path.realpath("/bin/ls"), "rb").read())
    assert elf_needed(b"not an elf object" * 8) == []


def test_cuda_linked_extension_modules_are_found(tmp_path):
    tag = "cp311-cp311-manylinux_2_28_x86_64"
    cuda = WheelInfo.read(make_wheel(tmp_path / "a", "torchvision", "0.28.0", tag, files={
        "torchvision/_C.so": make_elf(["libc10.so", "libc10_cuda.so", "libcudart.so.13"])}))
    assert cuda_linked_libraries(cuda) == {"torchvision/_C.so": ["libc10_cuda.so", "libcudart.so.13"]}
    cpu = WheelInfo.read(make_wheel(tmp_path / "b", "torchvision", "0.28.0+cpu", tag, files={
        "torchvision/_C.so": make_elf(["libc10.so", "libtorch_cpu.so"])}))
    assert cuda_linked_libraries(cpu) == {}


def test_a_renamed_or_broken_wheel_is_refused(tmp_path):
    renamed = make_wheel(tmp_path, "torch_npu", "2.12.0", "cp311-cp311-manylinux_2_28_x86_64",
                         filename="torch_npu-2.13.0-cp311-cp311-manylinux_2_28_x86_64.whl")
    with pytest.raises(WheelError, match="file name says torch-npu 2.13.0, its METADATA says torch_npu 2.12.0"):
        WheelInfo.read(renamed)
    broken = tmp_path / "torch_npu-2.13.0-py3-none-any.whl"
    broken.write_bytes(b"not a zip")
    with pytest.raises(WheelError, match="cannot be read as a wheel"):
        WheelInfo.read(broken)
    empty = tmp_path / "e" / "pkg-1.0-py3-none-any.whl"
    empty.parent.mkdir()
    with zipfile.ZipFile(empty, "w") as zf:
        zf.writestr("pkg/__init__.py", "")
    with pytest.raises(WheelError, match="no .dist-info/METADATA"):
        WheelInfo.read(empty)


def test_closure_judges_markers_for_the_target_not_this_host(tmp_path):
    arm = Target.for_stack(stack(arch="aarch64", python="3.12"))
    wheels = {w.name: w for w in map(WheelInfo.read, [
        make_wheel(tmp_path, "app", "1.0", requires=['armdep; platform_machine == "aarch64"',
                                                     'x86dep; platform_machine == "x86_64"',
                                                     'newpy; python_version >= "3.12"', "lib[extra]"]),
        make_wheel(tmp_path, "x86dep", "1.0"),
        make_wheel(tmp_path, "lib", "2.0", requires=['extradep>=1; extra == "extra"']),
        make_wheel(tmp_path, "extradep", "0.5"),
    ])}
    result = closure.compute([Requirement("app")], wheels, arm.marker_env)
    assert sorted(str(r) for r in result.missing) == ['armdep; platform_machine == "aarch64"',
                                                      'newpy; python_version >= "3.12"']
    assert [w.name for w in result.unused] == ["x86dep"]
    assert result.conflicts == ["lib 2.0 requires extradep>=1; extra == \"extra\", but the wheelhouse has "
                                "extradep-0.5-py3-none-any.whl"]
    assert result.required_by["extradep"] == ["lib 2.0"]

"""The validation artefact's build and cache (validation/artefact.py), on a
small package of its own: which files go in and which stay out, the entry
point's check of the node's Python, the same bytes for the same input, the
cache folder and its key, and nothing half-written left behind."""
from __future__ import annotations

import hashlib
import importlib.util
import json
import marshal
import os
import py_compile
import re
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from compat_matrix.errors import UserError
from compat_matrix.lock import FORMAT, FORMAT_KEY
from validation import artefact


@pytest.fixture
def small(tmp_path, monkeypatch):
    """The artefact packs a package and a module made here (not the controller's few thousand files)."""
    src = tmp_path / "src"
    pkg = src / "smallpkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__pycache__").mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "b.py").write_text("B = 1\n")
    (pkg / "data.txt").write_text("data\n")
    for compiled in ("__pycache__/a.cpython-311.pyc", "fast.so", "fast.pyd", "stale.pyc", "fast.c", "fast.h"):
        (pkg / compiled).write_bytes(b"\0compiled")
    (pkg / "__pycache__" / "notes.txt").write_text("a cache's own file\n")
    (src / "smallmod.py").write_text("M = 1\n")
    monkeypatch.syspath_prepend(str(src))
    monkeypatch.setattr(artefact, "PACKAGES", ("smallpkg",))
    monkeypatch.setattr(artefact, "MODULES", ("smallmod",))
    return src


def test_the_artefact_holds_the_packages_files_and_their_bytecode_not_the_trees_compiled_files(small, tmp_path):
    out = artefact.build(tmp_path / "v.pyz", None)
    assert out == tmp_path / "v.pyz"
    with zipfile.ZipFile(out) as zf:
        assert zf.namelist() == ["__main__.py", "smallpkg/__init__.py", "smallpkg/__init__.pyc", "smallpkg/data.txt",
                                 "smallpkg/sub/b.py", "smallpkg/sub/b.pyc", "smallmod.py", "smallmod.pyc"]
        assert zf.read("smallpkg/sub/b.py") == b"B = 1\n" and zf.read("smallmod.py") == b"M = 1\n"
        pyc = zf.read("smallpkg/sub/b.pyc")
    # this Python's magic number, an unchecked hash of the source (PEP 552), the module's code
    assert pyc[:16] == importlib.util.MAGIC_NUMBER + b"\1\0\0\0" + importlib.util.source_hash(b"B = 1\n")
    space: dict = {}
    exec(marshal.loads(pyc[16:]), space)
    assert space["B"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src", "v.pyz"]   # no .part left


def test_the_controllers_current_bytecode_is_reused_and_stale_bytecode_is_not(tmp_path):
    """As the import system decides: a timestamp pyc is current when it names the source's mtime and
    size. The cached one here was compiled from other code of the same size, to tell which is shipped."""
    source = tmp_path / "m.py"
    source.write_text("X = 2\n")
    timestamped = py_compile.PycInvalidationMode.TIMESTAMP   # as Python writes them (not SOURCE_DATE_EPOCH's)
    py_compile.compile(str(source), doraise=True, invalidation_mode=timestamped)
    source.write_text("X = 1\n")
    os.utime(source, ns=(0, 1_700_000_000 * 10**9))
    py_compile.compile(str(source), cfile=str(tmp_path / "other.pyc"), doraise=True,
                       invalidation_mode=timestamped)   # for its header
    cached = Path(importlib.util.cache_from_source(str(source)))
    timestamp = (tmp_path / "other.pyc").read_bytes()[:16]
    cached.write_bytes(timestamp + cached.read_bytes()[16:])   # X = 2's code under X = 1's mtime and size

    def shipped_x(source_bytes: bytes) -> int:
        pyc = artefact.bytecode(source, source_bytes, "m.py")
        assert pyc[:16] == importlib.util.MAGIC_NUMBER + b"\1\0\0\0" + importlib.util.source_hash(source_bytes)
        space: dict = {}
        exec(marshal.loads(pyc[16:]), space)
        return space["X"]

    assert shipped_x(b"X = 1\n") == 2          # current: the controller's own bytecode
    os.utime(source, ns=(0, 1_700_000_001 * 10**9))
    assert shipped_x(b"X = 1\n") == 1          # stale: compiled from the source
    assert artefact.bytecode(source, b"X = (\n", "m.py") is None   # no bytecode for what does not compile here


def test_the_controllers_hash_based_bytecode_is_reused_when_it_names_the_sources_hash(tmp_path):
    """A pyc of PEP 552's unchecked-hash kind (flags 1, little-endian) is current when it names the
    source's hash, whatever the file's time; here it holds other code, to tell which is shipped."""
    source = tmp_path / "h.py"
    source.write_text("X = 1\n")
    other = marshal.dumps(compile("X = 2\n", "h.py", "exec"))
    cached = Path(importlib.util.cache_from_source(str(source)))
    cached.parent.mkdir(exist_ok=True)
    header = importlib.util.MAGIC_NUMBER + (1).to_bytes(4, "little")
    cached.write_bytes(header + importlib.util.source_hash(b"X = 1\n") + other)
    space: dict = {}
    exec(marshal.loads(artefact.bytecode(source, b"X = 1\n", "h.py")[16:]), space)
    assert space["X"] == 2                                          # reused
    cached.write_bytes(header + importlib.util.source_hash(b"X = 3\n") + other)
    exec(marshal.loads(artefact.bytecode(source, b"X = 1\n", "h.py")[16:]), space)
    assert space["X"] == 1                                          # another source's: compiled
    another_python = bytes([importlib.util.MAGIC_NUMBER[0] ^ 1]) + importlib.util.MAGIC_NUMBER[1:]
    cached.write_bytes(another_python + (1).to_bytes(4, "little") + importlib.util.source_hash(b"X = 1\n") + other)
    exec(marshal.loads(artefact.bytecode(source, b"X = 1\n", "h.py")[16:]), space)
    assert space["X"] == 1                                          # another Python's: compiled


def test_bytecode_compiled_here_takes_none_of_this_modules_future_imports(tmp_path):
    """artefact.py has `from __future__ import annotations`; a node module compiled here must not
    inherit it (its annotations stay evaluated, as when the node compiles it)."""
    space: dict = {}
    exec(marshal.loads(artefact.bytecode(tmp_path / "a.py", b"x: int = 1\n", "a.py")[16:]), space)
    assert space["__annotations__"] == {"x": int}


def test_only_the_lexers_pytest_loads_get_bytecode():
    assert [n for n in ("pygments/lexers/__init__.py", "pygments/lexers/_mapping.py", "pygments/lexers/python.py",
                        "pygments/lexers/diff.py", "pygments/lexers/rust.py", "pygments/lexers/pythonx.py",
                        "pygments/lexer.py", "pygments/formatters/terminal.py") if not artefact.NO_BYTECODE.match(n)] \
        == ["pygments/lexers/__init__.py", "pygments/lexers/_mapping.py", "pygments/lexers/python.py",
            "pygments/lexers/diff.py", "pygments/lexer.py", "pygments/formatters/terminal.py"]


def test_a_part_file_a_killed_build_left_is_replaced_and_gone_after_the_next(small, tmp_path):
    (tmp_path / "v.pyz.part").write_bytes(b"half an artefact")
    artefact.build(tmp_path / "v.pyz", None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src", "v.pyz"]


def test_every_member_has_a_fixed_time_plain_permissions_and_is_compressed(small, tmp_path):
    with zipfile.ZipFile(artefact.build(tmp_path / "v.pyz", {"b": 1})) as zf:
        infos = zf.infolist()
    assert {(i.date_time, i.compress_type, i.external_attr >> 16) for i in infos} == {
        ((2020, 1, 1, 0, 0, 0), zipfile.ZIP_DEFLATED, 0o644)}


def test_the_same_stack_gives_the_same_bytes(small, tmp_path):
    one = artefact.build(tmp_path / "one.pyz", {"b": 1, "a": [2, 3]}).read_bytes()
    two = artefact.build(tmp_path / "two.pyz", {"a": [2, 3], "b": 1}).read_bytes()
    assert one == two


def test_the_stack_and_the_locks_are_carried_as_json(small, tmp_path):
    with zipfile.ZipFile(artefact.build(tmp_path / "v.pyz", {"b": 1, "a": "x"}, {"d1": {"z": 1, "y": 2}})) as zf:
        stack = zf.read("npuenv-stack.json").decode()
        locks = zf.read("npuenv-locks.json").decode()
    assert stack == '{\n "a": "x",\n "b": 1\n}'
    assert json.loads(locks) == {FORMAT_KEY: FORMAT, "locks": {"d1": {"z": 1, "y": 2}}}
    assert locks.index('"locks"') < locks.index(f'"{FORMAT_KEY}"') and locks.index('"y"') < locks.index('"z"')


@pytest.mark.parametrize("locks", [None, {}])
def test_without_a_stack_or_locks_neither_file_is_there(small, tmp_path, locks):
    with zipfile.ZipFile(artefact.build(tmp_path / "v.pyz", None, locks)) as zf:
        names = zf.namelist()
    assert "npuenv-stack.json" not in names and "npuenv-locks.json" not in names


def test_the_entry_point_refuses_a_python_older_than_3_10(small, tmp_path):
    with zipfile.ZipFile(artefact.build(tmp_path / "v.pyz", None)) as zf:
        main = zf.read("__main__.py").decode()
    # run as a Python 3.9 would: it prints one error document and exits 2 before importing anything
    probe = ("import sys, runpy\nclass V(tuple):\n    pass\nsys.version_info = V((3, 9, 18, 'final', 0))\n"
             f"exec(compile({main!r}, '__main__.py', 'exec'), {{'__name__': '__main__'}})\n")
    p = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert p.returncode == 2
    assert json.loads(p.stdout) == {"error": "python3 3.9 on this node is too old for the validation suite (pytest "
                                             "needs 3.10 or newer); point ansible_python_interpreter at a newer "
                                             "Python"}


def test_a_package_that_is_not_installed_is_named_and_nothing_is_left(small, tmp_path, monkeypatch):
    (tmp_path / "v.pyz").write_bytes(b"the previous artefact")
    monkeypatch.setattr(artefact, "MODULES", ("smallmod", "no_such_module_here"))
    with pytest.raises(RuntimeError) as e:
        artefact.build(tmp_path / "v.pyz", None)
    assert str(e.value) == "no_such_module_here is not installed; the validation artefact needs it (make setup)"
    assert (tmp_path / "v.pyz").read_bytes() == b"the previous artefact"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src", "v.pyz"]


def test_a_namespace_package_without_files_of_its_own_is_refused(small, tmp_path, monkeypatch):
    (small / "hollow").mkdir()   # no __init__.py: a namespace package, no origin
    monkeypatch.setattr(artefact, "PACKAGES", ("hollow",))
    with pytest.raises(RuntimeError, match="^hollow is not installed; the validation artefact needs it"):
        artefact.build(tmp_path / "v.pyz", None)


# --- the cache ----------------------------------------------------------------------

def test_the_cache_folder_follows_npuenv_cache_dir_then_xdg_then_home(monkeypatch, tmp_path):
    monkeypatch.setenv("NPUENV_CACHE_DIR", str(tmp_path / "mine"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert artefact.cache_dir() == tmp_path / "mine" / "artefacts"
    monkeypatch.setenv("NPUENV_CACHE_DIR", "")
    assert artefact.cache_dir() == tmp_path / "xdg" / "npuenv" / "artefacts"
    monkeypatch.delenv("NPUENV_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", "")
    assert artefact.cache_dir() == tmp_path / "home" / ".cache" / "npuenv" / "artefacts"


def cached_names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_cached_builds_once_into_the_cache_folder_and_reuses_it(small, tmp_path, monkeypatch):
    monkeypatch.setenv("NPUENV_CACHE_DIR", str(tmp_path / "cache"))
    first = artefact.cached({"a": 1})
    assert first.parent == tmp_path / "cache" / "artefacts"
    assert first.name.startswith("npuenv-validate-") and first.suffix == ".pyz"
    assert len(first.name) == len("npuenv-validate-") + 24 + len(".pyz")
    assert cached_names(first.parent) == [first.name]   # no private build file left
    with zipfile.ZipFile(first) as zf:
        assert json.loads(zf.read("npuenv-stack.json")) == {"a": 1}
    monkeypatch.setattr(artefact, "build", lambda *a, **k: pytest.fail("built again"))
    assert artefact.cached({"a": 1}) == first


def test_the_cache_key_follows_the_stack_and_every_packed_file(small, tmp_path):
    folder = tmp_path / "cache"
    first = artefact.cached({"a": 1, "b": 2}, folder)
    assert artefact.cached({"b": 2, "a": 1}, folder) == first            # the same stack, written otherwise
    assert artefact.cached({"a": 1, "b": 3}, folder) != first            # another stack
    b = small / "smallpkg" / "sub" / "b.py"
    b.write_text("B = 22\n")                                             # a packed file changes size
    grown = artefact.cached({"a": 1, "b": 2}, folder)
    assert grown != first
    with zipfile.ZipFile(grown) as zf:
        assert zf.read("smallpkg/sub/b.py") == b"B = 22\n"
    st = b.stat()
    os.utime(b, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))              # the same size, touched
    touched = artefact.cached({"a": 1, "b": 2}, folder)
    assert touched not in (first, grown)
    (small / "smallmod.py").write_text("M = 222\n")                       # the module counts too
    assert artefact.cached({"a": 1, "b": 2}, folder) not in (first, grown, touched)


def test_the_cache_keeps_the_four_newest_artefacts(small, tmp_path):
    folder = tmp_path / "cache"
    folder.mkdir()
    for age in range(5):   # older ones: age 0 the newest
        old = folder / f"npuenv-validate-old{age}.pyz"
        old.write_bytes(b"old")
        os.utime(old, (1_000_000 - age * 100, 1_000_000 - age * 100))
    (folder / "unrelated.txt").write_text("kept")
    new = artefact.cached({}, folder)
    assert cached_names(folder) == sorted([new.name, "npuenv-validate-old0.pyz", "npuenv-validate-old1.pyz",
                                           "npuenv-validate-old2.pyz", "unrelated.txt"])


def test_an_artefact_used_lately_stays_beyond_the_four_newest_and_using_one_renews_it(small, tmp_path):
    """Two runs at once: one may be sending an artefact while the other's build prunes the cache."""
    folder = tmp_path / "cache"
    folder.mkdir()
    now = time.time()
    for name, age in [("new0", 10), ("new1", 20), ("new2", 30), ("in-use", 3600), ("stale", artefact.CACHE_IN_USE_S + 60)]:
        kept = folder / f"npuenv-validate-{name}.pyz"
        kept.write_bytes(b"old")
        os.utime(kept, (now - age, now - age))
    first = artefact.cached({"a": 1}, folder)
    assert cached_names(folder) == sorted([first.name] + [f"npuenv-validate-{n}.pyz"
                                                          for n in ("new0", "new1", "new2", "in-use")])
    os.utime(first, (now - artefact.CACHE_IN_USE_S - 120,) * 2)
    assert artefact.cached({"a": 1}, folder) == first and time.time() - first.stat().st_mtime < 60   # used: renewed


def test_an_artefact_another_run_removes_during_the_pruning_is_passed_over(small, tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    folder.mkdir()
    (folder / "npuenv-validate-gone.pyz").symlink_to(folder / "nowhere")   # listed, then stat() finds nothing
    for i in range(5):
        old = folder / f"npuenv-validate-stale{i}.pyz"
        old.write_bytes(b"old")
        os.utime(old, (1_000_000 - i, 1_000_000 - i))
    gone, real_glob = folder / "npuenv-validate-gone.pyz", Path.glob

    def gone_first(self, pattern):   # the vanished one listed first, so that every other comes after it
        found = list(real_glob(self, pattern))
        return iter([gone] + [p for p in found if p != gone] if self == folder else found)

    monkeypatch.setattr(Path, "glob", gone_first)
    new = artefact.cached({"a": 1}, folder)
    assert cached_names(folder) == sorted([new.name, "npuenv-validate-gone.pyz", "npuenv-validate-stale0.pyz",
                                           "npuenv-validate-stale1.pyz", "npuenv-validate-stale2.pyz"])


def test_an_unwritable_cache_folder_is_a_user_error_naming_the_setting(small, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(UserError, match=f"cannot write the validation artefact's cache folder {blocker}/artefacts: "
                                        f"Not a directory; set NPUENV_CACHE_DIR to a folder you can write"):
        artefact.cached({}, blocker / "artefacts")


def test_the_locks_are_part_of_the_key(small, tmp_path):
    folder = tmp_path / "cache"
    first = artefact.cached(None, folder, locks={"d1": {"row": 1}})
    assert artefact.cached(None, folder, locks={"d1": {"row": 1}}) == first
    second = artefact.cached(None, folder, locks={"d1": {"row": 2}})
    assert second != first
    with zipfile.ZipFile(second) as zf:
        assert json.loads(zf.read("npuenv-locks.json"))["locks"] == {"d1": {"row": 2}}


def test_a_failed_build_leaves_nothing_in_the_cache(small, tmp_path, monkeypatch):
    def half_written(out, stack, locks=None):
        Path(out).write_bytes(b"PK half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(artefact, "build", half_written)
    with pytest.raises(OSError, match="No space left"):
        artefact.cached({}, tmp_path / "cache")
    assert cached_names(tmp_path / "cache") == []


def test_the_digest_is_the_files_sha256(tmp_path):
    path = tmp_path / "v.pyz"
    path.write_bytes(b"PK\x03\x04 some zip")
    assert artefact.digest(path) == hashlib.sha256(b"PK\x03\x04 some zip").hexdigest()
    assert artefact.digest(str(path)) == hashlib.sha256(b"PK\x03\x04 some zip").hexdigest()


def test_the_cache_builds_under_a_hidden_name_beside_its_place(small, tmp_path, monkeypatch):
    """Half-built, the artefact is a hidden .build-*.pyz in the cache folder (moved into place, on one file
    system, when whole): never a file the cache serves or counts."""
    seen = []
    real = artefact.build

    def build(out, stack, locks=None):
        seen.append(Path(out))
        assert sorted(p.name for p in Path(out).parent.iterdir()) == [Path(out).name]
        return real(out, stack, locks)

    monkeypatch.setattr(artefact, "build", build)
    path = artefact.cached({}, tmp_path / "cache")
    [tmp] = seen
    assert tmp.parent == tmp_path / "cache"
    assert re.fullmatch(r"\.build-.+\.pyz", tmp.name)
    assert cached_names(tmp_path / "cache") == [path.name]


def test_an_old_artefact_another_run_removed_first_is_no_error(small, tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    folder.mkdir()
    for age in range(5):
        old = folder / f"npuenv-validate-old{age}.pyz"
        old.write_bytes(b"old")
        os.utime(old, (1_000_000 - age * 100, 1_000_000 - age * 100))
    real_unlink = Path.unlink

    def raced(self, missing_ok=False):
        if self.name.startswith("npuenv-validate-old"):
            os.remove(self)   # another npuenv run pruned it a moment earlier
        return real_unlink(self, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", raced)
    new = artefact.cached({}, folder)
    assert new.is_file() and len(cached_names(folder)) == 4

"""Every command takes the lock: validate checks each host against the entry of its own arch and OS (the
lock given, the constraints resolved into one, or the lock the host records), an image carries its lock
(a file in a late layer, its digest in a label) and validation reads it back, a bundle carries the lock
whose installers it holds, and the playbooks' row lookup reads the command's matrix."""
from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import compat_matrix as cm
from compat_matrix import lock
from compat_matrix.errors import UserError
from images import render
from npuenv.cli import main
from validation import artefact, run, targets
from validation.merge import Outcome, judge
from validation.node import layout, runner

M = cm.load_matrix()
PLATFORMS = M.platforms
ROW = "2.13.0"


def made(**constraints) -> lock.Lock:
    return lock.make(M, lock.constraints_from_mapping({"row": ROW, "python": "3.11", **constraints}))


def image_root(tmp_path: Path, lock_text: str | None, os_release: str) -> Path:
    """A machine's (or an image's) files as runner.expectation reads them: its os-release and the recorded lock."""
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "os-release").write_text(os_release)
    if lock_text is not None:
        path = root / PLATFORMS.data["install_records"]["lock"].lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(lock_text)
    return root


DEBIAN = 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\nVERSION_ID="12"\n'
UBUNTU = 'NAME="Ubuntu"\nID=ubuntu\nVERSION_ID="22.04"\n'


# --- the node picks its entry ---------------------------------------------------------

def test_each_node_is_checked_against_the_entry_of_its_own_arch_and_os(tmp_path, monkeypatch):
    """One lock, two platforms: a Debian x86_64 node and an Ubuntu aarch64 node each get their own stack."""
    two = made()
    monkeypatch.setattr(runner, "locks_shipped", lambda: {two.digest: two.data})
    debian = runner.expectation(two.digest, root=image_root(tmp_path / "a", None, DEBIAN), arch="x86_64")
    ubuntu = runner.expectation(two.digest, root=image_root(tmp_path / "b", None, UBUNTU), arch="aarch64")
    (d_stack, d_info), (u_stack, u_info) = debian, ubuntu
    assert (d_stack["arch"], d_stack["os"], u_stack["arch"], u_stack["os"]) == ("x86_64", "debian12", "aarch64",
                                                                                  "ubuntu22.04")
    assert d_stack["packages"]["toolkit"] == "Ascend-cann-toolkit_9.1.0_linux-x86_64.run"
    assert u_stack["packages"]["toolkit"] == "Ascend-cann-toolkit_9.1.0_linux-aarch64.run"
    # the same expected stack the controller would have made for that platform
    assert d_stack == run.expected_stack(two.stack(M, "x86_64", "debian12"))
    assert d_info == {lock.FORMAT_KEY: lock.FORMAT, "digest": two.digest, "entry": "x86_64/debian12",
                      "source": "given", "torch_npu": ROW, "torch": "2.13.0", "cann": "9.1.0", "python": "3.11",
                      "chip": "910b"}
    assert u_info["entry"] == "aarch64/ubuntu22.04"


def test_a_node_no_entry_fits_gets_an_error_naming_its_platform_and_the_locks(tmp_path, monkeypatch):
    one = made(arch="x86_64", os="ubuntu22.04")
    monkeypatch.setattr(runner, "locks_shipped", lambda: {one.digest: one.data})
    with pytest.raises(UserError) as e:
        runner.expectation(one.digest, root=image_root(tmp_path, None, DEBIAN), arch="x86_64")
    assert str(e.value) == (f"the lock {one.digest[:19]} has no entry for this machine's platform x86_64/debian12 "
                            f"(x86_64, debian 12); it has x86_64/ubuntu22.04: lock again with --arch x86_64 --os "
                            f"debian12 (or without --arch/--os for every platform)")
    with pytest.raises(UserError, match=r"this machine \(x86_64, centos 7\) runs an OS the matrix does not support"):
        runner.expectation(one.digest, root=image_root(tmp_path / "c", None, "ID=centos\nVERSION_ID=7\n"),
                           arch="x86_64")


def test_a_node_without_a_recorded_lock_was_never_deployed(tmp_path):
    with pytest.raises(UserError) as e:
        runner.expectation(None, root=image_root(tmp_path, None, DEBIAN), arch="x86_64")
    assert str(e.value) == ("never deployed by npuenv: this machine has no /etc/npuenv/lock.json (the lock a deploy "
                            "or an image build records); pass --lock or --row")


def test_the_artefact_ships_whole_locks_and_the_node_reports_the_one_it_used(tmp_path):
    """The artefact run on this machine: the lock's entry for this machine is chosen and named in the document;
    a lock with no entry for it is an error document that still says who the machine is."""
    here = lock.machine(PLATFORMS)
    if here.key is None:
        pytest.skip(f"this machine ({here.described}) is no platform of the matrix")
    fits, other = made(), made(arch=here.arch, os=next(o for o in PLATFORMS.operating_systems if o != here.os))
    pyz = artefact.build(tmp_path / "v.pyz", None, {fits.digest: fits.data, other.digest: other.data})
    shipped = json.loads(zipfile.ZipFile(pyz).read(layout.LOCKS_NAME))
    assert shipped == {lock.FORMAT_KEY: lock.FORMAT, "locks": {fits.digest: fits.data, other.digest: other.data}}
    assert layout.STACK_NAME not in zipfile.ZipFile(pyz).namelist()
    p = subprocess.run([sys.executable, str(pyz), "--lock", fits.digest, "--level", "quick", "--only", "nnal"],
                       capture_output=True, text=True, timeout=300)
    doc = judge(p.returncode, p.stdout, p.stderr).document
    assert doc["lock"] == {lock.FORMAT_KEY: lock.FORMAT, "digest": fits.digest, "entry": here.key, "source": "given",
                           "torch_npu": ROW, "torch": "2.13.0", "cann": "9.1.0", "python": "3.11", "chip": "910b"}
    assert [r["check"] for r in doc["results"]] == ["nnal"]
    p = subprocess.run([sys.executable, str(pyz), "--lock", other.digest, "--level", "quick", "--only", "nnal"],
                       capture_output=True, text=True, timeout=300)
    outcome = judge(p.returncode, p.stdout, p.stderr)
    assert p.returncode == 2 and outcome.status == "error"
    assert outcome.reason.startswith(f"the lock {other.digest[:19]} has no entry for this machine's platform "
                                     f"{here.key}")
    assert outcome.document["hostname"] and "machine_id" in outcome.document   # identity still checked


# --- the controller: what each host is checked against --------------------------------

class Recorder:
    """A transport whose hosts answer with a document naming the lock of their arguments."""
    fleet_member = True

    def __init__(self, hosts, locks=None):
        self.hosts, self.args, self.locks = hosts, {}, locks or {}

    def run(self, artefact_path, args, done=None):
        self.args.update(args)
        self.shipped = json.loads(zipfile.ZipFile(artefact_path).read(layout.LOCKS_NAME)) \
            if layout.LOCKS_NAME in zipfile.ZipFile(artefact_path).namelist() else None
        out = {}
        for h, argv in args.items():
            info = self.locks.get(h)
            document = {"format": 1, "hostname": h, "addresses": [], "python": "3.11.2", "level": "quick",
                        "fleet": False, "pytest_exit": 0, "duration_s": 1.0,
                        "results": [{"host": "local://", "check": "nnal", "level": "quick", "status": "passed",
                                     "duration_s": 0.1, "message": "ok", "data": None}],
                        **({"lock": info} if info else {})}
            out[h] = Outcome("ran", document=document)
        return out


def info(lk: lock.Lock, entry: str, source: str) -> dict:
    return {lock.FORMAT_KEY: lock.FORMAT, "digest": lk.digest, "entry": entry, "source": source,
            **{k: lk.row[k] for k in ("torch_npu", "torch", "cann", "python", "chip")}}


def test_validate_with_a_lock_sends_the_whole_lock_and_names_it_per_host(tmp_path, monkeypatch):
    two = made()
    path = lock.write(two, tmp_path / "l.json")
    fleet = Recorder(["n0", "n1"], {"n0": info(two, "x86_64/debian12", "given"),
                                    "n1": info(two, "aarch64/ubuntu22.04", "given")})
    monkeypatch.setattr(run, "plan", lambda *a, **k: ([fleet], {}))
    assert run.validate(["local"], "quick", cm.Constraints(), tmp_path / "out", lock=path, quiet=True) == 0
    assert {h: a[:2] for h, a in fleet.args.items()} == {"n0": ["--lock", two.digest], "n1": ["--lock", two.digest]}
    assert fleet.shipped == {lock.FORMAT_KEY: lock.FORMAT, "locks": {two.digest: two.data}}
    meta = json.loads((tmp_path / "out" / "results.json").read_text())["meta"]
    assert meta["lock"] == two.digest and meta[lock.FORMAT_KEY] == lock.FORMAT
    assert meta["locks"]["n1"]["entry"] == "aarch64/ubuntu22.04" and meta["torch_npu"] == ROW
    # a lock and row constraints are one or the other
    with pytest.raises(UserError, match=r"--lock and row constraints \(python=3.11\): give one or the other"):
        run.validate(["local"], "quick", cm.Constraints(python="3.11"), tmp_path / "out", lock=path)


def test_the_cli_refuses_lock_with_any_constraint(tmp_path, capsys):
    path = lock.write(made(), tmp_path / "l.json")
    assert main(["validate", "--target", "local", "--lock", str(path), "--os", "debian12",
                 "--out", str(tmp_path / "o")]) == 2
    assert f"--lock {path} and --os: give one or the other" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_without_lock_or_constraints_each_host_is_checked_against_its_own(tmp_path, monkeypatch, capsys):
    """Nodes read their recorded lock; an image holding one checks it against its label; an image built before
    locks is checked against the row its labels name (said so); the report names each host's lock."""
    a3 = made(chip="a3")
    old_labels = {render.label("row.torch_npu"): ROW, render.label("stack.chip"): "a3",
                  render.label("stack.python"): "3.11", render.label("stack.arch"): "x86_64",
                  render.label("stack.os"): "debian12"}
    images = {"image:new": targets.image_lock({render.LOCK_LABEL: a3.digest, **old_labels}),
              "image:old": targets.image_lock(old_labels)}
    assert images["image:new"] == targets.ImageLock(a3.digest, None)
    deployed = made(row="2.8.0", python="3.11")
    fleet = Recorder(["n0", "image:new", "image:old"], {"n0": info(deployed, "x86_64/debian12", "recorded"),
                                                         "image:new": info(a3, "x86_64/debian12", "recorded")})
    monkeypatch.setattr(run, "plan", lambda *a, **k: ([fleet], {"row": None, "images": images}))
    assert run.validate(["local"], "quick", cm.Constraints(), tmp_path / "out") == 0
    assert fleet.args["n0"][:1] == ["--recorded-lock"]
    assert fleet.args["image:new"][:3] == ["--recorded-lock", "--lock-digest", a3.digest]
    flag, digest = fleet.args["image:old"][:2]
    from_labels = lock.Lock(fleet.shipped["locks"][digest])
    assert flag == "--lock" and from_labels.row["chip"] == "a3"
    entry = from_labels.entry("x86_64", "debian12")["stack"]
    assert entry["npus_per_node"] * entry["dies_per_npu"] == 16   # the devices an A3 node shows
    err = capsys.readouterr().err
    assert "image:old holds no lock (built before npuenv images carried one): checked against the row its labels " \
           "name, torch_npu 2.13.0, Python 3.11, chip a3; rebuild it to carry its lock" in err
    meta = json.loads((tmp_path / "out" / "results.json").read_text())["meta"]
    assert meta["locks"]["n0"]["digest"] == deployed.digest and meta["locks"]["image:new"]["digest"] == a3.digest
    assert meta["locks"]["image:old"] is None   # its node said nothing: the report does not invent it
    assert meta["lock"] is None and meta["torch_npu"] == "per host"


def test_constraints_resolve_into_one_lock_with_the_inventorys_chip(tmp_path, monkeypatch):
    fleet = Recorder(["n0"])
    hint = lock.constraints_from_mapping({"row": "2.12.0", "chip": "a3"}, lock.inventory_name)
    monkeypatch.setattr(run, "plan", lambda *a, **k: ([fleet], {"row": hint, "images": {}}))
    assert run.validate(["local"], "quick", cm.Constraints(python="3.10"), tmp_path / "out", quiet=True) == 0
    [sent] = [lock.Lock(d) for d in fleet.shipped["locks"].values()]
    assert (sent.row["torch_npu"], sent.row["python"], sent.row["chip"]) == ("2.12.0", "3.10", "a3")
    assert fleet.args["n0"][:2] == ["--lock", sent.digest]
    # each host takes its own platform's entry: the lock has every platform of the row
    assert {e["arch"] for e in sent.entries.values()} == {"x86_64", "aarch64"} and len(sent.entries) == 8


def test_inventory_rows_mean_what_the_command_line_means(tmp_path):
    """targets.plan reads an inventory's npuenv_row through lock.constraints_from_mapping: `row` is exact."""
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(json.dumps({"all": {"children": {"npu_nodes": {
        "hosts": {"n0": {"ansible_host": "127.0.0.1"}}, "vars": {"npuenv_row": {"row": "2.12.0", "chip": "a3"}}}}}}))
    from contextlib import ExitStack
    with ExitStack() as cleanup:
        _, hints = targets.plan([f"ansible://npu_nodes?inventory={inventory}"], "/", [], cleanup, tmp_path)
    assert hints["row"] == cm.Constraints(torch_npu="==2.12.0", chip="a3")
    inventory.write_text(inventory.read_text().replace('"row"', '"torchnpu"'))
    with ExitStack() as cleanup, pytest.raises(UserError, match=r"npuenv_row.torchnpu: unknown row constraint"):
        targets.plan([f"ansible://npu_nodes?inventory={inventory}"], "/", [], cleanup, tmp_path)


# --- images carry their lock ---------------------------------------------------------------

def test_the_rendered_image_copies_its_lock_late_and_labels_its_digest(tmp_path, capsys):
    ctx = tmp_path / "ctx"
    assert main(["image", "render", "--row", ROW, "--os", "debian12", "--arch", "x86_64", "--chip", "a3",
                 "--output", str(ctx)]) == 0
    capsys.readouterr()
    carried = lock.load(ctx / render.LOCK_FILE)
    # the image's own lock: its one platform, the Python the OS ships, the chip asked for
    assert list(carried.entries) == ["x86_64/debian12"]
    assert (carried.row["python"], carried.row["chip"]) == ("3.11", "a3")
    dockerfile = (ctx / render.DOCKERFILE).read_text()
    lines = dockerfile.splitlines()
    copy = f"COPY {render.LOCK_FILE} {PLATFORMS.data['install_records']['lock']}"
    assert PLATFORMS.data["install_records"]["lock"] == "/etc/npuenv/lock.json"
    assert lines.count(copy) == 1
    # after the last RUN (the Python stack): a new lock rebuilds only its own small layer
    last_run = max(i for i, line in enumerate(lines) if line.startswith("RUN "))
    at = lines.index(copy)
    assert last_run < at < lines.index("USER ${USER_UID}:${USER_GID}")
    assert f'      {render.LOCK_LABEL}="{carried.digest}"' in lines
    assert render.LOCK_LABEL == "io.npuenv.lock.digest"


def test_a_lock_not_of_the_stack_is_never_put_in_an_image():
    other = made(row="2.8.0", arch="x86_64", os="debian12")
    stack = made(arch="x86_64", os="debian12").stack(M)
    with pytest.raises(UserError, match=r"is not the lock sha256:[0-9a-f]{12}'s entry for x86_64/debian12"):
        render.render(stack, lock=other)


def test_an_a3_image_is_read_back_as_an_a3_from_the_lock_it_holds(tmp_path, capsys):
    """The function that reads an image's lock back, on the rendered image's files: 16 devices expected, not the
    910B's 8; a lock file that is not the labelled one is refused."""
    ctx = tmp_path / "ctx"
    assert main(["image", "render", "--row", ROW, "--os", "debian12", "--arch", "x86_64", "--chip", "a3",
                 "--output", str(ctx)]) == 0
    capsys.readouterr()
    dockerfile = (ctx / render.DOCKERFILE).read_text()
    source, dest = re.search(rf"^COPY ({re.escape(render.LOCK_FILE)}) (\S+)$", dockerfile, re.M).groups()
    label = re.search(rf'{re.escape(render.LOCK_LABEL)}="([^"]+)"', dockerfile).group(1)
    root = tmp_path / "image"
    (root / dest.lstrip("/")).parent.mkdir(parents=True)
    shutil.copy(ctx / source, root / dest.lstrip("/"))
    (root / "etc" / "os-release").write_text(DEBIAN)
    # the labels the controller reads from the image say it holds a lock
    assert targets.image_lock({render.LOCK_LABEL: label}) == targets.ImageLock(label, None)
    expected, said = runner.expectation(None, label, root=root, arch="x86_64")
    assert expected["chip"] == "a3" and expected["npus_per_node"] * expected["dies_per_npu"] == 16
    assert (said["source"], said["digest"], said["entry"]) == ("recorded", label, "x86_64/debian12")
    with pytest.raises(UserError, match=r"/etc/npuenv/lock.json is the lock sha256:[0-9a-f]{12}, but the image's "
                                        r"label sha256:000000000000 names another: the file was changed after the "
                                        r"build"):
        runner.expectation(None, "sha256:" + "0" * 64, root=root, arch="x86_64")


FAKE_PODMAN = r"""
case "$1" in
  build)
    for a; do
      case "$prev" in
        --iidfile) iid="$a";;
        -f) n=$(ls "$(dirname "$0")" | grep -c '^Dockerfile'); cp "$a" "$(dirname "$0")/Dockerfile.$n";
            [ -f "$(dirname "$a")/npuenv-lock.json" ] && cp "$(dirname "$a")/npuenv-lock.json" "$(dirname "$0")/lock.$n";;
      esac
      prev="$a"
    done
    echo sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef > "$iid";;
  image) echo '[{"Id": "93cd39d2e523", "Digest": "sha256:c978eef00276deee49d83e8d09a5e419fc7e1f6340b96fbec437693459018967", "Labels": {}}]';;
  run) printf '%s\n' '{"os_release": {"ID": "debian", "VERSION_ID": "12"}, "os_packages": "", "python": null}';;
esac
exit 0
"""


@pytest.fixture
def cann_installers(tmp_path) -> Path:
    """The CANN packages of the row for x86_64 (contents made up) and their SHA256SUMS."""
    stack = made(arch="x86_64", os="debian12").stack(M)
    folder = tmp_path / "installers"
    folder.mkdir()
    for kind in ("toolkit", "kernels", "nnal"):
        (folder / stack.packages[kind]).write_text(kind)
    (folder / "SHA256SUMS").write_text("".join(f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.name}\n"
                                               for p in sorted(folder.iterdir())))
    return folder


def fake_podman(tmp_path, monkeypatch) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "podman").write_text(f'#!/bin/bash\necho "podman $*" >> "{bin_dir}/calls.log"\n{FAKE_PODMAN}\n')
    (bin_dir / "podman").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    return bin_dir


def test_image_build_with_a_lock_uses_the_locks_installers_and_carries_the_lock(cann_installers, tmp_path,
                                                                               monkeypatch, capsys):
    bin_dir = fake_podman(tmp_path, monkeypatch)
    given = tmp_path / "l.json"
    assert main(["lock", "--row", ROW, "--python", "3.11", "--arch", "x86_64", "--os", "debian12", "--out",
                 str(given)]) == 0
    # a lock pinning no installers builds with the folder's (checked against its SHA256SUMS)
    args = ["image", "build", "--lock", str(given), "--installers", str(cann_installers), "--cann-only",
            "--sbom", str(tmp_path / "sbom.json")]
    assert main(args) == 0
    out = capsys.readouterr().out
    digest = lock.load(given).digest
    assert f"lock {digest} (label io.npuenv.lock.digest; the file /etc/npuenv/lock.json in the image)" in out
    assert lock.load(bin_dir / "lock.0").digest == digest   # the build context held the lock itself
    assert f'io.npuenv.lock.digest="{digest}"' in (bin_dir / "Dockerfile.0").read_text()
    # a lock made from other files than the folder's: nothing is built
    pinned = tmp_path / "pinned.json"
    sums = cann_installers / "SHA256SUMS"
    real = sums.read_text()
    toolkit = made(arch="x86_64", os="debian12").stack(M).packages["toolkit"]
    driver_firmware = "".join(f"{'cd' * 32}  {n}\n" for n in ("Ascend-hdk-910b-npu-driver_26.1.0_linux-x86_64.run",
                                                              "Ascend-hdk-910b-npu-firmware_7.8.0.2.212.run"))
    sums.write_text(real.replace(hashlib.sha256(b"toolkit").hexdigest(), "ab" * 32) + driver_firmware)
    assert main(["lock", "--row", ROW, "--python", "3.11", "--arch", "x86_64", "--os", "debian12", "--installers",
                 str(cann_installers), "--out", str(pinned)]) == 0
    sums.write_text(real)
    (bin_dir / "calls.log").unlink()
    capsys.readouterr()
    assert main([*args[:3], str(pinned), *args[4:]]) == 2
    err = capsys.readouterr().err
    assert f"the inputs are not the lock {lock.load(pinned).digest[:19]}'s (it was made from other files); nothing " \
           f"was built:\n  toolkit: {toolkit} has sha256 {hashlib.sha256(b'toolkit').hexdigest()} in " \
           f"{cann_installers}/SHA256SUMS, the lock pins {'ab' * 32}" in err
    assert [c.split()[1] for c in (bin_dir / "calls.log").read_text().splitlines()] == ["info"]
    # row constraints beside the lock are refused
    assert main([*args, "--chip", "a3"]) == 2
    assert f"--lock {given} and --chip: give one or the other" in capsys.readouterr().err


def test_image_build_without_a_lock_carries_the_one_its_inputs_make(cann_installers, tmp_path, monkeypatch, capsys):
    bin_dir = fake_podman(tmp_path, monkeypatch)
    assert main(["image", "build", "--row", ROW, "--os", "debian12", "--arch", "x86_64", "--installers",
                 str(cann_installers), "--cann-only", "--sbom", str(tmp_path / "sbom.json")]) == 0
    carried = lock.load(bin_dir / "lock.0")
    assert f"lock {carried.digest} (label io.npuenv.lock.digest" in capsys.readouterr().out
    # resolved as `npuenv lock` resolves (the Python debian12 ships), its CANN installers pinned from the folder
    assert carried.data["constraints"] == {"torch_npu": "==" + ROW, "python": "3.11", "arch": "x86_64",
                                           "os": "debian12", "chip": "910b"}
    pinned = carried.entry("x86_64", "debian12")["installers"]
    assert sorted(pinned) == ["kernels", "nnal", "toolkit"]
    assert pinned["toolkit"]["sha256"] == hashlib.sha256(b"toolkit").hexdigest()


# --- the playbooks' row lookup -----------------------------------------------------------

def stack_lookup(**kw):
    from ansible.plugins.loader import lookup_loader

    lookup_loader.add_directory(str(Path(__file__).resolve().parents[2] / "playbooks" / "collections" / "ansible_collections" / "npuenv" / "ascend" / "plugins" / "lookup"))
    return lookup_loader.get("npuenv_stack").run([], variables={}, **kw)[0]


def test_the_lookup_reads_rows_as_the_command_line_does_in_the_matrix_npuenv_names(tmp_path, monkeypatch):
    host = {"arch": "x86_64", "distribution": "Debian", "version": "12.12"}
    assert stack_lookup(row={"row": "2.12.0"}, **host)["torch_npu"] == "2.12.0"
    assert stack_lookup(row={"torch_npu": "2.12.0"}, **host)["torch_npu"] == "2.12.0.post3"
    text = Path(cm.DEFAULT_MATRIX).read_text()
    at = text.index('torch_npu: "2.13.0"')
    edited = tmp_path / "matrix.yaml"
    edited.write_text(text[:at] + text[at:].replace('version: "26.1.0"', 'version: "26.0.RC1"', 1))
    assert stack_lookup(row={"row": ROW}, **host)["hdk"]["version"] == "26.1.0"
    monkeypatch.setenv(lock.MATRIX_ENV, str(edited))
    assert stack_lookup(row={"row": ROW}, **host)["hdk"]["version"] == "26.0.RC1"


# --- bundles carry their lock ------------------------------------------------------------------

def test_bundle_make_checks_the_installers_against_the_lock(tmp_path, capsys):
    """bundle.check_lock: the bundled installers are the lock's (the whole bundle is in test_bundle.py)."""
    from torch_npu_pkg import bundle

    stack = made(arch="x86_64", os="debian12").stack(M)
    names = {k: stack.packages[k] for k in ("toolkit", "kernels", "nnal")}
    data = made(arch="x86_64", os="debian12").data
    data["entries"]["x86_64/debian12"]["installers"] = {k: {"name": n, "sha256": "aa" * 32, "size": 1}
                                                        for k, n in names.items()}
    pinned = lock.Lock({**data, "digest": lock.digest_of(data)})
    records = {k: {"file": f"installers/{n}", "sha256": "aa" * 32} for k, n in names.items()}
    house = tmp_path / "house"
    house.mkdir()
    (house / "SHA256SUMS").write_text("")
    bundle.check_lock(pinned, stack, records, ("driver", "firmware"), house)
    records["nnal"]["sha256"] = "bb" * 32
    with pytest.raises(UserError) as e:
        bundle.check_lock(pinned, stack, records, ("driver", "firmware"), house)
    assert f"nnal: the lock pins {names['nnal']} (sha256 {'aa' * 32}), the folder gives {names['nnal']} (sha256 " \
           f"{'bb' * 32})" in str(e.value)
    with pytest.raises(UserError, match="driver: the lock pins none"):
        bundle.check_lock(pinned, stack, {**records, "nnal": {**records["nnal"], "sha256": "aa" * 32}}, (), house)


# --- the wheelhouse of a lock ------------------------------------------------------------------

def test_wheelhouse_build_takes_the_locks_row_and_python(tmp_path, monkeypatch, capsys):
    from torch_npu_pkg import cli as wheelhouse_cli

    built = []

    def build(stack, opts, log):
        built.append(stack)
        raise UserError("stopped here")

    monkeypatch.setattr(wheelhouse_cli.wheelhouse, "build", build)
    path = lock.write(made(row="2.8.0", python="3.10"), tmp_path / "l.json")
    assert main(["wheelhouse", "build", "--lock", str(path), "--arch", "aarch64", "--out", str(tmp_path / "h")]) == 2
    [stack] = built
    assert (stack.row.torch_npu, stack.python, stack.arch) == ("2.8.0", "3.10", "aarch64")
    assert main(["wheelhouse", "build", "--lock", str(path), "--python", "3.11", "--out", str(tmp_path / "h")]) == 2
    assert f"--lock {path} and --python: give one or the other" in capsys.readouterr().err
    assert len(built) == 1

"""Facts documents as `node/runner.py --facts` prints them, and the locks they are compared with, for the
unit tests of `npuenv status` and the rollout (no node, no Ansible)."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import compat_matrix as cm
from compat_matrix import lock as lock_mod
from validation.node import document

ROW = "2.13.0"
MATRIX = cm.load_matrix()
HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI{:0>43}"
SYSCTL = {"net.core.somaxconn": "65535", "net.ipv4.ip_local_reserved_ports": "60000-60015"}
# The firmware file as the vendor names it (its version is the firmware's own, not the HDK's).
FIRMWARE_FILE = "Ascend-hdk-910b-npu-firmware_7.8.0.2.212.run"


def make_lock(row: str = ROW, platforms=(("x86_64", "debian12"),), tmp: Path | None = None) -> lock_mod.Lock:
    """A lock of ``row`` for the platforms; with ``tmp`` its installers are pinned from a SHA256SUMS there."""
    locks = []
    for arch, os_name in platforms:
        c = lock_mod.constraints_from_mapping({"row": row, "python": "3.11", "arch": arch, "os": os_name})
        installers = None
        if tmp is not None:
            stack = cm.resolve(MATRIX, c).stack
            names = [stack.packages[k] for k in ("driver", "toolkit", "kernels", "nnal")] + [FIRMWARE_FILE]
            installers = Path(tmp) / f"installers-{arch}-{os_name}"
            installers.mkdir(parents=True, exist_ok=True)
            (installers / "SHA256SUMS").write_text("".join(f"{i:064x}  {n}\n" for i, n in enumerate(names, 1)))
        locks.append(lock_mod.make(MATRIX, c, installers=installers))
    if len(locks) == 1:
        return locks[0]
    data = copy.deepcopy(locks[0].data)
    for other in locks[1:]:
        data["entries"].update(other.data["entries"])
    data["digest"] = lock_mod.digest_of(data)
    return lock_mod.Lock(data)


def installed(lock: lock_mod.Lock, key: str = "x86_64/debian12") -> dict:
    """What a node at ``lock``'s entry has installed, as the facts mode reports it."""
    stack = lock.entries[key]["stack"]
    firmware = ((lock.entries[key].get("installers") or {}).get("firmware") or {}).get("name")
    return {"driver": stack["hdk"]["version"].lower(),
            "firmware": firmware.split("_")[1].removesuffix(".run") if firmware else "7.8.0.2.212",
            "firmware_package": stack["hdk"]["version"].lower(),
            "cann": [{"generation": stack["packaging"], "version": stack["cann"],
                      "kernels": [Path(stack["paths"]["kernels_dir"]).name]}],
            "nnal": [Path(stack["paths"]["nnal_dir"]).name],
            "python": {"interpreter": "/opt/npuenv/venv/bin/python3", "torch": stack["torch"] + "+cpu",
                       "torch_npu": stack["torch_npu"], "torchvision": stack["torchvision"]},
            "left_out": []}


def records(lock: lock_mod.Lock, key: str = "x86_64/debian12", sysctl=None) -> dict:
    """The records the roles write on a node deployed with ``lock`` (platforms.yaml install_records)."""
    return {"lock": json.loads(lock_mod.render(lock)),
            "node_record": {"npuenv_node": 1, "lock_digest": lock.digest, "entry": key,
                            "python": "/opt/npuenv/venv/bin/python3",
                            "settings": {"sysctl": dict(SYSCTL if sysctl is None else sysctl)},
                            "deployed_at": "2026-12-01T10:00:00Z"},
            "deploying": None}


def facts(index: int = 0, *, lock: lock_mod.Lock | None = None, deployed: bool = True, arch: str = "x86_64",
          os_release=("debian", "12"), processes=(), sysctl=None, **changes) -> dict:
    """A facts document of node ``index``: at ``lock`` (deployed) or bare; ``changes`` replace its fields."""
    doc = {document.FACTS_KEY: document.FACTS_VERSION, "hostname": f"node-{index}", "machine_id": f"{index + 1:032x}",
           "host_keys": [HOST_KEY.format(index)], "python": "3.11.2", "arch": arch,
           "os": {"id": os_release[0], "version_id": os_release[1]},
           "installed": installed(lock) if lock is not None and deployed else
           {"driver": None, "firmware": None, "firmware_package": None, "cann": [], "nnal": [],
            "python": {"interpreter": "python3", "torch": None, "torch_npu": None, "torchvision": None},
            "left_out": []},
           "npu_smi": {"error": None, "processes": [{"npu": p, "chip": 0, "pid": 4000 + p, "name": "python3"}
                                                     for p in processes]},
           "records": records(lock) if lock is not None and deployed else
           {"lock": None, "node_record": None, "deploying": None},
           "record_errors": {},
           "sysctl": dict(SYSCTL if sysctl is None else sysctl) if lock is not None and deployed else {}}
    doc.update(changes)
    return document.check_facts(json.loads(json.dumps(doc)))


def stdout_of(doc: dict) -> str:
    """What the node prints: logs, then the document on its own line."""
    return "npu-smi: reading\n" + json.dumps(doc) + "\n"

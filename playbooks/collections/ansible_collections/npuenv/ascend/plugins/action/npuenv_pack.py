"""Pack wheelhouse folders on the controller, each into one tar archive whose sha256 is taken while
it is written, in a private folder; and remove that folder once the archives are pushed. It runs in
the task's worker: no module process, tar or sha256sum is started (each of those costs the
controller more than the packing itself, and a rollout packs once per batch)."""
from __future__ import annotations

import shutil
import tarfile
import tempfile
from pathlib import Path

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase

# The private folder's name begins with it; `remove` removes nothing else.
PREFIX = "npuenv-wheelhouse-"


def _as_root(info: tarfile.TarInfo) -> tarfile.TarInfo:
    """Unpacked by root on the node, the files belong to root, not to the controller's user."""
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    return info


def pack(folders: list[str], under: str) -> dict:
    """{path, archives: [{folder, path, sha256}]}: one archive per folder in a new private folder."""
    from compat_matrix import checksums

    made = Path(tempfile.mkdtemp(prefix=PREFIX, dir=under))
    archives = []
    try:
        for number, folder in enumerate(folders):
            archive = made / f"wheelhouse-{number}.tar"
            with open(archive, "wb") as raw:
                out = checksums.HashingWriter(raw)
                with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
                    tar.add(folder, arcname=".", filter=_as_root)
            archives.append({"folder": folder, "path": str(archive), "sha256": out.hexdigest()})
    except BaseException:
        shutil.rmtree(made, ignore_errors=True)
        raise
    return {"path": str(made), "archives": archives}


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False
    _VALID_ARGS = frozenset(("folders", "under", "remove"))

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        result["changed"] = False  # the controller's own scratch space; no node changes
        args = self._task.args
        if args.get("remove") is not None:
            made = Path(str(args["remove"]))
            if not made.is_absolute() or not made.name.startswith(PREFIX):
                raise AnsibleActionFail(f"npuenv_pack: {made} is not a folder npuenv_pack made")
            shutil.rmtree(made, ignore_errors=True)
            return result
        folders, under = args.get("folders"), str(args.get("under") or "")
        if not isinstance(folders, list) or not all(isinstance(f, str) and Path(f).is_dir() for f in folders):
            raise AnsibleActionFail(f"npuenv_pack: folders must be a list of the controller's folders, not {folders!r}")
        if not Path(under).is_absolute() or not Path(under).is_dir():
            raise AnsibleActionFail(f"npuenv_pack: under {under!r} is not a folder of the controller")
        try:
            result.update(pack(folders, under))
        except OSError as e:
            raise AnsibleActionFail(f"npuenv_pack: cannot pack {folders} under {under}: {e}") from None
        return result

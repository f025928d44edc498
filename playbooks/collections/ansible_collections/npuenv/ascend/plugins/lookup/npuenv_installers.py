"""Find the installers a lock pins in the controller's cache and check each one's
SHA256 against the lock before anything is pushed to a node."""
from __future__ import annotations

DOCUMENTATION = r"""
name: npuenv_installers
short_description: Locate and verify the vendor installers a lock pins
description:
  - For each installer kind asked for, takes the file the lock's entry names (no pattern, no choice
    among several) from the cache directory and checks its SHA256 against the lock's pin, so one
    folder may hold the installers of many rows.
  - Kinds that are not asked for are not looked at, so a node that needs no new toolkit does not need the
    toolkit's installer in the cache.
options:
  cache:
    description: Controller directory holding the vendor .run files.
    type: path
    required: true
  pins:
    description: The lock entry's installers, kind -> {name, sha256, size}.
    type: dict
    required: true
  kinds:
    description: Which kinds to return (the ones the node's plan runs).
    type: list
    elements: str
    default: []
"""

RETURN = r"""
_raw:
  description: One dict, kind -> {name, path, sha256, size}.
  type: list
  elements: dict
"""

import json  # noqa: E402
import os  # noqa: E402
import re  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

from ansible.errors import AnsibleError  # noqa: E402
from ansible.plugins.lookup import LookupBase  # noqa: E402

_SHA256 = re.compile(r"[0-9a-f]{64}")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")


def _cache_file() -> Path:
    return Path(tempfile.gettempdir()) / f"npuenv-installer-sha256-{os.getuid()}.json"


def _load_cache() -> dict:
    """Checksums this controller user computed before, keyed by the file's identity and times (a file
    replaced or rewritten has another key): every host of a run asks for the same few large files."""
    path = _cache_file()
    try:
        st = path.stat()
        if st.st_uid != os.getuid() or st.st_mode & 0o077:
            return {}
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _save_cache(cache: dict) -> None:
    path = _cache_file()
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".")
        with os.fdopen(fd, "w") as f:
            json.dump(dict(list(cache.items())[-256:]), f)
        os.replace(tmp, path)
    except OSError:
        pass


def sha256_of(path: Path) -> str:
    from compat_matrix import checksums

    st = path.stat()
    key = f"{path.resolve()}|{st.st_dev}|{st.st_ino}|{st.st_size}|{st.st_mtime_ns}|{st.st_ctime_ns}"
    cache = _load_cache()
    if key not in cache:
        cache[key] = checksums.sha256_file(path)
        _save_cache(cache)
    return cache[key]


class LookupModule(LookupBase):
    def run(self, terms, variables=None, **kwargs):
        self.set_options(var_options=variables, direct=kwargs)
        cache = Path(self.get_option("cache"))
        pins = self.get_option("pins") or {}
        found = {}
        for kind in self.get_option("kinds"):
            pin = pins.get(kind)
            if not isinstance(pin, dict) or not _NAME.fullmatch(str(pin.get("name", ""))) or \
                    not _SHA256.fullmatch(str(pin.get("sha256", ""))):
                raise AnsibleError(f"the lock pins no {kind} installer (name and sha256); make the lock with "
                                   f"--installers DIR, the folder of the vendor's .run files")
            name, expected = pin["name"], pin["sha256"]
            path = cache / name
            if not path.exists():
                raise AnsibleError(f"{path} is missing: the node needs the {kind} installer the lock pins "
                                   f"({name}, sha256 {expected}); put the vendor's file into {cache}")
            if not path.is_file():
                raise AnsibleError(f"{path} is not a regular file (a folder, pipe or device); put the vendor's "
                                   f"{name} there")
            actual = sha256_of(path)
            if actual != expected:
                raise AnsibleError(f"{path} is corrupt or not the vendor's file: {name}: checksum mismatch: the lock "
                                   f"pins sha256 {expected}, the file has {actual}; download it again")
            found[kind] = {"name": name, "path": str(path), "sha256": expected, "size": path.stat().st_size}
        return [found]

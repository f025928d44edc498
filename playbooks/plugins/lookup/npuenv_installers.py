"""Find a stack's vendor installers in the controller's cache and check them
against the cache's SHA256SUMS before anything is pushed to a node."""
from __future__ import annotations

DOCUMENTATION = r"""
name: npuenv_installers
short_description: Locate and verify the vendor installers of a resolved stack
description:
  - For each installer kind (driver, firmware, toolkit, kernels, nnal), finds the file named
    by the stack in the cache directory and checks its SHA256 against the cache's SHA256SUMS.
options:
  cache:
    description: Controller directory holding the vendor .run files and a SHA256SUMS manifest.
    type: path
    required: true
  packages:
    description: Kind -> file name (the firmware as a glob), from the resolved stack.
    type: dict
    required: true
  kinds:
    description: Which kinds to return.
    type: list
    elements: str
    default: [driver, firmware, toolkit, kernels, nnal]
"""

RETURN = r"""
_raw:
  description: One dict, kind -> {name, path, sha256}.
  type: list
  elements: dict
"""

import fnmatch  # noqa: E402
import hashlib  # noqa: E402
from pathlib import Path  # noqa: E402

from ansible.errors import AnsibleError  # noqa: E402
from ansible.plugins.lookup import LookupBase  # noqa: E402


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class LookupModule(LookupBase):
    def run(self, terms, variables=None, **kwargs):
        self.set_options(var_options=variables, direct=kwargs)
        cache = Path(self.get_option("cache"))
        sums_file = cache / "SHA256SUMS"
        if not sums_file.is_file():
            raise AnsibleError(f"installer cache {cache} has no SHA256SUMS; put the vendor's .run files there and "
                               f"record them with: (cd {cache} && sha256sum *.run > SHA256SUMS)")
        sums = {}
        for line in sums_file.read_text().splitlines():
            if line.strip():
                digest, name = line.split(None, 1)
                sums[name.lstrip("*")] = digest
        packages = self.get_option("packages")
        found = {}
        for kind in self.get_option("kinds"):
            pattern = packages[kind]
            matches = sorted(n for n in sums if fnmatch.fnmatchcase(n, pattern))
            if not matches:
                raise AnsibleError(f"{pattern} is not in {sums_file}; download the vendor's {kind} package into {cache} "
                                   f"and add its SHA256 to SHA256SUMS")
            name = matches[-1]
            path = cache / name
            if not path.is_file():
                raise AnsibleError(f"{name} is listed in {sums_file} but missing from {cache}; download it again")
            actual = _sha256(path)
            if actual != sums[name]:
                raise AnsibleError(f"{path} is corrupt or not the vendor's file: its SHA256 is {actual}, "
                                   f"SHA256SUMS says {sums[name]}; download it again")
            found[kind] = {"name": name, "path": str(path), "sha256": actual}
        return [found]

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
from pathlib import Path  # noqa: E402

from ansible.errors import AnsibleError  # noqa: E402
from ansible.plugins.lookup import LookupBase  # noqa: E402


class LookupModule(LookupBase):
    def run(self, terms, variables=None, **kwargs):
        # The project's one SHA256SUMS policy (compat_matrix.checksums): listed and matching, or refused.
        from compat_matrix import checksums

        self.set_options(var_options=variables, direct=kwargs)
        cache = Path(self.get_option("cache"))
        sums_file = cache / checksums.SUMS_FILE
        try:
            sums = checksums.read_sums(cache)
        except checksums.ChecksumError as e:
            raise AnsibleError(f"installer cache: {e}") from None
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
            why = checksums.problem(path, name, sums, sums_file)
            if why is not None and path.is_file():
                raise AnsibleError(f"{path} is corrupt or not the vendor's file: {why}; download it again")
            if why is not None:
                raise AnsibleError(f"installer cache {cache}: {why}; download it again")
            found[kind] = {"name": name, "path": str(path), "sha256": sums[name]}
        return [found]

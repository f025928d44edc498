"""The lock a run deploys: the one it was given (its digest checked), or the
inventory's row resolved once into a lock through compat_matrix.lock."""
from __future__ import annotations

DOCUMENTATION = r"""
name: npuenv_lock
short_description: The lock of a deploy, given or made from the inventory's row
description:
  - With C(lock) (the whole document C(npuenv lock) writes, as `npuenv deploy` passes it in the extra var
    npuenv_lock) returns it after checking its format and digest.
  - Without it, resolves C(row) (npuenv_row, the same constraints as `npuenv lock` takes) once into a lock,
    pinning the installers in C(installers) by name and sha256 and recording the wheelhouse's digest.
options:
  lock:
    description: A lock document (a mapping, or its JSON text).
    type: raw
  row:
    description: Row constraints (npuenv_row), when no lock is given.
    type: dict
  installers:
    description: The controller's installer folder (the vendor's .run files and their SHA256SUMS).
    type: path
  wheelhouse:
    description: The controller's wheelhouse (make wheelhouse), recorded when it has a manifest.
    type: path
"""

RETURN = r"""
_raw:
  description: One dict, the lock document.
  type: list
  elements: dict
"""

import json  # noqa: E402
from pathlib import Path  # noqa: E402

from ansible.errors import AnsibleError  # noqa: E402
from ansible.plugins.lookup import LookupBase  # noqa: E402


class LookupModule(LookupBase):
    def run(self, terms, variables=None, **kwargs):
        from compat_matrix import lock
        from compat_matrix.errors import UserError
        from compat_matrix.resolver import NoMatch
        from compat_matrix.yamlsrc import MatrixError

        self.set_options(var_options=variables, direct=kwargs)
        given = self.get_option("lock")
        try:
            if given is not None and given != "":
                text = given if isinstance(given, str) else json.dumps(given)
                return [lock.parse(text, "npuenv_lock").data]
            row, installers = self.get_option("row"), self.get_option("installers")
            if row is None or not installers:
                raise UserError("give npuenv_lock (a lock from `npuenv lock`), or npuenv_row and "
                                "npuenv_installer_cache to make one")
            constraints = lock.constraints_from_mapping(dict(row), lock.inventory_name)
            house = self.get_option("wheelhouse")
            houses = [Path(house)] if house and (Path(house) / "manifest.json").is_file() else []
            made = lock.make(lock.matrix_from_env(), constraints, installers=Path(installers), wheelhouses=houses)
            return [made.data]
        except MatrixError as e:
            raise AnsibleError(f"npuenv_lock: npuenv_row is invalid: {'; '.join(p.message for p in e.problems)}") \
                from None
        except NoMatch as e:
            raise AnsibleError(f"npuenv_lock: npuenv_row cannot be resolved: {e}") from None
        except UserError as e:
            raise AnsibleError(f"npuenv_lock: {e}") from None

"""Resolve a host's matrix row through the project's one matrix loader."""
from __future__ import annotations

DOCUMENTATION = r"""
name: npuenv_stack
short_description: Resolve the inventory's matrix row for one host
description:
  - Returns the full stack (versions, installer file names, install paths, environment)
    of the best matrix row for the given constraints and the host's arch and OS.
options:
  row:
    description:
      - Row constraints (row, torch_npu, torch, cann, python, chip), meaning what they mean on the command line
        (compat_matrix.lock.constraints_from_mapping); row is one row exactly, torch_npu a prefix.
      - The matrix is the one named by $NPUENV_MATRIX (npuenv sets it for every Ansible run to its --matrix),
        else the bundled one.
    type: dict
    required: true
  arch:
    description: The host's CPU architecture (ansible_architecture).
    type: str
    required: true
  distribution:
    description: ansible_distribution of the host.
    type: str
    required: true
  version:
    description: ansible_distribution_version of the host.
    type: str
    required: true
"""

RETURN = r"""
_raw:
  description: One dict, the resolved stack with its environment and the reason the row was chosen
    (npuenv matrix resolve --format json prints the same stack and environment).
  type: list
  elements: dict
"""

from ansible.errors import AnsibleError  # noqa: E402
from ansible.plugins.lookup import LookupBase  # noqa: E402


class LookupModule(LookupBase):
    def run(self, terms, variables=None, **kwargs):
        self.set_options(var_options=variables, direct=kwargs)
        import compat_matrix as cm
        from compat_matrix import lock

        row = self.get_option("row") or {}
        platform_keys = sorted(set(row) & {"arch", "os"})
        if platform_keys:
            raise AnsibleError(f"npuenv_row: {', '.join(platform_keys)} come from each host's facts; leave them out")
        try:
            wanted = lock.constraints_from_mapping(row, lock.inventory_name)
            matrix = lock.matrix_from_env()
        except cm.UserError as e:
            raise AnsibleError(str(e)) from None
        except cm.MatrixError as e:
            raise AnsibleError(f"the matrix is invalid: {'; '.join(str(p) for p in e.problems)}") from None
        distribution, version = self.get_option("distribution"), self.get_option("version")
        os_key = matrix.platforms.os_for(distribution, version)
        if os_key is None:
            supported = ", ".join(f"{s['distribution']} {s['version']}" for s in matrix.platforms.operating_systems.values())
            raise AnsibleError(f"this host runs {distribution} {version}, which the matrix does not support; "
                               f"supported: {supported}")
        constraints = cm.Constraints(**{**wanted.given(), "arch": self.get_option("arch"), "os": os_key})
        try:
            resolution = cm.resolve(matrix, constraints)
        except cm.NoMatch as e:
            raise AnsibleError(f"npuenv_row cannot be resolved for this host: {e}") from None
        except cm.MatrixError as e:
            raise AnsibleError(f"npuenv_row is invalid: {'; '.join(p.message for p in e.problems)}") from None
        return [{**resolution.stack.with_environment(), "reason": resolution.reason}]

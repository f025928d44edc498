"""torch_npu for a matrix row, ready for air-gapped sites.

* ``wheelhouse.build``: an offline wheelhouse (the CPU build of torch, torch_npu,
  torchvision and the CANN Python dependencies) with SHA256SUMS, a hash-pinned
  requirements.txt, a PEP 503 index and a manifest; ``wheelhouse.verify`` checks one.
* ``sources``: where the wheels come from (the torch source, then torch_npu from
  a directory, PyPI, the vendor's release page or a source build).
* ``builder``: the source build (builder image, checkout, build driver, provenance).
* ``wheels``: the checks every wheel passes (torch pin, Python and platform tags).
* ``bundle``: one archive with installers, wheelhouse, playbooks and matrix.

Versions and paths come from compat_matrix; the build toolchain facts from
``data/builder.yaml``.
"""
from . import builder, bundle, sources, wheelhouse, wheels

__all__ = ["builder", "bundle", "sources", "wheelhouse", "wheels"]

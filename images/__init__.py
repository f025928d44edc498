"""Reproducible container images for any compatibility-matrix row.

* ``render``: one manifest (``manifest.yaml``) and one family of Jinja2
  templates (``templates/``) give the Dockerfile for a row x base OS x arch x
  chip; versions, installer names, paths and the CANN environment come from the
  resolved ``compat_matrix.Stack``.
* ``build``: checks the installers against their SHA256SUMS and the wheelhouse
  against the row, then builds with podman, buildah or docker (``engine``) and
  tags only on success.
* ``run``: the ``docker run`` / ``podman run`` line and the compose file that
  give a container the host's NPUs and driver.
"""
from . import build, engine, render, run

__all__ = ["build", "engine", "render", "run"]

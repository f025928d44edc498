"""The compatibility matrix: the single source of truth for every supported stack.

Everything else (images, playbooks, validation, the wheelhouse, the simulator)
loads the matrix through ``load_matrix`` and picks a row through ``resolve``.
"""
from .errors import UserError
from .loader import DEFAULT_MATRIX, DEFAULT_PLATFORMS, load_matrix, load_platforms
from .model import Matrix, Platforms, Row
from .resolver import Constraints, NoMatch, Resolution, resolve
from .stack import Stack
from .yamlsrc import MatrixError, Problem

__all__ = [
    "DEFAULT_MATRIX", "DEFAULT_PLATFORMS", "load_matrix", "load_platforms", "Matrix", "Platforms", "Row",
    "Constraints", "NoMatch", "Resolution", "resolve", "Stack", "MatrixError", "Problem", "UserError",
]

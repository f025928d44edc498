"""YAML loading that remembers where every value came from.

The matrix's error messages name ``FILE:LINE``; PyYAML's plain loaders forget
lines and silently keep the last of two duplicate keys. This walks the composed
node tree instead, recording the line of every key and list item.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .errors import UserError


@dataclass(frozen=True)
class Problem:
    file: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}"


class MatrixError(UserError):
    """Bad matrix data or a bad request; carries every problem found."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


@dataclass
class Located:
    """Plain Python data plus the line of each path inside it."""

    file: str
    data: object
    lines: dict[tuple, int] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)

    def line(self, path: tuple) -> int:
        """Line of ``path``, or of its nearest recorded ancestor."""
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return self.lines.get((), 1)


def load_located(path: Path | str, text: str | None = None) -> Located:
    file = str(path)
    if text is None:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as e:
            raise MatrixError([Problem(file, 1, f"cannot read the file: {e.strerror}")]) from None
    loc = Located(file=file, data=None)
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = mark.line + 1 if mark else 1
        reason = getattr(e, "problem", None) or str(e)
        raise MatrixError([Problem(file, line, f"not valid YAML: {reason}; fix the syntax on this line")]) from None
    if node is None:
        loc.data = None
        return loc
    loc.data = _construct(node, (), loc)
    return loc


def _construct(node, path: tuple, loc: Located):
    loc.lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        out = {}
        for key_node, value_node in node.value:
            key = _scalar(key_node)
            if key in out:
                loc.problems.append(
                    Problem(loc.file, key_node.start_mark.line + 1,
                            f"duplicate key '{key}' (first at line {loc.lines[path + (key,)]}); keep only one")
                )
                continue
            loc.lines[path + (key,)] = key_node.start_mark.line + 1
            out[key] = _construct(value_node, path + (key,), loc)
        return out
    if isinstance(node, yaml.SequenceNode):
        items = []
        for i, item in enumerate(node.value):
            loc.lines[path + (i,)] = item.start_mark.line + 1
            items.append(_construct(item, path + (i,), loc))
        return items
    return _scalar(node)


# One loader instance resolves scalars with PyYAML's safe implicit typing
# (ints, floats, null, booleans), exactly as yaml.safe_load would.
_TYPED = yaml.SafeLoader("")


def _scalar(node):
    return _TYPED.construct_object(node, deep=True)

"""The matrix schema: field types, and checks that span fields and rows.

Every problem names the file, the line, the field, what is wrong and how to fix it.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

from .versions import VendorVersion, pep440, python_version
from .yamlsrc import Located, Problem

_URL_RE = re.compile(r"https://\S+")
_PYTAG_RE = re.compile(r"cp3\d+")


class Field:
    """One field's type. ``check`` returns an error text or None."""

    hint = ""

    def check(self, value) -> str | None:  # pragma: no cover - overridden
        raise NotImplementedError

    def describe(self) -> str:
        return self.hint


@dataclass
class Text(Field):
    """A string. With ``parse`` it is a token (a version, a URL, a tag): no
    whitespace anywhere. Without, one line without surrounding blanks, unless
    ``prose`` (notes may span lines)."""

    parse: Callable[[str], object] | None = None
    hint: str = "a quoted string"
    prose: bool = False

    def check(self, value):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return (f"is the number {value!r}, not a string; quote it (YAML reads 3.10 as 3.1): "
                    f"write \"{value}\"")
        if not isinstance(value, str) or not value.strip():
            return f"must be {self.hint}, got {value!r}"
        if self.parse and any(c.isspace() for c in value):
            return f"{value!r} holds whitespace or a line break; write {self.hint} without them"
        if not self.prose and ("\n" in value or "\r" in value or value != value.strip()):
            return f"{value!r} must be one line without leading or trailing blanks; remove them"
        if self.parse:
            try:
                self.parse(value)
            except ValueError as e:
                return str(e)
        return None


@dataclass
class Choice(Field):
    choices: tuple = ()

    def check(self, value):
        if value not in self.choices:
            return f"is {value!r}; use one of: {', '.join(map(str, self.choices))}"
        return None

    def describe(self):
        return "one of " + ", ".join(map(str, self.choices))


@dataclass
class Optional(Field):
    inner: Field = None

    def check(self, value):
        return None if value is None else self.inner.check(value)


def url(value: str):
    if not _URL_RE.fullmatch(value):
        raise ValueError(f"{value!r} is not an https:// URL")


def python_tag_text(value: str):
    if not _PYTAG_RE.fullmatch(value):
        raise ValueError(f"{value!r} is not a CPython wheel tag (e.g. cp310)")


VERSION = Text(pep440, "a PEP 440 version string")
VENDOR = Text(VendorVersion, "a CANN/HDK version string")
PYTHON = Text(python_version, "a Python version string like \"3.10\"")
URL = Text(url, "an https:// URL")
STR = Text()
WORD = Text(lambda value: None, "a word (a tag, a branch name)")
PROSE = Text(hint="text", prose=True)


@dataclass
class Shape:
    """A mapping's fields: name -> (Field | Shape | ListOf, required)."""

    fields: dict
    what: str

    def validate(self, value, path: tuple, loc: Located, out: list[Problem], name: str = "") -> None:
        """Check ``value`` (found at ``path``); ``name`` is its dotted field name in messages."""
        line = loc.line(path)
        if not isinstance(value, dict):
            out.append(Problem(loc.file, line, f"{name or self.what}: must be a mapping of {', '.join(self.fields)}; got {type(value).__name__}"))
            return
        for key in value:
            if key not in self.fields:
                known = ", ".join(self.fields)
                out.append(Problem(loc.file, loc.line(path + (key,)),
                                   f"{_join(name, key)}: unknown field '{key}'; the {self.what} fields are: {known} (remove it or fix its spelling)"))
        for key, (ftype, required) in self.fields.items():
            if key not in value:
                if required:
                    out.append(Problem(loc.file, line, f"{_join(name, key)}: missing required field '{key}'; add it ({_describe(ftype)})"))
                continue
            validate_value(ftype, value[key], path + (key,), loc, out, _join(name, key))


@dataclass
class ListOf:
    item: object
    nonempty: bool = True

    def describe(self):
        return "a list of " + _describe(self.item)


@dataclass
class MapOf:
    """A mapping from free keys (checked by ``key``) to values of one type."""

    key: Field
    value: object

    def describe(self):
        return "a mapping"


def validate_value(ftype, value, path, loc, out, name):
    line = loc.line(path)
    if isinstance(ftype, Shape):
        ftype.validate(value, path, loc, out, name)
    elif isinstance(ftype, ListOf):
        if not isinstance(value, list) or (ftype.nonempty and not value):
            out.append(Problem(loc.file, line, f"{name}: must be a non-empty list of {_describe(ftype.item)}; got {value!r}"))
            return
        seen = set()
        for i, item in enumerate(value):
            validate_value(ftype.item, item, path + (i,), loc, out, f"{name}[{i}]")
            if isinstance(item, str) and item in seen:
                out.append(Problem(loc.file, loc.line(path + (i,)), f"{name}: '{item}' is listed twice; remove one"))
            seen.add(item if isinstance(item, str) else id(item))
    elif isinstance(ftype, MapOf):
        if not isinstance(value, dict):
            out.append(Problem(loc.file, line, f"{name}: must be a mapping; got {value!r}"))
            return
        for k, v in value.items():
            err = ftype.key.check(k)
            if err:
                out.append(Problem(loc.file, loc.line(path + (k,)), f"{name}: key {k!r} {err}"))
            validate_value(ftype.value, v, path + (k,), loc, out, _join(name, k))
    else:
        err = ftype.check(value)
        if err:
            out.append(Problem(loc.file, line, f"{name}: {err}"))


def _describe(ftype) -> str:
    if isinstance(ftype, Shape):
        return f"a mapping with {', '.join(ftype.fields)}"
    return ftype.describe()


def _join(prefix: str, key) -> str:
    return f"{prefix}.{key}" if prefix else str(key)


# The facts every row must carry a source URL for (see README "The matrix").
SOURCE_KEYS = ("versions", "python", "torchvision", "adapter", "hdk", "wheel")


def row_shape(packaging_names, archs) -> Shape:
    return Shape(
        what="row",
        fields={
            "torch_npu": (VERSION, True),
            "torch": (VERSION, True),
            "torchvision": (VERSION, True),
            "cann": (VENDOR, True),
            "python": (ListOf(PYTHON), True),
            "packaging": (Choice(tuple(packaging_names)), True),
            # null where no branch or tag of the vendor carries the release (see the row's notes)
            "adapter": (Shape({k: (Optional(inner=WORD), True) for k in ("release", "branch", "tag")}, "adapter"), True),
            "hdk": (Shape({"version": (VENDOR, True), "min": (VENDOR, True), "max": (Optional(inner=VENDOR), False)}, "hdk"), True),
            "wheel": (Shape({
                "index": (Choice(("pypi", "release_page")), True),
                "url": (URL, True),
                "python_tags": (ListOf(Text(python_tag_text, "a wheel tag like cp310")), True),
                "platforms": (ListOf(WORD), True),
                "torch_requirement": (MapOf(Choice(tuple(archs)), Optional(inner=STR)), False),
            }, "wheel"), True),
            "status": (Choice(("active", "eol")), True),
            "sources": (Shape({k: (URL, True) for k in SOURCE_KEYS}, "sources"), True),
            "inferred": (ListOf(STR, nonempty=False), False),
            "notes": (PROSE, False),
        },
    )

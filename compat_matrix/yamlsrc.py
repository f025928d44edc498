"""YAML loading that remembers where every value came from, within bounds.

The matrix's error messages name ``FILE:LINE``; PyYAML's plain loaders forget
lines and silently keep the last of two duplicate keys. This builds the data
from PyYAML's event stream instead, recording the line of every key and list
item, and refuses what a data file has no use for and a hostile file abuses:
aliases that expand without bound (a few hundred bytes can expand to
gigabytes), recursive aliases, deep nesting, tags other than YAML's core
types, keys that are lists or mappings, merge keys, bytes that are not UTF-8
text, and invisible characters (bidi controls, zero-width spaces) that make a
value read differently from what it is.
"""
from __future__ import annotations

import codecs
import copy
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .errors import UserError

# Nesting deeper than this is no matrix (rows nest four levels deep).
MAX_DEPTH = 32
# Values that aliases may add in all, counting every value an alias repeats.
MAX_ALIAS_VALUES = 10_000
# A matrix file is a few hundred KiB.
MAX_FILE_BYTES = 16 << 20

_CORE = "tag:yaml.org,2002:"
SCALAR_TAGS = {_CORE + t for t in ("str", "int", "float", "bool", "null")}
COLLECTION_TAGS = {yaml.SequenceStartEvent: _CORE + "seq", yaml.MappingStartEvent: _CORE + "map"}
_MERGE = _CORE + "merge"


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
        text = _decode(file, _read(file))
    return _Builder(file).build(text)


def _fail(file: str, line: int, message: str) -> MatrixError:
    return MatrixError([Problem(file, line, message)])


def _read(file: str) -> bytes:
    path = Path(file)
    try:
        if not path.is_file():
            what = "a directory" if path.is_dir() else "not a regular file" if path.exists() else "missing"
            raise _fail(file, 1, f"cannot read the file: it is {what}; give the path of a YAML file")
        with path.open("rb") as f:
            raw = f.read(MAX_FILE_BYTES + 1)
    except OSError as e:
        raise _fail(file, 1, f"cannot read the file: {e.strerror}") from None
    if len(raw) > MAX_FILE_BYTES:
        raise _fail(file, 1, f"the file is larger than {MAX_FILE_BYTES >> 20} MiB; a matrix is a few hundred KiB")
    return raw


def _decode(file: str, raw: bytes) -> str:
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise _fail(file, 1, "the file is UTF-16 text; save it as UTF-8")
    if b"\0" in raw:
        line = raw[:raw.index(b"\0")].count(b"\n") + 1
        raise _fail(file, line, "the file is binary (it holds NUL bytes), not YAML text; give the matrix's YAML file")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b"\n") + 1
        column = e.start - (raw.rfind(b"\n", 0, e.start) + 1) + 1
        raise _fail(file, line, f"not UTF-8 text: the byte 0x{raw[e.start]:02x} at column {column} is not UTF-8; "
                                f"save the file as UTF-8") from None


def invisible_character(text: str) -> str | None:
    """A description of the first character in ``text`` that displays as
    something else or as nothing (control, bidi, zero-width), else None."""
    for ch in text:
        category = unicodedata.category(ch)
        if (category == "Cc" and ch not in "\t\n") or category in ("Cf", "Zl", "Zp", "Co", "Cn"):
            name = unicodedata.name(ch, "a control character")
            return f"U+{ord(ch):04X} ({name})"
    return None


# libyaml's parser when PyYAML has it (about 25 times faster); the events are the same.
_PARSER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

# One loader instance types plain scalars with PyYAML's safe implicit typing
# (ints, floats, null, booleans), exactly as yaml.safe_load would.
_TYPED = yaml.SafeLoader("")


class _Discarded:
    """Path element under which the value of a refused key is built and dropped."""


@dataclass
class _Frame:
    value: dict | list
    path: tuple
    line: int
    anchor: str | None
    first_entry: int
    key: object = None
    key_pending: bool = True  # mappings: the next value is a key
    key_line: int = 0
    skip: bool = False  # the pending key was refused: drop its value
    size: int = 1


@dataclass
class _Anchored:
    value: object
    entries: list  # (path below the anchored value, line)
    size: int


class _Builder:
    def __init__(self, file: str):
        self.file = file
        self.loc = Located(file=file, data=None)
        self.stack: list[_Frame] = []
        self.anchors: dict[str, _Anchored] = {}
        self.entries: list[tuple[tuple, int]] = []  # every line recorded, in order (see _Frame.first_entry)
        self.alias_values = 0
        self.documents = 0

    def build(self, text: str) -> Located:
        try:
            for event in yaml.parse(text, Loader=_PARSER):
                self.event(event)
        except yaml.reader.ReaderError as e:
            line = text[:e.position].count("\n") + 1
            raise _fail(self.file, line, f"not valid YAML: the character U+{e.character:04X} is not allowed in "
                                         f"YAML text; delete it") from None
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            line = mark.line + 1 if mark else 1
            reason = getattr(e, "problem", None) or str(e)
            raise _fail(self.file, line, f"not valid YAML: {reason}; fix the syntax on this line") from None
        return self.loc

    # --- events -------------------------------------------------------------

    def event(self, event) -> None:
        line = event.start_mark.line + 1 if event.start_mark else 1
        if isinstance(event, yaml.DocumentStartEvent):
            self.documents += 1
            if self.documents > 1:
                raise _fail(self.file, line, "a second YAML document starts here ('---'); the file must hold one")
        elif isinstance(event, yaml.ScalarEvent):
            self.scalar(event, line)
        elif isinstance(event, yaml.AliasEvent):
            self.alias(event, line)
        elif isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
            self.start(event, line)
        elif isinstance(event, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
            frame = self.stack.pop()
            if frame.anchor:
                self.remember(frame.anchor, frame.value, frame.path, frame.first_entry, frame.size)
            self.add(frame.value, frame.line, frame.size, path_recorded=True)

    def scalar(self, event, line: int) -> None:
        parent = self.stack[-1] if self.stack else None
        if event.tag in (None, "!"):
            tag = _TYPED.resolve(yaml.ScalarNode, event.value, event.implicit)
        else:
            tag = event.tag
            if tag not in SCALAR_TAGS:
                raise _fail(self.file, line, f"the tag '{tag}' is not allowed: the matrix holds plain strings, "
                                             f"numbers, booleans, lists and mappings; remove the tag")
        if tag == _MERGE and parent is not None and parent.key_pending:
            raise _fail(self.file, line, "merge keys ('<<') are not supported; write the fields out in full")
        value = self.typed(event.value, tag, line, event.start_mark, event.end_mark)
        if isinstance(value, str):
            bad = invisible_character(value)
            if bad:
                self.problem(line, f"{_short(value)} contains the invisible character {bad}; delete it (it makes the "
                                   f"text read differently from what it is)")
        if parent is not None and isinstance(parent.value, dict) and parent.key_pending:
            self.key(parent, value, line)
            if event.anchor:
                self.remember(event.anchor, value, None, len(self.entries), 1)
            return
        if event.anchor:
            self.remember(event.anchor, value, None, len(self.entries), 1)
        self.add(value, line, 1)

    def typed(self, text: str, tag: str, line: int, start, end):
        # A tag the safe constructor has no use for (a plain '=' resolves to one) stays text.
        constructor = _TYPED.yaml_constructors.get(tag) or _TYPED.yaml_constructors[_CORE + "str"]
        try:
            return constructor(_TYPED, yaml.ScalarNode(tag, text, start, end))
        except (ValueError, OverflowError, yaml.YAMLError) as e:
            self.problem(line, f"cannot read the value {_short(text)} ({str(e).splitlines()[0]}); quote it")
            return text

    def alias(self, event, line: int) -> None:
        name = event.anchor
        parent = self.stack[-1] if self.stack else None
        if parent is not None and isinstance(parent.value, dict) and parent.key_pending:
            raise _fail(self.file, line, f"the alias '*{name}' is used as a key; write the key out")
        target = self.anchors.get(name)
        if target is None:
            if any(f.anchor == name for f in self.stack):
                raise _fail(self.file, line, f"the alias '*{name}' refers to the value that contains it (a recursive "
                                             f"alias); write the data out")
            raise _fail(self.file, line, f"the alias '*{name}' names no anchor '&{name}' defined before it")
        self.alias_values += target.size
        if self.alias_values > MAX_ALIAS_VALUES:
            raise _fail(self.file, line, f"aliases expand to more than {MAX_ALIAS_VALUES} values (here at "
                                         f"'*{name}'); write the data out instead of nesting aliases")
        if len(self.stack) + _depth(target.value) > MAX_DEPTH:
            raise _fail(self.file, line, f"nested deeper than {MAX_DEPTH} levels (through '*{name}'); "
                                         f"the matrix nests four")
        self.add(copy.deepcopy(target.value), line, target.size, target.entries)

    def start(self, event, line: int) -> None:
        parent = self.stack[-1] if self.stack else None
        if event.tag is not None and event.tag not in ("!", COLLECTION_TAGS[type(event)]):
            raise _fail(self.file, line, f"the tag '{event.tag}' is not allowed: the matrix holds plain strings, "
                                         f"numbers, booleans, lists and mappings; remove the tag")
        if parent is not None and isinstance(parent.value, dict) and parent.key_pending:
            raise _fail(self.file, line, "a key is a list or a mapping; keys must be plain strings")
        if len(self.stack) >= MAX_DEPTH:
            raise _fail(self.file, line, f"nested deeper than {MAX_DEPTH} levels; the matrix nests four")
        path = self.child_path(parent, line)
        value = {} if isinstance(event, yaml.MappingStartEvent) else []
        self.stack.append(_Frame(value, path, line, event.anchor, len(self.entries)))

    # --- building -------------------------------------------------------------

    def child_path(self, parent: _Frame | None, line: int) -> tuple:
        """The path of the value that starts now; records its line."""
        if parent is None:
            path = ()
        elif isinstance(parent.value, list):
            path = parent.path + (len(parent.value),)
        elif parent.skip:
            return parent.path + (_Discarded(),)
        else:
            path = parent.path + (parent.key,)
        self.record(path, line)
        return path

    def key(self, frame: _Frame, key, line: int) -> None:
        frame.key, frame.key_line, frame.key_pending = key, line, False
        frame.skip = key in frame.value
        if frame.skip:
            self.problem(line, f"duplicate key '{key}' (first at line {self.loc.lines[frame.path + (key,)]}); "
                               f"keep only one")
        else:
            self.record(frame.path + (key,), line)

    def add(self, value, line: int, size: int, entries=(), path_recorded: bool = False) -> None:
        """Attach a finished value to the collection being built (or make it the document).
        ``entries``: the lines inside an aliased value, below its path."""
        if not self.stack:
            self.loc.data = value
            self.record((), line)
            return
        parent = self.stack[-1]
        parent.size += size
        path = None if path_recorded else self.child_path(parent, line)
        if isinstance(parent.value, list):
            parent.value.append(value)
        else:
            if not parent.skip:
                parent.value[parent.key] = value
            parent.key_pending, parent.skip = True, False
        if path is not None and not (path and isinstance(path[-1], _Discarded)):
            for below, below_line in entries:
                self.record(path + below, below_line)

    def remember(self, anchor: str, value, path: tuple | None, first_entry: int, size: int) -> None:
        entries = [] if path is None else [(p[len(path):], n) for p, n in self.entries[first_entry:] if p != path]
        self.anchors[anchor] = _Anchored(value, entries, size)

    def record(self, path: tuple, line: int) -> None:
        if path not in self.loc.lines:
            self.loc.lines[path] = line
            self.entries.append((path, line))

    def problem(self, line: int, message: str) -> None:
        self.loc.problems.append(Problem(self.file, line, message))


def _short(text: str, limit: int = 60) -> str:
    """A value as messages quote it: repr, cut to ``limit`` characters."""
    shown = repr(text)
    return shown if len(shown) <= limit else shown[:limit - 5] + "...'"


def _depth(value) -> int:
    if isinstance(value, dict):
        return 1 + max(map(_depth, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(_depth, value), default=0)
    return 0

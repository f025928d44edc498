"""Set the few containers.conf keys podman and buildah need on this kind of machine,
keeping everything else the file says (setup-engine.sh runs this with the system python3).

A file that already has the values is left untouched. Otherwise the original is copied
to ``containers.conf.npuenv-backup-<UTC time>`` first and only the keys below are set
(an existing line replaced, a missing one added under its table); every other line,
comments included, stays as it was. What was changed is printed.

Facts behind each key: ../shared/DESIGN.md section 5 (crun refuses this kernel's
hybrid cgroups; podman's default nofile ulimit is refused).
"""
from __future__ import annotations

import datetime as dt
import re
import shutil
import sys
import tomllib
from pathlib import Path

# table -> key -> the TOML value, as written
WANTED = {
    "containers": {"default_ulimits": "[]"},
    "engine": {"runtime": '"runc"', "cgroup_manager": '"cgroupfs"', "events_logger": '"file"'},
}
MARK = "# set by npuenv tests/sim/setup-engine.sh"


def _value(text: str):
    return tomllib.loads(f"v = {text}")["v"]


def missing(current: dict) -> list[tuple[str, str, str]]:
    """(table, key, value) that ``current`` (a parsed containers.conf) does not have yet."""
    return [(table, key, value) for table, keys in WANTED.items() for key, value in keys.items()
            if current.get(table, {}).get(key) != _value(value)]


def merge(text: str, todo: list[tuple[str, str, str]]) -> str:
    """``text`` with each (table, key, value) set: the key's line replaced in its table, or added
    right after the table's header, or the table appended."""
    lines = text.splitlines()
    for table, key, value in todo:
        header = next((i for i, line in enumerate(lines) if re.fullmatch(rf"\s*\[\s*{table}\s*\]\s*(#.*)?", line)),
                      None)
        new = f"{key} = {value}  {MARK}"
        if header is None:
            lines += ["", f"[{table}]", new]
            continue
        end = next((i for i in range(header + 1, len(lines)) if re.match(r"\s*\[", lines[i])), len(lines))
        at = next((i for i in range(header + 1, end) if re.match(rf"\s*{key}\s*=", lines[i])), None)
        if at is None:
            lines.insert(header + 1, new)
        else:
            lines[at:_entry_end(lines, at, end)] = [new]
    return "\n".join(lines) + "\n"


def _entry_end(lines: list[str], start: int, end: int) -> int:
    """Where the key/value pair starting at ``start`` ends (a value may run over lines: an array)."""
    for stop in range(start + 1, end + 1):
        try:
            tomllib.loads("\n".join(lines[start:stop]))
            return stop
        except tomllib.TOMLDecodeError:
            continue
    return start + 1


def apply(path: Path, now: dt.datetime | None = None) -> list[str]:
    """Bring ``path`` to the wanted settings; returns what was done, one line each."""
    path = Path(path)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(merge(f"{MARK}\n", missing({})))
        return [f"wrote {path} (there was none)"]
    text = path.read_text(encoding="utf-8")
    try:
        current = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise SystemExit(f"setup-engine: {path} is not valid TOML ({e}); fix it or move it away, then run again")
    todo = missing(current)
    if not todo:
        return [f"{path} already has the settings; left as it was"]
    stamp = (now or dt.datetime.now(dt.timezone.utc)).strftime("%Y%m%dT%H%M%SZ")
    backup = path.with_name(f"{path.name}.npuenv-backup-{stamp}")
    shutil.copy2(path, backup)
    merged = merge(text, todo)
    try:
        left = missing(tomllib.loads(merged))
    except tomllib.TOMLDecodeError as e:
        left = [str(e)]
    if left:
        raise SystemExit(f"setup-engine: could not merge the settings into {path} ({left}); it is unchanged "
                         f"(a copy is at {backup}). Set these by hand: {WANTED}")
    path.write_text(merged)
    done = [f"{path}: your settings kept, the original saved as {backup}"]
    for table, key, value in todo:
        before = current.get(table, {}).get(key)
        done.append(f"  [{table}] {key} = {value}" + (f" (was {before!r})" if before is not None else " (added)"))
    return done


if __name__ == "__main__":
    for line in apply(Path(sys.argv[1] if len(sys.argv) > 1 else "/etc/containers/containers.conf")):
        print(f"[engine] {line}")

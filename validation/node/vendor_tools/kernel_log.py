"""Parser for the Ascend driver's lines of the kernel log (``dmesg``)."""
from __future__ import annotations

import re
from dataclasses import dataclass

from .common import _lines


# The Ascend driver's kernel-log lines (hicann driver dmc_log.h): "[ascend] [ERROR] [<module>] [<func> <line>]
# <comm:pid> message" on older hosts, "[ascend] [<module>] [ERROR] [...]" on newer; info and warning lines
# carry no level, or [INFO]/[WARN] after the module. Errors go out at KERN_NOTICE, so the tag, not the
# syslog priority, says which are errors.
@dataclass(frozen=True)
class KernelLine:
    seconds: str | None    # "[ 1197.584409]" since boot, None without one
    tags: tuple[str, ...]  # ("ERROR", "drv_soft_fault", "heart_beat_judge 318")
    message: str           # after the tags and the process tag

    @property
    def error(self) -> bool:
        return "ERROR" in self.tags

    def text(self) -> str:
        return "[ascend] " + "".join(f"[{t}] " for t in self.tags) + self.message


_KERNEL_TIME = re.compile(r"\[\s*(\d+\.\d+)\]")
_KERNEL_TAG = re.compile(r"\[([^\]]*)\]\s?")
_KERNEL_PROCESS = re.compile(r"^<[^>]*>\s*")   # <comm:pid>, <comm:tgid:pid>, <comm:tgid,pid>


def parse_kernel_log(text: str) -> list[KernelLine]:
    """The Ascend driver's lines of ``dmesg`` (others are the rest of the kernel's and skipped)."""
    found = []
    for _, raw in _lines(text):
        at = raw.find("[ascend] ")
        if at < 0:
            continue
        stamp = _KERNEL_TIME.search(raw[:at])
        rest, tags = raw[at + len("[ascend] "):], []
        while (m := _KERNEL_TAG.match(rest)) is not None:
            tags.append(m.group(1))
            rest = rest[m.end():]
        found.append(KernelLine(stamp.group(1) if stamp else None, tuple(tags), _KERNEL_PROCESS.sub("", rest, 1)))
    return found


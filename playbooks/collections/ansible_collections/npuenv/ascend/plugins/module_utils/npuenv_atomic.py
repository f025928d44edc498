"""Reading and writing a node's small text files for npuenv's modules: a file is
replaced whole (a temporary file in its folder, then a rename), so that a
reader never sees half of it."""
from __future__ import annotations

import os
import tempfile

MAX_BEFORE = 1 << 20  # a diff shows at most this much of the file it replaces


def read(path):
    """The file's text (at most MAX_BEFORE + 1 bytes of it), None when it cannot be read."""
    try:
        with open(path, "rb") as f:
            return f.read(MAX_BEFORE + 1).decode("utf-8", errors="replace")
    except OSError:
        return None


def write(path, content, mode):
    """``content`` as ``path`` with ``mode``, its folder made (0755) when missing."""
    folder = os.path.dirname(path)
    os.makedirs(folder, mode=0o755, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".npuenv-", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(content.encode("utf-8"))
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def compare(path, content, mode):
    """(the file's text now, None when it is no plain file; whether ``content`` with ``mode`` must be
    written: its content or its mode differs)."""
    before = read(path) if os.path.isfile(path) and not os.path.islink(path) else None
    return before, before != content or (os.stat(path).st_mode & 0o7777) != mode

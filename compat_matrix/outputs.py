"""Files a command reads from or writes for the user, with exit-2 errors.

Every option that writes (``--out``, ``--output``, ``--record``, ``--update``)
checks its path before the work starts and writes atomically: the text goes to
a temporary file beside the target, which then replaces it, so an error or an
interrupt leaves the old file (or none), never half of a new one. Inputs the
user names are read only when they are regular files of bounded size (a FIFO
would block, /dev/zero never ends), as UTF-8 text or bytes, or refused with the
file's name.
"""
from __future__ import annotations

import errno
import os
import stat
import tempfile
from pathlib import Path

from .errors import UserError


def _where(option: str | None, path: Path) -> str:
    return f"{option} {path}" if option else str(path)


def _check_parent(path: Path, option: str | None) -> None:
    """The folder ``path`` goes into takes files. Folders missing on the way are
    made when the output is written (as `mkdir -p` would): the nearest one that
    exists must be a folder this user can write in."""
    parent = next(p for p in (path.parent, *path.parent.absolute().parents) if p.exists() or p.is_symlink())
    if not parent.is_dir():
        raise UserError(f"{_where(option, path)}: {parent} is not a folder; choose another path")
    try:
        fd, probe = tempfile.mkstemp(dir=parent, prefix=".npuenv-probe-")
    except OSError as e:
        raise UserError(f"{_where(option, path)}: cannot write in {parent}: {e.strerror}; choose another path") from None
    os.close(fd)
    os.unlink(probe)


def check_file_output(path: Path | str, option: str | None = None) -> Path:
    """A file the command will write: its folder exists and takes files; it is not a folder itself."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{_where(option, path)}: is a folder; give the path of a file")
    if path.exists() and not path.is_file():
        raise UserError(f"{_where(option, path)}: is not a regular file; give the path of a file")
    _check_parent(path, option)
    return path


def check_dir_output(path: Path | str, option: str | None = None) -> Path:
    """A folder the command will write into (or create): it is a folder if it exists, and
    the folder holding it exists."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"{_where(option, path)}: is a file, not a folder; give the path of a folder")
    _check_parent(path / "x" if path.is_dir() else path, option)
    return path


def write_text(path: Path | str, text: str, option: str | None = None, mode: int = 0o644) -> Path:
    """Write ``text`` to ``path`` atomically (a temporary file beside it, then a rename)."""
    path = check_file_output(path, option)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise UserError(f"{_where(option, path)}: cannot write it: {e.strerror}") from None
        raise
    return path


def write_files(directory: Path | str, files: dict[str, tuple[str, int]], option: str | None = None) -> Path:
    """Write ``{name: (text, mode)}`` into ``directory`` (created if missing): all are written to a
    temporary folder beside it first, then moved in, so that a failure leaves none of them."""
    directory = check_dir_output(directory, option)
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f".{directory.name}.", suffix=".tmp"))
    try:
        for name, (text, mode) in files.items():
            (staging / name).write_text(text, encoding="utf-8")
            (staging / name).chmod(mode)
        directory.mkdir(exist_ok=True)
        for name in files:
            os.replace(staging / name, directory / name)
    except OSError as e:
        raise UserError(f"{_where(option, directory)}: cannot write it: {e.strerror}") from None
    finally:
        for leftover in staging.iterdir():
            leftover.unlink()
        staging.rmdir()
    return directory


# The largest file the user names that a command reads whole (an inventory, a
# CA certificate, a recorded answer): far above any real one, far below memory.
MAX_INPUT_BYTES = 64 << 20


def _not_regular(path: Path, what: str) -> UserError:
    return UserError(f"{path}: is not a regular file (a pipe, socket or device); {what} must be a plain file")


def _refuse_special(path: Path, st: os.stat_result, what: str, max_bytes: int | None) -> None:
    """UserError unless ``st`` is a regular file of at most ``max_bytes`` (None: any size)."""
    if stat.S_ISDIR(st.st_mode):
        raise UserError(f"{path}: is a folder; {what} must be a file")
    if not stat.S_ISREG(st.st_mode):
        raise _not_regular(path, what)
    if max_bytes is not None and st.st_size > max_bytes:
        raise UserError(f"{path}: is {st.st_size} bytes, more than the {max_bytes} bytes {what} may have; "
                        f"is it the right file?")


def check_input_file(path: Path | str, what: str = "the file", max_bytes: int | None = MAX_INPUT_BYTES) -> Path:
    """A file the user named that the command (or a tool it runs) will read: it exists and is a
    regular file (a FIFO would block the command, a device such as /dev/zero never ends) of at most
    ``max_bytes`` (None: a file read in a stream, such as an installer that is hashed)."""
    path = Path(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise UserError(f"{path}: no such file ({what})") from None
    except OSError as e:
        raise UserError(f"{path}: cannot read {what}: {e.strerror}") from None
    _refuse_special(path, st, what, max_bytes)
    return path


def read_bytes(path: Path | str, what: str = "the file", max_bytes: int = MAX_INPUT_BYTES) -> bytes:
    """The bytes of a file the user named; a missing, special or oversized file is a UserError.

    The file is opened without blocking and judged by what was opened, so that a file swapped
    for a FIFO after a check cannot block the read either."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise UserError(f"{path}: no such file ({what})") from None
    except OSError as e:
        if e.errno == errno.ENXIO:  # what opening a socket gives
            raise _not_regular(path, what) from None
        raise UserError(f"{path}: cannot read {what}: {e.strerror}") from None
    try:
        _refuse_special(path, os.fstat(fd), what, max_bytes)
    except UserError:
        os.close(fd)
        raise
    with os.fdopen(fd, "rb") as f:
        os.set_blocking(fd, True)
        try:
            data = f.read(max_bytes + 1)  # the file may have grown since it was judged
        except OSError as e:
            raise UserError(f"{path}: cannot read {what}: {e.strerror}") from None
    if len(data) > max_bytes:
        raise UserError(f"{path}: is more than the {max_bytes} bytes {what} may have; is it the right file?")
    return data


def read_text(path: Path | str, what: str = "the file", max_bytes: int = MAX_INPUT_BYTES) -> str:
    """A UTF-8 text file the user named; a missing, special, oversized, binary or non-UTF-8 file is a
    UserError."""
    path = Path(path)
    data = read_bytes(path, what, max_bytes)
    if b"\0" in data:
        raise UserError(f"{path}: is a binary file; {what} must be UTF-8 text")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        raise UserError(f"{path}:{line}: not UTF-8 text ({what}); save it as UTF-8") from None

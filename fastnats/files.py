"""Reading the files that flags and confs name: regular files only, bounded, never blocking.

``stat()`` comes before ``open()``: opening a FIFO blocks, and opening a device can do anything.
The file is then opened with ``O_NONBLOCK`` and ``fstat()`` must show the same inode, so a file
swapped in between is refused too. At most ``limit + 1`` bytes are read, whatever ``st_size``
says: files under /proc report 0 and hold more.
"""

from __future__ import annotations

import os
import stat

__all__ = ["FileRefused", "FileTooLarge", "read_regular"]

_FILE_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"),
               (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
               (stat.S_ISBLK, "a block device"))
_OPEN_FLAGS = os.O_RDONLY | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK
_READ_CHUNK = 1024 * 1024


class FileRefused(Exception):
    """A file that cannot be read; ``reason`` says why, never what it holds."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class FileTooLarge(FileRefused):
    """A file over the caller's limit."""


def _not_regular(mode: int) -> str:
    for is_kind, kind in _FILE_KINDS:
        if is_kind(mode):
            return f"not a regular file ({kind})"
    return "not a regular file"


def read_regular(path: str | os.PathLike[str], limit: int) -> bytes:
    """The bytes of the regular file ``path``, at most ``limit`` of them; raises FileTooLarge
    for more, FileRefused for anything else that is not a readable regular file."""
    too_large = FileTooLarge(f"larger than {limit} bytes")
    try:
        found = os.stat(path)
        if not stat.S_ISREG(found.st_mode):
            raise FileRefused(_not_regular(found.st_mode))
        if found.st_size > limit:
            raise too_large
        fd = os.open(path, _OPEN_FLAGS)
        try:
            opened = os.fstat(fd)
            if (opened.st_dev, opened.st_ino) != (found.st_dev, found.st_ino):
                raise FileRefused("replaced while being opened")
            chunks: list[bytes] = []
            size = 0
            while size <= limit:
                chunk = os.read(fd, min(max(found.st_size + 1, _READ_CHUNK), limit + 1 - size))
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
        finally:
            os.close(fd)
    except OSError as exc:
        raise FileRefused(exc.strerror or type(exc).__name__) from None
    if size > limit:
        raise too_large
    return b"".join(chunks)

"""Writing files atomically, so that an interrupted or failed command never leaves a partial output."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from genomix.errors import GenomixError

_UMASK = os.umask(0)
os.umask(_UMASK)


def check_writable(path: str | Path) -> Path:
    """Fail early (before hours of work) when the output's folder does not exist or is not writable."""
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise GenomixError(f"{path}: folder {folder} does not exist")
    if path.is_dir():
        raise GenomixError(f"{path}: is a directory")
    if not os.access(folder, os.W_OK):
        raise GenomixError(f"{path}: folder {folder} is not writable")
    return path


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it replaces `path`, on failure it is removed."""
    path = check_writable(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)  # temporary files are private; outputs get the usual permissions
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)

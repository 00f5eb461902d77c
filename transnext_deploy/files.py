"""Files the package writes and checks: sha256 sums, and files and directories written under a private
name and moved into place whole, so that a failure never leaves something that looks complete.

At the bottom of the package: it imports nothing from it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path
from typing import BinaryIO


def sha256_stream(stream: BinaryIO) -> str:
    """sha256 of what is left in a binary stream, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    while chunk := stream.read(1 << 20):
        digest.update(chunk)
    return digest.hexdigest()


def sha256sum(path: str | os.PathLike) -> str:
    """sha256 of a file."""
    with open(path, "rb") as f:
        return sha256_stream(f)


def write_bytes_atomically(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` (parent directories made) through a private temporary name in the same
    directory, renamed into place: readers see the old file or the whole new one. Raises OSError."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def publish_directory(staging: str | os.PathLike, final: str | os.PathLike) -> None:
    """Move a finished staging directory (from tempfile.mkdtemp, beside `final`) into place,
    replacing what was there, with the permissions the user's umask gives a new directory:
    mkdtemp's privacy is for the staging only."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(staging, 0o777 & ~umask)
    if Path(final).exists():
        shutil.rmtree(final)
    os.replace(staging, final)


__all__ = ["publish_directory", "sha256_stream", "sha256sum", "write_bytes_atomically"]

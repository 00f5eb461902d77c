"""Files the package writes and checks: sha256 sums, and directories assembled under a private name
and moved into place whole, so that a failure never leaves something that looks complete.

At the bottom of the package: it imports nothing from it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path


def sha256sum(path: str | os.PathLike) -> str:
    """sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


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


__all__ = ["publish_directory", "sha256sum"]

"""The user cache: where it is, what each part holds, how big it is, and clearing parts of it.

Downloads (official weights) live at its top; plugin builds, TensorRT timing caches and TensorRT-RTX
runtime caches, and bench's work directory below it. At the bottom of the package: it imports only the names (artifacts.py) and the errors.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path

from .artifacts import CACHE_ENV
from .errors import InvalidArgumentError


def cache_dir() -> Path:
    """The user cache: $TRANSNEXT_DEPLOY_CACHE, else $XDG_CACHE_HOME (or ~/.cache)/transnext-deploy.
    Downloads live at its top, plugin builds, timing caches and bench work below it."""
    root = os.environ.get(CACHE_ENV)
    if root:
        return Path(root).expanduser().resolve()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "transnext-deploy"


# What the user cache holds, by part: part -> (what, where below cache_dir(); "" = the top level).
CACHE_PARTS = {
    "weights": ("official weights from `download` / --checkpoint official", ""),
    "bench": ("bench's exported artifacts and polygraphy data (--work-dir default)", "bench"),
    "tensorrt": ("TensorRT timing caches, TensorRT-RTX runtime caches", "tensorrt"),
    "plugins": ("libraries built by build-plugin outside a checkout", "plugins"),
}
WEIGHTS_PATTERNS = ("transnext_*.pth", "transnext_*.pth.*.part")  # downloads and their partial files


def _cache_files(part: str) -> list[Path]:
    root = cache_dir()
    if part == "weights":
        return sorted({p for pattern in WEIGHTS_PATTERNS for p in root.glob(pattern) if p.is_file()})
    base = root / CACHE_PARTS[part][1]
    return sorted(p for p in base.rglob("*") if p.is_file() and not p.is_symlink()) if base.is_dir() else []


def cache_usage() -> dict[str, dict]:
    """part -> {path, bytes, files, what} for every part of the user cache (0 bytes when absent)."""
    usage = {}
    for part, (what, sub) in CACHE_PARTS.items():
        files = _cache_files(part)
        usage[part] = {"path": str(cache_dir() / sub) if sub else str(cache_dir()), "what": what,
                       "files": len(files), "bytes": sum(p.stat().st_size for p in files)}
    return usage


def clear_cache(parts: Sequence[str]) -> dict[str, int]:
    """Delete the given parts of the user cache ("all": every part); returns part -> bytes freed. Only
    the package's own files go: the weights part is the downloaded `transnext_*.pth` files at the top,
    the other parts are the sub-directories named in CACHE_PARTS. Every part is checked first."""
    parts = list(CACHE_PARTS) if "all" in parts else list(dict.fromkeys(parts))
    unknown = [p for p in parts if p not in CACHE_PARTS]
    if unknown:
        raise InvalidArgumentError(f"cache parts are {', '.join(CACHE_PARTS)} or all, got {', '.join(unknown)}")
    freed = {}
    for part in parts:
        freed[part] = sum(p.stat().st_size for p in _cache_files(part))
        if part == "weights":
            for path in _cache_files(part):
                path.unlink(missing_ok=True)
        else:
            shutil.rmtree(cache_dir() / CACHE_PARTS[part][1], ignore_errors=True)
    return freed


__all__ = ["CACHE_PARTS", "cache_dir", "cache_usage", "clear_cache"]

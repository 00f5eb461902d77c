"""Where the plugin sources and the libraries built from them are, for the three ways the package
can be present:

- source checkout (plain, or `pip install -e .`): `plugins/` next to the package is the source, and
  the build directory is `<checkout>/build/plugins`;
- wheel: the sources are `transnext_deploy/plugins/` (copied from `plugins/` when the wheel is
  built) and the host library built with the wheel, `transnext_deploy/lib/`, is used as it is;
  anything `build-plugin` builds goes to the per-user cache directory, never into the package;
- wheel built where no C++ compiler was found (e.g. from the sdist): sources only; the host library
  is built into the cache directory on first use.
`TRANSNEXT_DEPLOY_PLUGIN_DIR` replaces the build directory in every case.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..artifacts import LIBRARY_FILES, PLUGIN_DIR_ENV
from ..cache import cache_dir
from .toolchain import PluginBuildError


def package_dir() -> Path:
    """The installed or checked-out `transnext_deploy` directory."""
    return Path(__file__).resolve().parent.parent


def checkout_root() -> Path | None:
    """The source checkout holding this package and `plugins/`, or None for an installed package."""
    root = package_dir().parent
    if (root / "plugins" / "CMakeLists.txt").is_file():
        return root
    return None


def bundled_source_dir() -> Path:
    """Where a wheel carries the plugin sources (copied from `plugins/` when it is built)."""
    return package_dir() / "plugins"


def plugin_source_dir() -> Path:
    """`plugins/` of the checkout, else the sources the installed wheel carries."""
    root = checkout_root()
    if root is not None:
        return root / "plugins"
    bundled = bundled_source_dir()
    if (bundled / "CMakeLists.txt").is_file():
        return bundled
    raise PluginBuildError(
        f"plugin sources not found: neither a source checkout nor {bundled}/CMakeLists.txt "
        "(reinstall transnext-deploy from its wheel or sdist)"
    )


def user_cache_dir() -> Path:
    """The per-user build directory: plugins/ in the user cache (cache.cache_dir:
    $TRANSNEXT_DEPLOY_CACHE, else $XDG_CACHE_HOME or ~/.cache, then transnext-deploy)."""
    return cache_dir() / "plugins"


def default_build_dir() -> Path:
    env = os.environ.get(PLUGIN_DIR_ENV)
    if env:
        return Path(env).expanduser().resolve()
    root = checkout_root()
    if root is not None:
        return root / "build" / "plugins"
    return user_cache_dir()


def prebuilt_host_library() -> Path | None:
    """The host library built with the wheel (transnext_deploy/lib/), or None: in a checkout, which
    always builds from its own sources, and in a wheel that was built without a compiler."""
    if checkout_root() is not None:
        return None
    path = package_dir() / "lib" / LIBRARY_FILES["host"]
    return path if path.is_file() else None


def _library_path(kind: str, build_dir: Path | None) -> Path | None:
    directory = Path(build_dir) if build_dir is not None else default_build_dir()
    path = directory / LIBRARY_FILES[kind]
    return path if path.is_file() else None


def find_host_library(build_dir: str | os.PathLike | None = None) -> Path | None:
    """Path of libtransnext_aa_host.so in `build_dir`, or None. Without `build_dir`: the wheel's
    prebuilt library when there is one, else the one in default_build_dir()."""
    if build_dir is None and (prebuilt := prebuilt_host_library()) is not None:
        return prebuilt
    return _library_path("host", Path(build_dir) if build_dir is not None else None)


def find_cuda_library(build_dir: str | os.PathLike | None = None) -> Path | None:
    """Path of libtransnext_aa_cuda.so (the kernel's C API, built by `build-plugin --target cuda`) in
    `build_dir` (default: default_build_dir()), or None."""
    return _library_path("cuda_api", Path(build_dir) if build_dir is not None else None)


def find_plugin_library(build_dir: str | os.PathLike | None = None, *, dynamic: bool = False) -> Path | None:
    """Path of libtransnext_aa_plugin.so (or, with dynamic=True, the loadLibrary variant
    libtransnext_aa_plugin_dynamic.so) in `build_dir` (default: default_build_dir()), or None."""
    return _library_path("plugin_dynamic" if dynamic else "plugin", Path(build_dir) if build_dir is not None else None)


def build_info_path(library: str | os.PathLike) -> Path:
    """libtransnext_aa_plugin.so -> libtransnext_aa_plugin.so.build.json"""
    library = Path(library)
    return library.with_name(library.name + ".build.json")


def write_build_info(library: str | os.PathLike, info: dict) -> None:
    """What a plugin library was built with (its TensorRT headers' version, load-time registration),
    beside it: which TensorRT may load it is decided from this (engine.tensorrt.plugin_problem)."""
    build_info_path(library).write_text(json.dumps(info, indent=2) + "\n")


def read_build_info(library: str | os.PathLike) -> dict:
    """The facts write_build_info recorded, or {} for a library built elsewhere."""
    try:
        return json.loads(build_info_path(library).read_text())
    except (OSError, ValueError):
        return {}


__all__ = [
    "build_info_path",
    "read_build_info",
    "write_build_info",
    "bundled_source_dir",
    "checkout_root",
    "default_build_dir",
    "find_cuda_library",
    "find_host_library",
    "find_plugin_library",
    "package_dir",
    "plugin_source_dir",
    "prebuilt_host_library",
    "user_cache_dir",
]

"""The tools a plugin build needs, found or named in one line: cmake and make/ninja (also from
their PyPI packages), a C++ compiler, nvcc, and TensorRT's headers and library."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ..artifacts import TENSORRT_INCLUDE_ENV, TENSORRT_ROOT_ENV
from ..errors import TransNeXtDeployError


class PluginBuildError(TransNeXtDeployError):
    """A build prerequisite is missing or a build step failed; str() is a one-line reason."""


@dataclass
class TensorRTLocation:
    include_dir: Path | None
    library: Path | None
    library_dir: Path | None


def _python_package_tool(name: str) -> str | None:
    """`cmake` or `ninja` from the PyPI package of that name (`pip install cmake ninja`, or the
    `build` extra), found even when the environment's bin/ is not on PATH."""
    candidates = [Path(sys.executable).parent / name]
    try:
        module = __import__(name)
        bin_dir = getattr(module, "CMAKE_BIN_DIR", None) or getattr(module, "BIN_DIR", None)
        if bin_dir:
            candidates.insert(0, Path(bin_dir) / name)
    except Exception:  # noqa: BLE001 - a broken or absent package just means "not there"
        pass
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def find_cmake() -> str:
    cmake = shutil.which("cmake") or _python_package_tool("cmake")
    if cmake is None:
        raise PluginBuildError("cmake not found: `pip install cmake ninja` (or `pip install 'transnext-deploy[build]'`), "
                               "or install CMake >= 3.18 (e.g. `apt install cmake`)")
    return cmake


def generator_args(cmake_dir: Path) -> list[str]:
    """Make when it is there (as before), else Ninja (from PATH or the PyPI package). An existing
    CMake tree keeps the generator it was configured with."""
    if (cmake_dir / "CMakeCache.txt").is_file() or shutil.which("make") or shutil.which("gmake"):
        return []
    ninja = shutil.which("ninja") or _python_package_tool("ninja")
    if ninja is None:
        raise PluginBuildError("no build tool found (neither make nor ninja): `pip install ninja` "
                               "(or `apt install make`)")
    return ["-G", "Ninja", f"-DCMAKE_MAKE_PROGRAM={ninja}"]


def find_cxx_compiler() -> str:
    env = os.environ.get("CXX")
    if env:
        path = shutil.which(env)
        if path is None:
            raise PluginBuildError(f"C++ compiler from $CXX={env!r} not found")
        return path
    for name in ("c++", "g++", "clang++"):
        path = shutil.which(name)
        if path is not None:
            return path
    raise PluginBuildError("no C++ compiler found (looked for $CXX, c++, g++, clang++): install g++ (e.g. `apt install g++`)")


def find_nvcc() -> str:
    candidates: list[str] = []
    if os.environ.get("CUDACXX"):
        candidates.append(os.environ["CUDACXX"])
    which = shutil.which("nvcc")
    if which:
        candidates.append(which)
    for root in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"):
        if root:
            candidates.append(str(Path(root) / "bin" / "nvcc"))
    for candidate in candidates:
        path = shutil.which(candidate)
        if path is not None:
            return path
    raise PluginBuildError(
        "nvcc not found (looked at $CUDACXX, PATH, $CUDA_HOME/bin, /usr/local/cuda/bin): install the CUDA toolkit "
        "or set CUDACXX"
    )


def _tensorrt_wheel_library_dir() -> Path | None:
    """site-packages/tensorrt_libs (or tensorrt) holding libnvinfer.so.*, from an installed wheel."""
    for module in ("tensorrt_libs", "tensorrt"):
        try:
            spec = importlib.util.find_spec(module)
        except (ImportError, ValueError):
            spec = None
        if spec is None or not spec.submodule_search_locations:
            continue
        for location in spec.submodule_search_locations:
            directory = Path(location)
            if any(directory.glob("libnvinfer.so*")):
                return directory
    return None


def _find_nvinfer(directories: Iterable[Path]) -> Path | None:
    for directory in directories:
        if not directory.is_dir():
            continue
        for name in ("libnvinfer.so", "libnvinfer.so.11", "libnvinfer.so.10"):
            if (directory / name).exists():
                return directory / name
        matches = sorted(directory.glob("libnvinfer.so.*"))
        if matches:
            return matches[0]
    return None


def find_tensorrt(
    tensorrt_root: str | os.PathLike | None = None,
    include_dir: str | os.PathLike | None = None,
    library_dir: str | os.PathLike | None = None,
) -> TensorRTLocation:
    """Locate TensorRT headers (NvInfer.h) and libnvinfer; either may be None when not found."""
    root = tensorrt_root or os.environ.get(TENSORRT_ROOT_ENV)
    include_candidates: list[Path] = []
    include_env = include_dir or os.environ.get(TENSORRT_INCLUDE_ENV)
    if include_env:
        include_candidates.append(Path(include_env))
    if root:
        include_candidates.append(Path(root) / "include")
    include_candidates += [Path("/usr/include/x86_64-linux-gnu"), Path("/usr/include/aarch64-linux-gnu"), Path("/usr/include")]
    found_include = next((p for p in include_candidates if (p / "NvInfer.h").is_file()), None)

    library_candidates: list[Path] = []
    if library_dir:
        library_candidates.append(Path(library_dir))
    if root:
        library_candidates += [Path(root) / "lib", Path(root) / "lib64"]
    wheel = _tensorrt_wheel_library_dir()
    if wheel is not None:
        library_candidates.append(wheel)
    library_candidates += [Path("/usr/lib/x86_64-linux-gnu"), Path("/usr/lib/aarch64-linux-gnu"), Path("/usr/lib")]
    library = _find_nvinfer(library_candidates)
    return TensorRTLocation(found_include, library, library.parent if library is not None else None)


def tensorrt_header_version(include_dir: str | os.PathLike) -> str | None:
    """'11.1.0' for a directory of TensorRT headers (NvInferVersion.h), None when it does not say.
    The plugin library that registers itself must be built against headers of the TensorRT that
    loads it (11.x for TensorRT 11 and TensorRT-RTX): their plugin registry's layout differs."""
    try:
        text = (Path(include_dir) / "NvInferVersion.h").read_text(errors="replace")
    except OSError:
        return None
    defines = dict(re.findall(r"^\s*#define\s+(\w+)\s+(\w+)", text, re.M))

    def value(name: str) -> str | None:
        seen = set()
        while name in defines and name not in seen:  # NV_TENSORRT_MAJOR -> TRT_MAJOR_ENTERPRISE -> 11
            seen.add(name)
            name = defines[name]
        return name if name.isdigit() else None

    parts = [value(f"NV_TENSORRT_{p}") for p in ("MAJOR", "MINOR", "PATCH")]
    return ".".join(parts) if all(parts) else None


__all__ = [
    "PluginBuildError",
    "TensorRTLocation",
    "find_cmake",
    "find_cxx_compiler",
    "find_nvcc",
    "find_tensorrt",
    "generator_args",
    "tensorrt_header_version",
]

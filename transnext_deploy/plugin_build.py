"""Build the aggregated-attention libraries under `plugins/` with CMake.

Three targets (see plugins/CMakeLists.txt):
  host    libtransnext_aa_host.so    CPU reference of the op (C++ only, always buildable here)
  cuda    libtransnext_aa_cuda.a     the CUDA kernel alone (needs nvcc)
  plugin  libtransnext_aa_plugin.so  TensorRT plugin + kernel (needs nvcc and TensorRT headers;
                                     libnvinfer is linked when found)

`build_plugin()` is the API behind `transnext-deploy build-plugin`. Every missing piece (cmake, a
C++ compiler, nvcc, TensorRT headers or library) raises `PluginBuildError` with a one-line reason.
The build directory is `TRANSNEXT_DEPLOY_PLUGIN_DIR` when set, else `<checkout>/build/plugins`
when running from a source checkout, else a per-user cache directory.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Sequence

ENV_PLUGIN_DIR = "TRANSNEXT_DEPLOY_PLUGIN_DIR"
ENV_TENSORRT_ROOT = "TENSORRT_ROOT"
ENV_TENSORRT_INCLUDE_DIR = "TENSORRT_INCLUDE_DIR"

TARGETS = {
    "host": ("transnext_aa_host",),
    "cuda": ("transnext_aa_cuda",),
    "plugin": ("transnext_aa_plugin", "transnext_aa_plugin_dynamic"),
}
LIBRARY_FILES = {
    "host": "libtransnext_aa_host.so",
    "cuda": "libtransnext_aa_cuda.a",
    # Registers its creator when loaded: trtexec --staticPlugins, polygraphy --plugins, ctypes.
    "plugin": "libtransnext_aa_plugin.so",
    # getCreators() only: IPluginRegistry::loadLibrary, trtexec --dynamicPlugins / --setPluginsToSerialize.
    "plugin_dynamic": "libtransnext_aa_plugin_dynamic.so",
}
_PRODUCTS = {"host": ("host",), "cuda": ("cuda",), "plugin": ("plugin", "plugin_dynamic")}
DEFAULT_CUDA_ARCHS = ("75", "80", "86", "87", "89", "90")
_CMAKE_OPTION = {
    "host": "TRANSNEXT_AA_BUILD_HOST",
    "cuda": "TRANSNEXT_AA_BUILD_CUDA",
    "plugin": "TRANSNEXT_AA_BUILD_PLUGIN",
}


class PluginBuildError(RuntimeError):
    """A build prerequisite is missing or a build step failed; str() is a one-line reason."""


@dataclass
class BuildResult:
    build_dir: Path
    targets: tuple[str, ...]
    libraries: dict[str, Path]
    cmake_args: list[str]
    cuda_archs: tuple[str, ...] | None = None
    tensorrt_include_dir: Path | None = None
    tensorrt_library: Path | None = None
    notes: list[str] = field(default_factory=list)
    log: str = ""


@dataclass
class TensorRTLocation:
    include_dir: Path | None
    library: Path | None
    library_dir: Path | None


# ------------------------------------------------------------------------------------ locations


def package_dir() -> Path:
    return Path(__file__).resolve().parent


def checkout_root() -> Path | None:
    """The source checkout holding this package and `plugins/`, or None for an installed package."""
    root = package_dir().parent
    if (root / "plugins" / "CMakeLists.txt").is_file():
        return root
    return None


def plugin_source_dir() -> Path:
    root = checkout_root()
    if root is None:
        raise PluginBuildError(
            "plugin sources not found: `plugins/CMakeLists.txt` is not next to the transnext_deploy package "
            "(run from a source checkout of transnext-deploy)"
        )
    return root / "plugins"


def user_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "transnext-deploy" / "plugins"


def default_build_dir() -> Path:
    env = os.environ.get(ENV_PLUGIN_DIR)
    if env:
        return Path(env).expanduser().resolve()
    root = checkout_root()
    if root is not None:
        return root / "build" / "plugins"
    return user_cache_dir()


def _library_path(kind: str, build_dir: Path | None) -> Path | None:
    directory = Path(build_dir) if build_dir is not None else default_build_dir()
    path = directory / LIBRARY_FILES[kind]
    return path if path.is_file() else None


def find_host_library(build_dir: str | os.PathLike | None = None) -> Path | None:
    """Path of libtransnext_aa_host.so in `build_dir` (default: default_build_dir()), or None."""
    return _library_path("host", Path(build_dir) if build_dir is not None else None)


def find_plugin_library(build_dir: str | os.PathLike | None = None, *, dynamic: bool = False) -> Path | None:
    """Path of libtransnext_aa_plugin.so (or, with dynamic=True, the loadLibrary variant
    libtransnext_aa_plugin_dynamic.so) in `build_dir` (default: default_build_dir()), or None."""
    return _library_path("plugin_dynamic" if dynamic else "plugin", Path(build_dir) if build_dir is not None else None)


# ------------------------------------------------------------------------------------ tool discovery


def find_cmake() -> str:
    cmake = shutil.which("cmake")
    if cmake is None:
        raise PluginBuildError("cmake not found on PATH: install CMake >= 3.18 (e.g. `apt install cmake` or `pip install cmake`)")
    return cmake


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
    root = tensorrt_root or os.environ.get(ENV_TENSORRT_ROOT)
    include_candidates: list[Path] = []
    include_env = include_dir or os.environ.get(ENV_TENSORRT_INCLUDE_DIR)
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


# ------------------------------------------------------------------------------------ build


def normalize_cuda_archs(archs: Sequence[str | int] | str | None) -> tuple[str, ...]:
    """'87', 87, 'sm_87', '8.7', 'compute_87' -> '87'; also '90a', '87-real', 'native', 'all'."""
    if archs is None:
        return DEFAULT_CUDA_ARCHS
    if isinstance(archs, str):
        archs = [a for a in re.split(r"[;,\s]+", archs) if a]
    result: list[str] = []
    for arch in archs:
        text = str(arch).strip().lower()
        if text in ("native", "all", "all-major"):
            result.append(text)
            continue
        text = re.sub(r"^(sm_|compute_)", "", text)
        if re.fullmatch(r"\d\.\d", text):
            text = text.replace(".", "")
        if not re.fullmatch(r"\d{2,3}[af]?(-real|-virtual)?", text):
            raise PluginBuildError(f"invalid CUDA architecture {arch!r}: use e.g. 75, 86, sm_87 or 8.7")
        result.append(text)
    if not result:
        raise PluginBuildError("no CUDA architecture given")
    return tuple(dict.fromkeys(result))


@contextlib.contextmanager
def _build_lock(build_dir: Path) -> Iterator[None]:
    """Serialises concurrent builds into the same directory (e.g. parallel test workers)."""
    build_dir.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    with open(build_dir / ".transnext-build.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _run(cmd: list[str], what: str, log: list[str], verbose: bool) -> None:
    log.append("$ " + " ".join(cmd))
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    log.append(proc.stdout)
    if verbose:
        sys.stderr.write(proc.stdout)
    if proc.returncode != 0:
        lines = [ln.strip() for ln in proc.stdout.splitlines() if ln.strip()]
        first_errors = [ln for ln in lines if re.search(r"(error|Error)\b.*:|CMake Error|fatal error", ln)]
        tail = first_errors[0] if first_errors else (lines or ["(no output)"])[-1]
        if "CMake Error" in tail:  # the reason is on the following line(s)
            idx = lines.index(tail)
            tail = " ".join(lines[idx:idx + 3])
        raise PluginBuildError(f"{what} failed (exit {proc.returncode}): {tail}")


def build_plugin(
    targets: Sequence[str] = ("host", "cuda", "plugin"),
    cuda_archs: Sequence[str | int] | str | None = None,
    tensorrt_root: str | os.PathLike | None = None,
    build_dir: str | os.PathLike | None = None,
    jobs: int = 2,
    *,
    tensorrt_include_dir: str | os.PathLike | None = None,
    tensorrt_library_dir: str | os.PathLike | None = None,
    build_type: str = "Release",
    werror: bool = False,
    require_nvinfer: bool = False,
    verbose: bool = False,
) -> BuildResult:
    """Configure and build the requested targets; returns where the libraries are.

    Raises PluginBuildError with a one-line reason when cmake, a C++ compiler, nvcc (for
    'cuda'/'plugin'), the TensorRT headers (for 'plugin') or, with require_nvinfer, libnvinfer is
    missing, or when a build step fails.
    """
    wanted = tuple(dict.fromkeys(targets))
    if not wanted:
        raise PluginBuildError("no build target given (choose from host, cuda, plugin)")
    unknown = [t for t in wanted if t not in TARGETS]
    if unknown:
        raise PluginBuildError(f"unknown build target(s) {', '.join(unknown)}: choose from host, cuda, plugin")
    if jobs < 1:
        raise PluginBuildError(f"jobs must be >= 1, got {jobs}")

    source_dir = plugin_source_dir()
    cmake = find_cmake()
    cxx = find_cxx_compiler()
    out_dir = Path(build_dir).expanduser().resolve() if build_dir is not None else default_build_dir()
    needs_cuda = "cuda" in wanted or "plugin" in wanted

    args = [
        f"-DCMAKE_BUILD_TYPE={build_type}",
        f"-DCMAKE_CXX_COMPILER={cxx}",
        f"-DCMAKE_LIBRARY_OUTPUT_DIRECTORY={out_dir}",
        f"-DCMAKE_ARCHIVE_OUTPUT_DIRECTORY={out_dir}",
        f"-DTRANSNEXT_AA_WERROR={'ON' if werror else 'OFF'}",
    ]
    for kind, option in _CMAKE_OPTION.items():
        args.append(f"-D{option}={'ON' if kind in wanted else 'OFF'}")

    result = BuildResult(build_dir=out_dir, targets=wanted, libraries={}, cmake_args=args)
    if needs_cuda:
        nvcc = find_nvcc()
        archs = normalize_cuda_archs(cuda_archs)
        result.cuda_archs = archs
        args += [f"-DCMAKE_CUDA_COMPILER={nvcc}", f"-DCMAKE_CUDA_ARCHITECTURES={';'.join(archs)}"]
    if "plugin" in wanted:
        trt = find_tensorrt(tensorrt_root, tensorrt_include_dir, tensorrt_library_dir)
        if trt.include_dir is None:
            raise PluginBuildError(
                "TensorRT headers (NvInfer.h) not found: pass tensorrt_root / --tensorrt-root, or set TENSORRT_ROOT "
                "or TENSORRT_INCLUDE_DIR"
            )
        result.tensorrt_include_dir = trt.include_dir
        args.append(f"-DTENSORRT_INCLUDE_DIR={trt.include_dir}")
        if tensorrt_root:
            args.append(f"-DTENSORRT_ROOT={Path(tensorrt_root).expanduser().resolve()}")
        if trt.library is None:
            if require_nvinfer:
                raise PluginBuildError(
                    "TensorRT library (libnvinfer) not found: set TENSORRT_ROOT (with lib/), pass "
                    "tensorrt_library_dir, or `pip install tensorrt`"
                )
            result.notes.append("libnvinfer not found: plugin built from headers only (symbols resolve when TensorRT loads it)")
        else:
            result.tensorrt_library = trt.library
            args.append(f"-DTENSORRT_LIBRARY_DIR={trt.library_dir}")
            args.append(f"-DTRANSNEXT_NVINFER={trt.library}")
        args.append(f"-DTRANSNEXT_AA_REQUIRE_NVINFER={'ON' if require_nvinfer else 'OFF'}")

    log: list[str] = []
    with _build_lock(out_dir):
        cmake_dir = out_dir / "cmake"
        _run([cmake, "-S", str(source_dir), "-B", str(cmake_dir), *args], "cmake configure", log, verbose)
        build_cmd = [cmake, "--build", str(cmake_dir), "--parallel", str(jobs), "--target"]
        build_cmd += [name for t in wanted for name in TARGETS[t]]
        _run(build_cmd, "cmake build", log, verbose)
    result.log = "\n".join(log)
    for kind in (k for t in wanted for k in _PRODUCTS[t]):
        path = out_dir / LIBRARY_FILES[kind]
        if not path.is_file():
            raise PluginBuildError(f"build finished but {path} is missing")
        result.libraries[kind] = path
    return result


def _sources_newer_than(path: Path) -> bool:
    try:
        source_dir = plugin_source_dir()
    except PluginBuildError:
        return False
    built = path.stat().st_mtime
    sources = [source_dir / "CMakeLists.txt", *(source_dir / "aggregated_attention").glob("*.h")]
    sources += list((source_dir / "aggregated_attention").glob("*.cpp"))
    return any(s.is_file() and s.stat().st_mtime > built for s in sources)


def ensure_host_library(build_dir: str | os.PathLike | None = None, jobs: int = 2) -> Path:
    """The host (CPU reference) library, built first if it is missing or older than its sources."""
    directory = Path(build_dir).expanduser().resolve() if build_dir is not None else default_build_dir()
    existing = find_host_library(directory)
    if existing is not None and not _sources_newer_than(existing):
        return existing
    result = build_plugin(targets=("host",), build_dir=directory, jobs=jobs)
    return result.libraries["host"]


__all__ = [
    "BuildResult",
    "DEFAULT_CUDA_ARCHS",
    "ENV_PLUGIN_DIR",
    "PluginBuildError",
    "TensorRTLocation",
    "build_plugin",
    "checkout_root",
    "default_build_dir",
    "ensure_host_library",
    "find_cmake",
    "find_cxx_compiler",
    "find_host_library",
    "find_nvcc",
    "find_plugin_library",
    "find_tensorrt",
    "normalize_cuda_archs",
    "plugin_source_dir",
]

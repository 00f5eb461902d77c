"""Build the aggregated-attention libraries under `plugins/` with CMake.

Targets (see plugins/CMakeLists.txt):
  host       libtransnext_aa_host.so    CPU reference of the op (C++ only, always buildable here)
  cuda       libtransnext_aa_cuda.a     the CUDA kernel alone (needs nvcc), and
             libtransnext_aa_cuda.so    the kernel behind a C API (aggregatedAttentionCuda.h), which
                                        torch.ops.transnext.aggregated_attention loads with ctypes
  plugin     libtransnext_aa_plugin.so  TensorRT plugin + kernel (needs nvcc and TensorRT headers;
                                        libnvinfer is linked when found)
  lifecycle  transnext_aa_plugin_lifecycle  executable driving the plugin's IPluginV3 life cycle on a
                                        GPU against the host library (nvcc and TensorRT headers, no
                                        libnvinfer); `transnext-deploy build-plugin` does not offer it,
                                        the tests and benchmarks/gpu_suite.py build it

`build_plugin()` is the API behind `transnext-deploy build-plugin`. Every missing piece (cmake, a
C++ compiler, nvcc, TensorRT headers or library) raises `PluginBuildError` with a one-line reason.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..artifacts import LIBRARY_FILES
from . import locations, toolchain
from .toolchain import PluginBuildError

TARGETS = {
    "host": ("transnext_aa_host",),
    "cuda": ("transnext_aa_cuda", "transnext_aa_cuda_shared"),
    "plugin": ("transnext_aa_plugin", "transnext_aa_plugin_dynamic"),
    "lifecycle": ("transnext_aa_plugin_lifecycle",),
}
# What `transnext-deploy build-plugin` offers; the life-cycle driver is built by the tests and the GPU suite.
BUILD_TARGETS = ("host", "cuda", "plugin")
_PRODUCTS = {"host": ("host",), "cuda": ("cuda", "cuda_api"), "plugin": ("plugin", "plugin_dynamic"),
             "lifecycle": ("lifecycle",)}
# The CMake default of plugins/CMakeLists.txt too (a test holds them equal): Turing, Ampere (A100,
# RTX 30), Jetson Orin (87), Ada, Hopper.
DEFAULT_CUDA_ARCHS = ("75", "80", "86", "87", "89", "90")
_CMAKE_OPTION = {
    "host": "TRANSNEXT_AA_BUILD_HOST",
    "cuda": "TRANSNEXT_AA_BUILD_CUDA",
    "plugin": "TRANSNEXT_AA_BUILD_PLUGIN",
    "lifecycle": "TRANSNEXT_AA_BUILD_LIFECYCLE",
}
# Targets that need another one configured: the life-cycle driver checks against the host library.
_CONFIGURED_WITH = {"lifecycle": ("host",)}


@dataclass
class BuildResult:
    build_dir: Path
    targets: tuple[str, ...]
    libraries: dict[str, Path]
    cmake_args: list[str]
    cuda_archs: tuple[str, ...] | None = None
    tensorrt_include_dir: Path | None = None
    tensorrt_headers: str | None = None  # the TensorRT version of those headers (NvInferVersion.h)
    tensorrt_library: Path | None = None
    notes: list[str] = field(default_factory=list)
    log: str = ""


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


@dataclass
class BuildPlan:
    """What `build-plugin` builds: `targets`, and the targets it skips with the reason."""

    targets: list[str]
    skipped: dict[str, str] = field(default_factory=dict)


def missing_for(target: str, tensorrt_root: str | os.PathLike | None = None) -> list[str]:
    """What this machine lacks to build `target`, one reason per missing piece (beyond cmake and a
    C++ compiler, which every target needs)."""
    missing = []
    if target in ("cuda", "plugin", "lifecycle"):
        try:
            toolchain.find_nvcc()
        except PluginBuildError as exc:
            missing.append(str(exc))
    if target in ("plugin", "lifecycle") and toolchain.find_tensorrt(tensorrt_root).include_dir is None:
        where = f"not in {tensorrt_root}/include nor " if tensorrt_root else ""
        missing.append(f"TensorRT headers (NvInfer.h) not found ({where}TENSORRT_INCLUDE_DIR, TENSORRT_ROOT, "
                       "/usr/include): pass --tensorrt-root or set TENSORRT_ROOT or TENSORRT_INCLUDE_DIR")
    return missing


def plan_build(targets: Sequence[str] | None = None, *, cuda_archs_given: bool = False,
               tensorrt_root: str | os.PathLike | None = None) -> BuildPlan:
    """The targets of `transnext-deploy build-plugin`. Named targets must all be buildable (every
    missing piece of every one is reported in one PluginBuildError). Without names: every target
    of BUILD_TARGETS this machine can build, the others skipped with the reason; `cuda` is required
    when architectures were given (--cuda-arch) and `plugin` when a TensorRT root was (--tensorrt-root).
    cmake, a C++ compiler and the sources, which every target needs, are checked first."""
    unknown = [t for t in (targets or []) if t not in BUILD_TARGETS]
    if unknown:
        raise PluginBuildError(f"unknown --target {', '.join(unknown)}: choose from {', '.join(BUILD_TARGETS)}")
    if tensorrt_root is not None and not Path(tensorrt_root).is_dir():
        raise PluginBuildError(f"--tensorrt-root {tensorrt_root} is not a directory")
    locations.plugin_source_dir()
    toolchain.find_cmake()
    toolchain.find_cxx_compiler()
    if targets:
        wanted = list(dict.fromkeys(targets))
        problems = [f"{t}: {'; '.join(m)}" for t in wanted if (m := missing_for(t, tensorrt_root))]
        if problems:
            raise PluginBuildError("cannot build " + " | ".join(problems))
        return BuildPlan(wanted)
    required = {"host"} | ({"cuda"} if cuda_archs_given else set()) | ({"plugin"} if tensorrt_root else set())
    plan = BuildPlan([])
    for t in BUILD_TARGETS:
        missing = missing_for(t, tensorrt_root)
        if not missing:
            plan.targets.append(t)
        elif t in required:
            option = "--cuda-arch" if t == "cuda" else "--tensorrt-root"
            raise PluginBuildError(f"cannot build {t} (asked for by {option}): {'; '.join(missing)}")
        else:
            plan.skipped[t] = "; ".join(missing)
    return plan


@contextlib.contextmanager
def _build_lock(build_dir: Path) -> Iterator[None]:
    """Serialises concurrent builds into the same directory (e.g. parallel test workers)."""
    try:
        build_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PluginBuildError(f"cannot create build directory {build_dir}: {exc.strerror or exc}") from None
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
    'cuda', 'plugin', 'lifecycle'), the TensorRT headers (for 'plugin', 'lifecycle') or, with
    require_nvinfer, libnvinfer is missing, or when a build step fails. 'lifecycle' also configures
    'host' (its reference), without reporting it among the libraries.
    """
    wanted = tuple(dict.fromkeys(targets))
    if not wanted:
        raise PluginBuildError(f"no build target given (choose from {', '.join(TARGETS)})")
    unknown = [t for t in wanted if t not in TARGETS]
    if unknown:
        raise PluginBuildError(f"unknown build target(s) {', '.join(unknown)}: choose from {', '.join(TARGETS)}")
    if jobs < 1:
        raise PluginBuildError(f"--jobs must be at least 1, got {jobs}")

    source_dir = locations.plugin_source_dir()
    cmake = toolchain.find_cmake()
    cxx = toolchain.find_cxx_compiler()
    out_dir = Path(build_dir).expanduser().resolve() if build_dir is not None else locations.default_build_dir()
    needs_cuda = bool({"cuda", "plugin", "lifecycle"} & set(wanted))
    configured = set(wanted) | {t for w in wanted for t in _CONFIGURED_WITH.get(w, ())}

    args = [
        f"-DCMAKE_BUILD_TYPE={build_type}",
        f"-DCMAKE_CXX_COMPILER={cxx}",
        f"-DCMAKE_LIBRARY_OUTPUT_DIRECTORY={out_dir}",
        f"-DCMAKE_ARCHIVE_OUTPUT_DIRECTORY={out_dir}",
        f"-DCMAKE_RUNTIME_OUTPUT_DIRECTORY={out_dir}",
        f"-DTRANSNEXT_AA_WERROR={'ON' if werror else 'OFF'}",
    ]
    for kind, option in _CMAKE_OPTION.items():
        args.append(f"-D{option}={'ON' if kind in configured else 'OFF'}")

    result = BuildResult(build_dir=out_dir, targets=wanted, libraries={}, cmake_args=args)
    if needs_cuda:
        nvcc = toolchain.find_nvcc()
        archs = normalize_cuda_archs(cuda_archs)
        result.cuda_archs = archs
        args += [f"-DCMAKE_CUDA_COMPILER={nvcc}", f"-DCMAKE_CUDA_ARCHITECTURES={';'.join(archs)}"]
    if "plugin" in wanted or "lifecycle" in wanted:
        args += _tensorrt_args(result, tensorrt_root, tensorrt_include_dir, tensorrt_library_dir,
                               plugin="plugin" in wanted, require_nvinfer=require_nvinfer)

    log: list[str] = []
    with _build_lock(out_dir):
        cmake_dir = out_dir / "cmake"
        generator = toolchain.generator_args(cmake_dir)
        _run([cmake, "-S", str(source_dir), "-B", str(cmake_dir), *generator, *args], "cmake configure", log,
             verbose)
        build_cmd = [cmake, "--build", str(cmake_dir), "--parallel", str(jobs), "--target"]
        build_cmd += [name for t in wanted for name in TARGETS[t]]
        _run(build_cmd, "cmake build", log, verbose)
    result.log = "\n".join(log)
    for kind in (k for t in wanted for k in _PRODUCTS[t]):
        path = out_dir / LIBRARY_FILES[kind]
        if not path.is_file():
            raise PluginBuildError(f"build finished but {path} is missing")
        result.libraries[kind] = path
        if kind in ("plugin", "plugin_dynamic"):
            locations.write_build_info(path, {"tensorrt_headers": result.tensorrt_headers,
                                              "static_registration": kind == "plugin",
                                              "cuda_archs": list(result.cuda_archs or ())})
    return result


def _tensorrt_args(result: BuildResult, tensorrt_root, include_dir, library_dir, *, plugin: bool,
                   require_nvinfer: bool) -> list[str]:
    """CMake arguments for the TensorRT headers (and, for the plugin, libnvinfer when found); records
    in `result` where they are and the headers' TensorRT version."""
    trt = toolchain.find_tensorrt(tensorrt_root, include_dir, library_dir)
    if trt.include_dir is None:
        raise PluginBuildError("TensorRT headers (NvInfer.h) not found: pass tensorrt_root / --tensorrt-root, or set "
                               "TENSORRT_ROOT or TENSORRT_INCLUDE_DIR")
    result.tensorrt_include_dir = trt.include_dir
    result.tensorrt_headers = toolchain.tensorrt_header_version(trt.include_dir)
    args = [f"-DTENSORRT_INCLUDE_DIR={trt.include_dir}"]
    if tensorrt_root:
        args.append(f"-DTENSORRT_ROOT={Path(tensorrt_root).expanduser().resolve()}")
    if not plugin:
        return args
    if trt.library is None:
        if require_nvinfer:
            raise PluginBuildError("TensorRT library (libnvinfer) not found: set TENSORRT_ROOT (with lib/), pass "
                                   "tensorrt_library_dir, or `pip install tensorrt`")
        result.notes.append("libnvinfer not found: plugin built from headers only (symbols resolve when TensorRT "
                            "loads it)")
    else:
        result.tensorrt_library = trt.library
        args += [f"-DTENSORRT_LIBRARY_DIR={trt.library_dir}", f"-DTRANSNEXT_NVINFER={trt.library}"]
    return args + [f"-DTRANSNEXT_AA_REQUIRE_NVINFER={'ON' if require_nvinfer else 'OFF'}"]


HOST_SOURCE_PATTERNS = ("CMakeLists.txt", "aggregated_attention/*.h", "aggregated_attention/*.cpp")


def host_sources_digest(source_dir: Path | None = None) -> str:
    """sha256 over the names and contents of the sources the host library is built from. Contents,
    not mtimes: an unpacked wheel or a fresh clone gives every file a new mtime."""
    source_dir = source_dir or locations.plugin_source_dir()
    digest = hashlib.sha256()
    files = sorted({p for pattern in HOST_SOURCE_PATTERNS for p in source_dir.glob(pattern) if p.is_file()})
    for path in files:
        digest.update(path.relative_to(source_dir).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def _stamp_path(library: Path) -> Path:
    return library.with_name(library.name + ".sources-sha256")


def ensure_host_library(build_dir: str | os.PathLike | None = None, jobs: int = 2) -> Path:
    """The host (CPU reference) library. Without `build_dir`, the wheel's prebuilt library when there
    is one, as it is. Otherwise the one in the build directory, (re)built first when it is missing
    or was not built from the current sources (the digest stamp next to it)."""
    if build_dir is None and (prebuilt := locations.prebuilt_host_library()) is not None:
        return prebuilt
    directory = Path(build_dir).expanduser().resolve() if build_dir is not None else locations.default_build_dir()
    digest = host_sources_digest()
    library = directory / LIBRARY_FILES["host"]
    stamp = _stamp_path(library)
    if library.is_file() and stamp.is_file() and stamp.read_text().strip() == digest:
        return library
    result = build_plugin(targets=("host",), build_dir=directory, jobs=jobs)
    stamp.write_text(digest + "\n")
    return result.libraries["host"]


__all__ = [
    "BUILD_TARGETS",
    "BuildPlan",
    "BuildResult",
    "DEFAULT_CUDA_ARCHS",
    "TARGETS",
    "build_plugin",
    "ensure_host_library",
    "host_sources_digest",
    "missing_for",
    "normalize_cuda_archs",
    "plan_build",
]

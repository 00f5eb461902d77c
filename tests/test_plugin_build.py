"""Compile checks of the aggregated-attention sources (no GPU needed).

* the math header and the host library compile with a plain C++ compiler, warning-free;
* the CUDA kernel compiles with nvcc for every deployed architecture (skipped without nvcc);
* the TensorRT plugin compiles warning-free against the TensorRT headers listed in
  $TENSORRT_INCLUDE_DIR (one or more directories separated by os.pathsep; skipped when unset);
* the build API reports each missing prerequisite with a specific one-line error.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from helpers import NO_HEADERS, tensorrt_header_dirs

from transnext_deploy import artifacts
from transnext_deploy import plugin as plugin_build
from transnext_deploy.plugin import build, toolchain
from transnext_deploy.plugin.build import PluginBuildError, build_plugin, normalize_cuda_archs

REPO = Path(__file__).resolve().parents[1]
AA_DIR = REPO / "plugins" / "aggregated_attention"
ARCHS = ("75", "80", "86", "87", "89", "90")


def _nvcc() -> str | None:
    try:
        return plugin_build.find_nvcc()
    except PluginBuildError:
        return None


def _cxx() -> str | None:
    try:
        return plugin_build.find_cxx_compiler()
    except PluginBuildError:
        return None


def _cuda_include_dir() -> Path | None:
    candidates = []
    nvcc = _nvcc()
    if nvcc:
        candidates.append(Path(nvcc).resolve().parent.parent / "include")
    for env in ("CUDA_HOME", "CUDA_PATH"):
        if os.environ.get(env):
            candidates.append(Path(os.environ[env]) / "include")
    candidates.append(Path("/usr/local/cuda/include"))
    return next((c for c in candidates if (c / "cuda_runtime_api.h").is_file()), None)


def _tensorrt_include_dirs() -> list[Path]:
    return tensorrt_header_dirs()


def _run(cmd: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


needs_cxx = pytest.mark.skipif(_cxx() is None, reason="no C++ compiler (g++/c++/clang++) on PATH")
needs_nvcc = pytest.mark.skipif(_nvcc() is None, reason="nvcc not found (CUDA toolkit not installed)")


# ------------------------------------------------------------------------------ plain C++


@needs_cxx
def test_math_header_compiles_without_cuda(tmp_path):
    src = tmp_path / "only_math.cpp"
    src.write_text(
        '#include "aggregatedAttentionMath.h"\n'
        "int main() { transnext::aa::QueryState<24> st; (void)st; return 0; }\n"
    )
    proc = _run([_cxx(), "-std=c++17", "-Wall", "-Wextra", "-Wpedantic", "-Werror", "-fsyntax-only",
                 f"-I{AA_DIR}", str(src)])
    assert proc.returncode == 0, proc.stdout


# Every source of the host library (plugins/CMakeLists.txt, transnext_aa_host), compiled as CMake
# does: no ISA flags (the AVX2 kernel is chosen at run time through function attributes).
HOST_SOURCES = ("aggregatedAttentionHost.cpp", "aggregatedAttentionCpu.cpp", "aggregatedAttentionCpuPortable.cpp",
                "aggregatedAttentionCpuAvx2.cpp", "aggregatedAttentionThreadPool.cpp")


def test_host_source_list_matches_cmake():
    cmake = (AA_DIR.parent / "CMakeLists.txt").read_text()
    target = cmake[cmake.index("add_library(transnext_aa_host"):]
    target = target[:target.index(")")]
    assert sorted(re.findall(r"\$\{AA_DIR\}/(\w+\.cpp)", target)) == sorted(HOST_SOURCES)


@needs_cxx
@pytest.mark.parametrize("opt", ["-O0", "-O3"])
@pytest.mark.parametrize("source", HOST_SOURCES)
def test_host_library_compiles_warning_free(tmp_path, opt, source):
    proc = _run([_cxx(), "-std=c++17", opt, "-Wall", "-Wextra", "-Wpedantic", "-Wshadow", "-Werror", "-fPIC",
                 "-c", str(AA_DIR / source), "-o", str(tmp_path / "host.o")])
    assert proc.returncode == 0, proc.stdout


# ------------------------------------------------------------------------------ nvcc


@pytest.mark.slow
@needs_nvcc
@pytest.mark.parametrize("arch", ARCHS)
def test_kernel_compiles_for_arch(tmp_path, arch):
    cmd = [_nvcc(), "-std=c++17", "-O3", f"--generate-code=arch=compute_{arch},code=sm_{arch}",
           "-Xcompiler=-Wall,-Wextra,-Werror", "-Werror=all-warnings", "-Xptxas=-v",
           "-c", str(AA_DIR / "aggregatedAttentionKernel.cu"), "-o", str(tmp_path / f"kernel_sm{arch}.o")]
    proc = _run(cmd)
    assert proc.returncode == 0, proc.stdout[-4000:]
    assert (tmp_path / f"kernel_sm{arch}.o").stat().st_size > 0
    # 2 storage types x 5 head-dim buckets, all for the requested architecture.
    entries = [ln for ln in proc.stdout.splitlines() if "Compiling entry function" in ln]
    assert len(entries) == 10, proc.stdout[-4000:]
    assert all(f"for 'sm_{arch}'" in ln for ln in entries)


@pytest.mark.slow
@needs_nvcc
@needs_cxx
def test_cmake_builds_cuda_target(tmp_path):
    result = build_plugin(targets=("cuda",), cuda_archs=["sm_87"], build_dir=tmp_path, jobs=2, werror=True)
    assert result.libraries["cuda"].stat().st_size > 0
    assert result.cuda_archs == ("87",)


# ------------------------------------------------------------------------------ TensorRT headers


@needs_cxx
@pytest.mark.skipif(not _tensorrt_include_dirs(), reason=NO_HEADERS)
@pytest.mark.parametrize("static_registration", [True, False])
def test_plugin_compiles_against_tensorrt_headers(tmp_path, static_registration):
    cuda_include = _cuda_include_dir()
    if cuda_include is None:
        pytest.skip("CUDA headers (cuda_runtime_api.h) not found")
    for include in _tensorrt_include_dirs():
        assert (include / "NvInfer.h").is_file(), f"{include} has no NvInfer.h"
        cmd = [_cxx(), "-std=c++17", "-O2", "-Wall", "-Wextra", "-Werror", "-fPIC", "-fvisibility=hidden",
               f"-I{AA_DIR}", "-isystem", str(include), "-isystem", str(cuda_include),
               "-c", str(AA_DIR / "aggregatedAttentionPlugin.cpp"), "-o", str(tmp_path / "plugin.o")]
        if static_registration:
            cmd.insert(1, "-DTRANSNEXT_AA_STATIC_REGISTRATION=1")
        proc = _run(cmd)
        assert proc.returncode == 0, f"against {include}:\n{proc.stdout[-4000:]}"


@pytest.mark.slow
@needs_nvcc
@needs_cxx
@pytest.mark.skipif(not _tensorrt_include_dirs(), reason=NO_HEADERS)
def test_cmake_builds_plugin_target(tmp_path):
    include = _tensorrt_include_dirs()[0]
    result = build_plugin(targets=("plugin",), cuda_archs="86", build_dir=tmp_path, jobs=2, werror=True,
                          tensorrt_include_dir=include)
    for kind in ("plugin", "plugin_dynamic"):
        lib = result.libraries[kind]
        nm = shutil.which("nm")
        if nm:
            symbols = _run([nm, "-D", "--defined-only", str(lib)]).stdout
            assert " T getCreators" in symbols, symbols


# ------------------------------------------------------------------------------ build API errors


def test_missing_cmake_is_reported(monkeypatch):
    monkeypatch.setattr(toolchain.shutil, "which", lambda name: None)
    with pytest.raises(PluginBuildError, match="cmake not found"):
        build_plugin(targets=("host",))


def test_missing_compiler_is_reported(monkeypatch):
    real_which = shutil.which
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setattr(toolchain.shutil, "which",
                        lambda name: real_which(name) if name == "cmake" else None)
    with pytest.raises(PluginBuildError, match="C\\+\\+ compiler"):
        build_plugin(targets=("host",))


def test_missing_nvcc_is_reported(monkeypatch):
    real_which = shutil.which
    monkeypatch.delenv("CUDACXX", raising=False)
    monkeypatch.delenv("CUDA_HOME", raising=False)
    monkeypatch.delenv("CUDA_PATH", raising=False)
    monkeypatch.setattr(toolchain.shutil, "which",
                        lambda name: None if "nvcc" in str(name) else real_which(name))
    with pytest.raises(PluginBuildError, match="nvcc not found"):
        build_plugin(targets=("cuda",))


def test_missing_tensorrt_headers_are_reported(monkeypatch):
    if _nvcc() is None or _cxx() is None or shutil.which("cmake") is None:
        pytest.skip("needs cmake, a C++ compiler and nvcc to get as far as the TensorRT check")
    monkeypatch.setattr(toolchain, "find_tensorrt",
                        lambda *a, **k: plugin_build.TensorRTLocation(None, None, None))
    with pytest.raises(PluginBuildError, match="TensorRT headers"):
        build_plugin(targets=("plugin",))


def test_missing_tensorrt_library_is_reported(monkeypatch, tmp_path):
    if _nvcc() is None or _cxx() is None or shutil.which("cmake") is None:
        pytest.skip("needs cmake, a C++ compiler and nvcc to get as far as the TensorRT check")
    monkeypatch.setattr(toolchain, "find_tensorrt",
                        lambda *a, **k: plugin_build.TensorRTLocation(tmp_path, None, None))
    with pytest.raises(PluginBuildError, match="libnvinfer"):
        build_plugin(targets=("plugin",), require_nvinfer=True)


def test_bad_arguments_are_reported():
    with pytest.raises(PluginBuildError, match="unknown build target"):
        build_plugin(targets=("kernel",))
    with pytest.raises(PluginBuildError, match="invalid CUDA architecture"):
        normalize_cuda_archs(["sm_8x"])
    assert normalize_cuda_archs("75;sm_80, 8.6 compute_87 90a") == ("75", "80", "86", "87", "90a")
    assert normalize_cuda_archs(None) == ARCHS


def test_default_build_dir_honours_env(monkeypatch, tmp_path):
    monkeypatch.setenv(artifacts.PLUGIN_DIR_ENV, str(tmp_path / "x"))
    assert plugin_build.default_build_dir() == (tmp_path / "x").resolve()
    monkeypatch.delenv(artifacts.PLUGIN_DIR_ENV)
    assert plugin_build.default_build_dir() == REPO / "build" / "plugins"
    assert plugin_build.find_host_library(tmp_path) is None


@pytest.mark.slow
def test_ensure_host_library_builds_once(monkeypatch, tmp_path):
    if _cxx() is None or shutil.which("cmake") is None:
        pytest.skip("needs cmake and a C++ compiler")
    first = plugin_build.ensure_host_library(tmp_path)
    assert first.is_file()
    calls = []
    monkeypatch.setattr(build, "build_plugin", lambda *a, **k: calls.append(1))
    assert plugin_build.ensure_host_library(tmp_path) == first
    assert not calls

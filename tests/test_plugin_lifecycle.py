"""The plugin life-cycle driver (plugins/aggregated_attention/lifecycle/, CMake target transnext_aa_plugin_lifecycle).

The driver runs the TensorRT plugin through its whole IPluginV3 life cycle without libnvinfer and
checks every kernel output against the host library (tolerances in the driver). It needs the
TensorRT headers to compile: they are read from $TENSORRT_INCLUDE_DIR (os.pathsep-separated).

* compiles warning-free (-Wall -Wextra -Werror) against every header directory listed;
* CMake builds it (target transnext_aa_plugin_lifecycle, via `build_plugin`), and it runs its
  interface and refusal checks on any machine (`--no-gpu`: no CUDA call);
* with a CUDA device: the full run, kernel outputs included, must pass.
Without headers (e.g. CI) everything here is skipped with the reason.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
from helpers import NO_HEADERS, tensorrt_header_dirs
import torch

from transnext_deploy import plugin as plugin_build
from transnext_deploy.plugin.build import PluginBuildError, build_plugin

REPO = Path(__file__).resolve().parents[1]
AA_DIR = REPO / "plugins" / "aggregated_attention"
DRIVER_SOURCES = sorted((AA_DIR / "lifecycle").glob("*.cpp"))


def _header_dirs() -> list[Path]:
    return tensorrt_header_dirs()


def _tool(finder) -> str | None:
    try:
        return finder()
    except PluginBuildError:
        return None


def _cuda_include_dir() -> Path | None:
    nvcc = _tool(plugin_build.find_nvcc)
    candidates = [Path(nvcc).resolve().parent.parent / "include"] if nvcc else []
    candidates += [Path(os.environ[e]) / "include" for e in ("CUDA_HOME", "CUDA_PATH") if os.environ.get(e)]
    candidates.append(Path("/usr/local/cuda/include"))
    return next((c for c in candidates if (c / "cuda_runtime_api.h").is_file()), None)


needs_headers = pytest.mark.skipif(
    not _header_dirs(), reason=f"{NO_HEADERS}: the driver needs the TensorRT headers to compile")


def _run(cmd: list[str], timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout)


@pytest.mark.slow
@needs_headers
def test_driver_compiles_warning_free_against_every_header_version(tmp_path):
    cxx = _tool(plugin_build.find_cxx_compiler)
    cuda_include = _cuda_include_dir()
    if cxx is None or cuda_include is None:
        pytest.skip("needs a C++ compiler and the CUDA headers (cuda_runtime_api.h)")
    for include in _header_dirs():
        assert (include / "NvInfer.h").is_file(), f"{include} has no NvInfer.h"
        for source in DRIVER_SOURCES:
            proc = _run([cxx, "-std=c++17", "-O2", "-Wall", "-Wextra", "-Werror", f"-I{AA_DIR}", f"-I{AA_DIR / 'lifecycle'}",
                         "-isystem", str(include), "-isystem", str(cuda_include), "-c", str(source), "-o",
                         str(tmp_path / f"{source.stem}.o")])
            assert proc.returncode == 0, f"{source.name} against {include}:\n{proc.stdout[-4000:]}"


@pytest.fixture(scope="module")
def driver(tmp_path_factory) -> Path:
    if not _header_dirs():
        pytest.skip(NO_HEADERS)
    missing = [str(e) for e in (_missing(plugin_build.find_cmake), _missing(plugin_build.find_nvcc)) if e]
    if missing:
        pytest.skip("; ".join(missing))
    arch = "".join(map(str, torch.cuda.get_device_capability())) if torch.cuda.is_available() else "86"
    result = build_plugin(targets=("lifecycle",), cuda_archs=[arch], build_dir=tmp_path_factory.mktemp("lifecycle"),
                          tensorrt_include_dir=_header_dirs()[0], jobs=2, werror=True)
    assert set(result.libraries) == {"lifecycle"}
    return result.libraries["lifecycle"]


def _missing(finder) -> str | None:
    try:
        finder()
    except PluginBuildError as exc:
        return str(exc)
    return None


def test_driver_lists_the_issue_shapes(driver):
    proc = _run([str(driver), "--list"])
    assert proc.returncode == 0, proc.stdout
    names = [line.split()[0] for line in proc.stdout.splitlines()]
    for variant in ("micro", "tiny/small", "base", "micro_AAAA"):
        for side in (224, 384):
            assert any(n.startswith(f"{variant}-stage") and n.endswith(f"@{side}") for n in names), (variant, side)
    text = proc.stdout
    assert "H=1 W=9" in text and "H=8 W=1" in text and "w=5" in text and "w=7" in text and "P=20x20" in text
    head_dims = {int(d) for d in re.findall(r" d=(\d+)", text)}
    assert {8, 64} <= head_dims and min(head_dims) == 8 and max(head_dims) == 64
    batches = {int(b) for b in re.findall(r"B=(\d+)", text)}
    assert max(batches) == 8


def test_driver_interface_and_refusals_without_a_gpu(driver):
    proc = _run([str(driver), "--no-gpu"])
    assert proc.returncode == 0, proc.stdout[-4000:]
    lines = proc.stdout.splitlines()
    assert not [ln for ln in lines if ln.startswith("FAIL")]
    cases = len(_run([str(driver), "--list"]).stdout.splitlines())
    assert sum(" life cycle: " in ln for ln in lines) == 2 * cases  # fp32 and fp16
    refusals = [ln for ln in lines if ln.startswith("PASS refuse")]
    assert any("enqueue with pool_bias" in ln and "pool_bias" in ln.split(":", 1)[1] for ln in refusals), refusals
    assert len(refusals) >= 9
    assert re.search(r"^summary: \d+ passed, 0 failed", proc.stdout, re.MULTILINE)


def test_driver_rejects_bad_usage(driver):
    proc = _run([str(driver), "--frobnicate"])
    assert proc.returncode == 2 and "usage:" in proc.stdout


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device visible to torch")
def test_driver_on_the_gpu(driver):
    proc = _run([str(driver)])
    print(proc.stdout[-6000:])
    assert proc.returncode == 0, proc.stdout[-6000:]
    numeric = [ln for ln in proc.stdout.splitlines() if " enqueue vs host library: " in ln]
    cases = len(_run([str(driver), "--list"]).stdout.splitlines())
    assert len(numeric) == 2 * cases and all(ln.startswith("PASS") for ln in numeric)
    assert all(re.search(r"max-abs \S+ relative \S+ \(tolerance \S+\)", ln) for ln in numeric)

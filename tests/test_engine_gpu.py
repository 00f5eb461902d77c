"""Engines run on a GPU and compared with PyTorch (skipped, with the reason, without one).

Each test needs torch to see a CUDA device and its runtime to import: `tensorrt` (built for this
GPU) or `tensorrt_rtx` (built ahead of time for this GPU's compute capability, where TensorRT-RTX
lists it; on a GPU it does not list, such as a datacenter Hopper, the test checks the refusal
instead). micro is exported at 64x64 with a perturbed checkpoint; fp32 and fp16 engines of the
custom-op graph are built with the plugin (built for this GPU through the project's build API when
none is found), run at batch 1 and 3 (dynamic batch) and compared with PyTorch (published
attention, fp32, CPU) at the engine tolerances (`compare.ENGINE_TOLERANCES`, named there once):
fp32 with TF32 off, fp16 from the strongly typed fp16 graph.
"""

from __future__ import annotations

import importlib.util
import os

import pytest
import torch

from transnext_deploy.artifacts import PLUGIN_DYNAMIC_LIBRARY, PRECISIONS
from transnext_deploy.backends.trt import TensorRTBackend
from transnext_deploy.compare import ENGINE_TOLERANCES, allclose_check, error_stats, top1_agreement
from transnext_deploy.engine import build_engines_for_artifact, read_engine_metadata
from transnext_deploy.engine.tensorrt import gpu_problem, plugin_candidates

if not torch.cuda.is_available():
    pytest.skip("no CUDA device visible to torch", allow_module_level=True)

RUNTIME_MODULES = {"tensorrt": "tensorrt", "tensorrt-rtx": "tensorrt_rtx"}


def _needs(runtime: str):
    if importlib.util.find_spec(RUNTIME_MODULES[runtime]) is None:
        pytest.skip(f"the {RUNTIME_MODULES[runtime]} Python package is not installed")


@pytest.fixture(scope="module")
def plugin_libraries(tmp_path_factory):
    """Both plugin libraries, for this GPU: found where the user keeps them, else built."""
    found, _ = plugin_candidates("tensorrt")
    if found is not None and (found.parent / PLUGIN_DYNAMIC_LIBRARY).is_file():
        return {"plugin": found, "plugin_dynamic": found.parent / PLUGIN_DYNAMIC_LIBRARY}
    from transnext_deploy.plugin.build import PluginBuildError, build_plugin

    major, minor = torch.cuda.get_device_capability()
    try:
        result = build_plugin(targets=("plugin",), cuda_archs=[f"{major}{minor}"], jobs=os.cpu_count() or 2,
                              build_dir=tmp_path_factory.mktemp("aa_plugin_build"),
                              tensorrt_root=os.environ.get("TENSORRT_ROOT"))
    except PluginBuildError as exc:
        pytest.skip(f"cannot build the TensorRT plugin here: {exc}")
    return result.libraries


@pytest.fixture(scope="module")
def micro64(tmp_path_factory):
    from helpers import perturbed_checkpoint

    from transnext_deploy.export import ExportOptions, build_model, export

    directory = tmp_path_factory.mktemp("micro64")
    ckpt = perturbed_checkpoint(directory / "micro.pth", "micro")
    (result,) = export(ExportOptions("micro", resolutions=[(64, 64)], checkpoint=str(ckpt), output_dir=directory / "a"))
    model, _ = build_model(ExportOptions("micro", checkpoint=str(ckpt)), (64, 64))
    model.set_attention("plain")
    return result.directory, model


def _compare(model, engines, runtime, plugin):
    g = torch.Generator().manual_seed(0)
    for batch in (1, 3):
        x = torch.randn(batch, 3, 64, 64, generator=g)
        with torch.inference_mode():
            ref = model(x).numpy()
        for path, precision in zip(engines, PRECISIONS):
            runner = TensorRTBackend(path, plugin, runtime=runtime)
            try:
                out = runner(x.numpy())[0]
            finally:
                runner.close()
            worst = allclose_check(ref, out, ENGINE_TOLERANCES[precision])
            assert worst.ratio <= 1, (f"{runtime} {precision} batch {batch}: {error_stats(ref, out)}; worst {worst} "
                                      f"({ENGINE_TOLERANCES[precision]})")
            if precision == "fp32":
                assert top1_agreement(ref, out) == 1.0, str(error_stats(ref, out))


def test_tensorrt_engines_match_pytorch(micro64, plugin_libraries, tmp_path):
    _needs("tensorrt")
    import tensorrt as trt

    artifact, model = micro64
    cache = tmp_path / "timing.cache"
    paths = build_engines_for_artifact(artifact, PRECISIONS, plugin_library=plugin_libraries["plugin"],
                                       timing_cache=cache)
    assert [p.name for p in paths] == ["model.aa_plugin.fp32.engine", "model.aa_plugin.fp16.engine"]
    assert cache.is_file() and cache.stat().st_size > 0
    major, minor = torch.cuda.get_device_capability()
    for path, precision in zip(paths, PRECISIONS):
        meta = read_engine_metadata(path)
        assert meta["runtime"] == "tensorrt" and meta["runtime_version"] == trt.__version__
        assert meta["precision"] == precision and meta["gpu"]["sm"] == f"{major}{minor}"
        assert meta["compute_capabilities"] == [f"{major}{minor}"] and meta["plugin_layers"] > 0
    _compare(model, paths, "tensorrt", plugin_libraries["plugin"])


def test_tensorrt_rtx_engines_match_pytorch_or_refuse_this_gpu(micro64, plugin_libraries):
    """Built ahead of time for this GPU's compute capability and run; where TensorRT-RTX does not
    list this GPU, the runtime says so in one line (and runtime.load falls back with that reason)."""
    _needs("tensorrt-rtx")
    from transnext_deploy.engine.tensorrt import compute_capabilities

    artifact, model = micro64
    major, minor = torch.cuda.get_device_capability()
    cc = f"{major}{minor}"
    if cc not in compute_capabilities("tensorrt-rtx"):
        problem = gpu_problem("tensorrt-rtx")
        assert problem is not None and "is not among the compute capabilities tensorrt-rtx" in problem, problem
        assert "\n" not in problem
        return
    paths = build_engines_for_artifact(artifact, PRECISIONS, runtime="tensorrt-rtx", compute_capabilities=[cc],
                                       plugin_library=plugin_libraries["plugin_dynamic"])
    _compare(model, paths, "tensorrt-rtx", plugin_libraries["plugin_dynamic"])


def test_compatible_engines_record_their_flags_and_run(micro64, plugin_libraries):
    """--version-compatible and --hardware-compatibility ampere_plus as `package` passes them: the
    metadata says so, and the engine deserialises (host code allowed) and matches PyTorch in fp32."""
    _needs("tensorrt")
    major, _ = torch.cuda.get_device_capability()
    if major < 8:
        pytest.skip("hardware compatibility ampere_plus needs an Ampere or later GPU")
    artifact, model = micro64
    (path,) = build_engines_for_artifact(artifact, ("fp32",), plugin_library=plugin_libraries["plugin"],
                                         version_compatible=True, hardware_compatibility="ampere_plus",
                                         rebuild=True)
    meta = read_engine_metadata(path)
    assert meta["version_compatible"] is True and meta["hardware_compatibility"] == "ampere_plus"
    assert meta["serialized_plugin"]["file"] == PLUGIN_DYNAMIC_LIBRARY
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        ref = model(x).numpy()
    runner = TensorRTBackend(path, plugin_libraries["plugin"], host_code_allowed=True)
    try:
        out = runner(x.numpy())[0]
    finally:
        runner.close()
    worst = allclose_check(ref, out, ENGINE_TOLERANCES["fp32"])
    assert worst.ratio <= 1, f"{error_stats(ref, out)}; worst {worst}"

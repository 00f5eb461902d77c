"""TensorRT engines from exported artifacts (`transnext_deploy.engine`).

The CPU tests run everywhere: `tensorrt_status()` must name each missing piece, and the builder
must refuse with that reason instead of failing somewhere inside TensorRT.

The GPU test runs only where `tensorrt` imports and torch sees a CUDA device (skipped with the
reason otherwise). It exports micro at 64x64 with a perturbed checkpoint, builds fp32 and fp16
engines of the custom-op graph with the plugin (built for this GPU through the project's build
API when no prebuilt library is found), runs them at batch 1 and 3 (dynamic batch) and compares
with PyTorch (published attention, fp32, CPU):

* fp32 (TF32 disabled): max-abs <= 1e-4 x max(1, max|ref|). The exported graphs already match
  PyTorch within 1e-4 on the CPU; on the GPU what remains is cuDNN/cuBLAS accumulation order
  (~1e-7 relative per op, ~70 layers deep), so the CPU criterion is kept, scaled to the logit range
  so it does not depend on the checkpoint's scale. Cosine > 0.99999 and top-1 agreement 100 %.
* fp16: storage and math in half precision (10-bit mantissa, ~5e-4 relative per rounding) through
  the whole network: cosine > 0.999 and max-abs <= 5e-2 x max|ref|; top-1 is not asserted since
  random-like weights give near-tied logits.
"""

from __future__ import annotations

import importlib.util
import json
import os

import numpy as np
import onnx
import pytest
import torch

from transnext_deploy.files import sha256sum
from transnext_deploy.backends.trt import TensorRTBackend
from transnext_deploy.engine import (
    EngineError,
    TensorRTUnavailable,
    build_engine,
    build_engines_for_artifact,
    resolve_plugin_library,
    tensorrt_status,
)
from transnext_deploy.machine import cuda_devices
from transnext_deploy.compare import error_stats, top1_agreement

# ------------------------------------------------------------------------------------------ CPU


def _expected_missing() -> list[str]:
    fragments = []
    if importlib.util.find_spec("tensorrt") is None:
        fragments.append("Python package `tensorrt` not installed")
    if cuda_devices()[1] is not None:
        fragments.append("no CUDA GPU")
    if resolve_plugin_library()[0] is None:
        fragments.append("libtransnext_aa_plugin.so not built")
    return fragments


def test_status_names_every_missing_piece():
    status = tensorrt_status()
    available, reason = status  # a plain (bool, str) pair too
    missing = _expected_missing()
    if not missing:
        pytest.skip(f"everything is here: {reason}")
    assert available is False
    for fragment in missing:
        assert fragment in reason, (fragment, reason)
    assert "\n" not in reason


def test_status_with_an_explicit_plugin_path_that_does_not_exist(tmp_path):
    missing = tmp_path / "libnothing.so"
    status = tensorrt_status(missing)
    assert not status.available and str(missing) in status.reason


def test_builder_refuses_with_the_reason(tmp_path):
    missing = _expected_missing()
    if not missing:
        pytest.skip("TensorRT, a GPU and the plugin are present here")
    node = onnx.helper.make_node("Identity", ["images"], ["logits"])
    graph = onnx.helper.make_graph([node], "g", [onnx.helper.make_tensor_value_info("images", 1, [None, 3, 8, 8])],
                                   [onnx.helper.make_tensor_value_info("logits", 1, [None, 3, 8, 8])])
    onnx.save(onnx.helper.make_model(graph), str(tmp_path / "model.aa_plugin.onnx"))
    with pytest.raises(TensorRTUnavailable) as info:
        build_engines_for_artifact(tmp_path)
    text = str(info.value)
    assert text.startswith("TensorRT engines cannot be built here: ")
    for fragment in missing:
        if "libtransnext_aa_plugin" not in fragment:  # a graph without custom nodes needs no plugin
            assert fragment in text
    with pytest.raises(EngineError, match="not found"):
        build_engines_for_artifact(tmp_path / "nowhere")
    with pytest.raises(EngineError, match="precisions must be among"):
        build_engines_for_artifact(tmp_path, precisions=("int8",))


def test_portability_options_reach_the_builder_config(tmp_path):
    """--version-compatible / --hardware-compatibility set the builder config's flag, the plugin to
    serialise and the level (a stand-in for tensorrt here; the GPU test builds with the real one), and a
    TensorRT that lacks a level is refused in one line."""
    from transnext_deploy.engine import _set_compatibility

    class Config:
        def __init__(self):
            self.flags, self.plugins_to_serialize, self.hardware_compatibility_level = [], None, None

        def set_flag(self, flag):
            self.flags.append(flag)

    trt = type("trt", (), {"__version__": "10.3.0", "BuilderFlag": type("F", (), {"VERSION_COMPATIBLE": "VC"}),
                           "HardwareCompatibilityLevel": type("H", (), {"AMPERE_PLUS": "A+"})})
    dynamic = tmp_path / "libtransnext_aa_plugin_dynamic.so"
    config = Config()
    _set_compatibility(trt, config, True, "ampere_plus", dynamic)
    assert config.flags == ["VC"] and config.plugins_to_serialize == [str(dynamic)]
    assert config.hardware_compatibility_level == "A+"
    plain = Config()
    _set_compatibility(trt, plain, False, "none", None)
    assert plain.flags == [] and plain.plugins_to_serialize is None and plain.hardware_compatibility_level is None
    with pytest.raises(EngineError, match="TensorRT 10.3.0 does not offer hardware compatibility 'same_compute_capability'"):
        _set_compatibility(trt, Config(), False, "same_compute_capability", None)


def test_runner_refuses_a_missing_engine(tmp_path):
    with pytest.raises(EngineError, match="engine not found"):
        TensorRTBackend(tmp_path / "model.fp16.engine")


# ------------------------------------------------------------------------------------------ GPU

gpu = pytest.mark.skipif(
    importlib.util.find_spec("tensorrt") is None or not torch.cuda.is_available(),
    reason="needs the tensorrt Python package and a CUDA device visible to torch")

FP32_REL_TOL = 1e-4
FP16_REL_TOL = 5e-2


@pytest.fixture(scope="module")
def plugin_library(tmp_path_factory):
    found, _ = resolve_plugin_library()
    if found is not None:
        return found
    from transnext_deploy.plugin.build import PluginBuildError, build_plugin

    major, minor = torch.cuda.get_device_capability()
    try:
        result = build_plugin(targets=("plugin",), cuda_archs=[f"{major}{minor}"], jobs=os.cpu_count() or 2,
                              build_dir=tmp_path_factory.mktemp("aa_plugin_build"), require_nvinfer=True,
                              tensorrt_root=os.environ.get("TENSORRT_ROOT"))
    except PluginBuildError as exc:
        pytest.skip(f"cannot build the TensorRT plugin here: {exc}")
    return result.libraries["plugin"]


@gpu
def test_engines_match_pytorch(tmp_path, plugin_library):
    import tensorrt as trt
    from helpers import perturbed_checkpoint

    from transnext_deploy.export import PLUGIN_FILE, ExportOptions, build_model, export

    ckpt = perturbed_checkpoint(tmp_path / "micro.pth", "micro")
    (result,) = export(ExportOptions("micro", resolutions=[(64, 64)], checkpoint=str(ckpt), output_dir=tmp_path / "a"))
    artifact = result.directory
    cache = tmp_path / "timing.cache"
    paths = build_engines_for_artifact(artifact, ("fp32", "fp16"), plugin_library=plugin_library, timing_cache=cache)
    assert [p.name for p in paths] == ["model.aa_plugin.fp32.engine", "model.aa_plugin.fp16.engine"]
    assert cache.is_file() and cache.stat().st_size > 0

    major, minor = torch.cuda.get_device_capability()
    for path, precision in zip(paths, ("fp32", "fp16")):
        meta = json.loads(path.with_name(path.name + ".json").read_text())
        assert meta["tensorrt_version"] == trt.__version__ and meta["precision"] == precision
        assert meta["gpu"]["compute_capability"] == f"{major}.{minor}" and meta["gpu"]["name"]
        assert meta["resolution"] == [64, 64]
        assert meta["batch_profile"] == {"min": 1, "opt": 8, "max": 32}
        assert meta["source_onnx"] == {"file": PLUGIN_FILE, "sha256": sha256sum(os.path.join(artifact, PLUGIN_FILE))}
        assert meta["engine_sha256"] == sha256sum(path) and meta["tf32"] is False

    mtimes = [p.stat().st_mtime_ns for p in paths]
    again = build_engines_for_artifact(artifact, ("fp32", "fp16"), plugin_library=plugin_library, timing_cache=cache)
    assert again == paths and [p.stat().st_mtime_ns for p in paths] == mtimes, "matching engines were rebuilt"

    model, _ = build_model(ExportOptions("micro", checkpoint=str(ckpt)), (64, 64))
    model.set_attention("plain")
    g = torch.Generator().manual_seed(0)
    for batch in (1, 3):
        x = torch.randn(batch, 3, 64, 64, generator=g)
        with torch.inference_mode():
            ref = model(x).numpy()
        scale = max(1.0, float(np.abs(ref).max()))
        for path, precision in zip(paths, ("fp32", "fp16")):
            runner = TensorRTBackend(path, plugin_library)
            try:
                out = runner(x.numpy())[0]
            finally:
                runner.close()
            stats = error_stats(ref, out)
            if precision == "fp32":
                assert stats.max_abs <= FP32_REL_TOL * scale, f"fp32 batch {batch}: {stats}"
                assert stats.cosine > 0.99999 and top1_agreement(ref, out) == 1.0, str(stats)
            else:
                assert stats.cosine > 0.999, f"fp16 batch {batch}: {stats}"
                assert stats.max_abs <= FP16_REL_TOL * float(np.abs(ref).max()), f"fp16 batch {batch}: {stats}"


def _identity_artifact(directory):
    node = onnx.helper.make_node("Identity", ["images"], ["logits"])
    graph = onnx.helper.make_graph([node], "g", [onnx.helper.make_tensor_value_info("images", 1, [None, 3, 8, 8])],
                                   [onnx.helper.make_tensor_value_info("logits", 1, [None, 3, 8, 8])])
    directory.mkdir(parents=True, exist_ok=True)
    onnx.save(onnx.helper.make_model(graph), str(directory / "model.aa_plugin.onnx"))
    return directory


def _cli(*args):
    from typer.testing import CliRunner

    from transnext_deploy.cli import app

    return CliRunner().invoke(app, ["build-engine", *args], env={"COLUMNS": "80", "NO_COLOR": "1"})


def test_build_engine_without_tensorrt_is_one_line(tmp_path):
    from helpers import error_line

    missing = [f for f in _expected_missing() if "libtransnext_aa_plugin" not in f]
    if not missing:
        pytest.skip("TensorRT and a GPU are present here")
    result = _cli(str(_identity_artifact(tmp_path / "a")))
    assert result.exit_code == 1 and result.stdout == ""
    line = error_line(result.stderr)
    assert line.startswith("error: TensorRT engines cannot be built here: ")
    for fragment in missing:
        assert fragment in line
    if importlib.util.find_spec("tensorrt") is None:
        assert "pip install 'transnext-deploy[tensorrt]'" in line  # rich markup must not eat the extra
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["model.aa_plugin.onnx"]


@pytest.mark.parametrize("args,fragment", [
    (["--precision", "int8"], "precisions must be among fp32, fp16, got int8"),
    (["--batch", "8", "1", "32"], "1 <= min <= opt <= max, got 8/1/32"),
    (["--batch", "0", "1", "1"], "got 0/1/1"),
    (["--hardware-compatibility", "everything"], "hardware compatibility must be one of none, ampere_plus"),
    (["--version-compatible", "--plugin", "/nowhere/libtransnext_aa_plugin.so"],
     "version-compatible engines carry libtransnext_aa_plugin_dynamic.so"),
])
def test_build_engine_bad_options_are_one_line(tmp_path, args, fragment):
    from helpers import error_line

    result = _cli(str(_identity_artifact(tmp_path / "a")), *args)
    assert result.exit_code == 1 and fragment in error_line(result.stderr)
    result = _cli(str(tmp_path / "elsewhere"))
    assert result.exit_code == 1 and "is not an export artifact directory" in error_line(result.stderr)


def test_build_engine_passes_every_option_to_the_builder(tmp_path, monkeypatch):
    """The command is the builder export calls: precisions, profile, plugin and the two portability
    options arrive as given (the builder itself is stood in for; the GPU tests build for real)."""
    import transnext_deploy.engine as engine_module

    artifact = _identity_artifact(tmp_path / "a")
    calls = []

    def fake_build(directory, precisions, **kwargs):
        calls.append((directory, precisions, kwargs))
        paths = []
        for p in precisions:
            path = artifact / f"model.aa_plugin.{p}.engine"
            path.write_bytes(b"x")
            (artifact / f"{path.name}.json").write_text(json.dumps({"precision": p, "tensorrt_version": "10.3",
                                                                     "gpu": {"name": "Orin"}}))
            kwargs["progress"](f"building the {p} TensorRT engine")
            paths.append(path)
        return paths

    monkeypatch.setattr(engine_module, "build_engines_for_artifact", fake_build)
    plugin = tmp_path / "libtransnext_aa_plugin.so"
    result = _cli(str(artifact), "--precision", "fp16", "--batch", "2", "4", "16", "--plugin", str(plugin),
                  "--version-compatible", "--hardware-compatibility", "ampere_plus", "--json")
    assert result.exit_code == 0, result.output
    ((directory, precisions, kwargs),) = calls
    assert directory == artifact and precisions == ("fp16",)
    assert kwargs["batch_profile"] == (2, 4, 16) and kwargs["plugin_library"] == plugin
    assert kwargs["version_compatible"] is True and kwargs["hardware_compatibility"] == "ampere_plus"
    summary = json.loads(result.stdout)
    assert [e["precision"] for e in summary["engines"]] == ["fp16"] and summary["engines"][0]["gpu"] == "Orin"
    assert "building the fp16 TensorRT engine" in result.stderr  # one plain progress line off a terminal
    calls.clear()
    assert _cli(str(artifact)).exit_code == 0
    assert calls[0][1] == ("fp32", "fp16") and calls[0][2]["batch_profile"] == (1, 8, 32)
    assert calls[0][2]["version_compatible"] is False and calls[0][2]["hardware_compatibility"] == "none"



def test_builder_refuses_an_unknown_hardware_compatibility_first(tmp_path):
    (tmp_path / "model.aa_plugin.onnx").write_bytes(b"")
    with pytest.raises(ValueError, match="hardware compatibility must be one of none, ampere_plus"):
        build_engine(tmp_path / "model.aa_plugin.onnx", hardware_compatibility="everything")


@gpu
def test_compatible_engines_record_their_flags_and_run(tmp_path, plugin_library):
    """--version-compatible and --hardware-compatibility ampere_plus as `package` passes them: the
    metadata says so, and the engine deserialises (host code allowed) and matches PyTorch in fp32."""
    from helpers import perturbed_checkpoint

    from transnext_deploy.export import ExportOptions, build_model, export

    major, _ = torch.cuda.get_device_capability()
    if major < 8:
        pytest.skip("hardware compatibility ampere_plus needs an Ampere or later GPU")
    ckpt = perturbed_checkpoint(tmp_path / "micro.pth", "micro")
    (result,) = export(ExportOptions("micro", resolutions=[(64, 64)], checkpoint=str(ckpt), output_dir=tmp_path / "a"))
    dynamic = os.path.join(os.path.dirname(plugin_library), "libtransnext_aa_plugin_dynamic.so")
    (path,) = build_engines_for_artifact(result.directory, ("fp32",), plugin_library=plugin_library,
                                         version_compatible=True, hardware_compatibility="ampere_plus",
                                         serialize_plugin=dynamic if os.path.isfile(dynamic) else None)
    meta = json.loads(path.with_name(path.name + ".json").read_text())
    assert meta["version_compatible"] is True and meta["hardware_compatibility"] == "ampere_plus"
    model, _ = build_model(ExportOptions("micro", checkpoint=str(ckpt)), (64, 64))
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        ref = model(x).numpy()
    runner = TensorRTBackend(path, plugin_library, host_code_allowed=True)
    try:
        out = runner(x.numpy())[0]
    finally:
        runner.close()
    stats = error_stats(ref, out)
    assert stats.max_abs <= FP32_REL_TOL * max(1.0, float(np.abs(ref).max())), str(stats)

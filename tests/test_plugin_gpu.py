"""One-block TensorRT engine with the aggregated-attention plugin vs PyTorch (needs a GPU).

Skipped with the reason unless torch sees a CUDA device and `tensorrt` imports; the plugin is
built for the device's architecture through the project's build API and linked to libnvinfer
(TENSORRT_ROOT, or the tensorrt wheel's tensorrt_libs; headers via TENSORRT_ROOT or
TENSORRT_INCLUDE_DIR).
Checks: fp32 within 1e-4 and fp16 within 2e-2 of `aggregated_attention_core` (|err| <= tol +
tol*|ref|), dynamic batch (one engine run at batch 1 and 2), the tiled pooled-row path
(P > 256), and that malformed nodes fail cleanly.
"""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from transnext_deploy.ops import aggregated_attention as aa
from transnext_deploy.ops import contract

if not torch.cuda.is_available():
    pytest.skip("no CUDA device visible to torch", allow_module_level=True)
trt = pytest.importorskip("tensorrt", reason="TensorRT Python package not installed")

from transnext_deploy.plugin.build import PluginBuildError, build_plugin  # noqa: E402

FP32_TOL = 1e-4
FP16_TOL = 2e-2


@pytest.fixture(scope="session")
def plugin_libraries(tmp_path_factory):
    major, minor = torch.cuda.get_device_capability()
    try:
        result = build_plugin(targets=("plugin",), cuda_archs=[f"{major}{minor}"], jobs=2,
                              build_dir=tmp_path_factory.mktemp("aa_plugin_build"), require_nvinfer=True,
                              tensorrt_root=os.environ.get("TENSORRT_ROOT"))
    except PluginBuildError as exc:
        pytest.skip(f"cannot build the TensorRT plugin here: {exc}")
    return result.libraries


@pytest.fixture(scope="session")
def creator(plugin_libraries):
    # Load-time registration into the global registry (what trtexec --staticPlugins does).
    ctypes.CDLL(str(plugin_libraries["plugin"]), mode=ctypes.RTLD_GLOBAL)
    found = trt.get_plugin_registry().get_creator(contract.OP_NAME, contract.OP_VERSION, contract.OP_NAMESPACE)
    assert found is not None, "creator not registered after loading the plugin library"
    return found


LOGGER = trt.Logger(trt.Logger.WARNING)


def _fields(**attrs):
    return trt.PluginFieldCollection(
        [trt.PluginField(k, np.array([v], dtype=np.int32), trt.PluginFieldType.INT32) for k, v in attrs.items()]
    )


def _make_inputs(seed, *, batch, height, width, num_heads, head_dim, window_size, pool_height, pool_width):
    g = torch.Generator().manual_seed(seed)
    B, N, C, P, nh, d, L = batch, height * width, num_heads * head_dim, pool_height * pool_width, num_heads, head_dim, window_size**2

    def r(*shape, scale=1.0):
        return torch.randn(*shape, generator=g) * scale

    return [r(B, N, C), r(B, N, 2 * C), r(B, P, 2 * C), r(nh, d, scale=0.5), F.softplus(r(nh)) + 0.25,
            r(nh, L, scale=0.5), r(nh, d, L, scale=0.3), r(nh, L, scale=0.3), r(nh, N, P, scale=0.5)]


def _build_engine(creator, attrs, shapes, dtype, max_batch):
    plugin = creator.create_plugin(contract.OP_NAME, _fields(**attrs), trt.TensorRTPhase.BUILD)
    assert plugin is not None
    builder = trt.Builder(LOGGER)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    config = builder.create_builder_config()
    profile = builder.create_optimization_profile()
    tensors = []
    for i, (name, shape) in enumerate(zip(contract.INPUT_NAMES, shapes)):
        dynamic = i < 3
        declared = (-1, *shape[1:]) if dynamic else tuple(shape)
        tensors.append(network.add_input(name, dtype, declared))
        if dynamic:
            profile.set_shape(name, (1, *shape[1:]), (max_batch, *shape[1:]), (max_batch, *shape[1:]))
    config.add_optimization_profile(profile)
    layer = network.add_plugin_v3(tensors, [], plugin)
    output = layer.get_output(0)
    output.name = contract.OUTPUT_NAMES[0]
    network.mark_output(output)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        return None
    return trt.Runtime(LOGGER).deserialize_cuda_engine(serialized)


def _run(engine, inputs, torch_dtype):
    context = engine.create_execution_context()
    device = [t.to(device="cuda", dtype=torch_dtype).contiguous() for t in inputs]
    for name, t in zip(contract.INPUT_NAMES, device):
        assert context.set_input_shape(name, tuple(t.shape))
        context.set_tensor_address(name, t.data_ptr())
    out = torch.empty(tuple(inputs[0].shape), dtype=torch_dtype, device="cuda")
    context.set_tensor_address(contract.OUTPUT_NAMES[0], out.data_ptr())
    stream = torch.cuda.current_stream()
    assert context.execute_async_v3(stream.cuda_stream)
    stream.synchronize()
    return out.float().cpu()


CASES = {
    # name: (height, width, num_heads, head_dim, window_size, pool_height, pool_width)
    "stage-like-14x14-P49": (14, 14, 3, 24, 3, 7, 7),
    "nonsquare-5x9-P6": (5, 9, 2, 24, 3, 2, 3),
    "row-1x12-P3": (1, 12, 2, 32, 3, 1, 3),
    "tiled-P400-d24": (6, 7, 2, 24, 3, 20, 20),
    "d64-w5": (6, 6, 1, 64, 5, 2, 2),
}


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_engine_matches_pytorch(creator, name, precision):
    H, W, nh, d, w, ph, pw = CASES[name]
    attrs = dict(num_heads=nh, height=H, width=W, window_size=w, pool_height=ph, pool_width=pw)
    trt_dtype, torch_dtype, tol = ((trt.float32, torch.float32, FP32_TOL) if precision == "fp32"
                                   else (trt.float16, torch.float16, FP16_TOL))
    max_batch = 2
    inputs = _make_inputs(len(name), batch=max_batch, height=H, width=W, num_heads=nh, head_dim=d,
                          window_size=w, pool_height=ph, pool_width=pw)
    if precision == "fp16":
        inputs = [t.half().float() for t in inputs]
    engine = _build_engine(creator, attrs, [tuple(t.shape) for t in inputs], trt_dtype, max_batch)
    assert engine is not None, "engine build failed"
    for batch in (max_batch, 1):
        batch_inputs = [t[:batch] if i < 3 else t for i, t in enumerate(inputs)]
        got = _run(engine, batch_inputs, torch_dtype)
        ref = aa.aggregated_attention_core(*batch_inputs, num_heads=nh, height=H, width=W, window_size=w,
                                           pool_height=ph, pool_width=pw)
        err = (got - ref).abs()
        max_abs = float(err.max())
        rel = max_abs / float(ref.abs().max())
        assert torch.all(err <= tol + tol * ref.abs()), (
            f"{name} {precision} batch {batch}: max-abs {max_abs:.3e}, relative {rel:.3e}, tolerance {tol}"
        )


def test_malformed_nodes_fail_cleanly(creator):
    good = dict(num_heads=2, height=4, width=4, window_size=3, pool_height=2, pool_width=2)
    for broken in (
        {k: v for k, v in good.items() if k != "window_size"},  # missing attribute
        {**good, "num_heads": -2},
        {**good, "window_size": 4},
    ):
        assert creator.create_plugin(contract.OP_NAME, _fields(**broken), trt.TensorRTPhase.BUILD) is None
    # Shapes that contradict the attributes: the build fails (no crash).
    shapes = [(1, 16, 48), (1, 16, 96), (1, 4, 96), (2, 24), (2,), (2, 9), (2, 24, 9), (2, 9), (2, 16, 4)]
    bad_pool_bias = shapes[:-1] + [(2, 16, 5)]
    assert _build_engine(creator, good, bad_pool_bias, trt.float32, 1) is None
    bad_channels = [(1, 16, 49), (1, 16, 98), (1, 4, 98), (2, 24), (2,), (2, 9), (2, 24, 9), (2, 9), (2, 16, 4)]
    assert _build_engine(creator, good, bad_channels, trt.float32, 1) is None  # C=49 not divisible by 2
    too_wide = [(1, 16, 130), (1, 16, 260), (1, 4, 260), (1, 130), (1,), (1, 9), (1, 130, 9), (1, 9), (1, 16, 4)]
    assert _build_engine(creator, {**good, "num_heads": 1}, too_wide, trt.float32, 1) is None  # head_dim 130 > 64


def test_dynamic_library_loads_through_load_library(plugin_libraries):
    """libtransnext_aa_plugin_dynamic.so exposes the creator through getCreators() (separate process,
    so the global registry has not seen the self-registering variant)."""
    code = (
        "import sys, tensorrt as trt\n"
        "reg = trt.get_plugin_registry()\n"
        "handle = reg.load_library(sys.argv[1])\n"
        "assert handle is not None, 'load_library failed'\n"
        f"assert reg.get_creator({contract.OP_NAME!r}, {contract.OP_VERSION!r}, {contract.OP_NAMESPACE!r}) is not None\n"
        "print('ok')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code, str(plugin_libraries["plugin_dynamic"])],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300)
    assert proc.returncode == 0 and "ok" in proc.stdout, proc.stdout

"""torch.ops.transnext.aggregated_attention (transnext_deploy/ops/fused_op.py) and attention="fused".

On the CPU: the op is registered under its exact name and schema, matches the decomposition
(`aggregated_attention_core`) through the host library in float32/float16 and is the decomposition
itself in bfloat16/float64, runs on the meta device, compiles with fullgraph=True, trains (its
backward is the decomposition's), refuses malformed inputs in one line, and says how to build the
CUDA library when it is missing; the C API library (libtransnext_aa_cuda.so) is built with nvcc and
checked through ctypes (its size checks and refusals need no GPU); the "fused" model gives the
numbers of "plain".
On a CUDA device (skipped elsewhere, with the reason): the kernel through the op against the
decomposition in float32/float16, the fallback dtypes, CUDA-graph capture and the fused model. The
CUDA library is built for the device's architecture through `build_plugin`.
"""

from __future__ import annotations

import ctypes
import importlib
import shutil
import subprocess
import sys

import pytest
import torch

from transnext_deploy import artifacts, create_model
from transnext_deploy import plugin as plugin_build
from transnext_deploy.plugin import build
from transnext_deploy.ops import aggregated_attention as aa
from transnext_deploy.ops import contract
from transnext_deploy.ops import fused_op
from transnext_deploy.plugin.build import PluginBuildError, build_plugin
from transnext_deploy.compare import error_stats

from helpers import perturb_
from test_models_transnext import REL_TOL

# Relative error (max-abs / max|ref|) against the decomposition evaluated in float64 on the same inputs.
FP32_TOL = 1e-5  # the host library matches PyTorch within 1e-5 (plugins/aggregated_attention/README.md)
FP16_TOL = 2.0**-10  # one rounding of the fp32 result on the store: within one fp16 ulp of the largest output

# name: (batch, height, width, num_heads, head_dim, window_size, pool_height, pool_width)
SHAPES = {
    "stage-like-14x14-P49": (2, 14, 14, 3, 24, 3, 7, 7),
    "row-1x9": (2, 1, 9, 2, 24, 3, 1, 3),
    "column-8x1": (3, 8, 1, 2, 24, 3, 2, 1),
    "w5-d8-nonsquare": (2, 5, 7, 3, 8, 5, 2, 3),
    "w7-wider-than-grid-d64": (1, 4, 4, 1, 64, 7, 2, 2),
    "P400-d24": (1, 6, 7, 2, 24, 3, 20, 20),
    "P1-d40": (2, 3, 5, 2, 40, 3, 1, 1),
}


def make_inputs(shape, dtype=torch.float32, device="cpu", seed=0) -> tuple[list[torch.Tensor], dict[str, int]]:
    B, H, W, nh, d, w, ph, pw = shape
    attrs = dict(num_heads=nh, height=H, width=W, window_size=w, pool_height=ph, pool_width=pw)
    shapes = contract.input_shapes(B, d, **attrs)
    g = torch.Generator().manual_seed(seed)
    scales = dict(query_embedding=0.5, local_bias=0.5, learnable_tokens=0.3, learnable_bias=0.3, pool_bias=0.5)
    tensors = []
    for name in contract.INPUT_NAMES:
        t = torch.randn(shapes[name], generator=g) * scales.get(name, 1.0)
        if name == "temperature_scale":
            t = torch.nn.functional.softplus(t) + 0.25
        tensors.append(t.to(device=device, dtype=dtype))
    return tensors, attrs


def call_op(tensors, attrs):
    return torch.ops.transnext.aggregated_attention(*tensors, *(attrs[n] for n in contract.ATTRIBUTE_NAMES))


def reference(tensors, attrs) -> torch.Tensor:
    return aa.aggregated_attention_core(*[t.double().cpu() for t in tensors], **attrs)


# ------------------------------------------------------------------------------------------ registration


def test_registered_under_the_contract_name_and_schema():
    schema = torch.ops.transnext.aggregated_attention.default._schema
    inputs = ", ".join(f"Tensor {n}" for n in contract.INPUT_NAMES)
    attrs = ", ".join(f"int {n}" for n in contract.ATTRIBUTE_NAMES)
    assert str(schema) == f"transnext::aggregated_attention({inputs}, {attrs}) -> Tensor"
    assert [a.name for a in schema.arguments] == [*contract.INPUT_NAMES, *contract.ATTRIBUTE_NAMES]
    assert not schema.is_mutable


def test_registered_only_once_fused_is_used():
    code = (
        "import sys, torch\n"
        "from transnext_deploy import create_model\n"
        "create_model('micro', img_size=64)\n"
        "assert 'transnext_deploy.ops.fused_op' not in sys.modules\n"
        "assert not hasattr(torch.ops.transnext, 'aggregated_attention')\n"
        "create_model('micro', img_size=64, attention='fused')\n"
        "assert hasattr(torch.ops.transnext, 'aggregated_attention')\n"
        "print('ok')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stdout + proc.stderr


def test_registration_is_idempotent():
    importlib.reload(fused_op)  # a second import of the module must not register twice (or fail)
    fused_op.ensure_registered()
    tensors, attrs = make_inputs(SHAPES["row-1x9"])
    assert call_op(tensors, attrs).shape == tensors[0].shape


# ------------------------------------------------------------------------------------------ CPU


@pytest.mark.parametrize("name", list(SHAPES))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_cpu_kernel_matches_the_decomposition(name, dtype):
    tensors, attrs = make_inputs(SHAPES[name], dtype)
    out = call_op(tensors, attrs)
    assert out.dtype == dtype and out.shape == tensors[0].shape and out.is_contiguous()
    stats = error_stats(reference(tensors, attrs), out)
    tol = FP32_TOL if dtype == torch.float32 else FP16_TOL
    assert stats.relative <= tol, f"{name} {dtype}: {stats}, tolerance {tol}"


def test_cpu_runs_the_host_library_for_kernel_dtypes():
    for dtype in fused_op.KERNEL_DTYPES:
        assert fused_op.implementation("cpu", dtype).startswith("host library ("), fused_op.implementation("cpu", dtype)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float64])
@pytest.mark.parametrize("name", ["stage-like-14x14-P49", "w5-d8-nonsquare"])
def test_dtypes_without_a_kernel_run_the_decomposition(name, dtype):
    tensors, attrs = make_inputs(SHAPES[name], dtype)
    out = call_op(tensors, attrs)
    assert out.dtype == dtype
    assert torch.equal(out, aa.aggregated_attention_core(*tensors, **attrs))
    assert fused_op.implementation("cpu", dtype).startswith("decomposition")
    assert fused_op.implementation("cuda", dtype).startswith("decomposition")


def test_non_contiguous_inputs_and_empty_batch():
    tensors, attrs = make_inputs(SHAPES["w5-d8-nonsquare"])
    strided = [t.transpose(-1, -2).contiguous().transpose(-1, -2) if t.dim() > 1 else t for t in tensors]
    assert not strided[0].is_contiguous()
    assert torch.equal(call_op(strided, attrs), call_op(tensors, attrs))
    empty = [t[:0] if i < 3 else t for i, t in enumerate(tensors)]
    assert call_op(empty, attrs).shape == (0, *tensors[0].shape[1:])


def test_host_library_failure_falls_back_and_says_why(monkeypatch):
    def broken(*args, **kwargs):
        raise PluginBuildError("cmake not found on PATH")

    monkeypatch.setattr(build, "ensure_host_library", broken)
    monkeypatch.setattr(fused_op, "_HOST", {})
    tensors, attrs = make_inputs(SHAPES["row-1x9"])
    with pytest.warns(RuntimeWarning, match="cmake not found"):
        out = call_op(tensors, attrs)
    assert torch.equal(out, aa.aggregated_attention_core(*tensors, **attrs))
    assert "cmake not found on PATH" in fused_op.implementation("cpu")


def test_meta_device_gives_the_output_shape():
    tensors, attrs = make_inputs(SHAPES["P400-d24"], device="meta")
    out = call_op(tensors, attrs)
    assert out.device.type == "meta" and out.shape == tensors[0].shape and out.dtype == torch.float32


@pytest.mark.parametrize("mutate, fragment", [
    (lambda ts: ts.__setitem__(8, ts[8][:, :, :-1]), "pool_bias has shape"),
    (lambda ts: ts.__setitem__(3, ts[3].double()), "cast the parameters to the query's dtype"),
    (lambda ts: ts.__setitem__(0, ts[0][0]), "query must have shape (B, N, C)"),
    (lambda ts: ts.__setitem__(1, ts[1][:1]), "key_value has shape"),
])
@pytest.mark.parametrize("device", ["cpu", "meta"])
def test_malformed_inputs_are_refused_in_one_line(mutate, fragment, device):
    tensors, attrs = make_inputs(SHAPES["row-1x9"], device=device)
    mutate(tensors)
    with pytest.raises(ValueError) as info:
        call_op(tensors, attrs)
    assert fragment in str(info.value) and "\n" not in str(info.value)


def test_bad_attributes_are_refused():
    tensors, attrs = make_inputs(SHAPES["row-1x9"])
    with pytest.raises(ValueError, match="window_size must be odd"):
        call_op(tensors, {**attrs, "window_size": 4})
    with pytest.raises(ValueError, match="height\\*width"):
        call_op(tensors, {**attrs, "height": 3})


def test_compile_fullgraph_through_the_op():
    tensors, attrs = make_inputs(SHAPES["w5-d8-nonsquare"])
    values = [attrs[n] for n in contract.ATTRIBUTE_NAMES]

    def only_the_op(*ts):
        return torch.ops.transnext.aggregated_attention(*ts, *values)

    def with_neighbours(*ts):  # the fake implementation inside a graph of other ops
        ts = [t * 1.0 for t in ts]
        return torch.ops.transnext.aggregated_attention(*ts, *values).relu() + 1

    torch._dynamo.reset()
    compiled = torch.compile(only_the_op, fullgraph=True)  # inductor
    assert torch.equal(compiled(*tensors), only_the_op(*tensors))
    compiled = torch.compile(with_neighbours, fullgraph=True, backend="aot_eager")
    assert torch.equal(compiled(*tensors), with_neighbours(*tensors))


def test_backward_is_the_decompositions():
    tensors, attrs = make_inputs(SHAPES["w5-d8-nonsquare"])
    leaves_op = [t.clone().requires_grad_() for t in tensors]
    leaves_ref = [t.clone().requires_grad_() for t in tensors]
    grad = torch.randn(tensors[0].shape)
    call_op(leaves_op, attrs).backward(grad)
    aa.aggregated_attention_core(*leaves_ref, **attrs).backward(grad)
    for name, a, b in zip(contract.INPUT_NAMES, leaves_op, leaves_ref):
        assert torch.allclose(a.grad, b.grad, rtol=1e-4, atol=1e-6), name


def test_traffic_model_reproduces_the_kernel_comment_example():
    # aggregatedAttentionKernel.cu: TransNeXt stage 1 at 224x224 (N = 3136, C = 72, nh = 3, P = 49),
    # fp16, B = 1: q 0.45 MB + kv 0.90 MB + pool_bias 0.92 MB + pooled kv 25 x 14 KB + out 0.45 MB ~= 3.1 MB.
    total = fused_op.kernel_traffic_bytes(1, 56, 56, 72, 3, 3, 7, 7, 2)
    assert 3.05e6 < total < 3.15e6, total
    assert fused_op.kernel_traffic_bytes(1, 56, 56, 72, 3, 3, 7, 7, 4) == 2 * total  # fp32


# ------------------------------------------------------------------------------------------ the CUDA library


def test_missing_cuda_library_names_the_build_command(monkeypatch, tmp_path):
    monkeypatch.delenv(artifacts.CUDA_LIBRARY_ENV, raising=False)
    monkeypatch.setenv(artifacts.PLUGIN_DIR_ENV, str(tmp_path / "empty"))
    with pytest.raises(fused_op.CudaLibraryError) as info:
        fused_op.cuda_library_path()
    message = str(info.value)
    assert "\n" not in message and "libtransnext_aa_cuda.so" in message and "is not built" in message
    assert "`transnext-deploy build-plugin --target cuda`" in message
    # The CUDA implementation asks for the library before it touches the device.
    tensors, attrs = make_inputs(SHAPES["row-1x9"])
    with pytest.raises(fused_op.CudaLibraryError, match="build-plugin --target cuda"):
        fused_op._forward_cuda(tensors, attrs)
    monkeypatch.setenv(artifacts.CUDA_LIBRARY_ENV, str(tmp_path / "nowhere.so"))
    with pytest.raises(fused_op.CudaLibraryError, match="TRANSNEXT_AA_CUDA_LIBRARY=.* is not a file"):
        fused_op.cuda_library_path()


def _nvcc_and_cmake() -> str | None:
    try:
        plugin_build.find_nvcc()
        plugin_build.find_cmake()
        plugin_build.find_cxx_compiler()
    except PluginBuildError as exc:
        return str(exc)
    return None


@pytest.fixture(scope="module")
def cuda_library(tmp_path_factory):
    """libtransnext_aa_cuda.so built through build_plugin: for this GPU, or sm_80 without one."""
    missing = _nvcc_and_cmake()
    if missing:
        pytest.skip(f"cannot build the CUDA library here: {missing}")
    arch = "".join(map(str, torch.cuda.get_device_capability())) if torch.cuda.is_available() else "80"
    result = build_plugin(targets=("cuda",), cuda_archs=[arch], build_dir=tmp_path_factory.mktemp("aa_cuda"),
                          jobs=2, werror=True)
    assert result.libraries["cuda"].name == "libtransnext_aa_cuda.a"  # the plugin's static kernel library stays
    return result.libraries["cuda_api"]


def test_cuda_library_exports_only_its_c_api(cuda_library):
    assert cuda_library.name == "libtransnext_aa_cuda.so"
    assert plugin_build.find_cuda_library(cuda_library.parent) == cuda_library
    nm = shutil.which("nm")
    if nm is None:
        pytest.skip("nm not found")
    symbols = subprocess.run([nm, "-D", "--defined-only", str(cuda_library)], capture_output=True, text=True).stdout
    exported = sorted(line.split()[-1] for line in symbols.splitlines() if " T " in line)
    assert exported == ["transnext_aa_cuda_abi_version", "transnext_aa_cuda_forward", "transnext_aa_cuda_validate"]
    readelf = shutil.which("readelf")
    if readelf:
        needed = subprocess.run([readelf, "-d", str(cuda_library)], capture_output=True, text=True).stdout
        assert "(NEEDED)" in needed and "libcudart" not in needed  # the CUDA runtime is linked statically


def test_cuda_library_checks_sizes_like_the_host_library(cuda_library):
    from transnext_deploy.ops.host import validate_sizes

    lib = fused_op.load_cuda_library(cuda_library)
    buf = ctypes.create_string_buffer(256)
    cases = [  # batch, channels, num_heads, height, width, window, pool_height, pool_width
        (1, 48, 2, 4, 4, 3, 2, 2), (1, 48, 2, 4, 4, 4, 2, 2), (0, 48, 2, 4, 4, 3, 2, 2), (1, 49, 2, 4, 4, 3, 2, 2),
        (1, 260, 2, 4, 4, 3, 2, 2), (70000, 48, 2, 4, 4, 3, 2, 2), (1, 48, 2, 1 << 14, 1 << 14, 3, 2, 2),
    ]
    for sizes in cases:
        code = lib.transnext_aa_cuda_validate(*sizes, buf, len(buf))
        keys = ("num_heads", "height", "width", "window_size", "pool_height", "pool_width")
        assert (code, buf.value.decode()) == validate_sizes(*sizes[:2], **dict(zip(keys, sizes[2:]))), sizes
    # forward refuses before any CUDA call: bad dtype code, null pointers, bad sizes.
    good = (1, 48, 2, 4, 4, 3, 2, 2)
    pointers = [1] * 10
    assert lib.transnext_aa_cuda_forward(7, *pointers, *good, None, buf, len(buf)) == 2
    assert "dtype must be 0 (float32) or 1 (float16)" in buf.value.decode()
    assert lib.transnext_aa_cuda_forward(0, *pointers[:8], None, pointers[9], *good, None, buf, len(buf)) == 1
    assert buf.value.decode() == "input 8 (pool_bias) is a null pointer"
    assert lib.transnext_aa_cuda_forward(1, *pointers[:9], None, *good, None, buf, len(buf)) == 1
    assert buf.value.decode() == "output is a null pointer"
    assert lib.transnext_aa_cuda_forward(0, *pointers, 1, 48, 2, 4, 4, 3, 0, 2, None, buf, len(buf)) == 2
    assert "pool_height" in buf.value.decode()


# ------------------------------------------------------------------------------------------ the model


@pytest.mark.parametrize("name, size", [("micro", 64), ("tiny", 96), ("micro_AAAA", 128)])
def test_fused_model_matches_plain_on_the_cpu(name, size):
    torch.manual_seed(0)
    model = create_model(name, img_size=size, attention="fused").eval()
    perturb_(model)
    assert model.attention == "fused"
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        fused = model(x)
        plain = model.set_attention("plain")(x)
    stats = error_stats(plain, fused)
    assert stats.relative <= REL_TOL, f"{name}@{size}: {stats}"
    assert stats.cosine > 0.99999


def test_fused_backbone_at_a_non_square_size():
    torch.manual_seed(1)
    model = create_model("micro", backbone=True).eval()
    perturb_(model)
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        plain = model.set_attention("plain")(x)
        fused = model.set_attention("fused")(x)
    for i, (p, f) in enumerate(zip(plain, fused)):
        stats = error_stats(p, f)
        assert stats.relative <= REL_TOL, f"stage {i + 1}: {stats}"


def test_unknown_attention_is_refused():
    with pytest.raises(ValueError, match="fast, plain or fused, got 'fussed'"):
        create_model("micro", attention="fussed")


# ------------------------------------------------------------------------------------------ CUDA

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device visible to torch")


@pytest.fixture()
def cuda_op(cuda_library, monkeypatch):
    monkeypatch.setenv(artifacts.CUDA_LIBRARY_ENV, str(cuda_library))
    return cuda_library


@needs_cuda
@pytest.mark.parametrize("name", list(SHAPES))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_cuda_kernel_matches_the_decomposition(cuda_op, name, dtype):
    tensors, attrs = make_inputs(SHAPES[name], dtype, device="cuda")
    assert fused_op.implementation("cuda", dtype).startswith("CUDA kernel ("), fused_op.implementation("cuda", dtype)
    out = call_op(tensors, attrs)
    torch.cuda.synchronize()
    assert out.dtype == dtype and out.device.type == "cuda" and out.shape == tensors[0].shape
    stats = error_stats(reference(tensors, attrs), out)
    tol = FP32_TOL if dtype == torch.float32 else FP16_TOL
    assert stats.relative <= tol, f"{name} {dtype}: {stats}, tolerance {tol}"


@needs_cuda
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float64])
def test_cuda_dtypes_without_a_kernel_run_the_decomposition(cuda_op, dtype):
    tensors, attrs = make_inputs(SHAPES["stage-like-14x14-P49"], dtype, device="cuda")
    assert torch.equal(call_op(tensors, attrs), aa.aggregated_attention_core(*tensors, **attrs))


@needs_cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_cuda_graph_capture_of_the_op(cuda_op, dtype):
    static, attrs = make_inputs(SHAPES["stage-like-14x14-P49"], dtype, device="cuda", seed=1)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm-up outside the capture (library load, module load)
        call_op(static, attrs)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        static_out = call_op(static, attrs)
    fresh, _ = make_inputs(SHAPES["stage-like-14x14-P49"], dtype, device="cuda", seed=2)
    for s, f in zip(static, fresh):
        s.copy_(f)
    graph.replay()
    torch.cuda.synchronize()
    stats = error_stats(reference(fresh, attrs), static_out)
    tol = FP32_TOL if dtype == torch.float32 else FP16_TOL
    assert stats.relative <= tol, f"replayed graph {dtype}: {stats}"


@needs_cuda
def test_fused_model_on_cuda_matches_plain(cuda_op):
    torch.manual_seed(0)
    model = create_model("tiny", img_size=96, attention="fused").eval()
    perturb_(model)
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        reference_cpu = model.set_attention("plain")(x)
        model = model.cuda().set_attention("fused")
        fused = model(x.cuda())
    stats = error_stats(reference_cpu, fused)
    assert stats.relative <= REL_TOL, str(stats)

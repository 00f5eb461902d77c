"""The PyTorch model on every device and in every dtype: float64 reference, meta, autocast,
torch.compile, CUDA graphs, and no host synchronisation or foreign-device tensor after the first call.

Tests parameterised over the device run on the CPU here and on the GPU where CUDA is visible (the
cuda cases skip with their reason elsewhere); the meta device stands in for an accelerator on the
CPU: a second forward there must not touch a tensor on another device nor ask for a value.
"""

from __future__ import annotations

import copy
import time

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from transnext_deploy import create_model, list_models
from transnext_deploy.models.transnext import TransNeXt, TransNeXtConfig
from transnext_deploy.compare import error_stats

from helpers import perturb_

# Every output vs the same model in float64 on the CPU: max|diff| / max|ref|.
DTYPE_TOL = {torch.float32: 1e-5, torch.float16: 1e-2, torch.bfloat16: 5e-2}
DTYPES = (torch.float16, torch.float64, torch.bfloat16, torch.float32)
IMPLS = ("fast", "plain")

CUDA = pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device visible"))
# Lower precision of autocast per device type (both are checked on each).
AUTOCAST_DTYPES = (torch.bfloat16, torch.float16)


def flat(out) -> torch.Tensor:
    """A classifier's logits or a backbone's four stages as one (B, -1) float64 CPU tensor."""
    outs = [out] if isinstance(out, torch.Tensor) else list(out)
    return torch.cat([o.detach().to("cpu", torch.float64).flatten(1) for o in outs], dim=1)


def assert_close(ref, out, tol, what):
    stats = error_stats(flat(ref), flat(out))
    assert stats.relative <= tol, f"{what}: {stats} exceeds relative tolerance {tol}"
    return stats


def build(name, size, backbone, implementation, seed=0, **kwargs) -> TransNeXt:
    torch.manual_seed(seed)
    model = create_model(name, img_size=size, backbone=backbone, attention=implementation, **kwargs).eval()
    perturb_(model, seed=seed)
    return model


@pytest.fixture
def ieee_fp32():
    """float32 on CUDA means float32: no TF32 in convolutions or matmuls during the test."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


# ---------------------------------------------------------------------------------------------
# every variant, implementation and mode on the meta device, in every dtype


@pytest.mark.parametrize("backbone", [False, True], ids=["classifier", "backbone"])
@pytest.mark.parametrize("implementation", IMPLS)
@pytest.mark.parametrize("name", list_models())
def test_every_variant_runs_on_meta_in_every_dtype(name, implementation, backbone):
    """Built under `torch.device("meta")` (no weights computed), then moved to a dtype: every per-grid
    constant must follow, or an op meets a CPU or float32 tensor. Classifier and backbone share every
    block, so each takes two of the four dtypes (a meta forward of base costs ~0.6 s of Python)."""
    with torch.device("meta"):
        model = create_model(name, backbone=backbone, attention=implementation).eval()
    h, w = model.img_size
    for dtype in DTYPES[2:] if backbone else DTYPES[:2]:
        model.to(dtype)
        with torch.no_grad():
            out = model(torch.empty(2, 3, h, w, device="meta", dtype=dtype))
        outs = out if backbone else [out]
        assert all(o.device.type == "meta" and o.dtype == dtype for o in outs), (dtype, [o.dtype for o in outs])
        assert [o.shape[0] for o in outs] == [2] * len(outs)


# ---------------------------------------------------------------------------------------------
# after the first call: nothing on another device, no host synchronisation


HOST_SYNC_OPS = {torch.ops.aten._local_scalar_dense, torch.ops.aten.equal, torch.ops.aten.is_nonzero,
                 torch.ops.aten.item, torch.ops.aten.allclose}


class StaysOnDevice(TorchDispatchMode):
    """Fails the first op that reads a value back to the host or touches a tensor on another device
    (a per-call host-to-device copy or a constant created on the CPU)."""

    def __init__(self, device: str):
        super().__init__()
        self.device = torch.device(device)
        self.ops = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        self.ops += 1
        if func.overloadpacket in HOST_SYNC_OPS:
            raise AssertionError(f"{func} reads a value back to the host")
        self._check(func, "input", (args, kwargs))
        out = func(*args, **kwargs)
        self._check(func, "output", out)
        return out

    def _check(self, func, what, tree):
        for t in tree_leaves(tree):
            if isinstance(t, torch.Tensor) and t.device != self.device:
                raise AssertionError(f"{func} has an {what} on {t.device}, not {self.device}")


def test_the_device_guard_sees_syncs_copies_and_cpu_constants():
    x = torch.ones(4, device="meta")
    for fn, message in [(lambda: torch.equal(x, x), "reads a value"),
                        (lambda: x.sum().item(), "reads a value"),
                        (lambda: x * torch.ones(4), "on cpu"),
                        (lambda: torch.arange(4).to("meta"), "on cpu")]:
        with pytest.raises(AssertionError, match=message), StaysOnDevice("meta"):
            fn()


@pytest.mark.parametrize("implementation", IMPLS)
@pytest.mark.parametrize("name,size,backbone,position_bias", [
    ("micro", 64, False, "extrapolate"),
    ("micro", (97, 131), True, "extrapolate"),  # no stage grid divides into its pool grid
    ("micro", (72, 104), True, "interpolate"),
    ("micro_AAAA", (128, 96), True, "extrapolate"),
])
def test_second_call_stays_on_the_device_and_never_waits_for_it(name, size, backbone, position_bias,
                                                                 implementation):
    """What CUDA-graph capture needs, checked on the meta device: the first call at a size may build
    its tables; the second runs only ops on the input's device and never reads a value back."""
    model = create_model(name, img_size=size, backbone=backbone, position_bias=position_bias,
                         attention=implementation).eval().to("meta")
    hw = (size, size) if isinstance(size, int) else size
    x = torch.empty(1, 3, *hw, device="meta")
    for dtype in (torch.float32, torch.float16):
        model.to(dtype)
        with torch.no_grad():
            model(x.to(dtype))
            guard = StaysOnDevice("meta")
            with guard:
                model(x.to(dtype))
        assert guard.ops > 100  # the guard saw the forward


# ---------------------------------------------------------------------------------------------
# float32, float16, bfloat16 and autocast against float64


def _dtype_cases():
    cases = []
    for device in ("cpu", "cuda"):
        marks = CUDA.marks if device == "cuda" else ()
        # Every variant where a GPU makes it cheap; on the CPU the two kinds of last stage (full and
        # aggregated attention): the other variants differ from micro in widths and depths only.
        names = list_models() if device == "cuda" else ["micro", "micro_AAAA"]
        for name in names:
            cases.append(pytest.param(device, name, 64, False, marks=marks, id=f"{device}-{name}-classifier"))
        # non-square, and pool grids that do not divide the stage grids (stage 1: 10x17 tokens, pool 1x2).
        # Kept small: float16 and float64 convolutions are slow on the CPU.
        cases.append(pytest.param(device, "micro", (40, 68), True, marks=marks, id=f"{device}-micro-backbone"))
    return cases


@pytest.mark.parametrize("implementation", IMPLS)
@pytest.mark.parametrize("device,name,size,backbone", _dtype_cases())
def test_every_dtype_and_autocast_match_float64(device, name, size, backbone, implementation, ieee_fp32):
    """`model.to(device, dtype)` for float32, float16 and bfloat16, and float32 weights under autocast
    to either lower precision, against the same weights in float64 on the CPU."""
    model = build(name, size, backbone, implementation)
    weights = copy.deepcopy(model.state_dict())  # every conversion starts from these, not from the last dtype
    hw = (size, size) if isinstance(size, int) else size
    x = torch.randn(1, 3, *hw)
    with torch.no_grad():
        reference = copy.deepcopy(model).to(torch.float64)(x.to(torch.float64))
        for dtype in (torch.float32, torch.float16, torch.bfloat16):
            model.to(device, dtype).load_state_dict(weights)
            out = model(x.to(device, dtype))
            assert (out if isinstance(out, torch.Tensor) else out[0]).dtype == dtype
            assert_close(reference, out, DTYPE_TOL[dtype], f"{name} {implementation} {dtype} on {device}")
        model.to(device, torch.float32).load_state_dict(weights)
        for dtype in AUTOCAST_DTYPES:
            with torch.autocast(device, dtype=dtype):
                out = model(x.to(device))
            assert_close(reference, out, DTYPE_TOL[dtype], f"{name} {implementation} autocast {dtype} on {device}")


def test_dtype_round_trips_keep_the_constants_and_add_no_state():
    """Per-grid constants are copied from float32 originals: after .half() and .double(), a float32
    model computes what a fresh model with the same (rounded) weights computes, and no dtype or
    device adds anything to the state dict."""
    model = build("micro", (40, 68), True, "fast")
    x = torch.randn(1, 3, 40, 68)
    keys = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    with torch.no_grad():
        model.half()(x.half())
        model.to(torch.float64)(torch.randn(1, 3, 32, 48, dtype=torch.float64))  # a new size, built in float64
        out = model.float()(x)
        fresh = create_model("micro", img_size=(40, 68), backbone=True).eval()
        fresh.load_state_dict(model.state_dict())
        expected = fresh(x)
    for a, b in zip(expected, out):
        assert torch.equal(a, b)
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == keys
    assert not list(model.buffers())


def test_a_model_built_on_meta_loads_weights_and_runs():
    """`with torch.device("meta")` construction, then to_empty + load_state_dict: the large-model
    loading pattern, which needs the geometry built on the CPU whatever the default device."""
    reference = build("micro", 64, False, "fast")
    with torch.device("meta"):
        model = create_model("micro", img_size=64)
    model.to_empty(device="cpu").load_state_dict(reference.state_dict())
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model.eval()(x), reference(x))


# ---------------------------------------------------------------------------------------------
# torch.compile and CUDA graphs


def small_config() -> TransNeXtConfig:
    """Micro's stage layout with one narrow block per stage: every kind of block, a short compile."""
    return TransNeXtConfig((16, 32, 64, 128), (1, 2, 4, 8), (1, 1, 1, 1))


@pytest.mark.parametrize("implementation", IMPLS)
def test_compiles_as_one_graph(implementation):
    """torch.compile(fullgraph=True) fails on any graph break. The aot_eager backend runs Dynamo and
    AOTAutograd (fake tensors: no data-dependent op passes) without Inductor's code generation, which
    takes minutes on two cores. The compiled call is the model's first: construction built the
    geometry of its img_size, here with pool grids that do not divide the stage grids."""
    torch.manual_seed(0)
    model = TransNeXt(small_config(), img_size=(72, 104), backbone=True, attention=implementation).eval()
    perturb_(model)
    x = torch.randn(2, 3, 72, 104)
    with torch.no_grad():
        start = time.perf_counter()
        out = torch.compile(model, fullgraph=True, backend="aot_eager")(x)
        seconds = time.perf_counter() - start
        reference = model(x)
    stats = assert_close(reference, out, DTYPE_TOL[torch.float32], f"compiled {implementation}")
    print(f"compiled {implementation} in {seconds:.1f} s; {stats}")


@pytest.mark.parametrize("implementation", IMPLS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["float32", "float16"])
@pytest.mark.parametrize("device", [CUDA])
def test_cuda_graph_capture_replays_the_model(device, dtype, implementation, ieee_fp32):
    """Warm up on a side stream (the first call builds the tables), capture one forward, replay it on
    new input copied into the captured one: the result matches float64 on the CPU."""
    model = build("micro", (96, 160), True, implementation)
    x1, x2 = torch.randn(2, 2, 3, 96, 160).unbind(0)
    with torch.no_grad():
        reference = copy.deepcopy(model).to(torch.float64)(x2.to(torch.float64))
        model.to(device, dtype)
        static_x = x1.to(device, dtype)
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(2):
                model(static_x)
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            static_out = model(static_x)
        static_x.copy_(x2.to(device, dtype))
        graph.replay()
        torch.cuda.synchronize()
    assert_close(reference, static_out, DTYPE_TOL[dtype], f"CUDA graph {implementation} {dtype}")

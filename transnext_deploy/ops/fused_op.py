"""`torch.ops.transnext.aggregated_attention`: the fused aggregated-attention op as a PyTorch op.

Importing this module registers the op (once per process; importing it again is harmless):

    torch.ops.transnext.aggregated_attention(query, key_value, pooled_key_value, query_embedding,
        temperature_scale, local_bias, learnable_tokens, learnable_bias, pool_bias,
        num_heads, height, width, window_size, pool_height, pool_width) -> Tensor

The nine tensors in contract order (`INPUT_NAMES`), then the six integers in `ATTRIBUTE_NAMES`
order; shapes and math are those of the op contract (plugins/aggregated_attention/README.md) and of
`aggregated_attention_core`, its PyTorch decomposition. All nine tensors must share the query's
dtype and device (cast parameters at the call site: under autocast the projections are float16
while parameters stay float32). The output is (B, N, C), contiguous.

Implementations:
  CUDA   float32 and float16: the plugin's CUDA kernel, through the C API of libtransnext_aa_cuda.so
         (built by `transnext-deploy build-plugin --target cuda`; `$TRANSNEXT_AA_CUDA_LIBRARY`
         names another file), loaded with ctypes, so nothing depends on PyTorch's C++ ABI. It is
         launched on the current stream and never synchronises, so it can be captured in a CUDA
         graph (call it once before capturing, as for any kernel). When the library is missing the
         call raises `CudaLibraryError` (one line naming the build command). bfloat16 and float64
         have no kernel and run the decomposition.
  CPU    float32 and float16: the host library (libtransnext_aa_host.so, the same arithmetic as the
         kernel, on zero-copy numpy views), built with CMake on first use. Where it cannot be built
         (no cmake or C++ compiler) the op runs the decomposition instead, warns once and
         `implementation("cpu")` says why. Other dtypes run the decomposition.
  other devices: the decomposition.
  fake (meta): shape checks and an empty (B, N, C) result, for torch.compile and the meta device.
  autograd: the backward pass differentiates the decomposition (recomputed from the saved inputs),
         so the op also trains; it is written for inference speed, not backward speed.
"""

from __future__ import annotations

import ctypes
import math
import os
import threading
import warnings
from pathlib import Path

import torch

from ..artifacts import CUDA_LIBRARY_ENV, LIBRARY_FILES
from ..errors import InvalidArgumentError, TransNeXtDeployError, one_line
from .contract import ATTRIBUTE_NAMES, INPUT_NAMES, input_shapes
from .aggregated_attention import aggregated_attention_core

TORCH_NAMESPACE = "transnext"  # torch.ops.transnext
TORCH_OP_NAME = "aggregated_attention"  # torch.ops.transnext.aggregated_attention (the ONNX op name: contract.OP_NAME)
QUALIFIED_NAME = f"{TORCH_NAMESPACE}::{TORCH_OP_NAME}"
SCHEMA = "(" + ", ".join([f"Tensor {n}" for n in INPUT_NAMES] + [f"int {n}" for n in ATTRIBUTE_NAMES]) + ") -> Tensor"

KERNEL_DTYPES = (torch.float32, torch.float16)
_DTYPE_CODES = {torch.float32: 0, torch.float16: 1}  # TRANSNEXT_AA_DTYPE_* of aggregatedAttentionCuda.h
CUDA_ABI_VERSION = 1  # TRANSNEXT_AA_CUDA_ABI_VERSION
BUILD_COMMAND = "transnext-deploy build-plugin --target cuda"


class CudaLibraryError(TransNeXtDeployError):
    """The CUDA kernel library is missing, stale or refused a call; str() is one line."""


# ---------------------------------------------------------------------------------------------
# input checks (every implementation, the fake one included)


def check_inputs(tensors: list[torch.Tensor], attrs: dict[str, int]) -> None:
    """Raise InvalidArgumentError (a ValueError, one line) unless the nine tensors and six attributes fit the contract."""
    for name, value in attrs.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InvalidArgumentError(f"{name} must be an int >= 1, got {value!r}")
    if attrs["window_size"] % 2 == 0:
        raise InvalidArgumentError(f"window_size must be odd, got {attrs['window_size']}")
    query = tensors[0]
    if query.dim() != 3:
        raise InvalidArgumentError(f"query must have shape (B, N, C), got {tuple(query.shape)}")
    B, N, C = query.shape
    nh, H, W = attrs["num_heads"], attrs["height"], attrs["width"]
    if N != H * W:
        raise InvalidArgumentError(f"query has N={N} tokens but height*width = {H}*{W} = {H * W}")
    if C % nh != 0:
        raise InvalidArgumentError(f"channels C={C} are not divisible by num_heads={nh}")
    expected = input_shapes(B, C // nh, **attrs)
    for name, t in zip(INPUT_NAMES, tensors):
        if t.dtype != query.dtype:
            raise InvalidArgumentError(f"{name} has dtype {t.dtype}, expected {query.dtype} like query: all inputs share one "
                             "dtype (cast the parameters to the query's dtype)")
        if t.device != query.device:
            raise InvalidArgumentError(f"{name} is on {t.device}, query on {query.device}: all inputs must be on one device")
        if tuple(t.shape) != expected[name]:
            raise InvalidArgumentError(f"{name} has shape {tuple(t.shape)}, expected {expected[name]}")


def _decomposition(tensors: list[torch.Tensor], attrs: dict[str, int]) -> torch.Tensor:
    return aggregated_attention_core(*tensors, **attrs).contiguous()


# ---------------------------------------------------------------------------------------------
# the CUDA kernel library (C API of aggregatedAttentionCuda.h)

_LOCK = threading.Lock()
_CUDA_LIBS: dict[str, ctypes.CDLL] = {}
_MESSAGES = threading.local()


def cuda_library_path() -> Path:
    """The library the CUDA implementation loads: $TRANSNEXT_AA_CUDA_LIBRARY, else the build directory
    of `transnext-deploy build-plugin`. Raises CudaLibraryError (one line) when there is none."""
    from ..plugin.locations import default_build_dir, find_cuda_library

    env = os.environ.get(CUDA_LIBRARY_ENV)
    if env:
        path = Path(env).expanduser()
        if not path.is_file():
            raise CudaLibraryError(f"${CUDA_LIBRARY_ENV}={env} is not a file: unset it or point it at "
                                   f"{LIBRARY_FILES['cuda_api']} (built by `{BUILD_COMMAND}`)")
        return path.resolve()
    found = find_cuda_library()
    if found is None:
        raise CudaLibraryError(
            f"torch.ops.{TORCH_NAMESPACE}.{TORCH_OP_NAME} on CUDA needs the kernel library "
            f"{LIBRARY_FILES['cuda_api']}, which is not built (looked in {default_build_dir()}): run `{BUILD_COMMAND}` (add --cuda-arch for this GPU, "
            f"e.g. 90 for an H100) or set ${CUDA_LIBRARY_ENV}")
    return found


def load_cuda_library(path: str | os.PathLike | None = None) -> ctypes.CDLL:
    """Load (once) and check the CUDA kernel library; `path` defaults to cuda_library_path()."""
    key = str(Path(path).resolve() if path is not None else cuda_library_path())
    with _LOCK:
        lib = _CUDA_LIBS.get(key)
        if lib is not None:
            return lib
        try:
            lib = ctypes.CDLL(key)
            version = lib.transnext_aa_cuda_abi_version()
        except (OSError, AttributeError) as exc:
            raise CudaLibraryError(f"cannot load {key}: {one_line(exc)}: rebuild it with "
                                   f"`{BUILD_COMMAND}`") from None
        if version != CUDA_ABI_VERSION:
            raise CudaLibraryError(f"{key} has C API version {version}, this package expects {CUDA_ABI_VERSION}: "
                                   f"rebuild it with `{BUILD_COMMAND}`")
        i64, vp = ctypes.c_int64, ctypes.c_void_p
        lib.transnext_aa_cuda_validate.restype = ctypes.c_int32
        lib.transnext_aa_cuda_validate.argtypes = [*([i64] * 8), ctypes.c_char_p, i64]
        lib.transnext_aa_cuda_forward.restype = ctypes.c_int32
        lib.transnext_aa_cuda_forward.argtypes = [ctypes.c_int32, *([vp] * 10), *([i64] * 8), vp, ctypes.c_char_p, i64]
        _CUDA_LIBS[key] = lib
        return lib


def _message_buffer() -> ctypes.Array:
    buf = getattr(_MESSAGES, "buffer", None)
    if buf is None:
        buf = _MESSAGES.buffer = ctypes.create_string_buffer(512)
    return buf


def _forward_cuda(tensors: list[torch.Tensor], attrs: dict[str, int]) -> torch.Tensor:
    lib = load_cuda_library()  # first: a missing library is reported before any device work
    query = tensors[0]
    B, N, C = query.shape
    out = torch.empty((B, N, C), dtype=query.dtype, device=query.device)
    if B == 0:
        return out
    tensors = [t.contiguous() for t in tensors]
    buf = _message_buffer()
    with torch.cuda.device(query.device):
        stream = torch.cuda.current_stream(query.device).cuda_stream
        code = lib.transnext_aa_cuda_forward(
            _DTYPE_CODES[query.dtype], *[t.data_ptr() for t in tensors], out.data_ptr(), B, C,
            *(attrs[n] for n in ATTRIBUTE_NAMES), stream, buf, len(buf))
    if code != 0:
        message = buf.value.decode(errors="replace")
        if "NoKernelImageForDevice" in message:
            major, minor = torch.cuda.get_device_capability(query.device)
            message += f": rebuild for this GPU with `{BUILD_COMMAND} --cuda-arch {major}{minor}`"
        raise CudaLibraryError(f"{QUALIFIED_NAME} (CUDA, status {code}): {message}")
    return out


# ---------------------------------------------------------------------------------------------
# the host (CPU) library

_HOST: dict[str, object] = {}  # "path": Path or None, "reason": str
_HOST_LOCK = threading.Lock()


def _host_library() -> Path | None:
    """The host library, built on first use; None (and a recorded reason) where it cannot be built."""
    with _HOST_LOCK:
        if "path" in _HOST:
            return _HOST["path"]  # type: ignore[return-value]
        from ..plugin.build import ensure_host_library
        from ..plugin.toolchain import PluginBuildError

        try:
            _HOST["path"] = ensure_host_library()
        except (PluginBuildError, OSError) as exc:
            _HOST["path"] = None
            _HOST["reason"] = one_line(exc)
            warnings.warn(f"{QUALIFIED_NAME}: the CPU host library cannot be built ({_HOST['reason']}); running the "
                          "PyTorch decomposition instead", RuntimeWarning, stacklevel=3)
        return _HOST["path"]  # type: ignore[return-value]


def _forward_host(tensors: list[torch.Tensor], attrs: dict[str, int], library: Path) -> torch.Tensor:
    from .host import aggregated_attention_host

    query = tensors[0]
    if query.shape[0] == 0:
        return torch.empty(query.shape, dtype=query.dtype)
    arrays = [t.detach().contiguous().numpy() for t in tensors]  # views, no copies of contiguous tensors
    out = aggregated_attention_host(*arrays, **attrs, num_threads=torch.get_num_threads(), library=library)
    return torch.from_numpy(out)


def implementation(device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> str:
    """One line: what the op runs here for tensors of `device` and `dtype` (never raises; on the
    CPU it may build the host library first)."""
    device = torch.device(device)
    if dtype not in KERNEL_DTYPES:
        return f"decomposition (aggregated_attention_core): no kernel for {dtype}"
    if device.type == "cuda":
        if not torch.cuda.is_available():
            return f"not available: torch {torch.__version__} sees no CUDA device"
        try:
            path = cuda_library_path()
            load_cuda_library(path)
        except CudaLibraryError as exc:
            return f"not available: {exc}"
        return f"CUDA kernel ({path})"
    if device.type == "cpu":
        path = _host_library()
        if path is None:
            return f"decomposition (aggregated_attention_core): the host library cannot be built: {_HOST['reason']}"
        return f"host library ({path})"
    if device.type == "meta":
        return "fake (shapes only)"
    return f"decomposition (aggregated_attention_core): no kernel for {device.type}"


# ---------------------------------------------------------------------------------------------
# traffic model (for effective-bandwidth figures)


def kernel_traffic_bytes(batch: int, height: int, width: int, channels: int, num_heads: int, window_size: int,
                         pool_height: int, pool_width: int, element_size: int) -> int:
    """Global-memory bytes one call reads and writes, per the traffic model in the comment of
    aggregatedAttentionKernel.cu: query, key_value and the output once, each block of 128 queries
    reading its batch element's pooled keys/values, pool_bias once per batch element, the
    parameters once."""
    B, N, C, nh = batch, height * width, channels, num_heads
    P, L, d = pool_height * pool_width, window_size * window_size, channels // num_heads
    blocks = math.ceil(N / 128)
    elements = (B * N * C  # query
                + B * N * 2 * C  # key_value
                + B * P * 2 * C * blocks  # pooled key_value, per block of 128 queries (L2-resident)
                + B * nh * N * P  # pool_bias, once per batch element
                + nh * (d + 1 + 2 * L + d * L)  # parameters
                + B * N * C)  # output
    return elements * element_size


# ---------------------------------------------------------------------------------------------
# registration


def _attrs(num_heads, height, width, window_size, pool_height, pool_width) -> dict[str, int]:
    return dict(zip(ATTRIBUTE_NAMES, (num_heads, height, width, window_size, pool_height, pool_width)))


def _registered() -> bool:
    return hasattr(getattr(torch.ops, TORCH_NAMESPACE), TORCH_OP_NAME)


def _register() -> None:
    @torch.library.custom_op(QUALIFIED_NAME, mutates_args=(), schema=SCHEMA)
    def op(query: torch.Tensor, key_value: torch.Tensor, pooled_key_value: torch.Tensor,
           query_embedding: torch.Tensor, temperature_scale: torch.Tensor, local_bias: torch.Tensor,
           learnable_tokens: torch.Tensor, learnable_bias: torch.Tensor, pool_bias: torch.Tensor, num_heads: int,
           height: int, width: int, window_size: int, pool_height: int, pool_width: int) -> torch.Tensor:
        # Devices without a kernel of their own.
        tensors = [query, key_value, pooled_key_value, query_embedding, temperature_scale, local_bias,
                   learnable_tokens, learnable_bias, pool_bias]
        attrs = _attrs(num_heads, height, width, window_size, pool_height, pool_width)
        check_inputs(tensors, attrs)
        return _decomposition(tensors, attrs)

    @op.register_kernel("cpu")
    def _cpu(query, key_value, pooled_key_value, query_embedding, temperature_scale, local_bias, learnable_tokens,
             learnable_bias, pool_bias, num_heads, height, width, window_size, pool_height, pool_width):
        tensors = [query, key_value, pooled_key_value, query_embedding, temperature_scale, local_bias,
                   learnable_tokens, learnable_bias, pool_bias]
        attrs = _attrs(num_heads, height, width, window_size, pool_height, pool_width)
        check_inputs(tensors, attrs)
        library = _host_library() if query.dtype in KERNEL_DTYPES else None
        if library is None:
            return _decomposition(tensors, attrs)
        return _forward_host(tensors, attrs, library)

    @op.register_kernel("cuda")
    def _cuda(query, key_value, pooled_key_value, query_embedding, temperature_scale, local_bias, learnable_tokens,
              learnable_bias, pool_bias, num_heads, height, width, window_size, pool_height, pool_width):
        tensors = [query, key_value, pooled_key_value, query_embedding, temperature_scale, local_bias,
                   learnable_tokens, learnable_bias, pool_bias]
        attrs = _attrs(num_heads, height, width, window_size, pool_height, pool_width)
        check_inputs(tensors, attrs)
        if query.dtype not in KERNEL_DTYPES:
            return _decomposition(tensors, attrs)
        return _forward_cuda(tensors, attrs)

    @op.register_fake
    def _fake(query, key_value, pooled_key_value, query_embedding, temperature_scale, local_bias, learnable_tokens,
              learnable_bias, pool_bias, num_heads, height, width, window_size, pool_height, pool_width):
        check_inputs([query, key_value, pooled_key_value, query_embedding, temperature_scale, local_bias,
                      learnable_tokens, learnable_bias, pool_bias],
                     _attrs(num_heads, height, width, window_size, pool_height, pool_width))
        return query.new_empty(query.shape)

    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(*inputs[:len(INPUT_NAMES)])
        ctx.attrs = _attrs(*inputs[len(INPUT_NAMES):])

    def backward(ctx, grad_output):
        saved = [t.detach().requires_grad_(needs) for t, needs in zip(ctx.saved_tensors, ctx.needs_input_grad)]
        with torch.enable_grad():
            out = aggregated_attention_core(*saved, **ctx.attrs)
        wanted = [t for t in saved if t.requires_grad]
        grads = iter(torch.autograd.grad(out, wanted, grad_output, allow_unused=True) if wanted else ())
        return (*(next(grads) if t.requires_grad else None for t in saved), *([None] * len(ATTRIBUTE_NAMES)))

    op.register_autograd(backward, setup_context=setup_context)


def ensure_registered() -> None:
    """Register torch.ops.transnext.aggregated_attention unless it already is (idempotent)."""
    with _LOCK:
        if not _registered():
            _register()


ensure_registered()

aggregated_attention = getattr(getattr(torch.ops, TORCH_NAMESPACE), TORCH_OP_NAME)

__all__ = [
    "BUILD_COMMAND",
    "CudaLibraryError",
    "KERNEL_DTYPES",
    "QUALIFIED_NAME",
    "SCHEMA",
    "aggregated_attention",
    "check_inputs",
    "cuda_library_path",
    "ensure_registered",
    "implementation",
    "kernel_traffic_bytes",
    "load_cuda_library",
]

"""ctypes binding of the aggregated-attention host library (the TensorRT plugin's CPU reference).

`aggregated_attention_host(...)` runs the C++ arithmetic of
plugins/aggregated_attention/aggregatedAttentionMath.h -- the same source the CUDA kernel is
compiled from -- on numpy arrays (float32 or float16). Shapes are checked here with clear
ValueErrors before any pointer reaches C; the library checks the sizes again.
"""

from __future__ import annotations

import ctypes
import os
import threading
from pathlib import Path

import numpy as np

from .ops.aggregated_attention import INPUT_NAMES, input_shapes

_LIB_LOCK = threading.Lock()
_LIBS: dict[str, ctypes.CDLL] = {}

_ERROR_NAMES = {
    1: "null pointer",
    2: "bad attribute",
    3: "bad shape",
    4: "limit exceeded",
    5: "internal error",
}


class HostLibraryError(RuntimeError):
    """The host library rejected a call; `code` is its TRANSNEXT_AA_ERR_* value."""

    def __init__(self, code: int, message: str):
        super().__init__(f"{_ERROR_NAMES.get(code, 'error')} ({code}): {message}")
        self.code = code
        self.message = message


def _declare(lib: ctypes.CDLL) -> ctypes.CDLL:
    i64, i32, cp = ctypes.c_int64, ctypes.c_int32, ctypes.c_char_p
    vp = ctypes.c_void_p
    sizes = [i64] * 8
    lib.transnext_aa_host_abi_version.restype = i32
    lib.transnext_aa_host_abi_version.argtypes = []
    lib.transnext_aa_max_head_dim.restype = i32
    lib.transnext_aa_max_head_dim.argtypes = []
    lib.transnext_aa_max_window_size.restype = i32
    lib.transnext_aa_max_window_size.argtypes = []
    lib.transnext_aa_validate.restype = i32
    lib.transnext_aa_validate.argtypes = [*sizes, cp, i64]
    for name in ("transnext_aa_forward_f32", "transnext_aa_forward_f16"):
        fn = getattr(lib, name)
        fn.restype = i32
        fn.argtypes = [*([vp] * 10), *sizes, i32, cp, i64]
    lib.transnext_aa_float_to_half.restype = ctypes.c_uint16
    lib.transnext_aa_float_to_half.argtypes = [ctypes.c_float]
    lib.transnext_aa_half_to_float.restype = ctypes.c_float
    lib.transnext_aa_half_to_float.argtypes = [ctypes.c_uint16]
    return lib


ABI_VERSION = 1


def load_host_library(path: str | os.PathLike | None = None) -> ctypes.CDLL:
    """Load (and cache) libtransnext_aa_host.so; built on first use when `path` is None."""
    if path is None:
        from .plugin_build import ensure_host_library

        path = ensure_host_library()
    key = str(Path(path).resolve())
    with _LIB_LOCK:
        lib = _LIBS.get(key)
        if lib is None:
            lib = _declare(ctypes.CDLL(key))
            version = lib.transnext_aa_host_abi_version()
            if version != ABI_VERSION:
                raise HostLibraryError(5, f"{key} has C API version {version}, expected {ABI_VERSION}: rebuild it")
            _LIBS[key] = lib
        return lib


def validate_sizes(
    batch: int,
    channels: int,
    *,
    num_heads: int,
    height: int,
    width: int,
    window_size: int,
    pool_height: int,
    pool_width: int,
    library: str | os.PathLike | ctypes.CDLL | None = None,
) -> tuple[int, str]:
    """The library's own size check: (status code, message); 0 means accepted."""
    lib = library if isinstance(library, ctypes.CDLL) else load_host_library(library)
    buf = ctypes.create_string_buffer(512)
    code = lib.transnext_aa_validate(batch, channels, num_heads, height, width, window_size, pool_height, pool_width, buf, len(buf))
    return int(code), buf.value.decode(errors="replace")


def aggregated_attention_host(
    query,
    key_value,
    pooled_key_value,
    query_embedding,
    temperature_scale,
    local_bias,
    learnable_tokens,
    learnable_bias,
    pool_bias,
    *,
    num_heads: int,
    height: int,
    width: int,
    window_size: int,
    pool_height: int,
    pool_width: int,
    num_threads: int = 1,
    library: str | os.PathLike | None = None,
) -> np.ndarray:
    """Run the op on the CPU through the host library; returns (B, N, C) of the inputs' dtype."""
    arrays = [query, key_value, pooled_key_value, query_embedding, temperature_scale, local_bias,
              learnable_tokens, learnable_bias, pool_bias]
    arrays = [np.asarray(a) for a in arrays]
    dtype = arrays[0].dtype
    if dtype not in (np.float32, np.float16):
        raise ValueError(f"query must be float32 or float16, got {dtype}")
    for name, a in zip(INPUT_NAMES, arrays):
        if a.dtype != dtype:
            raise ValueError(f"{name} has dtype {a.dtype}, expected {dtype} like query (all inputs share one type)")
    for key, value in dict(num_heads=num_heads, height=height, width=width, window_size=window_size,
                           pool_height=pool_height, pool_width=pool_width).items():
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise ValueError(f"{key} must be an int, got {value!r}")
        if value < 1:
            raise ValueError(f"{key} must be >= 1, got {value}")
    if window_size % 2 == 0:
        raise ValueError(f"window_size must be odd, got {window_size}")
    if arrays[0].ndim != 3:
        raise ValueError(f"query must have shape (B, N, C), got {arrays[0].shape}")
    B, N, C = (int(x) for x in arrays[0].shape)
    if N != height * width:
        raise ValueError(f"query has N={N} tokens but height*width = {height}*{width} = {height * width}")
    if C % num_heads != 0:
        raise ValueError(f"channels C={C} is not divisible by num_heads={num_heads}")
    nh = int(num_heads)
    expected = input_shapes(B, C // nh, num_heads=nh, height=height, width=width, window_size=window_size,
                            pool_height=pool_height, pool_width=pool_width)
    for name, a in zip(INPUT_NAMES, arrays):
        if tuple(a.shape) != expected[name]:
            raise ValueError(f"{name} has shape {tuple(a.shape)}, expected {expected[name]}")

    lib = load_host_library(library)
    arrays = [np.ascontiguousarray(a) for a in arrays]
    out = np.empty((B, N, C), dtype=dtype)
    buf = ctypes.create_string_buffer(512)
    fn = lib.transnext_aa_forward_f32 if dtype == np.float32 else lib.transnext_aa_forward_f16
    pointers = [a.ctypes.data_as(ctypes.c_void_p) for a in arrays]
    code = fn(*pointers, out.ctypes.data_as(ctypes.c_void_p), B, C, nh, height, width, window_size,
              pool_height, pool_width, int(num_threads), buf, len(buf))
    if code != 0:
        raise HostLibraryError(int(code), buf.value.decode(errors="replace"))
    return out


def float_to_half_bits(values, library: str | os.PathLike | None = None) -> np.ndarray:
    """The library's float32 -> binary16 conversion (round to nearest even), elementwise."""
    lib = load_host_library(library)
    flat = np.asarray(values, dtype=np.float32).ravel()
    return np.array([lib.transnext_aa_float_to_half(float(v)) for v in flat], dtype=np.uint16)


__all__ = [
    "HostLibraryError",
    "aggregated_attention_host",
    "float_to_half_bits",
    "load_host_library",
    "validate_sizes",
]

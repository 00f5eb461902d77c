"""ctypes binding of the aggregated-attention host library (libtransnext_aa_host.so).

`aggregated_attention_host(...)` runs the op on the CPU on numpy arrays (float32 or float16), by
default through the library's fast kernel (blocks of queries, vectorised, persistent threads);
`path="reference"` runs the per-query arithmetic of
plugins/aggregated_attention/aggregatedAttentionMath.h -- the same source the CUDA kernel is
compiled from -- and `path="portable"` the fast kernel without x86 vector extensions. Shapes and
dtypes are checked here with clear ValueErrors (InvalidArgumentError) before any pointer reaches C; the library checks the
sizes again. The checks are kept cheap: the op is called once per block and per inference, at
sizes where a few tens of microseconds of Python are a visible share.
"""

from __future__ import annotations

import ctypes
import os
import threading
from pathlib import Path

import numpy as np

from ..errors import InvalidArgumentError, TransNeXtDeployError
from .contract import INPUT_NAMES

_LIB_LOCK = threading.Lock()
_LIBS: dict[str, ctypes.CDLL] = {}  # by resolved path and by the path as given
_DEFAULT: list[ctypes.CDLL] = []  # the library ensure_host_library() gave, once per process
_MESSAGES = threading.local()  # a message buffer per calling thread

# The library's return codes: TRANSNEXT_AA_ERR_<name> of aggregatedAttentionHost.h, the one
# definition (the Status enum of aggregatedAttentionMath.h is tied to it by static_asserts in the
# host and CUDA C APIs, and tests/test_ops_host.py reads the header to tie this table to it).
HOST_STATUS = {
    0: "OK",
    1: "NULL_POINTER",
    2: "BAD_ATTRIBUTE",
    3: "BAD_SHAPE",
    4: "LIMIT_EXCEEDED",
    5: "INTERNAL",
}
STATUS_INTERNAL = 5

# Implementations of the library (TRANSNEXT_AA_PATH_* in aggregatedAttentionHost.h).
PATHS = {"auto": 0, "reference": 1, "portable": 2}

_FLOAT32 = np.dtype(np.float32)
_FLOAT16 = np.dtype(np.float16)


def status_name(code: int) -> str:
    """'bad shape' for TRANSNEXT_AA_ERR_BAD_SHAPE (3); 'error' for a code the header does not define."""
    name = HOST_STATUS.get(code)
    if name is None or code == 0:
        return "error"
    return "internal error" if code == STATUS_INTERNAL else name.lower().replace("_", " ")


class HostLibraryError(TransNeXtDeployError):
    """The host library rejected a call; `code` is its TRANSNEXT_AA_ERR_* value."""

    def __init__(self, code: int, message: str):
        super().__init__(f"{status_name(code)} ({code}): {message}")
        self.code = code
        self.message = message


def _declare(lib: ctypes.CDLL, key: str) -> ctypes.CDLL:
    i64, i32, cp = ctypes.c_int64, ctypes.c_int32, ctypes.c_char_p
    vp = ctypes.c_void_p
    sizes = [i64] * 8
    lib.transnext_aa_host_abi_version.restype = i32
    lib.transnext_aa_host_abi_version.argtypes = []
    version = lib.transnext_aa_host_abi_version()
    if version != ABI_VERSION:
        raise HostLibraryError(STATUS_INTERNAL, f"{key} has C API version {version}, expected {ABI_VERSION}: rebuild it")
    missing = [name for name in ("transnext_aa_forward_f32_path", "transnext_aa_kernel_name") if not hasattr(lib, name)]
    if missing:
        raise HostLibraryError(STATUS_INTERNAL, f"{key} lacks {', '.join(missing)} (built from older sources): rebuild it")
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
    for name in ("transnext_aa_forward_f32_path", "transnext_aa_forward_f16_path"):
        fn = getattr(lib, name)
        fn.restype = i32
        fn.argtypes = [*([vp] * 10), *sizes, i32, i32, cp, i64]
    lib.transnext_aa_kernel_name.restype = cp
    lib.transnext_aa_kernel_name.argtypes = [i32]
    lib.transnext_aa_float_to_half.restype = ctypes.c_uint16
    lib.transnext_aa_float_to_half.argtypes = [ctypes.c_float]
    lib.transnext_aa_half_to_float.restype = ctypes.c_float
    lib.transnext_aa_half_to_float.argtypes = [ctypes.c_uint16]
    return lib


ABI_VERSION = 1


def load_host_library(path: str | os.PathLike | None = None) -> ctypes.CDLL:
    """Load (and cache) libtransnext_aa_host.so; built on first use when `path` is None (the build
    directory's library is checked against its sources once per process)."""
    if path is None:
        if _DEFAULT:
            return _DEFAULT[0]
        from ..plugin.build import ensure_host_library

        lib = load_host_library(ensure_host_library())
        _DEFAULT[:] = [lib]
        return lib
    given = os.fspath(path)
    lib = _LIBS.get(given)
    if lib is not None:
        return lib
    key = str(Path(given).resolve())
    with _LIB_LOCK:
        lib = _LIBS.get(key)
        if lib is None:
            lib = _declare(ctypes.CDLL(key), key)
            _LIBS[key] = lib
        _LIBS[given] = lib
        return lib


def _library(library) -> ctypes.CDLL:
    if isinstance(library, ctypes.CDLL):
        return library
    return load_host_library(library)


def kernel_name(path: str = "auto", library: str | os.PathLike | ctypes.CDLL | None = None) -> str:
    """What `path` runs on this CPU: "avx2", "portable" or "reference"."""
    if path not in PATHS:
        raise InvalidArgumentError(f"path must be one of {', '.join(PATHS)}, got {path!r}")
    return _library(library).transnext_aa_kernel_name(PATHS[path]).decode()


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
    lib = _library(library)
    buf = ctypes.create_string_buffer(512)
    code = lib.transnext_aa_validate(batch, channels, num_heads, height, width, window_size, pool_height, pool_width, buf, len(buf))
    return int(code), buf.value.decode(errors="replace")


# The data address of a contiguous writeable array through the buffer protocol takes a fraction of
# a microsecond; `a.ctypes.data` (used for read-only or empty arrays) a few.
_ADDRESSOF = ctypes.addressof
_FROM_BUFFER = ctypes.c_char.from_buffer


def _attribute(key: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InvalidArgumentError(f"{key} must be an int, got {value!r}")
    if value < 1:
        raise InvalidArgumentError(f"{key} must be >= 1, got {value}")
    return int(value)


# One function, its checks inline, on purpose: it runs once per block and inference, where a few tens
# of microseconds of Python (helper calls, re-validation) are a visible share of the kernel's time.
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
    library: str | os.PathLike | ctypes.CDLL | None = None,
    path: str = "auto",
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Run the op on the CPU through the host library; returns (B, N, C) of the inputs' dtype.

    Contiguous numpy arrays are used in place (no copy); others are made contiguous first.
    `num_threads` > 1 runs on the library's persistent thread pool. `path`: "auto" (the fast
    kernel), "reference" (per-query arithmetic of the CUDA kernel) or "portable" (the fast kernel
    without x86 vector extensions). `out`, when given, is a C-contiguous, writeable array of the
    output's shape and dtype, not overlapping the inputs, that receives the result (and is returned).
    """
    arrays = [a if type(a) is np.ndarray else np.asarray(a) for a in (
        query, key_value, pooled_key_value, query_embedding, temperature_scale, local_bias, learnable_tokens,
        learnable_bias, pool_bias)]
    dtype = arrays[0].dtype
    if dtype != _FLOAT32 and dtype != _FLOAT16:
        raise InvalidArgumentError(f"query must be float32 or float16, got {dtype}")
    nh = _attribute("num_heads", num_heads)
    H = _attribute("height", height)
    W = _attribute("width", width)
    w = _attribute("window_size", window_size)
    ph = _attribute("pool_height", pool_height)
    pw = _attribute("pool_width", pool_width)
    if w % 2 == 0:
        raise InvalidArgumentError(f"window_size must be odd, got {w}")
    code_path = PATHS.get(path)
    if code_path is None:
        raise InvalidArgumentError(f"path must be one of {', '.join(PATHS)}, got {path!r}")
    shape = arrays[0].shape
    if len(shape) != 3:
        raise InvalidArgumentError(f"query must have shape (B, N, C), got {shape}")
    B, N, C = shape
    if N != H * W:
        raise InvalidArgumentError(f"query has N={N} tokens but height*width = {H}*{W} = {H * W}")
    if C % nh != 0:
        raise InvalidArgumentError(f"channels C={C} is not divisible by num_heads={nh}")
    d, P, L = C // nh, ph * pw, w * w
    expected = ((B, N, C), (B, N, 2 * C), (B, P, 2 * C), (nh, d), (nh,), (nh, L), (nh, d, L), (nh, L), (nh, N, P))
    addresses = []
    for k, a in enumerate(arrays):
        if a.dtype != dtype:
            raise InvalidArgumentError(f"{INPUT_NAMES[k]} has dtype {a.dtype}, expected {dtype} like query (all inputs share one type)")
        if a.shape != expected[k]:
            raise InvalidArgumentError(f"{INPUT_NAMES[k]} has shape {tuple(a.shape)}, expected {expected[k]}")
        flags = a.flags
        if not (flags.c_contiguous and flags.aligned):
            a = arrays[k] = np.require(a, requirements=("C", "A"))  # the copy stays alive in `arrays`
            flags = a.flags
        addresses.append(_ADDRESSOF(_FROM_BUFFER(a)) if flags.writeable and a.size else a.ctypes.data)
    if out is None:
        out = np.empty((B, N, C), dtype=dtype)
    elif (type(out) is not np.ndarray or out.dtype != dtype or out.shape != (B, N, C) or not out.flags.c_contiguous
          or not out.flags.writeable):
        raise InvalidArgumentError(f"out must be a writeable C-contiguous {dtype} array of shape {(B, N, C)}")
    addresses.append(_ADDRESSOF(_FROM_BUFFER(out)) if out.size else out.ctypes.data)

    lib = _DEFAULT[0] if library is None and _DEFAULT else _library(library)
    buf = getattr(_MESSAGES, "buffer", None)
    if buf is None:
        buf = _MESSAGES.buffer = ctypes.create_string_buffer(512)
    fn = lib.transnext_aa_forward_f32_path if dtype == _FLOAT32 else lib.transnext_aa_forward_f16_path
    code = fn(*addresses, B, C, nh, H, W, w, ph, pw, int(num_threads), code_path, buf, 512)
    if code != 0:
        raise HostLibraryError(int(code), buf.value.decode(errors="replace"))
    return out


def float_to_half_bits(values, library: str | os.PathLike | None = None) -> np.ndarray:
    """The library's float32 -> binary16 conversion (round to nearest even), elementwise."""
    lib = load_host_library(library)
    flat = np.asarray(values, dtype=np.float32).ravel()
    return np.array([lib.transnext_aa_float_to_half(float(v)) for v in flat], dtype=np.uint16)


__all__ = [
    "HOST_STATUS",
    "HostLibraryError",
    "PATHS",
    "aggregated_attention_host",
    "float_to_half_bits",
    "kernel_name",
    "load_host_library",
    "status_name",
    "validate_sizes",
]

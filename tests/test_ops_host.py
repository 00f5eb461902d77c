"""The op's host (CPU) library (libtransnext_aa_host.so) against PyTorch, for each of its paths.

The library has three paths (`plugin_host.PATHS`):
* "reference": plugins/aggregated_attention/aggregatedAttentionMath.h, the arithmetic the CUDA
  kernel is compiled from, one query at a time;
* "auto": the fast kernel (blocks of queries, vectorised; AVX2 + FMA + F16C where the CPU has
  them), the default of every CPU caller;
* "portable": the fast kernel without x86 vector extensions (what a CPU without AVX2 runs).
Each is compared with
* `aggregated_attention_core` (the project's PyTorch decomposition of the op), and
* `naive_reference` below: an independent float64 transcription of the published step-by-step
  TransNeXt code (unfold of normalised keys and values, masked_fill(-inf) of out-of-image slots,
  one softmax over [local | pooled], learnable tokens added after the softmax),
and the fast paths with the reference path. Every grid below is compared at every pixel, so
corners, edges, 1-pixel-wide images and windows larger than the image are all covered.
"""

from __future__ import annotations

import ctypes
import math
import platform
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from transnext_deploy.ops import aggregated_attention as aa
from transnext_deploy.ops import contract
from transnext_deploy.plugin.build import build_plugin
from transnext_deploy.ops.host import (
    PATHS,
    HostLibraryError,
    aggregated_attention_host,
    float_to_half_bits,
    kernel_name,
    load_host_library,
    validate_sizes,
)

REPO = Path(__file__).resolve().parents[1]
CONTRACT_HEADER = REPO / "plugins" / "aggregated_attention" / "aggregatedAttentionContract.h"
CONTRACT_README = REPO / "plugins" / "aggregated_attention" / "README.md"

# fp32: largest allowed |host - reference| over all outputs (outputs are O(1..20) here).
FP32_ATOL = 1e-5
# fp16 storage: every input is exactly representable in fp16 (rounded beforehand), the arithmetic is
# fp32 and the output is rounded once to nearest even, so |host_f16 - ref| <= half an fp16 ulp of
# the result (2**-11 relative, 2**-25 absolute below the normal range) plus the fp32 deviation.
FP16_RTOL = 2.0**-11
FP16_ATOL = FP32_ATOL + 2.0**-25


@pytest.fixture(scope="session")
def host_lib(tmp_path_factory) -> Path:
    result = build_plugin(targets=("host",), build_dir=tmp_path_factory.mktemp("aa_host_build"), jobs=2)
    return result.libraries["host"]


# ------------------------------------------------------------------------------ references


def naive_reference(inputs, *, num_heads, height, width, window_size, pool_height, pool_width):
    """Published step-by-step math in float64 with F.unfold; shapes as the op's inputs."""
    q, kv, pkv, qe, ts, lbias, ltok, lb, pbias = (t.to(torch.float64) for t in inputs)
    B, N, C = q.shape
    nh, d, w = num_heads, C // num_heads, window_size
    L, P, H, W = w * w, pool_height * pool_width, height, width
    assert pkv.shape[1] == P

    # Border bookkeeping from unfolding an all-ones image (independent of the op module).
    ones = torch.ones(1, 1, H, W, dtype=torch.float64)
    inside = F.unfold(ones, w, padding=w // 2).reshape(L, N).transpose(0, 1)  # (N, L), 1 inside
    padding_mask = inside == 0
    seq_length_scale = torch.log(inside.sum(-1) + P).reshape(N, 1)

    q_norm = F.normalize(q.reshape(B, N, nh, d).permute(0, 2, 1, 3), dim=-1)  # (B, nh, N, d)
    q_norm_scaled = (q_norm + qe.reshape(1, nh, 1, d)) * ts.reshape(1, nh, 1, 1) * seq_length_scale

    k_local, v_local = kv.chunk(2, dim=-1)
    k_local = F.normalize(k_local.reshape(B, N, nh, d), dim=-1).reshape(B, N, C)
    kv_local = torch.cat([k_local, v_local], dim=-1).permute(0, 2, 1).reshape(B, 2 * C, H, W)
    unfolded = F.unfold(kv_local, w, padding=w // 2)  # (B, 2C*L, N), zero outside the image
    k_local, v_local = unfolded.reshape(B, 2 * nh, d, L, N).permute(0, 1, 4, 2, 3).chunk(2, dim=1)  # (B,nh,N,d,L)
    attn_local = (q_norm_scaled.unsqueeze(-2) @ k_local).squeeze(-2) + lbias.unsqueeze(1)
    attn_local = attn_local.masked_fill(padding_mask, float("-inf"))

    k_pool, v_pool = pkv.reshape(B, P, 2 * nh, d).permute(0, 2, 1, 3).chunk(2, dim=1)  # (B, nh, P, d)
    attn_pool = q_norm_scaled @ F.normalize(k_pool, dim=-1).transpose(-2, -1) + pbias

    attn = torch.cat([attn_local, attn_pool], dim=-1).softmax(dim=-1)
    attn_local, attn_pool = torch.split(attn, [L, P], dim=-1)
    local_weights = (q_norm @ ltok) + lb.unsqueeze(1) + attn_local  # (B, nh, N, L)
    x_local = (local_weights.unsqueeze(-2) @ v_local.transpose(-2, -1)).squeeze(-2)
    x = x_local + attn_pool @ v_pool
    return x.transpose(1, 2).reshape(B, N, C)


def make_inputs(seed, *, batch, height, width, num_heads, head_dim, window_size, pool_height, pool_width):
    """Random inputs with every parameter non-zero (float32)."""
    g = torch.Generator().manual_seed(seed)
    B, N, C, P = batch, height * width, num_heads * head_dim, pool_height * pool_width
    nh, d, L = num_heads, head_dim, window_size**2

    def r(*shape, scale=1.0):
        return torch.randn(*shape, generator=g) * scale

    return [
        r(B, N, C),
        r(B, N, 2 * C),
        r(B, P, 2 * C),
        r(nh, d, scale=0.5),
        F.softplus(r(nh)) + 0.25,
        r(nh, L, scale=0.5),
        r(nh, d, L, scale=0.3),
        r(nh, L, scale=0.3),
        r(nh, N, P, scale=0.5),
    ]


# (batch, height, width, num_heads, head_dim, window_size, pool_height, pool_width)
GRIDS = {
    "square-6x6-w3-P4": (2, 6, 6, 2, 24, 3, 2, 2),
    "nonsquare-5x7-w3-P1": (2, 5, 7, 3, 24, 3, 1, 1),
    "nonsquare-7x4-w5-P6": (2, 7, 4, 2, 24, 5, 2, 3),
    "row-1x9-w3-P3": (2, 1, 9, 2, 24, 3, 1, 3),
    "column-8x1-w3-P2": (2, 8, 1, 2, 24, 3, 2, 1),
    "column-6x1-w5-P1": (2, 6, 1, 1, 24, 5, 1, 1),
    "2x2-w3-P1": (2, 2, 2, 2, 24, 3, 1, 1),
    "2x2-w5-P4": (2, 2, 2, 2, 24, 5, 2, 2),
    "1x1-w3-P1": (2, 1, 1, 2, 24, 3, 1, 1),
    "9x10-w3-P20": (2, 9, 10, 3, 24, 3, 4, 5),
    "4x3-w3-P300": (2, 4, 3, 2, 24, 3, 15, 20),
    "5x5-w1-P4": (2, 5, 5, 2, 24, 1, 2, 2),
    "6x5-w7-P2": (2, 6, 5, 1, 24, 7, 1, 2),
    "3x4-w15-P2": (1, 3, 4, 1, 8, 15, 1, 2),
    "d16": (2, 4, 5, 2, 16, 3, 2, 2),
    "d5": (2, 4, 5, 3, 5, 3, 2, 2),
    "d32": (2, 5, 4, 2, 32, 3, 2, 2),
    "d48": (2, 3, 5, 2, 48, 3, 1, 3),
    "d64": (2, 4, 4, 1, 64, 3, 2, 2),
    "d40": (1, 4, 5, 2, 40, 3, 2, 2),
    "d56": (1, 3, 4, 1, 56, 3, 1, 2),
    # The fast kernel's cuts: pooled rows in several softmax tiles (P > 512), a grid wider than one
    # column tile (W > 128), and more rows than one band (H > 8).
    "tiles-P600": (1, 3, 4, 2, 24, 3, 20, 30),
    "wide-2x300-w3-P2": (1, 2, 300, 1, 8, 3, 1, 2),
    "tall-19x3-w5-P6": (1, 19, 3, 2, 16, 5, 3, 2),
}


def _attrs(case):
    B, H, W, nh, d, w, ph, pw = case
    return dict(num_heads=nh, height=H, width=W, window_size=w, pool_height=ph, pool_width=pw)


def _inputs(case, seed):
    B, H, W, nh, d, w, ph, pw = case
    return make_inputs(seed, batch=B, height=H, width=W, num_heads=nh, head_dim=d, window_size=w,
                       pool_height=ph, pool_width=pw)


def _core(inputs, attrs):
    return aa.aggregated_attention_core(*inputs, **attrs)


def _errors(actual: np.ndarray, expected: np.ndarray) -> tuple[float, float]:
    actual = actual.astype(np.float64)
    expected = expected.astype(np.float64)
    max_abs = float(np.max(np.abs(actual - expected)))
    rel = max_abs / max(float(np.max(np.abs(expected))), 1e-30)
    return max_abs, rel


# ------------------------------------------------------------------------------ fp32


@pytest.mark.parametrize("path", list(PATHS))
@pytest.mark.parametrize("name", list(GRIDS))
def test_host_fp32_matches_pytorch(host_lib, name, path):
    case = GRIDS[name]
    attrs = _attrs(case)
    inputs = _inputs(case, seed=len(name))
    host = aggregated_attention_host(*[t.numpy() for t in inputs], **attrs, library=host_lib, path=path)
    assert host.dtype == np.float32 and host.shape == tuple(inputs[0].shape)

    naive = naive_reference(inputs, **attrs).numpy()
    core = _core(inputs, attrs).numpy()
    for label, ref in (("naive float64 unfold reference", naive), ("aggregated_attention_core", core)):
        max_abs, rel = _errors(host, ref)
        assert max_abs <= FP32_ATOL, (
            f"{name}: host fp32 ({path}) vs {label}: max-abs {max_abs:.3e} > {FP32_ATOL:.0e} (relative {rel:.3e})"
        )


@pytest.mark.parametrize("path", ["auto", "portable"])
@pytest.mark.parametrize("name", list(GRIDS))
def test_fast_path_matches_reference_path(host_lib, name, path):
    """The fast kernel against the per-query arithmetic the CUDA kernel runs, on the same inputs:
    both are fp32 with different summation orders, so they agree to a few fp32 ulps of the
    largest terms, well inside the tolerance against float64."""
    case = GRIDS[name]
    attrs = _attrs(case)
    arrays = [t.numpy() for t in _inputs(case, seed=3 * len(name))]
    fast = aggregated_attention_host(*arrays, **attrs, library=host_lib, path=path)
    reference = aggregated_attention_host(*arrays, **attrs, library=host_lib, path="reference")
    max_abs, rel = _errors(fast, reference)
    assert max_abs <= FP32_ATOL, f"{name}: {path} vs reference path: max-abs {max_abs:.3e} (relative {rel:.3e})"


@pytest.mark.parametrize("path", list(PATHS))
def test_host_fp32_border_cases_are_exact_masking(host_lib, path):
    """Out-of-image slots contribute nothing: a huge value placed only where a wrong (unmasked or
    wrapped) neighbour would read it must not reach any output."""
    case = (1, 3, 4, 1, 8, 3, 1, 1)
    attrs = _attrs(case)
    inputs = _inputs(case, seed=7)
    host = aggregated_attention_host(*[t.numpy() for t in inputs], **attrs, library=host_lib, path=path)
    naive = naive_reference(inputs, **attrs).numpy()
    assert np.isfinite(host).all()
    max_abs, rel = _errors(host, naive)
    assert max_abs <= FP32_ATOL, f"max-abs {max_abs:.3e} (relative {rel:.3e})"
    # Perturbing a key/value of pixel (0, 0) may only change outputs of its 3x3 neighbours.
    perturbed = [t.clone() for t in inputs]
    perturbed[1][0, 0] += 100.0
    host2 = aggregated_attention_host(*[t.numpy() for t in perturbed], **attrs, library=host_lib, path=path)
    changed = np.any(host2 != host, axis=-1)[0].reshape(3, 4)
    expected = np.zeros((3, 4), dtype=bool)
    expected[:2, :2] = True
    assert (changed == expected).all(), f"pixels changed by a key at (0,0):\n{changed.astype(int)}"


@pytest.mark.parametrize("path", list(PATHS))
def test_minus_infinity_pool_bias_is_probability_zero(host_lib, path):
    """A pooled score of -inf (a -inf pool_bias) has probability 0, as in the float64 softmax."""
    case = GRIDS["tiles-P600"]
    attrs = _attrs(case)
    inputs = _inputs(case, seed=13)
    mask = torch.rand(inputs[8].shape, generator=torch.Generator().manual_seed(0)) < 0.5
    inputs[8] = inputs[8].masked_fill(mask, float("-inf"))
    host = aggregated_attention_host(*[t.numpy() for t in inputs], **attrs, library=host_lib, path=path)
    assert np.isfinite(host).all()
    max_abs, rel = _errors(host, naive_reference(inputs, **attrs).numpy())
    assert max_abs <= FP32_ATOL, f"{path}: max-abs {max_abs:.3e} (relative {rel:.3e})"


@pytest.mark.parametrize("path", list(PATHS))
@pytest.mark.parametrize("name", ["9x10-w3-P20", "tall-19x3-w5-P6", "wide-2x300-w3-P2"])
def test_host_fp32_multithreaded_is_identical(host_lib, name, path):
    """Every thread count gives the same bits (the fast kernel also cuts the grid into different
    bands for different thread counts)."""
    case = GRIDS[name]
    attrs = _attrs(case)
    arrays = [t.numpy() for t in _inputs(case, seed=3)]
    one = aggregated_attention_host(*arrays, **attrs, library=host_lib, path=path)
    for threads in (2, 3, 4, 16):
        many = aggregated_attention_host(*arrays, **attrs, num_threads=threads, library=host_lib, path=path)
        assert np.array_equal(one, many), f"{name} ({path}): {threads} threads differ from 1"


def test_concurrent_calls_share_the_pool(host_lib):
    """Calls from several Python threads at once (each asking for the pool) give the serial results."""
    import concurrent.futures

    cases = [GRIDS[n] for n in ("9x10-w3-P20", "tall-19x3-w5-P6", "d64", "tiles-P600")]
    jobs = [(_attrs(c), [t.numpy() for t in _inputs(c, seed=k)]) for k, c in enumerate(cases)]
    expected = [aggregated_attention_host(*arrays, **attrs, library=host_lib) for attrs, arrays in jobs]

    def run(k):
        attrs, arrays = jobs[k % len(jobs)]
        return k % len(jobs), aggregated_attention_host(*arrays, **attrs, num_threads=2, library=host_lib)

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        for k, got in pool.map(run, range(24)):
            assert np.array_equal(got, expected[k])


def test_pool_works_in_a_forked_child(host_lib):
    """A child forked after the parent used the thread pool starts a pool of its own (the parent's
    worker threads do not exist there) instead of waiting for them forever."""
    import multiprocessing

    if "fork" not in multiprocessing.get_all_start_methods():
        pytest.skip("this platform cannot fork")
    case = GRIDS["9x10-w3-P20"]
    attrs = _attrs(case)
    arrays = [t.numpy() for t in _inputs(case, seed=5)]
    expected = aggregated_attention_host(*arrays, **attrs, num_threads=2, library=host_lib)
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_child_run, args=(queue, arrays, attrs, str(host_lib)))
    child.start()
    child.join(timeout=120)
    if child.is_alive():
        child.kill()
        pytest.fail("the forked child hung in the host library")
    assert child.exitcode == 0
    assert np.array_equal(queue.get(timeout=10), expected)


def _child_run(queue, arrays, attrs, library):
    queue.put(aggregated_attention_host(*arrays, **attrs, num_threads=2, library=library))


def test_out_argument_and_non_contiguous_inputs(host_lib):
    case = GRIDS["nonsquare-5x7-w3-P1"]
    attrs = _attrs(case)
    arrays = [t.numpy() for t in _inputs(case, seed=11)]
    expected = aggregated_attention_host(*arrays, **attrs, library=host_lib)
    out = np.full_like(expected, np.nan)
    assert aggregated_attention_host(*arrays, **attrs, library=host_lib, out=out) is out
    assert np.array_equal(out, expected)
    # A non-contiguous view of the same numbers is copied first, with the same result.
    strided = [np.ascontiguousarray(np.stack([a, a], axis=-1))[..., 0] for a in arrays]
    assert not strided[1].flags.c_contiguous
    assert np.array_equal(aggregated_attention_host(*strided, **attrs, library=host_lib), expected)
    read_only = [a.copy() for a in arrays]
    for a in read_only:
        a.flags.writeable = False
    assert np.array_equal(aggregated_attention_host(*read_only, **attrs, library=host_lib), expected)
    with pytest.raises(ValueError, match="out must be"):
        aggregated_attention_host(*arrays, **attrs, library=host_lib, out=out[:, :-1])
    with pytest.raises(ValueError, match="out must be"):
        aggregated_attention_host(*arrays, **attrs, library=host_lib, out=out.astype(np.float16))
    with pytest.raises(ValueError, match="path must be one of"):
        aggregated_attention_host(*arrays, **attrs, library=host_lib, path="fast")


def test_kernel_names(host_lib):
    assert kernel_name("reference", library=host_lib) == "reference"
    assert kernel_name("portable", library=host_lib) == "portable"
    assert kernel_name("auto", library=host_lib) in ("avx2", "portable")
    if platform.machine().lower() in ("x86_64", "amd64") and "avx2" in _cpu_flags() and "f16c" in _cpu_flags():
        assert kernel_name("auto", library=host_lib) == "avx2"
    lib = load_host_library(host_lib)
    assert lib.transnext_aa_kernel_name(7) == b""


def _cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


# ------------------------------------------------------------------------------ fp16


@pytest.mark.parametrize("path", list(PATHS))
@pytest.mark.parametrize("name", ["square-6x6-w3-P4", "nonsquare-5x7-w3-P1", "row-1x9-w3-P3", "column-8x1-w3-P2",
                                  "2x2-w5-P4", "4x3-w3-P300", "d5", "d64", "d40", "tiles-P600"])
def test_host_fp16_matches_fp32_reference(host_lib, name, path):
    case = GRIDS[name]
    attrs = _attrs(case)
    rounded = [t.half().float() for t in _inputs(case, seed=100 + len(name))]  # exact in fp16
    host16 = aggregated_attention_host(*[t.half().numpy() for t in rounded], **attrs, library=host_lib, path=path)
    assert host16.dtype == np.float16

    ref = naive_reference(rounded, **attrs).numpy()
    core = _core(rounded, attrs).numpy()
    for label, r in (("naive float64 reference", ref), ("aggregated_attention_core fp32", core)):
        err = np.abs(host16.astype(np.float64) - r)
        bound = FP16_RTOL * np.abs(r) + FP16_ATOL
        worst = int(np.argmax(err - bound))
        max_abs, rel = _errors(host16, r)
        assert np.all(err <= bound), (
            f"{name}: host fp16 ({path}) vs {label}: max-abs {max_abs:.3e}, relative {rel:.3e}; worst element "
            f"{host16.ravel()[worst]} vs {r.ravel()[worst]} (bound {bound.ravel()[worst]:.3e})"
        )

    # Same fp32 arithmetic after the (exact) loads: fp16 output == RNE(fp32 output), bit for bit.
    host32 = aggregated_attention_host(*[t.numpy() for t in rounded], **attrs, library=host_lib, path=path)
    assert np.array_equal(host16.view(np.uint16), host32.astype(np.float16).view(np.uint16))


def test_half_to_float_all_bit_patterns(host_lib):
    lib = load_host_library(host_lib)
    bits = np.arange(65536, dtype=np.uint32).astype(np.uint16)
    expected = bits.view(np.float16).astype(np.float32)
    got = np.array([lib.transnext_aa_half_to_float(int(b)) for b in bits], dtype=np.float32)
    nan = np.isnan(expected)
    assert np.array_equal(np.isnan(got), nan)
    assert np.array_equal(got[~nan].view(np.uint32), expected[~nan].view(np.uint32))


def test_float_to_half_round_to_nearest_even(host_lib):
    rng = np.random.default_rng(0)
    halves = np.arange(0, 0x7C00, dtype=np.uint32).astype(np.uint16).view(np.float16).astype(np.float32)
    nxt = np.nextafter(halves, np.float32(np.inf))
    mids = ((halves.astype(np.float64)[:-1] + halves.astype(np.float64)[1:]) / 2).astype(np.float32)  # exact ties
    specials = np.array([0.0, -0.0, np.inf, -np.inf, 65504.0, 65519.996, 65520.0, 65536.0, 1e10, -1e10,
                         2.0**-24, 2.0**-25, 2.0**-25 * 1.0000001, 2.0**-26, 3 * 2.0**-25, 2.0**-14,
                         2.0**-14 - 2.0**-25, 1e-30, -1e-30, 1.0 + 2.0**-11, 1.0 + 3 * 2.0**-11], dtype=np.float32)
    values = np.concatenate([specials, mids[::7], nxt[::11], -mids[::13],
                             rng.standard_normal(20000).astype(np.float32) * 10.0 ** rng.uniform(-8, 5, 20000)])
    values = values.astype(np.float32)
    got = float_to_half_bits(values, library=host_lib)
    with np.errstate(over="ignore"):
        expected = values.astype(np.float16).view(np.uint16)
    bad = np.nonzero(got != expected)[0]
    assert bad.size == 0, f"{bad.size} mismatches, first {values[bad[0]]!r}: {got[bad[0]]:#06x} vs {expected[bad[0]]:#06x}"
    nan_bits = float_to_half_bits(np.array([np.nan], dtype=np.float32), library=host_lib)[0]
    assert (nan_bits & 0x7C00) == 0x7C00 and (nan_bits & 0x3FF) != 0


# ------------------------------------------------------------------------------ invalid arguments


BASE = dict(num_heads=2, height=4, width=5, window_size=3, pool_height=2, pool_width=2)


@pytest.mark.parametrize(
    "batch, channels, changes, code, fragment",
    [
        (1, 48, dict(num_heads=0), 2, "num_heads"),
        (1, 48, dict(num_heads=-3), 2, "num_heads"),
        (1, 48, dict(height=0), 2, "height"),
        (1, 48, dict(width=-1), 2, "width"),
        (1, 48, dict(window_size=4), 2, "window_size must be odd"),
        (1, 48, dict(window_size=0), 2, "window_size"),
        (1, 48, dict(window_size=17), 2, "window_size"),
        (1, 48, dict(pool_height=0), 2, "pool_height"),
        (1, 48, dict(pool_width=-2), 2, "pool_width"),
        (1, 47, {}, 3, "not divisible by num_heads"),
        (1, 0, {}, 3, "channels"),
        (0, 48, {}, 3, "batch"),
        (1, 2 * 65, {}, 4, "head_dim"),
        (1, 48, dict(height=1 << 20, width=1 << 20), 4, "height*width"),
        (1, 48, dict(pool_height=1 << 12, pool_width=1 << 12), 4, "pool_height*pool_width"),
        (1 << 20, 48, {}, 3, "batch"),
    ],
)
def test_invalid_sizes_are_rejected_with_a_message(host_lib, batch, channels, changes, code, fragment):
    attrs = {**BASE, **changes}
    got, message = validate_sizes(batch, channels, **attrs, library=host_lib)
    assert got == code, message
    assert fragment in message

    # The forward entry points check the same before touching any pointer (all null here).
    lib = load_host_library(host_lib)
    buf = ctypes.create_string_buffer(256)
    args = [None] * 10 + [batch, channels, attrs["num_heads"], attrs["height"], attrs["width"],
                          attrs["window_size"], attrs["pool_height"], attrs["pool_width"], 1, buf, len(buf)]
    assert lib.transnext_aa_forward_f32(*args) == code
    assert fragment in buf.value.decode()
    assert lib.transnext_aa_forward_f16(*args) == code
    for path in PATHS.values():
        with_path = args[:-2] + [path] + args[-2:]
        assert lib.transnext_aa_forward_f32_path(*with_path) == code
        assert lib.transnext_aa_forward_f16_path(*with_path) == code


def test_null_pointers_are_rejected(host_lib):
    lib = load_host_library(host_lib)
    case = GRIDS["2x2-w3-P1"]
    arrays = [np.ascontiguousarray(t.numpy()) for t in _inputs(case, seed=1)]
    out = np.empty_like(arrays[0])
    B, N, C = arrays[0].shape
    ptrs = [a.ctypes.data_as(ctypes.c_void_p) for a in arrays] + [out.ctypes.data_as(ctypes.c_void_p)]
    attrs = _attrs(case)
    sizes = [B, C, attrs["num_heads"], attrs["height"], attrs["width"], attrs["window_size"],
             attrs["pool_height"], attrs["pool_width"]]
    for missing in range(10):
        buf = ctypes.create_string_buffer(256)
        args = list(ptrs)
        args[missing] = None
        assert lib.transnext_aa_forward_f32(*args, *sizes, 1, buf, len(buf)) == 1
        expected = contract.INPUT_NAMES[missing] if missing < 9 else "output"
        assert expected in buf.value.decode()
    for path in PATHS.values():
        for missing in range(10):
            buf = ctypes.create_string_buffer(256)
            args = list(ptrs)
            args[missing] = None
            assert lib.transnext_aa_forward_f32_path(*args, *sizes, 2, path, buf, len(buf)) == 1
            assert (contract.INPUT_NAMES[missing] if missing < 9 else "output") in buf.value.decode()
    buf = ctypes.create_string_buffer(256)
    assert lib.transnext_aa_forward_f32(*ptrs, *sizes, 1, buf, len(buf)) == 0
    for bad_path in (-1, 3):
        assert lib.transnext_aa_forward_f32_path(*ptrs, *sizes, 1, bad_path, buf, len(buf)) == 2
        assert "path must be" in buf.value.decode()
    # A tiny message buffer is truncated, never overrun.
    small = ctypes.create_string_buffer(b"\xff" * 8)
    assert lib.transnext_aa_forward_f32(*ptrs, *sizes[:1], 47, *sizes[2:], 1, small, 4) == 3
    assert small.raw[3] == 0 and small.raw[4:8] == b"\xff" * 4


def test_python_binding_rejects_bad_shapes(host_lib):
    case = GRIDS["square-6x6-w3-P4"]
    attrs = _attrs(case)
    arrays = [t.numpy() for t in _inputs(case, seed=2)]

    def call(arrs, **over):
        return aggregated_attention_host(*arrs, **{**attrs, **over}, library=host_lib)

    with pytest.raises(ValueError, match="height\\*width"):
        call(arrays, height=5)
    with pytest.raises(ValueError, match="pooled_key_value has shape"):
        call(arrays, pool_height=1)
    with pytest.raises(ValueError, match="not divisible by num_heads"):
        call(arrays, num_heads=5)
    with pytest.raises(ValueError, match="window_size must be odd"):
        call(arrays, window_size=2)
    with pytest.raises(ValueError, match="local_bias has shape"):
        call(arrays, window_size=5)
    with pytest.raises(ValueError, match="dtype"):
        call([arrays[0]] + [a.astype(np.float16) for a in arrays[1:]])
    with pytest.raises(ValueError, match="float32 or float16"):
        call([a.astype(np.float64) for a in arrays])
    bad = list(arrays)
    bad[1] = bad[1][:, :, :-1]
    with pytest.raises(ValueError, match="key_value has shape"):
        call(bad)
    with pytest.raises(HostLibraryError, match="head_dim"):
        nh = 1
        C = 65
        big = make_inputs(0, batch=1, height=2, width=2, num_heads=nh, head_dim=C, window_size=3,
                          pool_height=1, pool_width=1)
        aggregated_attention_host(*[t.numpy() for t in big], num_heads=nh, height=2, width=2, window_size=3,
                                  pool_height=1, pool_width=1, library=host_lib)


# ------------------------------------------------------------------------------ contract constants


def _header_strings(text: str) -> dict[str, str]:
    return dict(re.findall(r'constexpr\s+char\s+(k\w+)\[\]\s*=\s*"([^"]*)"\s*;', text))


def test_contract_header_matches_python_constants():
    text = CONTRACT_HEADER.read_text()
    strings = _header_strings(text)
    assert strings["kOpName"] == contract.OP_NAME
    assert strings["kOpDomain"] == contract.OP_DOMAIN
    assert strings["kPluginVersion"] == contract.OP_VERSION
    assert strings["kPluginNamespace"] == contract.OP_NAMESPACE
    assert strings["kPluginVersionAttribute"] == contract.PLUGIN_VERSION_ATTRIBUTE
    assert tuple(strings[f"kInputName{i}"] for i in range(len(contract.INPUT_NAMES))) == contract.INPUT_NAMES
    assert f"kInputName{len(contract.INPUT_NAMES)}" not in strings
    assert tuple(strings[f"kOutputName{i}"] for i in range(len(contract.OUTPUT_NAMES))) == contract.OUTPUT_NAMES

    attr_list = re.search(r"kAttributeNames\[kNumAttributes\]\s*=\s*\{([^}]*)\}", text).group(1)
    attr_ids = [s.strip() for s in attr_list.split(",") if s.strip()]
    assert tuple(strings[i] for i in attr_ids) == contract.ATTRIBUTE_NAMES
    assert int(re.search(r"kNumAttributes\s*=\s*(\d+)", text).group(1)) == len(contract.ATTRIBUTE_NAMES)

    # Input index enum: kQuery = 0, kKeyValue = 1, ... in INPUT_NAMES order, kNumInputs = 9.
    enum_body = re.search(r"enum InputIndex[^{]*\{([^}]*)\}", text).group(1)
    entries = re.findall(r"k(\w+)\s*=\s*(\d+)", enum_body)
    indices = {re.sub(r"(?<!^)([A-Z])", r"_\1", n).lower(): int(v) for n, v in entries}
    assert indices.pop("num_inputs") == len(contract.INPUT_NAMES)
    assert indices == {name: i for i, name in enumerate(contract.INPUT_NAMES)}

    eps = float(re.search(r"kL2Eps\s*=\s*([0-9.eE+-]+)f", text).group(1))
    assert eps == contract.L2_EPS


def test_readme_documents_every_name():
    text = CONTRACT_README.read_text()
    for name in (*contract.INPUT_NAMES, *contract.OUTPUT_NAMES, *contract.ATTRIBUTE_NAMES, contract.OP_NAME, contract.OP_DOMAIN,
                 contract.PLUGIN_VERSION_ATTRIBUTE):
        assert f"`{name}`" in text, f"README does not document `{name}`"


def test_host_library_limits_match_header(host_lib):
    lib = load_host_library(host_lib)
    text = CONTRACT_HEADER.read_text()
    assert lib.transnext_aa_max_head_dim() == int(re.search(r"kMaxHeadDim\s*=\s*(\d+)", text).group(1))
    assert lib.transnext_aa_max_window_size() == int(re.search(r"kMaxWindowSize\s*=\s*(\d+)", text).group(1))
    assert math.isclose(float(lib.transnext_aa_max_head_dim()), 64.0)


# ------------------------------------------------------------------------------ onnxruntime custom op


def test_onnxruntime_custom_op_runs_the_host_library(host_lib):
    """A graph with the custom node, through runtime.cpu_session: onnxruntime-extensions calls the host
    library with the session's thread count and gets the result back as an array (not a list)."""
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime_extensions")
    from onnx import TensorProto, helper

    from transnext_deploy.backends import onnxrt as runtime

    case = GRIDS["9x10-w3-P20"]
    attrs = _attrs(case)
    inputs = _inputs(case, seed=21)
    node = helper.make_node(contract.OP_NAME, list(contract.INPUT_NAMES), ["output"], domain=contract.OP_DOMAIN,
                            plugin_version=contract.OP_VERSION, **attrs)
    graph = helper.make_graph(
        [node], "one_block",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, list(t.shape)) for n, t in zip(contract.INPUT_NAMES, inputs)],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, list(inputs[0].shape))])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(contract.OP_DOMAIN, 1)])
    assert runtime.has_custom_nodes(model)
    expected = naive_reference(inputs, **attrs).numpy()
    feed = {n: t.numpy() for n, t in zip(contract.INPUT_NAMES, inputs)}
    for threads in (1, 2):
        session = runtime.cpu_session(model, threads=threads, spinning=threads == 1)
        options = session.get_session_options()
        assert options.get_session_config_entry("session.intra_op.allow_spinning") == ("1" if threads == 1 else "0")
        got = session.run(None, feed)[0]
        max_abs, rel = _errors(got, expected)
        assert max_abs <= FP32_ATOL, f"{threads} thread(s): max-abs {max_abs:.3e} (relative {rel:.3e})"
        got_again = session.run(None, feed)[0]  # the op's reused output buffer
        assert np.array_equal(got, got_again)
    # The session runs a copy in onnxruntime-extensions' domain that carries its thread count; the
    # caller's graph is left as it was.
    copy = runtime._to_contrib_domain(model, 3)
    assert copy.graph.node[0].domain == runtime.ORT_CONTRIB_DOMAIN
    assert onnx.helper.get_node_attr_value(copy.graph.node[0], runtime.THREADS_ATTRIBUTE) == 3
    assert model.graph.node[0].domain == contract.OP_DOMAIN
    assert not any(a.name == runtime.THREADS_ATTRIBUTE for a in model.graph.node[0].attribute)

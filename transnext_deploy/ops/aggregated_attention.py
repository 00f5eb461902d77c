"""The fused aggregated-attention op's PyTorch decomposition (its contract: `contract.py`).

One op covers everything in an AggregatedAttention block between the input projections
(`q`, `kv` on the tokens, `kv` on the pooled tokens) and `proj`: per-head l2-normalisation of
queries and keys, query embedding and scaling, the window (local) scores with their bias and
border masking, the pooled scores with the continuous position bias, one softmax over both,
and both weighted sums including the learnable-token term. The contract is written out in
`plugins/aggregated_attention/README.md` and its names in `contract.py`, which the exporter, the
ONNX rewrite, the CPU runtime op and the tests read (the C++ plugin's copy is
`plugins/aggregated_attention/aggregatedAttentionContract.h`, tied to them by a test).

`aggregated_attention_core` is the standard-op decomposition of the op. The fast PyTorch
model calls it, so the exported standard graph contains it, and the ONNX local function that
backs the custom node has the same math. It never materialises unfolded keys or values: the
window is visited as `window_size**2` shifted views of zero-padded keys and values.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import torch
import torch.nn.functional as F

from .contract import L2_EPS



def l2_normalize(x: torch.Tensor) -> torch.Tensor:
    """F.normalize(x, dim=-1) without its expand_as: the same numbers, and the exported graph
    divides by a broadcast norm instead of materialising an expanded copy first."""
    return x / x.norm(dim=-1, keepdim=True).clamp_min(L2_EPS)


class WindowConstants(NamedTuple):
    """The per-grid constants of the window, for H*W query pixels and L = window_size**2 positions."""

    outside: torch.Tensor  # (H*W, L) bool: the window position lies outside the image (published padding mask)
    sequence_scale: torch.Tensor  # (H*W, 1): ln(in-image window positions + pooled positions)
    border_mask: torch.Tensor  # (H*W, L): additive, 0 inside the image and -inf outside


def _build_window_constants(height: int, width: int, window_size: int, pool_len: int, device: torch.device,
                            dtype: torch.dtype) -> WindowConstants:
    r = window_size // 2
    offsets = torch.arange(-r, r + 1, device=device)
    rows = torch.arange(height, device=device)[:, None] + offsets  # (H, w)
    cols = torch.arange(width, device=device)[:, None] + offsets  # (W, w)
    inside_h = (rows >= 0) & (rows < height)
    inside_w = (cols >= 0) & (cols < width)
    inside = (inside_h[:, None, :, None] & inside_w[None, :, None, :]).reshape(height * width, -1)
    # The log in float64, rounded once to the working dtype.
    counts = inside.sum(-1, keepdim=True, dtype=torch.float64)
    scale = torch.log(counts + pool_len).to(dtype)
    border = torch.zeros(inside.shape, dtype=dtype, device=device).masked_fill(~inside, float("-inf"))
    return WindowConstants(~inside, scale, border)


_cached_window_constants = functools.lru_cache(maxsize=128)(_build_window_constants)


def window_constants(height: int, width: int, window_size: int, pool_len: int, device: torch.device,
                     dtype: torch.dtype) -> WindowConstants:
    """The window constants on `device` in `dtype` (the mask stays bool).

    Eager calls and traces share one cached copy per (grid, device, dtype), so after the first call
    forward copies nothing (CUDA graphs can capture it) and an exported graph holds them as
    initializers; callers must not modify them in place. Under torch.compile they are built in the
    graph from `arange`, on the input's device: no cache lookup for Dynamo to trace, nothing to copy.
    """
    if torch.compiler.is_compiling():
        return _build_window_constants(height, width, window_size, pool_len, device, dtype)
    return _cached_window_constants(height, width, window_size, pool_len, device, dtype)


def aggregated_attention_core(
    query: torch.Tensor,
    key_value: torch.Tensor,
    pooled_key_value: torch.Tensor,
    query_embedding: torch.Tensor,
    temperature_scale: torch.Tensor,
    local_bias: torch.Tensor,
    learnable_tokens: torch.Tensor,
    learnable_bias: torch.Tensor,
    pool_bias: torch.Tensor,
    *,
    num_heads: int,
    height: int,
    width: int,
    window_size: int,
    pool_height: int,
    pool_width: int,
) -> torch.Tensor:
    """The op in standard tensor operations; shapes as in INPUT_NAMES, returns (B, N, C).

    Every reshape spells the batch as -1 and every other size from the attributes, so a trace
    keeps the batch dynamic with no shape arithmetic in the graph.
    """
    H, W = height, width
    N = H * W
    P = pool_height * pool_width
    nh = num_heads
    d = query_embedding.shape[-1]
    w = window_size
    r = w // 2
    L = w * w

    constants = window_constants(H, W, w, P, query.device, query.dtype)
    q = query.reshape(-1, H, W, nh, d)
    q_norm = l2_normalize(q)
    seq_scale = constants.sequence_scale.reshape(H, W, 1, 1)
    q_scaled = (q_norm + query_embedding) * temperature_scale.reshape(nh, 1) * seq_scale

    k, v = key_value.reshape(-1, H, W, 2, nh, d).unbind(3)
    k = l2_normalize(k)
    # Zero padding: an out-of-image key scores only its bias (masked to -inf below) and an
    # out-of-image value is zero, so it contributes nothing to the output.
    k_pad = F.pad(k, (0, 0, 0, 0, r, r, r, r))
    v_pad = F.pad(v, (0, 0, 0, 0, r, r, r, r))

    local_scores = torch.cat(
        [(q_scaled * k_pad[:, a:a + H, b:b + W]).sum(-1, keepdim=True) for a in range(w) for b in range(w)], dim=-1
    )  # (B, H, W, nh, L); keepdim + cat rather than stack: no Unsqueeze per position in the graph
    border = constants.border_mask.reshape(H, W, 1, L)
    local_scores = local_scores + local_bias + border

    k_pool, v_pool = pooled_key_value.reshape(-1, P, 2, nh, d).unbind(2)
    k_pool = l2_normalize(k_pool)
    q_scaled_h = q_scaled.reshape(-1, N, nh, d).transpose(1, 2)  # (B, nh, N, d)
    pool_scores = q_scaled_h @ k_pool.permute(0, 2, 3, 1) + pool_bias  # (B, nh, N, P)

    local_scores = local_scores.reshape(-1, N, nh, L).transpose(1, 2)  # (B, nh, N, L)
    attn = torch.cat([local_scores, pool_scores], dim=-1).softmax(dim=-1)
    attn_local, attn_pool = attn.split([L, P], dim=-1)

    q_norm_h = q_norm.reshape(-1, N, nh, d).transpose(1, 2)
    local_weights = attn_local + q_norm_h @ learnable_tokens + learnable_bias.unsqueeze(1)
    # One split into L (B, H, W, nh, 1) views: a single Split node instead of a Gather and an
    # Unsqueeze per window position.
    local_weights = local_weights.transpose(1, 2).reshape(-1, H, W, nh, L).split(1, dim=-1)

    out = attn_pool @ v_pool.transpose(1, 2)  # (B, nh, N, d)
    out = out.transpose(1, 2).reshape(-1, H, W, nh, d)
    for a in range(w):
        for b in range(w):
            out = torch.addcmul(out, local_weights[a * w + b], v_pad[:, a:a + H, b:b + W])
    return out.reshape(-1, N, nh * d)


__all__ = [
    "aggregated_attention_core",
    "l2_normalize",
    "window_constants",
    "WindowConstants",
]

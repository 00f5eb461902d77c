"""Geometry of TransNeXt stages: token grids, pool grids and continuous-position-bias tables.

Everything here depends only on integers (input size, stage, pretrain size), so it is
computed with numpy outside any trace and handed to the model as constant tensors: on the CPU in
float32 whatever the default device or dtype (the model copies them where its parameters are).

Two encodings of the same CPB table exist:
- `reference_cpb_table`: the published one, sorted unique (rel_h, rel_w) rows and an index map
  of length N*P. Its index map grows with resolution^4 / sr^2.
- `factorized_cpb_table`: the same rows and the same index map, expressed through two small
  per-axis index tables. rel_h depends only on (query row, key row) and rel_w only on (query
  column, key column), so the set of pairs is the Cartesian product of the per-axis values and
  its lexicographically sorted unique rows are `index_h * U_w + index_w`.
The fast model and the exported graphs use the factorized form, which keeps ONNX constants
small at any resolution; the plain model uses the reference form. Tests check they agree.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InvalidArgumentError

PATCH_STRIDE = 4


def stage_grids(height: int, width: int, num_stages: int = 4) -> list[tuple[int, int]]:
    """Token grid of every stage for an input image, from the patch-embedding convolutions.

    Stage 1: kernel 7, stride 4, padding 3; later stages: kernel 3, stride 2, padding 1.
    Both reduce to ceil division, so a side that is not a multiple of 32 is still well defined.
    """
    grids = []
    h = (height - 1) // PATCH_STRIDE + 1
    w = (width - 1) // PATCH_STRIDE + 1
    for i in range(num_stages):
        if i > 0:
            h = (h - 1) // 2 + 1
            w = (w - 1) // 2 + 1
        grids.append((h, w))
    return grids


def trained_grids(height: int, width: int, num_stages: int = 4) -> list[tuple[int, int]]:
    """Stage grids the reference code derives from a configured size (floor division)."""
    return [(height // (PATCH_STRIDE * 2**i), width // (PATCH_STRIDE * 2**i)) for i in range(num_stages)]


def _adaptive_pool_centres(length: int, out: int) -> np.ndarray:
    """Centres of adaptive_avg_pool1d windows over arange(length), as the reference computes them."""
    axis = torch.arange(length, dtype=torch.float32, device="cpu")[None, None]
    return F.adaptive_avg_pool1d(axis, out)[0, 0].numpy()


def _relative_axis(q_len: int, k_len: int, pretrain_len: int) -> np.ndarray:
    """(q_len, k_len) relative coordinates along one axis, scaled to the pretrain grid."""
    q = np.arange(q_len, dtype=np.float32)
    k = _adaptive_pool_centres(q_len, k_len)
    rel = (q[:, None] - k[None, :]) / np.float32(pretrain_len - 1) * np.float32(8)
    return rel.astype(np.float32)


def _log_scale(table: np.ndarray) -> np.ndarray:
    t = torch.from_numpy(table)
    log2_8 = torch.log2(torch.tensor(8, dtype=torch.float32, device="cpu"))
    t = torch.sign(t) * torch.log2(torch.abs(t) + 1.0) / log2_8
    return t.numpy()


def _check_pretrain(pretrain_grid: tuple[int, int]) -> None:
    if min(pretrain_grid) < 2:
        raise InvalidArgumentError(f"pretrain grid {pretrain_grid} is too small: relative coordinates divide by (side - 1)")


def reference_cpb_table(
    query_grid: tuple[int, int], key_grid: tuple[int, int], pretrain_grid: tuple[int, int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """The published construction: (index map of length N*P, table (U, 2))."""
    _check_pretrain(pretrain_grid)
    qh, qw = query_grid
    kh, kw = key_grid
    rel_h = _relative_axis(qh, kh, pretrain_grid[0])  # (qh, kh)
    rel_w = _relative_axis(qw, kw, pretrain_grid[1])  # (qw, kw)
    # pair for query (a, b) and key (c, e): (rel_h[a, c], rel_w[b, e]), flattened row-major (n, p)
    rh = np.broadcast_to(rel_h[:, None, :, None], (qh, qw, kh, kw))
    rw = np.broadcast_to(rel_w[None, :, None, :], (qh, qw, kh, kw))
    pairs = torch.from_numpy(np.stack([rh, rw], axis=-1).reshape(-1, 2).copy())
    table, index = torch.unique(pairs, return_inverse=True, dim=0)
    return index.reshape(-1), torch.from_numpy(_log_scale(table.numpy()))


@dataclass(frozen=True)
class FactorizedCPB:
    """CPB table as per-axis indices: index[n, p] = index_h[qh, kh] * U_w + index_w[qw, kw]."""

    table: torch.Tensor  # (U_h * U_w, 2), already log-scaled
    index_h: torch.Tensor  # (qh, kh) int64
    index_w: torch.Tensor  # (qw, kw) int64
    num_w: int

    def index(self) -> torch.Tensor:
        """Full (N*P,) index map; small ops, so it can run inside an exported graph."""
        qh, kh = self.index_h.shape
        qw, kw = self.index_w.shape
        full = self.index_h.reshape(qh, 1, kh, 1) * self.num_w + self.index_w.reshape(1, qw, 1, kw)
        return full.reshape(-1)


def factorized_cpb_table(
    query_grid: tuple[int, int], key_grid: tuple[int, int], pretrain_grid: tuple[int, int]
) -> FactorizedCPB:
    _check_pretrain(pretrain_grid)
    rel_h = _relative_axis(query_grid[0], key_grid[0], pretrain_grid[0])
    rel_w = _relative_axis(query_grid[1], key_grid[1], pretrain_grid[1])
    values_h, index_h = np.unique(rel_h.reshape(-1), return_inverse=True)
    values_w, index_w = np.unique(rel_w.reshape(-1), return_inverse=True)
    table = np.stack(
        [np.repeat(values_h, len(values_w)), np.tile(values_w, len(values_h))], axis=-1
    ).astype(np.float32)
    return FactorizedCPB(
        table=torch.from_numpy(_log_scale(table)),
        index_h=torch.from_numpy(index_h.reshape(rel_h.shape).astype(np.int64)),
        index_w=torch.from_numpy(index_w.reshape(rel_w.shape).astype(np.int64)),
        num_w=len(values_w),
    )


def resize_bias(
    bias: torch.Tensor,
    source_query: tuple[int, int],
    source_key: tuple[int, int],
    target_query: tuple[int, int],
    target_key: tuple[int, int],
) -> torch.Tensor:
    """Bilinear resize of a (nh, Nq, Nk) bias, keys first, then queries (reference order)."""
    nh = bias.shape[0]
    sq, sk = source_query, source_key
    tq, tk = tuple(target_query), tuple(target_key)
    if tuple(sq) == tq and tuple(sk) == tk:
        return bias
    nq_s = sq[0] * sq[1]
    nk_t = tk[0] * tk[1]
    x = bias.reshape(nh, nq_s, sk[0], sk[1])
    x = F.interpolate(x, size=tk, mode="bilinear", align_corners=False)
    x = x.reshape(nh, nq_s, nk_t).transpose(1, 2).reshape(nh, nk_t, sq[0], sq[1])
    x = F.interpolate(x, size=tq, mode="bilinear", align_corners=False)
    return x.reshape(nh, nk_t, tq[0] * tq[1]).transpose(1, 2)

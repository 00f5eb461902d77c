"""The constants of a TransNeXt stage that depend only on its grid, on the parameters' device and
dtype, and the per-block tensors computed from them: the position bias (the CPB MLP on the stage's
coordinate table) and the adaptive pooling that every exporter handles.

`stage_geometry` builds them once on the CPU in float32 (the published construction's precision);
`StageGeometry.on` gives the copy for another device and dtype, made once and kept, so a forward
pass after the first at a grid copies nothing and never reads a value back to the host.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import InvalidArgumentError
from .position_bias import FactorizedCPB, factorized_cpb_table, reference_cpb_table, resize_bias

# Rows of the position-bias coordinate table per eager MLP call (see _cpb_mlp): a 64 MiB hidden layer.
CPB_CHUNK_ROWS = 32768


def tracing() -> bool:
    """Inside torch.compile, a TorchScript trace or an ONNX export. is_compiling comes first: Dynamo
    folds it to True, so a compiled graph never asks TorchScript."""
    return torch.compiler.is_compiling() or torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()


@dataclass(eq=False)
class StageGeometry:
    """A stage's grids and constant tensors on one device in one dtype. The window constants of
    aggregated attention live with the op (`window_constants`)."""

    grid: tuple[int, int]
    pool_grid: tuple[int, int]
    bias_query_grid: tuple[int, int]  # grid the CPB MLP is evaluated on (differs when interpolating)
    bias_key_grid: tuple[int, int]
    pretrain_grid: tuple[int, int]  # scales the relative coordinates
    factorized: FactorizedCPB
    # (pool_h, H) and (pool_w, W) averaging matrices of adaptive pooling where the grid does not divide
    pool_matrices: tuple[torch.Tensor, torch.Tensor] | None = None
    _master: StageGeometry | None = None  # the CPU float32 geometry this one is a copy of
    _copies: dict = field(default_factory=dict)  # (device, dtype) -> copy, kept by the master only
    _reference: tuple[torch.Tensor, torch.Tensor] | None = None

    @property
    def device(self) -> torch.device:
        return self.factorized.table.device

    @property
    def dtype(self) -> torch.dtype:
        return self.factorized.table.dtype

    def on(self, device: torch.device, dtype: torch.dtype) -> "StageGeometry":
        """This geometry's floating tensors in `dtype` and every tensor on `device` (indices stay int64)."""
        if self.device == device and self.dtype == dtype:
            return self
        master = self._master or self
        copy = master._copies.get((device, dtype))
        if copy is None:
            copy = master._copies[(device, dtype)] = master._copy(device, dtype)
        return copy

    def _copy(self, device: torch.device, dtype: torch.dtype) -> "StageGeometry":
        f = self.factorized
        pools = None if self.pool_matrices is None else tuple(m.to(device, dtype) for m in self.pool_matrices)
        return StageGeometry(
            self.grid, self.pool_grid, self.bias_query_grid, self.bias_key_grid, self.pretrain_grid,
            FactorizedCPB(f.table.to(device, dtype), f.index_h.to(device), f.index_w.to(device), f.num_w),
            pools, _master=self)

    def release_copies(self) -> None:
        self._copies.clear()

    def reference_cpb(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The published (index map (Nq*Nk,), table (U, 2)), built on first use: only the plain
        path reads it, and its index map is the largest table of a stage."""
        if self._reference is None:
            if self._master is None:
                index, table = reference_cpb_table(self.bias_query_grid, self.bias_key_grid, self.pretrain_grid)
            else:
                index, table = self._master.reference_cpb()
            self._reference = (index.to(self.device), table.to(self.device, self.dtype))
        return self._reference


def _pool_matrix(length: int, out: int) -> torch.Tensor:
    """(out, length) averaging matrix of adaptive_avg_pool1d: the reference's windows."""
    m = torch.zeros(out, length, dtype=torch.float32, device="cpu")
    for i in range(out):
        start = (i * length) // out
        end = -((-(i + 1) * length) // out)
        m[i, start:end] = 1.0 / (end - start)
    return m


def stage_geometry(
    grid: tuple[int, int],
    sr_ratio: int,
    pretrain_grid: tuple[int, int],
    trained_grid: tuple[int, int] | None = None,
    fixed_pool_size: int | None = None,
) -> StageGeometry:
    """Geometry of one stage; full attention has sr_ratio 1 (the pool grid is the grid).
    With `trained_grid`, the CPB MLP runs on that grid and the bias is resized to `grid`.
    With `fixed_pool_size` N (linear inference mode), an aggregated-attention stage pools to N x N
    whatever its grid, and its position bias is evaluated for N x N pooled keys (the trained grid
    too, so only the queries are resized); full attention ignores it, as in the published code."""
    fixed = fixed_pool_size is not None and sr_ratio > 1
    pool = (fixed_pool_size, fixed_pool_size) if fixed else (grid[0] // sr_ratio, grid[1] // sr_ratio)
    if min(pool) < 1:
        raise InvalidArgumentError(f"grid {grid[0]}x{grid[1]} with sr_ratio {sr_ratio} has an empty pool grid")
    if trained_grid is None:
        bq, bk = grid, pool
    else:
        bq = trained_grid
        bk = pool if fixed else (bq[0] // sr_ratio, bq[1] // sr_ratio)
        if min(bk) < 1:
            raise InvalidArgumentError(f"position_bias='interpolate' needs a trained grid with a non-empty pool grid; "
                             f"{bq[0]}x{bq[1]} with sr_ratio {sr_ratio} has none")
    pool_matrices = None
    if grid[0] % pool[0] or grid[1] % pool[1]:
        pool_matrices = (_pool_matrix(grid[0], pool[0]), _pool_matrix(grid[1], pool[1]))
    return StageGeometry(grid, pool, bq, bk, pretrain_grid, factorized_cpb_table(bq, bk, pretrain_grid),
                         pool_matrices)


# ------------------------------------------------------------------------------------------ per-block tensors


def _cpb_mlp(attn: nn.Module, table: torch.Tensor) -> torch.Tensor:
    """(U, nh) bias of every row of the coordinate table. Eagerly, a large table runs in chunks of
    CPB_CHUNK_ROWS: its (U, 512) hidden layer would otherwise be the largest tensor of the whole
    forward pass at detection sizes (micro at 800x1333: U = 0.8M rows in stage 1 with
    fixed_pool_size 7, 0.5M without, 1.6 GB per copy). Traces keep one MatMul."""
    if table.shape[0] <= CPB_CHUNK_ROWS or tracing():
        return attn.cpb_fc2(F.relu(attn.cpb_fc1(table)))
    return torch.cat([attn.cpb_fc2(F.relu(attn.cpb_fc1(rows))) for rows in table.split(CPB_CHUNK_ROWS)])


def position_bias(attn: nn.Module, geo: StageGeometry, plain: bool) -> torch.Tensor:
    """(nh, N, P) bias for the stage geometry, resized when the MLP ran on a trained grid.

    In eager CPU inference the fast path reuses the last bias while the CPB parameters are
    bit-identical to the ones it was computed from (an exact comparison of ~10k numbers, so in-place
    edits through `.data` are seen too). Elsewhere it is computed every call: under autograd; inside
    traces, exports and torch.compile, where the graph must compute the bias from its small tables
    instead of baking a (nh, N, P) constant; and on any other device, where the comparison would
    wait for the device (a host synchronisation per block, which CUDA-graph capture refuses).
    """
    if plain or torch.is_grad_enabled() or tracing() or geo.device.type != "cpu":
        return compute_position_bias(attn, geo, plain)
    params = [attn.cpb_fc1.weight, attn.cpb_fc1.bias, attn.cpb_fc2.weight, attn.cpb_fc2.bias]
    cached = attn._position_bias_cache
    if cached is not None and cached[0] is geo and all(
            a.dtype == b.dtype and a.device == b.device and torch.equal(a, b) for a, b in zip(cached[1], params)):
        return cached[2]
    bias = compute_position_bias(attn, geo, plain)
    attn._position_bias_cache = (geo, [p.detach().clone() for p in params], bias)
    return bias


def compute_position_bias(attn: nn.Module, geo: StageGeometry, plain: bool) -> torch.Tensor:
    nq = geo.bias_query_grid[0] * geo.bias_query_grid[1]
    nk = geo.bias_key_grid[0] * geo.bias_key_grid[1]
    if plain:
        index, table = geo.reference_cpb()
        values = _cpb_mlp(attn, table).transpose(0, 1)[:, index]
    else:
        values = _cpb_mlp(attn, geo.factorized.table).transpose(0, 1)[:, geo.factorized.index()]
    bias = values.reshape(-1, nq, nk)
    return resize_bias(bias, geo.bias_query_grid, geo.bias_key_grid, geo.grid, geo.pool_grid)


def adaptive_avg_pool(x: torch.Tensor, geo: StageGeometry) -> torch.Tensor:
    """adaptive_avg_pool2d in a form every exporter handles: a strided average pool when the grid
    divides evenly, else two small averaging matmuls (same windows as the reference)."""
    if geo.pool_matrices is None:
        kh, kw = geo.grid[0] // geo.pool_grid[0], geo.grid[1] // geo.pool_grid[1]
        return F.avg_pool2d(x, (kh, kw), (kh, kw))
    rows, cols = geo.pool_matrices
    return rows @ x @ cols.transpose(0, 1)

"""TransNeXt (Shi, CVPR 2024): the PyTorch reference every exported artifact is measured against.

Parameter names and shapes follow the published implementation exactly, so the official
`transnext_*_1k.pth` checkpoints load with `strict=True`. Two implementations of aggregated
attention share one set of parameters:

- "plain" mirrors the published math step by step (unfold of keys/values, padding mask,
  per-query matmuls, the published CPB table with its N*P index map);
- "fast" calls `aggregated_attention_core`, the decomposition of the fused op, which visits the
  window through shifted views and never materialises unfolded keys/values. Its depthwise
  convolutions read the channels-last tokens in place, and in eager CPU float32 its token
  projections run through oneDNN (`token_linear`).
- "fused" is "fast" with the core replaced by the op itself, `torch.ops.transnext.aggregated_attention`
  (ops/fused_op.py, registered when "fused" is first used): the plugin's CUDA kernel on the GPU,
  its host library on the CPU.

Resolution handling. Stage grids come from the actual input (the patch-embedding convolutions
round up), pool grids are (H // sr, W // sr) as in the reference. `img_size` is the size the model
is built for: a classifier only accepts that size; a backbone accepts any size whose pool grids
are non-empty. `fixed_pool_size=N` is the published linear inference mode (paper, section 4.1;
`fixed_pool_size` of the reference classification code): every aggregated-attention stage pools to
N x N whatever the input size, its position bias is evaluated for those N x N pooled keys and its
length scale counts N*N pooled positions (the window and its border mask do not change), so the
cost of attention grows linearly with the number of pixels; full attention (sr_ratio 1) is
unchanged, and every stage grid must be larger than N on its shorter side, as the reference asserts. `position_bias="extrapolate"` evaluates the CPB MLP on the relative coordinates of
the actual grid (scaled by `pretrain_size`), as the reference classification code does for its
`img_size`; `"interpolate"` evaluates it on a trained grid and resizes the bias bilinearly, as the
reference detection/segmentation code does. The trained grid is `img_size` for a backbone (the
downstream training size) and `pretrain_size` for a classifier (the size its weights were
trained at).

Devices and dtypes. The constants of an input size (position-bias tables, pooling matrices, window
masks) are built once on the CPU in float32 and copied to the parameters' device and dtype when
`model.to(...)` moves them, or on the first call at a new size; forward never copies them again
and never reads a value back to the host, so CUDA graphs can capture it and
`torch.compile(model, fullgraph=True)` traces it whole (the model's `img_size` is built at
construction; call `model.geometry(h, w)` before compiling for another size). The model has no
buffers: its state dict is exactly the published one.
"""

from __future__ import annotations

import math
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import InvalidArgumentError
from ..ops.aggregated_attention import aggregated_attention_core, window_constants
from ..resolution import pair
from .config import (
    ATTENTION,
    POSITION_BIAS,
    VARIANTS,
    AttentionImpl,
    PositionBiasMode,
    TransNeXtConfig,
    check_fixed_pool_size,
    check_input_size,
    check_pretrain_size,
    min_input_side,
    resolve_variant,
)
from .geometry import StageGeometry, adaptive_avg_pool, position_bias, stage_geometry, tracing
from .position_bias import stage_grids, trained_grids

ATTENTION_IMPLS = ATTENTION.values
POSITION_BIAS_MODES = POSITION_BIAS.values

BLOCK_NORM_EPS = 1e-6
# Whether the fast implementation runs its token projections through oneDNN (see token_linear).
ONEDNN_PROJECTIONS = torch.backends.mkldnn.is_available()
# PyTorch computes a 1x1 convolution of a single image this small with its native GEMM path,
# not oneDNN (aten/src/ATen/native/Convolution.cpp), which is slower than F.linear itself: the
# pooled tokens of a 7x7 pool grid stay on F.linear.
ONEDNN_MIN_NUMEL = 20480


def _register_fused_op() -> None:
    """Registers torch.ops.transnext.aggregated_attention; imported only once "fused" is used."""
    from ..ops import fused_op  # noqa: F401


def fused_attention_core(*inputs: torch.Tensor, num_heads: int, height: int, width: int, window_size: int,
                         pool_height: int, pool_width: int) -> torch.Tensor:
    """`aggregated_attention_core` through the fused op. Its kernels take one dtype for all nine inputs, so
    the parameters are cast to the query's (under autocast the projections are float16, the parameters float32)."""
    dtype = inputs[0].dtype
    return torch.ops.transnext.aggregated_attention(*(t.to(dtype) for t in inputs), num_heads, height, width,
                                                    window_size, pool_height, pool_width)


def token_linear(layer: nn.Linear, x: torch.Tensor, grid: tuple[int, int], rows: slice | None = None) -> torch.Tensor:
    """`layer(x)` for the tokens x (B, H*W, C) of a stage in the fast implementation; with `rows`,
    only those output features (a slice of the weight's rows, no copy).

    In eager float32 on the CPU it runs as a 1x1 convolution over a channels-last view of the
    token grid (no copies): that goes to oneDNN instead of the BLAS sgemm behind F.linear, and on
    the AMD EPYC CPUs this project is measured on oneDNN is about twice as fast for these shapes
    (benchmarks/bench_attention.py times the fast model with and without it). The result is the
    same product in another summation order. Traces and exports keep F.linear, so graphs
    hold MatMul (+ Add) as every consumer of them expects.
    """
    weight, bias = layer.weight, layer.bias
    if rows is not None:
        weight, bias = weight[rows], bias[rows]
    if (x.device.type != "cpu" or x.dtype != torch.float32 or not ONEDNN_PROJECTIONS or tracing()
            or x.numel() <= ONEDNN_MIN_NUMEL):
        return F.linear(x, weight, bias)
    H, W = grid
    image = x.reshape(-1, H, W, x.shape[-1]).permute(0, 3, 1, 2)
    out = F.conv2d(image, weight[:, :, None, None], bias)
    return out.permute(0, 2, 3, 1).reshape(-1, H * W, weight.shape[0])


class DWConv(nn.Module):
    def __init__(self, dim: int, implementation: AttentionImpl = "fast"):
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, kernel_size=3, stride=1, padding=1, bias=True, groups=dim)
        self.implementation: AttentionImpl = implementation

    def forward(self, x: torch.Tensor, H: int, W: int) -> torch.Tensor:
        C = self.dwconv.in_channels
        if self.implementation == "plain":  # published layout: copy tokens to NCHW and back
            B = x.shape[0]
            x = x.transpose(1, 2).reshape(B, C, H, W).contiguous()
            return self.dwconv(x).flatten(2).transpose(1, 2)
        # Tokens are already NHWC in memory: convolve a channels-last view, no layout copies.
        # Sizes come from the geometry (batch as -1), so a trace has no shape arithmetic.
        x = self.dwconv(x.reshape(-1, H, W, C).permute(0, 3, 1, 2))
        return x.permute(0, 2, 3, 1).reshape(-1, H * W, C)


class ConvolutionalGLU(nn.Module):
    def __init__(self, in_features: int, hidden_features: int, implementation: AttentionImpl = "fast"):
        super().__init__()
        hidden_features = int(2 * hidden_features / 3)
        self.fc1 = nn.Linear(in_features, hidden_features * 2)
        self.dwconv = DWConv(hidden_features, implementation)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_features, in_features)
        self.implementation: AttentionImpl = implementation

    def forward(self, x: torch.Tensor, H: int, W: int) -> torch.Tensor:
        if self.implementation == "plain":
            x, v = self.fc1(x).chunk(2, dim=-1)
            return self.fc2(self.act(self.dwconv(x, H, W)) * v)
        # Each half of fc1 on its own: both outputs are dense (the depthwise convolution reads its
        # half without a copy), and a trace holds two MatMuls instead of chunk()'s two Slice copies
        # fed by shape arithmetic.
        h = self.fc2.in_features
        x, v = token_linear(self.fc1, x, (H, W), slice(0, h)), token_linear(self.fc1, x, (H, W), slice(h, 2 * h))
        return token_linear(self.fc2, self.act(self.dwconv(x, H, W)) * v, (H, W))


class AggregatedAttention(nn.Module):
    """Pixel-focused attention: a window around each query plus pooled keys, one softmax."""

    def __init__(self, dim: int, num_heads: int, window_size: int, sr_ratio: int,
                 implementation: AttentionImpl = "fast"):
        super().__init__()
        if dim % num_heads:
            raise InvalidArgumentError(f"dim {dim} is not divisible by num_heads {num_heads}")
        if window_size % 2 != 1:
            raise InvalidArgumentError(f"window size must be odd, got {window_size}")
        self.dim = dim
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.sr_ratio = sr_ratio
        self.window_size = window_size
        self.local_len = window_size**2
        self.implementation: AttentionImpl = implementation

        # softplus(temperature) starts at 1/0.24
        self.temperature = nn.Parameter(torch.log((torch.ones(num_heads, 1, 1) / 0.24).exp() - 1))
        self.q = nn.Linear(dim, dim, bias=True)
        self.query_embedding = nn.Parameter(
            nn.init.trunc_normal_(torch.empty(num_heads, 1, self.head_dim), mean=0, std=0.02))
        self.kv = nn.Linear(dim, dim * 2, bias=True)
        self.proj = nn.Linear(dim, dim)
        self.sr = nn.Conv2d(dim, dim, kernel_size=1, stride=1, padding=0)
        self.norm = nn.LayerNorm(dim)
        self.act = nn.GELU()
        self.cpb_fc1 = nn.Linear(2, 512, bias=True)
        self.cpb_fc2 = nn.Linear(512, num_heads, bias=True)
        self.relative_pos_bias_local = nn.Parameter(
            nn.init.trunc_normal_(torch.empty(num_heads, self.local_len), mean=0, std=0.0004))
        self.learnable_tokens = nn.Parameter(
            nn.init.trunc_normal_(torch.empty(num_heads, self.head_dim, self.local_len), mean=0, std=0.02))
        self.learnable_bias = nn.Parameter(torch.zeros(num_heads, 1, self.local_len))
        self._position_bias_cache = None
        if implementation == "fused":
            _register_fused_op()

    def forward(self, x: torch.Tensor, geo: StageGeometry) -> torch.Tensor:
        geo = geo.on(x.device, self.cpb_fc1.weight.dtype)  # the tables meet these weights
        if self.implementation == "plain":
            return self.forward_plain(x, geo)
        return self.forward_fast(x, geo)

    def pooled_tokens(self, x: torch.Tensor, geo: StageGeometry, exportable: bool) -> torch.Tensor:
        C = self.dim
        H, W = geo.grid
        x_ = x.transpose(1, 2).reshape(-1, C, H, W)
        x_ = self.act(self.sr(x_))
        x_ = adaptive_avg_pool(x_, geo) if exportable else F.adaptive_avg_pool2d(x_, geo.pool_grid)
        return self.norm(x_.reshape(-1, C, geo.pool_grid[0] * geo.pool_grid[1]).transpose(1, 2))

    def forward_fast(self, x: torch.Tensor, geo: StageGeometry) -> torch.Tensor:
        nh, d, L = self.num_heads, self.head_dim, self.local_len
        core = fused_attention_core if self.implementation == "fused" else aggregated_attention_core
        out = core(
            token_linear(self.q, x, geo.grid),
            token_linear(self.kv, x, geo.grid),
            token_linear(self.kv, self.pooled_tokens(x, geo, exportable=True), geo.pool_grid),
            self.query_embedding.reshape(nh, d),
            F.softplus(self.temperature).reshape(nh),
            self.relative_pos_bias_local,
            self.learnable_tokens,
            self.learnable_bias.reshape(nh, L),
            position_bias(self, geo, plain=False),
            num_heads=nh,
            height=geo.grid[0],
            width=geo.grid[1],
            window_size=self.window_size,
            pool_height=geo.pool_grid[0],
            pool_width=geo.pool_grid[1],
        )
        return token_linear(self.proj, out, geo.grid)

    def forward_plain(self, x: torch.Tensor, geo: StageGeometry) -> torch.Tensor:
        B, N, C = x.shape
        H, W = geo.grid
        nh, d, L = self.num_heads, self.head_dim, self.local_len
        pool_len = geo.pool_grid[0] * geo.pool_grid[1]

        window = window_constants(H, W, self.window_size, pool_len, x.device, x.dtype)
        q_norm = F.normalize(self.q(x).reshape(B, N, nh, d).permute(0, 2, 1, 3), dim=-1)
        q_norm_scaled = (q_norm + self.query_embedding) * F.softplus(self.temperature) * window.sequence_scale

        k_local, v_local = self.kv(x).chunk(2, dim=-1)
        k_local = F.normalize(k_local.reshape(B, N, nh, d), dim=-1).reshape(B, N, -1)
        kv_local = torch.cat([k_local, v_local], dim=-1).permute(0, 2, 1).reshape(B, -1, H, W)
        unfolded = F.unfold(kv_local, self.window_size, padding=self.window_size // 2)
        k_local, v_local = unfolded.reshape(B, 2 * nh, d, L, N).permute(0, 1, 4, 2, 3).chunk(2, dim=1)

        attn_local = ((q_norm_scaled.unsqueeze(-2) @ k_local).squeeze(-2)
                      + self.relative_pos_bias_local.unsqueeze(1)).masked_fill(window.outside, float("-inf"))

        x_ = self.pooled_tokens(x, geo, exportable=False)
        kv_pool = self.kv(x_).reshape(B, pool_len, 2 * nh, d).permute(0, 2, 1, 3)
        k_pool, v_pool = kv_pool.chunk(2, dim=1)

        pool_bias = position_bias(self, geo, plain=True)
        attn_pool = q_norm_scaled @ F.normalize(k_pool, dim=-1).transpose(-2, -1) + pool_bias

        attn = torch.cat([attn_local, attn_pool], dim=-1).softmax(dim=-1)
        attn_local, attn_pool = torch.split(attn, [L, pool_len], dim=-1)
        x_local = (((q_norm @ self.learnable_tokens) + self.learnable_bias + attn_local).unsqueeze(-2)
                   @ v_local.transpose(-2, -1)).squeeze(-2)
        x_pool = attn_pool @ v_pool
        x = (x_local + x_pool).transpose(1, 2).reshape(B, N, C)
        return self.proj(x)


class Attention(nn.Module):
    """Full attention with length-scaled cosine similarity (last stage when sr_ratio == 1)."""

    def __init__(self, dim: int, num_heads: int, implementation: AttentionImpl = "fast"):
        super().__init__()
        if dim % num_heads:
            raise InvalidArgumentError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.temperature = nn.Parameter(torch.log((torch.ones(num_heads, 1, 1) / 0.24).exp() - 1))
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.query_embedding = nn.Parameter(
            nn.init.trunc_normal_(torch.empty(num_heads, 1, self.head_dim), mean=0, std=0.02))
        self.proj = nn.Linear(dim, dim)
        self.cpb_fc1 = nn.Linear(2, 512, bias=True)
        self.cpb_fc2 = nn.Linear(512, num_heads, bias=True)
        self.implementation: AttentionImpl = implementation  # "plain" uses the published CPB index map
        self._position_bias_cache = None

    def forward(self, x: torch.Tensor, geo: StageGeometry) -> torch.Tensor:
        geo = geo.on(x.device, self.cpb_fc1.weight.dtype)
        N = geo.grid[0] * geo.grid[1]
        C = self.num_heads * self.head_dim
        fast = self.implementation != "plain"
        qkv = token_linear(self.qkv, x, geo.grid) if fast else self.qkv(x)
        qkv = qkv.reshape(-1, N, 3 * self.num_heads, self.head_dim).permute(0, 2, 1, 3)
        q, k, v = qkv.chunk(3, dim=1)
        rel_bias = position_bias(self, geo, plain=not fast)
        # ln(N) as a Python number: the published float64 buffer, which multiplies float32 tensors as a
        # float32 scalar; a number needs no device and takes any dtype.
        attn = ((F.normalize(q, dim=-1) + self.query_embedding) * F.softplus(self.temperature)
                * math.log(N)) @ F.normalize(k, dim=-1).transpose(-2, -1) + rel_bias
        x = (attn.softmax(dim=-1) @ v).transpose(1, 2).reshape(-1, N, C)
        return token_linear(self.proj, x, geo.grid) if fast else self.proj(x)


# Modules with a "fast" and a "plain" forward; each keeps its own `implementation`, set by set_attention.
SWITCHABLE_MODULES = (AggregatedAttention, Attention, ConvolutionalGLU, DWConv)


class Block(nn.Module):
    def __init__(self, dim: int, num_heads: int, window_size: int | None, mlp_ratio: int, sr_ratio: int,
                 implementation: AttentionImpl):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=BLOCK_NORM_EPS)
        if sr_ratio == 1:
            self.attn: nn.Module = Attention(dim, num_heads, implementation)
        else:
            self.attn = AggregatedAttention(dim, num_heads, window_size or 3, sr_ratio, implementation)
        self.norm2 = nn.LayerNorm(dim, eps=BLOCK_NORM_EPS)
        self.mlp = ConvolutionalGLU(dim, int(dim * mlp_ratio), implementation)

    def forward(self, x: torch.Tensor, geo: StageGeometry) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), geo)
        return x + self.mlp(self.norm2(x), geo.grid[0], geo.grid[1])


class OverlapPatchEmbed(nn.Module):
    def __init__(self, patch_size: int, stride: int, in_chans: int, embed_dim: int):
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=stride,
                              padding=patch_size // 2)
        self.norm = nn.LayerNorm(embed_dim)  # default eps 1e-5, as published

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, int, int]:
        x = self.proj(x)
        H, W = int(x.shape[-2]), int(x.shape[-1])  # static per input size, so traces keep them constant
        return self.norm(x.reshape(-1, self.proj.out_channels, H * W).transpose(1, 2)), H, W


class TransNeXt(nn.Module):
    """TransNeXt classifier (`backbone=False`) or four-stage feature backbone (`backbone=True`)."""

    def __init__(
        self,
        config: TransNeXtConfig,
        *,
        name: str = "custom",
        img_size: int | tuple[int, int] | None = None,
        pretrain_size: int | tuple[int, int] | None = None,
        backbone: bool = False,
        position_bias: PositionBiasMode = "extrapolate",
        attention: AttentionImpl = "fast",
        num_classes: int = 1000,
        in_chans: int = 3,
        fixed_pool_size: int | None = None,
    ):
        super().__init__()
        position_bias = POSITION_BIAS.parse(position_bias)
        attention = ATTENTION.parse(attention)
        self.config = config
        self.name = name
        self.fixed_pool_size = check_fixed_pool_size(fixed_pool_size)
        self.img_size = pair(img_size if img_size is not None else config.train_size)
        self.check_input_size(*self.img_size)
        self.pretrain_size = check_pretrain_size(pretrain_size if pretrain_size is not None else config.train_size)
        self.backbone = backbone
        self.position_bias = position_bias
        self.num_stages = 4
        self._geometry: dict[tuple[int, int], list[StageGeometry]] = {}

        c = config
        for i in range(self.num_stages):
            setattr(self, f"patch_embed{i + 1}", OverlapPatchEmbed(
                patch_size=c.patch_size * 2 - 1 if i == 0 else 3,
                stride=c.patch_size if i == 0 else 2,
                in_chans=in_chans if i == 0 else c.embed_dims[i - 1],
                embed_dim=c.embed_dims[i]))
            setattr(self, f"block{i + 1}", nn.ModuleList([
                Block(c.embed_dims[i], c.num_heads[i], c.window_sizes[i], c.mlp_ratios[i], c.sr_ratios[i], attention)
                for _ in range(c.depths[i])]))
            setattr(self, f"norm{i + 1}", nn.LayerNorm(c.embed_dims[i], eps=BLOCK_NORM_EPS))
        if not backbone:
            self.head = nn.Linear(c.embed_dims[3], num_classes)
        self.apply(self._init_weights)
        self.geometry(*self.img_size)

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Conv2d):
            fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
            nn.init.normal_(m.weight, 0, (2.0 / fan_out) ** 0.5)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    # ----------------------------------------------------------------------------------------
    # attention implementation
    @property
    def attention(self) -> AttentionImpl:
        return next(m.implementation for m in self.modules() if isinstance(m, AggregatedAttention))

    def set_attention(self, implementation: AttentionImpl) -> "TransNeXt":
        """Switch every module that has two implementations (attention, GLU, depthwise convolution)."""
        implementation = ATTENTION.parse(implementation)
        if implementation == "fused":
            _register_fused_op()
        for m in self.modules():
            if isinstance(m, SWITCHABLE_MODULES):
                m.implementation = implementation
        for geometry in self._geometry.values():
            self._prepare(geometry)
        return self

    # ----------------------------------------------------------------------------------------
    # geometry
    @property
    def min_input_side(self) -> int:
        return min_input_side(self.config, self.fixed_pool_size)

    def check_input_size(self, height: int, width: int) -> None:
        """Raise ValueError (InvalidArgumentError) naming the stage and reason when an input size
        cannot be handled."""
        check_input_size(self.config, height, width, self.name, self.fixed_pool_size)

    def geometry(self, height: int, width: int) -> list[StageGeometry]:
        """The stage geometries of an input size, built on first use (the model's `img_size` at
        construction) together with their copies for the parameters' device and dtype. Calling it
        before torch.compile or CUDA-graph capture at a new size keeps the building out of the graph."""
        key = (height, width)
        if key not in self._geometry:
            self._add_geometry(height, width)
        return self._geometry[key]

    @torch.compiler.disable(reason="a new input size builds its tables with numpy: call model.geometry(height, "
                                   "width) or run the model once at that size before compiling with fullgraph=True")
    def _add_geometry(self, height: int, width: int) -> None:
        self.check_input_size(height, width)
        geometry = self._build_geometry(height, width)
        self._prepare(geometry)
        self._geometry[(height, width)] = geometry

    def _prepare(self, geometry: list[StageGeometry]) -> None:
        """Make the copies forward will ask for at the parameters' device and dtype, and the published
        CPB tables where an attention module is plain, so a first call copies and builds nothing."""
        weight = self.patch_embed1.proj.weight
        plain = any(m.implementation == "plain" for m in self.modules()
                    if isinstance(m, (AggregatedAttention, Attention)))
        for geo in geometry:
            copy = geo.on(weight.device, weight.dtype)
            if plain:
                copy.reference_cpb()

    def _apply(self, fn, recurse=True):
        # model.to(device, dtype), .half(), .cuda(), ...: the geometry follows the parameters. Copies are
        # always made from the CPU float32 originals, so .half().float() loses nothing.
        super()._apply(fn, recurse)
        for geometry in self._geometry.values():
            for geo in geometry:
                geo.release_copies()
            self._prepare(geometry)
        return self

    def _build_geometry(self, height: int, width: int) -> list[StageGeometry]:
        c = self.config
        pretrain = trained_grids(*self.pretrain_size)
        trained = trained_grids(*(self.img_size if self.backbone else self.pretrain_size))
        return [
            stage_geometry(grid, c.sr_ratios[i], pretrain[i],
                           trained[i] if self.position_bias == "interpolate" else None, self.fixed_pool_size)
            for i, grid in enumerate(stage_grids(height, width))
        ]

    # ----------------------------------------------------------------------------------------
    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The four stage outputs after `norm{i}`, NCHW."""
        height, width = int(x.shape[-2]), int(x.shape[-1])
        if not self.backbone and (height, width) != self.img_size:
            raise InvalidArgumentError(f"this classifier is built for {self.img_size[0]}x{self.img_size[1]} inputs, got "
                             f"{height}x{width}; rebuild it with img_size=({height}, {width}) or use backbone=True")
        geometry = self.geometry(int(height), int(width))
        outs = []
        for i in range(self.num_stages):
            x, H, W = getattr(self, f"patch_embed{i + 1}")(x)
            geo = geometry[i]
            for blk in getattr(self, f"block{i + 1}"):
                x = blk(x, geo)
            x = getattr(self, f"norm{i + 1}")(x)
            x = x.reshape(-1, H, W, self.config.embed_dims[i]).permute(0, 3, 1, 2)
            outs.append(x)
        return outs

    def forward(self, x: torch.Tensor):
        features = self.forward_features(x)
        if self.backbone:
            return features
        return self.head(features[-1].flatten(2).mean(-1))


def create_model(
    name: str,
    img_size: int | tuple[int, int] | None = None,
    pretrain_size: int | tuple[int, int] | None = None,
    backbone: bool = False,
    position_bias: PositionBiasMode = "extrapolate",
    attention: AttentionImpl = "fast",
    num_classes: int = 1000,
    fixed_pool_size: int | None = None,
) -> TransNeXt:
    """Build a TransNeXt variant: one of `list_models()`. See the module docstring for sizes and for
    `fixed_pool_size` (linear inference mode)."""
    key = resolve_variant(name)
    return TransNeXt(VARIANTS[key], name=key, img_size=img_size, pretrain_size=pretrain_size, backbone=backbone,
                     position_bias=position_bias, attention=attention, num_classes=num_classes,
                     fixed_pool_size=fixed_pool_size)


def list_models() -> list[str]:
    return list(VARIANTS)

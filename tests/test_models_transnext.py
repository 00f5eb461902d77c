"""The PyTorch TransNeXt: architecture facts, both attention implementations, resolution handling."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F

from transnext_deploy import create_model, list_models
from transnext_deploy.models.position_bias import (
    factorized_cpb_table,
    reference_cpb_table,
    stage_grids,
)
from transnext_deploy.models import geometry as geometry_module
from transnext_deploy.models import transnext as transnext_module
from transnext_deploy.models.transnext import (
    SWITCHABLE_MODULES,
    AggregatedAttention,
    Attention,
    stage_geometry,
    token_linear,
)
from transnext_deploy.compare import error_stats

from helpers import perturb_

# fast vs plain, and either vs the per-pixel ground truth: max|diff| / max|ref| in fp32
REL_TOL = 1e-4

# Published parameter counts (millions), from the paper's model zoo.
PUBLISHED_PARAMS_M = {"micro": 12.8, "tiny": 28.2, "small": 49.7, "base": 89.7, "micro_AAAA": 13.1}


def assert_close(ref, out, tol=REL_TOL, what=""):
    stats = error_stats(ref, out)
    assert stats.relative <= tol, f"{what}: {stats} exceeds relative tolerance {tol}"
    return stats


# ---------------------------------------------------------------------------------------------
# architecture facts


@pytest.mark.parametrize("name", list(PUBLISHED_PARAMS_M))
def test_parameter_count_matches_published(name):
    model = create_model(name)
    count = sum(p.numel() for p in model.parameters()) / 1e6
    assert abs(count - PUBLISHED_PARAMS_M[name]) < 0.1, f"{name}: {count:.3f}M vs {PUBLISHED_PARAMS_M[name]}M"


def test_registry_lists_every_variant():
    assert list_models() == ["micro", "tiny", "small", "base", "micro_AAAA"]
    with pytest.raises(ValueError, match="unknown TransNeXt variant 'huge'"):
        create_model("huge")


def test_state_dict_names_and_shapes_follow_the_published_tree():
    sd = create_model("tiny").state_dict()
    h1 = int(2 * int(72 * 8) / 3)  # ConvolutionalGLU hidden width of stage 1
    expected = {
        "patch_embed1.proj.weight": (72, 3, 7, 7),
        "patch_embed2.proj.weight": (144, 72, 3, 3),
        "patch_embed1.norm.weight": (72,),
        "block1.0.norm1.weight": (72,),
        "block1.0.attn.q.weight": (72, 72),
        "block1.0.attn.kv.weight": (144, 72),
        "block1.0.attn.kv.bias": (144,),
        "block1.0.attn.proj.weight": (72, 72),
        "block1.0.attn.sr.weight": (72, 72, 1, 1),
        "block1.0.attn.norm.weight": (72,),
        "block1.0.attn.cpb_fc1.weight": (512, 2),
        "block1.0.attn.cpb_fc2.weight": (3, 512),
        "block1.0.attn.temperature": (3, 1, 1),
        "block1.0.attn.query_embedding": (3, 1, 24),
        "block1.0.attn.relative_pos_bias_local": (3, 9),
        "block1.0.attn.learnable_tokens": (3, 24, 9),
        "block1.0.attn.learnable_bias": (3, 1, 9),
        "block1.0.mlp.fc1.weight": (2 * h1, 72),
        "block1.0.mlp.dwconv.dwconv.weight": (h1, 1, 3, 3),
        "block1.0.mlp.fc2.weight": (72, h1),
        "block3.14.attn.learnable_tokens": (12, 24, 9),
        "block4.1.attn.qkv.weight": (1728, 576),
        "block4.1.attn.query_embedding": (24, 1, 24),
        "block4.1.attn.cpb_fc2.bias": (24,),
        "norm4.weight": (576,),
        "head.weight": (1000, 576),
    }
    for key, shape in expected.items():
        assert tuple(sd[key].shape) == shape, key
    assert "block3.15.norm1.weight" not in sd and "block4.0.attn.q.weight" not in sd
    forbidden = ("relative_pos_index", "relative_coords_table", "seq_length_scale", "padding_mask")
    assert not [k for k in sd if any(f in k for f in forbidden)], "non-persistent buffers leaked into state_dict"
    eps = {m.eps for n, m in create_model("tiny").named_modules() if isinstance(m, torch.nn.LayerNorm)
           and (n.endswith("norm1") or n.endswith("norm2") or n.startswith("norm"))}
    assert eps == {1e-6}
    model = create_model("tiny")
    assert model.patch_embed1.norm.eps == 1e-5 and model.block1[0].attn.norm.eps == 1e-5


def test_micro_aaaa_uses_aggregated_attention_in_every_stage():
    model = create_model("micro_AAAA")
    assert model.img_size == (256, 256)
    assert all(isinstance(b.attn, AggregatedAttention) for i in range(4) for b in getattr(model, f"block{i + 1}"))
    assert [getattr(model, f"block{i + 1}")[0].attn.sr_ratio for i in range(4)] == [16, 8, 4, 2]
    assert isinstance(create_model("micro").block4[0].attn, Attention)


# ---------------------------------------------------------------------------------------------
# a per-pixel ground truth of aggregated attention, written from the formulas in the spec


def cpb_direct(attn, query_grid, key_grid, pretrain_grid):
    """Position bias evaluated pair by pair: no unique table, no index map."""
    def centres(n, k):
        return F.adaptive_avg_pool1d(torch.arange(n, dtype=torch.float32)[None, None], k)[0, 0]

    qh = torch.arange(query_grid[0], dtype=torch.float32)
    qw = torch.arange(query_grid[1], dtype=torch.float32)
    kh, kw = centres(*[query_grid[0], key_grid[0]]), centres(query_grid[1], key_grid[1])
    rel_h = (qh[:, None] - kh[None, :]) / (pretrain_grid[0] - 1) * 8  # (qh, kh)
    rel_w = (qw[:, None] - kw[None, :]) / (pretrain_grid[1] - 1) * 8
    rh = rel_h[:, None, :, None].expand(query_grid[0], query_grid[1], key_grid[0], key_grid[1])
    rw = rel_w[None, :, None, :].expand(query_grid[0], query_grid[1], key_grid[0], key_grid[1])
    coords = torch.stack([rh, rw], -1).reshape(-1, 2)
    coords = (torch.sign(coords) * torch.log2(coords.abs() + 1) / math.log2(8)).to(attn.cpb_fc1.weight.dtype)
    out = attn.cpb_fc2(torch.relu(attn.cpb_fc1(coords)))  # (N*P, nh)
    nq, nk = query_grid[0] * query_grid[1], key_grid[0] * key_grid[1]
    return out.transpose(0, 1).reshape(-1, nq, nk)


def aggregated_attention_per_pixel(attn: AggregatedAttention, x, H, W, pretrain_grid, pool_grid=None):
    """Loop over every query pixel and head in float64; the pool grid is (H // sr, W // sr) unless given."""
    a = attn.double()
    x = x.double()
    B, N, C = x.shape
    nh, d, w = a.num_heads, a.head_dim, a.window_size
    r = w // 2
    Hp, Wp = pool_grid or (H // a.sr_ratio, W // a.sr_ratio)
    P = Hp * Wp
    q = a.q(x).reshape(B, N, nh, d)
    k, v = a.kv(x).reshape(B, N, 2, nh, d).unbind(2)
    xs = a.act(a.sr(x.transpose(1, 2).reshape(B, C, H, W)))
    xs = a.norm(F.adaptive_avg_pool2d(xs, (Hp, Wp)).reshape(B, C, P).transpose(1, 2))
    kp, vp = a.kv(xs).reshape(B, P, 2, nh, d).unbind(2)
    pool_bias = cpb_direct(a, (H, W), (Hp, Wp), pretrain_grid)
    temp = F.softplus(a.temperature).reshape(nh)
    out = torch.zeros(B, N, nh, d, dtype=torch.float64)
    for b in range(B):
        for h in range(nh):
            for i in range(H):
                for j in range(W):
                    n = i * W + j
                    qn = q[b, n, h] / q[b, n, h].norm().clamp_min(1e-12)
                    nbrs = [(ai * w + bi, (i + ai - r) * W + (j + bi - r)) for ai in range(w) for bi in range(w)
                            if 0 <= i + ai - r < H and 0 <= j + bi - r < W]
                    qs = (qn + a.query_embedding[h, 0]) * temp[h] * math.log(len(nbrs) + P)
                    scores = [qs @ (k[b, m, h] / k[b, m, h].norm().clamp_min(1e-12))
                              + a.relative_pos_bias_local[h, l] for l, m in nbrs]
                    scores += [qs @ (kp[b, p, h] / kp[b, p, h].norm().clamp_min(1e-12)) + pool_bias[h, n, p]
                               for p in range(P)]
                    prob = torch.stack(scores).softmax(0)
                    acc = torch.zeros(d, dtype=torch.float64)
                    for idx, (l, m) in enumerate(nbrs):
                        weight = prob[idx] + qn @ a.learnable_tokens[h, :, l] + a.learnable_bias[h, 0, l]
                        acc = acc + weight * v[b, m, h]
                    for p in range(P):
                        acc = acc + prob[len(nbrs) + p] * vp[b, p, h]
                    out[b, n, h] = acc
    result = a.proj(out.reshape(B, N, C))
    attn.float()
    return result


def make_block(dim=12, heads=2, window=3, sr=2, seed=0):
    torch.manual_seed(seed)
    attn = AggregatedAttention(dim, heads, window, sr)
    perturb_(attn, seed=seed)
    return attn.eval()


@pytest.mark.parametrize("grid,sr,window", [
    ((5, 7), 2, 3),   # non-square, every border case of a 3x3 window
    ((1, 6), 1, 3),   # one pixel high: every window is cut at top and bottom
    ((6, 1), 1, 3),
    ((2, 2), 2, 3),   # every pixel is a corner, one pooled key
    ((7, 5), 3, 5),   # 5x5 window, pool grid 2x1
])
@pytest.mark.parametrize("implementation", ["plain", "fast"])
def test_aggregated_attention_matches_per_pixel_ground_truth(grid, sr, window, implementation):
    attn = make_block(window=window, sr=sr)
    attn.implementation = implementation
    H, W = grid
    pretrain = (4, 4)
    geo = stage_geometry(grid, sr, pretrain)
    x = torch.randn(2, H * W, attn.dim)
    with torch.no_grad():
        truth = aggregated_attention_per_pixel(attn, x, H, W, pretrain)
        out = attn(x, geo)
    assert_close(truth, out, what=f"{implementation} {grid}")


@pytest.mark.parametrize("grid,sr,n", [
    ((5, 7), 2, 3),   # fixed_pool_size N: linear inference mode, N divides neither side
    ((6, 4), 4, 2),   # N divides both sides, larger than the default 1x1 pool
    ((7, 6), 3, 3),   # N divides one side
])
@pytest.mark.parametrize("implementation", ["plain", "fast", "fused"])
def test_fixed_pool_grid_matches_per_pixel_ground_truth(grid, sr, n, implementation):
    attn = make_block(sr=sr)
    attn.implementation = implementation
    if implementation == "fused":
        transnext_module._register_fused_op()
    H, W = grid
    pretrain = (4, 4)
    geo = stage_geometry(grid, sr, pretrain, fixed_pool_size=n)
    assert geo.pool_grid == (n, n)
    x = torch.randn(2, H * W, attn.dim)
    with torch.no_grad():
        truth = aggregated_attention_per_pixel(attn, x, H, W, pretrain, pool_grid=(n, n))
        default = aggregated_attention_per_pixel(attn, x, H, W, pretrain)
        out = attn(x, geo)
    assert_close(truth, out, what=f"{implementation} {grid} N={n}")
    assert error_stats(default, truth).relative > 1e-2  # the pool grid matters at this size


# ---------------------------------------------------------------------------------------------
# fast vs plain on every variant, every parameter perturbed


@pytest.mark.parametrize("name,size", [
    ("micro", 96), ("tiny", 224), ("small", 64), ("base", 64), ("micro_AAAA", 128), ("micro", (96, 160)),
])
def test_fast_and_plain_agree_on_every_variant(name, size):
    torch.manual_seed(0)
    model = create_model(name, img_size=size).eval()
    perturb_(model)
    hw = (size, size) if isinstance(size, int) else size
    x = torch.randn(2, 3, *hw)
    with torch.no_grad():
        fast = model(x)
        plain = model.set_attention("plain")(x)
    assert model.attention == "plain"
    stats = assert_close(plain, fast, what=f"{name}@{size}")
    assert stats.cosine > 0.99999


@pytest.mark.parametrize("onednn", [True, False])
def test_fast_model_agrees_with_plain_with_either_projection_route(onednn, monkeypatch):
    monkeypatch.setattr(transnext_module, "ONEDNN_PROJECTIONS", onednn)
    torch.manual_seed(1)
    model = create_model("micro", img_size=(64, 96), backbone=True).eval()
    perturb_(model)
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        fast = model(x)
        plain = model.set_attention("plain")(x)
    for i, (p, f) in enumerate(zip(plain, fast)):
        assert_close(p, f, what=f"stage {i + 1}, oneDNN projections {onednn}")


@pytest.mark.parametrize("grid", [(14, 14), (7, 5), (1, 9)])
def test_token_linear_is_the_linear_layer(grid, monkeypatch):
    monkeypatch.setattr(transnext_module, "ONEDNN_MIN_NUMEL", 0)  # the convolution route at every size
    layer = torch.nn.Linear(40, 72)
    x = torch.randn(3, grid[0] * grid[1], 40)
    with torch.no_grad():
        ref = F.linear(x.double(), layer.weight.double(), layer.bias.double())
        out = token_linear(layer, x, grid)
        wide = token_linear(copy.deepcopy(layer).double(), x.double(), grid)  # float64 takes F.linear
        strided = token_linear(layer, torch.cat([x, x], dim=-1)[..., :40], grid)  # a chunk() view, as in the GLU
    assert out.shape == (3, grid[0] * grid[1], 72) and out.is_contiguous()
    assert_close(ref, out, tol=1e-6, what=f"token_linear {grid}")
    assert torch.equal(wide, ref)
    assert torch.equal(strided, out)


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
def test_traced_projections_stay_linear_layers():
    """Under a trace the fast model emits MatMul (+ Add) for its projections, never Conv: the
    rewrite and TensorRT read Linear layers from them."""
    model = create_model("micro", img_size=64).eval()
    model.geometry(64, 64)
    with torch.no_grad():
        traced = torch.jit.trace(model, torch.randn(1, 3, 64, 64), check_trace=False)
    kinds = [n.kind() for n in traced.inlined_graph.nodes()]
    convs = kinds.count("aten::_convolution")
    # patch embeddings (4), depthwise convs of the GLUs (21) and `sr` of the aggregated-attention blocks (19)
    assert convs == 4 + 21 + 19, convs
    assert kinds.count("aten::linear") > 0


def test_every_module_with_two_implementations_follows_the_choice():
    """Each module owns its choice: set at construction (the full-attention stage too) and by set_attention."""
    model = create_model("micro", img_size=64, attention="plain")
    modules = [m for m in model.modules() if isinstance(m, SWITCHABLE_MODULES)]
    kinds = {type(m).__name__ for m in modules}
    assert kinds == {"AggregatedAttention", "Attention", "ConvolutionalGLU", "DWConv"}
    assert {m.implementation for m in modules} == {"plain"}
    model.set_attention("fast")
    assert {m.implementation for m in modules} == {"fast"}


def test_zero_initialised_terms_are_live_after_perturbation():
    """learnable_bias starts at zero; the perturbation must make it matter, or the agreement tests test nothing."""
    model = create_model("micro", img_size=64).eval()
    perturb_(model)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        before = model(x)
        model.block1[0].attn.learnable_bias.mul_(0)
        after = model(x)
    assert (before - after).abs().max() > 1e-4


# ---------------------------------------------------------------------------------------------
# position bias


@pytest.mark.parametrize("query,key,pretrain", [((56, 56), (7, 7), (56, 56)), ((14, 10), (7, 5), (14, 14)),
                                                ((96, 96), (12, 12), (56, 56)), ((3, 1), (1, 1), (4, 4))])
def test_factorized_cpb_table_equals_published_table(query, key, pretrain):
    index, table = reference_cpb_table(query, key, pretrain)
    fact = factorized_cpb_table(query, key, pretrain)
    assert torch.equal(fact.table, table)
    assert torch.equal(fact.index(), index)


@pytest.mark.slow
def test_extrapolated_bias_equals_direct_evaluation_at_new_resolution():
    """A 224-trained classifier built for 384: CPB on the 96x96 grid, coordinates scaled by the 56 grid."""
    model = create_model("micro", img_size=384, pretrain_size=224).eval()
    perturb_(model)
    attn = model.block1[0].attn
    geo = model.geometry(384, 384)[0]
    assert geo.grid == (96, 96) and geo.pool_grid == (12, 12)
    from transnext_deploy.models.geometry import compute_position_bias

    with torch.no_grad():
        direct = cpb_direct(attn, (96, 96), (12, 12), (56, 56))
        for plain in (True, False):
            assert_close(direct, compute_position_bias(attn, geo, plain), tol=1e-6, what=f"plain={plain}")


def test_position_bias_mlp_in_chunks_equals_one_call(monkeypatch):
    """A large coordinate table runs through the CPB MLP in chunks (eager only): same bias."""
    model = create_model("micro", img_size=(64, 96), backbone=True).eval()
    perturb_(model)
    attn, geo = model.block1[0].attn, model.geometry(64, 96)[0]
    from transnext_deploy.models.geometry import compute_position_bias

    assert geo.factorized.table.shape[0] > 100
    with torch.no_grad():
        whole = compute_position_bias(attn, geo, plain=False)
        monkeypatch.setattr(geometry_module, "CPB_CHUNK_ROWS", 37)
        chunked = compute_position_bias(attn, geo, plain=False)
        chunked_plain = compute_position_bias(attn, geo, plain=True)
    assert_close(whole, chunked, tol=1e-6, what="chunked")
    assert_close(whole, chunked_plain, tol=1e-6, what="chunked, published table")


def test_interpolated_bias_resizes_the_trained_grid_bias():
    model = create_model("micro", img_size=224, backbone=True, position_bias="interpolate").eval()
    perturb_(model)
    attn = model.block2[0].attn
    geo = model.geometry(320, 256)[1]  # stage 2: 40x32 grid, pool 10x8; trained 28x28, pool 7x7
    assert geo.grid == (40, 32) and geo.pool_grid == (10, 8)
    from transnext_deploy.models.geometry import compute_position_bias

    with torch.no_grad():
        trained = cpb_direct(attn, (28, 28), (7, 7), (28, 28))  # (nh, 784, 49)
        nh = trained.shape[0]
        t = F.interpolate(trained.reshape(nh, 784, 7, 7), (10, 8), mode="bilinear", align_corners=False)
        t = t.reshape(nh, 784, 80).transpose(1, 2).reshape(nh, 80, 28, 28)
        t = F.interpolate(t, (40, 32), mode="bilinear", align_corners=False).reshape(nh, 80, 1280).transpose(1, 2)
        assert_close(t, compute_position_bias(attn, geo, plain=False), tol=1e-6)


def test_interpolate_at_the_trained_size_equals_extrapolate():
    torch.manual_seed(0)
    a = create_model("tiny", img_size=224, backbone=True, position_bias="interpolate").eval()
    perturb_(a)
    b = create_model("tiny", img_size=224, backbone=True, position_bias="extrapolate").eval()
    b.load_state_dict(a.state_dict())
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        for fa, fb in zip(a(x), b(x)):
            assert torch.equal(fa, fb)


def test_interpolate_differs_from_extrapolate_off_the_trained_size():
    torch.manual_seed(0)
    a = create_model("micro", img_size=224, backbone=True, position_bias="interpolate").eval()
    perturb_(a, scale=0.5)
    b = create_model("micro", img_size=224, backbone=True, position_bias="extrapolate").eval()
    b.load_state_dict(a.state_dict())
    x = torch.randn(1, 3, 256, 320)
    with torch.no_grad():
        diff = max((fa - fb).abs().max().item() for fa, fb in zip(a(x), b(x)))
    assert diff > 1e-3


def test_cached_position_bias_follows_in_place_parameter_edits():
    model = create_model("micro", img_size=64).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        first = model(x)
        model.block1[0].attn.cpb_fc2.bias.data.add_(3.0)  # .data edits do not bump the version counter
        second = model(x)
        reference = model.set_attention("plain")(x)
    assert (first - second).abs().max() > 1e-4
    assert_close(reference, second)


# ---------------------------------------------------------------------------------------------
# resolution handling and backbone mode


def test_backbone_returns_four_nchw_stages_and_matches_the_classifier_features():
    torch.manual_seed(0)
    cls = create_model("micro", img_size=224).eval()
    perturb_(cls)
    bb = create_model("micro", img_size=224, backbone=True).eval()
    missing, unexpected = bb.load_state_dict(cls.state_dict(), strict=False)
    assert not missing and unexpected == ["head.weight", "head.bias"]
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        feats = bb(x)
        ref = cls.forward_features(x)
        logits = cls(x)
    assert [tuple(f.shape) for f in feats] == [(2, 48, 56, 56), (2, 96, 28, 28), (2, 192, 14, 14), (2, 384, 7, 7)]
    for f, r in zip(feats, ref):
        assert torch.equal(f, r)
    assert torch.allclose(logits, cls.head(feats[-1].mean((2, 3))), atol=1e-5)


@pytest.mark.parametrize("hw", [(224, 160), (200, 200), (97, 131), (32, 32)])
def test_backbone_accepts_other_sizes_at_run_time(hw):
    torch.manual_seed(0)
    model = create_model("micro", img_size=224, backbone=True).eval()
    perturb_(model)
    x = torch.randn(1, 3, *hw)
    with torch.no_grad():
        fast = model(x)
        plain = model.set_attention("plain")(x)
    grids = stage_grids(*hw)
    assert [tuple(f.shape[-2:]) for f in fast] == grids
    for f, p in zip(fast, plain):
        assert_close(p, f, what=str(hw))


def test_backbone_at_a_new_size_equals_a_classifier_built_for_it():
    """Extrapolation at run time is the reference classifier's construction at that img_size."""
    torch.manual_seed(0)
    bb = create_model("micro", img_size=224, backbone=True).eval()
    perturb_(bb)
    cls = create_model("micro", img_size=288, pretrain_size=224).eval()
    cls.load_state_dict(bb.state_dict(), strict=False)
    x = torch.randn(1, 3, 288, 288)
    with torch.no_grad():
        for a, b in zip(bb(x), cls.forward_features(x)):
            assert torch.equal(a, b)


def test_too_small_input_names_stage_and_reason():
    model = create_model("micro_AAAA", backbone=True)
    with pytest.raises(ValueError, match=r"stage 1 has a 12x12 token grid and sr_ratio 16.*smallest accepted side: 61"):
        model(torch.randn(1, 3, 48, 48))
    with pytest.raises(ValueError, match="too small"):
        create_model("tiny", img_size=16)


def test_classifier_rejects_other_sizes_with_a_hint():
    model = create_model("micro", img_size=224)
    with pytest.raises(ValueError, match=r"built for 224x224 inputs, got 256x256.*backbone=True"):
        model(torch.randn(1, 3, 256, 256))


def test_bad_options_are_refused():
    with pytest.raises(ValueError, match="position_bias must be extrapolate or interpolate"):
        create_model("micro", position_bias="nearest")
    with pytest.raises(ValueError, match="attention must be fast, plain or fused"):
        create_model("micro", attention="flash")
    with pytest.raises(ValueError, match="pretrain_size"):
        create_model("micro", pretrain_size=32)

"""Linear inference mode (`fixed_pool_size`, paper section 4.1): every aggregated-attention stage pools
to N x N whatever the input size.

Parity with the published implementation: where a mirror of DaiShiResearch/TransNeXt is at hand
(`$TRANSNEXT_PUBLISHED_SOURCE`, a git repository or a checkout, else the project's mirror), its
`classification/transnext.py` and `attention_native.py` are loaded (benchmarks/published_model.py,
timm stand-ins where timm is missing) and run with `fixed_pool_size=N` on our weights: the whole
classifier on square inputs (the published classifier takes one square `img_size`), and one
AggregatedAttention block on non-square grids. Without the mirror those tests skip with the reason;
the per-pixel ground truth in test_models_transnext.py (written from the formulas) covers the mode everywhere.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import onnx
import pytest
import torch
from typer.testing import CliRunner

from transnext_deploy import create_model
from transnext_deploy.artifacts import FUNCTION_FILE, PLUGIN_FILE, graph_precision
from transnext_deploy.models.checkpoint import load_checkpoint
from transnext_deploy.cli import app
from transnext_deploy.export import ExportError, ExportOptions, export
from transnext_deploy.models.config import VARIANTS, check_input_size
from transnext_deploy.models.geometry import stage_geometry
from transnext_deploy.models.transnext import AggregatedAttention
from transnext_deploy.ops.contract import OP_NAME
from transnext_deploy.compare import error_stats

from helpers import perturb_, perturbed_checkpoint

# Ours vs the published model, float32 on the CPU: max|diff| / max|ref|. The same arithmetic in
# another order (no unfold, factorised bias table, fused op): float32 round-off only.
PARITY_REL_TOL = 1e-4
MAX_ABS_TOL = 1e-4  # exported graphs vs PyTorch, as in test_export.py

REPO = Path(__file__).resolve().parents[1]
PUBLISHED = Path(os.environ.get("TRANSNEXT_PUBLISHED_SOURCE", "/work/.mirror/DaiShiResearch+TransNeXt/repo"))
PUBLISHED_FILES = ("transnext.py", "attention_native.py")


def assert_close(ref, out, what, tol=PARITY_REL_TOL):
    stats = error_stats(ref, out)
    assert stats.relative <= tol, f"{what}: {stats} exceeds relative tolerance {tol}"
    return stats


# ---------------------------------------------------------------------------------------------
# the option and the sizes it accepts


@pytest.mark.parametrize("value", [0, -3, True, 7.0, "7"])
def test_bad_pool_sizes_are_one_line_errors(value):
    with pytest.raises(ValueError, match=r"^fixed_pool_size must be a positive integer .*got") as info:
        create_model("micro", fixed_pool_size=value)
    assert "\n" not in str(info.value)


def test_every_aggregated_stage_pools_to_n_by_n_and_full_attention_is_unchanged():
    model = create_model("micro", backbone=True, fixed_pool_size=7)
    geos = model.geometry(800, 1333)
    assert [g.grid for g in geos] == [(200, 334), (100, 167), (50, 84), (25, 42)]
    assert [g.pool_grid for g in geos] == [(7, 7)] * 3 + [(25, 42)]  # stage 4: full attention
    assert [g.bias_key_grid for g in geos[:3]] == [(7, 7)] * 3
    aaaa = create_model("micro_AAAA", backbone=True, fixed_pool_size=5).geometry(320, 448)
    assert [g.pool_grid for g in aaaa] == [(5, 5)] * 4  # aggregated attention in all four stages
    default = create_model("micro", backbone=True).geometry(800, 1333)
    assert [g.pool_grid for g in default] == [(25, 41), (25, 41), (25, 42), (25, 42)]


def test_inputs_must_keep_every_stage_grid_larger_than_the_pool():
    """The published rule (fixed_pool_size < the shorter side of every aggregated-attention grid)."""
    model = create_model("micro", backbone=True, fixed_pool_size=7)
    assert model.min_input_side == 113  # stage 3 (stride 16) needs an 8-pixel side
    model.geometry(113, 113)
    with pytest.raises(ValueError, match=r"^input 112x400 is too small for transnext_micro with fixed_pool_size 7: "
                                         r"stage 3 has a 7x25 token grid .*smallest accepted side: 113\)$"):
        model(torch.randn(1, 3, 112, 400))
    with pytest.raises(ValueError, match="fixed_pool_size 14"):
        create_model("micro", fixed_pool_size=14)  # the classifier's 224 has a 14x14 stage 3
    check_input_size(VARIANTS["micro_AAAA"], 256, 256, "micro_AAAA", fixed_pool_size=7)  # stage 4: 8x8
    with pytest.raises(ValueError, match="stage 4 has a 8x8 token grid"):
        check_input_size(VARIANTS["micro_AAAA"], 256, 256, "micro_AAAA", fixed_pool_size=8)


def test_seven_at_224_is_the_default_model():
    """At 224 every aggregated stage of micro/tiny/small/base already pools to 7x7 (the paper's choice)."""
    torch.manual_seed(0)
    default = create_model("micro").eval()
    perturb_(default)
    linear = create_model("micro", fixed_pool_size=7).eval()
    linear.load_state_dict(default.state_dict())
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        assert torch.equal(default(x), linear(x))


def test_checkpoints_load_unchanged(tmp_path):
    ckpt = perturbed_checkpoint(tmp_path / "micro.pth", "micro")
    model = create_model("micro", backbone=True, fixed_pool_size=7)
    report = load_checkpoint(model, ckpt)
    assert report.ok and sorted(report.ignored) == ["head.bias", "head.weight"]
    assert model.state_dict().keys() == create_model("micro", backbone=True).state_dict().keys()


# ---------------------------------------------------------------------------------------------
# implementations, devices and dtypes


@pytest.mark.parametrize("size,n", [((116, 150), 7), ((64, 96), 2)])  # N divides no stage grid / some
def test_plain_fast_and_fused_agree_on_non_square_inputs(size, n):
    torch.manual_seed(0)
    model = create_model("micro", backbone=True, fixed_pool_size=n).eval()
    perturb_(model)
    x = torch.randn(2, 3, *size)
    with torch.no_grad():
        plain = model.set_attention("plain")(x)
        for implementation in ("fast", "fused"):
            out = model.set_attention(implementation)(x)
            for i, (p, o) in enumerate(zip(plain, out)):
                assert_close(p, o, f"{implementation} stage {i + 1} at {size}, N={n}")


def test_interpolated_bias_resizes_only_the_queries():
    """No published counterpart: the MLP runs on the trained query grid against the N x N keys, and
    the bias is resized over the queries only; at the trained size it is extrapolation."""
    torch.manual_seed(0)
    inter = create_model("micro", img_size=(64, 96), backbone=True, position_bias="interpolate",
                         fixed_pool_size=3).eval()
    perturb_(inter, scale=0.5)
    extra = create_model("micro", img_size=(64, 96), backbone=True, fixed_pool_size=3).eval()
    extra.load_state_dict(inter.state_dict())
    geo = inter.geometry(96, 128)[1]  # stage 2: 12x16 grid; trained 8x12
    assert (geo.grid, geo.pool_grid, geo.bias_query_grid, geo.bias_key_grid) == ((12, 16), (3, 3), (8, 12), (3, 3))
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        for a, b in zip(inter(x), extra(x)):
            assert torch.equal(a, b)
        x = torch.randn(1, 3, 96, 128)
        fast = inter(x)
        plain = inter.set_attention("plain")(x)
        other = extra(x)
    for i, (f, p, o) in enumerate(zip(fast, plain, other)):
        assert_close(p, f, f"interpolate, stage {i + 1}")
    assert max((f - o).abs().max() for f, o in zip(fast, other)) > 1e-3  # the trained grid matters off it


@pytest.mark.parametrize("name,size,n", [("micro", (48, 80), 2), ("micro_AAAA", (96, 72), 2)])
def test_meta_and_every_dtype(name, size, n):
    """Built on meta and moved through the dtypes (the constants follow); float32, float16 and bfloat16
    on the CPU against float64, with the tolerances of test_models_devices.py."""
    with torch.device("meta"):
        meta = create_model(name, backbone=True, fixed_pool_size=n).eval()
    for dtype in (torch.float16, torch.bfloat16, torch.float64):
        with torch.no_grad():
            outs = meta.to(dtype)(torch.empty(1, 3, *size, device="meta", dtype=dtype))
        assert all(o.device.type == "meta" and o.dtype == dtype for o in outs)
    torch.manual_seed(0)
    model = create_model(name, backbone=True, fixed_pool_size=n).eval()
    perturb_(model)
    x = torch.randn(1, 3, *size)
    with torch.no_grad():
        reference = torch.cat([o.flatten() for o in model.double()(x.double())])
        for dtype, tol in ((torch.float32, 1e-5), (torch.float16, 1e-2), (torch.bfloat16, 5e-2)):
            out = torch.cat([o.double().flatten() for o in model.to(dtype)(x.to(dtype))])
            assert_close(reference, out, f"{name} {dtype}", tol)


# ---------------------------------------------------------------------------------------------
# parity with the published implementation


def _published_text(name: str) -> str:
    checkout = PUBLISHED / "classification" / name
    if checkout.is_file():
        return checkout.read_text()
    return subprocess.run(["git", "-C", str(PUBLISHED), "show", f"HEAD:classification/{name}"],
                          capture_output=True, text=True, check=True).stdout


def _has_published() -> bool:
    try:
        return all(_published_text(name) for name in PUBLISHED_FILES)
    except (OSError, subprocess.CalledProcessError):
        return False


needs_published = pytest.mark.skipif(not _has_published(),
                                     reason=f"no published TransNeXt code at {PUBLISHED} ($TRANSNEXT_PUBLISHED_SOURCE)")


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    """The published module's namespace (transnext.py, with its own attention_native.py)."""
    folder = tmp_path_factory.mktemp("published") / "classification"
    folder.mkdir()
    for name in PUBLISHED_FILES:
        (folder / name).write_text(_published_text(name))
    spec = importlib.util.spec_from_file_location("published_model_loader", REPO / "benchmarks" / "published_model.py")
    loader = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(loader)
    factory, notes = loader.load_published(folder.parent, "micro")
    assert any("attention_native" in n for n in notes), notes
    namespace = factory.__globals__
    yield namespace
    sys.modules.pop("attention_native", None)  # imported by the published file under this bare name


@needs_published
@pytest.mark.parametrize("name,size,n", [
    ("micro", 128, 2),       # every stage grid divisible by N (32, 16, 8)
    ("micro", 96, 5),        # no stage grid divisible by N (24, 12, 6)
    ("tiny", 128, 3),        # no stage grid divisible by N (32, 16, 8), three heads
    ("micro_AAAA", 160, 3),  # four aggregated stages, grids 40, 20, 10, 5 (none divisible)
])
def test_classifier_matches_the_published_linear_mode(published, name, size, n):
    torch.manual_seed(0)
    ours = create_model(name, img_size=size, pretrain_size=224, fixed_pool_size=n).eval()
    perturb_(ours, scale=0.5)
    theirs = published[f"transnext_{name}"](img_size=size, pretrain_size=224, fixed_pool_size=n).eval()
    theirs.load_state_dict(ours.state_dict(), strict=True)
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        reference = theirs(x)
        default = create_model(name, img_size=size, pretrain_size=224).eval()
        default.load_state_dict(ours.state_dict())
        assert error_stats(reference, default(x)).relative > 100 * PARITY_REL_TOL, "N changes nothing here"
        for implementation in ("plain", "fast", "fused"):
            assert_close(reference, ours.set_attention(implementation)(x), f"{name}@{size} N={n} {implementation}")


@needs_published
@pytest.mark.parametrize("grid,sr,n", [
    ((13, 21), 2, 4),  # non-square, N divides neither side
    ((20, 34), 4, 7),  # the shape of micro's stage 3 at 320x544
    ((9, 30), 8, 3),   # N divides both sides
    ((25, 8), 2, 5),   # N divides one side
])
def test_block_matches_the_published_block_on_non_square_grids(published, grid, sr, n):
    H, W = grid
    pretrain = (14, 14)
    torch.manual_seed(0)
    ours = AggregatedAttention(48, 2, 3, sr).eval()
    perturb_(ours, scale=0.5)
    theirs = published["AggregatedAttention"](48, grid, num_heads=2, window_size=3, sr_ratio=sr,
                                              fixed_pool_size=n).eval()
    theirs.load_state_dict(ours.state_dict(), strict=True)
    index, table = published["get_relative_position_cpb"](query_size=grid, key_size=(n, n), pretrain_size=pretrain)
    geo = stage_geometry(grid, sr, pretrain, fixed_pool_size=n)
    assert geo.pool_grid == (n, n)
    x = torch.randn(2, H * W, 48)
    with torch.no_grad():
        reference = theirs(x, H, W, index.cpu(), table.cpu())
        for implementation in ("plain", "fast", "fused"):
            ours.implementation = implementation
            if implementation == "fused":
                from transnext_deploy.ops import fused_op  # noqa: F401 - registers the op
            assert_close(reference, ours(x, geo), f"{grid} sr={sr} N={n} {implementation}")


# ---------------------------------------------------------------------------------------------
# export


@pytest.mark.slow
def test_export_fuses_every_block_with_the_fixed_pool_grid(tmp_path):
    ckpt = perturbed_checkpoint(tmp_path / "m.pth", "micro")
    # stage grids 16x24, 8x12, 4x6: N = 3 divides the widths but not the heights
    (r,) = export(ExportOptions("micro", resolutions=[(64, 96)], checkpoint=str(ckpt), mode="backbone",
                                fixed_pool_size=3, output_dir=tmp_path / "out"))
    d = Path(r.directory)
    assert d.name == "transnext_micro_backbone_64x96_pool3" and r.blocks_fused == 19
    assert r.validation["passed"] and r.validation["fixed_pool_size"] == 3 and not r.validation["skipped"]
    for name, graph in r.validation["graphs"].items():  # the fp16 graphs: at their own tolerance (passed)
        assert graph["passed"] is True, name
        if graph_precision(name) == "fp32":
            assert graph["max_abs"] <= MAX_ABS_TOL, (name, graph["max_abs"])
    manifest = json.loads((d / "manifest.json").read_text())
    assert manifest["fixed_pool_size"] == 3
    assert len(manifest["custom_op"]["blocks"]) == 19
    assert {(b["pool_height"], b["pool_width"]) for b in manifest["custom_op"]["blocks"]} == {(3, 3)}
    for name in (PLUGIN_FILE, FUNCTION_FILE):
        nodes = [n for n in onnx.load(str(d / name), load_external_data=False).graph.node if n.op_type == OP_NAME]
        assert len(nodes) == 19
        for node in nodes:
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
            assert (attrs["pool_height"], attrs["pool_width"]) == (3, 3), (name, attrs)


def test_export_refuses_bad_pool_sizes_before_any_work(tmp_path):
    with pytest.raises(ExportError, match="fixed_pool_size must be a positive integer"):
        export(ExportOptions("micro", fixed_pool_size=0, output_dir=tmp_path / "o"))
    runner = CliRunner()
    for args, message in ((["--fixed-pool-size", "0"], "--fixed-pool-size must be a positive integer"),
                          (["--fixed-pool-size", "7", "-r", "96"], "unsupported resolution 96x96: input 96x96 is too "
                                                                   "small for transnext_micro with fixed_pool_size 7")):
        result = runner.invoke(app, ["export", "-s", "micro", *args, "-o", str(tmp_path / "o")])
        text = result.output.strip()
        assert result.exit_code == 1 and "Traceback" not in text and len(text.splitlines()) == 1, text
        assert message in text
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())

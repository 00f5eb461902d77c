"""The function form: the fused op's standard-op decomposition as ONE ONNX local function.

`model.aa_function.onnx` is the custom-op graph with this function attached, so that a runtime
without the plugin runs every custom node as its body: onnxruntime inlines it, and so does
TensorRT. TensorRT's ONNX parser keys local functions by name alone (onnx-tensorrt's
ModelImporter.cpp, importLocalFunctions, ignores the IR-10 `overload` field) and inlines a node's
function before it asks the plugin registry, so the body must be right for every attribute set: one
function, domain `transnext`, name `TransNeXtAggregatedAttention`, no overload.

- The node's integer attributes are read through attribute references (`Constant` nodes whose
  `value_int` carries `ref_attr_name`), which onnx-tensorrt resolves against the calling node
  (OnnxAttrs.cpp) and onnxruntime substitutes when it inlines; the head size comes from the shape
  of `query_embedding`. Every shape, the window index, the border mask and the length scale are
  computed in the body from them; after inlining they are constant subgraphs that TensorRT folds.
- The window is gathered with one index tensor `idx` of shape (N, L): `idx[n, l]` is the flat token
  index of window position l of query pixel n, or N for an out-of-image position, and keys and
  values get one appended zero row (Pad) at index N. Out-of-image keys score 0 (then + bias + the
  -inf mask) and out-of-image values are zero: the zero padding of the reference, for any odd window
  and any grid, grids smaller than the window included.
- Float constants are `CastLike`d to the input type, so one body serves float32 and float16.

The math is `aggregated_attention_core` (ops/aggregated_attention.py); tests/test_export_functions.py
holds the two to 1e-5 relative error for many attribute sets, and runs a two-stage graph through a
name-keyed inliner (TensorRT's lookup) so that a layout that mixes stages up cannot come back.
Inside the body, heads come first, (B, nh, N, d); the gathered window is (B, nh, N, L, d), and
both window products are batched MatMuls over (B, nh, N), so the gathered tensors are never
transposed. The gather materialises L copies of keys and values (about 11 MB per image in micro's
first stage at 224): the function form is the portable graph, `model.aa_plugin.onnx` the fast one.
"""

from __future__ import annotations

import itertools

import onnx
from onnx import AttributeProto, TensorProto, helper

from ..errors import InvalidArgumentError

from ..ops.contract import (
    ATTRIBUTE_NAMES,
    INPUT_NAMES,
    L2_EPS,
    OP_DOMAIN,
    OP_NAME,
    OUTPUT_NAMES,
    PLUGIN_VERSION_ATTRIBUTE,
)

# CastLike needs opset 15. Reduce/Squeeze/Unsqueeze/Split take axes/sizes as inputs (opset >= 13
# form; onnx-tensorrt requires those axes to be constants: they are Constant nodes). Checked with
# onnxruntime at opsets 15, 17, 18 and 21.
MIN_OPSET = 15
FUNCTION_IR_VERSION = 8  # local functions whose attributes refer to the calling node's


class _Body:
    """Accumulates the function's nodes; every helper returns the name of its (first) output."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self._ids = itertools.count()
        self.last_axis = self.ints(-1, name="axis_last")  # ReduceSum/Squeeze/Unsqueeze axes input

    def op(self, op_type: str, *inputs: str, name: str | None = None, outputs: int = 1, **attrs) -> str | list[str]:
        base = name or f"{op_type.lower()}_{next(self._ids)}"
        outs = [base] if outputs == 1 else [f"{base}_{i}" for i in range(outputs)]
        self.nodes.append(helper.make_node(op_type, list(inputs), outs, name=base, **attrs))
        return outs[0] if outputs == 1 else outs

    def ints(self, *values: int, name: str | None = None) -> str:
        """A 1-D int64 constant (axes, pads, split sizes): not stage-specific."""
        value = helper.make_tensor("value", TensorProto.INT64, [len(values)], list(values))
        return self.op("Constant", name=name, value=value)

    def scalar(self, value: int, name: str | None = None) -> str:
        return self.op("Constant", name=name, value_int=value)

    def floating(self, value: float, like: str, name: str) -> str:
        """A float scalar in the element type of `like` (float32 or float16)."""
        const = self.op("Constant", name=f"{name}_f32", value_float=value)
        return self.op("CastLike", const, like, name=name)

    def attribute(self, attr: str) -> str:
        """A scalar int64 holding the calling node's integer attribute `attr`."""
        node = helper.make_node("Constant", [], [attr], name=attr)
        node.attribute.append(helper.make_attribute_ref("value_int", AttributeProto.INT, ref_attr_name=attr))
        self.nodes.append(node)
        return attr

    def l2_normalize(self, x: str, eps: str, name: str) -> str:
        """x / max(||x||_2 over the last axis, eps), as `l2_normalize` in the reference."""
        sq = self.op("Mul", x, x, name=f"{name}_sq")
        ss = self.op("ReduceSum", sq, self.last_axis, name=f"{name}_sumsq", keepdims=1)
        norm = self.op("Sqrt", ss, name=f"{name}_norm")
        return self.op("Div", x, self.op("Max", norm, eps, name=f"{name}_clamp"), name=name)


# Long on purpose: one body in the order of the formula (aggregated_attention_core), section by
# section, so the two can be read side by side; split into functions, each section would pass on
# a dozen tensor names (sizes, window index, masks, scaled queries) for the next one to take back.
def aggregated_attention_function(opset: int = 17) -> onnx.FunctionProto:
    """The op's standard-op decomposition as one local function, right for every attribute set."""
    if opset < MIN_OPSET:
        raise InvalidArgumentError(f"the function body needs opset >= {MIN_OPSET}, got {opset}")
    (query, key_value, pooled_key_value, query_embedding, temperature_scale, local_bias, learnable_tokens,
     learnable_bias, pool_bias) = INPUT_NAMES
    g = _Body()

    # ---- integer attributes and sizes (int64; scalars "x", 1-D "x_1d")
    nh, H, W, w, ph, pw = (g.attribute(a) for a in ATTRIBUTE_NAMES)
    zero, one = g.scalar(0, "zero"), g.scalar(1, "one")
    ax0, ax1 = g.ints(0, name="axis_0"), g.ints(1, name="axis_1")
    N = g.op("Mul", H, W, name="N")
    L = g.op("Mul", w, w, name="L")
    P = g.op("Mul", ph, pw, name="P")
    r = g.op("Div", w, g.scalar(2, "two"), name="radius")  # w // 2 (w odd, positive)
    N_1d, L_1d, P_1d, nh_1d = (g.op("Unsqueeze", s, ax0, name=f"{s}_1d") for s in (N, L, P, nh))
    # head dim d from query_embedding (nh, d): the attributes do not carry it.
    d_1d = g.op("Gather", g.op("Shape", query_embedding, name="qe_shape"), ax1, name="d_1d", axis=0)
    minus1, two_1d = g.ints(-1, name="minus1"), g.ints(2, name="two_1d")

    # ---- window index, border mask and sequence-length scale, from (H, W, w, P)
    # rows[i, a] = i + a - r, cols[j, c] = j + c - r; slot l = a*w + c (row-major), as in the reference.
    offsets = g.op("Sub", g.op("Range", zero, w, one, name="range_w"), r, name="offsets")  # (w,)
    rows = g.op("Add", g.op("Unsqueeze", g.op("Range", zero, H, one, name="range_h"), ax1, name="range_h_col"),
                offsets, name="rows")  # (H, w)
    cols = g.op("Add", g.op("Unsqueeze", g.op("Range", zero, W, one, name="range_wd"), ax1, name="range_wd_col"),
                offsets, name="cols")  # (W, w)

    def inside(coord: str, limit: str, name: str) -> str:  # 0 <= coord < limit
        ge0 = g.op("Not", g.op("Less", coord, zero, name=f"{name}_neg"), name=f"{name}_ge0")
        return g.op("And", ge0, g.op("Less", coord, limit, name=f"{name}_lt"), name=name)

    axes_13, axes_02 = g.ints(1, 3, name="axes_13"), g.ints(0, 2, name="axes_02")
    # Broadcast (H, 1, w, 1) with (1, W, 1, w) to (H, W, w, w), then flatten to (N, L).
    in_rows = g.op("Unsqueeze", inside(rows, H, "rows_in"), axes_13, name="rows_in_4d")
    in_cols = g.op("Unsqueeze", inside(cols, W, "cols_in"), axes_02, name="cols_in_4d")
    flat = g.op("Add", g.op("Mul", g.op("Unsqueeze", rows, axes_13, name="rows_4d"), W, name="row_offset"),
                g.op("Unsqueeze", cols, axes_02, name="cols_4d"), name="flat_4d")
    shape_nl = g.op("Concat", N_1d, L_1d, name="shape_NL", axis=0)
    in_window = g.op("Reshape", g.op("And", in_rows, in_cols, name="inside_4d"), shape_nl, name="inside")  # (N, L)
    flat = g.op("Reshape", flat, shape_nl, name="flat")
    # Out-of-image positions point at the zero row appended at index N.
    idx = g.op("Where", in_window, flat, N, name="window_index")  # (N, L) int64

    # sequence_scale = ln(in-image positions + P), computed in float32 then cast (the reference
    # computes it in float64 and rounds once; float32 log of a small integer is within 1 ulp).
    counts = g.op("ReduceSum", g.op("Cast", in_window, name="inside_f32", to=TensorProto.FLOAT), ax1,
                  name="valid_count", keepdims=1)  # (N, 1)
    seq_f32 = g.op("Log", g.op("Add", counts, g.op("Cast", P, name="P_f32", to=TensorProto.FLOAT),
                               name="count_plus_P"), name="seq_scale_f32")
    seq_scale = g.op("CastLike", seq_f32, query, name="seq_scale")  # (N, 1)
    border = g.op("Where", in_window, g.floating(0.0, query, "zero_t"), g.floating(float("-inf"), query, "neg_inf"),
                  name="border_mask")  # (N, L): 0 inside, -inf outside
    eps = g.floating(L2_EPS, query, "l2_eps")

    # ---- queries: (B, N, C) -> (B, nh, N, d)
    heads_first = [0, 2, 1, 3]
    shape_q = g.op("Concat", minus1, N_1d, nh_1d, d_1d, name="shape_BNhd", axis=0)
    q = g.op("Transpose", g.op("Reshape", query, shape_q, name="q_4d"), name="q", perm=heads_first)
    q_norm = g.l2_normalize(q, eps, "q_norm")
    qe = g.op("Unsqueeze", query_embedding, ax1, name="qe_h1d")  # (nh, 1, d)
    ts = g.op("Unsqueeze", temperature_scale, g.ints(1, 2, name="axes_12"), name="ts_h11")  # (nh, 1, 1)
    q_scaled = g.op("Mul", g.op("Mul", g.op("Add", q_norm, qe, name="q_embedded"), ts, name="q_temp"), seq_scale,
                    name="q_scaled")  # (B, nh, N, d)

    # ---- keys and values: (B, N, 2C) -> (B, nh, N, d) each, zero row appended -> (B, nh, N+1, d)
    shape_kv = g.op("Concat", minus1, N_1d, two_1d, nh_1d, d_1d, name="shape_BN2hd", axis=0)
    kv = g.op("Reshape", key_value, shape_kv, name="kv_5d")
    k = g.op("Transpose", g.op("Gather", kv, zero, name="k_raw", axis=2), name="k_h", perm=heads_first)
    v = g.op("Transpose", g.op("Gather", kv, one, name="v_raw", axis=2), name="v_h", perm=heads_first)
    k = g.l2_normalize(k, eps, "k_norm")
    pad_row = g.ints(0, 0, 0, 0, 0, 0, 1, 0, name="pad_one_row")  # one zero row at the end of axis 2
    k_ext = g.op("Pad", k, pad_row, name="k_ext")
    v_ext = g.op("Pad", v, pad_row, name="v_ext")
    k_win = g.op("Gather", k_ext, idx, name="k_window", axis=2)  # (B, nh, N, L, d)
    v_win = g.op("Gather", v_ext, idx, name="v_window", axis=2)  # (B, nh, N, L, d)

    # ---- local scores: (L, d) @ (d, 1) per (B, nh, N) -> (B, nh, N, L)
    local = g.op("MatMul", k_win, g.op("Unsqueeze", q_scaled, g.last_axis, name="q_col"), name="local_dot")
    local = g.op("Squeeze", local, g.last_axis, name="local_raw")
    lb = g.op("Unsqueeze", local_bias, ax1, name="local_bias_h1L")  # (nh, 1, L)
    local = g.op("Add", g.op("Add", local, lb, name="local_biased"), border, name="local_scores")

    # ---- pooled scores: (B, P, 2C) -> keys (B, nh, d, P), values (B, nh, P, d)
    shape_pkv = g.op("Concat", minus1, P_1d, two_1d, nh_1d, d_1d, name="shape_BP2hd", axis=0)
    pkv = g.op("Reshape", pooled_key_value, shape_pkv, name="pkv_5d")
    k_pool = g.l2_normalize(g.op("Gather", pkv, zero, name="kp_raw", axis=2), eps, "kp_norm")  # (B, P, nh, d)
    k_pool = g.op("Transpose", k_pool, name="kp_t", perm=[0, 2, 3, 1])
    v_pool = g.op("Transpose", g.op("Gather", pkv, one, name="vp_raw", axis=2), name="vp_h", perm=heads_first)
    pool = g.op("Add", g.op("MatMul", q_scaled, k_pool, name="pool_dot"), pool_bias, name="pool_scores")

    # ---- one softmax over [local | pooled]
    attn = g.op("Softmax", g.op("Concat", local, pool, name="scores", axis=-1), name="attn", axis=-1)
    attn_local, attn_pool = g.op("Split", attn, g.op("Concat", L_1d, P_1d, name="split_LP", axis=0),
                                 name="attn_split", outputs=2, axis=-1)

    # ---- weighted sums; the learnable-token term uses q_norm and is added after the softmax
    learnable = g.op("MatMul", q_norm, learnable_tokens, name="learnable_dot")  # (B, nh, N, L)
    lbias = g.op("Unsqueeze", learnable_bias, ax1, name="learnable_bias_h1L")
    weights = g.op("Add", g.op("Add", attn_local, learnable, name="weights_sum"), lbias, name="local_weights")
    axis3 = g.ints(3, name="axis_3")
    out_local = g.op("MatMul", g.op("Unsqueeze", weights, axis3, name="weights_row"), v_win, name="local_out_row")
    out_local = g.op("Squeeze", out_local, axis3, name="local_out")  # (B, nh, N, d)
    out_pool = g.op("MatMul", attn_pool, v_pool, name="pool_out")  # (B, nh, N, d)
    out = g.op("Transpose", g.op("Add", out_pool, out_local, name="out_h"), name="out_t", perm=heads_first)
    g.op("Reshape", out, g.op("Shape", query, name="query_shape"), name=OUTPUT_NAMES[0])  # (B, N, C)

    return helper.make_function(
        OP_DOMAIN, OP_NAME, list(INPUT_NAMES), list(OUTPUT_NAMES), g.nodes,
        [helper.make_opsetid("", opset)],
        attributes=[*ATTRIBUTE_NAMES, PLUGIN_VERSION_ATTRIBUTE])


def function_form(model: onnx.ModelProto) -> onnx.ModelProto:
    """The custom-op graph `model` with the function as its only local function (a copy), at the
    model's own opset (a function importing another version fails the ONNX checker).

    Clears any `overload` on the custom nodes (the function has none, and onnxruntime matches
    domain, name and overload) and makes sure the model imports the `transnext` domain. Local
    functions with attribute references need IR version 8."""
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if opset is None:
        raise InvalidArgumentError("the graph imports no standard ONNX opset: the function body needs one")
    out = onnx.ModelProto()
    out.CopyFrom(model)
    del out.functions[:]
    out.functions.append(aggregated_attention_function(opset))
    for node in out.graph.node:
        if node.op_type == OP_NAME and node.domain == OP_DOMAIN:
            node.overload = ""
    if not any(o.domain == OP_DOMAIN for o in out.opset_import):
        out.opset_import.append(helper.make_opsetid(OP_DOMAIN, 1))
    out.ir_version = max(out.ir_version, FUNCTION_IR_VERSION)
    return out


__all__ = ["FUNCTION_IR_VERSION", "MIN_OPSET", "aggregated_attention_function", "function_form"]

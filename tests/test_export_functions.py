"""The function form (export/functions.py): one generic ONNX local function for the fused op.

`aggregated_attention_function` is the op's standard-op decomposition as ONE local function whose
body reads the calling node's attributes through attribute references; `function_form` attaches it
to a custom-op graph. What is held here:

- onnxruntime runs the function for many attribute sets (grids smaller than the window included)
  and matches `aggregated_attention_core`, the PyTorch reference, in float32, and in float16 at a
  float16 tolerance;
- a two-stage graph inlined the way TensorRT's ONNX parser resolves local functions (by bare name,
  first one wins: tests/name_keyed_inliner.py) still matches the reference for both stages, while a
  per-stage-overload layout (the old export's: one fixed body per attribute set, same name) gives
  stage 2 the wrong body under that lookup -- the control that shows the check has teeth;
- `function_form` attaches exactly one function, (transnext, TransNeXtAggregatedAttention), with no
  overload, and the result passes the ONNX checker and the export's strict shape inference;
- an opset below MIN_OPSET is refused with the package's one-line error.

Inputs are random (fixed seeds), small (seconds on two cores), with a symbolic batch; every
numerical check reports max-abs and relative error (max-abs / max|ref|).
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from onnxruntime.capi.onnxruntime_pybind11_state import Fail, InvalidArgument, InvalidGraph, RuntimeException

from transnext_deploy.compare import error_stats
from transnext_deploy.errors import InvalidArgumentError, TransNeXtDeployError, one_line
from transnext_deploy.export.functions import (
    FUNCTION_IR_VERSION,
    MIN_OPSET,
    aggregated_attention_function,
    function_form,
)
from transnext_deploy.export.trace import check_model
from transnext_deploy.ops.aggregated_attention import aggregated_attention_core
from transnext_deploy.ops.contract import (
    ATTRIBUTE_NAMES,
    INPUT_NAMES,
    OP_DOMAIN,
    OP_NAME,
    OUTPUT_NAMES,
    PLUGIN_VERSION_ATTRIBUTE,
    input_shapes,
)

from name_keyed_inliner import inline_functions_by_name

OPSET = 17
# float32: max|got - ref| <= FP32_RTOL * max|ref|. Measured 1e-7..3e-7 (a few float32 ulps of the
# largest output); a wrong index, mask, scale or term moves the output by O(max|ref|).
FP32_RTOL = 1e-5
# float16 (inputs rounded to float16, reference in float32 on those same values): measured
# 2e-4..4e-4 over 5 seeds and 4 geometries, i.e. about one float16 unit roundoff (2**-11 = 4.9e-4)
# of max|ref|; torch's own float16 run of the reference lands at 6e-4..1.8e-3 on the same inputs.
# 2e-3 (4 units) leaves room for the accumulation order of other CPUs and still catches any real
# error in the math.
FP16_RTOL = 2e-3
# A wrong body gives a wrong answer, not a rounding difference: the negative control must miss by
# at least this much (measured: O(1) relative error).
WRONG_RTOL = 1e-2


def attrs(num_heads: int, height: int, width: int, window_size: int, pool_height: int, pool_width: int
          ) -> dict[str, int]:
    return {"num_heads": num_heads, "height": height, "width": width, "window_size": window_size,
            "pool_height": pool_height, "pool_width": pool_width}


# (batch, head_dim, attributes)
CASES = {
    "micro-stage3-14x14-h8x24-w3-p7x7": (1, 24, attrs(8, 14, 14, 3, 7, 7)),
    "square-8x8-h2x8-w3-p2x2-b2": (2, 8, attrs(2, 8, 8, 3, 2, 2)),
    "non-square-9x13-h3x16-w3-p3x4-b3": (3, 16, attrs(3, 9, 13, 3, 3, 4)),
    "window5-9x7-h2x8-p3x2": (1, 8, attrs(2, 9, 7, 5, 3, 2)),
    "window5-larger-than-grid-2x3-b3": (3, 8, attrs(2, 2, 3, 5, 1, 2)),
    "window7-larger-than-grid-5x4-d5": (1, 5, attrs(1, 5, 4, 7, 2, 2)),
    "window3-grid-1x1-pool-1x1-b2": (2, 4, attrs(2, 1, 1, 3, 1, 1)),
    "window3-single-column-7x1": (2, 6, attrs(3, 7, 1, 3, 1, 1)),
    "window1-6x6-p2x3-b3": (3, 4, attrs(2, 6, 6, 1, 2, 3)),
    "many-heads-5x6-h8x3-w3-p1x3": (2, 3, attrs(8, 5, 6, 3, 1, 3)),
}

# Two stages as in the model (stage 1, then stage 2 with more heads, a smaller grid, another
# window and pool), and a pair whose tensors all have the same shapes but whose grids are
# transposed: there a body for the wrong stage runs silently instead of failing on a shape.
STAGE_PAIRS = {
    "stage1-stage2": ((8, attrs(2, 8, 8, 3, 2, 2)), (4, attrs(4, 4, 6, 5, 1, 3))),
    "transposed-grid": ((8, attrs(2, 6, 8, 3, 2, 2)), (8, attrs(2, 8, 6, 3, 2, 2))),
}
BATCH = 2
ACTIVATIONS = INPUT_NAMES[:3]  # query, key_value, pooled_key_value: batch-first graph inputs


# ---------------------------------------------------------------------------------------------
# helpers


def custom_op_model(op_attrs: dict[str, int], head_dim: int, *, opset: int = OPSET,
                    elem_type: int = TensorProto.FLOAT, ir_version: int | None = None) -> onnx.ModelProto:
    """One custom node, every input a graph input (activations with a symbolic batch), no functions."""
    shapes = input_shapes(1, head_dim, **op_attrs)
    inputs = [helper.make_tensor_value_info(name, elem_type,
                                            ["B", *shape[1:]] if name in ACTIVATIONS else list(shape))
              for name, shape in shapes.items()]
    output = helper.make_tensor_value_info(OUTPUT_NAMES[0], elem_type, ["B", *shapes["query"][1:]])
    node = helper.make_node(OP_NAME, list(INPUT_NAMES), list(OUTPUT_NAMES), name="aggregated_attention",
                            domain=OP_DOMAIN, **op_attrs, **{PLUGIN_VERSION_ATTRIBUTE: "1"})
    model = helper.make_model(helper.make_graph([node], "one_op", inputs, [output]),
                              opset_imports=[helper.make_opsetid("", opset)])
    if ir_version is not None:
        model.ir_version = ir_version
    return model


def random_inputs(batch: int, head_dim: int, op_attrs: dict[str, int], generator: torch.Generator
                  ) -> dict[str, torch.Tensor]:
    """Standard-normal inputs; the temperature scale positive, as softplus makes it."""
    out = {}
    for name, shape in input_shapes(batch, head_dim, **op_attrs).items():
        if name == "temperature_scale":
            out[name] = torch.rand(shape, generator=generator) + 0.5
        else:
            out[name] = torch.randn(shape, generator=generator)
    return out


def reference(inputs: dict[str, torch.Tensor], op_attrs: dict[str, int]) -> np.ndarray:
    with torch.no_grad():
        return aggregated_attention_core(*(inputs[n].float() for n in INPUT_NAMES), **op_attrs).numpy()


def session(model: onnx.ModelProto) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # float16: "can't constant fold Where" warnings, harmless
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def assert_close(got: np.ndarray, ref: np.ndarray, rtol: float, what: str) -> None:
    """max-abs error / max|ref| <= rtol (a non-finite output fails: its error is NaN)."""
    stats = error_stats(ref, got)
    assert stats.relative <= rtol, (f"{what}: max-abs {stats.max_abs:.3e}, relative {stats.relative:.3e} > "
                                    f"{rtol:g} of max|ref| {stats.ref_max_abs:.3g}")


def two_stage_model(pair: str, seed: int = 0) -> tuple[onnx.ModelProto, dict[str, np.ndarray], list[np.ndarray]]:
    """Two custom nodes with different attribute sets, no functions; their feeds and reference outputs.

    Parameters are initializers (as in the exported model), activations graph inputs with a
    symbolic batch; each stage's output is a graph output, so both are checked."""
    generator = torch.Generator().manual_seed(seed)
    nodes, graph_inputs, initializers, outputs, feeds, refs = [], [], [], [], {}, []
    for stage, (head_dim, op_attrs) in enumerate(STAGE_PAIRS[pair], start=1):
        values = random_inputs(BATCH, head_dim, op_attrs, generator)
        names = []
        for name in INPUT_NAMES:
            tensor, array = f"stage{stage}/{name}", values[name].numpy()
            if name in ACTIVATIONS:
                feeds[tensor] = array
                graph_inputs.append(
                    helper.make_tensor_value_info(tensor, TensorProto.FLOAT, ["batch", *array.shape[1:]]))
            else:
                initializers.append(numpy_helper.from_array(array, tensor))
            names.append(tensor)
        out = f"stage{stage}/output"
        nodes.append(helper.make_node(OP_NAME, names, [out], name=f"aggregated_attention_{stage}", domain=OP_DOMAIN,
                                      **op_attrs, **{PLUGIN_VERSION_ATTRIBUTE: "1"}))
        ref = reference(values, op_attrs)
        outputs.append(helper.make_tensor_value_info(out, TensorProto.FLOAT, ["batch", *ref.shape[1:]]))
        refs.append(ref)
    graph = helper.make_graph(nodes, "two_stages", graph_inputs, outputs, initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET), helper.make_opsetid(OP_DOMAIN, 1)])
    return model, feeds, refs


def fixed_body(op_attrs: dict[str, int], overload: str) -> onnx.FunctionProto:
    """The generic body with the attribute references replaced by one attribute set's values:
    a per-attribute-set function, told apart from the others only by its `overload`."""
    function = aggregated_attention_function(OPSET)
    for node in function.node:
        refs = [a.ref_attr_name for a in node.attribute if a.ref_attr_name]
        if refs:
            (attr,) = refs
            node.CopyFrom(helper.make_node("Constant", [], list(node.output), name=node.name,
                                           value_int=op_attrs[attr]))
    function.overload = overload
    return function


def per_stage_overloads(model: onnx.ModelProto) -> onnx.ModelProto:
    """The layout a name-keyed parser mixes up: one fixed body per stage, same domain and name,
    different overloads (IR 10), each node naming its own."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    for stage, node in enumerate(out.graph.node, start=1):
        op_attrs = {a.name: a.i for a in node.attribute if a.name in ATTRIBUTE_NAMES}
        node.overload = f"stage{stage}"
        out.functions.append(fixed_body(op_attrs, node.overload))
    out.ir_version = max(out.ir_version, 10)
    return out


def run_two_stages(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    return session(model).run([f"stage{s}/output" for s in (1, 2)], feeds)


def assert_fully_inlined(model: onnx.ModelProto) -> None:
    assert not model.functions
    assert not [n.name for n in model.graph.node if n.domain == OP_DOMAIN or n.op_type == OP_NAME]


# ---------------------------------------------------------------------------------------------
# 1. onnxruntime runs the function and matches the reference


@pytest.mark.parametrize("case", list(CASES))
def test_function_matches_reference_float32(case):
    batch, head_dim, op_attrs = CASES[case]
    model = function_form(custom_op_model(op_attrs, head_dim))
    inputs = random_inputs(batch, head_dim, op_attrs, torch.Generator().manual_seed(0))
    got = session(model).run(None, {n: t.numpy() for n, t in inputs.items()})[0]
    assert got.dtype == np.float32
    assert_close(got, reference(inputs, op_attrs), FP32_RTOL, case)


@pytest.mark.parametrize("opset", sorted({MIN_OPSET, 18, 21}))
def test_function_matches_reference_at_other_opsets(opset):
    batch, head_dim, op_attrs = CASES["non-square-9x13-h3x16-w3-p3x4-b3"]
    model = function_form(custom_op_model(op_attrs, head_dim, opset=opset))
    assert [(o.domain, o.version) for o in model.functions[0].opset_import] == [("", opset)]
    inputs = random_inputs(batch, head_dim, op_attrs, torch.Generator().manual_seed(1))
    got = session(model).run(None, {n: t.numpy() for n, t in inputs.items()})[0]
    assert_close(got, reference(inputs, op_attrs), FP32_RTOL, f"opset {opset}")


def test_function_runs_at_the_lowest_ir_version():
    """A model below FUNCTION_IR_VERSION is raised to it, and runs there (no overload needed)."""
    batch, head_dim, op_attrs = CASES["window5-9x7-h2x8-p3x2"]
    model = function_form(custom_op_model(op_attrs, head_dim, ir_version=FUNCTION_IR_VERSION - 1))
    assert model.ir_version == FUNCTION_IR_VERSION
    inputs = random_inputs(batch, head_dim, op_attrs, torch.Generator().manual_seed(2))
    got = session(model).run(None, {n: t.numpy() for n, t in inputs.items()})[0]
    assert_close(got, reference(inputs, op_attrs), FP32_RTOL, f"IR {FUNCTION_IR_VERSION}")


def test_zero_vectors_are_normalized_like_the_reference():
    """A zero query, key or pooled key: x / max(||x||, eps) is 0, not NaN (the eps clamp)."""
    batch, head_dim, op_attrs = CASES["non-square-9x13-h3x16-w3-p3x4-b3"]
    inputs = random_inputs(batch, head_dim, op_attrs, torch.Generator().manual_seed(3))
    inputs["query"][:, 7] = 0
    inputs["key_value"][:, 5] = 0
    inputs["pooled_key_value"][:, 1] = 0
    got = session(function_form(custom_op_model(op_attrs, head_dim))).run(
        None, {n: t.numpy() for n, t in inputs.items()})[0]
    assert np.isfinite(got).all()
    assert_close(got, reference(inputs, op_attrs), FP32_RTOL, "zero rows")


@pytest.mark.parametrize("case", ["non-square-9x13-h3x16-w3-p3x4-b3", "window5-larger-than-grid-2x3-b3"])
def test_function_matches_reference_float16(case):
    """One body for both types: float constants are CastLike'd to the input type."""
    batch, head_dim, op_attrs = CASES[case]
    model = function_form(custom_op_model(op_attrs, head_dim, elem_type=TensorProto.FLOAT16))
    generator = torch.Generator().manual_seed(4)
    inputs = {n: t.half() for n, t in random_inputs(batch, head_dim, op_attrs, generator).items()}
    got = session(model).run(None, {n: t.numpy() for n, t in inputs.items()})[0]
    assert got.dtype == np.float16
    assert_close(got, reference(inputs, op_attrs), FP16_RTOL, f"{case} float16")


# ---------------------------------------------------------------------------------------------
# 2. TensorRT's name-keyed lookup: the generic function survives it, per-stage overloads do not


@pytest.mark.parametrize("pair", list(STAGE_PAIRS))
def test_two_stages_survive_name_keyed_inlining(pair):
    plain, feeds, refs = two_stage_model(pair)
    model = function_form(plain)
    inlined = inline_functions_by_name(model)
    assert_fully_inlined(inlined)
    for how, candidate in (("onnxruntime's own inlining", model), ("name-keyed inlining", inlined)):
        for stage, (got, ref) in enumerate(zip(run_two_stages(candidate, feeds), refs), start=1):
            assert_close(got, ref, FP32_RTOL, f"{pair}, {how}, stage {stage}")


@pytest.mark.parametrize("pair", list(STAGE_PAIRS))
def test_per_stage_overloads_break_under_name_keyed_inlining(pair):
    """The negative control: the layout is right where functions are found by (domain, name,
    overload), and wrong for stage 2 where they are found by name -- so the test above can fail."""
    plain, feeds, refs = two_stage_model(pair)
    overloaded = per_stage_overloads(plain)
    assert [(f.name, f.overload) for f in overloaded.functions] == [(OP_NAME, "stage1"), (OP_NAME, "stage2")]
    for stage, (got, ref) in enumerate(zip(run_two_stages(overloaded, feeds), refs), start=1):
        assert_close(got, ref, FP32_RTOL, f"{pair}, overloads resolved by onnxruntime, stage {stage}")

    inlined = inline_functions_by_name(overloaded)
    assert_fully_inlined(inlined)
    try:
        got = run_two_stages(inlined, feeds)
    except (Fail, InvalidArgument, InvalidGraph, RuntimeException):
        # stage 2's inputs do not fit stage 1's body (as TensorRT's parser refuses the old export).
        assert pair != "transposed-grid", "same-shaped stages must run, silently wrong"
        return
    assert_close(got[0], refs[0], FP32_RTOL, f"{pair}, name-keyed, stage 1 (its own body)")
    wrong = error_stats(refs[1], got[1])  # NaN (a non-finite output) counts as wrong
    assert not wrong.relative <= WRONG_RTOL, (f"{pair}: stage 2 ran stage 1's body and still matched (max-abs "
                                              f"{wrong.max_abs:.3e}, relative {wrong.relative:.3e}): the control "
                                              "does not tell the layouts apart")


# ---------------------------------------------------------------------------------------------
# 3. what function_form attaches


def test_function_form_attaches_exactly_one_generic_function():
    head_dim, op_attrs = 8, CASES["window5-9x7-h2x8-p3x2"][2]
    plain = custom_op_model(op_attrs, head_dim)
    # Start from the old layout: a stale per-attribute-set function and an overload on the node.
    stale = per_stage_overloads(plain)
    before = stale.SerializeToString()
    model = function_form(stale)
    assert stale.SerializeToString() == before, "function_form modified its input"

    assert len(model.functions) == 1
    (function,) = model.functions
    assert (function.domain, function.name) == (OP_DOMAIN, OP_NAME)
    assert function.overload == ""
    assert list(function.attribute) == [*ATTRIBUTE_NAMES, PLUGIN_VERSION_ATTRIBUTE]
    assert list(function.input) == list(INPUT_NAMES) and list(function.output) == list(OUTPUT_NAMES)
    assert [(o.domain, o.version) for o in function.opset_import] == [("", OPSET)]
    # The body reads every integer attribute from the call and nothing stage-specific is baked in.
    refs = {a.ref_attr_name for n in function.node for a in n.attribute if a.ref_attr_name}
    assert refs == set(ATTRIBUTE_NAMES)
    assert function.SerializeToString() == aggregated_attention_function(OPSET).SerializeToString()

    (node,) = model.graph.node
    assert (node.domain, node.op_type, node.overload) == (OP_DOMAIN, OP_NAME, "")
    assert [(o.domain, o.version) for o in model.opset_import].count((OP_DOMAIN, 1)) == 1
    assert model.ir_version >= FUNCTION_IR_VERSION

    fresh = function_form(plain)  # no transnext import to begin with: one is added
    assert [o.domain for o in fresh.opset_import] == ["", OP_DOMAIN]
    for checked in (model, fresh):
        onnx.checker.check_model(checked, full_check=True)
        check_model(checked, "function form")  # the export's check: strict shape inference too


# ---------------------------------------------------------------------------------------------
# 4. bad input


def test_opset_below_minimum_is_refused_in_one_line():
    for call in (lambda: aggregated_attention_function(MIN_OPSET - 1),
                 lambda: function_form(custom_op_model(attrs(2, 4, 4, 3, 1, 1), 4, opset=MIN_OPSET - 1)),
                 ):
        with pytest.raises(InvalidArgumentError) as info:
            call()
        exc = info.value
        assert isinstance(exc, TransNeXtDeployError) and isinstance(exc, ValueError)
        assert one_line(exc) == str(exc) == f"the function body needs opset >= {MIN_OPSET}, got {MIN_OPSET - 1}"


def test_a_graph_without_a_standard_opset_is_refused_in_one_line():
    model = custom_op_model(attrs(2, 4, 4, 3, 1, 1), 4)
    kept = [o for o in model.opset_import if o.domain not in ("", "ai.onnx")]
    del model.opset_import[:]
    model.opset_import.extend(kept)
    with pytest.raises(InvalidArgumentError, match="^the graph imports no standard ONNX opset: the function body needs one$"):
        function_form(model)

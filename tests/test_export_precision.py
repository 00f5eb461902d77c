"""export.precision: a float32 ONNX graph -> a strongly typed float16 one (the fp16 graphs of an export).

Two layers:

- hand-made graphs of a few nodes, one per rule of `to_fp16` (every tensor's type by
  `tensor_types`, kept parts float32 behind Casts, the float32 contract at the graph's edges, custom
  nodes all-float16, initializers converted / duplicated / clamped, refusals), each run in
  onnxruntime against its float32 source where it can run; milliseconds each;
- one real artifact: micro exported at 64x64 with the fp16 graphs (once per module: about 15 s on
  2 idle cores), its `model.fp16.onnx`, `model.aa_plugin.fp16.onnx` and `model.aa_function.fp16.onnx`
  checked for the same rules and run against PyTorch within the package's fp16 tolerance.

Caveat on the numbers: onnxruntime's CPU provider lacks float16 kernels for most compute ops (in
1.32, Conv, MatMul, Gemm, Add, Mul among them: its optimised model of `model.fp16.onnx` runs every
one of them on float32 inputs); it inserts Casts around them and computes them in float32, so values
are rounded to float16 only where a Cast or an fp16 kernel stores them (Reshape, Transpose, Slice...).
A CPU run therefore measures the fp16 storage of weights and of some activations, not fp16
arithmetic, and can underestimate the error of a real fp16 engine (TensorRT); the tolerance these
runs are held to is the engines' (compare.FP16_TOLERANCE), which is meant to cover TensorRT.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from transnext_deploy import create_model
from transnext_deploy.artifacts import INPUT_NAME, VALIDATION_FILE, graph_file
from transnext_deploy.backends.onnxrt import cpu_session, host_library_problem
from transnext_deploy.compare import FP16_TOLERANCE, Tolerance, allclose_check, error_stats
from transnext_deploy.engine import EnginePlan
from transnext_deploy.errors import TransNeXtDeployError
from transnext_deploy.export import ExportOptions, export, validation_inputs
from transnext_deploy.export.precision import (
    FLOAT,
    FLOAT16,
    PARTS,
    RECOMMENDED_KEEP_FP32,
    Fp16ConversionError,
    tensor_types,
    to_fp16,
)
from transnext_deploy.ops.contract import INPUT_NAMES, OP_DOMAIN, OP_NAME

from helpers import perturb_

INT64 = TensorProto.INT64
C = 8  # channels of the hand-made graphs
# fp16 graph vs its fp32 source on the hand-made graphs (onnxruntime, CPU). Their values are O(1)
# (|logits| < 4) and pass through about ten float16 roundings of relative 2**-11 = 4.9e-4 each
# (input, weights, each stored activation), so the worst error is a few 1e-3: measured 1.2e-3 on
# the three rows below, 2.9e-3 (0.19 of this bound) over 1000 random rows, for every `keep`.
# 1e-2 + 1e-2 * |ref| leaves a margin of 5x, while a broken rule -- a weight or an epsilon flushed
# to zero, an inf weight, a Cast in the wrong place -- moves the outputs by O(0.1..1) or to NaN.
SYNTHETIC_TOLERANCE = Tolerance(atol=1e-2, rtol=1e-2)
FP16_MIN_SUBNORMAL = float(np.float16(2.0**-24))
KEEPS = [frozenset(), frozenset({"layer_norm"}), frozenset({"softmax"}), frozenset({"l2_norm"}),
         frozenset({"position_bias"}), frozenset(PARTS)]

# The hand-made graph: each float tensor -> the part that computes it (None: an ordinary node, or an
# initializer read only by ordinary nodes). `normed` (the LayerNorm's output) is a second graph output.
PART_OF = {
    "k": None, "xs": None, "w": None, "h": None, "hn": None, "a": None, "ga": None, "eps": None, "huge": None,
    "c": None, "m": None, "r": None, "rc": None,
    "l2": "l2_norm",
    "gamma": "layer_norm", "beta": "layer_norm", "normed": "layer_norm",
    "s": "softmax",
    "table": "position_bias", "fc": "position_bias", "bias4": "position_bias", "bias": "position_bias",
}
OUTPUTS = ("logits", "normed")


def _graph(custom: bool = False) -> onnx.ModelProto:
    """images (batch, C) -> Mul by a Constant -> MatMul -> {ReduceL2 normalisation, LayerNorm ->
    Softmax} -> Mul by the LayerNorm's own scale -> Clip(min 1e-12) -> Min(1e6) -> Reshape (int64
    shape) -> Cast to float -> [custom op] -> + a bias computed from constants only (the
    position-bias pattern) -> logits; the LayerNorm's output is also an output (`normed`).

    `gamma` feeds the LayerNorm and a Mul (and the custom node): an initializer wanted in both
    precisions when the LayerNorm stays float32."""
    g = np.random.default_rng(0)

    def init(name, array):
        return numpy_helper.from_array(np.asarray(array, dtype=np.float32 if name != "shape" else np.int64), name)

    inits = [
        init("w", g.standard_normal((C, C)) / np.sqrt(C)),
        init("gamma", 1 + 0.1 * g.standard_normal(C)),
        init("beta", 0.1 * g.standard_normal(C)),
        init("table", g.standard_normal((4, 2))),
        init("fc", g.standard_normal((2, C))),
        init("eps", 1e-12),  # F.normalize's epsilon: non-zero, below float16's range
        init("huge", [1e6] * C),  # past float16's range
        init("shape", [-1, C]),
    ]
    nodes = [
        helper.make_node("Constant", [], ["k"], value=numpy_helper.from_array(
            (1 + 0.1 * g.standard_normal(C)).astype(np.float32))),
        helper.make_node("Mul", ["images", "k"], ["xs"]),
        helper.make_node("MatMul", ["xs", "w"], ["h"]),
        helper.make_node("ReduceL2", ["h"], ["l2"], axes=[-1], keepdims=1),
        helper.make_node("Div", ["h", "l2"], ["hn"]),
        helper.make_node("LayerNormalization", ["h", "gamma", "beta"], ["normed"], axis=-1, epsilon=1e-6),
        helper.make_node("Softmax", ["normed"], ["s"], axis=-1),
        helper.make_node("Add", ["s", "hn"], ["a"]),
        helper.make_node("Mul", ["a", "gamma"], ["ga"]),
        helper.make_node("MatMul", ["table", "fc"], ["bias4"]),  # depends on constants only
        helper.make_node("ReduceMean", ["bias4"], ["bias"], axes=[0], keepdims=0),
        helper.make_node("Clip", ["ga", "eps"], ["c"]),
        helper.make_node("Min", ["c", "huge"], ["m"]),
        helper.make_node("Reshape", ["m", "shape"], ["r"]),
        helper.make_node("Cast", ["r"], ["rc"], to=TensorProto.FLOAT),
    ]
    if custom:
        nodes += [helper.make_node("Op", ["rc", "bias", "gamma", "normed"], ["o"], domain="custom"),
                  helper.make_node("Add", ["o", "bias"], ["logits"])]
    else:
        nodes.append(helper.make_node("Add", ["rc", "bias"], ["logits"]))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("images", FLOAT, ["batch", C])],
                              [helper.make_tensor_value_info(n, FLOAT, ["batch", C]) for n in OUTPUTS], inits)
    if custom:  # the exporter writes the custom nodes' output types; inference cannot derive them
        graph.value_info.append(helper.make_tensor_value_info("o", FLOAT, ["batch", C]))
    opsets = [helper.make_opsetid("", 17)] + ([helper.make_opsetid("custom", 1)] if custom else [])
    return helper.make_model(graph, opset_imports=opsets, ir_version=8)


def _types(model: onnx.ModelProto) -> dict[str, int]:
    onnx.checker.check_model(model, full_check=True)
    return tensor_types(model)  # strict inference with type checks: a strongly typed graph or an error


def _producer(model: onnx.ModelProto, name: str) -> onnx.NodeProto:
    return next(n for n in model.graph.node if name in n.output)


def _consumers(model: onnx.ModelProto, name: str) -> list[onnx.NodeProto]:
    return [n for n in model.graph.node if name in n.input]


def _initializers(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}


def _run(model: onnx.ModelProto, x: np.ndarray) -> dict[str, np.ndarray]:
    options = ort.SessionOptions()
    options.log_severity_level = 3  # no warnings about fp16 nodes it cannot constant-fold on the CPU
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in session.get_outputs()], session.run(None, {"images": x})))


def _images(batch: int = 3) -> np.ndarray:
    return np.random.default_rng(1).standard_normal((batch, C)).astype(np.float32)


# ------------------------------------------------------------------------------------------ synthetic


@pytest.mark.parametrize("keep", KEEPS, ids=lambda k: "+".join(sorted(k)) or "none")
def test_every_tensor_has_the_type_of_its_part(keep):
    report = {}
    half = to_fp16(_graph(), keep, report=report)
    types = _types(half)
    for name, part in PART_OF.items():
        if name in OUTPUTS:
            continue
        assert types[name] == (FLOAT if part in keep else FLOAT16), (name, part)
    assert types["shape"] == INT64 and _initializers(half)["shape"].dtype == np.int64  # not a float: untouched
    # the source's Cast to float32 now casts to the compute type (an identity), not back to float32
    assert helper.get_attribute_value(_producer(half, "rc").attribute[0]) == FLOAT16
    # the contract at the edges: images in and every output out in float32, behind Casts when needed
    assert [(i.name, i.type.tensor_type.elem_type) for i in half.graph.input] == [("images", FLOAT)]
    assert [(o.name, o.type.tensor_type.elem_type) for o in half.graph.output] == [(n, FLOAT) for n in OUTPUTS]
    (first,) = _consumers(half, "images")
    assert first.op_type == "Cast" and types[first.output[0]] == FLOAT16
    assert _producer(half, "logits").op_type == "Cast"
    normed = _producer(half, "normed")
    assert normed.op_type == ("LayerNormalization" if "layer_norm" in keep else "Cast")
    # a kept part sits between Casts: all its float inputs and outputs are float32, its neighbours fp16
    kept_ops = {"LayerNormalization": "layer_norm", "Softmax": "softmax", "ReduceL2": "l2_norm"}
    for node in half.graph.node:
        if kept_ops.get(node.op_type) in keep:
            assert all(types[n] == FLOAT for n in (*node.input, *node.output)), node.op_type
    ln = next(n for n in half.graph.node if n.op_type == "LayerNormalization")
    if "layer_norm" not in keep:  # float16 LayerNorm: statistics in float32, written out
        assert helper.get_attribute_value(next(a for a in ln.attribute if a.name == "stash_type")) == 1
    assert report["keep_fp32"] == sorted(keep)
    assert report["nodes_fp32"] == sum(1 for n in half.graph.node if n.op_type != "Cast" and any(
        types[i] == FLOAT for i in n.input if i))


def test_default_keeps_the_recommended_parts():
    assert RECOMMENDED_KEEP_FP32 == {"layer_norm"} and RECOMMENDED_KEEP_FP32 <= set(PARTS)
    default, explicit = to_fp16(_graph()), to_fp16(_graph(), RECOMMENDED_KEEP_FP32)
    assert default.SerializeToString() == explicit.SerializeToString()
    types = _types(default)
    ln = next(n for n in default.graph.node if n.op_type == "LayerNormalization")
    assert all(types[n] == FLOAT for n in (*ln.input, *ln.output))
    assert _producer(default, ln.input[0]).op_type == "Cast"  # h (fp16) -> float32
    (softmax,) = _consumers(default, _consumers(default, "normed")[0].output[0])  # LN -> Cast -> Softmax
    assert softmax.op_type == "Softmax" and types[softmax.input[0]] == FLOAT16


@pytest.mark.parametrize("keep", KEEPS, ids=lambda k: "+".join(sorted(k)) or "none")
def test_float16_graph_matches_its_float32_source(keep):
    source = _graph()
    x = _images()
    ref = _run(source, x)
    out = _run(to_fp16(source, keep), x)
    for name in OUTPUTS:
        assert out[name].dtype == np.float32
        stats, worst = error_stats(ref[name], out[name]), allclose_check(ref[name], out[name], SYNTHETIC_TOLERANCE)
        assert worst.ratio <= 1, f"{name}, keep {sorted(keep)}: {stats}; worst {worst}"
        assert stats.max_abs > 0, f"{name}: identical to float32, nothing was rounded"


def test_kept_parts_really_compute_in_float32():
    """`normed` is the LayerNorm's output and a graph output: in float32 when the LayerNorm is kept,
    it holds values float16 cannot represent; computed in float16, every value is a float16 one."""
    x = _images()
    for keep, float32 in ((set(), False), ({"layer_norm"}, True)):
        normed = _run(to_fp16(_graph(), keep), x)["normed"]
        exact_in_half = normed.astype(np.float16).astype(np.float32) == normed
        assert exact_in_half.all() != float32, (sorted(keep), normed)


def test_custom_node_inputs_are_all_float16():
    """Every input of a custom-domain node is float16 (TensorRT's plugin takes one type for all),
    those computed by kept float32 parts and a shared initializer included."""
    half = to_fp16(_graph(custom=True), set(PARTS))
    types = _types(half)
    (op,) = [n for n in half.graph.node if n.domain == "custom"]
    assert len(op.input) == 4 and all(types[n] == FLOAT16 for n in op.input), [(n, types[n]) for n in op.input]
    assert types["o"] == FLOAT16  # from the graph's value_info, in the node's type
    assert types["bias"] == FLOAT and types["normed"] == FLOAT  # float32 parts, reaching the op through Casts
    for original, fed in zip(("rc", "bias", "gamma", "normed"), op.input):
        if original in ("bias", "normed"):
            assert _producer(half, fed).op_type == "Cast"
    inits = _initializers(half)
    assert inits["gamma"].dtype == np.float32 and inits[op.input[2]].dtype == np.float16


def test_shared_initializer_is_duplicated_only_when_read_in_both_precisions():
    source = _initializers(_graph())
    report = {}
    half = to_fp16(_graph(), {"layer_norm"}, report=report)
    inits = _initializers(half)
    ln = next(n for n in half.graph.node if n.op_type == "LayerNormalization")
    mul = _producer(half, "ga")
    assert ln.input[1] == "gamma" and mul.input[1] != "gamma"
    assert inits["gamma"].dtype == np.float32 and np.array_equal(inits["gamma"], source["gamma"])
    copy = inits[mul.input[1]]
    assert copy.dtype == np.float16 and np.array_equal(copy, source["gamma"].astype(np.float16))
    assert inits["beta"].dtype == np.float32 and inits["w"].dtype == np.float16  # one reader each: no copy
    assert report["initializers_both"] == 1
    assert len(inits) == len(source) + 2  # gamma's copy, and the Constant node `k` turned initializer
    # everything in float16: gamma converted in place, no copy
    everything = _initializers(to_fp16(_graph(), set()))
    assert "gamma" in everything and everything["gamma"].dtype == np.float16 and len(everything) == len(source) + 1
    assert all(a.dtype in (np.float16, np.int64) for a in everything.values())


def test_float_constant_nodes_become_float16_initializers():
    half = to_fp16(_graph(), set())
    assert not [n for n in half.graph.node if n.op_type == "Constant"]
    assert _initializers(half)["k"].dtype == np.float16


def _overflow_graph() -> onnx.ModelProto:
    """log(max(softmax(images + mask + 0 * huge), eps)): `huge` is past float16's range (an inf
    would make 0 * huge NaN), `mask` holds a -inf (a masked position: exactly 0 after the softmax)
    and eps = 1e-12 is below float16's smallest subnormal (flushed to 0, log(0) = -inf)."""
    mask = np.zeros(C, np.float32)
    mask[-1] = -np.inf
    huge = np.full(C, 1e6, np.float32)
    huge[0] = -1e6
    inits = [numpy_helper.from_array(huge, "huge"), numpy_helper.from_array(mask, "mask"),
             numpy_helper.from_array(np.array(1e-12, np.float32), "eps")]
    nodes = [
        helper.make_node("Sub", ["images", "images"], ["zero"]),
        helper.make_node("Mul", ["zero", "huge"], ["zh"]),
        helper.make_node("Add", ["images", "mask"], ["masked"]),
        helper.make_node("Add", ["masked", "zh"], ["t"]),
        helper.make_node("Softmax", ["t"], ["p"], axis=-1),
        helper.make_node("Clip", ["p", "eps"], ["c"]),
        helper.make_node("Log", ["c"], ["logp"]),
    ]
    graph = helper.make_graph(nodes, "overflow", [helper.make_tensor_value_info("images", FLOAT, ["batch", C])],
                              [helper.make_tensor_value_info("logp", FLOAT, ["batch", C])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def test_initializers_past_float16_range_are_clamped_and_epsilons_kept_off_zero():
    report = {}
    half = to_fp16(_overflow_graph(), set(), report=report)
    _types(half)
    inits = _initializers(half)
    assert inits["huge"].dtype == np.float16 and np.all(np.isfinite(inits["huge"]))
    assert inits["huge"][0] == -65504 and np.all(inits["huge"][1:] == 65504)
    assert inits["mask"][-1] == -np.inf and np.all(inits["mask"][:-1] == 0)  # -inf masks stay -inf
    assert float(inits["eps"]) == FP16_MIN_SUBNORMAL
    assert report["clamped"] == C and report["kept_nonzero"] == 1
    x = _images()
    ref, out = _run(_overflow_graph(), x)["logp"], _run(half, x)["logp"]
    assert np.all(np.isfinite(out)), out  # no NaN from 0 * inf, no -inf from log(0)
    np.testing.assert_allclose(out[:, -1], np.log(FP16_MIN_SUBNORMAL), rtol=1e-3)  # the masked position
    worst = allclose_check(ref[:, :-1], out[:, :-1], SYNTHETIC_TOLERANCE)
    assert worst.ratio <= 1, f"{error_stats(ref[:, :-1], out[:, :-1])}; worst {worst}"


def _one_line_refusal(model: onnx.ModelProto, keep=(), match: str = "") -> str:
    with pytest.raises(Fp16ConversionError, match=match) as info:
        to_fp16(model, keep)
    message = str(info.value)
    assert message and "\n" not in message, repr(message)
    assert isinstance(info.value, TransNeXtDeployError)  # the CLI prints it as one line
    return message


def test_refuses_unknown_parts():
    message = _one_line_refusal(_graph(), {"layernorm", "softmax"}, match="unknown part")
    assert "layernorm" in message and all(p in message for p in PARTS)


def test_refuses_local_functions():
    model = _graph()
    body = [helper.make_node("Identity", ["x"], ["y"])]
    model.functions.append(helper.make_function("custom", "F", ["x"], ["y"], body, [helper.make_opsetid("", 17)]))
    _one_line_refusal(model, match="local functions")


def test_refuses_control_flow():
    model = _graph()

    def branch(name, value):
        return helper.make_graph([helper.make_node("Constant", [], ["v"], value_float=value)], name, [],
                                 [helper.make_tensor_value_info("v", FLOAT, [])])

    model.graph.node.append(helper.make_node("If", ["flag"], ["chosen"], name="choose",
                                             then_branch=branch("then", 1.0), else_branch=branch("else", 2.0)))
    message = _one_line_refusal(model, match="subgraph")
    assert "'choose'" in message and "If" in message


# ------------------------------------------------------------------------------------------ a real artifact

LOGIT_SCALE = 30.0  # max |logits| of the checkpoint: the size the fp16 tolerance was chosen at (compare.py)


@pytest.fixture(scope="module")
def micro_fp16(tmp_path_factory):
    """micro exported at 64x64 with its fp16 graphs, from perturbed weights whose head is scaled so
    that max |logits| = LOGIT_SCALE on export's validation inputs (as benchmarks/measure_export_noise.py
    does): with the head as initialised the logits are ~0.1 and any fp16 error passes atol 0.2."""
    root = tmp_path_factory.mktemp("precision")
    torch.manual_seed(0)
    model = create_model("micro", img_size=(64, 64)).eval()
    perturb_(model)
    with torch.no_grad():
        peak = max(float(model(torch.from_numpy(x)).abs().max()) for x in validation_inputs((64, 64), 0).values())
        model.head.weight.mul_(LOGIT_SCALE / peak)
        model.head.bias.mul_(LOGIT_SCALE / peak)
    checkpoint = root / "micro.pth"
    torch.save({"model": model.state_dict()}, checkpoint)
    (result,) = export(ExportOptions("micro", resolutions=[(64, 64)], checkpoint=str(checkpoint),
                                     output_dir=root / "out"), engines=EnginePlan())
    return Path(result.directory), model


def _float_inputs(node: onnx.NodeProto, types: dict[str, int]) -> list[int]:
    return [types[n] for n in node.input if n and types.get(n) in (FLOAT, FLOAT16)]


def test_exported_fp16_graphs_are_strongly_typed_float16(micro_fp16):
    directory, _ = micro_fp16
    for kind in ("standard", "plugin"):
        name = graph_file(kind, "fp16")
        half = onnx.load(str(directory / name))
        types = tensor_types(half)
        assert [(i.name, i.type.tensor_type.elem_type) for i in half.graph.input] == [(INPUT_NAME, FLOAT)], name
        assert half.graph.output and all(o.type.tensor_type.elem_type == FLOAT for o in half.graph.output), name
        ops = Counter(n.op_type for n in half.graph.node)
        assert ops["LayerNormalization"] > 0 and ops["MatMul"] > 0 and ops["Conv"] > 0, (name, ops)
        float32_compute = Counter()
        for node in half.graph.node:
            inputs = _float_inputs(node, types)
            if node.op_type == "LayerNormalization":  # kept in float32 (RECOMMENDED_KEEP_FP32), behind Casts
                assert inputs == [FLOAT] * 3 and types[node.output[0]] == FLOAT, (name, node.name)
            elif node.op_type in ("MatMul", "Conv", "Gemm"):  # the compute is float16
                assert inputs and set(inputs) == {FLOAT16} and types[node.output[0]] == FLOAT16, (name, node.name)
            if FLOAT in inputs and node.op_type != "Cast":
                float32_compute[node.op_type] += 1
        assert set(float32_compute) == {"LayerNormalization"}, (name, float32_compute)
        weights = Counter(i.data_type for i in half.graph.initializer)
        assert weights[FLOAT16] > weights[FLOAT], (name, weights)  # only the LayerNorms' scales and biases stay
        custom = [n for n in half.graph.node if n.op_type == OP_NAME]
        if kind == "plugin":
            assert len(custom) == 19 and all(n.domain == OP_DOMAIN for n in custom)
            for node in custom:
                assert len(node.input) == len(INPUT_NAMES), node.name
                assert all(types[n] == FLOAT16 for n in node.input), (node.name, [(n, types[n]) for n in node.input])
                assert types[node.output[0]] == FLOAT16, node.name
        else:
            assert not custom


def test_exported_function_form_is_the_fp16_custom_op_graph_with_the_function(micro_fp16):
    directory, _ = micro_fp16
    plugin = onnx.load(str(directory / graph_file("plugin", "fp16")))
    function = onnx.load(str(directory / graph_file("function", "fp16")))
    assert [(f.domain, f.name) for f in function.functions] == [(OP_DOMAIN, OP_NAME)]
    assert [(n.op_type, list(n.input)) for n in function.graph.node] == [
        (n.op_type, list(n.input)) for n in plugin.graph.node]
    assert {i.name: i.data_type for i in function.graph.initializer} == {
        i.name: i.data_type for i in plugin.graph.initializer}
    types = tensor_types(function)  # strict inference of the whole graph, the function's calls included
    assert types["images"] == FLOAT and all(types[o.name] == FLOAT for o in function.graph.output)
    with pytest.raises(Fp16ConversionError, match="local functions"):  # converted before, never after
        to_fp16(onnx.load(str(directory / graph_file("function"))))


def test_exported_fp16_graphs_match_pytorch_within_the_fp16_tolerance(micro_fp16):
    """A fresh input, not one of export's validation inputs; every fp16 graph onnxruntime runs here
    (the custom-op one when the host library is available)."""
    directory, model = micro_fp16
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        ref = model(x).numpy()
    assert np.abs(ref).max() > LOGIT_SCALE / 3  # logits of the size the tolerance is meant for
    kinds = ["standard", "function"] + ([] if host_library_problem() else ["plugin"])
    for kind in kinds:
        name = graph_file(kind, "fp16")
        (out,) = cpu_session(directory / name).run(None, {INPUT_NAME: x.numpy()})
        assert out.dtype == np.float32
        stats, worst = error_stats(ref, out), allclose_check(ref, out, FP16_TOLERANCE)
        assert worst.ratio <= 1, f"{name} vs PyTorch beyond {FP16_TOLERANCE}: {stats}; worst {worst}"
        assert stats.max_abs > 0 and (ref.argmax(-1) == out.argmax(-1)).all(), f"{name}: {stats}"
    # export validated the same graphs against the same tolerance
    report = json.loads((directory / VALIDATION_FILE).read_text())
    assert report["tolerances"]["fp16"] == FP16_TOLERANCE.as_dict()
    for kind in ("standard", "plugin", "function"):
        graph = report["graphs"][graph_file(kind, "fp16")]
        assert graph["passed"] is not False and (graph["passed"] is None or graph["atol"] == FP16_TOLERANCE.atol)

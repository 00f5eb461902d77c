"""export/rewrite.py: the aggregated-attention rewrite finds each block by dataflow, and refuses,
naming the block, a graph it does not recognise, changing nothing then. (What it produces on a real
export, one custom node per block, is checked in test_export.py.)"""

from __future__ import annotations

import numpy as np
import onnx
import onnx_graphsurgeon as gs
import pytest

from transnext_deploy import create_model
from transnext_deploy.export import export_standard
from transnext_deploy.export.rewrite import UnrecognizedGraphError, fuse_aggregated_attention, fused_model
from transnext_deploy.ops.contract import OP_NAME


@pytest.fixture(scope="module")
def micro_standard():
    model = create_model("micro", img_size=64).eval()
    return onnx.shape_inference.infer_shapes(export_standard(model, (64, 64), 17), data_prop=True)


def test_rewrite_refuses_a_core_tensor_used_outside(micro_standard):
    graph = gs.import_onnx(micro_standard)
    softmax = next(n for n in graph.nodes if n.op == "Softmax")
    graph.outputs.append(softmax.outputs[0])  # expose a tensor from inside the first core
    before = len(graph.nodes)
    with pytest.raises(UnrecognizedGraphError, match=r"block 0 .*is also used by a graph output"):
        fuse_aggregated_attention(graph)
    assert len(graph.nodes) == before and not [n for n in graph.nodes if n.op == OP_NAME]


def test_rewrite_refuses_a_missing_learnable_token_term(micro_standard):
    graph = gs.import_onnx(micro_standard)
    graph.toposort()
    # drop the learnable-token MatMul of the last block: its core no longer has the published math
    matmul = [n for n in graph.nodes if n.op == "MatMul" and isinstance(n.inputs[1], gs.Constant)
              and n.inputs[1].values.ndim == 3][-1]
    matmul.inputs[1] = gs.Constant("zeros_tokens", np.zeros_like(matmul.inputs[1].values)[:, :, :1])
    with pytest.raises(UnrecognizedGraphError, match="block 18"):
        fuse_aggregated_attention(graph)
    assert not [n for n in graph.nodes if n.op == OP_NAME]


def test_rewrite_checks_the_block_count(micro_standard):
    with pytest.raises(UnrecognizedGraphError, match="found 19 aggregated-attention blocks, the model has 21"):
        fused_model(micro_standard, expected=21)
    a = gs.Variable("a", np.float32, [1, 4])
    graph = gs.Graph(nodes=[gs.Node("Relu", inputs=[a], outputs=[gs.Variable("b", np.float32, [1, 4])])],
                     inputs=[a])
    graph.outputs = [graph.nodes[0].outputs[0]]
    with pytest.raises(UnrecognizedGraphError, match="no aggregated-attention block found"):
        fuse_aggregated_attention(graph)


def test_the_rewrite_fuses_every_block_and_leaves_the_rest(micro_standard):
    fused, matches = fused_model(micro_standard, expected=19)
    assert len(matches) == 19
    nodes = list(fused.graph.node)
    assert sum(n.op_type == OP_NAME for n in nodes) == 19
    assert sum(n.op_type == "Softmax" for n in nodes) == 2  # stage 4's full attention is not aggregated
    assert sum(n.op_type == OP_NAME for n in micro_standard.graph.node) == 0  # the input graph is not changed

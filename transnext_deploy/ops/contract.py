"""The fused aggregated-attention op's contract: its name, inputs, output and attributes.

One definition for every layer that names the op without running its math: the ONNX rewrite, the
exported manifests, TensorRT's plugin lookup, the onnxruntime custom op and the host-library
binding. It imports nothing (no torch), so a process that only runs bundles can read it. The
contract in words: `plugins/aggregated_attention/README.md`; the C++ plugin's copy:
`aggregatedAttentionContract.h` (tests/test_ops_host.py ties the two).
"""

from __future__ import annotations

OP_NAME = "TransNeXtAggregatedAttention"
OP_DOMAIN = "transnext"
OP_VERSION = "1"
OP_NAMESPACE = ""

# Input order of the op. Every input has the same element type (float32 or float16).
INPUT_NAMES = (
    "query",  # (B, N, C): output of the `q` Linear, heads interleaved as C = num_heads * head_dim
    "key_value",  # (B, N, 2C): output of `kv` on the tokens; keys are channels [0, C), values [C, 2C)
    "pooled_key_value",  # (B, P, 2C): output of `kv` on the pooled tokens, same split
    "query_embedding",  # (num_heads, head_dim)
    "temperature_scale",  # (num_heads,): softplus(temperature)
    "local_bias",  # (num_heads, L): relative_pos_bias_local, L = window_size**2
    "learnable_tokens",  # (num_heads, head_dim, L)
    "learnable_bias",  # (num_heads, L)
    "pool_bias",  # (num_heads, N, P): continuous position bias of the pooled keys
)
OUTPUT_NAMES = ("output",)  # (B, N, C), heads merged back, ready for `proj`

# Integer attributes. N = height * width, P = pool_height * pool_width.
ATTRIBUTE_NAMES = ("num_heads", "height", "width", "window_size", "pool_height", "pool_width")
# TensorRT's ONNX parser looks the plugin up by op_type, this version string and namespace.
PLUGIN_VERSION_ATTRIBUTE = "plugin_version"
# The l2 normalisation of queries and keys is F.normalize's: x / max(||x||, L2_EPS).
L2_EPS = 1e-12


def input_shapes(batch: int, head_dim: int, *, num_heads: int, height: int, width: int, window_size: int,
                 pool_height: int, pool_width: int) -> dict[str, tuple[int, ...]]:
    """The shape of every input, in INPUT_NAMES order, for a batch, a head size and the attributes."""
    nh, d, C = num_heads, head_dim, num_heads * head_dim
    N, P, L = height * width, pool_height * pool_width, window_size * window_size
    return {
        "query": (batch, N, C),
        "key_value": (batch, N, 2 * C),
        "pooled_key_value": (batch, P, 2 * C),
        "query_embedding": (nh, d),
        "temperature_scale": (nh,),
        "local_bias": (nh, L),
        "learnable_tokens": (nh, d, L),
        "learnable_bias": (nh, L),
        "pool_bias": (nh, N, P),
    }


def has_custom_nodes(model) -> bool:
    """Whether an onnx.ModelProto has fused nodes that no local function backs: a runtime needs the op's
    implementation for them (onnxruntime the host library; TensorRT, whose parser inlines a node's local
    function before it asks the plugin registry, the plugin)."""
    functions = {(f.domain, f.name) for f in model.functions}
    return any(n.op_type == OP_NAME and n.domain == OP_DOMAIN and (n.domain, n.op_type) not in functions
               for n in model.graph.node)


__all__ = [
    "ATTRIBUTE_NAMES",
    "INPUT_NAMES",
    "L2_EPS",
    "OP_DOMAIN",
    "OP_NAME",
    "OP_NAMESPACE",
    "OP_VERSION",
    "OUTPUT_NAMES",
    "PLUGIN_VERSION_ATTRIBUTE",
    "has_custom_nodes",
    "input_shapes",
]

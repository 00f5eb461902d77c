// The names, order and limits of the TransNeXt aggregated-attention op, in one place for C++.
//
// These constants must equal the Python ones in transnext_deploy/ops/aggregated_attention.py;
// tests/test_ops_host.py parses this file and compares. Keep every string constant on one
// line in the form `constexpr char kName[] = "value";` so that the test can read it.
// The written contract is plugins/aggregated_attention/README.md.
#pragma once

#include <cstdint>

namespace transnext
{
namespace aa
{

// Op identity: ONNX op_type / TensorRT plugin name, ONNX domain, plugin version and namespace.
constexpr char kOpName[] = "TransNeXtAggregatedAttention";
constexpr char kOpDomain[] = "transnext";
constexpr char kPluginVersion[] = "1";
constexpr char kPluginNamespace[] = "";

// Input order. Every input and the output share one element type (float32 or float16).
enum InputIndex : int32_t
{
    kQuery = 0,            // (B, N, C)   raw output of the q Linear; head h owns channels [h*d, (h+1)*d)
    kKeyValue = 1,         // (B, N, 2C)  raw output of kv Linear; keys [0, C), values [C, 2C)
    kPooledKeyValue = 2,   // (B, P, 2C)  kv Linear on the pooled tokens, same split
    kQueryEmbedding = 3,   // (nh, d)
    kTemperatureScale = 4, // (nh,)       softplus(temperature), already applied
    kLocalBias = 5,        // (nh, L)     L = window_size^2, slot l = a*w + b (row-major)
    kLearnableTokens = 6,  // (nh, d, L)
    kLearnableBias = 7,    // (nh, L)
    kPoolBias = 8,         // (nh, N, P)
    kNumInputs = 9
};
constexpr int32_t kNumOutputs = 1; // output 0: (B, N, C)

constexpr char kInputName0[] = "query";
constexpr char kInputName1[] = "key_value";
constexpr char kInputName2[] = "pooled_key_value";
constexpr char kInputName3[] = "query_embedding";
constexpr char kInputName4[] = "temperature_scale";
constexpr char kInputName5[] = "local_bias";
constexpr char kInputName6[] = "learnable_tokens";
constexpr char kInputName7[] = "learnable_bias";
constexpr char kInputName8[] = "pool_bias";
constexpr char kOutputName0[] = "output";

constexpr char const* kInputNames[kNumInputs] = {kInputName0, kInputName1, kInputName2, kInputName3, kInputName4,
    kInputName5, kInputName6, kInputName7, kInputName8};

// Integer attributes (ONNX INT attributes; TensorRT plugin fields of type kINT32 or kINT64).
// N = height * width, P = pool_height * pool_width.
constexpr char kAttrNumHeads[] = "num_heads";
constexpr char kAttrHeight[] = "height";
constexpr char kAttrWidth[] = "width";
constexpr char kAttrWindowSize[] = "window_size";
constexpr char kAttrPoolHeight[] = "pool_height";
constexpr char kAttrPoolWidth[] = "pool_width";
constexpr int32_t kNumAttributes = 6;
constexpr char const* kAttributeNames[kNumAttributes]
    = {kAttrNumHeads, kAttrHeight, kAttrWidth, kAttrWindowSize, kAttrPoolHeight, kAttrPoolWidth};

// String attribute read by TensorRT's ONNX parser to pick the plugin version.
constexpr char kPluginVersionAttribute[] = "plugin_version";

// l2-normalisation epsilon: x / max(||x||, eps), as torch.nn.functional.normalize.
constexpr float kL2Eps = 1e-12f;

// Limits shared by the CPU reference and the CUDA kernel (checked before any memory is read).
constexpr int32_t kMaxHeadDim = 64;          // head_dim = C / num_heads (TransNeXt uses 24)
constexpr int32_t kMaxWindowSize = 15;       // odd window sizes 1..15 (L <= 225; TransNeXt uses 3)
constexpr int64_t kMaxTokens = 1LL << 26;    // N = height * width
constexpr int64_t kMaxPooledTokens = 1LL << 22; // P = pool_height * pool_width
constexpr int64_t kMaxBatch = 65535;         // CUDA grid z
constexpr int32_t kMaxNumHeads = 65535;      // CUDA grid y
constexpr int64_t kMaxElements = 1LL << 56;  // largest element count of any input or output

} // namespace aa
} // namespace transnext

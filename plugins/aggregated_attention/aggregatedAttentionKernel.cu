// CUDA kernel of the TransNeXt aggregated-attention op: thread mapping and shared-memory staging
// around the per-query arithmetic of aggregatedAttentionMath.h.
#include "aggregatedAttentionKernel.cuh"

#include <cuda_fp16.h>

namespace transnext
{
namespace aa
{

template <>
struct Element<__half>
{
    static TNX_AA_HD float load(__half const* p, int64_t i)
    {
        return __half2float(p[i]);
    }
    static TNX_AA_HD void store(__half* p, int64_t i, float v)
    {
        p[i] = __float2half_rn(v);
    }
};

namespace
{

// Thread mapping: grid (ceil(N / 128), num_heads, B); thread x of block (bx, h, b) computes query
// n = bx*128 + x of head h in batch b, holding q (d floats) and the online-softmax numerator
// (d floats) in registers (no global scratch, workspace 0).
// The block stages the normalised pooled keys and the pooled values of its (b, h) in shared
// memory as fp32, all P rows at once when 2*P*d*4 bytes <= 48 KiB (P <= 256 for d = 24),
// otherwise in tiles of that size (the fallback walks P tile by tile with two barriers each).
// All threads of a warp read the same staged row at the same time: broadcast, no bank conflicts.
//
// Expected global-memory traffic per call (s = bytes per element, 4 for fp32, 2 for fp16;
// B batch, N tokens, C channels, nh heads, d = C/nh, P pooled tokens, L = window^2,
// G = ceil(N / 128) blocks per (b, h)):
//   query            B*N*C*s          read twice per thread (start and finish; 2nd from L1/L2)
//   key_value        B*N*2C*s         each key row read by its <= L window neighbours, each value
//                                     row by <= 2L (softmax pass + learnable-token pass); the
//                                     re-reads hit L1/L2, so DRAM sees ~1x
//   pooled_key_value B*P*2C*s * G     each block reads its (b, h) slice once (L2-resident)
//   pool_bias        B*nh*N*P*s       read once per batch element, each thread streams its row
//   parameters       nh*(d + 1 + 2L + dL)*s, broadcast reads
//   output           B*N*C*s          written once
// e.g. TransNeXt stage 1 at 224x224 (N = 3136, C = 72, nh = 3, P = 49), fp16, B = 1:
//   q 0.45 MB + kv 0.90 MB + pool_bias 0.92 MB + pooled kv 25 x 14 KB + out 0.45 MB ~= 3.1 MB.
// The dominant term at high resolution is pool_bias (nh*N*P), an input of the contract.
// Register budget per thread: 128 (head_dim <= 16), 168 (<= 32), 255 (<= 64). ptxas (CUDA 13, sm_86)
// reports 0-16 bytes of spills for head_dim <= 24 and up to ~170 bytes for the 32..64 buckets;
// q, acc and the in-flight k/v rows dominate.
template <int MaxD>
struct MinBlocksPerSm
{
    static constexpr int value = MaxD <= 16 ? 4 : (MaxD <= 32 ? 3 : 2);
};

template <int MaxD, typename T>
__global__ void __launch_bounds__(kThreadsPerBlock, MinBlocksPerSm<MaxD>::value) aggregatedAttentionKernel(
    Inputs<T> const in, Problem const p, T* __restrict__ out, int32_t const tileRows)
{
    extern __shared__ float staged[]; // [tileRows * d] normalised keys, then [tileRows * d] values
    int32_t const d = p.headDim;
    float* const keys = staged;
    float* const values = staged + static_cast<int64_t>(tileRows) * d;

    int64_t const b = blockIdx.z;
    int32_t const h = static_cast<int32_t>(blockIdx.y);
    int64_t const n = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    bool const active = n < p.numTokens; // inactive threads still help staging and hit barriers

    QueryState<MaxD> st;
    if (active)
    {
        beginQuery(st, p, in, b, n, h);
    }
    T const* const biasRow = in.poolBias + (active ? poolBiasOffset(p, h, n, 0) : 0);

    for (int64_t q0 = 0; q0 < p.pooledLen; q0 += tileRows)
    {
        int64_t const rest = p.pooledLen - q0;
        int64_t const count = rest < tileRows ? rest : tileRows;
        if (q0 > 0)
        {
            __syncthreads(); // the previous tile has been consumed by every thread
        }
        for (int64_t t = threadIdx.x; t < count; t += blockDim.x)
        {
            stagePooledRow<MaxD>(keys + t * d, values + t * d, p, in.pooledKeyValue, b, q0 + t, h);
        }
        __syncthreads();
        if (active)
        {
            accumulatePooled(st, keys, values, q0, count, biasRow, d);
        }
    }
    if (active)
    {
        finishQuery(st, p, in, out, b, n, h);
    }
}

template <int MaxD, typename T>
cudaError_t launchTyped(Problem const& p, void const* const* inputs, void* output, cudaStream_t stream)
{
    Inputs<T> in;
    in.query = static_cast<T const*>(inputs[kQuery]);
    in.keyValue = static_cast<T const*>(inputs[kKeyValue]);
    in.pooledKeyValue = static_cast<T const*>(inputs[kPooledKeyValue]);
    in.queryEmbedding = static_cast<T const*>(inputs[kQueryEmbedding]);
    in.temperatureScale = static_cast<T const*>(inputs[kTemperatureScale]);
    in.localBias = static_cast<T const*>(inputs[kLocalBias]);
    in.learnableTokens = static_cast<T const*>(inputs[kLearnableTokens]);
    in.learnableBias = static_cast<T const*>(inputs[kLearnableBias]);
    in.poolBias = static_cast<T const*>(inputs[kPoolBias]);

    int32_t const tileRows = pooledTileRows(p);
    size_t const sharedBytes = 2 * static_cast<size_t>(tileRows) * static_cast<size_t>(p.headDim) * sizeof(float);
    dim3 const grid(static_cast<unsigned>((p.numTokens + kThreadsPerBlock - 1) / kThreadsPerBlock),
        static_cast<unsigned>(p.numHeads), static_cast<unsigned>(p.batch));
    aggregatedAttentionKernel<MaxD, T>
        <<<grid, kThreadsPerBlock, sharedBytes, stream>>>(in, p, static_cast<T*>(output), tileRows);
    return cudaGetLastError();
}

template <typename T>
cudaError_t launchBucket(Problem const& p, void const* const* inputs, void* output, cudaStream_t stream)
{
    switch (maxHeadDimBucket(p.headDim))
    {
    case 16: return launchTyped<16, T>(p, inputs, output, stream);
    case 24: return launchTyped<24, T>(p, inputs, output, stream);
    case 32: return launchTyped<32, T>(p, inputs, output, stream);
    case 48: return launchTyped<48, T>(p, inputs, output, stream);
    case 64: return launchTyped<64, T>(p, inputs, output, stream);
    default: return cudaErrorInvalidValue;
    }
}

} // namespace

cudaError_t launchAggregatedAttention(
    IoType type, Problem const& p, void const* const* inputs, void* output, cudaStream_t stream) noexcept
{
    if (inputs == nullptr || output == nullptr)
    {
        return cudaErrorInvalidValue;
    }
    for (int32_t k = 0; k < kNumInputs; ++k)
    {
        if (inputs[k] == nullptr)
        {
            return cudaErrorInvalidValue;
        }
    }
    if (validateProblem(p, nullptr, 0) != kStatusOk)
    {
        return cudaErrorInvalidValue;
    }
    switch (type)
    {
    case IoType::kFloat32: return launchBucket<float>(p, inputs, output, stream);
    case IoType::kFloat16: return launchBucket<__half>(p, inputs, output, stream);
    }
    return cudaErrorInvalidValue;
}

} // namespace aa
} // namespace transnext

// Host (CPU) library of the aggregated-attention op: the C API over two implementations.
//   * The fast kernel (aggregatedAttentionCpu.h): blocks of queries, vectorised, on a persistent
//     thread pool. The default for every caller.
//   * The per-query reference: the math header's functions over all queries, structured as the
//     CUDA kernel (for each (batch, head) the pooled keys are normalised and the pooled values
//     converted once (stagePooledRow), then every query runs beginQuery, accumulatePooled over all
//     P staged rows, and finishQuery). It is the arithmetic the GPU runs; the tests hold the fast
//     kernel to it.
#include "aggregatedAttentionHost.h"
#include "aggregatedAttentionCpu.h"
#include "aggregatedAttentionMath.h"
#include "aggregatedAttentionThreadPool.h"

#include <algorithm>
#include <atomic>
#include <exception>
#include <stdexcept>
#include <vector>

namespace
{
using namespace transnext::aa;

// The C API returns the math header's Status values as its TRANSNEXT_AA_* codes.
static_assert(TRANSNEXT_AA_OK == kStatusOk && TRANSNEXT_AA_ERR_NULL_POINTER == kStatusNullPointer
        && TRANSNEXT_AA_ERR_BAD_ATTRIBUTE == kStatusBadAttribute && TRANSNEXT_AA_ERR_BAD_SHAPE == kStatusBadShape
        && TRANSNEXT_AA_ERR_LIMIT_EXCEEDED == kStatusLimitExceeded && TRANSNEXT_AA_ERR_INTERNAL == kStatusInternal,
    "the C status codes of aggregatedAttentionHost.h are the Status values of aggregatedAttentionMath.h");

void writeMessage(char* message, int64_t capacity, char const* text)
{
    if (message != nullptr && capacity > 0)
    {
        snprintf(message, static_cast<size_t>(capacity), "%s", text);
    }
}

template <int MaxD, typename T>
void runHead(Problem const& p, Inputs<T> const& in, T* out, int64_t b, int32_t h, std::vector<float>& staged)
{
    int64_t const P = p.pooledLen;
    int32_t const d = p.headDim;
    staged.resize(static_cast<size_t>(2 * P * d));
    float* keys = staged.data();
    float* values = staged.data() + P * d;
    for (int64_t q = 0; q < P; ++q)
    {
        stagePooledRow<MaxD>(keys + q * d, values + q * d, p, in.pooledKeyValue, b, q, h);
    }
    for (int64_t n = 0; n < p.numTokens; ++n)
    {
        QueryState<MaxD> st;
        beginQuery(st, p, in, b, n, h);
        accumulatePooled(st, keys, values, 0, P, in.poolBias + poolBiasOffset(p, h, n, 0), d);
        finishQuery(st, p, in, out, b, n, h);
    }
}

template <int MaxD, typename T>
void runAll(Problem const& p, Inputs<T> const& in, T* out, int32_t numThreads)
{
    std::atomic<bool> failed{false};
    auto head = [&](int64_t job) {
        if (failed.load(std::memory_order_relaxed))
        {
            return;
        }
        try
        {
            thread_local std::vector<float> staged;
            runHead<MaxD>(p, in, out, job / p.numHeads, static_cast<int32_t>(job % p.numHeads), staged);
        }
        catch (std::exception const&) // std::bad_alloc on a pool thread: reported by the caller
        {
            failed.store(true);
        }
    };
    transnext::aa::cpu::parallelFor(p.batch * p.numHeads, std::max(1, numThreads), head);
    if (failed.load())
    {
        throw std::runtime_error("out of memory in the reference path");
    }
}

template <typename T>
int32_t forward(Inputs<T> const& in, T* out, int64_t batch, int64_t channels, int64_t numHeads, int64_t height,
    int64_t width, int64_t windowSize, int64_t poolHeight, int64_t poolWidth, int32_t numThreads, int32_t path,
    char* message, int64_t capacity)
{
    Problem const p = makeProblem(batch, channels, numHeads, height, width, windowSize, poolHeight, poolWidth);
    char buffer[256];
    Status const status = validateProblem(p, buffer, sizeof(buffer));
    if (status != kStatusOk)
    {
        writeMessage(message, capacity, buffer);
        return status;
    }
    if (path < TRANSNEXT_AA_PATH_AUTO || path > TRANSNEXT_AA_PATH_PORTABLE)
    {
        snprintf(buffer, sizeof(buffer), "path must be 0 (auto), 1 (reference) or 2 (portable), got %d",
            static_cast<int>(path));
        writeMessage(message, capacity, buffer);
        return kStatusBadAttribute;
    }
    void const* pointers[] = {in.query, in.keyValue, in.pooledKeyValue, in.queryEmbedding, in.temperatureScale,
        in.localBias, in.learnableTokens, in.learnableBias, in.poolBias};
    for (int k = 0; k < kNumInputs; ++k)
    {
        if (pointers[k] == nullptr)
        {
            snprintf(buffer, sizeof(buffer), "input %d (%s) is a null pointer", k, kInputNames[k]);
            writeMessage(message, capacity, buffer);
            return kStatusNullPointer;
        }
    }
    if (out == nullptr)
    {
        writeMessage(message, capacity, "output is a null pointer");
        return kStatusNullPointer;
    }
    if (path != TRANSNEXT_AA_PATH_REFERENCE)
    {
        using transnext::aa::cpu::Isa;
        Isa const isa = path == TRANSNEXT_AA_PATH_AUTO && transnext::aa::cpu::cpuHasAvx2() ? Isa::kAvx2 : Isa::kPortable;
        Status const fast = transnext::aa::cpu::forwardFast(p, in, out, numThreads, isa, buffer, sizeof(buffer));
        writeMessage(message, capacity, fast == kStatusOk ? "" : buffer);
        return fast;
    }
    try
    {
        switch (maxHeadDimBucket(p.headDim))
        {
        case 16: runAll<16>(p, in, out, numThreads); break;
        case 24: runAll<24>(p, in, out, numThreads); break;
        case 32: runAll<32>(p, in, out, numThreads); break;
        case 48: runAll<48>(p, in, out, numThreads); break;
        case 64: runAll<64>(p, in, out, numThreads); break;
        default: writeMessage(message, capacity, "internal: no head_dim bucket"); return kStatusInternal;
        }
    }
    catch (std::exception const& e)
    {
        snprintf(buffer, sizeof(buffer), "internal: %s", e.what());
        writeMessage(message, capacity, buffer);
        return kStatusInternal;
    }
    writeMessage(message, capacity, "");
    return kStatusOk;
}

} // namespace

extern "C" {

int32_t transnext_aa_host_abi_version(void)
{
    return TRANSNEXT_AA_HOST_ABI_VERSION;
}

int32_t transnext_aa_max_head_dim(void)
{
    return kMaxHeadDim;
}

int32_t transnext_aa_max_window_size(void)
{
    return kMaxWindowSize;
}

int32_t transnext_aa_validate(int64_t batch, int64_t channels, int64_t num_heads, int64_t height, int64_t width,
    int64_t window_size, int64_t pool_height, int64_t pool_width, char* message, int64_t message_capacity)
{
    Problem const p = makeProblem(batch, channels, num_heads, height, width, window_size, pool_height, pool_width);
    char buffer[256];
    Status const status = validateProblem(p, buffer, sizeof(buffer));
    writeMessage(message, message_capacity, buffer);
    return status;
}

int32_t transnext_aa_forward_f32_path(float const* query, float const* key_value, float const* pooled_key_value,
    float const* query_embedding, float const* temperature_scale, float const* local_bias,
    float const* learnable_tokens, float const* learnable_bias, float const* pool_bias, float* output, int64_t batch,
    int64_t channels, int64_t num_heads, int64_t height, int64_t width, int64_t window_size, int64_t pool_height,
    int64_t pool_width, int32_t num_threads, int32_t path, char* message, int64_t message_capacity)
{
    Inputs<float> const in{query, key_value, pooled_key_value, query_embedding, temperature_scale, local_bias,
        learnable_tokens, learnable_bias, pool_bias};
    return forward(in, output, batch, channels, num_heads, height, width, window_size, pool_height, pool_width,
        num_threads, path, message, message_capacity);
}

int32_t transnext_aa_forward_f16_path(uint16_t const* query, uint16_t const* key_value,
    uint16_t const* pooled_key_value, uint16_t const* query_embedding, uint16_t const* temperature_scale,
    uint16_t const* local_bias, uint16_t const* learnable_tokens, uint16_t const* learnable_bias,
    uint16_t const* pool_bias, uint16_t* output, int64_t batch, int64_t channels, int64_t num_heads, int64_t height,
    int64_t width, int64_t window_size, int64_t pool_height, int64_t pool_width, int32_t num_threads, int32_t path,
    char* message, int64_t message_capacity)
{
    static_assert(sizeof(SoftHalf) == sizeof(uint16_t) && alignof(SoftHalf) == alignof(uint16_t),
        "SoftHalf must have the layout of uint16_t");
    auto h = [](uint16_t const* p) { return reinterpret_cast<SoftHalf const*>(p); };
    Inputs<SoftHalf> const in{h(query), h(key_value), h(pooled_key_value), h(query_embedding), h(temperature_scale),
        h(local_bias), h(learnable_tokens), h(learnable_bias), h(pool_bias)};
    return forward(in, reinterpret_cast<SoftHalf*>(output), batch, channels, num_heads, height, width, window_size,
        pool_height, pool_width, num_threads, path, message, message_capacity);
}

int32_t transnext_aa_forward_f32(float const* query, float const* key_value, float const* pooled_key_value,
    float const* query_embedding, float const* temperature_scale, float const* local_bias,
    float const* learnable_tokens, float const* learnable_bias, float const* pool_bias, float* output, int64_t batch,
    int64_t channels, int64_t num_heads, int64_t height, int64_t width, int64_t window_size, int64_t pool_height,
    int64_t pool_width, int32_t num_threads, char* message, int64_t message_capacity)
{
    return transnext_aa_forward_f32_path(query, key_value, pooled_key_value, query_embedding, temperature_scale,
        local_bias, learnable_tokens, learnable_bias, pool_bias, output, batch, channels, num_heads, height, width,
        window_size, pool_height, pool_width, num_threads, TRANSNEXT_AA_PATH_AUTO, message, message_capacity);
}

int32_t transnext_aa_forward_f16(uint16_t const* query, uint16_t const* key_value, uint16_t const* pooled_key_value,
    uint16_t const* query_embedding, uint16_t const* temperature_scale, uint16_t const* local_bias,
    uint16_t const* learnable_tokens, uint16_t const* learnable_bias, uint16_t const* pool_bias, uint16_t* output,
    int64_t batch, int64_t channels, int64_t num_heads, int64_t height, int64_t width, int64_t window_size,
    int64_t pool_height, int64_t pool_width, int32_t num_threads, char* message, int64_t message_capacity)
{
    return transnext_aa_forward_f16_path(query, key_value, pooled_key_value, query_embedding, temperature_scale,
        local_bias, learnable_tokens, learnable_bias, pool_bias, output, batch, channels, num_heads, height, width,
        window_size, pool_height, pool_width, num_threads, TRANSNEXT_AA_PATH_AUTO, message, message_capacity);
}

char const* transnext_aa_kernel_name(int32_t path)
{
    switch (path)
    {
    case TRANSNEXT_AA_PATH_AUTO: return transnext::aa::cpu::cpuHasAvx2() ? "avx2" : "portable";
    case TRANSNEXT_AA_PATH_REFERENCE: return "reference";
    case TRANSNEXT_AA_PATH_PORTABLE: return "portable";
    default: return "";
    }
}

uint16_t transnext_aa_float_to_half(float value)
{
    return floatToHalfBits(value);
}

float transnext_aa_half_to_float(uint16_t bits)
{
    return halfBitsToFloat(bits);
}

} // extern "C"

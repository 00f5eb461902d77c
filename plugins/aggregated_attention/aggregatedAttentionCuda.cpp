// C API of the CUDA kernel (aggregatedAttentionCuda.h): size checks of aggregatedAttentionMath.h,
// then launchAggregatedAttention on the caller's stream. Plain C++ (no CUDA syntax): the kernel
// itself comes from the static library transnext_aa_cuda.
#include "aggregatedAttentionCuda.h"
#include "aggregatedAttentionKernel.cuh"

#include <cstdio>

namespace
{
using namespace transnext::aa;

static_assert(TRANSNEXT_AA_DTYPE_FLOAT32 == static_cast<int>(IoType::kFloat32), "dtype codes follow IoType");
static_assert(TRANSNEXT_AA_DTYPE_FLOAT16 == static_cast<int>(IoType::kFloat16), "dtype codes follow IoType");
static_assert(TRANSNEXT_AA_OK == kStatusOk && TRANSNEXT_AA_ERR_NULL_POINTER == kStatusNullPointer
        && TRANSNEXT_AA_ERR_BAD_ATTRIBUTE == kStatusBadAttribute && TRANSNEXT_AA_ERR_BAD_SHAPE == kStatusBadShape
        && TRANSNEXT_AA_ERR_LIMIT_EXCEEDED == kStatusLimitExceeded && TRANSNEXT_AA_ERR_INTERNAL == kStatusInternal,
    "the C status codes are the Status values of aggregatedAttentionMath.h");

int32_t report(char* message, int64_t capacity, int32_t status, char const* text)
{
    if (message != nullptr && capacity > 0)
    {
        snprintf(message, static_cast<size_t>(capacity), "%s", text);
    }
    return status;
}

} // namespace

extern "C" {

int32_t transnext_aa_cuda_abi_version(void)
{
    return TRANSNEXT_AA_CUDA_ABI_VERSION;
}

int32_t transnext_aa_cuda_validate(int64_t batch, int64_t channels, int64_t num_heads, int64_t height, int64_t width,
    int64_t window_size, int64_t pool_height, int64_t pool_width, char* message, int64_t message_capacity)
{
    Problem const p = makeProblem(batch, channels, num_heads, height, width, window_size, pool_height, pool_width);
    char buffer[256];
    Status const status = validateProblem(p, buffer, sizeof(buffer));
    return report(message, message_capacity, status, buffer);
}

int32_t transnext_aa_cuda_forward(int32_t dtype, void const* query, void const* key_value,
    void const* pooled_key_value, void const* query_embedding, void const* temperature_scale, void const* local_bias,
    void const* learnable_tokens, void const* learnable_bias, void const* pool_bias, void* output, int64_t batch,
    int64_t channels, int64_t num_heads, int64_t height, int64_t width, int64_t window_size, int64_t pool_height,
    int64_t pool_width, void* stream, char* message, int64_t message_capacity)
{
    char buffer[256];
    if (dtype != TRANSNEXT_AA_DTYPE_FLOAT32 && dtype != TRANSNEXT_AA_DTYPE_FLOAT16)
    {
        snprintf(buffer, sizeof(buffer), "dtype must be %d (float32) or %d (float16), got %d",
            TRANSNEXT_AA_DTYPE_FLOAT32, TRANSNEXT_AA_DTYPE_FLOAT16, static_cast<int>(dtype));
        return report(message, message_capacity, kStatusBadAttribute, buffer);
    }
    Problem const p = makeProblem(batch, channels, num_heads, height, width, window_size, pool_height, pool_width);
    Status const status = validateProblem(p, buffer, sizeof(buffer));
    if (status != kStatusOk)
    {
        return report(message, message_capacity, status, buffer);
    }
    void const* const inputs[kNumInputs] = {query, key_value, pooled_key_value, query_embedding, temperature_scale,
        local_bias, learnable_tokens, learnable_bias, pool_bias};
    for (int32_t k = 0; k < kNumInputs; ++k)
    {
        if (inputs[k] == nullptr)
        {
            snprintf(buffer, sizeof(buffer), "input %d (%s) is a null pointer", static_cast<int>(k), kInputNames[k]);
            return report(message, message_capacity, kStatusNullPointer, buffer);
        }
    }
    if (output == nullptr)
    {
        return report(message, message_capacity, kStatusNullPointer, "output is a null pointer");
    }
    cudaError_t const launched = launchAggregatedAttention(
        static_cast<IoType>(dtype), p, inputs, output, static_cast<cudaStream_t>(stream));
    if (launched != cudaSuccess)
    {
        snprintf(buffer, sizeof(buffer), "kernel launch failed: %s (%s)", cudaGetErrorString(launched),
            cudaGetErrorName(launched));
        return report(message, message_capacity, kStatusInternal, buffer);
    }
    return report(message, message_capacity, kStatusOk, "");
}

} // extern "C"

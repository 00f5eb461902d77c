/* C API of the host (CPU) implementation of the TransNeXt aggregated-attention op.
 *
 * The library (libtransnext_aa_host.so) has no CUDA or TensorRT dependency. It holds two paths:
 *   - the fast kernel (the default): blocks of queries, vectorised (AVX2 + FMA + F16C chosen at
 *     run time on x86, portable C++ otherwise), on a persistent thread pool;
 *   - the per-query reference: the arithmetic of aggregatedAttentionMath.h -- the same source the
 *     CUDA kernel is compiled from -- over all queries.
 * Both compute the op of the contract in fp32; they differ only by rounding. Used by the tests,
 * the project's onnxruntime CPU custom op and PyTorch's CPU op (through ctypes).
 *
 * Layouts are the op contract's (plugins/aggregated_attention/README.md), all row-major:
 *   query (B, N, C), key_value (B, N, 2C), pooled_key_value (B, P, 2C), query_embedding (nh, d),
 *   temperature_scale (nh), local_bias (nh, L), learnable_tokens (nh, d, L), learnable_bias (nh, L),
 *   pool_bias (nh, N, P), output (B, N, C); N = height*width, P = pool_height*pool_width,
 *   d = C/nh, L = window_size^2.
 * The functions check every size argument (and null pointers) but cannot see buffer lengths:
 * the caller guarantees that each buffer holds the elements its shape above implies.
 *
 * Return value: 0 on success, otherwise a TRANSNEXT_AA_ERR_* code; a one-line reason is written
 * to `message` (NUL-terminated, truncated to message_capacity) when message is not NULL.
 */
#ifndef TRANSNEXT_AGGREGATED_ATTENTION_HOST_H
#define TRANSNEXT_AGGREGATED_ATTENTION_HOST_H

#include <stddef.h>
#include <stdint.h>

#if defined(_WIN32)
#define TRANSNEXT_AA_API __declspec(dllexport)
#else
#define TRANSNEXT_AA_API __attribute__((visibility("default")))
#endif

#ifdef __cplusplus
extern "C" {
#endif

#define TRANSNEXT_AA_OK 0
#define TRANSNEXT_AA_ERR_NULL_POINTER 1
#define TRANSNEXT_AA_ERR_BAD_ATTRIBUTE 2
#define TRANSNEXT_AA_ERR_BAD_SHAPE 3
#define TRANSNEXT_AA_ERR_LIMIT_EXCEEDED 4
#define TRANSNEXT_AA_ERR_INTERNAL 5

/* Version of this C API; bumped on any signature change. */
#define TRANSNEXT_AA_HOST_ABI_VERSION 1
TRANSNEXT_AA_API int32_t transnext_aa_host_abi_version(void);

/* Largest supported head_dim (C / num_heads) and window size, as the CUDA kernel. */
TRANSNEXT_AA_API int32_t transnext_aa_max_head_dim(void);
TRANSNEXT_AA_API int32_t transnext_aa_max_window_size(void);

/* Checks the size arguments only (no pointers). */
TRANSNEXT_AA_API int32_t transnext_aa_validate(int64_t batch, int64_t channels, int64_t num_heads, int64_t height,
    int64_t width, int64_t window_size, int64_t pool_height, int64_t pool_width, char* message,
    int64_t message_capacity);

/* float32 storage, fast path. num_threads <= 1 runs on the calling thread; more threads come from
 * a pool started on first use and kept (asleep between calls). Calls from several threads at once
 * are safe: while one call uses the pool, the others run on their calling thread. */
TRANSNEXT_AA_API int32_t transnext_aa_forward_f32(float const* query, float const* key_value,
    float const* pooled_key_value, float const* query_embedding, float const* temperature_scale,
    float const* local_bias, float const* learnable_tokens, float const* learnable_bias, float const* pool_bias,
    float* output, int64_t batch, int64_t channels, int64_t num_heads, int64_t height, int64_t width,
    int64_t window_size, int64_t pool_height, int64_t pool_width, int32_t num_threads, char* message,
    int64_t message_capacity);

/* float16 storage: IEEE binary16 bit patterns; fp32 arithmetic, output rounded to nearest even. */
TRANSNEXT_AA_API int32_t transnext_aa_forward_f16(uint16_t const* query, uint16_t const* key_value,
    uint16_t const* pooled_key_value, uint16_t const* query_embedding, uint16_t const* temperature_scale,
    uint16_t const* local_bias, uint16_t const* learnable_tokens, uint16_t const* learnable_bias,
    uint16_t const* pool_bias, uint16_t* output, int64_t batch, int64_t channels, int64_t num_heads, int64_t height,
    int64_t width, int64_t window_size, int64_t pool_height, int64_t pool_width, int32_t num_threads, char* message,
    int64_t message_capacity);

/* Which implementation a *_path call runs. */
#define TRANSNEXT_AA_PATH_AUTO 0      /* the fast kernel, with the best instruction set of this CPU */
#define TRANSNEXT_AA_PATH_REFERENCE 1 /* per-query arithmetic of aggregatedAttentionMath.h (the CUDA kernel's) */
#define TRANSNEXT_AA_PATH_PORTABLE 2  /* the fast kernel without x86 vector extensions */

/* As transnext_aa_forward_f32 / _f16, with the path chosen (an unknown path: TRANSNEXT_AA_ERR_BAD_ATTRIBUTE). */
TRANSNEXT_AA_API int32_t transnext_aa_forward_f32_path(float const* query, float const* key_value,
    float const* pooled_key_value, float const* query_embedding, float const* temperature_scale,
    float const* local_bias, float const* learnable_tokens, float const* learnable_bias, float const* pool_bias,
    float* output, int64_t batch, int64_t channels, int64_t num_heads, int64_t height, int64_t width,
    int64_t window_size, int64_t pool_height, int64_t pool_width, int32_t num_threads, int32_t path, char* message,
    int64_t message_capacity);
TRANSNEXT_AA_API int32_t transnext_aa_forward_f16_path(uint16_t const* query, uint16_t const* key_value,
    uint16_t const* pooled_key_value, uint16_t const* query_embedding, uint16_t const* temperature_scale,
    uint16_t const* local_bias, uint16_t const* learnable_tokens, uint16_t const* learnable_bias,
    uint16_t const* pool_bias, uint16_t* output, int64_t batch, int64_t channels, int64_t num_heads, int64_t height,
    int64_t width, int64_t window_size, int64_t pool_height, int64_t pool_width, int32_t num_threads, int32_t path,
    char* message, int64_t message_capacity);

/* What a path runs on this CPU: "avx2", "portable" or "reference" ("" for an unknown path). */
TRANSNEXT_AA_API char const* transnext_aa_kernel_name(int32_t path);

/* The software half conversions used by the f16 path (exposed for tests). */
TRANSNEXT_AA_API uint16_t transnext_aa_float_to_half(float value);
TRANSNEXT_AA_API float transnext_aa_half_to_float(uint16_t bits);

#ifdef __cplusplus
}
#endif

#endif /* TRANSNEXT_AGGREGATED_ATTENTION_HOST_H */

/* C API of the CUDA kernel of the TransNeXt aggregated-attention op (libtransnext_aa_cuda.so).
 *
 * A small, dependency-free entry point to the same kernel the TensorRT plugin launches
 * (launchAggregatedAttention in aggregatedAttentionKernel.cuh), for callers that hold device
 * buffers of their own: the PyTorch op torch.ops.transnext.aggregated_attention loads it with
 * ctypes (transnext_deploy/ops/fused_op.py), so there is no coupling to PyTorch's C++ ABI.
 *
 * Layouts, sizes and limits are the op contract's (plugins/aggregated_attention/README.md) and
 * the size arguments are those of the host C API (aggregatedAttentionHost.h). The CUDA runtime is
 * linked statically; the library's only CUDA dependency at run time is the driver (libcuda).
 *
 * transnext_aa_cuda_forward() enqueues the kernel on `stream` (a cudaStream_t passed as void*;
 * NULL is the legacy default stream) and returns: it never synchronises, allocates nothing and
 * needs no workspace, so it may be called while the stream is being captured into a CUDA graph.
 * Kernel execution errors therefore surface later, on the stream, like any other kernel's.
 *
 * Return value: TRANSNEXT_AA_OK (0) or one of the TRANSNEXT_AA_ERR_* codes of
 * aggregatedAttentionHost.h (the Status values of aggregatedAttentionMath.h); a launch failure
 * reported by the CUDA runtime is TRANSNEXT_AA_ERR_INTERNAL with the runtime's error text. A
 * one-line reason goes to `message` (NUL-terminated, truncated to message_capacity) when given.
 */
#ifndef TRANSNEXT_AGGREGATED_ATTENTION_CUDA_H
#define TRANSNEXT_AGGREGATED_ATTENTION_CUDA_H

#include "aggregatedAttentionHost.h" /* TRANSNEXT_AA_API and the status codes */

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Version of this C API; bumped on any signature change. */
#define TRANSNEXT_AA_CUDA_ABI_VERSION 1
TRANSNEXT_AA_API int32_t transnext_aa_cuda_abi_version(void);

/* Element type of every input and the output (`dtype` of transnext_aa_cuda_forward). */
#define TRANSNEXT_AA_DTYPE_FLOAT32 0
#define TRANSNEXT_AA_DTYPE_FLOAT16 1

/* Checks the size arguments only (no pointers, no CUDA call); same answers as transnext_aa_validate. */
TRANSNEXT_AA_API int32_t transnext_aa_cuda_validate(int64_t batch, int64_t channels, int64_t num_heads,
    int64_t height, int64_t width, int64_t window_size, int64_t pool_height, int64_t pool_width, char* message,
    int64_t message_capacity);

/* Enqueues the op on `stream`. The nine inputs are device pointers in contract order
 * (query, key_value, pooled_key_value, query_embedding, temperature_scale, local_bias,
 * learnable_tokens, learnable_bias, pool_bias), dense row-major, all of element type `dtype`, as is
 * `output` (B, N, C). The caller guarantees that each buffer holds the elements its shape implies
 * and lives on the device that owns `stream`. */
TRANSNEXT_AA_API int32_t transnext_aa_cuda_forward(int32_t dtype, void const* query, void const* key_value,
    void const* pooled_key_value, void const* query_embedding, void const* temperature_scale,
    void const* local_bias, void const* learnable_tokens, void const* learnable_bias, void const* pool_bias,
    void* output, int64_t batch, int64_t channels, int64_t num_heads, int64_t height, int64_t width,
    int64_t window_size, int64_t pool_height, int64_t pool_width, void* stream, char* message,
    int64_t message_capacity);

#ifdef __cplusplus
}
#endif

#endif /* TRANSNEXT_AGGREGATED_ATTENTION_CUDA_H */

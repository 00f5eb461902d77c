// Launcher of the CUDA kernel of the TransNeXt aggregated-attention op.
// Plain C++ interface (no CUDA-specific syntax), so the plugin can be compiled by a C++ compiler.
#pragma once

#include "aggregatedAttentionMath.h"

#include <cstddef>
#include <cstdint>
#include <cuda_runtime_api.h>

namespace transnext
{
namespace aa
{

enum class IoType : int32_t
{
    kFloat32 = 0,
    kFloat16 = 1,
};

//! Threads (queries) per block; each thread owns one (batch, query, head).
constexpr int32_t kThreadsPerBlock = 128;
//! Shared memory one block may use for staged pooled rows (no opt-in needed on any arch).
constexpr size_t kPooledStagingBytes = 48 * 1024;

//! Pooled rows staged per shared-memory tile: all P rows when 2*P*d*4 bytes fit, else fewer
//! (the kernel then walks P in tiles; results are identical, only the number of barriers changes).
inline int32_t pooledTileRows(Problem const& p)
{
    int64_t const rowBytes = 2 * static_cast<int64_t>(p.headDim) * static_cast<int64_t>(sizeof(float));
    int64_t const fit = static_cast<int64_t>(kPooledStagingBytes) / (rowBytes > 0 ? rowBytes : 1);
    int64_t const rows = p.pooledLen < fit ? p.pooledLen : fit;
    return static_cast<int32_t>(rows < 1 ? 1 : rows);
}

//! Global-memory workspace the kernel needs: none.
constexpr size_t kWorkspaceBytes = 0;

//! Runs the op on `stream`. `p` must have passed validateProblem(); `inputs` are the nine device
//! pointers in contract order and `output` the (B, N, C) device buffer, all of element type `type`.
//! Returns cudaSuccess or the launch error; never synchronises.
cudaError_t launchAggregatedAttention(
    IoType type, Problem const& p, void const* const* inputs, void* output, cudaStream_t stream) noexcept;

} // namespace aa
} // namespace transnext

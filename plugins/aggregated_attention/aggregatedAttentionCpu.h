// The fast CPU kernel of the aggregated-attention op (host library only; no CUDA).
//
// Same contract and the same fp32 arithmetic as the per-query path of aggregatedAttentionMath.h
// (which the CUDA kernel runs), reorganised for a CPU core:
//   * work unit = (batch, head, band of rows, tile of columns); units are spread over a
//     persistent thread pool (aggregatedAttentionThreadPool.h);
//   * per (batch, head), once per thread: the l2-normalised pooled keys (transposed, P in the
//     vector lanes) and the pooled values as fp32, plus the head's constants;
//   * per unit: the normalised keys and the values of the unit's rows and columns plus the window
//     halo, as fp32 rows zero-padded to a multiple of 8 channels (zero outside the image), so each
//     key is normalised once per unit instead of once per (query, neighbour) pair;
//   * per block of up to kChunk queries of one row: the pooled scores as a small matrix product
//     (queries x P, vectorised over P), the window scores (vectorised over the head dimension), one
//     softmax (vectorised exp), the pooled weighted sum as a matrix product (vectorised over the
//     head dimension) and the window terms.
// The softmax runs over tiles of at most kPooledTile pooled rows with a running maximum and sum
// (as the GPU kernel's online softmax), so no buffer grows with P beyond the staged pooled rows.
// A query's arithmetic does not depend on which unit, block or thread computes it, so the output
// is the same for every thread count.
//
// Instruction sets: the kernel body (aggregatedAttentionCpuKernelBody.h) is compiled twice: a
// portable build (plain C++; the compiler may vectorise it for the baseline ISA, e.g. SSE2 or
// NEON) and, on x86 with GCC or Clang, an AVX2 + FMA + F16C build through function target
// attributes, chosen at run time when the CPU and the OS support it.
#pragma once

#include "aggregatedAttentionMath.h"

#include <cstdint>
#include <vector>

namespace transnext
{
namespace aa
{
namespace cpu
{

constexpr int32_t kLanes = 8;         // floats per vector in the kernel (one AVX register)
constexpr int32_t kChunk = 16;        // queries per block (one row of the grid)
constexpr int32_t kPooledTile = 512;  // pooled rows per softmax tile (multiple of kLanes)
constexpr int32_t kMaxBandRows = 8;   // rows per unit, fewer when there are too few units to share
constexpr int32_t kMaxTileCols = 128; // columns per unit; wider grids are split into tiles

enum class Isa : int32_t
{
    kPortable = 0,
    kAvx2 = 1,
};

//! The sizes of one call and how it is cut into units. Built by makePlan().
struct Plan
{
    Problem p;
    int32_t d;      // head dim
    int32_t nv;     // vectors per padded row: vectorsPerRow(d)
    int32_t dp;     // padded row length, nv * 8
    int32_t r;      // window radius
    int32_t lp;     // L padded to a multiple of 8
    int64_t pp;     // P padded to a multiple of 8
    int32_t bandRows;
    int32_t tileCols;
    int64_t rowBands;
    int64_t colTiles;
    int64_t units;
    uint64_t callId;              // identifies this call's staged rows in the per-thread caches
    std::vector<float> logTable;  // ln(valid + P) for valid in [0, L], as the reference computes it
};

//! Per-thread scratch memory, kept between calls (grown, never shrunk below the largest call's
//! need unless that exceeds a limit).
struct Workspace
{
    uint64_t stagedCall = 0; // (call, batch, head) of the staged pooled rows and head constants
    int64_t stagedBatch = -1;
    int32_t stagedHead = -1;
    std::vector<float> pooledKeysT;  // d x pp: normalised pooled keys, transposed
    std::vector<float> pooledValues; // pp x dp
    std::vector<float> queryEmbedding; // dp
    std::vector<float> localBias;      // lp, -inf past L
    std::vector<float> learnableTokens; // d x lp
    std::vector<float> learnableBias;   // lp
    float temperature = 0.f;
    std::vector<float> bandKeys;   // (bandRows + 2r) x (tileCols + 2r) x dp, normalised
    std::vector<float> bandValues; // same
    std::vector<int64_t> slotOffsets; // lp: offset of window slot l from a query's slot 0 in the band
    std::vector<float> qn;       // kChunk x dp: normalised queries
    std::vector<float> qs;       // kChunk x dp: scaled queries
    std::vector<float> local;    // kChunk x lp: window scores, then their exp
    std::vector<float> learn;    // kChunk x lp: learnable-token term, then the window weights
    std::vector<float> scores;   // kChunk x kPooledTile: pooled scores, then their exp
    std::vector<float> acc;      // kChunk x dp: softmax numerator of the pooled rows
    float rowMax[kChunk];
    float rowSum[kChunk];
};

using UnitFunction = void (*)(Plan const&, void const* inputs, void* output, int64_t unit, Workspace&);

//! Vectors per padded row for a head dim: ceil(d / 8), rounded up to 6 or 8 for 5 and 7 (fewer
//! instantiations of the kernel; TransNeXt uses d = 24, 3 vectors).
inline int32_t vectorsPerRow(int32_t headDim)
{
    int32_t const nv = (headDim + kLanes - 1) / kLanes;
    return nv == 5 || nv == 7 ? nv + 1 : nv;
}

//! The unit function of one instruction set for storage type float or SoftHalf and nv vectors per
//! row (vectorsPerRow()); nullptr when that instruction set is not compiled in.
UnitFunction portableUnitFunction(bool half, int32_t nv);
UnitFunction avx2UnitFunction(bool half, int32_t nv);

//! True when this build has the AVX2 kernel and the CPU and OS can run it.
bool cpuHasAvx2();

//! Runs the fast kernel. `p` must have passed validateProblem() and every pointer must be
//! non-null. Returns kStatusOk, or kStatusInternal with a message (e.g. out of memory).
template <typename T>
Status forwardFast(Problem const& p, Inputs<T> const& in, T* out, int32_t numThreads, Isa isa, char* message,
    size_t capacity);

} // namespace cpu
} // namespace aa
} // namespace transnext

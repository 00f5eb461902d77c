// Per-query arithmetic of the TransNeXt aggregated-attention op.
//
// This header is the single source of truth for the op's math. It is compiled twice:
//   * by nvcc into the CUDA kernel (aggregatedAttentionKernel.cu), which only adds the thread
//     mapping and the shared-memory staging of pooled rows, and
//   * by a plain C++ compiler into the host reference library (aggregatedAttentionHost.cpp),
//     which runs the same functions over all queries on the CPU.
// It needs no CUDA or TensorRT header: when __CUDACC__ is undefined the qualifiers vanish.
//
// For one batch b, head h and query n = (i, j), with d = head_dim, w = window_size, L = w*w:
//   qn  = q[b,n,h] / max(||q[b,n,h]||, eps)
//   qs  = (qn + query_embedding[h]) * temperature_scale[h] * ln(valid(n) + P)
//   local slot l = a*w + b  ->  neighbour (i + a - w/2, j + b - w/2); only in-image slots exist
//   s_l = qs . k[nbr] / max(||k[nbr]||, eps) + local_bias[h, l]
//   s_p = qs . kp[p] / max(||kp[p]||, eps) + pool_bias[h, n, p]
//   a   = softmax over the valid s_l and all s_p (out-of-image slots have probability 0)
//   out = sum_l (a_l + qn . learnable_tokens[h,:,l] + learnable_bias[h,l]) * v[nbr]
//       + sum_p a_p * vp[p]
// All arithmetic is fp32, whatever the storage type. The softmax is computed online (running
// maximum and running sum), so no per-query buffer grows with P.
#pragma once

#include "aggregatedAttentionContract.h"

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>

#if defined(__CUDACC__)
#define TNX_AA_HD __host__ __device__ __forceinline__
#else
#define TNX_AA_HD inline
#endif
#if defined(__CUDA_ARCH__)
#define TNX_AA_UNROLL _Pragma("unroll")
#else
#define TNX_AA_UNROLL
#endif

namespace transnext
{
namespace aa
{

// ---------------------------------------------------------------------------------------------
// Storage types and their load/store to fp32.
// ---------------------------------------------------------------------------------------------

//! IEEE binary16 stored as raw bits, for host code without CUDA's __half.
struct SoftHalf
{
    uint16_t bits;
};

TNX_AA_HD uint32_t floatToBits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof(u));
    return u;
}

TNX_AA_HD float bitsToFloat(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof(f));
    return f;
}

//! float32 -> binary16 bits, round to nearest, ties to even; overflow gives +-inf, NaN stays NaN.
TNX_AA_HD uint16_t floatToHalfBits(float f)
{
    uint32_t const x = floatToBits(f);
    uint32_t const sign = (x >> 16) & 0x8000u;
    uint32_t const absx = x & 0x7fffffffu;
    if (absx >= 0x7f800000u) // inf or NaN (keep a quiet NaN payload bit)
    {
        return static_cast<uint16_t>(sign | 0x7c00u | (absx > 0x7f800000u ? (0x200u | ((absx >> 13) & 0x3ffu)) : 0u));
    }
    if (absx >= 0x477ff000u) // >= 65520: rounds to infinity
    {
        return static_cast<uint16_t>(sign | 0x7c00u);
    }
    uint32_t const exponent = absx >> 23;
    if (exponent < 113) // below 2^-14: binary16 subnormal (or zero)
    {
        int32_t const shift = 126 - static_cast<int32_t>(exponent); // value = mant * 2^-24 after >> shift
        if (shift > 24)
        {
            return static_cast<uint16_t>(sign);
        }
        uint32_t const mant = (absx & 0x7fffffu) | 0x800000u;
        uint32_t half = mant >> shift;
        uint32_t const rem = mant & ((1u << shift) - 1u);
        uint32_t const tie = 1u << (shift - 1);
        if (rem > tie || (rem == tie && (half & 1u)))
        {
            ++half; // may carry into the smallest normal, which is the right encoding
        }
        return static_cast<uint16_t>(sign | half);
    }
    uint32_t half = ((exponent - 112u) << 10) | ((absx >> 13) & 0x3ffu);
    uint32_t const rem = absx & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (half & 1u)))
    {
        ++half; // carries into the exponent correctly
    }
    return static_cast<uint16_t>(sign | half);
}

//! binary16 bits -> float32 (exact).
TNX_AA_HD float halfBitsToFloat(uint16_t h)
{
    uint32_t const sign = (static_cast<uint32_t>(h) & 0x8000u) << 16;
    uint32_t const exponent = (h >> 10) & 0x1fu;
    uint32_t const mant = h & 0x3ffu;
    if (exponent == 0)
    {
        float const magnitude = static_cast<float>(mant) * 5.9604644775390625e-8f; // mant * 2^-24, exact
        return bitsToFloat(floatToBits(magnitude) | sign);
    }
    if (exponent == 31)
    {
        return bitsToFloat(sign | 0x7f800000u | (mant << 13));
    }
    return bitsToFloat(sign | ((exponent + 112u) << 23) | (mant << 13));
}

//! Load/store of one storage element as fp32. Specialised for float and SoftHalf here and for
//! CUDA's __half in aggregatedAttentionKernel.cuh.
template <typename T>
struct Element;

template <>
struct Element<float>
{
    static TNX_AA_HD float load(float const* p, int64_t i)
    {
        return p[i];
    }
    static TNX_AA_HD void store(float* p, int64_t i, float v)
    {
        p[i] = v;
    }
};

template <>
struct Element<SoftHalf>
{
    static TNX_AA_HD float load(SoftHalf const* p, int64_t i)
    {
        return halfBitsToFloat(p[i].bits);
    }
    static TNX_AA_HD void store(SoftHalf* p, int64_t i, float v)
    {
        p[i].bits = floatToHalfBits(v);
    }
};

template <typename T>
TNX_AA_HD float ld(T const* p, int64_t i)
{
    return Element<T>::load(p, i);
}

// ---------------------------------------------------------------------------------------------
// Problem description, layouts and validation.
// ---------------------------------------------------------------------------------------------

//! Sizes of one call. Built by makeProblem() and checked by validateProblem() before use.
struct Problem
{
    int64_t batch;
    int64_t channels;  // C
    int64_t numTokens; // N = height * width
    int64_t pooledLen; // P = poolHeight * poolWidth
    int32_t numHeads;
    int32_t headDim; // d = C / numHeads
    int32_t height;
    int32_t width;
    int32_t windowSize;
    int32_t localLen; // L = windowSize^2
    int32_t poolHeight;
    int32_t poolWidth;
};

//! The nine input pointers, in contract order, of one storage type.
template <typename T>
struct Inputs
{
    T const* query;
    T const* keyValue;
    T const* pooledKeyValue;
    T const* queryEmbedding;
    T const* temperatureScale;
    T const* localBias;
    T const* learnableTokens;
    T const* learnableBias;
    T const* poolBias;
};

enum Status : int32_t
{
    kStatusOk = 0,
    kStatusNullPointer = 1,
    kStatusBadAttribute = 2,
    kStatusBadShape = 3,
    kStatusLimitExceeded = 4,
    kStatusInternal = 5,
};

inline Problem makeProblem(int64_t batch, int64_t channels, int64_t numHeads, int64_t height, int64_t width,
    int64_t windowSize, int64_t poolHeight, int64_t poolWidth)
{
    Problem p{};
    p.batch = batch;
    p.channels = channels;
    auto clamp32 = [](int64_t v) -> int32_t {
        return v > INT32_MAX ? INT32_MAX : (v < INT32_MIN ? INT32_MIN : static_cast<int32_t>(v));
    };
    p.numHeads = clamp32(numHeads);
    p.height = clamp32(height);
    p.width = clamp32(width);
    p.windowSize = clamp32(windowSize);
    p.poolHeight = clamp32(poolHeight);
    p.poolWidth = clamp32(poolWidth);
    // Products are only meaningful once validateProblem() has accepted the factors.
    p.numTokens = (height > 0 && width > 0 && height <= kMaxTokens && width <= kMaxTokens) ? height * width : -1;
    p.pooledLen = (poolHeight > 0 && poolWidth > 0 && poolHeight <= kMaxPooledTokens && poolWidth <= kMaxPooledTokens)
        ? poolHeight * poolWidth
        : -1;
    p.headDim = (numHeads > 0 && channels > 0 && channels % numHeads == 0) ? clamp32(channels / numHeads) : -1;
    p.localLen = (windowSize > 0 && windowSize <= kMaxWindowSize) ? static_cast<int32_t>(windowSize * windowSize) : -1;
    return p;
}

//! a * b when the product stays <= limit (all factors positive), else -1.
inline int64_t boundedProduct(int64_t a, int64_t b, int64_t limit)
{
    if (a <= 0 || b <= 0 || a > limit / b)
    {
        return -1;
    }
    return a * b;
}

inline int64_t boundedProduct3(int64_t a, int64_t b, int64_t c, int64_t limit)
{
    int64_t const ab = boundedProduct(a, b, limit);
    return ab < 0 ? -1 : boundedProduct(ab, c, limit);
}

//! Checks attributes and sizes against the contract and the limits. Writes a specific, one-line
//! message into `message` (when given) and returns a Status. Host only.
inline Status validateProblem(Problem const& p, char* message, size_t capacity)
{
    auto fail = [&](Status s, char const* fmt, long long a, long long b) {
        if (message != nullptr && capacity > 0)
        {
            snprintf(message, capacity, fmt, a, b);
        }
        return s;
    };
    if (p.numHeads < 1 || p.numHeads > kMaxNumHeads)
        return fail(kStatusBadAttribute, "num_heads must be in [1, %lld], got %lld", kMaxNumHeads, p.numHeads);
    if (p.height < 1 || p.width < 1)
        return fail(kStatusBadAttribute, "height and width must be >= 1, got height=%lld width=%lld", p.height, p.width);
    if (p.numTokens < 1 || p.numTokens > kMaxTokens || static_cast<int64_t>(p.height) * p.width > kMaxTokens)
        return fail(kStatusLimitExceeded, "height*width must be <= %lld tokens, got %lld", kMaxTokens,
            static_cast<long long>(p.height) * p.width);
    if (p.windowSize < 1 || p.windowSize > kMaxWindowSize || p.windowSize % 2 == 0)
        return fail(kStatusBadAttribute, "window_size must be odd and in [1, %lld], got %lld", kMaxWindowSize,
            p.windowSize);
    if (p.poolHeight < 1 || p.poolWidth < 1)
        return fail(kStatusBadAttribute, "pool_height and pool_width must be >= 1, got pool_height=%lld pool_width=%lld",
            p.poolHeight, p.poolWidth);
    if (p.pooledLen < 1 || p.pooledLen > kMaxPooledTokens
        || static_cast<int64_t>(p.poolHeight) * p.poolWidth > kMaxPooledTokens)
        return fail(kStatusLimitExceeded, "pool_height*pool_width must be <= %lld, got %lld", kMaxPooledTokens,
            static_cast<long long>(p.poolHeight) * p.poolWidth);
    if (p.batch < 1 || p.batch > kMaxBatch)
        return fail(kStatusBadShape, "batch must be in [1, %lld], got %lld", kMaxBatch, p.batch);
    if (p.channels < 1)
        return fail(kStatusBadShape, "channels C must be >= 1, got %lld (num_heads=%lld)", p.channels, p.numHeads);
    if (p.channels % p.numHeads != 0)
        return fail(kStatusBadShape, "channels C=%lld is not divisible by num_heads=%lld", p.channels, p.numHeads);
    if (p.headDim < 1 || p.headDim > kMaxHeadDim)
        return fail(kStatusLimitExceeded, "head_dim = C/num_heads must be in [1, %lld], got %lld", kMaxHeadDim,
            p.channels / p.numHeads);
    if (p.localLen != p.windowSize * p.windowSize)
        return fail(kStatusInternal, "internal: local length %lld != window_size^2 (window_size=%lld)", p.localLen,
            p.windowSize);
    if (boundedProduct3(p.batch, p.numTokens, 2 * p.channels, kMaxElements) < 0
        || boundedProduct3(p.batch, p.pooledLen, 2 * p.channels, kMaxElements) < 0)
        return fail(kStatusLimitExceeded, "input too large: batch=%lld tokens=%lld exceeds the element limit", p.batch,
            p.numTokens);
    if (boundedProduct3(p.numHeads, p.numTokens, p.pooledLen, kMaxElements) < 0)
        return fail(kStatusLimitExceeded, "pool_bias too large: N=%lld P=%lld exceeds the element limit", p.numTokens,
            p.pooledLen);
    if (message != nullptr && capacity > 0)
    {
        message[0] = '\0';
    }
    return kStatusOk;
}

// Flat offsets (elements) into the contract layouts. All row-major.
TNX_AA_HD int64_t queryOffset(Problem const& p, int64_t b, int64_t n, int32_t h)
{
    return (b * p.numTokens + n) * p.channels + static_cast<int64_t>(h) * p.headDim;
}
TNX_AA_HD int64_t keyOffset(Problem const& p, int64_t b, int64_t n, int32_t h) // value = key + C
{
    return (b * p.numTokens + n) * 2 * p.channels + static_cast<int64_t>(h) * p.headDim;
}
TNX_AA_HD int64_t pooledKeyOffset(Problem const& p, int64_t b, int64_t q, int32_t h) // value = key + C
{
    return (b * p.pooledLen + q) * 2 * p.channels + static_cast<int64_t>(h) * p.headDim;
}
TNX_AA_HD int64_t poolBiasOffset(Problem const& p, int32_t h, int64_t n, int64_t q)
{
    return (static_cast<int64_t>(h) * p.numTokens + n) * p.pooledLen + q;
}

// ---------------------------------------------------------------------------------------------
// Per-query arithmetic.
// ---------------------------------------------------------------------------------------------

//! Registers of one query (b, n, h). MaxD is a compile-time bound on head_dim, so that all
//! arrays are indexed with constants after unrolling (kept in registers on the GPU).
//! Two arrays only: q (q_scaled during the softmax, q_norm again in finishQuery) and acc.
template <int MaxD>
struct QueryState
{
    float q[MaxD];   // q_scaled while scoring; q_norm while adding the learnable-token term
    float acc[MaxD]; // online-softmax numerator sum exp(s - m) * v, then the output row
    float m;         // running maximum score
    float s;         // running sum of exp(s - m)
};

//! dst = src / max(||src||, eps), d elements, fp32 result.
template <int MaxD, typename T>
TNX_AA_HD void loadNormalized(float (&dst)[MaxD], T const* src, int32_t d)
{
    float sq = 0.f;
    TNX_AA_UNROLL
    for (int c = 0; c < MaxD; ++c)
    {
        float const x = c < d ? ld(src, c) : 0.f; // entries past d are zero and never used
        dst[c] = x;
        sq += x * x;
    }
    float const denom = fmaxf(sqrtf(sq), kL2Eps);
    TNX_AA_UNROLL
    for (int c = 0; c < MaxD; ++c)
    {
        dst[c] = dst[c] / denom;
    }
}

//! Online softmax step: adds a score with its value row (d elements) to (m, s, acc).
template <int MaxD, typename V>
TNX_AA_HD void softmaxAccumulate(QueryState<MaxD>& st, float score, V const* value, int32_t d)
{
    if (score == -INFINITY) // probability 0 (a -inf bias); skipping keeps exp() away from -inf - -inf
    {
        return;
    }
    float const mNew = score > st.m ? score : st.m;
    float const c = expf(st.m - mNew); // rescales the old terms; 0 on the first call (m = -inf)
    float const e = expf(score - mNew);
    st.s = st.s * c + e;
    TNX_AA_UNROLL
    for (int k = 0; k < MaxD; ++k)
    {
        if (k < d)
        {
            st.acc[k] = st.acc[k] * c + e * ld(value, k);
        }
    }
    st.m = mNew;
}

//! Row and column of query n, and the clipped window rows/cols [y0, y1] x [x0, x1] in the image.
struct Window
{
    int32_t i, j, y0, y1, x0, x1;
};

TNX_AA_HD Window queryWindow(Problem const& p, int64_t n)
{
    Window win;
    int32_t const r = p.windowSize / 2;
    win.i = static_cast<int32_t>(n / p.width);
    win.j = static_cast<int32_t>(n - static_cast<int64_t>(win.i) * p.width);
    win.y0 = win.i - r < 0 ? 0 : win.i - r;
    win.y1 = win.i + r > p.height - 1 ? p.height - 1 : win.i + r;
    win.x0 = win.j - r < 0 ? 0 : win.j - r;
    win.x1 = win.j + r > p.width - 1 ? p.width - 1 : win.j + r;
    return win;
}

//! Starts one query: l2-normalises and scales q, and feeds the scores of the in-image window
//! slots to the online softmax (out-of-image slots are never visited: probability 0, no value).
//! Reads query[b,n,h] once and k[nbr], v[nbr] once per in-image slot.
template <int MaxD, typename T>
TNX_AA_HD void beginQuery(QueryState<MaxD>& st, Problem const& p, Inputs<T> const& in, int64_t b, int64_t n, int32_t h)
{
    int32_t const d = p.headDim;
    int32_t const r = p.windowSize / 2;
    Window const win = queryWindow(p, n);

    // q_scaled = (q_norm + query_embedding[h]) * temperature_scale[h] * ln(valid + P).
    loadNormalized<MaxD>(st.q, in.query + queryOffset(p, b, n, h), d);
    int32_t const valid = (win.y1 - win.y0 + 1) * (win.x1 - win.x0 + 1);
    float const seqScale = logf(static_cast<float>(valid + p.pooledLen));
    float const temp = ld(in.temperatureScale, h);
    T const* qe = in.queryEmbedding + static_cast<int64_t>(h) * d;
    TNX_AA_UNROLL
    for (int c = 0; c < MaxD; ++c)
    {
        st.acc[c] = 0.f;
        if (c < d)
        {
            st.q[c] = (st.q[c] + ld(qe, c)) * temp * seqScale;
        }
    }
    st.m = -INFINITY;
    st.s = 0.f;

    // s_l = q_scaled . k / max(||k||, eps) + local_bias[h, l], slot l = a*w + b.
    for (int32_t y = win.y0; y <= win.y1; ++y)
    {
        for (int32_t x = win.x0; x <= win.x1; ++x)
        {
            int32_t const l = (y - win.i + r) * p.windowSize + (x - win.j + r);
            T const* k = in.keyValue + keyOffset(p, b, static_cast<int64_t>(y) * p.width + x, h);
            float dot = 0.f;
            float sq = 0.f;
            TNX_AA_UNROLL
            for (int c = 0; c < MaxD; ++c)
            {
                if (c < d)
                {
                    float const kc = ld(k, c);
                    dot += st.q[c] * kc;
                    sq += kc * kc;
                }
            }
            float const score
                = dot / fmaxf(sqrtf(sq), kL2Eps) + ld(in.localBias, static_cast<int64_t>(h) * p.localLen + l);
            softmaxAccumulate(st, score, k + p.channels, d);
        }
    }
}

//! Writes the normalised pooled key and the pooled value of one pooled row (b, q, h) as fp32
//! rows of d elements. Used to stage pooled rows (shared memory on the GPU, a buffer on the CPU).
template <int MaxD, typename T>
TNX_AA_HD void stagePooledRow(float* keyDst, float* valueDst, Problem const& p, T const* pooledKeyValue, int64_t b,
    int64_t q, int32_t h)
{
    int32_t const d = p.headDim;
    T const* k = pooledKeyValue + pooledKeyOffset(p, b, q, h);
    float sq = 0.f;
    TNX_AA_UNROLL
    for (int c = 0; c < MaxD; ++c)
    {
        if (c < d)
        {
            float const x = ld(k, c);
            sq += x * x;
        }
    }
    float const denom = fmaxf(sqrtf(sq), kL2Eps);
    TNX_AA_UNROLL
    for (int c = 0; c < MaxD; ++c)
    {
        if (c < d)
        {
            keyDst[c] = ld(k, c) / denom;
            valueDst[c] = ld(k + p.channels, c);
        }
    }
}

//! Feeds `count` staged pooled rows q0 .. q0+count-1 (fp32, row stride d) to the online softmax.
//! `poolBiasRow` points at pool_bias[h, n, 0].
template <int MaxD, typename T>
TNX_AA_HD void accumulatePooled(QueryState<MaxD>& st, float const* keys, float const* values, int64_t q0,
    int64_t count, T const* poolBiasRow, int32_t d)
{
    for (int64_t t = 0; t < count; ++t)
    {
        float const* k = keys + t * d;
        float dot = 0.f;
        TNX_AA_UNROLL
        for (int c = 0; c < MaxD; ++c)
        {
            if (c < d)
            {
                dot += st.q[c] * k[c];
            }
        }
        float const score = dot + ld(poolBiasRow, q0 + t);
        softmaxAccumulate(st, score, values + t * d, d);
    }
}

//! Ends one query: normalises the softmax numerator, adds the learnable-token term of every
//! in-image slot, (qn . learnable_tokens[h,:,l] + learnable_bias[h,l]) * v[nbr], and writes
//! out[b, n, h*d : (h+1)*d]. Re-reads query[b,n,h] and v[nbr] (second read, cache-resident).
template <int MaxD, typename T>
TNX_AA_HD void finishQuery(
    QueryState<MaxD>& st, Problem const& p, Inputs<T> const& in, T* out, int64_t b, int64_t n, int32_t h)
{
    int32_t const d = p.headDim;
    int32_t const r = p.windowSize / 2;
    Window const win = queryWindow(p, n);
    float const inv = 1.f / st.s; // s >= 1: the running maximum contributes exp(0)
    TNX_AA_UNROLL
    for (int c = 0; c < MaxD; ++c)
    {
        if (c < d)
        {
            st.acc[c] = st.acc[c] * inv;
        }
    }
    loadNormalized<MaxD>(st.q, in.query + queryOffset(p, b, n, h), d); // q_norm again
    T const* lt = in.learnableTokens + static_cast<int64_t>(h) * d * p.localLen;
    for (int32_t y = win.y0; y <= win.y1; ++y)
    {
        for (int32_t x = win.x0; x <= win.x1; ++x)
        {
            int32_t const l = (y - win.i + r) * p.windowSize + (x - win.j + r);
            float weight = 0.f;
            TNX_AA_UNROLL
            for (int c = 0; c < MaxD; ++c)
            {
                if (c < d)
                {
                    weight += st.q[c] * ld(lt, static_cast<int64_t>(c) * p.localLen + l);
                }
            }
            weight += ld(in.learnableBias, static_cast<int64_t>(h) * p.localLen + l);
            T const* v = in.keyValue + keyOffset(p, b, static_cast<int64_t>(y) * p.width + x, h) + p.channels;
            TNX_AA_UNROLL
            for (int c = 0; c < MaxD; ++c)
            {
                if (c < d)
                {
                    st.acc[c] += weight * ld(v, c);
                }
            }
        }
    }
    T* o = out + queryOffset(p, b, n, h);
    TNX_AA_UNROLL
    for (int c = 0; c < MaxD; ++c)
    {
        if (c < d)
        {
            Element<T>::store(o, c, st.acc[c]);
        }
    }
}

//! Smallest compile-time head-dim bound used for a runtime head_dim (0 if unsupported).
//! Buckets: 16, 24 (TransNeXt), 32, 48, 64 = kMaxHeadDim.
inline int32_t maxHeadDimBucket(int32_t headDim)
{
    if (headDim < 1 || headDim > kMaxHeadDim)
        return 0;
    if (headDim <= 16)
        return 16;
    if (headDim <= 24)
        return 24;
    if (headDim <= 32)
        return 32;
    if (headDim <= 48)
        return 48;
    return 64;
}

} // namespace aa
} // namespace transnext

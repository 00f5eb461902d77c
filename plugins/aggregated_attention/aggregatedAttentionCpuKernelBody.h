// Body of the fast CPU kernel (see aggregatedAttentionCpu.h). Included by
// aggregatedAttentionCpuPortable.cpp and aggregatedAttentionCpuAvx2.cpp, each time inside a
// namespace of its own, with
//   TNX_CPU_TARGET  the function attribute of that instruction set (empty for the portable build)
//   TNX_CPU_AVX2    1 for the AVX2 + FMA + F16C build (intrinsics), 0 for the portable one (GCC/Clang
//                   generic vectors, or plain arrays with other compilers).
// Every function here carries TNX_CPU_TARGET, so that the AVX2 build never leaks into code that
// runs on a CPU without AVX2 (no lambdas here: they would not inherit the attribute). No include
// guard, on purpose; it is not a header to include anywhere else.

#define TNX_CPU_FN TNX_CPU_TARGET TNX_CPU_ALWAYS_INLINE inline

#include "aggregatedAttentionCpuVec.h"

// ---------------------------------------------------------------------------------------------
// Rows of the storage type.
// ---------------------------------------------------------------------------------------------

//! Loads min(count, 8) elements as fp32; the lanes past count get `fill`.
TNX_CPU_FN Vec loadRow(float const* p, int32_t count, float fill)
{
    if (count >= kLanes)
    {
        return vload(p);
    }
    float tmp[kLanes];
    for (int k = 0; k < kLanes; ++k)
        tmp[k] = k < count ? p[k] : fill;
    return vload(tmp);
}

TNX_CPU_FN Vec loadRow(SoftHalf const* p, int32_t count, float fill)
{
    if (count >= kLanes)
    {
        return vloadHalf8(p);
    }
    float tmp[kLanes];
    for (int k = 0; k < kLanes; ++k)
        tmp[k] = k < count ? halfBitsToFloat(p[k].bits) : fill;
    return vload(tmp);
}

//! Stores the first min(count, 8) lanes.
TNX_CPU_FN void storeRow(float* p, int32_t count, Vec a)
{
    if (count >= kLanes)
    {
        vstore(p, a);
        return;
    }
    float tmp[kLanes];
    vstore(tmp, a);
    for (int k = 0; k < count; ++k)
        p[k] = tmp[k];
}

TNX_CPU_FN void storeRow(SoftHalf* p, int32_t count, Vec a)
{
    if (count >= kLanes)
    {
        vstoreHalf8(p, a);
        return;
    }
    float tmp[kLanes];
    vstore(tmp, a);
    for (int k = 0; k < count; ++k)
        p[k].bits = floatToHalfBits(tmp[k]);
}

//! Loads a row of d elements into NV vectors (zero past d) and returns its l2 norm's divisor
//! max(||x||, eps).
template <int NV, typename T>
TNX_CPU_FN float loadRowAndNorm(Vec (&x)[NV], T const* src, int32_t d)
{
    Vec sq = vzero();
    for (int v = 0; v < NV; ++v)
    {
        x[v] = loadRow(src + v * kLanes, d - v * kLanes, 0.f);
        sq = vfma(x[v], x[v], sq);
    }
    float const norm = sqrtf(vhsum(sq));
    return norm > kL2Eps ? norm : kL2Eps;
}

// ---------------------------------------------------------------------------------------------
// Staging.
// ---------------------------------------------------------------------------------------------

template <typename T>
TNX_CPU_FN T* grow(std::vector<T>& buffer, size_t size)
{
    if (buffer.size() < size)
    {
        buffer.resize(size);
    }
    return buffer.data();
}

//! Pooled rows of (b, h) and the head's constants, unless this thread staged them already.
template <int NV, typename T>
TNX_CPU_TARGET void stageHead(Plan const& pl, Inputs<T> const& in, int64_t b, int32_t h, Workspace& ws)
{
    if (ws.stagedCall == pl.callId && ws.stagedBatch == b && ws.stagedHead == h)
    {
        return;
    }
    ws.stagedCall = 0; // invalid until complete (an allocation below may throw)
    Problem const& p = pl.p;
    int32_t const d = pl.d;
    int32_t const dp = pl.dp;
    int32_t const L = p.localLen;
    int64_t const P = p.pooledLen;
    int64_t const pp = pl.pp;
    float* keysT = grow(ws.pooledKeysT, static_cast<size_t>(d * pp));
    float* values = grow(ws.pooledValues, static_cast<size_t>(pp * dp));
    for (int64_t q = 0; q < pp; ++q)
    {
        float* valueRow = values + q * dp;
        if (q >= P)
        {
            for (int32_t c = 0; c < d; ++c)
                keysT[c * pp + q] = 0.f;
            for (int v = 0; v < NV; ++v)
                vstore(valueRow + v * kLanes, vzero());
            continue;
        }
        T const* row = in.pooledKeyValue + pooledKeyOffset(p, b, q, h);
        Vec k[NV];
        Vec const denom = vset(loadRowAndNorm<NV>(k, row, d));
        float kn[NV * kLanes];
        for (int v = 0; v < NV; ++v)
        {
            vstore(kn + v * kLanes, vdiv(k[v], denom));
            vstore(valueRow + v * kLanes, loadRow(row + p.channels + v * kLanes, d - v * kLanes, 0.f));
        }
        for (int32_t c = 0; c < d; ++c)
            keysT[c * pp + q] = kn[c];
    }

    int32_t const lp = pl.lp;
    float* qe = grow(ws.queryEmbedding, static_cast<size_t>(dp));
    float* localBias = grow(ws.localBias, static_cast<size_t>(lp));
    float* lt = grow(ws.learnableTokens, static_cast<size_t>(d * lp));
    float* lb = grow(ws.learnableBias, static_cast<size_t>(lp));
    for (int32_t c = 0; c < dp; ++c)
        qe[c] = c < d ? ld(in.queryEmbedding, static_cast<int64_t>(h) * d + c) : 0.f;
    for (int32_t l = 0; l < lp; ++l)
    {
        bool const inside = l < L;
        localBias[l] = inside ? ld(in.localBias, static_cast<int64_t>(h) * L + l) : -INFINITY;
        lb[l] = inside ? ld(in.learnableBias, static_cast<int64_t>(h) * L + l) : 0.f;
        for (int32_t c = 0; c < d; ++c)
            lt[c * lp + l] = inside ? ld(in.learnableTokens, (static_cast<int64_t>(h) * d + c) * L + l) : 0.f;
    }
    ws.temperature = ld(in.temperatureScale, h);
    ws.stagedCall = pl.callId;
    ws.stagedBatch = b;
    ws.stagedHead = h;
}

//! Normalised keys and values of rows [i0 - r, i1 + r) x columns [j0 - r, j1 + r), zero outside
//! the image; row (y, x) at ((y - i0 + r) * twp + (x - j0 + r)) * dp.
template <int NV, typename T>
TNX_CPU_TARGET void stageBand(Plan const& pl, Inputs<T> const& in, int64_t b, int32_t h, int32_t i0, int32_t i1,
    int32_t j0, int32_t j1, Workspace& ws)
{
    Problem const& p = pl.p;
    int32_t const r = pl.r;
    int32_t const dp = pl.dp;
    int32_t const twp = j1 - j0 + 2 * r;
    int32_t const rows = i1 - i0 + 2 * r;
    size_t const size = static_cast<size_t>(rows) * twp * dp;
    float* keys = grow(ws.bandKeys, size);
    float* values = grow(ws.bandValues, size);
    for (int32_t yy = 0; yy < rows; ++yy)
    {
        int32_t const y = i0 - r + yy;
        for (int32_t xx = 0; xx < twp; ++xx)
        {
            int32_t const x = j0 - r + xx;
            float* keyDst = keys + (static_cast<int64_t>(yy) * twp + xx) * dp;
            float* valueDst = values + (static_cast<int64_t>(yy) * twp + xx) * dp;
            if (y < 0 || y >= p.height || x < 0 || x >= p.width)
            {
                for (int v = 0; v < NV; ++v)
                {
                    vstore(keyDst + v * kLanes, vzero());
                    vstore(valueDst + v * kLanes, vzero());
                }
                continue;
            }
            T const* row = in.keyValue + keyOffset(p, b, static_cast<int64_t>(y) * p.width + x, h);
            Vec k[NV];
            Vec const denom = vset(loadRowAndNorm<NV>(k, row, pl.d));
            for (int v = 0; v < NV; ++v)
            {
                vstore(keyDst + v * kLanes, vdiv(k[v], denom));
                vstore(valueDst + v * kLanes, loadRow(row + p.channels + v * kLanes, pl.d - v * kLanes, 0.f));
            }
        }
    }
    int64_t* offsets = ws.slotOffsets.data();
    for (int32_t l = 0; l < pl.lp; ++l)
    {
        int32_t const a = l < p.localLen ? l / p.windowSize : 0;
        int32_t const c = l < p.localLen ? l % p.windowSize : 0;
        offsets[l] = (static_cast<int64_t>(a) * twp + c) * dp;
    }
}

// ---------------------------------------------------------------------------------------------
// Matrix-product blocks.
// ---------------------------------------------------------------------------------------------

//! scores[qi][8k + lane] = sum_c qs[qi][c] * keysT[c][8k + lane] for QN queries and NB vectors of
//! pooled rows (register-blocked; the sum over c runs in the same order for every block shape).
template <int QN, int NB>
TNX_CPU_TARGET void scoreBlock(float const* qs, int32_t dp, float const* keysT, int64_t pp, int32_t d, float* scores,
    int64_t ldScores)
{
    Vec acc[QN][NB];
    for (int qi = 0; qi < QN; ++qi)
        for (int k = 0; k < NB; ++k)
            acc[qi][k] = vzero();
    for (int32_t c = 0; c < d; ++c)
    {
        Vec a[QN];
        for (int qi = 0; qi < QN; ++qi)
            a[qi] = vset(qs[qi * dp + c]);
        float const* keyRow = keysT + c * pp;
        for (int k = 0; k < NB; ++k)
        {
            Vec const key = vload(keyRow + k * kLanes);
            for (int qi = 0; qi < QN; ++qi)
                acc[qi][k] = vfma(a[qi], key, acc[qi][k]);
        }
    }
    for (int qi = 0; qi < QN; ++qi)
        for (int k = 0; k < NB; ++k)
            vstore(scores + qi * ldScores + k * kLanes, acc[qi][k]);
}

//! scoreBlock<QN, nb> for a run-time nb in [1, NB].
template <int QN, int NB>
TNX_CPU_TARGET void scoreBlockUpTo(int32_t nb, float const* qs, int32_t dp, float const* keysT, int64_t pp, int32_t d,
    float* scores, int64_t ldScores)
{
    if constexpr (NB > 1)
    {
        if (nb < NB)
        {
            scoreBlockUpTo<QN, NB - 1>(nb, qs, dp, keysT, pp, d, scores, ldScores);
            return;
        }
    }
    scoreBlock<QN, NB>(qs, dp, keysT, pp, d, scores, ldScores);
}

//! out[t][0 .. 8 * vectors) = sum_{c < d} a[t][c] * bT[c][...] for t < rows (row strides lda, ldb,
//! ldo): QN rows at a time, and at most MaxNB vectors of bT per pass, so that the QN x MaxNB
//! accumulators and the operands fit the 16 vector registers.
template <int QN, int MaxNB>
TNX_CPU_TARGET void blockProduct(int32_t rows, float const* a, int32_t lda, float const* bT, int64_t ldb, int32_t d,
    int32_t vectors, float* out, int64_t ldo)
{
    int32_t const pieces = (vectors + MaxNB - 1) / MaxNB;
    int32_t v0 = 0;
    for (int32_t piece = 0; piece < pieces; ++piece)
    {
        int32_t const nb = vectors / pieces + (piece < vectors % pieces ? 1 : 0);
        int32_t t = 0;
        for (; t + QN <= rows; t += QN)
            scoreBlockUpTo<QN, MaxNB>(nb, a + t * lda, lda, bT + v0 * kLanes, ldb, d, out + t * ldo + v0 * kLanes, ldo);
        for (; t < rows; ++t)
            scoreBlockUpTo<1, MaxNB>(nb, a + t * lda, lda, bT + v0 * kLanes, ldb, d, out + t * ldo + v0 * kLanes, ldo);
        v0 += nb;
    }
}

//! acc[qi] += sum_{q < count} weights[qi][q] * values[q] for QN queries (rows of NV vectors).
template <int QN, int NV>
TNX_CPU_TARGET void weightedSumBlock(float const* weights, int64_t ldWeights, float const* values, int32_t dp,
    int32_t count, float* acc)
{
    Vec a[QN][NV];
    for (int qi = 0; qi < QN; ++qi)
        for (int v = 0; v < NV; ++v)
            a[qi][v] = vload(acc + qi * dp + v * kLanes);
    for (int32_t q = 0; q < count; ++q)
    {
        Vec row[NV];
        for (int v = 0; v < NV; ++v)
            row[v] = vload(values + static_cast<int64_t>(q) * dp + v * kLanes);
        for (int qi = 0; qi < QN; ++qi)
        {
            Vec const w = vset(weights[qi * ldWeights + q]);
            for (int v = 0; v < NV; ++v)
                a[qi][v] = vfma(w, row[v], a[qi][v]);
        }
    }
    for (int qi = 0; qi < QN; ++qi)
        for (int v = 0; v < NV; ++v)
            vstore(acc + qi * dp + v * kLanes, a[qi][v]);
}

//! Queries per weighted-sum block: as many as keep the accumulators in 16 vector registers.
template <int NV>
struct SumRows
{
    static constexpr int value = NV <= 3 ? 4 : (NV == 4 ? 3 : (NV <= 6 ? 2 : 1));
};

// ---------------------------------------------------------------------------------------------
// One block of queries: row i, columns [jc, jc + nq) of a unit whose band starts at (i0, j0).
// ---------------------------------------------------------------------------------------------

template <int NV, typename T>
TNX_CPU_TARGET void runBlock(Plan const& pl, Inputs<T> const& in, T* out, Workspace& ws, int64_t b, int32_t h,
    int32_t i, int32_t jc, int32_t nq, int32_t i0, int32_t j0, int32_t twp)
{
    Problem const& p = pl.p;
    int32_t const d = pl.d;
    int32_t const dp = pl.dp;
    int32_t const r = pl.r;
    int32_t const w = p.windowSize;
    int32_t const L = p.localLen;
    int32_t const lp = pl.lp;
    int64_t const P = p.pooledLen;
    float* qn = ws.qn.data();
    float* qs = ws.qs.data();
    float* local = ws.local.data();
    float* learn = ws.learn.data();
    float* scores = ws.scores.data();
    float* acc = ws.acc.data();
    float const* bandKeys = ws.bandKeys.data();
    float const* bandValues = ws.bandValues.data();
    int64_t const* offsets = ws.slotOffsets.data();
    int32_t const rowsInside = (i + r < p.height ? i + r : p.height - 1) - (i - r > 0 ? i - r : 0) + 1;

    // Queries: q_norm, and q_scaled = (q_norm + query_embedding) * temperature * ln(valid + P).
    for (int32_t t = 0; t < nq; ++t)
    {
        int32_t const j = jc + t;
        Vec q[NV];
        Vec const denom
            = vset(loadRowAndNorm<NV>(q, in.query + queryOffset(p, b, static_cast<int64_t>(i) * p.width + j, h), d));
        int32_t const colsInside = (j + r < p.width ? j + r : p.width - 1) - (j - r > 0 ? j - r : 0) + 1;
        Vec const temperature = vset(ws.temperature);
        Vec const seqScale = vset(pl.logTable[rowsInside * colsInside]);
        for (int v = 0; v < NV; ++v)
        {
            Vec const n = vdiv(q[v], denom);
            vstore(qn + t * dp + v * kLanes, n);
            Vec const s = vmul(vmul(vadd(n, vload(ws.queryEmbedding.data() + v * kLanes)), temperature), seqScale);
            vstore(qs + t * dp + v * kLanes, s);
        }
        for (int32_t c = 0; c < dp; ++c)
            acc[t * dp + c] = 0.f;
        ws.rowSum[t] = 0.f;
    }

    // The pool_bias rows of this block (contiguous) are the only input streamed from memory once
    // (N*P per head): ask for them now, they are read after the window work and the score product
    // (at most 64 KiB ahead, for large P).
    {
        T const* bias = in.poolBias + poolBiasOffset(p, h, static_cast<int64_t>(i) * p.width + jc, 0);
        int64_t const rowsBytes = static_cast<int64_t>(nq) * P * static_cast<int64_t>(sizeof(T));
        int64_t const bytes = rowsBytes < (int64_t{64} << 10) ? rowsBytes : (int64_t{64} << 10);
        for (int64_t offset = 0; offset < bytes; offset += 64)
            TNX_CPU_PREFETCH(reinterpret_cast<char const*>(bias) + offset);
    }

    // Window scores (one horizontal sum per 8 slots).
    for (int32_t t = 0; t < nq; ++t)
    {
        int32_t const j = jc + t;
        float const* keyBase = bandKeys + (static_cast<int64_t>(i - i0) * twp + (j - j0)) * dp;
        Vec q[NV];
        for (int v = 0; v < NV; ++v)
            q[v] = vload(qs + t * dp + v * kLanes);
        Vec rowMax = vset(-INFINITY);
        for (int32_t g = 0; g < lp; g += kLanes)
        {
            Vec dots[kLanes];
            for (int k = 0; k < kLanes; ++k)
            {
                dots[k] = vzero();
                if (g + k < L)
                {
                    float const* key = keyBase + offsets[g + k];
                    for (int v = 0; v < NV; ++v)
                        dots[k] = vfma(q[v], vload(key + v * kLanes), dots[k]);
                }
            }
            Vec const s = vadd(vhsum8(dots), vload(ws.localBias.data() + g));
            vstore(local + t * lp + g, s);
            rowMax = vmax(rowMax, s);
        }
        ws.rowMax[t] = vhmax(rowMax);
    }

    // Learnable-token term, learn[t][l] = q_norm[t] . learnable_tokens[h, :, l] + learnable_bias[h, l]
    // (a matrix product over the block), then the window's out-of-image slots: probability 0 and no
    // learnable term (their values are zero rows in the band).
    blockProduct<4, 3>(nq, qn, dp, ws.learnableTokens.data(), lp, d, lp / kLanes, learn, lp);
    for (int32_t t = 0; t < nq; ++t)
    {
        int32_t const j = jc + t;
        for (int32_t g = 0; g < lp; g += kLanes)
            vstore(learn + t * lp + g, vadd(vload(learn + t * lp + g), vload(ws.learnableBias.data() + g)));
        bool const inside = i - r >= 0 && i + r < p.height && j - r >= 0 && j + r < p.width;
        if (!inside)
        {
            Vec rowMax = vset(-INFINITY);
            for (int32_t l = 0; l < L; ++l)
            {
                int32_t const y = i + l / w - r;
                int32_t const x = j + l % w - r;
                if (y < 0 || y >= p.height || x < 0 || x >= p.width)
                {
                    local[t * lp + l] = -INFINITY;
                    learn[t * lp + l] = 0.f;
                }
            }
            for (int32_t g = 0; g < lp; g += kLanes)
                rowMax = vmax(rowMax, vload(local + t * lp + g));
            ws.rowMax[t] = vhmax(rowMax);
        }
    }

    // Pooled rows, tile by tile: scores (matrix product + pool_bias), softmax numerators, and the
    // weighted sum of the pooled values (matrix product).
    int64_t const ldScores = kPooledTile;
    for (int64_t p0 = 0; p0 < P; p0 += kPooledTile)
    {
        int32_t const count = static_cast<int32_t>(P - p0 < kPooledTile ? P - p0 : kPooledTile);
        int32_t const vectors = (count + kLanes - 1) / kLanes;
        blockProduct<2, 6>(nq, qs, dp, ws.pooledKeysT.data() + p0, pl.pp, d, vectors, scores, ldScores);
        for (int32_t t = 0; t < nq; ++t)
        {
            float* row = scores + t * ldScores;
            T const* bias = in.poolBias + poolBiasOffset(p, h, static_cast<int64_t>(i) * p.width + jc + t, p0);
            Vec mx = vset(-INFINITY);
            for (int32_t v = 0; v < vectors; ++v)
            {
                Vec const s = vadd(vload(row + v * kLanes), loadRow(bias + v * kLanes, count - v * kLanes, -INFINITY));
                vstore(row + v * kLanes, s);
                mx = vmax(mx, s);
            }
            float const tileMax = vhmax(mx);
            float m = ws.rowMax[t];
            if (tileMax > m)
            {
                if (p0 > 0) // earlier tiles were summed against the old maximum
                {
                    float const rescale = expf(m - tileMax);
                    ws.rowSum[t] *= rescale;
                    for (int32_t c = 0; c < dp; ++c)
                        acc[t * dp + c] *= rescale;
                }
                m = tileMax;
                ws.rowMax[t] = m;
            }
            Vec const mv = vset(m);
            Vec sum = vzero();
            for (int32_t v = 0; v < vectors; ++v)
            {
                Vec const e = vexp(vsub(vload(row + v * kLanes), mv));
                vstore(row + v * kLanes, e);
                sum = vadd(sum, e);
            }
            ws.rowSum[t] += vhsum(sum);
        }
        constexpr int QR = SumRows<NV>::value;
        float const* values = ws.pooledValues.data() + p0 * dp;
        int32_t t = 0;
        for (; t + QR <= nq; t += QR)
            weightedSumBlock<QR, NV>(scores + t * ldScores, ldScores, values, dp, count, acc + t * dp);
        for (; t < nq; ++t)
            weightedSumBlock<1, NV>(scores + t * ldScores, ldScores, values, dp, count, acc + t * dp);
    }

    // Window terms and the output: out = acc / sum + sum_l (p_l + learnable_l) * v_l.
    for (int32_t t = 0; t < nq; ++t)
    {
        int32_t const j = jc + t;
        Vec const mv = vset(ws.rowMax[t]);
        Vec sum = vzero();
        for (int32_t g = 0; g < lp; g += kLanes)
        {
            Vec const e = vexp(vsub(vload(local + t * lp + g), mv));
            vstore(local + t * lp + g, e);
            sum = vadd(sum, e);
        }
        float const inv = 1.f / (ws.rowSum[t] + vhsum(sum));
        Vec const invV = vset(inv);
        for (int32_t g = 0; g < lp; g += kLanes)
            vstore(learn + t * lp + g, vfma(vload(local + t * lp + g), invV, vload(learn + t * lp + g)));
        // Two sets of sums (even and odd slots) halve the chain of dependent multiply-adds.
        Vec o[NV];
        Vec o2[NV];
        for (int v = 0; v < NV; ++v)
        {
            o[v] = vmul(vload(acc + t * dp + v * kLanes), invV);
            o2[v] = vzero();
        }
        float const* valueBase = bandValues + (static_cast<int64_t>(i - i0) * twp + (j - j0)) * dp;
        float const* weights = learn + t * lp;
        int32_t l = 0;
        for (; l + 2 <= L; l += 2)
        {
            Vec const w0 = vset(weights[l]);
            Vec const w1 = vset(weights[l + 1]);
            float const* v0 = valueBase + offsets[l];
            float const* v1 = valueBase + offsets[l + 1];
            for (int v = 0; v < NV; ++v)
            {
                o[v] = vfma(w0, vload(v0 + v * kLanes), o[v]);
                o2[v] = vfma(w1, vload(v1 + v * kLanes), o2[v]);
            }
        }
        if (l < L)
        {
            Vec const w0 = vset(weights[l]);
            float const* v0 = valueBase + offsets[l];
            for (int v = 0; v < NV; ++v)
                o[v] = vfma(w0, vload(v0 + v * kLanes), o[v]);
        }
        for (int v = 0; v < NV; ++v)
            o[v] = vadd(o[v], o2[v]);
        T* dst = out + queryOffset(p, b, static_cast<int64_t>(i) * p.width + j, h);
        for (int v = 0; v < NV; ++v)
            storeRow(dst + v * kLanes, d - v * kLanes, o[v]);
    }
}

// ---------------------------------------------------------------------------------------------
// One unit: (batch, head, band of rows, tile of columns).
// ---------------------------------------------------------------------------------------------

template <int NV, typename T>
TNX_CPU_TARGET void runUnit(Plan const& pl, void const* rawInputs, void* rawOutput, int64_t unit, Workspace& ws)
{
    Inputs<T> const& in = *static_cast<Inputs<T> const*>(rawInputs);
    T* out = static_cast<T*>(rawOutput);
    Problem const& p = pl.p;
    int64_t const tile = unit % pl.colTiles;
    int64_t const band = (unit / pl.colTiles) % pl.rowBands;
    int64_t const bh = unit / (pl.colTiles * pl.rowBands);
    int64_t const b = bh / p.numHeads;
    int32_t const h = static_cast<int32_t>(bh % p.numHeads);
    int32_t const i0 = static_cast<int32_t>(band * pl.bandRows);
    int32_t const i1 = i0 + pl.bandRows < p.height ? i0 + pl.bandRows : p.height;
    int32_t const j0 = static_cast<int32_t>(tile * pl.tileCols);
    int32_t const j1 = j0 + pl.tileCols < p.width ? j0 + pl.tileCols : p.width;

    grow(ws.qn, static_cast<size_t>(kChunk) * pl.dp);
    grow(ws.qs, static_cast<size_t>(kChunk) * pl.dp);
    grow(ws.acc, static_cast<size_t>(kChunk) * pl.dp);
    grow(ws.local, static_cast<size_t>(kChunk) * pl.lp);
    grow(ws.learn, static_cast<size_t>(kChunk) * pl.lp);
    grow(ws.scores, static_cast<size_t>(kChunk) * kPooledTile);
    grow(ws.slotOffsets, static_cast<size_t>(pl.lp));

    stageHead<NV>(pl, in, b, h, ws);
    stageBand<NV>(pl, in, b, h, i0, i1, j0, j1, ws);
    int32_t const twp = j1 - j0 + 2 * pl.r;
    for (int32_t i = i0; i < i1; ++i)
    {
        for (int32_t jc = j0; jc < j1; jc += kChunk)
        {
            int32_t const nq = j1 - jc < kChunk ? j1 - jc : kChunk;
            runBlock<NV>(pl, in, out, ws, b, h, i, jc, nq, i0, j0, twp);
        }
    }
}

template <typename T>
TNX_CPU_TARGET UnitFunction unitFunction(int32_t nv)
{
    switch (nv)
    {
    case 1: return &runUnit<1, T>;
    case 2: return &runUnit<2, T>;
    case 3: return &runUnit<3, T>;
    case 4: return &runUnit<4, T>;
    case 6: return &runUnit<6, T>;
    case 8: return &runUnit<8, T>;
    default: return nullptr;
    }
}

#undef TNX_CPU_FN

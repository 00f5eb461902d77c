// Eight-lane vectors of the fast CPU kernel: AVX2 + FMA + F16C intrinsics (TNX_CPU_AVX2 1), GCC and
// Clang generic 4-lane vectors, or plain arrays with other compilers (TNX_CPU_AVX2 0). Included by
// aggregatedAttentionCpuKernelBody.h, inside the namespace of one instruction-set build, with
// TNX_CPU_FN the attributes of its functions. No include guard, on purpose; it is not a header to
// include anywhere else. Every build does the same operations in the same order, lane by lane
// (the AVX2 build fuses the multiply-adds).

// ---------------------------------------------------------------------------------------------
// Eight-lane vectors.
// ---------------------------------------------------------------------------------------------
#if TNX_CPU_AVX2

struct Vec
{
    __m256 v;
};

TNX_CPU_FN Vec vzero()
{
    return {_mm256_setzero_ps()};
}
TNX_CPU_FN Vec vset(float x)
{
    return {_mm256_set1_ps(x)};
}
TNX_CPU_FN Vec vload(float const* p)
{
    return {_mm256_loadu_ps(p)};
}
TNX_CPU_FN void vstore(float* p, Vec a)
{
    _mm256_storeu_ps(p, a.v);
}
TNX_CPU_FN Vec vadd(Vec a, Vec b)
{
    return {_mm256_add_ps(a.v, b.v)};
}
TNX_CPU_FN Vec vsub(Vec a, Vec b)
{
    return {_mm256_sub_ps(a.v, b.v)};
}
TNX_CPU_FN Vec vmul(Vec a, Vec b)
{
    return {_mm256_mul_ps(a.v, b.v)};
}
TNX_CPU_FN Vec vdiv(Vec a, Vec b)
{
    return {_mm256_div_ps(a.v, b.v)};
}
//! max(a, b); NaN in b propagates.
TNX_CPU_FN Vec vmax(Vec a, Vec b)
{
    return {_mm256_max_ps(a.v, b.v)};
}
//! a * b + c
TNX_CPU_FN Vec vfma(Vec a, Vec b, Vec c)
{
    return {_mm256_fmadd_ps(a.v, b.v, c.v)};
}
TNX_CPU_FN float vhsum(Vec a)
{
    __m128 x = _mm_add_ps(_mm256_castps256_ps128(a.v), _mm256_extractf128_ps(a.v, 1));
    x = _mm_add_ps(x, _mm_movehl_ps(x, x));
    x = _mm_add_ss(x, _mm_shuffle_ps(x, x, 1));
    return _mm_cvtss_f32(x);
}
TNX_CPU_FN float vhmax(Vec a)
{
    __m128 x = _mm_max_ps(_mm256_castps256_ps128(a.v), _mm256_extractf128_ps(a.v, 1));
    x = _mm_max_ps(x, _mm_movehl_ps(x, x));
    x = _mm_max_ss(x, _mm_shuffle_ps(x, x, 1));
    return _mm_cvtss_f32(x);
}
//! Lane k of the result is the sum of the lanes of a[k].
TNX_CPU_FN Vec vhsum8(Vec const* a)
{
    __m256 const t0 = _mm256_hadd_ps(a[0].v, a[1].v);
    __m256 const t1 = _mm256_hadd_ps(a[2].v, a[3].v);
    __m256 const t2 = _mm256_hadd_ps(a[4].v, a[5].v);
    __m256 const t3 = _mm256_hadd_ps(a[6].v, a[7].v);
    __m256 const u0 = _mm256_hadd_ps(t0, t1); // sums of 0..3: low halves | high halves
    __m256 const u1 = _mm256_hadd_ps(t2, t3); // sums of 4..7
    return {_mm256_add_ps(_mm256_permute2f128_ps(u0, u1, 0x20), _mm256_permute2f128_ps(u0, u1, 0x31))};
}
//! exp(x) to about 2 ulp (Cephes' expf polynomial); exactly 0 below -87.33 (so exp(-inf) = 0),
//! NaN stays NaN.
TNX_CPU_FN Vec vexp(Vec x)
{
    __m256 const tiny = _mm256_cmp_ps(x.v, _mm256_set1_ps(-87.33654f), _CMP_LT_OQ);
    __m256 t = _mm256_min_ps(_mm256_set1_ps(88.3762626647949f), x.v);
    t = _mm256_max_ps(_mm256_set1_ps(-87.33654f), t);
    __m256 const n = _mm256_round_ps(_mm256_mul_ps(t, _mm256_set1_ps(1.44269504088896341f)),
        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 g = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), t);
    g = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), g);
    __m256 y = _mm256_set1_ps(1.9875691500e-4f);
    y = _mm256_fmadd_ps(y, g, _mm256_set1_ps(1.3981999507e-3f));
    y = _mm256_fmadd_ps(y, g, _mm256_set1_ps(8.3334519073e-3f));
    y = _mm256_fmadd_ps(y, g, _mm256_set1_ps(4.1665795894e-2f));
    y = _mm256_fmadd_ps(y, g, _mm256_set1_ps(1.6666665459e-1f));
    y = _mm256_fmadd_ps(y, g, _mm256_set1_ps(5.0000001201e-1f));
    y = _mm256_fmadd_ps(y, _mm256_mul_ps(g, g), g);
    y = _mm256_add_ps(y, _mm256_set1_ps(1.f));
    __m256i const e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return {_mm256_andnot_ps(tiny, _mm256_mul_ps(y, _mm256_castsi256_ps(e)))};
}
TNX_CPU_FN Vec vloadHalf8(SoftHalf const* p)
{
    return {_mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<__m128i const*>(p)))};
}
TNX_CPU_FN void vstoreHalf8(SoftHalf* p, Vec a)
{
    // Round to nearest even, as floatToHalfBits().
    _mm_storeu_si128(reinterpret_cast<__m128i*>(p), _mm256_cvtps_ph(a.v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
}

#elif defined(__GNUC__) // portable, GCC and Clang: generic 4-lane vectors (SSE2 on x86-64, NEON on aarch64)

typedef float TnxFloat4 __attribute__((vector_size(16)));
typedef int32_t TnxInt4 __attribute__((vector_size(16)));

//! Lanes 0-3 and 4-7.
struct Vec
{
    TnxFloat4 lo, hi;
};

//! mask ? a : b, lane by lane (mask lanes are all ones or all zeros, as comparisons give).
TNX_CPU_FN TnxFloat4 vselect(TnxInt4 mask, TnxFloat4 a, TnxFloat4 b)
{
    return (TnxFloat4) ((mask & (TnxInt4) a) | (~mask & (TnxInt4) b));
}
TNX_CPU_FN Vec vzero()
{
    return {TnxFloat4{}, TnxFloat4{}};
}
TNX_CPU_FN Vec vset(float x)
{
    TnxFloat4 const v = TnxFloat4{} + x;
    return {v, v};
}
TNX_CPU_FN Vec vload(float const* p)
{
    Vec r;
    memcpy(&r.lo, p, sizeof(r.lo));
    memcpy(&r.hi, p + 4, sizeof(r.hi));
    return r;
}
TNX_CPU_FN void vstore(float* p, Vec a)
{
    memcpy(p, &a.lo, sizeof(a.lo));
    memcpy(p + 4, &a.hi, sizeof(a.hi));
}
TNX_CPU_FN Vec vadd(Vec a, Vec b)
{
    return {a.lo + b.lo, a.hi + b.hi};
}
TNX_CPU_FN Vec vsub(Vec a, Vec b)
{
    return {a.lo - b.lo, a.hi - b.hi};
}
TNX_CPU_FN Vec vmul(Vec a, Vec b)
{
    return {a.lo * b.lo, a.hi * b.hi};
}
TNX_CPU_FN Vec vdiv(Vec a, Vec b)
{
    return {a.lo / b.lo, a.hi / b.hi};
}
//! max(a, b); NaN in b propagates.
TNX_CPU_FN Vec vmax(Vec a, Vec b)
{
    return {vselect(a.lo > b.lo, a.lo, b.lo), vselect(a.hi > b.hi, a.hi, b.hi)};
}
//! a * b + c
TNX_CPU_FN Vec vfma(Vec a, Vec b, Vec c)
{
    return {a.lo * b.lo + c.lo, a.hi * b.hi + c.hi};
}
//! Same order as the AVX2 build: (x0 + x4) + (x2 + x6) + ((x1 + x5) + (x3 + x7)).
TNX_CPU_FN float vhsum(Vec a)
{
    TnxFloat4 const s = a.lo + a.hi;
    return (s[0] + s[2]) + (s[1] + s[3]);
}
TNX_CPU_FN float vhmax(Vec a)
{
    TnxFloat4 const m = vselect(a.lo > a.hi, a.lo, a.hi);
    float const m0 = m[0] > m[2] ? m[0] : m[2];
    float const m1 = m[1] > m[3] ? m[1] : m[3];
    return m0 > m1 ? m0 : m1;
}
TNX_CPU_FN Vec vhsum8(Vec const* a)
{
    float r[kLanes];
    for (int k = 0; k < kLanes; ++k)
        r[k] = vhsum(a[k]);
    return vload(r);
}
//! exp of 4 lanes as the AVX2 build: Cephes' expf polynomial, 0 below -87.33, NaN stays NaN.
TNX_CPU_FN TnxFloat4 vexp4(TnxFloat4 x)
{
    TnxFloat4 const hi = TnxFloat4{} + 88.3762626647949f;
    TnxFloat4 const lo = TnxFloat4{} + -87.33654f;
    TnxFloat4 t = vselect(x < hi, x, hi);
    t = vselect(t > lo, t, lo);
    // Round to nearest even by the 1.5 * 2^23 trick (|t * log2e| < 2^22).
    TnxFloat4 const n = (t * 1.44269504088896341f + 12582912.f) - 12582912.f;
    TnxFloat4 g = t - n * 0.693359375f;
    g = g - n * -2.12194440e-4f;
    TnxFloat4 y = TnxFloat4{} + 1.9875691500e-4f;
    y = y * g + 1.3981999507e-3f;
    y = y * g + 8.3334519073e-3f;
    y = y * g + 4.1665795894e-2f;
    y = y * g + 1.6666665459e-1f;
    y = y * g + 5.0000001201e-1f;
    y = y * (g * g) + g + 1.f;
    TnxInt4 const e = (__builtin_convertvector(n, TnxInt4) + 127) << 23;
    TnxFloat4 const value = y * (TnxFloat4) e;
    TnxInt4 const nan = x != x;
    TnxFloat4 const special = vselect(nan, x, TnxFloat4{}); // NaN stays, below the range 0
    return vselect((x < lo) | nan, special, value);
}
TNX_CPU_FN Vec vexp(Vec x)
{
    return {vexp4(x.lo), vexp4(x.hi)};
}
TNX_CPU_FN Vec vloadHalf8(SoftHalf const* p)
{
    float r[kLanes];
    for (int k = 0; k < kLanes; ++k)
        r[k] = halfBitsToFloat(p[k].bits);
    return vload(r);
}
TNX_CPU_FN void vstoreHalf8(SoftHalf* p, Vec a)
{
    float r[kLanes];
    vstore(r, a);
    for (int k = 0; k < kLanes; ++k)
        p[k].bits = floatToHalfBits(r[k]);
}

#else // portable, other compilers: plain arrays


struct Vec
{
    float v[kLanes];
};

TNX_CPU_FN Vec vzero()
{
    Vec r;
    for (int k = 0; k < kLanes; ++k)
        r.v[k] = 0.f;
    return r;
}
TNX_CPU_FN Vec vset(float x)
{
    Vec r;
    for (int k = 0; k < kLanes; ++k)
        r.v[k] = x;
    return r;
}
TNX_CPU_FN Vec vload(float const* p)
{
    Vec r;
    for (int k = 0; k < kLanes; ++k)
        r.v[k] = p[k];
    return r;
}
TNX_CPU_FN void vstore(float* p, Vec a)
{
    for (int k = 0; k < kLanes; ++k)
        p[k] = a.v[k];
}
TNX_CPU_FN Vec vadd(Vec a, Vec b)
{
    for (int k = 0; k < kLanes; ++k)
        a.v[k] += b.v[k];
    return a;
}
TNX_CPU_FN Vec vsub(Vec a, Vec b)
{
    for (int k = 0; k < kLanes; ++k)
        a.v[k] -= b.v[k];
    return a;
}
TNX_CPU_FN Vec vmul(Vec a, Vec b)
{
    for (int k = 0; k < kLanes; ++k)
        a.v[k] *= b.v[k];
    return a;
}
TNX_CPU_FN Vec vdiv(Vec a, Vec b)
{
    for (int k = 0; k < kLanes; ++k)
        a.v[k] /= b.v[k];
    return a;
}
TNX_CPU_FN Vec vmax(Vec a, Vec b)
{
    for (int k = 0; k < kLanes; ++k)
        a.v[k] = a.v[k] > b.v[k] ? a.v[k] : b.v[k];
    return a;
}
TNX_CPU_FN Vec vfma(Vec a, Vec b, Vec c)
{
    for (int k = 0; k < kLanes; ++k)
        c.v[k] += a.v[k] * b.v[k];
    return c;
}
TNX_CPU_FN float vhsum(Vec a)
{
    float const s0 = (a.v[0] + a.v[4]) + (a.v[2] + a.v[6]);
    float const s1 = (a.v[1] + a.v[5]) + (a.v[3] + a.v[7]);
    return s0 + s1;
}
TNX_CPU_FN float vhmax(Vec a)
{
    float m = a.v[0];
    for (int k = 1; k < kLanes; ++k)
        m = a.v[k] > m ? a.v[k] : m;
    return m;
}
TNX_CPU_FN Vec vhsum8(Vec const* a)
{
    Vec r;
    for (int k = 0; k < kLanes; ++k)
        r.v[k] = vhsum(a[k]);
    return r;
}
TNX_CPU_FN Vec vexp(Vec x)
{
    Vec r;
    for (int k = 0; k < kLanes; ++k)
    {
        float const xk = x.v[k];
        float t = xk < 88.3762626647949f ? xk : 88.3762626647949f;
        t = t > -87.33654f ? t : -87.33654f;
        // Round to nearest even by the 1.5 * 2^23 trick (|t * log2e| < 2^22).
        float const n = (t * 1.44269504088896341f + 12582912.f) - 12582912.f;
        float g = t - n * 0.693359375f;
        g = g - n * -2.12194440e-4f;
        float y = 1.9875691500e-4f;
        y = y * g + 1.3981999507e-3f;
        y = y * g + 8.3334519073e-3f;
        y = y * g + 4.1665795894e-2f;
        y = y * g + 1.6666665459e-1f;
        y = y * g + 5.0000001201e-1f;
        y = y * (g * g) + g + 1.f;
        uint32_t const bits = static_cast<uint32_t>(static_cast<int32_t>(n) + 127) << 23;
        float scale;
        memcpy(&scale, &bits, sizeof(scale));
        float const value = y * scale;
        r.v[k] = xk < -87.33654f ? 0.f : (xk != xk ? xk : value);
    }
    return r;
}
TNX_CPU_FN Vec vloadHalf8(SoftHalf const* p)
{
    Vec r;
    for (int k = 0; k < kLanes; ++k)
        r.v[k] = halfBitsToFloat(p[k].bits);
    return r;
}
TNX_CPU_FN void vstoreHalf8(SoftHalf* p, Vec a)
{
    for (int k = 0; k < kLanes; ++k)
        p[k].bits = floatToHalfBits(a.v[k]);
}

#endif

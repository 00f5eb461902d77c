// The fast CPU kernel for x86 CPUs with AVX2, FMA and F16C, compiled through function target
// attributes (no -mavx2 for the file, so nothing here runs unless cpuHasAvx2() said yes). Other
// architectures and compilers get a stub that reports the kernel as absent.
#include "aggregatedAttentionCpu.h"
#include "aggregatedAttentionCpuMacros.h"

#include <cmath>
#include <cstring>
#include <vector>

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define TNX_CPU_HAVE_AVX2_BUILD 1
#include <cpuid.h>
#include <immintrin.h>
#else
#define TNX_CPU_HAVE_AVX2_BUILD 0
#endif

namespace transnext
{
namespace aa
{
namespace cpu
{

#if TNX_CPU_HAVE_AVX2_BUILD

namespace avx2
{
#define TNX_CPU_TARGET __attribute__((target("avx2,fma,f16c")))
#define TNX_CPU_AVX2 1
#include "aggregatedAttentionCpuKernelBody.h"
#undef TNX_CPU_AVX2
#undef TNX_CPU_TARGET
} // namespace avx2

UnitFunction avx2UnitFunction(bool half, int32_t nv)
{
    return half ? avx2::unitFunction<SoftHalf>(nv) : avx2::unitFunction<float>(nv);
}

namespace
{
bool detectAvx2()
{
    unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
    if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx))
    {
        return false;
    }
    bool const osxsave = (ecx >> 27) & 1u;
    bool const avx = (ecx >> 28) & 1u;
    bool const fma = (ecx >> 12) & 1u;
    bool const f16c = (ecx >> 29) & 1u;
    if (!(osxsave && avx && fma && f16c))
    {
        return false;
    }
    unsigned xcr0 = 0, xcr0High = 0;
    __asm__ volatile("xgetbv" : "=a"(xcr0), "=d"(xcr0High) : "c"(0));
    if ((xcr0 & 6u) != 6u) // the OS saves the SSE and AVX registers
    {
        return false;
    }
    if (__get_cpuid_max(0, nullptr) < 7)
    {
        return false;
    }
    __cpuid_count(7, 0, eax, ebx, ecx, edx);
    return (ebx >> 5) & 1u;
}
} // namespace

bool cpuHasAvx2()
{
    static bool const has = detectAvx2();
    return has;
}

#else

UnitFunction avx2UnitFunction(bool, int32_t)
{
    return nullptr;
}

bool cpuHasAvx2()
{
    return false;
}

#endif

} // namespace cpu
} // namespace aa
} // namespace transnext

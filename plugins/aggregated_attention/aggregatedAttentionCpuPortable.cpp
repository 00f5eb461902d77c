// The fast CPU kernel in plain C++ (any CPU; the compiler may vectorise it for the baseline
// instruction set, e.g. SSE2 on x86-64 or NEON on aarch64).
#include "aggregatedAttentionCpu.h"
#include "aggregatedAttentionCpuMacros.h"

#include <cmath>
#include <cstring>
#include <vector>

// The 32-byte generic vectors of the kernel only live inside always-inlined functions of this file,
// so GCC's note that their by-value passing would differ with AVX (-Wpsabi) does not apply.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wpsabi"
#endif

namespace transnext
{
namespace aa
{
namespace cpu
{
namespace portable
{
#define TNX_CPU_TARGET
#define TNX_CPU_AVX2 0
#include "aggregatedAttentionCpuKernelBody.h"
#undef TNX_CPU_AVX2
#undef TNX_CPU_TARGET
} // namespace portable

UnitFunction portableUnitFunction(bool half, int32_t nv)
{
    return half ? portable::unitFunction<SoftHalf>(nv) : portable::unitFunction<float>(nv);
}

} // namespace cpu
} // namespace aa
} // namespace transnext

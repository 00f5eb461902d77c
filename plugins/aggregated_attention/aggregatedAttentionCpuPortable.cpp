// The fast CPU kernel without x86 vector extensions, for any CPU: GCC and Clang generic 4-lane
// vectors (SSE2 on x86-64, NEON on aarch64, scalar code elsewhere), plain arrays with other compilers.
#include "aggregatedAttentionCpu.h"
#include "aggregatedAttentionCpuMacros.h"

#include <cmath>
#include <cstring>
#include <vector>

// The kernel's 16-byte generic vectors only live inside always-inlined functions of this file, so
// GCC's note, on targets without 16-byte SIMD registers, that passing them by value changes the
// ABI (-Wpsabi) does not apply.
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

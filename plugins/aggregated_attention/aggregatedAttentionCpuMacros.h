// Macros shared by the two builds of aggregatedAttentionCpuKernelBody.h.
#pragma once

#if defined(__GNUC__)
#define TNX_CPU_ALWAYS_INLINE __attribute__((always_inline))
#define TNX_CPU_PREFETCH(address) __builtin_prefetch(address)
#else
#define TNX_CPU_ALWAYS_INLINE
#define TNX_CPU_PREFETCH(address) ((void) (address))
#endif

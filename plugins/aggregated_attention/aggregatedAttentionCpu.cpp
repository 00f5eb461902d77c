// The fast CPU kernel: how one call is cut into units and run on the thread pool (see
// aggregatedAttentionCpu.h). The units themselves are in aggregatedAttentionCpuPortable.cpp and
// aggregatedAttentionCpuAvx2.cpp.
#include "aggregatedAttentionCpu.h"
#include "aggregatedAttentionThreadPool.h"

#include <atomic>
#include <cmath>
#include <cstring>
#include <exception>
#include <vector>

namespace transnext
{
namespace aa
{
namespace cpu
{

namespace
{

// Per-thread scratch memory above this is released after each call (typical calls need < 1 MiB).
constexpr size_t kKeepBytes = size_t{64} << 20;

Workspace& threadWorkspace()
{
    thread_local Workspace workspace;
    return workspace;
}

template <typename V>
size_t bytesOf(std::vector<V> const& v)
{
    return v.capacity() * sizeof(V);
}

void releaseIfLarge(Workspace& ws)
{
    size_t const total = bytesOf(ws.pooledKeysT) + bytesOf(ws.pooledValues) + bytesOf(ws.learnableTokens)
        + bytesOf(ws.bandKeys) + bytesOf(ws.bandValues);
    if (total > kKeepBytes)
    {
        ws = Workspace();
    }
}

Plan makePlan(Problem const& p, int32_t threads)
{
    static std::atomic<uint64_t> calls{0};
    Plan pl;
    pl.p = p;
    pl.d = p.headDim;
    pl.nv = vectorsPerRow(p.headDim);
    pl.dp = pl.nv * kLanes;
    pl.r = p.windowSize / 2;
    pl.lp = (p.localLen + kLanes - 1) / kLanes * kLanes;
    pl.pp = (p.pooledLen + kLanes - 1) / kLanes * kLanes;
    pl.colTiles = (p.width + kMaxTileCols - 1) / kMaxTileCols;
    pl.tileCols = static_cast<int32_t>((p.width + pl.colTiles - 1) / pl.colTiles);
    // Enough units for the threads to share (and to even out), as long as bands stay > 1 row.
    int64_t const perRows = p.batch * p.numHeads * pl.colTiles;
    pl.bandRows = p.height < kMaxBandRows ? p.height : kMaxBandRows;
    while (pl.bandRows > 1 && perRows * ((p.height + pl.bandRows - 1) / pl.bandRows) < 4 * int64_t{threads})
    {
        pl.bandRows = (pl.bandRows + 1) / 2;
    }
    pl.rowBands = (p.height + pl.bandRows - 1) / pl.bandRows;
    pl.units = perRows * pl.rowBands;
    pl.callId = ++calls;
    pl.logTable.resize(static_cast<size_t>(p.localLen) + 1);
    for (int32_t valid = 0; valid <= p.localLen; ++valid)
    {
        pl.logTable[static_cast<size_t>(valid)] = logf(static_cast<float>(valid + p.pooledLen));
    }
    return pl;
}

struct Job
{
    Plan const* plan;
    UnitFunction fn;
    void const* inputs;
    void* output;
    std::atomic<int64_t> next{0};
    std::atomic<bool> failed{false};
};

void runJob(void* raw, int32_t)
{
    Job& job = *static_cast<Job*>(raw);
    Workspace& ws = threadWorkspace();
    for (int64_t unit = job.next.fetch_add(1); unit < job.plan->units; unit = job.next.fetch_add(1))
    {
        if (job.failed.load(std::memory_order_relaxed))
        {
            break;
        }
        try
        {
            job.fn(*job.plan, job.inputs, job.output, unit, ws);
        }
        catch (std::exception const&) // std::bad_alloc from a scratch buffer
        {
            job.failed.store(true);
            ws = Workspace();
        }
    }
    releaseIfLarge(ws);
}

} // namespace

template <typename T>
Status forwardFast(Problem const& p, Inputs<T> const& in, T* out, int32_t numThreads, Isa isa, char* message,
    size_t capacity)
{
    int32_t const threads = numThreads < 1 ? 1 : numThreads;
    bool const half = sizeof(T) == 2;
    Job job;
    Plan plan;
    try
    {
        plan = makePlan(p, threads);
    }
    catch (std::exception const&)
    {
        snprintf(message, capacity, "internal: out of memory in the CPU kernel");
        return kStatusInternal;
    }
    job.plan = &plan;
    job.fn = isa == Isa::kAvx2 ? avx2UnitFunction(half, plan.nv) : portableUnitFunction(half, plan.nv);
    job.inputs = &in;
    job.output = out;
    if (job.fn == nullptr)
    {
        snprintf(message, capacity, "internal: no CPU kernel for head_dim %d", static_cast<int>(p.headDim));
        return kStatusInternal;
    }
    int64_t const useful = plan.units < threads ? plan.units : threads;
    runParallel(static_cast<int32_t>(useful), &runJob, &job);
    if (job.failed.load())
    {
        snprintf(message, capacity, "internal: out of memory in the CPU kernel");
        return kStatusInternal;
    }
    return kStatusOk;
}

template Status forwardFast<float>(Problem const&, Inputs<float> const&, float*, int32_t, Isa, char*, size_t);
template Status forwardFast<SoftHalf>(Problem const&, Inputs<SoftHalf> const&, SoftHalf*, int32_t, Isa, char*, size_t);

} // namespace cpu
} // namespace aa
} // namespace transnext

// A persistent pool of worker threads for the host (CPU) library.
//
// The op is called once per block and per inference, at sizes where starting threads would cost
// as much as the work (a few hundred microseconds per call). The workers are started on first use,
// sleep on a condition variable between calls (no spinning: in onnxruntime or PyTorch the next op
// needs the cores) and live until the process ends. One parallel region runs at a time; a call
// that finds the pool busy (another thread's call, or a nested call) runs on its own thread, which
// gives the same results: every task's arithmetic is independent of the thread that runs it.
#pragma once

#include <atomic>
#include <cstdint>

namespace transnext
{
namespace aa
{
namespace cpu
{

//! Runs body(context, slot) on `threads` threads at once, the calling thread included (slot 0),
//! and returns when all have returned. `body` must not throw. threads <= 1 runs body(context, 0).
void runParallel(int32_t threads, void (*body)(void*, int32_t), void* context);

//! Calls fn(task) for task in [0, count), spread over up to `threads` threads by an atomic counter
//! (tasks are taken in order, one at a time). fn must not throw.
template <typename F>
void parallelFor(int64_t count, int32_t threads, F& fn)
{
    struct Context
    {
        F* fn;
        int64_t count;
        std::atomic<int64_t> next;
    };
    Context context{&fn, count, {0}};
    auto body = [](void* raw, int32_t) {
        auto* c = static_cast<Context*>(raw);
        for (int64_t task = c->next.fetch_add(1); task < c->count; task = c->next.fetch_add(1))
        {
            (*c->fn)(task);
        }
    };
    int64_t const useful = count < threads ? count : threads;
    runParallel(static_cast<int32_t>(useful), body, &context);
}

} // namespace cpu
} // namespace aa
} // namespace transnext

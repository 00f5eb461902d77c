// Persistent worker threads (see aggregatedAttentionThreadPool.h).
#include "aggregatedAttentionThreadPool.h"

#include <condition_variable>
#include <mutex>
#include <system_error>
#include <thread>
#include <vector>

#if defined(__unix__) || defined(__APPLE__)
#include <pthread.h>
#define TNX_AA_HAVE_ATFORK 1
#endif

namespace transnext
{
namespace aa
{
namespace cpu
{
namespace
{

constexpr int32_t kMaxThreads = 256;

class Pool
{
public:
    //! Runs a parallel region; false (nothing run) when another region holds the pool.
    bool tryRun(int32_t threads, void (*body)(void*, int32_t), void* context)
    {
        std::unique_lock<std::mutex> region(mRegion, std::try_to_lock);
        if (!region.owns_lock())
        {
            return false;
        }
        int32_t const helpers = grow(threads - 1);
        {
            std::lock_guard<std::mutex> lock(mMutex);
            mBody = body;
            mContext = context;
            mParticipants = helpers;
            mPending = helpers;
            ++mGeneration;
        }
        mWake.notify_all();
        body(context, 0);
        std::unique_lock<std::mutex> lock(mMutex);
        mDone.wait(lock, [this] { return mPending == 0; });
        return true;
    }

private:
    //! Starts workers until `wanted` exist (fewer if the system refuses); returns how many exist.
    int32_t grow(int32_t wanted)
    {
        while (static_cast<int32_t>(mWorkers.size()) < wanted)
        {
            int32_t const index = static_cast<int32_t>(mWorkers.size());
            try
            {
                mWorkers.emplace_back([this, index] { work(index); });
            }
            catch (std::system_error const&)
            {
                break; // run with the workers we have
            }
        }
        int32_t const have = static_cast<int32_t>(mWorkers.size());
        return wanted < have ? wanted : have;
    }

    void work(int32_t index)
    {
        uint64_t seen = 0;
        std::unique_lock<std::mutex> lock(mMutex);
        for (;;)
        {
            mWake.wait(lock, [&] { return mGeneration != seen; });
            seen = mGeneration;
            if (index >= mParticipants)
            {
                continue;
            }
            auto* body = mBody;
            void* context = mContext;
            lock.unlock();
            body(context, index + 1);
            lock.lock();
            if (--mPending == 0)
            {
                mDone.notify_one();
            }
        }
    }

    std::mutex mRegion; // held for a whole parallel region
    std::mutex mMutex;  // guards the fields below
    std::condition_variable mWake;
    std::condition_variable mDone;
    std::vector<std::thread> mWorkers; // never joined: the pool lives until the process ends
    uint64_t mGeneration = 0;
    int32_t mParticipants = 0;
    int32_t mPending = 0;
    void (*mBody)(void*, int32_t) = nullptr;
    void* mContext = nullptr;
};

std::atomic<Pool*> gPool{nullptr};

#if defined(TNX_AA_HAVE_ATFORK)
// A forked child has none of the parent's threads: it starts a pool of its own on first use (the
// parent's pool object is left behind, not destroyed, since its threads cannot be joined there).
void forgetPoolInChild()
{
    gPool.store(nullptr);
}
#endif

Pool& pool()
{
    Pool* existing = gPool.load(std::memory_order_acquire);
    if (existing != nullptr)
    {
        return *existing;
    }
#if defined(TNX_AA_HAVE_ATFORK)
    static bool const registered = (pthread_atfork(nullptr, nullptr, forgetPoolInChild), true);
    (void) registered;
#endif
    Pool* created = new Pool();
    if (!gPool.compare_exchange_strong(existing, created, std::memory_order_acq_rel))
    {
        delete created; // another thread won; `existing` now holds its pool
        return *existing;
    }
    return *created;
}

} // namespace

void runParallel(int32_t threads, void (*body)(void*, int32_t), void* context)
{
    if (threads > kMaxThreads)
    {
        threads = kMaxThreads;
    }
    if (threads <= 1 || !pool().tryRun(threads, body, context))
    {
        body(context, 0);
    }
}

} // namespace cpu
} // namespace aa
} // namespace transnext

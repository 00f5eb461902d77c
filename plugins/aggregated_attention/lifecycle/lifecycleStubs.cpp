// Stand-ins for libnvinfer (lifecycleStubs.h).
#include "lifecycleStubs.h"

#include <cstdio>

namespace lifecycle
{

RecordingLogger gLogger;

void RecordingLogger::log(Severity severity, nvinfer1::AsciiChar const* msg) noexcept
{
    if (severity <= Severity::kWARNING && msg != nullptr)
    {
        last = msg;
        if (verbose)
        {
            fprintf(stderr, "  [plugin] %s\n", msg);
        }
    }
}

nvinfer1::IDimensionExpr const* ExprPool::make(int64_t value, bool isConstant)
{
    mImpls.push_back(std::make_unique<DimExprImpl>(value, isConstant));
    mExprs.push_back(std::make_unique<DimExpr>(mImpls.back().get()));
    return mExprs.back().get();
}

} // namespace lifecycle

//! The plugin logs through getLogger(), which libnvinfer normally provides.
extern "C" nvinfer1::ILogger* getLogger() noexcept
{
    return &lifecycle::gLogger;
}

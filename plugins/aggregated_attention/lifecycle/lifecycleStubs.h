// Stand-ins for what libnvinfer normally provides the plugin, so that the life-cycle driver runs
// without TensorRT's runtime: the logger (getLogger), IExprBuilder/IDimensionExpr objects for
// getOutputShapes, and the IPluginResourceContext of attachToContext.
//
// IExprBuilder and IDimensionExpr are normally made by TensorRT only ("do not inherit"): the
// driver gives them implementation objects of its own, built on the apiv::VExprBuilder and
// apiv::VDimensionExpr interfaces of NvInferImpl.h, which are the same in TensorRT 10.3, 10.13
// and 11.1 (11.x makes the destructors pure virtual with inline definitions; that changes nothing
// for a subclass).
#pragma once

#include <NvInferRuntime.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace lifecycle
{

//! Keeps the plugin's last warning or error line, so refusal checks can look for the reason.
class RecordingLogger final : public nvinfer1::ILogger
{
public:
    void log(Severity severity, nvinfer1::AsciiChar const* msg) noexcept override;
    std::string last;
    bool verbose{false};
};

//! The logger getLogger() returns (defined in lifecycleStubs.cpp).
extern RecordingLogger gLogger;

class DimExprImpl final : public nvinfer1::apiv::VDimensionExpr
{
public:
    DimExprImpl(int64_t value, bool constant)
        : mValue(value)
        , mConstant(constant)
    {
    }
    bool isConstant() const override
    {
        return mConstant;
    }
    int64_t getConstantValue() const override
    {
        return mConstant ? mValue : INT64_MIN;
    }
    bool isSizeTensor() const override
    {
        return false;
    }

private:
    int64_t mValue;
    bool mConstant;
};

class DimExpr final : public nvinfer1::IDimensionExpr
{
public:
    explicit DimExpr(nvinfer1::apiv::VDimensionExpr* impl)
    {
        mImpl = impl;
    }
    ~DimExpr() noexcept override = default;
};

//! Expressions for getOutputShapes: constants, and "unknown" (a dynamic dimension such as the batch).
class ExprPool final : public nvinfer1::apiv::VExprBuilder
{
public:
    nvinfer1::IDimensionExpr const* constant(int64_t value) override
    {
        return make(value, true);
    }
    nvinfer1::IDimensionExpr const* unknown()
    {
        return make(-1, false);
    }
    nvinfer1::IDimensionExpr const* operation(
        nvinfer1::DimensionOperation, nvinfer1::IDimensionExpr const&, nvinfer1::IDimensionExpr const&) override
    {
        return unknown(); // the plugin does no arithmetic on expressions
    }
    nvinfer1::IDimensionExpr const* declareSizeTensor(
        int32_t, nvinfer1::IDimensionExpr const&, nvinfer1::IDimensionExpr const&) override
    {
        return nullptr;
    }

private:
    nvinfer1::IDimensionExpr const* make(int64_t value, bool isConstant);
    std::vector<std::unique_ptr<DimExprImpl>> mImpls;
    std::vector<std::unique_ptr<DimExpr>> mExprs;
};

class ExprBuilder final : public nvinfer1::IExprBuilder
{
public:
    explicit ExprBuilder(ExprPool* pool)
    {
        mImpl = pool;
    }
    ~ExprBuilder() noexcept override = default;
};

//! attachToContext's argument; the plugin needs neither an allocator nor an error recorder.
class ResourceContext final : public nvinfer1::IPluginResourceContext
{
public:
    nvinfer1::IGpuAllocator* getGpuAllocator() const noexcept override
    {
        return nullptr;
    }
    nvinfer1::IErrorRecorder* getErrorRecorder() const noexcept override
    {
        return nullptr;
    }
};

} // namespace lifecycle

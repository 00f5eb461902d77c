// The plugin side of the life-cycle driver: check bookkeeping, plugin fields and tensor
// descriptors as TensorRT builds them, the build and runtime phases, the kernel run, the refusals.
#pragma once

#include "aggregatedAttentionContract.h"
#include "lifecycleCases.h"

#include <NvInferRuntime.h>

#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

namespace lifecycle
{

// Relative error = max |kernel - host| / max |host|. fp32: the kernel and the host library run the
// same arithmetic; only the order of fused multiply-adds and the device's expf/logf differ.
constexpr double kFp32RelTol = 1e-5;
// fp16 storage: arithmetic is fp32 with one rounding on the store (README, "Precision"), so the
// kernel is within half an fp16 ulp of the host's fp32 result on the same fp16 inputs; allowed: one
// ulp (2^-10) of the largest output.
constexpr double kFp16RelTol = 1.0 / 1024.0;

struct Tally
{
    int32_t passed{0};
    int32_t failed{0};
    bool quiet{false}; // passing checks are counted but not printed (the steps of one case's life cycle)

    bool check(bool ok, std::string const& what, std::string const& detail = {})
    {
        (ok ? passed : failed) += 1;
        if (!ok || !quiet)
        {
            printf("%s %s%s%s\n", ok ? "PASS" : "FAIL", what.c_str(), detail.empty() ? "" : ": ", detail.c_str());
            fflush(stdout);
        }
        return ok;
    }
};

//! The six attributes as plugin fields (kINT32, or kINT64 as the ONNX parser may pass them);
//! `skip` leaves one out, `overrideIndex` replaces one value.
struct Fields
{
    int32_t values32[transnext::aa::kNumAttributes];
    int64_t values64[transnext::aa::kNumAttributes];
    std::vector<nvinfer1::PluginField> fields;
    nvinfer1::PluginFieldCollection collection{};

    Fields(Shape const& s, bool int64, int32_t skip = -1, int32_t overrideIndex = -1, int32_t overrideValue = 0);
    Fields(Fields const&) = delete; // fields point into this object
    Fields& operator=(Fields const&) = delete;
};

struct PluginDeleter
{
    void operator()(nvinfer1::IPluginV3* p) const
    {
        delete p;
    }
};
using PluginPtr = std::unique_ptr<nvinfer1::IPluginV3, PluginDeleter>;

template <typename T>
T* capability(nvinfer1::IPluginV3* plugin, nvinfer1::PluginCapabilityType type)
{
    return plugin == nullptr ? nullptr : static_cast<T*>(plugin->getCapabilityInterface(type));
}

//! Descriptors of the nine inputs and the output: concrete (onShapeChange, enqueue) and dynamic
//! (configurePlugin: batch -1 in the build-time dims, profile min 1 / opt batch / max `maxBatch`).
struct Descs
{
    nvinfer1::DynamicPluginTensorDesc dyn[transnext::aa::kNumInputs];
    nvinfer1::DynamicPluginTensorDesc dynOut[1];
    nvinfer1::PluginTensorDesc desc[transnext::aa::kNumInputs];
    nvinfer1::PluginTensorDesc descOut[1];
    nvinfer1::DataType types[transnext::aa::kNumInputs];

    Descs(Shape const& s, nvinfer1::DataType type, int64_t maxBatch);
};

//! The V3One creator of the op from getCreators(), or null with `error` set.
nvinfer1::IPluginCreatorV3One* findCreator(std::string& error);

//! One case through createPlugin(kBUILD) ... attachToContext -> onShapeChange; the attached plugin or null.
PluginPtr lifeCycle(nvinfer1::IPluginCreatorV3One* creator, Shape const& s, nvinfer1::DataType type, bool int64Fields,
    Tally& tally, std::string const& label);

//! enqueue on random inputs and the comparison with the host library (one PASS/FAIL line with the errors).
void compareCase(nvinfer1::IPluginV3* plugin, Shape const& s, nvinfer1::DataType type, uint32_t seed, Tally& tally,
    std::string const& label);

//! Shapes and attributes the plugin must refuse, each with a non-zero status and a logged reason.
void refusals(nvinfer1::IPluginCreatorV3One* creator, Tally& tally);

} // namespace lifecycle

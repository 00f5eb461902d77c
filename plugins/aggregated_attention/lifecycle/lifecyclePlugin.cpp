// The plugin side of the life-cycle driver (lifecyclePlugin.h): TensorRT's calls in TensorRT's order,
// then the kernel run on the GPU against the host library.
#include "lifecyclePlugin.h"

#include "aggregatedAttentionHost.h"
#include "lifecycleStubs.h"

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstring>

using namespace nvinfer1;
namespace aa = transnext::aa;

//! getCreators() of aggregatedAttentionPlugin.cpp (declared there with TRANSNEXT_AA_EXPORT).
extern "C" IPluginCreatorInterface* const* getCreators(int32_t& nbCreators);

namespace lifecycle
{

IPluginCreatorV3One* findCreator(std::string& error)
{
    int32_t count = 0;
    IPluginCreatorInterface* const* creators = getCreators(count);
    for (int32_t i = 0; creators != nullptr && i < count; ++i)
    {
        IPluginCreatorInterface* c = creators[i];
        if (c == nullptr || std::strcmp(c->getInterfaceInfo().kind, "PLUGIN CREATOR_V3ONE") != 0)
        {
            continue;
        }
        auto* creator = static_cast<IPluginCreatorV3One*>(c);
        if (std::strcmp(creator->getPluginName(), aa::kOpName) == 0
            && std::strcmp(creator->getPluginVersion(), aa::kPluginVersion) == 0
            && std::strcmp(creator->getPluginNamespace(), aa::kPluginNamespace) == 0)
        {
            return creator;
        }
    }
    error = "getCreators() returned " + std::to_string(count) + " creator(s), none is a V3One creator of "
        + aa::kOpName + " version " + aa::kPluginVersion;
    return nullptr;
}

//! The six attributes as plugin fields (kINT32, or kINT64 as the ONNX parser may pass them).
Fields::Fields(Shape const& s, bool int64, int32_t skip, int32_t overrideIndex, int32_t overrideValue)
{
    int32_t const values[aa::kNumAttributes]
        = {s.numHeads, s.height, s.width, s.window, s.poolHeight, s.poolWidth};
    for (int32_t k = 0; k < aa::kNumAttributes; ++k)
    {
        values32[k] = k == overrideIndex ? overrideValue : values[k];
        values64[k] = values32[k];
    }
    for (int32_t k = 0; k < aa::kNumAttributes; ++k)
    {
        if (k == skip)
        {
            continue;
        }
        if (int64)
        {
            fields.emplace_back(aa::kAttributeNames[k], &values64[k], PluginFieldType::kINT64, 1);
        }
        else
        {
            fields.emplace_back(aa::kAttributeNames[k], &values32[k], PluginFieldType::kINT32, 1);
        }
    }
    collection.nbFields = static_cast<int32_t>(fields.size());
    collection.fields = fields.data();
}

Descs::Descs(Shape const& s, DataType type, int64_t maxBatch)
{
    for (int32_t k = 0; k <= aa::kNumInputs; ++k)
    {
        bool const isOut = k == aa::kNumInputs;
        std::vector<int64_t> const shape = isOut ? inputShape(s, aa::kQuery) : inputShape(s, k);
        bool const batched = isOut || k <= aa::kPooledKeyValue;
        PluginTensorDesc concrete{};
        concrete.dims = toDims(shape);
        concrete.type = type;
        concrete.format = TensorFormat::kLINEAR;
        concrete.scale = 1.0f;
        DynamicPluginTensorDesc dynamic{};
        dynamic.desc = concrete;
        dynamic.min = dynamic.opt = dynamic.max = concrete.dims;
        if (batched)
        {
            dynamic.desc.dims.d[0] = -1;
            dynamic.min.d[0] = 1;
            dynamic.opt.d[0] = s.batch;
            dynamic.max.d[0] = maxBatch;
        }
        if (isOut)
        {
            descOut[0] = concrete;
            dynOut[0] = dynamic;
        }
        else
        {
            desc[k] = concrete;
            dyn[k] = dynamic;
            types[k] = type;
        }
    }
}

namespace
{

//! A deep copy of getFieldsToSerialize()'s answer: TensorRT stores the fields in the engine and
//! hands them back to createPlugin(kRUNTIME) after the build-time plugin is gone.
struct SerializedFields
{
    std::vector<std::string> names;
    std::vector<std::vector<char>> data;
    std::vector<PluginField> fields;
    PluginFieldCollection collection{};

    bool copy(PluginFieldCollection const* fc)
    {
        if (fc == nullptr || fc->nbFields < 0 || (fc->nbFields > 0 && fc->fields == nullptr))
        {
            return false;
        }
        for (int32_t i = 0; i < fc->nbFields; ++i)
        {
            PluginField const& f = fc->fields[i];
            size_t const unit = f.type == PluginFieldType::kINT64 ? 8 : (f.type == PluginFieldType::kINT32 ? 4 : 1);
            names.emplace_back(f.name != nullptr ? f.name : "");
            auto const* bytes = static_cast<char const*>(f.data);
            data.emplace_back(bytes, bytes + unit * static_cast<size_t>(std::max(f.length, 0)));
        }
        for (int32_t i = 0; i < fc->nbFields; ++i)
        {
            fields.emplace_back(names[i].c_str(), data[i].data(), fc->fields[i].type, fc->fields[i].length);
        }
        collection.nbFields = static_cast<int32_t>(fields.size());
        collection.fields = fields.data();
        return true;
    }
};

bool buildPhase(IPluginCreatorV3One* creator, Shape const& s, DataType type, bool int64Fields, Tally& tally,
    std::string const& label, SerializedFields& serialized)
{
    Fields fields(s, int64Fields);
    PluginPtr plugin(creator->createPlugin(label.c_str(), &fields.collection, TensorRTPhase::kBUILD));
    if (!tally.check(plugin != nullptr, label + " createPlugin(kBUILD)", gLogger.last))
    {
        return false;
    }
    auto* core = capability<IPluginV3OneCore>(plugin.get(), PluginCapabilityType::kCORE);
    auto* build = capability<IPluginV3OneBuild>(plugin.get(), PluginCapabilityType::kBUILD);
    if (!tally.check(core != nullptr && build != nullptr && std::strcmp(core->getPluginName(), aa::kOpName) == 0
                && std::strcmp(core->getPluginVersion(), aa::kPluginVersion) == 0 && build->getNbOutputs() == 1,
            label + " core/build capabilities"))
    {
        return false;
    }
    Descs descs(s, type, s.batch);
    DataType outType = DataType::kINT32;
    int32_t status = build->getOutputDataTypes(&outType, 1, descs.types, aa::kNumInputs);
    if (!tally.check(status == 0 && outType == type, label + " getOutputDataTypes", gLogger.last))
    {
        return false;
    }

    ExprPool pool;
    ExprBuilder builder(&pool);
    DimsExprs inExprs[aa::kNumInputs];
    for (int32_t k = 0; k < aa::kNumInputs; ++k)
    {
        std::vector<int64_t> const shape = inputShape(s, k);
        inExprs[k].nbDims = static_cast<int32_t>(shape.size());
        for (size_t i = 0; i < shape.size(); ++i)
        {
            bool const batchDim = i == 0 && k <= aa::kPooledKeyValue;
            inExprs[k].d[i] = batchDim ? (k == 0 ? pool.unknown() : inExprs[0].d[0]) : pool.constant(shape[i]);
        }
    }
    DimsExprs outExprs[1]{};
    status = build->getOutputShapes(inExprs, aa::kNumInputs, nullptr, 0, outExprs, 1, builder);
    bool const shapesOk = status == 0 && outExprs[0].nbDims == 3 && outExprs[0].d[0] == inExprs[0].d[0]
        && outExprs[0].d[1] != nullptr && outExprs[0].d[1]->isConstant()
        && outExprs[0].d[1]->getConstantValue() == s.tokens() && outExprs[0].d[2] == inExprs[0].d[2];
    if (!tally.check(shapesOk, label + " getOutputShapes (batch dynamic, (B, N, C))", gLogger.last))
    {
        return false;
    }

    PluginTensorDesc saved[aa::kNumInputs + 1];
    DynamicPluginTensorDesc inOut[aa::kNumInputs + 1];
    for (int32_t k = 0; k < aa::kNumInputs; ++k)
    {
        inOut[k] = descs.dyn[k];
    }
    inOut[aa::kNumInputs] = descs.dynOut[0];
    bool formats = true;
    for (int32_t pos = 0; pos <= aa::kNumInputs; ++pos)
    {
        formats = formats && build->supportsFormatCombination(pos, inOut, aa::kNumInputs, 1);
        saved[pos] = inOut[pos].desc;
    }
    // Refused combinations: another layout, or one input of another type than the query.
    inOut[aa::kPoolBias].desc.format = TensorFormat::kCHW32;
    bool const refusesFormat = !build->supportsFormatCombination(aa::kPoolBias, inOut, aa::kNumInputs, 1);
    inOut[aa::kPoolBias].desc = saved[aa::kPoolBias];
    inOut[aa::kLocalBias].desc.type = type == DataType::kFLOAT ? DataType::kHALF : DataType::kFLOAT;
    bool const refusesMixed = !build->supportsFormatCombination(aa::kLocalBias, inOut, aa::kNumInputs, 1);
    inOut[aa::kLocalBias].desc = saved[aa::kLocalBias];
    if (!tally.check(formats && refusesFormat && refusesMixed,
            label + " supportsFormatCombination (linear, one type; refuses CHW32 and mixed types)"))
    {
        return false;
    }

    status = build->configurePlugin(descs.dyn, aa::kNumInputs, descs.dynOut, 1);
    size_t const workspace = build->getWorkspaceSize(descs.dyn, aa::kNumInputs, descs.dynOut, 1);
    if (!tally.check(status == 0 && workspace == 0, label + " configurePlugin, getWorkspaceSize == 0", gLogger.last))
    {
        return false;
    }
    auto* runtime = capability<IPluginV3OneRuntime>(plugin.get(), PluginCapabilityType::kRUNTIME);
    bool const copied = runtime != nullptr && serialized.copy(runtime->getFieldsToSerialize());
    return tally.check(copied && serialized.collection.nbFields == aa::kNumAttributes,
        label + " getFieldsToSerialize (" + std::to_string(serialized.collection.nbFields) + " fields)");
}

//! Runtime phase: a new plugin from the serialised fields, attached to a context, shapes set.
PluginPtr runtimePhase(IPluginCreatorV3One* creator, Shape const& s, DataType type, Tally& tally,
    std::string const& label, SerializedFields const& serialized)
{
    PluginPtr deserialized(creator->createPlugin(label.c_str(), &serialized.collection, TensorRTPhase::kRUNTIME));
    if (!tally.check(deserialized != nullptr, label + " createPlugin(kRUNTIME) from the serialised fields",
            gLogger.last))
    {
        return nullptr;
    }
    ResourceContext context;
    auto* runtime = capability<IPluginV3OneRuntime>(deserialized.get(), PluginCapabilityType::kRUNTIME);
    PluginPtr attached(runtime != nullptr ? runtime->attachToContext(&context) : nullptr);
    if (!tally.check(attached != nullptr, label + " attachToContext", gLogger.last))
    {
        return nullptr;
    }
    auto* attachedRuntime = capability<IPluginV3OneRuntime>(attached.get(), PluginCapabilityType::kRUNTIME);
    Descs descs(s, type, s.batch);
    int32_t const status = attachedRuntime == nullptr
        ? -1
        : attachedRuntime->onShapeChange(descs.desc, aa::kNumInputs, descs.descOut, 1);
    if (!tally.check(status == 0, label + " onShapeChange", gLogger.last))
    {
        return nullptr;
    }
    return attached;
}

// ------------------------------------------------------------------------------------ device buffers

struct DeviceBuffer
{
    void* ptr{nullptr};
    ~DeviceBuffer()
    {
        if (ptr != nullptr)
        {
            cudaFree(ptr);
        }
    }
};

bool cudaOk(cudaError_t e, std::string& error, char const* what)
{
    if (e != cudaSuccess)
    {
        error = std::string(what) + ": " + cudaGetErrorString(e);
        return false;
    }
    return true;
}

//! Uploads the inputs as fp32 or fp16, enqueues on a fresh stream, downloads the output as fp32.
bool runOnDevice(IPluginV3* plugin, Shape const& s, DataType type, HostData const& data, std::vector<float>& result,
    std::string& error)
{
    bool const half = type == DataType::kHALF;
    size_t const unit = half ? 2 : 4;
    DeviceBuffer buffers[aa::kNumInputs + 1];
    void const* inputs[aa::kNumInputs];
    for (int32_t k = 0; k < aa::kNumInputs; ++k)
    {
        std::vector<float> const& v = data.inputs[k];
        std::vector<uint16_t> bits;
        void const* host = v.data();
        if (half)
        {
            bits.resize(v.size());
            std::transform(v.begin(), v.end(), bits.begin(), transnext_aa_float_to_half);
            host = bits.data();
        }
        if (!cudaOk(cudaMalloc(&buffers[k].ptr, v.size() * unit), error, "cudaMalloc")
            || !cudaOk(cudaMemcpy(buffers[k].ptr, host, v.size() * unit, cudaMemcpyHostToDevice), error, "cudaMemcpy"))
        {
            return false;
        }
        inputs[k] = buffers[k].ptr;
    }
    size_t const outCount = static_cast<size_t>(s.batch * s.tokens() * s.channels());
    DeviceBuffer& out = buffers[aa::kNumInputs];
    if (!cudaOk(cudaMalloc(&out.ptr, outCount * unit), error, "cudaMalloc")
        || !cudaOk(cudaMemset(out.ptr, 0xff, outCount * unit), error, "cudaMemset")) // NaN if never written
    {
        return false;
    }
    cudaStream_t stream = nullptr;
    if (!cudaOk(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), error, "cudaStreamCreate"))
    {
        return false;
    }
    auto* runtime = capability<IPluginV3OneRuntime>(plugin, PluginCapabilityType::kRUNTIME);
    Descs descs(s, type, s.batch);
    void* outputs[1] = {out.ptr};
    int32_t const status = runtime->enqueue(descs.desc, descs.descOut, inputs, outputs, nullptr, stream);
    cudaError_t const synced = cudaStreamSynchronize(stream);
    cudaStreamDestroy(stream);
    if (status != 0)
    {
        error = "enqueue returned " + std::to_string(status) + ": " + gLogger.last;
        return false;
    }
    if (!cudaOk(synced, error, "kernel execution"))
    {
        return false;
    }
    result.resize(outCount);
    if (half)
    {
        std::vector<uint16_t> bits(outCount);
        if (!cudaOk(cudaMemcpy(bits.data(), out.ptr, outCount * unit, cudaMemcpyDeviceToHost), error, "cudaMemcpy"))
        {
            return false;
        }
        std::transform(bits.begin(), bits.end(), result.begin(), transnext_aa_half_to_float);
        return true;
    }
    return cudaOk(cudaMemcpy(result.data(), out.ptr, outCount * unit, cudaMemcpyDeviceToHost), error, "cudaMemcpy");
}

} // namespace

void compareCase(IPluginV3* plugin, Shape const& s, DataType type, uint32_t seed, Tally& tally, std::string const& label)
{
    bool const half = type == DataType::kHALF;
    HostData const data = makeData(s, seed, half);
    std::string error;
    std::vector<float> const ref = hostReference(s, data, error);
    std::vector<float> got;
    if (error.empty())
    {
        runOnDevice(plugin, s, type, data, got, error);
    }
    if (!error.empty())
    {
        tally.check(false, label + " enqueue vs host library", error);
        return;
    }
    double maxAbs = 0.0;
    double refMax = 0.0;
    bool finite = true;
    for (size_t i = 0; i < ref.size(); ++i)
    {
        finite = finite && std::isfinite(got[i]);
        maxAbs = std::max(maxAbs, std::fabs(static_cast<double>(got[i]) - ref[i]));
        refMax = std::max(refMax, std::fabs(static_cast<double>(ref[i])));
    }
    double const rel = refMax > 0 ? maxAbs / refMax : maxAbs;
    double const tol = half ? kFp16RelTol : kFp32RelTol;
    char detail[160];
    snprintf(detail, sizeof(detail), "max-abs %.3e relative %.3e (tolerance %.1e)%s", maxAbs, rel, tol,
        finite ? "" : ", non-finite output");
    tally.check(finite && rel <= tol, label + " enqueue vs host library", detail);
}


PluginPtr lifeCycle(IPluginCreatorV3One* creator, Shape const& s, DataType type, bool int64Fields, Tally& tally,
    std::string const& label)
{
    SerializedFields serialized;
    tally.quiet = !gLogger.verbose;
    bool const built = buildPhase(creator, s, type, int64Fields, tally, label, serialized);
    PluginPtr plugin = built ? runtimePhase(creator, s, type, tally, label, serialized) : nullptr;
    tally.quiet = false;
    if (plugin != nullptr)
    {
        tally.check(true, label + " life cycle",
            std::string("createPlugin(kBUILD, ") + (int64Fields ? "kINT64" : "kINT32")
                + " fields) -> getOutputDataTypes -> getOutputShapes -> supportsFormatCombination -> "
                  "configurePlugin -> getFieldsToSerialize -> createPlugin(kRUNTIME) -> attachToContext -> "
                  "onShapeChange");
    }
    return plugin;
}

} // namespace lifecycle

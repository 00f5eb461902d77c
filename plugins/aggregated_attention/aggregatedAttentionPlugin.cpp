// TensorRT IPluginV3 plugin of the TransNeXt aggregated-attention op (see README.md).
//
// Every entry point that TensorRT calls with shapes validates them against the attributes before
// anything is read: a malformed node fails the build with a logged, specific error, and enqueue
// re-checks the concrete shapes, so the kernel never sees sizes it was not validated for.
#include "aggregatedAttentionPlugin.h"
#include "aggregatedAttentionKernel.cuh"

#include <atomic>
#include <cstdio>
#include <cstring>
#include <exception>
#include <new>

#if defined(_WIN32)
#define TRANSNEXT_AA_EXPORT __declspec(dllexport)
#else
#define TRANSNEXT_AA_EXPORT __attribute__((visibility("default")))
// getLogger() is TensorRT's. A weak reference lets the library load where TensorRT's symbols are
// not global (the Python wheels dlopen it RTLD_LOCAL), even with RTLD_NOW / LD_BIND_NOW: without
// load-time registration the library then needs no TensorRT symbol at all.
#pragma weak getLogger
// getPluginRegistry() likewise: load-time registration happens only where it resolves (below).
#pragma weak getPluginRegistry
#endif

using namespace nvinfer1;

namespace transnext
{
namespace aa
{
namespace
{

//! Set by setLoggerFinder() (below) when IPluginRegistry::loadLibrary loads the library. It then
//! names the logger of the builder or runtime that loaded it: the process may not export
//! getLogger() to this library at all (TensorRT dlopened RTLD_LOCAL, as the Python wheels do).
std::atomic<ILoggerFinder*> gLoggerFinder{nullptr};

void logMessage(ILogger::Severity severity, std::string const& text) noexcept
{
    try
    {
        std::string const line = std::string(kOpName) + ": " + text;
        ILoggerFinder* const finder = gLoggerFinder.load();
        ILogger* logger = finder != nullptr ? finder->findLogger() : nullptr;
        if (finder == nullptr && &::getLogger != nullptr)
        {
            logger = ::getLogger();
        }
        if (logger != nullptr)
        {
            logger->log(severity, line.c_str());
        }
        else
        {
            fprintf(stderr, "[%s] %s\n", severity <= ILogger::Severity::kERROR ? "E" : "W", line.c_str());
        }
    }
    catch (...)
    {
    }
}

void logError(std::string const& text) noexcept
{
    logMessage(ILogger::Severity::kERROR, text);
}

std::string dimsToString(Dims const& d)
{
    std::string s = "(";
    for (int32_t i = 0; i < d.nbDims; ++i)
    {
        s += (i ? ", " : "") + std::to_string(static_cast<long long>(d.d[i]));
    }
    return s + ")";
}

constexpr int32_t kInputRanks[kNumInputs] = {3, 3, 3, 2, 1, 2, 3, 2, 3};

bool isIoType(DataType t)
{
    return t == DataType::kFLOAT || t == DataType::kHALF;
}

} // namespace

// ------------------------------------------------------------------------------------ validation

std::string validateAttributes(Attributes const& a)
{
    int32_t const values[kNumAttributes] = {a.numHeads, a.height, a.width, a.windowSize, a.poolHeight, a.poolWidth};
    for (int32_t k = 0; k < kNumAttributes; ++k)
    {
        if (values[k] < 1)
        {
            return std::string("attribute '") + kAttributeNames[k] + "' is missing or < 1 (got "
                + std::to_string(values[k]) + ")";
        }
    }
    // Attributes alone: one batch, head_dim 1 (channels are checked with the tensor shapes).
    Problem const p = makeProblem(1, a.numHeads, a.numHeads, a.height, a.width, a.windowSize, a.poolHeight, a.poolWidth);
    char message[256];
    if (validateProblem(p, message, sizeof(message)) != kStatusOk)
    {
        return message;
    }
    return {};
}

std::string checkShapes(
    Attributes const& a, Dims const* in, int32_t nbInputs, Dims const* out, bool allowUnknown, Problem* problem)
{
    std::string const attrError = validateAttributes(a);
    if (!attrError.empty())
    {
        return attrError;
    }
    if (nbInputs != kNumInputs)
    {
        return "expected " + std::to_string(kNumInputs) + " inputs, got " + std::to_string(nbInputs);
    }
    for (int32_t k = 0; k < kNumInputs; ++k)
    {
        if (in[k].nbDims != kInputRanks[k])
        {
            return std::string("input ") + std::to_string(k) + " (" + kInputNames[k] + ") must have rank "
                + std::to_string(kInputRanks[k]) + ", got shape " + dimsToString(in[k]);
        }
    }
    int64_t const B = in[kQuery].d[0];
    int64_t const C = in[kQuery].d[2];
    int64_t const nh = a.numHeads;
    int64_t const N = static_cast<int64_t>(a.height) * a.width;
    int64_t const P = static_cast<int64_t>(a.poolHeight) * a.poolWidth;
    int64_t const L = static_cast<int64_t>(a.windowSize) * a.windowSize;
    if (C >= 0 && (C < 1 || C % nh != 0))
    {
        return "query channels C=" + std::to_string(C) + " must be a positive multiple of num_heads="
            + std::to_string(nh);
    }
    if (C < 0 && !allowUnknown)
    {
        return "query channels are unknown";
    }
    int64_t const d = C >= 0 ? C / nh : -1;
    int64_t const twoC = C >= 0 ? 2 * C : -1;
    // Expected shapes; -1 = not determined by the attributes (batch, or C while dynamic).
    int64_t const expected[kNumInputs][3] = {
        {B, N, C},
        {B, N, twoC},
        {B, P, twoC},
        {nh, d, -1},
        {nh, -1, -1},
        {nh, L, -1},
        {nh, d, L},
        {nh, L, -1},
        {nh, N, P},
    };
    for (int32_t k = 0; k < kNumInputs; ++k)
    {
        for (int32_t i = 0; i < kInputRanks[k]; ++i)
        {
            int64_t const got = in[k].d[i];
            int64_t const want = expected[k][i];
            if (got < 0)
            {
                if (!allowUnknown)
                {
                    return std::string("input ") + kInputNames[k] + " has an unknown dimension " + std::to_string(i)
                        + ": " + dimsToString(in[k]);
                }
                continue;
            }
            if (want >= 0 && got != want)
            {
                std::string w = "(";
                for (int32_t j = 0; j < kInputRanks[k]; ++j)
                {
                    w += (j ? ", " : "")
                        + (expected[k][j] >= 0 ? std::to_string(static_cast<long long>(expected[k][j]))
                                               : std::string(j == 0 && k < 3 ? "B" : "?"));
                }
                w += ")";
                return std::string("input ") + std::to_string(k) + " (" + kInputNames[k] + ") has shape "
                    + dimsToString(in[k]) + ", expected " + w + " for num_heads=" + std::to_string(nh)
                    + " height=" + std::to_string(a.height) + " width=" + std::to_string(a.width)
                    + " window_size=" + std::to_string(a.windowSize) + " pool_height=" + std::to_string(a.poolHeight)
                    + " pool_width=" + std::to_string(a.poolWidth);
            }
        }
    }
    // The batch must agree across the three activations.
    for (int32_t k : {kKeyValue, kPooledKeyValue})
    {
        if (B >= 0 && in[k].d[0] >= 0 && in[k].d[0] != B)
        {
            return std::string(kInputNames[k]) + " has batch " + std::to_string(in[k].d[0]) + ", query has "
                + std::to_string(B);
        }
    }
    if (out != nullptr)
    {
        if (out->nbDims != 3 || (out->d[1] >= 0 && out->d[1] != N) || (C >= 0 && out->d[2] >= 0 && out->d[2] != C)
            || (B >= 0 && out->d[0] >= 0 && out->d[0] != B))
        {
            return "output has shape " + dimsToString(*out) + ", expected the query's " + dimsToString(in[kQuery]);
        }
    }
    if (B < 0 && !allowUnknown)
    {
        return "batch is unknown";
    }
    Problem const p = makeProblem(B >= 0 ? B : 1, C >= 0 ? C : nh, nh, a.height, a.width, a.windowSize,
        a.poolHeight, a.poolWidth);
    char message[256];
    if (validateProblem(p, message, sizeof(message)) != kStatusOk)
    {
        return message;
    }
    if (problem != nullptr)
    {
        *problem = p;
    }
    return {};
}

// ------------------------------------------------------------------------------------ plugin

AggregatedAttentionPlugin::AggregatedAttentionPlugin(Attributes const& attrs, std::string const& pluginNamespace)
    : mAttrs(attrs)
    , mNamespace(pluginNamespace)
{
}

IPluginCapability* AggregatedAttentionPlugin::getCapabilityInterface(PluginCapabilityType type) noexcept
{
    switch (type)
    {
    case PluginCapabilityType::kCORE: return static_cast<IPluginV3OneCore*>(this);
    case PluginCapabilityType::kBUILD: return static_cast<IPluginV3OneBuild*>(this);
    case PluginCapabilityType::kRUNTIME: return static_cast<IPluginV3OneRuntime*>(this);
    }
    return nullptr;
}

IPluginV3* AggregatedAttentionPlugin::clone() noexcept
{
    try
    {
        return new AggregatedAttentionPlugin(mAttrs, mNamespace);
    }
    catch (std::exception const& e)
    {
        logError(std::string("clone failed: ") + e.what());
    }
    return nullptr;
}

char const* AggregatedAttentionPlugin::getPluginName() const noexcept
{
    return kOpName;
}

char const* AggregatedAttentionPlugin::getPluginVersion() const noexcept
{
    return kPluginVersion;
}

char const* AggregatedAttentionPlugin::getPluginNamespace() const noexcept
{
    return mNamespace.c_str();
}

int32_t AggregatedAttentionPlugin::getNbOutputs() const noexcept
{
    return kNumOutputs;
}

int32_t AggregatedAttentionPlugin::getOutputDataTypes(
    DataType* outputTypes, int32_t nbOutputs, DataType const* inputTypes, int32_t nbInputs) const noexcept
{
    if (nbInputs != kNumInputs || nbOutputs != kNumOutputs || outputTypes == nullptr || inputTypes == nullptr)
    {
        logError("expected 9 inputs and 1 output, got " + std::to_string(nbInputs) + " inputs and "
            + std::to_string(nbOutputs) + " outputs");
        return -1;
    }
    for (int32_t k = 0; k < nbInputs; ++k)
    {
        if (!isIoType(inputTypes[k]) || inputTypes[k] != inputTypes[0])
        {
            logError(std::string("input ") + kInputNames[k]
                + " must be float32 or float16, and all inputs must have the query's type");
            return -1;
        }
    }
    outputTypes[0] = inputTypes[0];
    return 0;
}

int32_t AggregatedAttentionPlugin::getOutputShapes(DimsExprs const* inputs, int32_t nbInputs,
    DimsExprs const* /*shapeInputs*/, int32_t nbShapeInputs, DimsExprs* outputs, int32_t nbOutputs,
    IExprBuilder& exprBuilder) noexcept
{
    try
    {
        if (nbInputs != kNumInputs || nbOutputs != kNumOutputs || nbShapeInputs != 0 || inputs == nullptr
            || outputs == nullptr)
        {
            logError("expected 9 inputs, 0 shape inputs and 1 output, got " + std::to_string(nbInputs) + ", "
                + std::to_string(nbShapeInputs) + " and " + std::to_string(nbOutputs));
            return -1;
        }
        std::string const attrError = validateAttributes(mAttrs);
        if (!attrError.empty())
        {
            logError(attrError);
            return -1;
        }
        // Static checks of whatever is already a build-time constant.
        Dims known[kNumInputs];
        for (int32_t k = 0; k < kNumInputs; ++k)
        {
            known[k].nbDims = inputs[k].nbDims;
            if (inputs[k].nbDims < 0 || inputs[k].nbDims > Dims::MAX_DIMS)
            {
                logError(std::string("input ") + kInputNames[k] + " has an invalid rank");
                return -1;
            }
            for (int32_t i = 0; i < inputs[k].nbDims; ++i)
            {
                IDimensionExpr const* e = inputs[k].d[i];
                known[k].d[i] = (e != nullptr && e->isConstant()) ? e->getConstantValue() : -1;
            }
        }
        std::string const shapeError = checkShapes(mAttrs, known, kNumInputs, nullptr, true, nullptr);
        if (!shapeError.empty())
        {
            logError(shapeError);
            return -1;
        }
        int64_t const N = static_cast<int64_t>(mAttrs.height) * mAttrs.width;
        outputs[0].nbDims = 3;
        outputs[0].d[0] = inputs[kQuery].d[0];                // batch (dynamic)
        outputs[0].d[1] = exprBuilder.constant(N);              // N = height * width
        outputs[0].d[2] = inputs[kQuery].d[2];                // C
        return 0;
    }
    catch (std::exception const& e)
    {
        logError(std::string("getOutputShapes failed: ") + e.what());
    }
    return -1;
}

bool AggregatedAttentionPlugin::supportsFormatCombination(
    int32_t pos, DynamicPluginTensorDesc const* inOut, int32_t nbInputs, int32_t nbOutputs) noexcept
{
    if (inOut == nullptr || nbInputs != kNumInputs || nbOutputs != kNumOutputs || pos < 0
        || pos >= nbInputs + nbOutputs)
    {
        return false;
    }
    PluginTensorDesc const& desc = inOut[pos].desc;
    if (desc.format != TensorFormat::kLINEAR)
    {
        return false;
    }
    if (pos == 0)
    {
        return isIoType(desc.type);
    }
    return desc.type == inOut[0].desc.type;
}

int32_t AggregatedAttentionPlugin::configurePlugin(
    DynamicPluginTensorDesc const* in, int32_t nbInputs, DynamicPluginTensorDesc const* out, int32_t nbOutputs) noexcept
{
    try
    {
        if (in == nullptr || out == nullptr || nbInputs != kNumInputs || nbOutputs != kNumOutputs)
        {
            logError("configurePlugin: expected 9 inputs and 1 output, got " + std::to_string(nbInputs) + " and "
                + std::to_string(nbOutputs));
            return -1;
        }
        Dims dims[kNumInputs];
        Dims maxDims[kNumInputs];
        for (int32_t k = 0; k < kNumInputs; ++k)
        {
            dims[k] = in[k].desc.dims;
            maxDims[k] = in[k].max;
            if (in[k].desc.type != in[0].desc.type || !isIoType(in[k].desc.type))
            {
                logError(std::string("input ") + kInputNames[k] + " must be float32 or float16 like query");
                return -1;
            }
        }
        std::string error = checkShapes(mAttrs, dims, kNumInputs, &out[0].desc.dims, true, nullptr);
        if (error.empty() && maxDims[kQuery].nbDims == 3 && maxDims[kQuery].d[0] > 0)
        {
            // The largest batch of the optimisation profile must be within the kernel's limits.
            error = checkShapes(mAttrs, maxDims, kNumInputs, nullptr, true, nullptr);
        }
        if (!error.empty())
        {
            logError(error);
            return -1;
        }
        return 0;
    }
    catch (std::exception const& e)
    {
        logError(std::string("configurePlugin failed: ") + e.what());
    }
    return -1;
}

size_t AggregatedAttentionPlugin::getWorkspaceSize(DynamicPluginTensorDesc const* /*inputs*/, int32_t /*nbInputs*/,
    DynamicPluginTensorDesc const* /*outputs*/, int32_t /*nbOutputs*/) const noexcept
{
    return kWorkspaceBytes;
}

int32_t AggregatedAttentionPlugin::onShapeChange(
    PluginTensorDesc const* in, int32_t nbInputs, PluginTensorDesc const* out, int32_t nbOutputs) noexcept
{
    try
    {
        if (in == nullptr || out == nullptr || nbInputs != kNumInputs || nbOutputs != kNumOutputs)
        {
            logError("onShapeChange: expected 9 inputs and 1 output");
            return -1;
        }
        Dims dims[kNumInputs];
        for (int32_t k = 0; k < kNumInputs; ++k)
        {
            dims[k] = in[k].dims;
        }
        std::string const error = checkShapes(mAttrs, dims, kNumInputs, &out[0].dims, false, nullptr);
        if (!error.empty())
        {
            logError(error);
            return -1;
        }
        return 0;
    }
    catch (std::exception const& e)
    {
        logError(std::string("onShapeChange failed: ") + e.what());
    }
    return -1;
}

int32_t AggregatedAttentionPlugin::enqueue(PluginTensorDesc const* inputDesc, PluginTensorDesc const* outputDesc,
    void const* const* inputs, void* const* outputs, void* /*workspace*/, cudaStream_t stream) noexcept
{
    try
    {
        if (inputDesc == nullptr || outputDesc == nullptr || inputs == nullptr || outputs == nullptr)
        {
            logError("enqueue: null descriptor or buffer array");
            return -1;
        }
        Dims dims[kNumInputs];
        for (int32_t k = 0; k < kNumInputs; ++k)
        {
            dims[k] = inputDesc[k].dims;
            if (inputDesc[k].type != inputDesc[0].type)
            {
                logError("enqueue: inputs have different types");
                return -1;
            }
        }
        Problem problem{};
        std::string const error = checkShapes(mAttrs, dims, kNumInputs, &outputDesc[0].dims, false, &problem);
        if (!error.empty())
        {
            logError("enqueue: " + error);
            return -1;
        }
        if (problem.numTokens == 0 || problem.batch == 0)
        {
            return 0;
        }
        IoType type{};
        if (inputDesc[0].type == DataType::kFLOAT)
        {
            type = IoType::kFloat32;
        }
        else if (inputDesc[0].type == DataType::kHALF)
        {
            type = IoType::kFloat16;
        }
        else
        {
            logError("enqueue: unsupported data type");
            return -1;
        }
        cudaError_t const status = launchAggregatedAttention(type, problem, inputs, outputs[0], stream);
        if (status != cudaSuccess)
        {
            logError(std::string("kernel launch failed: ") + cudaGetErrorString(status));
            return -1;
        }
        return 0;
    }
    catch (std::exception const& e)
    {
        logError(std::string("enqueue failed: ") + e.what());
    }
    return -1;
}

IPluginV3* AggregatedAttentionPlugin::attachToContext(IPluginResourceContext* /*context*/) noexcept
{
    return clone();
}

PluginFieldCollection const* AggregatedAttentionPlugin::getFieldsToSerialize() noexcept
{
    try
    {
        int32_t const values[kNumAttributes]
            = {mAttrs.numHeads, mAttrs.height, mAttrs.width, mAttrs.windowSize, mAttrs.poolHeight, mAttrs.poolWidth};
        mSerialFields.clear();
        for (int32_t k = 0; k < kNumAttributes; ++k)
        {
            mSerialValues[k] = values[k];
            mSerialFields.emplace_back(kAttributeNames[k], &mSerialValues[k], PluginFieldType::kINT32, 1);
        }
        mSerialCollection.nbFields = static_cast<int32_t>(mSerialFields.size());
        mSerialCollection.fields = mSerialFields.data();
        return &mSerialCollection;
    }
    catch (std::exception const& e)
    {
        logError(std::string("getFieldsToSerialize failed: ") + e.what());
    }
    return nullptr;
}

// ------------------------------------------------------------------------------------ creator

AggregatedAttentionPluginCreator::AggregatedAttentionPluginCreator()
    : mNamespace(kPluginNamespace)
{
    for (int32_t k = 0; k < kNumAttributes; ++k)
    {
        mFieldNames.emplace_back(kAttributeNames[k], nullptr, PluginFieldType::kINT32, 1);
    }
    mFieldCollection.nbFields = static_cast<int32_t>(mFieldNames.size());
    mFieldCollection.fields = mFieldNames.data();
}

PluginFieldCollection const* AggregatedAttentionPluginCreator::getFieldNames() noexcept
{
    return &mFieldCollection;
}

char const* AggregatedAttentionPluginCreator::getPluginName() const noexcept
{
    return kOpName;
}

char const* AggregatedAttentionPluginCreator::getPluginVersion() const noexcept
{
    return kPluginVersion;
}

char const* AggregatedAttentionPluginCreator::getPluginNamespace() const noexcept
{
    return mNamespace.c_str();
}

std::string AggregatedAttentionPluginCreator::parseFields(PluginFieldCollection const* fc, Attributes& attrs)
{
    if (fc == nullptr || fc->nbFields < 0 || (fc->nbFields > 0 && fc->fields == nullptr))
    {
        return "no plugin fields given (expected the attributes num_heads, height, width, window_size, pool_height, "
               "pool_width)";
    }
    int32_t* targets[kNumAttributes]
        = {&attrs.numHeads, &attrs.height, &attrs.width, &attrs.windowSize, &attrs.poolHeight, &attrs.poolWidth};
    for (int32_t f = 0; f < fc->nbFields; ++f)
    {
        PluginField const& field = fc->fields[f];
        if (field.name == nullptr)
        {
            continue;
        }
        std::string const name(field.name);
        if (name == kPluginVersionAttribute)
        {
            if (field.type == PluginFieldType::kCHAR && field.data != nullptr && field.length > 0)
            {
                std::string value(static_cast<char const*>(field.data), static_cast<size_t>(field.length));
                value = value.c_str(); // drop a trailing NUL
                if (value != kPluginVersion)
                {
                    return "plugin_version '" + value + "' is not supported (this library implements version "
                        + kPluginVersion + ")";
                }
            }
            continue;
        }
        int32_t index = -1;
        for (int32_t k = 0; k < kNumAttributes; ++k)
        {
            if (name == kAttributeNames[k])
            {
                index = k;
            }
        }
        if (index < 0)
        {
            logMessage(ILogger::Severity::kWARNING, "ignoring unknown plugin field '" + name + "'");
            continue;
        }
        if (field.data == nullptr || field.length != 1)
        {
            return "attribute '" + name + "' must hold exactly one integer (length "
                + std::to_string(field.length) + ")";
        }
        int64_t value = 0;
        switch (field.type)
        {
        case PluginFieldType::kINT32: value = *static_cast<int32_t const*>(field.data); break;
        case PluginFieldType::kINT64: value = *static_cast<int64_t const*>(field.data); break;
        case PluginFieldType::kINT16: value = *static_cast<int16_t const*>(field.data); break;
        case PluginFieldType::kINT8: value = *static_cast<int8_t const*>(field.data); break;
        default: return "attribute '" + name + "' must be an integer (INT32 or INT64 plugin field)";
        }
        if (value < 1 || value > INT32_MAX)
        {
            return "attribute '" + name + "' must be in [1, 2^31-1], got " + std::to_string(static_cast<long long>(value));
        }
        *targets[index] = static_cast<int32_t>(value);
    }
    return validateAttributes(attrs);
}

IPluginV3* AggregatedAttentionPluginCreator::createPlugin(
    char const* name, PluginFieldCollection const* fc, TensorRTPhase /*phase*/) noexcept
{
    try
    {
        Attributes attrs;
        std::string const error = parseFields(fc, attrs);
        if (!error.empty())
        {
            logError(std::string("cannot create plugin") + (name != nullptr ? std::string(" '") + name + "'" : "")
                + ": " + error);
            return nullptr;
        }
        return new AggregatedAttentionPlugin(attrs, mNamespace);
    }
    catch (std::exception const& e)
    {
        logError(std::string("createPlugin failed: ") + e.what());
    }
    return nullptr;
}

} // namespace aa
} // namespace transnext

// ---------------------------------------------------------------------------------------- registration
//
// Two ways to make TensorRT see the creator:
//  * load-time registration: any dlopen of libtransnext_aa_plugin.so registers it in the global
//    registry -- trtexec --staticPlugins, polygraphy --plugins, ctypes.CDLL in Python once
//    TensorRT's library is global;
//  * getCreators(): the V3 entry point IPluginRegistry::loadLibrary calls -- trtexec
//    --dynamicPlugins, --setPluginsToSerialize (version-compatible engines), registry.load_library.
// loadLibrary refuses a library whose creator is already registered ("exists already"), and then
// unloads it; it also refuses a library that hands over no creator. So the load-time registration
// is done by hand rather than with REGISTER_TENSORRT_PLUGIN: getPluginRegistry is a weak reference
// (where TensorRT's symbols are not global, as in the Python wheels, nothing is registered when
// loaded and the library still loads), and getCreators() withdraws the load-time registration
// before it hands the creator to loadLibrary, which registers it again and keeps the library
// loaded. Either library then loads through loadLibrary in any process. CMake builds the same
// source twice: libtransnext_aa_plugin.so with load-time registration and
// libtransnext_aa_plugin_dynamic.so without it (TRANSNEXT_AA_STATIC_REGISTRATION undefined).
// loadLibrary (TensorRT 10, 11, TensorRT-RTX) also requires setLoggerFinder(): without it the
// library is skipped ("SymbolAddress for setLoggerFinder could not be loaded") and nothing is
// registered, so both libraries export it.

namespace
{

transnext::aa::AggregatedAttentionPluginCreator& theCreator()
{
    static transnext::aa::AggregatedAttentionPluginCreator creator;
    return creator;
}

//! The registry the creator was registered in when the library was loaded, or null.
std::atomic<IPluginRegistry*> gRegisteredWhenLoaded{nullptr};

#if defined(TRANSNEXT_AA_STATIC_REGISTRATION) && TRANSNEXT_AA_STATIC_REGISTRATION
struct RegisterWhenLoaded
{
    RegisterWhenLoaded()
    {
        if (&::getPluginRegistry == nullptr)
        {
            return; // TensorRT's symbols are not global here: loadLibrary's getCreators() path registers it
        }
        IPluginRegistry* const registry = ::getPluginRegistry();
        if (registry != nullptr && registry->registerCreator(theCreator(), ""))
        {
            gRegisteredWhenLoaded.store(registry);
        }
    }
};
RegisterWhenLoaded const gRegisterWhenLoaded;
#endif

} // namespace

extern "C" TRANSNEXT_AA_EXPORT nvinfer1::IPluginCreatorInterface* const* getCreators(int32_t& nbCreators)
{
    static nvinfer1::IPluginCreatorInterface* const creators[] = {&theCreator()};
    if (IPluginRegistry* const registry = gRegisteredWhenLoaded.exchange(nullptr))
    {
        registry->deregisterCreator(theCreator()); // loadLibrary registers it now (see above)
    }
    nbCreators = 1;
    return creators;
}

extern "C" TRANSNEXT_AA_EXPORT void setLoggerFinder(nvinfer1::ILoggerFinder* finder)
{
    transnext::aa::gLoggerFinder.store(finder);
}

// Life-cycle driver of the TensorRT plugin: runs the plugin through its IPluginV3 interfaces in the
// order TensorRT does, on a real GPU, without libnvinfer, and checks every output against the host
// library (the same arithmetic on the CPU, aggregatedAttentionHost.h).
//
//   getCreators() -> IPluginCreatorV3One::createPlugin(fields, kBUILD)
//     -> getOutputDataTypes -> getOutputShapes (through a stand-in IExprBuilder) -> supportsFormatCombination
//     -> configurePlugin -> getWorkspaceSize -> getFieldsToSerialize
//     -> createPlugin(serialised fields, kRUNTIME) -> attachToContext -> onShapeChange -> enqueue
//
// Cases: every variant's aggregated-attention stages at 224 and 384 (batch 8 and 2), grids 1x9 and
// 8x1, windows 5 and 7, head dims 8 to 64, P = 400 (pooled rows staged in tiles), fp32 and fp16;
// then shapes the plugin must refuse (a wrong pool_bias at enqueue, ...) with a non-zero status and
// a logged message naming the problem.
//
// Usage: transnext_aa_plugin_lifecycle [--no-gpu] [--quick] [--list] [--case TEXT] [--seed N]
//   --no-gpu   interface and refusal checks only (no CUDA call): for machines without a GPU
//   --quick    one resolution (224) and batch 2 for the variant stages
//   --list     print the cases and exit
//   --case     only cases whose name contains TEXT
// Prints one line per check (max-abs and relative error for numerical ones) and a summary line;
// exits 0 when everything passed, 1 on a failed check, 2 on bad usage, 3 when no CUDA device is usable.
//
// Not a public TensorRT pattern: IExprBuilder/IDimensionExpr are normally made by TensorRT only.
// The driver gives them its own implementation objects (the apiv::V* classes of NvInferImpl.h,
// unchanged from TensorRT 10.3 to 11.1) so that getOutputShapes can be called without libnvinfer.
#include "aggregatedAttentionContract.h"
#include "aggregatedAttentionHost.h"
#include "aggregatedAttentionPlugin.h"

#include <NvInferRuntime.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

using namespace nvinfer1;
namespace aa = transnext::aa;

// ------------------------------------------------------------------------------------ tolerances

// max |kernel - host| / max |host|. fp32: the kernel and the host library run the same arithmetic;
// only the order of fused multiply-adds and the device's expf/logf differ.
constexpr double kFp32RelTol = 1e-5;
// fp16 storage: arithmetic is fp32 with one rounding on the store (README, "Precision"), so the
// kernel is within half an fp16 ulp of the host's fp32 result on the same fp16 inputs; allowed: one
// ulp (2^-10) of the largest output.
constexpr double kFp16RelTol = 1.0 / 1024.0;

// ------------------------------------------------------------------------------------ stubs for libnvinfer

namespace
{
//! Keeps the plugin's last error line, so refusal checks can look for the reason.
class RecordingLogger final : public ILogger
{
public:
    void log(Severity severity, AsciiChar const* msg) noexcept override
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
    std::string last;
    bool verbose{false};
};

RecordingLogger gLogger;
} // namespace

//! The plugin logs through getLogger(), which libnvinfer normally provides.
extern "C" ILogger* getLogger() noexcept
{
    return &gLogger;
}

//! getCreators() of aggregatedAttentionPlugin.cpp (declared there with TRANSNEXT_AA_EXPORT).
extern "C" IPluginCreatorInterface* const* getCreators(int32_t& nbCreators);

namespace
{

class DimExprImpl final : public apiv::VDimensionExpr
{
public:
    explicit DimExprImpl(int64_t value, bool constant)
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

class DimExpr final : public IDimensionExpr
{
public:
    explicit DimExpr(apiv::VDimensionExpr* impl)
    {
        mImpl = impl;
    }
    ~DimExpr() noexcept override = default;
};

//! Expressions for getOutputShapes: constants, and "unknown" (a dynamic dimension such as the batch).
class ExprPool final : public apiv::VExprBuilder
{
public:
    IDimensionExpr const* constant(int64_t value) override
    {
        return make(value, true);
    }
    IDimensionExpr const* unknown()
    {
        return make(-1, false);
    }
    IDimensionExpr const* operation(DimensionOperation, IDimensionExpr const&, IDimensionExpr const&) override
    {
        return unknown(); // the plugin does no arithmetic on expressions
    }
    IDimensionExpr const* declareSizeTensor(int32_t, IDimensionExpr const&, IDimensionExpr const&) override
    {
        return nullptr;
    }

private:
    IDimensionExpr const* make(int64_t value, bool isConstant)
    {
        mImpls.push_back(std::make_unique<DimExprImpl>(value, isConstant));
        mExprs.push_back(std::make_unique<DimExpr>(mImpls.back().get()));
        return mExprs.back().get();
    }
    std::vector<std::unique_ptr<DimExprImpl>> mImpls;
    std::vector<std::unique_ptr<DimExpr>> mExprs;
};

class ExprBuilder final : public IExprBuilder
{
public:
    explicit ExprBuilder(ExprPool* pool)
    {
        mImpl = pool;
    }
    ~ExprBuilder() noexcept override = default;
};

//! attachToContext's argument; the plugin needs neither an allocator nor an error recorder.
class ResourceContext final : public IPluginResourceContext
{
public:
    IGpuAllocator* getGpuAllocator() const noexcept override
    {
        return nullptr;
    }
    IErrorRecorder* getErrorRecorder() const noexcept override
    {
        return nullptr;
    }
};

// ------------------------------------------------------------------------------------ cases

struct Shape
{
    std::string name;
    int64_t batch;
    int32_t height, width, numHeads, headDim, window, poolHeight, poolWidth;

    int64_t channels() const
    {
        return static_cast<int64_t>(numHeads) * headDim;
    }
    int64_t tokens() const
    {
        return static_cast<int64_t>(height) * width;
    }
    int64_t pooled() const
    {
        return static_cast<int64_t>(poolHeight) * poolWidth;
    }
    int64_t local() const
    {
        return static_cast<int64_t>(window) * window;
    }
};

struct Variant
{
    char const* name;
    int32_t dims[4];
    int32_t heads[4];
    int32_t sr[4];
    int32_t window[4]; // 0: full attention (not this op)
};

// The published configurations (transnext_deploy/models/transnext.py, VARIANTS); small shares tiny's stages.
constexpr Variant kVariants[] = {
    {"micro", {48, 96, 192, 384}, {2, 4, 8, 16}, {8, 4, 2, 1}, {3, 3, 3, 0}},
    {"tiny", {72, 144, 288, 576}, {3, 6, 12, 24}, {8, 4, 2, 1}, {3, 3, 3, 0}},
    {"small", {72, 144, 288, 576}, {3, 6, 12, 24}, {8, 4, 2, 1}, {3, 3, 3, 0}},
    {"base", {96, 192, 384, 768}, {4, 8, 16, 32}, {8, 4, 2, 1}, {3, 3, 3, 0}},
    {"micro_AAAA", {48, 96, 192, 384}, {2, 4, 8, 16}, {16, 8, 4, 2}, {3, 3, 3, 3}},
};

//! Token grid of each stage: the patch embeddings are convolutions (7, stride 4, pad 3), then (3, 2, 1).
void stageGrids(int32_t side, int32_t grids[4])
{
    int32_t s = (side + 2 * 3 - 7) / 4 + 1;
    for (int32_t i = 0; i < 4; ++i)
    {
        grids[i] = s;
        s = (s + 2 * 1 - 3) / 2 + 1;
    }
}

std::vector<Shape> makeCases(bool quick)
{
    std::vector<Shape> cases;
    std::vector<int32_t> const sides = quick ? std::vector<int32_t>{224} : std::vector<int32_t>{224, 384};
    for (int32_t side : sides)
    {
        int32_t grids[4];
        stageGrids(side, grids);
        for (Variant const& v : kVariants)
        {
            if (std::strcmp(v.name, "small") == 0)
            {
                continue; // same stage shapes as tiny
            }
            for (int32_t s = 0; s < 4; ++s)
            {
                if (v.window[s] == 0)
                {
                    continue;
                }
                int32_t const g = grids[s];
                int32_t const p = g / v.sr[s];
                int64_t const batch = quick ? 2 : (side == 224 ? 8 : 2);
                cases.push_back({std::string(v.name) + (std::strcmp(v.name, "tiny") == 0 ? "/small" : "") + "-stage"
                        + std::to_string(s + 1) + "@" + std::to_string(side),
                    batch, g, g, v.heads[s], v.dims[s] / v.heads[s], v.window[s], p, p});
            }
        }
    }
    // Border cases: one-row and one-column grids, large windows, every head-dim bucket, tiled P.
    cases.push_back({"grid-1x9-w3-d24", 3, 1, 9, 2, 24, 3, 1, 3});
    cases.push_back({"grid-8x1-w3-d24", 3, 8, 1, 2, 24, 3, 2, 1});
    cases.push_back({"grid-1x9-w7-d16", 2, 1, 9, 3, 16, 7, 1, 2});
    cases.push_back({"w5-d8", 2, 9, 11, 4, 8, 5, 3, 3});
    cases.push_back({"w7-d32", 2, 12, 10, 2, 32, 7, 4, 2});
    cases.push_back({"w5-d40", 2, 7, 7, 2, 40, 5, 2, 2});
    cases.push_back({"w3-d48", 2, 10, 9, 2, 48, 3, 3, 3});
    cases.push_back({"w5-d64", 2, 8, 8, 1, 64, 5, 2, 2});
    cases.push_back({"tiled-P400-d24", 2, 20, 20, 3, 24, 3, 20, 20});
    cases.push_back({"tiled-P400-d64-w7", 1, 21, 19, 2, 64, 7, 20, 20});
    return cases;
}

// ------------------------------------------------------------------------------------ data

struct HostData
{
    std::vector<float> inputs[aa::kNumInputs];
};

std::vector<int64_t> inputShape(Shape const& s, int32_t k)
{
    int64_t const B = s.batch, N = s.tokens(), C = s.channels(), P = s.pooled(), nh = s.numHeads, d = s.headDim,
                  L = s.local();
    switch (k)
    {
    case aa::kQuery: return {B, N, C};
    case aa::kKeyValue: return {B, N, 2 * C};
    case aa::kPooledKeyValue: return {B, P, 2 * C};
    case aa::kQueryEmbedding: return {nh, d};
    case aa::kTemperatureScale: return {nh};
    case aa::kLocalBias: return {nh, L};
    case aa::kLearnableTokens: return {nh, d, L};
    case aa::kLearnableBias: return {nh, L};
    case aa::kPoolBias: return {nh, N, P};
    default: return {};
    }
}

int64_t elements(std::vector<int64_t> const& shape)
{
    int64_t n = 1;
    for (int64_t v : shape)
    {
        n *= v;
    }
    return n;
}

Dims toDims(std::vector<int64_t> const& shape)
{
    Dims d{};
    d.nbDims = static_cast<int32_t>(shape.size());
    for (size_t i = 0; i < shape.size(); ++i)
    {
        d.d[i] = shape[i];
    }
    return d;
}

//! Random inputs at the scales of a trained block (temperature_scale positive, as softplus makes it).
HostData makeData(Shape const& s, uint32_t seed, bool roundToHalf)
{
    std::mt19937 gen(seed);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    float const scales[aa::kNumInputs] = {1.0f, 1.0f, 1.0f, 0.5f, 1.0f, 0.5f, 0.3f, 0.3f, 0.5f};
    HostData data;
    for (int32_t k = 0; k < aa::kNumInputs; ++k)
    {
        std::vector<float>& v = data.inputs[k];
        v.resize(static_cast<size_t>(elements(inputShape(s, k))));
        for (float& x : v)
        {
            x = normal(gen) * scales[k];
            if (k == aa::kTemperatureScale)
            {
                x = std::log1p(std::exp(x)) + 0.25f;
            }
            if (roundToHalf)
            {
                x = transnext_aa_half_to_float(transnext_aa_float_to_half(x));
            }
        }
    }
    return data;
}

std::vector<float> hostReference(Shape const& s, HostData const& data, std::string& error)
{
    std::vector<float> out(static_cast<size_t>(s.batch * s.tokens() * s.channels()));
    char message[512];
    int32_t const threads = static_cast<int32_t>(std::max(1u, std::thread::hardware_concurrency()));
    auto const& in = data.inputs;
    int32_t const status = transnext_aa_forward_f32(in[0].data(), in[1].data(), in[2].data(), in[3].data(),
        in[4].data(), in[5].data(), in[6].data(), in[7].data(), in[8].data(), out.data(), s.batch, s.channels(),
        s.numHeads, s.height, s.width, s.window, s.poolHeight, s.poolWidth, threads, message, sizeof(message));
    if (status != TRANSNEXT_AA_OK)
    {
        error = std::string("host library refused the case: ") + message;
    }
    return out;
}

// ------------------------------------------------------------------------------------ reporting

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

// ------------------------------------------------------------------------------------ life cycle

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
struct Fields
{
    int32_t values32[aa::kNumAttributes];
    int64_t values64[aa::kNumAttributes];
    std::vector<PluginField> fields;
    PluginFieldCollection collection{};

    Fields(Shape const& s, bool int64, int32_t skip = -1, int32_t overrideIndex = -1, int32_t overrideValue = 0)
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
};

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

struct PluginDeleter
{
    void operator()(IPluginV3* p) const
    {
        delete p;
    }
};
using PluginPtr = std::unique_ptr<IPluginV3, PluginDeleter>;

template <typename T>
T* capability(IPluginV3* plugin, PluginCapabilityType type)
{
    return plugin == nullptr ? nullptr : static_cast<T*>(plugin->getCapabilityInterface(type));
}

//! Descriptors of the nine inputs and the output; `batchDynamic` puts -1 in the build-time batch.
struct Descs
{
    DynamicPluginTensorDesc dyn[aa::kNumInputs];
    DynamicPluginTensorDesc dynOut[1];
    PluginTensorDesc desc[aa::kNumInputs];
    PluginTensorDesc descOut[1];
    DataType types[aa::kNumInputs];

    Descs(Shape const& s, DataType type, int64_t maxBatch)
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
};

std::string describe(Shape const& s)
{
    char buf[256];
    snprintf(buf, sizeof(buf), "B=%lld H=%d W=%d nh=%d d=%d w=%d P=%dx%d", static_cast<long long>(s.batch), s.height,
        s.width, s.numHeads, s.headDim, s.window, s.poolHeight, s.poolWidth);
    return buf;
}

//! Build phase through configurePlugin and getFieldsToSerialize; returns the serialised fields.
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

// ------------------------------------------------------------------------------------ refusals

bool logged(char const* fragment)
{
    return gLogger.last.find(fragment) != std::string::npos;
}

void refusals(IPluginCreatorV3One* creator, Tally& tally)
{
    Shape const good{"refusals", 2, 4, 4, 2, 24, 3, 2, 2};
    {
        Fields missing(good, false, /*skip=*/3);
        gLogger.last.clear();
        PluginPtr p(creator->createPlugin("missing", &missing.collection, TensorRTPhase::kBUILD));
        tally.check(p == nullptr && logged("window_size"), "refuse createPlugin without window_size", gLogger.last);
    }
    {
        Fields even(good, false, -1, /*overrideIndex=*/3, /*value=*/4);
        gLogger.last.clear();
        PluginPtr p(creator->createPlugin("even", &even.collection, TensorRTPhase::kBUILD));
        tally.check(p == nullptr && logged("window_size"), "refuse createPlugin with window_size 4", gLogger.last);
    }
    {
        Fields negative(good, true, -1, /*overrideIndex=*/0, /*value=*/-2);
        gLogger.last.clear();
        PluginPtr p(creator->createPlugin("negative", &negative.collection, TensorRTPhase::kBUILD));
        tally.check(p == nullptr && logged("num_heads"), "refuse createPlugin with num_heads -2 (kINT64)", gLogger.last);
    }

    Fields fields(good, false);
    gLogger.last.clear();
    PluginPtr plugin(creator->createPlugin("refusals", &fields.collection, TensorRTPhase::kBUILD));
    if (!tally.check(plugin != nullptr, "refusals: createPlugin(kBUILD) of the good shape", gLogger.last))
    {
        return;
    }
    auto* build = capability<IPluginV3OneBuild>(plugin.get(), PluginCapabilityType::kBUILD);
    auto* runtime = capability<IPluginV3OneRuntime>(plugin.get(), PluginCapabilityType::kRUNTIME);

    {
        Descs d(good, DataType::kFLOAT, good.batch);
        d.types[aa::kLearnableBias] = DataType::kHALF;
        DataType out = DataType::kFLOAT;
        gLogger.last.clear();
        int32_t const status = build->getOutputDataTypes(&out, 1, d.types, aa::kNumInputs);
        tally.check(status != 0 && logged("learnable_bias"), "refuse getOutputDataTypes with a float16 learnable_bias",
            gLogger.last);
    }
    {
        ExprPool pool;
        ExprBuilder builder(&pool);
        DimsExprs in[aa::kNumInputs];
        for (int32_t k = 0; k < aa::kNumInputs; ++k)
        {
            std::vector<int64_t> shape = inputShape(good, k);
            if (k == aa::kPoolBias)
            {
                shape[2] += 1; // (nh, N, P + 1)
            }
            in[k].nbDims = static_cast<int32_t>(shape.size());
            for (size_t i = 0; i < shape.size(); ++i)
            {
                in[k].d[i] = pool.constant(shape[i]);
            }
        }
        DimsExprs out[1]{};
        gLogger.last.clear();
        int32_t const status = build->getOutputShapes(in, aa::kNumInputs, nullptr, 0, out, 1, builder);
        tally.check(status != 0 && logged("pool_bias"), "refuse getOutputShapes with pool_bias (nh, N, P+1)",
            gLogger.last);
    }
    {
        Descs d(good, DataType::kFLOAT, good.batch);
        d.dyn[aa::kQuery].desc.dims.d[2] = 49; // C = 49, not a multiple of num_heads = 2
        gLogger.last.clear();
        int32_t const status = build->configurePlugin(d.dyn, aa::kNumInputs, d.dynOut, 1);
        tally.check(status != 0 && logged("num_heads"), "refuse configurePlugin with C=49 and num_heads=2", gLogger.last);
    }
    {
        Descs d(good, DataType::kFLOAT, good.batch);
        d.dyn[aa::kQuery].max.d[0] = aa::kMaxBatch + 1;
        d.dyn[aa::kKeyValue].max.d[0] = aa::kMaxBatch + 1;
        d.dyn[aa::kPooledKeyValue].max.d[0] = aa::kMaxBatch + 1;
        gLogger.last.clear();
        int32_t const status = build->configurePlugin(d.dyn, aa::kNumInputs, d.dynOut, 1);
        tally.check(status != 0 && logged("batch"), "refuse configurePlugin with a profile batch above 65535",
            gLogger.last);
    }
    {
        Descs d(good, DataType::kFLOAT, good.batch);
        d.desc[aa::kPoolBias].dims.d[1] += 1;
        gLogger.last.clear();
        int32_t const status = runtime->onShapeChange(d.desc, aa::kNumInputs, d.descOut, 1);
        tally.check(status != 0 && logged("pool_bias"), "refuse onShapeChange with pool_bias (nh, N+1, P)", gLogger.last);
    }
    {
        // enqueue re-checks the concrete shapes before any memory is touched: the pointers below are
        // never dereferenced, and no CUDA call is made.
        Descs d(good, DataType::kFLOAT, good.batch);
        d.desc[aa::kPoolBias].dims.d[2] += 1;
        float dummy = 0.0f;
        void const* inputs[aa::kNumInputs];
        std::fill(inputs, inputs + aa::kNumInputs, &dummy);
        void* outputs[1] = {&dummy};
        gLogger.last.clear();
        int32_t const status = runtime->enqueue(d.desc, d.descOut, inputs, outputs, nullptr, nullptr);
        tally.check(status != 0 && logged("enqueue") && logged("pool_bias"),
            "refuse enqueue with pool_bias (nh, N, P+1)", gLogger.last);
    }
    {
        Shape const wide{"wide", 1, 4, 4, 1, 130, 3, 2, 2}; // head_dim 130 > 64
        Fields wideFields(wide, false);
        PluginPtr p(creator->createPlugin("wide", &wideFields.collection, TensorRTPhase::kRUNTIME));
        auto* r = capability<IPluginV3OneRuntime>(p.get(), PluginCapabilityType::kRUNTIME);
        Descs d(wide, DataType::kFLOAT, 1);
        float dummy = 0.0f;
        void const* inputs[aa::kNumInputs];
        std::fill(inputs, inputs + aa::kNumInputs, &dummy);
        void* outputs[1] = {&dummy};
        gLogger.last.clear();
        int32_t const status = r == nullptr ? 0 : r->enqueue(d.desc, d.descOut, inputs, outputs, nullptr, nullptr);
        tally.check(status != 0 && logged("head_dim"), "refuse enqueue with head_dim 130", gLogger.last);
    }
}

int usage(char const* argv0)
{
    fprintf(stderr, "usage: %s [--no-gpu] [--quick] [--list] [--case TEXT] [--seed N] [--verbose]\n", argv0);
    return 2;
}

} // namespace

int main(int argc, char** argv)
{
    bool noGpu = false;
    bool quick = false;
    bool list = false;
    std::string filter;
    uint32_t seed = 1234;
    for (int i = 1; i < argc; ++i)
    {
        std::string const arg = argv[i];
        if (arg == "--no-gpu")
        {
            noGpu = true;
        }
        else if (arg == "--quick")
        {
            quick = true;
        }
        else if (arg == "--list")
        {
            list = true;
        }
        else if (arg == "--verbose")
        {
            gLogger.verbose = true;
        }
        else if (arg == "--case" && i + 1 < argc)
        {
            filter = argv[++i];
        }
        else if (arg == "--seed" && i + 1 < argc)
        {
            seed = static_cast<uint32_t>(std::strtoul(argv[++i], nullptr, 10));
        }
        else
        {
            return usage(argv[0]);
        }
    }

    std::vector<Shape> cases;
    for (Shape const& s : makeCases(quick))
    {
        if (filter.empty() || s.name.find(filter) != std::string::npos)
        {
            cases.push_back(s);
        }
    }
    if (list)
    {
        for (Shape const& s : cases)
        {
            printf("%s %s\n", s.name.c_str(), describe(s).c_str());
        }
        return 0;
    }
    if (!noGpu)
    {
        int count = 0;
        cudaError_t const e = cudaGetDeviceCount(&count);
        if (e != cudaSuccess || count < 1)
        {
            fprintf(stderr, "no CUDA device usable (%s): run with --no-gpu for the interface checks only\n",
                e != cudaSuccess ? cudaGetErrorString(e) : "0 devices");
            return 3;
        }
        cudaDeviceProp prop{};
        cudaGetDeviceProperties(&prop, 0);
        printf("device: %s (sm_%d%d)\n", prop.name, prop.major, prop.minor);
    }
    printf("tolerance: relative error (max-abs / max|host|) fp32 %.1e, fp16 %.2e\n", kFp32RelTol, kFp16RelTol);

    Tally tally;
    std::string error;
    IPluginCreatorV3One* creator = findCreator(error);
    if (!tally.check(creator != nullptr, "getCreators() returns the V3One creator", error))
    {
        return 1;
    }
    PluginFieldCollection const* names = creator->getFieldNames();
    tally.check(names != nullptr && names->nbFields == aa::kNumAttributes, "getFieldNames() lists the six attributes");

    uint32_t caseSeed = seed;
    for (Shape const& s : cases)
    {
        for (DataType type : {DataType::kFLOAT, DataType::kHALF})
        {
            std::string const label = s.name + (type == DataType::kHALF ? " fp16" : " fp32") + " [" + describe(s) + "]";
            SerializedFields serialized;
            // Alternate the field type: the ONNX parser may hand the attributes over as kINT64.
            bool const int64Fields = (caseSeed & 1u) != 0;
            ++caseSeed;
            tally.quiet = !gLogger.verbose;
            bool const built = buildPhase(creator, s, type, int64Fields, tally, label, serialized);
            PluginPtr plugin = built ? runtimePhase(creator, s, type, tally, label, serialized) : nullptr;
            tally.quiet = false;
            if (plugin == nullptr)
            {
                continue;
            }
            tally.check(true, label + " life cycle",
                std::string("createPlugin(kBUILD, ") + (int64Fields ? "kINT64" : "kINT32")
                    + " fields) -> getOutputDataTypes -> getOutputShapes -> supportsFormatCombination -> "
                      "configurePlugin -> getFieldsToSerialize -> createPlugin(kRUNTIME) -> attachToContext -> "
                      "onShapeChange");
            if (noGpu)
            {
                continue;
            }
            compareCase(plugin.get(), s, type, caseSeed * 7919u, tally, label);
        }
    }
    refusals(creator, tally);

    printf("summary: %d passed, %d failed%s\n", tally.passed, tally.failed,
        noGpu ? " (--no-gpu: kernel outputs not checked)" : "");
    return tally.failed == 0 ? 0 : 1;
}

// Shapes and attributes the plugin must refuse (lifecyclePlugin.h: refusals), each with a non-zero
// status and a logged message naming the problem. None of them needs a GPU: every refusal happens
// before memory is touched.
#include "lifecyclePlugin.h"

#include "lifecycleStubs.h"

#include <algorithm>

using namespace nvinfer1;
namespace aa = transnext::aa;

namespace lifecycle
{
namespace
{

bool logged(char const* fragment)
{
    return gLogger.last.find(fragment) != std::string::npos;
}

} // namespace

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

} // namespace lifecycle

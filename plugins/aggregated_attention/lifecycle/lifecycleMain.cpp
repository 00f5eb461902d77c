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
// Files: lifecycle/lifecycleStubs (libnvinfer stand-ins), lifecycleCases (shapes, inputs,
// host reference), lifecyclePlugin (the phases, the kernel run), lifecycleRefusals.
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
#include "lifecyclePlugin.h"
#include "lifecycleStubs.h"

#include <cuda_runtime_api.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

using namespace nvinfer1;
using namespace lifecycle;
namespace aa = transnext::aa;

namespace
{

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
            // Alternate the field type: the ONNX parser may hand the attributes over as kINT64.
            bool const int64Fields = (caseSeed & 1u) != 0;
            ++caseSeed;
            PluginPtr plugin = lifeCycle(creator, s, type, int64Fields, tally, label);
            if (plugin == nullptr)
            {
                continue;
            }
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

// transnext_classify: run a TensorRT engine of an exported TransNeXt classifier on a batch of
// preprocessed images and print the top-K classes of each.
//
//   transnext_classify --engine model.aa_plugin.fp16.engine --plugin libtransnext_aa_plugin.so
//                      --input images.npy [--labels imagenet_classes.txt] [--top 5]
//
// The engine comes from `model.aa_plugin.onnx` (trtexec, or `transnext-deploy export` on a machine
// with TensorRT), whose aggregated-attention layers are TransNeXtAggregatedAttention plugin layers:
// the plugin library must be loaded before the engine is deserialised. The input is a float32 .npy
// of shape [N,3,H,W] (see README.md). Steps: load the plugin, deserialise, pick the engine's input
// and output tensors by their I/O mode, set the batch with setInputShape, copy in, enqueueV3 on a
// stream, copy out, softmax and top-K on the host.
//
// TensorRT 10.3 to 11.x. Every API used here exists unchanged in the 10.3, 10.13 and 11.1 headers
// (checked by tests/test_cpp_example.py), so there is no version #if; objects are released with
// `delete` (TensorRT >= 10). Only three libnvinfer symbols are linked, all extern "C":
// createInferRuntime_INTERNAL, getPluginRegistry and getInferLibVersion; everything else goes through
// the virtual interfaces.
#include "aggregatedAttentionContract.h" // plugin name, version and namespace
#include "options.h"                     // Options, --help, parseArguments (no TensorRT, no CUDA)
#include "tensor_io.h"                   // .npy reader, labels, softmax, top-K (no TensorRT, no CUDA)

#include <NvInfer.h>
#include <cuda_runtime_api.h>
#include <dlfcn.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#if NV_TENSORRT_MAJOR < 10
#error "transnext_classify needs the TensorRT 10.3 (or newer, 11.x included) headers: IPluginV3, enqueueV3, delete"
#endif

namespace
{

using transnext::example::Options;
using transnext::example::UsageError;

constexpr char kInputTensor[] = "images"; // the exporter's input name (transnext_deploy: INPUT_NAME)

// A failure of the run: main prints "error: <what>" on one line and exits 1.
class Error : public std::runtime_error
{
public:
    using std::runtime_error::runtime_error;
};

// ------------------------------------------------------------------------------------ TensorRT helpers

class Logger : public nvinfer1::ILogger
{
public:
    explicit Logger(bool verbose)
        : mVerbose(verbose)
    {
    }

    void log(Severity severity, nvinfer1::AsciiChar const* msg) noexcept override
    {
        if (severity > (mVerbose ? Severity::kINFO : Severity::kWARNING))
        {
            return;
        }
        char const* tag = severity == Severity::kINTERNAL_ERROR ? "internal error"
            : severity == Severity::kERROR                      ? "error"
            : severity == Severity::kWARNING                    ? "warning"
                                                                : "info";
        std::fprintf(stderr, "[TensorRT] %s: %s\n", tag, msg);
    }

private:
    bool mVerbose;
};

std::string dimsString(nvinfer1::Dims const& dims)
{
    std::string text = "[";
    for (int32_t i = 0; i < dims.nbDims; ++i)
    {
        text += (i ? "," : "") + std::to_string(dims.d[i]);
    }
    return text + "]";
}

char const* typeName(nvinfer1::DataType type)
{
    switch (type)
    {
    case nvinfer1::DataType::kFLOAT: return "float32";
    case nvinfer1::DataType::kHALF: return "float16";
    case nvinfer1::DataType::kBF16: return "bfloat16";
    case nvinfer1::DataType::kINT8: return "int8";
    case nvinfer1::DataType::kINT32: return "int32";
    case nvinfer1::DataType::kINT64: return "int64";
    case nvinfer1::DataType::kUINT8: return "uint8";
    case nvinfer1::DataType::kBOOL: return "bool";
    default: return "another type"; // FP8, INT4, and the types newer headers add
    }
}

std::string libraryVersion()
{
    int32_t const v = getInferLibVersion(); // major * 10000 + minor * 100 + patch
    return std::to_string(v / 10000) + "." + std::to_string(v / 100 % 100) + "." + std::to_string(v % 100);
}

// How the plugin library was loaded, for the summary line.
std::string loadPlugin(std::string const& path, std::string const& mode)
{
    using transnext::aa::kOpName;
    using transnext::aa::kPluginNamespace;
    using transnext::aa::kPluginVersion;
    std::error_code ec;
    if (!std::filesystem::is_regular_file(path, ec))
    {
        throw Error("plugin library " + path + ": no such file");
    }
    nvinfer1::IPluginRegistry* registry = getPluginRegistry();
    if (registry == nullptr)
    {
        throw Error("getPluginRegistry() returned null: this libnvinfer cannot load plugins");
    }
    std::string const creator = std::string(kOpName) + " v" + kPluginVersion;
    // Looked up in the list rather than with getCreator(), which can log an error for a creator that
    // is not (yet) there: `auto` asks before the registry has loaded a _dynamic library.
    auto registered = [&]() {
        int32_t count = 0;
        nvinfer1::IPluginCreatorInterface* const* creators = registry->getAllCreators(&count);
        for (int32_t i = 0; creators != nullptr && i < count; ++i)
        {
            if (creators[i] == nullptr
                || std::strcmp(creators[i]->getInterfaceInfo().kind, "PLUGIN CREATOR_V3ONE") != 0)
            {
                continue;
            }
            auto const* v3 = static_cast<nvinfer1::IPluginCreatorV3One const*>(creators[i]);
            char const* space = v3->getPluginNamespace();
            if (std::strcmp(v3->getPluginName(), kOpName) == 0 && std::strcmp(v3->getPluginVersion(), kPluginVersion) == 0
                && std::strcmp(space ? space : "", kPluginNamespace) == 0)
            {
                return true;
            }
        }
        return false;
    };
    if (mode != "registry")
    {
        // Never dlclose()d: the registry keeps pointers to the creator until the process exits.
        if (dlopen(path.c_str(), RTLD_NOW | RTLD_GLOBAL) == nullptr)
        {
            char const* reason = dlerror();
            throw Error(std::string("cannot load plugin library: ") + (reason ? reason : path.c_str()));
        }
        if (registered())
        {
            return "dlopen, self-registered";
        }
        if (mode == "static")
        {
            throw Error(path + " loaded but registered no " + creator + " creator: it is not libtransnext_aa_plugin.so "
                "(for libtransnext_aa_plugin_dynamic.so use --plugin-load registry)");
        }
    }
    if (registry->loadLibrary(path.c_str()) == nullptr)
    {
        throw Error("IPluginRegistry::loadLibrary(" + path + ") failed (see the TensorRT message above)"
            + (mode == "registry" ? "; libtransnext_aa_plugin.so registers itself: use --plugin-load static" : ""));
    }
    if (!registered())
    {
        throw Error(path + " loaded by IPluginRegistry::loadLibrary but no " + creator + " creator is registered");
    }
    return "IPluginRegistry::loadLibrary";
}

std::vector<char> readEngineFile(std::string const& path)
{
    std::error_code ec;
    if (!std::filesystem::is_regular_file(path, ec))
    {
        throw Error("engine " + path + ": " + (std::filesystem::exists(path, ec) ? "not a regular file" : "no such file"));
    }
    std::ifstream in(path, std::ios::binary);
    std::vector<char> blob(static_cast<size_t>(std::filesystem::file_size(path, ec)));
    if (ec || !in)
    {
        throw Error("engine " + path + ": cannot open for reading");
    }
    if (blob.empty())
    {
        throw Error("engine " + path + ": empty file");
    }
    in.read(blob.data(), static_cast<std::streamsize>(blob.size()));
    if (static_cast<size_t>(in.gcount()) != blob.size())
    {
        throw Error("engine " + path + ": read error");
    }
    return blob;
}

// ------------------------------------------------------------------------------------ CUDA helpers

void checkCuda(cudaError_t status, std::string const& what)
{
    if (status != cudaSuccess)
    {
        throw Error("CUDA " + what + " failed: " + cudaGetErrorName(status) + " (" + cudaGetErrorString(status) + ")");
    }
}

class DeviceBuffer
{
public:
    explicit DeviceBuffer(size_t bytes, char const* what)
    {
        checkCuda(cudaMalloc(&mPtr, bytes), std::string("cudaMalloc of ") + std::to_string(bytes) + " bytes for " + what);
    }
    ~DeviceBuffer()
    {
        cudaFree(mPtr);
    }
    DeviceBuffer(DeviceBuffer const&) = delete;
    DeviceBuffer& operator=(DeviceBuffer const&) = delete;
    void* get() const
    {
        return mPtr;
    }

private:
    void* mPtr = nullptr;
};

class Stream
{
public:
    Stream()
    {
        checkCuda(cudaStreamCreateWithFlags(&mStream, cudaStreamNonBlocking), "cudaStreamCreate");
    }
    ~Stream()
    {
        cudaStreamDestroy(mStream);
    }
    Stream(Stream const&) = delete;
    Stream& operator=(Stream const&) = delete;
    cudaStream_t get() const
    {
        return mStream;
    }

private:
    cudaStream_t mStream = nullptr;
};

int64_t volume(nvinfer1::Dims const& dims)
{
    int64_t count = 1;
    for (int32_t i = 0; i < dims.nbDims; ++i)
    {
        count *= dims.d[i];
    }
    return count;
}

// ------------------------------------------------------------------------------------ the run

int run(Options const& options)
{
    using transnext::example::FloatArray;

    // Inputs first: a bad file fails in milliseconds, before any GPU work.
    FloatArray const images = transnext::example::readNpyFloat32(options.input);
    transnext::example::checkImageBatch(images, options.input);
    std::vector<std::string> labels;
    if (!options.labels.empty())
    {
        labels = transnext::example::readLabels(options.labels);
    }
    std::vector<char> const blob = readEngineFile(options.engine);

    int devices = 0;
    cudaError_t const status = cudaGetDeviceCount(&devices);
    if (status != cudaSuccess || devices == 0)
    {
        throw Error(std::string("no usable CUDA device: ")
            + (status != cudaSuccess ? std::string(cudaGetErrorName(status)) + " (" + cudaGetErrorString(status) + ")"
                                     : std::string("the driver reports none")));
    }

    // Declaration order is destruction order in reverse: context, engine, runtime, then the logger.
    Logger logger(options.verbose);
    std::unique_ptr<nvinfer1::IRuntime> runtime(nvinfer1::createInferRuntime(logger));
    if (!runtime)
    {
        throw Error("createInferRuntime failed (TensorRT " + libraryVersion() + " library, headers "
            + std::to_string(NV_TENSORRT_MAJOR) + "." + std::to_string(NV_TENSORRT_MINOR) + ")");
    }
    std::string pluginHow;
    if (!options.plugin.empty())
    {
        pluginHow = loadPlugin(options.plugin, options.pluginLoad);
    }
    std::unique_ptr<nvinfer1::ICudaEngine> engine(runtime->deserializeCudaEngine(blob.data(), blob.size()));
    if (!engine)
    {
        throw Error("cannot deserialise " + options.engine + " (see the TensorRT message above): it must be built by "
            "TensorRT " + libraryVersion() + " for this GPU" + (options.plugin.empty() ? ", and --plugin is needed for an "
            "engine with TransNeXtAggregatedAttention layers" : ""));
    }

    // The engine's I/O tensors: one input (named "images" by the exporter) and one output (logits).
    std::vector<std::string> inputs, outputs;
    for (int32_t i = 0; i < engine->getNbIOTensors(); ++i)
    {
        char const* name = engine->getIOTensorName(i);
        (engine->getTensorIOMode(name) == nvinfer1::TensorIOMode::kINPUT ? inputs : outputs).push_back(name);
    }
    auto joined = [](std::vector<std::string> const& names) {
        std::string text;
        for (auto const& n : names)
        {
            text += (text.empty() ? "" : ", ") + n;
        }
        return text;
    };
    std::string inputName = inputs.size() == 1 ? inputs[0] : "";
    for (auto const& n : inputs)
    {
        inputName = n == kInputTensor ? n : inputName;
    }
    if (inputName.empty())
    {
        throw Error("the engine has " + std::to_string(inputs.size()) + " inputs (" + joined(inputs) + "), expected one "
            "named '" + kInputTensor + "'");
    }
    if (outputs.size() != 1)
    {
        throw Error("the engine has " + std::to_string(outputs.size()) + " outputs (" + joined(outputs) + "): this "
            "example needs a classifier engine (export --mode classify) with one output, the logits");
    }
    std::string const& outputName = outputs[0];
    char const* in = inputName.c_str();
    char const* out = outputName.c_str();
    for (char const* name : {in, out})
    {
        if (engine->getTensorDataType(name) != nvinfer1::DataType::kFLOAT)
        {
            throw Error(std::string("tensor '") + name + "' is " + typeName(engine->getTensorDataType(name))
                + ", this example exchanges float32 (build the engine without --inputIOFormats/--outputIOFormats)");
        }
        if (engine->getTensorFormat(name) != nvinfer1::TensorFormat::kLINEAR)
        {
            throw Error(std::string("tensor '") + name + "' is not in the linear (NCHW) format");
        }
        if (engine->getTensorLocation(name) != nvinfer1::TensorLocation::kDEVICE)
        {
            throw Error(std::string("tensor '") + name + "' is not a device tensor");
        }
    }

    // Shapes: the engine's input is [-1,3,H,W] (dynamic batch) or fully static.
    nvinfer1::Dims const engineShape = engine->getTensorShape(in);
    auto const& s = images.shape;
    bool matches = engineShape.nbDims == 4;
    for (int32_t i = 1; matches && i < 4; ++i)
    {
        matches = engineShape.d[i] == -1 || engineShape.d[i] == s[static_cast<size_t>(i)];
    }
    if (!matches)
    {
        throw Error(options.input + " has shape " + transnext::example::shapeString(s) + " but the engine's input '"
            + inputName + "' is " + dimsString(engineShape) + ": preprocess at the engine's resolution");
    }
    if (engineShape.d[0] == -1)
    {
        int64_t const lo = engine->getProfileShape(in, 0, nvinfer1::OptProfileSelector::kMIN).d[0];
        int64_t const hi = engine->getProfileShape(in, 0, nvinfer1::OptProfileSelector::kMAX).d[0];
        if (s[0] < lo || s[0] > hi)
        {
            throw Error("batch " + std::to_string(s[0]) + " is outside the engine's profile [" + std::to_string(lo) + ", "
                + std::to_string(hi) + "]: split the input or rebuild the engine with other --minShapes/--maxShapes");
        }
    }
    else if (engineShape.d[0] != s[0])
    {
        throw Error("batch " + std::to_string(s[0]) + ", but the engine is built for a fixed batch of "
            + std::to_string(engineShape.d[0]));
    }

    std::unique_ptr<nvinfer1::IExecutionContext> context(engine->createExecutionContext());
    if (!context)
    {
        throw Error("createExecutionContext failed (see the TensorRT message above; out of GPU memory?)");
    }
    nvinfer1::Dims inputShape{};
    inputShape.nbDims = 4;
    for (int32_t i = 0; i < 4; ++i)
    {
        inputShape.d[i] = s[static_cast<size_t>(i)];
    }
    if (!context->setInputShape(in, inputShape) || !context->allInputDimensionsSpecified())
    {
        throw Error("setInputShape(" + inputName + ", " + dimsString(inputShape)
            + ") failed (see the TensorRT message above)");
    }
    nvinfer1::Dims const outputShape = context->getTensorShape(out);
    if (outputShape.nbDims != 2 || outputShape.d[0] != s[0] || outputShape.d[1] < 1)
    {
        throw Error("output '" + outputName + "' has shape " + dimsString(outputShape) + ", expected ["
            + std::to_string(s[0]) + ", classes] (a classifier's logits)");
    }
    auto const classes = static_cast<size_t>(outputShape.d[1]);
    if (!labels.empty() && labels.size() != classes)
    {
        throw Error(options.labels + " has " + std::to_string(labels.size()) + " labels, the engine has "
            + std::to_string(classes) + " classes");
    }
    if (options.top > classes)
    {
        throw UsageError("--top " + std::to_string(options.top) + " is more than the engine's " + std::to_string(classes)
            + " classes");
    }

    // Buffers, copies and the run, all on one stream; the stream and buffers are released before
    // the context (reverse declaration order), after the synchronisation below.
    Stream stream;
    size_t const inputBytes = images.data.size() * sizeof(float);
    std::vector<float> logits(static_cast<size_t>(volume(outputShape)));
    size_t const outputBytes = logits.size() * sizeof(float);
    DeviceBuffer inputDevice(inputBytes, "the input");
    DeviceBuffer outputDevice(outputBytes, "the output");
    checkCuda(cudaMemcpyAsync(inputDevice.get(), images.data.data(), inputBytes, cudaMemcpyHostToDevice, stream.get()),
        "copy of the input to the GPU");
    if (!context->setTensorAddress(in, inputDevice.get()) || !context->setTensorAddress(out, outputDevice.get()))
    {
        throw Error("setTensorAddress failed (see the TensorRT message above)");
    }
    if (!context->enqueueV3(stream.get()))
    {
        throw Error("enqueueV3 failed (see the TensorRT message above)");
    }
    checkCuda(cudaMemcpyAsync(logits.data(), outputDevice.get(), outputBytes, cudaMemcpyDeviceToHost, stream.get()),
        "copy of the output from the GPU");
    checkCuda(cudaStreamSynchronize(stream.get()), "inference (cudaStreamSynchronize)");

    std::printf("engine %s: TensorRT %s (built against %d.%d.%d headers), input %s %s float32, output %s %s float32%s\n",
        options.engine.c_str(), libraryVersion().c_str(), NV_TENSORRT_MAJOR, NV_TENSORRT_MINOR, NV_TENSORRT_PATCH, in,
        dimsString(inputShape).c_str(), out, dimsString(outputShape).c_str(),
        pluginHow.empty() ? "" : (", plugin " + options.plugin + " (" + pluginHow + ")").c_str());
    auto const top = transnext::example::classify(logits.data(), static_cast<size_t>(s[0]), classes, options.top);
    for (size_t image = 0; image < top.size(); ++image)
    {
        std::printf("image %zu:\n", image);
        for (size_t rank = 0; rank < top[image].size(); ++rank)
        {
            auto const& [index, probability] = top[image][rank];
            float const logit = logits[image * classes + index];
            std::printf("  %zu. class %4zu  p=%.5f  logit=%.5f%s%s\n", rank + 1, index, probability, logit,
                labels.empty() ? "" : "  ", labels.empty() ? "" : labels[index].c_str());
        }
    }
    return 0;
}

} // namespace

int main(int argc, char** argv)
{
    Options options;
    try
    {
        if (!transnext::example::parseArguments(argc, argv, options))
        {
            return 0;
        }
        return run(options);
    }
    catch (UsageError const& e)
    {
        std::fprintf(stderr, "error: %s (see --help)\n", e.what());
        return 2;
    }
    catch (std::exception const& e)
    {
        std::fprintf(stderr, "error: %s\n", e.what());
        return 1;
    }
}

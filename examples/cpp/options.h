// Command line of transnext_classify (classify.cpp): the options, --help and their parsing.
// Plain C++17, no TensorRT or CUDA.
#pragma once

#include <cerrno>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>

namespace transnext
{
namespace example
{

// Bad command line: exit 2.
class UsageError : public std::runtime_error
{
public:
    using std::runtime_error::runtime_error;
};

struct Options
{
    std::string engine;
    std::string plugin;
    std::string pluginLoad = "auto";
    std::string input;
    std::string labels;
    size_t top = 5;
    bool verbose = false;
};

inline constexpr char kHelp[] = R"(usage: transnext_classify --engine PATH --input PATH [--plugin PATH]
                         [--plugin-load auto|static|registry] [--labels PATH] [--top K] [--verbose]

Runs a TensorRT engine of a TransNeXt classifier on preprocessed images and prints, per image, the
top-K classes with their softmax probabilities.

  --engine PATH       serialized TensorRT engine (.engine / .plan), e.g. built by trtexec from
                      model.aa_plugin.onnx; engines with host code (version-compatible with the lean
                      runtime, or plugins serialized into the engine) are refused by TensorRT here
  --input PATH        float32 .npy of shape [N,3,H,W] (NCHW, C order, little-endian): N images resized
                      to the engine's H x W, scaled to [0,1] and normalised with the ImageNet mean
                      (0.485, 0.456, 0.406) and std (0.229, 0.224, 0.225); N within the engine's batch profile
  --plugin PATH       the aggregated-attention plugin library: libtransnext_aa_plugin.so or
                      libtransnext_aa_plugin_dynamic.so; needed for engines built from model.aa_plugin.onnx
                      or model.aa_function.onnx, not for model.onnx
  --plugin-load MODE  how to load --plugin: 'static' dlopen()s it (RTLD_GLOBAL) and it registers its
                      creator itself (libtransnext_aa_plugin.so, like trtexec --staticPlugins);
                      'registry' uses IPluginRegistry::loadLibrary (libtransnext_aa_plugin_dynamic.so,
                      like trtexec --dynamicPlugins); 'auto' (default) tries static, then registry
  --labels PATH       class names, one per line in class-index order (as many lines as the engine has
                      classes); without it only indices are printed
  --top K             classes to print per image (default 5)
  --verbose           also print TensorRT's info messages
  -h, --help          this text

Errors are one line on stderr and exit status 1 (2 for a bad command line).
)";

inline size_t parseCount(std::string const& text, char const* option)
{
    char* end = nullptr;
    errno = 0;
    unsigned long long const value = std::strtoull(text.c_str(), &end, 10);
    if (text.empty() || text[0] == '-' || *end != '\0' || errno != 0 || value < 1 || value > 1000000)
    {
        throw UsageError(std::string(option) + " expects a positive integer, got '" + text + "'");
    }
    return static_cast<size_t>(value);
}

// Returns false when --help was given (already printed).
inline bool parseArguments(int argc, char** argv, Options& options)
{
    for (int i = 1; i < argc; ++i)
    {
        std::string arg = argv[i];
        if (arg == "-h" || arg == "--help")
        {
            std::fputs(kHelp, stdout);
            return false;
        }
        if (arg == "--verbose")
        {
            options.verbose = true;
            continue;
        }
        std::string value;
        bool hasValue = false;
        size_t const eq = arg.find('=');
        if (arg.rfind("--", 0) == 0 && eq != std::string::npos)
        {
            value = arg.substr(eq + 1);
            arg = arg.substr(0, eq);
            hasValue = true;
        }
        std::string* target = arg == "--engine" ? &options.engine
            : arg == "--plugin"                  ? &options.plugin
            : arg == "--plugin-load"             ? &options.pluginLoad
            : arg == "--input"                   ? &options.input
            : arg == "--labels"                  ? &options.labels
                                                 : nullptr;
        if (target == nullptr && arg != "--top")
        {
            throw UsageError("unknown option '" + std::string(argv[i]) + "'");
        }
        if (!hasValue)
        {
            if (i + 1 >= argc)
            {
                throw UsageError(arg + " needs a value");
            }
            value = argv[++i];
        }
        if (value.empty())
        {
            throw UsageError(arg + " needs a non-empty value");
        }
        if (target != nullptr)
        {
            *target = value;
        }
        else
        {
            options.top = parseCount(value, "--top");
        }
    }
    if (options.engine.empty() || options.input.empty())
    {
        throw UsageError(options.engine.empty() ? "--engine PATH is required" : "--input PATH is required");
    }
    if (options.pluginLoad != "auto" && options.pluginLoad != "static" && options.pluginLoad != "registry")
    {
        throw UsageError("--plugin-load must be auto, static or registry, got '" + options.pluginLoad + "'");
    }
    return true;
}

} // namespace example
} // namespace transnext

// Test driver for tensor_io.h (no TensorRT, no CUDA): tests/test_cpp_example.py builds it with the
// system C++ compiler and compares what it prints with numpy.
//
//   tensor_io_check read FILE          shape, then every float32 value as its 8 hex digits of bits
//   tensor_io_check image FILE         the example's input check: [N,3,H,W], finite; prints the shape
//   tensor_io_check classify FILE K    FILE: float32 logits [rows, classes]; per row the top-K
//                                      "index probability" pairs (probability as %.17g)
//   tensor_io_check labels FILE        the number of labels, then one per line
//
// An error is one line on stderr ("error: ...") and exit status 1; bad usage exits 2.
#include "tensor_io.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

using namespace transnext::example;

namespace
{

int usage()
{
    std::fprintf(stderr, "usage: tensor_io_check read|image FILE | classify FILE K | labels FILE\n");
    return 2;
}

void printShape(FloatArray const& array)
{
    std::printf("shape %s\n", shapeString(array.shape).c_str());
}

} // namespace

int main(int argc, char** argv)
{
    if (argc < 3)
    {
        return usage();
    }
    std::string const command = argv[1];
    std::string const path = argv[2];
    try
    {
        if (command == "read" && argc == 3)
        {
            FloatArray const array = readNpyFloat32(path);
            printShape(array);
            for (float value : array.data)
            {
                uint32_t bits = 0;
                std::memcpy(&bits, &value, sizeof bits);
                std::printf("%08x\n", static_cast<unsigned>(bits));
            }
        }
        else if (command == "image" && argc == 3)
        {
            FloatArray const array = readNpyFloat32(path);
            checkImageBatch(array, path);
            printShape(array);
        }
        else if (command == "classify" && argc == 4)
        {
            char* end = nullptr;
            long const k = std::strtol(argv[3], &end, 10);
            if (*end != '\0' || k < 1)
            {
                return usage();
            }
            FloatArray const logits = readNpyFloat32(path);
            if (logits.shape.size() != 2 || logits.shape[1] < 1)
            {
                throw TensorIoError(path + ": shape " + shapeString(logits.shape) + ", expected [rows, classes]");
            }
            auto const rows = static_cast<size_t>(logits.shape[0]);
            auto const classes = static_cast<size_t>(logits.shape[1]);
            if (static_cast<size_t>(k) > classes)
            {
                throw TensorIoError(
                    "K " + std::to_string(k) + " is larger than the " + std::to_string(classes) + " classes");
            }
            auto const top = classify(logits.data.data(), rows, classes, static_cast<size_t>(k));
            for (auto const& row : top)
            {
                for (auto const& entry : row)
                {
                    std::printf("%zu %.17g ", entry.first, entry.second);
                }
                std::printf("\n");
            }
        }
        else if (command == "labels" && argc == 3)
        {
            auto const labels = readLabels(path);
            std::printf("%zu\n", labels.size());
            for (auto const& label : labels)
            {
                std::printf("%s\n", label.c_str());
            }
        }
        else
        {
            return usage();
        }
    }
    catch (std::exception const& e)
    {
        std::fprintf(stderr, "error: %s\n", e.what());
        return 1;
    }
    return 0;
}

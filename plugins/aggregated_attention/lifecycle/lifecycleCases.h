// The cases of the life-cycle driver (shapes of the issue and border cases), their random inputs
// and their host-library reference.
#pragma once

#include "aggregatedAttentionContract.h"

#include <NvInferRuntime.h>

#include <cstdint>
#include <string>
#include <vector>

namespace lifecycle
{

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

//! Every variant's aggregated-attention stages at 224 (batch 8) and 384 (batch 2), or with `quick`
//! at 224 with batch 2, then the border cases (grids 1x9, 8x1, windows 5 and 7, head dims 8..64, P = 400).
std::vector<Shape> makeCases(bool quick);

//! "B=.. H=.. W=.. nh=.. d=.. w=.. P=HxW".
std::string describe(Shape const& s);

//! Shape of input k (contract order) of a case.
std::vector<int64_t> inputShape(Shape const& s, int32_t k);
int64_t elements(std::vector<int64_t> const& shape);
nvinfer1::Dims toDims(std::vector<int64_t> const& shape);

//! The nine inputs of a case as fp32 values (rounded to fp16 values when `roundToHalf`).
struct HostData
{
    std::vector<float> inputs[transnext::aa::kNumInputs];
};
HostData makeData(Shape const& s, uint32_t seed, bool roundToHalf);

//! The host library's fp32 output on `data` (all CPU threads); sets `error` when it refuses the case.
std::vector<float> hostReference(Shape const& s, HostData const& data, std::string& error);

} // namespace lifecycle

// Cases, inputs and host-library reference of the life-cycle driver (lifecycleCases.h).
#include "lifecycleCases.h"

#include "aggregatedAttentionContract.h"
#include "aggregatedAttentionHost.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <thread>

namespace aa = transnext::aa;

namespace lifecycle
{
namespace
{

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

} // namespace

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


std::string describe(Shape const& s)
{
    char buf[256];
    snprintf(buf, sizeof(buf), "B=%lld H=%d W=%d nh=%d d=%d w=%d P=%dx%d", static_cast<long long>(s.batch), s.height,
        s.width, s.numHeads, s.headDim, s.window, s.poolHeight, s.poolWidth);
    return buf;
}


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

nvinfer1::Dims toDims(std::vector<int64_t> const& shape)
{
    nvinfer1::Dims d{};
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

} // namespace lifecycle

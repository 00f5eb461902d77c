// TensorRT IPluginV3 plugin and creator of the TransNeXt aggregated-attention op.
// Contract: plugins/aggregated_attention/README.md. Compiles against TensorRT 10.3 .. 11.x headers.
#pragma once

#include "aggregatedAttentionContract.h"
#include "aggregatedAttentionMath.h"

#include <NvInferRuntime.h>

#include <cstdint>
#include <string>
#include <vector>

namespace transnext
{
namespace aa
{

//! The six integer attributes; -1 = not given.
struct Attributes
{
    int32_t numHeads{-1};
    int32_t height{-1};
    int32_t width{-1};
    int32_t windowSize{-1};
    int32_t poolHeight{-1};
    int32_t poolWidth{-1};
};

//! Checks the attributes alone (no tensor shapes); returns an empty string when valid, else a
//! one-line reason.
std::string validateAttributes(Attributes const& attrs);

//! Checks the nine input shapes (and the output's when given) against the attributes. With
//! allowUnknown, dimensions < 0 (dynamic at build time) are skipped. On success fills `problem`
//! (batch 1 when the batch is still unknown) and returns an empty string.
std::string checkShapes(Attributes const& attrs, nvinfer1::Dims const* inputs, int32_t nbInputs,
    nvinfer1::Dims const* output, bool allowUnknown, Problem* problem);

class AggregatedAttentionPlugin final : public nvinfer1::IPluginV3,
                                        public nvinfer1::IPluginV3OneCore,
                                        public nvinfer1::IPluginV3OneBuild,
                                        public nvinfer1::IPluginV3OneRuntime
{
public:
    AggregatedAttentionPlugin(Attributes const& attrs, std::string const& pluginNamespace);
    ~AggregatedAttentionPlugin() override = default;
    AggregatedAttentionPlugin(AggregatedAttentionPlugin const&) = delete;
    AggregatedAttentionPlugin& operator=(AggregatedAttentionPlugin const&) = delete;

    // IPluginV3
    nvinfer1::IPluginCapability* getCapabilityInterface(nvinfer1::PluginCapabilityType type) noexcept override;
    nvinfer1::IPluginV3* clone() noexcept override;

    // IPluginV3OneCore
    char const* getPluginName() const noexcept override;
    char const* getPluginVersion() const noexcept override;
    char const* getPluginNamespace() const noexcept override;

    // IPluginV3OneBuild
    int32_t configurePlugin(nvinfer1::DynamicPluginTensorDesc const* in, int32_t nbInputs,
        nvinfer1::DynamicPluginTensorDesc const* out, int32_t nbOutputs) noexcept override;
    int32_t getOutputDataTypes(nvinfer1::DataType* outputTypes, int32_t nbOutputs,
        nvinfer1::DataType const* inputTypes, int32_t nbInputs) const noexcept override;
    int32_t getOutputShapes(nvinfer1::DimsExprs const* inputs, int32_t nbInputs,
        nvinfer1::DimsExprs const* shapeInputs, int32_t nbShapeInputs, nvinfer1::DimsExprs* outputs,
        int32_t nbOutputs, nvinfer1::IExprBuilder& exprBuilder) noexcept override;
    bool supportsFormatCombination(int32_t pos, nvinfer1::DynamicPluginTensorDesc const* inOut, int32_t nbInputs,
        int32_t nbOutputs) noexcept override;
    int32_t getNbOutputs() const noexcept override;
    size_t getWorkspaceSize(nvinfer1::DynamicPluginTensorDesc const* inputs, int32_t nbInputs,
        nvinfer1::DynamicPluginTensorDesc const* outputs, int32_t nbOutputs) const noexcept override;

    // IPluginV3OneRuntime
    int32_t onShapeChange(nvinfer1::PluginTensorDesc const* in, int32_t nbInputs,
        nvinfer1::PluginTensorDesc const* out, int32_t nbOutputs) noexcept override;
    int32_t enqueue(nvinfer1::PluginTensorDesc const* inputDesc, nvinfer1::PluginTensorDesc const* outputDesc,
        void const* const* inputs, void* const* outputs, void* workspace, cudaStream_t stream) noexcept override;
    nvinfer1::IPluginV3* attachToContext(nvinfer1::IPluginResourceContext* context) noexcept override;
    nvinfer1::PluginFieldCollection const* getFieldsToSerialize() noexcept override;

    Attributes const& attributes() const noexcept
    {
        return mAttrs;
    }

private:
    Attributes mAttrs;
    std::string mNamespace;
    int32_t mSerialValues[kNumAttributes]{};
    std::vector<nvinfer1::PluginField> mSerialFields;
    nvinfer1::PluginFieldCollection mSerialCollection{};
};

class AggregatedAttentionPluginCreator final : public nvinfer1::IPluginCreatorV3One
{
public:
    AggregatedAttentionPluginCreator();
    ~AggregatedAttentionPluginCreator() override = default;

    nvinfer1::IPluginV3* createPlugin(char const* name, nvinfer1::PluginFieldCollection const* fc,
        nvinfer1::TensorRTPhase phase) noexcept override;
    nvinfer1::PluginFieldCollection const* getFieldNames() noexcept override;
    char const* getPluginName() const noexcept override;
    char const* getPluginVersion() const noexcept override;
    char const* getPluginNamespace() const noexcept override;

    //! Parses plugin fields into attributes; returns an empty string or a one-line reason.
    static std::string parseFields(nvinfer1::PluginFieldCollection const* fc, Attributes& attrs);

private:
    std::vector<nvinfer1::PluginField> mFieldNames;
    nvinfer1::PluginFieldCollection mFieldCollection{};
    std::string mNamespace;
};

} // namespace aa
} // namespace transnext

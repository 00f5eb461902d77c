"""config.pbtxt: Triton's ModelConfig in protobuf text format, the one writer for every model this
package writes (the Python-backend models `serve` runs, the TensorRT-plan or ONNX model of
`package --triton`). Every model batches dynamically; tests parse the text with tritonclient's
`model_config_pb2`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TensorConfig:
    name: str
    data_type: str  # TYPE_FP32, TYPE_INT64, TYPE_STRING...
    dims: list[int]  # without the batch dimension; -1 for a dynamic size
    label_filename: str | None = None  # Triton's classification extension (an output's class names)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def _tensors(tensors: list[TensorConfig]) -> str:
    lines = []
    for t in tensors:
        label = f' label_filename: "{_escape(t.label_filename)}"' if t.label_filename else ""
        lines.append(f'  {{ name: "{t.name}" data_type: {t.data_type} dims: [ {", ".join(map(str, t.dims))} ]'
                     f"{label} }}")
    return ",\n".join(lines)


def model_config(name: str, *, max_batch: int, inputs: list[TensorConfig], outputs: list[TensorConfig],
                 backend: str | None = None, platform: str | None = None, instance_kind: str | None = None,
                 parameters: dict[str, str] | None = None) -> str:
    """One model's config.pbtxt: `backend` ("python") or `platform` ("tensorrt_plan", "onnxruntime_onnx"),
    max batch with dynamic batching, its tensors, one instance of `instance_kind` (KIND_CPU,
    KIND_GPU; None: Triton's default) and string `parameters`."""
    if (backend is None) == (platform is None):
        raise ValueError("a model config names a backend or a platform")
    kind = f'backend: "{backend}"' if backend else f'platform: "{platform}"'
    text = (f'name: "{name}"\n{kind}\nmax_batch_size: {max_batch}\n'
            f"input [\n{_tensors(inputs)}\n]\noutput [\n{_tensors(outputs)}\n]\n"
            "dynamic_batching { }\n")
    if instance_kind:
        text += f"instance_group [ {{ kind: {instance_kind} count: 1 }} ]\n"
    for key, value in (parameters or {}).items():
        text += f'parameters {{ key: "{key}" value: {{ string_value: "{_escape(value)}" }} }}\n'
    return text


__all__ = ["TensorConfig", "model_config"]

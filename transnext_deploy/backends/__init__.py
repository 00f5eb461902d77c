"""One interface for every runtime the model runs on, one module per runtime.

`base.Backend` is the interface (prepare, run, to_numpy, probe, close); `pytorch` runs the PyTorch
model (eager plain / fast / fused attention, torch.compile, any device and dtype), `onnxrt` runs
exported graphs in onnxruntime (CPU, with the fused op as a custom op, and CUDA), `trt` runs
TensorRT engines. Export's validation, bench and the engine tests run models through these classes.
The runtime modules import their runtime lazily: importing them needs none of onnxruntime's CUDA
provider, TensorRT or a GPU.
"""

from .base import Backend, MemoryProbe, NoProbe, TorchCudaProbe

__all__ = ["Backend", "MemoryProbe", "NoProbe", "TorchCudaProbe"]

"""transnext-deploy: TransNeXt from PyTorch to ONNX and TensorRT, validated at every step."""

from .models import VARIANTS, TransNeXt, create_model, list_models

__version__ = "0.1.0"

__all__ = ["VARIANTS", "TransNeXt", "create_model", "list_models", "__version__"]

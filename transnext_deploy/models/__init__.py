"""Model families. One module per family; variants are data in `VARIANTS`."""

from .transnext import VARIANTS, TransNeXt, TransNeXtConfig, create_model, list_models

__all__ = ["VARIANTS", "TransNeXt", "TransNeXtConfig", "create_model", "list_models"]

"""Model families. One module per family; variants are data in `VARIANTS` (models/config.py)."""

from .config import VARIANTS, TransNeXtConfig, resolve_variant
from .transnext import TransNeXt, create_model, list_models

__all__ = ["VARIANTS", "TransNeXt", "TransNeXtConfig", "create_model", "list_models", "resolve_variant"]

"""PoolFormer and the MetaFormer family as Hugging Face Transformers models.

Importing the package registers the config and every model class with transformers' Auto classes, and marks the
classes for auto-class code sharing, so `save_pretrained` writes the code files and `auto_map` that let a folder load
with `trust_remote_code=True` where this package is not installed.
"""

from transformers import AutoBackbone, AutoConfig, AutoModel, AutoModelForImageClassification

from .configuration_poolformer import PoolFormerConfig
from .modeling_poolformer import (
    PoolFormerBackbone,
    PoolFormerForImageClassification,
    PoolFormerModel,
    PoolFormerPreTrainedModel,
)
from .presets import PRESET_NAMES, PRESETS


def _register() -> None:
    AutoConfig.register(PoolFormerConfig.model_type, PoolFormerConfig, exist_ok=True)
    for auto_class, model_class in (
        (AutoModel, PoolFormerModel),
        (AutoModelForImageClassification, PoolFormerForImageClassification),
        (AutoBackbone, PoolFormerBackbone),
    ):
        auto_class.register(PoolFormerConfig, model_class, exist_ok=True)
        model_class.register_for_auto_class(auto_class.__name__)
    PoolFormerConfig.register_for_auto_class()


_register()

__all__ = [
    "PRESETS",
    "PRESET_NAMES",
    "PoolFormerBackbone",
    "PoolFormerConfig",
    "PoolFormerForImageClassification",
    "PoolFormerModel",
    "PoolFormerPreTrainedModel",
]

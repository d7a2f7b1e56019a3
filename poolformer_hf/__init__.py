"""PoolFormer and the MetaFormer family as Hugging Face Transformers models.

Importing the package registers the config and every model class with transformers' Auto classes, and marks the
classes for auto-class code sharing, so `save_pretrained` writes the code files and `auto_map` that let a folder load
with `trust_remote_code=True` where this package is not installed.
"""

from transformers import AutoBackbone, AutoConfig, AutoModel, AutoModelForImageClassification

from .auto_registration_image import register_image_processors
from .configuration_poolformer import PoolFormerConfig
from .image_processing_pil_poolformer import PoolFormerImageProcessorPil
from .image_processing_poolformer import PoolFormerImageProcessor
from .inference import fuse_for_inference
from .labels import imagenet_id2label
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
    register_image_processors()


_register()

__all__ = [
    "PRESETS",
    "PRESET_NAMES",
    "PoolFormerBackbone",
    "PoolFormerConfig",
    "PoolFormerForImageClassification",
    "PoolFormerImageProcessor",
    "PoolFormerImageProcessorPil",
    "PoolFormerModel",
    "PoolFormerPreTrainedModel",
    "fuse_for_inference",
    "imagenet_id2label",
]

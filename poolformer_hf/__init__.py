"""PoolFormer and the MetaFormer family as Hugging Face Transformers models.

Importing the package registers the config and every model class with transformers' Auto classes, and marks the
classes for auto-class code sharing, so `save_pretrained` writes the code files and `auto_map` that let a folder load
with `trust_remote_code=True` where this package is not installed. Models built while it is imported run the CPU
kernel layer (`poolformer_hf.kernels`; `set_kernels(model, None)` or POOLFORMER_HF_KERNELS=0 turns it off).
"""

from . import _quiet_imports  # noqa: F401  (first: before transformers loads torchao with its quantizers)
from transformers import (
    AutoBackbone,
    AutoConfig,
    AutoModel,
    AutoModelForImageClassification,
    AutoModelForSemanticSegmentation,
)

from .auto_registration_image import register_image_processors
from .auto_registration_segmentation import register_segmentation_image_processor
from .configuration_poolformer import PoolFormerConfig
from .image_processing_pil_poolformer import PoolFormerImageProcessorPil
from .image_processing_poolformer import PoolFormerImageProcessor
from .image_processing_segmentation_poolformer import PoolFormerSegmentationImageProcessor
from .inference import fuse_for_inference
from .kernels import install_on_new_models, set_kernels
from .labels import imagenet_id2label
from .modeling_poolformer import (
    PoolFormerBackbone,
    PoolFormerForImageClassification,
    PoolFormerModel,
    PoolFormerPreTrainedModel,
)
from .modeling_poolformer_segmentation import PoolFormerForSemanticSegmentation
from .presets import PRESET_NAMES, PRESETS


def _register() -> None:
    AutoConfig.register(PoolFormerConfig.model_type, PoolFormerConfig, exist_ok=True)
    for auto_class, model_class in (
        (AutoModel, PoolFormerModel),
        (AutoModelForImageClassification, PoolFormerForImageClassification),
        (AutoBackbone, PoolFormerBackbone),
        (AutoModelForSemanticSegmentation, PoolFormerForSemanticSegmentation),
    ):
        auto_class.register(PoolFormerConfig, model_class, exist_ok=True)
        model_class.register_for_auto_class(auto_class.__name__)
    PoolFormerConfig.register_for_auto_class()
    register_image_processors()
    register_segmentation_image_processor()
    install_on_new_models(PoolFormerPreTrainedModel)


_register()

__all__ = [
    "PRESETS",
    "PRESET_NAMES",
    "PoolFormerBackbone",
    "PoolFormerConfig",
    "PoolFormerForImageClassification",
    "PoolFormerForSemanticSegmentation",
    "PoolFormerImageProcessor",
    "PoolFormerImageProcessorPil",
    "PoolFormerModel",
    "PoolFormerPreTrainedModel",
    "PoolFormerSegmentationImageProcessor",
    "fuse_for_inference",
    "imagenet_id2label",
    "set_kernels",
]

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
    AutoImageProcessor,
    AutoModel,
    AutoModelForImageClassification,
    AutoModelForSemanticSegmentation,
    PreTrainedConfig,
)

from .configuration_poolformer import PoolFormerConfig
from .image_processing_pil_poolformer import PoolFormerImageProcessorPil
from .image_processing_poolformer import PoolFormerImageProcessor
from .image_processing_segmentation_poolformer import PoolFormerSegmentationImageProcessor
from .inference.folding import fuse_for_inference
from .kernels import install_on_new_models, set_kernels
from .data.labels import imagenet_id2label
from .modeling_poolformer import (
    PoolFormerBackbone,
    PoolFormerForImageClassification,
    PoolFormerModel,
    PoolFormerPreTrainedModel,
)
from .modeling_poolformer_segmentation import PoolFormerForSemanticSegmentation
from .presets import PRESET_NAMES, PRESETS, PresetInfo, list_presets, preset_info


class SegmentationProcessorKey(PreTrainedConfig):
    """Registry key only: never instantiated, matches no model folder.

    AutoImageProcessor maps a config class to one processor per backend, and PoolFormerConfig's entry is the
    classification processor. A segmentation folder shares that config class, so without this key AutoImageProcessor
    would load its `preprocessor_config.json` into the classification processor (center crop, no label maps, no
    `post_process_semantic_segmentation`). AutoImageProcessor resolves a recorded `image_processor_type` by searching
    the classes of every registered entry, so the segmentation processor gets an entry of its own under this key.
    """

    model_type = "poolformer_hf_segmentation_processor"


def register_image_processors() -> None:
    """Let `AutoImageProcessor.from_pretrained(folder, backend="torchvision" | "pil")` pick our processors, and find
    the segmentation processor by the name a saved folder records. Safe to call more than once: the classes are
    already registered for auto-class code sharing, so this only adds the config-class mappings."""
    AutoImageProcessor.register(
        PoolFormerConfig,
        image_processor_classes={"torchvision": PoolFormerImageProcessor, "pil": PoolFormerImageProcessorPil},
        exist_ok=True,
    )
    AutoImageProcessor.register(
        SegmentationProcessorKey,
        image_processor_classes={"torchvision": PoolFormerSegmentationImageProcessor},
        exist_ok=True,
    )


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
    "PresetInfo",
    "fuse_for_inference",
    "imagenet_id2label",
    "list_presets",
    "preset_info",
    "set_kernels",
]

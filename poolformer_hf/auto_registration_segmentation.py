"""Let `AutoImageProcessor` find `PoolFormerSegmentationImageProcessor` by the name a saved folder records.

AutoImageProcessor maps a config class to one processor per backend, and PoolFormerConfig's entry is the
classification processor. A segmentation folder shares that config class, so without this lookup AutoImageProcessor
would load its `preprocessor_config.json` into the classification processor (center crop, no label maps, no
`post_process_semantic_segmentation`). AutoImageProcessor resolves a recorded `image_processor_type` by searching the
classes of every registered entry, so the segmentation processor gets an entry of its own under a key class that no
model uses.
"""

from transformers import AutoImageProcessor, PreTrainedConfig


class SegmentationProcessorKey(PreTrainedConfig):
    """Registry key only: never instantiated, matches no model folder."""

    model_type = "poolformer_hf_segmentation_processor"


def register_segmentation_image_processor() -> None:
    from .image_processing_segmentation_poolformer import PoolFormerSegmentationImageProcessor

    AutoImageProcessor.register(
        SegmentationProcessorKey,
        image_processor_classes={"torchvision": PoolFormerSegmentationImageProcessor},
        exist_ok=True,
    )

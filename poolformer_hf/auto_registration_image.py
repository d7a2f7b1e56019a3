"""Register PoolFormer's image processors with `AutoImageProcessor` for `PoolFormerConfig`."""

from transformers import AutoImageProcessor

from .image_processing_shared_poolformer import backend_classes


def register_image_processors() -> None:
    """Let `AutoImageProcessor.from_pretrained(folder, backend="torchvision" | "pil")` pick our processors.

    Safe to call more than once. Both classes are already registered for auto-class code sharing (their
    `save_pretrained` writes `auto_map` and copies their code), so this only adds the config-class mapping.
    """
    from .configuration_poolformer import PoolFormerConfig

    AutoImageProcessor.register(PoolFormerConfig, image_processor_classes=backend_classes(), exist_ok=True)

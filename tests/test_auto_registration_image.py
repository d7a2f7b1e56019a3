"""Importing poolformer_hf maps PoolFormerConfig to both processor backends in AutoImageProcessor."""

from transformers.models.auto.image_processing_auto import IMAGE_PROCESSOR_MAPPING

from poolformer_hf import PoolFormerConfig, PoolFormerImageProcessor, PoolFormerImageProcessorPil
from poolformer_hf import register_image_processors


def test_package_import_registers_both_backends():
    assert IMAGE_PROCESSOR_MAPPING[PoolFormerConfig] == {
        "torchvision": PoolFormerImageProcessor,
        "pil": PoolFormerImageProcessorPil,
    }


def test_registering_again_is_harmless():
    register_image_processors()
    register_image_processors()
    assert IMAGE_PROCESSOR_MAPPING[PoolFormerConfig]["pil"] is PoolFormerImageProcessorPil

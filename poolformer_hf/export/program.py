"""`torch.export` of a poolformer_hf model or its folded inference module, batch and image size dynamic."""

import torch
from torch import nn
from torch.export import Dim

# Token mixers whose weights are sized for config.image_size: their programs take that size only.
FIXED_SIZE_MIXERS = ("random_mixing", "spatial_fc")


def fixed_size_stages(config) -> list[int]:
    if not hasattr(config, "stage_value"):  # another library's config (transformers' PoolFormer): pooling only
        return []
    return [stage for stage in range(len(config.depths))
            if config.stage_value("token_mixers", stage) in FIXED_SIZE_MIXERS]


def pixel_dynamic_shapes(config, dynamic_size: bool | None = None) -> dict[int, object]:
    """The dynamic axes of `pixel_values`: the batch always; height and width unless the model has a fixed-size token
    mixer (`dynamic_size=None` then keeps them static; `True` is refused, naming the stages)."""
    stages = fixed_size_stages(config)
    if dynamic_size and stages:
        raise ValueError(
            f"This model cannot take a dynamic image size: stages {stages} use "
            f"{sorted({config.stage_value('token_mixers', s) for s in stages})}, whose weights are sized for "
            f"{config.image_size}×{config.image_size} inputs by design (config.image_size). Export with "
            "dynamic_size=False (or None) and feed that size."
        )
    if dynamic_size is None:
        dynamic_size = not stages
    return {0: Dim.DYNAMIC, 2: Dim.DYNAMIC, 3: Dim.DYNAMIC} if dynamic_size else {0: Dim.DYNAMIC}


def export_program(model: nn.Module, example: torch.Tensor, dynamic_size: bool | None = None):
    """`torch.export.export(model, pixel_values=example)` with a dynamic batch (and image size, see
    `pixel_dynamic_shapes`), in whatever grad mode the caller is in. `model` is a poolformer_hf model of any head or
    a module from `fuse_for_inference`; the program returns what it returns. Use an example batch of at least 2:
    torch.export treats sizes 0 and 1 as special."""
    if not isinstance(example, torch.Tensor) or example.ndim != 4:
        raise ValueError("example must be a (batch, channels, height, width) tensor of pixel values")
    shapes = {"pixel_values": pixel_dynamic_shapes(model.config, dynamic_size)}
    return torch.export.export(model, (), {"pixel_values": example}, dynamic_shapes=shapes)

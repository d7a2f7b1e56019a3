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


def smallest_dynamic_size(config) -> int:
    """The smallest height (or width) a program with dynamic image size takes: the one whose last stage map is 2
    pixels across. torch.export treats a size of 1 as special, so the program it traced (at a larger example) guards
    every stage map at 2 or more."""
    size = 1
    while min(config.stage_resolutions(size, size)[-1]) < 2:
        size += 1
    return size


def accepted_pixel_shapes(config, dynamic_size: bool | None = None) -> dict[str, object]:
    """The `pixel_values` shapes a program exported with `pixel_dynamic_shapes(config, dynamic_size)` runs on, as
    JSON: `{axis: {"min": ..., "max": ...}}` (`max` None: unbounded) and the channel count. The dynamic axes imply no
    divisibility (the convs floor-divide)."""
    dynamic = pixel_dynamic_shapes(config, dynamic_size)
    image = {"min": smallest_dynamic_size(config), "max": None} if 2 in dynamic else \
        {"min": config.image_size, "max": config.image_size}
    return {"batch": {"min": 1, "max": None}, "channels": config.num_channels, "height": image, "width": dict(image)}


def check_pixel_shape(shape, accepted: dict[str, object]) -> None:
    """ValueError naming `shape` and the accepted range when a program with `accepted` shapes (`accepted_pixel_shapes`)
    would refuse it (deep inside, as a failed torch.export guard)."""
    shape = tuple(shape)
    ranges = {axis: accepted[axis] for axis in ("batch", "height", "width")}
    fits = len(shape) == 4 and shape[1] == accepted["channels"] and all(
        bounds["min"] <= size and (bounds["max"] is None or size <= bounds["max"])
        for size, bounds in zip((shape[0], shape[2], shape[3]), ranges.values()))
    if not fits:
        described = ", ".join(f"{axis} {bounds['min']}..{bounds['max'] or '∞'}" for axis, bounds in ranges.items())
        raise ValueError(f"pixel_values of shape {shape} is outside what this program accepts: (batch, "
                         f"{accepted['channels']}, height, width) with {described} (any size in between)")

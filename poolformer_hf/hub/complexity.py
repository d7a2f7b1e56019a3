"""Parameter and MAC counts, measured on the meta device (no memory, no real arithmetic)."""

import torch
from torch.utils.flop_counter import FlopCounterMode


def count_parameters(model: torch.nn.Module) -> int:
    """Every parameter, frozen ones included (the papers count RandFormer's random matrices too)."""
    return sum(param.numel() for param in model.parameters())


def measure(config, image_size: int = 224) -> dict:
    """Parameters and multiply-accumulates of one forward of `config`'s classifier at `image_size`²."""
    from ..modeling_poolformer import PoolFormerForImageClassification

    with torch.device("meta"):
        model = PoolFormerForImageClassification(config).eval()
        pixels = torch.empty(1, config.num_channels, image_size, image_size)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(pixels)
    return {"params": count_parameters(model), "macs": counter.get_total_flops() // 2}

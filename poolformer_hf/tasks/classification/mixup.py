"""Soft targets for the paper's recipe: label smoothing, mixup and cutmix on whole batches, and the matching loss.

Random draws use torch's global generator, which Trainer seeds and saves in checkpoints, so a resumed run
draws what an uninterrupted one would.
"""

import math

import torch
import torch.nn.functional as F


def smoothed_one_hot(labels: torch.Tensor, num_classes: int, smoothing: float = 0.0) -> torch.Tensor:
    """[B] class ids -> [B, num_classes] targets with `smoothing` spread evenly over all classes."""
    off_value = smoothing / num_classes
    targets = torch.full((labels.shape[0], num_classes), off_value, device=labels.device)
    return targets.scatter_(1, labels.long().unsqueeze(1), 1.0 - smoothing + off_value)


def soft_target_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of -sum(targets * log_softmax(logits)); equals cross-entropy for one-hot targets."""
    return torch.sum(-targets * F.log_softmax(logits.float(), dim=-1), dim=-1).mean()


class BatchMixer:
    """Mixup (blend two images) or CutMix (paste a box of one into the other) with the batch in reverse order.

    The mixing weight lam ~ Beta(alpha, alpha); targets mix with the same weight (for CutMix, the exact pasted
    area). With both alphas set, each batch picks one of the two with equal chance, as timm does.
    """

    def __init__(self, mixup_alpha: float = 0.0, cutmix_alpha: float = 0.0):
        if mixup_alpha < 0 or cutmix_alpha < 0:
            raise ValueError(f"mixup and cutmix alphas must be >= 0, got {mixup_alpha} and {cutmix_alpha}")
        if mixup_alpha == 0 and cutmix_alpha == 0:
            raise ValueError("BatchMixer needs a positive mixup or cutmix alpha")
        self.mixup_alpha, self.cutmix_alpha = mixup_alpha, cutmix_alpha

    def __call__(self, pixel_values: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        use_cutmix = self.cutmix_alpha > 0 and (self.mixup_alpha == 0 or torch.rand(()).item() < 0.5)
        alpha = self.cutmix_alpha if use_cutmix else self.mixup_alpha
        lam = torch.distributions.Beta(alpha, alpha).sample().item()
        partner = pixel_values.flip(0)
        if use_cutmix:
            pixel_values, lam = _paste_box(pixel_values, partner, lam)
        else:
            pixel_values = pixel_values * lam + partner * (1.0 - lam)
        return pixel_values, targets * lam + targets.flip(0) * (1.0 - lam)


def _paste_box(pixel_values: torch.Tensor, partner: torch.Tensor, lam: float) -> tuple[torch.Tensor, float]:
    """Paste a box covering about 1 - lam of the area from `partner`; return the images and the kept fraction."""
    height, width = pixel_values.shape[-2:]
    cut = math.sqrt(1.0 - lam)
    box_h, box_w = int(height * cut), int(width * cut)
    center_y = int(torch.randint(height, ()).item())
    center_x = int(torch.randint(width, ()).item())
    top, bottom = max(center_y - box_h // 2, 0), min(center_y + box_h // 2, height)
    left, right = max(center_x - box_w // 2, 0), min(center_x + box_w // 2, width)
    mixed = pixel_values.clone()
    mixed[..., top:bottom, left:right] = partner[..., top:bottom, left:right]
    return mixed, 1.0 - (bottom - top) * (right - left) / (height * width)

import pytest
import torch
import torch.nn.functional as F

from poolformer_hf.tasks.classification.mixup import BatchMixer, smoothed_one_hot, soft_target_cross_entropy


def test_smoothed_one_hot_rows_sum_to_one():
    targets = smoothed_one_hot(torch.tensor([0, 2]), num_classes=4, smoothing=0.1)
    torch.testing.assert_close(targets.sum(dim=1), torch.ones(2))
    assert targets[0, 0] == pytest.approx(0.925) and targets[0, 1] == pytest.approx(0.025)


def test_soft_target_loss_matches_torch_cross_entropy_with_smoothing():
    logits, labels = torch.randn(8, 5), torch.randint(0, 5, (8,))
    for smoothing in (0.0, 0.1):
        ours = soft_target_cross_entropy(logits, smoothed_one_hot(labels, 5, smoothing))
        torch.testing.assert_close(ours, F.cross_entropy(logits, labels, label_smoothing=smoothing))


@pytest.mark.parametrize("mixup, cutmix", [(0.8, 0.0), (0.0, 1.0), (0.8, 1.0)])
def test_mixed_targets_are_distributions_and_images_change(mixup, cutmix):
    torch.manual_seed(0)
    pixels = torch.randn(6, 3, 16, 16)
    targets = smoothed_one_hot(torch.arange(6) % 3, num_classes=3)
    mixed_pixels, mixed_targets = BatchMixer(mixup, cutmix)(pixels, targets)
    assert mixed_pixels.shape == pixels.shape
    torch.testing.assert_close(mixed_targets.sum(dim=1), torch.ones(6))
    assert not torch.equal(mixed_pixels, pixels)


def test_cutmix_target_weight_is_the_pasted_area():
    torch.manual_seed(1)
    pixels = torch.zeros(2, 1, 10, 10)
    pixels[1] = 1.0  # image 0 is all zeros, its partner (the batch reversed) all ones
    targets = torch.eye(2)
    mixed, mixed_targets = BatchMixer(cutmix_alpha=1.0)(pixels, targets)
    pasted_fraction = mixed[0].mean().item()
    assert mixed_targets[0, 1].item() == pytest.approx(pasted_fraction)


def test_mixer_needs_a_positive_alpha():
    with pytest.raises(ValueError, match="positive"):
        BatchMixer(0.0, 0.0)
    with pytest.raises(ValueError, match=">= 0"):
        BatchMixer(-1.0, 0.0)

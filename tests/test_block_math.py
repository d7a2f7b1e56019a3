"""One definition of the block math: `MetaFormerBlock.forward` on the plain modules,

    y = res_scale1(x) + layer_scale1(token_mixer(norm1(x)));  z = res_scale2(y) + layer_scale2(mlp(norm2(y)))

and every faster form of it checked against that definition in one table: the CPU kernels in inference and in
training (outputs and gradients), and `fuse_for_inference` through its lean kernels and through the plain ops that
tracing sees. Every family, O(1) random weights and LayerScale 1.0, so a wrong mixer, norm or scale cannot hide."""

import copy

import pytest
import torch

from poolformer_hf import PoolFormerConfig, PoolFormerForImageClassification, fuse_for_inference, set_kernels
from poolformer_hf.inference import folding
from poolformer_hf.kernels import kernels_of
from poolformer_hf.modeling_poolformer import MetaFormerBlock
from tests.conftest import randomize_

FAMILIES = ["poolformer_s12", "poolformerv2_s12", "convformer_s18", "caformer_s18", "identityformer_s12",
            "randformer_s12"]
SIZE = 32


def the_definition(block: MetaFormerBlock, x: torch.Tensor) -> torch.Tensor:
    """The paper's two equations, written from the block's sub-modules (no stochastic depth: drop_path_rate 0)."""
    y = block.res_scale1(x) + block.layer_scale1(block.token_mixer(block.norm1(x)))
    return block.res_scale2(y) + block.layer_scale2(block.mlp(block.norm2(y)))


def model_of(preset: str) -> PoolFormerForImageClassification:
    config = PoolFormerConfig.from_preset(preset, depths=[1, 1, 2, 1], hidden_sizes=[16, 16, 32, 32], num_labels=4,
                                          image_size=SIZE, layer_scale_init_value=1.0,
                                          drop_path_rate=0.0, head_dropout=0.0)  # training: no randomness
    return randomize_(PoolFormerForImageClassification(config))


def pixels(seed=0):
    return torch.randn(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))


def relative(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return ((actual - expected).abs().max() / expected.abs().max().clamp_min(1e-12)).item()


def inference(model, x):
    with torch.no_grad():
        return model.eval()(x).logits, {}


def training_step(model, x):
    x = x.clone().requires_grad_()
    logits = model.train()(x).logits
    (logits * torch.linspace(-1, 1, logits.numel()).view_as(logits)).sum().backward()
    return logits, {"pixels": x.grad, **{name: p.grad for name, p in model.named_parameters() if p.requires_grad}}


def fused(model, x):
    with torch.no_grad():
        return fuse_for_inference(model.eval())(x).logits, {}


# form: (what runs the fast form, what runs the definition, whether the folded module's lean kernels step aside)
FORMS = {
    "kernels, inference": (inference, inference, False),
    "kernels, training step": (training_step, training_step, False),
    "fuse_for_inference": (fused, inference, False),
    "fuse_for_inference, plain ops (as traced)": (fused, inference, True),
}


@pytest.mark.parametrize("preset", FAMILIES)
def test_the_block_forward_is_the_definition(preset):
    model = set_kernels(model_of(preset), None).eval()
    x = torch.randn(2, 16, 8, 8)
    with torch.no_grad():
        for block in [module for module in model.modules() if isinstance(module, MetaFormerBlock)][:1]:
            assert relative(block(x), the_definition(block, x)) < 1e-6


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("preset", FAMILIES)
def test_every_fast_form_gives_the_definitions_outputs_and_gradients(preset, form, monkeypatch):
    fast, reference, plain_ops = FORMS[form]
    model = model_of(preset)
    plain = set_kernels(copy.deepcopy(model), None)
    assert kernels_of(model) == "cpu" and kernels_of(plain) is None
    expected, expected_grads = reference(plain, pixels())
    if plain_ops:
        monkeypatch.setattr(folding, "kernels_run", lambda x, weight: False)
    actual, grads = fast(model, pixels())
    assert relative(actual, expected) < 1e-5
    for name, grad in expected_grads.items():  # sums over many terms in another order: 1e-3 relative, and gradients
        # that are zero by the math (PoolFormer's norm1 bias: β cancels in pool(x̂) - x̂) within 1e-6
        # A scalar's gradient (StarReLU's s and b) sums every element of its map, with cancellation: 3e-3 (at one
        # thread the two orders differ by 1.01e-3)
        assert grads[name] is not None, name
        relative_tolerance = 3e-3 if grad.numel() == 1 else 1e-3
        assert (grads[name] - grad).abs().max() <= max(relative_tolerance * grad.abs().max().item(), 1e-6), name


def test_the_table_catches_a_wrong_mixer():
    """The check can fail: pooling that forgets its `- x` moves the logits far past the tolerance."""
    model = model_of("poolformer_s12")
    wrong = set_kernels(copy.deepcopy(model), None)
    for module in wrong.modules():
        if type(module).__name__ == "Pooling":
            module.forward = lambda x, size=module.pool_size: torch.nn.functional.avg_pool2d(
                x, size, 1, size // 2, count_include_pad=False)
    assert relative(inference(wrong, pixels())[0], inference(model, pixels())[0]) > 1e-2

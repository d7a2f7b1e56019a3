"""fuse_for_inference: a plain frozen module with the model's outputs, for every preset family and head, through
the eager lean kernels and through the plain ops that tracing sees."""

import pytest
import torch
from torch import nn
from transformers import PreTrainedModel, UperNetConfig, UperNetForSemanticSegmentation
from transformers.modeling_outputs import SemanticSegmenterOutput

from poolformer_hf import (
    PoolFormerBackbone,
    PoolFormerConfig,
    PoolFormerForImageClassification,
    PoolFormerForSemanticSegmentation,
    PoolFormerModel,
    fuse_for_inference,
)
from poolformer_hf.inference import folding as inference
from poolformer_hf.kernels import branches
from tests.conftest import max_abs_diff, randomize_

# One preset per family: every mixer, norm and head recipe the folding treats differently.
FAMILIES = ["poolformer_s12", "poolformerv2_s12", "convformer_s18", "caformer_s18", "identityformer_s12",
            "randformer_s12", "hybrid_pool_spatial_fc_s12", "hybrid_pool_attention_s12"]
HEADS = [PoolFormerModel, PoolFormerForImageClassification, PoolFormerBackbone]
SIZE = 64


def family_config(preset: str, **overrides) -> PoolFormerConfig:
    values = {"depths": [1, 1, 2, 1], "hidden_sizes": [16, 16, 32, 32], "num_labels": 4, "image_size": SIZE}
    return PoolFormerConfig.from_preset(preset, **{**values, **overrides})


def pixels(batch=2, size=SIZE, seed=0, dtype=torch.float32):
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def output_tensors(output) -> dict[str, torch.Tensor]:
    flat = {}
    for key, value in output.items():
        if isinstance(value, tuple):
            flat.update({f"{key}[{i}]": tensor for i, tensor in enumerate(value)})
        else:
            flat[key] = value
    return flat


def assert_same_outputs(actual, expected, tolerance=1e-4):
    assert type(actual) is type(expected)
    actual, expected = output_tensors(actual), output_tensors(expected)
    assert set(actual) == set(expected) - {"hidden_states"}
    for key, value in actual.items():
        assert max_abs_diff(value, expected[key]) < tolerance, key


@pytest.mark.parametrize("head", HEADS, ids=lambda head: head.__name__)
@pytest.mark.parametrize("preset", FAMILIES)
def test_folded_module_gives_the_models_outputs(preset, head):
    model = randomize_(head(family_config(preset))).eval()
    folded = fuse_for_inference(model)
    with torch.no_grad():
        assert_same_outputs(folded(pixels()), model(pixels()))


@pytest.mark.parametrize("preset", FAMILIES)
def test_folded_module_without_the_lean_kernels_gives_the_models_outputs(preset, monkeypatch):
    # The ops torch.export / ONNX see: the kernels step aside as they do under tracing (one head per family here;
    # the export tests trace every head).
    monkeypatch.setattr(inference, "kernels_run", lambda x, weight: False)
    head = HEADS[FAMILIES.index(preset) % len(HEADS)]
    model = randomize_(head(family_config(preset))).eval()
    folded = fuse_for_inference(model)
    with torch.no_grad():
        assert_same_outputs(folded(pixels()), model(pixels()))


@pytest.mark.parametrize("preset", ["convformer_s18", "caformer_s18", "poolformerv2_s12"])
def test_folded_mlp_and_sepconv_in_pieces_give_the_models_outputs(preset, monkeypatch):
    # A piece size of a few rows: the folded MLPs run in many row chunks, SepConv one sample at a time, each piece
    # through the folded activation (StarReLU's relu² with its shift, in place).
    monkeypatch.setattr(branches, "CHUNK_BYTES", 700)
    calls = []
    for name in ("mlp_by_rows", "sepconv_by_samples"):
        real = getattr(inference, name)
        monkeypatch.setattr(inference, name, lambda *args, real=real, name=name: calls.append(name) or real(*args))
    model = randomize_(PoolFormerForImageClassification(family_config(preset))).eval()
    folded = fuse_for_inference(model)
    with torch.no_grad():
        assert_same_outputs(folded(pixels(batch=3)), model(pixels(batch=3)))
    sepconv_blocks = {"convformer_s18": 5, "caformer_s18": 2, "poolformerv2_s12": 0}[preset]  # depths 1, 1, 2, 1
    assert calls.count("mlp_by_rows") == 5 and calls.count("sepconv_by_samples") == sepconv_blocks


@pytest.mark.parametrize("form", inference.NORMALIZATION_FORMS)
@pytest.mark.parametrize("preset", ["poolformer_s12", "poolformerv2_s12", "identityformer_s12"])
def test_every_normalization_form_gives_the_models_outputs(preset, form, monkeypatch):
    # The forms the exporters trace for each runtime (identityformer: a norm that keeps its folded affine).
    monkeypatch.setattr(inference, "kernels_run", lambda x, weight: False)
    model = randomize_(PoolFormerForImageClassification(family_config(preset))).eval()
    folded = inference.set_normalization_form(fuse_for_inference(model), form)
    assert {layer.form for layer in folded.modules() if isinstance(layer, inference.Normalize)} == {form}
    with torch.no_grad():
        assert_same_outputs(folded(pixels()), model(pixels()))
    with pytest.raises(ValueError, match="form must be one of"):
        inference.set_normalization_form(folded, "group_norm")


def test_folding_removes_the_norm_affines_and_layer_scales_of_poolformer_blocks():
    model = randomize_(PoolFormerForImageClassification(family_config("poolformer_s12"))).eval()
    folded = fuse_for_inference(model)
    blocks = [module for module in folded.modules() if isinstance(module, inference.FoldedBlock)]
    assert len(blocks) == sum(model.config.depths)
    for block in blocks:
        assert isinstance(block.token_branch, inference.PoolingBranch)
        assert block.token_branch.normalize.weight is None and block.mlp_branch.norm.weight is None
    parameters = lambda module: sum(p.numel() for p in module.parameters())  # noqa: E731
    # per block: γ1, β1, ls1 become one scale; γ2, β2, ls2 vanish into fc1 / fc2
    assert parameters(model) - parameters(folded) == sum(
        5 * width * depth for width, depth in zip(model.config.hidden_sizes, model.config.depths))


def test_the_folded_module_is_a_frozen_plain_module_and_the_model_is_untouched():
    model = randomize_(PoolFormerForImageClassification(family_config("poolformer_s12"))).eval()
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    folded = fuse_for_inference(model)
    assert isinstance(folded, nn.Module) and not isinstance(folded, PreTrainedModel)
    assert not any(param.requires_grad for param in folded.parameters())
    assert all(torch.equal(before[name], tensor) for name, tensor in model.state_dict().items())
    folded.train()  # no dropout or stochastic depth left: train mode computes the same
    with torch.no_grad():
        assert max_abs_diff(folded(pixels()).logits, model(pixels()).logits) < 1e-4
    model.train()
    model(pixels(), labels=torch.tensor([0, 1])).loss.backward()  # the original trains on


def test_gradients_reach_the_input_through_the_folded_module():
    model = randomize_(PoolFormerForImageClassification(family_config("poolformer_s12"))).eval()
    x = pixels().requires_grad_(True)
    fuse_for_inference(model)(x).logits.sum().backward()
    reference = pixels().requires_grad_(True)
    model(reference).logits.sum().backward()
    assert max_abs_diff(x.grad, reference.grad) < 1e-4


STAGES = ["stage1", "stage2", "stage3", "stage4"]


def semantic_fpn(preset: str) -> PoolFormerForSemanticSegmentation:
    """A tiny Semantic FPN with O(1) random weights and BatchNorm statistics far from (0, 1), in eval mode."""
    config = family_config(preset, out_features=STAGES)
    config.fpn_hidden_size, config.decode_head_hidden_size = 16, 8  # head fields: not preset overrides
    model = randomize_(PoolFormerForSemanticSegmentation(config))
    generator = torch.Generator().manual_seed(1)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.normal_(0, 0.5, generator=generator)
            module.running_var.uniform_(0.5, 2.0, generator=generator)
    return model.eval()


def relative_difference(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return max_abs_diff(actual, expected) / expected.abs().max().item()


@pytest.mark.parametrize("lean", [True, False], ids=["lean_kernels", "plain_ops"])
@pytest.mark.parametrize("preset", ["poolformer_s12", "poolformerv2_s12", "caformer_s18"])
def test_folded_semantic_fpn_gives_the_models_logits(preset, lean, monkeypatch):
    # The backbone folded, the FPN neck and head copied: the logits within 1e-5 of the largest, lean kernels or not.
    if not lean:
        monkeypatch.setattr(inference, "kernels_run", lambda x, weight: False)
    model = semantic_fpn(preset)
    folded = fuse_for_inference(model)
    x = pixels(size=72)  # not a multiple of 32: the head resizes the coarse levels to the finest one's size
    with torch.no_grad():
        actual, expected = folded(x), model(x)
    assert type(actual) is SemanticSegmenterOutput and actual.loss is None and actual.hidden_states is None
    assert actual.logits.shape == expected.logits.shape == (2, 4, 18, 18)
    assert relative_difference(actual.logits, expected.logits) < 1e-5


def test_the_folded_semantic_fpn_stays_in_eval_mode_without_dropout():
    model = semantic_fpn("poolformer_s12")
    folded = fuse_for_inference(model)
    assert not any(isinstance(module, nn.modules.dropout._DropoutNd) for module in folded.modules())
    statistics = [buffer.clone() for buffer in folded.buffers()]
    folded.train()  # a frozen inference module: its BatchNorms keep using (and keep) their running statistics
    assert not any(module.training for module in folded.modules())
    with torch.no_grad():
        assert relative_difference(folded(pixels()).logits, model(pixels()).logits) < 1e-5
    assert all(torch.equal(before, after) for before, after in zip(statistics, folded.buffers(), strict=True))


def test_fuse_for_inference_rejects_other_models_naming_the_ones_it_folds():
    supported = "PoolFormerModel, PoolFormerForImageClassification, PoolFormerBackbone or PoolFormerForSemanticSegmentation"
    with pytest.raises(TypeError, match=f"expects a poolformer_hf model: {supported}; got Linear"):
        fuse_for_inference(nn.Linear(2, 2))
    # transformers' UperNet on our backbone is transformers' model, not ours
    backbone = family_config("poolformer_s12", out_features=STAGES)
    upernet = UperNetForSemanticSegmentation(UperNetConfig(backbone_config=backbone, hidden_size=8,
                                                           auxiliary_channels=8, num_labels=3))
    with pytest.raises(TypeError, match="got UperNetForSemanticSegmentation"):
        fuse_for_inference(upernet)


def test_bfloat16_folding_keeps_every_parameter_bfloat16_and_stays_close():
    model = randomize_(PoolFormerForImageClassification(family_config("poolformer_s12"))).eval()
    folded = fuse_for_inference(model, dtype=torch.bfloat16)
    assert {param.dtype for param in folded.parameters()} == {torch.bfloat16}
    with torch.no_grad():
        expected = model(pixels()).logits
        lean = folded(pixels(dtype=torch.bfloat16)).logits
        plain = torch.compile(folded, fullgraph=True, backend="eager")(pixels(dtype=torch.bfloat16)).logits
        # float32 pixels (what the image processor makes) are cast to the module's dtype on the way in
        from_float32 = folded(pixels()).logits
        assert torch.equal(from_float32, folded(pixels().to(torch.bfloat16)).logits)
    assert lean.dtype == plain.dtype == from_float32.dtype == torch.bfloat16
    for logits in (lean, plain, from_float32):
        assert max_abs_diff(logits, expected) < 0.05 * expected.abs().max().item()


def test_a_float32_module_takes_bfloat16_pixels_in_float32():
    model = randomize_(PoolFormerForImageClassification(family_config("poolformer_s12"))).eval()
    with torch.no_grad():
        logits = fuse_for_inference(model)(pixels().to(torch.bfloat16)).logits
        expected = model(pixels().to(torch.bfloat16).float()).logits
    assert logits.dtype == torch.float32
    assert max_abs_diff(logits, expected) < 1e-4


def test_folded_module_compiles_without_graph_breaks():
    torch._dynamo.reset()
    model = randomize_(PoolFormerBackbone(family_config("poolformerv2_s12"))).eval()
    folded = fuse_for_inference(model)
    with torch.no_grad():
        compiled = torch.compile(folded, fullgraph=True, backend="aot_eager")(pixels())
        assert_same_outputs(compiled, model(pixels()))
    assert isinstance(fuse_for_inference(model, compile=True), torch._dynamo.eval_frame.OptimizedModule)
    tuned = fuse_for_inference(model, compile={"freezing": True, "max_autotune": True})  # Inductor's options
    assert tuned.get_compiler_config()["freezing"] and tuned.get_compiler_config()["max_autotune"]


@pytest.mark.parametrize("scale, bias", [(1.6, -0.3), (0.0, 0.4)])
def test_star_relu_folds_into_the_next_conv_and_leaves_the_model_as_it_was(scale, bias):
    model = randomize_(PoolFormerForImageClassification(family_config("convformer_s18"))).eval()
    with torch.no_grad():
        for module in model.modules():
            if type(module).__name__ == "StarReLU":
                module.scale.fill_(scale)
                module.bias.fill_(bias)
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    fused = fuse_for_inference(model)
    kinds = {type(module).__name__ for module in fused.modules()}
    assert "ShiftedSquaredReLU" in kinds
    assert ("StarReLU" in kinds) == (scale == 0.0)  # before a depthwise conv, s = 0 cannot carry b/s
    with torch.no_grad():
        assert max_abs_diff(fused(pixels()).logits, model(pixels()).logits) <= 1e-5 * max(
            1.0, model(pixels()).logits.abs().max().item())
    assert all(torch.equal(model.state_dict()[name], tensor) for name, tensor in before.items())

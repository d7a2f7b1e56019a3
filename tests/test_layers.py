"""Each building block against the formula it implements."""

import pytest
import torch
import torch.nn.functional as F

from conftest import max_abs_diff, randomize_, tiny_config
from poolformer_hf import PoolFormerBackbone, PoolFormerConfig, PoolFormerForImageClassification, PoolFormerModel
from poolformer_hf.configuration_poolformer import TOKEN_MIXER_NAMES
from poolformer_hf.layers import TOKEN_MIXERS, ChannelLayerNorm, GroupNorm1, StarReLU, make_norm
from poolformer_hf.modeling_poolformer import MetaFormerBlock

X = torch.randn(2, 32, 6, 5, generator=torch.Generator().manual_seed(0))


def mixer(name, **overrides):
    config = tiny_config(attention_head_dim=8, image_size=64, **overrides)
    return randomize_(TOKEN_MIXERS[name](config, 32, 2)).eval(), config


def test_every_config_mixer_name_has_a_class():
    assert set(TOKEN_MIXERS) == set(TOKEN_MIXER_NAMES)


def test_pooling_averages_real_neighbours_only_then_subtracts_the_token():
    module, _ = mixer("pooling")
    out = module(X)
    # The corner token averages its 2×2 real neighbourhood (zero padding is not counted).
    corner = X[:, :, :2, :2].mean((-2, -1))
    assert max_abs_diff(out[:, :, 0, 0], corner - X[:, :, 0, 0]) < 1e-6
    centre = X[:, :, 1:4, 1:4].mean((-2, -1))
    assert max_abs_diff(out[:, :, 2, 2], centre - X[:, :, 2, 2]) < 1e-6


def test_identity_mixer_passes_tokens_through():
    module, _ = mixer("identity")
    assert torch.equal(module(X), X)


def test_attention_is_multi_head_softmax_attention_over_all_tokens():
    module, _ = mixer("attention")
    tokens = X.flatten(2).transpose(1, 2)  # (B, N, C)
    q, k, v = module.qkv(tokens).chunk(3, dim=-1)
    heads = lambda t: t.unflatten(-1, (4, 8)).transpose(1, 2)  # noqa: E731
    weights = (heads(q) @ heads(k).transpose(-1, -2) / 8**0.5).softmax(-1)
    expected = module.proj((weights @ heads(v)).transpose(1, 2).flatten(2)).transpose(1, 2).reshape(X.shape)
    assert max_abs_diff(module(X), expected) < 1e-5


def test_sepconv_is_pointwise_depthwise_pointwise():
    module, _ = mixer("sepconv")
    hidden = module.act1(F.conv2d(X, module.pwconv1.weight))
    hidden = F.conv2d(hidden, module.dwconv.weight, padding=3, groups=hidden.shape[1])
    assert max_abs_diff(module(X), F.conv2d(hidden, module.pwconv2.weight)) < 1e-5


@pytest.mark.parametrize("name", ["random_mixing", "spatial_fc"])
def test_fixed_size_mixers_mix_tokens_and_refuse_other_resolutions(name):
    config = tiny_config(token_mixers=["pooling", "pooling", name, name], image_size=64)
    model = randomize_(PoolFormerForImageClassification(config)).eval()
    block = model.poolformer.stages[2].blocks[0].token_mixer
    feature = torch.randn(1, 32, 4, 4)
    matrix = block.random_matrix if name == "random_mixing" else block.token_fc.weight
    expected = feature.flatten(2) @ matrix.T + (0 if name == "random_mixing" else block.token_fc.bias)
    assert max_abs_diff(block(feature), expected.view_as(feature)) < 1e-5
    assert model(torch.randn(1, 3, 64, 64)).logits.shape == (1, 3)
    with pytest.raises(ValueError, match="4×4 feature maps"):
        model(torch.randn(1, 3, 96, 96))


def test_random_mixing_matrix_is_frozen_row_stochastic_and_saved(tmp_path):
    model = PoolFormerModel(tiny_config(token_mixers="random_mixing", image_size=32))
    matrix = model.stages[3].blocks[0].token_mixer.random_matrix
    assert not matrix.requires_grad
    assert torch.allclose(matrix.sum(-1), torch.ones(matrix.shape[0]))
    model.save_pretrained(tmp_path)
    assert torch.equal(PoolFormerModel.from_pretrained(tmp_path).stages[3].blocks[0].token_mixer.random_matrix, matrix)


def test_norms():
    x = torch.randn(2, 8, 3, 3)
    group = randomize_(GroupNorm1(8, eps=1e-5))
    assert max_abs_diff(group(x), F.group_norm(x, 1, group.weight, group.bias, 1e-5)) < 1e-6
    layer = randomize_(ChannelLayerNorm(8, eps=1e-6))
    mean, var = x.mean(1, keepdim=True), x.var(1, keepdim=True, unbiased=False)
    expected = (x - mean) / (var + 1e-6).sqrt() * layer.weight.view(-1, 1, 1) + layer.bias.view(-1, 1, 1)
    assert max_abs_diff(layer(x), expected) < 1e-5
    for kind in ("group_norm", "layer_norm", "batch_norm"):
        assert make_norm(kind, 8, 1e-5, bias=False).bias is None
        assert make_norm(kind, 8, 1e-5, bias=True).bias is not None


def test_star_relu():
    act = StarReLU()
    with torch.no_grad():
        act.scale.fill_(0.8), act.bias.fill_(-0.1)
    x = torch.randn(50)
    assert max_abs_diff(act(x), 0.8 * F.relu(x) ** 2 - 0.1) < 1e-6


def test_block_implements_the_metaformer_formula_with_both_scales():
    config = tiny_config(res_scale_init_value=0.7, layer_scale_init_value=0.5, norm_type="layer_norm",
                         hidden_act="star_relu", mlp_bias=False)
    block = randomize_(MetaFormerBlock(config, 2, drop_path=0.0)).eval()
    x = torch.randn(2, 32, 4, 4)
    s = lambda module: module.scale.view(-1, 1, 1)  # noqa: E731
    y = s(block.res_scale1) * x + s(block.layer_scale1) * block.token_mixer(block.norm1(x))
    z = s(block.res_scale2) * y + s(block.layer_scale2) * block.mlp.fc2(block.mlp.act(block.mlp.fc1(block.norm2(y))))
    assert max_abs_diff(block(x), z) < 1e-5
    assert block.mlp.fc1.bias is None


@pytest.mark.parametrize("name", ["hybrid_pool_attention_s12", "hybrid_pool_spatial_fc_s12", "randformer_s12",
                                  "identityformer_s12", "caformer_s18"])
def test_family_presets_run_every_head_at_224(name):
    config = PoolFormerConfig.from_preset(name, num_labels=4, out_indices=[1, 2, 3, 4])
    with torch.device("meta"):  # only shapes matter here: no weights, no arithmetic
        classifier = PoolFormerForImageClassification(config)
        backbone = PoolFormerBackbone(config)
        pixels = torch.empty(1, 3, 224, 224)
    out = classifier(pixels, output_hidden_states=True)
    assert out.logits.shape == (1, 4) and len(out.hidden_states) == 4
    assert [m.shape[-1] for m in backbone(pixels).feature_maps] == [56, 28, 14, 7]


def test_gradient_checkpointing_with_attention_stages_gives_the_same_gradients():
    config = tiny_config(token_mixers=["pooling", "sepconv", "attention", "attention"], attention_head_dim=8,
                         norm_type=["group_norm", "layer_norm", "layer_norm", "batch_norm"],
                         hidden_act=["gelu", "star_relu", "squared_relu", "silu"],
                         res_scale_init_value=[None, None, 1.0, 1.0], head_type="mlp")
    model = randomize_(PoolFormerForImageClassification(config)).train()
    pixels = torch.randn(2, 3, 64, 64)
    model(pixels).logits.square().sum().backward()
    reference = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    model.activation_checkpointing_enable()
    model(pixels).logits.square().sum().backward()
    for name, param in model.named_parameters():
        if name in reference:
            assert torch.allclose(param.grad, reference[name], atol=1e-5, rtol=1e-4), name

"""Every fast path gives the plain path's outputs and gradients: the lean kernels of fused.py (against the modules'
autograd and gradcheck), channels-last vs NCHW inputs, fuse_for_inference, torch.compile, bfloat16."""

import copy

import pytest
import torch
import torch.nn.functional as F

from conftest import max_abs_diff, randomize_, tiny_config
from poolformer_hf import PoolFormerBackbone, PoolFormerConfig, PoolFormerForImageClassification, PoolFormerModel
from poolformer_hf import fused
from poolformer_hf.inference import fuse_for_inference
from poolformer_hf.layers import GroupNorm1, Mlp
from poolformer_hf.modeling_poolformer import MetaFormerBlock


def images(batch=2, size=64, seed=0, dtype=torch.float32):
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def plain_copy(model):
    """The same model through the plain module path (every block's lean kernels turned off)."""
    plain = copy.deepcopy(model)
    for module in plain.modules():
        if isinstance(module, MetaFormerBlock):
            module.lean_token_mixing = module.lean_mlp = False
    return plain


# ------------------------------------------------------------------------------------------------- the kernels
def branch_parts(dim=6, seed=0, dtype=torch.float64):
    torch.manual_seed(seed)
    norm, mlp = GroupNorm1(dim).to(dtype), Mlp(dim, 4 * dim, "gelu", bias=True).to(dtype)
    randomize_(norm, seed), randomize_(mlp, seed)
    return norm, mlp


def optional_scales(dim, layer_scale, res_scale, dropped, dtype=torch.float64):
    make = lambda on: (torch.rand(dim, dtype=dtype) + 0.5).requires_grad_() if on else None  # noqa: E731
    sample_scale = torch.tensor([0.0, 1.25, 1.25], dtype=dtype) if dropped else None
    return make(layer_scale), make(res_scale), sample_scale


def reference_residual(x, branch, layer_scale, res_scale, sample_scale):
    if layer_scale is not None:
        branch = branch * layer_scale.view(-1, 1, 1)
    if sample_scale is not None:
        branch = branch * sample_scale.view(-1, 1, 1, 1)
    return (x if res_scale is None else x * res_scale.view(-1, 1, 1)) + branch


SCALE_CASES = [(True, False, False), (True, True, True), (False, True, False), (False, False, True)]


@pytest.mark.parametrize("layer_scale, res_scale, dropped", SCALE_CASES)
def test_pooling_kernel_matches_the_modules_and_their_gradients(layer_scale, res_scale, dropped):
    norm, _ = branch_parts()
    ls, rs, d = optional_scales(6, layer_scale, res_scale, dropped)
    x = torch.randn(3, 6, 5, 7, dtype=torch.float64).contiguous(memory_format=torch.channels_last).requires_grad_()
    leaves = [x, norm.weight, norm.bias] + [t for t in (ls, rs) if t is not None]

    actual = fused.pooling_mixing(x, norm, 3, ls, rs, d)
    normed = norm(x)
    expected = reference_residual(x, F.avg_pool2d(normed, 3, 1, 1, count_include_pad=False) - normed, ls, rs, d)
    grad = torch.randn_like(expected)
    assert max_abs_diff(actual, expected) < 1e-12
    for a, e in zip(torch.autograd.grad(actual, leaves, grad), torch.autograd.grad(expected, leaves, grad)):
        assert max_abs_diff(a, e) < 1e-10
    with torch.no_grad():
        assert max_abs_diff(fused.pooling_mixing(x, norm, 3, ls, rs, d), expected) < 1e-12


def test_pooling_kernel_passes_gradcheck():
    norm, _ = branch_parts(dim=3)
    ls, rs, _ = optional_scales(3, True, True, False)
    x = torch.randn(2, 3, 3, 4, dtype=torch.float64).contiguous(memory_format=torch.channels_last).requires_grad_()
    inputs = (x, norm.weight, ls, rs)
    assert torch.autograd.gradcheck(lambda x, gamma, ls, rs: fused._PoolingMixing.apply(
        x, gamma, norm.bias, ls, rs, torch.tensor([0.5, 2.0], dtype=torch.float64), 3, 1e-5), inputs)


@pytest.mark.parametrize("layer_scale, res_scale, dropped", SCALE_CASES)
@pytest.mark.parametrize("chunk_bytes", [1 << 30, 24 * 8 * 4])  # one chunk; chunks of 4 rows (not a divisor)
@pytest.mark.parametrize("size", [(5, 7), (2, 2)])  # more pixel rows than hidden channels, and fewer
def test_mlp_kernel_matches_the_modules_and_their_gradients(monkeypatch, layer_scale, res_scale, dropped, chunk_bytes,
                                                            size):
    monkeypatch.setattr(fused, "CHUNK_BYTES", chunk_bytes)
    norm, mlp = branch_parts()
    ls, rs, d = optional_scales(6, layer_scale, res_scale, dropped)
    y = torch.randn(3, 6, *size, dtype=torch.float64).contiguous(memory_format=torch.channels_last).requires_grad_()
    leaves = [y, *norm.parameters(), *mlp.parameters()] + [t for t in (ls, rs) if t is not None]

    actual = fused.mlp_mixing(y, norm, mlp, ls, rs, d)
    expected = reference_residual(y, mlp(norm(y)), ls, rs, d)
    grad = torch.randn_like(expected)
    assert max_abs_diff(actual, expected) < 1e-12
    for a, e in zip(torch.autograd.grad(actual, leaves, grad), torch.autograd.grad(expected, leaves, grad)):
        assert max_abs_diff(a, e) < 1e-10
    with torch.no_grad():
        assert max_abs_diff(fused.mlp_mixing(y, norm, mlp, ls, rs, d), expected) < 1e-12


def test_mlp_kernel_passes_gradcheck():
    norm, mlp = branch_parts(dim=3)
    ls, rs, _ = optional_scales(3, True, True, False)
    y = torch.randn(2, 3, 3, 4, dtype=torch.float64).contiguous(memory_format=torch.channels_last).requires_grad_()
    inputs = (y, norm.weight, norm.bias, mlp.fc1.weight, mlp.fc2.bias, ls, rs)

    def run(y, gamma, beta, w1, b2, ls, rs):
        return fused._MlpMixing.apply(y, gamma, beta, w1, mlp.fc1.bias, mlp.fc2.weight, b2, ls, rs, None, 1e-5)

    assert torch.autograd.gradcheck(run, inputs)


# ------------------------------------------------------------------------------------------------- the model
@pytest.mark.parametrize("preset", ["poolformer_s12", "poolformerv2_s12"])
def test_training_path_matches_plain_autograd_with_stochastic_depth(preset):
    config = PoolFormerConfig.from_preset(preset, depths=[1, 2, 1, 1], hidden_sizes=[8, 16, 24, 32], num_labels=3,
                                          drop_path_rate=0.5)
    model = randomize_(PoolFormerForImageClassification(config)).train()
    plain = plain_copy(model)
    assert any(b.lean_token_mixing for b in model.modules() if isinstance(b, MetaFormerBlock))
    labels = torch.tensor([0, 2, 1])
    losses = []
    for m in (model, plain):
        torch.manual_seed(3)  # the same stochastic-depth draws on both paths
        loss = m(images(batch=3), labels=labels).loss
        loss.backward()
        losses.append(loss)
    assert abs(losses[0].item() - losses[1].item()) < 1e-5
    for (name, a), b in zip(model.named_parameters(), plain.parameters()):
        assert (a.grad is None) == (b.grad is None), name
        if a.grad is not None:
            assert max_abs_diff(a.grad, b.grad) <= 1e-5 * max(1.0, b.grad.abs().max().item()), name


def test_inference_paths_match_and_outputs_keep_the_input_memory_format(config):
    model = randomize_(PoolFormerModel(config)).eval()
    pixels = images()
    with torch.no_grad():
        expected = plain_copy(model)(pixels, output_hidden_states=True)
        from_nchw = model(pixels, output_hidden_states=True)
        from_channels_last = model(pixels.contiguous(memory_format=torch.channels_last), output_hidden_states=True)
    for out, fmt in ((from_nchw, torch.contiguous_format), (from_channels_last, torch.channels_last)):
        assert max_abs_diff(out.last_hidden_state, expected.last_hidden_state) < 1e-5
        assert max_abs_diff(out.pooler_output, expected.pooler_output) < 1e-5
        for actual, reference in zip(out.hidden_states, expected.hidden_states, strict=True):
            assert max_abs_diff(actual, reference) < 1e-5
            assert actual.is_contiguous(memory_format=fmt)
    from_nchw.last_hidden_state.view(2, 32, -1)  # NCHW callers can still .view() what they get


@pytest.mark.parametrize("preset", ["poolformer_s12", "poolformerv2_s12", "convformer_s18"])
def test_fuse_for_inference_gives_the_same_logits_and_refuses_training(tmp_path, preset):
    config = PoolFormerConfig.from_preset(preset, depths=[1, 1, 2, 1], hidden_sizes=[32, 32, 64, 64], num_labels=4)
    model = randomize_(PoolFormerForImageClassification(config)).eval()
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    fast = model.fuse_for_inference()
    with torch.no_grad():
        assert max_abs_diff(fast(images()).logits, model(images()).logits) < 1e-4
    assert all(torch.equal(before[name], tensor) for name, tensor in model.state_dict().items())
    assert not any(param.requires_grad for param in fast.parameters())
    with pytest.raises(RuntimeError, match="fused for inference"):
        fast.train()
    with pytest.raises(RuntimeError, match="fused for inference"):
        fast.save_pretrained(tmp_path)
    with pytest.raises(RuntimeError):  # nothing to differentiate
        fast(images()).logits.sum().backward()
    model.train()  # the original trains on
    model(images(), labels=torch.tensor([0, 1])).loss.backward()


def test_fuse_for_inference_rejects_other_models():
    with pytest.raises(ValueError, match="poolformer_hf model"):
        fuse_for_inference(torch.nn.Linear(2, 2))


def test_bfloat16_paths_stay_close_to_float32(config):
    model = randomize_(PoolFormerForImageClassification(config)).eval()
    with torch.no_grad():
        expected = model(images()).logits
        default = copy.deepcopy(model).to(torch.bfloat16)(images(dtype=torch.bfloat16)).logits
        fast = model.fuse_for_inference(dtype=torch.bfloat16)(images(dtype=torch.bfloat16)).logits
    assert default.dtype == fast.dtype == torch.bfloat16
    scale = expected.abs().max().item()
    assert max_abs_diff(default, expected) < 0.05 * scale
    assert max_abs_diff(fast, expected) < 0.05 * scale


def test_fusing_a_bfloat16_model_keeps_every_parameter_bfloat16(config):
    # The folded LayerScale is a new module: it must take the model's dtype, or the plain modules (compiled inference)
    # would promote the maps to float32 and the next conv would refuse them.
    model = randomize_(PoolFormerForImageClassification(config)).eval().to(torch.bfloat16)
    fast = model.fuse_for_inference()
    assert {param.dtype for param in fast.parameters()} == {torch.bfloat16}
    with torch.no_grad():
        lean = fast(images(dtype=torch.bfloat16)).logits
        plain = torch.compile(fast, fullgraph=True, backend="eager")(images(dtype=torch.bfloat16)).logits
    assert plain.dtype == torch.bfloat16
    assert max_abs_diff(plain, lean) < 0.05 * lean.float().abs().max().item()


def test_autocast_bfloat16_training_step_runs_and_stays_close(config):
    # Under autocast the convs return bfloat16 while the weights stay float32: the block must not hand mixed dtypes
    # to its explicit-output GEMMs (it falls back to the plain modules, which autocast casts).
    model = randomize_(PoolFormerForImageClassification(config)).train()
    with torch.no_grad():
        expected = model.eval()(images()).logits
    model.train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(images()).logits
    logits.float().square().sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters() if p.requires_grad)
    assert max_abs_diff(logits, expected) < 0.05 * expected.abs().max().item()


# ------------------------------------------------------------------------------------------------- torch.compile
def test_compile_fullgraph_for_every_head_and_the_fused_model():
    torch._dynamo.reset()
    config = tiny_config(depths=[1, 1, 1, 1], hidden_sizes=[8, 8, 16, 16])
    pixels = images(size=32)
    heads = {
        PoolFormerModel: lambda out: out.last_hidden_state,
        PoolFormerForImageClassification: lambda out: out.logits,
        PoolFormerBackbone: lambda out: out.feature_maps[-1],
    }
    with torch.no_grad():
        for head, pick in heads.items():
            model = randomize_(head(config)).eval()
            compiled = torch.compile(model, fullgraph=True, dynamic=False)  # fullgraph: a graph break raises
            assert max_abs_diff(pick(compiled(pixels)), pick(model(pixels))) < 1e-5, head.__name__
            if head is PoolFormerForImageClassification:
                fast = model.fuse_for_inference(compile=True)
                assert max_abs_diff(fast(pixels).logits, model(pixels).logits) < 1e-5
                half = torch.compile(copy.deepcopy(model).to(torch.bfloat16), fullgraph=True, backend="eager")
                assert half(pixels.to(torch.bfloat16)).logits.dtype == torch.bfloat16  # no break in the bf16 path


@pytest.mark.parametrize("preset", ["convformer_s18", "caformer_s18"])
def test_compiled_inference_of_the_convolution_and_attention_stages_matches_eager(preset):
    # Under torch.compile the 1×1 convs run as convs rather than GEMMs over pixel rows (and the blocks as modules).
    config = PoolFormerConfig.from_preset(preset, depths=[1, 1, 1, 1], hidden_sizes=[32, 32, 64, 64], num_labels=3)
    model = randomize_(PoolFormerForImageClassification(config)).eval()
    with torch.no_grad():
        expected = model(images(size=64)).logits
        compiled = torch.compile(model, fullgraph=True, dynamic=False, backend="aot_eager")(images(size=64)).logits
    assert max_abs_diff(compiled, expected) < 1e-4


def test_compiled_training_step_has_no_graph_break_and_the_same_gradients():
    config = tiny_config(depths=[1, 1, 1, 1], hidden_sizes=[8, 8, 16, 16], drop_path_rate=0.0)
    model = randomize_(PoolFormerForImageClassification(config)).train()
    reference = copy.deepcopy(model)
    compiled = torch.compile(model, fullgraph=True, dynamic=False, backend="aot_eager")
    labels = torch.tensor([0, 2])
    compiled(images(size=32), labels=labels).loss.backward()
    reference(images(size=32), labels=labels).loss.backward()
    for (name, a), b in zip(model.named_parameters(), reference.parameters()):
        assert max_abs_diff(a.grad, b.grad) <= 1e-5 * max(1.0, b.grad.abs().max().item()), name


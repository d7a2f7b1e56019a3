"""The kernel layer gives the plain modules' outputs and gradients, and steps aside where it must: the branch kernels
(against the modules' autograd and gradcheck), whole models with and without kernels for NCHW and channels-last
inputs, the switches (`set_kernels`, POOLFORMER_HF_KERNELS), torch.compile / torch.export, autocast, bfloat16."""

import copy

import pytest
import torch
import torch.nn.functional as F

from conftest import max_abs_diff, randomize_, tiny_config
from poolformer_hf import (
    PoolFormerBackbone,
    PoolFormerConfig,
    PoolFormerForImageClassification,
    PoolFormerModel,
    kernels,
    set_kernels,
)
from poolformer_hf.kernels import branches
from poolformer_hf.layers import GroupNorm1, Mlp
from poolformer_hf.modeling_poolformer import MetaFormerBlock


def images(batch=2, size=64, seed=0, dtype=torch.float32):
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def plain_copy(model):
    """The same model through the plain modules (the kernel layer turned off)."""
    return set_kernels(copy.deepcopy(model), None)


def close(actual, expected, tolerance=1e-5):
    """Equal up to float32 rounding, relative to the size of the values."""
    return max_abs_diff(actual, expected) <= tolerance * max(1.0, expected.abs().max().item())


def forbid_kernels(monkeypatch):
    """Make every kernel forward that would run raise: what runs afterwards ran the plain modules."""
    def refuse(*args, **kwargs):
        raise AssertionError("a kernel ran")

    for name in ("pooling_mixing", "mlp_mixing", "pointwise_conv", "conv2d", "mlp_by_rows", "sepconv_by_samples"):
        monkeypatch.setattr(kernels, name, refuse)


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

    actual = branches.pooling_mixing(x, norm, 3, ls, rs, d)
    normed = norm(x)
    expected = reference_residual(x, F.avg_pool2d(normed, 3, 1, 1, count_include_pad=False) - normed, ls, rs, d)
    grad = torch.randn_like(expected)
    assert max_abs_diff(actual, expected) < 1e-12
    for a, e in zip(torch.autograd.grad(actual, leaves, grad), torch.autograd.grad(expected, leaves, grad)):
        assert max_abs_diff(a, e) < 1e-10
    with torch.no_grad():
        assert max_abs_diff(branches.pooling_mixing(x, norm, 3, ls, rs, d), expected) < 1e-12


def test_pooling_kernel_passes_gradcheck():
    norm, _ = branch_parts(dim=3)
    ls, rs, _ = optional_scales(3, True, True, False)
    x = torch.randn(2, 3, 3, 4, dtype=torch.float64).contiguous(memory_format=torch.channels_last).requires_grad_()
    inputs = (x, norm.weight, ls, rs)
    assert torch.autograd.gradcheck(lambda x, gamma, ls, rs: branches._PoolingMixing.apply(
        x, gamma, norm.bias, ls, rs, torch.tensor([0.5, 2.0], dtype=torch.float64), 3, 1e-5), inputs)


@pytest.mark.parametrize("layer_scale, res_scale, dropped", SCALE_CASES)
@pytest.mark.parametrize("chunk_bytes", [1 << 30, 24 * 8 * 4])  # one chunk; chunks of 4 rows (not a divisor)
@pytest.mark.parametrize("size", [(5, 7), (2, 2)])  # more pixel rows than hidden channels, and fewer
def test_mlp_kernel_matches_the_modules_and_their_gradients(monkeypatch, layer_scale, res_scale, dropped, chunk_bytes,
                                                            size):
    monkeypatch.setattr(branches, "CHUNK_BYTES", chunk_bytes)
    norm, mlp = branch_parts()
    ls, rs, d = optional_scales(6, layer_scale, res_scale, dropped)
    y = torch.randn(3, 6, *size, dtype=torch.float64).contiguous(memory_format=torch.channels_last).requires_grad_()
    leaves = [y, *norm.parameters(), *mlp.parameters()] + [t for t in (ls, rs) if t is not None]

    actual = branches.mlp_mixing(y, norm, mlp, ls, rs, d)
    expected = reference_residual(y, mlp(norm(y)), ls, rs, d)
    grad = torch.randn_like(expected)
    assert max_abs_diff(actual, expected) < 1e-12
    for a, e in zip(torch.autograd.grad(actual, leaves, grad), torch.autograd.grad(expected, leaves, grad)):
        assert max_abs_diff(a, e) < 1e-10
    with torch.no_grad():
        assert max_abs_diff(branches.mlp_mixing(y, norm, mlp, ls, rs, d), expected) < 1e-12


def test_mlp_kernel_passes_gradcheck():
    norm, mlp = branch_parts(dim=3)
    ls, rs, _ = optional_scales(3, True, True, False)
    y = torch.randn(2, 3, 3, 4, dtype=torch.float64).contiguous(memory_format=torch.channels_last).requires_grad_()
    inputs = (y, norm.weight, norm.bias, mlp.fc1.weight, mlp.fc2.bias, ls, rs)

    def run(y, gamma, beta, w1, b2, ls, rs):
        return branches._MlpMixing.apply(y, gamma, beta, w1, mlp.fc1.bias, mlp.fc2.weight, b2, ls, rs, None, 1e-5)

    assert torch.autograd.gradcheck(run, inputs)


# ------------------------------------------------------------------------------------------------- the model
@pytest.mark.parametrize("preset", ["poolformer_s12", "poolformerv2_s12"])
def test_training_path_matches_plain_autograd_with_stochastic_depth(preset):
    config = PoolFormerConfig.from_preset(preset, depths=[1, 2, 1, 1], hidden_sizes=[8, 16, 32, 32], num_labels=3,
                                          drop_path_rate=0.5)
    model = randomize_(PoolFormerForImageClassification(config)).train()
    plain = plain_copy(model)
    assert kernels.kernels_of(model) == "cpu" and kernels.kernels_of(plain) is None
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


@pytest.mark.parametrize("preset", ["poolformer_s12", "poolformerv2_s12", "convformer_s18"])
def test_kernels_give_the_plain_outputs_for_nchw_and_channels_last_inputs(preset):
    config = PoolFormerConfig.from_preset(preset, depths=[1, 1, 2, 1], hidden_sizes=[8, 16, 32, 32])
    model = randomize_(PoolFormerModel(config)).eval()
    pixels = images()
    with torch.no_grad():
        expected = plain_copy(model)(pixels, output_hidden_states=True)
        from_nchw = model(pixels, output_hidden_states=True)
        from_channels_last = model(pixels.contiguous(memory_format=torch.channels_last), output_hidden_states=True)
    for out in (from_nchw, from_channels_last):
        assert close(out.last_hidden_state, expected.last_hidden_state)
        assert close(out.pooler_output, expected.pooler_output)
        for actual, reference in zip(out.hidden_states, expected.hidden_states, strict=True):
            assert close(actual, reference)


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("kernel_set", ["cpu", None])
def test_gradients_reach_every_returned_hidden_state(channels_last, kernel_set):
    # Grad-CAM and attributions differentiate the output with respect to intermediate maps: each returned hidden state
    # must be the tensor the output was computed from, whatever the input's memory format.
    model = set_kernels(randomize_(PoolFormerForImageClassification(tiny_config())).eval(), kernel_set)
    pixels = images()
    if channels_last:
        pixels = pixels.contiguous(memory_format=torch.channels_last)
    out = model(pixels, output_hidden_states=True)
    assert len(out.hidden_states) == 4
    grads = torch.autograd.grad(out.logits[:, 0].sum(), out.hidden_states)
    assert all(grad is not None and grad.abs().sum() > 0 for grad in grads)


@pytest.mark.parametrize("use_reentrant", [False, True])
def test_activation_checkpointing_recomputes_the_blocks_that_run_the_kernels(use_reentrant):
    # transformers checkpoints a GradientCheckpointingLayer by wrapping its class's forward; a kernel forward set on
    # the instance must still go through the layer's checkpoint function, or checkpointing silently does nothing.
    model = randomize_(PoolFormerForImageClassification(tiny_config())).train()
    assert kernels.kernels_of(model) == "cpu"
    labels = torch.tensor([0, 2])
    model(images(), labels=labels).loss.backward()
    expected = {name: param.grad.clone() for name, param in model.named_parameters()}
    model.zero_grad()
    model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": use_reentrant})
    blocks = [module for module in model.modules() if isinstance(module, MetaFormerBlock)]
    calls = []

    def counted(checkpoint):
        def run(*args, **kwargs):
            calls.append(1)
            return checkpoint(*args, **kwargs)

        return run

    for block in blocks:
        block._gradient_checkpointing_func = counted(block._gradient_checkpointing_func)
    model(images(), labels=labels).loss.backward()
    assert len(calls) == len(blocks)
    for name, param in model.named_parameters():
        assert max_abs_diff(param.grad, expected[name]) <= 1e-5 * max(1.0, expected[name].abs().max().item()), name


def test_set_kernels_switches_every_layer_and_none_runs_only_the_plain_modules(monkeypatch, config):
    model = randomize_(PoolFormerForImageClassification(config)).eval()
    swapped = [name for name, module in model.named_modules() if "forward" in module.__dict__]
    assert any(name.endswith("blocks.0") for name in swapped) and "poolformer.stem" in swapped
    with torch.no_grad():
        expected = model(images()).logits
        set_kernels(model, None)
        assert not [name for name, module in model.named_modules() if "forward" in module.__dict__]
        forbid_kernels(monkeypatch)
        assert max_abs_diff(model(images()).logits, expected) < 1e-5
    with pytest.raises(ValueError, match="kernels must be one of"):
        set_kernels(model, "cuda")


def test_the_environment_variable_turns_the_kernels_off_for_new_models(monkeypatch, config):
    monkeypatch.setenv("POOLFORMER_HF_KERNELS", "0")
    assert kernels.kernels_of(PoolFormerModel(config)) is None
    monkeypatch.setenv("POOLFORMER_HF_KERNELS", "cpu")
    assert kernels.kernels_of(PoolFormerModel(config)) == "cpu"
    monkeypatch.setenv("POOLFORMER_HF_KERNELS", "fast")
    with pytest.raises(ValueError, match="POOLFORMER_HF_KERNELS='fast'"):
        PoolFormerModel(config)


def test_kernels_step_aside_off_the_cpu_and_for_other_dtypes():
    weight = torch.zeros(2)
    assert kernels.kernels_run(torch.zeros(2), weight)
    assert not kernels.kernels_run(torch.zeros(2, device="meta"), weight)  # CUDA and others: not measured there
    assert not kernels.kernels_run(torch.zeros(2, dtype=torch.float64), weight)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not kernels.kernels_run(torch.zeros(2), weight)


def test_kernels_step_aside_under_torch_compile_and_export(monkeypatch, config):
    model = randomize_(PoolFormerForImageClassification(config)).eval()
    pixels, other = images(), images(batch=3, seed=5)
    with torch.no_grad():
        expected, expected_other = model(pixels).logits, model(other).logits
    forbid_kernels(monkeypatch)
    torch._dynamo.reset()
    compiled = torch.compile(model, fullgraph=True, backend="eager")
    with torch.no_grad():
        assert max_abs_diff(compiled(pixels).logits, expected) < 1e-5
    # torch.export with grad enabled (its default) and a dynamic batch: the program holds plain ops, no kernel
    # specialised to the example's shape, so it gives the eager outputs at another batch size.
    batch = torch.export.Dim("batch", min=1, max=8)
    program = torch.export.export(model, (pixels,), dynamic_shapes=({0: batch},))
    with torch.no_grad():
        assert max_abs_diff(program.module()(other).logits, expected_other) < 1e-5


def test_bfloat16_paths_stay_close_to_float32(config):
    model = randomize_(PoolFormerForImageClassification(config)).eval()
    with torch.no_grad():
        expected = model(images()).logits
        half = copy.deepcopy(model).to(torch.bfloat16)
        default = half(images(dtype=torch.bfloat16)).logits
        plain = plain_copy(half)(images(dtype=torch.bfloat16)).logits
    assert default.dtype == plain.dtype == torch.bfloat16
    scale = expected.abs().max().item()
    assert max_abs_diff(default, expected) < 0.05 * scale
    assert max_abs_diff(plain, expected) < 0.05 * scale


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
def test_compile_fullgraph_for_every_head():
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
                half = torch.compile(copy.deepcopy(model).to(torch.bfloat16), fullgraph=True, backend="eager")
                assert half(pixels.to(torch.bfloat16)).logits.dtype == torch.bfloat16  # no break in the bf16 path


@pytest.mark.parametrize("preset", ["convformer_s18", "caformer_s18"])
def test_compiled_inference_of_the_convolution_and_attention_stages_matches_eager(preset):
    # Under torch.compile the plain modules run: the 1×1 convs as convs, the blocks as the formula.
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



def test_selective_checkpointing_of_the_plain_blocks_gives_the_same_gradients(config):
    from poolformer_hf.tasks.selective_checkpointing import apply_selective_checkpointing

    model = randomize_(PoolFormerForImageClassification(config)).train()
    selective = apply_selective_checkpointing(plain_copy(model))
    labels = torch.tensor([0, 2])
    for m in (model, selective):
        m(images(), labels=labels).loss.backward()
    for (name, a), b in zip(model.named_parameters(), selective.parameters()):
        assert close(a.grad, b.grad), name


def test_inference_stores_the_strided_conv_weights_channels_last_and_training_still_works():
    from poolformer_hf.modeling_poolformer import Downsample, Stem

    model = randomize_(PoolFormerForImageClassification(tiny_config())).eval()
    convs = [module.conv for module in model.modules() if isinstance(module, (Stem, Downsample))]
    pixels = images()
    expected = plain_copy(model)(pixels).logits.detach()
    with torch.inference_mode():
        logits = model(pixels).logits
    assert all(conv.weight.is_contiguous(memory_format=torch.channels_last) for conv in convs)
    assert close(logits, expected)
    # The swapped weights are normal tensors: gradients flow as through the plain modules.
    reference = plain_copy(model)
    model(pixels).logits.sum().backward()
    reference(pixels).logits.sum().backward()
    for conv, plain in zip(convs, [m.conv for m in reference.modules() if isinstance(m, (Stem, Downsample))]):
        assert close(conv.weight.grad, plain.weight.grad)
    set_kernels(model, None)
    assert all(conv.weight.is_contiguous() for conv in convs)
    assert model.eval()(pixels).logits.is_contiguous()


@pytest.mark.parametrize("preset", ["poolformer_s12", "poolformerv2_s12", "convformer_s18", "caformer_s18",
                                    "randformer_s12", "identityformer_s12"])
def test_a_batch_of_zero_images_gives_empty_outputs_and_gradients(preset):
    config = PoolFormerConfig.from_preset(preset, depths=[1, 1, 1, 1], hidden_sizes=[8, 8, 32, 32], num_labels=3,
                                          image_size=32)
    model = PoolFormerForImageClassification(config).train()
    pixels = torch.randn(0, 3, 32, 32, requires_grad=True)
    logits = model(pixels).logits
    logits.sum().backward()
    assert logits.shape == (0, 3) and pixels.grad.shape == (0, 3, 32, 32)
    assert model.poolformer.stem.conv.weight.grad.abs().sum() == 0


def _star_model(preset="convformer_s18"):
    config = PoolFormerConfig.from_preset(preset, depths=[1, 1, 1, 1], hidden_sizes=[16, 16, 32, 32], num_labels=3)
    return randomize_(PoolFormerForImageClassification(config)).eval()


@pytest.mark.parametrize("preset", ["convformer_s18", "caformer_s18"])
@pytest.mark.parametrize("scale, bias", [(1.7, -0.4), (-0.8, 0.3), (1.2, 0.0)])
def test_inference_star_relu_folded_into_the_next_conv_gives_the_plain_outputs(preset, scale, bias):
    # Outside autograd the kernels square relu(x) in place and fold StarReLU's s and b into the next conv.
    model = _star_model(preset)
    with torch.no_grad():
        for module in model.modules():
            if type(module).__name__ == "StarReLU":
                module.scale.fill_(scale)
                module.bias.fill_(bias)
    with torch.inference_mode():
        assert close(model(images()).logits, plain_copy(model)(images()).logits)
    with torch.no_grad():
        assert close(model(images()).logits, plain_copy(model)(images()).logits)


def test_a_hooked_or_zero_scale_star_relu_runs_as_its_module():
    model = _star_model()
    acts = [module for module in model.modules() if type(module).__name__ == "StarReLU"]
    calls = []
    handles = [act.register_forward_hook(lambda module, args, out: calls.append(module)) for act in acts]
    with torch.inference_mode():
        hooked = model(images()).logits
    assert len(calls) == len(acts)  # every hook saw its activation: none was folded away
    with torch.inference_mode():
        assert close(hooked, plain_copy(model)(images()).logits)
    for handle in handles:
        handle.remove()
    with torch.no_grad():
        for act in acts:
            act.scale.zero_()
    with torch.inference_mode():
        assert close(model(images()).logits, plain_copy(model)(images()).logits)


def test_mlp_and_sepconv_kernels_run_outside_autograd_and_step_aside_in_training(monkeypatch):
    # Measured: their GEMMs over channels-last rows are faster forward, the plain convs' backward faster in training.
    config = PoolFormerConfig.from_preset("convformer_s18", depths=[1, 1, 1, 1], hidden_sizes=[8, 16, 24, 32])
    model = randomize_(PoolFormerModel(config))
    calls = []
    for name in ("mlp_by_rows", "sepconv_by_samples"):
        real = getattr(kernels, name)
        monkeypatch.setattr(kernels, name, lambda *args, real=real, name=name: calls.append(name) or real(*args))
    with torch.no_grad():
        model.eval()(images())
    assert sorted(calls) == ["mlp_by_rows"] * 4 + ["sepconv_by_samples"] * 4
    calls.clear()
    model.train()(images()).last_hidden_state.sum().backward()
    assert calls == []


def _chunked_model(preset, act):
    config = PoolFormerConfig.from_preset(preset, depths=[1, 1, 1, 1], hidden_sizes=[8, 16, 32, 32], num_labels=3,
                                          hidden_act=act, sepconv_act=act, attention_head_dim=16)
    return randomize_(PoolFormerForImageClassification(config)).eval()


@pytest.mark.parametrize("act", ["star_relu", "gelu", "relu", "squared_relu", "silu"])
@pytest.mark.parametrize("preset", ["convformer_s18", "caformer_s18"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_mlp_and_sepconv_in_pieces_give_the_plain_outputs(monkeypatch, preset, act, dtype):
    # A piece size of a few rows: the MLP runs in many row chunks (not dividing the rows evenly), SepConv one sample
    # at a time; the activation is applied to each piece.
    model = _chunked_model(preset, act)
    pixels = images(batch=3, size=48)
    with torch.inference_mode():
        plain = plain_copy(model)(pixels).logits  # float32, the plain modules
        model.to(dtype)
        whole = model(pixels.to(dtype)).logits
        monkeypatch.setattr(branches, "CHUNK_BYTES", 700)
        pieces = model(pixels.to(dtype)).logits
    assert pieces.dtype == whole.dtype == dtype
    # float32: equal up to rounding; bfloat16: as close to float32 as the plain bfloat16 path is (see above)
    tolerance = 1e-5 if dtype == torch.float32 else 0.05
    assert close(pieces.float(), plain, tolerance) and close(whole.float(), plain, tolerance)


def test_a_hooked_or_replaced_activation_sees_the_whole_map_once_per_call(monkeypatch):
    monkeypatch.setattr(branches, "CHUNK_BYTES", 700)
    model = _chunked_model("convformer_s18", "gelu")
    pixels = images(batch=3, size=48)
    with torch.inference_mode():
        expected = plain_copy(model)(pixels).logits
    acts = [module for name, module in model.named_modules() if name.endswith(("mlp.act", "act1"))]
    shapes = []
    handles = [act.register_forward_hook(lambda module, args, out: shapes.append(out.shape)) for act in acts]
    with torch.inference_mode():
        hooked = model(pixels).logits
    assert len(shapes) == len(acts) == 8 and all(shape[0] == 3 for shape in shapes)  # each once, on all 3 images
    assert close(hooked, expected)
    for handle in handles:
        handle.remove()

    class Softsign(torch.nn.Module):  # not a class the kernels know to be elementwise
        def forward(self, x):
            return F.softsign(x)

    for block in model.poolformer.stages[0].blocks:
        block.mlp.act = Softsign()
    with torch.inference_mode():
        assert close(model(pixels).logits, plain_copy(model)(pixels).logits)

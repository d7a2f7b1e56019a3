"""The kernel layer composes with the tools that change a model's module tree: under the default call, PEFT adapters,
hooks, parametrizations, pruning, replaced sub-modules, quantizers and FSDP2 act exactly as on the plain modules.

Each case applies the same change to a model with the kernels (the default) and to the same model with the plain
modules only (`set_kernels(model, None)`), runs both in training mode and compares logits (1e-5 relative), every
parameter's gradient (1e-4 relative) and how often every hook fired. O(1) random weights, LayerScale O(1), for each
family: PoolFormer v1, v2, ConvFormer, CAFormer. Where the kernel honours the change (PEFT's LoRA on a conv), the
test also asserts that the kernels still run."""

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import peft
import pytest
import torch
import torch.nn.utils.parametrize as parametrize
from torch import nn
from torch.nn.utils import prune

from conftest import randomize_
from poolformer_hf import PoolFormerConfig, PoolFormerForImageClassification, kernels, set_kernels
from poolformer_hf.kernels import branches
from poolformer_hf.layers import Mlp, SepConv
from poolformer_hf.modeling_poolformer import MetaFormerBlock
from poolformer_hf.tasks.classification.lora import DEFAULT_TARGET_MODULES

FAMILIES = {"v1": "poolformer_s12", "v2": "poolformerv2_s12", "convformer": "convformer_s18",
            "caformer": "caformer_s18"}
# The layers PEFT's LoRA targets by default in scripts/train.py: the MLP's 1×1 convs, the separable conv's
# pointwise convs, and CAFormer's attention projections (nn.Linear, not under any kernel).
LORA_TARGETS = DEFAULT_TARGET_MODULES


def build(family: str) -> PoolFormerForImageClassification:
    config = PoolFormerConfig.from_preset(
        FAMILIES[family], depths=[1, 1, 2, 1], hidden_sizes=[32, 32, 64, 64], num_labels=5, drop_path_rate=0.0,
        head_dropout=0.0, layer_scale_init_value=1.0 if family == "v1" else None,
    )
    return randomize_(PoolFormerForImageClassification(config), seed=0).train()


def pixels(channels_last: bool = False) -> torch.Tensor:
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def run(model: nn.Module, channels_last: bool = False):
    """Logits, and the gradients of a fixed random projection of them to the pixels and every parameter."""
    torch.manual_seed(2)  # the same dropout masks (LoRA dropout) in both runs
    x = pixels(channels_last).requires_grad_()
    logits = model(pixel_values=x).logits
    (logits * torch.randn(logits.shape, generator=torch.Generator().manual_seed(3))).sum().backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    return logits.detach(), {"pixel_values": x.grad, **grads}


def assert_same(fast, plain):
    """Logits within 1e-5 and each gradient within 1e-4 of its own size, or of 1e-5 of the largest gradient's (a
    gradient that is exactly 0, such as GroupNorm's β before the pooling mixer, is float32 noise in autograd)."""
    (logits, grads), (expected_logits, expected_grads) = fast, plain
    assert (logits - expected_logits).abs().max() <= 1e-5 * expected_logits.abs().max()
    assert grads.keys() == expected_grads.keys()
    floor = 1e-5 * max(g.norm() for g in expected_grads.values())
    for name, expected in expected_grads.items():
        error = (grads[name] - expected).norm()
        assert error <= 1e-4 * expected.norm() + floor, f"{name}: |Δgrad| {error:.3g} of {expected.norm():.3g}"


def compare(family: str, change, channels_last: bool = False):
    """Apply `change` (model -> model) to the default model and to the plain one; assert both give the same
    logits and gradients; return (changed default model, changed plain model)."""
    torch.manual_seed(0)
    fast = change(build(family))
    torch.manual_seed(0)
    plain = change(set_kernels(build(family), None))
    assert_same(run(fast, channels_last), run(plain, channels_last))
    return fast, plain


def kernel_layers(model: nn.Module) -> dict[str, str]:
    return kernels.describe(model)


# ------------------------------------------------------------------------------------------------ PEFT
def lora(**options):
    defaults = {"r": 4, "lora_alpha": 8, "target_modules": LORA_TARGETS, "init_lora_weights": False}
    return lambda model: peft.get_peft_model(model, peft.LoraConfig(**{**defaults, **options}))


@pytest.mark.parametrize("family", FAMILIES)
def test_lora_is_folded_into_the_kernels_with_gradients_to_both_factors(family):
    fast, plain = compare(family, lora())
    # the adapter kept the model on the fast path: every layer with a kernel forward still runs it
    table = kernel_layers(fast)
    assert table and all(state == "kernel" for state in table.values()), table
    lora_grads = [p.grad for name, p in fast.named_parameters() if "lora_" in name]
    assert lora_grads and all(g is not None and g.abs().sum() > 0 for g in lora_grads)
    # and the adapter acts: without it the logits move
    with torch.no_grad():
        adapted = fast(pixel_values=pixels()).logits
        with fast.disable_adapter():
            base = fast(pixel_values=pixels()).logits
    assert (adapted - base).abs().max() > 1e-2 * base.abs().max()


@pytest.mark.parametrize("family", ["v1", "convformer"])
@pytest.mark.parametrize("state", ["disabled", "merged", "two adapters", "dropout", "dora"])
def test_lora_states_that_the_kernels_fold_or_leave_to_peft(family, state):
    def change(model):
        model = lora(lora_dropout=0.2 if state == "dropout" else 0.0, use_dora=state == "dora")(model)
        if state == "disabled":
            model.base_model.disable_adapter_layers()
        elif state == "merged":
            model.merge_adapter()
        elif state == "two adapters":
            model.add_adapter("second", peft.LoraConfig(r=2, target_modules=r".*\.mlp\.fc1", init_lora_weights=False))
            model.base_model.set_adapter(["default", "second"])
        return model

    # dropout masks follow the memory layout: the kernels run channels-last, so the plain modules are given that
    fast, _ = compare(family, change, channels_last=state == "dropout")
    states = set(kernel_layers(fast).values())
    if state in ("dropout", "dora"):  # PEFT computes these itself: the layers they touch run the plain modules
        assert any(s.startswith("plain:") for s in states), states
    else:
        assert states == {"kernel"}, states


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("method", ["loha", "lokr", "ia3"])
def test_other_peft_methods_on_convs_run_the_plain_modules(family, method):
    targets = r".*\.(mlp\.fc[12]|token_mixer\.pwconv[12])"
    configs = {
        "loha": lambda: peft.LoHaConfig(r=4, target_modules=targets, init_weights=False),
        "lokr": lambda: peft.LoKrConfig(r=4, target_modules=targets, init_weights=False),
        "ia3": lambda: peft.IA3Config(target_modules=targets, feedforward_modules=r".*\.(fc2|pwconv2)",
                                      init_ia3_weights=False),
    }
    fast, _ = compare(family, lambda model: peft.get_peft_model(model, configs[method]()))
    assert any("peft.tuners" in state for state in kernel_layers(fast).values())


def test_a_lora_config_naming_no_module_gets_peft_own_error():
    with pytest.raises(ValueError, match="not found in the base model"):
        lora(target_modules=["no_such_layer"])(build("v1"))


# ------------------------------------------------------------------------------------------------ LoRA in use
# A LoRA model as it is used: evaluated, switched between adapters, trained by an optimizer that updates the
# adapters in place, changed after its first call. Each step is compared with the same steps on the plain modules.
LORA_FAMILIES = ["v1", "convformer"]


def lora_pair(family: str):
    """(default model, plain model) with the same two LoRA adapters ("default", "second"; classifier trained)."""
    models = []
    for kernels_on in (True, False):
        torch.manual_seed(0)
        model = build(family) if kernels_on else set_kernels(build(family), None)
        model = lora(modules_to_save=["classifier"])(model)
        model.add_adapter("second", peft.LoraConfig(r=2, lora_alpha=6, target_modules=LORA_TARGETS,
                                                    modules_to_save=["classifier"], init_lora_weights=False))
        models.append(model)
    return models


def images(batch: int) -> torch.Tensor:
    return torch.randn(batch, 3, 64, 64, generator=torch.Generator().manual_seed(batch))


def assert_same_logits(fast, plain, x):
    with torch.no_grad():
        actual, expected = fast(pixel_values=x).logits, plain(pixel_values=x).logits
    assert (actual - expected).abs().max() <= 1e-5 * expected.abs().max()
    return actual


@pytest.fixture
def lora_paths(monkeypatch):
    """Which way the PoolFormer block kernel applied each LoRA factor pair: "folded" into the weight, or "per row"."""
    taken = Counter()
    original = branches._transposed

    def spy(weight, up, down, rows, dtype):
        result = original(weight, up, down, rows, dtype)
        if up is not None:
            taken["per row" if result[1] is not None else "folded"] += 1
        return result

    monkeypatch.setattr(branches, "_transposed", spy)
    return taken


# At 64² the stages are 16², 8², 4², 2² wide 32, 32, 64, 64: the cost rule folds a 1×1 conv's factors where
# rows ≥ 4/5 of the width (out·in ≤ rows·(out + in) for out = 4·in). Batch 16 folds everywhere; batch 1 folds in
# the early stages and applies the factors per row in the last (4 rows, width 64).
@pytest.mark.parametrize("family", LORA_FAMILIES)
@pytest.mark.parametrize("batch, paths", [(16, {"folded"}), (1, {"folded", "per row"})])
def test_lora_inference_on_the_kernels_is_that_of_the_plain_modules(family, batch, paths, lora_paths):
    fast, plain = (model.eval() for model in lora_pair(family))
    assert_same_logits(fast, plain, images(batch))
    assert set(kernel_layers(fast).values()) == {"kernel"}
    if family == "v1":  # the other families' kernels fold every adapter (no block kernel)
        assert set(lora_paths) == paths, lora_paths


@pytest.mark.parametrize("family", LORA_FAMILIES)
def test_a_disabled_adapter_gives_the_base_model_and_another_adapter_the_plain_modules(family):
    fast, plain = (model.eval() for model in lora_pair(family))
    x = images(1)
    with torch.no_grad():
        base = set_kernels(build(family), None).eval()(pixel_values=x).logits
        with fast.disable_adapter():
            without = fast(pixel_values=x).logits
    assert (without - base).abs().max() <= 1e-5 * base.abs().max()
    adapted = assert_same_logits(fast, plain, x)
    for model in (fast, plain):
        model.set_adapter("second")
    assert (assert_same_logits(fast, plain, x) - adapted).abs().max() > 1e-2 * adapted.abs().max()


@pytest.mark.parametrize("family", LORA_FAMILIES)
def test_an_optimizer_step_on_the_adapters_shows_in_the_next_kernel_call(family):
    fast, plain = lora_pair(family)
    x = images(2)
    before = assert_same_logits(fast.eval(), plain.eval(), x)
    for model in (fast, plain):
        model.train()
        optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
        model(pixel_values=x).logits.square().mean().backward()
        optimizer.step()
    after = assert_same_logits(fast.eval(), plain.eval(), x)
    assert (after - before).abs().max() > 1e-3 * before.abs().max()


@pytest.mark.parametrize("family", LORA_FAMILIES)
def test_lora_gradients_reach_the_adapters_and_classifier_and_no_frozen_weight(family, lora_paths):
    fast, plain = lora_pair(family)
    assert_same(run(fast), run(plain))
    if family == "v1":  # batch 2: the last stage (8 rows, width 64) applies the factors per row, the others fold
        assert set(lora_paths) == {"folded", "per row"}, lora_paths
    for name, parameter in fast.named_parameters():
        if parameter.requires_grad:
            assert "lora_" in name or "classifier" in name, name
            if "second" not in name:  # the inactive adapter and its classifier copy get none
                assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name
        else:
            assert parameter.grad is None, name


AFTER_A_FIRST_CALL = {
    "forward hook on mlp.fc1": lambda block: block.mlp.fc1.register_forward_hook(
        lambda module, args, out: block.fired.update(["hook"]) or out * 1.5),
    "ReLU for mlp.act": lambda block: setattr(block.mlp, "act", nn.ReLU()),
    "parametrization": lambda block: parametrize.register_parametrization(
        block.mlp.fc1.base_layer if hasattr(block.mlp.fc1, "base_layer") else block.mlp.fc1, "weight", Doubled()),
}


@pytest.mark.parametrize("family", ["v1", "convformer"])
@pytest.mark.parametrize("with_lora", [False, True], ids=["plain model", "LoRA"])
@pytest.mark.parametrize("change", AFTER_A_FIRST_CALL)
def test_a_tree_change_after_a_first_kernel_call_acts_on_the_next(family, with_lora, change):
    fast, plain = lora_pair(family) if with_lora else (build(family), set_kernels(build(family), None))
    fast, plain, x = fast.eval(), plain.eval(), images(1)
    assert_same_logits(fast, plain, x)  # the first call: kernels everywhere
    assert set(kernel_layers(fast).values()) == {"kernel"}
    blocks = []
    for model in (fast, plain):
        block = next(m for m in model.modules() if isinstance(m, MetaFormerBlock))
        block.fired = Counter()
        AFTER_A_FIRST_CALL[change](block)
        blocks.append(block)
    changed = assert_same_logits(fast, plain, x)
    with torch.no_grad():
        unchanged = set_kernels(build(family), None).eval()
        if with_lora:
            unchanged = lora_pair(family)[1].eval()
        assert (changed - unchanged(pixel_values=x).logits).abs().max() > 1e-3
    if change.startswith("forward hook"):
        assert blocks[0].fired == blocks[1].fired == Counter(hook=1)


# ------------------------------------------------------------------------------------------------ hooks
def hook_every_module(kind: str):
    """Register one counting hook of `kind` on every module; the counts land in `model.hook_counts`."""
    def change(model):
        counts = Counter()
        for name, module in model.named_modules():
            def count(*args, name=name):
                counts[name] += 1
            if kind == "forward":
                module.register_forward_hook(count)
            elif kind == "pre-forward":
                module.register_forward_pre_hook(count)
            else:
                module.register_full_backward_hook(count)
        model.hook_counts = counts
        return model
    return change


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("kind", ["forward", "pre-forward", "backward"])
def test_every_hook_on_every_sub_module_fires_as_often_as_on_the_plain_modules(family, kind):
    fast, plain = compare(family, hook_every_module(kind))
    assert fast.hook_counts == plain.hook_counts
    fired = set(fast.hook_counts)
    for sub_module in ("mlp", "mlp.fc1", "mlp.act", "norm1", "norm2", "token_mixer"):
        assert f"poolformer.stages.0.blocks.0.{sub_module}" in fired, sub_module


@pytest.mark.parametrize("family", FAMILIES)
def test_a_hook_that_changes_a_sub_module_output_changes_the_model_output(family):
    def change(model):
        model.poolformer.stages[1].blocks[0].mlp.register_forward_hook(lambda module, args, out: out * 0)
        model.poolformer.stages[2].blocks[0].mlp.fc1.register_forward_pre_hook(lambda module, args: args[0] * 2)
        return model

    fast, _ = compare(family, change)
    with torch.no_grad():
        unchanged = build(family)(pixel_values=pixels()).logits
        assert (fast(pixel_values=pixels()).logits - unchanged).abs().max() > 1e-2


def test_a_global_module_hook_sees_every_module():
    counts = {"fast": Counter(), "plain": Counter()}
    for key, model in (("fast", build("v1")), ("plain", set_kernels(build("v1"), None))):
        handle = torch.nn.modules.module.register_module_forward_hook(
            lambda module, args, out, c=counts[key]: c.update([type(module).__name__]))
        try:
            model(pixel_values=pixels())
            assert all(state.startswith("plain: global") for state in kernel_layers(model).values())
        finally:
            handle.remove()
    assert counts["fast"] == counts["plain"] and counts["fast"]["GELU"] == 5


# ------------------------------------------------------------------------------------------------ the tree changed
class Doubled(nn.Module):
    def forward(self, weight):
        return weight * 2


def parametrize_every_weight(model):
    for module in list(model.modules()):
        if isinstance(module, (nn.Conv2d, nn.GroupNorm)) and module.weight is not None:
            parametrize.register_parametrization(module, "weight", Doubled())
    return model


def prune_every_conv(model):
    for module in list(model.modules()):
        if isinstance(module, nn.Conv2d):
            prune.l1_unstructured(module, "weight", amount=0.3)
    return model


def weight_norm_every_conv(model):
    for module in list(model.modules()):
        if isinstance(module, nn.Conv2d):
            torch.nn.utils.parametrizations.weight_norm(module)
    return model


def replace(attribute: str, make):
    def change(model):
        for block in model.modules():
            if isinstance(block, MetaFormerBlock):
                owner, _, name = attribute.rpartition(".")
                target = block.get_submodule(owner) if owner else block
                setattr(target, name, make(block))
        return model
    return change


class Logged(torch.Tensor):
    """A tensor subclass (as quantizers and sharding make): it must see the ops done on it."""

    calls = 0

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        Logged.calls += 1
        return super().__torch_function__(func, types, args, kwargs or {})


def subclass_weights(model):
    for module in list(model.modules()):
        if isinstance(module, (Mlp, SepConv)):
            for conv in module.children():
                if isinstance(conv, nn.Conv2d):
                    conv.weight = nn.Parameter(conv.weight.detach().as_subclass(Logged))
    return model


def own_forward_on_every_fc1(model):
    for module in list(model.modules()):
        if isinstance(module, Mlp):
            module.fc1.forward = lambda x, conv=module.fc1: nn.Conv2d.forward(conv, x).clamp(min=-0.5)
    return model


CHANGES = {
    "parametrize": parametrize_every_weight,
    "prune": prune_every_conv,
    "weight_norm": weight_norm_every_conv,
    "relu": replace("mlp.act", lambda block: nn.ReLU()),
    "identity activation": replace("mlp.act", lambda block: nn.Identity()),
    "tanh GELU": replace("mlp.act", lambda block: nn.GELU(approximate="tanh")),
    "two-group norm": replace("norm2", lambda block: nn.GroupNorm(2, block.mlp.fc1.in_channels)),
    "identity norm": replace("norm1", lambda block: nn.Identity()),
    "identity mixer": replace("token_mixer", lambda block: nn.Identity()),
    "tensor subclass": subclass_weights,
    "own forward": own_forward_on_every_fc1,
}


# Changes to the convs that every family's kernels compute; the others touch modules only PoolFormer v1's block
# kernel computes (the other families' kernels run activations and norms as modules, so nothing steps aside there).
CHANGES_TO_THE_CONVS = {"parametrize", "prune", "weight_norm", "tensor subclass", "own forward"}


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("change", CHANGES)
def test_a_changed_module_tree_gives_the_plain_modules_results(family, change):
    fast, _ = compare(family, CHANGES[change])
    if change in CHANGES_TO_THE_CONVS or family == "v1":
        assert any(state.startswith("plain:") for state in kernel_layers(fast).values())


def test_the_default_tree_runs_every_kernel_and_a_changed_one_says_why_not():
    model = build("v1")
    assert set(kernel_layers(model).values()) == {"kernel"}
    replace("mlp.act", lambda block: nn.ReLU())(model)
    prune.l1_unstructured(model.poolformer.stem.conv, "weight", amount=0.3)
    states = kernel_layers(model)
    assert states["poolformer.stages.0.blocks.0"] == "plain: mlp.act is a ReLU, not the GELU the kernel computes"
    assert states["poolformer.stem"] == "plain: conv has hooks"
    assert states["poolformer.stages.1.downsample"] == "kernel"
    # set_kernels turns the kernels off and on again without touching a forward that someone else set
    own_forward_on_every_fc1(model)
    set_kernels(set_kernels(model, None), "cpu")
    assert "forward" in model.poolformer.stages[0].blocks[0].mlp.fc1.__dict__


# ------------------------------------------------------------------------------------------------ quantizers
@pytest.mark.parametrize("family", ["v1", "caformer"])
def test_torch_ao_dynamic_quantization(family):
    def change(model):
        with pytest.warns(DeprecationWarning):
            return torch.ao.quantization.quantize_dynamic(model.eval(), {nn.Linear}, dtype=torch.qint8)

    with torch.no_grad():
        torch.manual_seed(0)
        fast = change(build(family))
        plain = change(set_kernels(build(family), None))
        expected = plain(pixel_values=pixels()).logits
        assert (fast(pixel_values=pixels()).logits - expected).abs().max() <= 1e-5 * expected.abs().max()


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning", "ignore::FutureWarning")
def test_pt2e_quantization_of_the_default_model_is_that_of_the_plain_modules():
    pt2e = pytest.importorskip("torchao.quantization.pt2e.quantize_pt2e")
    from torchao.quantization.pt2e.quantizer import x86_inductor_quantizer as x86

    outputs = []
    for model in (build("v1").eval(), set_kernels(build("v1").eval(), None)):
        program = torch.export.export(model, (), {"pixel_values": pixels()}).module()
        quantizer = x86.X86InductorQuantizer().set_global(x86.get_default_x86_inductor_quantization_config())
        prepared = pt2e.prepare_pt2e(program, quantizer)
        prepared(pixel_values=pixels())
        with torch.no_grad():
            outputs.append(pt2e.convert_pt2e(prepared)(pixel_values=pixels()).logits)
    assert torch.equal(outputs[0], outputs[1])


# ------------------------------------------------------------------------------------------------ FSDP2
FSDP_WORKER = r"""
import os, sys, torch
import torch.distributed as dist
from torch.distributed.fsdp import fully_shard
sys.path.insert(0, {tests!r})
import test_composition as t
from poolformer_hf import set_kernels
from poolformer_hf.modeling_poolformer import MetaFormerBlock
from poolformer_hf.tasks.classification.lora import DEFAULT_TARGET_MODULES

import poolformer_hf.kernels as kernel_layer

calls = {{"n": 0}}
for name in ("pooling_mixing", "mlp_mixing", "pointwise_conv", "mlp_by_rows", "sepconv_by_samples"):  # FSDP keeps them
    def counted(*args, kernel=getattr(kernel_layer, name), **kwargs):
        calls["n"] += 1
        return kernel(*args, **kwargs)
    setattr(kernel_layer, name, counted)

dist.init_process_group("gloo")
rank = dist.get_rank()
results = {{}}
for family in t.FAMILIES:
    for kernels in ("cpu", None):
        calls["n"] = 0
        model = set_kernels(t.build(family), kernels)
        for module in model.modules():
            if isinstance(module, MetaFormerBlock):
                fully_shard(module)
        fully_shard(model)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        x = t.pixels()[rank : rank + 1]  # each rank its half of the batch
        for step in range(2):
            loss = model(pixel_values=x).logits.square().mean()
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
        model.eval()
        with torch.no_grad():
            logits = model(pixel_values=t.pixels()).logits
            logits_again = model(pixel_values=t.pixels()).logits
        model.reshard()  # the root keeps its parameters gathered after a forward
        state = {{name: p.full_tensor() for name, p in model.named_parameters()}}
        results[(family, kernels)] = (logits, logits_again, state, calls["n"])
if rank == 0:
    torch.save(results, os.environ["RESULTS"])
dist.destroy_process_group()
"""


def test_fsdp2_fully_shard_per_block_trains_as_the_plain_modules(tmp_path):
    tests = Path(__file__).resolve().parent
    results_file, script = tmp_path / "results.pt", tmp_path / "worker.py"
    script.write_text(FSDP_WORKER.format(tests=str(tests)))
    env = {**os.environ, "RESULTS": str(results_file), "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(tests.parent), str(tests)])}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", str(script)],
                          env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    results = torch.load(results_file, weights_only=True)
    for family in FAMILIES:
        logits, again, state, kernel_calls = results[(family, "cpu")]
        expected_logits, _, expected_state, plain_calls = results[(family, None)]
        assert kernel_calls > 0 and plain_calls == 0, (family, kernel_calls, plain_calls)
        assert (logits - expected_logits).abs().max() <= 1e-4 * expected_logits.abs().max(), family
        assert torch.equal(logits, again)  # inference twice: the weights FSDP gathers are never left stale
        for name, expected in expected_state.items():
            assert (state[name] - expected).abs().max() <= 1e-4 * max(1.0, expected.abs().max()), (family, name)

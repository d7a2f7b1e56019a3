import json
import warnings

import pytest
import torch
from transformers import AutoBackbone, AutoConfig, AutoModel, AutoModelForImageClassification

from conftest import max_abs_diff, randomize_, tiny_config
from isolated_python import run_isolated
from poolformer_hf import PoolFormerBackbone, PoolFormerForImageClassification, PoolFormerModel
from poolformer_hf.layers import DropPath


def images(batch=2, size=64, seed=0):
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))


def test_model_outputs_and_pooler_is_normalized_then_pooled(config):
    model = randomize_(PoolFormerModel(config)).eval()
    with torch.no_grad():
        out = model(images(), output_hidden_states=True)
    assert out.last_hidden_state.shape == (2, 32, 2, 2)
    # One per stage, as transformers' PoolFormer returns them.
    assert [tuple(h.shape[1:]) for h in out.hidden_states] == [(8, 16, 16), (16, 8, 8), (32, 4, 4), (32, 2, 2)]
    expected = model.norm(out.last_hidden_state).mean((-2, -1))
    assert max_abs_diff(out.pooler_output, expected) == 0
    assert torch.equal(out.hidden_states[-1], out.last_hidden_state)


def test_head_norm_after_pool_normalizes_the_pooled_vector():
    config = tiny_config(head_norm_type="layer_norm", head_norm_position="after_pool")
    model = randomize_(PoolFormerModel(config)).eval()
    with torch.no_grad():
        out = model(images())
        pooled = out.last_hidden_state.mean((-2, -1))
        expected = torch.nn.functional.layer_norm(pooled, (32,), model.norm.weight, model.norm.bias, config.norm_eps)
    assert max_abs_diff(out.pooler_output, expected) < 1e-6


def test_return_dict_false_gives_tuples(config):
    model = PoolFormerForImageClassification(config).eval()
    with torch.no_grad():
        logits, hidden = model(images(), output_hidden_states=True, return_dict=False)
        base = PoolFormerModel(config).eval()(images(), return_dict=False)
    assert logits.shape == (2, 3) and len(hidden) == 4
    assert len(base) == 2


def test_single_label_loss_is_cross_entropy(config):
    model = randomize_(PoolFormerForImageClassification(config)).eval()
    labels = torch.tensor([0, 2])
    out = model(images(), labels=labels)
    assert model.config.problem_type == "single_label_classification"
    assert torch.allclose(out.loss, torch.nn.functional.cross_entropy(out.logits, labels))


def test_multi_label_loss_is_bce_with_logits():
    model = randomize_(PoolFormerForImageClassification(tiny_config(problem_type="multi_label_classification")))
    labels = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    out = model.eval()(images(), labels=labels)
    assert torch.allclose(out.loss, torch.nn.functional.binary_cross_entropy_with_logits(out.logits, labels))


def test_regression_loss_is_mse():
    model = randomize_(PoolFormerForImageClassification(tiny_config(num_labels=1))).eval()
    targets = torch.tensor([0.5, -1.0])
    out = model(images(), labels=targets)
    assert model.config.problem_type == "regression"
    assert torch.allclose(out.loss, torch.nn.functional.mse_loss(out.logits.squeeze(), targets))


def test_mlp_head_and_dropout():
    config = tiny_config(head_type="mlp", head_dropout=0.3)
    model = randomize_(PoolFormerForImageClassification(config)).eval()
    assert {"fc1", "act", "norm", "dropout", "fc2"} <= {name for name, _ in model.classifier.named_children()}
    with torch.no_grad():
        out = model(images())
        pooled = model.poolformer(images()).pooler_output
    assert max_abs_diff(out.logits, model.classifier(pooled)) == 0


def test_save_and_load_round_trip_uses_safetensors_and_keeps_labels(tmp_path, config):
    config.id2label = {0: "cat", 1: "dog", 2: "fox"}
    config.label2id = {v: k for k, v in config.id2label.items()}
    model = randomize_(PoolFormerForImageClassification(config)).eval()
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists()
    assert not list(tmp_path.glob("*.bin"))
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["auto_map"] == {
        "AutoConfig": "configuration_poolformer.PoolFormerConfig",
        "AutoModel": "modeling_poolformer.PoolFormerModel",
        "AutoModelForImageClassification": "modeling_poolformer.PoolFormerForImageClassification",
        "AutoBackbone": "modeling_poolformer.PoolFormerBackbone",
    }
    assert (tmp_path / "modeling_poolformer.py").exists() and (tmp_path / "layers.py").exists()

    loaded = AutoModelForImageClassification.from_pretrained(tmp_path).eval()
    assert type(loaded) is PoolFormerForImageClassification
    assert loaded.config.id2label == {0: "cat", 1: "dog", 2: "fox"}
    with torch.no_grad():
        assert max_abs_diff(loaded(images()).logits, model(images()).logits) == 0
    base = AutoModel.from_pretrained(tmp_path)
    assert type(base) is PoolFormerModel
    assert torch.equal(base.stem.conv.weight, model.poolformer.stem.conv.weight)


def test_auto_classes_are_registered(config):
    assert type(AutoConfig.for_model("poolformer_hf")).__name__ == "PoolFormerConfig"
    assert type(AutoModel.from_config(config)) is PoolFormerModel
    assert type(AutoModelForImageClassification.from_config(config)) is PoolFormerForImageClassification
    assert type(AutoBackbone.from_config(tiny_config(out_features=["stage1"]))) is PoolFormerBackbone


def test_trust_remote_code_loads_without_the_package(tmp_path, config):
    model = randomize_(PoolFormerForImageClassification(config)).eval()
    folder = tmp_path / "model"
    model.save_pretrained(folder)
    x = images()
    torch.save(x, tmp_path / "x.pt")
    with torch.no_grad():
        expected = model(x).logits
    out = run_isolated(
        "import torch\n"
        "from transformers import AutoModelForImageClassification, AutoBackbone\n"
        f"m = AutoModelForImageClassification.from_pretrained({str(folder)!r}, trust_remote_code=True).eval()\n"
        "assert not type(m).__module__.startswith('poolformer_hf'), type(m).__module__\n"
        f"x = torch.load({str(tmp_path / 'x.pt')!r}, weights_only=True)\n"
        "with torch.no_grad():\n"
        f"    torch.save(m(x).logits, {str(tmp_path / 'logits.pt')!r})\n"
        "print(type(m).__module__)\n",
        tmp_path,
    )
    assert out.startswith("transformers_modules")
    # The shipped code is the plain model (the kernel layer stays with the package): the same logits up to rounding.
    assert max_abs_diff(torch.load(tmp_path / "logits.pt", weights_only=True), expected) < 1e-5


def saved_tensor_bytes(model, x):
    """Bytes of activations autograd keeps for backward, as seen outside any checkpointed region."""
    total = 0

    def pack(tensor):
        nonlocal total
        total += tensor.numel() * tensor.element_size()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = model(x).logits.square().sum()
    return loss, total


def test_gradient_checkpointing_gives_same_gradients_and_keeps_less(config):
    torch.manual_seed(0)
    model = randomize_(PoolFormerForImageClassification(tiny_config(depths=[2, 2, 2, 2]))).train()
    x = images(size=96)

    loss, plain_bytes = saved_tensor_bytes(model, x)
    loss.backward()
    plain_grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the current API: no deprecation warning
        model.activation_checkpointing_enable()
    assert model.is_gradient_checkpointing
    loss2, checkpointed_bytes = saved_tensor_bytes(model, x)
    loss2.backward()
    assert torch.allclose(loss, loss2)
    for name, param in model.named_parameters():
        assert torch.allclose(param.grad, plain_grads[name], atol=1e-6, rtol=1e-5), name
    assert checkpointed_bytes < 0.5 * plain_bytes, (checkpointed_bytes, plain_bytes)


def test_stochastic_depth_is_drawn_once_per_branch():
    model = PoolFormerForImageClassification(tiny_config(drop_path_rate=0.5)).train()
    calls = []
    for module in model.modules():
        if isinstance(module, DropPath):
            module.register_forward_hook(lambda *args: calls.append(1))
    model(images())
    num_dropping_blocks = sum(isinstance(m, DropPath) for m in model.modules())
    assert num_dropping_blocks == 4  # the first block of 5 has rate 0
    assert len(calls) == 2 * num_dropping_blocks  # token-mixer branch and MLP branch, nothing more


def test_drop_path_rates_rise_linearly_to_the_configured_rate():
    model = PoolFormerModel(tiny_config(drop_path_rate=0.4))
    rates = [getattr(b.drop_path, "drop_prob", 0.0) for s in model.stages for b in s.blocks]
    assert rates == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4])


@pytest.mark.parametrize(
    "pixel_values, message",
    [
        (torch.randn(2, 1, 64, 64), "3 channels"),
        (torch.randn(2, 64, 64, 3), "3 channels"),
        (torch.randn(3, 64, 64), "4 dimensions"),
        (torch.randn(1, 2, 3, 64, 64), "4 dimensions"),
        (torch.randn(1, 3, 2, 2), "too small"),
        (torch.zeros(1, 3, 64, 64, dtype=torch.uint8), "floating-point"),
    ],
)
def test_bad_pixel_values_raise_a_clear_error(config, pixel_values, message):
    model = PoolFormerForImageClassification(config).eval()
    with pytest.raises(ValueError, match=message):
        model(pixel_values)


def test_smallest_input_that_survives_downsampling_works(config):
    model = PoolFormerForImageClassification(config).eval()
    assert model(torch.randn(1, 3, 3, 3)).logits.shape == (1, 3)


def test_a_classifier_folder_loads_into_the_base_model_and_backbone_without_a_load_report(tmp_path, config, capfd):
    # The feature-extraction pipeline loads a classifier's folder into the base model: the dropped head is no news.
    PoolFormerForImageClassification(config).save_pretrained(tmp_path)
    capfd.readouterr()
    _, base_info = PoolFormerModel.from_pretrained(tmp_path, output_loading_info=True)
    _, backbone_info = PoolFormerBackbone.from_pretrained(tmp_path, output_loading_info=True)
    assert base_info["unexpected_keys"] == set() and backbone_info["unexpected_keys"] == set()
    assert "UNEXPECTED" not in "".join(capfd.readouterr())


def test_a_save_removes_the_staging_folders_that_saves_killed_on_this_machine_left_beside_it(tmp_path, config):
    import os
    import socket
    import subprocess
    import sys
    import tempfile

    from poolformer_hf.files import save_staging_prefix

    model = PoolFormerForImageClassification(config)
    folder = tmp_path / "model"
    model.save_pretrained(folder)
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    ours = f"-{os.getpid()}@"
    killed = tempfile.mkdtemp(prefix=save_staging_prefix("model").replace(ours, f"-{ended.pid}@"), dir=tmp_path)
    live = tempfile.mkdtemp(prefix=save_staging_prefix("model").replace(ours, f"-{os.getppid()}@"), dir=tmp_path)
    elsewhere = tmp_path / f".model.saving-{ended.pid}@not-{socket.gethostname()}-x1y2z3"  # a shared filesystem
    elsewhere.mkdir()
    for staging in (killed, live, elsewhere):
        (tmp_path / staging / "model.safetensors").write_bytes(b"half a save")
    model.save_pretrained(folder)
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == sorted(["model", os.path.basename(live), elsewhere.name])


def test_a_failed_save_over_an_earlier_one_leaves_it_loading(tmp_path, config):
    model = randomize_(PoolFormerForImageClassification(config)).eval()
    folder = tmp_path / "model"
    model.save_pretrained(folder)
    before = {path.name: path.read_bytes() for path in folder.iterdir()}
    changed = PoolFormerForImageClassification(config)
    changed.config.my_classes = {"cat", "dog"}  # JSON cannot hold a set
    with pytest.raises((TypeError, ValueError)):
        changed.save_pretrained(folder)
    assert {path.name: path.read_bytes() for path in folder.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # no staging folder left beside it
    reloaded = PoolFormerForImageClassification.from_pretrained(folder).eval()
    with torch.no_grad():
        assert max_abs_diff(reloaded(images()).logits, model(images()).logits) == 0

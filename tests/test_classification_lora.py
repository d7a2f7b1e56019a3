"""`scripts/train.py --lora` on a tiny model and tiny digits: the adapter folder (files, size, card, modes), reload
with PEFT to the trained logits, merge back onto the kernel path, only adapters and classifier trained, torchrun
with two processes, and the refused combinations."""

import builtins
import json
import os
import re
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file
from test_classification_run import launch, run_in_process, tiny_argv
from transformers import TrainerCallback

from poolformer_hf import PoolFormerConfig, PoolFormerForImageClassification
from poolformer_hf.kernels import describe
from poolformer_hf.tasks.classification.lora import ADAPTER_FOLDER, load_adapter_folder
from poolformer_hf.tasks.classification.run import main

pytest.importorskip("peft")

LORA = ["--lora", "true", "--learning_rate", "0.02"]


class KeepTrainedModel(TrainerCallback):
    """The model at the end of training, and its parameters at the start (to see which ones training moved)."""

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.before = {name: p.detach().clone() for name, p in model.named_parameters()}

    def on_train_end(self, args, state, control, model=None, **kwargs):
        self.model = model


def pixels():
    return torch.randn(4, 3, 16, 16, generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory):
    output_dir = tmp_path_factory.mktemp("lora")
    kept = KeepTrainedModel()
    metrics = run_in_process(tiny_argv(output_dir, *LORA), callbacks=[kept])
    return output_dir, metrics, kept


def test_adapter_folder_holds_the_adapter_its_base_and_a_card(lora_run):
    output_dir, metrics, _ = lora_run
    folder = output_dir / ADAPTER_FOLDER
    for name in ("adapter_config.json", "adapter_model.safetensors", "config.json", "preprocessor_config.json",
                 "README.md", "base_model/config.json", "base_model/model.safetensors"):  # fmt: skip
        assert (folder / name).is_file(), name
    assert not (output_dir / "model.safetensors").exists()  # the full model is not saved beside it
    config = json.loads((folder / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and config["r"] == 8 and config["lora_alpha"] == 16
    assert config["modules_to_save"] == ["classifier"] and config["base_model_name_or_path"] == "base_model"
    keys = load_file(folder / "adapter_model.safetensors").keys()
    assert keys and all("lora_" in key or ".classifier." in key for key in keys)
    assert any(".token_mixer." not in key and ".mlp.fc1.lora_A" in key for key in keys)
    assert not [p.name for p in output_dir.iterdir() if p.name.startswith(".converting-")]  # staging gone
    card = (folder / "README.md").read_text()
    metadata = yaml.safe_load(card.split("---")[1])
    assert metadata["library_name"] == "peft" and "lora" in metadata["tags"]
    values = {m["type"]: m["value"] for m in metadata["model-index"][0]["results"][0]["metrics"]}
    assert values["accuracy"] == pytest.approx(metrics["eval_accuracy"])
    assert "PeftModel.from_pretrained(base, folder)" in card and "r=8, alpha=16" in card


def test_adapter_of_s12_at_rank_8_is_under_5_mb(tmp_path):
    # The size of what --lora saves for PoolFormer-S12 with its 10-class head (built, not trained: the same bytes).
    import peft

    from poolformer_hf.tasks.classification.lora import DEFAULT_TARGET_MODULES, MODULES_TO_SAVE

    model = PoolFormerForImageClassification(PoolFormerConfig.from_preset("poolformer_s12", num_labels=10))
    config = peft.LoraConfig(r=8, lora_alpha=16, target_modules=DEFAULT_TARGET_MODULES, modules_to_save=MODULES_TO_SAVE)
    peft.get_peft_model(model, config).save_pretrained(tmp_path)
    assert (tmp_path / "adapter_model.safetensors").stat().st_size <= 5 * 10**6


def test_files_follow_the_umask(lora_run):
    folder = lora_run[0] / ADAPTER_FOLDER
    umask = os.umask(0o022)
    os.umask(umask)
    assert folder.stat().st_mode & 0o777 == 0o777 & ~umask
    for path in folder.rglob("*"):
        assert path.stat().st_mode & 0o777 == (0o777 if path.is_dir() else 0o666) & ~umask, path


def test_reload_gives_the_trained_logits_and_merge_runs_the_kernels(lora_run):
    output_dir, _, kept = lora_run
    trained = kept.model.eval()
    with torch.no_grad():
        expected = trained(pixel_values=pixels()).logits
        reloaded = load_adapter_folder(output_dir / ADAPTER_FOLDER).eval()
        assert torch.equal(reloaded(pixel_values=pixels()).logits, expected)
        merged = reloaded.merge_and_unload()
        assert type(merged) is PoolFormerForImageClassification
        torch.testing.assert_close(merged(pixel_values=pixels()).logits, expected, atol=1e-5, rtol=0)
    where = describe(merged)
    assert where and set(where.values()) == {"kernel"}, where


def test_only_the_adapters_and_the_classifier_train(lora_run):
    _, _, kept = lora_run
    after = dict(kept.model.named_parameters())
    moved = {name for name, before in kept.before.items() if not torch.equal(before, after[name])}
    trainable = {name for name, p in after.items() if p.requires_grad}
    assert moved and moved <= trainable
    assert all("lora_" in name or ".classifier.modules_to_save." in name for name in trainable), trainable
    assert any("lora_B" in name for name in moved) and any("classifier" in name for name in moved)


def test_torchrun_two_processes_save_the_same_adapter(lora_run, tmp_path):
    output_dir, _, _ = lora_run
    argv = tiny_argv(tmp_path / "torchrun", *LORA, per_device_batch=8)
    index = argv.index("--use_cpu")
    argv = argv[:index] + argv[index + 2 :]
    result = launch([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "scripts/train.py",
                     *argv], tmp_path)  # fmt: skip
    assert "world size 2" in result.stdout
    one = load_file(output_dir / ADAPTER_FOLDER / "adapter_model.safetensors")
    two = load_file(tmp_path / "torchrun" / ADAPTER_FOLDER / "adapter_model.safetensors")
    assert one.keys() == two.keys()
    for key in one:
        torch.testing.assert_close(one[key], two[key], atol=1e-4, rtol=0, msg=key)


def refused(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--lora", "true", "--do_train", "false"], "--lora trains adapters: it needs --do_train true"),
        (["--lora_r", "4"], "--lora_r set without --lora"),
        (["--lora", "true", "--lora_r", "0"], "--lora_r must be a positive integer"),
        (["--lora", "true", "--lora_dropout", "1"], r"--lora_dropout must be in \[0, 1\)"),
        # PEFT's own errors: a name matching no layer, a layer type LoRA cannot wrap (a norm).
        (["--lora", "true", "--lora_target_modules", "no_such_layer"], "No modules were targeted for adaptation"),
        (["--lora", "true", "--lora_target_modules", "norm1"], r"Target module GroupNorm1\(.*\) is not supported"),
    ],
)
def test_nonsense_combinations_stop_with_one_error_line(extra, message, tmp_path, capsys):
    line = refused(tiny_argv(tmp_path / "out", *extra), capsys)
    assert ": error: " in line and re.search(message, line), line
    assert not (tmp_path / "out" / ADAPTER_FOLDER).exists()


def test_lora_without_peft_says_what_to_install(tmp_path, capsys, monkeypatch):
    real_import = builtins.__import__

    def no_peft(name, *args, **kwargs):
        if name == "peft" or name.startswith("peft."):
            raise ImportError("No module named 'peft'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_peft)
    line = refused(tiny_argv(tmp_path / "out", "--lora", "true"), capsys)
    assert "--lora needs the peft package: pip install 'poolformer_hf[lora]'" in line
    assert not Path(tmp_path / "out").exists()

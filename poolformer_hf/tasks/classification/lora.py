"""LoRA fine-tuning in scripts/train.py (`--lora`): wrap the model in PEFT's LoRA, train the adapters and the new
classifier, and save an adapter folder that `PeftModel.from_pretrained(base, folder)` reloads.

The adapter folder is `<output_dir>/adapter`, written in a staging sibling and swapped into place whole
(`output_folders.publish`), so a reader never sees half of it. A model trained from scratch has no base checkpoint
to point at: its (frozen, untrained) base is saved in `adapter/base_model`, and adapter_config.json names it by the
relative path `base_model` (relative to the adapter folder; see docs/lora.md).
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

from huggingface_hub import EvalResult, ModelCardData

from ...hub.model_card import EVAL_METRICS, describe_architecture, read_eval_results
from ...hub.output_folders import new_staging_folder, publish, remove_stale_staging

ADAPTER_FOLDER = "adapter"
BASE_MODEL_FOLDER = "base_model"
# One pattern for every family; each name exists only where its layer does: the MLP's 1×1 convs (all blocks),
# ConvFormer's and CAFormer's separable-conv pointwise convs, and CAFormer's attention projections (nn.Linear).
DEFAULT_TARGET_MODULES = r".*\.(mlp\.fc[12]|token_mixer\.pwconv[12]|token_mixer\.qkv|token_mixer\.proj)"
# The head is new for the task (its label count): trained in full and saved with the adapters.
MODULES_TO_SAVE = ["classifier"]
# What the LoRA options default to; one of them changed without --lora is refused (it would do nothing).
LORA_DEFAULTS = {"lora_r": 8, "lora_alpha": 16, "lora_dropout": 0.0, "lora_target_modules": None}


def require_peft():
    try:
        import peft
    except ImportError:
        raise ValueError("--lora needs the peft package: pip install 'poolformer_hf[lora]'") from None
    return peft


def check_lora_arguments(model_args, training_args) -> None:
    """Refuse LoRA options that would do nothing or cannot work, before anything is built or written."""
    if not model_args.lora:
        changed = [f"--{name}" for name, default in LORA_DEFAULTS.items() if getattr(model_args, name) != default]
        if changed:
            raise ValueError(f"{', '.join(changed)} set without --lora: add --lora true, or drop them")
        return
    if not training_args.do_train:
        raise ValueError("--lora trains adapters: it needs --do_train true (to evaluate a saved adapter, load it with "
                         "PeftModel.from_pretrained)")
    if model_args.lora_r < 1:
        raise ValueError(f"--lora_r must be a positive integer, got {model_args.lora_r}")
    if model_args.lora_alpha <= 0:
        raise ValueError(f"--lora_alpha must be > 0, got {model_args.lora_alpha}")
    if not 0.0 <= model_args.lora_dropout < 1.0:
        raise ValueError(f"--lora_dropout must be in [0, 1), got {model_args.lora_dropout}")
    require_peft()


def target_modules(model_args) -> str | list[str]:
    """--lora_target_modules: a regex matched against full module names, or comma-separated name suffixes."""
    value = model_args.lora_target_modules
    if value is None:
        return DEFAULT_TARGET_MODULES
    if any(char in value for char in "*()[]|\\^$"):
        return value
    return [name.strip() for name in value.split(",") if name.strip()]


def wrap_with_lora(model, model_args):
    """`model` wrapped in PEFT's LoRA: base frozen, adapters and the classifier trainable.

    Returns (peft_model, base_copy): base_copy is the untrained base, kept to be saved when the run starts from
    scratch (no checkpoint to point the adapter at); None when --model_name_or_path names one."""
    peft = require_peft()
    base_copy = copy.deepcopy(model) if model_args.model_name_or_path is None else None
    config = peft.LoraConfig(
        r=model_args.lora_r,
        lora_alpha=model_args.lora_alpha,
        lora_dropout=model_args.lora_dropout,
        target_modules=target_modules(model_args),
        modules_to_save=MODULES_TO_SAVE,
    )
    # PEFT's own error (a target that names no module, a module type LoRA cannot wrap) is a ValueError:
    # scripts/train.py prints it as its one error line.
    return peft.get_peft_model(model, config), base_copy


def adapter_size(folder: str | os.PathLike) -> int:
    return (Path(folder) / "adapter_model.safetensors").stat().st_size


def save_adapter_folder(peft_model, image_processor, output_dir: str, base_model=None, dataset_id: str | None = None):
    """Write `<output_dir>/adapter` atomically: adapter_config.json, adapter_model.safetensors, the image
    processor, a model card, and `base_model/` when `base_model` is given. Returns the folder's path."""
    folder = os.path.abspath(os.path.join(output_dir, ADAPTER_FOLDER))
    remove_stale_staging(os.path.dirname(folder))
    staging = new_staging_folder(folder)
    peft_config = peft_model.peft_config[peft_model.active_adapter]
    if base_model is not None:
        base_model.save_pretrained(os.path.join(staging, BASE_MODEL_FOLDER))
        image_processor.save_pretrained(os.path.join(staging, BASE_MODEL_FOLDER))
        peft_config.base_model_name_or_path = BASE_MODEL_FOLDER
    # save_embedding_layers=False: we have none, and PEFT's "auto" would look the base up on the Hub.
    peft_model.save_pretrained(staging, save_embedding_layers=False)
    # The trained model's config (labels, resolution): a base checkpoint with another head loads into it.
    peft_model.get_base_model().config.save_pretrained(staging)
    image_processor.save_pretrained(staging)
    card = adapter_card(peft_model, peft_config, read_eval_results(output_dir), dataset_id, adapter_size(staging))
    Path(staging, "README.md").write_text(card, encoding="utf-8")
    publish(staging, folder)
    return folder


def load_adapter_folder(folder: str | os.PathLike, base_model_name_or_path: str | None = None):
    """The PeftModel of an adapter folder, on its saved `base_model/` or on `base_model_name_or_path` (the run's
    --model_name_or_path), loaded with the folder's config so that its head has the folder's labels."""
    from peft import PeftModel

    from ... import PoolFormerConfig, PoolFormerForImageClassification

    folder = os.fspath(folder)
    config = PoolFormerConfig.from_pretrained(folder)
    if base_model_name_or_path is None:
        base = PoolFormerForImageClassification.from_pretrained(os.path.join(folder, BASE_MODEL_FOLDER))
    else:  # the trained head comes with the adapter (modules_to_save): the checkpoint's own may not fit
        base = PoolFormerForImageClassification.from_pretrained(
            base_model_name_or_path, config=config, ignore_mismatched_sizes=True
        )
    return PeftModel.from_pretrained(base, folder)


def adapter_card(peft_model, peft_config, eval_results: dict, dataset_id: str | None, size: int) -> str:
    """README.md of an adapter folder: PEFT metadata, what was adapted, results, and how to load it."""
    config = peft_model.get_base_model().config
    base = peft_config.base_model_name_or_path
    from_scratch = base == BASE_MODEL_FOLDER
    results = [
        EvalResult(task_type="image-classification", dataset_type=dataset_id or "imagefolder",
                   dataset_name=dataset_id or "evaluation set", metric_type=EVAL_METRICS[key][0],
                   metric_name=EVAL_METRICS[key][1], metric_value=value)
        for key, value in eval_results.items()
    ]  # fmt: skip
    metadata = ModelCardData(
        library_name="peft", pipeline_tag="image-classification", license="apache-2.0",
        base_model=None if from_scratch or not base else base, tags=["lora", "poolformer_hf", "image-classification"],
        model_name="adapter" if results else None, eval_results=results or None,
    )  # fmt: skip
    trainable, total = peft_model.get_nb_trainable_parameters()
    targets = peft_config.target_modules
    targets = targets if isinstance(targets, str) else ", ".join(sorted(targets))
    lines = [f"{key.removeprefix('eval_')}: {value:.4f}" for key, value in eval_results.items()]
    if from_scratch:
        load_base = f'base = PoolFormerForImageClassification.from_pretrained(f"{{folder}}/{BASE_MODEL_FOLDER}")'
        base_text = f"its base model, trained from scratch and frozen, is saved in `{BASE_MODEL_FOLDER}/`"
    else:  # the folder's config.json carries the trained head's labels
        load_base = (f'base = PoolFormerForImageClassification.from_pretrained("{base}", '
                     "config=PoolFormerConfig.from_pretrained(folder), ignore_mismatched_sizes=True)")
        base_text = f"base model `{base}`"
    return f"""---
{metadata.to_yaml()}
---

# LoRA adapter for a PoolFormer-family image classifier

A [PEFT](https://github.com/huggingface/peft) LoRA adapter ({base_text}) with a new {config.num_labels}-class head.

- **Architecture:** {describe_architecture(config)}
- **LoRA:** r={peft_config.r}, alpha={peft_config.lora_alpha}, dropout={peft_config.lora_dropout}; targets `{targets}`;
  the `classifier` trained in full (`modules_to_save`)
- **Trainable parameters:** {trainable:,} of {total:,}; adapter_model.safetensors {size / 2**20:.2f} MiB
- **Evaluation{f" on {dataset_id}" if dataset_id else ""}:** {"; ".join(lines) if lines else "not run"}

## Usage

```python
from peft import PeftModel
from poolformer_hf import PoolFormerConfig, PoolFormerForImageClassification

folder = "path/to/this/folder"
{load_base}
model = PeftModel.from_pretrained(base, folder).eval()
merged = model.merge_and_unload()  # a plain PoolFormerForImageClassification, same logits (within 1e-5)
```
"""

"""Model cards (README.md with YAML metadata) for presets and trained folders, from one template.

The numbers in a card are of two kinds and the card keeps them apart:
- measured here, on the architecture the card describes (`complexity.measure`): parameters and MACs at the
  resolution the processor feeds the model (224² for the presets; a trained folder's own, e.g. 32² for the digits
  demo), MACs = FLOPs / 2 as `torch.utils.flop_counter.FlopCounterMode` counts convolutions and matrix products;
  and, for a trained folder, the evaluation results its Trainer wrote;
- reported by the papers for the authors' ImageNet-1k weights, quoted with their source and never put in
  the `model-index` metadata (which would claim them as this checkpoint's results); these, the published size and
  the weights' source and license come from the preset registry (`presets.PRESET_INFO`).
"""

from __future__ import annotations

import json
import string
from dataclasses import dataclass, field
from pathlib import Path

from huggingface_hub import EvalResult, ModelCardData
from torch import nn

from .complexity import measure
from ..configuration_poolformer import PoolFormerConfig
from ..presets import BASELINES_ARXIV, POOLFORMER_ARXIV, PRESET_NAMES, PresetInfo, preset_info

# Hub namespace the preset cards' usage snippets load from.
DEFAULT_NAMESPACE = "poolformer-hf"


@dataclass(frozen=True)
class Paper:
    title: str
    url: str
    bibtex: str


POOLFORMER_PAPER = Paper(
    title="MetaFormer is Actually What You Need for Vision",
    url="https://arxiv.org/abs/2111.11418",
    bibtex="""@inproceedings{yu2022metaformer,
  title={MetaFormer is Actually What You Need for Vision},
  author={Yu, Weihao and Luo, Mi and Zhou, Pan and Si, Chenyang and Zhou, Yichen and Wang, Xinchao and Feng, Jiashi and Yan, Shuicheng},
  booktitle={Proceedings of the IEEE/CVF Conference on Computer Vision and Pattern Recognition (CVPR)},
  pages={10819--10829},
  year={2022}
}""",
)
BASELINES_PAPER = Paper(
    title="MetaFormer Baselines for Vision",
    url="https://arxiv.org/abs/2210.13452",
    bibtex="""@article{yu2024metaformer,
  title={MetaFormer Baselines for Vision},
  author={Yu, Weihao and Si, Chenyang and Zhou, Pan and Luo, Mi and Zhou, Yichen and Feng, Jiashi and Yan, Shuicheng and Wang, Xinchao},
  journal={IEEE Transactions on Pattern Analysis and Machine Intelligence},
  volume={46},
  number={2},
  pages={896--912},
  year={2024}
}""",
)

# The registry names a preset's paper by its arXiv id.
PAPERS = {POOLFORMER_ARXIV: POOLFORMER_PAPER, BASELINES_ARXIV: BASELINES_PAPER}

# Preset name prefix -> (display name, tag).
FAMILIES = {
    "poolformerv2": ("PoolFormerV2", "poolformerv2"),
    "poolformer": ("PoolFormer", "poolformer"),
    "convformer": ("ConvFormer", "convformer"),
    "caformer": ("CAFormer", "caformer"),
    "identityformer": ("IdentityFormer", "identityformer"),
    "randformer": ("RandFormer", "randformer"),
    "hybrid_pool_attention": ("MetaFormer pooling/attention hybrid", "poolformer"),
    "hybrid_pool_spatial_fc": ("MetaFormer pooling/spatial-MLP hybrid", "poolformer"),
}
BASE_TAGS = ["poolformer", "metaformer", "image-classification", "vision"]

# Trainer's metric keys -> (model-index metric type, display name).
EVAL_METRICS = {
    "eval_accuracy": ("accuracy", "Top-1 accuracy"),
    "eval_top5_accuracy": ("top_5_accuracy", "Top-5 accuracy"),
    "eval_f1": ("f1", "F1"),
    "eval_macro_f1": ("f1", "Macro F1"),
}
EVAL_RESULT_FILES = ("all_results.json", "eval_results.json")


@dataclass(frozen=True)
class CardFacts:
    """Everything a card states; `render_card` turns it into markdown."""

    repo_id: str
    title: str
    summary: str
    architecture: str
    params: int
    macs: int
    num_labels: int
    preprocessing: "Preprocessing"
    tags: list[str]
    datasets: list[str] = field(default_factory=list)
    reported_top1: tuple[str, float, Paper] | None = None  # (the paper's model name, top-1 %, paper)
    original: PresetInfo | None = None  # the preset whose authors' weights, published size and license are quoted
    eval_results: dict[str, float] = field(default_factory=dict)
    eval_dataset: str | None = None
    has_processor: bool = True
    remote_code: bool = True  # the repo carries its modeling code (config.json has an auto_map)
    resolution_source: str = "the resolution of the papers' ImageNet-1k models."


@dataclass(frozen=True)
class Preprocessing:
    """What the image processor does to an image before the model sees it: resize, then center crop."""

    image_size: int  # the side of the square the model sees (trained and evaluated at)
    resize_edge: int | None = None  # the short side before the center crop; None without a crop
    crop_pct: float | None = None

    def describe(self) -> str:
        square = f"{self.image_size}×{self.image_size}"
        if self.resize_edge is None:
            return f"resized to {square}."
        crop = f" (crop_pct {self.crop_pct:g})" if self.crop_pct else ""
        return f"short side resized to {self.resize_edge}, then a {square} center crop{crop}."


def preprocessing_of(processor_config: dict) -> Preprocessing:
    """The resolution a saved processor config produces (transformers' PoolFormer semantics: with crop_pct the
    short side goes to int(size / crop_pct) and the center crop to crop_size)."""
    size = processor_config.get("size") or {}
    crop_size = processor_config.get("crop_size") or {}
    crop_pct = processor_config.get("crop_pct")
    edge = size.get("shortest_edge") or size.get("height")
    if edge is None:
        raise ValueError(f"cannot tell the resolution of a processor with size {size!r}")
    if processor_config.get("do_center_crop", True) and crop_size.get("height"):
        resize_edge = int(edge / crop_pct) if crop_pct else int(edge)
        return Preprocessing(image_size=int(crop_size["height"]), resize_edge=resize_edge, crop_pct=crop_pct)
    return Preprocessing(image_size=int(edge))


def _in_units(count: int) -> str:
    """2.38 G / 11.92 M: the precision the papers' tables use."""
    return f"{count / 1e9:.2f} G" if count >= 1e9 else f"{count / 1e6:.2f} M"


TEMPLATE = string.Template(
    """---
$metadata
---

# $title

$summary

## Model details

- **Architecture:** $architecture
- **Parameters:** $params ($params_exact), counted on this architecture with a $num_labels-class head.
- **Resolution:** ${mac_size}×${mac_size}, $resolution_source
- **MACs at ${mac_size}×${mac_size}:** $macs, measured with `torch.utils.flop_counter.FlopCounterMode`
  (convolutions and matrix products; MACs = FLOPs / 2).
- **Eval preprocessing:** $preprocessing
$code$reported$original$evaluation
## How to use

```python
$usage
```
$pipeline
## Citation

The MetaFormer papers:

```bibtex
$bibtex
```
"""
)


def render_card(facts: CardFacts) -> str:
    """The README.md for `facts`: YAML metadata, details, results, usage and citations."""
    return TEMPLATE.substitute(
        metadata=_metadata(facts).to_yaml(),
        title=facts.title,
        summary=facts.summary,
        architecture=facts.architecture,
        params=_in_units(facts.params),
        params_exact=f"{facts.params:,} parameters",
        num_labels=facts.num_labels,
        mac_size=facts.preprocessing.image_size,
        resolution_source=facts.resolution_source,
        macs=_in_units(facts.macs),
        code=(
            "- **Code:** the modeling code ships in this repo; `trust_remote_code=True` loads it with only\n"
            "  `transformers` and `torch` installed.\n"
            if facts.remote_code
            else ""
        ),
        preprocessing=facts.preprocessing.describe(),
        reported=_reported_section(facts),
        original=_original_section(facts),
        evaluation=_evaluation_section(facts),
        usage=_usage_snippet(facts),
        pipeline=_pipeline_snippet(facts),
        bibtex=f"{POOLFORMER_PAPER.bibtex}\n\n{BASELINES_PAPER.bibtex}",
    )


def _metadata(facts: CardFacts) -> ModelCardData:
    eval_results = None
    if facts.eval_results:
        dataset = facts.eval_dataset or "evaluation set"
        eval_results = [
            EvalResult(
                task_type="image-classification",
                task_name="Image Classification",
                dataset_type=facts.eval_dataset or "imagefolder",
                dataset_name=dataset,
                metric_type=EVAL_METRICS[key][0],
                metric_name=EVAL_METRICS[key][1],
                metric_value=value,
            )
            for key, value in facts.eval_results.items()
        ]
    return ModelCardData(
        library_name="transformers",
        pipeline_tag="image-classification",
        license="apache-2.0",
        tags=facts.tags,
        datasets=facts.datasets or None,
        model_name=facts.repo_id.split("/")[-1] if eval_results else None,
        eval_results=eval_results,
    )


def _reported_section(facts: CardFacts) -> str:
    if facts.reported_top1 is None:
        return ""
    model, top1, paper = facts.reported_top1
    return f"""
## ImageNet-1k results reported by the paper

| Model | Top-1 at 224² (%) | Source |
|---|---|---|
| {model} | {top1} | [{paper.title}]({paper.url}) |

This is the number the paper's authors report for their own ImageNet-1k weights. It is quoted here,
**not reproduced by us**; results we measured ourselves, if any, are listed under "Evaluation results".
"""


def _original_section(facts: CardFacts) -> str:
    info = facts.original
    if info is None or not info.pretrained:
        return ""
    checkpoint = f"[the authors' release]({info.release_url})"
    if info.top1_source:
        checkpoint += f", the weights of the top-1 above ([as the authors list it]({info.top1_source}))"
    if info.timm_tags:
        checkpoint += "; in timm: " + ", ".join(_timm_link(tag) for tag in info.timm_tags)
    lines = [f"- **Checkpoint:** {checkpoint}."]
    if info.params_m is not None:
        lines.append(
            f"- **Published size:** {info.params_m:g} M parameters, {info.gmacs:g} GMACs at {info.image_size}² "
            f"([source]({info.complexity_source})); the counts under \"Model details\" are our own."
        )
    if info.license:
        lines.append(f"- **License of the weights:** {info.license}.")
    body = "\n".join(lines)
    return f"""
## The authors' weights

{body}
"""


def _timm_link(tag: str) -> str:
    link = f"[`{tag}`](https://huggingface.co/timm/{tag})"
    return f"{link} (pretrained on ImageNet-21k)" if ".sail_in22k" in tag else link


def _evaluation_section(facts: CardFacts) -> str:
    if not facts.eval_results:
        return ""
    rows = "\n".join(f"| {EVAL_METRICS[key][1]} | {value * 100:.2f} |" for key, value in facts.eval_results.items())
    dataset = facts.eval_dataset or "the evaluation split used in training"
    return f"""
## Evaluation results

Measured on {dataset} by the training run that produced this checkpoint (Trainer's `eval_*` metrics):

| Metric | Value (%) |
|---|---|
{rows}
"""


def _usage_snippet(facts: CardFacts) -> str:
    image_lines = (
        '# Any RGB image, e.g. Image.open("cat.jpg").convert("RGB").\n'
        "image = Image.new(\"RGB\", (320, 240), (124, 116, 104))\n"
    )
    if facts.has_processor:
        return (
            "import torch\nfrom PIL import Image\n"
            "from transformers import AutoImageProcessor, AutoModelForImageClassification\n\n"
            f'repo_id = "{facts.repo_id}"\n'
            "processor = AutoImageProcessor.from_pretrained(repo_id, trust_remote_code=True)\n"
            "model = AutoModelForImageClassification.from_pretrained(repo_id, trust_remote_code=True).eval()\n\n"
            + image_lines
            + 'inputs = processor(images=image, return_tensors="pt")\n'
            "with torch.no_grad():\n    logits = model(**inputs).logits\n"
            "print(model.config.id2label[logits.argmax(-1).item()])"
        )
    return (
        "import torch\nfrom transformers import AutoModelForImageClassification\n\n"
        f'model = AutoModelForImageClassification.from_pretrained("{facts.repo_id}", trust_remote_code=True).eval()\n'
        f"# This repo has no image processor: feed normalized (batch, 3, H, W) tensors.\n"
        f"pixel_values = torch.randn(1, 3, {facts.preprocessing.image_size}, {facts.preprocessing.image_size})\n"
        "with torch.no_grad():\n    logits = model(pixel_values=pixel_values).logits\n"
        "print(model.config.id2label[logits.argmax(-1).item()])"
    )


def _pipeline_snippet(facts: CardFacts) -> str:
    if not facts.has_processor:
        return ""
    return f"""
Or with a pipeline:

```python
from PIL import Image
from transformers import pipeline

classifier = pipeline("image-classification", model="{facts.repo_id}", trust_remote_code=True)
print(classifier(Image.new("RGB", (320, 240), (124, 116, 104))))
```
"""


# -- facts for a preset or a folder -----------------------------------------------------------

# Config fields that do not change the architecture: training regularization, init, eval crop, backbone outputs.
# image_size: the resolution, stated on its own line of the card, not part of the preset's layout.
NON_ARCHITECTURE_FIELDS = {
    "crop_pct", "image_size", "drop_path_rate", "head_dropout", "initializer_range", "backbone_norm",
    "out_features", "out_indices", "stage_names",
}


def _architecture(config) -> dict:
    from transformers import PreTrainedConfig

    generic = set(PreTrainedConfig().to_dict())
    return {k: v for k, v in config.to_dict().items() if k not in generic and k not in NON_ARCHITECTURE_FIELDS}


def match_preset(config: PoolFormerConfig) -> str | None:
    """The preset whose architecture `config` describes (whatever its head size and training settings), if any."""
    own = _architecture(config)
    return next((name for name in PRESET_NAMES if _architecture(PoolFormerConfig.from_preset(name)) == own), None)


def _family(preset: str) -> tuple[str, str]:
    """(display name, family tag) of a preset, e.g. ("CAFormer-S18", "caformer")."""
    prefix, size = preset.rsplit("_", 1)
    display, tag = FAMILIES.get(prefix, (prefix, prefix))
    return f"{display}-{size.upper()}", tag


def reported_result(preset: str | None) -> tuple[str, float, Paper] | None:
    """(the paper's model name, top-1 %, paper) of a preset the registry has a verified top-1 for."""
    info = preset_info(preset) if preset is not None else None
    if info is None or info.top1 is None:
        return None
    return _family(preset)[0], info.top1, PAPERS[info.paper]


def describe_architecture(config) -> str:
    """One line naming depths, widths and token mixers of a config."""
    mixers = getattr(config, "token_mixers", "pooling")
    stages = len(config.depths)
    mixers = mixers if isinstance(mixers, list) else [mixers] * stages
    return (
        f"MetaFormer, {stages} stages with depths {list(config.depths)}, widths {list(config.hidden_sizes)}, "
        f"token mixers {' / '.join(mixers)}."
    )


def preset_facts(preset: str, repo_id: str) -> CardFacts:
    """Facts for a preset with its ImageNet-1k head, measured on a meta-device build."""
    config = PoolFormerConfig.from_preset(preset, num_labels=1000)
    preprocessing = preprocessing_of(preset_processor_config(preset))
    counts = measure(config, image_size=preprocessing.image_size)
    title, family_tag = _family(preset)
    return CardFacts(
        repo_id=repo_id,
        title=title,
        summary=(
            f"{title} image classifier (ImageNet-1k, 1000 classes), the `{preset}` preset of `poolformer_hf`: "
            "a MetaFormer from the papers below, as a Hugging Face Transformers model."
        ),
        architecture=describe_architecture(config),
        params=counts["params"],
        macs=counts["macs"],
        num_labels=config.num_labels,
        preprocessing=preprocessing,
        tags=sorted({*BASE_TAGS, family_tag}),
        datasets=["imagenet-1k"],
        reported_top1=reported_result(preset),
        original=preset_info(preset),
    )


def preset_processor_config(preset: str) -> dict:
    """The processor of a preset, as saved: the registry's eval transform for the preset's weights."""
    from ..image_processing_poolformer import PoolFormerImageProcessor

    return PoolFormerImageProcessor(**preset_info(preset).processor_kwargs()).to_dict()


def preset_card(preset: str, namespace: str = DEFAULT_NAMESPACE) -> str:
    """The model card of a preset, for the repo `namespace/preset`."""
    return render_card(preset_facts(preset, f"{namespace}/{preset}"))


def read_eval_results(model_dir: str | Path) -> dict[str, float]:
    """The Trainer metrics of `EVAL_METRICS` found in the folder's results files (first file wins)."""
    for name in EVAL_RESULT_FILES:
        path = Path(model_dir) / name
        if path.is_file():
            results = json.loads(path.read_text())
            found = {key: float(results[key]) for key in EVAL_METRICS if key in results}
            if found:
                return found
    return {}


def folder_facts(model_dir: str | Path, repo_id: str, model: nn.Module, eval_dataset: str | None = None) -> CardFacts:
    """Facts for a trained or converted folder, given the model loaded from it (a poolformer_hf classifier)."""
    model_dir = Path(model_dir)
    if getattr(model.config, "model_type", None) != PoolFormerConfig.model_type:
        raise ValueError(
            f"can only write a model card for a {PoolFormerConfig.model_type} model, not model_type "
            f"{model.config.model_type!r}: put a README.md in {model_dir}"
        )
    # The folder's config may be an instance of its own copy of the class (trust_remote_code): rebuild ours.
    config = PoolFormerConfig.from_dict(model.config.to_dict())
    processor_files = [model_dir / n for n in ("preprocessor_config.json", "processor_config.json")]
    processor_config = next((json.loads(p.read_text()) for p in processor_files if p.is_file()), None)
    if processor_config is not None:
        # The processor decides what the model sees: its resolution and crop are the ones in effect.
        preprocessing = preprocessing_of(processor_config)
        source = "the resolution its image processor produces (trained and evaluated at it)."
    else:
        preprocessing = Preprocessing(image_size=config.image_size)
        source = "config.image_size (the folder has no image processor)."
    counts = measure(config, image_size=preprocessing.image_size)
    name = repo_id.split("/")[-1]
    preset = match_preset(config)
    if preset is None:
        summary = (
            f"An image classifier with {config.num_labels} classes, built on `poolformer_hf`'s MetaFormer "
            "(PoolFormer family) architecture."
        )
        tags = list(BASE_TAGS)
    else:
        title, family_tag = _family(preset)
        summary = (
            f"A {title} image classifier (the `{preset}` preset of `poolformer_hf`) with {config.num_labels} classes."
        )
        tags = sorted({*BASE_TAGS, family_tag})
    # The papers' ImageNet-1k numbers and weights only concern an ImageNet-1k head of the same architecture.
    imagenet_preset = preset if config.num_labels == 1000 else None
    reported = reported_result(imagenet_preset)
    return CardFacts(
        repo_id=repo_id,
        title=name,
        summary=summary,
        architecture=describe_architecture(config),
        params=counts["params"],
        macs=counts["macs"],
        num_labels=config.num_labels,
        preprocessing=preprocessing,
        tags=tags,
        reported_top1=reported,
        original=preset_info(imagenet_preset) if imagenet_preset else None,
        datasets=[eval_dataset] if eval_dataset else [],
        eval_results=read_eval_results(model_dir),
        eval_dataset=eval_dataset,
        has_processor=processor_config is not None,
        remote_code=bool(getattr(config, "auto_map", None)),
        resolution_source=source,
    )

"""Named presets of the MetaFormer family, as data: the architecture of each, and what is known about it.

`PRESETS` maps each name to the `PoolFormerConfig` fields that differ from the config's defaults (which are
PoolFormer-S12 v1 as published); one function, `PoolFormerConfig.from_preset`, reads it. `PRESET_INFO` holds the rest:
the eval preprocessing the authors' weights expect (the config's `crop_pct` and `image_size` and the image
processor's settings derive from it), the published size and ImageNet-1k top-1, and where the weights come from.
`list_presets` and `preset_info` read it as `timm.list_models` and `timm.models.get_pretrained_cfg` read timm's.

Sources: "MetaFormer is Actually What You Need for Vision" (Yu et al., CVPR 2022; v1 PoolFormer and the ablation
models) and "MetaFormer Baselines for Vision" (Yu et al., TPAMI 2024; PoolFormerV2, ConvFormer, CAFormer,
IdentityFormer, RandFormer). Drop-path rates are the papers' ImageNet-1k training settings.

This file ships with every saved config (`files.SHIPPED_CODE`): it is data, and imports only the standard library.
"""

import difflib
import fnmatch
import re
from collections.abc import Iterable
from dataclasses import dataclass

_SMALL = [64, 128, 320, 512]
_MEDIUM = [96, 192, 384, 768]

# The second paper's common recipe: StarReLU MLPs without bias, bias-free norms (eps 1e-6) also before every
# downsampling conv, ResScale instead of LayerScale in the last two stages, the head norm after global pooling.
_V2_STYLE = {
    "hidden_act": "star_relu",
    "mlp_bias": False,
    "norm_type": "group_norm",
    "norm_bias": False,
    "norm_eps": 1e-6,
    "downsample_norm": "layer_norm",
    "layer_scale_init_value": None,
    "res_scale_init_value": [None, None, 1.0, 1.0],
    "head_norm_type": "layer_norm",
    "head_norm_position": "after_pool",
}
# ConvFormer / CAFormer: channel LayerNorm everywhere and an MLP head.
_CONVFORMER_STYLE = {**_V2_STYLE, "norm_type": "layer_norm", "head_type": "mlp"}
_CONVFORMER_SIZES = {
    "s18": ([3, 3, 9, 3], _SMALL),
    "s36": ([3, 12, 18, 3], _SMALL),
    "m36": ([3, 12, 18, 3], [96, 192, 384, 576]),
    "b36": ([3, 12, 18, 3], [128, 256, 512, 768]),
}
# (drop_path_rate, head_dropout) from the MetaFormer-baselines training commands.
_CONVFORMER_REGULARIZATION = {"s18": (0.2, 0.0), "s36": (0.3, 0.4), "m36": (0.4, 0.4), "b36": (0.6, 0.5)}
_CAFORMER_REGULARIZATION = {"s18": (0.15, 0.0), "s36": (0.3, 0.4), "m36": (0.4, 0.4), "b36": (0.6, 0.5)}

_ARCHITECTURES: dict[str, dict] = {
    # PoolFormer v1 (paper 1, Table 1).
    "poolformer_s12": {"depths": [2, 2, 6, 2], "hidden_sizes": _SMALL, "layer_scale_init_value": 1e-5,
                       "drop_path_rate": 0.1},
    "poolformer_s24": {"depths": [4, 4, 12, 4], "hidden_sizes": _SMALL, "layer_scale_init_value": 1e-5,
                       "drop_path_rate": 0.1},
    "poolformer_s36": {"depths": [6, 6, 18, 6], "hidden_sizes": _SMALL, "layer_scale_init_value": 1e-6,
                       "drop_path_rate": 0.2},
    "poolformer_m36": {"depths": [6, 6, 18, 6], "hidden_sizes": _MEDIUM, "layer_scale_init_value": 1e-6,
                       "drop_path_rate": 0.3},
    "poolformer_m48": {"depths": [8, 8, 24, 8], "hidden_sizes": _MEDIUM, "layer_scale_init_value": 1e-6,
                       "drop_path_rate": 0.4},
    # Paper 1's ablations (Table 5), S12 size: hybrid stages.
    "hybrid_pool_attention_s12": {"depths": [2, 2, 6, 2], "hidden_sizes": _SMALL,
                                  "token_mixers": ["pooling", "pooling", "attention", "attention"],
                                  "drop_path_rate": 0.1},
    "hybrid_pool_spatial_fc_s12": {"depths": [2, 2, 6, 2], "hidden_sizes": _SMALL,
                                   "token_mixers": ["pooling", "pooling", "spatial_fc", "spatial_fc"],
                                   "drop_path_rate": 0.1},
    # Paper 2: PoolFormerV2.
    **{
        f"poolformerv2_{size}": {**_V2_STYLE, "depths": depths, "hidden_sizes": dims, "drop_path_rate": dpr}
        for size, depths, dims, dpr in [
            ("s12", [2, 2, 6, 2], _SMALL, 0.1),
            ("s24", [4, 4, 12, 4], _SMALL, 0.1),
            ("s36", [6, 6, 18, 6], _SMALL, 0.2),
            ("m36", [6, 6, 18, 6], _MEDIUM, 0.3),
            ("m48", [8, 8, 24, 8], _MEDIUM, 0.4),
        ]
    },
    # Paper 2: the two baselines of the weakest mixers.
    "identityformer_s12": {**_V2_STYLE, "depths": [2, 2, 6, 2], "hidden_sizes": _SMALL,
                           "token_mixers": "identity", "drop_path_rate": 0.1},
    "randformer_s12": {**_V2_STYLE, "depths": [2, 2, 6, 2], "hidden_sizes": _SMALL,
                       "token_mixers": ["identity", "identity", "random_mixing", "random_mixing"],
                       "drop_path_rate": 0.1},
    # Paper 2: ConvFormer (separable convolutions) and CAFormer (convolutions, then attention).
    **{
        f"convformer_{size}": {**_CONVFORMER_STYLE, "depths": depths, "hidden_sizes": dims,
                               "token_mixers": "sepconv",
                               "drop_path_rate": _CONVFORMER_REGULARIZATION[size][0],
                               "head_dropout": _CONVFORMER_REGULARIZATION[size][1]}
        for size, (depths, dims) in _CONVFORMER_SIZES.items()
    },
    **{
        f"caformer_{size}": {**_CONVFORMER_STYLE, "depths": depths, "hidden_sizes": dims,
                             "token_mixers": ["sepconv", "sepconv", "attention", "attention"],
                             "drop_path_rate": _CAFORMER_REGULARIZATION[size][0],
                             "head_dropout": _CAFORMER_REGULARIZATION[size][1]}
        for size, (depths, dims) in _CONVFORMER_SIZES.items()
    },
}


# ---------------------------------------------------------------------------------------------- what is known
POOLFORMER_ARXIV = "2111.11418"  # MetaFormer is Actually What You Need for Vision
BASELINES_ARXIV = "2210.13452"  # MetaFormer Baselines for Vision

# Where the numbers below were read.
TIMM_BENCHMARK = ("https://github.com/huggingface/pytorch-image-models/blob/main/results/"
                  "benchmark-infer-amp-nchw-pt240-cu124-rtx4090.csv")  # param_count, infer_gmacs at 224
POOLFORMER_README = "https://github.com/sail-sg/poolformer#2-poolformer-models"  # v1 top-1, as in the paper
BASELINES_README = "https://github.com/sail-sg/metaformer#metaformer-baselines"  # the second paper's models

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# PIL.Image.Resampling's numbers, as a saved preprocessor_config.json records `resample`.
_PIL_FILTERS = {"nearest": 0, "bilinear": 2, "bicubic": 3}


@dataclass(frozen=True)
class PresetInfo:
    """What is known about a preset beyond its architecture: the eval preprocessing its authors' weights expect,
    the published size and ImageNet-1k top-1, and where those weights are.

    A figure nobody published for exactly this architecture is `None` (the project's own hybrids have none).
    """

    name: str
    paper: str  # arXiv id of the paper that introduced it
    crop_pct: float  # eval center crop: the short side is resized to int(input side / crop_pct) first
    input_size: tuple[int, int, int] = (3, 224, 224)  # (channels, height, width) the weights were trained and tested at
    interpolation: str = "bicubic"
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    num_classes: int = 1000
    params_m: float | None = None  # published parameters, millions (frozen ones included)
    gmacs: float | None = None  # published multiply-accumulates at input_size, billions
    complexity_source: str | None = None
    top1: float | None = None  # the paper's ImageNet-1k top-1 (%) of the authors' ImageNet-1k weights at input_size
    top1_source: str | None = None
    # timm's pretrained tags of exactly this preset (input_size, num_classes): the ImageNet-1k-only one, whose top-1
    # is quoted, first.
    timm_tags: tuple[str, ...] = ()
    release_url: str | None = None  # the authors' checkpoint the top-1 belongs to
    license: str | None = None  # of those weights

    @property
    def image_size(self) -> int:
        return self.input_size[-1]

    @property
    def pretrained(self) -> bool:
        """Whether the authors released weights for this preset."""
        return self.release_url is not None

    def processor_kwargs(self) -> dict:
        """Keyword arguments of `PoolFormerImageProcessor` / `PoolFormerImageProcessorPil` for this preset's eval
        transform: resize the short side to int(image_size / crop_pct), center crop image_size², normalize."""
        return {
            "size": {"shortest_edge": self.image_size},
            "crop_size": {"height": self.input_size[1], "width": self.input_size[2]},
            "crop_pct": self.crop_pct,
            "resample": _PIL_FILTERS[self.interpolation],
            "image_mean": list(self.mean),
            "image_std": list(self.std),
        }


# timm's tags of the authors' weights at 224 with 1000 classes: trained on ImageNet-1k, or on ImageNet-21k and
# fine-tuned on ImageNet-1k. (`.sail_in22k`, 21841 classes, and the `_384` tags, 384² inputs, hold weights of the same
# architectures for another head or resolution: not the preset as it stands.)
_IN1K = ("sail_in1k",)
_IN1K_AND_IN22K_FT = ("sail_in1k", "sail_in22k_ft_in1k")


def _tagged(name: str, tags: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(f"{name}.{tag}" for tag in tags)


def _v1(name: str, crop_pct: float, params_m: float, gmacs: float, top1: float) -> PresetInfo:
    return PresetInfo(
        name, POOLFORMER_ARXIV, crop_pct, params_m=params_m, gmacs=gmacs, complexity_source=TIMM_BENCHMARK,
        top1=top1, top1_source=POOLFORMER_README, timm_tags=_tagged(name, _IN1K),
        release_url=f"https://github.com/sail-sg/poolformer/releases/download/v1.0/{name}.pth.tar",
        license="apache-2.0",
    )


def _v2(name: str, params_m: float, gmacs: float, top1: float, timm_tags: tuple[str, ...] = _IN1K,
        complexity_source: str = TIMM_BENCHMARK) -> PresetInfo:
    family = name.split("_")[0]
    return PresetInfo(
        name, BASELINES_ARXIV, 1.0, params_m=params_m, gmacs=gmacs, complexity_source=complexity_source,
        top1=top1, top1_source=BASELINES_README, timm_tags=_tagged(name, timm_tags),
        release_url=f"https://huggingface.co/sail/dl/resolve/main/{family}/{name}.pth", license="apache-2.0",
    )


PRESET_INFO: dict[str, PresetInfo] = {info.name: info for info in [
    # (name, crop_pct, params M, GMACs, top-1 %)
    _v1("poolformer_s12", 0.9, 11.92, 1.82, 77.2),
    _v1("poolformer_s24", 0.9, 21.39, 3.41, 80.3),
    _v1("poolformer_s36", 0.9, 30.86, 5.0, 81.4),
    _v1("poolformer_m36", 0.95, 56.17, 8.8, 82.1),
    _v1("poolformer_m48", 0.95, 73.47, 11.59, 82.5),
    # Our own versions of paper 1's ablation models, with PoolFormer-S12's eval crop. The authors' released ones
    # differ (metaformer_ppaa_s12_224 adds a position embedding and uses channel LayerNorm, metaformer_ppff_s12_224's
    # spatial FC has no bias), so nothing published describes these.
    PresetInfo("hybrid_pool_attention_s12", POOLFORMER_ARXIV, 0.9),
    PresetInfo("hybrid_pool_spatial_fc_s12", POOLFORMER_ARXIV, 0.9),
    # (name, params M, GMACs, top-1 %)
    _v2("poolformerv2_s12", 11.89, 1.83, 78.0),
    _v2("poolformerv2_s24", 21.34, 3.42, 80.7),
    _v2("poolformerv2_s36", 30.79, 5.01, 81.6),
    _v2("poolformerv2_m36", 56.08, 8.81, 82.2),
    _v2("poolformerv2_m48", 73.35, 11.59, 82.6),
    # Not in timm: the authors' README gives one decimal (RandFormer: 11.9 M + 0.2 M frozen random matrices).
    _v2("identityformer_s12", 11.9, 1.8, 74.6, timm_tags=(), complexity_source=BASELINES_README),
    _v2("randformer_s12", 12.1, 1.9, 76.6, timm_tags=(), complexity_source=BASELINES_README),
    _v2("convformer_s18", 26.77, 3.96, 83.0, _IN1K_AND_IN22K_FT),
    _v2("convformer_s36", 40.01, 7.67, 84.1, _IN1K_AND_IN22K_FT),
    _v2("convformer_m36", 57.05, 12.89, 84.5, _IN1K_AND_IN22K_FT),
    _v2("convformer_b36", 99.88, 22.69, 84.8, _IN1K_AND_IN22K_FT),
    _v2("caformer_s18", 26.34, 4.13, 83.6, _IN1K_AND_IN22K_FT),
    _v2("caformer_s36", 39.3, 8.0, 84.5, _IN1K_AND_IN22K_FT),
    _v2("caformer_m36", 56.2, 13.29, 85.2, _IN1K_AND_IN22K_FT),
    _v2("caformer_b36", 98.75, 23.22, 85.5, _IN1K_AND_IN22K_FT),
]}

# Each preset's config: its architecture, and the resolution and eval crop its weights were trained for.
PRESETS: dict[str, dict] = {
    name: {**architecture, "image_size": PRESET_INFO[name].image_size, "crop_pct": PRESET_INFO[name].crop_pct}
    for name, architecture in _ARCHITECTURES.items()
}

PRESET_NAMES: list[str] = list(PRESETS)


# ---------------------------------------------------------------------------------------------- look-ups
def _natural_key(name: str) -> list:
    # timm's order: digits compare as numbers (caformer_s18 before caformer_s36, s12 before s100).
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name.lower())]


def _patterns(patterns: str | Iterable[str]) -> list[str]:
    return [patterns] if isinstance(patterns, str) else list(patterns)


def list_presets(pattern: str | Iterable[str] = "*", exclude: str | Iterable[str] = (),
                 pretrained: bool = False) -> list[str]:
    """The preset names matching `pattern` (an fnmatch wildcard, or several) and none of `exclude`, sorted as
    `timm.list_models` sorts; with `pretrained=True` only those whose authors released weights.

    `list_presets("caformer*")` -> ['caformer_b36', 'caformer_m36', 'caformer_s18', 'caformer_s36'].
    """
    names = {name for p in _patterns(pattern) for name in fnmatch.filter(PRESET_NAMES, p)}
    names -= {name for p in _patterns(exclude) for name in fnmatch.filter(names, p)}
    if pretrained:
        names = {name for name in names if PRESET_INFO[name].pretrained}
    return sorted(names, key=_natural_key)


def preset_info(name: str) -> PresetInfo:
    """What is known about preset `name`: eval preprocessing, published size and top-1, weights and license."""
    if name not in PRESET_INFO:
        close = difflib.get_close_matches(name, PRESET_NAMES, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"Unknown preset {name!r}{hint} (list_presets() names them all)")
    return PRESET_INFO[name]

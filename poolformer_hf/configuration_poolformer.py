"""PoolFormer / MetaFormer configuration.

One config class describes the whole family: PoolFormer v1 (the defaults are PoolFormer-S12), the first paper's
ablation models, PoolFormerV2, ConvFormer, CAFormer, IdentityFormer and RandFormer. Per-stage choices (token mixer,
block norm, MLP activation, LayerScale, ResScale) take either one value for every stage or a list with one value per
stage. The architectural fields of transformers' built-in `PoolFormerConfig` keep its names and meaning; its four
legacy fields (`patch_size`, `stride`, `num_encoder_blocks`, `use_layer_scale`) and timm's `config.json` are
translated where a config is made (`translate_foreign_fields`, `PoolFormerConfig.from_dict`), so the config holds the
architecture only, with one switch per choice.
"""

from huggingface_hub.dataclasses import strict
from transformers.backbone_utils import BackboneConfigMixin
from transformers.configuration_utils import PreTrainedConfig

from .files import write_text_atomically
from .configuration_checks import (
    check_bool, check_config_json, check_init_keywords, check_keyword_names, check_override_names, check_values,
    json_text,
)  # fmt: skip
from .presets import PRESET_NAMES, PRESETS


TOKEN_MIXER_NAMES = ("pooling", "identity", "random_mixing", "sepconv", "attention", "spatial_fc")
NORM_NAMES = ("group_norm", "layer_norm", "batch_norm")
ACTIVATION_NAMES = ("gelu", "relu", "silu", "star_relu", "squared_relu")
# Per-stage fields: one value for all stages, or a list with one entry per stage.
PER_STAGE_FIELDS = ("token_mixers", "norm_type", "hidden_act", "layer_scale_init_value", "res_scale_init_value")


@strict
class PoolFormerConfig(BackboneConfigMixin, PreTrainedConfig):
    r"""
    Configuration of a MetaFormer: `Y = TokenMixer(Norm(X)) + X; Z = σ(Norm(Y) W1) W2 + Y`, stacked in four stages.

    Architecture (the fields shared with transformers' `PoolFormerConfig` keep its names and meaning):
        num_channels: input image channels.
        depths / hidden_sizes: blocks and channels per stage.
        patch_sizes / strides / padding: the stem conv (index 0, 7×7 stride 4 pad 2) and the downsampling conv that
            starts each later stage (3×3 stride 2 pad 1).
        pool_size: window of the pooling token mixer.
        mlp_ratio: MLP hidden width as a multiple of the stage width.
        hidden_act: MLP activation (`gelu`, `relu`, `silu`, `star_relu`, `squared_relu`), or one per stage.
        layer_scale_init_value: LayerScale on both residual branches: its initial value, `None` for none (a float
            or `None`, or one per stage).
        drop_path_rate: stochastic depth, rising linearly from 0 to this over all blocks (once per branch).

    MetaFormer choices:
        token_mixers: `pooling`, `identity`, `random_mixing`, `sepconv`, `attention`, `spatial_fc`, or one per stage.
        norm_type / norm_bias / norm_eps: block norm (`group_norm` = GroupNorm with one group, `layer_norm` = LayerNorm
            over channels, `batch_norm`), or one per stage; whether block and downsampling norms have a bias.
        downsample_norm: a norm after the stem conv and before each downsampling conv (`None` for v1).
        res_scale_init_value: ResScale (a learned per-channel scale on the residual path), a float or one per stage.
        mlp_bias: bias in the MLP's two 1×1 convs.
        head_type: `linear` or `mlp` (fc1 → squared ReLU → LayerNorm → dropout → fc2, as ConvFormer/CAFormer).
        head_norm_type / head_norm_position: the final norm and whether it acts on the last feature map before global
            pooling (`before_pool`, the original PoolFormer) or on the pooled vector (`after_pool`, MetaFormer v2).
        head_mlp_ratio / head_hidden_act / head_dropout: MLP-head width multiple, activation, and dropout before the
            last linear layer.
        attention_head_dim / attention_qkv_bias / attention_proj_bias: self-attention mixer settings.
        sepconv_expansion_ratio / sepconv_kernel_size / sepconv_act: separable-conv mixer settings.
        image_size: input resolution the token-count-dependent mixers (`random_mixing`, `spatial_fc`) are built for.
        crop_pct: the eval center-crop fraction the weights were trained for (read by the image processor).
        backbone_norm: whether `PoolFormerBackbone` normalizes each feature map it returns (as the papers' detection
            and segmentation setups do).
        out_features / out_indices: which of `stage_names` (`stem`, `stage1` … `stage4`) the backbone returns.
    """

    model_type = "poolformer_hf"
    # transformers counts hidden states by `num_hidden_layers`, and its PoolFormerConfig stages by
    # `num_encoder_blocks`: here both read the number of stages.
    attribute_map = {"num_hidden_layers": "num_stages", "num_encoder_blocks": "num_stages"}

    # Fields of transformers' PoolFormerConfig.
    num_channels: int = 3
    pool_size: int = 3
    mlp_ratio: float | int = 4.0
    depths: list[int] | tuple[int, ...] = (2, 2, 6, 2)
    hidden_sizes: list[int] | tuple[int, ...] = (64, 128, 320, 512)
    patch_sizes: list[int] | tuple[int, ...] = (7, 3, 3, 3)
    strides: list[int] | tuple[int, ...] = (4, 2, 2, 2)
    padding: list[int] | tuple[int, ...] = (2, 1, 1, 1)
    drop_path_rate: float | int = 0.0
    hidden_act: str | list[str] | tuple[str, ...] = "gelu"
    layer_scale_init_value: float | int | list[float | int | None] | tuple[float | int | None, ...] | None = 1e-5
    initializer_range: float = 0.02

    # MetaFormer family.
    token_mixers: str | list[str] | tuple[str, ...] = "pooling"
    norm_type: str | list[str] | tuple[str, ...] = "group_norm"
    norm_bias: bool = True
    norm_eps: float = 1e-5
    downsample_norm: str | None = None
    res_scale_init_value: float | int | list[float | int | None] | tuple[float | int | None, ...] | None = None
    mlp_bias: bool = True
    head_type: str = "linear"
    head_norm_type: str = "group_norm"
    head_norm_position: str = "before_pool"
    head_mlp_ratio: float | int = 4.0
    head_hidden_act: str = "squared_relu"
    head_dropout: float | int = 0.0
    attention_head_dim: int = 32
    attention_qkv_bias: bool = False
    attention_proj_bias: bool = False
    sepconv_expansion_ratio: float | int = 2.0
    sepconv_kernel_size: int = 7
    sepconv_act: str = "star_relu"
    image_size: int = 224
    crop_pct: float | int = 0.9  # an int (1) is read as the float it means
    backbone_norm: bool = True
    _out_features: list[str] | None = None
    _out_indices: list[int] | None = None

    def __post_init__(self, **kwargs):
        translate_foreign_fields(self, kwargs)
        check_keyword_names(type(self), kwargs)
        self.crop_pct = float(self.crop_pct)
        for name in ("depths", "hidden_sizes", "patch_sizes", "strides", "padding"):
            setattr(self, name, list(getattr(self, name)))
        for name in PER_STAGE_FIELDS:
            value = getattr(self, name)
            if isinstance(value, (list, tuple)):
                setattr(self, name, list(value))
        self.stage_names = ["stem"] + [f"stage{index}" for index in range(1, len(self.depths) + 1)]
        self._check_architecture()
        check_init_keywords(self, kwargs)
        self.set_output_features_output_indices(
            out_indices=kwargs.pop("out_indices", None), out_features=kwargs.pop("out_features", None)
        )
        super().__post_init__(**kwargs)

    @classmethod
    def from_dict(cls, config_dict: dict, **kwargs) -> "PoolFormerConfig":
        """`PreTrainedConfig.from_dict`, which also reads timm's `config.json` (e.g. `timm/poolformer_s12.sail_in1k`:
        `{"architecture": "poolformer_s12", "num_classes": 1000, ...}`) as the named preset. The keyword overrides it
        sets after construction (`from_pretrained(path, mlp_ratio=...)`), which the constructor's checks miss, are
        checked too, and so are their names: transformers returns an override no attribute has as unused (a typo such
        as `hiden_sizes` would be lost), which is refused when it is a misspelt field (`check_keyword_names`)."""
        timm_preset = timm_preset_of(config_dict)
        if timm_preset is not None:
            config_dict = {**PRESETS[timm_preset], **timm_overrides(config_dict)}
        # transformers applies an override only where the config has that attribute: the foreign fields, which no
        # config keeps, go in with the dict, so `from_pretrained(path, use_layer_scale=False)` is translated too.
        foreign = {name: kwargs.pop(name) for name in FOREIGN_FIELDS if name in kwargs}
        return_unused_kwargs = kwargs.pop("return_unused_kwargs", False)
        config, unused = super().from_dict({**config_dict, **foreign}, return_unused_kwargs=True, **kwargs)
        config.crop_pct = float(config.crop_pct)  # an override is set as given
        config._check_architecture()
        check_keyword_names(cls, unused)
        return (config, unused) if return_unused_kwargs else config

    @classmethod
    def get_config_dict(cls, pretrained_model_name_or_path, **kwargs) -> tuple[dict, dict]:
        """`PreTrainedConfig.get_config_dict`; a `config.json` of transformers' PoolFormer or of timm's MetaFormer is
        translated here, on purpose, so transformers does not warn that it is of another model type."""
        config_dict, kwargs = super().get_config_dict(pretrained_model_name_or_path, **kwargs)
        timm_preset = timm_preset_of(config_dict)
        if timm_preset is not None:
            config_dict = {**PRESETS[timm_preset], **timm_overrides(config_dict), "model_type": cls.model_type}
        elif config_dict.get("model_type") == "poolformer":  # __post_init__ translates its legacy fields
            config_dict = {**config_dict, "model_type": cls.model_type}
        return config_dict, kwargs

    @classmethod
    def _dict_from_json_file(cls, json_file) -> dict:
        """transformers' reader of a config.json (every load reads through it), refusing with an OSError naming the
        file what no config holds: a JSON array, string, number or null (transformers would fail on it with an
        AttributeError), or nesting deeper than `MAX_JSON_DEPTH` (deep enough, Python's parser raises RecursionError)."""
        try:
            config_dict, too_deep = super()._dict_from_json_file(json_file), False
        except RecursionError:
            config_dict, too_deep = None, True
        check_config_json(config_dict, json_file, too_deep)
        return config_dict

    # ------------------------------------------------------------------ presets
    @classmethod
    def from_preset(cls, name: str, **overrides) -> "PoolFormerConfig":
        """A config for a named preset (see `PRESET_NAMES`), with any field overridden by keyword.

        An override that is not a config field (a typo such as `hiden_sizes`) is refused, naming the closest field.
        """
        if name not in PRESETS:
            raise ValueError(f"Unknown preset {name!r}; expected one of: {', '.join(PRESET_NAMES)}")
        check_override_names(cls, overrides)
        return cls(**{**PRESETS[name], **overrides})

    # ------------------------------------------------------------------ per-stage access
    def stage_value(self, name: str, stage: int):
        """The value of a per-stage field (see `PER_STAGE_FIELDS`) for stage `stage` (0-based)."""
        value = getattr(self, name)
        return value[stage] if isinstance(value, list) else value

    @property
    def num_stages(self) -> int:
        return len(self.depths)

    @num_stages.setter
    def num_stages(self, value: int) -> None:
        # Also `num_hidden_layers` and `num_encoder_blocks` (attribute_map): read-only views of len(depths).
        if value != len(self.depths):
            raise ValueError(
                f"the number of stages is len(depths) ({len(self.depths)}) and cannot be set to {value}: set depths"
            )

    # ------------------------------------------------------------------ validation
    def _check_architecture(self) -> None:
        """Raise a ValueError naming the field when the architecture cannot be built."""
        num_stages = len(self.depths)
        if num_stages == 0:
            raise ValueError("depths must list at least one stage, got []")
        for name in ("hidden_sizes", "patch_sizes", "strides", "padding"):
            if len(getattr(self, name)) != num_stages:
                raise ValueError(
                    f"{name} has {len(getattr(self, name))} entries but depths has {num_stages}; "
                    f"expected one entry per stage"
                )
        for name in ("depths", "hidden_sizes", "patch_sizes", "strides"):
            if any(value <= 0 for value in getattr(self, name)):
                raise ValueError(f"{name} must be positive integers, got {getattr(self, name)}")
        if any(value < 0 for value in self.padding):
            raise ValueError(f"padding must be non-negative integers, got {self.padding}")
        for name in ("num_channels", "pool_size", "attention_head_dim", "sepconv_kernel_size", "image_size"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)}")
        if self.pool_size % 2 == 0:
            raise ValueError(f"pool_size must be odd so the pooled map keeps its size, got {self.pool_size}")
        if self.sepconv_kernel_size % 2 == 0:
            raise ValueError(f"sepconv_kernel_size must be odd, got {self.sepconv_kernel_size}")
        for name in ("mlp_ratio", "head_mlp_ratio", "sepconv_expansion_ratio", "norm_eps"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        for name in ("drop_path_rate", "head_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if not 0.0 < self.crop_pct <= 1.0:
            raise ValueError(f"crop_pct must be in (0, 1], got {self.crop_pct}")

        allowed = {
            "token_mixers": TOKEN_MIXER_NAMES,
            "norm_type": NORM_NAMES,
            "hidden_act": ACTIVATION_NAMES,
        }
        for name in PER_STAGE_FIELDS:
            value = getattr(self, name)
            values = value if isinstance(value, list) else [value]
            if isinstance(value, list) and len(value) != num_stages:
                raise ValueError(
                    f"{name} has {len(value)} entries but depths has {num_stages}; "
                    f"give one value for all stages or one per stage"
                )
            if name in allowed:
                unknown = [v for v in values if v not in allowed[name]]
                if unknown:
                    raise ValueError(f"{name}: unknown value(s) {unknown}; expected one of {list(allowed[name])}")
            elif any(v is not None and v <= 0 for v in values):
                raise ValueError(f"{name} must be positive (or None to turn it off), got {value}")
        for name, options in (
            ("downsample_norm", (None, *NORM_NAMES)),
            ("head_norm_type", NORM_NAMES),
            ("head_norm_position", ("before_pool", "after_pool")),
            ("head_type", ("linear", "mlp")),
            ("head_hidden_act", ACTIVATION_NAMES),
            ("sepconv_act", ACTIVATION_NAMES + ("identity",)),
        ):
            if getattr(self, name) not in options:
                raise ValueError(f"{name}: unknown value {getattr(self, name)!r}; expected one of {list(options)}")
        for stage, width in enumerate(self.hidden_sizes):
            if self.stage_value("token_mixers", stage) == "attention" and width % self.attention_head_dim:
                raise ValueError(
                    f"hidden_sizes[{stage}] ({width}) must be a multiple of attention_head_dim "
                    f"({self.attention_head_dim}) for an attention stage"
                )
        check_values(self)

    # ------------------------------------------------------------------ saving
    def check_saveable(self) -> None:
        """Raise, naming the field or attribute, if this config cannot be written (an invalid architecture, an
        attribute JSON cannot hold: a set, a tensor, an object). Every save runs it before it writes anything."""
        self._check_architecture()
        json_text(self, use_diff=True)

    def save_pretrained(self, save_directory, *args, **kwargs):
        """transformers' save, checked first: a config it could not write makes no folder and copies no code file."""
        self.check_saveable()
        return super().save_pretrained(save_directory, *args, **kwargs)

    def to_json_file(self, json_file_path, use_diff: bool = True) -> None:
        """Save as JSON, all or nothing: a config changed into an invalid one, an attribute JSON cannot hold (a set, a
        tensor) or a failed write raises and leaves the previous file as it was (`save_pretrained` writes through
        this)."""
        self._check_architecture()
        write_text_atomically(json_file_path, json_text(self, use_diff))

    def stage_resolutions(self, height: int, width: int) -> list[tuple[int, int]]:
        """Feature-map size after each stage's stem/downsampling conv for an input of `height`×`width`."""
        sizes = []
        for kernel, stride, pad in zip(self.patch_sizes, self.strides, self.padding):
            height = (height + 2 * pad - kernel) // stride + 1
            width = (width + 2 * pad - kernel) // stride + 1
            sizes.append((height, width))
        return sizes


# ---------------------------------------------------------------------------------------------- foreign config fields
# The fields of transformers' PoolFormerConfig that ours does not keep (see `translate_foreign_fields`).
FOREIGN_FIELDS = ("patch_size", "stride", "num_encoder_blocks", "use_layer_scale")


def translate_foreign_fields(config: PoolFormerConfig, kwargs: dict) -> None:
    """Turn the legacy fields of transformers' PoolFormerConfig (popped from `kwargs`) into ours.

    `use_layer_scale=False` means no LayerScale anywhere (`layer_scale_init_value=None`); `num_encoder_blocks` must
    agree with `depths`; `patch_size` and `stride` were never used by any PoolFormer and are dropped.
    """
    kwargs.pop("patch_size", None)
    kwargs.pop("stride", None)
    use_layer_scale = kwargs.pop("use_layer_scale", True)
    check_bool("use_layer_scale", use_layer_scale)  # the string 'false' would otherwise mean LayerScale on
    if not use_layer_scale:
        config.layer_scale_init_value = None
    for name in ("num_encoder_blocks", "num_hidden_layers"):
        stages = kwargs.pop(name, None)
        if stages is not None and stages != len(config.depths):
            raise ValueError(f"{name} ({stages}) must equal len(depths) ({len(config.depths)}): it is the number of stages")


def timm_preset_of(config_dict: dict) -> str | None:
    """The preset a timm `config.json` names (`architecture`, without its pretrained tag), or None for any other.
    (transformers marks a config dict without `model_type` that looks like timm's as `timm_wrapper`.)"""
    if config_dict.get("model_type", "timm_wrapper") != "timm_wrapper" or "architecture" not in config_dict:
        return None
    architecture = str(config_dict["architecture"]).split(".")[0]
    if architecture not in PRESETS:
        raise ValueError(
            f"This is a timm config.json of architecture {architecture!r}, not of a MetaFormer: expected one of "
            "timm's poolformer_*, poolformerv2_*, convformer_* or caformer_* architectures"
        )
    return architecture


# timm applies the head norm of every MetaFormer after global pooling, PoolFormer v1's included (sail-sg's v1 before).
TIMM_HEAD = {"head_norm_position": "after_pool"}


def timm_overrides(config_dict: dict) -> dict:
    """Our fields for what a timm `config.json` says beyond the architecture: classes, label names, crop_pct, and
    the head norm after global pooling, where timm applies it for every MetaFormer (sail-sg's PoolFormer v1, whose
    weights timm's v1 tags carry, applies it before: timm's outputs differ from sail-sg's, and timm's are matched)."""
    overrides = {"num_labels": config_dict.get("num_classes", 1000), **TIMM_HEAD}
    crop_pct = (config_dict.get("pretrained_cfg") or {}).get("crop_pct")
    if crop_pct:
        overrides["crop_pct"] = crop_pct
    names = config_dict.get("label_names")
    if names and len(names) == overrides["num_labels"]:
        overrides["id2label"] = dict(enumerate(names))
        overrides["label2id"] = {name: index for index, name in enumerate(names)}
    return overrides


__all__ = ["PoolFormerConfig", "PRESET_NAMES"]

"""Named presets of the MetaFormer family, as data.

Each preset is a dict of `PoolFormerConfig` fields that differ from the config's defaults (which are PoolFormer-S12
v1 as published). One function, `PoolFormerConfig.from_preset`, reads this table; there is no function per variant.

Sources: "MetaFormer is Actually What You Need for Vision" (Yu et al., CVPR 2022; v1 PoolFormer and the ablation
models) and "MetaFormer Baselines for Vision" (Yu et al., TPAMI 2024; PoolFormerV2, ConvFormer, CAFormer,
IdentityFormer, RandFormer). Drop-path rates and crop_pct are the papers' ImageNet-1k training/eval settings.
"""

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
    "crop_pct": 1.0,
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

PRESETS: dict[str, dict] = {
    # PoolFormer v1 (paper 1, Table 1).
    "poolformer_s12": {"depths": [2, 2, 6, 2], "hidden_sizes": _SMALL, "layer_scale_init_value": 1e-5,
                       "drop_path_rate": 0.1, "crop_pct": 0.9},
    "poolformer_s24": {"depths": [4, 4, 12, 4], "hidden_sizes": _SMALL, "layer_scale_init_value": 1e-5,
                       "drop_path_rate": 0.1, "crop_pct": 0.9},
    "poolformer_s36": {"depths": [6, 6, 18, 6], "hidden_sizes": _SMALL, "layer_scale_init_value": 1e-6,
                       "drop_path_rate": 0.2, "crop_pct": 0.9},
    "poolformer_m36": {"depths": [6, 6, 18, 6], "hidden_sizes": _MEDIUM, "layer_scale_init_value": 1e-6,
                       "drop_path_rate": 0.3, "crop_pct": 0.95},
    "poolformer_m48": {"depths": [8, 8, 24, 8], "hidden_sizes": _MEDIUM, "layer_scale_init_value": 1e-6,
                       "drop_path_rate": 0.4, "crop_pct": 0.95},
    # Paper 1's ablations (Table 5), S12 size: hybrid stages.
    "hybrid_pool_attention_s12": {"depths": [2, 2, 6, 2], "hidden_sizes": _SMALL,
                                  "token_mixers": ["pooling", "pooling", "attention", "attention"],
                                  "drop_path_rate": 0.1, "crop_pct": 0.9},
    "hybrid_pool_spatial_fc_s12": {"depths": [2, 2, 6, 2], "hidden_sizes": _SMALL,
                                   "token_mixers": ["pooling", "pooling", "spatial_fc", "spatial_fc"],
                                   "drop_path_rate": 0.1, "crop_pct": 0.9},
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

PRESET_NAMES: list[str] = list(PRESETS)

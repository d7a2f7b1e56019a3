"""Parameter counts and MACs against the papers' tables (1000 classes, 224², torch's flop counter)."""

import pytest

from poolformer_hf import PoolFormerConfig
from poolformer_hf.hub.complexity import measure

# name: (params in M, tolerance in M or fraction, MACs in G, tolerance fraction)
PAPER_TABLES = {
    # "MetaFormer is Actually What You Need for Vision", Table 1 (±0.1M, ±3%).
    "poolformer_s12": (11.9, 0.1, 1.8, 0.03),
    "poolformer_s24": (21.4, 0.1, 3.4, 0.03),
    "poolformer_s36": (30.8, 0.1, 5.0, 0.03),
    "poolformer_m36": (56.1, 0.1, 8.8, 0.03),
    "poolformer_m48": (73.4, 0.1, 11.6, 0.03),
    # Its ablation table, and "MetaFormer Baselines for Vision" (±2% params, ±6% MACs).
    "identityformer_s12": (11.9, "2%", 1.8, 0.06),
    "hybrid_pool_attention_s12": (16.5, "2%", 2.5, 0.06),
    "hybrid_pool_spatial_fc_s12": (12.2, "2%", 1.9, 0.06),
    "poolformerv2_s12": (11.9, "2%", 1.8, 0.06),
    "poolformerv2_s24": (21.3, "2%", 3.4, 0.06),
    "poolformerv2_s36": (30.8, "2%", 5.0, 0.06),
    "poolformerv2_m36": (56.1, "2%", 8.8, 0.06),
    "poolformerv2_m48": (73.3, "2%", 11.5, 0.06),
    "convformer_s18": (27.0, "2%", 3.9, 0.06),
    "caformer_s18": (26.0, "2%", 4.1, 0.06),
}


@pytest.mark.parametrize("name", list(PAPER_TABLES))
def test_preset_matches_the_papers_parameter_count_and_macs(name):
    params_m, params_tol, macs_g, macs_tol = PAPER_TABLES[name]
    measured = measure(PoolFormerConfig.from_preset(name, num_labels=1000))
    params, macs = measured["params"] / 1e6, measured["macs"] / 1e9
    allowed = params_m * 0.02 if params_tol == "2%" else params_tol
    assert abs(params - params_m) <= allowed, f"{params:.2f}M vs paper {params_m}M"
    assert abs(macs - macs_g) <= macs_tol * macs_g, f"{macs:.3f}G vs paper {macs_g}G"

import pytest
import torch

from benchmarks import harness as bench
from poolformer_hf.modeling_poolformer_segmentation import PoolFormerForSemanticSegmentation


def test_dense_models_are_semantic_fpn_and_upernet_on_the_same_s12_backbone():
    with torch.device("meta"):
        models = {name: bench.scaling_model(name) for name in bench.DENSE_MODELS}
    assert isinstance(models["semantic_fpn_s12"], PoolFormerForSemanticSegmentation)
    assert type(models["upernet_s12"]).__name__ == "UperNetForSemanticSegmentation"
    backbones = [sum(p.numel() for p in model.backbone.parameters()) for model in models.values()]
    assert backbones[0] == backbones[1]
    assert models["semantic_fpn_s12"].num_parameters() / 1e6 == pytest.approx(15.7, rel=0.02)


def test_unknown_dense_model_is_named():
    with pytest.raises(ValueError, match="unknown dense model 'mask_rcnn'"):
        bench.dense_model("mask_rcnn")


def test_dense_rows_make_a_table():
    row = {"section": "dense", "impl": "semantic_fpn_s12", "batch": 8, "resolution": 512, "params_m": 15.67,
           "peak_mib": 900.0, **bench.summarize([2.0, 2.5, 3.0], 8)}
    table = bench.markdown_table([row])
    assert "**Dense inference, 512²**" in table
    assert "| semantic_fpn_s12 | 15.7 | 8 | 2500 | 3.20 | 900 |" in table

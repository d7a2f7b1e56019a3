import json

import pytest
import torch
from PIL import Image

from conftest import tiny_config
from poolformer_hf import PoolFormerBackbone
from poolformer_hf.tasks.detection.data import generated_shapes, load_coco
from poolformer_hf.tasks.detection.metrics import coco_map
from poolformer_hf.tasks.detection.model import (
    DETECTORS,
    backbone_of,
    build_detection_processor,
    detection_config,
)
from poolformer_hf.tasks.detection.run import DetectionDataset, collate_detection, flip_annotation

NAMES = ["circle", "square", "triangle"]
SMALL = {
    "rt_detr": {"d_model": 32, "encoder_hidden_dim": 32, "decoder_in_channels": [32, 32, 32], "encoder_ffn_dim": 64,
                "decoder_ffn_dim": 64, "decoder_layers": 1, "num_queries": 10, "num_denoising": 10,
                "encoder_attention_heads": 2, "decoder_attention_heads": 2},
    "detr": {"d_model": 32, "encoder_layers": 1, "decoder_layers": 1, "encoder_ffn_dim": 64, "decoder_ffn_dim": 64,
             "encoder_attention_heads": 2, "decoder_attention_heads": 2, "num_queries": 10},
}
SMALL["conditional_detr"] = SMALL["detr"]


def tiny_detector(name):
    import transformers

    config = detection_config(name, tiny_config(), NAMES, **SMALL[name])
    return getattr(transformers, DETECTORS[name].model_class)(config)


def batch(name, count=4, size=32):
    data = generated_shapes(count, 2, size)
    dataset = DetectionDataset(data.train, build_detection_processor(name, size))
    return collate_detection([dataset[i] for i in range(count)]), data


@pytest.mark.parametrize("name", list(DETECTORS))
def test_each_detector_runs_on_the_backbone_through_its_config_alone(name):
    model = tiny_detector(name).train()
    backbone = backbone_of(model)
    assert isinstance(backbone, PoolFormerBackbone)
    assert backbone.out_features == list(DETECTORS[name].out_features)
    inputs, _ = batch(name)
    out = model(**inputs)
    assert torch.isfinite(out.loss)
    out.loss.backward()
    assert backbone.stem.conv.weight.grad.abs().sum() > 0
    assert out.pred_boxes.shape[-1] == 4


def test_rt_detr_loss_drops_on_a_tiny_run():
    import transformers

    torch.manual_seed(0)
    # Without denoising queries (random each step) the loss of a fixed batch is a clean signal.
    config = detection_config("rt_detr", tiny_config(), NAMES, **{**SMALL["rt_detr"], "num_denoising": 0})
    model = transformers.RTDetrForObjectDetection(config).train()
    inputs, _ = batch("rt_detr")
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
    losses = []
    for _ in range(16):
        loss = model(**inputs).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < 0.75 * losses[0] and sum(losses[-4:]) < sum(losses[1:5]), losses


def test_processor_labels_are_the_generated_boxes_normalized():
    inputs, data = batch("rt_detr", count=1, size=32)
    (x_min, y_min, width, height) = data.train.annotations[0]["annotations"][0]["bbox"]
    expected = torch.tensor([(x_min + width / 2) / 32, (y_min + height / 2) / 32, width / 32, height / 32])
    assert torch.allclose(inputs["labels"][0]["boxes"][0], expected, atol=1e-6)
    # The processor normalizes with the ImageNet statistics the backbone expects.
    assert inputs["pixel_values"].min() < 0


def box(x_min, y_min, x_max, y_max, label=0, score=0.9):
    return {"boxes": torch.tensor([[x_min, y_min, x_max, y_max]], dtype=torch.float32),
            "scores": torch.tensor([score]), "labels": torch.tensor([label])}


def coco(x, y, width, height, category=0):
    return {"image_id": 0, "annotations": [{"bbox": [x, y, width, height], "category_id": category, "area": width *
                                            height, "iscrowd": 0}]}


def test_map_matches_hand_computed_cases():
    # A perfect box: AP 1 at every IoU threshold.
    assert coco_map([box(10, 10, 30, 30)], [coco(10, 10, 20, 20)])["map"] == pytest.approx(1.0)
    # IoU 2/3 (a 20×20 box shifted by 4 px: 320 / 480): a hit at thresholds .50, .55, .60, .65 of the ten, so mAP
    # 0.4.
    results = coco_map([box(14, 10, 34, 30)], [coco(10, 10, 20, 20)])
    assert results["map_50"] == pytest.approx(1.0) and results["map_75"] == pytest.approx(0.0)
    assert results["map"] == pytest.approx(0.4)
    # The right box with the wrong class finds nothing.
    assert coco_map([box(10, 10, 30, 30, label=1)], [coco(10, 10, 20, 20)])["map"] == pytest.approx(0.0)


def test_flipping_mirrors_the_box():
    flipped = flip_annotation(coco(10, 5, 20, 8), width=64)
    assert flipped["annotations"][0]["bbox"] == [34, 5, 20, 8]


def test_coco_files_load_with_contiguous_categories_and_stay_in_their_folder(tmp_path):
    Image.new("RGB", (16, 16)).save(tmp_path / "a.png")
    document = {"images": [{"id": 7, "file_name": "a.png"}],
                "annotations": [{"id": 1, "image_id": 7, "bbox": [1, 2, 3, 4], "category_id": 90}],
                "categories": [{"id": 90, "name": "cat"}, {"id": 3, "name": "dog"}]}
    (tmp_path / "train.json").write_text(json.dumps(document))
    split, category_ids, names = load_coco(tmp_path / "train.json", tmp_path, "train")
    assert category_ids == [3, 90] and names == ["dog", "cat"]
    assert split.annotations[0]["annotations"][0]["category_id"] == 1
    document["images"][0]["file_name"] = "../outside.png"
    (tmp_path / "bad.json").write_text(json.dumps(document))
    with pytest.raises(ValueError, match="lies outside"):
        load_coco(tmp_path / "bad.json", tmp_path, "train")


def test_a_tiny_run_trains_saves_and_reloads_to_the_same_map(tmp_path):
    # 64 px: RT-DETR's encoder upsamples stride 32 to 16 to 8 by ×2, so the input must be a multiple of 32.
    from poolformer_hf.tasks.detection.run import main

    metrics = main([
        "--output_dir", str(tmp_path), "--image_size", "64", "--generated_train_size", "8",
        "--generated_validation_size", "4", "--max_steps", "2", "--per_device_train_batch_size", "4",
        "--eval_strategy", "no", "--save_strategy", "no",
    ])
    assert 0.0 <= metrics["eval_map"] <= 1.0 and "eval_loss" in metrics
    assert metrics["reloaded_map"] == pytest.approx(metrics["eval_map"])

import json

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import tiny_config
from poolformer_hf import PoolFormerBackbone
from poolformer_hf.tasks.detection.data import (
    annotation_masks,
    check_masks,
    generated_shapes,
    load_coco,
    mask_to_rle,
    rasterize_polygons,
    segmentation_mask,
)
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


def test_map_gives_each_classs_ap_and_ignores_detections_on_crowd_regions():
    detections = [box(10, 10, 30, 30), box(14, 10, 34, 30, label=1)]
    results = coco_map(detections, [coco(10, 10, 20, 20), coco(10, 10, 20, 20, category=1)], ["a", "b", "c"])
    assert results["ap_a"] == pytest.approx(1.0) and results["ap_b"] == pytest.approx(0.4)
    assert results["ap_c"] == -1.0  # no ground truth: COCOeval's -1
    assert results["map"] == pytest.approx(0.7)
    crowd = coco(10, 10, 20, 20)
    crowd["annotations"].append({"bbox": [40, 40, 20, 20], "category_id": 0, "area": 400.0, "iscrowd": 1})
    assert coco_map([{**box(10, 10, 30, 30), "boxes": torch.tensor([[10.0, 10, 30, 30], [40, 40, 60, 60]]),
                      "scores": torch.tensor([0.5, 0.9]), "labels": torch.tensor([0, 0])}], [crowd])["map"] == 1.0


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


def write_coco(folder, annotations, images=None, size=(16, 12)):
    """A COCO file with one 16×12 image a.png (and the given annotations), returning its path."""
    Image.new("RGB", size).save(folder / "a.png")
    document = {"images": images if images is not None else [{"id": 7, "file_name": "a.png", "width": size[0],
                                                               "height": size[1]}],
                "annotations": annotations, "categories": [{"id": 3, "name": "dog"}]}
    (folder / "train.json").write_text(json.dumps(document))
    return folder / "train.json"


def annotation(**fields):
    return {"id": 5, "image_id": 7, "bbox": [1, 2, 3, 4], "category_id": 3, **fields}


@pytest.mark.parametrize("fields, message", [
    ({"bbox": [1, 2, 0, 4]}, r"annotation 5 \(image 7, a.png\): box \[1, 2, 0, 4\] has zero or negative width"),
    ({"bbox": [1, 2, 3, -1]}, "has zero or negative width or height"),
    ({"bbox": [10, 2, 8, 4]}, r"box \[10, 2, 8, 4\] \(x, y, width, height\) reaches outside the 16×12 image"),
    ({"bbox": [-3, 2, 3, 4]}, "reaches outside the 16×12 image"),
    ({"bbox": [1, 2, 3]}, "is not four finite numbers"),
    ({"category_id": 4}, r"annotation 5 \(image 7, a.png\): unknown category 4; the categories are \[3\]"),
    ({"image_id": 8}, "annotation 5 names unknown image 8"),
    ({"segmentation": {"size": [16, 12], "counts": [192]}}, r"annotation 5 .*: mask of size 12×16 on a 16×12 image"),
])
def test_bad_annotations_are_named_in_one_line_before_training(tmp_path, fields, message):
    path = write_coco(tmp_path, [annotation(**fields)])
    with pytest.raises(ValueError, match=message) as error:
        load_coco(path, tmp_path, "train")
    assert "\n" not in str(error.value) and str(path) in str(error.value)


def test_a_missing_image_is_named_and_further_problems_are_counted(tmp_path):
    images = [{"id": 7, "file_name": "a.png"}, {"id": 9, "file_name": "gone.png"}]
    path = write_coco(tmp_path, [annotation(bbox=[0, 0, 0, 0]), annotation(id=6, category_id=1)], images)
    with pytest.raises(ValueError, match=r"image 9: .*gone.png does not exist \(and 2 more problems\)"):
        load_coco(path, tmp_path, "train")


def test_degenerate_boxes_can_be_dropped_as_mmdetection_does(tmp_path):
    path = write_coco(tmp_path, [annotation(bbox=[1, 2, 3, 0]), annotation(id=6)])
    split, _, _ = load_coco(path, tmp_path, "train", drop_degenerate_boxes=True)
    assert [a["id"] for a in split.annotations[0]["annotations"]] == [6]
    # The image's size comes from the file where the JSON leaves it out.
    path = write_coco(tmp_path, [annotation(bbox=[1, 2, 20, 4])], [{"id": 7, "file_name": "a.png"}], size=(32, 12))
    assert load_coco(path, tmp_path, "train")[0].image_sizes == [(32, 12)]


def test_polygons_and_both_rle_forms_give_the_same_mask():
    from pycocotools import mask as mask_utils

    mask = np.zeros((12, 16), dtype=bool)
    mask[3:9, 4:12] = True
    compressed = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    compressed["counts"] = compressed["counts"].decode()  # as COCO's JSON holds it
    for segmentation in (mask_to_rle(mask), compressed, [[4, 3, 12, 3, 12, 9, 4, 9]]):
        assert np.array_equal(segmentation_mask(segmentation, 12, 16), mask)
    # PIL draws polygons where pycocotools is not installed: its edge pixels may differ, the inside does not.
    drawn = rasterize_polygons([[4, 3, 12, 3, 12, 9, 4, 9]], 12, 16)
    assert drawn[mask].all() and (drawn & ~mask).sum() <= 8 + 6 + 1
    # A mask whose first pixel is set starts with an empty run of zeros, as COCO's RLE does.
    assert mask_to_rle(np.ones((2, 2), dtype=bool))["counts"] == [0, 4]


def test_generated_scenes_carry_one_exact_mask_per_box():
    data = generated_shapes(4, 1, 64)
    for annotation_ in data.train.annotations:
        masks = annotation_masks(annotation_, 64, 64)
        for obj, mask in zip(annotation_["annotations"], masks):
            rows, columns = np.nonzero(mask)
            x, y, width, height = obj["bbox"]
            assert (columns.min(), rows.min(), columns.max() + 1, rows.max() + 1) == (x, y, x + width, y + height)
            assert obj["area"] == mask.sum()
    check_masks(data.train, "generated")
    del data.train.annotations[1]["annotations"][0]["segmentation"]
    with pytest.raises(ValueError, match="annotation 0 of image 1 has no segmentation; Mask R-CNN trains on masks"):
        check_masks(data.train, "generated")

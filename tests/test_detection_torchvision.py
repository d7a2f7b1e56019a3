import json
import os

import pytest
import torch
from transformers import TrainingArguments

from conftest import tiny_config
from poolformer_hf import PoolFormerConfig, PoolFormerForImageClassification
from poolformer_hf.tasks.detection import saved_detectors
from poolformer_hf.tasks.detection.data import generated_shapes
from poolformer_hf.tasks.detection.run import (
    main,
    parse_arguments,
    requested_detector,
    training_defaults,
)
from poolformer_hf.tasks.detection.saved_detectors import (
    DETECTOR_CONFIG_NAME,
    find_detector_folder,
    load_detector,
    save_detector,
)
from poolformer_hf.tasks.detection.torchvision_detectors import DetectorConfig, build_torchvision_detector
from poolformer_hf.tasks.detection.torchvision_training import (
    TorchvisionDetectionDataset,
    TorchvisionDetectionTrainer,
    collate_torchvision,
    decay_points,
    evaluate_detector,
    flip_target,
    new_torchvision_detector,
    step_schedule,
)

NAMES = ["circle", "square", "triangle"]
# The PoolFormer paper's COCO table (80 classes), millions of parameters, as the project's issue quotes them (not
# checked against the paper's text, which the sources at hand did not hold).
PAPER_PARAMETERS = {
    ("retinanet", "poolformer_s12"): 21.7, ("retinanet", "poolformer_s24"): 31.1, ("retinanet", "poolformer_s36"): 40.6,
    ("mask_rcnn", "poolformer_s12"): 31.6, ("mask_rcnn", "poolformer_s24"): 41.0, ("mask_rcnn", "poolformer_s36"): 50.5,
}


def tiny_detector(name, labels=NAMES, **fields):
    """A detector on conftest's tiny backbone (widths 8…32), 32-channel FPN, 64 px inputs."""
    values = {"fpn_channels": 32, "mask_head_channels": 16, "min_size": 64, "max_size": 64, **fields}
    return build_torchvision_detector(DetectorConfig(name, list(labels), tiny_config().to_dict(), **values))


def images(count=2, size=64, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return [torch.rand(3, size, size, generator=generator) for _ in range(count)]


@pytest.mark.parametrize("detector, preset", list(PAPER_PARAMETERS))
def test_parameter_count_with_80_classes_matches_the_paper_within_2_percent(detector, preset):
    config = DetectorConfig(detector, [f"class{i}" for i in range(80)], PoolFormerConfig.from_preset(preset).to_dict())
    with torch.device("meta"):
        model = build_torchvision_detector(config)
    millions = sum(p.numel() for p in model.parameters()) / 1e6
    assert millions == pytest.approx(PAPER_PARAMETERS[detector, preset], rel=0.02)
    # Measured: 21.65 / 31.13 / 40.60 and 31.57 / 41.05 / 50.52, all within 0.3%.
    assert millions == pytest.approx(PAPER_PARAMETERS[detector, preset], rel=0.003)


def test_retinanet_neck_reads_stages_2_to_4_and_adds_p6_p7_from_the_last_stage():
    config = DetectorConfig("retinanet", NAMES, PoolFormerConfig.from_preset("poolformer_s12").to_dict())
    with torch.device("meta"):
        neck = build_torchvision_detector(config).backbone
    assert neck.body.out_features == ["stage2", "stage3", "stage4"]
    assert [conv.in_channels for conv in neck.fpn.inner_blocks.modules() if isinstance(conv, torch.nn.Conv2d)] == [
        128, 320, 512]
    extra = neck.fpn.extra_blocks
    assert (extra.p6.in_channels, extra.p6.stride, extra.p7.in_channels) == (512, (2, 2), 256) and not extra.use_P5
    # Each returned map goes through its own GroupNorm, as sail-sg's fork_feat backbone.
    assert set(neck.body.hidden_states_norms) == {"stage2", "stage3", "stage4"}


def test_p6_comes_from_the_last_stage_also_when_its_width_is_the_fpns():
    model = tiny_detector("retinanet", fpn_channels=32)  # the tiny backbone's stage4 is 32 wide
    assert not model.backbone.fpn.extra_blocks.use_P5


@pytest.mark.parametrize("detector, levels, strides", [
    ("retinanet", ["0", "1", "2", "p6", "p7"], [8, 16, 32, 64, 128]),
    ("mask_rcnn", ["0", "1", "2", "3", "pool"], [4, 8, 16, 32, 64]),
])
def test_the_neck_gives_five_levels_of_fpn_width_at_the_papers_strides(detector, levels, strides):
    neck = tiny_detector(detector).backbone.eval()
    with torch.no_grad():
        out = neck(torch.rand(1, 3, 128, 128))
    assert list(out) == levels
    assert [(m.shape[1], 128 // m.shape[-1]) for m in out.values()] == [(32, s) for s in strides]


def test_backbone_starts_from_a_classifier_folder_or_at_random_from_a_preset(tmp_path):
    classifier = PoolFormerForImageClassification(tiny_config())
    classifier.save_pretrained(tmp_path / "classifier")
    model = new_torchvision_detector("mask_rcnn", NAMES, model_name_or_path=str(tmp_path / "classifier"),
                                     image_size=64)
    body = model.backbone.body
    assert torch.equal(body.stem.conv.weight, classifier.poolformer.stem.conv.weight)
    assert body.out_features == ["stage1", "stage2", "stage3", "stage4"]
    assert "id2label" not in model.detector_config.backbone  # the classifier's 1000 names are not the detector's
    with torch.device("meta"):
        from_preset = new_torchvision_detector("retinanet", NAMES, preset="poolformer_s24")
    assert from_preset.backbone.body.config.depths == [4, 4, 12, 4]
    assert (from_preset.detector_config.min_size, from_preset.detector_config.max_size) == (800, 1333)


def test_saved_detector_reloads_to_the_same_detections_and_masks(tmp_path):
    torch.manual_seed(0)
    model = tiny_detector("mask_rcnn", options={"box_score_thresh": 0.0}).eval()
    folder = save_detector(model, tmp_path / "detector")
    saved = json.loads((tmp_path / "detector" / DETECTOR_CONFIG_NAME).read_text())
    assert saved["detector"] == "mask_rcnn" and saved["label_names"] == NAMES
    assert sorted(os.listdir(folder)) == [".poolformer_hf_conversion.json", "detector_config.json",
                                          "model.safetensors"]  # output_folders' marker, listing the two
    reloaded = load_detector(tmp_path)  # a run's folder: its detector/ is found
    with torch.no_grad():
        expected, got = model(images(1)), reloaded(images(1))
    assert len(expected[0]["boxes"]) > 0
    for key in ("boxes", "scores", "labels", "masks"):
        assert torch.equal(expected[0][key], got[0][key])


def test_save_replaces_a_saved_detector_whole_and_refuses_other_folders(tmp_path, monkeypatch):
    folder = tmp_path / "detector"
    save_detector(tiny_detector("retinanet"), folder)
    before = (folder / "model.safetensors").read_bytes()

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("safetensors.torch.save_file", fail)
    with pytest.raises(OSError, match="could not write .*detector: disk full; any earlier output there is unchanged"):
        save_detector(tiny_detector("retinanet", labels=["a"]), folder)
    assert (folder / "model.safetensors").read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["detector"]  # no staging folder left behind
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match=r"holds files that a saved detector does not \(detector, notes.txt\)"):
        save_detector(tiny_detector("retinanet"), tmp_path)
    with pytest.raises(ValueError, match="is not a saved detector"):
        load_detector(tmp_path / "nowhere")


def test_fine_tuning_a_saved_detector_on_other_labels_keeps_all_but_the_class_layers(tmp_path):
    model = tiny_detector("retinanet")
    save_detector(model, tmp_path / "detector")
    tuned = new_torchvision_detector("retinanet", ["a", "b"], model_name_or_path=str(tmp_path), image_size=64)
    assert tuned.detector_config.label_names == ["a", "b"]
    old, new = model.state_dict(), tuned.state_dict()
    changed = [k for k in new if new[k].shape != old[k].shape or not torch.equal(new[k], old[k])]
    assert changed == ["head.classification_head.cls_logits.weight", "head.classification_head.cls_logits.bias"]
    with pytest.raises(ValueError, match="is a saved retinanet, but --detector is mask_rcnn"):
        new_torchvision_detector("mask_rcnn", NAMES, model_name_or_path=str(tmp_path))


def test_dataset_targets_shift_labels_for_rcnn_carry_masks_and_flip_with_the_image():
    data = generated_shapes(2, 1, 64)
    item = TorchvisionDetectionDataset(data.train, "mask_rcnn")[0]
    objects = data.train.annotations[0]["annotations"]
    assert item["image"].shape == (3, 64, 64) and 0 <= item["image"].min() and item["image"].max() <= 1
    assert item["target"]["labels"].tolist() == [o["category_id"] + 1 for o in objects]
    assert item["target"]["masks"].shape == (len(objects), 64, 64)
    assert TorchvisionDetectionDataset(data.train, "retinanet")[0]["target"]["labels"].tolist() == [
        o["category_id"] for o in objects]
    target = {"boxes": torch.tensor([[10.0, 5.0, 30.0, 13.0]]), "masks": torch.zeros(1, 16, 64, dtype=torch.uint8)}
    target["masks"][0, 5:13, 10:30] = 1
    flipped = flip_target(target, width=64)
    assert flipped["boxes"].tolist() == [[34.0, 5.0, 54.0, 13.0]]
    assert torch.equal(flipped["masks"][0].nonzero()[:, 1].unique(), torch.arange(34, 54))


def test_crowd_regions_are_left_out_of_training_targets():
    data = generated_shapes(1, 1, 64)
    data.train.annotations[0]["annotations"][0]["iscrowd"] = 1
    target = TorchvisionDetectionDataset(data.train, "mask_rcnn")[0]["target"]
    assert len(target["boxes"]) == len(target["masks"]) == len(data.train.annotations[0]["annotations"]) - 1


def test_step_schedule_warms_up_then_steps_down_at_the_fractions():
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    schedule = step_schedule(optimizer, warmup_steps=4, total_steps=12, decay_at=decay_points("8/12,11/12"))
    factors = [schedule.lr_lambdas[0](step) for step in range(12)]
    assert factors[0] == pytest.approx(0.001) and factors[2] == pytest.approx(0.001 + 0.999 / 2)
    assert factors[4:8] == [1.0] * 4 and factors[8:11] == pytest.approx([0.1] * 3)
    assert factors[11] == pytest.approx(0.01)
    assert decay_points("none") == [] and decay_points("") == [] and decay_points("0.5, 3/4") == [0.5, 0.75]
    for bad in ("0.9,0.5", "1.5", "eight"):
        with pytest.raises(ValueError, match="--lr_decay_at"):
            decay_points(bad)


def test_the_paper_recipe_is_each_detectors_default(tmp_path):
    for detector, learning_rate in (("retinanet", 1e-4), ("mask_rcnn", 2e-4)):
        argv = ["--detector", detector, "--output_dir", str(tmp_path), "--train_annotation_file", "train.json"]
        assert requested_detector(argv) == detector
        _, training_args = parse_arguments(argv)
        assert (training_args.learning_rate, training_args.weight_decay) == (learning_rate, 1e-4)
        assert training_args.optim == "adamw_torch" and training_args.num_train_epochs == 12
        assert training_args.max_grad_norm == 0.0 and training_args.lr_scheduler_type == "constant_with_warmup"
    assert training_defaults("rt_detr")["learning_rate"] == 1e-3  # the DETR family keeps its demo's recipe
    (tmp_path / "args.json").write_text(json.dumps({"detector": "mask_rcnn", "output_dir": str(tmp_path),
                                                    "train_annotation_file": "train.json"}))
    assert requested_detector([str(tmp_path / "args.json")]) == "mask_rcnn"
    _, from_file = parse_arguments([str(tmp_path / "args.json")])  # the recipe applies to a JSON file of arguments
    assert from_file.to_dict() == parse_arguments(argv)[1].to_dict() and from_file.learning_rate == 2e-4


def test_the_mask_rcnn_demo_trains_fewer_scenes_while_coco_data_keeps_every_default(tmp_path):
    demo = ["--detector", "mask_rcnn", "--output_dir", str(tmp_path)]
    demo_args, demo_training = parse_arguments(demo)
    coco_args, coco_training = parse_arguments([*demo, "--train_annotation_file", "train.json"])
    assert (demo_args.generated_train_size, coco_args.generated_train_size) == (128, 512)
    assert demo_training.to_dict() == coco_training.to_dict()  # the paper's recipe for both: only the data differs
    assert parse_arguments(["--detector", "retinanet", "--output_dir", str(tmp_path)])[0].generated_train_size == 512


def test_a_step_schedule_with_another_scheduler_is_refused_with_the_fix(tmp_path):
    args = TrainingArguments(output_dir=str(tmp_path), lr_scheduler_type="cosine", report_to="none")
    with pytest.raises(ValueError, match="pass --lr_scheduler_type constant_with_warmup, or --lr_decay_at none"):
        TorchvisionDetectionTrainer(model=tiny_detector("retinanet"), args=args, decay_at=[0.5])


def test_evaluation_reports_box_and_mask_ap_per_class():
    data = generated_shapes(1, 2, 64)
    model = tiny_detector("mask_rcnn", options={"box_score_thresh": 0.0})
    metrics = evaluate_detector(model, data.validation, batch_size=2)
    for prefix in ("", "segm_"):
        assert {f"{prefix}map", f"{prefix}map_50", f"{prefix}map_75"} <= set(metrics)
        assert all(-1.0 <= metrics[f"{prefix}ap_{name}"] <= 1.0 for name in NAMES)


def test_an_image_of_another_size_than_its_annotation_file_says_is_named():
    data = generated_shapes(1, 1, 64)
    data.train.image_sizes = [(80, 64)]
    with pytest.raises(ValueError, match=r"train image 0 .* is 64×64, but its annotation file says 80×64"):
        TorchvisionDetectionDataset(data.train, "retinanet")[0]


@pytest.mark.parametrize("detector", ["retinanet", "mask_rcnn"])
def test_a_tiny_run_trains_saves_atomically_and_reloads_to_the_same_map(tmp_path, detector):
    metrics = main([
        "--detector", detector, "--output_dir", str(tmp_path), "--image_size", "64", "--generated_train_size", "4",
        "--generated_validation_size", "2", "--max_steps", "2", "--per_device_train_batch_size", "2",
        "--eval_strategy", "no", "--save_strategy", "no",
    ])
    assert 0.0 <= metrics["eval_map"] <= 1.0 and metrics["reloaded_map"] == pytest.approx(metrics["eval_map"])
    assert {f"eval_ap_{name}" for name in NAMES} <= set(metrics)
    assert ("eval_segm_map" in metrics) == (detector == "mask_rcnn")
    assert find_detector_folder(tmp_path) == tmp_path / saved_detectors.DETECTOR_FOLDER
    assert not [name for name in os.listdir(tmp_path) if name.startswith(".")]  # no staging folder left


def test_collate_keeps_images_at_their_own_sizes():
    batch = collate_torchvision([{"image": torch.zeros(3, 4, 6), "target": {}}, {"image": torch.zeros(3, 5, 5),
                                                                               "target": {}}])
    assert [tuple(i.shape) for i in batch["images"]] == [(3, 4, 6), (3, 5, 5)] and len(batch["targets"]) == 2

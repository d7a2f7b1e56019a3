"""Publishing a torchvision detector to a loopback Hub and loading it back by repo id (no internet)."""

import json
import re
import runpy
from pathlib import Path

import pytest
import torch
import yaml
from huggingface_hub import CommitOperationAdd, HfApi, hf_hub_download

from hub_fixtures import loopback_hub  # noqa: F401  (a fixture)
from hub_fixtures import REPO_ROOT
from poolformer_hf.hub.publish import DownloadError
from poolformer_hf.tasks.detection.hub_detectors import push_detector_to_hub
from poolformer_hf.tasks.detection.run import main
from poolformer_hf.tasks.detection.saved_detectors import (
    RESULTS_NAME,
    load_detector,
    read_detector_results,
    save_detector,
    write_detector_results,
)
from test_detection_torchvision import NAMES, images, tiny_detector

REPO = "test-org/tiny-mask-rcnn"
METRICS = {"eval_map": 0.25, "eval_map_50": 0.5, "eval_map_75": 0.125, "eval_segm_map": 0.2, "eval_ap_circle": 0.3,
           "eval_ap_square": 0.2, "eval_ap_triangle": 0.25, "train_loss": 1.5}


@pytest.fixture
def detector_dir(tmp_path):
    torch.manual_seed(0)
    model = tiny_detector("mask_rcnn", options={"box_score_thresh": 0.0}).eval()
    folder = Path(save_detector(model, tmp_path / "run" / "detector"))
    write_detector_results(folder, METRICS, "generated shapes", "generated-shapes", images=2)
    return model, folder


def _card(repo=REPO) -> str:
    return open(hf_hub_download(repo, "README.md")).read()


def test_a_pushed_detector_loads_from_its_repo_id_in_a_fresh_cache_to_the_same_outputs(loopback_hub, detector_dir,
                                                                                        tmp_path):
    model, folder = detector_dir
    result = push_detector_to_hub(folder.parent, REPO)  # the run's folder: its detector/ is found
    assert sorted(HfApi().list_repo_files(REPO)) == [".gitattributes", "README.md", "detector_config.json",
                                                     RESULTS_NAME, "model.safetensors"]
    assert result.skipped == (".poolformer_hf_conversion.json",)  # output_folders' marker stays home
    reloaded = load_detector(REPO, cache_dir=str(tmp_path / "fresh_cache"))
    assert (tmp_path / "fresh_cache").is_dir()
    with torch.no_grad():
        expected, got = model(images(1)), reloaded(images(1))
    assert len(expected[0]["boxes"]) > 0
    for key in ("boxes", "scores", "labels", "masks"):
        assert torch.equal(expected[0][key], got[0][key])
    assert not push_detector_to_hub(folder, REPO).created_commit  # unchanged: no new commit


def test_the_card_states_the_runs_own_results_and_its_usage_snippet_runs(loopback_hub, detector_dir):
    _, folder = detector_dir
    push_detector_to_hub(folder, REPO)
    card = _card()
    metadata = yaml.safe_load(card.split("---")[1])
    assert (metadata["library_name"], metadata["pipeline_tag"]) == ("poolformer_hf", "object-detection")
    assert {"mask-rcnn", "instance-segmentation"} <= set(metadata["tags"])
    quoted = {m["name"]: m["value"] for m in metadata["model-index"][0]["results"][0]["metrics"]}
    assert metadata["model-index"][0]["results"][0]["dataset"]["type"] == "generated-shapes"
    assert quoted == {"box mAP@[.5:.95]": 0.25, "box mAP@.5": 0.5, "box mAP@.75": 0.125, "mask mAP@[.5:.95]": 0.2}
    assert "| box AP circle | 0.3000 |" in card and "on generated shapes, 2\nvalidation images" in card
    assert "train_loss" not in read_detector_results(folder)["metrics"]  # only what evaluation measured
    (snippet,) = re.findall(r"```python\n(.*?)```", card, flags=re.S)
    namespace = {}
    exec(snippet, namespace)  # downloads by repo id and runs the detector
    assert set(namespace["detections"][0]) == {"boxes", "labels", "scores", "masks"}


def test_a_card_without_recorded_results_quotes_none(loopback_hub, tmp_path):
    folder = Path(save_detector(tiny_detector("retinanet"), tmp_path / "detector"))
    push_detector_to_hub(folder, REPO)
    card = _card()
    assert "No evaluation results were recorded" in card and "model-index" not in card


def _upload(files: dict, repo=REPO):
    api = HfApi()
    api.create_repo(repo, exist_ok=True)
    api.create_commit(repo, operations=[CommitOperationAdd(name, data) for name, data in files.items()],
                      commit_message="hand-made")


def test_a_config_naming_an_unknown_builder_is_refused_and_only_safetensors_are_read(loopback_hub, detector_dir,
                                                                                   tmp_path):
    _, folder = detector_dir
    config = json.loads((folder / "detector_config.json").read_text())
    _upload({"detector_config.json": json.dumps({**config, "detector": "my_module.Evil"}).encode(),
             "model.safetensors": (folder / "model.safetensors").read_bytes()})
    with pytest.raises(ValueError, match=r"detector_config.json: unknown torchvision detector 'my_module.Evil'; "
                                         r"expected one of \['retinanet', 'mask_rcnn'\]"):
        load_detector(REPO)
    weights = tmp_path / "weights.bin"
    torch.save(tiny_detector("mask_rcnn").state_dict(), weights)
    _upload({"detector_config.json": json.dumps(config).encode(), "pytorch_model.bin": weights.read_bytes()},
            repo="test-org/pickled")
    _upload({"README.md": b"# a transformers model"}, repo="test-org/not-a-detector")
    with pytest.raises(ValueError, match="Hub repo test-org/not-a-detector is not a saved detector"):
        load_detector("test-org/not-a-detector")
    with pytest.raises(ValueError, match="has no model.safetensors: a detector's weights are read from safetensors "
                                         "only"):
        load_detector("test-org/pickled")
    downloaded = [r.path for r in loopback_hub.requests_to("resolve")]
    assert not [path for path in downloaded if path.endswith(".bin")]


def test_a_transient_hub_failure_is_retried_and_a_lasting_one_names_the_download(loopback_hub, detector_dir,
                                                                                 tmp_path):
    _, folder = detector_dir
    push_detector_to_hub(folder, REPO)
    loopback_hub.requests.clear()
    loopback_hub.fail("model_info", status=503, times=1)
    assert load_detector(REPO).detector_config.label_names == NAMES
    assert len(loopback_hub.requests_to("model_info")) == 2  # the 503, then the retry
    loopback_hub.fail("model_info", status=503)
    with pytest.raises(DownloadError, match=rf"download from .* failed while downloading the detector {REPO} "
                                            r"\(after 4 attempts\): .*503"):
        load_detector(REPO, cache_dir=str(tmp_path / "empty_cache"), request_timeout=5)  # nothing cached to fall back on


def test_push_script_publishes_a_detector_folder(loopback_hub, detector_dir, capsys):
    _, folder = detector_dir
    push = runpy.run_path(str(REPO_ROOT / "scripts" / "push_to_hub.py"), run_name="push_to_hub")["main"]
    assert push(["--model_dir", str(folder), "--repo_id", REPO]) == 0
    out = capsys.readouterr().out
    assert "committed" in out and "not uploaded: .poolformer_hf_conversion.json" in out
    assert "detector_config.json" in HfApi().list_repo_files(REPO)


def test_a_training_run_pushes_its_detector_with_a_card_of_its_own_metrics(loopback_hub, tmp_path):
    argv = ["--detector", "retinanet", "--output_dir", str(tmp_path), "--image_size", "64",
            "--generated_train_size", "4", "--generated_validation_size", "2", "--max_steps", "1",
            "--per_device_train_batch_size", "2", "--eval_strategy", "no", "--save_strategy", "no", "--push_to_hub"]
    with pytest.raises(ValueError, match="--push_to_hub needs --hub_model_id ORG/NAME"):
        main(argv)  # refused before training
    metrics = main([*argv, "--hub_model_id", REPO])
    results = json.loads(open(hf_hub_download(REPO, RESULTS_NAME)).read())
    assert results["metrics"]["eval_map"] == metrics["eval_map"]
    assert (results["dataset"], results["dataset_id"]) == ("poolformer_hf's generated shapes, the offline demo",
                                                         "generated-shapes")
    assert f"| box mAP@[.5:.95] | {metrics['eval_map']:.4f} |" in _card()
    assert not [name for name in HfApi().list_repo_files(REPO) if name.startswith("checkpoint")]


def test_saving_again_drops_the_results_of_the_weights_it_replaces(tmp_path):
    folder = Path(save_detector(tiny_detector("retinanet"), tmp_path / "detector"))
    write_detector_results(folder, METRICS, "generated shapes", "generated-shapes", images=2)
    save_detector(tiny_detector("retinanet"), folder)
    assert read_detector_results(folder) is None

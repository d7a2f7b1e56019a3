"""transformers pipelines on a saved folder: in-process, and with trust_remote_code where poolformer_hf is missing."""

import json

import numpy as np
import PIL.Image
import pytest
import torch
from transformers import pipeline

from isolated_python import run_isolated
from poolformer_hf import PoolFormerConfig, PoolFormerForImageClassification
from poolformer_hf.image_inputs import load_rgb_array
from poolformer_hf.image_processing_poolformer import PoolFormerImageProcessor


LABELS = {0: "cat", 1: "dog", 2: "bird"}


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A tiny classifier with our processor, saved as a Hub-style folder."""
    torch.manual_seed(0)
    config = PoolFormerConfig(depths=[1, 1, 1, 1], hidden_sizes=[8, 16, 24, 32], num_labels=3, id2label=LABELS)
    path = tmp_path_factory.mktemp("tiny_poolformer")
    PoolFormerForImageClassification(config).eval().save_pretrained(path)
    PoolFormerImageProcessor(crop_pct=0.9).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def image() -> PIL.Image.Image:
    return PIL.Image.fromarray(np.random.default_rng(0).integers(0, 256, (48, 80, 3), dtype=np.uint8))


@torch.no_grad()
def direct_outputs(folder, image) -> tuple[torch.Tensor, torch.Tensor]:
    """Softmax scores and pooled features computed without a pipeline."""
    model = PoolFormerForImageClassification.from_pretrained(folder).eval()
    pixel_values = PoolFormerImageProcessor.from_pretrained(folder)(image, return_tensors="pt")["pixel_values"]
    scores = model(pixel_values).logits.softmax(-1)[0]
    features = model.poolformer(pixel_values).pooler_output[0]
    return scores, features


def test_image_classification_pipeline(folder, image):
    classifier = pipeline("image-classification", model=str(folder))
    assert type(classifier.image_processor) is PoolFormerImageProcessor
    predictions = classifier(image, top_k=3)
    scores, _ = direct_outputs(folder, image)
    expected = sorted(((LABELS[i], scores[i].item()) for i in range(3)), key=lambda pair: -pair[1])
    assert [p["label"] for p in predictions] == [label for label, _ in expected]
    np.testing.assert_allclose([p["score"] for p in predictions], [score for _, score in expected], atol=1e-6)


def test_image_feature_extraction_pipeline_pools(folder, image):
    extractor = pipeline("image-feature-extraction", model=str(folder), pool=True)
    features = torch.tensor(extractor(image))
    _, expected = direct_outputs(folder, image)
    assert features.shape == (1, 32)
    torch.testing.assert_close(features[0], expected, atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_pooled_embedding_is_what_the_readme_says_the_final_norm_then_the_mean_not_unit_length(folder, image):
    # README (Image processors): "the final norm, then global average pooling (PoolFormer v1) ... not unit-length".
    extractor = pipeline("image-feature-extraction", model=str(folder), pool=True)
    features = torch.tensor(extractor(image))[0]
    model = PoolFormerForImageClassification.from_pretrained(folder).eval()
    pixel_values = PoolFormerImageProcessor.from_pretrained(folder)(image, return_tensors="pt")["pixel_values"]
    last = model.poolformer(pixel_values).last_hidden_state
    torch.testing.assert_close(features, model.poolformer.norm(last).mean((-2, -1))[0], atol=1e-5, rtol=1e-5)
    assert abs(features.norm().item() - 1.0) > 0.1  # not normalized to unit length: the README says so
    unit = torch.nn.functional.normalize(torch.tensor(extractor(image)), dim=-1)  # the README's cosine recipe
    torch.testing.assert_close(unit.norm(dim=-1), torch.ones(1))


def test_pipelines_with_trust_remote_code_where_the_package_is_missing(folder, image, tmp_path):
    image.save(tmp_path / "image.png")
    stdout = run_isolated(
        f"""
import json
from transformers import pipeline
folder = {str(folder)!r}
classifier = pipeline("image-classification", model=folder, trust_remote_code=True)
extractor = pipeline("image-feature-extraction", model=folder, pool=True, trust_remote_code=True)
print(json.dumps({{
    "classes": [type(classifier.model).__module__, type(classifier.image_processor).__module__,
                type(extractor.model).__module__, type(extractor.image_processor).__module__],
    "predictions": classifier("image.png", top_k=3),
    "features": extractor("image.png"),
}}))
""",
        tmp_path,
    )
    result = json.loads(stdout.strip().splitlines()[-1])
    assert all(module.startswith("transformers_modules.") for module in result["classes"]), result["classes"]

    scores, features = direct_outputs(folder, image)
    predicted = {p["label"]: p["score"] for p in result["predictions"]}
    np.testing.assert_allclose([predicted[LABELS[i]] for i in range(3)], scores.numpy(), atol=1e-6)
    torch.testing.assert_close(torch.tensor(result["features"])[0], features, atol=1e-5, rtol=1e-5)


@torch.no_grad()
def scores_of(folder, pixel_source) -> torch.Tensor:
    model = PoolFormerForImageClassification.from_pretrained(folder).eval()
    pixel_values = PoolFormerImageProcessor.from_pretrained(folder)(pixel_source, return_tensors="pt")["pixel_values"]
    return model(pixel_values).logits.softmax(-1)[0]


def test_transparent_png_through_the_pipeline(folder, tmp_path):
    # Half the image transparent over stored black: the processor puts it on white, transformers' load_image
    # (which the pipeline applies to paths, URLs and PIL images) drops the alpha and keeps the black.
    rgba = np.zeros((48, 80, 4), dtype=np.uint8)
    rgba[:, :40] = np.random.default_rng(1).integers(0, 256, (48, 40, 4), dtype=np.uint8) | 255
    path = tmp_path / "half_transparent.png"
    PIL.Image.fromarray(rgba, mode="RGBA").save(path)
    classifier = pipeline("image-classification", model=str(folder))

    def pipeline_scores(image) -> np.ndarray:
        predicted = {p["label"]: p["score"] for p in classifier(image, top_k=3)}
        return np.array([predicted[LABELS[i]] for i in range(3)])

    on_white, flattened = scores_of(folder, str(path)).numpy(), scores_of(folder, PIL.Image.open(path).convert("RGB"))
    assert np.abs(on_white - flattened.numpy()).max() > 1e-3  # the two decodes differ
    np.testing.assert_allclose(pipeline_scores(str(path)), flattened.numpy(), atol=1e-6)  # as the README says
    np.testing.assert_allclose(pipeline_scores(load_rgb_array(path)), on_white, atol=1e-6)  # the way round it

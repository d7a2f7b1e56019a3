import torch
from PIL import Image

from poolformer_hf import PoolFormerConfig, PoolFormerForImageClassification
from poolformer_hf.image_processing_poolformer import PoolFormerImageProcessor
from poolformer_hf.tasks.classification.demo import classify_split, format_predictions
from poolformer_hf.tasks.classification.splits import ImageSplit


def test_classify_split_names_prediction_and_truth():
    torch.manual_seed(0)
    config = PoolFormerConfig(depths=[1, 1, 1, 1], hidden_sizes=[8, 16, 24, 32], num_labels=2,
                              id2label={0: "left", 1: "right"}, label2id={"left": 0, "right": 1})  # fmt: skip
    model = PoolFormerForImageClassification(config)
    with torch.no_grad():  # a head that always answers "right"
        model.classifier.weight.zero_()
        model.classifier.bias.copy_(torch.tensor([0.0, 5.0]))
    images = [Image.new("RGB", (20, 20), (i * 60, 0, 0)) for i in range(3)]
    processor = PoolFormerImageProcessor(size={"shortest_edge": 16}, crop_size={"height": 16, "width": 16})
    rows = classify_split(model, processor, ImageSplit(images=images, labels=[1, 0, 1]), limit=2)
    assert [(r["predicted"], r["truth"]) for r in rows] == [("right", "right"), ("right", "left")]
    assert rows[0]["probability"] > 0.99
    text = format_predictions(rows)
    assert "WRONG" in text and text.endswith("1/2 held-out images classified correctly")

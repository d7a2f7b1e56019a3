import numpy as np
import pytest
import torch
from PIL import Image
from transformers.modeling_outputs import SemanticSegmenterOutput

from poolformer_hf import PoolFormerSegmentationImageProcessor


def test_labels_resized_by_nearest_neighbour_and_reduced():
    processor = PoolFormerSegmentationImageProcessor(size={"height": 4, "width": 4}, do_reduce_labels=True)
    image = np.random.default_rng(0).integers(0, 256, (2, 2, 3), dtype=np.uint8)
    labels = np.array([[0, 1], [2, 255]], dtype=np.uint8)
    out = processor(image, segmentation_maps=labels, return_tensors="pt")
    assert out.pixel_values.shape == (1, 3, 4, 4)
    # 0 ("other" in ADE20K) becomes ignored, classes shift down by one, 255 stays ignored; each pixel a 2×2 block.
    expected = torch.tensor([[255, 255, 0, 0], [255, 255, 0, 0], [1, 1, 255, 255], [1, 1, 255, 255]])
    assert torch.equal(out.labels[0], expected)
    assert out.labels.dtype == torch.int64


def test_images_are_normalized_with_the_imagenet_statistics():
    processor = PoolFormerSegmentationImageProcessor(size={"height": 2, "width": 2})
    image = np.full((2, 2, 3), 255, dtype=np.uint8)
    pixel_values = processor(image, return_tensors="pt").pixel_values[0]
    expected = (1 - torch.tensor([0.485, 0.456, 0.406])) / torch.tensor([0.229, 0.224, 0.225])
    assert torch.allclose(pixel_values[:, 0, 0], expected, atol=1e-5)


def test_defaults_are_the_papers_512_input():
    assert PoolFormerSegmentationImageProcessor().size == {"height": 512, "width": 512}


@pytest.mark.parametrize(
    "segmentation_map, message",
    [
        (Image.new("RGB", (4, 4)), "got a RGB image"),
        (np.zeros((4, 4, 3), dtype=np.uint8)[None], "must be 2-D"),
        (np.full((4, 4), 0.5, dtype=np.float32), "integer class ids"),
    ],
)
def test_label_maps_that_are_not_class_ids_are_refused(segmentation_map, message):
    processor = PoolFormerSegmentationImageProcessor(size={"height": 4, "width": 4})
    with pytest.raises(ValueError, match=message):
        processor(np.zeros((4, 4, 3), dtype=np.uint8), segmentation_maps=segmentation_map)


def test_post_processing_matches_a_hand_computed_upsampling():
    # Class 1 scores [[1, 0], [0, 0]] upsampled ×2 (bilinear, half-pixel centres): rows and columns weigh the top-left
    # score by 1, 0.75, 0.25, 0, so only the top-left 2×2 block exceeds class 0's constant 0.5.
    logits = torch.stack([torch.full((2, 2), 0.5), torch.tensor([[1.0, 0.0], [0.0, 0.0]])])[None]
    processor = PoolFormerSegmentationImageProcessor()
    outputs = SemanticSegmenterOutput(logits=logits)
    (resized,) = processor.post_process_semantic_segmentation(outputs, target_sizes=[(4, 4)])
    expected = torch.tensor([[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]])
    assert torch.equal(resized, expected)
    (native,) = processor.post_process_semantic_segmentation(outputs)
    assert torch.equal(native, torch.tensor([[1, 0], [0, 0]]))


def test_post_processing_needs_one_target_size_per_image():
    outputs = SemanticSegmenterOutput(logits=torch.zeros(2, 3, 2, 2))
    with pytest.raises(ValueError, match="as many target sizes"):
        PoolFormerSegmentationImageProcessor().post_process_semantic_segmentation(outputs, target_sizes=[(4, 4)])

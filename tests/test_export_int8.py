"""The int8 recipe quantizes every conv and linear of the model (weights and activations), none left in float."""

import pytest

from poolformer_hf import PoolFormerForImageClassification
from tests.conftest import randomize_
from tests.test_export_artefact import processor
from tests.test_export_program import small_config

pytest.importorskip("openvino", reason="OpenVINO is not installed (the export extra)")
pytest.importorskip("nncf", reason="NNCF is not installed (the export extra)")

from poolformer_hf.export import artefact, int8  # noqa: E402


def test_every_conv_and_linear_is_quantized():
    model = randomize_(PoolFormerForImageClassification(small_config("poolformer_s12"))).eval()
    config = model.config
    # stem, 3 downsampling convs, fc1 and fc2 of every block, the classifier
    expected = 1 + (len(config.depths) - 1) + 2 * sum(config.depths) + 1
    float_program = artefact.build_export("openvino", int8.fuse_for_inference(model),
                                          int8.photo_pixels(processor(), 2), dynamic_size=None).program
    assert int8.layer_counts(float_program) == {"layers": expected, "quantized": 0}
    quantized = int8.quantize_int8(model, processor(), calibration_photos=4)
    assert int8.layer_counts(quantized) == {"layers": expected, "quantized": expected}

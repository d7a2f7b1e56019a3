"""export_model: a folder that appears whole only after the exported program matched eager on real photos, with
the processor config beside the program; ONNX Runtime, OpenVINO and ExecuTorch round trips from the written files."""

import json

import pytest
import torch
from transformers.modeling_outputs import ImageClassifierOutputWithNoAttention

from poolformer_hf import PoolFormerForImageClassification, PoolFormerImageProcessor
from poolformer_hf.export import ExportParityError, artefact, export_model
from poolformer_hf.hub.output_folders import MARKER_NAME
from tests.conftest import randomize_
from tests.test_export_program import small_config
from tests.test_inference import SIZE, pixels


def processor():
    return PoolFormerImageProcessor(crop_pct=0.9, size={"shortest_edge": 71}, crop_size={"height": SIZE, "width": SIZE})


@pytest.fixture(scope="module")
def model():
    return randomize_(PoolFormerForImageClassification(small_config("poolformerv2_s12"))).eval()


def eager_logits(model, x):
    with torch.no_grad():
        return model(x).logits


def check_folder(folder, program_files, model):
    names = {path.name for path in folder.iterdir()}
    assert set(program_files) | {"config.json", "preprocessor_config.json", "export.json", "export_report.json"} <= names
    assert PoolFormerImageProcessor.from_pretrained(folder).crop_size == {"height": SIZE, "width": SIZE}
    report = json.loads((folder / "export_report.json").read_text())
    assert report["photos"] == 3 and report["max_abs_diff"]["logits"] <= report["tolerance"]
    assert not [path for path in folder.parent.iterdir() if path.name.endswith((".partial", ".old"))]


def test_onnx_folder_runs_on_onnx_runtime_at_other_shapes(tmp_path, model):
    onnxruntime = pytest.importorskip("onnxruntime", reason="ONNX Runtime is not installed (the export extra)")
    report = export_model(model, tmp_path / "onnx", "onnx", processor=processor(), photos=3)
    check_folder(tmp_path / "onnx", ["model.onnx", "model.onnx.data"], model)
    session = onnxruntime.InferenceSession(str(tmp_path / "onnx" / "model.onnx"), providers=["CPUExecutionProvider"])
    x = pixels(batch=5, size=96, seed=3)
    (logits,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    assert (torch.from_numpy(logits) - eager_logits(model, x)).abs().max().item() < 1e-4
    assert report["dynamic_axes"] == [0, 2, 3] and report["input_dtype"] == "float32"
    smallest = report["accepted_shapes"]["height"]["min"]  # the smallest size the report states runs
    x = pixels(batch=1, size=smallest, seed=4)
    (logits,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    assert (torch.from_numpy(logits) - eager_logits(model, x)).abs().max().item() < 1e-4
    # Every norm is one LayerNormalization node, the op ONNX Runtime runs fused (README, Deployment).
    ops = op_counts_onnx(tmp_path / "onnx" / "model.onnx")
    assert ops["LayerNormalization"] == norm_layers(model) and "InstanceNormalization" not in ops


def norm_layers(model) -> int:
    """The folded module's norms: the one-group ones of the blocks (8 here) and the channel LayerNorms (5)."""
    from poolformer_hf.inference.folding import Normalize, fuse_for_inference
    from poolformer_hf.layers import ChannelLayerNorm

    folded = fuse_for_inference(model)
    assert sum(isinstance(layer, Normalize) and not layer.per_position for layer in folded.modules()) == 8
    return sum(isinstance(layer, (Normalize, ChannelLayerNorm)) for layer in folded.modules())


def op_counts_onnx(path) -> dict[str, int]:
    import collections

    import onnx

    return collections.Counter(node.op_type for node in onnx.load(str(path), load_external_data=False).graph.node)


def test_openvino_folder_runs_in_float32_at_other_shapes(tmp_path, model):
    openvino = pytest.importorskip("openvino", reason="OpenVINO is not installed (the export extra)")
    export_model(model, tmp_path / "ov", "openvino", processor=processor(), photos=3)
    check_folder(tmp_path / "ov", ["openvino_model.xml", "openvino_model.bin"], model)
    compiled = openvino.Core().compile_model(str(tmp_path / "ov" / "openvino_model.xml"), "CPU",
                                             {"INFERENCE_PRECISION_HINT": "f32"})
    x = pixels(batch=5, size=96, seed=3)
    logits = torch.from_numpy(compiled({0: x.numpy()})[0])
    assert (logits - eager_logits(model, x)).abs().max().item() < 1e-4
    # Every norm reaches OpenVINO as one MVN on the map as it is (the moments form for the one-group norms; OpenVINO's
    # translation of group_norm reshapes the map and reorders its layout around it).
    ops = [op.get_type_name() for op in openvino.Core().read_model(str(tmp_path / "ov" / "openvino_model.xml")).get_ops()]
    assert ops.count("MVN") == norm_layers(model) and "GroupNormalization" not in ops


def test_executorch_folder_runs_on_the_executorch_runtime_at_other_shapes(tmp_path, model):
    pytest.importorskip("executorch", reason="ExecuTorch is not installed (the export extra)")
    from executorch.runtime import Runtime

    export_model(model, tmp_path / "et", "executorch", processor=processor(), photos=3)
    check_folder(tmp_path / "et", ["model.pte"], model)
    forward = Runtime.get().load_program(tmp_path / "et" / "model.pte").load_method("forward")
    x = pixels(batch=5, size=96, seed=3)
    (logits,) = forward.execute([x])
    assert (logits - eager_logits(model, x)).abs().max().item() <= 1e-4


class _BrokenExport:
    """An exported program whose logits are off by a little: what a wrong export would give."""

    def __init__(self, model):
        self.model, self.saved = model, False

    def to(self, **options):
        return self

    def __call__(self, pixel_values):
        return ImageClassifierOutputWithNoAttention(logits=eager_logits(self.model, pixel_values) + 1e-2)

    def save_pretrained(self, folder):
        self.saved = True


def test_a_program_that_fails_the_parity_check_writes_nothing(tmp_path, model, monkeypatch):
    broken = _BrokenExport(model)
    monkeypatch.setattr(artefact, "build_export", lambda *args, **kwargs: broken)
    with pytest.raises(ExportParityError, match=r"does not match the eager model on 3 photos: max\|Δ\| 0.01"):
        export_model(model, tmp_path / "out", "onnx", processor=processor(), photos=3)
    assert not broken.saved and list(tmp_path.iterdir()) == []


def test_a_failing_write_leaves_no_folder_and_overwrite_replaces_a_whole_one(tmp_path):
    target = tmp_path / "out"

    def half_written(folder):
        (folder / "model.onnx").write_text("partial")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        artefact.write_atomically(target, half_written)
    assert list(tmp_path.iterdir()) == []
    artefact.write_atomically(target, lambda folder: (folder / "old.txt").write_text("old"))
    with pytest.raises(ValueError, match="overwrite"):
        artefact.write_atomically(target, lambda folder: None)
    artefact.write_atomically(target, lambda folder: (folder / "new.txt").write_text("new"), overwrite=True)
    assert sorted(path.name for path in target.iterdir()) == [MARKER_NAME, "new.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


@pytest.mark.parametrize("kwargs, message", [
    ({"format": "tflite"}, "format must be one of onnx, openvino, executorch, pt2"),
    ({"dtype": torch.float16}, "dtype must be torch.float32 or torch.bfloat16"),
    ({"format": "onnx", "dtype": torch.bfloat16}, "onnx cannot be exported in bfloat16: ONNX Runtime"),
])
def test_bad_arguments_are_refused_before_any_work(tmp_path, model, kwargs, message):
    with pytest.raises(ValueError, match=message):
        export_model(model, tmp_path / "out", **kwargs)
    assert list(tmp_path.iterdir()) == []

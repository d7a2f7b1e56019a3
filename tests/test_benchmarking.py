"""The benchmark's helpers (scripts/benchmark.py): same weights everywhere, interleaved timing, reports. No timing is
asserted — only that the machinery measures what it says."""

import json

import pytest
import torch

from poolformer_hf import PoolFormerConfig
from benchmarks import harness as bench


@pytest.fixture(scope="module")
def models():
    return bench.build_models()


def test_the_three_implementations_get_the_same_weights_and_agree(models):
    pixels = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    diffs = bench.check_agreement(models, pixels)
    assert set(diffs) == {"poolformer_hf", "transformers", "timm", "transformers logits"}
    assert max(diffs.values()) <= 1e-4


def test_disagreement_stops_the_benchmark(models):
    broken = dict(models)
    broken["timm"] = bench.build_models(seed=1)["timm"]
    with pytest.raises(ValueError, match="disagree"):
        bench.check_agreement(broken, torch.randn(1, 3, 64, 64))


def test_time_interleaved_rotates_the_order_and_keeps_every_sample():
    calls = []
    cases = {name: (lambda name=name: calls.append(name)) for name in "abc"}
    samples = bench.time_interleaved(cases, repeats=3, warmup=1, min_seconds=0.0)
    assert {name: len(times) for name, times in samples.items()} == {"a": 3, "b": 3, "c": 3}
    assert calls[3:] == list("abc") + list("bca") + list("cab")  # after one warm-up call each


def test_roofline_counts_the_pointwise_convs_of_every_block():
    config = PoolFormerConfig.from_preset("poolformer_s12", num_labels=1000)
    shapes = bench.pointwise_conv_shapes(config)
    assert len(shapes) == 2 * sum(config.depths)
    pointwise = sum(rows * fan_in * fan_out for rows, fan_in, fan_out in shapes)
    assert 0.85 < pointwise / bench.model_macs(config) < 0.9  # the rest: stem, downsampling convs, head
    cases, factor = bench.roofline_cases(config, batch=1, resolution=64)
    assert set(cases) == {"1x1 GEMMs, whole batch", "1x1 GEMMs, chunked"} and 0 < factor < 1
    for case in cases.values():
        case()


def test_memory_probe_reports_a_peak_for_an_inference_forward():
    probe = bench.memory_probe({"kind": "inference", "model": "poolformer_s12", "batch": 1, "resolution": 64})
    assert probe["peak_bytes"] > 64 * 16 * 16 * 4  # at least the stem output
    assert "profiler" in probe["method"]


def test_a_memory_probe_in_a_fresh_process_runs_with_the_benchmarks_threads(monkeypatch):
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)  # as after --threads 1
    spec = {"kind": "inference", "model": "poolformer_s12", "batch": 1, "resolution": 32}
    assert bench.measure_in_subprocess(spec)["threads"] == 1
    assert bench.measure_in_subprocess({**spec, "threads": 2})["threads"] == 2


# One result of every section, figures from the README's measured run.
RESULTS = [
    {"section": "inference", "impl": "transformers", "mode": "eager", "dtype": "float32", "batch": 32,
     "resolution": 224, "images_per_s": 16.2},
    {"section": "inference", "impl": "poolformer_hf", "mode": "default", "dtype": "float32", "batch": 32,
     "resolution": 224, "images_per_s": 26.8},
    {"section": "training", "impl": "transformers", "batch": 16, "images_per_s": 5.32},
    {"section": "training", "impl": "poolformer_hf", "batch": 16, "images_per_s": 7.1},
    {"section": "memory", "impl": "transformers", "batch": 16, "peak_mib": 922.0, "rss_peak_mib": 1107.0},
    {"section": "memory", "impl": "poolformer_hf", "batch": 16, "peak_mib": 440.0, "rss_peak_mib": 585.0},
    {"section": "scaling", "impl": "poolformer_s12", "resolution": 224, "median_s": 0.046, "peak_mib": 12.0},
    {"section": "scaling", "impl": "poolformer_s12", "resolution": 384, "median_s": 0.129, "peak_mib": 15.0},
]  # fmt: skip


def test_markdown_table_reports_speedups_and_memory_ratios():
    table = bench.markdown_table(RESULTS)
    assert "| poolformer_hf | default | 26.8 | 1.65× | – |" in table
    assert "| poolformer_hf | 16 | 7.10 | 1.33× | 440 | 0.48× | 585 | 0.53× |" in table


def test_reports_are_written_with_a_plot(tmp_path):
    results = [
        {"section": "inference", "impl": "transformers", "mode": "eager", "dtype": "float32", "batch": 32,
         "resolution": 224, "images_per_s": 10.0},
        {"section": "inference", "impl": "poolformer_hf", "mode": "default", "dtype": "float32", "batch": 32,
         "resolution": 224, "images_per_s": 25.0},
        {"section": "scaling", "impl": "poolformer_s12", "resolution": 224, "median_s": 0.05, "peak_mib": 12.0},
        {"section": "scaling", "impl": "poolformer_s12", "resolution": 384, "median_s": 0.13, "peak_mib": 15.0},
    ]
    paths = bench.write_reports(results, {"torch": torch.__version__}, str(tmp_path / "out"))
    assert json.loads(open(paths["json"]).read())["results"] == results
    assert "| poolformer_hf | default | 25.0 | 2.50× | – |" in open(paths["markdown"]).read()
    with open(paths["png"], "rb") as handle:  # matplotlib comes with the test extra
        assert handle.read(8) == b"\x89PNG\r\n\x1a\n"



def test_plot_has_a_title_the_figure_on_each_bar_and_training_and_memory_beside_inference():
    import matplotlib

    matplotlib.use("Agg")
    panels = bench.plot_panels(RESULTS)
    assert [panel["title"] for panel in panels] == [
        "Inference, batch 32, 224²", "Training step (fwd + bwd + AdamW), 224²", "Peak memory of a training step",
        "Time against resolution (batch 1)", "Memory against resolution (batch 1)",
    ]
    figure = bench.draw(panels, "the title")
    assert figure.get_suptitle() == "the title"
    printed = [[text.get_text() for text in axis.texts] for axis in figure.axes if axis.get_visible()]
    assert printed[:3] == [["26.8", "16.2"], ["5.32", "7.10"], ["922 MiB", "440 MiB"]]
    assert [axis.get_title() for axis in figure.axes if axis.get_visible()] == [panel["title"] for panel in panels]


def test_plot_title_names_the_machine():
    title = bench.plot_title({"torch": "2.14.1", "cpu_capability": "AVX2", "threads": 2})
    assert "CPU (AVX2, 2 threads)" in title and "torch 2.14.1" in title
    assert "NVIDIA H200" in bench.plot_title({"torch": "2.14.1", "cuda_device": "NVIDIA H200"})


def test_deploy_section_times_both_exported_models_and_they_compute_our_function(models):
    pytest.importorskip("onnxruntime", reason="ONNX Runtime is not installed (the export extra)")
    from benchmarks.deploy import deploy_table, run_deploy

    rows = run_deploy(models, batches=(1, 2), runtimes=("onnxruntime",), int8=False, resolution=64, repeats=1,
                      log=lambda line: None)
    assert {(row["impl"], row["batch"]) for row in rows} == {
        (impl, batch) for impl in ("poolformer_hf", "transformers") for batch in (1, 2)}
    assert max(row["max_abs_diff_vs_ours"] for row in rows) < 1e-4  # the same weights, exported the same way
    table = deploy_table(rows)
    assert table[2].startswith("| runtime | transformers b1 | ours b1 | × b1 |") and table[4].startswith("| onnxruntime |")


def test_environment_records_the_cpu_and_its_matmul_features():
    info = bench.environment()
    assert info["threads"] == torch.get_num_threads() and "cpu_capability" in info
    if "cpu_model" in info:  # Linux
        assert set(info["cpu_flags"]) <= set(bench.MATMUL_FLAGS)


def test_composition_section_reports_the_lora_ratios_and_the_dispatch_cost(models):
    logged = []
    rows = bench.run_composition({"poolformer_hf": models["poolformer_hf"]}, batches=(1,), train_batch=2, repeats=1,
                                 resolution=64, log=logged.append)
    ratios = [f"composition {line}" for line in bench.composition_ratios(rows)]
    assert logged[-len(ratios):] == ratios  # the section ends with its ratios
    text = "\n".join(ratios)
    for figure in ("LoRA unmerged / default call", "LoRA merged / default call", "µs per forward",
                   "LoRA training step kernels / plain modules"):
        assert figure in text, text
    dispatch = next(row for row in rows if row["kind"] == "dispatch")
    assert 0 < dispatch["dispatch_s"] < 0.1


def test_dispatch_seconds_times_the_checks_that_a_forward_makes():
    from poolformer_hf import PoolFormerForImageClassification, set_kernels
    from poolformer_hf.kernels import dispatch

    config = PoolFormerConfig.from_preset("poolformer_s12", depths=[1, 1, 1, 1], hidden_sizes=[8, 8, 16, 16])
    model = PoolFormerForImageClassification(config).eval()
    calls = []
    original = dispatch.poolformer_block
    dispatch.poolformer_block = lambda block: calls.append(block) or original(block)
    try:
        assert bench.dispatch_seconds(model, torch.randn(1, 3, 32, 32), calls=3) > 0
    finally:
        dispatch.poolformer_block = original
    assert len(calls) == 4 + 4 * 3  # the four blocks' checks in the recorded forward, then timed three times
    assert dispatch.poolformer_block is original
    assert bench.dispatch_seconds(set_kernels(model, None), torch.randn(1, 3, 32, 32)) < 1e-4  # nothing to check


def test_family_section_times_ours_beside_timm_with_the_same_logits():
    rows = bench.run_family(presets=("caformer_s18",), batches=(1,), modes=("eager",), resolution=64, repeats=1,
                            log=lambda line: None)
    assert {(row["impl"], row["mode"]) for row in rows} >= {("poolformer_hf", "default"), ("timm", "eager")}
    assert all(row["preset"] == "caformer_s18" and row["images_per_s"] > 0 for row in rows)
    ours = next(row for row in rows if (row["impl"], row["mode"]) == ("poolformer_hf", "default"))
    assert ours["max_abs_diff_vs_timm"] < 1e-4  # the same weights: timing one model against another
    table = "\n".join(bench.family_table(rows))
    assert "| caformer_s18 | float32 | 1 | timm | eager |" in table and "1.00×" in table


def test_the_frozen_and_autotuned_compile_modes_give_ours_and_the_peers_the_same_inductor_options(models):
    built = bench.inference_models(models, torch.float32, ("compile_frozen", "autotune"), torch.device("cpu"))
    peers = {(impl, mode) for impl in ("transformers", "timm") for mode in ("compile_frozen", "autotune")}
    assert set(built) == peers | {("poolformer_hf", "fused+compile_frozen"), ("poolformer_hf", "fused+autotune")}
    for (impl, mode), (model, _) in built.items():
        options = bench.AUTOTUNE if mode.endswith("autotune") else bench.FROZEN
        assert isinstance(model, torch._dynamo.eval_frame.OptimizedModule)  # compiled lazily: nothing runs here
        config = model.get_compiler_config()
        assert {name: config[name] for name in ("freezing", "max_autotune")} == {"max_autotune": False, **options}


def test_compiled_cases_past_dynamos_recompile_limit_are_still_compiled():
    import torch._dynamo.config as dynamo_config
    from torch._dynamo.utils import counters

    saved = {name: getattr(dynamo_config, name) for name in
             ("recompile_limit", "accumulated_recompile_limit", "fail_on_recompile_limit_hit")}
    try:
        bench.allow_recompiles()
        torch._dynamo.reset()
        counters.clear()
        model = torch.compile(torch.nn.Linear(4, 4), dynamic=False, backend="eager")
        for batch in range(1, 12):  # 11 compiles of one forward: dynamo's default limit (8) would run 9-11 eagerly
            model(torch.randn(batch, 4))
        assert counters["stats"]["unique_graphs"] == 11
    finally:
        for name, value in saved.items():
            setattr(dynamo_config, name, value)
        torch._dynamo.reset()

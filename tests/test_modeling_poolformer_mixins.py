"""Our classes under transformers' own model tests, written the way transformers' in-tree model tests are.

`ModelTesterMixin` + `ConfigTester` for PoolFormerModel, PoolFormerForImageClassification and PoolFormerBackbone,
`BackboneTesterMixin` for PoolFormerBackbone (as transformers' ConvNeXt tests do). The mixins come from the sdist of
the installed transformers version (`tests/transformers_tests.py`). Every test of theirs runs, or is skipped for the
reason given in `SKIPPED` (the one place). transformers' `PipelineTesterMixin` is not used: it reads
`tests/utils/tiny_model_summary.json` and `tests/pipelines/*` (neither is in the sdist) and downloads
`hf-internal-testing/tiny-random-<Class>` models from the Hub, which do not exist for our classes; our pipelines are
tested offline in `tests/test_pipelines.py`.
"""

import unittest
from unittest import mock

import torch
from transformers.backbone_utils import BackboneMixin
from transformers.models.auto import modeling_auto
from transformers.testing_utils import torch_device

from poolformer_hf import PoolFormerBackbone, PoolFormerConfig, PoolFormerForImageClassification, PoolFormerModel
from transformers_tests import account_for_skips, load_or_skip

modeling_common = load_or_skip("test_modeling_common")
ConfigTester = load_or_skip("test_configuration_common").ConfigTester
BackboneTesterMixin = load_or_skip("test_backbone_common").BackboneTesterMixin
ModelTesterMixin, floats_tensor, ids_tensor = (
    modeling_common.ModelTesterMixin, modeling_common.floats_tensor, modeling_common.ids_tensor
)

# The transformers release the two skip lists below were last checked against. On an older release a listed test
# may not exist yet (scripts/test.sh with TRANSFORMERS_VERSION runs the suite on one); on this one or newer, a
# listed name the mixins lack fails as a stale entry.
SKIP_LISTS_WRITTEN_FOR = "5.25.0"
# Listed tests that a later release removed, with that release: kept for the older releases pyproject.toml allows.
DROPPED_IN = {"test_tied_head_has_a_tp_plan_entry": "5.24.0"}
NO_EMBEDDINGS = "a conv image model: no token embeddings to resize, tie or feed as inputs_embeds"
SKIPPED = {
    "test_inputs_embeds": NO_EMBEDDINGS,
    "test_model_get_set_embeddings": NO_EMBEDDINGS,
    "test_feed_forward_chunking": "no feed-forward chunking: the MLP is two 1×1 convs over a feature map",
}

# Tests that skip themselves here, by transformers' own checks; they still run (and may pass where the condition holds).
SELF_SKIPPING = {
    "no attention layers, so no attention outputs or attention backends (eager / sdpa / flash / flex) to test; the "
    "flash, flex and sdpa-compile ones also need an accelerator or a package not installed": [
        "test_attention_outputs", "test_attn_implementation_composite_models", "test_can_set_attention_dynamically",
        *[f"test_eager_matches_sdpa_inference_{index:02d}_{dtype}_pad_{side}{mask}{kernels}"
          for index, (dtype, side, mask, kernels) in enumerate(
              (dtype, side, mask, kernels) for dtype in ("fp16", "fp32", "bf16") for side in ("left", "right")
              for mask in ("", "_no_attn_mask") for kernels in ("_sdpa_kernels", ""))],
        "test_eager_matches_sdpa_inference_24_fp32_pad_left_output_attentions",
        "test_sdpa_can_dispatch_composite_models", "test_sdpa_can_dispatch_non_composite_models",
        "test_sdpa_can_dispatch_on_flash", "test_sdpa_can_compile_dynamic", "test_flex_attention_with_grads",
        "test_multimodal_outputs_are_returned", "test_sliding_window_mask",
        "test_flash_attn_2_can_compile_with_attention_mask_None_without_graph_break",
        "test_flash_attn_2_can_dispatch_composite_models", "test_flash_attn_2_fp32_ln", "test_flash_attn_2_from_config",
        "test_flash_attn_2_inference_equivalence", "test_flash_attn_2_inference_equivalence_right_padding",
        *[f"test_flash_attn_{version}_{test}" for version in (3, 4) for test in (
            "can_dispatch_composite_models", "from_config", "inference_equivalence",
            "inference_equivalence_right_padding")],
        "test_flash_attn_kernels_inference_equivalence", "test_flash_attn_kernels_mps_inference_equivalence",
        "test_kernels_can_load_without_crashing",
    ],
    "no tokens: no token or position embeddings to resize, no language-modeling head, no cache (the deepspeed "
    "variants also need deepspeed)": [
        "test_inputs_embeds_matches_input_ids", "test_causal_lm_loss_honors_shift_labels",
        "test_encoder_decoder_loss_no_double_shift", "test_bc_cache_name_forward", "test_resize_tokens_embeddings",
        "test_resize_embeddings_untied", "test_resize_embeddings_untied_no_reinit_on_post_init",
        "test_resize_position_vector_embeddings", "test_resize_tokens_embeddings_with_deepspeed",
        "test_resize_tokens_embeddings_with_deepspeed_multi_gpu", "test_resize_embeddings_untied_with_deepspeed",
        "test_resize_embeddings_untied_with_deepspeed_multi_gpu",
    ],
    "no rotary position embeddings": [
        "test_model_rope_scaling_frequencies", "test_model_rope_with_partial_rotation", "test_vision_axial_rope",
        "test_model_rope_scaling_from_config_0_linear", "test_model_rope_scaling_from_config_1_dynamic",
        "test_model_rope_scaling_from_config_2_yarn",
    ],
    "no mixture of experts": [
        "test_moe_models_record_router_logits", "test_output_router_logits_from_config",
        "test_eager_matches_batched_and_grouped_inference_0_fp16",
        "test_eager_matches_batched_and_grouped_inference_1_fp32",
        "test_eager_matches_batched_and_grouped_inference_2_bf16",
    ],
    "not a composite model (one config, no sub-configs)": [
        "test_can_set_attention_dynamically_composite_model", "test_internal_model_config_and_subconfig_are_same",
    ],
    "no tensor-parallel plan declared": ["test_tp_plan_matches_params", "test_tied_head_has_a_tp_plan_entry"],
    "no module has to stay in float32 (`_keep_in_fp32_modules` is unset)": [
        "test_keep_in_fp32_modules", "test_keep_in_fp32_modules_exist",
        "test_keep_in_fp32_modules_strict_also_hardcode_fp32",
    ],
    "needs a CUDA/XPU accelerator (model parallelism: two)": [
        "test_can_load_with_device_context_manager", "test_can_load_with_global_device_set", "test_cpu_offload",
        "test_disk_offload_bin", "test_disk_offload_safetensors", "test_model_parallelism",
    ],
    "marked slow by transformers (runs with RUN_SLOW=1); compiled training is tested in tests/test_kernels.py": [
        "test_torch_compile_for_training",
    ],
}
SKIPPED_BY_TRANSFORMERS = {name: reason for reason, names in SELF_SKIPPING.items() for name in names}

# The mixins tell base models, classifiers and backbones apart by class name in transformers' static Auto tables
# (an in-tree model's lines in `modeling_auto.py`): e.g. `test_training` skips the classes listed in
# MODEL_MAPPING_NAMES or MODEL_FOR_BACKBONE_MAPPING_NAMES and asks every other class for a loss. `register()` in
# poolformer_hf adds our classes to the Auto classes' run-time registry instead, which the mixins do not read; these
# are the entries an in-tree model would have, added for the duration of each test.
AUTO_TABLE_ENTRIES = {
    "MODEL_MAPPING_NAMES": "PoolFormerModel",
    "MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES": "PoolFormerForImageClassification",
    "MODEL_FOR_BACKBONE_MAPPING_NAMES": "PoolFormerBackbone",
}


def add_auto_table_entries(test_case: unittest.TestCase) -> None:
    for table, class_name in AUTO_TABLE_ENTRIES.items():
        patcher = mock.patch.dict(getattr(modeling_auto, table), {PoolFormerConfig.model_type: class_name})
        patcher.start()
        test_case.addCleanup(patcher.stop)


class PoolFormerModelTester:
    """Tiny models and inputs for the mixins: one block per stage, widths 8-16, 32 px images."""

    def __init__(
        self,
        parent,
        batch_size=2,
        image_size=32,
        num_channels=3,
        depths=(1, 1, 1, 1),
        hidden_sizes=(8, 8, 16, 16),
        num_labels=3,
        is_training=True,
        use_labels=True,
        out_features=("stage2", "stage3", "stage4"),
    ):
        self.parent = parent
        self.batch_size = batch_size
        self.image_size = image_size
        self.num_channels = num_channels
        self.depths = list(depths)
        self.hidden_sizes = list(hidden_sizes)
        self.num_stages = len(depths)
        self.num_labels = num_labels
        self.is_training = is_training
        self.use_labels = use_labels
        self.out_features = list(out_features)

    def get_config(self) -> PoolFormerConfig:
        return PoolFormerConfig(
            num_channels=self.num_channels,
            depths=self.depths,
            hidden_sizes=self.hidden_sizes,
            num_labels=self.num_labels,
            out_features=self.out_features,
        )

    def prepare_config_and_inputs(self):
        pixel_values = floats_tensor([self.batch_size, self.num_channels, self.image_size, self.image_size])
        labels = ids_tensor([self.batch_size], self.num_labels) if self.use_labels else None
        return self.get_config(), pixel_values, labels

    def prepare_config_and_inputs_for_common(self):
        config, pixel_values, _ = self.prepare_config_and_inputs()
        return config, {"pixel_values": pixel_values}

    def stage_shapes(self) -> list[list[int]]:
        """(channels, height, width) of each stage's output: strides 4, 8, 16, 32."""
        return [
            [channels, self.image_size // 2 ** (stage + 2), self.image_size // 2 ** (stage + 2)]
            for stage, channels in enumerate(self.hidden_sizes)
        ]

    def create_and_check_model(self, config, pixel_values, labels):
        model = PoolFormerModel(config).to(torch_device).eval()
        result = model(pixel_values)
        self.parent.assertEqual(
            list(result.last_hidden_state.shape), [self.batch_size, *self.stage_shapes()[-1]]
        )
        self.parent.assertEqual(list(result.pooler_output.shape), [self.batch_size, self.hidden_sizes[-1]])

    def create_and_check_for_image_classification(self, config, pixel_values, labels):
        model = PoolFormerForImageClassification(config).to(torch_device).eval()
        result = model(pixel_values, labels=labels)
        self.parent.assertEqual(list(result.logits.shape), [self.batch_size, self.num_labels])
        self.parent.assertTrue(torch.isfinite(result.loss))

    def create_and_check_backbone(self, config, pixel_values, labels):
        model = PoolFormerBackbone(config).to(torch_device).eval()
        result = model(pixel_values)
        shapes = dict(zip(config.stage_names, [self.stage_shapes()[0], *self.stage_shapes()]))
        self.parent.assertEqual(
            [list(feature_map.shape) for feature_map in result.feature_maps],
            [[self.batch_size, *shapes[name]] for name in config.out_features],
        )
        self.parent.assertEqual(model.channels, [shapes[name][0] for name in config.out_features])


@account_for_skips(SKIPPED, SKIPPED_BY_TRANSFORMERS, written_for=SKIP_LISTS_WRITTEN_FOR, dropped_in=DROPPED_IN)
class PoolFormerModelTest(ModelTesterMixin, unittest.TestCase):
    all_model_classes = (PoolFormerModel, PoolFormerForImageClassification, PoolFormerBackbone)
    has_attentions = False
    test_resize_embeddings = False
    # The mixin runs this check only for models it dates to 2023 or later by a copyright line in the config's file;
    # ours has none, and its `_init_weights` is meant to cover every weight.
    test_can_init_all_missing_weights_before_2023 = True

    def setUp(self):
        add_auto_table_entries(self)
        self.model_tester = PoolFormerModelTester(self)
        self.config_tester = ConfigTester(
            self, config_class=PoolFormerConfig, has_text_modality=False,
            common_properties=["num_channels", "hidden_sizes", "depths"],
            hidden_sizes=[8, 8, 16, 16], depths=[1, 1, 1, 1],
        )

    def test_config(self):
        self.config_tester.run_common_tests()

    def test_reverse_loading_mapping(self):
        # Our conversion (timm's linear MLP weights into 1×1 convs) reshapes without renaming.
        super().test_reverse_loading_mapping(check_keys_were_modified=False)

    def test_model(self):
        self.model_tester.create_and_check_model(*self.model_tester.prepare_config_and_inputs())

    def test_for_image_classification(self):
        self.model_tester.create_and_check_for_image_classification(*self.model_tester.prepare_config_and_inputs())

    def test_backbone(self):
        self.model_tester.create_and_check_backbone(*self.model_tester.prepare_config_and_inputs())

    def test_hidden_states_output(self):
        """One hidden state per stage (as transformers' PoolFormer); the backbone adds the stem's, one per stage name.

        The mixin's own version expects token sequences (seq_length, hidden_size); this is the vision form of it.
        """
        config, inputs_dict = self.model_tester.prepare_config_and_inputs_for_common()
        stage_shapes = self.model_tester.stage_shapes()
        for model_class in self.all_model_classes:
            model = model_class(config).to(torch_device).eval()
            expected = [stage_shapes[0], *stage_shapes] if isinstance(model, BackboneMixin) else stage_shapes
            for by_config in (False, True):
                model.config.output_hidden_states = by_config
                with torch.no_grad():
                    outputs = model(**inputs_dict, **({} if by_config else {"output_hidden_states": True}))
                self.assertEqual([list(hidden.shape[1:]) for hidden in outputs.hidden_states], expected)


@account_for_skips({}, {}, written_for=SKIP_LISTS_WRITTEN_FOR)
class PoolFormerBackboneTest(BackboneTesterMixin, unittest.TestCase):
    all_model_classes = (PoolFormerBackbone,)
    config_class = PoolFormerConfig
    has_attentions = False

    def setUp(self):
        add_auto_table_entries(self)
        self.model_tester = PoolFormerModelTester(self)

import json

import pytest
from training_helpers import parse

from poolformer_hf.training.arguments import DEFAULT_OUTPUT_DIR, parse_arguments
from poolformer_hf.training.run import _label_smoothing, _resume_target


def test_bare_command_trains_and_evaluates_with_adamw_cosine_warmup():
    model_args, data_args, training_args = parse()
    assert (training_args.do_train, training_args.do_eval) == (True, True)
    assert training_args.output_dir == DEFAULT_OUTPUT_DIR
    assert training_args.lr_scheduler_type.value == "cosine" and 0 < training_args.warmup_steps < 1
    assert training_args.optim.value == "adamw_torch"
    assert model_args.model_name_or_path is None and data_args.dataset_name is None and data_args.train_dir is None


def test_command_line_overrides_the_script_defaults():
    _, data_args, training_args = parse("--do_train", "false", "--num_train_epochs", "3", "--mixup", "0.8",
                                        "--rand_augment", "--output_dir", "elsewhere")  # fmt: skip
    assert training_args.do_train is False and training_args.num_train_epochs == 3
    assert data_args.mixup == 0.8 and data_args.rand_augment is True
    assert training_args.output_dir == "elsewhere"


def test_a_single_json_file_holds_every_argument(tmp_path):
    path = tmp_path / "args.json"
    path.write_text(json.dumps({"output_dir": str(tmp_path / "out"), "preset": "poolformer_s12", "cutmix": 1.0}))
    model_args, data_args, training_args = parse_arguments([str(path)])
    assert model_args.preset == "poolformer_s12" and data_args.cutmix == 1.0
    assert training_args.output_dir == str(tmp_path / "out")


@pytest.mark.parametrize("flag", ["--mixup", "--cutmix", "--label_smoothing", "--random_erasing"])
def test_negative_recipe_values_are_rejected(flag):
    with pytest.raises(ValueError, match=flag):
        parse(flag, "-0.5")


def test_label_smoothing_from_either_flag_but_not_two_different_values():
    _, data_args, training_args = parse("--label_smoothing", "0", "--label_smoothing_factor", "0.2")
    assert _label_smoothing(data_args, training_args) == 0.2
    _, data_args, training_args = parse("--label_smoothing", "0.1", "--label_smoothing_factor", "0.2")
    with pytest.raises(ValueError, match="disagree"):
        _label_smoothing(data_args, training_args)


def test_resume_target_accepts_a_path_or_last():
    assert _resume_target(None) is None
    assert _resume_target("last") is True and _resume_target("True") is True
    assert _resume_target("out/checkpoint-3") == "out/checkpoint-3"

import json

import pytest
from classification_helpers import parse

from poolformer_hf.tasks.classification.arguments import DEFAULT_OUTPUT_DIR, make_parser, parse_arguments


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
    # train.py's own recipe applies to a JSON file as to a command line (transformers would take its own defaults)
    from_argv = parse("--output_dir", str(tmp_path / "out"), "--preset", "poolformer_s12")[2]
    assert training_args.to_dict() == from_argv.to_dict()
    assert training_args.learning_rate == 2e-3 and training_args.num_train_epochs == 10


def test_a_json_file_that_is_not_an_object_of_arguments_is_refused(tmp_path):
    path = tmp_path / "args.json"
    path.write_text(json.dumps(["--preset", "poolformer_s12"]))
    with pytest.raises(ValueError, match="must hold one JSON object of arguments, got a list"):
        parse_arguments([str(path)])


@pytest.mark.parametrize("flag", ["--mixup", "--cutmix", "--label_smoothing_factor", "--random_erasing"])
def test_negative_recipe_values_are_rejected(flag):
    with pytest.raises(ValueError, match=flag):
        parse(flag, "-0.5")


def test_label_smoothing_has_one_option_with_the_papers_default():
    assert parse()[2].label_smoothing_factor == 0.1
    assert parse("--label_smoothing_factor", "0.2")[2].label_smoothing_factor == 0.2
    assert parse("--label_smoothing", "0")[2].label_smoothing_factor == 0  # an abbreviation of the one option
    assert not hasattr(parse()[1], "label_smoothing")


def test_trust_remote_code_is_not_an_option_since_no_checkpoint_code_ever_runs():
    with pytest.raises(ValueError, match="trust_remote_code"):
        parse("--trust_remote_code", "true")


def test_help_says_what_the_bare_command_does_and_fits_a_screenful(capsys):
    with pytest.raises(SystemExit):
        make_parser().parse_args(["--help"])
    text = capsys.readouterr().out
    assert "With no data arguments it trains" in text and "handwritten digits" in text
    assert len(text.splitlines()) < 100
    for common in ("--output_dir", "--learning_rate", "--resume_from_checkpoint", "--overwrite_output_dir"):
        assert common in text
    assert "--adam_beta1" not in text and "--label_smoothing_factor" in text

    with pytest.raises(SystemExit):
        make_parser().parse_args(["--help_all"])
    everything = capsys.readouterr().out
    assert "--adam_beta1" in everything and len(everything.splitlines()) > 2 * len(text.splitlines())
    assert parse("--adam_beta1", "0.8")[2].adam_beta1 == 0.8  # hidden options still parse


def test_overwrite_output_dir_is_off_by_default():
    assert parse()[2].overwrite_output_dir is False
    assert parse("--overwrite_output_dir", "true")[2].overwrite_output_dir is True

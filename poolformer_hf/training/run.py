"""The fine-tuning run behind scripts/train.py: check the data, build model and processor, train with Trainer,
evaluate with the shipped metrics, save a Hub-ready folder, reload it and classify held-out images."""

import logging
import sys
from pathlib import Path

import transformers
from transformers import set_seed

from ..metrics import compute_metrics_fn
from .arguments import parse_arguments
from .data import build_data
from .demo import classify_split, format_predictions
from .mixup import BatchMixer
from .model import build_image_processor, build_model
from .trainer import ImageClassificationDataset, ImageClassificationTrainer, collate_images
from .transforms import eval_transform, processor_image_size, train_transform

logger = logging.getLogger(__name__)


def _setup_logging(training_args) -> None:
    logging.basicConfig(
        format="%(asctime)s - %(levelname)s - %(name)s - %(message)s",
        datefmt="%m/%d/%Y %H:%M:%S",
        handlers=[logging.StreamHandler(sys.stdout)],
    )
    log_level = training_args.get_process_log_level()
    logging.getLogger("poolformer_hf").setLevel(log_level)
    transformers.utils.logging.set_verbosity(log_level)


def _label_smoothing(data_args, training_args) -> float:
    """--label_smoothing, or TrainingArguments' --label_smoothing_factor when only that one is set."""
    ours, theirs = data_args.label_smoothing, training_args.label_smoothing_factor
    if ours and theirs and ours != theirs:
        raise ValueError(f"--label_smoothing {ours} and --label_smoothing_factor {theirs} disagree; give one")
    return ours or theirs


def _resume_target(value: str | None):
    """--resume_from_checkpoint PATH, or true/last for the newest checkpoint in --output_dir."""
    if value is None:
        return None
    return True if value.lower() in ("true", "last") else value


def run(model_args, data_args, training_args, callbacks=None) -> dict:
    """Train and/or evaluate as the arguments say; returns the final metrics (train_*, eval_*, demo_accuracy).

    `callbacks` are extra transformers.TrainerCallback objects handed to the Trainer.
    """
    _setup_logging(training_args)
    set_seed(training_args.seed)
    # Every data check runs here, before a model is built or anything is written.
    data = build_data(data_args, seed=training_args.seed, cache_dir=model_args.cache_dir)

    model = build_model(model_args, data.label_names)
    image_size = data_args.image_size
    if image_size is None and model_args.model_name_or_path is None:
        image_size = data.image_size
    image_processor = build_image_processor(model_args, model, image_size)
    logger.info(
        "model: %s, %d parameters; images at %d px",
        type(model).__name__,
        model.num_parameters(),
        processor_image_size(image_processor),
    )

    batch_mixer = BatchMixer(data_args.mixup, data_args.cutmix) if data_args.mixup or data_args.cutmix else None
    trainer = ImageClassificationTrainer(
        model=model,
        args=training_args,
        train_dataset=ImageClassificationDataset(
            data.train,
            train_transform(
                image_processor,
                random_resized_crop=data_args.random_resized_crop,
                min_crop_scale=data_args.min_crop_scale,
                horizontal_flip=data_args.horizontal_flip,
                rand_augment=data_args.rand_augment,
                random_erasing=data_args.random_erasing,
            ),
            seed=training_args.seed,
        ),
        eval_dataset=ImageClassificationDataset(data.validation, eval_transform(image_processor)),
        data_collator=collate_images,
        processing_class=image_processor,
        compute_metrics=compute_metrics_fn(),
        label_smoothing=_label_smoothing(data_args, training_args),
        batch_mixer=batch_mixer,
        callbacks=callbacks,
    )

    metrics = {}
    if training_args.do_train:
        train_result = trainer.train(resume_from_checkpoint=_resume_target(training_args.resume_from_checkpoint))
        trainer.save_model()
        trainer.log_metrics("train", train_result.metrics)
        trainer.save_metrics("train", train_result.metrics)
        trainer.save_state()
        metrics.update(train_result.metrics)
    if training_args.do_eval:
        eval_metrics = trainer.evaluate()
        trainer.log_metrics("eval", eval_metrics)
        trainer.save_metrics("eval", eval_metrics)
        metrics.update(eval_metrics)

    if training_args.do_train and trainer.is_world_process_zero():
        _write_card(training_args.output_dir, trainer.accelerator.unwrap_model(trainer.model), data.dataset_id)
        metrics.update(_demo(training_args.output_dir, data, data_args.num_demo_images))
    return metrics


def _write_card(output_dir: str, model, dataset_id: str) -> None:
    """README.md with model-index eval results (read from the folder's all_results.json / eval_results.json)."""
    from ..model_card import folder_facts, render_card

    card = render_card(folder_facts(output_dir, Path(output_dir).name, model, eval_dataset=dataset_id))
    (Path(output_dir) / "README.md").write_text(card, encoding="utf-8")


def _demo(output_dir: str, data, limit: int) -> dict:
    """Reload the saved folder as a user would and classify held-out images (the test split, else validation)."""
    from .. import PoolFormerForImageClassification
    from ..image_processing_poolformer import PoolFormerImageProcessor

    model = PoolFormerForImageClassification.from_pretrained(output_dir)
    image_processor = PoolFormerImageProcessor.from_pretrained(output_dir)
    split = data.test if data.test is not None else data.validation
    rows = classify_split(model, image_processor, split, limit=limit)
    print(f"\nReloaded {output_dir} with from_pretrained; held-out {split.name} images:")
    print(format_predictions(rows))
    return {"demo_accuracy": sum(r["predicted"] == r["truth"] for r in rows) / max(len(rows), 1)}


def main(argv: list[str] | None = None) -> dict:
    model_args, data_args, training_args = parse_arguments(argv)
    return run(model_args, data_args, training_args)

"""The segmentation run behind scripts/train_segmentation.py: load and check the data, build model and processor,
train with Trainer, evaluate mIoU with the shipped metric, save a Hub-ready folder, reload it and segment held-out
images."""

import contextlib
import logging

from transformers import Trainer, set_seed

from ..classification.output_dir import RunLock, check_output_dir, clear_previous_run, resolve_checkpoint
from ..common import DatasetEpoch, setup_logging
from .arguments import IGNORE_INDEX, parse_arguments
from .card import write_segmentation_card
from .data import SegmentationData, check_split, generated_shapes, load_folder, load_hub_splits
from .model import build_segmentation_model
from .trainer import SegmentationDataset, collate_segmentation, compute_metrics_fn, predicted_label_maps
from .transforms import SegmentationEvalTransform, SegmentationTrainTransform

logger = logging.getLogger(__name__)
DEFAULT_IMAGE_SIZE = 512
# The generated demo's scenes: at 64² the shapes (radius 6–13 px) are a few cells of the stride-4 maps and a
# from-scratch model learns them far slower per step (README, Segmentation).
GENERATED_IMAGE_SIZE = 128


def build_data(data_args, model_args, seed: int) -> SegmentationData:
    if data_args.dataset_name is None and data_args.train_dir is None:
        data = generated_shapes(data_args.generated_train_size, data_args.generated_validation_size,
                                data_args.image_size or GENERATED_IMAGE_SIZE)
    else:
        if data_args.num_labels is None:
            raise ValueError("--num_labels is needed for folder and Hub data (the number of classes to predict)")
        if data_args.dataset_name is not None:
            train, validation = load_hub_splits(data_args.dataset_name, data_args.dataset_config_name,
                                                model_args.cache_dir, data_args.validation_fraction, seed)
            dataset_id = data_args.dataset_name
        else:
            if data_args.validation_dir is None:
                raise ValueError("--train_dir needs --validation_dir (a folder of the same layout)")
            train, validation = load_folder(data_args.train_dir, "train"), load_folder(data_args.validation_dir,
                                                                                       "validation")
            dataset_id = "imagefolder"
        data = SegmentationData(train, validation, [f"class_{i}" for i in range(data_args.num_labels)], dataset_id)
    data.train = data.train.head(data_args.max_train_samples)
    data.validation = data.validation.head(data_args.max_eval_samples)
    for split in (data.train, data.validation):
        check_split(split, len(data.label_names), IGNORE_INDEX, data_args.reduce_labels)
    return data


def run(model_args, data_args, training_args, callbacks=None) -> dict:
    """Train and/or evaluate as the arguments say; returns the final metrics (train_*, eval_*, demo_mean_iou)."""
    from ... import PoolFormerSegmentationImageProcessor

    setup_logging(training_args)
    set_seed(training_args.seed)
    # The output folder's checks run before anything is built or written (a folder holding a previous run is
    # refused unless --overwrite_output_dir replaces it or --resume_from_checkpoint continues it).
    output_dir, overwrite = training_args.output_dir, getattr(training_args, "overwrite_output_dir", False)
    if training_args.do_train:
        check_output_dir(output_dir, overwrite=overwrite, resume=bool(training_args.resume_from_checkpoint))
    checkpoint = resolve_checkpoint(training_args.resume_from_checkpoint, output_dir)
    data = build_data(data_args, model_args, training_args.seed)
    image_size = data_args.image_size or data.image_size or DEFAULT_IMAGE_SIZE
    model = build_segmentation_model(
        model_args.head, data.label_names, preset=model_args.preset, model_name_or_path=model_args.model_name_or_path,
        cache_dir=model_args.cache_dir, revision=model_args.model_revision,
    )
    processor = PoolFormerSegmentationImageProcessor(size={"height": image_size, "width": image_size})
    logger.info("model: %s, %d parameters; base size %d px", type(model).__name__, model.num_parameters(), image_size)
    train_dataset = SegmentationDataset(
        data.train,
        SegmentationTrainTransform(processor, data_args.crop_size or image_size, image_size,
                                   (data_args.min_scale, data_args.max_scale), data_args.horizontal_flip,
                                   data_args.reduce_labels, IGNORE_INDEX),
        seed=training_args.seed,
    )
    trainer = Trainer(
        model=model,
        args=training_args,
        train_dataset=train_dataset,
        eval_dataset=SegmentationDataset(data.validation, SegmentationEvalTransform(processor, data_args.reduce_labels)),
        data_collator=collate_segmentation,
        processing_class=processor,
        compute_metrics=compute_metrics_fn(data.label_names, IGNORE_INDEX),
        preprocess_logits_for_metrics=predicted_label_maps,
        callbacks=[DatasetEpoch(train_dataset), *(callbacks or [])],
    )
    # One run writes the folder at a time; only the main process writes.
    with RunLock(output_dir) if trainer.is_world_process_zero() else contextlib.nullcontext():
        if overwrite and training_args.do_train and trainer.is_world_process_zero():
            removed = clear_previous_run(output_dir)
            if removed:
                logger.warning("--overwrite_output_dir: removed the previous run's %s", ", ".join(removed))
        return _train_and_evaluate(trainer, training_args, checkpoint, data, model_args, data_args)


def _train_and_evaluate(trainer, training_args, checkpoint, data, model_args, data_args) -> dict:
    metrics = {}
    if training_args.do_train:
        result = trainer.train(resume_from_checkpoint=checkpoint)
        trainer.save_model()
        trainer.log_metrics("train", result.metrics)
        trainer.save_metrics("train", result.metrics)
        trainer.save_state()
        metrics.update(result.metrics)
    if training_args.do_eval:
        eval_metrics = trainer.evaluate()
        trainer.log_metrics("eval", eval_metrics)
        trainer.save_metrics("eval", eval_metrics)
        metrics.update(eval_metrics)
    if training_args.do_train and trainer.is_world_process_zero():
        write_segmentation_card(training_args.output_dir, model_args.head, data, metrics,
                                trainer.accelerator.unwrap_model(trainer.model))
        metrics["demo_mean_iou"] = _demo(training_args.output_dir, data, data_args.reduce_labels)
    return metrics


def _demo(output_dir: str, data: SegmentationData, reduce_labels: bool, limit: int = 8) -> float:
    """Reload the saved folder as a user would (Auto classes), segment held-out images at their own size with the
    processor's post-processing, and return the mean IoU of those maps."""
    import numpy as np
    import torch
    from transformers import AutoImageProcessor, AutoModelForSemanticSegmentation

    from ..metrics import load_metric
    from .data import open_label_map
    from .transforms import reduce_labels as reduce
    from ..common import open_image

    model = AutoModelForSemanticSegmentation.from_pretrained(output_dir).eval()
    processor = AutoImageProcessor.from_pretrained(output_dir)
    predictions, references = [], []
    for index in range(min(limit, len(data.validation))):
        image = open_image(data.validation.images[index])
        reference = torch.from_numpy(open_label_map(data.validation.label_maps[index]).astype(np.int64))
        with torch.no_grad():
            outputs = model(**processor(image, return_tensors="pt"))
        (prediction,) = processor.post_process_semantic_segmentation(outputs, target_sizes=[image.size[::-1]])
        predictions.append(prediction.numpy())
        references.append((reduce(reference, IGNORE_INDEX) if reduce_labels else reference).numpy())
    results = load_metric("mean_iou").compute(predictions=predictions, references=references,
                                              num_labels=len(data.label_names), ignore_index=IGNORE_INDEX)
    print(f"\nReloaded {output_dir} with the Auto classes; mean IoU on {len(predictions)} held-out images at their own "
          f"size: {results['mean_iou']:.3f}")
    return results["mean_iou"]


def main(argv: list[str] | None = None) -> dict:
    return run(*parse_arguments(argv))

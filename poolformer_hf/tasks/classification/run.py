"""The fine-tuning run behind scripts/train.py: check the data, build model and processor, train with Trainer,
evaluate with the shipped metrics, save a Hub-ready folder, reload it and classify held-out images."""

import contextlib
import logging
import sys
from functools import partial
from pathlib import Path

import transformers
from transformers import TrainerState, set_seed

from ..common import setup_logging
from ..metrics import compute_metrics_fn
from .arguments import parse_arguments
from .data import build_data
from .demo import classify_split, format_predictions
from .launch import check_world_size, form_cpu_process_group, rendezvous_named
from .lora import check_lora_arguments, load_adapter_folder, save_adapter_folder, wrap_with_lora
from .mixup import BatchMixer
from .model import build_image_processor, build_model
from .output_dir import RunLock, check_output_dir, clear_previous_run, disk_full_error, resolve_checkpoint
from .streaming.loading import build_streamed_data, check_stream_launch, is_streaming, training_stream
from .trainer import ImageClassificationDataset, ImageClassificationTrainer, collate_images
from .transforms import eval_transform, processor_image_size, train_transform

# Token mixers whose weights are built for config.image_size: a checkpoint with one keeps its image_size.
SIZE_DEPENDENT_MIXERS = {"random_mixing", "spatial_fc"}

logger = logging.getLogger(__name__)


def _log_launch(training_args) -> None:
    logger.info(
        "world size %d (processes training together) on %s; global training batch %d (%d per process x %d "
        "accumulation steps)",
        training_args.world_size,
        training_args.device,
        training_args.per_device_train_batch_size * training_args.world_size * training_args.gradient_accumulation_steps,
        training_args.per_device_train_batch_size,
        training_args.gradient_accumulation_steps,
    )


def _state_resolution(model, image_size: int) -> None:
    """Make the config say the resolution the model is trained at, where no weights depend on it."""
    mixers = model.config.token_mixers
    mixers = set(mixers) if isinstance(mixers, list) else {mixers}
    if not mixers & SIZE_DEPENDENT_MIXERS:
        model.config.image_size = image_size


def run(model_args, data_args, training_args, callbacks=None) -> dict:
    """Train and/or evaluate as the arguments say; returns the final metrics (train_*, eval_*, demo_accuracy).

    `callbacks` are extra transformers.TrainerCallback objects handed to the Trainer.
    """
    setup_logging(training_args)
    _log_launch(training_args)
    set_seed(training_args.seed)
    output_dir = training_args.output_dir
    overwrite = getattr(training_args, "overwrite_output_dir", False)
    # Every check runs here, before a model is built or anything is written.
    check_world_size(training_args)
    check_lora_arguments(model_args, training_args)
    if training_args.do_train:
        check_output_dir(output_dir, overwrite=overwrite, resume=bool(training_args.resume_from_checkpoint))
    checkpoint = resolve_checkpoint(training_args.resume_from_checkpoint, output_dir)
    streamed = None
    if is_streaming(data_args):
        streamed = build_streamed_data(data_args, seed=training_args.seed, cache_dir=model_args.cache_dir)
        check_stream_launch(streamed, training_args)
        data = streamed.data
    else:
        data = build_data(data_args, seed=training_args.seed, cache_dir=model_args.cache_dir)

    image_size = data_args.image_size
    if image_size is None and model_args.model_name_or_path is None:
        image_size = data.image_size
    model = build_model(model_args, data.label_names, image_size=image_size)
    image_processor = build_image_processor(model_args, model, image_size)
    _state_resolution(model, processor_image_size(image_processor))
    logger.info(
        "model: %s, %d parameters; images at %d px",
        type(model).__name__,
        model.num_parameters(),
        processor_image_size(image_processor),
    )
    base_model = None
    if model_args.lora:
        model, base_model = wrap_with_lora(model, model_args)
        trainable, total = model.get_nb_trainable_parameters()
        logger.info("LoRA: %d of %d parameters trainable (adapters and classifier)", trainable, total)
        # PeftModel.forward takes **kwargs: Trainer would not find the label argument to pass labels on.
        training_args.label_names = ["labels"]

    batch_mixer = BatchMixer(data_args.mixup, data_args.cutmix) if data_args.mixup or data_args.cutmix else None
    transform = train_transform(
        image_processor,
        random_resized_crop=data_args.random_resized_crop,
        min_crop_scale=data_args.min_crop_scale,
        horizontal_flip=data_args.horizontal_flip,
        rand_augment=data_args.rand_augment,
        random_erasing=data_args.random_erasing,
    )
    if streamed is not None:
        train_dataset = training_stream(streamed, data_args, training_args, transform)
    else:
        train_dataset = ImageClassificationDataset(data.train, transform, seed=training_args.seed)
    trainer = ImageClassificationTrainer(
        model=model,
        args=training_args,
        train_dataset=train_dataset,
        eval_dataset=ImageClassificationDataset(data.validation, eval_transform(image_processor)),
        data_collator=collate_images,
        processing_class=image_processor,
        compute_metrics=compute_metrics_fn(),
        label_smoothing=training_args.label_smoothing_factor,
        batch_mixer=batch_mixer,
        callbacks=callbacks,
    )

    # One run writes the folder at a time; only the main process writes, the others wait for its clean-up.
    lock = RunLock(output_dir) if trainer.is_world_process_zero() else contextlib.nullcontext()
    with lock, _quiet_shard_bars(), _disk_full_reported(output_dir):
        with training_args.main_process_first(desc="output folder", local=False):
            if overwrite and training_args.do_train and trainer.is_world_process_zero():
                removed = clear_previous_run(output_dir)
                if removed:
                    logger.warning("--overwrite_output_dir: removed the previous run's %s", ", ".join(removed))
        metrics = _train_and_evaluate(trainer, training_args, checkpoint, save_model=not model_args.lora)
        if training_args.do_train and trainer.is_world_process_zero():
            trained = trainer.accelerator.unwrap_model(trainer.model)
            if model_args.lora:
                folder = save_adapter_folder(trained, image_processor, output_dir, base_model, data.dataset_id)
                logger.info("saved the LoRA adapter folder %s", folder)
                reload = partial(load_adapter_folder, folder, model_args.model_name_or_path)
                metrics.update(_demo(folder, reload, data, data_args.num_demo_images))
            else:
                _write_card(output_dir, trained, data.dataset_id)
                metrics.update(_demo(output_dir, _from_pretrained(output_dir), data, data_args.num_demo_images))
    return metrics


def _train_and_evaluate(trainer, training_args, checkpoint: str | None, save_model: bool = True) -> dict:
    metrics = {}
    if training_args.do_train:
        if checkpoint is not None:
            # Read now: checkpoint rotation (save_total_limit) may delete the checkpoint during training.
            resumed_at = TrainerState.load_from_json(str(Path(checkpoint) / "trainer_state.json")).global_step
            logger.info("resuming from %s (step %d)", checkpoint, resumed_at)
        train_result = trainer.train(resume_from_checkpoint=checkpoint)
        train_metrics = dict(train_result.metrics)
        if checkpoint is not None:
            # Trainer's train_loss is the mean over the steps this call ran: say where they start.
            train_metrics["train_resumed_from_step"] = resumed_at
            logger.info(
                "train_loss is the mean over steps %d-%d, run after resuming from %s, not over the whole run",
                resumed_at + 1,
                train_result.global_step,
                checkpoint,
            )
        if save_model:  # a LoRA run saves its adapter folder instead (lora.py)
            _gather_sharded_state_dict(trainer)
            trainer.save_model()
        trainer.log_metrics("train", train_metrics)
        trainer.save_metrics("train", train_metrics)
        trainer.save_state()
        metrics.update(train_metrics)
    if training_args.do_eval:
        eval_metrics = trainer.evaluate()
        trainer.log_metrics("eval", eval_metrics)
        trainer.save_metrics("eval", eval_metrics)
        metrics.update(eval_metrics)
    return metrics


def _gather_sharded_state_dict(trainer) -> None:
    """Under FSDP with SHARDED_STATE_DICT checkpoints (one file per process, for resuming), the final folder still
    gets one model.safetensors that from_pretrained loads: Trainer.save_model writes nothing for a sharded state
    dict, so the full one is gathered for it (transformers' FSDP guide does the same)."""
    plugin = getattr(trainer.accelerator.state, "fsdp_plugin", None)
    if trainer.is_fsdp_enabled and plugin is not None and "SHARDED_STATE_DICT" in str(plugin.state_dict_type):
        plugin.set_state_dict_type("FULL_STATE_DICT")


@contextlib.contextmanager
def _quiet_shard_bars():
    """No "Writing model shards" bar (transformers' own tqdm) interleaved with Trainer's training bar."""
    was_enabled = transformers.utils.logging.is_progress_bar_enabled()
    transformers.utils.logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            transformers.utils.logging.enable_progress_bar()


@contextlib.contextmanager
def _disk_full_reported(output_dir: str):
    """A full disk raises an OSError naming the disk and the file, not torch's `unexpected pos`."""
    try:
        yield
    except (RuntimeError, OSError) as error:
        full = disk_full_error(error, output_dir)
        if full is None:
            raise
        raise full from error


def _write_card(output_dir: str, model, dataset_id: str) -> None:
    """README.md with model-index eval results (read from the folder's all_results.json / eval_results.json)."""
    from ...hub.model_card import folder_facts, render_card

    card = render_card(folder_facts(output_dir, Path(output_dir).name, model, eval_dataset=dataset_id))
    (Path(output_dir) / "README.md").write_text(card, encoding="utf-8")


def _from_pretrained(output_dir: str):
    from ... import PoolFormerForImageClassification

    return partial(PoolFormerForImageClassification.from_pretrained, output_dir)


def _demo(output_dir: str, load_model, data, limit: int) -> dict:
    """Reload the saved folder as a user would (`load_model()`) and classify held-out images (the test split, else
    validation)."""
    from ...image_processing_poolformer import PoolFormerImageProcessor

    model = load_model()
    image_processor = PoolFormerImageProcessor.from_pretrained(output_dir)
    split = data.test if data.test is not None else data.validation
    rows = classify_split(model, image_processor, split, limit=limit)
    print(f"\nReloaded {output_dir} with from_pretrained; held-out {split.name} images:")
    print(format_predictions(rows))
    return {"demo_accuracy": sum(r["predicted"] == r["truth"] for r in rows) / max(len(rows), 1)}


def main(argv: list[str] | None = None) -> dict:
    """scripts/train.py: a refused argument, data set or output folder ends the run with one `error:` line."""
    argv = sys.argv[1:] if argv is None else argv
    try:
        with rendezvous_named():
            form_cpu_process_group(argv)
            arguments = parse_arguments(argv)
        return run(*arguments)
    except ValueError as error:
        print(f"{Path(sys.argv[0]).name}: error: {error}", file=sys.stderr)
        sys.exit(2)

"""A torch Dataset over an ImageSplit, its collator, and a Trainer whose loss knows soft targets (label smoothing,
mixup/cutmix), whose FLOP count is measured on the model, and whose progress output stays on one bar."""

from collections.abc import Callable

import torch
from transformers import PrinterCallback, ProgressCallback, Trainer
from transformers.trainer_pt_utils import metrics_format

from ...hub.complexity import measure
from ..common import DatasetEpoch, EpochSeededDataset, open_image

from .launch import FsdpRunCallback, shard_on_cpu, unsharded_class
from .mixup import BatchMixer, smoothed_one_hot, soft_target_cross_entropy
from .splits import ImageSplit
from .streaming.batches import StreamingBatches


class ImageClassificationDataset(EpochSeededDataset):
    """Items {"pixel_values": transform(image), "labels": class id}; images are decoded when an item is read.

    With a `seed`, the transform (torchvision's, which draws from torch's global generator) runs under that
    generator forked and seeded by the item's (seed, epoch, index); without one it draws from the global generator.
    """

    def __init__(self, split: ImageSplit, transform: Callable, seed: int | None = None):
        super().__init__(len(split), seed)
        self.split, self.transform = split, transform

    def __getitem__(self, index: int) -> dict:
        image = open_image(self.split.images[index])
        if self.seed is None:
            pixel_values = self.transform(image)
        else:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.item_seed(index))
                pixel_values = self.transform(image)
        return {"pixel_values": pixel_values, "labels": self.split.labels[index]}


class TrainingProgress(ProgressCallback):
    """Trainer's progress bar without the evaluation bar while training runs: the two would interleave on one
    terminal line. The evaluation's metrics are still printed above the training bar; an evaluation on its own
    (no training bar) keeps its bar."""

    def on_prediction_step(self, args, state, control, eval_dataloader=None, **kwargs):
        if self.training_bar is None:
            super().on_prediction_step(args, state, control, eval_dataloader=eval_dataloader, **kwargs)


class LogPrinter(PrinterCallback):
    """Trainer's log printer (--disable_tqdm) without its side effect: transformers' pops total_flos from the
    metrics dict it is handed, so train_results.json would lack it."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        super().on_log(args, state, control, logs=dict(logs or {}), **kwargs)


def format_flops(flops: float) -> str:
    """1.23e+14 -> "123 TFLOPs" (Trainer prints total_flos as "<flos >> 30>GF")."""
    for unit, scale in (("PFLOPs", 1e15), ("TFLOPs", 1e12), ("GFLOPs", 1e9), ("MFLOPs", 1e6)):
        if flops >= scale:
            return f"{flops / scale:.3g} {unit}"
    return f"{flops:.0f} FLOPs"


def collate_images(examples: list[dict]) -> dict[str, torch.Tensor]:
    return {
        "pixel_values": torch.stack([example["pixel_values"] for example in examples]),
        "labels": torch.tensor([example["labels"] for example in examples], dtype=torch.long),
    }


class ImageClassificationTrainer(Trainer):
    """Trainer with the recipe's loss: cross-entropy on smoothed (and, in training, mixed) targets.

    Evaluation uses plain cross-entropy on the true labels, so eval losses compare across recipes.
    """

    # compute_loss returns a per-batch mean: Trainer divides it by the gradient accumulation steps. Under DDP the
    # gradient average over equal per-device batches then equals the one-process gradient of the global batch.
    loss_is_scaled_for_ga = False

    def __init__(self, *args, label_smoothing: float = 0.0, batch_mixer: BatchMixer | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        for theirs, ours in ((ProgressCallback, TrainingProgress), (PrinterCallback, LogPrinter)):
            if any(type(callback) is theirs for callback in self.callback_handler.callbacks):
                self.remove_callback(theirs)
                self.add_callback(ours)
        self._forward_macs: dict[tuple[int, int], int] = {}
        if isinstance(self.train_dataset, EpochSeededDataset):
            self.add_callback(DatasetEpoch(self.train_dataset))
        if self.is_fsdp_enabled:
            self.add_callback(FsdpRunCallback())
        self.label_smoothing = label_smoothing
        self.batch_mixer = batch_mixer

    def create_accelerator_and_postprocess(self):
        super().create_accelerator_and_postprocess()
        # FSDP asked for on a CPU process group, which accelerate would train unsharded (DDP): tell it FSDP, then
        # let Trainer's own FSDP set-up and checks run again, now seeing it.
        if shard_on_cpu(self.accelerator, self.args):
            super().create_accelerator_and_postprocess()

    def get_train_dataloader(self):
        """Streamed batches are already this process's own: accelerate gets the loader as a one-process one, so it
        neither dispatches batches from process 0 (its default for an IterableDataset) nor takes every
        world_size-th batch of each process's stream (IterableDatasetShard); it only moves batches to the device."""
        if not isinstance(self.train_dataset, StreamingBatches):
            return super().get_train_dataloader()
        from accelerate.data_loader import prepare_data_loader

        loader = torch.utils.data.DataLoader(
            self.train_dataset,
            batch_size=None,  # the dataset yields whole batches
            collate_fn=self.data_collator,
            num_workers=self.args.dataloader_num_workers,
            pin_memory=self.args.dataloader_pin_memory,
            prefetch_factor=self.args.dataloader_prefetch_factor,
            multiprocessing_context=self.args.dataloader_multiprocessing_context,
        )
        loader = prepare_data_loader(
            loader,
            device=self.accelerator.device,
            num_processes=1,
            process_index=0,
            put_on_device=True,
            dispatch_batches=False,
            non_blocking=self.accelerator.non_blocking,
        )
        return loader

    def get_resumed_dataloader(self, dataloader, num_batches: int):
        """Resuming a streamed epoch skips its first batches' references, reading and decoding no image (the
        default would decode and drop every skipped batch)."""
        if not isinstance(self.train_dataset, StreamingBatches):
            return super().get_resumed_dataloader(dataloader, num_batches)
        self.train_dataset.resume_at(num_batches)
        return dataloader

    def num_examples(self, dataloader) -> int:
        if isinstance(getattr(dataloader, "dataset", None), StreamingBatches):
            return dataloader.dataset.num_samples  # its len() counts batches
        return super().num_examples(dataloader)

    def _save(self, output_dir=None, state_dict=None):
        with unsharded_class(self.model):  # under FSDP2: the folder's code and auto_map are the model's, not FSDP's
            super()._save(output_dir, state_dict)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        inputs = dict(inputs)
        labels = inputs.pop("labels")
        pixel_values = inputs.pop("pixel_values")
        if model.training:
            num_labels = self.accelerator.unwrap_model(model).config.num_labels
            targets = smoothed_one_hot(labels, num_labels, self.label_smoothing)
            if self.batch_mixer is not None:
                pixel_values, targets = self.batch_mixer(pixel_values, targets)
            outputs = model(pixel_values=pixel_values, **inputs)
            loss = soft_target_cross_entropy(outputs.logits, targets)
        else:
            outputs = model(pixel_values=pixel_values, **inputs)
            loss = torch.nn.functional.cross_entropy(outputs.logits.float(), labels)
        return (loss, outputs) if return_outputs else loss

    def floating_point_ops(self, inputs: dict) -> int:
        """FLOPs of one training step on `inputs`: 3x the forward's (the backward costs about twice the forward),
        the forward's measured by torch's FLOP counter. Trainer's default, 6 x parameters x input elements, is the
        transformer-token estimate and is meaningless for a convolutional network on pixels."""
        pixel_values = inputs["pixel_values"]
        height, width = pixel_values.shape[-2:]
        if height != width:
            return super().floating_point_ops(inputs)
        if (height, width) not in self._forward_macs:
            config = self.accelerator.unwrap_model(self.model).config
            self._forward_macs[height, width] = measure(config, image_size=height)["macs"]
        return 3 * 2 * self._forward_macs[height, width] * pixel_values.shape[0]

    def log_metrics(self, split: str, metrics: dict) -> None:
        """Trainer's metrics table, with total_flos in FLOPs (Trainer prints `flos >> 30` as "GF")."""
        if not self.is_world_process_zero():
            return
        formatted = metrics_format(metrics)
        if "total_flos" in metrics:
            formatted["total_flos"] = format_flops(metrics["total_flos"])
        key_width = max(len(str(key)) for key in formatted)
        value_width = max(len(str(value)) for value in formatted.values())
        print(f"***** {split} metrics *****")
        for key in sorted(formatted):
            print(f"  {key: <{key_width}} = {formatted[key]:>{value_width}}")

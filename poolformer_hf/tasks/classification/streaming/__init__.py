"""Training data streamed because it need not fit on a disk or in memory: WebDataset tar shards (shards.py) or a
Hub dataset loaded with `streaming=True`; batches.py cuts each process's stream into batches, loading.py reads and
checks everything before training, writer.py writes shards (scripts/make_shards.py).

How the epoch is cut (docs/training.md, Streaming):

- Every process reads its own part; nothing is dispatched from process 0 and nothing is split a second time by
  accelerate (the trainer hands the loader to accelerate as a one-process loader, trainer.py).
- Shards: the epoch's order of the shards is a permutation seeded by (seed, epoch), the same on every process. The
  samples in that order are cut into `world_size` equal contiguous ranges, one per process, so every process runs
  the same number of steps (DDP needs it). The last `num_samples % world_size` samples of the epoch's order are
  dropped; they are other samples each epoch. With a sample count that divides evenly, every sample is seen exactly
  once per epoch.
- Hub dataset: `datasets.distributed.split_dataset_by_node`, then the process reads its stream endlessly, epoch
  after epoch (`IterableDataset.set_epoch`); its length is unknown, so --max_steps ends training on every process
  at the same step.
- A shuffle buffer of undecoded references (seeded by seed, epoch, process) shuffles samples across shards.
- The process's stream is cut into batches; DataLoader worker `w` of `W` builds batches w, w+W, ...: every worker
  reads the process's whole stream of references but decodes only its own batches, so the batches are the same for
  any worker count, and fewer shards than processes x workers costs nothing but header reads.
- Resuming mid-epoch skips the first `n` batches' references without reading or decoding an image, so the next
  batch is the one the uninterrupted run drew (augmentation is seeded per sample, see common.EpochSeededDataset).
"""

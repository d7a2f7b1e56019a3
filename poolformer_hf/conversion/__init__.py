"""Foreign checkpoints in and out: the key-renaming tables of each format (`formats`), reading checkpoint files safely
(`checkpoint_files`), and converting a checkpoint file into a model folder (`to_folder`, the core of
`scripts/convert_checkpoint.py`)."""

"""Foreign checkpoints in and out: detecting and renaming each format (`formats`), reading checkpoint files safely
(`checkpoint_files`), converting a checkpoint file into a model folder (`to_folder`, the core of
`scripts/convert_checkpoint.py`), and writing a model back out as timm's or transformers' own folder (`to_peer`)."""

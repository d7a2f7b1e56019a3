"""What is trained on the model: image classification (`classification`, behind `scripts/train.py`), semantic
segmentation (`segmentation`), detection (`detection`), their metrics (`metrics`, evaluate modules loaded by path)
and selective activation checkpointing (`selective_checkpointing`)."""

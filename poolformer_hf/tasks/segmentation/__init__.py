"""Dense-prediction training support for scripts/train_segmentation.py and scripts/train_detection.py: the generated
shapes dataset, data loading, joint image/label transforms, metrics glue and the runs."""

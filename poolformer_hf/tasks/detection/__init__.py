"""Object detection on a PoolFormer backbone with transformers' detectors (RT-DETR, DETR, Conditional DETR), for
scripts/train_detection.py: COCO-format data or the generated shapes, the models, mAP, the run."""

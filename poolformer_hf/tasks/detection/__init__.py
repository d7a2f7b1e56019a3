"""Object detection on a PoolFormer backbone, for scripts/train_detection.py: transformers' detectors (RT-DETR,
DETR, Conditional DETR) and torchvision's RetinaNet and Mask R-CNN with the paper's necks; COCO-format data or the
generated shapes, the models, COCO mAP, the run; saved torchvision detectors, their Hub cards and publishing."""

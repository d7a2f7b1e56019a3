#!/usr/bin/env python
"""Train an object detector on a PoolFormer backbone: RT-DETR by default, DETR, Conditional DETR (transformers), or
RetinaNet and Mask R-CNN (torchvision, with the paper's necks and recipe: --detector retinanet | mask_rcnn).

With no data arguments it trains on generated textured shapes with exact boxes (no download) and reports COCO mAP.
COCO-format data: --train_annotation_file/--train_image_dir/--validation_annotation_file/--validation_image_dir.
See poolformer_hf/tasks/detection/run.py for every switch.
"""

from poolformer_hf.tasks.detection.run import main

if __name__ == "__main__":
    main()

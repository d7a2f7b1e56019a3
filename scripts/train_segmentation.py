#!/usr/bin/env python
"""Train a semantic segmentation model (the PoolFormer paper's Semantic FPN, or UperNet) on a PoolFormer backbone.

With no data arguments it trains on a generated dataset of textured shapes (no download) and reports mIoU. Real
data: --dataset_name scene_parse_150 --reduce_labels --num_labels 150 (online), or --train_dir/--validation_dir
folders with images/ and annotations/. See poolformer_hf/tasks/segmentation/arguments.py for every switch.
"""

from poolformer_hf.tasks.segmentation.run import main

if __name__ == "__main__":
    main()

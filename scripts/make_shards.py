#!/usr/bin/env python
"""Write WebDataset tar shards (<key>.jpg|png|webp + <key>.cls) for `scripts/train.py --train_shards`.

    python scripts/make_shards.py --train_dir images/train --output_dir shards --prefix train
    python scripts/make_shards.py --dataset_name saved_dataset --split validation --output_dir shards --prefix validation

--train_dir is a folder of class subfolders; --dataset_name a Hub-format dataset (a save_to_disk folder, a local data
folder, or a Hub id where the Hub is reachable) with a ClassLabel label column. Each shard appears only once complete;
label_names.json beside them gives the class names. Prints the pattern to pass to --train_shards.
"""

import argparse
import sys

from poolformer_hf.tasks.classification.streaming.writer import dataset_samples, folder_samples, load_split, write_shards


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--train_dir", help="Images as <train_dir>/<class>/<image>.")
    source.add_argument("--dataset_name", help="A Hub-format dataset (save_to_disk folder, data folder or Hub id).")
    parser.add_argument("--dataset_config_name", help="The dataset's configuration name.")
    parser.add_argument("--split", default="train", help="The dataset's split to write (default train).")
    parser.add_argument("--image_column_name", help="Image column (default: image or img).")
    parser.add_argument("--label_column_name", help="Label column (default: label or labels).")
    parser.add_argument("--output_dir", required=True, help="Where the shards go.")
    parser.add_argument("--prefix", default="train", help="Shard names: <prefix>-000000.tar, ...")
    parser.add_argument("--samples_per_shard", type=int, default=1000, help="Samples in each shard (the last: fewer).")
    args = parser.parse_args(argv)
    try:
        if args.train_dir is not None:
            samples, label_names = folder_samples(args.train_dir)
        else:
            split = load_split(args.dataset_name, args.split, args.dataset_config_name)
            samples, label_names = dataset_samples(split, args.image_column_name, args.label_column_name)
        pattern = write_shards(samples, label_names, args.output_dir, args.prefix, args.samples_per_shard)
    except ValueError as error:
        print(f"make_shards.py: error: {error}", file=sys.stderr)
        sys.exit(2)
    print(pattern)
    return pattern


if __name__ == "__main__":
    main()

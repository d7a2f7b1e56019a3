#!/usr/bin/env python
"""Fine-tune or train a PoolFormer image classifier with transformers.Trainer.

With no data arguments it trains on scikit-learn's handwritten digits (shipped in the scikit-learn wheel), evaluates
top-1/top-5 accuracy and macro F1, saves a Hub-ready folder, reloads it and classifies held-out images:

    python scripts/train.py --output_dir outputs/poolformer-digits

Runs the same under `torchrun --nproc_per_node 2 scripts/train.py ...` and `accelerate launch scripts/train.py ...`.
See `python scripts/train.py --help` for every option (model, data, recipe, and transformers.TrainingArguments).
"""

from poolformer_hf.tasks.classification.run import main

if __name__ == "__main__":
    main()

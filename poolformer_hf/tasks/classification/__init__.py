"""Fine-tuning support for scripts/train.py: data loading and checks, transforms, mixup, the Trainer, the run."""

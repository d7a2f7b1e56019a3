"""ImageNet-1k class names, shipped with the package in `imagenet_labels.json` beside this file.

The names are WordNet lemmas in class-index order (the order of the sorted synset ids, as in every ImageNet-1k
checkpoint), taken from timm's `imagenet_synsets.txt` and `imagenet_synset_to_lemma.txt`: the same strings as the
`id2label` of the transformers-native PoolFormer checkpoints (e.g. 0 = "tench, Tinca tinca"). Two classes share
the name "crane" (134, the bird, and 517, the machine), as in those checkpoints.
"""

import json
from functools import lru_cache
from importlib import resources


NUM_IMAGENET_CLASSES = 1000


@lru_cache(maxsize=1)
def _imagenet_labels() -> tuple[str, ...]:
    text = resources.files(__package__).joinpath("imagenet_labels.json").read_text(encoding="utf-8")
    labels = json.loads(text)
    if len(labels) != NUM_IMAGENET_CLASSES:
        raise ValueError(f"Expected {NUM_IMAGENET_CLASSES} ImageNet class names, found {len(labels)}.")
    return tuple(labels)


def imagenet_id2label() -> dict[int, str]:
    """The 1000 ImageNet-1k class names by class index, ready for `config.id2label`."""
    return dict(enumerate(_imagenet_labels()))

"""Write model_cards/<preset>.md for every preset of poolformer_hf (or the ones named), from one template.

    python scripts/generate_model_cards.py [--output_dir model_cards] [--namespace poolformer-hf] [--presets NAME ...]

Each card measures its preset's parameters and MACs at 224² on the meta device (no weights needed).
"""

import argparse
import sys
from pathlib import Path

from poolformer_hf import PRESET_NAMES
from poolformer_hf.hub.model_card import DEFAULT_NAMESPACE, preset_card


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output_dir", type=Path, default=Path("model_cards"))
    parser.add_argument(
        "--namespace", default=DEFAULT_NAMESPACE, help="Hub namespace of the repo ids in the usage snippets"
    )
    parser.add_argument("--presets", nargs="+", default=PRESET_NAMES, choices=PRESET_NAMES, metavar="NAME")
    args = parser.parse_args(argv)
    args.output_dir.mkdir(parents=True, exist_ok=True)
    for preset in args.presets:
        path = args.output_dir / f"{preset}.md"
        path.write_text(preset_card(preset, namespace=args.namespace))
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

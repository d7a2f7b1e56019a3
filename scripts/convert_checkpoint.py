"""Convert a timm, sail-sg (v1 or v2) or transformers PoolFormer/MetaFormer checkpoint into a from_pretrained folder.

    python scripts/convert_checkpoint.py --checkpoint poolformer_s12.pth.tar --variant poolformer_s12 --output out/s12

The source format is detected from the keys. Files load with torch.load(weights_only=True): a pickle that tries to
run code is refused and nothing runs.
"""

import argparse
import sys

from poolformer_hf import PRESET_NAMES
from poolformer_hf.convert import convert_checkpoint


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="state-dict file: .safetensors, .bin, .pth or .pth.tar")
    parser.add_argument("--variant", required=True, choices=PRESET_NAMES, metavar="NAME",
                        help="preset the weights belong to: " + ", ".join(PRESET_NAMES))
    parser.add_argument("--output", required=True, help="folder to write (must be empty or absent)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    args = parser.parse_args(argv)
    try:
        source_format = convert_checkpoint(args.checkpoint, args.variant, args.output, overwrite=args.overwrite)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"Converted {args.checkpoint} ({source_format} format) to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

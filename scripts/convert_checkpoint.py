"""Convert a timm, sail-sg (v1 or v2) or transformers PoolFormer/MetaFormer checkpoint into a from_pretrained folder.

    python scripts/convert_checkpoint.py --checkpoint poolformer_s12.pth.tar --variant poolformer_s12 --output out/s12

The file's kind is read from its bytes and the source format from its keys. Files load with
torch.load(weights_only=True): a pickle that tries to run code is refused and nothing runs. --overwrite replaces only
the output of an earlier conversion, atomically (the old output stays whole until the new one replaces it).
"""

import argparse
import sys

from poolformer_hf import PRESET_NAMES
from poolformer_hf.conversion.to_folder import convert_checkpoint


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="state-dict file: .safetensors, .bin, .pth or .pth.tar")
    parser.add_argument("--variant", required=True, choices=PRESET_NAMES, metavar="NAME",
                        help="preset the weights belong to: " + ", ".join(PRESET_NAMES))
    parser.add_argument("--output", required=True, help="folder to write (must be empty or absent)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the output of an earlier conversion (never a folder of other files)")
    parser.add_argument("--max_checkpoint_bytes", type=int, default=None,
                        help="refuse larger checkpoints (default 1e9: 8 bytes per parameter of the largest preset)")
    args = parser.parse_args(argv)
    try:
        source_format = convert_checkpoint(args.checkpoint, args.variant, args.output, overwrite=args.overwrite,
                                           max_bytes=args.max_checkpoint_bytes)
    except (ValueError, OSError) as error:  # a refused input, or a full / read-only disk
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"Converted {args.checkpoint} ({source_format} format) to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

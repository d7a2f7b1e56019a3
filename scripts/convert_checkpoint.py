"""Convert a timm, sail-sg (v1 or v2) or transformers PoolFormer/MetaFormer checkpoint into a from_pretrained folder,
or back out: write a model as timm's or transformers' own folder.

    python scripts/convert_checkpoint.py --checkpoint poolformer_s12.pth.tar --variant poolformer_s12 --output out/s12
    python scripts/convert_checkpoint.py --checkpoint out/s12 --to transformers --output out/s12-transformers
    python scripts/convert_checkpoint.py --checkpoint out/caformer --to timm --output out/caformer-timm

The file's kind is read from its bytes and the source format from its keys. Files load with
torch.load(weights_only=True): a pickle that tries to run code is refused and nothing runs. --overwrite replaces only
the output of an earlier conversion, atomically (the old output stays whole until the new one replaces it).

--to timm | transformers (default poolformer_hf: a folder of ours) reads either a from_pretrained folder (ours, or
timm's / transformers' own; no code in it runs, and --variant is then optional) or a checkpoint file with --variant.
timm gets model.safetensors and config.json for timm.create_model("local-dir:<output>", pretrained=True): the model
must be one of timm's poolformer_*, poolformerv2_*, convformer_*, caformer_*. timm's poolformer_* normalize after
global pooling, ours before it: --accept_timm_v1_head writes such a model anyway (the logits change). transformers
gets a PoolFormer (model_type "poolformer") folder: v1 PoolFormer only; any other model is refused, naming the fields.
"""

import argparse
import os
import sys

from poolformer_hf import PRESET_NAMES
from poolformer_hf.conversion.to_folder import convert_checkpoint
from poolformer_hf.conversion.to_peer import PEERS, convert_to_peer


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True,
                        help="state-dict file (.safetensors, .bin, .pth or .pth.tar), or with --to a from_pretrained "
                             "folder")
    parser.add_argument("--variant", choices=PRESET_NAMES, metavar="NAME",
                        help="preset the weights belong to (needed for a file): " + ", ".join(PRESET_NAMES))
    parser.add_argument("--output", required=True, help="folder to write (must be empty or absent)")
    parser.add_argument("--to", choices=("poolformer_hf", *PEERS), default="poolformer_hf",
                        help="the library whose folder to write (default poolformer_hf)")
    parser.add_argument("--accept_timm_v1_head", action="store_true",
                        help="with --to timm, write a v1 PoolFormer into timm's head (norm after pooling)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the output of an earlier conversion (never a folder of other files)")
    parser.add_argument("--max_checkpoint_bytes", type=int, default=None,
                        help="refuse larger checkpoints (default 1e9: 8 bytes per parameter of the largest preset)")
    args = parser.parse_args(argv)
    if args.to == "poolformer_hf" and args.variant is None:
        parser.error("the following arguments are required: --variant")
    try:
        if args.to == "poolformer_hf":
            if os.path.isdir(args.checkpoint):
                raise ValueError(f"{args.checkpoint} is a folder, not a checkpoint file; to write a from_pretrained "
                                 f"folder as another library's, pass --to {' or --to '.join(PEERS)}")
            source_format = convert_checkpoint(args.checkpoint, args.variant, args.output, overwrite=args.overwrite,
                                               max_bytes=args.max_checkpoint_bytes)
            done = f"Converted {args.checkpoint} ({source_format} format) to {args.output}"
        else:
            architecture = convert_to_peer(args.checkpoint, args.to, args.output, variant=args.variant,
                                           overwrite=args.overwrite, max_bytes=args.max_checkpoint_bytes,
                                           accept_timm_v1_head=args.accept_timm_v1_head)
            done = f"Wrote {args.checkpoint} as a {args.to} {architecture} folder to {args.output}"
    except (ValueError, OSError, ImportError) as error:  # a refused input, a full / read-only disk, no timm
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(done)
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python
"""Export a poolformer_hf model for deployment: ONNX, OpenVINO, ExecuTorch or a torch.export .pt2 program.

    python scripts/export.py path/to/model --format onnx --output exported/onnx
    python scripts/export.py path/to/model --format openvino --dtype bfloat16 --output exported/ov-bf16
    python scripts/export.py --preset poolformer_s12 --format pt2 --output exported/s12   # random weights, to try
    python scripts/export.py path/to/model --int8 --output exported/int8                  # OpenVINO int8

The model is folded (norm affines and LayerScales into the convs), exported with a dynamic batch and image size and
checked against eager on real photos through the model's processor before anything is written; the folder holds the
program, the configs, the processor config and export_report.json, and appears whole or not at all.
Exit status: 0 written; 2 refused before anything ran (a bad argument, a format that cannot run --dtype bfloat16, a model folder that does not load, an
--output it may not replace: --overwrite replaces only a folder an earlier export or conversion wrote, never the
source model or a folder above it); 1 the export or its parity check failed. Nothing is written unless 0.
"""

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

from poolformer_hf import PRESET_NAMES  # noqa: E402
from poolformer_hf.export import FORMATS, export_model  # noqa: E402
from poolformer_hf.export.artefact import check_export_output, check_format_dtype  # noqa: E402
from poolformer_hf.export.loading import HEADS, load_for_export  # noqa: E402


def one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", nargs="?", help="a from_pretrained folder (or Hub id) of a poolformer_hf model")
    parser.add_argument("--preset", choices=PRESET_NAMES, metavar="NAME", help="random weights of a preset instead")
    parser.add_argument("--head", choices=HEADS, default="classification")
    parser.add_argument("--format", choices=FORMATS, default="onnx")
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    parser.add_argument("--int8", action="store_true", help="OpenVINO int8 (NNCF, calibrated on photos) instead")
    parser.add_argument("--photos", type=int, default=8, help="real photos for the parity check")
    parser.add_argument("--output", required=True, help="folder to write (absent, or --overwrite)")
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    if args.photos < 2:  # the program's batch axis is dynamic: torch.export needs an example batch of at least 2
        parser.error(f"--photos must be at least 2; got {args.photos}")
    try:
        if not args.int8:
            check_format_dtype(args.format, getattr(torch, args.dtype))
        check_export_output(args.output, args.overwrite, args.model if args.model and os.path.isdir(args.model) else None)
        model, processor = load_for_export(args.model, args.preset, args.head)
    except (ValueError, OSError, ImportError) as error:
        print(f"error: {one_line(error)}", file=sys.stderr)
        return 2
    try:
        if args.int8:
            from poolformer_hf.export.int8 import export_int8

            report = export_int8(model, args.output, processor=processor, overwrite=args.overwrite)
        else:
            report = export_model(model, args.output, args.format, processor=processor, photos=args.photos,
                                  dtype=getattr(torch, args.dtype), overwrite=args.overwrite)
    except (ValueError, OSError, ImportError, RuntimeError) as error:
        print(f"error: {one_line(error)}", file=sys.stderr)
        return 1
    print(json.dumps(report, indent=2))
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Publish a saved model folder (weights, config, processor, code, model card) to the Hugging Face Hub.

    python scripts/push_to_hub.py --model_dir outputs/poolformer_s12 --repo_id my-org/poolformer-s12 [--private]

Endpoint and token come from huggingface_hub (HF_ENDPOINT, HF_TOKEN or `hf auth login`). The folder's own code is
not run unless --trust_remote_code is given; files reaching outside the folder (symlinks) are refused.
A saved torchvision detector (scripts/train_detection.py's <output_dir>/detector, or that run folder) is published
with its own card: load it back with poolformer_hf.tasks.detection.saved_detectors.load_detector("ORG/NAME").
Exit status: 0 pushed (or nothing changed), 1 the upload failed, 2 the folder was refused (nothing uploaded).
"""

import argparse
import sys

from poolformer_hf.hub.publish import DEFAULT_REQUEST_TIMEOUT, PushError, push_folder_to_hub
from poolformer_hf.tasks.detection.hub_detectors import push_detector_to_hub
from poolformer_hf.tasks.detection.saved_detectors import find_detector_folder


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model_dir", required=True, help="folder written by save_pretrained / the training script")
    parser.add_argument("--repo_id", required=True, help="ORG/NAME of the model repo (created if missing)")
    parser.add_argument("--private", action="store_true", help="create the repo as private")
    parser.add_argument("--revision", default=None, help="branch to push to (created from main if missing)")
    parser.add_argument("--commit_message", default=None)
    parser.add_argument("--eval_dataset", default=None,
                        help="dataset the folder's eval results were measured on (a detector's card names its own)")
    parser.add_argument("--trust_remote_code", action="store_true",
                        help="also check the folder by loading it with its own code, which then RUNS (default: the "
                             "folder is checked against the installed classes and none of its code runs)")
    parser.add_argument("--timeout", type=float, default=None,
                        help="give up on the whole upload after this many seconds (default: no overall limit)")
    parser.add_argument("--request_timeout", type=float, default=DEFAULT_REQUEST_TIMEOUT,
                        help=f"seconds without an answer after which one request fails (default {DEFAULT_REQUEST_TIMEOUT:g})")
    args = parser.parse_args(argv)
    bounds = {"private": args.private, "revision": args.revision, "commit_message": args.commit_message,
              "timeout": args.timeout, "request_timeout": args.request_timeout}
    try:
        if find_detector_folder(args.model_dir) is not None:  # no code, no processor: its own checks and card
            result = push_detector_to_hub(args.model_dir, args.repo_id, **bounds)
        else:
            result = push_folder_to_hub(args.model_dir, args.repo_id, eval_dataset=args.eval_dataset,
                                        trust_remote_code=args.trust_remote_code, **bounds)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except PushError as exc:
        print(f"error: {exc}\nThe local folder was not modified.", file=sys.stderr)
        return 1
    status = "committed" if result.created_commit else "unchanged, no new commit"
    print(f"{result.repo_id}@{result.revision}: {status} ({result.commit_url})")
    print(f"  published files: {', '.join(result.files)}")
    if result.skipped:
        print(f"  not uploaded: {', '.join(result.skipped)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

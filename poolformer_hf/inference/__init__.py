"""`fuse_for_inference`: a frozen module with the norms and LayerScales folded into the convolutions (`folding`)."""

from .folding import fuse_for_inference

__all__ = ["fuse_for_inference"]

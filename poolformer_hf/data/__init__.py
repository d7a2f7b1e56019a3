"""Data shipped with the package: the ImageNet-1k class names (`labels`)."""

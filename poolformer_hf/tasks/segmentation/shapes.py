"""A deterministic generated dataset for segmentation and detection: textured shapes on textured backgrounds, with
exact label maps and boxes. It needs no download, so the training scripts' default runs work offline.

Every shape and the background get a random texture (stripes at a random angle, a checkerboard, or coloured noise)
in random colours, so colour says nothing about the class: a model has to learn shapes. The background's two colours
lie closer together (a third of the contrast), so a small model trained for minutes can find the objects. Shapes
never overlap, so each one's box is the exact extent of its pixels in the label map. Scene `i` of a seed is always
the same.
"""

from dataclasses import dataclass

import numpy as np

SHAPE_NAMES = ("circle", "square", "triangle")
# Label ids of the label maps: 0 is the background, shape k is k + 1.
LABEL_NAMES = ("background", *SHAPE_NAMES)


@dataclass
class Scene:
    image: np.ndarray  # (size, size, 3) uint8
    label_map: np.ndarray  # (size, size) uint8, ids into LABEL_NAMES
    boxes: np.ndarray  # (objects, 4) float32, x_min, y_min, x_max, y_max in pixels (exclusive max)
    classes: np.ndarray  # (objects,) int64, ids into SHAPE_NAMES


BACKGROUND_CONTRAST = 1 / 3


def _texture(rng: np.random.Generator, size: int, contrast: float = 1.0) -> np.ndarray:
    """A (size, size, 3) float texture in [0, 255]: stripes, a checkerboard or noise between two random colours
    (the second moved towards the first by `contrast`)."""
    first = rng.uniform(0, 255, 3)
    second = first + contrast * (rng.uniform(0, 255, 3) - first)
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    kind = rng.integers(3)
    if kind == 0:
        angle, period = rng.uniform(0, np.pi), rng.uniform(3, 9)
        weight = (np.sin((x * np.cos(angle) + y * np.sin(angle)) * 2 * np.pi / period) > 0).astype(np.float32)
    elif kind == 1:
        cell = rng.integers(2, 7)
        weight = ((x // cell + y // cell) % 2).astype(np.float32)
    else:
        weight = rng.uniform(0, 1, (size, size)).astype(np.float32)
    return first + weight[..., None] * (second - first)


def _shape_mask(kind: int, center_x: float, center_y: float, radius: float, size: int) -> np.ndarray:
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5  # pixel centres
    dx, dy = x - center_x, y - center_y
    if kind == 0:
        return dx * dx + dy * dy <= radius * radius
    if kind == 1:
        return (np.abs(dx) <= radius) & (np.abs(dy) <= radius)
    # An upright isosceles triangle: apex at the top, base at the bottom of its square.
    return (dy <= radius) & (np.abs(dx) <= (dy + radius) / 2)


def make_scene(index: int, size: int = 64, seed: int = 0, max_objects: int = 3) -> Scene:
    """Scene `index` of the dataset `seed`: 1 to `max_objects` non-overlapping shapes."""
    rng = np.random.default_rng([seed, index])
    image = _texture(rng, size, BACKGROUND_CONTRAST)
    label_map = np.zeros((size, size), dtype=np.uint8)
    taken = np.zeros((size, size), dtype=bool)
    boxes, classes = [], []
    for _ in range(int(rng.integers(1, max_objects + 1))):
        for _attempt in range(20):
            kind = int(rng.integers(len(SHAPE_NAMES)))
            radius = rng.uniform(size / 10, size / 5)
            center_x, center_y = rng.uniform(radius, size - radius, 2)
            mask = _shape_mask(kind, center_x, center_y, radius, size)
            # A one-pixel gap keeps shapes apart, so boxes and label maps agree exactly.
            grown = mask | np.roll(mask, 1, 0) | np.roll(mask, -1, 0) | np.roll(mask, 1, 1) | np.roll(mask, -1, 1)
            if mask.sum() >= 16 and not (grown & taken).any():
                break
        else:
            continue
        taken |= mask
        label_map[mask] = kind + 1
        image[mask] = _texture(rng, size)[mask]
        rows, columns = np.nonzero(mask)
        boxes.append([columns.min(), rows.min(), columns.max() + 1, rows.max() + 1])
        classes.append(kind)
    return Scene(
        image=np.clip(image, 0, 255).astype(np.uint8),
        label_map=label_map,
        boxes=np.asarray(boxes, dtype=np.float32).reshape(-1, 4),
        classes=np.asarray(classes, dtype=np.int64),
    )


def make_scenes(count: int, size: int = 64, seed: int = 0) -> list[Scene]:
    return [make_scene(index, size, seed) for index in range(count)]

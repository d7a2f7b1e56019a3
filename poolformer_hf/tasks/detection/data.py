"""Detection data: COCO-format annotation files with an image folder, or the generated shapes (offline default).

Each split is a list of images and, per image, the COCO-style annotation the transformers detection processors take:
{"image_id": int, "annotations": [{"bbox": [x, y, width, height], "category_id": contiguous id, "area", "iscrowd",
"segmentation" (where the file has one), "id"}]}. A segmentation is what COCO writes: polygons, or run-length
encoding (RLE: uncompressed counts or pycocotools' compressed string); `annotation_masks` turns them into the
per-object masks Mask R-CNN trains on. A COCO file is checked whole before anything trains: a bad annotation is named
in a one-line error.
"""

import importlib.util
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from ..segmentation.shapes import SHAPE_NAMES, make_scenes

logger = logging.getLogger(__name__)
# How far (pixels) a box may reach past the image's edge before it is an error: COCO's boxes come from polygons
# whose float coordinates may round a hair past the border.
EDGE_TOLERANCE = 1.0


@dataclass
class DetectionSplit:
    images: list  # PIL images or file paths
    annotations: list[dict]
    name: str = "train"
    image_sizes: list[tuple[int, int]] | None = None  # (width, height) the annotation file declares, per image

    def __len__(self) -> int:
        return len(self.images)


@dataclass
class DetectionData:
    train: DetectionSplit
    validation: DetectionSplit
    label_names: list[str]
    dataset_id: str
    image_size: int | None = None


# ---------------------------------------------------------------------------------------------------- masks
def mask_to_rle(mask: np.ndarray) -> dict:
    """COCO's uncompressed RLE of a (height, width) mask: run lengths in column-major order, starting with a run of
    zeros (of length 0 when the first pixel is set)."""
    flat = np.asarray(mask, dtype=bool).ravel(order="F")
    edges = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    counts = np.diff(np.concatenate([[0], edges, [flat.size]])).tolist()
    return {"size": list(mask.shape), "counts": ([0] if flat[0] else []) + counts}


def _rle_to_mask(rle: dict) -> np.ndarray:
    height, width = rle["size"]
    counts = rle["counts"]
    if isinstance(counts, list):
        values = np.repeat(np.arange(len(counts)) % 2 == 1, counts)
        if values.size != height * width:
            raise ValueError(f"RLE counts sum to {values.size} pixels, but its size is {height}×{width}")
        return values.reshape((height, width), order="F")
    from pycocotools import mask as mask_utils  # compressed counts: pycocotools' own string format

    return mask_utils.decode({"size": [height, width], "counts": counts}).astype(bool)


def rasterize_polygons(polygons: list[list[float]], height: int, width: int) -> np.ndarray:
    """The union of COCO polygons ([x1, y1, x2, y2, ...] each) as a mask, drawn by PIL (pycocotools' rasterizer,
    used where it is installed, may differ on boundary pixels)."""
    canvas = Image.new("1", (width, height))
    draw = ImageDraw.Draw(canvas)
    for polygon in polygons:
        if len(polygon) >= 6:
            draw.polygon([(float(x), float(y)) for x, y in zip(polygon[0::2], polygon[1::2])], fill=1)
    return np.array(canvas, dtype=bool)


def _polygons_to_mask(polygons: list[list[float]], height: int, width: int) -> np.ndarray:
    try:
        from pycocotools import mask as mask_utils
    except ImportError:
        return rasterize_polygons(polygons, height, width)
    polygons = [polygon for polygon in polygons if len(polygon) >= 6]
    if not polygons:
        return np.zeros((height, width), dtype=bool)
    return mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(polygons, height, width))).astype(bool)


def segmentation_mask(segmentation, height: int, width: int) -> np.ndarray:
    """A COCO segmentation (polygons, uncompressed or compressed RLE) as a (height, width) bool mask."""
    if isinstance(segmentation, list):
        return _polygons_to_mask(segmentation, height, width)
    if isinstance(segmentation, dict) and "counts" in segmentation and "size" in segmentation:
        if isinstance(segmentation["counts"], (str, bytes)) and importlib.util.find_spec("pycocotools") is None:
            raise ValueError("compressed RLE masks need pycocotools: pip install 'poolformer_hf[train]'")
        return _rle_to_mask(segmentation)
    raise ValueError(f"not a COCO segmentation (polygons or RLE): {segmentation!r:.80}")


def annotation_masks(annotation: dict, height: int, width: int) -> np.ndarray:
    """(objects, height, width) uint8 masks of an image's annotation, one per object, in its order."""
    masks = [segmentation_mask(a["segmentation"], height, width) for a in annotation["annotations"]]
    return np.stack(masks).astype(np.uint8) if masks else np.zeros((0, height, width), dtype=np.uint8)


def _segmentation_size(segmentation) -> tuple[int, int] | None:
    """The (height, width) an RLE declares; None for polygons, which have no size of their own."""
    if isinstance(segmentation, dict) and "size" in segmentation:
        return tuple(int(value) for value in segmentation["size"])
    return None


# ---------------------------------------------------------------------------------------------------- generated
def _instance_masks(scene) -> list[np.ndarray]:
    """One mask per object of a generated scene. Shapes never touch (a one-pixel gap, 4-neighbour), so each is one
    4-connected region of the label map, the one whose extent is the object's box."""
    from scipy import ndimage

    regions, _ = ndimage.label(scene.label_map > 0)
    by_box = {}
    for index, (rows, columns) in enumerate(ndimage.find_objects(regions), start=1):
        by_box[(columns.start, rows.start, columns.stop, rows.stop)] = regions == index
    return [by_box[tuple(int(v) for v in box)] for box in scene.boxes]


def _annotation(image_id: int, boxes, classes, masks=None) -> dict:
    objects = []
    for index, ((x_min, y_min, x_max, y_max), category) in enumerate(zip(boxes, classes)):
        width, height = float(x_max - x_min), float(y_max - y_min)
        objects.append({"bbox": [float(x_min), float(y_min), width, height], "category_id": int(category),
                        "area": width * height, "iscrowd": 0})
        if masks is not None:
            objects[-1].update(segmentation=mask_to_rle(masks[index]), area=float(masks[index].sum()))
    return {"image_id": image_id, "annotations": objects}


def generated_shapes(train_size: int = 512, validation_size: int = 128, image_size: int = 64) -> DetectionData:
    """The generated shapes of `segmentation.shapes` with their exact boxes and masks (RLE), train and validation
    from two seeds."""

    def split(count, seed, name):
        scenes = make_scenes(count, image_size, seed)
        annotations = [_annotation(index, scene.boxes, scene.classes, _instance_masks(scene))
                       for index, scene in enumerate(scenes)]
        return DetectionSplit([Image.fromarray(scene.image) for scene in scenes], annotations, name,
                              [(image_size, image_size)] * count)

    return DetectionData(split(train_size, 0, "train"), split(validation_size, 1, "validation"), list(SHAPE_NAMES),
                         "generated-shapes", image_size)


# ---------------------------------------------------------------------------------------------------- COCO files
def _box_problem(bbox, width: int, height: int) -> str | None:
    """What is wrong with a COCO box [x, y, w, h] on a width×height image, or None."""
    if not isinstance(bbox, (list, tuple)) or len(bbox) != 4 or not all(
            isinstance(v, (int, float)) and np.isfinite(v) for v in bbox):
        return f"box {bbox!r} is not four finite numbers [x, y, width, height]"
    x, y, box_width, box_height = bbox
    if box_width <= 0 or box_height <= 0:
        return f"box {list(bbox)} has zero or negative width or height"
    if (x < -EDGE_TOLERANCE or y < -EDGE_TOLERANCE or x + box_width > width + EDGE_TOLERANCE
            or y + box_height > height + EDGE_TOLERANCE):
        return f"box {list(bbox)} (x, y, width, height) reaches outside the {width}×{height} image"
    return None


def _image_size(image: dict, path: Path) -> tuple[int, int]:
    """(width, height) of a COCO image entry: declared in the file, else read from the image's header."""
    if "width" in image and "height" in image:
        return int(image["width"]), int(image["height"])
    with Image.open(path) as opened:
        return opened.size


def load_coco(annotation_file: str | Path, image_dir: str | Path, name: str,
              category_ids: list[int] | None = None,
              drop_degenerate_boxes: bool = False) -> tuple[DetectionSplit, list[int], list[str]]:
    """A split from a COCO instances file; category ids are renumbered 0…K-1 in the order of `category_ids` (default:
    the file's categories sorted by id). Crowd annotations are kept with iscrowd=1 (the matcher skips none, as in
    transformers' example; the torchvision detectors leave them out of training, and COCO's evaluation ignores
    detections on them).

    Every image and annotation is checked first; the first problem found is raised as a ValueError naming the
    annotation, its image and what is wrong (with how many more there are): an image that is missing or lies
    outside `image_dir`, an unknown image or category id, a box that is not four numbers, has zero or negative width
    or height, or reaches outside its image, an RLE mask of another size than its image. `drop_degenerate_boxes`
    drops the annotations whose box has zero or negative width or height instead (COCO's train2017 has two:
    annotations 918 and 2206849, of height 0), as mmdetection and torchvision's references do.
    """
    annotation_file, image_dir = Path(annotation_file), Path(image_dir)
    if not annotation_file.is_file():
        raise ValueError(f"annotation file {annotation_file} does not exist")
    if not image_dir.is_dir():
        raise ValueError(f"image folder {image_dir} does not exist")
    coco = json.loads(annotation_file.read_text())
    for key in ("images", "annotations", "categories"):
        if key not in coco:
            raise ValueError(f"{annotation_file} is not a COCO instances file: it has no {key!r} list")
    categories = {c["id"]: c["name"] for c in coco["categories"]}
    category_ids = category_ids or sorted(categories)
    contiguous = {category: index for index, category in enumerate(category_ids)}
    problems = []
    images, sizes = {}, {}
    for image in coco["images"]:
        path = image_dir / image["file_name"]
        if not path.resolve().is_relative_to(image_dir.resolve()):
            problems.append(f"image {image['file_name']!r} lies outside {image_dir}")
        elif not path.is_file():
            problems.append(f"image {image['id']}: {path} does not exist")
        else:
            images[image["id"]], sizes[image["id"]] = path, _image_size(image, path)
    per_image = {image_id: [] for image_id in images}
    listed = {image["id"] for image in coco["images"]}
    dropped = 0
    for annotation in coco["annotations"]:
        image_id = annotation.get("image_id")
        where = f"annotation {annotation.get('id')} (image {image_id}"
        where += f", {images[image_id].name})" if image_id in images else ")"
        if annotation.get("category_id") not in contiguous:
            problems.append(f"{where}: unknown category {annotation.get('category_id')}; the categories are "
                            f"{sorted(contiguous)}")
            continue
        if image_id not in sizes:
            if image_id not in listed:
                problems.append(f"annotation {annotation.get('id')} names unknown image {image_id}")
            continue  # a missing image file is reported once, above
        width, height = sizes[image_id]
        problem = _box_problem(annotation.get("bbox"), width, height)
        if problem is not None and drop_degenerate_boxes and "zero or negative" in problem:
            dropped += 1
            continue
        mask_size = _segmentation_size(annotation.get("segmentation"))
        if problem is None and mask_size is not None and mask_size != (height, width):
            problem = f"mask of size {mask_size[1]}×{mask_size[0]} on a {width}×{height} image"
        if problem is not None:
            problems.append(f"{where}: {problem}")
            continue
        x, y, box_width, box_height = (float(v) for v in annotation["bbox"])
        entry = {"bbox": [x, y, box_width, box_height], "category_id": contiguous[annotation["category_id"]],
                 "area": annotation.get("area", box_width * box_height), "iscrowd": annotation.get("iscrowd", 0),
                 "id": annotation.get("id")}
        if "segmentation" in annotation:
            entry["segmentation"] = annotation["segmentation"]
        per_image[image_id].append(entry)
    if problems:
        more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
        raise ValueError(f"{annotation_file}: {problems[0]}{more}")
    if dropped:
        logger.warning("%s: dropped %d annotations with a box of zero or negative width or height", annotation_file,
                       dropped)
    ids = list(images)
    split = DetectionSplit([str(images[i]) for i in ids],
                           [{"image_id": i, "annotations": per_image[i]} for i in ids], name, [sizes[i] for i in ids])
    return split, category_ids, [categories[c] for c in category_ids]


def check_masks(split: DetectionSplit, source: str) -> None:
    """Refuse (one line, naming the annotation) a split whose objects do not all carry a segmentation."""
    for annotation in split.annotations:
        for index, obj in enumerate(annotation["annotations"]):
            if "segmentation" not in obj:
                raise ValueError(f"{source}: annotation {obj.get('id', index)} of image {annotation['image_id']} "
                                 "has no segmentation; Mask R-CNN trains on masks (polygons or RLE)")

"""Detection data: COCO-format annotation files with an image folder, or the generated shapes (offline default).

Each split is a list of images and, per image, the COCO-style annotation the transformers detection processors take:
{"image_id": int, "annotations": [{"bbox": [x, y, width, height], "category_id": contiguous id, "area", "iscrowd"}]}.
"""

import json
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from ..segmentation.shapes import SHAPE_NAMES, make_scenes


@dataclass
class DetectionSplit:
    images: list  # PIL images or file paths
    annotations: list[dict]
    name: str = "train"

    def __len__(self) -> int:
        return len(self.images)


@dataclass
class DetectionData:
    train: DetectionSplit
    validation: DetectionSplit
    label_names: list[str]
    dataset_id: str
    image_size: int | None = None


def _annotation(image_id: int, boxes, classes) -> dict:
    objects = []
    for (x_min, y_min, x_max, y_max), category in zip(boxes, classes):
        width, height = float(x_max - x_min), float(y_max - y_min)
        objects.append({"bbox": [float(x_min), float(y_min), width, height], "category_id": int(category),
                        "area": width * height, "iscrowd": 0})
    return {"image_id": image_id, "annotations": objects}


def generated_shapes(train_size: int = 512, validation_size: int = 128, image_size: int = 64) -> DetectionData:
    """The generated shapes of `segmentation.shapes` with their exact boxes, train and validation from two seeds."""

    def split(count, seed, name):
        scenes = make_scenes(count, image_size, seed)
        return DetectionSplit([Image.fromarray(scene.image) for scene in scenes],
                              [_annotation(index, scene.boxes, scene.classes) for index, scene in enumerate(scenes)],
                              name)

    return DetectionData(split(train_size, 0, "train"), split(validation_size, 1, "validation"), list(SHAPE_NAMES),
                         "generated-shapes", image_size)


def load_coco(annotation_file: str | Path, image_dir: str | Path, name: str,
              category_ids: list[int] | None = None) -> tuple[DetectionSplit, list[int], list[str]]:
    """A split from a COCO instances file; category ids are renumbered 0…K-1 in the order of `category_ids` (default:
    the file's categories sorted by id). Crowd annotations are kept with iscrowd=1 (the matcher skips none, as in
    transformers' example)."""
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
    per_image = {image["id"]: [] for image in coco["images"]}
    for annotation in coco["annotations"]:
        if annotation["category_id"] not in contiguous:
            raise ValueError(f"{annotation_file}: annotation {annotation.get('id')} has unknown category "
                             f"{annotation['category_id']}")
        if annotation["image_id"] not in per_image:
            raise ValueError(f"{annotation_file}: annotation {annotation.get('id')} names unknown image "
                             f"{annotation['image_id']}")
        x, y, width, height = annotation["bbox"]
        per_image[annotation["image_id"]].append({
            "bbox": [x, y, width, height], "category_id": contiguous[annotation["category_id"]],
            "area": annotation.get("area", width * height), "iscrowd": annotation.get("iscrowd", 0),
        })
    images, annotations = [], []
    for image in coco["images"]:
        path = image_dir / image["file_name"]
        if not path.resolve().is_relative_to(image_dir.resolve()):
            raise ValueError(f"{annotation_file}: image {image['file_name']!r} lies outside {image_dir}")
        if not path.is_file():
            raise ValueError(f"{annotation_file}: image {path} does not exist")
        images.append(str(path))
        annotations.append({"image_id": image["id"], "annotations": per_image[image["id"]]})
    return DetectionSplit(images, annotations, name), category_ids, [categories[c] for c in category_ids]

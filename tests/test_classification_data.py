import datasets
import numpy as np
import pytest
from classification_helpers import parse, write_image_folder

from poolformer_hf.tasks.classification.data import build_data, load_image_folders, splits_from_dataset_dict
from poolformer_hf.tasks.classification.splits import ImageSplit, stratified_split
from poolformer_hf.tasks.common import open_image


def data_args(*argv):
    return parse("--output_dir", "unused", *argv)[1]


def test_image_folders_give_sorted_class_ids(tmp_path):
    write_image_folder(tmp_path / "train", {"cat": 2, "ant": 3})
    write_image_folder(tmp_path / "val", {"cat": 1})
    train, validation, names = load_image_folders(tmp_path / "train", tmp_path / "val")
    assert names == ["ant", "cat"]
    assert sorted(train.labels) == [0, 0, 0, 1, 1]
    assert validation.labels == [1]
    assert open_image(train.images[0]).mode == "RGB"


def test_files_that_are_not_images_are_ignored(tmp_path):
    write_image_folder(tmp_path / "train", {"a": 2, "b": 2})
    (tmp_path / "train" / "a" / "notes.txt").write_text("not an image")
    train, _, _ = load_image_folders(tmp_path / "train", None)
    assert len(train) == 4


def test_corrupt_image_is_named(tmp_path):
    write_image_folder(tmp_path / "train", {"a": 3, "b": 3})
    broken = tmp_path / "train" / "b" / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 truncated jpeg")
    with pytest.raises(ValueError, match="unreadable image .*broken.jpg"):
        build_data(data_args("--train_dir", str(tmp_path / "train")))


def test_empty_class_folder_is_named(tmp_path):
    write_image_folder(tmp_path / "train", {"a": 2, "b": 2})
    (tmp_path / "train" / "empty_class").mkdir()
    with pytest.raises(ValueError, match="class folder .*empty_class is empty"):
        build_data(data_args("--train_dir", str(tmp_path / "train")))


def test_folder_without_class_subfolders_is_rejected(tmp_path):
    (tmp_path / "train").mkdir()
    with pytest.raises(ValueError, match="no class subfolders"):
        build_data(data_args("--train_dir", str(tmp_path / "train")))


def test_validation_classes_missing_from_train_are_named(tmp_path):
    write_image_folder(tmp_path / "train", {"a": 2, "b": 2})
    write_image_folder(tmp_path / "val", {"a": 1, "zebra": 1, "yak": 1})
    with pytest.raises(ValueError, match=r"lacks: \['yak', 'zebra'\]"):
        build_data(data_args("--train_dir", str(tmp_path / "train"), "--validation_dir", str(tmp_path / "val")))


def test_train_dir_without_validation_is_split(tmp_path):
    write_image_folder(tmp_path / "train", {"a": 10, "b": 10})
    data = build_data(data_args("--train_dir", str(tmp_path / "train"), "--train_val_split", "0.2"))
    assert (len(data.train), len(data.validation)) == (16, 4)
    assert sorted(data.validation.labels) == [0, 0, 1, 1]
    assert not set(data.train.images) & set(data.validation.images)


def _hub_dataset(train_labels, validation_labels=None, label_feature=None, label_column="label"):
    rng = np.random.default_rng(0)

    def split(labels):
        images = [rng.integers(0, 256, size=(8, 8, 3), dtype=np.uint8) for _ in labels]
        features = datasets.Features(
            {"image": datasets.Image(), label_column: label_feature or datasets.Value("string")}
        )
        return datasets.Dataset.from_dict({"image": images, label_column: labels}, features=features)

    splits = {"train": split(train_labels)}
    if validation_labels is not None:
        splits["validation"] = split(validation_labels)
    return datasets.DatasetDict(splits)


def test_hub_dataset_with_class_label_keeps_its_names():
    feature = datasets.ClassLabel(names=["cat", "dog", "eel"])
    train, validation, names = splits_from_dataset_dict(_hub_dataset([0, 2, 1, 2], [1, 0], label_feature=feature))
    assert names == ["cat", "dog", "eel"]
    assert train.labels == [0, 2, 1, 2] and validation.labels == [1, 0]
    assert open_image(train.images[0]).size == (8, 8)


def test_hub_dataset_with_string_labels_maps_them_to_ids():
    train, validation, names = splits_from_dataset_dict(_hub_dataset(["dog", "cat", "dog"], ["cat"]))
    assert names == ["cat", "dog"]
    assert train.labels == [1, 0, 1] and validation.labels == [0]


def test_missing_label_column_names_the_columns_found():
    dataset = _hub_dataset(["a", "b"], label_column="category")
    with pytest.raises(ValueError, match=r"no label column .*found columns \['image', 'category'\]"):
        splits_from_dataset_dict(dataset)
    with pytest.raises(ValueError, match=r"'kind' not found .*columns are \['image', 'category'\]"):
        splits_from_dataset_dict(dataset, label_column="kind")
    train, _, names = splits_from_dataset_dict(dataset, label_column="category")
    assert names == ["a", "b"]


def test_hub_validation_labels_missing_from_train_are_named(monkeypatch):
    feature = datasets.ClassLabel(names=["cat", "dog", "eel"])
    dataset = _hub_dataset([0, 0, 1, 1], [0, 2], label_feature=feature)
    monkeypatch.setattr(
        "poolformer_hf.tasks.classification.data.load_hub_splits", lambda *a, **k: splits_from_dataset_dict(dataset)
    )
    with pytest.raises(ValueError, match=r"validation split has labels the training split lacks: \['eel'\]"):
        build_data(data_args("--dataset_name", "some/dataset"))


def test_corrupt_image_in_a_hub_dataset_is_named(monkeypatch):
    dataset = _hub_dataset(["a", "b", "a", "b"])
    broken = dataset["train"].cast_column("image", datasets.Image(decode=False)).to_dict()
    broken["image"][2] = {"bytes": b"not a png", "path": "shard-0/row2.png"}
    features = dataset["train"].features.copy()
    features["image"] = datasets.Image(decode=False)
    dataset["train"] = datasets.Dataset.from_dict(broken, features=features).cast_column("image", datasets.Image())
    monkeypatch.setattr(
        "poolformer_hf.tasks.classification.data.load_hub_splits", lambda *a, **k: splits_from_dataset_dict(dataset)
    )
    with pytest.raises(ValueError, match=r"unreadable image shard-0/row2.png \(train example"):
        build_data(data_args("--dataset_name", "some/dataset", "--train_val_split", "0.5"))


def test_dataset_name_and_train_dir_are_exclusive():
    with pytest.raises(ValueError, match="either --dataset_name or --train_dir"):
        data_args("--dataset_name", "x", "--train_dir", "y")


def test_stratified_split_is_deterministic_and_per_class():
    labels = [0] * 10 + [1] * 20 + [2] * 3
    kept, held_out = stratified_split(labels, 0.2, seed=3)
    assert (kept, held_out) == stratified_split(labels, 0.2, seed=3)
    assert sorted(kept + held_out) == list(range(len(labels)))
    assert [sum(labels[i] == c for i in held_out) for c in range(3)] == [2, 4, 1]
    assert stratified_split(labels, 0.2, seed=4) != (kept, held_out)


def test_split_rejects_a_fraction_outside_zero_one():
    with pytest.raises(ValueError, match="between 0 and 1"):
        stratified_split([0, 1], 1.0, seed=0)


def test_max_samples_truncate_deterministically(tmp_path):
    write_image_folder(tmp_path / "train", {"a": 10, "b": 10})
    args = data_args("--train_dir", str(tmp_path / "train"), "--max_train_samples", "5")
    first, second = build_data(args, seed=1), build_data(args, seed=1)
    assert len(first.train) == 5 and list(first.train.images) == list(second.train.images)


def test_image_split_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="3 images but 2 labels"):
        ImageSplit(images=["a", "b", "c"], labels=[0, 1])


def test_dataset_name_loads_a_local_dataset_folder_through_datasets(tmp_path):
    feature = datasets.ClassLabel(names=["cat", "dog"])
    dataset = _hub_dataset([0, 1, 0, 1, 0, 1], [1, 0], label_feature=feature)
    (tmp_path / "data").mkdir()
    for split, part in dataset.items():
        part.to_parquet(str(tmp_path / "data" / f"{split}.parquet"))
    data = build_data(data_args("--dataset_name", str(tmp_path / "data")), cache_dir=str(tmp_path / "cache"))
    assert data.label_names == ["cat", "dog"]
    assert (data.train.labels, data.validation.labels) == ([0, 1, 0, 1, 0, 1], [1, 0])
    assert data.dataset_id == str(tmp_path / "data")

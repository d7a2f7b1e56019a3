"""poolformer_hf.hub.folder_checks: nothing outside the folder is read or uploaded, and none of its code runs unasked."""

import json
import os

import pytest

from hub_fixtures import loopback_hub  # noqa: F401  (a fixture)
from hub_fixtures import save_tiny_model
from poolformer_hf.hub.publish import push_folder_to_hub, validate_model_folder

REPO = "test-org/tiny-poolformer"
SECRET = "hf_SECRET_credentials_do_not_upload"


@pytest.fixture
def model_dir(tmp_path):
    folder = tmp_path / "model"
    save_tiny_model(folder)
    return folder


@pytest.fixture
def secret_file(tmp_path):
    path = tmp_path / "credentials"
    path.write_text(SECRET)
    return path


def _everything_on_the_hub(hub) -> bytes:
    return b"".join(hub.store.blob(blob_id) for blob_id in list(hub.store._blobs))


@pytest.mark.parametrize("name", ["README.md", "eval_results.json", "preprocessor_config.json", "layers.py"])
def test_a_symlink_leaving_the_folder_is_refused_by_name_and_nothing_is_sent(loopback_hub, model_dir, secret_file,
                                                                            name):
    target = model_dir / name
    if target.exists():
        target.unlink()
    target.symlink_to(secret_file)
    with pytest.raises(ValueError, match=f"{name} is a symlink to .*credentials, outside the folder"):
        push_folder_to_hub(model_dir, REPO)
    assert loopback_hub.requests == []
    assert SECRET.encode() not in _everything_on_the_hub(loopback_hub)


def test_a_symlink_inside_the_folder_is_published_with_its_content(loopback_hub, model_dir):
    (model_dir / "cards").mkdir()
    (model_dir / "cards" / "card.md").write_text("---\nlicense: mit\n---\n# Card\n")
    (model_dir / "README.md").symlink_to(model_dir / "cards" / "card.md")
    push_folder_to_hub(model_dir, REPO)
    assert loopback_hub.store.read_file(REPO, "main", "README.md").startswith(b"---\nlicense: mit")


def test_shards_named_outside_the_folder_are_refused(model_dir, secret_file):
    index = {"metadata": {}, "weight_map": {"poolformer.stem.conv.weight": "../credentials"}}
    (model_dir / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(ValueError, match="'../credentials' names a file outside the folder"):
        validate_model_folder(model_dir)


def test_the_folders_code_does_not_run_without_trust_remote_code(model_dir, tmp_path):
    ran = tmp_path / "code_ran"
    with open(model_dir / "modeling_poolformer.py", "a") as handle:
        handle.write(f"\nopen({str(ran)!r}, 'w').write('ran')\n")
    plan = validate_model_folder(model_dir)
    assert not ran.exists()
    assert "model.safetensors" in plan.files and plan.model.config.num_labels == 3
    validate_model_folder(model_dir, trust_remote_code=True)  # the explicit opt-in loads it as users would
    assert ran.read_text() == "ran"


def _set_auto_map(folder, auto_class, reference):
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"][auto_class] = reference
    (folder / "config.json").write_text(json.dumps(config))


@pytest.mark.parametrize(
    "reference, message",
    [
        ("other-org/code--evil.EvilModel", "points to code in another repo"),
        ("../evil.EvilModel", "not of the form module.Class"),
        ("missing_module.Model", "needs missing_module.py, which is not in the folder"),
    ],
)
def test_auto_map_may_only_name_files_of_the_folder(loopback_hub, model_dir, reference, message):
    _set_auto_map(model_dir, "AutoModelForImageClassification", reference)
    with pytest.raises(ValueError, match=message):
        push_folder_to_hub(model_dir, REPO)
    assert loopback_hub.requests == []  # nothing fetched from another repo, nothing uploaded


def test_a_relative_import_out_of_the_folder_is_refused(model_dir):
    with open(model_dir / "layers.py", "a") as handle:
        handle.write("\nfrom ..outside import thing\n")
    with pytest.raises(ValueError, match=r"layers.py imports \.\.outside, which is not a file of the folder"):
        validate_model_folder(model_dir)


def test_an_unknown_model_type_needs_trust_remote_code(model_dir):
    config = json.loads((model_dir / "config.json").read_text())
    config["model_type"] = "someone_elses_model"
    (model_dir / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="not provided by the installed packages.*--trust_remote_code"):
        validate_model_folder(model_dir)
    assert os.path.exists(model_dir / "config.json")

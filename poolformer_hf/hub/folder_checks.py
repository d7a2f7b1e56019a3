"""What `push_to_hub` may publish from a saved model folder, checked before anything leaves the machine.

Nothing outside the folder is read or uploaded: every file read or sent is looked up through `_local_file`, which
refuses a name that climbs out (`../x`) and a symlink whose target leaves the folder, naming it.

By default the folder's own Python code is never run: the check parses config.json, builds the model it describes
on the meta device with the classes of the installed packages (poolformer_hf, transformers), and compares its tensor
shapes with those in the safetensors headers (no tensor data is read); `auto_map` may only name code files present
in the folder, never code in another repo (`org/repo--module.Class`). With `trust_remote_code=True` the folder is
also loaded in full, as a user with `trust_remote_code=True` would, its code included.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from ..conversion.checkpoint_files import read_json_object, safetensors_shapes

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
WEIGHTS_INDEX_NAME = "model.safetensors.index.json"
PROCESSOR_NAMES = ("preprocessor_config.json", "processor_config.json")
OPTIONAL_NAMES = ("generation_config.json", "all_results.json", "eval_results.json", "train_results.json")
README_NAME = "README.md"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")
# Files whose `auto_map` names code that must travel with the weights.
AUTO_MAP_FILES = (CONFIG_NAME, *PROCESSOR_NAMES)
# "module.Class": the only form of reference that points at a file of this folder.
_LOCAL_REFERENCE = re.compile(r"[A-Za-z_]\w*\.[A-Za-z_]\w*")
_MODULE_NAME = re.compile(r"[A-Za-z_]\w*")


@dataclass(frozen=True)
class FolderPlan:
    """What `push_folder_to_hub` uploads from a validated folder, and what it leaves behind."""

    model_dir: Path
    files: tuple[str, ...]  # paths relative to model_dir, uploaded as they are
    skipped: tuple[str, ...]  # top-level entries not uploaded
    has_readme: bool
    # The model the folder describes: built on the meta device (config only) or, with trust_remote_code, loaded.
    model: object = field(repr=False, compare=False)


def _refuse(model_dir: Path, reason: str) -> ValueError:
    return ValueError(f"refusing to push {model_dir}: {reason}")


def _local_file(model_dir: Path, name: str) -> Path | None:
    """`model_dir / name` when it is a file inside the folder, None when absent; ValueError when it leads outside."""
    path = model_dir / name
    if Path(name).is_absolute() or ".." in Path(name).parts:
        raise _refuse(model_dir, f"{name!r} names a file outside the folder")
    if not path.is_symlink() and not path.exists():
        return None
    target = path.resolve()
    if not target.is_relative_to(model_dir.resolve()):
        raise _refuse(model_dir, f"{name} is a symlink to {target}, outside the folder: nothing outside it is uploaded")
    return path if target.is_file() else None


def _json_file(model_dir: Path, name: str) -> dict | None:
    path = _local_file(model_dir, name)
    if path is None:
        return None
    try:
        return read_json_object(str(path))
    except ValueError as error:
        raise _refuse(model_dir, str(error)) from error


def _weight_files(model_dir: Path) -> list[str]:
    """The safetensors files of the folder (single file or index + shards), each a readable safetensors file."""
    index = _json_file(model_dir, WEIGHTS_INDEX_NAME)
    if index is not None:
        weight_map = index.get("weight_map")
        shards = sorted(set(weight_map.values())) if isinstance(weight_map, dict) else []
        if not shards or not all(isinstance(shard, str) for shard in shards):
            raise _refuse(model_dir, f"{WEIGHTS_INDEX_NAME} has no weight_map of shard file names")
        missing = [shard for shard in shards if _local_file(model_dir, shard) is None]
        if missing:
            raise _refuse(model_dir, f"{WEIGHTS_INDEX_NAME} lists shards that are missing: {', '.join(missing)}")
        files = [WEIGHTS_INDEX_NAME, *shards]
    elif _local_file(model_dir, WEIGHTS_NAME) is not None:
        files = [WEIGHTS_NAME]
    else:
        pickles = sorted(p.name for p in model_dir.iterdir() if p.suffix in PICKLE_SUFFIXES)
        if pickles:
            raise _refuse(
                model_dir,
                f"its weights are pickle files only ({', '.join(pickles)}); pickles are never uploaded. "
                f"Re-save the model with save_pretrained() to write {WEIGHTS_NAME}.",
            )
        raise _refuse(model_dir, f"no weights: expected {WEIGHTS_NAME} or {WEIGHTS_INDEX_NAME}")
    return files


def _stored_shapes(model_dir: Path, weight_files: list[str]) -> dict[str, list[int]]:
    shapes = {}
    for name in weight_files:
        if name.endswith(".safetensors"):
            try:
                shapes.update(safetensors_shapes(str(model_dir / name)))
            except ValueError as error:
                raise _refuse(model_dir, str(error)) from error
    return shapes


def _auto_map_references(config: dict):
    for auto_class, reference in (config.get("auto_map") or {}).items():
        # A class reference, a list of them (tokenizers) or a dict of them by backend (image processors).
        references = reference.values() if isinstance(reference, dict) else (
            reference if isinstance(reference, list) else [reference]
        )
        for ref in filter(None, references):
            yield auto_class, ref


def _code_files(model_dir: Path, configs: dict[str, dict]) -> list[str]:
    """Python files that the `auto_map` entries of the folder's configs need, relative imports included.

    Each file is checked (inside the folder, present) before it is opened to look for its own relative imports.
    """
    from transformers.dynamic_module_utils import get_relative_imports

    needed: set[str] = set()
    for config_name, config in configs.items():
        for auto_class, ref in _auto_map_references(config):
            where = f"{config_name} auto_map[{auto_class!r}] = {ref!r}"
            if not isinstance(ref, str) or "--" in ref:
                raise _refuse(model_dir, f"{where} points to code in another repo; only the folder's own files may "
                                         "be named")
            if not _LOCAL_REFERENCE.fullmatch(ref):
                raise _refuse(model_dir, f"{where} is not of the form module.Class naming a file of the folder")
            pending = [ref.rsplit(".", 1)[0]]
            while pending:
                module = pending.pop()
                if f"{module}.py" in needed:
                    continue
                path = _local_file(model_dir, f"{module}.py")
                if path is None:
                    first = module == ref.rsplit(".", 1)[0]
                    reason = "which is not in the folder" if first else "imported by its code, is not in the folder"
                    raise _refuse(model_dir, f"{where} needs {module}.py, {reason} (imports a missing file)")
                needed.add(path.name)
                for imported in get_relative_imports(path):
                    if not _MODULE_NAME.fullmatch(imported):
                        raise _refuse(model_dir, f"{path.name} imports .{imported}, which is not a file of the folder")
                    pending.append(imported)
    return sorted(needed)


# ----------------------------------------------------------------------------------------- checks without code
def _installed_model_class(config_class, architecture: str):
    """The installed class named `architecture` that an Auto class builds from `config_class`, or None."""
    from transformers.models.auto import modeling_auto

    for name in dir(modeling_auto):
        mapping = getattr(modeling_auto, name)
        if not name.endswith("_MAPPING") or not hasattr(mapping, "_model_mapping"):
            continue
        try:
            model_class = mapping[config_class]
        except (KeyError, ValueError, AttributeError, ImportError):
            continue
        if getattr(model_class, "__name__", None) == architecture:
            return model_class
    return None


def _check_users_can_load(model_dir: Path, config: dict) -> None:
    """Without this package, users load the folder by its auto_map code or a transformers built-in model type."""
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

    architectures = config.get("architectures") or []
    names = {ref.rsplit(".", 1)[-1] for auto_class, ref in _auto_map_references(config)
             if auto_class.startswith("AutoModel") and isinstance(ref, str)}
    if names & set(architectures) or config.get("model_type") in CONFIG_MAPPING_NAMES:
        return
    raise _refuse(
        model_dir,
        f"config.json has model_type {config.get('model_type')!r}, unknown to transformers, and no auto_map entry "
        f"for its architectures {architectures}: users could not load it without this package. Save it from a "
        "model whose classes are registered for auto classes (register_for_auto_class).",
    )


def _meta_model(model_dir: Path, config: dict):
    """The model config.json describes, built on the meta device with installed classes (the folder's code unrun)."""
    import torch
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    model_type = config.get("model_type")
    if model_type not in CONFIG_MAPPING:
        raise _refuse(model_dir, f"config.json's model_type {model_type!r} is not provided by the installed packages: "
                                 "checking it would run the folder's code; pass --trust_remote_code to allow that")
    config_class = CONFIG_MAPPING[model_type]
    architectures = config.get("architectures") or []
    architecture = architectures[0] if architectures else None
    model_class = _installed_model_class(config_class, architecture) if architecture else None
    if model_class is None:
        raise _refuse(model_dir, f"no installed class builds architecture {architecture!r} for model_type "
                                 f"{model_type!r}: checking it would run the folder's code; pass --trust_remote_code")
    settings = {key: value for key, value in config.items() if key not in ("auto_map", "transformers_version")}
    try:
        parsed = config_class.from_dict(settings)
        with torch.device("meta"):  # shapes only: no memory, no initialization
            return model_class(parsed)
    except Exception as error:  # noqa: BLE001 - a config that does not build fails in many ways
        raise _refuse(model_dir, f"config.json does not build a model: {error}") from error


def _compare_shapes(model_dir: Path, model, stored: dict[str, list[int]]) -> None:
    expected = {key: list(tensor.shape) for key, tensor in model.state_dict().items()}
    wrong = [f"{key} is {stored[key]} in the weights but {expected[key]} by config.json"
             for key in sorted(stored.keys() & expected.keys()) if stored[key] != expected[key]]
    if wrong:
        raise _refuse(model_dir, f"config.json does not match the weights: {len(wrong)} tensor(s) differ, "
                                 f"e.g. {'; '.join(wrong[:3])}")
    problems = {"missing from the weights": sorted(expected.keys() - stored.keys()),
                "unexpected in the weights": sorted(stored.keys() - expected.keys())}
    problems = {what: keys for what, keys in problems.items() if keys}
    if problems:
        detail = "; ".join(f"{len(keys)} tensor(s) {what} (e.g. {', '.join(keys[:3])})" for what, keys in problems.items())
        raise _refuse(model_dir, f"the weights do not fit config.json: {detail}")


def _check_processor(model_dir: Path, processor_configs: dict[str, dict]) -> None:
    """Each processor config builds with an installed image processor class (the folder's code unrun)."""
    from transformers.models.auto.image_processing_auto import get_image_processor_class_from_name

    for name, settings in processor_configs.items():
        class_name = settings.get("image_processor_type")
        if class_name is None:
            continue
        processor_class = get_image_processor_class_from_name(class_name) if isinstance(class_name, str) else None
        if processor_class is None:
            raise _refuse(model_dir, f"{name} names image_processor_type {class_name!r}, which no installed package "
                                     "provides: checking it would run the folder's code; pass --trust_remote_code")
        try:
            processor_class.from_dict({k: v for k, v in settings.items() if k != "auto_map"})
        except Exception as error:  # noqa: BLE001 - a bad processor config fails in many ways
            raise _refuse(model_dir, f"the image processor of {name} does not load: {error}") from error


# ------------------------------------------------------------------------------- with trust_remote_code only
def _remote_model_class(config: dict, model_dir: Path):
    """The model class a user gets from this folder: its own code (auto_map) or a built-in transformers class."""
    import transformers
    from transformers.dynamic_module_utils import get_class_from_dynamic_module

    architectures = config.get("architectures") or []
    for auto_class, reference in (config.get("auto_map") or {}).items():
        if auto_class.startswith("AutoModel") and str(reference).rsplit(".", 1)[-1] in architectures:
            # The folder's code files, imported as trust_remote_code imports them for users. Not the Auto class:
            # in a process that imported poolformer_hf it would pick the package's registered classes instead.
            try:
                return get_class_from_dynamic_module(reference, str(model_dir))
            except Exception as exc:  # noqa: BLE001 - whatever the shipped code raises on import
                raise _refuse(model_dir, f"the code of auto_map[{auto_class!r}] does not import: {exc}") from exc
    if architectures and hasattr(transformers, architectures[0]):
        return getattr(transformers, architectures[0])
    return transformers.AutoModel


def load_model_folder(model_dir: str | Path, stored: dict[str, list[int]] | None = None):
    """Load the folder's model as a user with trust_remote_code=True would: its code RUNS. Only on explicit consent.

    ValueError when it does not load cleanly (shapes, missing or unexpected tensors, processor).
    """
    import torch
    from transformers import AutoConfig, AutoImageProcessor, AutoModel

    model_dir = Path(model_dir)
    config = _json_file(model_dir, CONFIG_NAME) or {}
    model_class = _remote_model_class(config, model_dir)
    stored = stored if stored is not None else _stored_shapes(model_dir, _weight_files(model_dir))
    try:
        with torch.device("meta"):
            if model_class is AutoModel:
                shapes = AutoModel.from_config(AutoConfig.from_pretrained(str(model_dir), trust_remote_code=True))
            else:
                shapes = model_class(model_class.config_class.from_pretrained(str(model_dir)))
    except Exception as exc:  # noqa: BLE001 - config or model code that does not build
        raise _refuse(model_dir, f"config.json does not build a model: {exc}") from exc
    _compare_shapes(model_dir, shapes, stored)
    try:
        model = model_class.from_pretrained(str(model_dir), trust_remote_code=True)
    except Exception as exc:  # noqa: BLE001 - from_pretrained raises many types
        raise _refuse(model_dir, f"{model_class.__name__}.from_pretrained fails: {exc}") from exc
    if any(_local_file(model_dir, name) for name in PROCESSOR_NAMES):
        try:
            AutoImageProcessor.from_pretrained(str(model_dir), trust_remote_code=True)
        except Exception as exc:  # noqa: BLE001
            raise _refuse(model_dir, f"the image processor does not load: {exc}") from exc
    return model.eval()


def validate_model_folder(model_dir: str | Path, trust_remote_code: bool = False) -> FolderPlan:
    """Check that `model_dir` holds a complete model and list the files to upload; ValueError otherwise.

    Without `trust_remote_code` nothing of the folder is executed (see the module docstring).
    """
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise _refuse(model_dir, "it is not a directory")
    config = _json_file(model_dir, CONFIG_NAME)
    if config is None:
        raise _refuse(model_dir, f"no {CONFIG_NAME}")
    configs = {CONFIG_NAME: config}
    processor_configs = {}
    for name in PROCESSOR_NAMES:
        settings = _json_file(model_dir, name)
        if settings is not None:
            configs[name] = processor_configs[name] = settings
    weight_files = _weight_files(model_dir)
    files = [CONFIG_NAME, *weight_files, *_code_files(model_dir, configs)]
    # Every other file that is uploaded or read (the model card reads the results files) is checked the same way.
    files += [name for name in (*PROCESSOR_NAMES, *OPTIONAL_NAMES, README_NAME) if _local_file(model_dir, name)]
    _check_users_can_load(model_dir, config)
    stored = _stored_shapes(model_dir, weight_files)
    if trust_remote_code:
        model = load_model_folder(model_dir, stored)
    else:
        model = _meta_model(model_dir, config)
        _compare_shapes(model_dir, model, stored)
        _check_processor(model_dir, processor_configs)
    uploaded = set(files)
    skipped = sorted(p.name for p in model_dir.iterdir() if p.name not in uploaded)
    return FolderPlan(model_dir, tuple(files), tuple(skipped), has_readme=README_NAME in uploaded, model=model)

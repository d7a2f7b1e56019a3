"""Publishing a saved model folder to the Hugging Face Hub (the logic behind `scripts/push_to_hub.py`).

`validate_model_folder` refuses, before anything leaves the machine, a folder that would not load:
no config, no safetensors weights (pickle-only weights included), an `auto_map` naming code files
that are not there, or weights that do not fit the config. It checks by loading the folder with
`from_pretrained` exactly as a user with `trust_remote_code=True` would.

`push_folder_to_hub` then uploads, in one commit, what a user needs and nothing else: config,
safetensors weights, processor config, the code files `auto_map` needs, the Trainer's results
files and a README.md (the folder's own, or a generated model card). Pickle files never leave.
The folder is only read. The endpoint and token are huggingface_hub's (HF_ENDPOINT, HF_TOKEN, or
the stored login); an unchanged folder pushed again makes no commit (the client skips files whose
git blob id matches the remote one).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
WEIGHTS_INDEX_NAME = "model.safetensors.index.json"
PROCESSOR_NAMES = ("preprocessor_config.json", "processor_config.json")
OPTIONAL_NAMES = ("generation_config.json", "all_results.json", "eval_results.json", "train_results.json")
README_NAME = "README.md"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")
# Files whose `auto_map` names code that must travel with the weights.
AUTO_MAP_FILES = (CONFIG_NAME, *PROCESSOR_NAMES)


class PushError(RuntimeError):
    """Uploading failed; the message names the step (repository, branch, commit) that failed."""


@dataclass(frozen=True)
class FolderPlan:
    """What `push_folder_to_hub` uploads from a validated folder, and what it leaves behind."""

    model_dir: Path
    files: tuple[str, ...]  # paths relative to model_dir, uploaded as they are
    skipped: tuple[str, ...]  # top-level entries not uploaded
    has_readme: bool
    model: object = field(repr=False, compare=False)  # the model as loaded from the folder


@dataclass(frozen=True)
class PushResult:
    repo_id: str
    revision: str
    commit_oid: str
    commit_url: str
    created_commit: bool  # False when the remote already had every file unchanged
    files: tuple[str, ...]  # what the repo now holds from this folder (changed or not)
    skipped: tuple[str, ...]


def _refuse(model_dir: Path, reason: str) -> ValueError:
    return ValueError(f"refusing to push {model_dir}: {reason}")


def _read_json(path: Path, model_dir: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise _refuse(model_dir, f"{path.name} is not readable JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise _refuse(model_dir, f"{path.name} should hold a JSON object, found {type(data).__name__}")
    return data


def _weight_files(model_dir: Path) -> list[str]:
    """The safetensors files of the folder (single file or index + shards)."""
    from safetensors import safe_open

    if (model_dir / WEIGHTS_INDEX_NAME).is_file():
        index = _read_json(model_dir / WEIGHTS_INDEX_NAME, model_dir)
        shards = sorted(set(index.get("weight_map", {}).values()))
        if not shards:
            raise _refuse(model_dir, f"{WEIGHTS_INDEX_NAME} has an empty weight_map")
        missing = [s for s in shards if not (model_dir / s).is_file()]
        if missing:
            raise _refuse(model_dir, f"{WEIGHTS_INDEX_NAME} lists shards that are missing: {', '.join(missing)}")
        files = [WEIGHTS_INDEX_NAME, *shards]
    elif (model_dir / WEIGHTS_NAME).is_file():
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
    for name in files:
        if name.endswith(".safetensors"):
            try:
                with safe_open(str(model_dir / name), framework="pt") as handle:
                    handle.keys()
            except Exception as exc:  # safetensors raises its own error types for bad headers
                raise _refuse(model_dir, f"{name} is not a readable safetensors file ({exc})") from exc
    return files


def _code_files(model_dir: Path, configs: dict[str, dict]) -> list[str]:
    """Python files that the `auto_map` entries of the folder's configs need, relative imports included."""
    from transformers.dynamic_module_utils import get_relative_import_files

    needed: set[str] = set()
    for config_name, config in configs.items():
        for auto_class, reference in (config.get("auto_map") or {}).items():
            # A class reference, a list of them (tokenizers) or a dict of them by backend (image processors).
            references = reference.values() if isinstance(reference, dict) else (
                reference if isinstance(reference, list) else [reference]
            )
            for ref in filter(None, references):
                if "--" in ref:  # "org/repo--module.Class": code that lives in another repo
                    continue
                module_file = model_dir / f"{ref.rsplit('.', 1)[0]}.py"
                if not module_file.is_file():
                    raise _refuse(
                        model_dir,
                        f"{config_name} auto_map[{auto_class!r}] = {ref!r} needs {module_file.name}, "
                        "which is not in the folder",
                    )
                needed.add(module_file.name)
                try:
                    needed.update(Path(p).name for p in get_relative_import_files(module_file))
                except OSError as exc:
                    raise _refuse(model_dir, f"{module_file.name} imports a missing file ({exc})") from exc
    return sorted(needed)


def _load_class(config: dict, model_dir: Path):
    """The model class a user gets from this folder: its own code (auto_map) or a built-in transformers class."""
    import transformers
    from transformers.dynamic_module_utils import get_class_from_dynamic_module
    # Built-in model types only: ones registered at runtime (as importing poolformer_hf does) are not
    # there for a user who loads the repo without this package.
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

    architectures = config.get("architectures") or []
    auto_map = config.get("auto_map") or {}
    for auto_class, reference in auto_map.items():
        if auto_class.startswith("AutoModel") and str(reference).rsplit(".", 1)[-1] in architectures:
            # The folder's code files, imported as trust_remote_code imports them for users. Not the Auto class:
            # in a process that imported poolformer_hf it would pick the package's registered classes instead.
            try:
                return get_class_from_dynamic_module(reference, str(model_dir))
            except Exception as exc:  # whatever the shipped code raises on import
                raise _refuse(model_dir, f"the code of auto_map[{auto_class!r}] does not import: {exc}") from exc
    model_type = config.get("model_type")
    if model_type not in CONFIG_MAPPING_NAMES:
        raise _refuse(
            model_dir,
            f"config.json has model_type {model_type!r}, unknown to transformers, and no auto_map entry for "
            f"its architectures {architectures}: users could not load it without this package. Save it from a "
            "model whose classes are registered for auto classes (register_for_auto_class).",
        )
    if architectures and hasattr(transformers, architectures[0]):
        return getattr(transformers, architectures[0])
    return transformers.AutoModel


def _checkpoint_shapes(model_dir: Path) -> dict[str, list[int]]:
    from safetensors import safe_open

    shapes = {}
    for name in _weight_files(model_dir):
        if name.endswith(".safetensors"):
            with safe_open(str(model_dir / name), framework="pt") as handle:
                shapes.update({key: list(handle.get_slice(key).get_shape()) for key in handle.keys()})
    return shapes


def _check_shapes(model_dir: Path, model_class) -> None:
    """Compare the checkpoint's tensor shapes with those config.json implies, naming the first few that differ."""
    import torch
    from transformers import AutoConfig, AutoModel

    try:
        with torch.device("meta"):  # shapes only: no memory, no initialization
            if model_class is AutoModel:
                model = AutoModel.from_config(AutoConfig.from_pretrained(str(model_dir)))
            else:
                model = model_class(model_class.config_class.from_pretrained(str(model_dir)))
    except Exception as exc:  # config or model code that does not build
        raise _refuse(model_dir, f"config.json does not build a model: {exc}") from exc
    expected = {key: list(tensor.shape) for key, tensor in model.state_dict().items()}
    stored = _checkpoint_shapes(model_dir)
    wrong = [f"{key} is {stored[key]} in the weights but {expected[key]} by config.json"
             for key in sorted(stored.keys() & expected.keys()) if stored[key] != expected[key]]
    if wrong:
        detail = f"{len(wrong)} tensor(s) differ, e.g. {'; '.join(wrong[:3])}"
        raise _refuse(model_dir, f"config.json does not match the weights: {detail}")


def load_model_folder(model_dir: str | Path):
    """Load the folder's model as a user would (remote code allowed); ValueError when it does not load cleanly."""
    model_dir = Path(model_dir)
    config = _read_json(model_dir / CONFIG_NAME, model_dir)
    model_class = _load_class(config, model_dir)
    _check_shapes(model_dir, model_class)
    try:
        model, info = model_class.from_pretrained(str(model_dir), trust_remote_code=True, output_loading_info=True)
    except Exception as exc:  # from_pretrained raises many types (size mismatch, bad config, import errors)
        raise _refuse(model_dir, f"{model_class.__name__}.from_pretrained fails: {exc}") from exc
    problems = {
        "missing from the weights": info.get("missing_keys"),
        "unexpected in the weights": info.get("unexpected_keys"),
        "with shapes that do not match the config": info.get("mismatched_keys"),
        "with load errors": info.get("error_msgs"),
    }
    problems = {what: sorted(map(str, keys)) for what, keys in problems.items() if keys}
    if problems:
        detail = "; ".join(
            f"{len(keys)} tensor(s) {what} (e.g. {', '.join(keys[:3])})" for what, keys in problems.items()
        )
        raise _refuse(model_dir, f"the weights do not fit config.json: {detail}")
    for name in PROCESSOR_NAMES:
        if (model_dir / name).is_file():
            from transformers import AutoImageProcessor

            try:
                AutoImageProcessor.from_pretrained(str(model_dir), trust_remote_code=True)
            except Exception as exc:
                raise _refuse(model_dir, f"the image processor of {name} does not load: {exc}") from exc
            break
    return model.eval()


def validate_model_folder(model_dir: str | Path) -> FolderPlan:
    """Check that `model_dir` loads as a complete model and list the files to upload; ValueError otherwise."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise _refuse(model_dir, "it is not a directory")
    if not (model_dir / CONFIG_NAME).is_file():
        raise _refuse(model_dir, f"no {CONFIG_NAME}")
    configs = {name: _read_json(model_dir / name, model_dir) for name in AUTO_MAP_FILES if (model_dir / name).is_file()}
    files = [CONFIG_NAME, *_weight_files(model_dir), *_code_files(model_dir, configs)]
    files += [name for name in (*PROCESSOR_NAMES, *OPTIONAL_NAMES, README_NAME) if (model_dir / name).is_file()]
    model = load_model_folder(model_dir)
    uploaded = set(files)
    skipped = sorted(p.name for p in model_dir.iterdir() if p.name not in uploaded)
    return FolderPlan(model_dir, tuple(files), tuple(skipped), has_readme=README_NAME in uploaded, model=model)


def push_folder_to_hub(
    model_dir: str | Path,
    repo_id: str,
    *,
    private: bool = False,
    revision: str | None = None,
    commit_message: str | None = None,
    token: str | None = None,
    eval_dataset: str | None = None,
) -> PushResult:
    """Validate `model_dir`, then publish it to `repo_id` (on branch `revision`, created if needed) in one commit.

    Raises ValueError (nothing uploaded) for a folder that would not load, PushError when the Hub fails.
    """
    from huggingface_hub import CommitOperationAdd, HfApi

    from .model_card import folder_facts, render_card

    plan = validate_model_folder(model_dir)
    operations = [
        CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(plan.model_dir / name)) for name in plan.files
    ]
    if not plan.has_readme:
        card = render_card(folder_facts(plan.model_dir, repo_id, plan.model, eval_dataset=eval_dataset))
        # Uploaded from memory: the folder itself is never written to.
        operations.append(CommitOperationAdd(path_in_repo=README_NAME, path_or_fileobj=card.encode()))

    api = HfApi(token=token)
    branch = revision or "main"
    step = f"creating repository {repo_id}"
    try:
        api.create_repo(repo_id, private=private, exist_ok=True)
        if branch != "main":
            step = f"creating branch {branch!r} of {repo_id}"
            api.create_branch(repo_id, branch=branch, exist_ok=True)
        step = f"reading the head of {repo_id}@{branch}"
        head_before = api.repo_info(repo_id, revision=branch).sha
        step = f"uploading {len(operations)} files to {repo_id}@{branch}"
        info = api.create_commit(
            repo_id,
            operations=operations,
            commit_message=commit_message or f"Upload {plan.model_dir.name} with poolformer_hf",
            revision=branch,
        )
    except Exception as exc:  # HTTP errors, connection errors, and the client's own ValueErrors alike
        raise PushError(f"push to {api.endpoint} failed while {step}: {exc}") from exc
    return PushResult(
        repo_id=repo_id,
        revision=branch,
        commit_oid=info.oid,
        commit_url=info.commit_url,
        created_commit=info.oid != head_before,
        files=tuple(op.path_in_repo for op in operations),
        skipped=plan.skipped,
    )


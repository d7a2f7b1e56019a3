"""The package's shape: the root is exactly the code a saved folder ships (declared once, in `files.SHIPPED_CODE`), a
save writes exactly those files, no module imports itself back through others, and no two module names are
near-twins."""

import ast
import itertools
import os
from pathlib import Path

import pytest

from poolformer_hf import (
    PoolFormerConfig,
    PoolFormerForImageClassification,
    PoolFormerForSemanticSegmentation,
    PoolFormerImageProcessor,
    PoolFormerImageProcessorPil,
    PoolFormerSegmentationImageProcessor,
)
from poolformer_hf.files import SHIPPED_CODE

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "poolformer_hf"
NOT_SHIPPED_AT_ROOT = {"__init__.py", "_quiet_imports.py"}  # the installed package's entry, never in a saved folder
TRANSFORMERS_FILE_PREFIXES = ("configuration_", "modeling_", "image_processing_")
# The file each saved kind starts from (transformers copies it and what its relative imports reach).
ENTRY_FILES = {
    "config": ("configuration_poolformer.py",),
    "model": ("configuration_poolformer.py", "modeling_poolformer.py"),
    "segmentation model": ("configuration_poolformer.py", "modeling_poolformer_segmentation.py"),
    "image processor": ("image_processing_poolformer.py", "image_processing_pil_poolformer.py"),
    "segmentation image processor": ("image_processing_segmentation_poolformer.py",),
}


def imports_of(path: Path, module: str, is_package: bool) -> set[str]:
    """The absolute names of the modules `path` imports, anywhere in it (functions included)."""
    found = set()
    base = module.split(".") if is_package else module.split(".")[:-1]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            parent = base[: len(base) - node.level + 1] if node.level else []
            target = ".".join(parent + ([node.module] if node.module else []))
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)  # `from . import submodule`
    return found


def modules_under(folder: Path, prefix: str) -> dict[str, Path]:
    modules = {}
    for path in sorted(folder.rglob("*.py")):
        parts = list(path.relative_to(folder).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join([prefix, *parts])] = path
    return modules


def import_graph() -> dict[str, set[str]]:
    modules = {**modules_under(PACKAGE, "poolformer_hf"), **modules_under(ROOT / "benchmarks", "benchmarks")}
    return {name: {target for target in imports_of(path, name, path.name == "__init__.py") if target in modules}
            - {name} for name, path in modules.items()}


def relative_closure(names) -> set[str]:
    """The root files that `names` reach through their relative imports, as transformers' save follows them."""
    todo, seen = list(names), set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for node in ast.walk(ast.parse((PACKAGE / name).read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level:
                assert node.level == 1 and node.module, f"{name}: a shipped file imports only its siblings ({node.module})"
                todo.append(f"{node.module}.py")
    return seen


def test_the_root_holds_exactly_the_shipped_files():
    root_files = {path.name for path in PACKAGE.glob("*.py")} - NOT_SHIPPED_AT_ROOT
    assert root_files == set().union(*SHIPPED_CODE.values())


@pytest.mark.parametrize("kind", SHIPPED_CODE)
def test_the_relative_imports_of_each_saved_kind_reach_exactly_its_declared_files(kind):
    reached = relative_closure(ENTRY_FILES[kind])
    if kind == "image processor":  # both backends: save_pretrained adds the one it does not reach (`ship_code`)
        assert relative_closure(ENTRY_FILES[kind][:1]) | relative_closure(ENTRY_FILES[kind][1:]) == reached
    assert reached == set(SHIPPED_CODE[kind])


def _saved_code(save, tmp_path) -> set[str]:
    save(tmp_path)
    return {path.name for path in tmp_path.iterdir() if path.suffix == ".py"}


@pytest.mark.parametrize("kind, save", [
    ("config", lambda folder: PoolFormerConfig.from_preset("poolformer_s12").save_pretrained(folder)),
    ("model", lambda folder: PoolFormerForImageClassification(
        PoolFormerConfig(depths=[1, 1, 1, 1], hidden_sizes=[8, 8, 8, 8], num_labels=3)).save_pretrained(folder)),
    ("segmentation model", lambda folder: PoolFormerForSemanticSegmentation(PoolFormerConfig(
        depths=[1, 1, 1, 1], hidden_sizes=[8, 8, 8, 8], num_labels=3,
        out_features=["stage1", "stage2", "stage3", "stage4"])).save_pretrained(folder)),
    ("image processor", lambda folder: PoolFormerImageProcessor().save_pretrained(folder)),
    ("image processor", lambda folder: PoolFormerImageProcessorPil().save_pretrained(folder)),
    ("segmentation image processor", lambda folder: PoolFormerSegmentationImageProcessor().save_pretrained(folder)),
])
def test_a_save_writes_exactly_the_declared_code_files(kind, save, tmp_path):
    assert _saved_code(save, tmp_path) == set(SHIPPED_CODE[kind])


def test_a_classifier_ships_at_most_six_code_files():
    assert len(SHIPPED_CODE["model"]) <= 6


def test_no_module_imports_itself_back():
    graph = import_graph()
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(node):  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    assert cycles == []


def test_the_import_walk_sees_submodule_and_function_level_imports(tmp_path):
    (tmp_path / "a.py").write_text("from . import b\n")
    (tmp_path / "b.py").write_text("def f():\n    from .a import g\n")
    assert "p.b" in imports_of(tmp_path / "a.py", "p.a", False)
    assert "p.a" in imports_of(tmp_path / "b.py", "p.b", False)


def test_the_shipped_model_imports_no_tooling():
    graph = import_graph()
    for name in SHIPPED_CODE["segmentation model"] + SHIPPED_CODE["image processor"]:
        module = f"poolformer_hf.{name[:-3]}"
        assert graph[module] <= {f"poolformer_hf.{other[:-3]}" for other in set().union(*SHIPPED_CODE.values())}


def near_twins(names) -> list[tuple[str, str]]:
    """Pairs a reader would confuse: one name the other plus a word (`hub`, `hub_folder`), singular and plural, or two
    one-word names on one stem (`conversion`, `convert`)."""
    def one_word_stem(a, b):
        return "_" not in a + b and len(os.path.commonprefix([a, b])) >= 5

    def transformers_names(a, b):  # its file convention: one modeling / image_processing file per head
        return any(a.startswith(prefix) and b.startswith(prefix) for prefix in TRANSFORMERS_FILE_PREFIXES)
    return [(a, b) for a, b in itertools.combinations(sorted(names), 2) if not transformers_names(a, b) and (
            a.startswith(b + "_") or b.startswith(a + "_") or a.endswith("_" + b) or b.endswith("_" + a)
            or a.rstrip("s") == b.rstrip("s") or one_word_stem(a, b))]


def test_no_two_sibling_modules_are_near_twins():
    """Same-named modules in parallel rooms (each task's `run.py`) are fine; `hub.py` beside `hub_folder.py` is not."""
    folders = {}
    for name in modules_under(PACKAGE, "poolformer_hf"):
        parent, _, leaf = name.rpartition(".")
        folders.setdefault(parent, set()).add(leaf)
    assert {folder: near_twins(leaves) for folder, leaves in folders.items() if near_twins(leaves)} == {}


def test_the_twin_check_finds_the_old_names():
    assert near_twins(["hub", "hub_folder", "conversion", "convert", "layers"]) == [
        ("conversion", "convert"), ("hub", "hub_folder")]


# Names only the checkpoints of transformers' built-in PoolFormer and of timm have.
FOREIGN_NAME_FRAGMENTS = ("patch_embeddings", "before_norm", "after_norm", r"head\.fc")


def test_the_foreign_checkpoint_names_live_in_one_table():
    """`from_pretrained` and the converter rename transformers' and timm's checkpoints by the same table: no module but
    the modeling file spells their names (a second table would drift from the first)."""
    spelled = sorted(
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if any(fragment in path.read_text() for fragment in FOREIGN_NAME_FRAGMENTS)
    )
    assert spelled == ["modeling_poolformer.py"]


@pytest.mark.parametrize(
    "source_format, key, ours",
    [
        ("transformers", "poolformer.encoder.block.1.2.layer_scale_2",
         "poolformer.stages.1.blocks.2.layer_scale2.scale"),
        ("transformers", "encoder.patch_embeddings.0.projection.weight", "poolformer.stem.conv.weight"),
        ("transformers", "poolformer.encoder.patch_embeddings.2.projection.bias",
         "poolformer.stages.2.downsample.conv.bias"),
        ("transformers", "poolformer.encoder.block.0.1.output.conv2.weight",
         "poolformer.stages.0.blocks.1.mlp.fc2.weight"),
        ("transformers", "classifier.bias", "classifier.bias"),
        ("timm", "stages.3.blocks.0.token_mixer.qkv.weight", "poolformer.stages.3.blocks.0.token_mixer.qkv.weight"),
        ("timm", "head.fc.fc1.weight", "classifier.fc1.weight"),
        ("timm", "head.norm.bias", "poolformer.norm.bias"),
    ],
)
def test_the_converter_renames_by_the_loading_table(source_format, key, ours):
    from poolformer_hf.conversion.formats import rename_keys

    assert list(rename_keys({key: None}, source_format)) == [ours]


def test_the_converter_refuses_a_foreign_key_that_is_none_of_ours():
    from poolformer_hf.conversion.formats import rename_keys

    with pytest.raises(ValueError, match="belong to no PoolFormer/MetaFormer layer"):
        rename_keys({"encoder.block.0.0.weight": None, "text_model.embeddings.weight": None}, "transformers")

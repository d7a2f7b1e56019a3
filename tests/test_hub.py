"""Publishing a model folder with the real huggingface_hub client against a loopback Hub (no internet)."""

import json
import os
import runpy
import subprocess
import sys
import threading

import pytest
import torch
from huggingface_hub import HfApi
from huggingface_hub.errors import RepositoryNotFoundError
from safetensors.torch import load_file, save_file

from hub_fixtures import loopback_hub  # noqa: F401  (a fixture)
from hub_fixtures import REPO_ROOT, folder_digest, fresh_cache_env, save_tiny_model
from isolated_python import run_isolated
from poolformer_hf.hub.publish import PushError, load_model_folder, push_folder_to_hub, validate_model_folder

REPO = "test-org/tiny-poolformer"

# Run by run_isolated: a fresh `python -I` in a temp dir where poolformer_hf cannot be imported, so
# everything, code files included, comes from the repo through huggingface_hub.
LOAD_BY_REPO_ID = """
import re
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModelForImageClassification
model = AutoModelForImageClassification.from_pretrained({repo!r}, trust_remote_code=True).eval()
with torch.no_grad():
    logits = model(pixel_values=load_file("inputs.safetensors")["pixel_values"]).logits
save_file({{"logits": logits.contiguous()}}, {out!r})
"""
RUN_CARD_SNIPPETS = """
from huggingface_hub import hf_hub_download
card = open(hf_hub_download({repo!r}, "README.md")).read()
snippets = re.findall(r"```python\\n(.*?)```", card, flags=re.S)
assert len(snippets) == 2, card  # AutoModel + processor, and pipeline
for snippet in snippets:
    exec(snippet, {{}})
"""


@pytest.fixture
def model_dir(tmp_path):
    folder = tmp_path / "model"
    save_tiny_model(folder)
    return folder


def test_cli_push_then_load_by_repo_id_in_fresh_process_then_offline_from_cache(loopback_hub, model_dir, tmp_path):
    # The push runs as users run it: the script in its own process, told where the Hub is only by HF_ENDPOINT
    # and who they are only by HF_TOKEN (both set by the fixture).
    env = {**os.environ, **fresh_cache_env(tmp_path / "pusher_hf_home"), "PYTHONPATH": str(REPO_ROOT)}
    script = [sys.executable, str(REPO_ROOT / "scripts" / "push_to_hub.py"), "--model_dir", str(model_dir)]
    pushed = subprocess.run(script + ["--repo_id", REPO], env=env, capture_output=True, text=True, timeout=300)
    assert pushed.returncode == 0, pushed.stderr
    assert "model.safetensors" in HfApi().list_repo_files(REPO)

    pixel_values = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    save_file({"pixel_values": pixel_values}, tmp_path / "inputs.safetensors")
    with torch.no_grad():
        expected = load_model_folder(model_dir)(pixel_values=pixel_values).logits
    user_cache = fresh_cache_env(tmp_path / "user_hf_home")  # empty: not the pushing process's cache

    online = LOAD_BY_REPO_ID.format(repo=REPO, out="online.safetensors") + RUN_CARD_SNIPPETS.format(repo=REPO)
    run_isolated(online, tmp_path, env_overrides=user_cache)
    assert torch.equal(load_file(tmp_path / "online.safetensors")["logits"], expected)

    loopback_hub.stop()  # nothing answers any more: the next load can only use the cache
    offline = LOAD_BY_REPO_ID.format(repo=REPO, out="offline.safetensors")
    run_isolated(offline, tmp_path, env_overrides=fresh_cache_env(tmp_path / "user_hf_home", offline=True))
    assert torch.equal(load_file(tmp_path / "offline.safetensors")["logits"], expected)


def test_push_uploads_weights_config_processor_and_a_generated_card_but_no_pickles(loopback_hub, model_dir):
    (model_dir / "training_args.bin").write_bytes(b"pickled")
    (model_dir / "pytorch_model.bin").write_bytes(b"pickled")
    before = folder_digest(model_dir)

    result = push_folder_to_hub(model_dir, REPO)

    files = set(HfApi().list_repo_files(REPO))
    assert {"config.json", "model.safetensors", "README.md"} <= files
    assert not any(name.endswith(".bin") for name in files)
    assert {"training_args.bin", "pytorch_model.bin"} <= set(result.skipped)
    card = loopback_hub.store.read_file(REPO, "main", "README.md").decode()
    assert card.startswith("---\n") and "pipeline_tag: image-classification" in card
    assert folder_digest(model_dir) == before  # the card was generated in memory, not written to the folder


def test_a_readme_in_the_folder_is_published_as_is(loopback_hub, model_dir):
    (model_dir / "README.md").write_text("---\nlicense: apache-2.0\n---\n# My own card\n")
    push_folder_to_hub(model_dir, REPO)
    assert loopback_hub.store.read_file(REPO, "main", "README.md") == (model_dir / "README.md").read_bytes()


def test_unchanged_folder_pushed_again_makes_no_commit_but_a_change_does(loopback_hub, model_dir):
    first = push_folder_to_hub(model_dir, REPO)
    commits = loopback_hub.commit_count(REPO)

    again = push_folder_to_hub(model_dir, REPO)
    assert not again.created_commit and again.commit_oid == first.commit_oid
    assert loopback_hub.commit_count(REPO) == commits

    config = json.loads((model_dir / "config.json").read_text())
    config["id2label"] = {"0": "cat", "1": "dog", "2": "bird"}
    config["label2id"] = {"cat": 0, "dog": 1, "bird": 2}
    (model_dir / "config.json").write_text(json.dumps(config))
    changed = push_folder_to_hub(model_dir, REPO)
    assert changed.created_commit and loopback_hub.commit_count(REPO) == commits + 1


def test_push_to_a_branch_leaves_main_alone(loopback_hub, model_dir):
    result = push_folder_to_hub(model_dir, REPO, revision="experiment", commit_message="try a branch")

    api = HfApi()
    assert result.revision == "experiment"
    assert "model.safetensors" in api.list_repo_files(REPO, revision="experiment")
    assert "model.safetensors" not in api.list_repo_files(REPO)  # main only has the repo's initial commit
    assert {b.name for b in api.list_repo_refs(REPO).branches} == {"main", "experiment"}
    assert api.list_repo_commits(REPO, revision="experiment")[0].title == "try a branch"


def test_private_push_is_invisible_without_the_token(loopback_hub, model_dir):
    push_folder_to_hub(model_dir, REPO, private=True)

    assert HfApi().model_info(REPO).private is True
    with pytest.raises(RepositoryNotFoundError):
        HfApi(token=False).model_info(REPO)


def _push_script_main():
    return runpy.run_path(str(REPO_ROOT / "scripts" / "push_to_hub.py"), run_name="push_to_hub")["main"]


def test_failed_upload_exits_nonzero_names_the_step_and_leaves_the_folder_untouched(loopback_hub, model_dir, capsys):
    loopback_hub.fail("commit", status=500)
    before = folder_digest(model_dir)

    status = _push_script_main()(["--model_dir", str(model_dir), "--repo_id", REPO])

    stderr = capsys.readouterr().err
    assert status == 1, stderr
    assert "failed while uploading" in stderr and REPO in stderr and "500" in stderr
    assert folder_digest(model_dir) == before
    assert loopback_hub.commit_count(REPO) == 1  # only the repo's initial commit


def test_script_pushes_and_refuses_with_distinct_exit_codes(loopback_hub, model_dir, capsys):
    main = _push_script_main()
    assert main(["--model_dir", str(model_dir), "--repo_id", REPO, "--private", "--revision", "dev"]) == 0
    assert "committed" in capsys.readouterr().out
    assert loopback_hub.store.repo(REPO).private
    (model_dir / "config.json").unlink()
    assert main(["--model_dir", str(model_dir), "--repo_id", REPO]) == 2
    assert "no config.json" in capsys.readouterr().err


def test_push_uses_the_token_from_hf_token(loopback_hub, model_dir, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_not_the_right_token")
    with pytest.raises(PushError, match="401"):
        push_folder_to_hub(model_dir, REPO)
    assert loopback_hub.requests_to("commit") == []


def test_failed_upload_raises_push_error(loopback_hub, model_dir):
    loopback_hub.fail("create_repo", status=503, times=None)
    with pytest.raises(PushError, match="creating repository"):
        push_folder_to_hub(model_dir, REPO)


def _remove_weights(folder):
    (folder / "model.safetensors").unlink()


def _pickle_only(folder):
    state = load_file(folder / "model.safetensors")
    (folder / "model.safetensors").unlink()
    torch.save(state, folder / "pytorch_model.bin")


def _shrink_config(folder):
    config = json.loads((folder / "config.json").read_text())
    config["hidden_sizes"] = [h * 2 for h in config["hidden_sizes"]]
    (folder / "config.json").write_text(json.dumps(config))


def _remove_config(folder):
    (folder / "config.json").unlink()


def _drop_a_tensor(folder):
    state = load_file(folder / "model.safetensors")
    state.pop(sorted(state)[-1])
    save_file(state, folder / "model.safetensors", metadata={"format": "pt"})


def _remove_modeling_code(folder):
    (folder / "modeling_poolformer.py").unlink()


def _remove_an_imported_code_file(folder):
    (folder / "layers.py").unlink()


def _drop_auto_map(folder):
    config = json.loads((folder / "config.json").read_text())
    del config["auto_map"]
    (folder / "config.json").write_text(json.dumps(config))


@pytest.mark.parametrize(
    "breakage, message",
    [
        (_remove_weights, "no weights"),
        (_pickle_only, "pickle files only"),
        (_shrink_config, "config.json does not match the weights"),
        (_remove_config, "no config.json"),
        (_drop_a_tensor, "missing from the weights"),
        (_remove_modeling_code, "needs modeling_poolformer.py"),
        (_remove_an_imported_code_file, "imports a missing file"),
        (_drop_auto_map, "unknown to transformers"),
    ],
)
def test_broken_folder_is_refused_before_any_request(loopback_hub, model_dir, breakage, message):
    breakage(model_dir)
    with pytest.raises(ValueError, match=message):
        push_folder_to_hub(model_dir, REPO)
    assert loopback_hub.requests == []


def test_validate_lists_what_would_be_uploaded(model_dir):
    (model_dir / "notes.txt").write_text("scratch")
    plan = validate_model_folder(model_dir)
    assert plan.files[:2] == ("config.json", "model.safetensors")
    assert "notes.txt" in plan.skipped and not plan.has_readme


# ------------------------------------------------------------------------------ hangs, drops and one-off outages
def _push_in_thread(model_dir, **kwargs):
    """Run a push in a thread that must end within 120 s (a hang fails the test instead of stalling the suite)."""
    outcome = {}

    def target():
        try:
            outcome["result"] = push_folder_to_hub(model_dir, REPO, **kwargs)
        except Exception as error:  # noqa: BLE001 - handed to the test
            outcome["error"] = error

    worker = threading.Thread(target=target, daemon=True)
    worker.start()
    worker.join(120)
    assert not worker.is_alive(), "the push hung"
    return outcome


def test_an_endpoint_that_never_answers_the_commit_fails_naming_the_step(loopback_hub, model_dir):
    loopback_hub.stall("commit")
    before = folder_digest(model_dir)
    outcome = _push_in_thread(model_dir, request_timeout=1)
    error = outcome["error"]
    assert isinstance(error, PushError) and "timed out while uploading" in str(error), error
    assert folder_digest(model_dir) == before and loopback_hub.commit_count(REPO) == 1


def test_the_overall_timeout_bounds_the_push_and_names_the_step(loopback_hub, model_dir):
    loopback_hub.stall("model_info")
    outcome = _push_in_thread(model_dir, timeout=2, request_timeout=60)
    error = outcome["error"]
    assert isinstance(error, PushError) and "timed out while reading the head" in str(error), error
    assert "--timeout of 2 s" in str(error)


def test_a_connection_dropped_mid_commit_is_retried_once_then_commits_once(loopback_hub, model_dir):
    loopback_hub.drop("commit", times=1)
    outcome = _push_in_thread(model_dir, request_timeout=5)
    assert outcome["result"].created_commit
    assert len(loopback_hub.requests_to("commit")) == 2 and loopback_hub.commit_count(REPO) == 2


def test_a_connection_dropped_every_time_fails_after_bounded_retries(loopback_hub, model_dir):
    loopback_hub.drop("commit")
    before = folder_digest(model_dir)
    error = _push_in_thread(model_dir, request_timeout=5)["error"]
    assert isinstance(error, PushError) and "failed while uploading" in str(error) and "attempts" in str(error)
    assert len(loopback_hub.requests_to("commit")) == 4 and folder_digest(model_dir) == before


def test_a_single_503_on_commit_is_retried(loopback_hub, model_dir):
    loopback_hub.fail("commit", status=503, times=1)
    result = _push_in_thread(model_dir)["result"]
    assert result.created_commit and loopback_hub.commit_count(REPO) == 2
    assert "model.safetensors" in HfApi().list_repo_files(REPO)


def test_script_timeout_ends_in_an_error_line(loopback_hub, model_dir, capsys):
    loopback_hub.stall("create_repo")
    status = _push_script_main()(["--model_dir", str(model_dir), "--repo_id", REPO, "--timeout", "2"])
    stderr = capsys.readouterr().err
    assert status == 1 and stderr.startswith("error: ") and "timed out while creating repository" in stderr

"""`rmr1 release`: a tiny judge checkpoint, evaluated by the real evaluate stage with a secret in the environment,
released as a folder Hugging Face loads as it is: the same verdicts as the store's checkpoint, a model card whose
`model-index` equals the published scores, no secret anywhere in it; `--push-to-hub` up to the huggingface_hub
call (the Hub is unreachable here)."""

from __future__ import annotations

from pathlib import Path

import pytest

from data_contracts.kinds import EVAL_SCORES
from flows.cli import main as rmr1
from tasks.evaluate.config import BenchmarkConfig, EvaluateConfig
from tasks.evaluate.stage import evaluate_judge, evaluate_versions
from tasks.judge.api import PairwiseJudge
from tasks.judge.config import JudgeConfig
from tasks.standins.synthetic_pairs import synthetic_records
from tests.helpers.judges import VERSION, publish_tiny_judge

SECRET = "sk-rmr1-release-SECRET-5f0c2d9e"


def test_a_release_loads_as_it_is_judges_like_the_store_and_its_card_holds_the_scores(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from huggingface_hub import ModelCard
    from transformers import AutoModelForCausalLM, AutoTokenizer

    monkeypatch.setenv("RMR1_TEST_SECRET_KEY", SECRET)
    records = synthetic_records(20, 3)
    store = publish_tiny_judge(tmp_path, [r["chosen"] + r["rejected"] for r in records])
    checkpoint = store.require("rl_checkpoint", VERSION)
    benchmarks = tuple(
        BenchmarkConfig(name=n, path="synthetic", items_per_subset=2) for n in ("rewardbench", "ppe_human")
    )
    config = EvaluateConfig(judge=JudgeConfig(backend="hf", max_new_tokens=4, batch_size=8), benchmarks=benchmarks)
    evaluate_judge(config, store, checkpoint, versions=evaluate_versions(config, checkpoint))
    scores = store.read_table(store.resolve(EVAL_SCORES.kind)).to_pylist()
    published = {r["benchmark"]: r["score"] for r in scores if r["level"] == "benchmark" and r["name"] == "score"}
    assert set(published) == {"rewardbench", "ppe_human"}

    out = tmp_path / "release"
    art = ["--artifacts", str(store.root)]
    assert rmr1(["artifacts", "tag", f"rl_checkpoint/{VERSION}", "production", *art]) == 0
    assert rmr1(["release", "rl_checkpoint@production", "--to", str(out), "--name", "tiny-judge", *art]) == 0
    assert f"released rl_checkpoint/{VERSION} to {out}" in capsys.readouterr().out
    files = {p.name for p in out.iterdir()}
    assert {"config.json", "generation_config.json", "model.safetensors", "tokenizer.json", "README.md"} <= files
    assert "_manifest.json" not in files
    AutoModelForCausalLM.from_pretrained(out)
    assert AutoTokenizer.from_pretrained(out).chat_template  # the chat template travels with the tokenizer

    pairs = [(r["conversation"], r["chosen"], r["rejected"]) for r in records]
    released = PairwiseJudge.from_model(str(out), max_new_tokens=8).compare_many(pairs)
    stored = PairwiseJudge.from_artifact(store, "rl_checkpoint@production", max_new_tokens=8).compare_many(pairs)
    assert [j.traces for j in released] == [j.traces for j in stored] and len(released) == 20

    card = ModelCard.load(out / "README.md")
    index = {r.dataset_type: r.metric_value for r in card.data.eval_results}
    assert index == {name: round(score, 4) for name, score in published.items()}
    assert "cor-instruct-v1" in card.text and f"rl_checkpoint/{VERSION}" in card.text
    for path in out.rglob("*"):
        assert not path.is_file() or SECRET.encode() not in path.read_bytes(), path

    assert rmr1(["release", "rl_checkpoint", "--to", str(out), *art]) == 2  # an existing release is not touched
    assert "is not empty" in capsys.readouterr().err
    assert rmr1(["release", "eval_scores", "--to", str(tmp_path / "other"), *art]) == 2
    assert "only a model checkpoint" in capsys.readouterr().err


def test_push_to_hub_uploads_the_folder_to_the_named_repo_and_branch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Up to the huggingface_hub calls: the repo is created private, the branch made, the folder uploaded."""
    import huggingface_hub

    from tasks.release import push_to_hub

    calls: list[tuple[str, object]] = []
    monkeypatch.setattr(
        huggingface_hub.HfApi, "create_repo", lambda self, repo_id, **kw: calls.append(("repo", (repo_id, kw)))
    )
    monkeypatch.setattr(
        huggingface_hub.HfApi, "create_branch", lambda self, repo_id, **kw: calls.append(("branch", (repo_id, kw)))
    )
    monkeypatch.setattr(
        huggingface_hub.HfApi,
        "upload_folder",
        lambda self, **kw: calls.append(("upload", kw)) or "https://hub/commit/1",
    )
    assert push_to_hub(str(tmp_path), "org/judge", "v1") == "https://hub/commit/1"
    assert calls[0] == ("repo", ("org/judge", {"repo_type": "model", "private": True, "exist_ok": True}))
    assert calls[1] == ("branch", ("org/judge", {"branch": "v1", "repo_type": "model", "exist_ok": True}))
    assert calls[2][1]["folder_path"] == str(tmp_path) and calls[2][1]["revision"] == "v1"  # type: ignore[index]


def test_release_ui_leaves_the_card_and_the_tags_in_the_prefect_ui(
    tmp_path: Path, prefect_server: dict[str, str]
) -> None:
    import httpx
    from prefect.settings import PREFECT_API_URL, temporary_settings

    store = publish_tiny_judge(tmp_path, ["a few words"])
    art = ["--artifacts", str(store.root)]
    assert rmr1(["artifacts", "tag", f"rl_checkpoint/{VERSION}", "candidate", *art]) == 0
    url = prefect_server["PREFECT_API_URL"]
    with temporary_settings({PREFECT_API_URL: url}):
        assert rmr1(["release", "rl_checkpoint@candidate", "--to", str(tmp_path / "out"), "--ui", *art]) == 0
    key = f"release-rl-checkpoint-{VERSION}"
    [artifact] = httpx.post(f"{url}/artifacts/filter", json={"artifacts": {"key": {"any_": [key]}}}).json()
    assert f"### Release of `rl_checkpoint/{VERSION}` (tags: candidate)" in artifact["data"]
    assert "## How to call it" in artifact["data"] and "model-index" not in artifact["data"]
    assert (tmp_path / "out" / "README.md").exists()

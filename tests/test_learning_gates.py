"""The smoke run's judge learns, and the gates fail a run whose judge did not.

The clean smoke recipe (its gates as written) must pass; each planted fault must fail a gate: the GRPO reward
with its sign flipped, the SFT data with its verdict tags shuffled, and a judge template at judging time that
differs from the one trained on. Every case trains the real tiny student with TRL, so they are `slow`; CI runs
them (`.ci/run`) on the artifacts of its own smoke run (`$RMR1_SMOKE_ARTIFACTS`), which the clean case re-plans
with every stage skipped. Each sabotaged run copies the clean store and removes what the fault changes, so
everything upstream is reused and only the fault differs.
"""

from __future__ import annotations

import os
import random
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

import tasks.evaluate.stage
import tasks.train.rl
import tasks.train.sft
from data_contracts import ArtifactStore
from flows.plan import GateFailed, execute, make_plan
from flows.recipe import load_recipe
from tasks.judge.protocol import load_template_set
from tasks.learning.stage import learning_lines
from tasks.recipe import Recipe
from tests.conftest import ROOT

pytestmark = pytest.mark.slow
SMOKE = ROOT / "recipes" / "smoke.yaml"


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Recipe, Path]]:
    """The clean smoke run's store: CI's own (every stage skipped), else one run here (~5 minutes)."""
    root = Path(os.environ.get("RMR1_SMOKE_ARTIFACTS") or tmp_path_factory.mktemp("smoke-clean"))
    recipe = load_recipe(SMOKE)
    try:
        execute(make_plan(recipe, ArtifactStore(str(root))))
    except GateFailed as missed:  # the clean judge missed a gate: the first case below fails and says so
        print(missed)
    yield recipe, root


def _copy_without(root: Path, target: Path, kinds: tuple[str, ...]) -> ArtifactStore:
    """A copy of the clean store without `kinds` (they are made again, with the fault)."""
    shutil.copytree(root, target, ignore=shutil.ignore_patterns(".work", *kinds))
    return ArtifactStore(str(target))


def _scores(store: ArtifactStore) -> list[str]:
    ref = store.resolve("learning_scores")
    return learning_lines(store.read_table(ref).to_pylist())


def test_the_clean_smoke_judge_passes_every_gate_and_learned(clean: tuple[Recipe, Path]) -> None:
    recipe, root = clean
    store = ArtifactStore(str(root))
    rows = {r["judge"]: r for r in store.read_table(store.resolve("learning_scores")).to_pylist()}
    print("\n".join(_scores(store)))
    assert recipe.learning is not None and recipe.learning.gates.min_rl_accuracy is not None
    assert rows["rl"]["accuracy"] >= recipe.learning.gates.min_rl_accuracy
    assert rows["untrained"]["accuracy"] <= 0.6 and rows["length"]["accuracy"] <= 0.6


def test_a_flipped_reward_sign_fails_a_gate(
    clean: tuple[Recipe, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    recipe, root = clean
    store = _copy_without(root, tmp_path / "store", ("rl_checkpoint", "learning_scores"))
    reward = tasks.train.rl.rl_reward
    monkeypatch.setattr(tasks.train.rl, "rl_reward", lambda text, winner: -reward(text, winner))
    with pytest.raises(GateFailed, match=r"gate learning\.gates\.(min_rl_accuracy|max_rl_drop)") as failed:
        execute(make_plan(recipe, store, target="learning"))
    print(failed.value, *_scores(store), sep="\n")


def test_shuffled_verdict_tags_in_the_sft_data_fail_a_gate(
    clean: tuple[Recipe, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    recipe, root = clean
    store = _copy_without(root, tmp_path / "store", ("sft_checkpoint", "rl_checkpoint", "learning_scores"))
    rows_of = tasks.train.sft.sft_rows
    draw = random.Random(0)

    def shuffled(examples: list[dict]) -> list[dict]:
        rows = rows_of(examples)
        for row in rows:
            tag = draw.choice(("[[A]]", "[[B]]"))
            row["completion"][0]["content"] = re.sub(r"\[\[[AB]\]\]", tag, row["completion"][0]["content"])
        return rows

    monkeypatch.setattr(tasks.train.sft, "sft_rows", shuffled)
    with pytest.raises(GateFailed, match=r"gate learning\.gates\.min_sft_accuracy") as failed:
        execute(make_plan(recipe, store, target="learning"))
    print(failed.value, *_scores(store), sep="\n")


def test_a_judging_template_that_differs_from_training_fails_a_gate(
    clean: tuple[Recipe, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    recipe, root = clean
    store = _copy_without(root, tmp_path / "store", ("learning_scores",))
    other = load_template_set("cor-instruct-v1")  # trained on cor-compact-v1: the same layout, another system prompt
    monkeypatch.setattr(tasks.evaluate.stage, "load_template_set", lambda name: other)
    with pytest.raises(GateFailed, match=r"gate learning\.gates\.min_(sft|rl)_accuracy") as failed:
        execute(make_plan(recipe, store, target="learning"))
    print(failed.value, *_scores(store), sep="\n")


def test_a_release_of_the_smoke_judge_judges_as_the_store_does_and_carries_its_scores(
    clean: tuple[Recipe, Path], tmp_path: Path
) -> None:
    """The issue's check on the smoke recipe's own rl_checkpoint: the released folder, loaded with transformers,
    gives the store's checkpoint's verdicts on 20 held-out pairs; the card's model-index equals its eval_scores."""
    from huggingface_hub import ModelCard

    from tasks.evaluate.benchmarks import load_benchmark
    from tasks.evaluate.config import BenchmarkConfig
    from tasks.evaluate.promotion import published_scores
    from tasks.judge.api import PairwiseJudge
    from tasks.release import judge_template, release

    _, root = clean
    store = ArtifactStore(str(root))
    ref, out = release(store, "rl_checkpoint", str(tmp_path / "release"))
    assert judge_template(store, ref) == "cor-compact-v1"  # what the smoke judge was trained and evaluated with
    items = load_benchmark(BenchmarkConfig(name="refusal_task", path="synthetic", sample_seed=2))[:20]
    pairs = [(c.conversation, c.chosen, c.rejected) for c in items]
    options = {"template": "cor-compact-v1", "max_new_tokens": 96, "batch_size": 20}
    released = PairwiseJudge.from_model(out, **options).compare_many(pairs)  # type: ignore[arg-type]
    stored = PairwiseJudge.from_artifact(store, "rl_checkpoint", **options).compare_many(pairs)  # type: ignore[arg-type]
    assert [j.verdict for j in released] == [j.verdict for j in stored] and len(released) == 20
    assert sum(j.verdict == "a" for j in stored) >= 16  # the trained judge prefers the first answer (chosen) here
    card = ModelCard.load(Path(out) / "README.md")
    index = {r.dataset_type: r.metric_value for r in card.data.eval_results}
    assert index == {name: round(score, 4) for name, score in published_scores(store, ref).items()} != {}

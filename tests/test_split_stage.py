"""The split stage: seeded, disjoint, balanced, order-independent, skipped (by the plan) when published."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from data_contracts import ArtifactRef, ArtifactStore, publish_table
from data_contracts.kinds import PREFERENCE_PAIRS
from flows.plan import Plan, Step, execute, plan_step
from flows.recipe import Recipe
from tasks.pull.config import PullConfig, SourceConfig
from tasks.split import stage as split_stage
from tasks.split.config import SplitConfig
from tasks.split.stage import STAGE, chosen_at_a, distill_mask, split_versions
from tasks.stage import StageResult

DOMAIN_SIZES = {"chat": 100, "safety": 50, "code": 30, "math": 20}


def split_pairs(pairs: ArtifactRef, config: SplitConfig, store: ArtifactStore) -> StageResult:
    """The stage as the plan runs it: the versions it publishes computed from the config and the pairs."""
    return split_stage.split_pairs(pairs, config, store, versions=split_versions(config, pairs))


def make_pairs(store: ArtifactStore, version: str = "pairs-v1", shuffle: bool = False) -> tuple:
    rows = [
        {
            "pair_id": f"{domain}-{i:03d}",
            "source": "src",
            "domain": domain,
            "conversation": [{"role": "user", "content": f"{domain} question {i}"}],
            "chosen": f"good answer {i}",
            "rejected": f"poor answer {i}",
            "source_ref": f"file.jsonl#row={i}",
        }
        for domain, n in DOMAIN_SIZES.items()
        for i in range(n)
    ]
    if shuffle:
        random.Random(1).shuffle(rows)
    ref = publish_table(store, PREFERENCE_PAIRS, version, pa.Table.from_pylist(rows, schema=PREFERENCE_PAIRS.schema))
    return ref, rows


def test_split_is_disjoint_complete_and_takes_the_fraction_in_every_domain(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    pairs, rows = make_pairs(store)
    result = split_pairs(pairs, SplitConfig(distill_fraction=0.12), store)
    distill = store.read_table(result.outputs["distill_set"])
    rl = store.read_table(result.outputs["rl_set"])
    distill_ids, rl_ids = set(distill.column("pair_id").to_pylist()), set(rl.column("pair_id").to_pylist())
    assert not distill_ids & rl_ids
    assert distill_ids | rl_ids == {r["pair_id"] for r in rows}
    # round(0.12 × n) per domain: 12, 6, 4 (3.6), 2 (2.4)
    assert result.stats["distill_set"]["by_domain"] == {"chat": 12, "code": 4, "math": 2, "safety": 6}
    assert result.stats["rl_set"]["rows"] == 200 - 24


def test_alternating_placement_balances_labels_and_keeps_answers_with_their_label(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    pairs, rows = make_pairs(store)
    result = split_pairs(pairs, SplitConfig(), store)
    by_id = {r["pair_id"]: r for r in rows}
    for kind in ("distill_set", "rl_set"):
        table = store.read_table(result.outputs[kind]).to_pylist()
        winners = [r["winner"] for r in table]
        assert winners[:4] == ["model_a", "model_b", "model_a", "model_b"]
        assert abs(winners.count("model_a") - winners.count("model_b")) <= 1
        for row in table:
            chosen = row["answer_a"] if row["winner"] == "model_a" else row["answer_b"]
            rejected = row["answer_b"] if row["winner"] == "model_a" else row["answer_a"]
            assert (chosen, rejected) == (by_id[row["pair_id"]]["chosen"], by_id[row["pair_id"]]["rejected"])
    assert result.stats["rl_set"]["winner"] == {"model_a": 88, "model_b": 88}


def test_subset_choice_depends_on_seed_and_ids_only_not_on_row_order(tmp_path: Path) -> None:
    ids = [f"p{i}" for i in range(500)]
    domains = ["chat"] * 500
    mask = distill_mask(ids, domains, 0.1, seed=42, stratify=True)
    order = np.random.default_rng(0).permutation(500)
    shuffled = distill_mask([ids[i] for i in order], domains, 0.1, seed=42, stratify=True)
    assert {ids[i] for i in np.flatnonzero(mask)} == {ids[order[i]] for i in np.flatnonzero(shuffled)}
    assert mask.sum() == 50
    assert not np.array_equal(mask, distill_mask(ids, domains, 0.1, seed=43, stratify=True))


def test_random_placement_is_seeded_per_pair() -> None:
    ids = [f"p{i}" for i in range(1000)]
    at_a = chosen_at_a(ids, "random", seed=42)
    assert np.array_equal(at_a, chosen_at_a(ids, "random", seed=42))
    assert not np.array_equal(at_a, chosen_at_a(ids, "random", seed=7))
    assert 450 < at_a.sum() < 550
    assert np.array_equal(chosen_at_a(ids[::-1], "random", seed=42), at_a[::-1])


def test_zero_fraction_sends_every_pair_to_rl(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    pairs, rows = make_pairs(store)
    result = split_pairs(pairs, SplitConfig(distill_fraction=0.0), store)
    assert result.stats["distill_set"]["rows"] == 0
    assert store.read_table(result.outputs["rl_set"]).num_rows == len(rows)
    assert store.read_table(result.outputs["distill_set"]).schema.names[:3] == ["pair_id", "source", "domain"]


def _recipe(split: SplitConfig) -> Recipe:
    source = SourceConfig(name="syn", adapter="synthetic", rows=10, seed=0)  # the plan here starts at the split
    return Recipe(name="split-twice", pull=PullConfig(sources=(source,)), split=split)


def _no_stage(step: Step) -> Any:
    raise AssertionError(f"a published step ran: {step.name}")


def test_second_split_is_skipped_and_a_changed_value_gives_new_versions(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    pairs, _ = make_pairs(store)
    recipe = _recipe(SplitConfig())
    step = plan_step(STAGE, recipe, store, {PREFERENCE_PAIRS.kind: pairs})
    assert step.runs and step.versions == split_versions(SplitConfig(), pairs)
    first = split_pairs(pairs, SplitConfig(), store)
    assert first.outputs == step.outputs  # published where the plan said it would be
    again = plan_step(STAGE, recipe, store, {PREFERENCE_PAIRS.kind: pairs})
    assert again.published and not again.runs and again.outputs == first.outputs
    assert execute(Plan(recipe, store, (again,)), _no_stage) == first.outputs  # and no stage runs
    for kind, ref in first.outputs.items():
        assert store.manifest(ref)["stats"] == first.stats[kind]  # a skip reports the run's counts
    changed = split_versions(SplitConfig(seed=1), pairs)
    assert set(changed.values()).isdisjoint({ref.version for ref in first.outputs.values()})
    assert plan_step(STAGE, _recipe(SplitConfig(seed=1)), store, {PREFERENCE_PAIRS.kind: pairs}).runs
    other_pairs, _ = make_pairs(store, version="pairs-v2")
    assert split_versions(SplitConfig(), other_pairs) != split_versions(SplitConfig(), pairs)
    assert plan_step(STAGE, recipe, store, {PREFERENCE_PAIRS.kind: other_pairs}).runs


@pytest.mark.parametrize("fraction", [-0.1, 1.0])
def test_fraction_out_of_range_is_refused(fraction: float) -> None:
    with pytest.raises(ValueError, match="distill_fraction"):
        SplitConfig(distill_fraction=fraction)

"""The split stage: a seeded, order-independent split of `preference_pairs` into `distill_set` and `rl_set`.

Subset choice: every pair gets a key = sha256(seed, pair_id); within each domain (or globally) the
round(fraction × n) pairs with the smallest keys form the distillation subset and the rest the RL set.
The choice depends only on the seed and the pair ids, so adding a source does not reshuffle the pairs that
were already there, and the two sets are disjoint by construction.

A/B placement: `alternate` puts the chosen answer at A, B, A, B... in row order within each set (the
authors' global counter, docs/method.md §4, applied per set so each set is balanced to within one pair);
`random` flips a seeded coin per pair (sha256 of seed, pair id). The label is `winner ∈ {model_a,
model_b}`.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections import Counter
from collections.abc import Mapping
from typing import Any

import numpy as np
import pyarrow as pa

from data_contracts import ArtifactRef, ArtifactStore, artifact_version, publish_table
from data_contracts.kinds import DISTILL_SET, PREFERENCE_PAIRS, RL_SET
from tasks.judge.protocol import place_pair
from tasks.recipe import Recipe
from tasks.split.config import SplitConfig
from tasks.stage import Stage, StageResult, StageRun, Tables, reads

# Bump when the rows this stage writes for the same inputs would change.
CODE_VERSION = "split-1"

log = logging.getLogger(__name__)


def split_versions(config: SplitConfig, pairs: ArtifactRef) -> dict[str, str]:
    """The versions of `distill_set` and `rl_set` made from `pairs` with `config`."""
    upstream = {PREFERENCE_PAIRS.kind: pairs.version}
    return {c.kind: artifact_version(c.kind, c.version, config, upstream, CODE_VERSION) for c in (DISTILL_SET, RL_SET)}


def _seeded_key(seed: int, salt: str, pair_id: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}:{salt}:{pair_id}".encode()).digest()[:8], "big")


def distill_mask(pair_ids: list[str], domains: list[str], fraction: float, seed: int, stratify: bool) -> np.ndarray:
    """True for the pairs of the distillation subset: the smallest seeded keys, per domain if stratified."""
    keys = np.array([_seeded_key(seed, "split", p) for p in pair_ids], dtype=np.uint64)
    groups = np.array(domains if stratify else [""] * len(pair_ids), dtype=object)
    mask = np.zeros(len(pair_ids), dtype=bool)
    for group in sorted(set(groups.tolist())):
        members = np.flatnonzero(groups == group)
        take = math.floor(fraction * len(members) + 0.5)
        mask[members[np.argsort(keys[members], kind="stable")[:take]]] = True
    return mask


def chosen_at_a(pair_ids: list[str], placement: str, seed: int) -> np.ndarray:
    """True where the chosen answer is shown as Chatbot A."""
    if placement == "alternate":
        return np.arange(len(pair_ids)) % 2 == 0
    return np.array([_seeded_key(seed, "placement", p) % 2 == 0 for p in pair_ids], dtype=bool)


def place_answers(pairs: pa.Table, at_a: np.ndarray) -> pa.Table:
    """`preference_pairs` rows → judge pairs: answer_a/answer_b and the winner label (judge protocol)."""
    placed = [
        place_pair(chosen, rejected, "A" if first else "B")
        for chosen, rejected, first in zip(
            pairs.column("chosen").to_pylist(), pairs.column("rejected").to_pylist(), at_a.tolist(), strict=True
        )
    ]
    answer_a, answer_b, winner = (list(column) for column in zip(*placed, strict=True)) if placed else ([], [], [])
    return pa.table(
        {
            "pair_id": pairs.column("pair_id"),
            "source": pairs.column("source"),
            "domain": pairs.column("domain"),
            "conversation": pairs.column("conversation"),
            "answer_a": pa.array(answer_a, pa.string()),
            "answer_b": pa.array(answer_b, pa.string()),
            "winner": pa.array(winner, pa.string()),
            "source_ref": pairs.column("source_ref"),
        }
    )


def describe_set(table: pa.Table) -> dict[str, Any]:
    """Counts people check after a split: rows, label balance, rows by domain and by source/domain."""
    sources, domains = table.column("source").to_pylist(), table.column("domain").to_pylist()
    return {
        "rows": table.num_rows,
        "winner": dict(sorted(Counter(table.column("winner").to_pylist()).items())),
        "by_domain": dict(sorted(Counter(domains).items())),
        "by_source_domain": dict(sorted(Counter(f"{s}/{d}" for s, d in zip(sources, domains, strict=True)).items())),
    }


def split_pairs(
    pairs: ArtifactRef, config: SplitConfig, store: ArtifactStore, *, versions: Mapping[str, str]
) -> StageResult:
    """Publish `distill_set` and `rl_set` from `pairs` as `versions` (`split_versions`, computed by the plan)."""
    table = store.read_table(pairs)
    pair_ids = table.column("pair_id").to_pylist()
    in_distill = distill_mask(
        pair_ids, table.column("domain").to_pylist(), config.distill_fraction, config.seed, config.stratify_by_domain
    )
    outputs: dict[str, ArtifactRef] = {}
    stats: dict[str, Any] = {}
    for contract, mask in ((DISTILL_SET, in_distill), (RL_SET, ~in_distill)):
        subset = table.filter(pa.array(mask))
        judged = place_answers(subset, chosen_at_a(subset.column("pair_id").to_pylist(), config.placement, config.seed))
        stats[contract.kind] = describe_set(judged)
        outputs[contract.kind] = publish_table(
            store,
            contract,
            versions[contract.kind],
            judged,
            upstream={PREFERENCE_PAIRS.kind: pairs.version},
            config=config,
            code_version=CODE_VERSION,
            stats=stats[contract.kind],
        )
    log.info("split: %s", ", ".join(f"{k} {v['rows']} rows" for k, v in stats.items()))
    return StageResult("split", outputs, stats)


def split_tables(result: StageResult) -> Tables:
    """Rows by source and domain in each set, and the label balance of each set."""
    distill, rl = result.stats[DISTILL_SET.kind], result.stats[RL_SET.kind]
    counts = []
    for key in sorted(set(distill["by_source_domain"]) | set(rl["by_source_domain"])):
        source, domain = key.rsplit("/", 1)
        in_distill, in_rl = distill["by_source_domain"].get(key, 0), rl["by_source_domain"].get(key, 0)
        counts.append(
            {"source": source, "domain": domain, "rows_in": in_distill + in_rl, "distill_set": in_distill,
             "rl_set": in_rl, "rejected": 0}
        )  # fmt: skip
    balance = [
        {"artifact": k, "rows": s["rows"], **s["winner"]} for k, s in ((DISTILL_SET.kind, distill), (RL_SET.kind, rl))
    ]
    return {"counts": counts, "label-balance": balance}


def _versions(recipe: Recipe, inputs: Mapping[str, ArtifactRef]) -> dict[str, str]:
    return split_versions(recipe.split, inputs[PREFERENCE_PAIRS.kind])


def _run(run: StageRun) -> StageResult:
    return split_pairs(run.inputs[PREFERENCE_PAIRS.kind], run.recipe.split, run.store, versions=run.versions)


STAGE = Stage(
    name="split",
    description="Split pairs into distill_set and rl_set.",
    writes=(DISTILL_SET.kind, RL_SET.kind),
    reads=reads(PREFERENCE_PAIRS.kind),
    versions=_versions,
    run=_run,
    tables=split_tables,
)

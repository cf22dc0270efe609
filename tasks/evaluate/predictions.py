"""Read judgments made anywhere (an `eval_predictions` artifact, or Parquet / JSONL of the same columns) and
score them: what `rmr1 score FILE` runs.

A file needs `benchmark, subset, item_id, comparison_id, chosen_position` and either `verdict` or the
judge's raw `output` (read with the evaluation rule, docs/method.md §3). Each benchmark names the further
columns its scorer reads (`Benchmark.needs`; docs/evaluation.md lists them): RM-Bench `group_id`, `category`
and the two styles, RMB `category` (and `group_id` for BoN), ... A benchmark name that is not registered is
scored as a custom pairwise set (accuracy per subset and overall). With several samples per comparison
(`#sample-N` ids) the verdicts are voted. Missing optional columns are filled; `score` is derived from the
verdict, and a given `score` that disagrees is an error. Bad rows are reported with the file, the row and the field.
"""

from __future__ import annotations

import os
import re
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from data_contracts import ArtifactStore
from data_contracts.contract import validate
from data_contracts.errors import UserError
from data_contracts.kinds import EVAL_PREDICTIONS
from data_contracts.store import MANIFEST
from tasks.evaluate.benchmarks import benchmark_of
from tasks.evaluate.scoring import (
    SWAPPED_SUFFIX,
    comparison_score,
    judgement_of,
    sample_of,
    score_predictions,
    scores_as_dict,
)
from tasks.judge.protocol import parse_eval_verdict

REQUIRED = ("benchmark", "subset", "item_id", "comparison_id", "chosen_position")
DEFAULTS: dict[str, Any] = {"group_id": None, "category": None, "chosen_style": None, "rejected_style": None,
                            "judge": "external", "order_seed": -1, "output": None}  # fmt: skip
_REF = re.compile(r"^eval_predictions/([0-9a-f]{4,})$")


class PredictionsError(UserError, ValueError):
    """A predictions file that cannot be scored; the message names the file, the row and the field."""

    exit_code = 2


def _read(path: str, store: ArtifactStore) -> pd.DataFrame:
    match = _REF.match(path)
    if match and not os.path.exists(path):
        try:
            return store.read_table(store.find(EVAL_PREDICTIONS.kind, match.group(1))).to_pandas()
        except (LookupError, FileNotFoundError, ValueError) as error:
            raise PredictionsError(f"{path}: {error}") from None
    if os.path.isdir(path):
        if not os.path.exists(os.path.join(path, MANIFEST)):
            raise PredictionsError(f"{path}: a folder must be a published eval_predictions artifact ({MANIFEST})")
        folder = os.path.abspath(path)
        kind_folder, version = os.path.split(folder)
        root, kind = os.path.split(kind_folder)
        if kind != EVAL_PREDICTIONS.kind:
            raise PredictionsError(f"{path}: is a {kind} artifact, not {EVAL_PREDICTIONS.kind}")
        return ArtifactStore(root).read_table(ArtifactStore(root).require(kind, version)).to_pandas()
    if not os.path.isfile(path):
        raise PredictionsError(f"{path}: no such file, folder or eval_predictions/VERSION")
    try:
        if path.endswith(".parquet"):
            return pq.read_table(path).to_pandas()
        if path.endswith((".jsonl", ".json")):
            return pd.read_json(path, lines=path.endswith(".jsonl"), dtype=False)
    except (ValueError, OSError, pa.ArrowInvalid) as error:
        raise PredictionsError(f"{path}: cannot be read: {error}") from None
    raise PredictionsError(f"{path}: expected .parquet, .jsonl or .json")


def _first(mask: pd.Series) -> int:
    return int(mask.index[mask][0])


def _check_orders_and_samples(frame: pd.DataFrame, path: str) -> None:
    """`swapped` follows the id (`#swapped`; filled in when the column is missing), and every judgement has
    sample 0 and as many samples as the others, so votes are over the same number of verdicts."""
    ids = frame["comparison_id"].astype(str)
    judgement = ids.map(judgement_of)
    by_id = judgement.str.endswith(SWAPPED_SUFFIX)
    if "swapped" not in frame.columns:
        frame["swapped"] = by_id
    elif (disagree := frame["swapped"].astype(bool) != by_id).any():
        row = _first(disagree)
        raise PredictionsError(
            f"{path}, row {row}: field 'swapped' is {frame['swapped'][row]}, but comparison_id {ids[row]!r} says "
            f"{bool(by_id[row])} (the reverse order's id ends in {SWAPPED_SUFFIX})"
        )
    sample = ids.map(sample_of)
    counts = sample.groupby(judgement).agg(["min", "count", "max"])
    broken = counts[(counts["min"] != 0) | (counts["count"] != counts["max"] + 1)]
    uneven = counts[counts["count"] != counts["count"].max()]
    for bad, why in ((broken, "its samples are not 0..N-1"), (uneven, "it has fewer samples than others")):
        if len(bad):
            row = _first(judgement == bad.index[0])
            raise PredictionsError(f"{path}, row {row}: judgement {bad.index[0]!r}: {why} (ids end in #sample-N)")


def read_predictions(path: str, store: ArtifactStore, allow_tie: bool = False) -> pd.DataFrame:
    """The predictions at `path`, completed to the `eval_predictions` contract and checked row by row."""
    frame = _read(path, store)
    missing = [c for c in REQUIRED if c not in frame.columns]
    if "verdict" not in frame.columns and "output" not in frame.columns:
        missing.append("verdict (or output)")
    if missing:
        raise PredictionsError(f"{path}: missing column(s) {', '.join(missing)}")
    for column, value in DEFAULTS.items():
        if column not in frame.columns:
            frame[column] = value
    _check_orders_and_samples(frame, path)
    if "verdict" not in frame.columns:
        frame["verdict"] = [str(parse_eval_verdict(o, allow_tie)) for o in frame["output"]]
    derived = [comparison_score(v, p) for v, p in zip(frame["verdict"], frame["chosen_position"], strict=True)]
    if "score" in frame.columns:
        for row, (given, expected) in enumerate(zip(frame["score"], derived, strict=True)):
            if pd.notna(given) and abs(float(given) - expected) > 1e-9:
                raise PredictionsError(
                    f"{path}, row {row}: field 'score' is {given}, but verdict {frame['verdict'][row]!r} with "
                    f"chosen_position {frame['chosen_position'][row]!r} scores {expected}"
                )
    frame["score"] = derived
    for benchmark in frame["benchmark"].dropna().unique():
        mine = frame[frame["benchmark"] == benchmark]
        for column in benchmark_of(str(benchmark)).needs:
            if column not in frame.columns or mine[column].isna().any():
                row = int(mine.index[mine[column].isna()][0]) if column in frame.columns else int(mine.index[0])
                raise PredictionsError(f"{path}, row {row}: {benchmark} rows need field '{column}'")
    bon = frame[(frame["benchmark"] == "rmb") & frame["subset"].astype(str).str.startswith("bon/")]
    if bon["group_id"].isna().any():
        raise PredictionsError(f"{path}, row {int(bon.index[bon['group_id'].isna()][0])}: RMB BoN rows need 'group_id'")
    for column in ("chosen_style", "rejected_style"):
        frame[column] = frame[column].astype("Int8")
    try:
        valid, rejects = validate(pa.Table.from_pandas(frame, preserve_index=False), EVAL_PREDICTIONS)
    except (pa.ArrowInvalid, pa.ArrowTypeError, ValueError) as error:
        raise PredictionsError(f"{path}: {error}") from None
    if rejects.num_rows:
        first = rejects.slice(0, 1).to_pylist()[0]
        raise PredictionsError(
            f"{path}: {rejects.num_rows} row(s) break the eval_predictions contract; row {first['row_index']}: "
            f"{first['reason']}"
        )
    return valid.to_pandas()


def score_file(path: str, store: ArtifactStore, allow_tie: bool = False) -> dict[str, Any]:
    """{benchmark: {level: {name: {score, count, error_rate}}}} for the predictions at `path`."""
    predictions = read_predictions(path, store, allow_tie)
    try:
        return scores_as_dict(score_predictions(predictions))
    except (KeyError, ValueError) as error:
        raise PredictionsError(f"{path}: cannot be scored: {error}") from None

"""The `rmr1` command line: run the pipeline or one stage through Prefect, and list published artifacts.

    rmr1 run --recipe FILE [--artifacts DIR] [--from STAGE] [--to STAGE] [--set dotted.key=value ...]
    rmr1 plan --recipe FILE [--artifacts DIR] [--from STAGE] [--to STAGE] [--stage NAME] [--set ...]
    rmr1 stage NAME --recipe FILE [--artifacts DIR] [--set ...] [--dry-run]
    rmr1 artifacts [--kind KIND | --lineage KIND[/VERSION]] [--artifacts DIR]
    rmr1 release KIND[/VERSION|@TAG] --to DIR [--name NAME] [--push-to-hub ORG/NAME [--revision REV]]
    rmr1 artifacts tag KIND/VERSION NAME [--require 'BENCH>=SCORE,...'] [--note TEXT] [--artifacts DIR]
    rmr1 artifacts gc --keep N [--kind KIND] [--older-than AGE] [--litter-age AGE] [--dry-run] [--compact-cache]
                      [--artifacts DIR]
    rmr1 show KIND[/VERSION] [--rows N] [--where COL=VALUE ...] [--chars N] [--artifacts DIR]
    rmr1 score FILE [--artifacts DIR] [--allow-tie]
    rmr1 serve [--checkpoint KIND[/VERSION] | --model PATH | --endpoint URL --served-model NAME] [--port 8000]
    rmr1 judge FILE --fields MAPPING --out OUT.jsonl [--rank round_robin|knockout|reference] [judge source flags]

Prefect is imported only by the commands that run flows, so `rmr1 artifacts`, `rmr1 show` and `rmr1 plan` answer
at once.
Errors a user can fix (`UserError`: a bad recipe key, too many rejected rows, a missing upstream artifact)
end with one clear line and their exit code (2 for usage, 1 for a failed run), also when raised inside a flow
(Prefect's tracebacks for it stay in the Prefect logs, off the terminal); anything else is a bug and keeps its
traceback.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import sys
import tempfile
import textwrap
import threading
from collections.abc import Sequence
from typing import Any

import pyarrow as pa
import yaml

from data_contracts import ArtifactRef, ArtifactStore
from data_contracts.errors import UserError
from data_contracts.kinds import FOLDER_KINDS
from data_contracts.store import ArtifactNotFound
from data_contracts.versioning import canonical_json, plain
from flows.prefect_internals import user_error_tracebacks_off_the_terminal
from flows.recipe import Recipe, RecipeError, load_recipe
from tasks.hub import describe
from tasks.trace_samples import cut
from tasks.train.config import LaunchConfig

SHOW_CHARS = 1000  # rmr1 show: characters of a value printed before it is cut
SHOW_WIDTH = 100  # rmr1 show: lines wrapped at this width
STAGES_HELP = "a stage name as `rmr1 plan` lists them; a wrong one is answered with the list"


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--recipe", required=True, help="Recipe YAML file, e.g. recipes/smoke.yaml.")
    parser.add_argument(
        "--artifacts", help="Artifact root (folder or fsspec URL); default $RMR1_ARTIFACTS or ./artifacts."
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="Override a recipe value, e.g. --set split.distill_fraction=0.2 (repeatable).",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rmr1", description="Train reasoning reward models with the RM-R1 recipe.")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="Run the pipeline over a range of stages.")
    _add_run_options(run)
    plan = commands.add_parser(
        "plan", help="Print what a run would do (each stage's versions: published / will run / blocked); run nothing."
    )
    _add_run_options(plan)
    plan.add_argument("--stage", dest="target", metavar="NAME", help="Plan one stage and what it needs, as `stage`.")
    for parser_ in (run, plan):
        parser_.add_argument(
            "--from", dest="from_stage", metavar="STAGE", help=f"First stage to run ({STAGES_HELP}); earlier ones "
            "must be published."
        )  # fmt: skip
        parser_.add_argument("--to", dest="to_stage", metavar="STAGE", help="Last stage to run.")

    stage = commands.add_parser("stage", help="Run one stage, running missing upstream stages first.")
    stage.add_argument("name", metavar="NAME", help=f"The stage: {STAGES_HELP}.")
    _add_run_options(stage)
    stage.add_argument(
        "--dry-run",
        action="store_true",
        help="sft/rl: print the resolved TRL config (validated by TRL) and the launch plan; run nothing.",
    )

    score = commands.add_parser(
        "score",
        help="Score judgments: an eval_predictions artifact (folder or KIND/VERSION) or a Parquet / JSONL file of "
        "the same columns; prints the official scores as JSON.",
    )
    score.add_argument("file", help="eval_predictions/VERSION, an artifact folder, or a .parquet / .jsonl file.")
    score.add_argument("--artifacts", help="Artifact root for KIND/VERSION; default $RMR1_ARTIFACTS or ./artifacts.")
    score.add_argument(
        "--allow-tie", action="store_true", help="Read [[C]] in an `output` as a tie (0.5), for judges that call one."
    )

    serve = commands.add_parser(
        "serve", help="Serve the judge over HTTP: OpenRLHF's POST /get_reward, POST /v1/judge, GET /health."
    )
    _judge_source_arguments(serve)
    serve.add_argument("--host", default="127.0.0.1", help="Address to bind; default 127.0.0.1 (this machine only).")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--token-env", help="Require 'Authorization: Bearer <token>', the token read from this "
                       "environment variable.")  # fmt: skip
    serve.add_argument(
        "--max-concurrency", type=int, default=64, help="Requests admitted at once (others wait); judged in batches."
    )
    serve.add_argument("--max-body", type=int, default=4 << 20, help="Largest request body in bytes.")

    judge = commands.add_parser(
        "judge",
        help="Judge every pair of a json/jsonl/parquet file (rows `rmr1 score` reads), or rank each prompt's "
        "candidates; traces kept.",
    )
    judge.add_argument("file", help="The pairs: a json, jsonl or parquet file or folder.")
    judge.add_argument(
        "--fields",
        required=True,
        help="The field mapping as YAML/JSON, e.g. '{prompt: question, first: response_A, second: response_B, "
        "label: winner, first_wins: [A>B], second_wins: [B>A]}' or '{prompt: q, chosen: good, rejected: bad}'; "
        "with `candidates` (a field holding a list of answers), each prompt's candidates are ranked instead: "
        "'{prompt: q, candidates: answers, reference: ref, id: uid}'.",
    )
    judge.add_argument("--out", required=True, help="Where to write the judgments: .jsonl or .parquet.")
    judge.add_argument(
        "--rank",
        choices=("round_robin", "knockout", "reference"),
        help="With `candidates` (default round_robin): every pair (n(n-1)/2 comparisons), a seeded bracket "
        "(n-1), or each candidate against the `reference` field (n).",
    )
    judge.add_argument("--seed", type=int, help="With --rank knockout: the bracket's seed (default 0).")
    judge.add_argument(
        "--best-of-k",
        help="With `candidates` and `correct` (a flag per candidate): best-of-K for these K, e.g. 2,4,8,16,32 "
        "(knockout and round robin picks beside random and oracle, and pairwise accuracy); --out is a .json "
        "report, the curve a .png beside it. --seed seeds the draws.",
    )
    judge.add_argument(
        "--ui",
        action="store_true",
        help="With --best-of-k: also show the report and its curve in the Prefect UI (artifacts keyed "
        "best-of-k-<out file name>; needs PREFECT_API_URL).",
    )
    judge.add_argument("--name", help="The benchmark name the rows carry (a custom set's); default 'judged'.")
    judge.add_argument("--subset", help="A record field that splits the score.")
    judge.add_argument("--max-bad-rows", type=float, default=0.0, help="Share of unreadable records left out.")
    _judge_source_arguments(judge)

    releasing = commands.add_parser("release", help="Write a checkpoint as a Hugging Face folder with a model card.")
    releasing.add_argument("target", metavar="KIND[/VERSION|@TAG]", help="A checkpoint, e.g. rl_checkpoint@production.")
    releasing.add_argument("--to", required=True, metavar="DIR", help="A new (or empty) folder for the release.")
    releasing.add_argument("--name", help="The model's name in its card (default rm-r1-judge-<version>).")
    releasing.add_argument("--push-to-hub", metavar="ORG/NAME", help="Also upload the folder (a private repo).")
    releasing.add_argument("--revision", help="With --push-to-hub: the branch to upload to (created if missing).")
    releasing.add_argument(
        "--ui", action="store_true", help="Also show the card and the checkpoint's tags in the Prefect UI (a flow run)."
    )
    releasing.add_argument("--artifacts", help="Artifact root; default $RMR1_ARTIFACTS or ./artifacts.")

    listing = commands.add_parser(
        "artifacts", help="List published artifacts and their tags, remove old ones (gc), or tag a version."
    )
    listing.add_argument(
        "action",
        nargs="?",
        choices=("gc", "tag"),
        help="gc: remove all but the newest versions and their lineage. tag KIND/VERSION NAME: point KIND@NAME "
        "(e.g. rl_checkpoint@production) at that version.",
    )
    listing.add_argument("operands", nargs="*", metavar="KIND/VERSION NAME", help="tag: the version and the name.")
    listing.add_argument(
        "--require",
        metavar="SPEC",
        help="tag: move the name only if the version's own published scores meet every bar, e.g. "
        "'rewardbench>=0.80,judgebench>=0.60' (fractions); else exit 1 naming each miss.",
    )
    listing.add_argument("--note", default="", help="tag: a note kept with the move (why it moved).")
    listing.add_argument("--kind", help="Only this artifact kind (gc: collect only this kind).")
    listing.add_argument("--keep", type=int, help="gc: versions of each kind to keep, newest first.")
    listing.add_argument("--older-than", metavar="AGE", help="gc: remove only artifacts older than AGE (7d, 12h).")
    listing.add_argument("--dry-run", action="store_true", help="gc: print what would be removed; remove nothing.")
    listing.add_argument(
        "--litter-age",
        metavar="AGE",
        default="24h",
        help="gc: also remove what killed writers left (temporary folders; on object stores, attempts no manifest "
        "lists) once every file of it is older than AGE (default 24h; a publish in progress writes more often).",
    )
    listing.add_argument(
        "--compact-cache",
        action="store_true",
        help="gc: also drop teacher answers older than --older-than that no kept teacher_traces/filter_rejects names.",
    )
    listing.add_argument(
        "--lineage",
        metavar="KIND[/VERSION]",
        help="Print the chain from the sources to this artifact (KIND alone: the newest of that kind) instead.",
    )
    listing.add_argument("--artifacts", help="Artifact root; default $RMR1_ARTIFACTS or ./artifacts.")

    show = commands.add_parser("show", help="Print rows of a published artifact, one block per row.")
    show.add_argument(
        "target", metavar="KIND[/VERSION]", help="KIND alone: the newest; a unique version prefix will do."
    )
    show.add_argument("--rows", type=int, default=5, help="How many rows to print (default 5).")
    show.add_argument(
        "--where", action="append", default=[], metavar="COL=VALUE",
        help="Only rows whose column, as printed, equals VALUE (repeatable: all must match).",
    )  # fmt: skip
    show.add_argument("--chars", type=int, default=SHOW_CHARS, help="Characters shown per value before it is cut "
                      f"(default {SHOW_CHARS}; 0: everything).")  # fmt: skip
    show.add_argument("--artifacts", help="Artifact root; default $RMR1_ARTIFACTS or ./artifacts.")
    return parser


def list_artifacts(store: ArtifactStore, kind: str | None) -> str:
    from data_contracts.tags import all_tags

    manifests = store.list(kind)
    if not manifests:
        return f"no artifacts under {store.uri(store.root)}"
    header = f"{'kind':<26} {'version':<17} {'rows':>9}  {'created':<25} upstream"
    lines = [header]
    for m in manifests:
        upstream = ", ".join(f"{k}/{v}" for k, v in m["upstream"].items()) or "-"
        lines.append(f"{m['kind']:<26} {m['version']:<17} {m.get('rows', '-'):>9}  {m['created_at']:<25} {upstream}")
    tags = [t for t in all_tags(store) if kind is None or t["kind"] == kind]
    if tags:
        lines += ["", "tags:"]
        for t in tags:
            lines.append(f"  {t['kind']}@{t['name']} -> {t['kind']}/{t['version']}  (moved {t['moved_at']}, "
                         f"move {t['number']})")  # fmt: skip
    return "\n".join(lines)


def tag_artifact(store: ArtifactStore, operands: Sequence[str], require: str | None, note: str) -> str:
    """`rmr1 artifacts tag KIND/VERSION NAME [--require SPEC]`: move the name, after the gate when one is given."""
    from data_contracts import tags

    if len(operands) != 2:
        raise RecipeError("rmr1 artifacts tag: expected KIND/VERSION NAME, e.g. rl_checkpoint/3e97f04a production")
    target, name = operands
    tags.check_name(name)
    ref = store.resolve(target, "tag")
    lines = []
    if require:
        from tasks.evaluate.promotion import PromotionRefused, misses, parse_requirements, published_scores

        requirements = parse_requirements(require)
        scores = published_scores(store, ref)
        missed = misses(ref, scores, requirements)
        if missed:
            raise PromotionRefused(f"{ref.kind}@{name} not moved to {ref}: " + "; ".join(missed))
        lines.append("gate passed: " + ", ".join(f"{b} {scores[b]:.3f}" for b, _, _ in requirements))
    entry = tags.move(store, ref, name, note=note)
    was = f" (was {ref.kind}/{entry['previous']})" if entry["previous"] else " (new tag)"
    return "\n".join([*lines, f"{ref.kind}@{name} -> {ref}{was}"])


def collect_artifacts(args: argparse.Namespace) -> str:
    """`rmr1 artifacts gc`: remove all but the newest --keep versions of each kind and their lineage."""
    from data_contracts.retention import BadRetention, collect_garbage, litter_report, parse_age, report, sweep_litter

    if args.keep is None or args.lineage:
        raise BadRetention("rmr1 artifacts gc: give --keep N (versions of each kind to keep); --lineage is for listing")
    if args.compact_cache and not args.older_than:
        raise BadRetention(
            "rmr1 artifacts gc --compact-cache needs --older-than AGE: younger answers may belong to a distill run "
            "that has not published yet, and must stay"
        )
    store = ArtifactStore(args.artifacts)
    if args.kind is not None and not store.list(args.kind):
        known = sorted({m["kind"] for m in store.list()})
        raise BadRetention(f"rmr1 artifacts gc --kind {args.kind}: nothing of that kind under {store.uri(store.root)}; "
                           f"published kinds: {', '.join(known) or 'none'}")  # fmt: skip
    litter_age = parse_age(args.litter_age)
    plan, removals = collect_garbage(store, args.keep, kind=args.kind, older_than=args.older_than, dry_run=args.dry_run)
    litter = sweep_litter(store, litter_age, kind=args.kind, dry_run=args.dry_run)
    lines = [
        f"rmr1: artifacts gc under {store.uri(store.root)}",
        report(removals, len(plan.keep), dry_run=args.dry_run),
        litter_report(litter, dry_run=args.dry_run),
    ]
    if args.compact_cache:
        from tasks.llm.cache import compact_request_cache

        age_s = parse_age(args.older_than).total_seconds()
        path, dropped = compact_request_cache(store, plan.keep, age_s, dry_run=args.dry_run)
        lines.append(f"request cache {path}: {dropped} answers {'to remove' if args.dry_run else 'removed'}")
    return "\n".join(lines)


def _sources(config: Any) -> str:
    """Where an artifact's data and models came from: its pull sources or benchmarks (name and path / Hub id at
    the branch asked for → the commit used), and a Hub student or judge model."""
    config = config if isinstance(config, dict) else {}
    entries = config.get("sources") or config.get("benchmarks") or []
    described = []
    for entry in entries:
        hub_id, revision, asked = entry.get("hub_id"), entry.get("revision"), entry.get("requested_revision")
        where = describe(hub_id, revision, asked) if hub_id else entry.get("path")
        described.append(f"{entry['name']} ({where or entry.get('adapter', '?')})")
    shown = f"  sources: {', '.join(described)}" if described else ""
    for role in ("student", "judge"):
        model = config.get(role)
        if isinstance(model, dict) and model.get("revision"):  # a Hub model (a local folder has no revision)
            shown += f"  {role}: {describe(model['model'], model['revision'], model.get('requested_revision'))}"
    return shown


def show_lineage(store: ArtifactStore, target: str) -> str:
    """The chain from the sources to KIND/VERSION (a unique version prefix will do; KIND alone: the newest),
    one artifact per line: version, created-at, code version and a hash of the recipe section that made it."""
    lines = []
    for depth, manifest, repeated in store.lineage(store.resolve(target, "--lineage")):
        indent = "   " * (depth - 1) + "└─ " if depth else ""
        name = f"{manifest['kind']}/{manifest['version']}"
        if repeated:
            lines.append(f"{indent}{name}  (shown above)")
            continue
        recipe_hash = hashlib.sha256(canonical_json(manifest.get("config")).encode()).hexdigest()[:12]
        lines.append(
            f"{indent}{name}  created {manifest['created_at']}  code {manifest.get('code_version') or '-'}  "
            f"recipe-section {recipe_hash}{_sources(manifest.get('config'))}"
        )
    return "\n".join(lines)


def dry_run(recipe: Recipe, stage: str) -> str:
    """The TRL config a training stage would run with, as YAML, after TRL itself has accepted the values."""
    if stage not in ("sft", "rl"):
        raise RecipeError(f"--dry-run applies to the training stages sft and rl, not {stage}")
    section = recipe.sft if stage == "sft" else recipe.rl
    if section is None:  # said before torch and TRL are imported (seconds)
        raise RecipeError(f"--dry-run: recipe {recipe.name} has no {stage} training section")
    import torch

    from tasks.train.config import TINY

    from_sft = stage == "rl" and recipe.sft is not None
    revision = None if from_sft else recipe.student.revision  # an SFT checkpoint is a local folder
    if stage == "sft":
        from trl import SFTConfig as trl_class

        from tasks.train.sft import trl_sft_kwargs

        kwargs = trl_sft_kwargs(recipe.sft, "<work>/trainer", revision)
    else:
        from trl import GRPOConfig as trl_class  # type: ignore[assignment]

        from tasks.train.rl import trl_grpo_kwargs

        kwargs = trl_grpo_kwargs(recipe.rl, "<work>/trainer", revision)
    with tempfile.TemporaryDirectory(prefix="rmr1-dry-run-") as scratch:
        checked = dict(kwargs, output_dir=scratch)
        if kwargs["bf16"] and not torch.cuda.is_available():  # TRL refuses bf16 without a GPU; check the rest
            checked.update(bf16=False, use_cpu=True)
        try:
            trl_class(**checked)
        except (TypeError, ValueError) as error:
            raise RecipeError(f"{stage}: TRL rejects the resolved config: {error}") from None
    student = {k: v for k, v in plain(recipe.student).items() if k != "tiny" or recipe.student.model == TINY}
    plan = {
        "stage": stage,
        "student": "the sft_checkpoint" if from_sft else student,
        "launch": {**plain(section.launch), "command": _launcher(section.launch)},
        f"trl.{trl_class.__name__}": kwargs,
    }
    return yaml.safe_dump(plan, sort_keys=False, width=120)


def _launcher(launch: LaunchConfig) -> str:
    if launch.num_processes == 1:
        return "in-process"
    return (
        "torchrun (gloo)" if launch.device == "cpu" else f"accelerate launch --config_file {launch.accelerate_config}"
    )


def as_text(value: Any) -> str:
    """A cell as `rmr1 show` prints it and `--where` compares it: text as is, anything else as JSON (null, true, 1)."""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)


def _conditions(where: Sequence[str], ref: ArtifactRef, columns: Sequence[str]) -> list[tuple[str, str]]:
    conditions = []
    for condition in where:
        column, equals, value = condition.partition("=")
        if not equals:
            raise RecipeError(f"--where {condition!r}: expected COL=VALUE, e.g. --where domain=chat")
        if column not in columns:
            raise RecipeError(
                f"--where {condition!r}: {ref} has no column {column!r}; its columns: {', '.join(columns)}"
            )
        conditions.append((column, value))
    return conditions


def _value_lines(column: str, text: str, chars: int) -> list[str]:
    """`column: value` on one line when it fits, else the value wrapped below it (cut with a note of its length)."""
    shown = cut(text, chars)
    if "\n" not in shown and len(column) + 2 + len(shown) <= SHOW_WIDTH:
        return [f"{column}: {shown}"]
    wrapped = [piece for line in shown.split("\n") for piece in textwrap.wrap(line, SHOW_WIDTH - 2) or [""]]
    return [f"{column}:", *(f"  {piece}" for piece in wrapped)]


def _matches(column: pa.Array, value: str) -> list[bool]:
    """Where `column` shows as `value` (`as_text`): compared in Arrow for text columns, else cell by cell."""
    import pyarrow.compute as pc

    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        return pc.fill_null(pc.equal(column, value), False).to_pylist()  # type: ignore[no-any-return]
    return [as_text(cell) == value for cell in column.to_pylist()]


def show_rows(store: ArtifactStore, target: str, rows: int = 5, where: Sequence[str] = (),
              chars: int = SHOW_CHARS) -> str:  # fmt: skip
    """Rows of a published table artifact, one block per row (`column: value`), those matching every `where`.

    It reads what it prints: without `where`, the first row groups of the first parts, all columns; with it,
    only the `where` columns of every row (to count the matches), then the rows it shows."""
    if rows < 0:
        raise RecipeError(f"--rows {rows}: expected 0 or more")
    ref = store.resolve(target, "show")
    if ref.kind in FOLDER_KINDS:
        raise ArtifactNotFound(f"show {ref}: a folder of files (a model checkpoint), not rows; see {ref.uri}")
    manifest = store.manifest(ref)
    total = int(manifest.get("rows") or sum(int(f.get("rows") or 0) for f in manifest["files"]))
    conditions = _conditions(where, ref, store.column_names(ref))
    if conditions:
        wanted, matching, offset = [], 0, 0
        for batch in store.batches(ref, columns=list(dict.fromkeys(c for c, _ in conditions))):
            hits = [all(row) for row in zip(*(_matches(batch.column(c), v) for c, v in conditions), strict=True)]
            found = [offset + k for k, hit in enumerate(hits) if hit]
            matching += len(found)
            wanted += found[: rows - len(wanted)]
            offset += batch.num_rows
    else:
        matching, wanted = total, list(range(min(rows, total)))
    picked: list[tuple[int, dict[str, Any]]] = []
    if wanted:
        offset, keep = 0, set(wanted)
        for batch in store.batches(ref, batch_size=max(64, min(rows, 65_536))):
            picked += [(offset + k, row) for k, row in enumerate(batch.to_pylist()) if offset + k in keep]
            offset += batch.num_rows
            if offset > wanted[-1]:
                break
    which = f"{matching} of {total} rows match {' and '.join(where)}" if where else f"{total} rows"
    lines = [f"{ref}: {which}; showing {len(picked)}"]
    for index, row in picked:
        lines += ["", f"── row {index} ──"]
        for column, value in row.items():
            lines += _value_lines(column, as_text(value), chars)
    return "\n".join(lines)


def headline_scores(store: ArtifactStore, version: str) -> str:
    """One line: every benchmark's score and their mean, in points."""
    from tasks.evaluate.report import headline_line

    return f"rmr1: scores: {headline_line(store.manifest(store.require('eval_scores', version))['stats']['scores'])}"


def learning_lines(store: ArtifactStore, version: str) -> list[str]:
    """The learning table: held-out accuracy, unparseable and [[A]] shares before and after training."""
    from tasks.learning.stage import learning_lines as lines

    ref = store.require("learning_scores", version)
    rows = store.read_table(ref).to_pylist()
    return [f"rmr1: learning on {rows[0]['benchmark'] if rows else '?'} (held out), {ref}:", *lines(rows)]


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for chatty in ("httpx", "httpx2", "httpcore"):  # one line per Prefect API call or teacher request otherwise
        logging.getLogger(chatty).setLevel(logging.WARNING)
    try:
        with user_error_tracebacks_off_the_terminal():  # a flow's UserError: the line below, not Prefect's tracebacks
            return _command(args)
    except UserError as error:
        print(f"rmr1: {'error' if error.exit_code == 2 else 'failed'}: {error}", file=sys.stderr)
        return error.exit_code


def _judge_source_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--checkpoint", default="rl_checkpoint", help="KIND or KIND/VERSION in --artifacts.")
    source.add_argument("--model", help="A model folder or Hub id instead (--backend hf or vllm).")
    source.add_argument("--endpoint", help="An OpenAI-compatible endpoint's URL serving the judge instead.")
    parser.add_argument("--served-model", help="With --endpoint: the model name it serves.")
    parser.add_argument("--max-in-flight", type=int, help="With --endpoint: requests in flight at once (default 16).")
    parser.add_argument("--backend", choices=("hf", "vllm"), default="hf", help="With --checkpoint or --model.")
    parser.add_argument("--artifacts", help="Artifact root; default $RMR1_ARTIFACTS or ./artifacts.")
    parser.add_argument("--order", choices=("seeded", "both"), default="seeded", help="Each pair once or both ways.")
    parser.add_argument("--max-new-tokens", type=int, default=8192)


def _open_judge(args: argparse.Namespace) -> Any:
    """The PairwiseJudge the source flags name (a checkpoint of the store, a model, or an endpoint)."""
    from tasks.judge import PairwiseJudge
    from tasks.judge.api import CACHE_FILE
    from tasks.llm.cache import default_cache_path

    options = {"order": args.order, "max_new_tokens": args.max_new_tokens}
    if args.max_in_flight is not None and not args.endpoint:
        raise RecipeError(f"rmr1 {args.command}: --max-in-flight is for --endpoint judges")
    cache = default_cache_path(ArtifactStore(args.artifacts), None, CACHE_FILE)  # where from_artifact keeps it
    if args.endpoint:
        if not args.served_model:
            raise RecipeError(f"rmr1 {args.command} --endpoint needs --served-model (the name the endpoint serves)")
        return PairwiseJudge.from_endpoint(args.endpoint, args.served_model, cache_path=cache,
                                           max_in_flight=args.max_in_flight or 16, **options)  # fmt: skip
    if args.model:
        return PairwiseJudge.from_model(args.model, backend=args.backend, cache_path=cache, **options)
    return PairwiseJudge.from_artifact(ArtifactStore(args.artifacts), args.checkpoint, backend=args.backend,
                                        **options)  # fmt: skip


def judge_command(args: argparse.Namespace) -> int:
    """`rmr1 judge`: every pair of a file judged (rows for `rmr1 score`), or every prompt's candidates ranked."""
    from tasks.evaluate.files import CandidateFields, check_out, judge_file, rank_file
    from tasks.records.fields import FieldMap

    try:
        mapping = yaml.safe_load(args.fields)
        if not isinstance(mapping, dict):
            raise RecipeError("--fields: expected a mapping, e.g. '{prompt: q, chosen: good, rejected: bad}'")
        fields = CandidateFields(**mapping) if "candidates" in mapping else FieldMap(**mapping)
    except (yaml.YAMLError, TypeError) as error:
        raise RecipeError(f"--fields: {error}") from None
    ranking = isinstance(fields, CandidateFields)
    if args.best_of_k is not None:
        return _best_of_k_command(args, fields)
    if args.ui:
        raise RecipeError("rmr1 judge --ui: only a --best-of-k report is shown in the Prefect UI")
    ignored = ["--name", "--subset"] if ranking else ["--rank", "--seed"]
    given = [flag for flag in ignored if getattr(args, flag[2:]) is not None]
    if given:
        mode = "ranking candidates (the mapping has `candidates`)" if ranking else "judging pairs"
        raise RecipeError(f"rmr1 judge: {' and '.join(given)} mean nothing when {mode}")
    method = args.rank or "round_robin"
    if isinstance(fields, CandidateFields):
        fields.check(method)
    else:
        fields.check()
    check_out(args.out)  # before a model is opened
    with _open_judge(args) as judge:
        if isinstance(fields, CandidateFields):
            written = rank_file(args.file, fields, judge, args.out, method=method, seed=args.seed or 0,
                                max_bad_rows=args.max_bad_rows)  # fmt: skip
            what = f"{written} prompts ranked ({method})"
        else:
            written = judge_file(args.file, fields, judge, args.out, name=args.name or "judged", subset=args.subset,
                                 max_bad_rows=args.max_bad_rows)  # fmt: skip
            what = f"{written} judgements"
        print(f"rmr1: judge: {what} by {judge.name} in {args.out} ({judge.calls} sent, the rest cached)")
    return 0


def _prefect_api_url() -> str | None:
    from prefect.settings import PREFECT_API_URL

    return PREFECT_API_URL.value()


def _best_of_k_command(args: argparse.Namespace, fields: Any) -> int:
    """`rmr1 judge FILE --best-of-k 2,4,8`: the report (JSON) and its curve (PNG), and a table on the terminal."""
    from tasks.evaluate.files import CandidateFields, best_of_k_file

    if not isinstance(fields, CandidateFields) or fields.correct is None:
        raise RecipeError("rmr1 judge --best-of-k: map `candidates` and `correct` in --fields")
    if args.ui and not _prefect_api_url():
        raise RecipeError("rmr1 judge --ui: set PREFECT_API_URL to the Prefect server whose UI should show the report")
    given = [flag for flag in ("--rank", "--name", "--subset") if getattr(args, flag[2:]) is not None]
    if given:
        raise RecipeError(f"rmr1 judge --best-of-k: {' and '.join(given)} mean nothing here (both picks are run)")
    try:
        ks = tuple(int(k) for k in args.best_of_k.split(","))
    except ValueError:
        raise RecipeError(f"--best-of-k: expected K values like 2,4,8, got {args.best_of_k!r}") from None
    if not ks or min(ks) < 2:
        raise RecipeError(f"--best-of-k: every K is at least 2, got {args.best_of_k!r}")
    if not args.out.endswith(".json"):
        raise RecipeError(f"--out {args.out}: --best-of-k writes a .json report")
    fields.check("knockout")
    with _open_judge(args) as judge:
        report = best_of_k_file(args.file, fields, judge, args.out, ks=ks, seed=args.seed or 0,
                                max_bad_rows=args.max_bad_rows)  # fmt: skip
    header = ("K", "method", "prompts", "judge", "random", "oracle", "asked", "sent", "tokens")
    print("{:>3} {:<12} {:>7} {:>6} {:>6} {:>6} {:>6} {:>6} {:>8}".format(*header))
    for row in report["best_of_k"]:
        print(f"{row['k']:>3} {row['method']:<12} {row['prompts']:>7} {row['pick_accuracy']:>6.3f} "
              f"{row['random']:>6.3f} {row['oracle']:>6.3f} {row['comparisons']:>6} {row['sent']:>6} "
              f"{row['tokens']:>8}")  # fmt: skip
    if args.ui:
        from flows.rankings import show_best_of_k

        key = show_best_of_k(
            report, os.path.splitext(args.out)[0] + ".png", os.path.splitext(os.path.basename(args.out))[0]
        )
        print(f"in the Prefect UI: artifacts {key} and {key}-curve")
    pairs = report["pairwise"]
    print(f"pairwise (correct vs incorrect): {pairs['accuracy']:.3f} on {pairs['pairs']} pairs "
          f"({pairs['sent']} sent, {pairs['tokens']} tokens); "
          f"report {args.out}, curve {os.path.splitext(args.out)[0]}.png")  # fmt: skip
    return 0


def serve(args: argparse.Namespace) -> int:
    """`rmr1 serve`: build the judge, bind, and answer until interrupted."""
    from tasks.judge.server import make_server

    judge = _open_judge(args)
    token = None
    if args.token_env:
        token = os.environ.get(args.token_env)
        if not token:
            raise RecipeError(f"rmr1 serve --token-env {args.token_env}: that environment variable is empty")
    server = make_server(judge, args.host, args.port, token=token, max_body=args.max_body,
                         max_concurrency=args.max_concurrency)  # fmt: skip
    try:
        url = server.start()
        print(f"rmr1: serving {judge.name} on {url} ({'bearer token required' if token else 'no token'})", flush=True)
        threading.Event().wait()  # until Ctrl-C
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
        judge.close()
    return 0


def _command(args: argparse.Namespace) -> int:
    if args.command == "artifacts" and args.action == "gc":
        print(collect_artifacts(args))
        return 0
    if args.command == "artifacts" and args.action == "tag":
        print(tag_artifact(ArtifactStore(args.artifacts), args.operands, args.require, args.note))
        return 0
    if args.command == "artifacts" and (args.operands or args.require):
        raise RecipeError("rmr1 artifacts: KIND/VERSION NAME and --require belong to `rmr1 artifacts tag`")
    if args.command == "artifacts":
        given = [
            flag for flag, value in (("--keep", args.keep), ("--older-than", args.older_than)) if value is not None
        ]
        given += [
            flag for flag, value in (("--dry-run", args.dry_run), ("--compact-cache", args.compact_cache)) if value
        ]
        if given:
            raise RecipeError(f"rmr1 artifacts: {', '.join(given)} belong to `rmr1 artifacts gc`")
        store = ArtifactStore(args.artifacts)
        print(show_lineage(store, args.lineage) if args.lineage else list_artifacts(store, args.kind))
        return 0
    if args.command == "release":
        from tasks.release import push_to_hub, release

        store = ArtifactStore(args.artifacts)
        name = args.name or (args.push_to_hub.split("/")[-1] if args.push_to_hub else None)
        if args.ui and not _prefect_api_url():
            raise RecipeError("rmr1 release --ui: set PREFECT_API_URL to the Prefect server whose UI should show it")
        if args.ui:
            from flows.release import release_flow

            folder = release_flow(args.target, args.to, name, store.uri(store.root))
        else:
            folder = release(store, args.target, args.to, name)[1]
        print(f"rmr1: released {store.resolve(args.target, 'release')} to {folder} (model card: {folder}/README.md)")
        if args.push_to_hub:
            print(f"rmr1: uploaded to {args.push_to_hub}: {push_to_hub(folder, args.push_to_hub, args.revision)}")
        return 0
    if args.command == "show":
        print(show_rows(ArtifactStore(args.artifacts), args.target, args.rows, args.where, args.chars))
        return 0
    if args.command == "score":
        from tasks.evaluate.predictions import score_file

        print(json.dumps(score_file(args.file, ArtifactStore(args.artifacts), args.allow_tie), indent=1))
        return 0
    if args.command == "serve":
        return serve(args)
    if args.command == "judge":
        return judge_command(args)
    recipe = load_recipe(args.recipe, args.overrides)
    if args.command == "stage" and args.dry_run:
        print(dry_run(recipe, args.name), end="")
        return 0
    if args.command == "plan":
        from flows.plan import make_plan

        store = ArtifactStore(args.artifacts)
        plan = make_plan(recipe, store, target=args.target, from_stage=args.from_stage, to_stage=args.to_stage)
        print(f"rmr1: plan for recipe {recipe.name} ({recipe.fingerprint}), artifacts {store}")
        print(plan.describe())
        return 0

    from flows.plan import STAGE_NAMES
    from flows.prefect_internals import finish_prefect
    from flows.stages import pipeline_flow, stage_flow  # imports Prefect

    print(f"rmr1: recipe {recipe.name} ({recipe.fingerprint}), artifacts {ArtifactStore(args.artifacts)}")
    try:
        if args.command == "stage":
            if args.name not in STAGE_NAMES:
                raise RecipeError(f"no stage {args.name!r}; stages are {', '.join(STAGE_NAMES)}")
            versions = stage_flow(args.name)(recipe, args.artifacts)
        else:
            versions = pipeline_flow(recipe, args.artifacts, args.from_stage, args.to_stage)
    finally:
        finish_prefect()  # the run's last lines are its outcome, not the temporary server's shutdown
    store = ArtifactStore(args.artifacts)
    for kind, version in versions.items():
        print(f"  {kind:<20} {version:<18} {store.folder(kind, version)}")
    if "eval_scores" in versions:
        print(headline_scores(store, versions["eval_scores"]))
    if "learning_scores" in versions:
        print("\n".join(learning_lines(store, versions["learning_scores"])))
    print(f"rmr1: done ({len(versions)} artifacts)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

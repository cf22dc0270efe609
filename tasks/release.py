"""Release a trained judge: a folder any Hugging Face tool loads as it is, with a model card written from the store.

`rmr1 release rl_checkpoint@production --to DIR [--push-to-hub ORG/NAME [--revision REV]]`: the checkpoint's
files (weights as safetensors, config, generation config, tokenizer with its chat template, the training
curves) and a README.md model card:
- what the judge is for and how to call it: the judge template, the verdict format and rule, the order policy;
- where it came from: every artifact in its lineage with its row count, the data sources at the commit used,
  the teacher model;
- the training settings of the checkpoint;
- its evaluation results: every benchmark it was scored on (the newest evaluation of exactly this checkpoint),
  with the official rule, also as the Hub's `model-index` metadata.
Nothing secret goes into it: no keys (the store holds none), and URLs lose any user:password part.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from typing import Any

import yaml

from data_contracts import ArtifactRef, ArtifactStore
from data_contracts.errors import UserError
from data_contracts.kinds import EVAL_PREDICTIONS, FOLDER_KINDS
from data_contracts.store import MANIFEST

CARD = "README.md"
DEFAULT_TEMPLATE = "cor-instruct-v1"
_CREDENTIALS = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)[^/@\s]+@", re.IGNORECASE)


class ReleaseError(UserError):
    exit_code = 2


def scrub(value: Any) -> Any:
    """`value` with the user:password part of every URL in it removed (a teacher's base_url, a Hub mirror)."""
    if isinstance(value, str):
        return _CREDENTIALS.sub(r"\g<scheme>", value)
    if isinstance(value, dict):
        return {k: scrub(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [scrub(v) for v in value]
    return value


def _lineage_lines(store: ArtifactStore, ref: ArtifactRef) -> list[str]:
    lines = []
    for depth, manifest, repeated in store.lineage(ref):
        if repeated:
            continue
        config = scrub(manifest.get("config") or {})
        what = f"{'  ' * depth}- `{manifest['kind']}/{manifest['version']}`"
        what += f": {manifest['rows']:,} rows" if isinstance(manifest.get("rows"), int) else ""
        sources = [f"{s.get('name')} ({s.get('hub_id') or s.get('adapter')}"
                   + (f" @ {s['revision']}" if s.get("revision") else "") + ")"
                   for s in config.get("sources") or [] if isinstance(s, dict)]  # fmt: skip
        if sources:
            what += "; sources: " + ", ".join(sources)
        teacher = config.get("teacher") if isinstance(config.get("teacher"), dict) else None
        if teacher and teacher.get("model"):
            what += f"; teacher: {teacher['model']}"
        lines.append(what)
    return lines


def _results(store: ArtifactStore, ref: ArtifactRef) -> list[tuple[str, str, str, float]]:
    """(benchmark name, title, official rule, score) of the newest evaluation of exactly `ref`."""
    from tasks.evaluate.benchmarks import benchmark_of
    from tasks.evaluate.promotion import published_scores

    results = []
    for name, score in sorted(published_scores(store, ref).items()):
        benchmark = benchmark_of(name)
        results.append((name, benchmark.title, benchmark.rule or "accuracy over its pairs", score))
    return results


def judge_template(store: ArtifactStore, ref: ArtifactRef) -> str:
    """The judge template the checkpoint was evaluated with (its newest evaluation), else the one its training
    data was written with (the lineage's configs), else the default."""
    evaluations = [m for m in store.list(EVAL_PREDICTIONS.kind) if m["upstream"].get(ref.kind) == ref.version]
    configs = [m.get("config") or {} for m in reversed(evaluations)]
    configs += [m.get("config") or {} for _, m, _ in store.lineage(ref)]
    for config in configs:
        found = _find_key(config, "template")
        if isinstance(found, str):
            return found
    return DEFAULT_TEMPLATE


def _find_key(value: Any, key: str) -> Any:
    """The first value of `key` anywhere in nested dicts (depth first), or None."""
    if isinstance(value, dict):
        if key in value and isinstance(value[key], str):
            return value[key]
        for inner in value.values():
            found = _find_key(inner, key)
            if found is not None:
                return found
    return None


def model_card(store: ArtifactStore, ref: ArtifactRef, repo_name: str) -> str:
    """The README.md of the release: YAML metadata (with `model-index`) and the card's text."""
    from huggingface_hub import EvalResult, ModelCardData

    from tasks.judge.protocol import load_template_set

    manifest = store.manifest(ref)
    training = scrub(manifest.get("config") or {})
    template_name = judge_template(store, ref)
    template = load_template_set(template_name)
    results = _results(store, ref)
    data = ModelCardData(
        model_name=repo_name,
        library_name="transformers",
        pipeline_tag="text-generation",
        tags=["reward-model", "generative-reward-model", "llm-as-a-judge", "rm-r1"],
        eval_results=[
            EvalResult(
                task_type="text-classification",
                task_name="Pairwise preference judgement",
                dataset_type=name,
                dataset_name=title,
                metric_type="accuracy",
                metric_value=round(score, 4),
                metric_name=f"score ({rule})",
            )
            for name, title, rule, score in results
        ],
    )
    results_table = ["| benchmark | score | official rule |", "|---|---|---|"]
    results_table += [f"| {title} (`{n}`) | {100 * s:.1f} | {rule} |" for n, title, rule, s in results] or [
        "| (not evaluated yet) | | |"
    ]
    body = f"""
# {repo_name}

A generative reward model (a pairwise judge) trained with the RM-R1 recipe ("Reward Modeling as Reasoning",
arXiv 2505.02387): it reads a conversation and two answers, reasons in a Chain-of-Rubrics trace, and ends with
its verdict. Released from `{ref}`.

## How to call it

- Prompt: the `{template_name}` judge template (its system prompt below), applied with this
  tokenizer's chat template; the two answers fill `{{answer_a}}` / `{{answer_b}}`.
- Verdict: the trace ends with `<answer>[[A]]</answer>` or `<answer>[[B]]</answer>`; evaluation reads `[[A]]` or
  `[[B]]` anywhere in the output (both or neither is unparseable).
- Order: judge each pair in one seeded order, or in both orders and combine the votes (a tie when they
  disagree), to cancel position bias. Greedy decoding for evaluation.
- As a reward: +1 when the verdict names the preferred answer, -1 otherwise.

<details><summary>System prompt</summary>

```
{template.system or ""}
```
</details>

## Where it came from

{chr(10).join(_lineage_lines(store, ref))}

## Training settings

```yaml
{yaml.safe_dump(training, sort_keys=True).strip()}
```

## Evaluation

{chr(10).join(results_table)}
"""
    return f"---\n{data.to_yaml()}\n---\n{body}"


def release(store: ArtifactStore, target: str, out: str, repo_name: str | None = None) -> tuple[ArtifactRef, str]:
    """Write the release folder of `target` (a checkpoint: KIND[/VERSION] or KIND@TAG) at `out`, whole or not at
    all; returns the checkpoint and the folder."""
    ref = store.resolve(target, "release")
    if ref.kind not in FOLDER_KINDS:
        raise ReleaseError(f"release {ref}: only a model checkpoint ({', '.join(FOLDER_KINDS)}) can be released")
    if os.path.exists(out) and os.listdir(out):
        raise ReleaseError(f"release --to {out}: the folder is not empty; give a new one")
    source = store.local_copy(ref)
    partial = f"{out.rstrip('/')}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    shutil.copytree(source, partial, ignore=shutil.ignore_patterns(MANIFEST))
    if not os.path.exists(os.path.join(partial, "generation_config.json")):
        from transformers import AutoConfig, GenerationConfig

        GenerationConfig.from_model_config(AutoConfig.from_pretrained(partial)).save_pretrained(partial)
    name = repo_name or f"rm-r1-judge-{ref.version[:8]}"
    with open(os.path.join(partial, CARD), "w", encoding="utf-8") as handle:
        handle.write(model_card(store, ref, name))
    with open(os.path.join(partial, "rmr1_release.json"), "w", encoding="utf-8") as handle:
        json.dump({"checkpoint": str(ref), "lineage": [f"{m['kind']}/{m['version']}" for _, m, _ in
                                                        store.lineage(ref)]}, handle, indent=1)  # fmt: skip
    if os.path.isdir(out):
        os.rmdir(out)
    os.rename(partial, out)
    return ref, out


def push_to_hub(folder: str, repo_id: str, revision: str | None = None, private: bool = True) -> str:
    """Upload a release folder with `huggingface_hub` (a private repo unless told otherwise); the commit URL."""
    from huggingface_hub import HfApi

    api = HfApi()
    api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
    if revision:
        api.create_branch(repo_id, branch=revision, repo_type="model", exist_ok=True)
    info = api.upload_folder(folder_path=folder, repo_id=repo_id, repo_type="model", revision=revision,
                             commit_message="rmr1 release")  # fmt: skip
    return str(getattr(info, "commit_url", info))

"""Small seeded benchmark files in the official layouts, for smoke runs with no benchmark data at hand.

One function per benchmark, `(folder, seed) -> the path its loader reads`, named after it: RewardBench rows
(its Hub schema, as JSON), RM-Bench `*_filtered.json` files (3 chosen x 3 rejected styles), an RMB
`Pairwise_set/` + `BoN_set/` tree, RewardBench 2 rows (its Hub schema, as JSON), a JudgeBench jsonl, ...,
built from the synthetic preference generator's prompts and answers. The real loaders then read them, so a
smoke run exercises exactly the code a real benchmark goes through. The numbers mean nothing.
"""

from __future__ import annotations

import json
import os
import uuid
from typing import Any

from tasks.standins.synthetic_pairs import Draft, synthetic_drafts

ITEMS = 24  # drafts per benchmark: every kind (chat, multi-turn, safety, code, math) several times
_REWARDBENCH_SUBSET = {"chat": "alpacaeval-easy", "safety": "refusals-dangerous", "code": "hep-python",
                       "math": "math-prm"}  # fmt: skip
_RMB_CATEGORY = {"chat": "Helpfulness/Chat/Discussion", "code": "Helpfulness/Code/Data Management",
                 "math": "Helpfulness/Reasoning/Logical Deduction", "safety": "Harmlessness/S1"}  # fmt: skip
_JUDGEBENCH_SOURCE = {"chat": "mmlu-pro-", "safety": "livebench-reasoning", "code": "livecodebench",
                      "math": "livebench-math"}  # fmt: skip
_MMLU_PRO_SUBJECTS = ("computer science", "history", "law")
_REWARDBENCH2_SUBSETS = ("Factuality", "Precise IF", "Math", "Safety", "Focus")  # best-of-4; Ties apart
_REWARDBENCH2_TIES = 3  # prompts with a ref:N and a tied:N row


def _markdown(text: str) -> str:
    sentences = [s.strip() for s in text.replace("\n", " ").split(". ") if s.strip()]
    return "**Answer**\n\n" + "\n".join(f"- {s.rstrip('.')}." for s in sentences)


def _styles(answers: tuple[str, str]) -> list[str]:
    """RM-Bench's three styles: concise, detailed plain, detailed markdown."""
    return [answers[0], answers[1], _markdown(answers[1])]


def _single_turn(draft: Draft) -> bool:
    return len(draft.conversation) == 1


def _write(path: str, records: list[dict[str, Any]]) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(records, handle, ensure_ascii=False, indent=1)


def rewardbench(folder: str, seed: int) -> str:
    """RewardBench rows in its Hub schema, as one JSON file; the path its loader reads."""
    rows = [
        {"id": index, "subset": _REWARDBENCH_SUBSET[d.domain], "prompt": d.conversation[0]["content"],
         "chosen": d.good[1], "rejected": d.bad[0], "chosen_model": "synthetic", "rejected_model": "synthetic"}
        for index, d in enumerate(synthetic_drafts(ITEMS, seed)) if _single_turn(d)
    ]  # fmt: skip
    _write(os.path.join(folder, "rewardbench.json"), rows)
    return folder


def rm_bench(folder: str, seed: int) -> str:
    """RM-Bench `<subset>_filtered.json` files, 3 chosen x 3 rejected styles per item."""
    by_subset: dict[str, list[dict[str, Any]]] = {}
    for index, d in enumerate(synthetic_drafts(ITEMS, seed)):
        if _single_turn(d):
            subset = "safety-refuse" if d.domain == "safety" else d.domain
            by_subset.setdefault(subset, []).append(
                {"id": index, "prompt": d.conversation[0]["content"], "subset": subset,
                 "chosen": _styles(d.good), "rejected": _styles(d.bad)}
            )  # fmt: skip
    for subset, records in by_subset.items():
        _write(os.path.join(folder, f"{subset}_filtered.json"), records)
    return folder


def rmb(folder: str, seed: int) -> str:
    """An RMB `RMB_dataset` tree: `Pairwise_set/` and `BoN_set/` files per category."""
    files: dict[str, list[dict[str, Any]]] = {}
    for index, d in enumerate(synthetic_drafts(ITEMS, seed)):
        turns = [{**turn, "language": "English"} for turn in d.conversation]
        category = _RMB_CATEGORY[d.domain]
        files.setdefault(f"Pairwise_set/{category}", []).append(
            {"pair_uid": f"p{index}", "conversation_input": turns, "category_path": f"Pairwise_set/{category}",
             "chosen": {"llm_name": "synthetic", "answer": d.good[index % 2]},
             "reject": {"llm_name": "synthetic", "answer": d.bad[(index + 1) % 2]}}
        )  # fmt: skip
        files.setdefault(f"BoN_set/{category}", []).append(
            {"bon_uid": f"b{index}", "conversation_input": turns, "category_path": f"BoN_set/{category}",
             "bon_best": {"llm_name": "synthetic", "answer": d.good[1]},
             "loser_list": [{"llm_name": "synthetic", "answer": a}
                            for a in (d.bad[0], d.bad[1], _markdown(d.bad[1]))]}
        )  # fmt: skip
    for relative, records in files.items():
        _write(os.path.join(folder, "RMB_dataset", f"{relative}.json"), records)
    return os.path.join(folder, "RMB_dataset")


def judgebench(folder: str, seed: int) -> str:
    """JudgeBench's GitHub file `data/dataset=judgebench,response_model=gpt-4o-2024-05-13.jsonl`: every category,
    its labels alternating A>B and B>A."""
    rows: list[dict[str, Any]] = []
    per_domain: dict[str, int] = {}
    for index, d in enumerate(synthetic_drafts(ITEMS, seed)):
        if not _single_turn(d):
            continue
        count = per_domain[d.domain] = per_domain.get(d.domain, 0) + 1
        source = _JUDGEBENCH_SOURCE[d.domain]
        mmlu_pro = d.domain == "chat"
        if mmlu_pro:
            source += _MMLU_PRO_SUBJECTS[count % len(_MMLU_PRO_SUBJECTS)]
        good, bad = d.good[index % 2], d.bad[(index // 2) % 2]  # either may be the longer
        label = "A>B" if count % 2 else "B>A"
        rows.append(
            {"pair_id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"judgebench/{seed}/{index}")),
             "original_id": index if mmlu_pro else None, "source": source, "question": d.conversation[0]["content"],
             "response_model": "gpt-4o-2024-05-13", "response_A": good if label == "A>B" else bad,
             "response_B": bad if label == "A>B" else good, "label": label}
        )  # fmt: skip
    path = os.path.join(folder, "data", "dataset=judgebench,response_model=gpt-4o-2024-05-13.jsonl")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        handle.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    return folder


def _rewardbench2_row(key: str, subset: str, prompt: str, chosen: list[str], rejected: list[str]) -> dict[str, Any]:
    return {"id": key, "prompt": prompt, "chosen": chosen, "rejected": rejected, "num_correct": len(chosen),
            "num_incorrect": len(rejected), "total_completions": len(chosen) + len(rejected),
            "models": ["synthetic"] * (len(chosen) + len(rejected)), "subset": subset,
            "additional_metadata": {"category": subset}}  # fmt: skip


def rewardbench2(folder: str, seed: int) -> str:
    """RewardBench 2 rows in its Hub schema, as one JSON file: best-of-4 items (1 chosen, 3 rejected) in the
    five subsets and a few Ties prompts, each a ref:N row (1 correct answer) and a tied:N row (3 correct)."""
    drafts = [d for d in synthetic_drafts(ITEMS, seed) if _single_turn(d)]
    rows = []
    for index, d in enumerate(drafts):
        prompt = d.conversation[0]["content"]
        if index < _REWARDBENCH2_TIES:
            wrong = [d.bad[0], d.bad[1]]
            rows.append(_rewardbench2_row(f"ref:{index}", "Ties", prompt, [d.good[1]], wrong))
            rows.append(_rewardbench2_row(f"tied:{index}", "Ties", prompt, [*d.good, _markdown(d.good[1])], wrong))
        else:
            subset = _REWARDBENCH2_SUBSETS[index % len(_REWARDBENCH2_SUBSETS)]
            rejected = [d.bad[0], d.bad[1], _markdown(d.bad[1])]
            rows.append(_rewardbench2_row(str(index), subset, prompt, [d.good[1]], rejected))
    _write(os.path.join(folder, "rewardbench2.json"), rows)
    return folder

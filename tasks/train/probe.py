"""A quick check of a checkpoint as a judge: greedy answers to judge prompts, scored by the evaluation rule.

Used to show what SFT did (share of parseable verdicts before and after) without the full evaluation
stage; prompts are conversational judge messages such as `rl.rl_rows` builds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tasks.judge.protocol import Verdict, eval_score, parse_eval_verdict


@dataclass(frozen=True)
class ProbeResult:
    prompts: int
    parseable_rate: float  # share with exactly one of [[A]] / [[B]] (docs/method.md §3, evaluation rule)
    accuracy: float  # evaluation score: correct 1, wrong or unparseable 0
    outputs: list[str]


def verdict_probe(
    model_dir: str, rows: list[dict[str, Any]], max_new_tokens: int = 320, batch_size: int = 8
) -> ProbeResult:
    """Greedy-decode each row's `prompt` messages with the model in `model_dir`; score against `winner`."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    tokenizer.padding_side = "left"
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    outputs: list[str] = []
    for start in range(0, len(rows), batch_size):
        batch = rows[start : start + batch_size]
        texts = [tokenizer.apply_chat_template(r["prompt"], tokenize=False, add_generation_prompt=True) for r in batch]
        encoded = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.no_grad():
            generated = model.generate(**encoded, max_new_tokens=max_new_tokens, do_sample=False)
        new_tokens = generated[:, encoded["input_ids"].shape[1] :]
        outputs.extend(tokenizer.batch_decode(new_tokens, skip_special_tokens=True))
    verdicts = [parse_eval_verdict(text) for text in outputs]
    scores = [eval_score(v, r["winner"]) for v, r in zip(verdicts, rows, strict=True)]
    n = max(len(rows), 1)
    return ProbeResult(
        prompts=len(rows),
        parseable_rate=sum(v is not Verdict.ERROR for v in verdicts) / n,
        accuracy=sum(scores) / n,
        outputs=outputs,
    )

"""verl's custom reward function: the policy's response judged against the reference answer by the pairwise
judge served at an OpenAI-compatible endpoint (a vLLM / SGLang server or router, or `rmr1`'s own).

In a verl config:

    custom_reward_function:
      path: <site-packages>/tasks/judge/verl.py
      name: compute_score

and in the environment `RMR1_JUDGE_URL` (e.g. http://127.0.0.1:8000/v1), `RMR1_JUDGE_MODEL` (the served
name) and, if the endpoint needs one, `RMR1_JUDGE_KEY_ENV` (the variable holding its key). When verl passes
`reward_router_address` (host:port of its reward-model router), that address is used instead of the URL.
The question comes from `extra_info["question"]` (or `["prompt"]`); `ground_truth` is the reference.
Score: +1 when the response beats the reference, 0 for a tie, −1 when it loses or the verdict is unreadable.
The judgment runs in a worker thread, so verl's event loop keeps going; answers are cached on disk.
"""

from __future__ import annotations

import asyncio
import os
import threading
from typing import Any

from data_contracts.store import cache_dir
from tasks.judge.api import PairwiseJudge

_JUDGES: dict[tuple[str, str], PairwiseJudge] = {}
_LOCK = threading.Lock()


def _judge(url: str, model: str) -> PairwiseJudge:
    """One judge (one pooled connection) per endpoint and model, for the whole process."""
    with _LOCK:
        if (url, model) not in _JUDGES:
            key_env = os.environ.get("RMR1_JUDGE_KEY_ENV", "OPENAI_API_KEY")
            cache = os.environ.get("RMR1_JUDGE_CACHE") or os.path.join(cache_dir(), "verl_judge.sqlite")
            _JUDGES[url, model] = PairwiseJudge.from_endpoint(url, model, api_key_env=key_env, cache_path=cache)
        return _JUDGES[url, model]


async def compute_score(
    data_source: str, solution_str: str, ground_truth: Any, extra_info: dict[str, Any] | None = None, **kwargs: Any
) -> dict[str, Any]:
    """verl's signature: a dict with the `score` and what verl logs beside it."""
    router = kwargs.get("reward_router_address")
    url = f"http://{router}/v1" if router else os.environ.get("RMR1_JUDGE_URL")
    model = os.environ.get("RMR1_JUDGE_MODEL")
    if not url or not model:
        raise RuntimeError("set RMR1_JUDGE_URL (or pass reward_router_address) and RMR1_JUDGE_MODEL for the judge")
    info = extra_info or {}
    question = str(info.get("question") or info.get("prompt") or "")
    judgment = await asyncio.to_thread(
        _judge(url, model).compare, [{"role": "user", "content": question}], solution_str, str(ground_truth)
    )
    score = {"a": 1.0, "b": -1.0, "tie": 0.0}.get(judgment.verdict, -1.0)
    return {"score": score, "judge_verdict": judgment.verdict, "judge_error": float(judgment.verdict == "error")}

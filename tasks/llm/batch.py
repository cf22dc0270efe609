"""Batch mode: the same teacher requests through the OpenAI Batch API, collected instead of resubmitted.

The requests not yet in the cache go up as one JSONL file (`/v1/files`) and one batch (`/v1/batches`).
The batch id is written to a state file *before* polling starts, so a killed run, re-run, finds it and
collects the batch it already paid for. Answers land in the request cache like streamed ones; lines the
batch could not answer come back as failed outcomes with the batch's reason. `budget_usd` does not
apply here: a batch is one submission, priced by the provider when it completes.
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import json
import logging
import os
import time
from collections.abc import Sequence
from typing import Any

from data_contracts.errors import UserError
from tasks.llm.cache import CachedAnswer, RequestCache
from tasks.llm.client import Outcome, RunStats, TeacherRequest, cached_outcome, models_of
from tasks.llm.config import EndpointConfig

TERMINAL = ("completed", "failed", "expired", "cancelled")
ENDPOINT = "/v1/chat/completions"

log = logging.getLogger(__name__)


class BatchError(UserError, RuntimeError):
    """A Batch API call failed; the batch id (if any) stays recorded, so a re-run collects it."""


def _write_state(path: str, state: dict[str, Any]) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    temporary = f"{path}.tmp"
    with open(temporary, "w") as handle:
        json.dump(state, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def _read_state(path: str, request_ids: list[str]) -> str | None:
    """The batch id recorded for exactly these requests, if a previous run submitted them."""
    try:
        with open(path) as handle:
            state = json.load(handle)
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    # A batch that covers every pending request is ours, even if a killed run cached part of its output.
    return state["batch_id"] if set(request_ids) <= set(state.get("request_ids", ())) else None


async def send_batch(
    requests: Sequence[TeacherRequest],
    cfg: EndpointConfig,
    cache: RequestCache,
    *,
    api_key: str,
    state_path: str,
    poll_s: float = 30.0,
) -> tuple[list[Outcome], RunStats]:
    """One Outcome per request, in order; submits (or re-collects) one batch for the uncached ones."""
    import openai

    started = time.perf_counter()
    by_id = {request.request_id: request for request in requests}
    known = cache.get_many(by_id)
    pending = sorted(request_id for request_id in by_id if request_id not in known)
    failures: dict[str, str] = {}
    model = models_of(requests)
    if pending:
        client = openai.AsyncOpenAI(base_url=cfg.base_url, api_key=api_key, timeout=cfg.timeout_s)
        try:
            batch_id = _read_state(state_path, pending)
            if batch_id is None:
                lines = (
                    json.dumps({"custom_id": rid, "method": "POST", "url": ENDPOINT, "body": by_id[rid].body()})
                    for rid in pending
                )
                upload = io.BytesIO("\n".join(lines).encode())
                file = await client.files.create(file=("requests.jsonl", upload), purpose="batch")
                batch = await client.batches.create(input_file_id=file.id, endpoint=ENDPOINT, completion_window="24h")
                batch_id = batch.id
                _write_state(state_path, {"batch_id": batch_id, "request_ids": pending})
                log.info("teacher %s: submitted batch %s with %d requests", model, batch_id, len(pending))
            else:
                log.info("teacher %s: collecting batch %s submitted by an earlier run", model, batch_id)
            batch = await client.batches.retrieve(batch_id)
            while batch.status not in TERMINAL:
                await asyncio.sleep(poll_s)
                batch = await client.batches.retrieve(batch_id)
            if batch.output_file_id:
                output = await client.files.content(batch.output_file_id)
                failures |= _store_answers(output.text, cache, model)
            if batch.error_file_id:
                errors = await client.files.content(batch.error_file_id)
                failures |= {json.loads(line)["custom_id"]: "batch_error" for line in errors.text.splitlines() if line}
            for request_id in pending:
                if request_id not in failures and request_id not in cache:
                    failures[request_id] = f"batch_{batch.status}"
        except openai.OpenAIError as error:
            message = str(error).replace(api_key, "***")  # an echoing server must not put the key in a log
            raise BatchError(f"batch API at {cfg.base_url}: {type(error).__name__}: {message}") from None
        finally:
            await client.close()
        os.remove(state_path)
    return _outcomes(requests, known, cache, failures, cfg, time.perf_counter() - started)


def _store_answers(output_jsonl: str, cache: RequestCache, model: str) -> dict[str, str]:
    """Cache every answered line of a batch output file (`model` when a line names none); return the failed
    lines' reasons."""
    failures = {}
    for line in output_jsonl.splitlines():
        if not line.strip():
            continue
        record = json.loads(line)
        response = record.get("response") or {}
        body = response.get("body") or {}
        if response.get("status_code") != 200 or not body.get("choices"):
            failures[record["custom_id"]] = f"batch_error: {response.get('status_code')}"
            continue
        choice, usage = body["choices"][0], body.get("usage") or {}
        if not (choice.get("message") or {}).get("content"):
            failures[record["custom_id"]] = "invalid_response: empty answer"  # never cache an empty answer
            continue
        cache.put(
            CachedAnswer(
                request_id=record["custom_id"],
                text=choice["message"]["content"],
                finish_reason=choice.get("finish_reason"),
                prompt_tokens=int(usage.get("prompt_tokens", 0)),
                completion_tokens=int(usage.get("completion_tokens", 0)),
                model=body.get("model", model),
                created_at=time.time(),
            )
        )
    return failures


def _outcomes(
    requests: Sequence[TeacherRequest],
    known: dict[str, CachedAnswer],
    cache: RequestCache,
    failures: dict[str, str],
    cfg: EndpointConfig,
    wall_s: float,
) -> tuple[list[Outcome], RunStats]:
    answers = cache.get_many({r.request_id for r in requests})
    stats = RunStats(requests=len(requests), wall_s=wall_s)
    outcomes = []
    for request in requests:
        answer = answers.get(request.request_id)
        if answer is None:
            reason = failures.get(request.request_id, "batch_unanswered")
            outcome = Outcome(request.request_id, "failed", None, None, 0, 0, 0.0, 0.0, 1, False, reason)
            stats.failed[reason.split(":")[0]] += 1
        else:
            outcome = cached_outcome(answer, cfg)
            if request.request_id not in known:  # answered by this run's batch
                outcome = dataclasses.replace(outcome, cached=False, attempts=1)
                stats.prompt_tokens += outcome.prompt_tokens
                stats.completion_tokens += outcome.completion_tokens
                stats.cost_usd += outcome.cost_usd
            stats.ok += 1
            stats.cached += outcome.cached
        outcomes.append(outcome)
    return outcomes, stats

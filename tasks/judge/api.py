"""The trained judge as a Python object: compare two answers to a conversation, with the evaluation's judge
protocol, order policy, voting and a durable cache, so the same comparison is never paid for twice.

    from tasks.judge import PairwiseJudge
    judge = PairwiseJudge.from_artifact("artifacts", "rl_checkpoint")      # or KIND/VERSION
    judge = PairwiseJudge.from_model("path/or/hub-id", backend="hf")       # vllm on GPUs
    judge = PairwiseJudge.from_endpoint("http://127.0.0.1:8000/v1", "served-judge", api_key_env="JUDGE_KEY")
    result = judge.compare([{"role": "user", "content": "q"}], "answer a", "answer b")
    result.winner, result.traces

The backends (`tasks.judge.backends`) are the ones the evaluate stage runs: the same template rendering, verdict rule
(anywhere in the output; both or neither tag is an error) and, with `samples` > 1, one seed per sample.
Order policy: `seeded` shows each pair once, a at A or B by a seeded coin over the pair's content; `both`
shows it both ways. Every shown order and sample is one vote: the answer with more votes wins, equal votes
are a tie, and only when every vote is unparseable is the result an error.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Literal

from data_contracts import ArtifactStore
from data_contracts.store import cache_dir
from tasks.judge.backends import Judge, Judged, JudgeInput, hash_seed, make_judge
from tasks.judge.config import JudgeConfig
from tasks.judge.protocol import Turn, Verdict, load_template_set, parse_eval_verdict, render_judge_messages
from tasks.llm.cache import CachedAnswer, RequestCache, default_cache_path
from tasks.llm.config import EndpointConfig

Order = Literal["seeded", "both"]
Pair = tuple[Sequence[Turn], str, str]  # a conversation and two answers, a then b
CACHE_FILE = "judge_api.sqlite"
LOCAL_CHUNK_BATCHES = 4  # hf: answers are committed to the cache every this many batches
VLLM_CHUNK = 1024  # vllm: prompts per generate call, committed together


@dataclass(frozen=True)
class Judgment:
    """One pair judged: `winner` 0 (a), 1 (b) or None (a tie or an error); the votes and traces behind it."""

    verdict: Literal["a", "b", "tie", "error"]
    votes: tuple[str, ...]  # per shown order and sample: "a", "b", "tie" or "error"
    traces: tuple[str | None, ...]  # the judge's outputs, in the same order (None: not judged)
    tokens: int  # output tokens of the traces (cached ones included)
    shown: tuple[str, ...] = ()  # where a was shown ("A" or "B") for each vote: orders in turn, samples within

    @property
    def winner(self) -> int | None:
        return {"a": 0, "b": 1}.get(self.verdict)


def _pair_key(conversation: Sequence[Turn], a: str, b: str) -> str:
    text = json.dumps([list(conversation), a, b], ensure_ascii=False, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def combine(votes: Sequence[str]) -> Literal["a", "b", "tie", "error"]:
    """More votes for a or b wins; equal votes tie; all unparseable: an error."""
    a, b = votes.count("a"), votes.count("b")
    if a != b:
        return "a" if a > b else "b"
    return "error" if all(v == "error" for v in votes) else "tie"


class PairwiseJudge:
    """A judge model behind one method, `compare_many`; build it with a `from_*` constructor."""

    def __init__(self, config: JudgeConfig, model: str, *, name: str | None = None, order: Order = "seeded",
                 seed: int = 0, cache_path: str | None = None, engine: Judge | None = None) -> None:  # fmt: skip
        if order not in ("seeded", "both"):
            raise ValueError(f"order must be 'seeded' or 'both', got {order!r}")
        self.config, self.model, self.order, self.seed = config, model, order, seed
        self.name = name or model
        self.template = load_template_set(config.template)
        self.cache_path = cache_path
        self._engine = engine  # the opened backend (tasks.judge.backends); opened on first use when None
        self.calls = 0  # prompts sent to the backend (cache misses)
        self._cache: RequestCache | None = None
        self._lock = threading.RLock()

    # ------------------------------------------------------------ constructors

    @classmethod
    def from_artifact(cls, artifacts: str | ArtifactStore, checkpoint: str = "rl_checkpoint",
                      backend: Literal["hf", "vllm"] = "hf", **options: object) -> PairwiseJudge:  # fmt: skip
        """A checkpoint of the artifact store: `rl_checkpoint` / `sft_checkpoint` (the newest) or KIND/VERSION."""
        store = artifacts if isinstance(artifacts, ArtifactStore) else ArtifactStore(artifacts)
        ref = store.resolve(checkpoint, "checkpoint")
        config = _judge_config(backend, str(ref), options)
        cache = str(options.pop("cache_path", default_cache_path(store, None, CACHE_FILE)))
        return cls(config, store.local_copy(ref), name=str(ref), cache_path=cache, **options)  # type: ignore[arg-type]

    @classmethod
    def from_model(cls, model: str, backend: Literal["hf", "vllm"] = "hf", **options: object) -> PairwiseJudge:
        """A local model folder or Hub id, run with transformers (CPU or one GPU) or vLLM (GPUs)."""
        config = _judge_config(backend, model, options)
        return cls(config, model, **options)  # type: ignore[arg-type]

    @classmethod
    def from_endpoint(cls, base_url: str, model: str, *, api_key_env: str = "OPENAI_API_KEY",
                      max_in_flight: int = 16, **options: object) -> PairwiseJudge:  # fmt: skip
        """Any OpenAI-compatible endpoint serving the judge (distill's endpoint client, limits and retries)."""
        endpoint = EndpointConfig(base_url=base_url, api_key_env=api_key_env, max_in_flight=max_in_flight)
        options["endpoint"] = endpoint
        config = _judge_config("openai", model, options)  # takes the JudgeConfig keys out of `options`
        return cls(config, model, **options)  # type: ignore[arg-type]

    # ------------------------------------------------------------ judging

    def compare(self, conversation: Sequence[Turn], a: str, b: str) -> Judgment:
        return self.compare_many([(conversation, a, b)])[0]

    def compare_many(self, pairs: Sequence[Pair]) -> list[Judgment]:
        """Judge every pair (batched through the backend; cached answers are not sent again)."""
        shown = self._show(pairs)
        return self._cast(len(pairs), shown, self._judge([item for _, _, item in shown]))

    async def compare_many_async(self, pairs: Sequence[Pair]) -> list[Judgment]:
        """`compare_many` for an endpoint judge, awaited on its session's event loop (`loop`): what a server
        running on that loop calls, so no thread waits for the endpoint."""
        if self.config.backend != "openai":
            backend = self.config.backend
            raise TypeError(f"compare_many_async needs an endpoint judge; a {backend} judge uses compare_many")
        shown = self._show(pairs)
        inputs = [item for _, _, item in shown]
        outputs = await self.engine.judge_async(inputs)  # type: ignore[attr-defined]
        self._count_sent(inputs, outputs)
        return self._cast(len(pairs), shown, outputs)

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """An endpoint judge's event loop: its session's, opened on first use."""
        if self.config.backend != "openai":
            raise TypeError(f"a {self.config.backend} judge has no event loop; only an endpoint judge runs on one")
        return self.engine.loop  # type: ignore[attr-defined, no-any-return]

    def _show(self, pairs: Sequence[Pair]) -> list[tuple[int, str, JudgeInput]]:
        """What the backend is shown: (pair index, where a is shown, input) per order and sample."""
        shown: list[tuple[int, str, JudgeInput]] = []
        for index, (conversation, a, b) in enumerate(pairs):
            key = _pair_key(conversation, a, b)
            for a_at in self._positions(key):
                answer_a, answer_b = (a, b) if a_at == "A" else (b, a)
                messages = render_judge_messages(self.template, list(conversation), answer_a, answer_b)
                for sample in range(self.config.samples):
                    seed = hash_seed(self.config.seed, key, a_at, sample) if self.config.samples > 1 else None
                    shown.append((index, a_at, JudgeInput(messages, answer_a, answer_b, seed)))
        return shown

    def _cast(self, count: int, shown: list[tuple[int, str, JudgeInput]], outputs: list[Judged]) -> list[Judgment]:
        """The votes read from the backend's outputs, combined per pair."""
        votes: list[list[tuple[str, str | None, int, str]]] = [[] for _ in range(count)]
        for (index, a_at, _), output in zip(shown, outputs, strict=True):
            verdict = parse_eval_verdict(output.text, self.config.allow_tie) if output.text is not None else None
            vote = "error" if verdict in (None, Verdict.ERROR) else "tie" if verdict == Verdict.TIE else (
                "a" if verdict == a_at else "b")  # fmt: skip
            votes[index].append((vote, output.text, output.tokens, a_at))
        return [
            Judgment(combine([v[0] for v in cast]), tuple(v[0] for v in cast), tuple(v[1] for v in cast),
                     sum(v[2] for v in cast), tuple(v[3] for v in cast))
            for cast in votes
        ]  # fmt: skip

    def _positions(self, key: str) -> tuple[str, ...]:
        if self.order == "both":
            return ("A", "B")
        return ("A",) if hashlib.sha256(f"{self.seed}:{key}".encode()).digest()[0] % 2 == 0 else ("B",)

    def _request_id(self, item: JudgeInput) -> str:
        payload = {"judge": self._judge_key, "model": self.name, "template": self.template.fingerprint,
                   "messages": item.messages, "seed": item.seed}  # fmt: skip
        return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()

    @cached_property
    def _judge_key(self) -> dict[str, object]:
        return {k: v for k, v in dataclasses.asdict(self.config).items() if k not in ("endpoint", "batch_size")}

    def _judge(self, inputs: list[JudgeInput]) -> list[Judged]:
        """The backend's outputs for `inputs`; answers already in the cache are not generated again. An endpoint
        judge's own request cache (the distill client's, in the same file) is that cache, each answer committed
        as it arrives; a local model's answers are kept here, committed after every few of its batches."""
        if self.config.backend == "openai":
            outputs = self.engine.judge(inputs)
            self._count_sent(inputs, outputs)
            return outputs
        ids = [self._request_id(i) for i in inputs]
        cache = self._open_cache()
        known = cache.get_many(ids) if cache is not None else {}
        todo = sorted({rid: k for k, rid in enumerate(ids) if rid not in known}.values())
        fresh: dict[str, Judged] = {}
        # what a kill can lose: a few hf batches, or one large vLLM call (it schedules its own batches)
        step = VLLM_CHUNK if self.config.backend == "vllm" else LOCAL_CHUNK_BATCHES * max(self.config.batch_size, 1)
        for start in range(0, len(todo), step):
            chunk = todo[start : start + step]
            with self._lock:
                self.calls += len(chunk)
            for k, output in zip(chunk, self.engine.judge([inputs[k] for k in chunk]), strict=True):
                fresh[ids[k]] = output
                if cache is not None and output.text is not None:
                    cache.put(CachedAnswer(ids[k], output.text, None, 0, output.tokens, self.name, time.time()))
        return [
            fresh[rid] if rid in fresh else Judged(known[rid].text, known[rid].completion_tokens, cached=True)
            for rid in ids
        ]

    def _count_sent(self, inputs: list[JudgeInput], outputs: list[Judged]) -> None:
        sent = {(json.dumps(i.messages), i.seed) for i, o in zip(inputs, outputs, strict=True) if not o.cached}
        with self._lock:
            self.calls += len(sent)  # identical prompts are sent once

    def _open_cache(self) -> RequestCache | None:
        """The durable cache, opened on first use and kept open until `close` (each thread has its connection)."""
        with self._lock:
            if self._cache is None and self.cache_path:
                self._cache = RequestCache(self.cache_path)
            return self._cache

    @property
    def engine(self) -> Judge:
        """The backend that runs the model, opened (the model loaded) on first use."""
        engine = self._engine
        if engine is not None:
            return engine  # the path every call takes: no lock
        with self._lock:
            if self._engine is None:
                cache = self.cache_path or os.path.join(cache_dir(), "judge_requests.sqlite")
                self._engine = make_judge(self.config, self.model, self.name, cache, quiet=True)
            return self._engine

    def failed_requests(self) -> dict[str, int]:
        """Requests the backend could not answer so far, by reason (an endpoint's timeouts, rate limits, ...):
        those judgments are errors, and are not cached, so asking again sends them again."""
        notes = getattr(self._engine, "notes", None) or {}
        return {k.removeprefix("request_"): v for k, v in notes.items() if k.startswith("request_") and v}

    def close(self) -> None:
        with self._lock:
            if self._engine is not None:
                self._engine.close()
                self._engine = None
            if self._cache is not None:
                self._cache.close()
                self._cache = None

    def __getstate__(self) -> dict[str, object]:  # pickled (e.g. to a worker): the cache reopens there
        return {**self.__dict__, "_cache": None, "_lock": None}

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__dict__.update(state, _lock=threading.RLock())

    def __enter__(self) -> PairwiseJudge:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


_OWN = ("name", "order", "seed", "cache_path", "engine")  # PairwiseJudge's own options; the rest is JudgeConfig


def _judge_config(backend: str, model: str, options: dict[str, object]) -> JudgeConfig:
    """A JudgeConfig from keyword options (template, max_new_tokens, temperature, samples, ...); the
    PairwiseJudge options stay in `options`."""
    fields = {k: v for k, v in options.items() if k not in _OWN}
    for key in fields:
        options.pop(key)
    return JudgeConfig(backend=backend, model=model, **fields)  # type: ignore[arg-type]

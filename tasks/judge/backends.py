"""Judging backends behind one interface: a batch of judge prompts in, one output text (or None) per prompt.

- `hf`: transformers `generate`, batched, greedy unless a temperature is set; CPU or one GPU.
- `vllm`: offline `LLM.generate` with tensor parallelism (GPU only; vLLM is imported only here, lazily).
- `openai`: any OpenAI-compatible endpoint through the endpoint client (`tasks.llm`): bounded
  concurrency, rate limits, retries and the durable request cache, so a re-run never pays twice.
- `length`: "the longer answer wins", a sanity baseline that needs no model.
hf and vllm render prompts with the model's own chat template, identically; a prompt longer than the
model's context minus `max_new_tokens` is not judged (None, counted in `notes`), which scores as an error.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from tqdm.auto import tqdm

from tasks.judge.config import JudgeConfig
from tasks.judge.protocol import Turn
from tasks.judge.protocol.verdicts import TIE_TAG, VERDICT_TAGS
from tasks.llm.cache import RequestCache
from tasks.llm.client import EndpointSession, Outcome, TeacherRequest, resolve_api_key

LENGTH_JUDGE = "length-baseline"
Done = Callable[[int], None] | None  # told how many more prompts were judged, as they finish


@dataclass(frozen=True)
class JudgeInput:
    """One judgement to make: the rendered judge messages, the two answers as shown (A, B), and with sampled
    decoding the seed of this sample."""

    messages: list[Turn]
    answer_a: str
    answer_b: str
    seed: int | None = None


@dataclass(frozen=True)
class Judged:
    """A judge's output text (None when the prompt was not judged) and the tokens it generated."""

    text: str | None
    tokens: int = 0
    cached: bool = False  # answered from a request cache: nothing was generated or paid for now


class Judge(Protocol):
    name: str  # recorded in every prediction's `judge` column
    notes: Counter[str]  # prompts not judged, by reason (overlong, request failures)

    def judge(self, inputs: Sequence[JudgeInput], on_done: Done = None) -> list[Judged]: ...

    def close(self) -> None: ...


class LengthJudge:
    """Picks the longer answer (in characters); equal lengths give [[C]], a tie when ties are allowed."""

    def __init__(self) -> None:
        self.name, self.notes = LENGTH_JUDGE, Counter[str]()

    def judge(self, inputs: Sequence[JudgeInput], on_done: Done = None) -> list[Judged]:
        def verdict(a: str, b: str) -> str:
            if len(a) == len(b):
                return f"<answer>{TIE_TAG}</answer>"
            return f"<answer>{VERDICT_TAGS['model_a' if len(a) > len(b) else 'model_b']}</answer>"

        if on_done is not None:
            on_done(len(inputs))
        return [Judged(verdict(i.answer_a, i.answer_b)) for i in inputs]

    def close(self) -> None:
        pass


def hash_seed(*parts: object) -> int:
    """A 31-bit seed from any values, the same in every process (unlike `hash`)."""
    digest = hashlib.sha256(":".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def prompt_ids(tokenizer: Any, messages: list[Turn]) -> list[int]:
    """The model's own chat template applied to the judge messages, ready for the assistant's turn, as ids
    (the template writes any BOS itself, so the tokenizer adds no special tokens)."""
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def _prompt_budget(config: JudgeConfig, context_length: int) -> int:
    return config.max_prompt_tokens if config.max_prompt_tokens is not None else context_length - config.max_new_tokens


class HfJudge:
    """transformers `generate` in batches of similar length (less padding), left-padded, on GPU if present."""

    def __init__(self, model: str, config: JudgeConfig, name: str) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

        self.name, self.notes, self.config = name, Counter[str](), config
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        dtype = config.dtype
        if dtype == "auto":
            dtype = "bfloat16" if self.device == "cuda" else "float32"
        self.tokenizer = AutoTokenizer.from_pretrained(model, revision=config.revision)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        loaded = AutoModelForCausalLM.from_pretrained(model, revision=config.revision, dtype=getattr(torch, dtype))
        self.model = loaded.to(self.device).eval()
        self.max_prompt = _prompt_budget(config, self.model.config.max_position_embeddings)
        # Shipped decoding defaults (Qwen2.5: repetition_penalty 1.05, top_k 20, top_p 0.8) would change the
        # verdicts, and vLLM does not apply them: set each to "off" (generate fills only unset values from the
        # model's generation_config). Only the stop ids come from the model.
        self.generation = GenerationConfig(
            max_new_tokens=config.max_new_tokens,
            do_sample=config.temperature > 0,
            temperature=config.temperature if config.temperature > 0 else 1.0,
            repetition_penalty=1.0,
            top_p=1.0,
            top_k=0,
            min_p=0.0,
            eos_token_id=self.model.generation_config.eos_token_id or self.tokenizer.eos_token_id,
            pad_token_id=self.tokenizer.pad_token_id,
        )

    def judge(self, inputs: Sequence[JudgeInput], on_done: Done = None) -> list[Judged]:
        import torch

        ids = [prompt_ids(self.tokenizer, i.messages) for i in inputs]
        outputs = [Judged(None)] * len(ids)
        fits = [k for k, tokens in enumerate(ids) if len(tokens) <= self.max_prompt]
        self.notes["overlong_prompt"] += len(ids) - len(fits)
        if on_done is not None:
            on_done(len(ids) - len(fits))
        order = sorted(fits, key=lambda k: len(ids[k]))
        batch_size = self.config.batch_size
        for start in tqdm(range(0, len(order), batch_size), desc="judge (hf)", unit="batch", leave=False):
            batch = order[start : start + batch_size]
            encoded = self.tokenizer.pad({"input_ids": [ids[k] for k in batch]}, return_tensors="pt").to(self.device)
            seeds = [inputs[k].seed for k in batch if inputs[k].seed is not None]
            if seeds:  # one generator per batch: reproducible for the same inputs and batch_size
                torch.manual_seed(hash_seed(*seeds))
            with torch.no_grad():
                generated = self.model.generate(**encoded, generation_config=self.generation)
            new = generated[:, encoded["input_ids"].shape[1] :]
            texts = self.tokenizer.batch_decode(new, skip_special_tokens=True)
            lengths = (new != self.tokenizer.pad_token_id).sum(dim=1).tolist()  # generated tokens, stop token aside
            for k, text, length in zip(batch, texts, lengths, strict=True):
                outputs[k] = Judged(text, int(length))
            if on_done is not None:
                on_done(len(batch))
        return outputs

    def close(self) -> None:
        del self.model


class VllmJudge:
    """vLLM's offline engine (`LLM.generate`) over all GPUs of one node (tensor parallel)."""

    def __init__(self, model: str, config: JudgeConfig, name: str) -> None:
        from vllm import LLM  # GPU-only extra: imported here and nowhere else

        self.name, self.notes, self.config = name, Counter[str](), config
        self.llm = LLM(
            model=model,
            revision=config.revision,
            tensor_parallel_size=config.tensor_parallel_size,
            dtype=config.dtype,
            gpu_memory_utilization=config.gpu_memory_utilization,
            max_model_len=config.max_model_len,
            seed=0,
        )
        self.tokenizer = self.llm.get_tokenizer()
        engine = self.llm.llm_engine
        model_config = getattr(engine, "model_config", None) or engine.vllm_config.model_config
        self.max_prompt = _prompt_budget(config, model_config.max_model_len)

    def judge(self, inputs: Sequence[JudgeInput], on_done: Done = None) -> list[Judged]:
        from vllm import SamplingParams

        # Token ids, not text: vLLM would add the tokenizer's BOS again to a template that already has one.
        ids = [prompt_ids(self.tokenizer, i.messages) for i in inputs]
        fits = [k for k, tokens in enumerate(ids) if len(tokens) <= self.max_prompt]
        self.notes["overlong_prompt"] += len(ids) - len(fits)
        params = [
            SamplingParams(
                temperature=self.config.temperature,
                max_tokens=self.config.max_new_tokens,
                seed=0 if inputs[k].seed is None else inputs[k].seed,
            )
            for k in fits
        ]
        generated = self.llm.generate([{"prompt_token_ids": ids[k]} for k in fits], params, use_tqdm=True)
        outputs = [Judged(None)] * len(ids)
        for k, result in zip(fits, generated, strict=True):
            outputs[k] = Judged(result.outputs[0].text, len(result.outputs[0].token_ids))
        if on_done is not None:
            on_done(len(ids))
        return outputs

    def close(self) -> None:
        del self.llm


class OpenAIJudge:
    """An OpenAI-compatible endpoint, through the same client, limits, retries and request cache as distill.
    The connection and the cache stay open until `close`, `judge` may be called from several threads, and a
    forked child opens its own. `quiet`: the per-call summary lines are debug (a server's many small calls)."""

    def __init__(self, config: JudgeConfig, cache_path: str, quiet: bool = False) -> None:
        assert config.endpoint is not None
        self.config, self.endpoint = config, config.endpoint
        self.name, self.notes, self.cache_path = config.model, Counter[str](), cache_path
        self.api_key = resolve_api_key(self.endpoint)
        self.log_level = logging.DEBUG if quiet else logging.INFO
        self._open: tuple[int, EndpointSession, RequestCache] | None = None  # (pid, session, cache)
        self._lock = threading.Lock()

    def requests(self, inputs: Sequence[JudgeInput]) -> list[TeacherRequest]:
        """The judge's model and decoding (no top_p: the provider's default) over each input's messages."""
        cfg = self.config
        return [
            TeacherRequest(tuple(i.messages), cfg.model, cfg.max_new_tokens, cfg.temperature, seed=i.seed)
            for i in inputs
        ]

    def judge(self, inputs: Sequence[JudgeInput], on_done: Done = None) -> list[Judged]:
        def done(_: object) -> None:
            if on_done is not None:
                on_done(1)

        _, session, cache = self._opened()
        outcomes, _ = session.send(self.requests(inputs), cache, on_outcome=done)
        return self._judged(outcomes)

    async def judge_async(self, inputs: Sequence[JudgeInput]) -> list[Judged]:
        """`judge`, awaited on the endpoint session's loop (`loop`): a server running there waits on no thread."""
        _, session, cache = self._opened()
        outcomes, _ = await session.send_async(self.requests(inputs), cache)
        return self._judged(outcomes)

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The endpoint session's event loop (the session opened on first use)."""
        return self._opened()[1].loop

    def _judged(self, outcomes: Sequence[Outcome]) -> list[Judged]:
        failed = Counter(f"request_{o.failure_category}" for o in outcomes if o.status == "failed")
        if failed:
            with self._lock:
                self.notes.update(failed)
        return [
            Judged(outcome.text, outcome.completion_tokens, outcome.cached) if outcome.status == "ok" else Judged(None)
            for outcome in outcomes
        ]

    def _opened(self) -> tuple[int, EndpointSession, RequestCache]:
        """The session and cache of this process, opened on first use (again in a forked child)."""
        opened = self._open
        if opened is not None and opened[0] == os.getpid():
            return opened  # the path every call takes: no lock
        with self._lock:
            if self._open is None or self._open[0] != os.getpid():
                session = EndpointSession(self.endpoint, self.api_key, self.log_level)
                self._open = (os.getpid(), session, RequestCache(self.cache_path))
            return self._open

    def close(self) -> None:
        with self._lock:
            opened, self._open = self._open, None
        if opened is not None and opened[0] == os.getpid():
            opened[1].close()
            opened[2].close()

    def __getstate__(self) -> dict[str, Any]:  # pickled (e.g. to a worker): the session reopens there
        return {**self.__dict__, "_open": None, "_lock": None}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state, _lock=threading.Lock())


def make_judge(config: JudgeConfig, model: str, name: str, cache_path: str, quiet: bool = False) -> Judge:
    """The backend `config.backend` for `model` (a local folder or Hub id; the served name for openai);
    `quiet`: an endpoint's per-call summary lines are debug."""
    if config.backend == "length":
        return LengthJudge()
    if config.backend == "openai":
        return OpenAIJudge(config, cache_path, quiet)
    if config.backend == "hf":
        return HfJudge(model, config, name)
    return VllmJudge(model, config, name)

"""The evaluate stage end to end: length baseline, openai backend on a real loopback server (with faults),
the hf backend on a tiny model, resuming from finished chunks, versions, and `rmr1 score`."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from data_contracts import ArtifactRef, ArtifactStore
from data_contracts.kinds import EVAL_PREDICTIONS, EVAL_SCORES
from flows.cli import main as rmr1
from flows.plan import Step, execute, make_plan
from flows.recipe import Recipe
from tasks.evaluate import stage as evaluate_stage
from tasks.evaluate.benchmarks import load_benchmark
from tasks.evaluate.config import BenchmarkConfig, EvaluateConfig
from tasks.evaluate.stage import EvaluationIncomplete, evaluate_versions, judge_all, judgements
from tasks.judge.backends import HfJudge, Judged, LengthJudge
from tasks.judge.config import JudgeConfig
from tasks.llm.config import EndpointConfig
from tasks.stage import StageResult
from tasks.standins.teacher import Faults, StandinTeacher
from tests.conftest import BENCHMARKS, needs_shared

SYNTHETIC = tuple(BenchmarkConfig(name=n, path="synthetic") for n in ("rewardbench", "rm_bench", "rmb"))
LENGTH = JudgeConfig(backend="length", allow_tie=True)


def _config(**changes: Any) -> EvaluateConfig:
    return dataclasses.replace(EvaluateConfig(judge=LENGTH, benchmarks=SYNTHETIC, chunk_size=64), **changes)


def evaluate_judge(
    config: EvaluateConfig, store: ArtifactStore, checkpoint: ArtifactRef | None = None, **options: Any
) -> StageResult:
    """The stage as the plan runs it: the versions it publishes computed from the config (and checkpoint)."""
    versions = evaluate_versions(config, checkpoint)
    return evaluate_stage.evaluate_judge(config, store, checkpoint, versions=versions, **options)


def _no_stage(step: Step) -> Any:
    raise AssertionError(f"a published step ran: {step.name}")


def test_length_baseline_publishes_predictions_scores_and_a_report_then_the_plan_skips_it(tmp_path: Path) -> None:
    store = ArtifactStore(tmp_path)
    result = evaluate_judge(_config(), store)
    predictions = store.read_table(result.outputs[EVAL_PREDICTIONS.kind]).to_pandas()
    scores = store.read_table(result.outputs[EVAL_SCORES.kind]).to_pandas()
    assert set(predictions["benchmark"]) == {"rewardbench", "rm_bench", "rmb"}
    assert set(predictions["judge"]) == {"length-baseline"}
    assert (predictions["order_seed"] == 0).all()
    assert set(predictions["verdict"]) <= {"A", "B", "tie"}  # the baseline always answers
    headline = scores[scores["level"] == "headline"]["score"].item()
    benchmark_scores = scores[(scores["level"] == "benchmark") & (scores["name"] == "score")]["score"]
    assert headline == pytest.approx(benchmark_scores.mean())
    report = result.stats["report"]
    assert "RM-R1-Qwen2.5-Instruct-7B | 85.2 (" in report
    assert "Judge model: `none (longer answer wins)`" in report

    recipe = Recipe(name="evaluate-twice", evaluate=_config())
    plan = make_plan(recipe, store, target="evaluate")
    step = plan.step("evaluate")
    assert step.published and not step.runs
    assert step.outputs == result.outputs
    assert execute(plan, _no_stage) == result.outputs  # no stage runs
    assert store.manifest(step.outputs[EVAL_SCORES.kind])["stats"]["report"] == report
    assert make_plan(Recipe(name="other-seed", evaluate=_config(order_seed=1)), store).step("evaluate").runs


def test_versions_follow_what_changes_the_predictions_only(tmp_path: Path) -> None:
    base = evaluate_versions(_config(), None)
    assert evaluate_versions(_config(chunk_size=7), None) == base
    assert evaluate_versions(_config(order_seed=1), None) != base
    assert evaluate_versions(_config(both_orders=True), None) != base
    # The length baseline has no model, prompt or decoding: only allow_tie matters.
    assert evaluate_versions(_config(judge=dataclasses.replace(LENGTH, max_new_tokens=99)), None) == base
    assert evaluate_versions(_config(judge=dataclasses.replace(LENGTH, allow_tie=False)), None) != base
    hf = JudgeConfig(backend="hf", model="some/model")
    with_hf = evaluate_versions(_config(judge=hf), None)
    faster = dataclasses.replace(hf, batch_size=64, gpu_memory_utilization=0.5)
    assert evaluate_versions(_config(judge=faster), None) == with_hf
    for changed in ({"max_new_tokens": 99}, {"max_model_len": 4096}, {"template": "no-rubrics-v1"}, {"model": "x"}):
        assert evaluate_versions(_config(judge=dataclasses.replace(hf, **changed)), None) != with_hf, changed
    (tmp_path / "chat_filtered.json").write_text("[]")
    sampled = BenchmarkConfig(name="rm_bench", path=str(tmp_path))
    unsampled_seed = dataclasses.replace(sampled, sample_seed=5)  # no sample: the seed is not used
    assert evaluate_versions(_config(benchmarks=(sampled,)), None) == evaluate_versions(
        _config(benchmarks=(unsampled_seed,)), None
    )


def test_a_killed_run_resumes_from_its_finished_chunks(tmp_path: Path) -> None:
    class Killed(RuntimeError):
        pass

    class DiesOnThirdChunk(LengthJudge):
        calls = 0

        def judge(self, inputs: Any, on_done: Any = None) -> list[Judged]:
            DiesOnThirdChunk.calls += 1
            if DiesOnThirdChunk.calls == 3:
                raise Killed
            return super().judge(inputs, on_done)

    config = _config(chunk_size=20)
    items = judgements([c for b in config.benchmarks for c in load_benchmark(b)], 0, False)
    with pytest.raises(Killed):
        judge_all(items, config, DiesOnThirdChunk, str(tmp_path), "length-baseline")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["chunk-20-00000.parquet", "chunk-20-00001.parquet"]

    resumed = judge_all(items, config, DiesOnThirdChunk, str(tmp_path), "length-baseline")
    assert resumed.judged_now == len(items) - 40  # the two finished chunks were read, not judged again
    fresh = judge_all(items, config, LengthJudge, str(tmp_path / "fresh"), "length-baseline")
    assert resumed.rows == fresh.rows and resumed.tokens == fresh.tokens
    # Resumed with another chunk size, the old chunks cover other ranges: nothing of them is reused.
    resized = judge_all(items, _config(chunk_size=30), LengthJudge, str(tmp_path), "length-baseline")
    assert resized.judged_now == len(items) and resized.rows == fresh.rows


def test_both_orders_reports_position_consistency(tmp_path: Path) -> None:
    result = evaluate_judge(_config(both_orders=True), ArtifactStore(tmp_path))
    predictions = ArtifactStore(tmp_path).read_table(result.outputs[EVAL_PREDICTIONS.kind]).to_pandas()
    assert predictions["swapped"].sum() == (~predictions["swapped"]).sum()
    consistency = [r for r in result.stats["scores"] if r["name"] == "consistency"]
    assert {r["benchmark"] for r in consistency} == {"rewardbench", "rm_bench", "rmb"}
    # The length judge ignores position: every decided pair is consistent; only ties ([[C]]) are not.
    ties = predictions.groupby(predictions["comparison_id"].str.removesuffix("#swapped"))["verdict"].apply(
        lambda v: (v == "tie").any()
    )
    expected = 1 - ties.mean()
    overall = sum(r["score"] * r["count"] for r in consistency) / sum(r["count"] for r in consistency)
    assert overall == pytest.approx(expected)


def _openai_judge(server: StandinTeacher, **endpoint: Any) -> JudgeConfig:
    settings = EndpointConfig(base_url=server.base_url, max_in_flight=8, backoff_initial_s=0.01, **endpoint)
    return JudgeConfig(backend="openai", model="served-judge", max_new_tokens=256, endpoint=settings)


def test_openai_backend_judges_through_a_real_server_and_caches_every_answer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    config = _config(benchmarks=SYNTHETIC[2:])  # RMB, with multi-turn conversations
    with StandinTeacher(faults=Faults(rate_500=0.2, rate_429=0.1, retry_after_s=0.0, seed=3)) as server:
        judge = _openai_judge(server, max_retries=10)  # a request failing 11 times in a row: p = 0.3^11
        judged = evaluate_judge(dataclasses.replace(config, judge=judge), ArtifactStore(tmp_path / "a"))
        sent = len(server.request_log())
        predictions = ArtifactStore(tmp_path / "a").read_table(judged.outputs[EVAL_PREDICTIONS.kind]).to_pandas()
        assert set(predictions["judge"]) == {"served-judge"}
        assert (predictions["verdict"] != "error").all()  # faults were retried
        assert sent > len(predictions)  # ... and they did happen

        # The stand-in judges by length (a tie goes to A), so it must agree with the length baseline.
        baseline = evaluate_judge(config, ArtifactStore(tmp_path / "b"))
        length = ArtifactStore(tmp_path / "b").read_table(baseline.outputs[EVAL_PREDICTIONS.kind]).to_pandas()
        merged = predictions.merge(length, on="comparison_id", suffixes=("", "_length"))
        decided = merged[merged["verdict_length"] != "tie"]
        assert (decided["verdict"] == decided["verdict_length"]).all()

        # Same store, predictions removed: the request cache answers every request, nothing is sent.
        store = ArtifactStore(tmp_path / "a")
        store.fs.rm(store.folder(EVAL_PREDICTIONS.kind, judged.outputs[EVAL_PREDICTIONS.kind].version), recursive=True)
        store.fs.rm(store.folder(EVAL_SCORES.kind, judged.outputs[EVAL_SCORES.kind].version), recursive=True)
        evaluate_judge(dataclasses.replace(config, judge=judge), store)
        assert len(server.request_log()) == sent


def test_openai_backend_publishes_nothing_when_too_many_requests_fail(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    config = _config(benchmarks=SYNTHETIC[:1])
    with StandinTeacher(faults=Faults(rate_500=1.0)) as server:
        judge = _openai_judge(server, max_retries=1)
        with pytest.raises(EvaluationIncomplete, match="judge requests failed"):
            evaluate_judge(dataclasses.replace(config, judge=judge), ArtifactStore(tmp_path))
    assert ArtifactStore(tmp_path).list(EVAL_PREDICTIONS.kind) == []


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> str:
    from tasks.judge.protocol import load_template_set
    from tasks.models.config import TinyModelConfig
    from tasks.models.tiny import build_tiny_model
    from tasks.standins.synthetic_pairs import synthetic_records

    template = load_template_set("cor-instruct-v1")
    texts = [template.system or "", template.user_single, template.user_multi]
    texts += [r["chosen"] + r["rejected"] + r["conversation"][-1]["content"] for r in synthetic_records(300, 0)]
    config = TinyModelConfig(vocab_size=2048, hidden_size=32, intermediate_size=64, num_heads=2, num_kv_heads=1)
    return build_tiny_model(texts, config, str(tmp_path_factory.mktemp("tiny")))


@needs_shared
def test_hf_backend_evaluates_a_tiny_model_on_samples_of_all_three_benchmarks(tmp_path: Path, tiny_model: str) -> None:
    benchmarks = (
        BenchmarkConfig(name="rewardbench", path=str(BENCHMARKS / "llmbar"), items_per_subset=1),
        BenchmarkConfig(name="rm_bench", path=str(BENCHMARKS / "rm_bench"), items_per_subset=1),
        BenchmarkConfig(name="rmb", path=str(BENCHMARKS / "rmb"), items_per_subset=1),
    )
    judge = JudgeConfig(backend="hf", model=tiny_model, max_new_tokens=8, max_prompt_tokens=3000, batch_size=4)
    result = evaluate_judge(EvaluateConfig(judge=judge, benchmarks=benchmarks), ArtifactStore(tmp_path))
    predictions = ArtifactStore(tmp_path).read_table(result.outputs[EVAL_PREDICTIONS.kind]).to_pandas()
    assert len(predictions) == 5 + 4 * 9 + 2 + predictions["subset"].str.startswith("bon/").sum()
    judged = predictions["output"].notna()
    assert judged.any()
    assert result.stats["notes"].get("overlong_prompt", 0) == (~judged).sum()
    assert (predictions.loc[~judged, "verdict"] == "error").all()
    assert {r["benchmark"] for r in result.stats["scores"] if r["name"] == "score"} >= {"rewardbench", "rm_bench",
                                                                                         "rmb", "overall"}  # fmt: skip


def test_hf_backend_batches_give_the_same_greedy_outputs_as_one_at_a_time(tiny_model: str, tmp_path: Path) -> None:
    from tasks.evaluate.stage import judge_input
    from tasks.judge.protocol import load_template_set

    template = load_template_set("cor-instruct-v1")
    comparisons = load_benchmark(BenchmarkConfig(name="rm_bench", path="synthetic"))[:6]
    inputs = [judge_input(j, template) for j in judgements(comparisons, 0, False)]
    outputs = {}
    for batch_size in (1, 6):
        judge = HfJudge(tiny_model, JudgeConfig(backend="hf", model=tiny_model, max_new_tokens=12,
                                                batch_size=batch_size), "tiny")  # fmt: skip
        outputs[batch_size] = judge.judge(inputs)
    assert outputs[1] == outputs[6]
    assert all(isinstance(o.text, str) and o.tokens > 0 for o in outputs[1])

    # Decoding defaults shipped with a model (Qwen2.5: repetition_penalty, top_k, top_p) are not applied.
    shipped = tmp_path / "shipped-defaults"
    shutil.copytree(tiny_model, shipped)
    generation = json.loads((shipped / "generation_config.json").read_text())
    generation.update(repetition_penalty=50.0, top_k=1, top_p=0.1, do_sample=True)
    (shipped / "generation_config.json").write_text(json.dumps(generation))
    judge = HfJudge(str(shipped), JudgeConfig(backend="hf", model=str(shipped), max_new_tokens=12, batch_size=6), "t")
    assert judge.judge(inputs) == outputs[1]


def test_rmr1_score_scores_an_artifact_and_a_jsonl_of_outputs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = ArtifactStore(tmp_path / "artifacts")
    result = evaluate_judge(_config(), store)
    version = result.outputs[EVAL_PREDICTIONS.kind].version
    assert rmr1(["score", f"eval_predictions/{version[:8]}", "--artifacts", str(tmp_path / "artifacts")]) == 0
    from_artifact = json.loads(capsys.readouterr().out)
    expected = {r["name"]: r["score"] for r in result.stats["scores"] if r["level"] == "headline"}
    assert from_artifact["overall"]["headline"]["score"]["score"] == pytest.approx(expected["score"], abs=1e-6)

    predictions = store.read_table(result.outputs[EVAL_PREDICTIONS.kind]).to_pandas()
    mine = predictions[["benchmark", "subset", "item_id", "comparison_id", "group_id", "category", "chosen_style",
                        "rejected_style", "chosen_position", "output"]]  # fmt: skip
    mine.to_json(tmp_path / "judged.jsonl", orient="records", lines=True)
    assert rmr1(["score", str(tmp_path / "judged.jsonl"), "--allow-tie"]) == 0  # the baseline calls ties
    from_outputs = json.loads(capsys.readouterr().out)
    assert from_outputs == from_artifact
    assert rmr1(["score", str(tmp_path / "judged.jsonl")]) == 0  # without: [[C]] is unparseable
    assert json.loads(capsys.readouterr().out)["rm_bench"]["section"]["math/normal"]["error_rate"] > 0

    broken = pd.read_json(tmp_path / "judged.jsonl", lines=True).assign(verdict="A", score=0.0)
    broken.to_json(tmp_path / "broken.jsonl", orient="records", lines=True)
    assert rmr1(["score", str(tmp_path / "broken.jsonl")]) == 2
    error = capsys.readouterr().err
    assert "broken.jsonl, row" in error and "field 'score'" in error
    no_domain = pd.read_json(tmp_path / "judged.jsonl", lines=True)
    no_domain.loc[no_domain["benchmark"] == "rm_bench", "category"] = None
    no_domain.to_json(tmp_path / "no_domain.jsonl", orient="records", lines=True)
    assert rmr1(["score", str(tmp_path / "no_domain.jsonl")]) == 2
    assert "rm_bench rows need field 'category'" in capsys.readouterr().err
    pd.DataFrame([{"benchmark": "rmb"}]).to_json(tmp_path / "short.jsonl", orient="records", lines=True)
    assert rmr1(["score", str(tmp_path / "short.jsonl")]) == 2
    assert "missing column(s) subset, item_id" in capsys.readouterr().err


def test_vllm_backend_is_imported_lazily_and_calls_the_offline_engine(
    tiny_model: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """vLLM needs a GPU: a minimal module with vLLM's API records what the backend asks of it."""
    import subprocess
    import sys
    import types

    imported = subprocess.run(
        [sys.executable, "-c", "import sys, tasks.evaluate.stage, flows.stages; print('vllm' in sys.modules)"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert imported.stdout.strip() == "False"

    from transformers import AutoTokenizer

    calls: dict[str, Any] = {}

    class SamplingParams:
        def __init__(self, **kwargs: Any) -> None:
            calls["sampling"] = kwargs

    class LLM:
        def __init__(self, **kwargs: Any) -> None:
            calls["engine"] = kwargs
            config = types.SimpleNamespace(max_model_len=1200)
            self.llm_engine = types.SimpleNamespace(vllm_config=types.SimpleNamespace(model_config=config))

        def get_tokenizer(self) -> Any:
            return AutoTokenizer.from_pretrained(calls["engine"]["model"])

        def generate(self, prompts: list[dict[str, list[int]]], params: SamplingParams, use_tqdm: bool) -> list[Any]:
            calls["prompts"] = prompts
            output = types.SimpleNamespace(text="<answer>[[B]]</answer>", token_ids=[1, 2, 3])
            return [types.SimpleNamespace(outputs=[output]) for _ in prompts]

    monkeypatch.setitem(sys.modules, "vllm", types.SimpleNamespace(LLM=LLM, SamplingParams=SamplingParams))
    from tasks.judge.backends import JudgeInput, VllmJudge

    config = JudgeConfig(backend="vllm", model=tiny_model, max_new_tokens=200, tensor_parallel_size=4)
    judge = VllmJudge(tiny_model, config, "tiny")
    short = JudgeInput([{"role": "user", "content": "Which is better?"}], "a", "b")
    long = JudgeInput([{"role": "user", "content": "word " * 2000}], "a", "b")
    assert judge.judge([short, long]) == [Judged("<answer>[[B]]</answer>", 3), Judged(None)]  # 1,200 - 200 of room
    assert judge.notes["overlong_prompt"] == 1
    assert calls["engine"]["tensor_parallel_size"] == 4 and calls["engine"]["model"] == tiny_model
    assert calls["sampling"] == {"temperature": 0.0, "max_tokens": 200, "seed": 0}
    [prompt] = calls["prompts"]  # token ids, so vLLM adds no second BOS
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    text = tokenizer.apply_chat_template(short.messages, tokenize=False, add_generation_prompt=True)
    assert prompt == {"prompt_token_ids": tokenizer(text, add_special_tokens=False)["input_ids"]}
    assert text.endswith("<|im_start|>assistant\n")


def test_a_transient_request_failure_blocks_publishing_and_the_rerun_sends_only_what_failed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    config = _config(benchmarks=SYNTHETIC[:1])
    with StandinTeacher(faults=Faults(rate_500=0.5, seed=1)) as flaky:
        judge = _openai_judge(flaky, max_retries=0)  # a 500 is final for this run
        with pytest.raises(EvaluationIncomplete, match="server_error"):
            evaluate_judge(dataclasses.replace(config, judge=judge), ArtifactStore(tmp_path))
        answered = sum(entry["outcome"] == "ok" for entry in flaky.request_log())
    assert ArtifactStore(tmp_path).list(EVAL_PREDICTIONS.kind) == []
    assert 0 < answered < len(load_benchmark(SYNTHETIC[0]))
    with StandinTeacher() as healthy:
        result = evaluate_judge(dataclasses.replace(config, judge=_openai_judge(healthy)), ArtifactStore(tmp_path))
        assert len(healthy.request_log()) == result.stats["comparisons"] - answered  # cached answers not resent


def test_samples_with_both_orders_send_one_seeded_request_each_and_a_rerun_sends_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    config = _config(benchmarks=SYNTHETIC[:1], both_orders=True)  # RewardBench: one comparison per item
    with StandinTeacher() as server:
        judge = dataclasses.replace(_openai_judge(server), samples=3, temperature=0.7)
        sampled = dataclasses.replace(config, judge=judge)
        result = evaluate_judge(sampled, ArtifactStore(tmp_path / "a"))
        pairs = len(load_benchmark(SYNTHETIC[0]))
        log = server.request_log()
        assert len(log) == pairs * 2 * 3  # both orders, three samples: each a request of its own
        assert len({entry["request_id"] for entry in log}) == len(log)  # distinct seeds: distinct requests

        predictions = ArtifactStore(tmp_path / "a").read_table(result.outputs[EVAL_PREDICTIONS.kind]).to_pandas()
        assert len(predictions) == pairs * 2 * 3
        assert predictions["comparison_id"].str.endswith("#sample-2").sum() == pairs * 2
        rows = {(r["benchmark"], r["level"], r["name"]): r for r in result.stats["scores"]}
        assert {"score@1", "score@3"} <= {name for (_, level, name) in rows if level == "samples"}
        assert rows["rewardbench", "subset", "alpacaeval-easy"]["count"] < len(predictions)  # voted, once per pair
        tokens = result.stats["output_tokens"]["rewardbench"]
        assert len(tokens) == 3 and all(t > 0 for t in tokens)
        assert "## Scores by number of samples (majority vote)" in result.stats["report"]

        # The artifacts removed, the request cache kept: every sample is already paid for.
        store = ArtifactStore(tmp_path / "a")
        for kind, ref in result.outputs.items():
            store.fs.rm(store.folder(kind, ref.version), recursive=True)
        again = evaluate_judge(sampled, store)
        assert len(server.request_log()) == len(log)
        assert again.stats["scores"] == result.stats["scores"]


def test_samples_need_sampled_decoding_and_change_the_version_only_when_set() -> None:
    from tasks.config import ConfigError

    with pytest.raises(ConfigError, match="samples"):
        JudgeConfig(backend="hf", model="m", samples=3)  # greedy: three identical verdicts
    with pytest.raises(ConfigError, match="samples"):
        JudgeConfig(backend="length", samples=3, temperature=1.0)
    base = evaluate_versions(_config(), None)
    sampled = dataclasses.replace(LENGTH, backend="hf", model="m", temperature=1.0)
    assert evaluate_versions(_config(judge=dataclasses.replace(sampled, samples=1)), None) == evaluate_versions(
        _config(judge=sampled), None
    )
    assert evaluate_versions(_config(judge=dataclasses.replace(sampled, samples=3)), None) != evaluate_versions(
        _config(judge=sampled), None
    )
    three = dataclasses.replace(sampled, samples=3)
    assert evaluate_versions(_config(judge=dataclasses.replace(three, seed=5)), None) != evaluate_versions(
        _config(judge=three), None
    )
    with pytest.raises(ConfigError, match="seed"):
        dataclasses.replace(sampled, seed=5)  # one sample: the backend's own seeding, as before samples existed
    assert evaluate_versions(_config(), None) == base


def test_one_sampled_verdict_is_seeded_as_before_and_several_each_get_their_own_seed() -> None:
    from tasks.evaluate.stage import judge_input
    from tasks.judge.protocol import load_template_set

    template = load_template_set("cor-instruct-v1")
    comparisons = load_benchmark(SYNTHETIC[0])[:2]
    one = JudgeConfig(backend="hf", model="m", temperature=1.0)
    assert {judge_input(j, template, one).seed for j in judgements(comparisons, 0, False)} == {None}
    three = dataclasses.replace(one, samples=3)
    seeds = [judge_input(j, template, three).seed for j in judgements(comparisons, 0, True, samples=3)]
    assert len(seeds) == 2 * 2 * 3 and len(set(seeds)) == len(seeds) and None not in seeds


def test_hf_backend_samples_three_seeded_verdicts_in_both_orders(tmp_path: Path, tiny_model: str) -> None:
    judge = JudgeConfig(backend="hf", model=tiny_model, max_new_tokens=8, temperature=1.0, samples=3, batch_size=8)
    config = EvaluateConfig(
        judge=judge, benchmarks=(BenchmarkConfig(name="rewardbench", path="synthetic", items_per_subset=2),),
        both_orders=True,
    )  # fmt: skip
    first = evaluate_judge(config, ArtifactStore(tmp_path / "a"))
    again = evaluate_judge(config, ArtifactStore(tmp_path / "b"))
    outputs = [ArtifactStore(tmp_path / r).read_table(x.outputs[EVAL_PREDICTIONS.kind]).column("output").to_pylist()
               for r, x in (("a", first), ("b", again))]  # fmt: skip
    assert outputs[0] == outputs[1]  # seeded: the same samples again
    pairs = len(load_benchmark(config.benchmarks[0]))
    assert len(outputs[0]) == pairs * 2 * 3 and len(set(outputs[0])) > pairs  # sampled, not one greedy answer
    names = {r["name"] for r in first.stats["scores"] if r["level"] == "samples"}
    assert names == {"score@1", "score@3"}
    assert {"both_correct", "flip_rate", "consistency"} <= {r["name"] for r in first.stats["scores"]}
    assert all(t > 0 for t in first.stats["output_tokens"]["rewardbench"])


def test_rmr1_score_checks_orders_and_samples_against_the_ids(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def row(cid: str, position: str, verdict: str, **extra: Any) -> dict[str, Any]:
        return {"benchmark": "rewardbench", "subset": "pku-safer", "item_id": "x1", "comparison_id": cid,
                "chosen_position": position, "verdict": verdict, **extra}  # fmt: skip

    def score(rows: list[dict[str, Any]]) -> int:
        path = tmp_path / "judged.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        return rmr1(["score", str(path)])

    # No `swapped` column: the reverse order is known from its id, so the pair is scored once.
    assert score([row("x1", "A", "A"), row("x1#swapped", "B", "A")]) == 0
    scored = json.loads(capsys.readouterr().out)["rewardbench"]
    assert scored["subset"]["pku-safer"] == {"score": 1.0, "count": 1, "error_rate": 0.0}
    assert scored["position"]["consistency"]["score"] == 0.0  # picked A twice: the answer flipped
    # A subset outside RewardBench's sections has no official score, also at every number of samples.
    assert score([row("x1", "A", "A"), row("x1#sample-1", "A", "B"), row("x1#sample-2", "A", "A")]) == 0
    assert "samples" not in json.loads(capsys.readouterr().out)["rewardbench"]
    assert score([row("x1", "A", "A", swapped=True)]) == 2
    assert "row 0: field 'swapped' is True, but comparison_id 'x1' says False" in capsys.readouterr().err
    assert score([row("x1#sample-1", "A", "A"), row("x1#sample-2", "A", "A")]) == 2
    assert "judgement 'x1': its samples are not 0..N-1" in capsys.readouterr().err
    assert score([row("x1", "A", "A"), row("x1#sample-1", "A", "A"), row("x2", "A", "B", item_id="x2")]) == 2
    assert "row 2: judgement 'x2': it has fewer samples than others" in capsys.readouterr().err


def test_a_resumed_run_keeps_the_token_counts_of_its_finished_chunks(tmp_path: Path) -> None:
    class Killed(RuntimeError):
        pass

    class Counting(LengthJudge):
        calls = 0

        def judge(self, inputs: Any, on_done: Any = None) -> list[Judged]:
            Counting.calls += 1
            if Counting.calls == 2:
                raise Killed
            judged = super().judge(inputs, on_done)
            return [Judged(j.text, 7 + len(i.answer_a) % 5) for i, j in zip(inputs, judged, strict=True)]

    config = _config(chunk_size=20)
    items = judgements([c for b in config.benchmarks for c in load_benchmark(b)], 0, False)
    with pytest.raises(Killed):
        judge_all(items, config, Counting, str(tmp_path / "a"), "length-baseline")
    resumed = judge_all(items, config, Counting, str(tmp_path / "a"), "length-baseline")
    assert resumed.judged_now == len(items) - 20  # the first chunk was read back, with its tokens
    Counting.calls = 10  # no more kills
    fresh = judge_all(items, config, Counting, str(tmp_path / "b"), "length-baseline")
    assert resumed.tokens == fresh.tokens and sum(fresh.tokens["rewardbench"]) > 7 * 20

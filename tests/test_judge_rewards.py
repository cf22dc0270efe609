"""The pairwise judge as a TRL reward: grouping by prompt, the three modes, the stated number of judge calls,
nothing judged twice, and TRL's GRPOTrainer training a tiny policy for two steps on CPU with it (about 5 s)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tasks.judge import PairwiseJudge
from tasks.judge.backends import LengthJudge
from tasks.judge.config import JudgeConfig
from tasks.judge.rewards import JudgeReward
from tests.conftest import ROOT

LENGTH = JudgeConfig(backend="length", allow_tie=True)


def _judge(tmp_path: Path) -> PairwiseJudge:
    return PairwiseJudge(LENGTH, "length", cache_path=str(tmp_path / "cache.sqlite"), engine=LengthJudge())


def test_each_prompt_s_completions_are_compared_among_themselves_and_scaled_to_plus_minus_one(tmp_path: Path) -> None:
    prompts = ["p1"] * 3 + [[{"role": "user", "content": "p2"}]] * 3
    completions = ["a", "bbb", "cc", [{"role": "assistant", "content": "x"}], [{"role": "assistant", "content": "yy"}],
                   [{"role": "assistant", "content": "zzz"}]]  # fmt: skip
    judge = _judge(tmp_path)
    reward = JudgeReward(judge)
    assert reward(prompts, completions) == [-1.0, 1.0, 0.0, -1.0, 0.0, 1.0]  # win rates 0, 1, ½ -> -1, 1, 0
    assert judge.calls == reward.calls_per_step(groups=2, group_size=3) == 2 * 3
    assert reward(prompts, completions) == [-1.0, 1.0, 0.0, -1.0, 0.0, 1.0] and judge.calls == 6  # cached
    knock = JudgeReward(_judge(tmp_path / "k"), "knockout")
    assert knock(prompts, completions)[1] == 1.0 and knock.calls_per_step(2, 3) == 2 * 2
    assert knock.judge.calls == 4
    ref = JudgeReward(_judge(tmp_path / "r"), "reference")
    assert ref(prompts, completions, reference=["bb"] * 6) == [-1.0, 1.0, 0.0, -1.0, 0.0, 1.0]
    assert ref.judge.calls == ref.calls_per_step(2, 3) == 6
    with pytest.raises(KeyError, match="reference"):
        ref(prompts, completions)
    # Two dataset rows with one prompt: runs of equal prompts would merge them; GRPO's group size keeps two.
    blocks = JudgeReward(_judge(tmp_path / "b"), group_size=2)
    assert blocks(["p"] * 4, ["a", "bb", "ccc", "d"]) == [-1.0, 1.0, 1.0, -1.0]
    assert blocks.judge.calls == 2
    with pytest.raises(ValueError, match="do not share one prompt"):
        blocks(["p", "q"], ["a", "b"])


def test_grpo_trainer_trains_a_tiny_policy_with_the_judge_as_its_reward(tmp_path: Path) -> None:
    from datasets import Dataset
    from transformers import AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    from tasks.models.config import TinyModelConfig
    from tasks.models.tiny import build_tiny_model

    texts = ["Say something short.", "Say something long.", "one two three four five six seven eight"] * 20
    config = TinyModelConfig(vocab_size=320, hidden_size=32, intermediate_size=64, num_heads=2, num_kv_heads=1)
    policy = build_tiny_model(texts, config, str(tmp_path / "policy"))
    judge = _judge(tmp_path)
    reward = JudgeReward(judge, group_size=4)
    dataset = Dataset.from_list([{"prompt": [{"role": "user", "content": t}]} for t in texts[:8]])
    args = GRPOConfig(
        output_dir=str(tmp_path / "out"), per_device_train_batch_size=4, num_generations=4, generation_batch_size=8,
        max_completion_length=12, max_steps=2, learning_rate=1e-3, report_to=[], logging_steps=1, use_cpu=True,
        temperature=1.0, top_k=0, save_strategy="no",
    )  # fmt: skip
    tokenizer = AutoTokenizer.from_pretrained(policy)
    tokenizer.padding_side = "left"
    trainer = GRPOTrainer(model=policy, reward_funcs=[reward], args=args, train_dataset=dataset,
                          processing_class=tokenizer)  # fmt: skip
    trainer.train()
    logged = [entry for entry in trainer.state.log_history if "reward" in entry]
    assert logged and all(-1.0 <= entry["reward"] <= 1.0 for entry in logged)
    assert any(f"rewards/{reward.__name__}/mean" in entry for entry in logged)
    # One generation of 2 prompts x 4 completions serves both steps (generation_batch_size 8, batch 4):
    # 2 x 4·3/2 = 12 comparisons, fewer only when a completion pair repeats (the cache answers it). The
    # prompts repeat across dataset rows, yet each row's completions stay a group of their own.
    assert 0 < judge.calls <= reward.calls_per_step(groups=2, group_size=4) == 12


def test_verl_compute_score_judges_against_the_reference_through_an_endpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncio

    from tasks.judge import verl
    from tasks.standins.teacher import StandinTeacher

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("RMR1_JUDGE_CACHE", str(tmp_path / "verl.sqlite"))
    monkeypatch.setattr(verl, "_JUDGES", {})
    with pytest.raises(RuntimeError, match="RMR1_JUDGE_URL"):
        asyncio.run(verl.compute_score("ds", "answer", "ref", {"question": "q"}))
    with StandinTeacher() as server:  # judges by length
        monkeypatch.setenv("RMR1_JUDGE_URL", server.base_url)
        monkeypatch.setenv("RMR1_JUDGE_MODEL", "judge")

        async def batch() -> list[dict[str, float]]:  # verl awaits many at once on its own loop
            return await asyncio.gather(
                verl.compute_score("ds", "a much longer answer", "ref", {"question": "q"}),
                verl.compute_score("ds", "no", "the reference", {"question": "q"}),
            )

        won, lost = asyncio.run(batch())
        assert won["score"] == 1.0 and won["judge_verdict"] == "a"
        assert lost["score"] == -1.0 and lost["judge_error"] == 0.0
        sent = len(server.request_log())
        asyncio.run(batch())
        assert len(server.request_log()) == sent == 2  # cached


def test_grpo_with_a_judge_checkpoint_from_the_store_on_the_hf_backend(tmp_path: Path) -> None:
    """The issue's check (bench/bench_grpo_reward.py) on a tiny checkpoint published as `rl_checkpoint`: rewards
    reach the trainer, each step asks for calls_per_step comparisons, and no judge prompt is generated twice."""
    import importlib.util
    import sys

    from tests.helpers.judges import publish_tiny_judge

    spec = importlib.util.spec_from_file_location("bench_grpo_reward", ROOT / "bench" / "bench_grpo_reward.py")
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = bench  # its dataclass looks its module up while being defined
    spec.loader.exec_module(bench)
    store = publish_tiny_judge(tmp_path, bench.PROMPTS)
    judge = PairwiseJudge.from_artifact(store, "rl_checkpoint", max_new_tokens=4)
    result = bench.run(judge, str(tmp_path / "work"), steps=2, group_size=3, prompt_count=2, completion_tokens=6)
    assert result["steps"] == 2 and [c["expected"] for c in result["calls"]] == [2 * 3, 2 * 3]
    assert 0 < result["judge_calls"] <= 12 and result["generated_twice"] == 0 and result["repeat_generated"] == 0

"""TRL's GRPOTrainer training a tiny policy with a trained judge checkpoint as its reward (`JudgeReward`).

    python bench/bench_grpo_reward.py --artifacts ARTIFACTS [--checkpoint rl_checkpoint] [--mode round_robin]
                                      [--steps 4] [--group-size 4] [--prompts 2] [--max-new-tokens 320]

The judge is `PairwiseJudge.from_artifact` (the newest `rl_checkpoint` of the store, or KIND/VERSION) on the
hf backend; the policy is a tiny random-init Qwen2 built offline. Every reward call is recorded: the
comparisons it asked for (checked against `calls_per_step`), the prompts the judge model actually generated
for (cache misses) and the rewards. Then the last call is made again with the same completions. It prints
a table per call and checks, as assertions:

- rewards reach the trainer (logged per step, in [-1, 1]);
- each call asks for exactly `calls_per_step(groups, g)` comparisons;
- no prompt is ever generated twice (the judge's cache answers repeats, within a step, across steps and in
  the repeated call), and the judge's `calls` equals the prompts generated.
"""

from __future__ import annotations

import os

os.environ.setdefault("TQDM_DISABLE", "1")

import argparse
import hashlib
import json
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from tasks.judge import PairwiseJudge
from tasks.judge.rewards import JudgeReward

PROMPTS = ["Name a colour.", "Say something kind.", "Count to three.", "Describe the sea.", "Greet a friend."]


@dataclass
class Recorder:
    """Wraps the judge's backend and `compare_many`: what was asked, and what the model generated for."""

    judge: PairwiseJudge
    asked: list[int] = field(default_factory=list)  # comparisons per compare_many call
    generated: Counter[str] = field(default_factory=Counter)  # prompt hash -> times the model generated for it

    def __post_init__(self) -> None:
        engine, compare_many = self.judge.engine, self.judge.compare_many
        judge_inputs = engine.judge

        def judge(inputs: Sequence[Any], on_done: Any = None) -> Any:
            self.generated.update(hashlib.sha256(json.dumps(i.messages).encode()).hexdigest() for i in inputs)
            return judge_inputs(inputs, on_done)

        def compare(pairs: Any) -> Any:
            self.asked.append(len(pairs))
            return compare_many(pairs)

        engine.judge = judge  # type: ignore[method-assign]
        self.judge.compare_many = compare  # type: ignore[method-assign]


def run(judge: PairwiseJudge, work: str, *, mode: str = "round_robin", steps: int = 4, group_size: int = 4,
        prompt_count: int = 2, completion_tokens: int = 12) -> dict[str, Any]:  # fmt: skip
    """Train for `steps` with `judge` as the reward; the checks above as a dict (and assertions)."""
    from datasets import Dataset
    from transformers import AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    from tasks.models.config import TinyModelConfig
    from tasks.models.tiny import build_tiny_model

    recorder = Recorder(judge)
    reward = JudgeReward(judge, mode, group_size=group_size)  # type: ignore[arg-type]
    calls: list[dict[str, Any]] = []

    def recorded(prompts: Sequence[Any], completions: Sequence[Any], **columns: Any) -> list[float]:
        asked, sent = len(recorder.asked), judge.calls
        rewards = reward(prompts, completions, **columns)
        calls.append({"prompts": prompts, "completions": completions, "columns": columns, "rewards": rewards,
                      "asked": sum(recorder.asked[asked:]), "generated": judge.calls - sent,
                      "expected": reward.calls_per_step(len(prompts) // group_size, group_size)})  # fmt: skip
        return rewards

    recorded.__name__ = reward.__name__  # type: ignore[attr-defined]
    texts = PROMPTS * 8
    config = TinyModelConfig(vocab_size=320, hidden_size=32, intermediate_size=64, num_heads=2, num_kv_heads=1)
    policy = build_tiny_model(texts, config, os.path.join(work, "policy"))
    tokenizer = AutoTokenizer.from_pretrained(policy)
    tokenizer.padding_side = "left"
    dataset = Dataset.from_list([{"prompt": [{"role": "user", "content": t}]} for t in PROMPTS[:prompt_count]] * steps)
    args = GRPOConfig(
        output_dir=os.path.join(work, "out"), per_device_train_batch_size=prompt_count * group_size,
        num_generations=group_size, max_completion_length=completion_tokens, max_steps=steps, learning_rate=1e-3,
        report_to=[], logging_steps=1, use_cpu=True, temperature=1.0, top_k=0, save_strategy="no", seed=0,
    )  # fmt: skip
    trainer = GRPOTrainer(model=policy, reward_funcs=[recorded], args=args, train_dataset=dataset,
                          processing_class=tokenizer)  # fmt: skip
    started = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - started
    last = calls[-1]
    sent = judge.calls
    again = reward(last["prompts"], last["completions"], **last["columns"])
    logged = [entry["reward"] for entry in trainer.state.log_history if "reward" in entry]
    result = {
        "steps": len(logged), "train_seconds": seconds, "logged_rewards": logged, "calls": calls,
        "repeat_generated": judge.calls - sent, "repeat_same_rewards": again == last["rewards"],
        "judge_calls": judge.calls, "prompts_generated": sum(recorder.generated.values()),
        "generated_twice": sum(1 for n in recorder.generated.values() if n > 1),
    }  # fmt: skip
    assert logged and all(-1.0 <= r <= 1.0 for r in logged), logged
    assert all(call["asked"] == call["expected"] for call in calls), [(c["asked"], c["expected"]) for c in calls]
    assert result["generated_twice"] == 0 and result["judge_calls"] == result["prompts_generated"]
    assert result["repeat_generated"] == 0 and result["repeat_same_rewards"]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--artifacts", required=True, help="An artifact root with a trained judge checkpoint.")
    parser.add_argument("--checkpoint", default="rl_checkpoint", help="KIND or KIND/VERSION.")
    parser.add_argument("--mode", choices=("round_robin", "knockout"), default="round_robin")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--group-size", type=int, default=4)
    parser.add_argument("--prompts", type=int, default=2)
    parser.add_argument("--max-new-tokens", type=int, default=320, help="The judge's budget (the smoke recipe's).")
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="bench-grpo-")
    judge = PairwiseJudge.from_artifact(args.artifacts, args.checkpoint, max_new_tokens=args.max_new_tokens,
                                        cache_path=os.path.join(work, "judge.sqlite"))  # fmt: skip
    result = run(judge, work, mode=args.mode, steps=args.steps, group_size=args.group_size, prompt_count=args.prompts)
    shape = f"{args.prompts} prompts x {args.group_size} completions per step"
    print(f"judge {judge.name} (hf), policy: tiny random-init Qwen2, {args.mode}, {shape}, "
          f"{result['steps']} steps in {result['train_seconds']:.1f} s")  # fmt: skip
    print("call  comparisons asked  calls_per_step  generated (cache misses)  mean reward")
    for k, call in enumerate(result["calls"]):
        mean = sum(call["rewards"]) / len(call["rewards"])
        print(f"{k:>4}  {call['asked']:>17}  {call['expected']:>14}  {call['generated']:>24}  {mean:>11.3f}")
    print(f"rewards logged by the trainer: {', '.join(f'{r:.3f}' for r in result['logged_rewards'])}")
    print(f"judge prompts generated: {result['prompts_generated']} (judge.calls {result['judge_calls']}), "
          f"generated twice: {result['generated_twice']}; the last call again: {result['repeat_generated']} "
          f"generated, same rewards: {result['repeat_same_rewards']}")  # fmt: skip


if __name__ == "__main__":
    main()

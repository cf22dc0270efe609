"""The trained pairwise judge as the reward of RL training: a TRL reward function for `GRPOTrainer`.

TRL calls a reward function with the batch's `prompts` and `completions` (text, or message lists) and every
other dataset column as a keyword; the completions of one prompt arrive together (`num_generations` of
them). A pairwise judge gives no score to one answer alone, so `JudgeReward` compares the completions of
each prompt among themselves, or each with a reference answer from a dataset column, and scales the result
to [−1, 1]:

- `round_robin`: every pair of the group; reward = 2 × win rate − 1. Judge calls per prompt: g(g−1)/2
  (× 2 with `order="both"`, × `samples`), for a group of g completions.
- `knockout`: a seeded bracket; reward = 2 × rounds won / rounds − 1. Calls per prompt: g − 1.
- `reference`: each completion against the prompt's reference answer; +1 beats it, 0 ties, −1 loses or the
  verdict is unparseable. Calls per prompt: g.

The judge's cache means a comparison already judged (the same prompt and completions, in a later step or
epoch) is never judged again. `calls_per_step(groups, g)` states the cost of one step before it is paid. All
the step's comparisons go to the judge together (one batch; one per bracket round for knockout).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from tasks.judge.api import PairwiseJudge
from tasks.judge.protocol import Turn
from tasks.judge.ranking import Candidates, comparisons, rank_many

Mode = Literal["round_robin", "knockout", "reference"]


def _conversation(prompt: Any) -> list[Turn]:
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    return [{"role": str(m["role"]), "content": str(m["content"])} for m in prompt]


def _text(completion: Any) -> str:
    if isinstance(completion, str):
        return completion
    return "".join(str(m["content"]) for m in completion if m.get("role", "assistant") == "assistant")


class JudgeReward:
    """A TRL reward function (`reward_funcs=[JudgeReward(judge)]`) backed by a `PairwiseJudge`."""

    def __init__(self, judge: PairwiseJudge, mode: Mode = "round_robin", reference_column: str = "reference",
                 seed: int = 0, group_size: int | None = None) -> None:  # fmt: skip
        if mode not in ("round_robin", "knockout", "reference"):
            raise ValueError(f"mode must be round_robin, knockout or reference, got {mode!r}")
        self.judge, self.mode, self.reference_column, self.seed = judge, mode, reference_column, seed
        self.group_size = group_size  # GRPO's num_generations; None: a group is a run of equal prompts
        self.__name__ = f"pairwise_judge_{mode}"  # TRL logs each reward function under its __name__

    def calls_per_step(self, groups: int, group_size: int) -> int:
        """Comparisons one step asks of the judge (before the cache): groups × (g(g−1)/2 | g−1 | g)."""
        return groups * comparisons(self.mode, group_size)

    def __call__(self, prompts: Sequence[Any], completions: Sequence[Any], **columns: Any) -> list[float]:
        groups = self._groups(prompts)
        references = columns.get(self.reference_column)
        if self.mode == "reference" and references is None:
            raise KeyError(f"mode 'reference' needs a dataset column {self.reference_column!r}")
        items = []
        for members in groups:
            reference = str(references[members[0]]) if self.mode == "reference" else None
            texts = [_text(completions[i]) for i in members]
            items.append(Candidates(_conversation(prompts[members[0]]), texts, reference))
        rewards = [0.0] * len(completions)
        for members, ranking in zip(groups, rank_many(self.judge, items, self.mode, self.seed), strict=True):
            for i, score in zip(members, ranking.scores, strict=True):
                rewards[i] = 2 * score - 1
        return rewards

    def _groups(self, prompts: Sequence[Any]) -> list[list[int]]:
        """The completions of one prompt: consecutive blocks of `group_size` (TRL keeps each prompt's
        generations together), else runs of equal prompts. Two dataset rows with the same prompt stay two groups."""
        if self.group_size is None:
            groups: list[list[int]] = []
            for index, prompt in enumerate(prompts):
                if groups and prompts[groups[-1][0]] == prompt:
                    groups[-1].append(index)
                else:
                    groups.append([index])
            return groups
        if len(prompts) % self.group_size:
            raise ValueError(f"{len(prompts)} completions do not split into groups of {self.group_size}")
        blocks = [list(range(k, k + self.group_size)) for k in range(0, len(prompts), self.group_size)]
        for block in blocks:
            if any(prompts[i] != prompts[block[0]] for i in block):
                raise ValueError(f"completions {block[0]}..{block[-1]} do not share one prompt")
        return blocks

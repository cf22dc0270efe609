"""The judge API and rankings: a judge that prefers the longer answer ranks by length; comparison counts;
ties and unparseable verdicts; the cache never pays twice; an hf checkpoint from the artifact store."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from tasks.judge import PairwiseJudge, against_reference, knockout, round_robin
from tasks.judge.backends import Judged, JudgeInput, LengthJudge
from tasks.judge.config import JudgeConfig
from tasks.judge.ranking import Candidates, comparisons, rank_many
from tests.helpers.judges import publish_tiny_judge

Q = [{"role": "user", "content": "Which answer is better?"}]
LENGTH = JudgeConfig(backend="length", allow_tie=True)


class Counting(LengthJudge):
    """The length baseline, counting what it is asked; prompts whose answers hold 'garbled' get no verdict."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: Counter[tuple[str, str]] = Counter()
        self.batches: list[int] = []  # prompts per call

    def judge(self, inputs: Sequence[JudgeInput], on_done: Any = None) -> list[Judged]:
        self.seen.update((i.answer_a, i.answer_b) for i in inputs)
        self.batches.append(len(inputs))
        judged = super().judge(inputs, on_done)
        return [Judged("no verdict here", 3) if "garbled" in i.answer_a + i.answer_b else j
                for i, j in zip(inputs, judged, strict=True)]  # fmt: skip


def _judge(tmp_path: Path, **options: Any) -> tuple[PairwiseJudge, Counting]:
    backend = Counting()
    cache = str(tmp_path / "cache.sqlite") if options.pop("cache", True) else None
    return PairwiseJudge(LENGTH, "length", cache_path=cache, engine=backend, **options), backend


def test_compare_names_the_longer_answer_wherever_it_is_shown(tmp_path: Path) -> None:
    judge, backend = _judge(tmp_path, order="both")
    result = judge.compare(Q, "short", "a much longer answer")
    assert result.winner == 1 and result.verdict == "b" and result.votes == ("b", "b")
    assert set(backend.seen) == {("short", "a much longer answer"), ("a much longer answer", "short")}
    assert judge.compare(Q, "same", "size").verdict == "tie"  # equal lengths: [[C]] with allow_tie
    seeded, _ = _judge(tmp_path / "s", order="seeded")
    assert len(seeded.compare(Q, "short", "a much longer answer").votes) == 1


CANDIDATES = ["bb", "a", "dddd", "ccc", "eeeee", "ffffff"]  # lengths 2, 1, 4, 3, 5, 6


@pytest.mark.parametrize("n", [2, 3, 5, 6])
def test_round_robin_and_knockout_rank_by_length_with_the_stated_number_of_comparisons(tmp_path: Path, n: int) -> None:
    candidates = CANDIDATES[:n]
    by_length = sorted(range(n), key=lambda i: -len(candidates[i]))
    judge, _ = _judge(tmp_path)
    robin = round_robin(judge, Q, candidates)
    assert len(robin.games) == n * (n - 1) // 2
    assert robin.order == by_length
    assert robin.scores[by_length[0]] == 1.0 and robin.scores[by_length[-1]] == 0.0
    bracket = knockout(judge, Q, candidates, seed=3)
    assert len(bracket.games) == n - 1
    assert bracket.best == by_length[0] and bracket.scores[bracket.best] == 1.0
    assert knockout(judge, Q, candidates, seed=3) == bracket  # the bracket is seeded


def test_rank_many_judges_every_item_together_and_ranks_each_as_alone(tmp_path: Path) -> None:
    items = [Candidates([{"role": "user", "content": f"Question {n}"}], CANDIDATES[:n], "ccc") for n in (2, 5, 6)]
    for method in ("round_robin", "knockout", "reference"):
        judge, backend = _judge(tmp_path / method, cache=False)
        rankings = rank_many(judge, items, method, seed=3)  # type: ignore[arg-type]
        alone, _ = _judge(tmp_path / f"{method}-alone", cache=False)
        assert rankings == [rank_many(alone, [item], method, seed=3)[0] for item in items]  # type: ignore[arg-type]
        assert [len(r.games) for r in rankings] == [comparisons(method, n) for n in (2, 5, 6)]  # type: ignore[arg-type]
        # one call for round robin and reference; one per bracket round for knockout (5 or 6 -> 3 -> 2 -> 1)
        assert backend.batches == (
            [1 + 2 + 3, 1 + 1, 1 + 1] if method == "knockout" else [sum(map(len, (r.games for r in rankings)))]
        )
        if method != "reference":
            assert rankings[2].best == 5 and rankings[1].best == 4  # the longest wins
        else:
            assert rankings[2].scores == [0.0, 0.0, 1.0, 0.5, 1.0, 1.0]  # against "ccc": longer 1, as long ½


def test_ties_share_points_and_unparseable_verdicts_help_neither_side(tmp_path: Path) -> None:
    judge, _ = _judge(tmp_path)
    robin = round_robin(judge, Q, ["xx", "yy", "z", "garbled answer"])
    # xx and yy tie (½ each) and both beat z; the garbled answer's three games are errors: 0 for both sides.
    assert robin.scores == [pytest.approx(1.5 / 3), pytest.approx(1.5 / 3), 0.0, 0.0]
    assert robin.order == [0, 1, 2, 3]
    errors = [g for g in robin.games if g.judgment.verdict == "error"]
    assert len(errors) == 3 and all(g.judgment.winner is None for g in errors)
    reference = against_reference(judge, Q, ["a", "a longer one", "garbled"], reference="medium")
    assert reference.scores == [0.0, 1.0, 0.0] and reference.best == 1 and len(reference.games) == 3


def test_the_same_comparison_is_never_paid_for_twice(tmp_path: Path) -> None:
    judge, _ = _judge(tmp_path, order="both")
    first = round_robin(judge, Q, CANDIDATES)
    assert judge.calls == 2 * 15
    again = round_robin(judge, Q, CANDIDATES)
    assert judge.calls == 2 * 15 and again.order == first.order
    other, other_backend = _judge(tmp_path, order="both")  # a new process, the same cache file
    assert round_robin(other, Q, CANDIDATES).scores == first.scores
    assert other.calls == 0 and not other_backend.seen
    garbled, _ = _judge(tmp_path / "g")
    garbled.compare(Q, "garbled", "b")
    garbled.compare(Q, "garbled", "b")
    assert garbled.calls == 1  # an answer without a verdict is still an answer: kept, not bought again


def test_a_checkpoint_from_the_artifact_store_judges_with_the_hf_backend(tmp_path: Path) -> None:
    store = publish_tiny_judge(tmp_path, ["short answer", "a longer answer"])
    judge = PairwiseJudge.from_artifact(store, "rl_checkpoint", max_new_tokens=6)
    assert judge.name == "rl_checkpoint/0123456789abcdef"
    result = judge.compare(Q, "short answer", "a longer answer")
    assert result.verdict in ("a", "b", "tie", "error") and len(result.traces) == 1
    assert isinstance(result.traces[0], str) and result.tokens > 0
    again = PairwiseJudge.from_artifact(store, "rl_checkpoint/0123", max_new_tokens=6)
    assert again.compare(Q, "short answer", "a longer answer") == result and again.calls == 0  # cached


def test_an_endpoint_judge_counts_a_repeated_prompt_once_pickles_and_works_in_a_forked_child(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os
    import pickle

    from tasks.judge.rewards import JudgeReward
    from tasks.standins.teacher import StandinTeacher

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    with StandinTeacher() as server:  # prefers the longer answer
        judge = PairwiseJudge.from_endpoint(server.base_url, "judge", cache_path=str(tmp_path / "cache.sqlite"))
        pair = (Q, "short", "a longer answer")
        assert [j.verdict for j in judge.compare_many([pair, pair])] == ["b", "b"]
        assert judge.calls == 1 == len(server.request_log())  # the same prompt twice: sent and counted once
        clone = pickle.loads(pickle.dumps(JudgeReward(judge)))  # e.g. to a worker process
        assert clone.judge.compare(Q, "x", "a longer y").verdict == "b" and clone.judge.calls == 2
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child inherits the judge: it opens its own connection instead of the parent's loop
            try:
                verdict = judge.compare(Q, "tiny", "a much longer reply").verdict
            except BaseException as error:  # reported to the parent
                verdict = repr(error)
            os.write(write, verdict.encode())
            os._exit(0)
        os.waitpid(pid, 0)
        assert os.read(read, 1000) == b"b"
        assert judge.compare(Q, "p", "a longer q").verdict == "b"  # the parent's connection still works
        judge.close()
        clone.judge.close()

"""Best-of-K with verifiable answers: seeded draws, the judge's pick beside random and oracle on the same draws,
pairwise correct-vs-incorrect accuracy, what each costs, and `rmr1 judge --best-of-k` end to end through the
stand-in endpoint (which prefers the longer answer)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from flows.cli import main as rmr1
from tasks.evaluate.best_of_k import Graded, best_of_k, draw, pairwise_accuracy
from tasks.judge import PairwiseJudge
from tasks.judge.backends import LengthJudge
from tasks.judge.config import JudgeConfig
from tasks.judge.ranking import Candidates
from tasks.standins.teacher import StandinTeacher

Q = [{"role": "user", "content": "Solve it."}]


def prompts(count: int, longer_is_correct: bool, seed: int = 0) -> list[Graded]:
    """8 candidates each, distinct lengths, 1 to 4 correct: the longest ones when `longer_is_correct`."""
    rng = random.Random(seed)
    made = []
    for p in range(count):
        lengths = rng.sample(range(1, 60), 8)
        correct = rng.randint(1, 4)
        ranked = sorted(lengths, reverse=longer_is_correct)
        flags = tuple(length in ranked[:correct] for length in lengths)
        made.append(Graded(f"p{p}", Candidates(Q, ["x" * n for n in lengths]), flags))
    return made


def length_judge() -> PairwiseJudge:
    return PairwiseJudge(JudgeConfig(backend="length", allow_tie=True), "length", engine=LengthJudge())


def test_draws_are_seeded_per_prompt_and_k_without_replacement() -> None:
    assert draw("p1", 32, 8, 0) == draw("p1", 32, 8, 0)
    assert draw("p1", 32, 8, 0) != draw("p1", 32, 8, 1) and draw("p1", 32, 8, 0) != draw("p2", 32, 8, 0)
    assert len(set(draw("p1", 32, 16, 0))) == 16


def test_a_judge_that_agrees_with_correctness_picks_as_the_oracle_and_one_that_disagrees_as_badly_as_it_can() -> None:
    good = best_of_k(length_judge(), prompts(30, longer_is_correct=True), ks=(2, 4, 8))
    assert [(r["k"], r["method"]) for r in good] == [(k, m) for k in (2, 4, 8) for m in ("knockout", "round_robin")]
    for row in good:
        assert row["pick_accuracy"] == row["oracle"] > row["random"]
        assert row["comparisons"] == 30 * {"knockout": row["k"] - 1, "round_robin": row["k"] * (row["k"] - 1) // 2}[
            row["method"]]  # fmt: skip
    bad = best_of_k(length_judge(), prompts(30, longer_is_correct=False), ks=(2, 4, 8))
    for row in bad:  # the longest drawn is the worst: right only when every drawn candidate is correct
        assert row["pick_accuracy"] < row["random"] < row["oracle"]
    assert best_of_k(length_judge(), prompts(3, True), ks=(16,)) == []  # no prompt has 16 candidates


def test_pairwise_accuracy_and_the_cost_of_asking_again(tmp_path: Path) -> None:
    judge = PairwiseJudge(JudgeConfig(backend="length", allow_tie=True), "length", engine=LengthJudge(),
                          cache_path=str(tmp_path / "cache.sqlite"))  # fmt: skip
    result = pairwise_accuracy(judge, prompts(10, True), max_pairs=5)
    assert result["accuracy"] == 1.0 and result["pairs"] == 50 and result["sent"] == 50
    assert pairwise_accuracy(judge, prompts(10, False), max_pairs=5)["accuracy"] == 0.0
    first = best_of_k(judge, prompts(10, True), ks=(4,), methods=("round_robin",))[0]
    again = best_of_k(judge, prompts(10, True), ks=(4,), methods=("round_robin",))[0]
    assert first["sent"] > 0 and again["sent"] == 0 and again["comparisons"] == first["comparisons"] == 60


def test_rmr1_judge_best_of_k_writes_the_report_and_the_curve(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    rows = [{"q": f"question {p.name}", "answers": list(p.candidates.texts), "ok": list(p.correct)}
            for p in prompts(6, longer_is_correct=True)]  # fmt: skip
    rows.append({"q": "broken", "answers": ["a", "bb"], "ok": [True]})  # one flag for two candidates
    data = tmp_path / "candidates.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "report.json"
    with StandinTeacher() as server:
        command = ["judge", str(data), "--fields", "{prompt: q, candidates: answers, correct: ok}", "--best-of-k",
                   "2,4,8", "--out", str(out), "--endpoint", server.base_url, "--served-model", "judge",
                   "--artifacts", str(tmp_path / "artifacts"), "--max-bad-rows", "0.2"]  # fmt: skip
        assert rmr1(command) == 0
    printed = capsys.readouterr().out
    assert "pairwise (correct vs incorrect): 1.000" in printed
    report = json.loads(out.read_text())
    assert {(r["k"], r["method"]) for r in report["best_of_k"]} == {(k, m) for k in (2, 4, 8)
                                                                    for m in ("knockout", "round_robin")}  # fmt: skip
    assert all(r["prompts"] == 6 and r["pick_accuracy"] == r["oracle"] for r in report["best_of_k"])
    tokens = {(r["k"], r["method"]): r["tokens"] for r in report["best_of_k"]}  # the traces' output tokens
    assert 0 < tokens[8, "knockout"] < tokens[8, "round_robin"] and report["pairwise"]["tokens"] > 0
    assert (tmp_path / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    without_flags = ["judge", str(data), "--fields", "{prompt: q, candidates: answers}", "--best-of-k", "2", "--out",
                     str(out), "--model", "unused"]  # fmt: skip
    assert rmr1(without_flags) != 0
    assert "map `candidates` and `correct`" in capsys.readouterr().err


def test_ppe_best_of_k_rows_load_as_they_are_on_the_hub(tmp_path: Path) -> None:
    """PPE's `*-Best-of-K` layout: one column per answer (`response_1` ... `response_N`, natural order, the last
    ones null in a row with fewer answers) and `scores`, one flag per answer, read with `candidates: response_*`."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from tasks.evaluate.files import CandidateFields, load_candidates

    answers = [f"answer {k} " + "x" * k for k in range(1, 12)]  # response_1 .. response_11; lengths grow with k
    full = {"question_id": "q1", "prompt": "Solve it.", "scores": [k >= 9 for k in range(1, 12)],
            **{f"response_{k}": answers[k - 1] for k in range(1, 12)}}  # fmt: skip
    short = {**full, "question_id": "q2", "scores": [False, True, False],
             **{f"response_{k}": None for k in range(4, 12)}}  # fmt: skip
    path = tmp_path / "data" / "test-00000-of-00001.parquet"
    path.parent.mkdir()
    pq.write_table(pa.Table.from_pylist([full, short]), path)
    fields = CandidateFields(candidates="response_*", prompt="prompt", correct="scores", id="question_id")
    items = load_candidates(str(tmp_path), fields, "round_robin")
    assert [(name, len(c.texts), flags.count(True)) for name, c, flags in items] == [("q1", 11, 3), ("q2", 3, 1)]
    assert items[0][1].texts == answers  # response_10 after response_9, not after response_1
    graded = [Graded(name, candidates, flags) for name, candidates, flags in items]
    [row] = best_of_k(length_judge(), graded[:1], ks=(11,), methods=("knockout",))
    assert row["pick_accuracy"] == 1.0 and row["comparisons"] == 10  # the longest is correct; n-1 games


def test_best_of_k_shows_its_table_and_curve_in_the_prefect_ui(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, prefect_server: dict[str, str]
) -> None:
    import httpx
    from prefect.settings import PREFECT_API_URL, temporary_settings

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    rows = [{"q": f"question {p.name}", "answers": list(p.candidates.texts), "ok": list(p.correct)}
            for p in prompts(3, longer_is_correct=True)]  # fmt: skip
    data = tmp_path / "candidates.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "Support Set v2.json"
    command = ["judge", str(data), "--fields", "{prompt: q, candidates: answers, correct: ok}", "--best-of-k", "2,4",
               "--out", str(out), "--artifacts", str(tmp_path / "artifacts"), "--ui"]  # fmt: skip
    url = prefect_server["PREFECT_API_URL"]
    with StandinTeacher() as server:
        endpoint = ["--endpoint", server.base_url, "--served-model", "judge"]
        assert rmr1([*command, *endpoint]) != 0  # no Prefect API configured: refused before judging anything
        assert not out.exists()
        with temporary_settings({PREFECT_API_URL: url}):
            assert rmr1([*command, *endpoint]) == 0
    found = httpx.post(f"{url}/artifacts/filter", json={"artifacts": {"key": {"like_": "best-of-k-support-set-v2"}}})
    by_key = {a["key"]: a for a in found.json()}
    assert set(by_key) == {"best-of-k-support-set-v2", "best-of-k-support-set-v2-curve"}
    table = json.loads(by_key["best-of-k-support-set-v2"]["data"])
    assert [(r["K"], r["method"]) for r in table] == [(2, "knockout"), (2, "round_robin"), (4, "knockout"),
                                                      (4, "round_robin")]  # fmt: skip
    assert all(r["judge"] == r["oracle"] and r["tokens"] > 0 for r in table)
    assert "data:image/png;base64,iVBORw0KGgo" in by_key["best-of-k-support-set-v2-curve"]["data"]

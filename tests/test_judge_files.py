"""`rmr1 judge FILE` against a real OpenAI-compatible server (the stand-in judges by length): rows `rmr1 score`
reads, traces kept, and a re-run that sends nothing; N candidates per prompt ranked three ways; unreadable
rows named; a run killed mid-way resumes without paying twice."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from flows.cli import main as rmr1
from tasks.standins.teacher import StandinTeacher

ROWS = [
    {"q": "q0", "A": "short", "B": "a longer answer", "winner": "B>A", "topic": "math"},
    {"q": "q1", "A": "a much longer answer", "B": "tiny", "winner": "A>B", "topic": "chat"},
    {"q": "q2", "A": "longer than b", "B": "b", "winner": "B>A", "topic": "chat"},  # the judge gets this one wrong
]
FIELDS = "{prompt: q, first: A, second: B, label: winner, first_wins: [A>B], second_wins: [B>A]}"


def test_judge_a_labelled_file_score_it_and_rerun_for_free(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    out = tmp_path / "judged.jsonl"
    with StandinTeacher() as server:
        command = ["judge", str(pairs), "--fields", FIELDS, "--out", str(out), "--name", "support-heldout",
                   "--subset", "topic", "--endpoint", server.base_url, "--served-model", "judge", "--order", "both",
                   "--artifacts", str(tmp_path / "artifacts")]  # fmt: skip
        assert rmr1(command) == 0
        assert "6 judgements by judge" in capsys.readouterr().out
        sent = len(server.request_log())
        assert sent == 6  # three pairs, both orders
        rows = [json.loads(line) for line in out.read_text().splitlines()]
        assert {r["comparison_id"] for r in rows} == {f"support-heldout/pairs.jsonl#{i}{s}" for i in range(3)
                                                      for s in ("", "#swapped")}  # fmt: skip
        assert all(r["output"] and "[[" in r["output"] for r in rows)  # the traces are kept
        out.unlink()
        assert rmr1(command) == 0  # killed and re-run: every answer is already paid for
        assert "(0 sent, the rest cached)" in capsys.readouterr().out
        assert len(server.request_log()) == sent
    assert rmr1(["score", str(out)]) == 0
    scores = json.loads(capsys.readouterr().out)["support-heldout"]
    assert scores["benchmark"]["score"]["score"] == pytest.approx(2 / 3)  # longer wins: right, right, wrong
    assert scores["subset"]["math"]["score"] == 1.0 and scores["subset"]["chat"]["score"] == 0.5
    assert scores["position"]["both_correct"]["score"] == pytest.approx(2 / 3)


CANDIDATE_ROWS = [
    {"uid": "u0", "q": "q0", "answers": ["mid size", "x", "the longest answer here"], "ref": "medium sized"},
    {"uid": "u1", "q": "q1", "answers": ["a b c d", "a", "a b", "a b c d e f"], "ref": "a b c d e"},
]


@pytest.mark.parametrize("method", ["round_robin", "knockout", "reference"])
def test_rank_candidates_per_prompt_by_the_stand_in_s_preference(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], method: str
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    source = tmp_path / "candidates.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in CANDIDATE_ROWS))
    out = tmp_path / "ranked.parquet"
    fields = "{prompt: q, candidates: answers, reference: ref, id: uid}"
    with StandinTeacher() as server:
        command = ["judge", str(source), "--fields", fields, "--out", str(out), "--rank", method, "--endpoint",
                   server.base_url, "--served-model", "judge", "--artifacts", str(tmp_path / "a")]  # fmt: skip
        assert rmr1(command) == 0
        expected = {"round_robin": 3 + 6, "knockout": 2 + 3, "reference": 3 + 4}[method]
        assert f"2 prompts ranked ({method})" in capsys.readouterr().out
        assert len(server.request_log()) == expected
    rows = pq.read_table(out).to_pylist()
    assert [r["item_id"] for r in rows] == ["u0", "u1"]
    assert [r["best"] for r in rows] == [2, 3]  # the stand-in prefers the longer answer
    if method == "round_robin":
        assert [r["ranking"] for r in rows] == [[2, 0, 1], [3, 0, 2, 1]]
        assert rows[1]["scores"] == [pytest.approx(2 / 3), 0.0, pytest.approx(1 / 3), 1.0]
    if method == "reference":
        assert [g["b"] for g in rows[0]["games"]] == [-1, -1, -1]  # -1: the reference
    games = [g for r in rows for g in r["games"]]
    assert len(games) == expected and all(g["traces"][0] and "[[" in g["traces"][0] for g in games)


def test_unreadable_candidate_rows_are_named_with_file_row_and_field(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    source = tmp_path / "candidates.jsonl"
    bad = [{"q": "q2", "answers": "not a list"}, {"q": "q3", "answers": ["only one"]}, {"answers": ["a", "b"]}]
    source.write_text("".join(json.dumps(r) + "\n" for r in CANDIDATE_ROWS + bad) + "{broken\n")
    fields = "{prompt: q, candidates: answers}"
    command = ["judge", str(source), "--fields", fields, "--out", str(tmp_path / "r.jsonl"), "--endpoint",
               "http://127.0.0.1:9/v1", "--served-model", "judge", "--artifacts", str(tmp_path / "a")]  # fmt: skip
    assert rmr1(command) == 1
    error = capsys.readouterr().err
    assert "4 of 6 record(s) cannot be read" in error
    assert "candidates.jsonl, record 2: answers: expected a list, got str" in error
    assert "record 3: answers: 1 candidate(s); ranking needs at least 2" in error and "record 4: q: missing" in error
    assert not (tmp_path / "r.jsonl").exists()
    assert rmr1([*command[:3], "{prompt: q, answers: x}", *command[4:]]) == 2  # not a mapping we know
    assert "answers" in capsys.readouterr().err


def test_a_killed_rmr1_judge_resumes_without_paying_twice(tmp_path: Path) -> None:
    """SIGKILL mid-run, then the same command: only requests in flight at the kill are sent again."""
    source = tmp_path / "candidates.jsonl"
    rows = [{"q": f"question {k}", "answers": [f"answer {k} " + "x" * n for n in range(1, 6)]} for k in range(8)]
    source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    env = {**os.environ, "OPENAI_API_KEY": "sk-test"}
    with StandinTeacher(latency_s=0.05) as server:
        fields = "{prompt: q, candidates: answers}"
        command = [sys.executable, "-m", "flows.cli", "judge", str(source), "--fields", fields,
                   "--out", str(tmp_path / "ranked.jsonl"), "--endpoint", server.base_url, "--served-model", "judge",
                   "--max-in-flight", "2", "--artifacts", str(tmp_path / "a")]  # fmt: skip
        process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        while len(server.request_log()) < 30:  # of 8 x 10 comparisons
            assert process.poll() is None, "finished before it could be killed"
            time.sleep(0.01)
        process.kill()
        process.wait()
        assert not (tmp_path / "ranked.jsonl").exists()  # nothing half-written
        time.sleep(0.5)  # a request already on the wire is logged by now
        before = len(server.request_log())
        finished = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
        assert finished.returncode == 0, finished.stderr
        sent = [entry["request_id"] for entry in server.request_log()]
    assert len(set(sent)) == 80  # every comparison answered
    assert len(sent) - 80 <= 2  # only what was in flight at the kill went twice
    assert f"({len(sent) - before} sent, the rest cached)" in finished.stdout
    ranked = [json.loads(line) for line in (tmp_path / "ranked.jsonl").read_text().splitlines()]
    assert [r["best"] for r in ranked] == [4] * 8


def test_failed_requests_write_nothing_and_a_re_run_sends_only_those(tmp_path: Path, monkeypatch) -> None:
    from tasks.evaluate.files import CandidateFields, JudgeFileError, rank_file
    from tasks.judge import PairwiseJudge
    from tasks.judge.config import JudgeConfig
    from tasks.llm.config import EndpointConfig
    from tasks.standins.teacher import Faults

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    source = tmp_path / "candidates.jsonl"
    rows = [{"q": f"q{k}", "answers": [f"{k}" + "x" * n for n in range(1, 5)]} for k in range(6)]  # 6 x 6 games
    source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    fields, out = CandidateFields(candidates="answers", prompt="q"), str(tmp_path / "ranked.jsonl")

    def judge(url: str, retries: int) -> PairwiseJudge:
        endpoint = EndpointConfig(base_url=url, max_retries=retries, backoff_initial_s=0.01, backoff_max_s=0.02)
        config = JudgeConfig(backend="openai", model="judge", endpoint=endpoint)
        return PairwiseJudge(config, "judge", cache_path=str(tmp_path / "cache.sqlite"))

    with StandinTeacher(faults=Faults(rate_500=0.3, seed=1)) as server:
        with judge(server.base_url, 0) as first, pytest.raises(JudgeFileError, match=r"judge request\(s\) failed"):
            rank_file(str(source), fields, first, out)
        assert not Path(out).exists()
        log = server.request_log()
        failed = {e["request_id"] for e in log if e["outcome"] != "ok"}
        assert 0 < len(failed) < 36 and len(log) == 36
        with judge(server.base_url, 20) as second:
            assert rank_file(str(source), fields, second, out) == 6
        again = server.request_log()[36:]
        assert {e["request_id"] for e in again} == failed  # answered comparisons were not sent again
    assert all(json.loads(line)["best"] == 3 for line in Path(out).read_text().splitlines())


def test_ids_must_be_present_and_unique_and_flags_must_fit_the_mode(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    source = tmp_path / "candidates.jsonl"
    rows = [{"uid": "x", "q": "q", "answers": ["a", "bb"]}, {"uid": "x", "q": "q2", "answers": ["a", "bb"]}]
    source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    base = ["judge", str(source), "--out", str(tmp_path / "r.jsonl"), "--endpoint", "http://127.0.0.1:9/v1",
            "--served-model", "judge", "--artifacts", str(tmp_path / "a")]  # fmt: skip
    assert rmr1([*base, "--fields", "{prompt: q, candidates: answers, id: uid}"]) == 1
    assert "record 1: uid: id 'x' is also " in capsys.readouterr().err
    source.write_text(json.dumps({"q": "q", "answers": ["a", "bb"]}) + "\n")
    assert rmr1([*base, "--fields", "{prompt: q, candidates: answers, id: uid}"]) == 1
    assert "record 0: uid: missing" in capsys.readouterr().err
    assert rmr1([*base, "--fields", "{prompt: q, candidates: answers}", "--name", "x"]) == 2
    assert "--name mean nothing when ranking candidates" in capsys.readouterr().err
    assert rmr1([*base, "--fields", "{prompt: q, chosen: a, rejected: b}", "--rank", "knockout"]) == 2
    assert "--rank mean nothing when judging pairs" in capsys.readouterr().err
    assert rmr1([*base, "--fields", "{prompt: q, candidates: ''}"]) == 2
    assert "fields.candidates: expected a record field name" in capsys.readouterr().err
    local = [*base[:4], "--model", str(tmp_path / "no-model"), "--max-in-flight", "4"]
    assert rmr1([*local, "--fields", "{prompt: q, candidates: answers}"]) == 2
    assert "--max-in-flight is for --endpoint judges" in capsys.readouterr().err
    source.write_text("")
    assert rmr1([*base, "--fields", "{prompt: q, candidates: answers}"]) == 1
    assert "no records to rank" in capsys.readouterr().err

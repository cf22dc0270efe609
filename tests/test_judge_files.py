"""`rmr1 judge FILE` against a real OpenAI-compatible server (the stand-in judges by length): rows `rmr1 score`
reads, traces kept, and a re-run that sends nothing."""

from __future__ import annotations

import json
from pathlib import Path

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

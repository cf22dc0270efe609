"""Judge protocol: template sets render the exact docs/method.md §2 layouts; verdict rules follow §3."""

import os
import sys
from pathlib import Path

import pytest

# The project is not installed in the venv and pytest does not put the repository root on sys.path;
# drop this line once pyproject sets `pythonpath = ["."]` under [tool.pytest.ini_options].
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tasks.judge.protocol import (
    BUILTIN_TEMPLATE_SETS,
    FILTER_WINDOW,
    RL_WINDOW,
    TemplateError,
    Verdict,
    eval_score,
    filter_verdict_matches,
    is_single_turn,
    load_template_set,
    parse_eval_verdict,
    place_pair,
    render_judge_messages,
    render_user_message,
    rl_reward,
    verdict_winner,
)
from tasks.judge.protocol.templates import TEMPLATES_DIR

QUESTION = [{"role": "user", "content": "What is 2+2?"}]
MULTI = [
    {"role": "user", "content": "Hi"},
    {"role": "assistant", "content": "Hello! How can I help?"},
    {"role": "user", "content": "What is 2+2?"},
]


# ---------------------------------------------------------------- templates


@pytest.mark.parametrize("name", BUILTIN_TEMPLATE_SETS)
def test_every_builtin_template_set_loads(name):
    template = load_template_set(name)
    assert template.name == name
    assert template.version == 1
    assert template.family in ("instruct", "reasoning")
    assert len(template.fingerprint) == 16
    assert "<answer>[[A]]</answer>" in (template.system or template.user_single)


def test_cor_system_prompt_names_every_tag_of_the_chain_of_rubrics():
    system = load_template_set("cor-instruct-v1").system
    for tag in (
        "<type>Reasoning</type>",
        "<type>Chat</type>",
        "<solution>",
        "<rubric>",
        "<justify>",
        "<eval>",
        "<quote_A>",
        "<summary_A>",
        "<quote_B>",
        "<summary_B>",
        "<answer>[[A]]</answer>",
        "<answer>[[B]]</answer>",
    ):
        assert tag in system, tag


def test_ablation_prompts_drop_their_step():
    no_classification = load_template_set("no-classification-v1")
    no_rubrics = load_template_set("no-rubrics-v1")
    cor = load_template_set("cor-instruct-v1")
    assert "<type>" not in no_classification.system and "<rubric>" in no_classification.system
    assert "<type>" not in no_rubrics.system and "<rubric>" not in no_rubrics.system
    assert "<eval>" in no_rubrics.system
    assert no_rubrics.user_single == no_classification.user_single == cor.user_single
    assert no_rubrics.user_multi == cor.user_multi


def test_single_turn_message_has_the_exact_marker_layout():
    template = load_template_set("cor-instruct-v1")
    message = render_user_message(template, QUESTION, "4", "5")
    assert message == (
        "[Client Question]\nWhat is 2+2?\n\n"
        "[The Start of Chatbot A's Response]\n4\n[The End of Chatbot A's Response]\n\n"
        "[The Start of Chatbot B's Response]\n5\n[The End of Chatbot B's Response]"
    )


def test_multi_turn_message_repeats_the_conversation_per_chatbot():
    template = load_template_set("cor-instruct-v1")
    message = render_user_message(template, MULTI, "4", "5")
    assert message == (
        "[The Start of the Conversation between Chatbot A and the Client]\n"
        "User: Hi\nChatbot A: Hello! How can I help?\nUser: What is 2+2?\nChatbot A: 4\n"
        "[The End of the Conversation between Chatbot A and the Client]\n\n"
        "[The Start of the Conversation between Chatbot B and the Client]\n"
        "User: Hi\nChatbot B: Hello! How can I help?\nUser: What is 2+2?\nChatbot B: 5\n"
        "[The End of the Conversation between Chatbot B and the Client]"
    )
    assert "Chabot" not in message


def test_system_turn_joins_the_question_in_single_turn_and_gets_a_line_in_multi_turn():
    template = load_template_set("cor-instruct-v1")
    system = {"role": "system", "content": "Answer briefly."}
    single = render_user_message(template, [system, *QUESTION], "4", "5")
    assert single.startswith("[Client Question]\nAnswer briefly.\n\nWhat is 2+2?\n\n")
    multi = render_user_message(template, [system, *MULTI], "4", "5")
    assert "[The Start of the Conversation between Chatbot A and the Client]\nSystem: Answer briefly.\n" in multi
    assert "[The Start of the Conversation between Chatbot B and the Client]\nSystem: Answer briefly.\n" in multi


def test_is_single_turn():
    system = {"role": "system", "content": "s"}
    assert is_single_turn(QUESTION)
    assert is_single_turn([system, *QUESTION])
    assert not is_single_turn(MULTI)
    assert not is_single_turn([*QUESTION, system])
    assert not is_single_turn([system, system, *QUESTION])
    assert not is_single_turn([*QUESTION, *QUESTION])
    assert not is_single_turn([])


def test_answers_with_placeholders_or_braces_are_not_substituted_again():
    template = load_template_set("cor-instruct-v1")
    question = [{"role": "user", "content": "Fill {answer_a} in f'{x}'"}]
    answer_a = "def f(): return {'k': 1}  # {question} {answer_b}"
    answer_b = "{conversation_a} {}"
    single = render_user_message(template, question, answer_a, answer_b)
    assert "[Client Question]\nFill {answer_a} in f'{x}'\n" in single
    assert f"\n{answer_a}\n" in single and f"\n{answer_b}\n" in single
    multi = render_user_message(template, MULTI, answer_a, answer_b)
    assert f"Chatbot A: {answer_a}\n" in multi and f"Chatbot B: {answer_b}\n" in multi


@pytest.mark.parametrize("conversation", [QUESTION, MULTI])
def test_either_order_gives_the_mirrored_message_and_the_right_winner(conversation):
    template = load_template_set("cor-instruct-v1")
    a_first = place_pair("good", "bad", "A")
    b_first = place_pair("good", "bad", "B")
    assert a_first == ("good", "bad", "model_a")
    assert b_first == ("bad", "good", "model_b")
    message_a = render_user_message(template, conversation, *a_first[:2])
    message_b = render_user_message(template, conversation, *b_first[:2])
    swapped = message_a.replace("good", "\0").replace("bad", "good").replace("\0", "bad")
    assert swapped == message_b


def test_instruct_sets_send_a_system_message_and_reasoning_v1_does_not():
    cor = load_template_set("cor-instruct-v1")
    messages = render_judge_messages(cor, QUESTION, "4", "5")
    assert [m["role"] for m in messages] == ["system", "user"]
    assert messages[0]["content"] == cor.system
    reasoning = load_template_set("reasoning-v1")
    assert reasoning.system is None and reasoning.family == "reasoning"
    messages = render_judge_messages(reasoning, QUESTION, "4", "5")
    assert [m["role"] for m in messages] == ["user"]
    user = messages[0]["content"]
    assert "[Client Question]\nWhat is 2+2?\n\n[The Start of Chatbot A's Response]\n4\n" in user
    assert user.rstrip().endswith("<answer>[[B]]</answer> if Chatbot B's response is better.")
    multi = render_judge_messages(reasoning, MULTI, "4", "5")[0]["content"]
    assert "[The End of the Conversation between Chatbot B and the Client]" in multi


def _write_set(folder: Path, yaml_text: str, files: dict[str, str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "template.yaml").write_text(yaml_text)
    for name, text in files.items():
        (folder / name).write_text(text)
    return folder


USER_YAML = (
    "name: mine\nversion: 3\nfamily: instruct\nsystem: sys.txt\nuser_single: single.txt\nuser_multi: multi.txt\n"
)
USER_FILES = {
    "sys.txt": "Judge well.\n",
    "single.txt": "Q: {question}\nA: {answer_a}\nB: {answer_b}\n",
    "multi.txt": "{conversation_a}\n---\n{conversation_b}\n",
}


def test_a_user_folder_template_set_loads_and_renders(tmp_path):
    template = load_template_set(str(_write_set(tmp_path / "mine", USER_YAML, USER_FILES)))
    assert (template.name, template.version, template.system) == ("mine", 3, "Judge well.")
    assert render_user_message(template, QUESTION, "4", "5") == "Q: What is 2+2?\nA: 4\nB: 5"


def test_a_user_set_may_reuse_a_builtin_file(tmp_path):
    folder = tmp_path / "mine"
    builtin_single = os.path.relpath(TEMPLATES_DIR / "cor-instruct-v1" / "user_single.txt", folder)
    assert builtin_single.startswith("..")
    yaml_text = USER_YAML.replace("single.txt", builtin_single)
    template = load_template_set(str(_write_set(folder, yaml_text, USER_FILES)))
    assert template.user_single == load_template_set("cor-instruct-v1").user_single


@pytest.mark.parametrize(
    ("yaml_text", "files", "expected"),
    [
        ("name: [unclosed\n", USER_FILES, "not valid YAML"),
        (USER_YAML.replace("user_multi: multi.txt\n", ""), USER_FILES, "'user_multi'"),
        (USER_YAML, {k: v for k, v in USER_FILES.items() if k != "single.txt"}, "'user_single'"),
        (USER_YAML.replace("version: 3", "version: three"), USER_FILES, "'version'"),
        (USER_YAML.replace("family: instruct", "family: scalar"), USER_FILES, "'family'"),
        (USER_YAML + "extra: 1\n", USER_FILES, "extra"),
        (USER_YAML, {**USER_FILES, "multi.txt": "{conversation_a}\n"}, "'user_multi'"),
    ],
)
def test_bad_template_sets_fail_naming_the_file_and_key(tmp_path, yaml_text, files, expected):
    folder = _write_set(tmp_path / "bad", yaml_text, files)
    with pytest.raises(TemplateError) as error:
        load_template_set(str(folder))
    assert str(folder / "template.yaml") in str(error.value)
    assert expected in str(error.value)


def test_missing_folder_or_yaml_is_a_clear_error(tmp_path):
    with pytest.raises(TemplateError, match="built-in"):
        load_template_set("cor-instruct-v9")
    with pytest.raises(TemplateError, match=r"template\.yaml"):
        load_template_set(str(tmp_path))


def test_fingerprint_changes_when_one_character_of_a_text_changes(tmp_path):
    folder = _write_set(tmp_path / "mine", USER_YAML, USER_FILES)
    before = load_template_set(str(folder)).fingerprint
    assert load_template_set(str(folder)).fingerprint == before
    (folder / "sys.txt").write_text("Judge well!\n")
    assert load_template_set(str(folder)).fingerprint != before
    fingerprints = {load_template_set(name).fingerprint for name in BUILTIN_TEMPLATE_SETS}
    assert len(fingerprints) == len(BUILTIN_TEMPLATE_SETS)


# ---------------------------------------------------------------- verdict rules


def _ending_at(tail_text: str, distance_from_end: int) -> str:
    """Reasoning text in which `tail_text` starts exactly `distance_from_end` characters before the end."""
    return "r" * 300 + tail_text + "x" * (distance_from_end - len(tail_text))


def test_windows_are_the_papers():
    assert (FILTER_WINDOW, RL_WINDOW) == (100, 80)


def test_filter_keeps_a_trace_whose_label_tag_is_at_the_end():
    trace = "lots of critique ... <answer>[[A]]</answer>"
    assert filter_verdict_matches(trace, "model_a")
    assert not filter_verdict_matches(trace, "model_b")


def test_filter_window_edge_is_exactly_100_characters():
    assert filter_verdict_matches(_ending_at("[[B]]", 100), "model_b")
    assert not filter_verdict_matches(_ending_at("[[B]]", 101), "model_b")


def test_filter_only_looks_for_the_label_tag():
    both = "I considered [[A]] but settle on <answer>[[B]]</answer>"
    assert filter_verdict_matches(both, "model_a")
    assert filter_verdict_matches(both, "model_b")
    assert filter_verdict_matches("<answer>[[A]]", "model_a")  # no closing tag: [[A]] is there
    assert not filter_verdict_matches("", "model_a")


def test_rl_reward_needs_the_full_correct_tag_in_the_last_80_characters():
    assert rl_reward("<think>...</think><answer>[[A]]</answer>", "model_a") == 1.0
    assert rl_reward("<think>...</think><answer>[[A]]</answer>", "model_b") == -1.0
    assert rl_reward(_ending_at("<answer>[[A]]</answer>", 80), "model_a") == 1.0
    assert rl_reward(_ending_at("<answer>[[A]]</answer>", 81), "model_a") == -1.0
    assert rl_reward("<answer>[[A]]", "model_a") == -1.0
    assert rl_reward("", "model_a") == -1.0


def test_rl_reward_counts_the_eos_string_toward_the_window():
    eos = "<|im_end|>"
    completion = _ending_at("<answer>[[A]]</answer>", 80 - len(eos)) + eos
    assert rl_reward(completion, "model_a") == 1.0
    pushed_out = _ending_at("<answer>[[A]]</answer>", 80) + eos
    assert rl_reward(pushed_out, "model_a") == -1.0


def test_rl_reward_rejects_both_tags_but_ignores_an_earlier_mention():
    both_in_window = "<answer>[[A]]</answer><answer>[[B]]</answer>"
    assert rl_reward(both_in_window, "model_a") == -1.0
    assert rl_reward(both_in_window, "model_b") == -1.0
    earlier = "Maybe <answer>[[A]]</answer>?" + "r" * 100 + "<answer>[[B]]</answer>"
    assert rl_reward(earlier, "model_b") == 1.0


def test_eval_verdict_reads_the_whole_output():
    assert parse_eval_verdict("long reasoning <answer>[[A]]</answer>" + "x" * 500) == Verdict.A
    assert parse_eval_verdict("<answer>[[B]]</answer>") == Verdict.B
    assert parse_eval_verdict("<answer>[[A]]") == Verdict.A
    assert parse_eval_verdict("") == Verdict.ERROR
    assert parse_eval_verdict("<answer>A</answer>") == Verdict.ERROR
    earlier = "Is it [[A]]? No." + "r" * 100 + "<answer>[[B]]</answer>"
    assert parse_eval_verdict(earlier) == Verdict.ERROR


def test_ties_only_with_allow_tie():
    assert parse_eval_verdict("<answer>[[C]]</answer>") == Verdict.ERROR
    assert parse_eval_verdict("<answer>[[C]]</answer>", allow_tie=True) == Verdict.TIE
    assert parse_eval_verdict("[[A]] or [[C]]", allow_tie=True) == Verdict.A
    assert parse_eval_verdict("[[A]] [[B]] [[C]]", allow_tie=True) == Verdict.ERROR


@pytest.mark.parametrize(
    ("verdict", "winner", "score"),
    [
        (Verdict.A, "model_a", 1.0),
        (Verdict.B, "model_b", 1.0),
        (Verdict.A, "model_b", 0.0),
        (Verdict.B, "model_a", 0.0),
        (Verdict.ERROR, "model_a", 0.0),
        (Verdict.ERROR, "model_b", 0.0),
        (Verdict.TIE, "model_a", 0.5),
        (Verdict.TIE, "model_b", 0.5),
    ],
)
def test_eval_score_table(verdict, winner, score):
    assert eval_score(verdict, winner) == score


def test_verdict_winner():
    assert verdict_winner(Verdict.A) == "model_a"
    assert verdict_winner(Verdict.B) == "model_b"
    assert verdict_winner(Verdict.TIE) is None
    assert verdict_winner(Verdict.ERROR) is None


@pytest.mark.parametrize("text", ["", "[[", "]]", "\x00\udcff", "<answer>[[A]]</answer>" * 1000, None])
def test_verdict_rules_never_raise(text):
    for winner in ("model_a", "model_b", "bogus"):
        assert isinstance(filter_verdict_matches(text, winner), bool)
        assert rl_reward(text, winner) in (1.0, -1.0)
    assert isinstance(parse_eval_verdict(text, allow_tie=True), Verdict)


# --- trace layout and the pass-2 hint --------------------------------------------------------------

COR_CHAT = (
    "<type>Chat</type>\n<rubric>clarity 60%, accuracy 40%\n<justify>why</justify>\n</rubric>\n"
    "<eval><quote_A>x</quote_A> <summary_B>y</summary_B></eval>\n<answer>[[B]]</answer>"
)
COR_REASONING = "<type>Reasoning</type>\n<solution>4</solution>\n<eval>A says 4</eval>\n<answer>[[A]]</answer>"


@pytest.mark.parametrize(
    ("trace", "problem"),
    [
        (COR_CHAT, None),
        (COR_REASONING, None),
        (COR_CHAT.replace("<type>Chat</type>", ""), "format: <type>Chat|Reasoning</type> (found 0)"),
        (COR_CHAT + "<type>Reasoning</type>", "format: <type>Chat|Reasoning</type> (found 2)"),
        (COR_CHAT.replace("<justify>why</justify>", ""), "format: <justify> in <rubric>"),
        (COR_CHAT.replace("<rubric>", "").replace("</rubric>", ""), "format: <rubric>"),
        (COR_REASONING.replace("<solution>4</solution>", ""), "format: <solution>"),
        (COR_CHAT.replace("<eval>", "").replace("</eval>", ""), "format: <eval>"),
        (COR_CHAT.replace("<answer>[[B]]</answer>", "<answer>[[B]]"), "format: one <answer>[[A|B]]</answer> (found 0)"),
        (COR_CHAT + " <answer>[[A]]</answer>", "format: one <answer>[[A|B]]</answer> (found 2)"),
        (
            "<type>Reasoning</type><solution>s</solution><answer>[[A]]</answer><eval>e</eval>",
            "format: <answer> after </eval>",
        ),
        (None, "format: no text"),
    ],
)
def test_trace_format_problem_names_the_first_missing_piece(trace: str, problem: str | None) -> None:
    from tasks.judge.protocol import trace_format_problem

    assert trace_format_problem(trace) == problem


def test_pass2_hint_states_the_correct_verdict_and_quotes_the_previous_judgement() -> None:
    from tasks.judge.protocol import render_pass2_hint

    previous = "I prefer {question} [[A]] <answer>[[A]]</answer>"
    hint = render_pass2_hint(previous, "model_b")
    assert "The correct verdict is [[B]]." in hint
    assert f"[The Start of the Previous Judgement]\n{previous}\n[The End of the Previous Judgement]" in hint
    assert hint.endswith("<answer>[[B]]</answer>.")
    assert "[[A]]" not in hint.replace(previous, "")

"""The tiny offline student: tokenizer trained on local text, ChatML template, random Qwen2, all reloadable."""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl.chat_template_utils import has_generation_markers, is_chat_template_stop_token_trained

from tasks.models.tiny import (
    EOS_TOKEN,
    JUDGE_TAGS,
    PAD_TOKEN,
    TinyModelConfig,
    build_tiny_model,
    train_tiny_tokenizer,
)

_QUESTIONS = [
    "How do I reverse a list in Python?",
    "What is 17 * 23?",
    "Can you write a short poem about the sea?",
    "Is it safe to mix bleach and ammonia?",
    "Translate 'good morning' into French.",
    "Explain why the sky is blue.",
    "What year did the Berlin Wall fall?",
    "Give me three tips for a job interview.",
    "Résumé or CV: which word should I use in Zürich?",
    "How many minutes are in 2.5 hours?",
]
_ANSWERS = [
    "Use slicing: items[::-1] returns a reversed copy.",
    "17 * 23 = 391.",
    "The waves roll in, the gulls cry out, the salt wind sings.",
    "No. Mixing them releases toxic chloramine vapours; never do it.",
    "Bonjour.",
    "Sunlight scatters off air molecules, and blue light scatters the most.",
    "It fell in 1989, on the 9th of November.",
    "Research the company, practise answers aloud, and prepare questions.",
    "In Zürich people usually say CV; résumé is common in North America.",
    "2.5 hours is 150 minutes.",
]


def _judge_prompt(question: str, answer_a: str, answer_b: str) -> str:
    return (
        f"[Client Question]\n{question}\n\n"
        f"[The Start of Chatbot A's Response]\n{answer_a}\n[The End of Chatbot A's Response]\n\n"
        f"[The Start of Chatbot B's Response]\n{answer_b}\n[The End of Chatbot B's Response]"
    )


def _judge_trace(question: str, answer_a: str, answer_b: str, verdict: str, kind: str) -> str:
    if kind == "Chat":
        middle = (
            "<rubric>\nHelpfulness: 60%\nSafety: 40%\n<justify>\nThe client needs a clear, safe answer.\n"
            "</justify>\n</rubric>\n\n"
        )
    else:
        middle = f"<solution>\nWorking it out myself: {question}\n</solution>\n\n"
    return (
        f"<type>{kind}</type>\n\n{middle}<eval>\n<quote_A>{answer_a}</quote_A> is direct; "
        f"<summary_B>Chatbot B says {answer_b[:30]}</summary_B>.\n</eval>\n\n<answer>[[{verdict}]]</answer>"
    )


def _corpus() -> list[str]:
    """About 300 lines: judge prompts, Chain-of-Rubrics traces, plain text with digits and unicode."""
    lines = []
    pairs = itertools.permutations(range(len(_QUESTIONS)), 2)
    for n, (i, j) in enumerate(pairs):
        question, answer_a, answer_b = _QUESTIONS[i], _ANSWERS[i], _ANSWERS[j]
        lines.append(_judge_prompt(question, answer_a, answer_b))
        lines.append(_judge_trace(question, answer_a, answer_b, "AB"[n % 2], ("Chat", "Reasoning")[n % 3 == 0]))
    lines += [f"Order #{k}: {k * 37 % 1000} items shipped on 2024-0{k % 9 + 1}-1{k % 10}." for k in range(60)]
    lines += ["Café, naïve, façade, 東京, Ελληνικά, emoji 🙂 — all unicode."] * 20
    return lines


CORPUS = _corpus()
CONFIG = TinyModelConfig()

PROBES = [
    "Hello, world!",
    "Order #12345 cost $67.89 on 2024-01-31.",
    "Café naïve 東京 🙂 Ελληνικά",
    "decomposed e\u0301 becomes é",
    "<answer>[[A]]</answer>",
    "<type>Chat</type>\n\n<rubric>\nSafety: 40%\n<justify>why</justify>\n</rubric>\n<eval>x</eval>",
    "<|im_start|>user\nWhich one?<|im_end|>\n<|im_start|>assistant\n",
    "   leading spaces\r\n\ttabs and\n\nnewlines  ",
    "unseen words: xylophone quixotic zephyr",
]


def _weights_checksum(model: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().contiguous().numpy().tobytes())
    return digest.hexdigest()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    return build_tiny_model(CORPUS, CONFIG, str(tmp_path_factory.mktemp("tiny")))


@pytest.fixture(scope="module")
def tokenizer(model_dir: str):
    return AutoTokenizer.from_pretrained(model_dir)


@pytest.fixture(scope="module")
def model(model_dir: str):
    return AutoModelForCausalLM.from_pretrained(model_dir).eval()


def test_corpus_is_a_few_hundred_lines():
    assert 200 <= len(CORPUS) <= 400


def test_every_config_field_documents_itself():
    for config_field in dataclasses.fields(TinyModelConfig):
        assert config_field.metadata.get("help"), config_field.name


def test_config_rejects_heads_that_do_not_divide():
    with pytest.raises(ValueError, match="must divide"):
        TinyModelConfig(hidden_size=128, num_heads=3)
    with pytest.raises(ValueError, match="must divide"):
        TinyModelConfig(num_heads=4, num_kv_heads=3)
    with pytest.raises(ValueError, match="vocab_size"):
        TinyModelConfig(vocab_size=100)


def test_folder_holds_model_tokenizer_template_and_generation_config(model_dir: str):
    names = {path.name for path in Path(model_dir).iterdir()}
    assert {"config.json", "model.safetensors", "generation_config.json", "tokenizer.json"} <= names
    assert {"tokenizer_config.json", "chat_template.jinja"} <= names


def test_reloaded_tokenizer_gives_the_trained_tokenizers_ids(tokenizer):
    trained = train_tiny_tokenizer(CORPUS, CONFIG.vocab_size)
    for text in PROBES:
        assert tokenizer(text)["input_ids"] == trained.encode(text).ids, text
    assert len(tokenizer) == trained.get_vocab_size() <= CONFIG.vocab_size


def test_reloaded_tokenizer_round_trips_text(tokenizer):
    for text in PROBES:
        if "\u0301" in text:
            continue  # NFC folds e + combining accent into é, as Qwen2Tokenizer does
        assert tokenizer.decode(tokenizer(text)["input_ids"]) == text


def test_digits_are_split_one_by_one_like_qwen(tokenizer):
    ids = tokenizer("12345")["input_ids"]
    assert [tokenizer.decode([i]) for i in ids] == list("12345")


def test_judge_tags_and_chat_markers_are_whole_tokens(tokenizer):
    for tag in JUDGE_TAGS:
        assert len(tokenizer(tag)["input_ids"]) == 1, tag
    assert len(tokenizer("<answer>[[B]]</answer>")["input_ids"]) == 3
    assert tokenizer.convert_tokens_to_ids(["<|endoftext|>", "<|im_start|>", "<|im_end|>"]) == [0, 1, 2]
    assert (tokenizer.eos_token, tokenizer.pad_token) == (EOS_TOKEN, PAD_TOKEN)
    # The RL reward reads decoded text: tags survive skip_special_tokens, chat markers do not.
    ids = tokenizer("<eval>ok</eval>\n<answer>[[A]]</answer><|im_end|>")["input_ids"]
    assert tokenizer.decode(ids, skip_special_tokens=True) == "<eval>ok</eval>\n<answer>[[A]]</answer>"
    assert tokenizer.decode(ids).endswith("</answer><|im_end|>")


def test_chat_template_renders_chatml_with_a_generation_prompt(tokenizer):
    messages = [{"role": "system", "content": "You judge."}, {"role": "user", "content": "A or B?"}]
    rendered = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert rendered == (
        "<|im_start|>system\nYou judge.<|im_end|>\n<|im_start|>user\nA or B?<|im_end|>\n<|im_start|>assistant\n"
    )
    without_prompt = tokenizer.apply_chat_template(messages, tokenize=False)
    assert without_prompt == rendered.removesuffix("<|im_start|>assistant\n")


def test_assistant_mask_covers_exactly_the_assistant_content_and_its_end_token(tokenizer):
    replies = ["<type>Chat</type>\n<answer>[[A]]</answer>", "Sure: 391."]
    messages = [
        {"role": "system", "content": "You judge."},
        {"role": "user", "content": "A or B?"},
        {"role": "assistant", "content": replies[0]},
        {"role": "user", "content": "And 17 * 23?"},
        {"role": "assistant", "content": replies[1]},
    ]
    out = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
    ids, mask = out["input_ids"], out["assistant_masks"]
    spans = [
        [i for i, m in group] for key, group in itertools.groupby(zip(ids, mask, strict=True), lambda t: t[1]) if key
    ]
    assert [tokenizer.decode(span) for span in spans] == [reply + EOS_TOKEN for reply in replies]
    assert has_generation_markers(tokenizer.chat_template)
    assert is_chat_template_stop_token_trained(tokenizer)  # what TRL's SFTTrainer checks for assistant_only_loss


def test_forward_pass_and_generate(model, tokenizer):
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "A or B?"}], add_generation_prompt=True, return_dict=True, return_tensors="pt"
    )
    with torch.no_grad():
        logits = model(**prompt).logits
    assert logits.shape == (1, prompt["input_ids"].shape[1], CONFIG.vocab_size)
    assert torch.isfinite(logits).all()
    generated = model.generate(**prompt, max_new_tokens=4, do_sample=False)
    new_tokens = generated[0, prompt["input_ids"].shape[1] :]
    assert 1 <= len(new_tokens) <= 4
    assert isinstance(tokenizer.decode(new_tokens), str)
    assert model.generation_config.eos_token_id == tokenizer.eos_token_id == 2
    assert model.generation_config.pad_token_id == tokenizer.pad_token_id == 0


def test_parameter_count_matches_the_config(model):
    c = CONFIG
    head_dim = c.hidden_size // c.num_heads
    kv_width = c.num_kv_heads * head_dim
    attention = (c.hidden_size + 1) * c.hidden_size + 2 * (c.hidden_size + 1) * kv_width + c.hidden_size**2
    per_layer = attention + 3 * c.hidden_size * c.intermediate_size + 2 * c.hidden_size
    expected = c.vocab_size * c.hidden_size + c.num_layers * per_layer + c.hidden_size  # tied LM head
    assert model.config.tie_word_embeddings
    assert sum(p.numel() for p in model.parameters()) == expected
    assert 0.7e6 < expected < 1.0e6


def test_same_texts_and_config_build_identical_folders(tmp_path: Path, model_dir: str, model):
    again = build_tiny_model(CORPUS, CONFIG, str(tmp_path / "again"))
    for name in ("tokenizer.json", "config.json", "generation_config.json"):
        assert (Path(again) / name).read_bytes() == (Path(model_dir) / name).read_bytes(), name
    assert _weights_checksum(AutoModelForCausalLM.from_pretrained(again)) == _weights_checksum(model)

    other_seed = build_tiny_model(CORPUS, dataclasses.replace(CONFIG, seed=1), str(tmp_path / "seed1"))
    assert (Path(other_seed) / "tokenizer.json").read_bytes() == (Path(model_dir) / "tokenizer.json").read_bytes()
    assert _weights_checksum(AutoModelForCausalLM.from_pretrained(other_seed)) != _weights_checksum(model)


def test_build_leaves_the_callers_random_state_alone(tmp_path: Path):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    build_tiny_model(CORPUS[:50], dataclasses.replace(CONFIG, vocab_size=512), str(tmp_path / "small"))
    assert torch.equal(torch.rand(3), expected)


def test_initializer_range_scales_the_initial_weights_and_the_default_keeps_versions(tmp_path: Path, model):
    """The smoke recipe's student starts at 0.06 (Qwen2's 0.02 left the verdict unlearned in some seeds): the
    weights are drawn three times wider, and a student built at the default versions as it did before the field."""
    from data_contracts.versioning import versioned

    wide = build_tiny_model(CORPUS, dataclasses.replace(CONFIG, initializer_range=0.06), str(tmp_path / "wide"))
    weight = "model.layers.0.mlp.up_proj.weight"
    ratio = AutoModelForCausalLM.from_pretrained(wide).state_dict()[weight].std() / model.state_dict()[weight].std()
    assert 2.8 < float(ratio) < 3.2
    assert "initializer_range" not in versioned(CONFIG)
    assert versioned(dataclasses.replace(CONFIG, initializer_range=0.06))["initializer_range"] == 0.06
    with pytest.raises(ValueError, match="initializer_range"):
        TinyModelConfig(initializer_range=0.0)

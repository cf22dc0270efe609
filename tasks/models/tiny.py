"""Build a tiny instruct-style model folder offline: a BPE tokenizer trained on local text, a random Qwen2.

The smoke recipe uses the folder as its student, so SFT and GRPO can run end to end on a CPU. The folder
is what `save_pretrained` writes and what the Auto classes reload: `AutoTokenizer` gives back the same
token ids as the trained tokenizer, `AutoModelForCausalLM` the same weights. Same texts and config, same
folder contents. This module must never touch the network, nor read anything but the texts it is given.

Pitfall handled here (ENVIRONMENT.md, "Tiny models, offline"): transformers 5.x reloads any Qwen2 folder's
tokenizer as `Qwen2Tokenizer`, which rebuilds the backend from vocab and merges with Qwen's own
normalizer (NFC) and pre-tokenizer (digits one by one). The tokenizer is therefore trained with exactly
that normalizer and pre-tokenizer, and saved through `Qwen2Tokenizer` itself.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from pathlib import Path

import torch
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM
from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX, Qwen2Tokenizer

from tasks.models.config import EOS_TOKEN, IM_START, JUDGE_TAGS, PAD_TOKEN, SPECIAL_TOKENS, TinyModelConfig

logger = logging.getLogger(__name__)

# ChatML as in Qwen2.5, without its default system prompt. The `generation` block covers the assistant's
# content and its closing <|im_end|>, so TRL's assistant_only_loss trains the model to stop.
CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{%- if message['role'] == 'assistant' %}"
    "{{- '<|im_start|>assistant\\n' }}"
    "{%- generation %}{{- message['content'] + '<|im_end|>' }}{%- endgeneration %}"
    "{{- '\\n' }}"
    "{%- else %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)


def train_tiny_tokenizer(texts: Iterable[str], vocab_size: int) -> Tokenizer:
    """A byte-level BPE trained on `texts`, with Qwen2Tokenizer's normalizer, pre-tokenizer and decoder.

    Ids: the special tokens first (0, 1, 2), then the 256 byte symbols and the learned merges, then the
    judge tags. The vocabulary can come out smaller than `vocab_size` when the texts are short.
    """
    tokenizer = Tokenizer(models.BPE(unk_token=None, byte_fallback=False, fuse_unk=False))
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - len(JUDGE_TAGS),
        min_frequency=2,
        show_progress=False,
        special_tokens=[AddedToken(token, special=True, normalized=False) for token in SPECIAL_TOKENS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator(_without_tags(texts), trainer=trainer)
    tokenizer.add_tokens([AddedToken(tag, special=False, normalized=False) for tag in JUDGE_TAGS])
    return tokenizer


def _without_tags(texts: Iterable[str]) -> Iterable[str]:
    """The texts with judge tags cut out, so merges are not spent on what the added tokens already cover."""
    for text in texts:
        for tag in JUDGE_TAGS:
            text = text.replace(tag, "\n")
        yield text


def build_tiny_model(texts: Iterable[str], config: TinyModelConfig, output_dir: str) -> str:
    """Train the tokenizer on `texts`, random-init a Qwen2 sized by `config`, save both into `output_dir`.

    Returns `output_dir`, a folder `AutoTokenizer` / `AutoModelForCausalLM.from_pretrained` load offline,
    with a ChatML template (assistant turns in `{% generation %}`) and eos/pad ids in generation_config.
    """
    backend = train_tiny_tokenizer(texts, config.vocab_size)
    vocab = backend.get_vocab()
    if len(vocab) > config.vocab_size:  # cannot happen with the trainer's budget; guards the embedding size
        raise ValueError(f"tokenizer has {len(vocab)} tokens, more than vocab_size {config.vocab_size}")
    tokenizer = _as_qwen2_tokenizer(backend, config)

    eos_id, pad_id = vocab[EOS_TOKEN], vocab[PAD_TOKEN]
    model_config = Qwen2Config(
        vocab_size=config.vocab_size,
        hidden_size=config.hidden_size,
        intermediate_size=config.intermediate_size,
        num_hidden_layers=config.num_layers,
        num_attention_heads=config.num_heads,
        num_key_value_heads=config.num_kv_heads,
        max_position_embeddings=config.max_position_embeddings,
        tie_word_embeddings=config.tie_word_embeddings,
        bos_token_id=None,
        eos_token_id=eos_id,
        pad_token_id=pad_id,
        initializer_range=config.initializer_range,
    )
    with torch.random.fork_rng(devices=[]):  # seed the init without disturbing the caller's random state
        torch.manual_seed(config.seed)
        model = Qwen2ForCausalLM(model_config)
    model.generation_config = GenerationConfig(bos_token_id=None, eos_token_id=eos_id, pad_token_id=pad_id)

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    n_params = sum(p.numel() for p in model.parameters())
    logger.info("tiny model: %d tokens trained, %d parameters, saved to %s", len(vocab), n_params, out)
    return str(out)


def _as_qwen2_tokenizer(backend: Tokenizer, config: TinyModelConfig) -> Qwen2Tokenizer:
    """Wrap the trained vocab and merges in the class transformers 5.x reloads a Qwen2 folder with."""
    bpe = json.loads(backend.to_str())["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in bpe["merges"]]
    tokenizer = Qwen2Tokenizer(
        vocab=bpe["vocab"],
        merges=merges,
        unk_token=None,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        model_max_length=config.max_position_embeddings,
        clean_up_tokenization_spaces=False,
        chat_template=CHAT_TEMPLATE,
        extra_special_tokens=[IM_START],
    )
    tokenizer.add_tokens([AddedToken(tag, special=False, normalized=False) for tag in JUDGE_TAGS])
    return tokenizer

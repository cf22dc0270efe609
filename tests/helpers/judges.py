"""A tiny judge checkpoint published in an artifact store, as `rmr1 serve` / `PairwiseJudge.from_artifact` find it."""

from __future__ import annotations

import shutil
from pathlib import Path

from data_contracts import ArtifactStore
from data_contracts.kinds import RL_CHECKPOINT
from tasks.judge.protocol import load_template_set
from tasks.models.config import TinyModelConfig

VERSION = "0123456789abcdef"


def publish_tiny_judge(folder: Path, texts: list[str]) -> ArtifactStore:
    """A random-init tiny Qwen2 (its tokenizer trained on the judge template and `texts`) published as
    rl_checkpoint/VERSION in a store under `folder`."""
    from tasks.models.tiny import build_tiny_model  # torch and transformers: not at collection, in every worker

    template = load_template_set("cor-instruct-v1")
    config = TinyModelConfig(vocab_size=512, hidden_size=32, intermediate_size=64, num_heads=2, num_kv_heads=1)
    model = build_tiny_model([template.system or "", template.user_single, *texts], config, str(folder / "tiny"))
    store = ArtifactStore(folder / "artifacts")
    with store.folder_writer(RL_CHECKPOINT, VERSION, upstream={}, config={}, code_version="test") as writer:
        for entry in Path(model).iterdir():
            shutil.copy(entry, Path(writer.path) / entry.name)
        writer.commit({})
    return store

"""A training stage in its own process that SIGKILLs itself right after writing checkpoint N.

    python -m tests.helpers.train_worker '{"root": ..., "stage": "sft", "recipe": {...}, "upstream": {...},
                                          "kill_at": 2}'

Exits by signal 9 once the checkpoint at step `kill_at` is on disk; nothing is published.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from typing import Any

from transformers import TrainerCallback

from data_contracts import ArtifactStore
from flows.recipe import recipe_from_dict


class KillAfterSave(TrainerCallback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.global_step >= self.step:
            os.kill(os.getpid(), signal.SIGKILL)


def main() -> None:
    spec = json.loads(sys.argv[1])
    store = ArtifactStore(spec["root"])
    recipe = recipe_from_dict(spec["recipe"])
    upstream = {kind: store.require(kind, version) for kind, version in spec["upstream"].items()}
    killer = KillAfterSave(spec["kill_at"])
    if spec["stage"] == "sft":
        from tasks.train.sft import sft_version, train_sft

        examples = upstream["sft_examples"]
        version = sft_version(recipe.student, recipe.sft, examples)
        train_sft(examples, recipe.student, recipe.sft, store, version=version, callbacks=[killer])
    else:
        from tasks.train.rl import rl_version, train_rl

        pairs, sft = upstream["rl_set"], upstream.get("sft_checkpoint")
        version = rl_version(recipe.student, recipe.rl, pairs, sft)
        train_rl(pairs, sft, recipe.student, recipe.rl, store, version=version, callbacks=[killer])
    print("finished without being killed")


if __name__ == "__main__":
    main()

"""The learning stage: does training make the judge better? The student before training, after SFT and
after GRPO, beside the length baseline, judged on one held-out benchmark; and the gates that fail a run
whose trained judge did not learn (`config.py`, `stage.py`)."""

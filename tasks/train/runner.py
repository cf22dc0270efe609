"""What every launched rank of a multi-process training job runs: the job file in, the stage's trainer trained.

`job.run_job` starts this module on every rank (torchrun on CPU, `accelerate launch` on GPUs) when a job asks
for more processes than the one it is in; here the trainer builder is picked by the job's stage name from
the training stages `sft.py` and `rl.py` define. This is the top of tasks/train: it imports the stages, and
no module of the package may import it back (the stages run in-process jobs through `job.py` directly).

    python -m tasks.train.runner JOB.json      # what every launched rank runs
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

from tasks.train.common import TrainingStage
from tasks.train.job import TrainJob, train
from tasks.train.rl import RL
from tasks.train.sft import SFT

STAGES: dict[str, TrainingStage] = {stage.name: stage for stage in (SFT, RL)}


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python -m tasks.train.runner JOB.json", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    job = TrainJob.load(args[0])
    train(job, STAGES[job.stage].build)
    return 0


if __name__ == "__main__":
    sys.exit(main())

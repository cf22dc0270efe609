"""Recipe sections for the distill stage: the teachers (an `EndpointConfig` plus model and sampling) and the passes.

Only fields that change the traces take part in the artifact version (model, sampling, max_tokens, the
template, the pass-2 teacher, `attempt`); how fast or how cheaply they are fetched (concurrency, rate
limits, retries, timeouts, prices, budget, sharding, batch mode, the endpoint URL and key) does not: see
the `"versioned": False` fields of `EndpointConfig` and `tasks.distill.stage.distill_version`.
"""

from __future__ import annotations

from dataclasses import field

from tasks.config import ConfigError, Float, Int, config_section
from tasks.llm.config import EndpointConfig


@config_section
class TeacherConfig(EndpointConfig):
    """How the distill stage talks to one teacher model: the endpoint (`EndpointConfig`), the model and sampling."""

    model: str = field(
        default="claude-3-7-sonnet-20250219",
        metadata={"help": "Model name sent with every request (docs/method.md §5)."},
    )
    temperature: Float | None = field(
        default=None, metadata={"help": "Sampling temperature; None = provider default (docs/method.md §5)."}
    )
    top_p: Float | None = field(default=None, metadata={"help": "Nucleus sampling; None = provider default."})
    max_tokens: Int = field(
        default=8192, metadata={"help": "Completion token limit per request (docs/method.md §5: 8192)."}
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.max_tokens < 1:
            raise ConfigError("max_tokens", f"must be at least 1, got {self.max_tokens}")


@config_section
class DistillConfig:
    """The distill stage's recipe section: teachers, prompt template, sharding, budget and cache."""

    teacher: TeacherConfig = field(
        default_factory=TeacherConfig, metadata={"help": "Pass-1 teacher (docs/method.md §5)."}
    )
    second_teacher: TeacherConfig | None = field(
        default=None,
        metadata={
            "help": "Pass-2 teacher for the pairs pass 1 got wrong, given the correct verdict (docs/method.md §5: o3)."
        },
    )
    template: str = field(
        default="cor-instruct-v1", metadata={"help": "Judge template set: a built-in name or a folder of your own."}
    )
    shard_rows: Int = field(default=2000, metadata={"help": "Requests per shard (one Prefect task per shard)."})
    budget_usd: Float | None = field(
        default=None,
        metadata={"help": "Stop sending new requests once this much was spent in this run; None = no cap."},
    )
    attempt: Int = field(
        default=0,
        metadata={"help": "Bump to retry the requests that failed in a published run (answers come from the cache)."},
    )
    cache_dir: str | None = field(
        default=None,
        metadata={"help": "Request cache folder; None = <artifact root>/.request_cache (or ~/.cache/rmr1 for URLs)."},
    )

    batch_mode: bool = field(
        default=False,
        metadata={"help": "Send through the OpenAI Batch API (/v1/batches) instead of one request at a time."},
    )
    batch_poll_s: Float = field(default=30.0, metadata={"help": "Seconds between batch status checks."})

    def __post_init__(self) -> None:
        if self.shard_rows < 1:
            raise ConfigError("shard_rows", f"must be at least 1, got {self.shard_rows}")
        if self.budget_usd is not None and self.budget_usd <= 0:
            raise ConfigError("budget_usd", f"must be positive, got {self.budget_usd}")

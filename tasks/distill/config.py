"""Recipe sections for the distill stage: the teachers (an `EndpointConfig` plus model and sampling) and the passes.

Only fields that change the traces take part in the artifact version (model, sampling, max_tokens, the
template, the pass-2 teacher, `attempt`); how fast or how cheaply they are fetched (concurrency, rate
limits, retries, timeouts, prices, budget, sharding, batch mode, the endpoint URL and key) does not: see
`TeacherConfig.NOT_VERSIONED` and `tasks.distill.stage.distill_version`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tasks.llm.config import EndpointConfig
from tasks.stage import ConfigError


@dataclass(frozen=True)
class TeacherConfig(EndpointConfig):
    """How the distill stage talks to one teacher model: the endpoint (`EndpointConfig`), the model and sampling."""

    model: str = field(
        default="claude-3-7-sonnet-20250219", metadata={"help": "Model name sent with every request (RM-R1.md §5)."}
    )
    temperature: float | None = field(
        default=None, metadata={"help": "Sampling temperature; None = provider default (RM-R1.md §5)."}
    )
    top_p: float | None = field(default=None, metadata={"help": "Nucleus sampling; None = provider default."})
    max_tokens: int = field(default=8192, metadata={"help": "Completion token limit per request (RM-R1.md §5: 8192)."})

    NOT_VERSIONED = (
        "base_url", "api_key_env", "api_key_secret_block", "max_in_flight", "requests_per_minute",
        "tokens_per_minute", "max_retries", "backoff_initial_s", "backoff_max_s", "timeout_s",
        "price_input_per_mtok", "price_output_per_mtok",
    )  # fmt: skip

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.max_tokens < 1:
            raise ConfigError("max_tokens", f"must be at least 1, got {self.max_tokens}")


@dataclass(frozen=True)
class DistillConfig:
    """The distill stage's recipe section: teachers, prompt template, sharding, budget and cache."""

    teacher: TeacherConfig = field(default_factory=TeacherConfig, metadata={"help": "Pass-1 teacher (RM-R1.md §5)."})
    second_teacher: TeacherConfig | None = field(
        default=None,
        metadata={
            "help": "Pass-2 teacher for the pairs pass 1 got wrong, given the correct verdict (RM-R1.md §5: o3)."
        },
    )
    template: str = field(
        default="cor-instruct-v1", metadata={"help": "Judge template set: a built-in name or a folder of your own."}
    )
    shard_rows: int = field(default=2000, metadata={"help": "Requests per shard (one Prefect task per shard)."})
    budget_usd: float | None = field(
        default=None,
        metadata={"help": "Stop sending new requests once this much was spent in this run; None = no cap."},
    )
    attempt: int = field(
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
    batch_poll_s: float = field(default=30.0, metadata={"help": "Seconds between batch status checks."})

    def __post_init__(self) -> None:
        if self.shard_rows < 1:
            raise ConfigError("shard_rows", f"must be at least 1, got {self.shard_rows}")
        if self.budget_usd is not None and self.budget_usd <= 0:
            raise ConfigError("budget_usd", f"must be positive, got {self.budget_usd}")

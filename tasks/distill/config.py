"""Recipe sections for the distill stage: the teacher endpoint, its limits and prices, and the two passes.

Only fields that change the traces take part in the artifact version (model, sampling, max_tokens, the
template, the pass-2 teacher, `attempt`); how fast or how cheaply they are fetched (concurrency, rate
limits, retries, timeouts, prices, budget, sharding, batch mode, the endpoint URL and key) does not: see
`TeacherConfig.NOT_VERSIONED` and `tasks.distill.stage.distill_version`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tasks.config import ConfigError


@dataclass(frozen=True)
class TeacherConfig:
    """How the distill stage talks to one teacher model."""

    base_url: str | None = field(
        default=None,
        metadata={"help": "OpenAI-compatible endpoint, e.g. https://api.openai.com/v1; None starts the stand-in."},
    )
    model: str = field(
        default="claude-3-7-sonnet-20250219",
        metadata={"help": "Model name sent with every request (docs/method.md §5)."},
    )
    api_key_env: str = field(default="OPENAI_API_KEY", metadata={"help": "Environment variable holding the API key."})
    api_key_secret_block: str | None = field(
        default=None, metadata={"help": "Name of a Prefect Secret block holding the key (wins over api_key_env)."}
    )
    temperature: float | None = field(
        default=None, metadata={"help": "Sampling temperature; None = provider default (docs/method.md §5)."}
    )
    top_p: float | None = field(default=None, metadata={"help": "Nucleus sampling; None = provider default."})
    max_tokens: int = field(
        default=8192, metadata={"help": "Completion token limit per request (docs/method.md §5: 8192)."}
    )
    max_in_flight: int = field(default=64, metadata={"help": "Requests in flight at once."})
    requests_per_minute: float | None = field(
        default=None, metadata={"help": "Client-side request rate limit; None = unlimited."}
    )
    tokens_per_minute: float | None = field(
        default=None,
        metadata={"help": "Client-side limit on prompt + max completion tokens per minute; None = unlimited."},
    )
    max_retries: int = field(default=6, metadata={"help": "Retries after a 429, 5xx, timeout or connection error."})
    backoff_initial_s: float = field(
        default=1.0, metadata={"help": "First back-off; doubles each retry, with full jitter."}
    )
    backoff_max_s: float = field(default=60.0, metadata={"help": "Longest back-off (a longer Retry-After still wins)."})
    timeout_s: float = field(default=600.0, metadata={"help": "Per-request timeout in seconds."})
    price_input_per_mtok: float = field(
        default=0.0, metadata={"help": "USD per million prompt tokens (cost accounting)."}
    )
    price_output_per_mtok: float = field(default=0.0, metadata={"help": "USD per million completion tokens."})

    NOT_VERSIONED = (
        "base_url", "api_key_env", "api_key_secret_block", "max_in_flight", "requests_per_minute",
        "tokens_per_minute", "max_retries", "backoff_initial_s", "backoff_max_s", "timeout_s",
        "price_input_per_mtok", "price_output_per_mtok",
    )  # fmt: skip

    def __post_init__(self) -> None:
        if self.max_in_flight < 1:
            raise ConfigError("max_in_flight", f"must be at least 1, got {self.max_in_flight}")
        if self.max_tokens < 1:
            raise ConfigError("max_tokens", f"must be at least 1, got {self.max_tokens}")
        for name in ("requests_per_minute", "tokens_per_minute"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ConfigError(name, f"must be positive, got {value}")


@dataclass(frozen=True)
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

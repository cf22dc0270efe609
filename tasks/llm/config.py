"""How to reach one OpenAI-compatible endpoint: its URL and key, concurrency, rate limits, retries and prices.

None of these fields changes what an endpoint answers, only how fast, how reliably or at what price the
answers are fetched, so each is marked `"versioned": False`: no stage versions them. What is asked (model,
sampling, token limits) belongs to the stage's own section: `TeacherConfig` extends this class with it.
"""

from __future__ import annotations

from dataclasses import field

from tasks.config import ConfigError, Float, Int, config_section


@config_section
class EndpointConfig:
    """Connection, concurrency, retries and prices of one OpenAI-compatible endpoint."""

    base_url: str | None = field(
        default=None,
        metadata={
            "versioned": False,
            "help": "OpenAI-compatible endpoint, e.g. https://api.openai.com/v1; None starts the stand-in.",
        },
    )
    api_key_env: str = field(
        default="OPENAI_API_KEY", metadata={"versioned": False, "help": "Environment variable holding the API key."}
    )
    api_key_secret_block: str | None = field(
        default=None,
        metadata={
            "versioned": False,
            "help": "Name of a Prefect Secret block holding the key (wins over api_key_env).",
        },
    )
    max_in_flight: Int = field(default=64, metadata={"versioned": False, "help": "Requests in flight at once."})
    requests_per_minute: Float | None = field(
        default=None, metadata={"versioned": False, "help": "Client-side request rate limit; None = unlimited."}
    )
    tokens_per_minute: Float | None = field(
        default=None,
        metadata={
            "versioned": False,
            "help": "Client-side limit on prompt + max completion tokens per minute; None = unlimited.",
        },
    )
    max_retries: Int = field(
        default=6, metadata={"versioned": False, "help": "Retries after a 429, 5xx, timeout or connection error."}
    )
    backoff_initial_s: Float = field(
        default=1.0, metadata={"versioned": False, "help": "First back-off; doubles each retry, with full jitter."}
    )
    backoff_max_s: Float = field(
        default=60.0, metadata={"versioned": False, "help": "Longest back-off (a longer Retry-After still wins)."}
    )
    timeout_s: Float = field(default=600.0, metadata={"versioned": False, "help": "Per-request timeout in seconds."})
    price_input_per_mtok: Float = field(
        default=0.0, metadata={"versioned": False, "help": "USD per million prompt tokens (cost accounting)."}
    )
    price_output_per_mtok: Float = field(
        default=0.0, metadata={"versioned": False, "help": "USD per million completion tokens."}
    )

    def __post_init__(self) -> None:
        if self.max_in_flight < 1:
            raise ConfigError("max_in_flight", f"must be at least 1, got {self.max_in_flight}")
        for name in ("requests_per_minute", "tokens_per_minute"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ConfigError(name, f"must be positive, got {value}")

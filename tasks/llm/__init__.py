"""The OpenAI-compatible endpoint client, shared by every stage that sends chat completions to a served model.

`config` holds `EndpointConfig` (where the endpoint is, its key, concurrency, rate limits, retries, timeout
and prices), `client` sends requests with bounded concurrency, rate limiting, retries with back-off and
cost accounting, `cache` is the durable SQLite request cache, and `batch` the OpenAI Batch API path. The
distill stage asks teachers through it and the evaluate stage's `openai` backend asks judges.

It knows nothing of stages, recipes, templates or verdicts: it must never decide what to ask or how to
read an answer, never cache a failure, and never let an API key reach an outcome, a log line, an
exception message or the statistics.
"""

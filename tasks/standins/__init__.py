"""Stand-ins and generators for runs with no real model or data at hand: test doubles, not stages.

`teacher` is a loopback OpenAI-compatible server with a heuristic judge (the longer answer wins) and
fault switches, used by the distill stage when no teacher `base_url` is set, by the smoke recipe and by
the tests (`python -m tasks.standins.teacher --port 8000` serves one on its own). `synthetic_pairs`
generates seeded preference pairs (the `synthetic` pull source) and `synthetic_benchmarks` small seeded
benchmark files in the official layouts (`path: synthetic` in an evaluate section).

Nothing here is a model or real data: a stand-in must always say so where it is used (its model name, a
log line), and its numbers mean nothing. No stage's logic may live here.
"""

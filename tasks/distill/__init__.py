"""The distill stage: Chain-of-Rubrics traces from a teacher over any OpenAI-compatible API."""

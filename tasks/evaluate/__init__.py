"""The evaluate stage: registered benchmarks and a team's own pairwise sets, judged by any backend and scored by
their official rules.

`benchmarks` holds one module per benchmark (loader, official scorer, report section, published numbers)
and the registry, `judges` the backends (vllm, hf, openai, and the length baseline), `scoring` the votes
over samples, the dispatch to each benchmark's rule and the position rows, `report` the markdown beside
published numbers, and `stage` ties them into the resumable, versioned stage.
"""

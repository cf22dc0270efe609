"""The evaluate stage: RewardBench, RM-Bench and RMB judged by any backend and scored by the official rules.

`benchmarks` reads the official files into comparisons, `judges` holds the backends (vllm, hf, openai, and
the length baseline), `scoring` the official rules, `report` the markdown beside the paper's numbers, and
`stage` ties them into the resumable, versioned stage.
"""

"""The training stages: SFT on kept traces and GRPO with the ±1 verdict reward, on TRL, resumable, multi-process."""

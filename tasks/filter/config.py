"""The filter stage's recipe section."""

from __future__ import annotations

from dataclasses import field
from typing import Literal

from tasks.config import config_section


@config_section
class FilterConfig:
    """Which teacher traces become SFT examples."""

    strictness: Literal["verdict", "format"] = field(
        default="format",
        metadata={
            "help": "verdict: keep a trace when its verdict matches the label (docs/method.md §3, last 100 chars); "
            "format: also require the CoR layout (type; rubric+justify or solution; eval; answer). Use verdict "
            "for the ablation templates and the reasoning family, whose traces have another layout."
        },
    )

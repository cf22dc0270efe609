"""Rankings in the Prefect UI: a best-of-K report (`rmr1 judge --best-of-k ... --ui`) as a table and its curve.

A thin layer over `tasks.evaluate.best_of_k`: the report is computed and written by `best_of_k_file`; this flow
only shows it. Its run holds the artifacts, created under a key, so they also appear on the UI's Artifacts page
and each new report of the same name becomes the key's next version.
"""

from __future__ import annotations

import base64
import re
from typing import Any

from prefect import flow
from prefect.artifacts import create_markdown_artifact, create_table_artifact


def artifact_key(name: str) -> str:
    """`best-of-k-<name>` in the characters Prefect allows in a key (lowercase letters, digits, dashes)."""
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "report"
    return f"best-of-k-{slug}"[:100]


@flow(name="rm-r1 best-of-k report", description="A best-of-K report and its curve, shown in the UI.")
def show_best_of_k(report: dict[str, Any], curve_png: str, name: str) -> str:
    """The (K, method) rows as a table artifact, and the curve with the pairwise accuracy as markdown (the PNG
    inlined, so the UI needs no access to the file); returns the key."""
    key = artifact_key(name)
    pairs = report["pairwise"]
    table = [{"K": r["k"], "method": r["method"], "prompts": r["prompts"], "judge": round(r["pick_accuracy"], 4),
              "random": round(r["random"], 4), "oracle": round(r["oracle"], 4), "comparisons asked": r["comparisons"],
              "calls sent": r["sent"], "tokens": r["tokens"]} for r in report["best_of_k"]]  # fmt: skip
    create_table_artifact(key=key, table=table, description=f"best-of-K of {report['judge']} on {report['file']}")
    with open(curve_png, "rb") as handle:
        encoded = base64.b64encode(handle.read()).decode()
    create_markdown_artifact(
        key=f"{key}-curve",
        markdown=f"### Best-of-K: {report['judge']} on `{report['file']}`\n\n"
        f"![pick accuracy against K](data:image/png;base64,{encoded})\n\n"
        f"Pairwise (correct vs incorrect): **{pairs['accuracy']:.3f}** on {pairs['pairs']} pairs "
        f"({pairs['sent']} calls sent, {pairs['tokens']} tokens). Draw seed {report['seed']}.\n",
        description="pick accuracy against K: the judge (knockout, round robin) beside a random pick and an oracle",
    )
    return key

"""Prefect flows that look after the artifact root rather than run a stage: retention, so it can be scheduled.

A thin layer over `data_contracts.retention` (what `rmr1 artifacts gc` runs): the flow logs each removal and
leaves the same report as a markdown artifact in the UI.
"""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from data_contracts import ArtifactStore
from data_contracts.retention import LITTER_AGE, collect_garbage, litter_report, parse_age, report, sweep_litter


@flow(name="rm-r1 artifacts gc", description="Remove all but the newest versions of each kind and their lineage.")
def artifacts_gc_flow(
    keep: int,
    kind: str | None = None,
    older_than: str | None = None,
    dry_run: bool = False,
    artifacts: str | None = None,
    litter_age: str | None = None,
) -> dict[str, int]:
    """Keep the newest `keep` versions of each kind (or of `kind` alone), what is younger than `older_than`
    (7d, 12h) and everything those were built from; remove the rest, and what killed writers left once older
    than `litter_age` (default 24h) (nothing when `dry_run`)."""
    store = ArtifactStore(artifacts)
    plan, removals = collect_garbage(store, keep, kind=kind, older_than=older_than, dry_run=dry_run)
    litter = sweep_litter(store, parse_age(litter_age) if litter_age else LITTER_AGE, kind=kind, dry_run=dry_run)
    text = report(removals, len(plan.keep), dry_run=dry_run) + "\n" + litter_report(litter, dry_run=dry_run)
    for line in text.splitlines():
        get_run_logger().info("%s", line)
    create_markdown_artifact(
        key="artifacts-gc",
        markdown=f"### Artifacts gc under `{store.uri(store.root)}`\n\n```\n{text}\n```\n",
        description="what retention removed (or would remove) and the bytes freed",
    )
    freed = sum(r.bytes for r in removals) + sum(item.bytes for item in litter)
    return {"removed": len(removals), "kept": len(plan.keep), "litter": len(litter), "bytes_freed": freed}

"""The release in the Prefect UI (`rmr1 release ... --ui`): a flow run holding the model card and the tags.

A thin layer over `tasks.release`: the folder is written there; this flow runs it and leaves the card (markdown,
as the Hub will render it) and the names pointing at the checkpoint as an artifact keyed
`release-<kind>-<version>`.
"""

from __future__ import annotations

from prefect import flow
from prefect.artifacts import create_markdown_artifact

from data_contracts import ArtifactStore
from data_contracts.tags import tagged
from tasks.release import CARD, release


@flow(name="rm-r1 release", description="A checkpoint released as a Hugging Face folder with its model card.")
def release_flow(target: str, to: str, name: str | None = None, artifacts: str | None = None) -> str:
    store = ArtifactStore(artifacts)
    ref, folder = release(store, target, to, name)
    names = tagged(store).get((ref.kind, ref.version), "none")
    with open(f"{folder}/{CARD}", encoding="utf-8") as handle:
        card = handle.read()
    body = card.split("\n---\n", 1)[1] if card.startswith("---\n") else card  # the text, without the metadata
    create_markdown_artifact(
        key=f"release-{ref.kind.replace('_', '-')}-{ref.version}",
        markdown=f"### Release of `{ref}` (tags: {names})\n\nFolder: `{folder}`\n\n{body}",
        description=f"the model card of {ref}",
    )
    return folder

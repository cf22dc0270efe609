"""Reading back what one flow run left on a Prefect server: the session's server is shared by every test (and
xdist worker), so a test reads its own run's artifacts, never "the newest" of a key."""

from __future__ import annotations

import asyncio
from typing import Any

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey
from prefect.states import State


def artifact_of(state: State, key: str) -> Any:
    """The artifact `key` of the flow run that ended in `state` (exactly one), on the configured Prefect API."""

    async def read() -> list[Any]:
        mine = ArtifactFilter(key=ArtifactFilterKey(any_=[key]),
                              flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id]))  # fmt: skip
        async with get_client() as client:
            return await client.read_artifacts(artifact_filter=mine)

    found = asyncio.run(read())
    assert len(found) == 1, f"{len(found)} artifacts {key!r} in flow run {state.state_details.flow_run_id}"
    return found[0]

"""What `flows/prefect_internals.py` relies on in Prefect's private API still exists and behaves so."""

from __future__ import annotations

import inspect

from flows.prefect_internals import finish_prefect


def test_the_private_prefect_names_the_cli_uses_still_exist() -> None:
    from prefect._internal.concurrency.services import QueueService
    from prefect.server.api.server import SubprocessASGIServer

    assert "timeout" in inspect.signature(QueueService.drain_all).parameters
    assert isinstance(SubprocessASGIServer._instances, dict)
    assert callable(SubprocessASGIServer.stop)


def test_finishing_prefect_with_nothing_started_is_harmless() -> None:
    finish_prefect()
    finish_prefect()

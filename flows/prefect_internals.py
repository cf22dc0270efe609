"""The private Prefect internals the project relies on, in one place (tests/test_prefect_internals.py checks them).

Only `finish_prefect` is here: at the end of a CLI run it flushes Prefect's queued logs and events and stops
the temporary server of ephemeral mode, so the last lines a user reads are the run's outcome, not the
server's shutdown noise. It uses `QueueService.drain_all` and `SubprocessASGIServer._instances`, which have
no public equivalent in Prefect 3.8; if a Prefect upgrade removes them, the test fails first.
"""

from __future__ import annotations


def finish_prefect() -> None:
    """Flush Prefect's queued logs and events, then stop the temporary server (ephemeral mode) now."""
    from prefect._internal.concurrency.services import QueueService
    from prefect.server.api.server import SubprocessASGIServer

    QueueService.drain_all(timeout=30)
    for server in list(SubprocessASGIServer._instances.values()):
        server.stop()

"""The Prefect internals the project relies on, in one place (tests/test_prefect_internals.py checks them).

`finish_prefect`: at the end of a CLI run it flushes Prefect's queued logs and events and stops the temporary
server of ephemeral mode, so the last lines a user reads are the run's outcome, not the server's shutdown
noise. It uses `QueueService.drain_all` and `SubprocessASGIServer._instances`, which have no public
equivalent in Prefect 3.8.

`user_error_tracebacks_off_the_terminal`: while the CLI runs a flow, the terminal does not show the
tracebacks Prefect logs for a `UserError` (the CLI ends with its one-line message instead); the Prefect
logs (the UI) keep them. It relies on how Prefect 3.8 logs and where those logs go, none of it documented:

- the run engines log a failing run's exception with its traceback (`exc_info`) on `prefect.task_runs`
  ("Task run failed with exception: ...", task_engine.py) and `prefect.flow_runs` ("Encountered exception
  during execution: ...", flow_engine.py), once for every task and flow run the exception passes through;
  each run also logs "Finished in state Failed('... SomeError: message')", one line, no traceback;
- those two loggers carry the API handler (`APILogHandler`, which sends to the Prefect UI) themselves and
  reach the terminal only by propagating to the root logger's handlers (logging.yml);
- `prefect.logging.configuration.setup_logging`, run when Prefect is imported, keeps a root handler the
  application installed before (the CLI's `logging.basicConfig`) and does not add its own console handler.

If a Prefect upgrade changes any of these, a test in tests/test_prefect_internals.py fails first.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from data_contracts.errors import UserError


def finish_prefect() -> None:
    """Flush Prefect's queued logs and events, then stop the temporary server (ephemeral mode) now.

    A temporary server exists only if Prefect imported its server module to start one: with PREFECT_API_URL set
    that module (the whole server: its API, its database models) is never imported, which saves ~3 s per run."""
    from prefect._internal.concurrency.services import QueueService

    QueueService.drain_all(timeout=30)
    server_module = sys.modules.get("prefect.server.api.server")
    if server_module is not None:
        for server in list(server_module.SubprocessASGIServer._instances.values()):
            server.stop()


class UserErrorTracebackFilter(logging.Filter):
    """For a terminal handler: drop a record that carries a `UserError` traceback (`exc_info`), keep the rest.

    Those records are the engines' "... exception ...: UserError(...)" + traceback; the CLI prints the message
    itself, and the runs' "Finished in state Failed(...)" lines still say which runs failed. A bug's records
    (any other exception) pass untouched. Dropping, not rewriting: the record object is shared with the API
    handler, which must keep the traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return not isinstance(error, UserError)


def _on_the_terminal(handler: logging.Handler) -> bool:
    return isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler)


@contextmanager
def user_error_tracebacks_off_the_terminal() -> Iterator[None]:
    """While open, the root logger's terminal handlers (stream handlers, not files: the CLI's `basicConfig`
    handler, or Prefect's console handler if Prefect configured the root first) drop `UserError` tracebacks.
    Imports no Prefect; Prefect's own handlers (the API handler on its run loggers) are left alone."""
    quiet = UserErrorTracebackFilter()
    handlers = [handler for handler in logging.getLogger().handlers if _on_the_terminal(handler)]
    for handler in handlers:
        handler.addFilter(quiet)
    try:
        yield
    finally:
        for handler in handlers:
            handler.removeFilter(quiet)

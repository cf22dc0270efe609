"""What `flows/prefect_internals.py` relies on in Prefect's private API and behaviour still exists and behaves so."""

from __future__ import annotations

import inspect
import io
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest
from prefect import flow, task

from data_contracts.errors import UserError
from flows.prefect_internals import UserErrorTracebackFilter, finish_prefect, user_error_tracebacks_off_the_terminal


def test_the_private_prefect_names_the_cli_uses_still_exist() -> None:
    from prefect._internal.concurrency.services import QueueService
    from prefect.server.api.server import SubprocessASGIServer

    assert "timeout" in inspect.signature(QueueService.drain_all).parameters
    assert isinstance(SubprocessASGIServer._instances, dict)
    assert callable(SubprocessASGIServer.stop)


def test_finishing_prefect_with_nothing_started_is_harmless() -> None:
    finish_prefect()
    finish_prefect()


# ------------------------------------------------- what `user_error_tracebacks_off_the_terminal` relies on


def test_prefect_keeps_the_root_handler_the_cli_installs_and_logs_runs_to_the_api_on_their_own_loggers() -> None:
    """In a fresh process, as in `rmr1`: the CLI's `basicConfig` handler is still the terminal after Prefect is
    imported (so the filter the CLI puts on it sees Prefect's run records), and the run loggers keep their API
    handler to themselves (so the Prefect UI keeps what the terminal drops)."""
    probe = """
import json, logging
logging.basicConfig(level=logging.INFO)
before = logging.getLogger().handlers[:]
import flows.stages  # imports Prefect, which configures its logging, as `rmr1 run` does
from prefect.logging.configuration import PROCESS_LOGGING_CONFIG
from prefect.logging.handlers import APILogHandler
run_loggers = {name: logging.getLogger(name) for name in ("prefect.flow_runs", "prefect.task_runs")}
print(json.dumps({
    "prefect_configured": bool(PROCESS_LOGGING_CONFIG),
    "root_unchanged": logging.getLogger().handlers == before,
    "root_has_api_handler": any(isinstance(h, APILogHandler) for h in logging.getLogger().handlers),
    "run_loggers": {name: {"propagate": logger.propagate,
                           "handlers": [type(h).__name__ for h in logger.handlers],
                           "streams": [type(h).__name__ for h in logger.handlers
                                       if isinstance(h, logging.StreamHandler)]}
                    for name, logger in run_loggers.items()},
}))
"""
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert seen["prefect_configured"] and seen["root_unchanged"] and not seen["root_has_api_handler"]
    for name, logger in seen["run_loggers"].items():
        assert logger["propagate"], name
        assert "APILogHandler" in logger["handlers"] and logger["streams"] == [], name


class Refused(UserError):
    """A user error, as a stage would raise it."""


@task
def _fail(kind: str) -> None:
    raise Refused("bad.jsonl: refused") if kind == "user" else RuntimeError("a bug")


@flow
def _inner_flow(kind: str) -> None:
    _fail(kind)


@flow
def _outer_flow(kind: str) -> None:
    _inner_flow(kind)


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def root_records(prefect_server: dict[str, str]) -> Iterator[list[logging.LogRecord]]:
    """What reaches the root logger's handlers (the terminal, in `rmr1`) while a flow runs on the test server."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    keep = _Records()
    logging.getLogger().addHandler(keep)
    try:
        with temporary_settings({PREFECT_API_URL: prefect_server["PREFECT_API_URL"]}):
            yield keep.records
    finally:
        logging.getLogger().removeHandler(keep)


def test_a_user_error_leaves_a_flow_as_itself_and_only_its_traceback_records_are_filtered(
    root_records: list[logging.LogRecord],
) -> None:
    with pytest.raises(Refused) as raised:
        _outer_flow("user")  # task -> subflow -> flow: re-raised as the same exception, never wrapped

    with_traceback = [r for r in root_records if r.exc_info]
    assert sorted(r.name for r in with_traceback) == ["prefect.flow_runs", "prefect.flow_runs", "prefect.task_runs"]
    assert all(r.exc_info and r.exc_info[1] is raised.value for r in with_traceback)
    quiet = UserErrorTracebackFilter()
    kept = [r for r in root_records if quiet.filter(r)]
    assert kept == [r for r in root_records if not r.exc_info]
    finished = [r.getMessage() for r in kept if r.getMessage().startswith("Finished in state Failed")]
    assert len(finished) == 3 and all("Refused: bad.jsonl: refused" in m for m in finished)


def test_a_bug_keeps_its_traceback_records(root_records: list[logging.LogRecord]) -> None:
    with pytest.raises(RuntimeError, match="a bug"):
        _outer_flow("bug")
    with_traceback = [r for r in root_records if r.exc_info]
    assert len(with_traceback) == 3
    assert all(UserErrorTracebackFilter().filter(r) for r in with_traceback)


def test_the_filter_is_on_the_terminal_handlers_only_while_open() -> None:
    root = logging.getLogger()
    terminal, log_file = logging.StreamHandler(io.StringIO()), logging.FileHandler(os.devnull)
    for handler in (terminal, log_file):
        root.addHandler(handler)
    try:
        with user_error_tracebacks_off_the_terminal():
            assert [type(f) for f in terminal.filters] == [UserErrorTracebackFilter] and log_file.filters == []
        assert terminal.filters == []
    finally:
        for handler in (terminal, log_file):
            root.removeHandler(handler)
        log_file.close()

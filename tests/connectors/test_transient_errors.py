"""`is_transient`: which failures the executor retries, per driver, without a database."""

from __future__ import annotations

import httpx
import psycopg
import pymysql
import pytest

from apps.connectors.base import ConnectorError
from apps.connectors.services import is_transient


def _wrapped(driver_error: BaseException, *, from_none: bool) -> ConnectorError:
    """A ConnectorError raised while handling a driver error, as plugins do."""
    try:
        try:
            raise driver_error
        except BaseException as exc:
            if from_none:
                raise ConnectorError("source: the server went away") from None
            raise ConnectorError("source: the server went away") from exc
    except ConnectorError as wrapped:
        return wrapped
    raise AssertionError("unreachable")


@pytest.mark.parametrize(
    "error",
    [
        psycopg.OperationalError("connection refused"),
        pymysql.err.OperationalError(2003, "Can't connect"),
        httpx.ConnectError("connection refused"),
        httpx.ReadTimeout("timed out"),
        ConnectionResetError("reset"),
        TimeoutError("timed out"),
    ],
    ids=["psycopg", "pymysql", "httpx-connect", "httpx-timeout", "connection-reset", "timeout"],
)
def test_driver_connection_errors_are_transient(error: BaseException) -> None:
    assert is_transient(error)
    assert is_transient(_wrapped(error, from_none=False))
    assert is_transient(_wrapped(error, from_none=True))


@pytest.mark.parametrize(
    "error",
    [
        psycopg.errors.UndefinedTable("relation does not exist"),
        psycopg.ProgrammingError("syntax error"),
        pymysql.err.ProgrammingError(1064, "syntax"),
        pymysql.err.IntegrityError(1062, "duplicate"),
        httpx.HTTPStatusError("404", request=httpx.Request("GET", "http://x"), response=httpx.Response(404)),
        ValueError("bad value"),
        KeyError("column"),
    ],
    ids=[
        "psycopg-undefined",
        "psycopg-programming",
        "pymysql-programming",
        "pymysql-integrity",
        "httpx-404",
        "value",
        "key",
    ],
)
def test_other_errors_are_not_transient(error: BaseException) -> None:
    assert not is_transient(error)
    assert not is_transient(_wrapped(error, from_none=True))


def test_connector_error_says_whether_it_is_transient() -> None:
    assert is_transient(ConnectorError("rate limited", transient=True))
    assert not is_transient(ConnectorError("table: no such table"))
    assert ConnectorError("x").transient is False


def test_a_transient_connector_error_deep_in_the_chain() -> None:
    try:
        try:
            raise ConnectorError("timeout", transient=True)
        except ConnectorError:
            raise RuntimeError("step failed") from None
    except RuntimeError as exc:
        assert is_transient(exc)

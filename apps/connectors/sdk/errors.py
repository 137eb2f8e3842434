"""Whether a failure is worth retrying: the one place that knows the database and HTTP drivers' exceptions.

The executor asks `is_transient(exc)` (through `apps.connectors.services`) and never imports a driver."""

from __future__ import annotations

import functools

from apps.connectors.base import ConnectorError

# How far down an exception's chain (__cause__ / __context__) to look for the driver's error.
CHAIN_DEPTH = 6


@functools.cache
def transient_types() -> tuple[type[BaseException], ...]:
    """The exception types that mean "a lost or refused connection, a timeout": retrying may help.
    Drivers that are not installed are left out."""
    found: list[type[BaseException]] = [ConnectionError, TimeoutError]
    try:
        import psycopg

        found.append(psycopg.OperationalError)
    except ImportError:  # pragma: no cover - psycopg is a core dependency
        pass
    try:
        import httpx

        found.append(httpx.TransportError)
    except ImportError:  # pragma: no cover
        pass
    try:
        import pymysql

        found.append(pymysql.err.OperationalError)
    except ImportError:  # pragma: no cover
        pass
    return tuple(found)


def is_transient(exc: BaseException) -> bool:
    """Whether retrying may help. True for a ConnectorError raised with `transient=True`, and for a driver's
    connection or timeout error anywhere in the first links of the chain: connectors wrap driver errors in
    ConnectorError for a clean message (`raise … from None` still keeps the original as `__context__`)."""
    kinds = transient_types()
    seen: BaseException | None = exc
    for _ in range(CHAIN_DEPTH):
        if seen is None:
            return False
        if (isinstance(seen, ConnectorError) and seen.transient) or isinstance(seen, kinds):
            return True
        seen = seen.__cause__ or seen.__context__
    return False

"""What a connector type is: a class with a slug, a kind, a pydantic config model and the methods
`check`, `discover`, `read` (sources) and `write` (destinations).

Secrets: a config field declared with `secret_field()` is a pydantic `SecretStr` (its repr is masked, so
it cannot leak through a log line or a traceback by accident) and is marked `"writeOnly": true,
"secret": true` in the JSON Schema the API serves. The Connector model stores those fields encrypted and
apart from the rest of the config; the API never returns them.
"""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, SecretStr
from pydantic import Field as PydanticField
from pydantic import ValidationError as PydanticValidationError

from aggregator.dataplane import Batch, FieldType, ReadItem, StreamSchema, WriteMode, WriteResult
from aggregator.logging import get_logger
from aggregator.validation import pydantic_errors

logger = get_logger(__name__)

DEFAULT_CHECK_TIMEOUT_S = 10.0


class ConnectorKind(StrEnum):
    SOURCE = "source"
    DESTINATION = "destination"
    BOTH = "both"


class ConnectorConfig(BaseModel):
    """Base of every config model: unknown keys are errors (a typo must not be silently ignored)."""

    # No whitespace stripping: a tab delimiter or a password with spaces is meaningful.
    model_config = ConfigDict(extra="forbid")


def secret_field(**kwargs: Any) -> Any:
    """A config field holding a secret: declare it as `password: SecretStr | None = secret_field(...)`."""
    extra = dict(kwargs.pop("json_schema_extra", None) or {})
    extra.update({"secret": True, "writeOnly": True})
    return PydanticField(json_schema_extra=extra, **kwargs)


class ConnectorError(Exception):
    """A connector operation failed for a reason the user can act on. The message names the field or stream
    at fault and never contains a secret.

    `transient=True` says that trying again may succeed (a lost or refused connection, a timeout, a rate
    limit): a run failing with it is retried up to its pipeline's attempts. A connector that wraps a driver
    error (`raise ConnectorError(...) from exc`) need not set it: `apps.connectors.sdk.errors.is_transient`
    also recognises the drivers' own transient errors in the exception's chain."""

    def __init__(self, message: str, *, field: str | None = None, transient: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.transient = transient


class ConfigInvalid(ConnectorError):
    """The config does not validate; `errors` maps each dotted field path to its messages."""

    def __init__(self, errors: dict[str, list[str]]) -> None:
        first_field, messages = next(iter(errors.items()))
        super().__init__(f"{first_field}: {messages[0]}", field=first_field)
        self.errors = errors


@dataclass(frozen=True, slots=True)
class CheckResult:
    ok: bool
    message: str
    duration_s: float = 0.0


@dataclass(frozen=True, slots=True)
class TableColumn:
    """One column of an existing destination table, as the platform types it.

    `required` is what a mapping must fill: NOT NULL and nothing the database supplies by itself (a default,
    an identity or auto-increment, a generated value)."""

    name: str
    type: FieldType
    nullable: bool
    has_default: bool = False
    primary_key: bool = False
    db_type: str = ""

    @property
    def required(self) -> bool:
        return not self.nullable and not self.has_default

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": str(self.type),
            "nullable": self.nullable,
            "required": self.required,
            "has_default": self.has_default,
            "primary_key": self.primary_key,
            "db_type": self.db_type,
        }


@dataclass(frozen=True, slots=True)
class TableDescription:
    """An existing table of a destination: its columns in their order and its primary key."""

    schema: str
    name: str
    columns: tuple[TableColumn, ...]
    primary_key: tuple[str, ...] = ()  # in the key's order, which may differ from the columns'

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": self.schema,
            "name": self.name,
            "columns": [c.to_dict() for c in self.columns],
            "primary_key": list(self.primary_key),
        }


class ConnectorType:
    """Subclass this in `apps/connectors/plugins/<slug>.py` (or in a package exposing it in the
    `aggregator.connectors` entry-point group) and fill in the class attributes."""

    slug: ClassVar[str]
    title: ClassVar[str]
    kind: ClassVar[ConnectorKind]
    description: ClassVar[str] = ""
    config_model: ClassVar[type[ConnectorConfig]]
    check_timeout_s: ClassVar[float] = DEFAULT_CHECK_TIMEOUT_S

    # --- config --------------------------------------------------------------------------------------

    @classmethod
    def json_schema(cls) -> dict[str, Any]:
        return cls.config_model.model_json_schema()

    @classmethod
    def secret_fields(cls) -> list[str]:
        names = []
        for name, info in cls.config_model.model_fields.items():
            extra = info.json_schema_extra
            if isinstance(extra, dict) and extra.get("secret"):
                names.append(name)
        return names

    @classmethod
    def validate_config(cls, raw: dict[str, Any]) -> ConnectorConfig:
        try:
            return cls.config_model.model_validate(raw)
        except PydanticValidationError as exc:
            raise ConfigInvalid(pydantic_errors(exc)) from None

    @classmethod
    def available(cls) -> bool:
        """Whether connectors of this type can be made here. A type that needs something of the platform's
        own (the Local warehouse needs its server) says no when that is not configured."""
        return True

    def bind(self, config: Any, *, workspace_id: int) -> Any:
        """The config the operations below receive, for a connector of `workspace_id`. Most types use their
        config as it is; a type whose resources the platform provisions per workspace resolves them here,
        so a workspace can only ever name its own. Pure: no I/O."""
        return config

    def check_config(self, config: Any, *, workspace_id: int) -> None:
        """Checks of a validated config for a connector of `workspace_id` that need no connection (a file
        path must stay inside the workspace's files), run when a connector is created or updated so the
        person saving it learns at once. Raises ConnectorError naming the field; the operations repeat the
        check, since what a path leads to can change after it is saved."""

    @classmethod
    def is_source(cls) -> bool:
        return cls.kind in (ConnectorKind.SOURCE, ConnectorKind.BOTH)

    @classmethod
    def is_destination(cls) -> bool:
        return cls.kind in (ConnectorKind.DESTINATION, ConnectorKind.BOTH)

    # --- operations ----------------------------------------------------------------------------------

    def check(self, config: Any) -> CheckResult:
        """Whether the configured system can be reached and used. Must honour `check_timeout_s` itself
        where it can (connect timeouts); `run_check` enforces it from outside as well."""
        raise NotImplementedError

    def discover(self, config: Any) -> list[StreamSchema]:
        raise ConnectorError(f"{self.slug} is not a source.")

    def read(self, config: Any, stream: StreamSchema, state: dict[str, Any] | None) -> Iterator[ReadItem]:
        raise ConnectorError(f"{self.slug} is not a source.")

    def write(
        self,
        config: Any,
        stream_schema: StreamSchema,
        batches: Iterable[Batch],
        write_mode: WriteMode,
        primary_key: list[str] | None,
        run_id: str,
        *,
        table: str | None = None,
    ) -> WriteResult:
        raise ConnectorError(f"{self.slug} is not a destination.")

    # Destinations that can describe their existing tables (for mapping fields onto them) set this and
    # implement `list_tables` and `describe_table`.
    describes_tables: ClassVar[bool] = False

    def list_tables(self, config: Any) -> list[str]:
        """The names of the tables in the configured schema (or database), sorted."""
        raise ConnectorError(f"{self.slug} has no tables to list.", field="connector")

    def describe_table(self, config: Any, table: str) -> TableDescription | None:
        """One table of the configured schema, or None when it does not exist (yet). The name is looked up
        with bind parameters, never spliced into SQL; an invalid name is a ConnectorError on `table`."""
        raise ConnectorError(f"{self.slug} has no tables to describe.", field="connector")

    def remove_run_rows(self, config: Any, table: str, run_id: str) -> int | None:
        """Delete the rows (or files) a run wrote to `table`, so a retry of an append run does not load them
        twice when an earlier attempt committed before its worker died. Returns how many rows went (0 when
        the table does not exist), or None when this destination cannot do it (the default)."""
        return None


def secret_value(value: SecretStr | str | None) -> str | None:
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    return value


def run_check(connector_type: ConnectorType, config: Any) -> CheckResult:
    """`check` with its timeout enforced from outside: a hung driver call cannot hold the caller longer
    than the type's `check_timeout_s` (its thread is abandoned and ends when the driver gives up)."""
    timeout = connector_type.check_timeout_s
    started = time.monotonic()
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="connector-check")
    future = pool.submit(connector_type.check, config)
    try:
        result = future.result(timeout=timeout)
    except concurrent.futures.TimeoutError:
        result = CheckResult(ok=False, message=f"No answer within {timeout:g} seconds.")
    except ConnectorError as exc:
        result = CheckResult(ok=False, message=exc.message)
    except Exception as exc:  # a plugin bug must not turn into a 500 with a traceback
        logger.warning(
            "connector_check_crashed", connector_type=connector_type.slug, error=type(exc).__name__
        )
        result = CheckResult(ok=False, message=f"The check failed unexpectedly ({type(exc).__name__}).")
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    return CheckResult(ok=result.ok, message=result.message, duration_s=round(time.monotonic() - started, 3))

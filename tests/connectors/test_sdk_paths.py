"""The SDK's path policy (`apps.connectors.sdk.paths`): the config types every file connector declares its
path with. The policy is tested here once; the end-to-end attacks per connector (other workspaces' files,
symlinks, globs, at create, PATCH and read time) are in test_file_areas.py."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, Field, ValidationError

from apps.connectors.base import ConnectorError
from apps.connectors.file_areas import WorkspaceFilesType
from apps.connectors.registry import registry
from apps.connectors.sdk.paths import DataPath, ImportPath, data_path, import_path

REFUSED = ["/etc/passwd", "~/secret.csv", "../1/uploads/a.csv", "a/../../b.csv", "a\x00b.csv"]
ACCEPTED = ["a.csv", "uploads/a.csv", "shared/ref/*.csv", "exports/daily", "dir/**/x.parquet"]


class _Reading(BaseModel):
    path: ImportPath = Field(min_length=1)


class _Writing(BaseModel):
    directory: DataPath = Field(min_length=1)


@pytest.mark.parametrize("value", ACCEPTED)
def test_relative_paths_are_accepted_unchanged(value: str) -> None:
    assert import_path(value) == value
    assert data_path(value) == value
    assert _Reading(path=value).path == value
    assert _Writing(directory=value).directory == value


@pytest.mark.parametrize("value", REFUSED)
def test_paths_leaving_the_area_are_refused_when_the_config_is_validated(value: str) -> None:
    with pytest.raises(ValidationError) as reading:
        _Reading(path=value)
    assert "this workspace's files" in str(reading.value) or "NUL" in str(reading.value)
    with pytest.raises(ValidationError) as writing:
        _Writing(directory=value)
    assert "this workspace's data directory" in str(writing.value) or "NUL" in str(writing.value)


def test_field_constraints_still_apply_before_the_policy() -> None:
    with pytest.raises(ValidationError, match="at least 1 character"):
        _Reading(path="")


def _file_types() -> list[type[WorkspaceFilesType]]:
    return sorted(
        (t for t in registry.all() if issubclass(t, WorkspaceFilesType)),
        key=lambda t: t.slug,
    )


def test_every_file_connector_is_covered() -> None:
    slugs = {t.slug for t in _file_types()}
    assert {"csv_file", "json_file", "parquet_file", "excel_file", "sqlite_file", "duckdb", "files"} <= slugs


@pytest.mark.parametrize("connector_type", _file_types(), ids=lambda t: t.slug)
@pytest.mark.parametrize("value", ["../x.csv", "/etc/passwd", "~/x"])
def test_every_file_connector_refuses_a_path_out_of_its_area(
    connector_type: type[WorkspaceFilesType], value: str
) -> None:
    instance = connector_type()
    with pytest.raises((ConnectorError, ValidationError)) as refused:
        instance.validate_config({instance.path_field: value})
    assert instance.path_field in str(refused.value)

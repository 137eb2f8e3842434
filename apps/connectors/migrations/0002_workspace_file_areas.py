"""Each workspace gets an area of its own for files (apps/connectors/file_areas.py).

Before: file sources named paths relative to AGGREGATOR_IMPORT_DIR (uploads were `uploads/<workspace id>/…`)
and DuckDB / files destinations paths relative to AGGREGATOR_DATA_DIR, so any workspace could name any
other's files. After: paths are relative to `<dir>/workspaces/<workspace id>/`. This migration carries the
existing data over:

- a file source whose `path` is `uploads/<its own workspace id>/<rest>` becomes `uploads/<rest>`;
- each workspace's upload folder `<IMPORT_DIR>/uploads/<id>/` is moved to `<IMPORT_DIR>/workspaces/<id>/uploads/`
  (file by file; a name already there is left where it was);
- the DuckDB file or output directory of a destination is moved from `<DATA_DIR>/<path>` to
  `<DATA_DIR>/workspaces/<id>/<path>`, when no other workspace's destination names the same path (or a path
  inside it, or one it is inside); a path several workspaces wrote to is left for the operator.

Anything else (a path to another workspace's uploads, a file at the import directory's root) is left as it
was and stops working: its check says why. Files are moved only where this migration runs with the import
and data directories of the deployment mounted; docs/connectors/files.md says how to move them by hand.
"""

from __future__ import annotations

import shutil
from pathlib import Path, PurePosixPath
from typing import Any

from django.conf import settings
from django.db import migrations

from aggregator.logging import get_logger

logger = get_logger(__name__)

FILE_SOURCES = ("csv_file", "json_file", "parquet_file", "excel_file", "sqlite_file")
DATA_DESTINATIONS = {"duckdb": "database", "files": "directory"}


def _move(source: Path, target: Path) -> bool:
    if not source.exists() or source.is_symlink() or target.exists() or target.is_symlink():
        return False
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(source), str(target))
    except OSError as exc:
        logger.warning("file_area_move_failed", error=type(exc).__name__)
        return False
    return True


def _rewrite_upload_paths(apps: Any, *, forwards: bool) -> None:
    Connector = apps.get_model("connectors", "Connector")
    for connector in Connector.objects.filter(connector_type__in=FILE_SOURCES).iterator():
        path = (connector.config or {}).get("path")
        if not isinstance(path, str):
            continue
        old, new = f"uploads/{connector.workspace_id}/", "uploads/"
        if not forwards:
            old, new = new, old
            if len(PurePosixPath(path).parts) != 2:
                continue
        if path.startswith(old):
            connector.config = {**connector.config, "path": new + path[len(old) :]}
            connector.save(update_fields=["config"])


def _move_uploads(apps: Any, *, forwards: bool) -> None:
    Workspace = apps.get_model("users", "Workspace")
    root = Path(settings.AGGREGATOR_IMPORT_DIR)
    moved = 0
    for workspace_id in Workspace.objects.values_list("id", flat=True):
        legacy = root / "uploads" / str(workspace_id)
        current = root / "workspaces" / str(workspace_id) / "uploads"
        source, target = (legacy, current) if forwards else (current, legacy)
        if not source.is_dir() or source.is_symlink():
            continue
        for entry in sorted(source.iterdir()):
            if not entry.name.startswith(".") and entry.is_file() and not entry.is_symlink():
                moved += _move(entry, target / entry.name)
        if forwards:
            try:
                legacy.rmdir()  # only when everything left
            except OSError:
                pass
    if moved:
        logger.info("file_area_uploads_moved", files=moved)


def _parts(value: str) -> tuple[str, ...] | None:
    parts = PurePosixPath(value).parts
    if not parts or PurePosixPath(value).is_absolute() or ".." in parts or value.startswith("~"):
        return None
    return parts


def _move_outputs(apps: Any, *, forwards: bool) -> None:
    Connector = apps.get_model("connectors", "Connector")
    root = Path(settings.AGGREGATOR_DATA_DIR)
    claims: list[tuple[tuple[str, ...], int, str]] = []
    for connector in Connector.objects.filter(connector_type__in=DATA_DESTINATIONS).iterator():
        value = (connector.config or {}).get(DATA_DESTINATIONS[connector.connector_type])
        parts = _parts(value) if isinstance(value, str) else None
        if parts is not None and parts[0] != "workspaces":
            claims.append((parts, connector.workspace_id, connector.connector_type))
    moved = 0
    for parts, workspace_id, connector_type in sorted(claims, key=lambda c: len(c[0])):
        # Another workspace wrote the same path, or one inside or around it: whose data it is, nobody
        # can tell from here.
        shared = any(
            other_ws != workspace_id and (other[: len(parts)] == parts or parts[: len(other)] == other)
            for other, other_ws, _ in claims
        )
        legacy = root.joinpath(*parts)
        current = root / "workspaces" / str(workspace_id) / Path(*parts)
        source, target = (legacy, current) if forwards else (current, legacy)
        if shared:
            if source.exists():
                logger.warning("file_area_output_shared", workspace_id=workspace_id, path="/".join(parts))
            continue
        moved += _move(source, target)
        if connector_type == "duckdb":  # its write-ahead log travels with it
            _move(source.with_name(source.name + ".wal"), target.with_name(target.name + ".wal"))
    if moved:
        logger.info("file_area_outputs_moved", paths=moved)


def forwards(apps: Any, schema_editor: Any) -> None:
    _rewrite_upload_paths(apps, forwards=True)
    _move_uploads(apps, forwards=True)
    _move_outputs(apps, forwards=True)


def backwards(apps: Any, schema_editor: Any) -> None:
    _move_outputs(apps, forwards=False)
    _move_uploads(apps, forwards=False)
    _rewrite_upload_paths(apps, forwards=False)


class Migration(migrations.Migration):
    dependencies = [
        ("connectors", "0001_initial"),
        ("users", "0001_initial"),
    ]

    operations = [migrations.RunPython(forwards, backwards, elidable=True)]

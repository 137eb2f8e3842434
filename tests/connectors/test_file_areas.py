"""Each workspace's files are its own: a file source or a file-writing destination of one workspace cannot
name another workspace's files (nor the import directory's root, nor a shared directory not granted to it),
whatever the path — the old upload form `uploads/<id>/…`, globs, `..`, absolute paths, `~`, symlinks. The
path is refused when the connector is created, when it is changed, and again when it is used (a config
stored before the rule, written straight to the row), with a message naming the path and no byte of the
other workspace's file."""

from __future__ import annotations

import importlib
import io
import json
import os
import sqlite3
from pathlib import Path
from typing import Any

import duckdb
import openpyxl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from django.apps import apps as django_apps
from django.core.exceptions import ImproperlyConfigured, ValidationError

from aggregator.dataplane import Batch, Field, FieldType, StreamSchema, WriteMode
from apps.connectors.base import ConnectorError, run_check
from apps.connectors.file_areas import FileArea, shared_grants
from apps.connectors.models import Connector
from apps.connectors.plugins.csv_file import CsvFileSource
from apps.connectors.selectors import connector_runtime
from apps.connectors.services import (
    connector_check,
    connector_create,
    connector_preview,
    connector_update,
    upload_create,
)
from apps.connectors.tables import connector_table_list
from apps.pipelines.executor import run_execute
from apps.pipelines.models import Run, RunStatus
from apps.pipelines.services import pipeline_create, run_start

pytestmark = pytest.mark.django_db

SECRET = "a-secret-7f3e9c"
SOURCES = {
    "csv_file": ".csv",
    "json_file": ".jsonl",
    "parquet_file": ".parquet",
    "excel_file": ".xlsx",
    "sqlite_file": ".db",
}


def write_rows(path: Path, value: str) -> Path:
    """A one-row table `{id, value}` in the format the suffix names."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".csv":
        path.write_text(f"id,value\n1,{value}\n")
    elif path.suffix == ".jsonl":
        path.write_text(json.dumps({"id": 1, "value": value}) + "\n")
    elif path.suffix == ".parquet":
        pq.write_table(pa.table({"id": [1], "value": [value]}), path)
    elif path.suffix == ".xlsx":
        book = openpyxl.Workbook()
        book.active.append(["id", "value"])
        book.active.append([1, value])
        book.save(path)
    else:
        with sqlite3.connect(path) as conn:
            conn.execute("CREATE TABLE t (id INTEGER, value TEXT)")
            conn.execute("INSERT INTO t VALUES (1, ?)", (value,))
        conn.close()
    return path


@pytest.fixture
def areas(personas: Any, import_dir: Path, data_dir: Path) -> dict[str, Any]:
    """Workspace A (the personas' workspace) with a secret file of each format in its uploads, workspace B
    (the outsider's) with harmless files of its own."""
    a, b = personas.workspace, personas.other_workspace
    a_area, b_area = import_dir, import_dir.parent / str(b.id)
    for ext in SOURCES.values():
        write_rows(a_area / "uploads" / f"secret{ext}", SECRET)
        write_rows(b_area / f"mine{ext}", "harmless")
        # Where A's uploads were before workspaces had areas (a migration that could not move them).
        write_rows(Path(import_dir.parent.parent) / "uploads" / str(a.id) / f"secret{ext}", SECRET)
    return {"a": a, "b": b, "a_area": a_area, "b_area": b_area}


def attack_paths(areas: dict[str, Any], ext: str, tmp_path: Path) -> list[str]:
    a_id, b_area = areas["a"].id, areas["b_area"]
    os.symlink(areas["a_area"] / "uploads" / f"secret{ext}", b_area / f"link{ext}")
    if not (b_area / "peek").exists():
        os.symlink(areas["a_area"], b_area / "peek", target_is_directory=True)
    return [
        f"uploads/{a_id}/secret{ext}",  # the old form of A's upload paths
        f"uploads/*/secret{ext}",
        f"../{a_id}/uploads/secret{ext}",
        f"../../uploads/{a_id}/secret{ext}",
        f"../workspaces/{a_id}/uploads/secret{ext}",
        str(areas["a_area"] / "uploads" / f"secret{ext}"),
        f"~/secret{ext}",
        f"link{ext}",  # a symlink in B's area to A's file
        f"peek/uploads/secret{ext}",  # through a symlink in B's area to A's area
        f"peek/*/secret{ext}",
    ]


def assert_refused(exc: ValidationError, path: str, tmp_path: Path) -> None:
    [(field, [message])] = exc.message_dict.items()
    assert field == "config.path"
    assert repr(path) in message or (path.startswith("peek/*") and "'peek/" in message), message
    assert str(tmp_path) not in message.replace(repr(path), "")
    assert SECRET not in message


@pytest.mark.parametrize("slug", sorted(SOURCES))
def test_another_workspaces_files_are_refused_at_create_patch_and_use(
    slug: str, areas: dict[str, Any], tmp_path: Path
) -> None:
    ext = SOURCES[slug]
    b = areas["b"]
    own = connector_create(
        workspace=b, user=None, name="mine", connector_type=slug, config={"path": f"mine{ext}"}
    )
    assert connector_check(connector=own).last_check_status == "succeeded"
    for path in attack_paths(areas, ext, tmp_path):
        with pytest.raises(ValidationError) as created:
            connector_create(
                workspace=b, user=None, name="theirs", connector_type=slug, config={"path": path}
            )
        assert_refused(created.value, path, tmp_path)
        with pytest.raises(ValidationError) as patched:
            connector_update(connector=own, user=None, config={"path": path})
        assert_refused(patched.value, path, tmp_path)

        # A config stored before the rule: refused when it is used.
        Connector.objects.filter(id=own.id).update(config={**own.config, "path": path})
        own.refresh_from_db()
        checked = connector_check(connector=own)
        assert checked.last_check_status == "failed"
        assert repr(path) in checked.last_check_message or "'peek/" in checked.last_check_message
        assert SECRET not in checked.last_check_message and str(
            tmp_path
        ) not in checked.last_check_message.replace(repr(path), "")
        stream = "t" if slug == "sqlite_file" else "secret"
        with pytest.raises(ValidationError) as previewed:
            connector_preview(connector=own, stream=stream)
        assert SECRET not in str(previewed.value)
        Connector.objects.filter(id=own.id).update(config={**own.config, "path": f"mine{ext}"})
        own.refresh_from_db()


def test_a_run_of_a_source_whose_stored_path_names_another_workspace_fails_and_loads_nothing(
    areas: dict[str, Any], data_dir: Path
) -> None:
    b = areas["b"]
    connector_create(
        workspace=b,
        user=None,
        name="mine",
        connector_type="csv_file",
        config={"path": "mine.csv", "stream_name": "rows"},
    )
    connector_create(
        workspace=b, user=None, name="wh", connector_type="duckdb", config={"database": "wh.duckdb"}
    )
    definition = {
        "nodes": [
            {"id": "src", "kind": "source", "connector": "mine", "stream": "rows"},
            {"id": "dst", "kind": "destination", "connector": "wh", "table": "rows", "write_mode": "append"},
        ],
        "edges": [{"from": "src", "to": "dst"}],
    }
    pipeline = pipeline_create(workspace=b, name="copy", definition=definition, user=None)
    source = Connector.objects.get(workspace=b, name="mine")
    attack = f"uploads/{areas['a'].id}/secret.csv"
    Connector.objects.filter(id=source.id).update(config={**source.config, "path": attack})

    run = run_start(pipeline=pipeline)
    assert run_execute(run_id=run.id, attempt=1) == RunStatus.FAILED
    run = Run.objects.get(id=run.id)
    assert repr(attack) in run.error and "uploads/ has no folders" in run.error
    assert SECRET not in run.error
    b_data = data_dir.parent / str(b.id)
    if (b_data / "wh.duckdb").exists():
        with duckdb.connect(str(b_data / "wh.duckdb"), read_only=True) as con:
            tables = con.execute("SELECT table_name FROM information_schema.tables").fetchall()
        assert tables == []


def test_a_file_at_the_import_directorys_root_belongs_to_no_workspace(
    personas: Any, import_dir: Path
) -> None:
    root = import_dir.parent.parent
    write_rows(root / "flights.csv", SECRET)
    connector = connector_create(
        workspace=personas.workspace,
        user=None,
        name="old",
        connector_type="csv_file",
        config={"path": "flights.csv"},
    )
    checked = connector_check(connector=connector)
    assert (checked.last_check_status, checked.last_check_message) == (
        "failed",
        f"No file matches 'flights.csv' in this workspace's files (the import directory's "
        f"workspaces/{personas.workspace.id}/).",
    )
    # The same file put in the workspace's area is read.
    write_rows(import_dir / "flights.csv", "mine")
    assert connector_check(connector=connector).last_check_status == "succeeded"


def test_uploads_are_read_by_their_own_workspace_only(personas: Any, import_dir: Path) -> None:
    stored = upload_create(
        workspace=personas.workspace,
        user=None,
        file=_bytes(f"id,value\n1,{SECRET}\n"),
        file_name="people.csv",
    )
    assert stored.path.startswith("uploads/") and stored.path.count("/") == 1
    assert (import_dir / stored.path).is_file()
    mine = connector_create(
        workspace=personas.workspace,
        user=None,
        name="up",
        connector_type="csv_file",
        config={"path": stored.path},
    )
    assert connector_preview(connector=mine, stream=Path(stored.path).stem)["rows"][0]["value"] == SECRET
    # The other workspace naming the same path names its own uploads, where there is no such file.
    theirs = connector_create(
        workspace=personas.other_workspace,
        user=None,
        name="up",
        connector_type="csv_file",
        config={"path": stored.path},
    )
    checked = connector_check(connector=theirs)
    assert checked.last_check_status == "failed" and SECRET not in checked.last_check_message
    assert checked.last_check_message.startswith(f"No file matches {stored.path!r} in this workspace's files")


def _bytes(text: str) -> io.BytesIO:
    return io.BytesIO(text.encode())


# --- destinations ---------------------------------------------------------------------------------------

SCHEMA = StreamSchema(name="rows", fields=(Field("id", FieldType.INTEGER), Field("value", FieldType.STRING)))
DESTINATIONS = {"duckdb": ("database", "wh.duckdb"), "files": ("directory", "out")}


@pytest.mark.parametrize("slug", sorted(DESTINATIONS))
def test_a_destination_cannot_write_into_another_workspaces_data(
    slug: str, personas: Any, data_dir: Path, tmp_path: Path
) -> None:
    field, value = DESTINATIONS[slug]
    a, b = personas.workspace, personas.other_workspace
    a_data, b_data = data_dir, data_dir.parent / str(b.id)
    b_data.mkdir()
    os.symlink(a_data, b_data / "link", target_is_directory=True)
    own = connector_create(workspace=b, user=None, name="mine", connector_type=slug, config={field: value})
    attacks = [f"../{a.id}/{value}", f"../../{value}", str(a_data / value), f"~/{value}", f"link/{value}"]
    for path in attacks:
        with pytest.raises(ValidationError) as created:
            connector_create(workspace=b, user=None, name="theirs", connector_type=slug, config={field: path})
        [(key, [message])] = created.value.message_dict.items()
        assert key == f"config.{field}" and repr(path) in message
        assert str(tmp_path) not in message.replace(repr(path), "")
        with pytest.raises(ValidationError):
            connector_update(connector=own, user=None, config={field: path})
    # Stored before the rule, through the symlink: refused at check, at write and when listing tables.
    Connector.objects.filter(id=own.id).update(config={**own.config, field: f"link/{value}"})
    own.refresh_from_db()
    checked = connector_check(connector=own)
    assert checked.last_check_status == "failed"
    assert checked.last_check_message == (
        f"'link/{value}' leads outside this workspace's data directory "
        f"(the data directory's workspaces/{b.id}/)."
    )
    connector_type, config = connector_runtime(own)
    batch = Batch.from_records([{"id": 1, "value": "x"}], SCHEMA)
    with pytest.raises(ConnectorError, match="leads outside this workspace's data directory"):
        connector_type.write(config, SCHEMA, [batch], WriteMode.APPEND, None, "r1")
    if slug == "duckdb":
        with pytest.raises(ValidationError):
            connector_table_list(connector=own)
    assert list(a_data.iterdir()) == []


def test_two_workspaces_naming_the_same_database_get_a_file_each(personas: Any, data_dir: Path) -> None:
    connectors = [
        connector_create(
            workspace=ws,
            user=None,
            name="wh",
            connector_type="duckdb",
            config={"database": "warehouse/main.duckdb"},
        )
        for ws in (personas.workspace, personas.other_workspace)
    ]
    connector_type, config = connector_runtime(connectors[0])
    connector_type.write(
        config,
        SCHEMA,
        [Batch.from_records([{"id": 1, "value": SECRET}], SCHEMA)],
        WriteMode.APPEND,
        None,
        "r1",
    )
    assert connector_type.list_tables(config) == ["rows"]
    other_type, other_config = connector_runtime(connectors[1])
    assert other_type.list_tables(other_config) == []
    assert (data_dir / "warehouse" / "main.duckdb").is_file()
    assert not (data_dir.parent / str(personas.other_workspace.id) / "warehouse" / "main.duckdb").exists()


# --- shared directories -----------------------------------------------------------------------------------


def test_a_shared_directory_is_read_by_the_workspaces_it_is_granted_to_only(
    personas: Any, import_dir: Path, settings: Any
) -> None:
    a, b = personas.workspace, personas.other_workspace
    root = import_dir.parent.parent
    write_rows(root / "shared" / "reference" / "countries.csv", "fr")
    write_rows(root / "shared" / "partners" / "deals.csv", SECRET)
    settings.AGGREGATOR_SHARED_IMPORT_DIRS = f"reference; partners={a.id}"

    for ws in (a, b):
        ref = connector_create(
            workspace=ws,
            user=None,
            name="ref",
            connector_type="csv_file",
            config={"path": "shared/reference/*.csv"},
        )
        assert connector_preview(connector=ref, stream="countries")["rows"] == [{"id": 1, "value": "fr"}]
    deals = connector_create(
        workspace=a,
        user=None,
        name="deals",
        connector_type="csv_file",
        config={"path": "shared/partners/deals.csv"},
    )
    assert connector_preview(connector=deals, stream="deals")["rows"][0]["value"] == SECRET

    with pytest.raises(ValidationError) as refused:
        connector_create(
            workspace=b,
            user=None,
            name="deals",
            connector_type="csv_file",
            config={"path": "shared/partners/deals.csv"},
        )
    assert refused.value.message_dict == {
        "config.path": [
            "'shared/partners/deals.csv': the shared directory 'partners' is not open to this workspace (an "
            "operator grants it with AGGREGATOR_SHARED_IMPORT_DIRS)."
        ]
    }
    for path in ("shared/*/deals.csv", "shared/deals.csv", "shared/../shared/partners/deals.csv"):
        with pytest.raises(ValidationError):
            connector_create(
                workspace=b, user=None, name="x", connector_type="csv_file", config={"path": path}
            )

    # A grant taken back stops the connectors that used it, with the reason.
    settings.AGGREGATOR_SHARED_IMPORT_DIRS = "reference"
    checked = connector_check(connector=deals)
    assert (
        checked.last_check_status == "failed"
        and "is not open to this workspace" in checked.last_check_message
    )

    # A symlink in a shared directory leads nowhere outside it.
    os.symlink(import_dir / "uploads", root / "shared" / "reference" / "peek", target_is_directory=True)
    write_rows(import_dir / "uploads" / "private.csv", SECRET)
    with pytest.raises(ValidationError) as escaped:
        connector_create(
            workspace=b,
            user=None,
            name="peek",
            connector_type="csv_file",
            config={"path": "shared/reference/peek/private.csv"},
        )
    assert escaped.value.message_dict["config.path"] == [
        "'shared/reference/peek/private.csv' leads outside the shared directory 'reference'."
    ]


def test_shared_grants_are_parsed_strictly(settings: Any) -> None:
    settings.AGGREGATOR_SHARED_IMPORT_DIRS = " reference ; partners=3, 7;"
    assert shared_grants() == {"reference": None, "partners": frozenset({3, 7})}
    settings.AGGREGATOR_SHARED_IMPORT_DIRS = {"reference": "*", "partners": [3]}
    assert shared_grants() == {"reference": None, "partners": frozenset({3})}
    settings.AGGREGATOR_SHARED_IMPORT_DIRS = ""
    assert shared_grants() == {}
    for bad in ("../etc", ".hidden", "a/b", "partners=3,x"):
        settings.AGGREGATOR_SHARED_IMPORT_DIRS = bad
        with pytest.raises(ImproperlyConfigured):
            shared_grants()


def test_a_config_never_bound_to_a_workspace_reads_nothing(import_dir: Path) -> None:
    write_rows(import_dir / "x.csv", SECRET)
    source = CsvFileSource()
    unbound = source.validate_config({"path": "x.csv"})
    with pytest.raises(ConnectorError, match="not bound to a workspace") as caught:
        source.discover(unbound)
    assert caught.value.field == "connector"
    result = run_check(source, unbound)
    assert not result.ok and "not bound to a workspace" in result.message


def test_area_labels_and_messages_never_show_server_paths(settings: Any, tmp_path: Path) -> None:
    settings.AGGREGATOR_IMPORT_DIR = tmp_path / "import"
    settings.AGGREGATOR_SHARED_IMPORT_DIRS = "reference"
    area = FileArea.for_import(5)
    write_rows(area.root / "a" / "b.csv", "x")
    write_rows(tmp_path / "import" / "shared" / "reference" / "c.csv", "x")
    [own] = area.files("a/*.csv")
    [shared] = area.files("shared/reference/c.csv")
    assert (area.label(own), area.label(shared)) == ("a/b.csv", "shared/reference/c.csv")
    assert area.scrub(f"cannot open {own}") == "cannot open a/b.csv"


# --- the migration of existing data -------------------------------------------------------------------------


def test_the_migration_moves_each_workspaces_uploads_and_outputs_into_its_area(
    personas: Any, import_dir: Path, data_dir: Path
) -> None:
    migration = importlib.import_module("apps.connectors.migrations.0002_workspace_file_areas")
    a, b = personas.workspace, personas.other_workspace
    import_root, data_root = import_dir.parent.parent, data_dir.parent.parent
    write_rows(import_root / "uploads" / str(a.id) / "f1.csv", "mine")
    write_rows(data_root / "wh" / "main.duckdb", "")  # any bytes: it is moved, not opened
    write_rows(data_root / "both.duckdb", "")

    def make(ws: Any, name: str, slug: str, config: dict[str, Any]) -> Connector:
        # As stored before the rule: straight to the row.
        return Connector.objects.create(workspace=ws, name=name, connector_type=slug, config=config)

    mine = make(a, "mine", "csv_file", {"path": f"uploads/{a.id}/f1.csv"})
    theirs = make(b, "theirs", "csv_file", {"path": f"uploads/{a.id}/f1.csv"})
    warehouse = make(a, "wh", "duckdb", {"database": "wh/main.duckdb", "schema": "main"})
    make(a, "both-a", "duckdb", {"database": "both.duckdb", "schema": "main"})
    make(b, "both-b", "duckdb", {"database": "both.duckdb", "schema": "main"})

    migration.forwards(django_apps, None)

    mine.refresh_from_db()
    theirs.refresh_from_db()
    assert mine.config["path"] == "uploads/f1.csv"
    assert theirs.config["path"] == f"uploads/{a.id}/f1.csv"  # not theirs to keep
    assert (import_dir / "uploads" / "f1.csv").is_file()
    assert not (import_root / "uploads" / str(a.id)).exists()
    assert connector_check(connector=mine).last_check_status == "succeeded"
    checked = connector_check(connector=theirs)
    assert checked.last_check_status == "failed" and "uploads/ has no folders" in checked.last_check_message
    assert (data_dir / "wh" / "main.duckdb").is_file() and not (data_root / "wh" / "main.duckdb").exists()
    assert warehouse.config["database"] == "wh/main.duckdb"
    assert (data_root / "both.duckdb").is_file()  # two workspaces wrote it: left for the operator

    migration.backwards(django_apps, None)
    mine.refresh_from_db()
    assert mine.config["path"] == f"uploads/{a.id}/f1.csv"
    assert (import_root / "uploads" / str(a.id) / "f1.csv").is_file()
    assert (data_root / "wh" / "main.duckdb").is_file()

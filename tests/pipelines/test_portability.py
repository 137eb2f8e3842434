"""Pipelines as code: export → import reproduces the same documents; import is idempotent; no secrets."""

from __future__ import annotations

import shutil
from io import StringIO

import pytest
import yaml
from django.core.management import CommandError, call_command

from apps.connectors.file_areas import workspace_import_dir
from apps.pipelines.models import Pipeline, PipelineVersion
from apps.pipelines.services import pipeline_create, pipeline_update
from apps.users.models import Workspace

from .conftest import flights_definition

pytestmark = pytest.mark.django_db


def export(workspace) -> str:
    out = StringIO()
    call_command("export_pipelines", "--workspace", workspace.slug, stdout=out)
    return out.getvalue()


def test_export_then_import_into_a_new_workspace_reproduces_the_documents(
    personas, csv_connector, pg_connector, flights_file, monkeypatch, tmp_path
):
    first = pipeline_create(
        workspace=personas.workspace,
        name="late flights",
        definition=flights_definition(),
        user=None,
        schedule_cron="0 6 * * *",
    )
    second = pipeline_create(
        workspace=personas.workspace, name="after", definition=flights_definition(table="t2"), user=None
    )
    pipeline_update(pipeline=second, user=None, depends_on=[first])
    text = export(personas.workspace)
    document = yaml.safe_load(text)
    assert [c["name"] for c in document["connectors"]] == ["flights-files", "warehouse-pg"]
    assert "password" not in document["connectors"][1]["config"]  # not set: nothing to reference

    target = Workspace.objects.create(name="Copy", slug="copy")
    # A workspace reads its own files only: the copy's source needs the file in the copy's area.
    shutil.copy(flights_file, workspace_import_dir(target.id) / flights_file.name)
    file = tmp_path / "export.yaml"
    file.write_text(text)
    out = StringIO()
    call_command("import_pipelines", str(file), "--workspace", "copy", stdout=out)
    assert "4 created, 0 updated, 0 unchanged." in out.getvalue()
    copied = {p.name: p for p in Pipeline.objects.filter(workspace=target)}
    assert copied["late flights"].definition == first.definition
    assert copied["late flights"].schedule_cron == "0 6 * * *"
    assert [p.name for p in copied["after"].depends_on.all()] == ["late flights"]
    # The copy exports to the same document (connector and pipeline documents identical).
    assert yaml.safe_load(export(target)) == document

    again = StringIO()
    call_command("import_pipelines", str(file), "--workspace", "copy", stdout=again)
    assert "0 created, 0 updated, 4 unchanged." in again.getvalue()
    assert PipelineVersion.objects.filter(pipeline__workspace=target).count() == 2


def test_import_reports_a_missing_env_var_and_changes_nothing(
    personas, csv_connector, pg_connector, tmp_path
):
    from apps.connectors.registry import get_connector_type

    if "password" not in get_connector_type("postgres").secret_fields():
        pytest.skip("the postgres type has no password field")
    document = {
        "version": 1,
        "connectors": [
            {
                "name": "db",
                "type": "postgres",
                "config": {
                    "host": "127.0.0.1",
                    "database": "x",
                    "user": "u",
                    "password": "${NOT_SET_ANYWHERE}",
                },
            }
        ],
        "pipelines": [],
    }
    file = tmp_path / "in.yaml"
    file.write_text(yaml.safe_dump(document))
    with pytest.raises(CommandError, match="NOT_SET_ANYWHERE"):
        call_command("import_pipelines", str(file), "--workspace", personas.workspace.slug, stdout=StringIO())
    from apps.connectors.models import Connector

    assert not Connector.objects.filter(name="db").exists()


def test_import_updates_a_changed_pipeline_with_a_new_version(
    personas, csv_connector, pg_connector, tmp_path
):
    pipeline = pipeline_create(
        workspace=personas.workspace, name="late flights", definition=flights_definition(), user=None
    )
    document = yaml.safe_load(export(personas.workspace))
    document["pipelines"][0]["definition"]["nodes"][1]["config"]["expression"] = "dep_delay > 100"
    file = tmp_path / "in.yaml"
    file.write_text(yaml.safe_dump(document))
    out = StringIO()
    call_command("import_pipelines", str(file), "--workspace", personas.workspace.slug, stdout=out)
    assert "updated pipeline late flights" in out.getvalue()
    pipeline.refresh_from_db()
    assert pipeline.version == 2
    assert pipeline.definition["nodes"][1]["config"]["expression"] == "dep_delay > 100"


def test_set_secrets_are_exported_as_env_references_and_resolved_on_import(personas, tmp_path, monkeypatch):
    from apps.connectors.models import Connector
    from apps.connectors.selectors import connector_secrets
    from apps.connectors.services import connector_create

    connector_create(
        workspace=personas.workspace,
        name="remote db",
        connector_type="postgres",
        config={"host": "db.example.com", "database": "x", "user": "u", "password": "canary-Pa55"},
        user=None,
    )
    text = export(personas.workspace)
    assert "canary" not in text
    remote = next(c for c in yaml.safe_load(text)["connectors"] if c["name"] == "remote db")
    assert remote["config"]["password"] == "${REMOTE_DB_PASSWORD}"

    target = Workspace.objects.create(name="Copy", slug="copy")
    file = tmp_path / "export.yaml"
    file.write_text(text)
    monkeypatch.setenv("REMOTE_DB_PASSWORD", "from-the-env")
    call_command("import_pipelines", str(file), "--workspace", "copy", stdout=StringIO())
    copied = Connector.objects.get(workspace=target, name="remote db")
    assert connector_secrets(copied) == {"password": "from-the-env"}

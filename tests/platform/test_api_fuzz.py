"""Schemathesis over every operation of the OpenAPI schema, as a workspace admin and as a viewer.

The schema is drf-spectacular's, generated from the app as `/api/schema/` serves it; requests go through the
WSGI app in this process, on this test's database. Each operation gets `MAX_EXAMPLES` requests per role
(a fixed seed: the same requests on every run): schema-valid ones, which must be accepted, and ones that
break the schema in one place, which must be refused. Every response is checked:
no 5xx, a documented status, the documented content type and body, and the rest of Schemathesis' checks.

The world is a workspace with a CSV source, a DuckDB destination holding a table, a pipeline with two
versions and a finished run (node runs, logs, a quarantined row, a quality result, a profile), discovered
stream schemas with a contract and a pending change, a webhook with a delivery, an alert rule with an alert,
an event, a trigger, a push stream, an API key, an invitation and three members. A path parameter that the
generator drew as a valid value is replaced by the world's object, and so are references in the query and
in the body (`workspace`, `pipeline`, `stream`, …), so valid requests reach the objects and get past the
lookups. Every request runs in a transaction rolled back after it, so each one sees the same world.

    .venv/bin/pytest tests/platform/test_api_fuzz.py -p no:randomly -q
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import duckdb
import pytest
import schemathesis
from django.contrib.contenttypes.models import ContentType
from django.core.signals import request_finished, request_started
from django.db import close_old_connections, transaction
from django.test import override_settings
from drf_spectacular.generators import SchemaGenerator
from hypothesis import HealthCheck, settings
from rest_framework_simplejwt.tokens import RefreshToken
from schemathesis.core.parameters import ParameterLocation

from aggregator.dataplane import Field, FieldType, StreamSchema
from aggregator.wsgi import application
from apps.connectors.file_areas import FileArea, workspace_import_dir
from apps.connectors.services import connector_create
from apps.monitoring import alerts, events
from apps.monitoring.models import AuditEntry
from apps.pipelines.models import (
    LogLevel,
    NodeProfile,
    NodeRun,
    Pipeline,
    QualityResult,
    RejectedRecord,
    RunLog,
    RunStatus,
)
from apps.pipelines.services import pipeline_create, pipeline_update, run_start
from apps.schemas.models import SchemaChange
from apps.schemas.services import schema_record_discovery, stream_contract_set
from apps.users.models import Role, User
from apps.users.services import api_key_create, invitation_create
from apps.webhooks.services import (
    pipeline_trigger_create,
    push_stream_create,
    webhook_create,
    webhook_send_test,
)
from tests.factories import MembershipFactory, WorkspaceFactory

pytestmark = [pytest.mark.slow]

MAX_EXAMPLES = 10

# Well-formed requests the API refuses with a 400 for what no schema states; each is the API's answer by
# design, so for these operations a 400 to a schema-valid request is not counted against the schema.
REFUSED_BY_DESIGN = {
    # A secret that must match: a password, a code, a token from an email.
    "POST /api/v1/auth/password/": "the current password must be the user's",
    "POST /api/v1/auth/accept-invitation/": "the token must be an open invitation's",
    "POST /api/v1/auth/password-reset/confirm/": "uid and token must come from a reset email",
    "POST /api/v1/auth/mfa/totp/confirm/": "the code must be the pending authenticator's",
    "POST /api/v1/auth/mfa/recovery-codes/": "MFA must be on and the code or password right",
    # Rules between fields, or a document checked against the world.
    "POST /api/v1/alert-rules/": "some kinds need a threshold or a window",
    "PUT /api/v1/alert-rules/{id}/": "some kinds need a threshold or a window",
    "PATCH /api/v1/alert-rules/{id}/": "some kinds need a threshold or a window",
    "POST /api/v1/connectors/": "the config must fit the type's config_schema (GET connector-types/)",
    "PUT /api/v1/connectors/{id}/": "the config must fit the type's config_schema; the type cannot change",
    "PATCH /api/v1/connectors/{id}/": "the config must fit the type's config_schema; the type cannot change",
    "GET /api/v1/metrics/runs/": "`since` before `until`, at most 5000 buckets between them",
    "GET /api/v1/metrics/summary/": "`since` before `until`, at most 5000 buckets between them",
    "GET /api/v1/metrics/system/": "`since` before `until`, at most 5000 buckets between them",
    "POST /api/v1/pipelines/": "the definition must be a sound graph over the workspace's connectors",
    "PUT /api/v1/pipelines/{id}/": "the definition must be a sound graph over the workspace's connectors",
    "PATCH /api/v1/pipelines/{id}/": "a sound definition; depends_on names the workspace's pipelines",
    "POST /api/v1/pipelines/preview/": "the node must be in the document, sound down to it",
    "POST /api/v1/pipelines/{id}/preview/": "the node must be in the document, sound down to it",
    "POST /api/v1/pipelines/{id}/runs/": "`streams` and a backfill's `node` name source nodes",
    "POST /api/v1/uploads/": "the file's extension must be one of the formats the file sources read",
    "POST /api/v1/webhooks/": "the URL's host must resolve, to a public address (the SSRF guard)",
    "PUT /api/v1/webhooks/{id}/": "the URL's host must resolve, to a public address (the SSRF guard)",
    "PATCH /api/v1/webhooks/{id}/": "the URL's host must resolve, to a public address (the SSRF guard)",
    # The environment: the tests have no Local warehouse (it lives on the platform's own PostgreSQL).
    "POST /api/v1/pipelines/sample/": "the Local warehouse must be configured",
}

FLIGHTS_CSV = "year,month,day,dep_delay,carrier,flight\n2013,1,1,2,UA,1545\n2013,1,1,75,AA,1141\n"
FLIGHT_FIELDS = (
    ("year", FieldType.INTEGER),
    ("month", FieldType.INTEGER),
    ("day", FieldType.INTEGER),
    ("dep_delay", FieldType.INTEGER),
    ("carrier", FieldType.STRING),
    ("flight", FieldType.INTEGER),
)
DEFINITION = {
    "nodes": [
        {"id": "flights", "kind": "source", "connector": "flights", "stream": "flights"},
        {"id": "late", "kind": "transform", "step": "filter", "config": {"expression": "dep_delay > 60"}},
        {"id": "warehouse", "kind": "destination", "connector": "warehouse", "table": "late_flights"},
    ],
    "edges": [{"from": "flights", "to": "late"}, {"from": "late", "to": "warehouse"}],
}


@dataclass
class World:
    users: dict[str, User]
    # Per path prefix (longest match wins), the real value of each path parameter.
    path: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Per name, the real value of a query parameter or a top-level body field naming an object.
    references: dict[str, Any] = field(default_factory=dict)

    def path_values(self, path: str) -> dict[str, Any]:
        matches = [prefix for prefix in self.path if path.startswith(prefix)]
        return self.path[max(matches, key=len)] if matches else {}


def _build_world() -> World:
    workspace = WorkspaceFactory(name="Fuzz")
    admin = MembershipFactory(workspace=workspace, role=Role.ADMIN, user__email="admin@fuzz.test").user
    viewer = MembershipFactory(workspace=workspace, role=Role.VIEWER, user__email="viewer@fuzz.test").user
    editor = MembershipFactory(workspace=workspace, role=Role.EDITOR, user__email="editor@fuzz.test")

    (workspace_import_dir(workspace.id) / "flights.csv").write_text(FLIGHTS_CSV)
    data_dir = FileArea.for_data(workspace.id).root
    data_dir.mkdir(parents=True, exist_ok=True)
    with duckdb.connect(str(data_dir / "fuzz.duckdb")) as conn:
        conn.execute("CREATE TABLE late_flights (year BIGINT, carrier VARCHAR, dep_delay BIGINT)")
    source = connector_create(
        workspace=workspace,
        user=admin,
        name="flights",
        connector_type="csv_file",
        config={"path": "flights.csv"},
    )
    destination = connector_create(
        workspace=workspace,
        user=admin,
        name="warehouse",
        connector_type="duckdb",
        config={"database": "fuzz.duckdb"},
    )

    fields = tuple(Field(name, kind) for name, kind in FLIGHT_FIELDS)
    schema_record_discovery(connector=source, streams=[StreamSchema(name="flights", fields=fields)])
    more = (*fields, Field("origin", FieldType.STRING))
    schema_record_discovery(connector=source, streams=[StreamSchema(name="flights", fields=more)])
    contract = stream_contract_set(connector=source, stream="flights", user=admin)
    change = SchemaChange.objects.create(
        workspace=workspace, connector=source, stream="flights", from_version=1, to_version=2
    )

    pipeline = pipeline_create(workspace=workspace, name="late flights", definition=DEFINITION, user=admin)
    later = {**DEFINITION, "nodes": [dict(n) for n in DEFINITION["nodes"]]}
    later["nodes"][1]["config"] = {"expression": "dep_delay > 90"}
    pipeline_update(pipeline=pipeline, user=admin, definition=later, message="Later")
    run = run_start(pipeline=pipeline, user=admin)
    run.status = RunStatus.SUCCEEDED
    run.save(update_fields=["status"])
    NodeRun.objects.create(
        run=run, node_id="flights", kind="source", status=RunStatus.SUCCEEDED, rows_in=2, rows_out=2
    )
    RunLog.objects.create(run=run, level=LogLevel.INFO, node_id="flights", message="read 2 rows")
    RejectedRecord.objects.create(run=run, node_id="late", raw={"dep_delay": "x"}, reason="not a number")
    QualityResult.objects.create(
        run=run, node_id="late", rule_id="delay", rule_type="not_null", action="reject", status="rejected"
    )
    NodeProfile.objects.create(run=run, node_id="flights", rows=2, columns=[])

    # Never contacted: deliveries go out after commit, and every request here is rolled back.
    webhook, _ = webhook_create(workspace=workspace, user=admin, url="https://192.0.2.10/hook")
    delivery = webhook_send_test(webhook=webhook)
    rule = alerts.alert_rule_create(workspace=workspace, user=admin, name="failures", kind="run_failed")
    alert = alerts.alert_trigger(
        rule=rule, subject_type="run", subject_id=run.id, title="Run failed", context={}
    )
    event = events.emit("run.succeeded", workspace, run, {"pipeline": pipeline.id})
    trigger, _ = pipeline_trigger_create(pipeline=pipeline, user=admin)
    push, _, _ = push_stream_create(workspace=workspace, user=admin, name="clicks")
    key, _ = api_key_create(workspace=workspace, user=admin, name="ci", scopes=["read"])
    invitation, _ = invitation_create(
        workspace=workspace, email="new@fuzz.test", role=Role.VIEWER, invited_by=admin
    )
    audit = AuditEntry.objects.create(
        workspace_id=workspace.id,
        content_type=ContentType.objects.get_for_model(Pipeline),
        object_pk=str(pipeline.id),
        object_repr="late flights",
        action=AuditEntry.Action.UPDATE,
        changes={"name": ["late", "late flights"]},
    )

    world = World(users={"admin": admin, "viewer": viewer})
    for prefix, value in {
        "alert-rules": rule.id,
        "alerts": alert.id,
        "api-keys": key.id,
        "audit-log": audit.id,
        "connectors": source.id,
        "events": event.id,
        "pipeline-triggers": trigger.id,
        "pipelines": pipeline.id,
        "push-streams": push.id,
        "runs": run.id,
        "schemas/changes": change.id,
        "schemas/connectors": source.id,
        "schemas/contracts": contract.id,
        "webhook-deliveries": delivery.id,
        "webhooks": webhook.id,
        "workspaces": workspace.id,
    }.items():
        world.path[f"/api/v1/{prefix}/"] = {"id": value}
    world.path["/api/v1/connectors/{connector_pk}/"] = {
        "connector_pk": destination.id,
        "table": "late_flights",
    }
    world.path["/api/v1/workspaces/{workspace_pk}/members/"] = {"workspace_pk": workspace.id, "id": editor.id}
    world.path["/api/v1/workspaces/{workspace_pk}/invitations/"] = {
        "workspace_pk": workspace.id,
        "id": invitation.id,
    }
    world.path["/api/v1/connector-types/"] = {"slug": "csv_file"}
    world.path["/api/v1/step-types/"] = {"slug": "filter"}
    world.references = {
        "workspace": workspace.id,
        "pipeline": pipeline.id,
        "rule": rule.id,
        "connector": source.id,
        "stream": "flights",
        "node": "late",
        "base": 1,
        "other": 2,
    }
    return world


@pytest.fixture(scope="module")
def world(
    django_db_setup: None, django_db_blocker: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    """Built once for the module in a transaction that is rolled back at its end; each test's own (the `db`
    fixture) and each request's nest inside it."""
    root = tmp_path_factory.mktemp("fuzz")
    with (
        override_settings(
            AGGREGATOR_IMPORT_DIR=root / "import",
            AGGREGATOR_DATA_DIR=root / "data",
            # The world's webhook target, a documentation address the guard refuses otherwise.
            AGGREGATOR_ALLOWED_HOSTS=["192.0.2.10/32"],
        ),
        django_db_blocker.unblock(),
        transaction.atomic(),
    ):
        yield _build_world()
        transaction.set_rollback(True)


@pytest.fixture(scope="module")
def _one_connection() -> Iterator[None]:
    """Django closes a connection in a transaction at the end of a request, as Django's test client keeps it
    from doing: the requests here go through the real WSGI handler, inside this test's transaction."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


def _load_schema() -> Any:
    document = SchemaGenerator().get_schema(request=None, public=True)
    config = schemathesis.Config.from_dict(
        {
            "seed": 20261205,
            "generation": {
                "max-examples": MAX_EXAMPLES,
                "deterministic": True,
                # No example database: a run replays nothing from an earlier one, and writes nothing.
                "database": "none",
                # PostgreSQL text cannot hold U+0000, so DRF refuses it in every string; JSON Schema cannot
                # say so.
                "allow-x00": False,
            },
            "phases": {
                # Its boundary cases are many per operation, not bounded by max-examples.
                "coverage": {"enabled": False},
                # It needs links between operations, which the schema does not declare.
                "stateful": {"enabled": False},
                # Values taken from earlier responses would make each request depend on those before it;
                # the world's values come in instead (_use_the_world).
                "fuzzing": {"extra-data-sources": {"responses": False}},
            },
            "operations": [
                {
                    "include-name": name,
                    "checks": {
                        "positive_data_acceptance": {
                            "expected-statuses": ["2xx", "400", "401", "403", "404", "409", "429"]
                        }
                    },
                }
                for name in REFUSED_BY_DESIGN
            ],
        }
    )
    loaded = schemathesis.openapi.from_dict(document, config=config)
    loaded.app = application
    return loaded


schema = _load_schema()


@pytest.fixture(params=["admin", "viewer"])
def auth(request: pytest.FixtureRequest, world: World) -> dict[str, str]:
    user = world.users[request.param]
    return {"Authorization": f"Bearer {RefreshToken.for_user(user).access_token}"}


def _is_valid(case: Any, location: ParameterLocation) -> bool:
    component = case.meta.components.get(location) if case.meta else None
    return component is None or component.mode.is_positive


def _use_the_world(case: Any, world: World) -> None:
    """Valid values become the world's: a schema-valid id, stream or node is real only by chance. An invalid
    part stays as drawn, so the request stays invalid. A value keeps the type the schema gave the drawn one
    (`workspace_pk` is a string of digits, `id` an integer): Schemathesis re-checks what is sent."""

    def real(container: dict[str, Any], values: dict[str, Any]) -> None:
        for name, value in values.items():
            if (
                name in container
                and isinstance(container[name], (str, int))
                and not isinstance(container[name], bool)
            ):
                container[name] = type(container[name])(value)

    if case.path_parameters and _is_valid(case, ParameterLocation.PATH):
        real(case.path_parameters, world.path_values(case.path))
    if case.query and _is_valid(case, ParameterLocation.QUERY):
        real(case.query, world.references)
    if isinstance(case.body, dict) and _is_valid(case, ParameterLocation.BODY):
        real(case.body, world.references)


@schema.parametrize()
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
def test_api(case: Any, world: World, auth: dict[str, str], db: None, _one_connection: None) -> None:
    _use_the_world(case, world)
    with transaction.atomic():
        try:
            case.call_and_validate(headers=auth)
        finally:
            transaction.set_rollback(True)

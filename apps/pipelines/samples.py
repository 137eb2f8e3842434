"""The sample pipeline a first-time user can make with one click: the sample flights (CSV) → a filter → a
derive → the workspace's Local warehouse, created and started in one call."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction

from apps.connectors.services import (
    SAMPLE_STREAM,
    connector_local_warehouse_ensure,
    connector_sample_source_create,
)
from apps.schemas.services import schema_discover

from .models import Pipeline, Run
from .services import pipeline_create, run_start

SAMPLE_PIPELINE_NAME = "Sample: late flights"
SAMPLE_TABLE = "late_flights"
# Departures more than half an hour late: 686 of the sample's 6,099 flights.
SAMPLE_FILTER = "dep_delay > 30"
SAMPLE_DERIVE_COLUMN = "made_up_min"
SAMPLE_DERIVE = "dep_delay - arr_delay"


def _free_name(*, workspace_id: int, name: str) -> str:
    taken = set(
        Pipeline.objects.filter(workspace_id=workspace_id, name__startswith=name).values_list(
            "name", flat=True
        )
    )
    candidate, n = name, 1
    while candidate in taken:
        n += 1
        candidate = f"{name} {n}"
    return candidate


def sample_definition(*, source: str, warehouse: str) -> dict[str, Any]:
    return {
        "nodes": [
            {
                "id": "flights",
                "kind": "source",
                "connector": source,
                "stream": SAMPLE_STREAM,
                "sync_mode": "full_refresh",
                "position": {"x": 0, "y": 0},
            },
            {
                "id": "late",
                "kind": "transform",
                "step": "filter",
                "config": {"expression": SAMPLE_FILTER},
                "position": {"x": 300, "y": 0},
            },
            {
                "id": "made_up",
                "kind": "transform",
                "step": "derive",
                "config": {"column": SAMPLE_DERIVE_COLUMN, "expression": SAMPLE_DERIVE},
                "position": {"x": 600, "y": 0},
            },
            {
                "id": "warehouse",
                "kind": "destination",
                "connector": warehouse,
                "table": SAMPLE_TABLE,
                "write_mode": "overwrite",
                "position": {"x": 900, "y": 0},
            },
        ],
        "edges": [
            {"from": "flights", "to": "late"},
            {"from": "late", "to": "made_up"},
            {"from": "made_up", "to": "warehouse"},
        ],
    }


@transaction.atomic
def pipeline_sample_create(*, workspace: Any, user: Any) -> tuple[Pipeline, Run]:
    """Make the sample source (a copy of the sample file in the workspace's uploads), the Local warehouse
    when the workspace has none, the sample pipeline between them, and start its first run (queued after
    commit)."""
    warehouse = connector_local_warehouse_ensure(workspace=workspace, user=user)
    if warehouse is None:
        raise ValidationError(
            {
                "non_field_errors": [
                    "The sample pipeline loads into the Local warehouse, which is not available here: it "
                    "lives on the platform's own PostgreSQL (`manage.py up`, or set "
                    "AGGREGATOR_LOCAL_WAREHOUSE_URL)."
                ]
            }
        )
    source = connector_sample_source_create(workspace=workspace, user=user)
    # Recorded now, so the builder shows the stream's fields from the first look.
    schema_discover(connector=source)
    pipeline = pipeline_create(
        workspace=workspace,
        name=_free_name(workspace_id=workspace.id, name=SAMPLE_PIPELINE_NAME),
        definition=sample_definition(source=source.name, warehouse=warehouse.name),
        user=user,
        message="Sample pipeline",
        description="The sample flights of 1-7 January 2013 that left more than 30 minutes late, with the "
        "minutes each made up in the air, loaded into the Local warehouse.",
    )
    run = run_start(pipeline=pipeline, user=user)
    return pipeline, run

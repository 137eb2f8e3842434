from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from apps.pipelines.definition import MAX_NODES, NODE_KINDS
from apps.pipelines.models import (
    ConcurrencyPolicy,
    NodeProfile,
    NodeRun,
    Pipeline,
    PipelineVersion,
    QualityResult,
    QualityStatus,
    RejectedRecord,
    Run,
    RunLog,
)
from apps.pipelines.selectors import run_destinations


class PipelineSerializer(serializers.ModelSerializer):
    workspace = serializers.IntegerField(source="workspace_id", read_only=True)
    depends_on = serializers.SerializerMethodField()
    schedule_description = serializers.SerializerMethodField()
    last_run = serializers.SerializerMethodField()

    class Meta:
        model = Pipeline
        fields = [
            "id",
            "workspace",
            "name",
            "description",
            "definition",
            "version",
            "max_attempts",
            "retry_backoff_s",
            "time_limit_s",
            "chunk_size",
            "schedule_cron",
            "schedule_timezone",
            "schedule_interval_s",
            "schedule_description",
            "is_paused",
            "concurrency_policy",
            "depends_on",
            "last_run",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    def get_depends_on(self, pipeline: Pipeline) -> list[int]:
        return sorted(p.id for p in pipeline.depends_on.all())

    def get_schedule_description(self, pipeline: Pipeline) -> str:
        from apps.pipelines.schedules import describe

        return describe(pipeline)

    def get_last_run(self, pipeline: Pipeline) -> dict[str, Any] | None:
        run_id = getattr(pipeline, "last_run_id", None)
        if run_id is None:
            return None
        return {"id": run_id, "status": pipeline.last_run_status, "queued_at": pipeline.last_run_at}  # type: ignore[attr-defined]


# What the schema can say of a pipeline document (apps/pipelines/definition.py checks the rest, node by node):
# its shape, so a client and the API docs see the graph rather than "any JSON".
DEFINITION_SCHEMA = {
    "type": "object",
    "description": "The pipeline graph (docs/pipelines.md): sources, transform steps and destinations, and "
    "the edges between them.",
    "properties": {
        "nodes": {
            "type": "array",
            "minItems": 1,
            "maxItems": MAX_NODES,
            "items": {
                "type": "object",
                "properties": {
                    "id": {"type": "string", "minLength": 1, "maxLength": 100},
                    "kind": {"type": "string", "enum": list(NODE_KINDS)},
                },
                "required": ["id", "kind"],
            },
        },
        "edges": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "from": {"type": "string", "description": "A node id."},
                    "to": {"type": "string", "description": "A node id."},
                    "id": {"description": "The builder's own id of the edge, kept as it is."},
                },
                "required": ["from", "to"],
                "additionalProperties": False,
            },
        },
    },
    "required": ["nodes"],
    "additionalProperties": False,
}


@extend_schema_field(DEFINITION_SCHEMA)
class DefinitionField(serializers.JSONField):
    pass


class PipelineWriteSerializer(serializers.Serializer):
    workspace = serializers.IntegerField(required=False, write_only=True)
    name = serializers.CharField(max_length=100)
    description = serializers.CharField(required=False, allow_blank=True)
    definition = DefinitionField()
    message = serializers.CharField(required=False, allow_blank=True, max_length=500)
    max_attempts = serializers.IntegerField(required=False, min_value=1, max_value=20)
    retry_backoff_s = serializers.IntegerField(required=False, min_value=0, max_value=86400)
    time_limit_s = serializers.IntegerField(required=False, min_value=10, max_value=7 * 86400)
    chunk_size = serializers.IntegerField(required=False, min_value=100, max_value=1_000_000)
    schedule_cron = serializers.CharField(required=False, allow_blank=True, max_length=100)
    schedule_timezone = serializers.CharField(required=False, max_length=64)
    schedule_interval_s = serializers.IntegerField(required=False, allow_null=True, min_value=1)
    is_paused = serializers.BooleanField(required=False)
    concurrency_policy = serializers.ChoiceField(choices=ConcurrencyPolicy.choices, required=False)
    depends_on = serializers.ListField(child=serializers.IntegerField(), required=False)


class ValidateInputSerializer(serializers.Serializer):
    # Any JSON: validating is reporting what is wrong with a document, whatever it is (200, `valid: false`).
    definition = serializers.JSONField(
        required=False, help_text="A document to check; the saved one when absent."
    )


class ValidateDocumentInputSerializer(serializers.Serializer):
    workspace = serializers.IntegerField(
        required=False,
        help_text="The workspace whose connectors the document names (your only one when absent).",
    )
    definition = serializers.JSONField(help_text="The document to check.")


class SampleInputSerializer(serializers.Serializer):
    workspace = serializers.IntegerField(
        required=False, help_text="The workspace to make the sample in (your only one when absent)."
    )


class ValidateOutputSerializer(serializers.Serializer):
    valid = serializers.BooleanField()
    # Only describes the response body: this serializer is never bound to data, so hiding
    # Serializer.errors is harmless.
    errors = serializers.DictField(child=serializers.ListField(child=serializers.CharField()))  # type: ignore[assignment]
    schemas = serializers.DictField(child=serializers.JSONField(), help_text="Fields available at each node.")


class PipelineVersionSerializer(serializers.ModelSerializer):
    created_by = serializers.EmailField(source="created_by.email", read_only=True, default=None)

    class Meta:
        model = PipelineVersion
        fields = ["version", "definition", "message", "created_by", "created_at"]
        read_only_fields = fields


class VersionDiffSerializer(serializers.Serializer):
    base = serializers.IntegerField()
    other = serializers.IntegerField()
    added_nodes = serializers.ListField(child=serializers.CharField())
    removed_nodes = serializers.ListField(child=serializers.CharField())
    changed_nodes = serializers.DictField(child=serializers.JSONField())
    added_edges = serializers.ListField(child=serializers.ListField(child=serializers.CharField()))
    removed_edges = serializers.ListField(child=serializers.ListField(child=serializers.CharField()))


@extend_schema_field(
    {
        "type": "object",
        "description": "Re-read an incremental source's cursor range: `from` (and `to`) cursor values, "
        "`node` the source node (needed when the pipeline has several incremental sources).",
        "properties": {"from": {}, "to": {}, "node": {"type": "string"}},
        "required": ["from"],
        "additionalProperties": False,
    }
)
class BackfillField(serializers.DictField):
    pass


class RunStartSerializer(serializers.Serializer):
    full_refresh = serializers.BooleanField(required=False, default=False)
    streams = serializers.ListField(
        child=serializers.CharField(), required=False, help_text="Source node ids."
    )
    backfill = BackfillField(required=False)


class NodeRunSerializer(serializers.ModelSerializer):
    class Meta:
        model = NodeRun
        fields = [
            "node_id",
            "kind",
            "status",
            "rows_in",
            "rows_out",
            "rows_rejected",
            "bytes",
            "started_at",
            "finished_at",
            "duration_s",
            "error",
        ]
        read_only_fields = fields


class RunSerializer(serializers.ModelSerializer):
    pipeline_name = serializers.CharField(source="pipeline.name", read_only=True)
    version = serializers.IntegerField(source="pipeline_version.version", read_only=True)
    workspace = serializers.IntegerField(source="workspace_id", read_only=True)
    pipeline = serializers.IntegerField(source="pipeline_id", read_only=True)
    duration_s = serializers.FloatField(read_only=True, allow_null=True)

    class Meta:
        model = Run
        fields = [
            "id",
            "workspace",
            "pipeline",
            "pipeline_name",
            "version",
            "status",
            "trigger",
            "options",
            "scheduled_for",
            "attempt",
            "max_attempts",
            "cancel_requested",
            "error",
            "error_kind",
            "rows_read",
            "rows_written",
            "rows_rejected",
            "queued_at",
            "started_at",
            "heartbeat_at",
            "finished_at",
            "duration_s",
        ]
        read_only_fields = fields


class RunDestinationSerializer(serializers.Serializer):
    node_id = serializers.CharField()
    connector = serializers.IntegerField(allow_null=True, help_text="Null when the connector was deleted.")
    connector_name = serializers.CharField()
    connector_type = serializers.CharField()
    table = serializers.CharField()
    write_mode = serializers.CharField()
    stream = serializers.CharField(
        allow_null=True,
        help_text="The table as a stream of the same connector, for `connectors/{id}/preview/`, where the "
        "destination can be read back (the Local warehouse); null otherwise.",
    )


class RunDetailSerializer(RunSerializer):
    nodes = NodeRunSerializer(source="node_runs", many=True, read_only=True)
    destinations = serializers.SerializerMethodField()

    class Meta(RunSerializer.Meta):
        fields = [*RunSerializer.Meta.fields, "nodes", "destinations"]
        read_only_fields = fields

    @extend_schema_field(RunDestinationSerializer(many=True))
    def get_destinations(self, run: Run) -> list[dict[str, Any]]:
        return run_destinations(run=run)


class RunLogSerializer(serializers.ModelSerializer):
    node = serializers.CharField(source="node_id")

    class Meta:
        model = RunLog
        fields = ["id", "at", "level", "node", "message", "context"]
        read_only_fields = fields


class RejectedRecordSerializer(serializers.ModelSerializer):
    node = serializers.CharField(source="node_id")

    class Meta:
        model = RejectedRecord
        fields = ["id", "node", "rule", "line", "row", "reason", "raw", "source", "created_at"]
        read_only_fields = fields


QUALITY_STATUSES = ", ".join(QualityStatus.values)


class QualityResultSerializer(serializers.ModelSerializer):
    rule = serializers.CharField(source="rule_id")
    type = serializers.CharField(source="rule_type")
    # Plain text in the schema: a second enum named "status" would collide with the run's.
    status = serializers.CharField(help_text=QUALITY_STATUSES)

    class Meta:
        model = QualityResult
        fields = [
            "rule",
            "type",
            "action",
            "columns",
            "status",
            "checked",
            "passed",
            "failed",
            "rejected",
            "warned",
            "observed",
            "sample",
        ]
        read_only_fields = fields


class QualityNodeSerializer(serializers.Serializer):
    node = serializers.CharField()
    status = serializers.CharField(help_text=f"The worst of its rules: {QUALITY_STATUSES}")
    rules = QualityResultSerializer(many=True)


class QualityReportSerializer(serializers.Serializer):
    run = serializers.IntegerField()
    status = serializers.CharField(help_text=f"The worst of all rules: {QUALITY_STATUSES}")
    nodes = QualityNodeSerializer(many=True)


class NodeProfileSerializer(serializers.ModelSerializer):
    node = serializers.CharField(source="node_id")
    columns = serializers.JSONField(help_text="Per column: null share, distinct, min/max/mean/stddev, …")

    class Meta:
        model = NodeProfile
        fields = ["node", "rows", "complete", "row_cap", "columns", "created_at"]
        read_only_fields = fields


class PipelinePreviewInputSerializer(serializers.Serializer):
    node = serializers.CharField(max_length=100, help_text="The node whose input and output to show.")
    definition = DefinitionField(required=False, help_text="An unsaved document (default: the saved one).")
    limit = serializers.IntegerField(
        required=False, default=100, min_value=1, max_value=1000, help_text="Rows read from each source."
    )


class PreviewDocumentInputSerializer(PipelinePreviewInputSerializer):
    workspace = serializers.IntegerField(
        required=False,
        help_text="The workspace whose connectors the document names (your only one when absent).",
    )
    definition = DefinitionField(help_text="The document to preview.")


class PipelinePreviewOutputSerializer(serializers.Serializer):
    node = serializers.CharField()
    limit = serializers.IntegerField()
    inputs = serializers.DictField(
        child=serializers.ListField(child=serializers.DictField()),
        help_text="Rows arriving, by upstream node.",
    )
    output = serializers.ListField(child=serializers.DictField(), help_text="Rows the node gives.")
    schema = serializers.JSONField(allow_null=True, help_text="The node's output schema.")
    rejected = serializers.ListField(child=serializers.DictField(), help_text="Rows refused on the way.")
    rule_failures = serializers.ListField(
        child=serializers.DictField(),
        help_text="Validation rules that failed, rejected or warned on the sample.",
    )
    profile = serializers.JSONField(
        help_text="The output sample's profile, as a run's node profiles: `rows` and per column nulls, "
        "distinct, min/max/mean/stddev, top values and a histogram of numbers."
    )


class SampleOutputSerializer(serializers.Serializer):
    pipeline = PipelineSerializer()
    run = RunSerializer()

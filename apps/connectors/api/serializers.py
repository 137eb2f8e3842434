from __future__ import annotations

from typing import Any

from rest_framework import serializers

from apps.connectors.base import ConnectorKind, ConnectorType
from apps.connectors.models import CheckStatus, Connector
from apps.connectors.selectors import connector_secret_status


def connector_type_data(connector_type: type[ConnectorType]) -> dict[str, Any]:
    return {
        "slug": connector_type.slug,
        "title": connector_type.title,
        "kind": str(connector_type.kind),
        "description": connector_type.description,
        "secret_fields": connector_type.secret_fields(),
        "config_schema": connector_type.json_schema(),
    }


class ConnectorTypeSerializer(serializers.Serializer):
    slug = serializers.CharField()
    title = serializers.CharField()
    kind = serializers.ChoiceField(choices=[(k.value, k.value) for k in ConnectorKind])
    description = serializers.CharField()
    secret_fields = serializers.ListField(child=serializers.CharField())
    config_schema = serializers.JSONField(help_text="JSON Schema of the config; secret fields are writeOnly.")


class ConnectorSerializer(serializers.ModelSerializer):
    """A connector as the API shows it: secret fields appear only as `{"is_set": true|false}`."""

    config = serializers.SerializerMethodField()
    last_check = serializers.SerializerMethodField()
    created_by: serializers.SlugRelatedField[Any] = serializers.SlugRelatedField(
        slug_field="email", read_only=True, allow_null=True
    )
    updated_by: serializers.SlugRelatedField[Any] = serializers.SlugRelatedField(
        slug_field="email", read_only=True, allow_null=True
    )

    class Meta:
        model = Connector
        fields = [
            "id",
            "workspace",
            "name",
            "connector_type",
            "config",
            "last_check",
            "created_by",
            "updated_by",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    def get_config(self, connector: Connector) -> dict[str, Any]:
        return {**connector.config, **connector_secret_status(connector)}

    def get_last_check(self, connector: Connector) -> dict[str, Any]:
        return {
            "status": connector.last_check_status,
            "message": connector.last_check_message,
            "at": serializers.DateTimeField().to_representation(connector.last_check_at)
            if connector.last_check_at
            else None,
        }


class ConnectorCreateInputSerializer(serializers.Serializer):
    workspace = serializers.IntegerField(required=False, help_text="Defaults to your only workspace.")
    name = serializers.CharField(max_length=100)
    connector_type = serializers.CharField(max_length=100)
    config = serializers.DictField(
        default=dict, help_text="Validated against the type's config_schema; secrets are stored encrypted."
    )


class ConnectorUpdateInputSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100)
    connector_type = serializers.CharField(max_length=100, required=False)
    config = serializers.DictField(
        required=False,
        help_text="PATCH merges into the stored config (null resets a key). A secret left out, or sent as "
        '{"is_set": true}, is kept; null clears it.',
    )


class CheckOutputSerializer(serializers.Serializer):
    ok = serializers.BooleanField()
    status = serializers.ChoiceField(choices=CheckStatus.choices)
    message = serializers.CharField()
    at = serializers.DateTimeField()


class StreamFieldSerializer(serializers.Serializer):
    name = serializers.CharField()
    type = serializers.CharField()
    nullable = serializers.BooleanField()
    description = serializers.CharField(required=False, help_text="Present only when the source has one.")


class StreamSerializer(serializers.Serializer):
    name = serializers.CharField()
    fields = StreamFieldSerializer(many=True)  # type: ignore[assignment]  # a declared field, not Serializer.fields
    primary_key = serializers.ListField(child=serializers.CharField())
    cursor_field = serializers.CharField(allow_null=True)
    cursor_candidates = serializers.ListField(child=serializers.CharField())
    supported_sync_modes = serializers.ListField(child=serializers.CharField())


class StreamChangeSerializer(serializers.Serializer):
    stream = serializers.CharField()
    kind = serializers.ChoiceField(
        choices=[(k, k) for k in ("added", "removed", "changed", "unchanged")],
        help_text="What happened to the stream since the previous discovery.",
    )
    version = serializers.IntegerField(
        allow_null=True, help_text="The stream's schema version now (a new one only when it changed)."
    )
    added_fields = serializers.ListField(child=serializers.CharField())
    removed_fields = serializers.ListField(child=serializers.CharField())
    type_changes = serializers.DictField(
        child=serializers.DictField(), help_text='`{"field": {"from": "integer", "to": "string"}}`'
    )
    nullability_changes = serializers.DictField(
        child=serializers.DictField(), help_text='`{"field": {"from": false, "to": true}}`'
    )
    key_changes = serializers.DictField(
        help_text='Changes of `primary_key` / `cursor_field`: `{"primary_key": {"from": [...], "to": [...]}}`'
    )


class DiscoverOutputSerializer(serializers.Serializer):
    streams = StreamSerializer(many=True)
    changes = StreamChangeSerializer(many=True, help_text="One entry per stream, removed streams included.")


class PreviewQuerySerializer(serializers.Serializer):
    stream = serializers.CharField()
    limit = serializers.IntegerField(required=False, min_value=1, default=100, help_text="At most 1000.")


class RejectedRowSerializer(serializers.Serializer):
    line = serializers.IntegerField(allow_null=True)
    row = serializers.IntegerField(allow_null=True)
    reason = serializers.CharField()
    raw = serializers.JSONField()
    source = serializers.CharField()  # type: ignore[assignment]  # a declared field, not Field.source


class PreviewOutputSerializer(serializers.Serializer):
    stream = StreamSerializer()
    rows = serializers.ListField(child=serializers.DictField())
    rejected = RejectedRowSerializer(many=True)
    limit = serializers.IntegerField()


class StreamProfileInputSerializer(serializers.Serializer):
    stream = serializers.CharField()
    limit = serializers.IntegerField(
        required=False, min_value=1, max_value=100_000, default=10_000, help_text="Rows to read and profile."
    )


class HistogramSerializer(serializers.Serializer):
    edges = serializers.ListField(child=serializers.FloatField(), help_text="One more than `counts`.")
    counts = serializers.ListField(child=serializers.IntegerField())


class TopValueSerializer(serializers.Serializer):
    value = serializers.JSONField()
    count = serializers.IntegerField()


class ColumnProfileSerializer(serializers.Serializer):
    name = serializers.CharField()
    type = serializers.CharField()
    rows = serializers.IntegerField()
    nulls = serializers.IntegerField()
    null_share = serializers.FloatField(allow_null=True)
    distinct = serializers.IntegerField()
    distinct_exact = serializers.BooleanField()
    top_values = TopValueSerializer(many=True)
    top_exact = serializers.BooleanField()
    min = serializers.JSONField(required=False, help_text="Numbers, dates and datetimes.")
    max = serializers.JSONField(required=False)
    mean = serializers.JSONField(required=False)
    stddev = serializers.FloatField(required=False, allow_null=True)
    stddev_unit = serializers.CharField(required=False, allow_null=True)
    histogram = HistogramSerializer(required=False, allow_null=True, help_text="Numbers only.")


class StreamProfileOutputSerializer(serializers.Serializer):
    connector = serializers.IntegerField()
    stream = serializers.CharField()
    limit = serializers.IntegerField()
    rows = serializers.IntegerField(help_text="Rows profiled: the stream's first rows, at most `limit`.")
    rejected = serializers.IntegerField(help_text="Rows the source could not read on the way.")
    columns = ColumnProfileSerializer(many=True)

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from apps.schemas.models import (
    ContractPolicy,
    SchemaChange,
    SchemaChangeStatus,
    StreamContract,
    StreamSchemaVersion,
)


class PolicyField(serializers.ChoiceField):
    """One of the contract policies; the three settings share one enum in the schema (ContractPolicyEnum)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(choices=ContractPolicy.choices, **kwargs)


class StreamSchemaVersionSerializer(serializers.ModelSerializer):
    class Meta:
        model = StreamSchemaVersion
        fields = ["version", "schema", "changes", "is_removed", "is_accepted", "discovered_at"]
        read_only_fields = fields


class ContractSettingsSerializer(serializers.Serializer):
    new_columns = PolicyField()
    type_changes = PolicyField()
    new_tables = PolicyField()


class StreamSummarySerializer(serializers.Serializer):
    stream = serializers.CharField()
    latest_version = serializers.IntegerField()
    accepted_version = serializers.IntegerField(allow_null=True)
    is_removed = serializers.BooleanField()
    contract = ContractSettingsSerializer(
        help_text="The settings in force (the stream's own, else the connector's default, else the "
        "platform's)."
    )
    contract_source = serializers.ChoiceField(
        choices=["stream", "connector", "platform"], help_text="Where `contract` comes from."
    )
    contract_id = serializers.IntegerField(
        allow_null=True, help_text="The stream's own contract (schemas/contracts/{id}/), if it has one."
    )
    versions = StreamSchemaVersionSerializer(many=True)


class ConnectorStreamsSerializer(serializers.Serializer):
    connector = serializers.IntegerField()
    streams = StreamSummarySerializer(many=True)
    default_contract = ContractSettingsSerializer(
        help_text='The connector\'s default (stream ""), for streams without their own and new streams; '
        "the platform's when it has none."
    )
    default_contract_id = serializers.IntegerField(allow_null=True)


class SchemaDiffSerializer(serializers.Serializer):
    connector = serializers.IntegerField()
    stream = serializers.CharField()
    base = serializers.IntegerField()
    other = serializers.IntegerField()
    kind = serializers.CharField(help_text="added, removed, changed or unchanged.")
    added_fields = serializers.ListField(child=serializers.CharField())
    removed_fields = serializers.ListField(child=serializers.CharField())
    type_changes = serializers.DictField(child=serializers.DictField(child=serializers.CharField()))
    nullability_changes = serializers.DictField(child=serializers.DictField(child=serializers.BooleanField()))
    key_changes = serializers.DictField(child=serializers.JSONField())


class StreamContractSerializer(serializers.ModelSerializer):
    workspace = serializers.IntegerField(source="workspace_id", read_only=True)
    connector = serializers.IntegerField(source="connector_id")
    updated_by: serializers.SlugRelatedField[Any] = serializers.SlugRelatedField(
        slug_field="email", read_only=True, allow_null=True
    )
    new_columns = PolicyField(required=False)
    type_changes = PolicyField(required=False)
    new_tables = PolicyField(required=False)

    class Meta:
        model = StreamContract
        fields = [
            "id",
            "workspace",
            "connector",
            "stream",
            "new_columns",
            "type_changes",
            "new_tables",
            "updated_by",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["id", "workspace", "updated_by", "created_at", "updated_at"]
        extra_kwargs = {"stream": {"required": False, "allow_blank": True}}


class StreamContractUpdateSerializer(serializers.Serializer):
    new_columns = PolicyField(required=False)
    type_changes = PolicyField(required=False)
    new_tables = PolicyField(required=False)


class SchemaChangeSerializer(serializers.ModelSerializer):
    workspace = serializers.IntegerField(source="workspace_id", read_only=True)
    connector = serializers.IntegerField(source="connector_id", read_only=True)
    status = serializers.ChoiceField(choices=SchemaChangeStatus.choices, read_only=True)
    decided_by: serializers.SlugRelatedField[Any] = serializers.SlugRelatedField(
        slug_field="email", read_only=True, allow_null=True
    )

    class Meta:
        model = SchemaChange
        fields = [
            "id",
            "workspace",
            "connector",
            "stream",
            "from_version",
            "to_version",
            "changes",
            "frozen",
            "status",
            "decided_by",
            "decided_at",
            "created_at",
        ]
        read_only_fields = fields

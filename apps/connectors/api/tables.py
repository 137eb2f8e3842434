"""The existing tables of a destination connector, so a pipeline can map its fields onto a real table:

    GET /api/v1/connectors/{id}/tables/           the tables in the configured schema (or database)
    GET /api/v1/connectors/{id}/tables/{table}/   one table: columns (platform type, nullable, required,
                                                  primary key) and its primary key

Viewers may read both; another workspace's connector is a 404. A table that does not exist (yet) is a 404
too: the first run creates it. The name in the path is checked here (length, control characters) and by
the connector type; the plugin looks it up in the catalogue with bind parameters only.
"""

from __future__ import annotations

import unicodedata

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, serializers, viewsets
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response

from apps.connectors import selectors
from apps.connectors.tables import connector_table_describe, connector_table_list

# The longest name any built-in destination accepts (DuckDB); each type checks its own limit as well.
MAX_TABLE_NAME_CHARS = 255


class TableColumnSerializer(serializers.Serializer):
    name = serializers.CharField()
    type = serializers.ChoiceField(
        choices=["string", "integer", "number", "boolean", "date", "datetime", "json"],
        help_text="The platform's field type the column holds.",
    )
    nullable = serializers.BooleanField()
    # DRF's metaclass takes declared fields off the class, so this does not shadow Field.required.
    required = serializers.BooleanField(  # type: ignore[assignment]
        help_text="NOT NULL and nothing the database fills by itself (default, identity, generated): a "
        "mapping must give it a value."
    )
    has_default = serializers.BooleanField()
    primary_key = serializers.BooleanField()
    db_type = serializers.CharField(help_text="The column's type as the database names it.")


class TableListSerializer(serializers.Serializer):
    connector = serializers.IntegerField()
    schema = serializers.CharField(help_text="The schema (MySQL: database) the connector writes to.")
    tables = serializers.ListField(child=serializers.CharField())


class TableSerializer(serializers.Serializer):
    connector = serializers.IntegerField()
    schema = serializers.CharField()
    name = serializers.CharField()
    columns = TableColumnSerializer(many=True)
    primary_key = serializers.ListField(child=serializers.CharField())


def _checked_table_name(table: str) -> str:
    if not table.strip():
        raise exceptions.ValidationError({"table": ["Name a table."]})
    if len(table) > MAX_TABLE_NAME_CHARS:
        raise exceptions.ValidationError(
            {"table": [f"A table name has at most {MAX_TABLE_NAME_CHARS} characters."]}
        )
    if table != table.strip() or any(unicodedata.category(ch) == "Cc" for ch in table):
        raise exceptions.ValidationError(
            {"table": ["A table name cannot hold control characters or start or end with spaces."]}
        )
    return table


@extend_schema(tags=["connectors"])
class ConnectorTableViewSet(viewsets.ViewSet):
    """A destination's existing tables and their columns. Viewers may read."""

    permission_classes = [IsAuthenticated]
    lookup_field = "table"
    list_is_object = True
    lookup_value_regex = r"[^/]+"

    @extend_schema(
        parameters=[OpenApiParameter("connector_pk", int, OpenApiParameter.PATH)],
        responses={200: TableListSerializer},
        operation_id="connectors_tables_list",
    )
    def list(self, request: Request, connector_pk: str) -> Response:
        """The tables in the schema (or database) the connector writes to, by name."""
        connector = selectors.connector_get_for_user(user=request.user, connector_id=connector_pk)
        schema, tables = connector_table_list(connector=connector)
        return Response({"connector": connector.id, "schema": schema, "tables": tables})

    @extend_schema(
        parameters=[
            OpenApiParameter("connector_pk", int, OpenApiParameter.PATH),
            OpenApiParameter("table", str, OpenApiParameter.PATH),
        ],
        responses={200: TableSerializer},
    )
    def retrieve(self, request: Request, connector_pk: str, table: str) -> Response:
        """One table's columns in their order, typed as the platform's field types; 404 when the table
        does not exist (the first run will create it)."""
        connector = selectors.connector_get_for_user(user=request.user, connector_id=connector_pk)
        name = _checked_table_name(table)
        description = connector_table_describe(connector=connector, table=name)
        if description is None:
            raise exceptions.NotFound(f"No table {name!r} yet: the first run that writes to it creates it.")
        return Response({"connector": connector.id, **description.to_dict()})
